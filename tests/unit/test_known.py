"""The known-bugs file (verdict/known.py): validation with line numbers, matching rules against
report dicts, the known/regression messages, entries written by `known add`, and batch's split."""

import os

import pytest
from click.testing import CliRunner

from kpostmortem.frontends.batch import summarize, text_summary
from kpostmortem.frontends.cli import main
from kpostmortem.verdict.known import (
    CrashFacts,
    KnownBugsError,
    append_entry,
    entry_text,
    find_known_bugs,
    parse_known_bugs,
)

FILE = '''\
# the team's known crashes
[[bug]]
id = "NET-1234"
url = "https://tracker.example/NET-1234"
note = "reset op missing on rev B boards"
fixed_in = "6.1.0-60"
workaround = "load foo_nic with safe_reset=1"
[bug.match]
category = "null-pointer-dereference"
function = "foo_nic_reset"
module = "foo_nic"
title = "NULL pointer dereference in foo_nic_"
kernel = ">=6.1, <6.13"

[[bug]]
id = "NET-99"
[bug.match]
signature = "5F0C2A9E77D1"
'''


def report(function="foo_nic_reset", module="foo_nic", signature="5f0c2a9e77d1",
           release="6.1.0-57-cloud-amd64", version="#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)",
           category="null-pointer-dereference"):
    """A report dict with what matching reads (the verdict, the dump's release, uname -v)."""
    mod = f" [{module}]" if module else ""
    return {
        "verdict": {"category": category, "function": function, "module": module, "signature": signature,
                    "title": f"BUG: kernel NULL pointer dereference in {function}{mod}"},
        "dump": {"release": release},
        "summary": {"release": release, "version": version},
    }


def test_parse_and_match_every_key():
    kb = parse_known_bugs(FILE, "kb.toml")
    assert [b.id for b in kb.bugs] == ["NET-1234", "NET-99"]
    assert [b.line for b in kb.bugs] == [2, 15]
    matches = kb.match(report())
    assert [m["id"] for m in matches] == ["NET-1234", "NET-99"]
    first = matches[0]
    assert [w["key"] for w in first["why"]] == ["category", "function", "module", "title", "kernel"]
    assert first["status"] == "known" and first["running"] == "6.1.0-57"
    assert first["message"] == ("known bug NET-1234: reset op missing on rev B boards "
                                "(fixed in 6.1.0-60; this machine runs 6.1.0-57)")
    assert matches[1]["message"] == "known bug NET-99 (no fix recorded)"


def test_every_given_key_must_match():
    kb = parse_known_bugs(FILE)
    assert [m["id"] for m in kb.match(report(module="bar_nic"))] == ["NET-99"]
    assert [m["id"] for m in kb.match(report(release="6.13.2-cloud-amd64", version=""))] == ["NET-99"]
    assert kb.match(report(function="other", signature="000000000000")) == []


def test_function_rule_ignores_clone_suffixes():
    kb = parse_known_bugs(FILE)
    assert [m["id"] for m in kb.match(report(function="foo_nic_reset.cold", signature="1" * 12))] == ["NET-1234"]


def test_fixed_in_reached_is_a_regression():
    kb = parse_known_bugs(FILE.replace('fixed_in = "6.1.0-60"', 'fixed_in = "6.1.0-57"'))
    m = kb.match(report())[0]
    assert m["status"] == "regression"
    assert m["message"] == ("matches NET-1234, which was supposed to be fixed in 6.1.0-57: a regression or a "
                            "different bug (this machine runs 6.1.0-57)")


def test_fixed_in_as_package_version():
    kb = parse_known_bugs(FILE.replace('fixed_in = "6.1.0-60"', 'fixed_in = "6.1.190-1"'))
    m = kb.match(report())[0]
    assert m["status"] == "regression"
    assert m["running"] == "6.1.192-3"
    assert "this machine runs 6.1.192-3 (6.1.0-57-cloud-amd64)" in m["message"]


def test_unknown_kernel_is_not_a_regression():
    kb = parse_known_bugs(FILE.replace('kernel = ">=6.1, <6.13"\n', ""))
    m = kb.match(report(release=None, version=None))[0]
    assert m["status"] == "known" and "this machine runs an unknown kernel" in m["message"]


def test_batch_record_matches_like_a_report():
    rec = {"signature": "5f0c2a9e77d1", "category": "null-pointer-dereference", "function": "foo_nic_reset",
           "module": "foo_nic", "title": "BUG: kernel NULL pointer dereference in foo_nic_reset [foo_nic]",
           "release": "6.1.0-57-cloud-amd64", "version": None}
    assert CrashFacts.of(rec) == CrashFacts.of(report(version=None))
    assert [m["id"] for m in parse_known_bugs(FILE).match(rec)] == ["NET-1234", "NET-99"]


@pytest.mark.parametrize("text,line,words", [
    ('[[bug]]\nid = "A"\n[bug.match]\nfunction = "f"\nmodul = "m"\n', 5, "unknown match key 'modul'"),
    ('[[bug]]\nurl = "u"\n[bug.match]\nfunction = "f"\n', 1, "id is required"),
    ('[[bug]]\nid = "A"\nfixd_in = "6.1"\n[bug.match]\nfunction = "f"\n', 3, "unknown key 'fixd_in'"),
    ('[[bug]]\nid = "A"\n', 1, "a [bug.match] table"),
    ('[[bug]]\nid = "A"\n[bug.match]\ntitle = "foo("\n', 4, "not a valid regular expression"),
    ('[[bug]]\nid = "A"\n[bug.match]\nkernel = ">=6.1, <<6.13"\n', 4, "match.kernel"),
    ('[[bug]]\nid = "A"\nfixed_in = "six"\n[bug.match]\nfunction = "f"\n', 3, "fixed_in"),
    ('[[bug]]\nid = "A"\n[bug.match]\ncategory = "gpf"\n', 4, "did you mean 'general-protection-fault'"),
    ('[[bug]]\nid = "A"\n[bug.match]\nsignature = "xyz"\n', 4, "not a hex signature"),
    ('[[bug]]\nid = "A"\n[bug.match]\nfunction = 3\n', 4, "must be a non-empty string"),
    ('[[bug]]\nid = "A"\n[bug.match]\nfunction = "f"\n\n[[bug]]\nid = "A"\n[bug.match]\nfunction = "g"\n',
     7, "duplicate id 'A' (first at line 2)"),
    ('[[bug]]\nid = "A"\n[bug.match]\nfunction = "f\n', 4, "invalid TOML"),
    ('bugs = 1\n', 1, "unknown top-level key 'bugs'"),
    ('version_scheme = "apk"\n', 1, "version_scheme must be one of deb, rpm"),
    ('[bug]\nid = "A"\n', 1, "bug must be an array of tables"),
])
def test_malformed_file_names_the_line(text, line, words):
    with pytest.raises(KnownBugsError) as e:
        parse_known_bugs(text, "kb.toml")
    msg = e.value.one_line()
    assert msg.startswith(f"kb.toml:{line}: "), msg
    assert words in msg and "\n" not in msg
    assert e.value.exit_code == 2


def test_file_search_order(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert find_known_bugs(None, env) is None
    default = tmp_path / "kpostmortem" / "known-bugs.toml"
    default.parent.mkdir()
    default.write_text("")
    assert find_known_bugs(None, env) == str(default)
    env["KPOSTMORTEM_KNOWN_BUGS"] = "/team/bugs.toml"
    assert find_known_bugs(None, env) == "/team/bugs.toml"
    assert find_known_bugs("mine.toml", env) == "mine.toml"


def test_entry_round_trip_and_append_keeps_the_file(tmp_path):
    path = tmp_path / "kb.toml"
    original = FILE.rstrip("\n")          # no final newline: the entry must not join its last line
    path.write_text(original)
    r = report(function="crashpoc_null_write", module="crashpoc", signature="cee66fe7ef52")
    entry = entry_text(r, "CRASH-1", url="https://t/1", fixed_in="6.1.0-60")
    loaded = append_entry(str(path), entry)
    text = path.read_text()
    assert text.startswith(original + "\n")
    assert [b.id for b in loaded.bugs] == ["NET-1234", "NET-99", "CRASH-1"]
    assert [m["id"] for m in loaded.match(r)] == ["CRASH-1"]
    # A function rule holds on another kernel and another call path (other signature).
    by_function = parse_known_bugs(entry_text(r, "CRASH-2", by="function"))
    assert by_function.match(report(function="crashpoc_null_write", module="crashpoc", signature="0" * 12,
                                    release="6.12.117+deb12-cloud-amd64"))


def test_append_refuses_a_duplicate_and_writes_nothing(tmp_path):
    path = tmp_path / "kb.toml"
    path.write_text(FILE)
    with pytest.raises(KnownBugsError, match=r"kb.toml:\d+: duplicate id 'NET-99'"):
        append_entry(str(path), entry_text(report(), "NET-99"))
    assert path.read_text() == FILE


def test_titles_with_quotes_are_escaped():
    r = report(function='f"\\\x7f')
    kb = parse_known_bugs(entry_text(r, "Q-1"))
    assert kb.bugs[0].note == r["verdict"]["title"]


def test_cli_malformed_file_one_line_exit_2(tmp_path):
    bad = tmp_path / "kb.toml"
    bad.write_text('[[bug]]\nid = "A"\n[bug.match]\nfunction = "f"\nmodul = "m"\n')
    result = CliRunner().invoke(main, ["known", "check", str(bad)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"kpostmortem: error: {bad}:5: bug 'A': unknown match key "
                                                   "'modul' (expected signature, category, function, module, "
                                                   "title, kernel)"]
    result = CliRunner().invoke(main, ["analyze", "/nonexistent", "--known-bugs", str(bad)])
    assert result.exit_code == 2 and f"{bad}:5:" in result.output


def test_cli_known_add(tmp_path):
    import json

    rep = tmp_path / "r.json"
    rep.write_text(json.dumps(report()))
    kb = tmp_path / "sub" / "kb.toml"
    env = {"XDG_CONFIG_HOME": str(tmp_path / "none"), "KPOSTMORTEM_KNOWN_BUGS": ""}
    result = CliRunner().invoke(main, ["known", "add", str(rep), "--id", "X-1", "--url", "https://t/X-1",
                                       "--known-bugs", str(kb)], env=env)
    assert result.exit_code == 0, result.output
    assert 'id = "X-1"' in kb.read_text()
    again = CliRunner().invoke(main, ["known", "add", str(rep), "--id", "X-1", "--known-bugs", str(kb)], env=env)
    assert again.exit_code == 2 and "duplicate id 'X-1'" in again.output
    notjson = CliRunner().invoke(main, ["known", "add", str(kb), "--id", "X-2", "--known-bugs", str(kb)], env=env)
    assert notjson.exit_code == 2 and "not a kpostmortem JSON report" in notjson.output
    assert os.path.getsize(kb) == len(kb.read_bytes())


def test_batch_summary_splits_known_from_new():
    def rec(sig, known):
        return {"kind": "dump", "path": f"/d/{sig}", "ok": True, "exit_code": 0, "signature": sig,
                "category": "null-pointer-dereference", "title": f"t {sig}", "function": "f", "module": None,
                "crash_time": None, "release": "6.1.0-57-cloud-amd64", "host": None, "seconds": 1.0,
                "known_bugs": [{"id": known}] if known else []}

    summary = summarize([rec("aaaaaaaaaaaa", None), rec("bbbbbbbbbbbb", "NET-1"), rec("bbbbbbbbbbbb", "NET-1")],
                        3.0, jobs=1)
    assert (summary["known_signatures"], summary["new_signatures"]) == (1, 1)
    assert [g["known_bugs"] for g in summary["groups"]] == [["NET-1"], []]
    text = text_summary(summary)
    assert text.index("KNOWN  1 signature") < text.index("known bug NET-1") < text.index("NEW  1 signature")
    without = summarize([{k: v for k, v in rec("aaaaaaaaaaaa", None).items() if k != "known_bugs"}], 1.0)
    assert "known_signatures" not in without and "KNOWN" not in text_summary(without)


def test_renderers_show_the_matches_under_the_verdict():
    from kpostmortem.render import render

    kb = parse_known_bugs(FILE.replace('fixed_in = "6.1.0-60"', 'fixed_in = "6.1.0-57"'))
    data = {**report(), "known_bugs": kb.match(report())}
    text = render(data, "text")
    head = text[: text.index("EVIDENCE")]
    assert "matches NET-1234, which was supposed to be fixed in 6.1.0-57" in head
    assert "workaround: load foo_nic with safe_reset=1 · https://tracker.example/NET-1234" in head
    assert "known bug NET-99 (no fix recorded)" in head
    md = render(data, "markdown")
    assert "- **known bug NET-99 (no fix recorded)**" in md
    none = render({**report(), "known_bugs": []}, "text")
    assert "no entry of the known-bugs file matches this crash" in none
    assert "known-bugs" not in render(report(), "text")


def test_shell_banner_names_the_known_bug():
    from kpostmortem.frontends.shell import Session, session_banner
    from kpostmortem.report import Report

    rep = Report(known_bugs=parse_known_bugs(FILE).match(report()))
    banner = session_banner(Session(None, rep, None), "drgn's banner")
    assert "         known bug NET-1234: reset op missing on rev B boards (fixed in 6.1.0-60; " in banner
    assert "known bug" not in session_banner(Session(None, Report(), None), "drgn's banner")


def test_batch_text_line_says_known_or_new():
    from kpostmortem.frontends.batch import text_line

    rec = {"ok": True, "exit_code": 0, "signature": "a" * 12, "title": "t", "seconds": 1.0, "path": "/d/1"}
    assert "[" not in text_line(rec)
    assert "  [new]  " in text_line({**rec, "known_bugs": []})
    assert "  [known bug NET-1, NET-2 REGRESSION]  " in text_line(
        {**rec, "known_bugs": [{"id": "NET-1", "status": "known"}, {"id": "NET-2", "status": "regression"}]})


def test_known_add_with_a_kernel_range(tmp_path):
    import json

    rep = tmp_path / "r.json"
    rep.write_text(json.dumps(report()))
    kb = tmp_path / "kb.toml"
    ok = CliRunner().invoke(main, ["known", "add", str(rep), "--id", "K-1", "--by", "function",
                                   "--kernel", ">=6.1, <6.13", "--known-bugs", str(kb)])
    assert ok.exit_code == 0, ok.output
    rule = parse_known_bugs(kb.read_text()).bugs[0].match
    assert rule.kernel.text == ">=6.1, <6.13" and rule.signature is None
    before = kb.read_text()
    bad = CliRunner().invoke(main, ["known", "add", str(rep), "--id", "K-2", "--kernel", ">=6.1,, <7",
                                    "--known-bugs", str(kb)])
    assert bad.exit_code == 2 and "match.kernel: empty constraint" in bad.output
    assert kb.read_text() == before
    printed = CliRunner().invoke(main, ["known", "add", str(rep), "--id", "K-3", "--kernel", "<<6", "--print"])
    assert printed.exit_code == 2 and "<entry>:" in printed.output


def test_the_examples_in_docs_triage_are_valid():
    """docs/triage.md's file example and `known add` output parse, and match what they say."""
    import re
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "triage.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", doc, re.S)
    assert len(blocks) == 2
    example = parse_known_bugs(blocks[0], "docs/triage.md")
    assert [b.id for b in example.bugs] == ["NET-1234"] and example.version_scheme == "deb"
    added = parse_known_bugs(blocks[1], "docs/triage.md")
    assert added.bugs[0].match.signature == "cee66fe7ef52"
