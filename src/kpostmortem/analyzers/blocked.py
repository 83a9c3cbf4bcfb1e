"""Blocked-tasks analyzer: tasks in uninterruptible sleep (D), how long, and where they wait.

The hung-task detector names one task; the dump shows them all, with their stacks.
"""

from __future__ import annotations

import dataclasses

import drgn
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.sched import task_state_to_char

from ..context import Context
from ..helpers.trace import frames_of
from ..report import Report

MAX_TASKS = 100_000
MAX_REPORTED = 20


def _blocked_seconds(prog: drgn.Program, task: drgn.Object) -> float | None:
    """Seconds since the task last ran, from ``last_switch_time`` (CONFIG_DETECT_HUNG_TASK)."""
    try:
        hz = int(prog["HZ"]) if "HZ" in prog else 250
    except (LookupError, TypeError):
        hz = 250
    try:
        switched = int(task.last_switch_time)
        jiffies = int(prog["jiffies"])
    except (AttributeError, LookupError, drgn.FaultError):
        return None
    if not switched:
        return None
    return round(((jiffies - switched) & (2**64 - 1)) / hz, 1)


def run(ctx: Context, report: Report) -> None:
    blocked = []
    seen: set[int] = set()
    for task in for_each_task(ctx.prog):
        addr = task.value_()
        if addr in seen or len(seen) >= MAX_TASKS:
            break
        seen.add(addr)
        try:
            if task_state_to_char(task) != "D":
                continue
            entry = {"pid": int(task.pid), "comm": task.comm.string_().decode(errors="replace"),
                     "blocked_seconds": _blocked_seconds(ctx.prog, task)}
        except drgn.FaultError:
            continue
        if len(blocked) < MAX_REPORTED:
            try:
                frames = frames_of(ctx.prog, ctx.task_trace(task))
                entry["frames"] = [dataclasses.asdict(f) for f in frames]
            except (drgn.FaultError, ValueError, LookupError) as e:
                entry["frames"] = []
                entry["problem"] = f"stack not readable: {e}"
        blocked.append(entry)
    report.blocked_tasks = {"count": len(blocked), "tasks": blocked[:MAX_REPORTED]}
