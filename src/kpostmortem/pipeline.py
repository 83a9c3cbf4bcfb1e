"""The analysis pipeline: open → context → analyzers → verdict → report.

Front ends (CLI, drgn session, plugin, batch) call ``analyze`` or ``analyze_dump``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from kpostmortem import __version__
from kpostmortem.analyzers import ANALYZERS, run_analyzers
from kpostmortem.context import Context
from kpostmortem.inputs.dump import Dump, open_dump
from kpostmortem.report import Report
from kpostmortem.verdict import decide

if TYPE_CHECKING:
    from kpostmortem.verdict.known import KnownBugs

__all__ = ["analyze", "analyze_dump"]


def analyze_dump(dump: Dump, command: Sequence[str] | None = None,
                 known: KnownBugs | None = None) -> tuple[Report, Context]:
    """Run every analyzer and the verdict engine on an opened dump; match the crash against
    ``known`` (a loaded known-bugs file) when given."""
    start = time.perf_counter()
    report = Report()
    report.tool = {
        "name": "kpostmortem",
        "version": __version__,
        "command": list(command) if command is not None else None,
    }
    h = dump.header
    report.dump = {
        "path": dump.path,
        "file": os.path.basename(dump.path),
        "format": h.format,
        "size": h.size,
        "dump_level": h.dump_level,
        "compression": h.compression,
        "release": dump.release,
        "arch": dump.arch,
        "build_id": dump.debug.dump_build_id,
        "header_problems": list(h.problems),
    }
    ctx = Context(dump)
    run_analyzers(ctx, report, ANALYZERS)
    report.verdict = decide(report)
    if known is not None:
        report.known_bugs = known.match({"verdict": {"signature": report.verdict.signature,
                                                     "category": report.verdict.category,
                                                     "function": report.verdict.function,
                                                     "module": report.verdict.module,
                                                     "title": report.verdict.title},
                                         "dump": report.dump, "summary": report.summary})
    report.debug_info = dump.debug.to_dict()
    report.debug_info["seconds"] = round(dump.debug.seconds, 3)
    report.tool["seconds"] = round(time.perf_counter() - start, 3)
    return report, ctx


def analyze(
    path: str,
    vmlinux: str | None = None,
    debuginfo: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
    command: Sequence[str] | None = None,
    known: KnownBugs | None = None,
) -> Report:
    """Open ``path`` and analyse it. Raises KpmError subclasses for dumps that cannot be opened."""
    dump = open_dump(path, vmlinux, debuginfo, progress=progress)
    report, _ctx = analyze_dump(dump, command if command is not None else sys.argv, known)
    return report
