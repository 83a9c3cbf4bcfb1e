"""Stack analyzer: the crashed task's trace as data, through exception and interrupt frames.

Each pt_regs frame is labelled with what happened to the CPU there (decode/cpuevent.py): the
entry stub unwound just above it names the exception vector or the interrupt; the top frame
of an oops, whose stub is not on the unwound stack, takes it from the crash record in the log.
"""

from __future__ import annotations

from kpostmortem.context import Context
from kpostmortem.decode.cpuevent import CpuEvent, event_of_record
from kpostmortem.helpers.trace import frame_from_drgn, label_events
from kpostmortem.report import Frame, Report


def _record_event(ctx: Context, pid: int | None) -> CpuEvent | None:
    """The event the log's first crash record of this task (or of no named task) implies."""
    try:
        records = ctx.log.records
    except Exception:  # noqa: BLE001 - no log: the stubs on the stack still label the frames
        return None
    for rec in records:
        event = event_of_record(rec.kind)
        if event is not None and (rec.pid is None or pid is None or rec.pid == pid):
            return event
    return None


def run(ctx: Context, report: Report) -> None:
    trace = ctx.trace
    frames: list[Frame] = []
    segments = []
    for seg in trace.segments:
        start = len(frames)
        for frame in seg.frames:
            frames.append(frame_from_drgn(ctx.prog, len(frames), frame, seg.kind.name))
        segments.append({"kind": seg.kind.name, "first": start, "last": len(frames) - 1})
    try:
        pid = ctx.crashed_thread.tid
    except Exception:  # noqa: BLE001 - degraded or unreadable: match any record
        pid = None
    label_events(frames, _record_event(ctx, pid))
    report.frames = frames
    report.stack = {"segments": segments, "depth": len(frames)}
