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


def frame_from_drgn(prog: drgn.Program, index: int, frame: drgn.StackFrame, segment: str | None) -> Frame:
    """Turn a drgn StackFrame into report data (function, offset, source, module)."""
    pc = frame.pc
    function = frame.function_name if frame.is_inline else None
    offset = size = None
    try:
        sym = frame.symbol()
        if function is None:
            function = sym.name
        if not frame.is_inline:
            offset = pc - sym.address
            size = sym.size
    except LookupError:
        pass
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
        first = False
