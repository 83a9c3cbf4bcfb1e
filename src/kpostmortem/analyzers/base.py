"""The analyzer contract and the runner that isolates each analyzer's failure."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import drgn

from ..context import Context
from ..report import Outcome, Report

__all__ = ["Analyzer", "Skip", "run_analyzers"]


class Skip(Exception):
    """Raised by an analyzer that has nothing to do here; the message says why."""


@dataclass(frozen=True)
class Analyzer:
    """A named analysis step and what it needs."""

    name: str
    """Short name, shown in the report's outcomes."""
    run: Callable[[Context, Report], None]
    """Fills its sections of the report."""
    needs_dwarf: bool = False
    """Skip in degraded mode (no kernel DWARF)."""


def _describe_error(e: BaseException) -> str:
    if isinstance(e, drgn.FaultError):
        return f"FaultError: {e}"
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def run_analyzers(ctx: Context, report: Report, analyzers: Sequence[Analyzer]) -> None:
    """Run each analyzer, isolating failures into outcomes."""
    for analyzer in analyzers:
        start = time.perf_counter()
        if analyzer.needs_dwarf and ctx.dump.debug.degraded:
            outcome = Outcome(analyzer.name, "skipped", "needs the kernel's DWARF (no vmlinux)")
        else:
            try:
                analyzer.run(ctx, report)
                outcome = Outcome(analyzer.name, "ok")
            except Skip as e:
                outcome = Outcome(analyzer.name, "skipped", str(e))
            except Exception as e:  # noqa: BLE001 - failure is data: one analyzer never kills the report
                outcome = Outcome(analyzer.name, "failed", _describe_error(e))
        outcome.seconds = round(time.perf_counter() - start, 4)
        report.outcomes.append(outcome)
