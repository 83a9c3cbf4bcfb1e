"""Blocked-tasks analyzer: tasks in uninterruptible sleep (D), how long, and where they wait.

The hung-task detector names one task; the dump shows them all. Every D task is listed; the
stacks are unwound for the ones a hung-task report is about: those the log names in a hung-task
record and those blocked for at least the hung-task timeout. Unwinding and symbolising a stack
costs a few milliseconds of first-time DWARF lookups, so a short wait (a kworker between two
I/Os) is listed with its state and age only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

import drgn
from drgn.helpers.linux.pid import for_each_task

from kpostmortem.context import Context
from kpostmortem.helpers.stack import is_uninterruptible
from kpostmortem.helpers.trace import frames_of
from kpostmortem.report import Report

MAX_TASKS = 100_000
MAX_REPORTED = 20
DEFAULT_HUNG_TASK_TIMEOUT = 120
"""CONFIG_DEFAULT_HUNG_TASK_TIMEOUT on most distributions, used when the sysctl is unreadable."""


def _hz(prog: drgn.Program) -> int:
    try:
        return int(prog["HZ"]) if "HZ" in prog else 250
    except (LookupError, TypeError):
        return 250


def _blocked_seconds(prog: drgn.Program, task: drgn.Object, hz: int, jiffies: int | None) -> float | None:
    """Seconds since the task last ran, from ``last_switch_time`` (CONFIG_DETECT_HUNG_TASK)."""
    if jiffies is None:
        return None
    try:
        switched = int(task.last_switch_time)
    except (AttributeError, LookupError, drgn.FaultError):
        return None
    if not switched:
        return None
    return round(((jiffies - switched) & (2**64 - 1)) / hz, 1)


def hung_task_timeout(prog: drgn.Program) -> int | None:
    """``kernel.hung_task_timeout_secs`` at the crash (0: detector off), None when unknown."""
    try:
        return int(prog["sysctl_hung_task_timeout_secs"])
    except (LookupError, drgn.FaultError):
        return None


def blocked_tasks(prog: drgn.Program, tasks: Iterable[drgn.Object] | None = None) -> list[tuple[drgn.Object, dict]]:
    """Every task in D state, as (task, entry) with pid, comm and blocked_seconds.

    :param tasks: the D tasks already found (the canary sweep's), or None to walk every task
    """
    hz = _hz(prog)
    try:
        jiffies: int | None = int(prog["jiffies"])
    except (LookupError, drgn.FaultError):
        jiffies = None
    if tasks is None:
        tasks = _walk_uninterruptible(prog)
    out = []
    for task in tasks:
        try:
            entry = {"pid": int(task.pid), "comm": task.comm.string_().decode(errors="replace"),
                     "blocked_seconds": _blocked_seconds(prog, task, hz, jiffies)}
        except drgn.FaultError:
            continue
        out.append((task, entry))
    return out


def _walk_uninterruptible(prog: drgn.Program) -> Iterator[drgn.Object]:
    seen: set[int] = set()
    for task in for_each_task(prog):
        addr = task.value_()
        if addr in seen or len(seen) >= MAX_TASKS:
            break
        seen.add(addr)
        if is_uninterruptible(task):
            yield task


def run(ctx: Context, report: Report) -> None:
    try:
        sweep = ctx.canary_sweep
    except Exception:  # noqa: BLE001 - the stack checks report their own failure; walk here instead
        sweep = None
    if sweep is not None and sweep.walk_errors:
        # Some tasks were out of reach (pages excluded from the dump): a count of D tasks
        # would be a guess. Fail as the walk failed, so the report names the excluded pages.
        raise sweep.walk_errors[0]
    blocked = blocked_tasks(ctx.prog, None if sweep is None else sweep.uninterruptible)
    named = {r.pid for r in ctx.log.records if r.kind == "hung-task" and r.pid is not None}
    timeout = hung_task_timeout(ctx.prog)
    threshold = timeout if timeout else DEFAULT_HUNG_TASK_TIMEOUT
    # The tasks the log names first, so that they are among the ones reported.
    blocked.sort(key=lambda te: te[1]["pid"] not in named)
    for task, entry in blocked[:MAX_REPORTED]:
        secs = entry["blocked_seconds"]
        if entry["pid"] not in named and (secs is None or secs < threshold):
            entry["frames"] = None
            how_long = "for an unknown time" if secs is None else f"for {secs} s"
            entry["frames_omitted"] = (f"stack not unwound: blocked {how_long}, under the hung-task timeout "
                                       f"({threshold} s), and named by no hung-task report")
            continue
        try:
            frames = frames_of(ctx.prog, ctx.task_trace(task))
            entry["frames"] = [dataclasses.asdict(f) for f in frames]
        except (drgn.FaultError, ValueError, LookupError) as e:
            entry["frames"] = []
            entry["problem"] = f"stack not readable: {e}"
    report.blocked_tasks = {
        "count": len(blocked),
        "hung_task_timeout": timeout,
        "tasks": [entry for _task, entry in blocked[:MAX_REPORTED]],
    }
