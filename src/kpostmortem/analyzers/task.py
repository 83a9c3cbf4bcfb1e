"""Task analyzer: who crashed — pid, comm, CPU, state, and the execution context."""

from __future__ import annotations

import drgn
from drgn.helpers.linux.percpu import per_cpu
from drgn.helpers.linux.sched import task_cpu, task_state_to_char

from kpostmortem.context import Context
from kpostmortem.report import Report

# include/linux/preempt.h
SOFTIRQ_OFFSET = 0x100
SOFTIRQ_MASK = 0xFF00
HARDIRQ_MASK = 0xF0000
NMI_MASK = 0xF00000


def preempt_count(prog: drgn.Program, cpu: int) -> int | None:
    """The preempt_count of ``cpu`` at crash time (PREEMPT_NEED_RESCHED bit cleared)."""
    try:
        # Linux 6.2 (commit 64701838bf05 "x86/percpu: Move current_task to percpu hot section")
        value = int(per_cpu(prog["pcpu_hot"], cpu).preempt_count)
    except (KeyError, LookupError, AttributeError):
        try:
            value = int(per_cpu(prog["__preempt_count"], cpu))
        except (KeyError, LookupError):
            return None
    return value & 0x7FFFFFFF


def context_of(count: int | None) -> str:
    """process / softirq / hardirq / NMI from a preempt_count."""
    if count is None:
        return "unknown"
    if count & NMI_MASK:
        return "nmi"
    if count & HARDIRQ_MASK:
        return "hardirq"
    if count & SOFTIRQ_OFFSET:
        return "softirq"
    return "process"


def run(ctx: Context, report: Report) -> None:
    task = ctx.panic_task
    cpu = task_cpu(task)
    count = preempt_count(ctx.prog, cpu)
    info = {
        "pid": int(task.pid),
        "comm": task.comm.string_().decode(errors="replace"),
        "cpu": cpu,
        "state": task_state_to_char(task),
        "preempt_count": count,
        "context": context_of(count),
        "kernel_thread": bool(int(task.flags) & 0x00200000),  # PF_KTHREAD
    }
    # The context of the code that was running, by stack segment: the lockup's victim runs
    # in process context although panic() runs in the watchdog's interrupt.
    kinds = [s["kind"] for s in report.stack.get("segments", [])]
    info["stack_segments"] = kinds
    report.crashed_task = info
