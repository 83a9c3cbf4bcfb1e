"""normalized_report: what the golden files compare, boot-independent."""

from __future__ import annotations

import copy

from kpostmortem.render.normalize import normalized_report


def _report(tail: list[str]) -> dict:
    names = ["crashpoc_timer_update", "crashpoc_timer_fn", "call_timer_fn", "do_idle", "cpu_startup_entry", *tail]
    return {
        "stack": {"frames": [{"index": i, "function": n, "pc": 0xFFFFFFFF81000000 + i} for i, n in enumerate(names)]},
        "log": {"records": [{"kind": "null-deref", "call_trace": list(names)}]},
        "verdict": {"category": "null-pointer-dereference", "evidence": []},
    }


def test_idle_loop_boot_path_is_cut_whatever_cpu_took_the_interrupt():
    boot_cpu = _report(["rest_init", "arch_call_rest_init", "start_kernel", "secondary_startup_64_no_verify"])
    other_cpu = _report(["start_secondary", "secondary_startup_64_no_verify"])
    a, b = normalized_report(copy.deepcopy(boot_cpu)), normalized_report(copy.deepcopy(other_cpu))
    assert a == b
    assert [f["function"] for f in a["stack"]["frames"]][-1] == "cpu_startup_entry"
    assert a["log"]["records"][0]["call_trace"][-1] == "cpu_startup_entry"


def test_stacks_without_the_idle_loop_keep_every_frame():
    report = _report([])
    report["stack"]["frames"] = [f for f in report["stack"]["frames"] if f["function"] != "cpu_startup_entry"]
    out = normalized_report(report)
    assert len(out["stack"]["frames"]) == 4
