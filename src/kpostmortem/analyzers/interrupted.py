"""Interrupted-CPU analyzer: when an interrupt or NMI stopped the crashed CPU (a lockup or stall
watchdog, an IPI), the instruction it interrupted and the loop around it, from the dump.

Nothing faulted there, so no fault explanation: the decoded window under its own name, the
interrupt that stopped it, and what the code was waiting for (helpers/loop.py).
"""

from __future__ import annotations

import drgn

from kpostmortem.context import Context
from kpostmortem.helpers.fault import _source_of, exception_frame_index, instruction_window
from kpostmortem.helpers.loop import stuck_loop
from kpostmortem.report import Report


def run(ctx: Context, report: Report) -> None:
    trace = ctx.trace
    idx = exception_frame_index(trace)
    if idx is None or idx >= len(report.frames):
        return  # a panic() call: nothing was interrupted
    event = report.frames[idx].event or {}
    if event.get("kind") not in ("interrupt", "nmi"):
        return  # an exception: the fault analyzer's
    frame = trace[idx]
    first = idx
    while first > 0 and trace[first - 1].is_inline and trace[first - 1].pc == frame.pc:
        first -= 1
    pc = frame.pc
    out: dict = {
        "event": event,
        "frame_index": first,
        "function": report.frames[first].function,
        "source": _source_of(ctx.prog, pc),
        "pc": pc,
        "registers": {k.lower(): v for k, v in frame.registers().items()},
        "instructions": [],
        "pc_index": None,
        "instruction": None,
        "loop": None,
        "problems": [],
    }
    if ctx.prog.platform.arch != drgn.Architecture.X86_64:
        # decode/loops.py and the window decoder read x86-64 code; arm64 gets its own tables.
        arch = ctx.prog.platform.arch.name
        out["problems"].append(f"interrupted-instruction decoding is x86-64 only so far ({arch})")
        report.interrupted = out
        return
    try:
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
