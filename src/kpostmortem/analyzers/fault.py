"""Fault analyzer: the faulting instruction explained, from the dump.

Usually the exception frame on the crashed stack. When an earlier oops is the root (its task
has exited, a later crash took the dump), its RIP and register dump from the log are applied to
the code still in the dump.
"""

from __future__ import annotations

from kpostmortem.analyzers.base import Skip
from kpostmortem.context import Context
from kpostmortem.decode.cpuevent import event_of_record
from kpostmortem.decode.oopslog import OopsRecord
from kpostmortem.helpers.fault import exception_frame_index, explain_fault, explain_fault_at
from kpostmortem.report import Report

FAULT_KINDS = ("null-deref", "page-fault", "gpf", "bug", "invalid-opcode", "divide-error",
               "double-fault", "stack-guard", "warning")


def _earlier_root(ctx: Context, pid: int | None) -> OopsRecord | None:
    """The first oops, when a later crash of another task took the dump."""
    first = ctx.log.first_oops()
    if first is None or first.kind not in FAULT_KINDS or first.rip is None:
        return None
    # A panic printed after an oops has no CPU/PID line (no dump_stack() once TAINT_DIE is
    # set), so a later record of unknown pid counts as another crash unless it escalates.
    later = [r for r in ctx.log.records[ctx.log.records.index(first) + 1 :]
             if r.pid != first.pid and r.escalates is None]
    if first.pid is not None and first.pid != pid and later:
        return first
    return None


def _explain_from_log(ctx: Context, rec: OopsRecord, report: Report) -> None:
    rip = rec.rip
    if rip.module:
        ctx.dump.load_module_debug_info([rip.module])
    try:
        pc = ctx.prog.symbol(rip.function).address + (rip.offset or 0)
    except LookupError:
        raise Skip(f"earlier oops in {rip.function}, a symbol this dump cannot resolve") from None
    regs = rec.gp_registers()
    if "rsp" not in regs:
        raise Skip("earlier oops without a register dump in the log")
    regs["rip"] = pc
    ex = explain_fault_at(ctx.prog, pc, regs, fault_address=rec.fault_address,
                          fault_address_source="oops message (CR2)", error_code=rec.error_code)
    ex.problems.append(f"explained from the log: oops #{rec.oops_number or 1} in pid {rec.pid}, whose task "
                       "has exited; registers from its register dump, code from the dump")
    ex.from_log = True
    event = event_of_record(rec.kind, ctx.prog.platform.arch.name)
    ex.cpu_event = event.to_dict() if event is not None else None
    report.fault = ex.to_dict()


def run(ctx: Context, report: Report) -> None:
    pid = report.crashed_task.get("pid")
    root = _earlier_root(ctx, pid)
    if root is not None:
        _explain_from_log(ctx, root, report)
        return
    fault_address = error_code = None
    source = None
    # The log record describing the exception in the crashed task's top frame.
    for rec in ctx.log.records:
        if rec.kind in FAULT_KINDS and (rec.fault_address is not None or rec.error_code is not None):
            if rec.pid is None or pid is None or rec.pid == pid:
                fault_address, error_code = rec.fault_address, rec.error_code
                source = "oops message (CR2)"
                break
    idx = exception_frame_index(ctx.trace)
    if idx is None:
        raise Skip("no exception frame on the crashed stack (the crash was a panic() call)")
    event = report.frames[idx].event if idx < len(report.frames) else None
    if event and event.get("kind") != "exception":
        # An interrupt or NMI stopped the CPU there: nothing faulted. The interrupted-CPU
        # analyzer shows that instruction and the loop around it.
        return
    ex = explain_fault(ctx.prog, ctx.trace, fault_address, source, error_code, event=event)
    if ex is None:
        raise Skip("no exception frame on the crashed stack (the crash was a panic() call)")
    report.fault = ex.to_dict()
