"""Stack analyzer: the crashed task's trace as data, through exception and interrupt frames."""

from __future__ import annotations

from kpostmortem.context import Context
from kpostmortem.helpers.trace import frame_from_drgn
from kpostmortem.report import Frame, Report


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
