"""Stack analyzer: the crashed task's trace as data, through exception and interrupt frames.

Each pt_regs frame is labelled with what happened to the CPU there (decode/cpuevent.py): the
entry stub unwound just above it names the exception vector or the interrupt; the top frame
of an oops, whose stub is not on the unwound stack, takes it from the crash record in the log.
"""

from __future__ import annotations

from kpostmortem.context import Context
from kpostmortem.decode.cpuevent import CpuEvent, event_of_record
from kpostmortem.helpers.stack import unwinder_loop_at
from kpostmortem.helpers.trace import frame_from_drgn, frames_from_log, label_events
from kpostmortem.report import Frame, Report


def _record_event(ctx: Context, pid: int | None) -> CpuEvent | None:
    """The event the log's first crash record of this task (or of no named task) implies."""
    try:
        records = ctx.log.records
    except Exception:  # noqa: BLE001 - no log: the stubs on the stack still label the frames
        return None
    for rec in records:
        event = event_of_record(rec.kind, ctx.prog.platform.arch.name if ctx.prog.platform else None)
        if event is not None and (rec.pid is None or pid is None or rec.pid == pid):
            return event
    return None


def run(ctx: Context, report: Report) -> None:
    trace = ctx.trace
    frames: list[Frame] = []
    segments = []
    loop = unwinder_loop_at(list(trace))
    seen = 0
    for seg in trace.segments:
        start = len(frames)
        for frame in seg.frames:
            if loop is not None and seen >= loop:
                break  # the unwinder repeats one frame from here on: nothing more is known
            frames.append(frame_from_drgn(ctx.prog, len(frames), frame, seg.kind.name))
            seen += 1
        if len(frames) > start:
            segments.append({"kind": seg.kind.name, "first": start, "last": len(frames) - 1})
    try:
        pid = ctx.crashed_thread.tid
    except Exception:  # noqa: BLE001 - degraded or unreadable: match any record
        pid = None
    label_events(frames, _record_event(ctx, pid))
    if loop is not None or _ends_in_recursion(frames):
        # The unwinder gave up inside a runaway recursion (drgn stops at a frame limit; arm64's
        # overflow leaves its 1,000 frames on the task stack): the log's trace of this crash
        # goes on below it, to the code that started the recursion.
        try:
            records = list(ctx.log.records)
        except Exception:  # noqa: BLE001 - no log: the trace stays as unwound
            records = []
        before = len(frames)
        frames = frames_from_log(frames, records, pid)
        if len(frames) > before:
            segments.append({"kind": "LOG", "first": before, "last": len(frames) - 1})
    report.frames = frames
    report.stack = {"segments": segments, "depth": len(frames)}
    if any(s["kind"] == "LOG" for s in segments):
        report.stack["from_log"] = ("frames from the log's call trace: the unwind stopped inside the "
                                    + ("recursion, at the unwinder's frame limit" if loop is None else
                                       f"trace, the unwinder repeating frame #{loop - 1} over and over"))


def _ends_in_recursion(frames: list[Frame], run: int = 64) -> bool:
    """The last ``run`` real frames are one function: the unwind was cut inside a recursion."""
    tail = [f.function for f in frames if not f.inline][-run:]
    return len(tail) == run and tail[0] is not None and len(set(tail)) == 1
