"""Stack analyzer: the crashed task's trace as data, through exception and interrupt frames."""

from __future__ import annotations

import drgn

from ..context import Context
from ..helpers.fault import is_kdump_capture_frame
from ..helpers.modules import module_of_address
from ..helpers.source import normalize_source_path
from ..report import Frame, Report


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


def run(ctx: Context, report: Report) -> None:
    trace = ctx.trace
    frames: list[Frame] = []
    segments = []
    for seg in trace.segments:
        start = len(frames)
        for frame in seg.frames:
            frames.append(frame_from_drgn(ctx.prog, len(frames), frame, seg.kind.name))
        segments.append({"kind": seg.kind.name, "first": start, "last": len(frames) - 1})
    report.frames = frames
    report.stack = {"segments": segments, "depth": len(frames)}
