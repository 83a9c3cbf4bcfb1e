"""Fault analyzer: the exception frame's registers and instruction, explained."""

from __future__ import annotations

from ..context import Context
from ..helpers.fault import explain_fault
from ..report import Report
from .base import Skip

FAULT_KINDS = ("null-deref", "page-fault", "gpf", "bug", "invalid-opcode", "divide-error",
               "double-fault", "stack-guard", "warning")


def run(ctx: Context, report: Report) -> None:
    first = ctx.log.first_oops()
    fault_address = error_code = None
    source = None
    # The log record describing the exception in the crashed task's top frame.
    for rec in ctx.log.records:
        if rec.kind in FAULT_KINDS and (rec.fault_address is not None or rec.error_code is not None):
            if first is None or rec is first or rec.pid == report.crashed_task.get("pid"):
                fault_address, error_code = rec.fault_address, rec.error_code
                source = "oops message (CR2)"
                break
    ex = explain_fault(ctx.prog, ctx.trace, fault_address, source, error_code)
    if ex is None:
        raise Skip("no exception frame on the crashed stack (the crash was a panic() call)")
    report.fault = ex.to_dict()
