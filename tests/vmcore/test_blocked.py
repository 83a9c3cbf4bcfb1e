"""Blocked (D-state) tasks on real dumps: every one listed, stacks unwound where they matter."""

from __future__ import annotations

from .analysis import report_of


def test_hung_task_named_by_the_log_has_its_stack_unwound():
    report = report_of("hung-task")
    blocked = report["blocked_tasks"]
    hung = next(r for r in report["log"]["records"] if r["kind"] == "hung-task")
    task = next(t for t in blocked["tasks"] if t["pid"] == hung["pid"])
    functions = [f["function"] for f in task["frames"]]
    assert "crashpoc_wait_for_fw" in functions, functions
    assert "schedule" in functions
    assert "frames_omitted" not in task
    # The scenario sets kernel.hung_task_timeout_secs=2: read from the dump, not assumed.
    assert blocked["hung_task_timeout"] == 2
    assert task["blocked_seconds"] >= 2


def _hung_task_timeout(name: str) -> int:
    """kernel.hung_task_timeout_secs as the dump holds it, read with drgn."""
    from .corpus import open_program

    return open_program(name)["sysctl_hung_task_timeout_secs"].value_()


def test_short_waits_are_listed_without_unwinding():
    """parked-d parks two kthreads in D just before its crash (crashpoc's park_d): blocked
    far less than the hung-task timeout, named by no hung-task report, so listed with the
    reason their stacks were not unwound."""
    report = report_of("parked-d")
    blocked = report["blocked_tasks"]
    timeout = _hung_task_timeout("parked-d")
    assert blocked["hung_task_timeout"] == timeout
    parked = [t for t in blocked["tasks"] if t["comm"].startswith("crashpoc-park/")]
    assert len(parked) == 2, blocked["tasks"]
    assert blocked["count"] == len(blocked["tasks"]) >= 2
    for task in blocked["tasks"]:
        assert task["frames"] is None
        assert task["frames_omitted"].startswith("stack not unwound: blocked ")
        assert f"({timeout} s)" in task["frames_omitted"]


def _d_state_pids_by_drgn(name: str) -> set[int]:
    """The D tasks as drgn's own helpers find them: every task, task_state_to_char."""
    from drgn.helpers.linux.pid import for_each_task
    from drgn.helpers.linux.sched import task_state_to_char

    from kpostmortem.inputs.dump import open_dump

    from .corpus import dump_meta

    meta = dump_meta(name)
    prog = open_dump(meta["path"], meta["vmlinux"], meta["debuginfo"]).prog
    return {int(t.pid) for t in for_each_task(prog) if task_state_to_char(t) == "D"}


def test_d_tasks_from_the_canary_sweep_are_the_ones_drgn_finds():
    """The blocked-tasks list comes from the canary sweep's single walk; it must miss none.
    hung-task and parked-d have D tasks by design; threads-2k has 2,000 sleeping kthreads in
    S. Whatever else a guest had in D at the crash (a kworker waiting on I/O) is counted by
    both sides alike."""
    for name, designed in (("hung-task", 1), ("parked-d", 2), ("threads-2k", 0)):
        blocked = report_of(name)["blocked_tasks"]
        expected = _d_state_pids_by_drgn(name)
        assert len(expected) >= designed, name
        assert blocked["count"] == len(expected), name
        assert {t["pid"] for t in blocked["tasks"]} <= expected, name


def _task_walk_excluded(name: str) -> bool:
    """Whether drgn's own walk over every task hits a page makedumpfile left out."""
    import drgn
    from drgn.helpers.linux.pid import for_each_task

    from .corpus import open_program

    try:
        for task in for_each_task(open_program(name)):
            task.pid.value_(), task.__state.value_()
    except drgn.FaultError as e:
        assert "excluded" in str(e).lower(), e
        return True
    return False


def test_unreachable_tasks_fail_the_count_instead_of_guessing():
    """6.12 at -d 31 (a makedumpfile older than the kernel): slab pages are misclassified and
    left out, which ones depends on where the slab lay on that boot. When drgn's own task walk
    hits one, no D-task count is better than a wrong one; when it does not, the count is drgn's."""
    report = report_of("null-write-d31")
    outcome = next(o for o in report["analyzers"] if o["name"] == "blocked-tasks")
    if _task_walk_excluded("null-write-d31"):
        assert outcome["status"] == "failed" and "excluded from the dump" in outcome["detail"]
        assert not report["blocked_tasks"]
    else:
        assert outcome["status"] == "ok", outcome
        assert report["blocked_tasks"]["count"] == len(_d_state_pids_by_drgn("null-write-d31"))
