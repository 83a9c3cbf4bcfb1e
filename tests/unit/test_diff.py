"""`kpostmortem diff` logic (verdict/diff.py) and its renderers (render/diff.py) on literal reports."""

import json

from kpostmortem.render.diff import render_diff
from kpostmortem.verdict.diff import align_stacks, diff_reports, stack_functions


def frames(*names):
    return [{"index": i, "function": n, "module": "m" if n.startswith("m_") else None} for i, n in enumerate(names)]


def report(release="6.1.0-57-cloud-amd64", sig="aaaaaaaaaaaa", category="null-pointer-dereference",
           function="m_write", stack=("m_write", "m_trigger.cold", "vfs_write", "ksys_write"),
           cmdline="console=ttyS0 panic=-1", modules=(("m", "1.0", "ABC", "OE"),), panic_on_oops=1):
    return {
        "verdict": {"category": category, "title": f"t in {function}", "signature": sig, "function": function,
                    "module": "m", "source": "m.c:1", "confidence": 0.99},
        "dump": {"path": f"/d/{release}/{sig}", "release": release, "arch": "x86_64", "build_id": release[:6]},
        "summary": {"release": release, "version": "#1 SMP", "cmdline": cmdline, "hostname": "h",
                    "taint": {"letters": "".join(sorted({t for m in modules for t in m[3]}))},
                    "panic_on_oops": panic_on_oops, "panic_on_warn": 0, "panic_timeout": -1},
        "modules": {"loaded": [{"name": n, "version": v, "srcversion": s, "taints": t} for n, v, s, t in modules]},
        "blocked_tasks": {"hung_task_timeout": 120},
        "stack": {"frames": frames(*stack)},
    }


def test_align_by_function_longest_common_subsequence():
    a = frames("x", "common1", "only_a", "common2")
    b = frames("y", "common1", "common2", "only_b")
    rows = align_stacks(a, b)
    pairs = [((r["a"] or {}).get("function"), (r["b"] or {}).get("function"), r["same"]) for r in rows]
    assert pairs == [("x", None, False), (None, "y", False), ("common1", "common1", True),
                     ("only_a", None, False), ("common2", "common2", True), (None, "only_b", False)]


def test_stack_from_clone_names_and_log_records():
    assert [f["function"] for f in stack_functions(report())][:2] == ["m_write", "m_trigger"]
    log_only = {"log": {"records": [{"rip": {"function": "m_write", "module": "m"},
                                     "call_trace": ["m_trigger.cold", "? vfs_write"]}]}}
    assert [f["function"] for f in stack_functions(log_only)] == ["m_write", "m_trigger", "vfs_write"]


def test_same_bug_new_kernel():
    d = diff_reports(report(), report(release="6.12.117+deb12-cloud-amd64"))
    assert d["same_bug"] and not d["kernel"]["same"] and not d["kernel"]["release"]["same"]
    assert d["stacks"]["same"] and d["cmdline"]["same"] and d["sysctls"]["same"]
    assert d["headline"].startswith("The same bug (signature aaaaaaaaaaaa) on different kernels "
                                    "(6.1.0-57-cloud-amd64 → 6.12.117+deb12-cloud-amd64)")


def test_different_bugs_same_environment():
    d = diff_reports(report(), report(sig="bbbbbbbbbbbb", category="bug-assertion", function="m_bug",
                                      stack=("m_bug", "m_trigger", "vfs_write", "ksys_write")))
    assert not d["same_bug"] and d["same_environment"]
    assert not d["stacks"]["same"] and d["stacks"]["common"] == 3
    assert d["headline"] == ("Different bugs (null-pointer-dereference vs bug-assertion) on the same kernel; "
                             "same command line, taints, modules and panic sysctls")


def test_environment_changes():
    b = report(cmdline="console=ttyS0 panic=10 slub_debug=P", panic_on_oops=0,
               modules=(("m", "1.1", "DEF", "OE"), ("p", None, None, "P")))
    d = diff_reports(report(), b)
    assert d["cmdline"]["added"] == ["panic=10", "slub_debug=P"] and d["cmdline"]["removed"] == ["panic=-1"]
    assert d["modules"]["added"] == ["p"] and d["modules"]["removed"] == []
    assert d["modules"]["changed"] == [{"name": "m", "version": {"a": "1.0", "b": "1.1"},
                                        "srcversion": {"a": "ABC", "b": "DEF"}}]
    assert d["taint"]["added"] == ["P"] and d["taint"]["sources"]["b"]["P"] == ["p"]
    oops = next(r for r in d["sysctls"]["values"] if r["name"] == "kernel.panic_on_oops")
    assert (oops["a"], oops["b"], oops["same"]) == (1, 0, False)
    assert "also differ: cmdline, taint, modules, sysctls" in d["headline"]


def test_a_log_without_sysctls_or_build_id_does_not_differ_for_it():
    log = report()
    log["dump"] = {}
    log["summary"]["panic_on_oops"] = None
    log["summary"]["release"] = "6.1.0-57-cloud-amd64"
    del log["blocked_tasks"]
    d = diff_reports(report(), log)
    assert d["kernel"]["same"] and d["sysctls"]["same"]


def test_render_every_format():
    d = diff_reports(report(), report(sig="bbbbbbbbbbbb", function="m_bug", stack=("m_bug", "vfs_write")))
    text = render_diff(d, "text")
    assert text.splitlines()[0] == d["headline"]
    assert "  #0   m_write [m]" in text and "> #0   m_bug [m]" in text and "= #1   vfs_write" in text
    md = render_diff(d, "markdown")
    assert md.startswith("## ") and "### Crashed stacks" in md and md.count("```") == 2
    assert json.loads(render_diff(d, "json"))["same_bug"] is False
