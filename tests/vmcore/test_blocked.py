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
