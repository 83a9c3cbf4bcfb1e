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
from kpostmortem.helpers.locks import (
    PRIMITIVES,
    WaitForGraph,
    rcu_gp_holders,
    spinlock_holder,
    wait_for_graph,
    waiting_on,
)
from kpostmortem.helpers.stack import is_uninterruptible
from kpostmortem.helpers.trace import frames_of
from kpostmortem.report import Report

MAX_TASKS = 100_000
MAX_REPORTED = 20
PF_KTHREAD = 0x00200000
"""task_struct.flags bit of kernel threads (include/linux/sched.h, unchanged since 2.6.27)."""
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
    if sweep is not None and (sweep.walk_errors or sweep.state_errors):
        # Some tasks were out of reach, or their state was (pages excluded from the dump): a
        # count of D tasks would be a guess. Fail as the reads failed, so the report names the
        # excluded pages.
        raise (sweep.walk_errors or sweep.state_errors)[0]
    blocked = blocked_tasks(ctx.prog, None if sweep is None else sweep.uninterruptible)
    named = {r.pid for r in ctx.log.records if r.kind == "hung-task" and r.pid is not None}
    timeout = hung_task_timeout(ctx.prog)
    threshold = timeout if timeout else DEFAULT_HUNG_TASK_TIMEOUT
    # The tasks the log names first, so that they are among the ones reported.
    blocked.sort(key=lambda te: te[1]["pid"] not in named)
    unwound: dict[int, drgn.Object] = {}
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
            unwound[task.value_()] = task
        except (drgn.FaultError, ValueError, LookupError) as e:
            entry["frames"] = []
            entry["problem"] = f"stack not readable: {e}"
    report.blocked_tasks = {
        "count": len(blocked),
        "hung_task_timeout": timeout,
        "tasks": [entry for _task, entry in blocked[:MAX_REPORTED]],
    }
    known = None if sweep is None else getattr(sweep, "task_addresses", None)
    wait_for = _wait_for(ctx, list(unwound.values()), report.blocked_tasks["tasks"], known)
    spin = _spinning_on(ctx)
    if spin:
        wait_for["spinlock"] = spin
    rcu = _rcu_holders(ctx) if any(r.kind == "rcu-stall" for r in ctx.log.records) else None
    if rcu:
        wait_for["rcu"] = rcu
    if wait_for["links"] or spin or rcu:
        report.blocked_tasks["wait_for"] = wait_for


def _rcu_holders(ctx: Context) -> dict | None:
    """An RCU stall: the CPUs and tasks that hold the grace period up, from the rcu_node tree
    (not only the log), each with its stack."""
    holders = []
    for h in rcu_gp_holders(ctx.prog):
        entry = {"cpu": h.cpu, "pid": h.pid, "comm": h.comm, "state": h.state, "how": h.how}
        if h.task is not None:
            try:
                entry["frames"] = [dataclasses.asdict(f) for f in frames_of(ctx.prog, ctx.task_trace(h.task))]
            except (drgn.FaultError, ValueError, LookupError):
                entry["frames"] = []
        holders.append(entry)
    return {"holders": holders} if holders else None


def _flat_frames(trace) -> list[drgn.StackFrame]:
    segments = getattr(trace, "segments", None)
    return list(trace) if segments is None else [f for seg in segments for f in seg.frames]


def _link_dict(link, with_frames: list | None) -> dict:
    try:
        kthread: bool | None = bool(link.task.flags.value_() & PF_KTHREAD)
    except (AttributeError, drgn.FaultError):
        kthread = None
    d = {"pid": link.pid, "comm": link.comm, "state": link.state, "kernel_thread": kthread,
         "wait": link.wait.to_dict() if link.wait is not None else None,
         "holder": link.holder.to_dict() if link.holder is not None else None}
    if link.holder is not None and link.holder.task is not None:
        d["holder"]["pid"] = link.holder.pid
    if with_frames is not None:
        d["frames"] = with_frames
    return d


def _wait_for(ctx: Context, tasks: list[drgn.Object], entries: list[dict], known: set[int] | None) -> dict:
    """The wait-for graph from the blocked tasks whose stacks were unwound: what each waits on,
    who holds it, the chains and the cycles. Holders outside the list get their stack here."""
    graph: WaitForGraph = wait_for_graph(ctx.prog, tasks, unwind=lambda t: _flat_frames(ctx.task_trace(t)),
                                         known_tasks=known)
    listed = {e["pid"] for e in entries if e.get("frames")}
    links = []
    for link in graph.links.values():
        frames = None
        if link.pid not in listed:
            try:
                frames = [dataclasses.asdict(f) for f in frames_of(ctx.prog, ctx.task_trace(link.task))]
            except (drgn.FaultError, ValueError, LookupError):
                frames = []
        links.append(_link_dict(link, frames))
    by_addr = {a: link.pid for a, link in graph.links.items()}
    chains = []
    for task in tasks:
        chain = graph.chain(task.value_())
        if len(chain) > 1 or (chain and chain[0].wait is not None):
            chains.append([link.pid for link in chain])
    return {"links": links, "chains": chains,
            "cycles": [[by_addr[a] for a in cycle] for cycle in graph.cycles]}


def _spinning_on(ctx: Context) -> dict | None:
    """A crashed CPU stopped (by the watchdog's interrupt) inside a spinlock's slow path: the
    lock, and the task on another CPU whose frames refer to it."""
    try:
        frames = _flat_frames(ctx.trace)
        task = ctx.panic_task
    except Exception:  # noqa: BLE001 - the stack analyzer reports an unreadable stack
        return None
    # The frames the watchdog's interrupt stopped: the first interrupted frame after ones that
    # were not (the kdump register snapshot at the top counts as interrupted too).
    first = next((i for i in range(1, len(frames)) if frames[i].interrupted and not frames[i - 1].interrupted),
                 None)
    if first is None or not any(
            PRIMITIVES.get((f.name or "").split(".", 1)[0], ("",))[0] == "spinlock" for f in frames[first:first + 16]):
        return None
    wait = waiting_on(task, frames[first:])
    if wait is None or wait.kind != "spinlock" or wait.object is None:
        return None
    try:
        cpu = int(ctx.crashed_thread.object.cpu) if hasattr(ctx.crashed_thread.object, "cpu") else None
    except (drgn.FaultError, AttributeError):
        cpu = None
    if cpu is None:
        from drgn.helpers.linux.sched import task_cpu

        cpu = task_cpu(task)
    holder = spinlock_holder(wait.object, exclude_cpu=cpu)
    out = {"pid": int(task.pid), "comm": task.comm.string_().decode(errors="replace"), "cpu": cpu,
           "wait": dataclasses.replace(wait, site_frame=(wait.site_frame or 0) + first).to_dict(),
           "holder": holder.to_dict()}
    if holder.task is not None:
        out["holder"]["pid"] = holder.pid
        try:
            out["holder_frames"] = [dataclasses.asdict(f) for f in frames_of(ctx.prog, ctx.task_trace(holder.task))]
        except (drgn.FaultError, ValueError, LookupError):
            out["holder_frames"] = []
    return out
