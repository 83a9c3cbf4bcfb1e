"""Stack-checks analyzer: every task's stack-end canary; for the crashed task, its SP against
the stack bounds and guard pages, per-frame stack use, recursion, stack-protector failures, the
CPU's exception stacks, and whether its trace can be trusted (with a ``bt -t`` guess if not).

Each part that cannot be read is listed in ``problems``; the others are still reported.
See docs/stack-checks.md for the keys of ``report.stack_checks``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import drgn
from drgn.helpers.linux.sched import task_cpu

from kpostmortem.context import Context
from kpostmortem.helpers.stack import (
    StackRange,
    recursion_in,
    scan_stack_for_text,
    stack_bounds,
    stack_protector_failure,
    stack_ranges,
    stack_usage,
    text_addresses_in,
    thread_size,
    trace_reliability,
)
from kpostmortem.report import Report

# Errors a part of the checks may hit on a damaged dump; anything else is a bug and fails
# the analyzer.
_READ_ERRORS = (drgn.FaultError, LookupError, ValueError, OverflowError)


# Functions kept per used exception stack, outermost first.
_EXCEPTION_FUNCTIONS = 8


def _part(sc: dict[str, Any], what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except _READ_ERRORS as e:
        sc["problems"].append(f"{what}: {type(e).__name__}: {e}")
        return None


def _headroom(c: Any) -> dict[str, Any]:
    return {"pid": c.pid, "comm": c.comm, "stack_not_used": c.stack_not_used}


def _canaries(ctx: Context, sc: dict[str, Any]) -> None:
    sweep = ctx.canary_sweep
    task_addr = ctx.panic_task.value_()
    sc.update(
        canaries_checked=sweep.checked,
        canaries_intact=sweep.intact,
        canaries_unreadable=sweep.unreadable,
        canaries_no_stack=sweep.no_stack,
        tasks_unreachable=sweep.unreachable,
        canaries_damaged=[c.to_dict() for c in sweep.damaged],
        crashed_task_canary_damaged=any(c.task == task_addr for c in sweep.damaged),
        least_headroom=[_headroom(c) for c in sweep.least_headroom],
    )
    sc["canary_errors"] = list(sweep.errors)


def _cpu_stacks_used(ctx: Context, ranges: list[StackRange], sc: dict[str, Any]) -> None:
    """Which of the crashed CPU's exception stacks hold return addresses, and which.

    A CPU's double-fault stack is empty until a double fault runs on it: return addresses
    there (exc_double_fault, handle_stack_overflow…) are the double fault, read from memory.
    """
    used = []
    for r in ranges:
        if r.kind != "exception" or r.guard:
            continue
        scan = text_addresses_in(ctx.prog, r.start, r.end)
        functions = scan.functions()
        if functions:
            # Outermost first reads as the order things happened: the exception entry first. The
            # innermost words are mostly stale (printk's helpers from the oops): keep the head.
            used.append({"name": r.name, "cpu": r.cpu, "stack": r.description, "start": r.start,
                         "end": r.end, "functions": functions[::-1][:_EXCEPTION_FUNCTIONS]})
    sc["exception_stacks_used"] = used
    sc["double_fault"] = next((u for u in used if u["name"] == "DF"), None)


def _first_sp(frames: list[Any]) -> tuple[int, Any] | None:
    for i, f in enumerate(frames):
        try:
            return i, f.sp
        except LookupError:
            continue
    return None


def _bad_stack_exception(prog: drgn.Program, frames: list[Any]) -> tuple[int, int, int] | None:
    """arm64: an exception taken with the SP off the task stack runs on the per-CPU overflow
    stack; entry.S's ``__bad_stack`` saves the faulting pt_regs at its own SP and calls
    handle_bad_stack(regs). (index of the frame after it, the faulting SP, its PC), or None."""
    k = next((i for i, f in enumerate(frames) if f.name == "__bad_stack"), None)
    if k is None or k + 1 >= len(frames):
        return None
    try:
        regs = drgn.Object(prog, "struct pt_regs", address=frames[k].sp)
        return k + 1, int(regs.sp), int(regs.pc)
    except (LookupError, drgn.FaultError, ValueError):
        return None


def _crashed_task(ctx: Context, sc: dict[str, Any]) -> None:
    task = ctx.panic_task
    trace = ctx.trace
    frames = list(trace)
    bounds = stack_bounds(task)
    sc["stack_bounds"] = bounds.to_dict()
    ranges = stack_ranges(task)
    first = _first_sp(frames)
    sc["first_sp"] = None
    sc["guard_page_hit"] = None
    if first is not None:
        index, sp = first
        where = next((r for r in ranges if sp in r), None)
        sc["first_sp"] = {"frame": index, "sp": sp, "stack": where.description if where else None}
    # The frame that ran past the end: the innermost one whose SP is in the page below the
    # task stack (the first frame, when the dump's registers are those of the fault).
    for i, f in enumerate(frames):
        try:
            sp = f.sp
        except LookupError:
            continue
        if bounds.in_guard(sp):
            sc["guard_page_hit"] = {
                "frame": i,
                "function": f.name,
                "sp": sp,
                "below_by": bounds.start - sp,
                "guard_start": bounds.guard_start,
                "guard_end": bounds.start,
                "guard_mapped": bounds.guard_mapped,
                "unmapped_guard": bounds.has_guard_page,
            }
            break
    bad = None if sc["guard_page_hit"] else _bad_stack_exception(ctx.prog, frames)
    if bad is not None and bounds.in_guard(bad[1]):
        i, sp, _pc = bad
        sc["guard_page_hit"] = {
            "frame": i, "function": frames[i].name, "sp": sp, "below_by": bounds.start - sp,
            "guard_start": bounds.guard_start, "guard_end": bounds.start, "guard_mapped": bounds.guard_mapped,
            "unmapped_guard": bounds.has_guard_page, "from": "the pt_regs __bad_stack saved on the overflow stack",
        }
    sc["usage"] = _part(sc, "stack usage", lambda: stack_usage(task, trace).to_dict())
    sc["recursion"] = [r.to_dict() for r in _part(sc, "recursion", lambda: recursion_in(trace)) or []]
    found = _part(sc, "stack protector", lambda: stack_protector_failure(trace))
    sc["stack_protector"] = found.to_dict() if found else None
    try:
        cpu = task_cpu(task)
    except _READ_ERRORS:
        cpu = None
    sc["cpu"] = cpu
    _part(sc, "exception stacks", lambda: _cpu_stacks_used(ctx, ranges, sc))
    reliability = _part(sc, "trace reliability", lambda: trace_reliability(task, trace))
    sc["trace_trustworthy"] = reliability.trustworthy if reliability else None
    sc["trace_problems"] = list(reliability.problems) if reliability else []
    sc["trace_explained"] = list(reliability.explained) if reliability else []
    sc["scan"] = None
    if reliability is not None and not reliability.trustworthy:
        scan = _part(sc, "stack scan", lambda: scan_stack_for_text(task, trace))
        sc["scan"] = scan.to_dict() if scan else None


def run(ctx: Context, report: Report) -> None:
    sc: dict[str, Any] = {"problems": [], "thread_size": thread_size(ctx.prog)}
    report.stack_checks = sc
    _canaries(ctx, sc)
    _part(sc, "crashed task's stack", lambda: _crashed_task(ctx, sc))
