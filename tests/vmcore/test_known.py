"""Known bugs and `kpostmortem diff` on real dumps: one entry for two boots of one bug, a
function + module rule across the 6.1 and 6.12 kernels, fixed_in before and after the dump's own
kernel (taken from the dump, never written here), a batch summary that splits known from new, and
the diff of one bug on two kernels and of two bugs on one kernel."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kpostmortem.decode.versions import kernel_versions
from kpostmortem.render.diff import render_diff
from kpostmortem.verdict.diff import diff_reports
from kpostmortem.verdict.known import entry_text, parse_known_bugs

from .analysis import report_of
from .corpus import dump_dir, dump_meta

pytestmark = pytest.mark.vmcore

TWO_BOOTS = ("null-write", "null-write-2")
TWO_KERNELS = ("null-write", "null-write-612")
OTHER_BUG = "bug-on"                       # another crashpoc trigger, same kernel as null-write


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kpostmortem.frontends.cli", *args],
                          capture_output=True, text=True, timeout=600)


def test_two_boots_of_one_bug_match_one_entry():
    a, b = (report_of(n) for n in TWO_BOOTS)
    # A file of an entry per signature rule from each other bug, and one from null-write's report.
    kb = parse_known_bugs(entry_text(report_of(OTHER_BUG), "OTHER-1")
                          + entry_text(a, "CRASH-1", url="https://tracker.example/CRASH-1"))
    for r in (a, b):
        matches = kb.match(r)
        assert [m["id"] for m in matches] == ["CRASH-1"]
        assert {w["key"] for w in matches[0]["why"]} == {"signature", "category", "function", "module"}
    assert kb.match(report_of(OTHER_BUG))[0]["id"] == "OTHER-1"


def test_function_and_module_rule_matches_across_kernels():
    reports = [report_of(n) for n in TWO_KERNELS]
    releases = [r["dump"]["release"] for r in reports]
    assert releases == [dump_meta(n)["release"] for n in TWO_KERNELS]
    series = [kernel_versions(rel).upstream().split(".")[:2] for rel in releases]
    assert series[0] != series[1], "two kernel series"
    kb = parse_known_bugs(entry_text(reports[0], "CRASH-2", by="function"))
    assert kb.bugs[0].match.signature is None
    for r in reports:
        assert [m["id"] for m in kb.match(r)] == ["CRASH-2"]
    assert kb.match(report_of(OTHER_BUG)) == []


def _fixed_in_file(report: dict, fixed_in: str) -> str:
    v = report["verdict"]
    return (f'[[bug]]\nid = "CRASH-3"\nnote = "cfg detached"\nfixed_in = "{fixed_in}"\n[bug.match]\n'
            f'function = "{v["function"]}"\nmodule = "{v["module"]}"\n')


def test_fixed_in_before_and_after_the_dumps_kernel():
    r = report_of("null-write")
    meta = dump_meta("null-write")
    kv = kernel_versions(meta["release"], r["summary"]["version"])
    # One version just below and one just above the release the dump's kernel runs, by dpkg's rules.
    below, above = kv.release + "~", kv.release + "+1"
    regression = parse_known_bugs(_fixed_in_file(r, below)).match(r)[0]
    assert regression["status"] == "regression"
    assert regression["message"] == (f"matches CRASH-3, which was supposed to be fixed in {below}: a regression "
                                     f"or a different bug (this machine runs {kv.release})")
    known = parse_known_bugs(_fixed_in_file(r, above)).match(r)[0]
    assert known["status"] == "known"
    assert known["message"] == f"known bug CRASH-3: cfg detached (fixed in {above}; this machine runs {kv.release})"
    # The package version Debian writes in uname -v is in the dump too: a fix by package version.
    assert kv.package and kv.package == meta["package_version"]
    by_package = parse_known_bugs(_fixed_in_file(r, kv.package)).match(r)[0]
    assert by_package["status"] == "regression" and by_package["running"] == kv.package


def test_analyze_shows_the_match_in_every_format(tmp_path):
    r = report_of("null-write")
    kv = kernel_versions(r["dump"]["release"], r["summary"]["version"])
    kb = tmp_path / "known-bugs.toml"
    kb.write_text(_fixed_in_file(r, kv.release + "~"))
    meta = dump_meta("null-write")
    base = ["analyze", meta["path"], "--vmlinux", meta["vmlinux"]]
    for d in meta["debuginfo"]:
        base += ["--debuginfo", d]
    run = _cli(*base, "--known-bugs", str(kb), "--format", "json")
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert [m["id"] for m in data["known_bugs"]] == ["CRASH-3"]
    assert data["known_bugs"][0]["line"] == 1 and data["known_bugs"][0]["file"] == str(kb)
    text = _cli(*base, "--known-bugs", str(kb))
    assert "matches CRASH-3, which was supposed to be fixed in" in text.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(kb.read_text().replace("function =", "funtcion ="))
    run = _cli(*base, "--known-bugs", str(bad))
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip().splitlines() == [run.stderr.strip()]
    assert f"{bad}:6: bug 'CRASH-3': unknown match key 'funtcion'" in run.stderr


def test_batch_summary_splits_known_from_new(tmp_path):
    kb = tmp_path / "known-bugs.toml"
    kb.write_text(entry_text(report_of("null-write"), "CRASH-1"))
    paths = [dump_meta(n)["path"] for n in (*TWO_BOOTS, OTHER_BUG)]
    run = _cli("batch", "--jobs", "1", "--known-bugs", str(kb), *paths)
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    dumps, summary = lines[:-1], lines[-1]
    assert {d["path"]: [m["id"] for m in d["known_bugs"]] for d in dumps} == {
        dump_meta("null-write")["path"]: ["CRASH-1"], dump_meta("null-write-2")["path"]: ["CRASH-1"],
        dump_meta(OTHER_BUG)["path"]: []}
    assert (summary["known_signatures"], summary["new_signatures"]) == (1, 1)
    assert summary["groups"][0]["known_bugs"] == ["CRASH-1"] and summary["groups"][0]["count"] == 2


def test_diff_one_bug_on_two_kernels():
    a, b = (report_of(n) for n in TWO_KERNELS)
    d = diff_reports(a, b)
    assert d["same_bug"] and d["verdict"]["category"]["same"]
    assert not d["kernel"]["same"]
    releases = tuple(dump_meta(n)["release"] for n in TWO_KERNELS)
    assert (d["kernel"]["release"]["a"], d["kernel"]["release"]["b"]) == releases
    assert not d["kernel"]["build_id"]["same"]
    assert d["stacks"]["rows"][0]["same"] and d["stacks"]["rows"][0]["a"]["function"] == a["verdict"]["function"]
    text = render_diff(d)
    assert text.startswith(f"The same bug (signature {a['verdict']['signature']}) on different kernels")
    for n in TWO_KERNELS:
        assert dump_meta(n)["release"] in text


def test_diff_two_bugs_on_one_kernel_cli():
    paths = [dump_meta(n)["path"] for n in ("null-write", OTHER_BUG)]
    run = _cli("diff", *paths, "--format", "json")
    assert run.returncode == 0, run.stderr
    d = json.loads(run.stdout)
    assert d["kernel"]["same"] and d["cmdline"]["same"] and d["modules"]["same"] and d["sysctls"]["same"]
    assert d["same_environment"] and not d["same_bug"]
    assert not d["stacks"]["same"]
    first = d["stacks"]["rows"][:2]
    assert first[0]["b"] is None and first[1]["a"] is None       # the guilty frames differ
    assert first[0]["a"]["function"] == report_of("null-write")["verdict"]["function"]
    assert first[1]["b"]["function"] == report_of(OTHER_BUG)["verdict"]["function"]
    assert d["stacks"]["common"] >= 1                              # the same way in from user space
    md = _cli("diff", *paths, "--format", "markdown")
    assert md.returncode == 0 and md.stdout.startswith("## Different bugs")


def test_diff_a_dump_and_a_report(tmp_path):
    report = tmp_path / "r.json"
    report.write_text(json.dumps(report_of("null-write-2")))
    run = _cli("diff", dump_meta("null-write")["path"], str(report), "--format", "json")
    assert run.returncode == 0, run.stderr
    d = json.loads(run.stdout)
    assert d["same_bug"] and d["kernel"]["same"]
    junk = tmp_path / "junk"
    junk.write_bytes(bytes(range(256)) * 4)                      # neither a dump, a log nor a report
    bad = _cli("diff", dump_meta("null-write")["path"], str(junk))
    assert bad.returncode == 2 and "not a kpostmortem JSON report" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_diff_a_dump_and_a_log_of_the_same_bug_on_another_kernel():
    log = str(dump_dir("null-write-612") / "console.log")
    run = _cli("diff", dump_meta("null-write")["path"], log, "--format", "json")
    assert run.returncode == 0, run.stderr
    d = json.loads(run.stdout)
    assert d["same_bug"] and d["verdict"]["signature"]["a"] == report_of("null-write")["verdict"]["signature"]
    assert (d["kernel"]["release"]["a"], d["kernel"]["release"]["b"]) == (dump_meta("null-write")["release"],
                                                                          dump_meta("null-write-612")["release"])
    assert d["kernel"]["build_id"]["b"] is None                  # a log has none: not a difference
    assert d["sysctls"]["same"]                                  # nor sysctls
    assert d["stacks"]["rows"][0]["same"]


def test_analyze_a_log_matches_known_bugs(tmp_path):
    kb = tmp_path / "known-bugs.toml"
    kb.write_text(entry_text(report_of("null-write"), "CRASH-1"))
    run = _cli("analyze", str(dump_dir("null-write-2") / "console.log"), "--known-bugs", str(kb), "--format", "json")
    assert run.returncode == 0, run.stderr
    assert [m["id"] for m in json.loads(run.stdout)["known_bugs"]] == ["CRASH-1"]


def test_drgn_session_matches_the_default_file(tmp_path, monkeypatch, capsys):
    from kpostmortem.session import crash_analysis

    from .corpus import open_program

    kb = tmp_path / "known-bugs.toml"
    kb.write_text(entry_text(report_of("null-write"), "CRASH-1"))
    monkeypatch.setenv("KPOSTMORTEM_KNOWN_BUGS", str(kb))
    prog = open_program("null-write")
    report, _ctx = crash_analysis(prog)
    assert [m["id"] for m in report.known_bugs] == ["CRASH-1"]
    # A malformed default file is a warning in a session, and the analysis still runs.
    kb.write_text("[[bug]]\nid = \"X\"\n")
    report, _ctx = crash_analysis(prog, refresh=True)
    assert report.known_bugs is None and report.verdict.signature
    assert f"warning: known bugs not matched: {kb}:1: bug 'X': a [bug.match] table" in capsys.readouterr().err
