"""Stack-checks analyzer: every task's stack-end canary, the crashed task's stack bounds."""

from __future__ import annotations

from dataclasses import asdict

from ..context import Context
from ..helpers.stack import damaged_canaries, thread_size
from ..report import Report


def run(ctx: Context, report: Report) -> None:
    damaged, checked, unreadable = damaged_canaries(ctx.prog)
    pid = report.crashed_task.get("pid")
    report.stack_checks = {
        "canaries_checked": checked,
        "canaries_unreadable": unreadable,
        "canaries_damaged": [asdict(d) for d in damaged],
        "crashed_task_canary_damaged": any(d.pid == pid for d in damaged),
        "thread_size": thread_size(ctx.prog),
    }
