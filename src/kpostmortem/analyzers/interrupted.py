"""Interrupted-CPU analyzer: when an interrupt or NMI stopped the crashed CPU (a lockup or stall
watchdog, an IPI), the instruction it interrupted and the loop around it, from the dump.

Nothing faulted there, so no fault explanation: the decoded window under its own name, the
interrupt that stopped it, and what the code was waiting for (helpers/loop.py).
"""

from __future__ import annotations

from typing import Any

import drgn

from kpostmortem.context import Context
from kpostmortem.helpers.fault import _source_of, exception_frame_index, instruction_window, is_kdump_capture_frame
from kpostmortem.helpers.locks import rcu_gp_holders
from kpostmortem.helpers.loop import stuck_loop
from kpostmortem.helpers.trace import frames_of, label_events
from kpostmortem.report import Frame, Report
from kpostmortem.verdict.frames import INTERRUPT_PLUMBING, INTERRUPT_PLUMBING_PREFIXES, base_name, is_plumbing

X86_EFLAGS_IF = 0x200


def _is_entry_code(name: str | None) -> bool:
    b = base_name(name) or ""
    return b in INTERRUPT_PLUMBING or b.startswith(INTERRUPT_PLUMBING_PREFIXES) or is_plumbing(b)


def _stalled_cpu(ctx: Context, report: Report) -> tuple[Any, list[Frame], int, dict] | None:
    """An RCU stall that another CPU noticed and panicked on: the stalled CPU's trace, its
    frames, the index of the frame its own code was interrupted in, and who it is. None when
    the crashed CPU is itself the one holding the grace period up (a self-detected stall)."""
    if not any(r.kind == "rcu-stall" for r in ctx.log.records):
        return None
    try:
        crashed = ctx.crashed_thread.tid
    except Exception:  # noqa: BLE001 - no crashed thread: nothing to compare with
        crashed = None
    for h in rcu_gp_holders(ctx.prog):
        if h.task is None or h.cpu is None:
            continue
        if h.pid == crashed:
            return None
        try:
            trace = ctx.task_trace(h.task)
        except (drgn.FaultError, ValueError, LookupError):
            continue
        frames = frames_of(ctx.prog, trace)
        label_events(frames, None)
        idx = next((f.index for f in frames if f.interrupted and not f.inline and not _is_entry_code(f.function)
                    and f.index < len(trace) and not is_kdump_capture_frame(trace[f.index])), None)
        if idx is None:
            continue
        return trace, frames, idx, {"cpu": h.cpu, "pid": h.pid, "comm": h.comm, "how": h.how}
    return None


def run(ctx: Context, report: Report) -> None:
    trace = ctx.trace
    frames = report.frames
    idx = exception_frame_index(trace)
    other = _stalled_cpu(ctx, report)
    holder = None
    if other is not None:
        # The panic CPU only noticed the stall: the instruction that matters is the stalled CPU's.
        trace, frames, idx, holder = other
    if idx is None or idx >= len(frames):
        return  # a panic() call: nothing was interrupted
    event = frames[idx].event or {}
    if holder is None and event.get("kind") not in ("interrupt", "nmi"):
        return  # an exception: the fault analyzer's
    if holder is not None and not event:
        event = {"kind": "nmi", "name": "non-maskable interrupt (NMI)",
                 "source": "the NMI kdump sends to stop the other CPUs at the crash",
                 "frame_words": "NMI frame", "instruction_words": "interrupted instruction"}
    frame = trace[idx]
    first = idx
    while first > 0 and trace[first - 1].is_inline and trace[first - 1].pc == frame.pc:
        first -= 1
    pc = frame.pc
    out: dict = {
        "event": event,
        "frame_index": first,
        "function": frames[first].function,
        "source": _source_of(ctx.prog, pc),
        "pc": pc,
        "registers": {k.lower(): v for k, v in frame.registers().items()},
        "instructions": [],
        "pc_index": None,
        "instruction": None,
        "loop": None,
        "problems": [],
    }
    if holder is not None:
        out["stalled_cpu"] = holder
    rflags = out["registers"].get("rflags")
    if rflags is not None and ctx.prog.platform.arch == drgn.Architecture.X86_64:
        # EFLAGS.IF: with interrupts off the CPU took no timer tick (no scheduler, no RCU or
        # soft-lockup check of its own) until an NMI stopped it.
        out["interrupts_enabled"] = bool(rflags & X86_EFLAGS_IF)
    try:
        # the window decoder is the architecture's (arch/): x86-64 and A64
        insns, at, out["instructions"] = instruction_window(ctx.prog, pc)
        out["pc_index"] = at
        if at is not None:
            out["instruction"] = insns[at].text
    except drgn.FaultError as e:
        out["problems"].append(f"instruction bytes at {pc:#x} not readable: {e}")
    try:
        out["loop"] = stuck_loop(ctx.prog, trace, idx)
    except drgn.FaultError as e:
        out["problems"].append(f"the loop around the PC could not be read: {e}")
    if out["loop"] is None:
        out["problems"].append("the interrupted PC is in no loop of its function")
    report.interrupted = out
