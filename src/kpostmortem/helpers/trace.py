"""Stack frames as plain data: function, offset, source line, module, exception marks.

Used for the crashed task's trace and for any other task's (blocked tasks, stuck CPUs).
"""

from __future__ import annotations

import drgn

from kpostmortem.decode.cpuevent import CpuEvent, event_of_entry
from kpostmortem.helpers.fault import is_kdump_capture_frame
from kpostmortem.helpers.modules import module_of_address
from kpostmortem.helpers.source import normalize_source_path
from kpostmortem.report import Frame

__all__ = ["frame_from_drgn", "frames_of"]


_SYMBOLS = "kpostmortem.frame_symbols"


def _frame_symbol(prog: drgn.Program, frame: drgn.StackFrame) -> drgn.Symbol | None:
    """The symbol at a frame's PC, looked up once per PC (drgn's lookup by address costs ~1 ms,
    and inline frames, repeated traces and recursions share PCs)."""
    cache = prog.cache.setdefault(_SYMBOLS, {})
    pc = frame.pc
    if pc not in cache:
        try:
            cache[pc] = frame.symbol()
        except LookupError:
            cache[pc] = None
    return cache[pc]


def frame_from_drgn(prog: drgn.Program, index: int, frame: drgn.StackFrame, segment: str | None) -> Frame:
    """Turn a drgn StackFrame into report data (function, offset, source, module)."""
    pc = frame.pc
    function = frame.function_name if frame.is_inline else None
    offset = size = None
    sym = _frame_symbol(prog, frame)
    if sym is not None:
        if function is None:
            function = sym.name
        if not frame.is_inline:
            offset = pc - sym.address
            size = sym.size
    if function is None:
        function = frame.name if frame.name and not frame.name.startswith("0x") else None
    source = None
    try:
        loc = frame.source()
        source = f"{normalize_source_path(loc[0])}:{loc[1]}"
    except LookupError:
        pass
    sp = None
    try:
        sp = frame.sp
    except LookupError:
        pass
    return Frame(
        index=index,
        function=function,
        offset=offset,
        size=size,
        pc=pc,
        sp=sp,
        source=source,
        module=module_of_address(prog, pc),
        inline=frame.is_inline,
        # kdump's register snapshot in panic() is not an exception frame.
        interrupted=frame.interrupted and not is_kdump_capture_frame(frame),
        segment=segment,
    )


def frames_of(prog: drgn.Program, trace) -> list[Frame]:
    """A whole drgn trace (StackTrace or LinuxKernelStack) as Frames, with segment kinds if known."""
    frames: list[Frame] = []
    segments = getattr(trace, "segments", None)
    if segments is None:
        return [frame_from_drgn(prog, i, f, None) for i, f in enumerate(trace)]
    for seg in segments:
        for f in seg.frames:
            frames.append(frame_from_drgn(prog, len(frames), f, seg.kind.name))
    return frames


def label_events(frames: list[Frame], record_event: CpuEvent | None) -> None:
    """Set ``event`` on each pt_regs frame: from the entry stub above it, else (the top one
    only) from the crash record."""
    first = True
    for i, f in enumerate(frames):
        if not f.interrupted or f.inline:
            continue
        above = next((g for g in reversed(frames[:i]) if not g.inline), None)
        event = event_of_entry(above.function) if above is not None else None
        if event is None and first and record_event is not None and above is None:
            event = record_event
        if event is not None:
            f.event = event.to_dict()
            # The functions inlined at that PC (a spin loop's cpu_relax()) were interrupted too.
            j = i - 1
            while j >= 0 and frames[j].inline and frames[j].interrupted and frames[j].pc == f.pc:
                frames[j].event = f.event
                j -= 1
        first = False


def frames_from_log(frames: list[Frame], records, pid: int | None) -> list[Frame]:
    """The dump's frames, continued with the call trace the kernel printed for this crash.

    For a dump whose unwind stops early: without kernel symbols (VMCOREINFO locates kallsyms
    only from Linux 6.0 on) no kernel frame has a name and built-in ORC has no address range,
    so the dump gives the first frame or two at most. The latest record with a call trace for
    the crashed task (its reliable entries: "?" ones are stack-scan guesses) goes on from the
    last frame it shares with the dump; the added frames' ``segment`` is "LOG".
    """
    rec = next((r for r in reversed(list(records)) if r.call_trace and (
        pid is None or r.pid is None or r.pid == pid)), None)
    if rec is None:
        return frames
    entries = [e for e in rec.call_trace if e.reliable and not e.function.startswith("0x")]
    named = [f.function for f in frames if f.function]
    start = 0
    for i, e in enumerate(entries):
        if e.function in named:
            start = i + 1
    def from_log(es) -> list[Frame]:
        return [Frame(index=0, function=e.function, offset=e.offset, size=e.size, module=e.module,
                      interrupted=e.interrupted, segment="LOG") for e in es]

    stubs = [i for i, e in enumerate(entries) if e.function.startswith("asm_")]
    panic_path = bool(entries) and entries[0].function in ("dump_stack", "dump_stack_lvl", "panic", "vpanic")
    if start == 0 and stubs and panic_path:
        # Nothing shared, and the log's trace is panic()'s own (it starts in dump_stack), run in
        # an exception or interrupt (a WARN's #UD, the soft-lockup watchdog's timer) that caught
        # other code: that code goes below the entry stub. It is the dump's interrupted frame
        # when the dump named one, else the RIP of the record that reported the event (the
        # panic's own trace prints those registers but no frame for them).
        cut = stubs[-1] + 1
        rest = entries[cut:]
        # Newer kernels print the nested pt_regs' "RIP:" inside the trace: the log names it.
        logged = bool(rest) and rest[0].interrupted
        below = [f for f in frames if f.interrupted and f.function]
        above = [f for f in frames if not (f.interrupted and f.function)]
        if below and logged:
            rest = rest[1:]  # the dump's own interrupted frame says it, with its PC
        if not below and not logged:
            rip = next((r.rip for r in reversed(list(records)) if r is not rec and r.rip is not None
                        and r.rip.module is not None and (pid is None or r.pid in (None, pid))), None)
            if rip is not None:
                below = [Frame(index=0, function=rip.function, offset=rip.offset, size=rip.size,
                               module=rip.module, interrupted=True, segment="LOG")]
        out = above + from_log(entries[:cut]) + below + from_log(rest)
    else:
        out = list(frames) + from_log(entries[start:])
    for i, f in enumerate(out):
        f.index = i
    return out
