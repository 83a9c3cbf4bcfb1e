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


def test_short_waits_are_listed_without_unwinding():
    report = report_of("null-write")
    blocked = report["blocked_tasks"]
    assert blocked["count"] == len(blocked["tasks"]) >= 1
    assert blocked["hung_task_timeout"] == 120  # Debian's default, as the dump has it
    for task in blocked["tasks"]:
        assert task["frames"] is None
        assert task["frames_omitted"].startswith("stack not unwound: blocked ")
        assert "(120 s)" in task["frames_omitted"]


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
    """The blocked-tasks list comes from the canary sweep's single walk; it must miss none."""
    # hung-task and null-write have D tasks (the hung task; a kworker); threads-2k has
    # 2,000 sleeping kthreads, none of them in D.
    for name, has_d in (("hung-task", True), ("null-write", True), ("threads-2k", False)):
        blocked = report_of(name)["blocked_tasks"]
        expected = _d_state_pids_by_drgn(name)
        assert bool(expected) == has_d, name
        assert blocked["count"] == len(expected), name
        assert {t["pid"] for t in blocked["tasks"]} <= expected, name


def test_unreachable_tasks_fail_the_count_instead_of_guessing():
    """6.12 at -d 31: the PID table is excluded; no D-task count is better than a wrong one."""
    report = report_of("null-write-d31")
    outcome = next(o for o in report["analyzers"] if o["name"] == "blocked-tasks")
    assert outcome["status"] == "failed" and "excluded from the dump" in outcome["detail"]
    assert not report["blocked_tasks"]
