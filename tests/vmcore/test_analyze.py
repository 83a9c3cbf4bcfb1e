"""End to end on the real corpus: every scenario's verdict is the one written before the crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kpostmortem.render.normalize import explain_differences, normalized_report

from .analysis import report_of
from .corpus import load_manifest

SCENARIOS = [s for s in load_manifest() if not s["expect"].get("damaged")]
GOLDEN = Path(__file__).parent.parent / "golden"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s["name"])
def test_verdict_matches_expectation(scenario):
    v = report_of(scenario["name"])["verdict"]
    exp = scenario["expect"]
    got = (v["category"], v["function"], v["module"] or "")
    want = (exp["category"], exp["function"], exp["module"])
    assert got == want, f"{scenario['name']}: expected {want}, got {got} ({v['title']})"
    assert v["confidence"] >= 0.5, f"{scenario['name']}: confidence {v['confidence']}"
    assert v["title"] and "0x" not in v["title"], v["title"]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s["name"])
def test_no_analyzer_failed(scenario):
    outcomes = report_of(scenario["name"])["analyzers"]
    failed = [o for o in outcomes if o["status"] == "failed"]
    assert not failed, f"{scenario['name']}: {failed}"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s["name"])
def test_golden_normalised_report(scenario, request):
    """The normalised report (addresses as symbol+offset, no timings) equals the golden one."""
    got = normalized_report(report_of(scenario["name"]))
    path = GOLDEN / f"{scenario['name']}.json"
    if request.config.getoption("--regen-golden"):
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        return
    assert path.exists(), f"no golden file {path}: run pytest --regen-golden"
    want = json.loads(path.read_text())
    # One line that says whether a kernel update or the analysis made the difference.
    assert got == want, explain_differences(scenario["name"], want, got)


@pytest.mark.parametrize("other", ["null-write-2", "null-write-full", "null-write-elf", "threads-2k", "parked-d"])
def test_same_crash_normalises_to_the_same_report(other):
    """Separate boots (KASLR, pids, timings) and other dump formats of one bug: equal reports.
    threads-2k is the same bug with 2,000 more (sleeping) tasks, parked-d with two D tasks: nothing
    but task counts and the blocked-task list differ."""
    a = normalized_report(report_of("null-write"))
    b = normalized_report(report_of(other))
    for r in (a, b):
        r.pop("dump")  # format, dump level and compression differ by design
    assert a == b


def test_debug_info_found_by_release_under_a_debuginfo_root():
    """No --vmlinux: the -dbg package's tree (usr/lib/debug/boot/vmlinux-REL, …/lib/modules/REL)
    given as one --debuginfo root is searched like a distribution's /usr/lib/debug."""
    from kpostmortem.pipeline import analyze

    from .corpus import dump_dir, dump_meta

    meta = dump_meta("null-write")
    root = meta["vmlinux"].split("/usr/lib/debug/")[0]
    module_dir = [d for d in meta["debuginfo"] if "/usr/lib/debug/" not in d]
    report = analyze(str(dump_dir("null-write") / "vmcore"), None, [root, *module_dir], command=[]).to_dict()
    assert report["debug_info"]["vmlinux"] == meta["vmlinux"]
    assert report["verdict"]["function"] == "crashpoc_null_write"
    assert report["debug_info"]["vmlinux_build_id"] == report["dump"]["build_id"]
