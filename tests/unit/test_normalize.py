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


def _kernel_update_pair() -> tuple[dict, dict]:
    """The same crash on two ABIs of one Debian series, as two report dicts."""
    def report(release: str, version: str, vfs_line: int, vfs_off: int) -> dict:
        frames = [
            {"index": 0, "function": "foo_reset", "module": "foo", "offset": 0x1E,
             "symbol": "foo_reset+0x1e", "source": "foo.c:162"},
            {"index": 1, "function": "vfs_write", "module": None, "offset": vfs_off,
             "symbol": f"vfs_write+{vfs_off:#x}", "source": f"fs/read_write.c:{vfs_line}"},
        ]
        return {
            "dump": {"release": release},
            "summary": {"release": release, "version": version},
            "stack": {"frames": frames},
            "log": {"records": [{"kind": "null-deref", "call_trace": ["foo_reset", "vfs_write"],
                                 "text": f"CPU: 1 PID: 9 Comm: sh Tainted: G OE {release} #1"}]},
            "verdict": {"category": "null-pointer-dereference", "module": "foo", "source": "foo.c:162",
                        "evidence": []},
        }
    return (report("6.1.0-56-cloud-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)", 582, 0xC7),
            report("6.1.0-57-cloud-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-28)", 590, 0xD1))


def test_a_kernel_update_of_the_series_normalises_away():
    a, b = (normalized_report(r) for r in _kernel_update_pair())
    assert a == b
    assert a["dump"]["release"] == a["summary"]["release"] == "6.1.*-cloud-amd64"
    assert "6.1.0-5" not in str(a)
    # The module's own line stays; the kernel's frame keeps its function and file.
    assert a["stack"]["frames"][0]["source"] == "foo.c:162"
    assert a["stack"]["frames"][1]["source"] == "fs/read_write.c"
    assert a["stack"]["frames"][1]["symbol"] == "vfs_write"


def test_another_series_or_a_moved_module_line_still_differs():
    a, b = _kernel_update_pair()
    b["dump"]["release"] = b["summary"]["release"] = "6.12.117+deb12-cloud-amd64"
    assert normalized_report(a) != normalized_report(b)
    a, b = _kernel_update_pair()
    b["stack"]["frames"][0]["source"] = "foo.c:163"
    assert normalized_report(a) != normalized_report(b)


def test_the_failure_line_says_whether_the_kernel_or_the_analysis_changed():
    from kpostmortem.render.normalize import explain_differences

    a, b = (normalized_report(r) for r in _kernel_update_pair())
    b["stack"]["frames"][1]["function"] = b["stack"]["frames"][1]["symbol"] = "vfs_write_iter"
    b["log"]["records"][0]["call_trace"][1] = "vfs_write_iter"
    line = explain_differences("null-write", a, b)
    assert "\n" not in line and "only the kernel's own code differs" in line, line
    b["verdict"]["category"] = "bad-page-fault"
    line = explain_differences("null-write", a, b)
    assert "the analysis differs" in line and "verdict.category" in line, line


def test_the_task_an_interrupt_landed_on_is_not_part_of_an_interrupt_bug():
    """A timer callback's bug: the IRQ frames stay; the task underneath (idle, a kworker) goes."""
    def report(task: list[str], comm: str) -> dict:
        irq = ["drv_timer_fn", "call_timer_fn", "asm_sysvec_apic_timer_interrupt"]
        frames = [{"index": i, "function": n, "module": "drv" if i == 0 else None, "segment": "IRQ"}
                  for i, n in enumerate(irq)]
        frames += [{"index": len(irq) + i, "function": n, "module": None, "segment": "TASK"}
                   for i, n in enumerate(task)]
        return {
            "crashed_task": {"comm": comm, "context": "softirq", "kernel_thread": True},
            "stack": {"frames": frames},
            "log": {"records": [{"kind": "null-deref", "comm": comm, "call_trace": irq + task}]},
            "summary": {"first_oops": {"comm": comm}},
            "verdict": {"category": "null-pointer-dereference", "module": "drv", "guilty_frame": 0,
                        "evidence": []},
        }
    idle = normalized_report(report(["default_idle", "do_idle", "cpu_startup_entry"], "swapper/1"))
    busy = normalized_report(report(["__vunmap", "process_one_work", "worker_thread"], "kworker/0:1"))
    assert idle == busy
    assert [f["function"] for f in idle["stack"]["frames"]][-1] == "asm_sysvec_apic_timer_interrupt"
    # A bug in the interrupted task itself (a soft lockup's spinning loop) keeps it all.
    lockup = report(["drv_spin", "vfs_write"], "sh")
    lockup["verdict"]["guilty_frame"] = 3
    assert [f["function"] for f in normalized_report(lockup)["stack"]["frames"]][-1] == "vfs_write"


def test_an_out_of_tree_build_directory_is_not_part_of_the_bug():
    from kpostmortem.render.normalize import mask

    a = mask("kernel BUG at /root/.cache/kpostmortem/kernels/6.1/crashpoc/crashpoc.c:211!")
    b = mask("kernel BUG at /home/ci/build/crashpoc/crashpoc.c:211!")
    assert a == b == "kernel BUG at …/crashpoc.c:211!"
    assert mask("kernel BUG at lib/list_debug.c:30!") == "kernel BUG at lib/list_debug.c:30!"


def test_whose_slab_tracks_an_object_carries_is_timing_not_the_bug():
    def report(who: str) -> dict:
        return {"fault": {"slab_object": {"cache": "kmalloc-32", "allocated": False,
                                          "free": {"by": who, "stack": [who]}, "alloc": {"by": who}}},
                "verdict": {"category": "memory-corruption", "evidence": [
                    {"kind": "memory", "text": f"last freed by {who}() (pid 7, CPU 1): {who}.cold ← vfs_write"}],
                    "explanation": f"The object was last freed by {who}() and last allocated by {who}()."}}
    a, b = normalized_report(report("tomoyo_encode2")), normalized_report(report("crashpoc_queue_req"))
    assert a == b
    assert a["fault"]["slab_object"] == {"cache": "kmalloc-32", "free": {"recorded": True},
                                         "alloc": {"recorded": True}}
