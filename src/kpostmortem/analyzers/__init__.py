"""Analyzers: small, independent steps that each fill part of the report from the Context.

A failing analyzer becomes an outcome in the report; the others still run.
"""

from __future__ import annotations

from kpostmortem.analyzers.base import Analyzer, Skip, run_analyzers

__all__ = ["Analyzer", "Skip", "run_analyzers", "ANALYZERS"]


def _registry() -> list[Analyzer]:
    from kpostmortem.analyzers import (
        blocked,
        crashinfo,
        degraded,
        fault,
        interrupted,
        logs,
        modules,
        stackcheck,
        stacktrace,
        task,
    )

    # needs_dwarf: they walk task_struct/module/runqueues, which degraded mode cannot type;
    # "degraded" stands in for task, summary and modules from the notes, log and raw lists.
    return [
        Analyzer("log", logs.run),
        Analyzer("stack", stacktrace.run),
        Analyzer("task", task.run, needs_dwarf=True),
        Analyzer("summary", crashinfo.run, needs_dwarf=True),
        Analyzer("degraded", degraded.run, only_degraded=True),
        Analyzer("fault", fault.run),
        Analyzer("interrupted", interrupted.run),
        Analyzer("modules", modules.run, needs_dwarf=True),
        Analyzer("stack-checks", stackcheck.run, needs_dwarf=True),
        Analyzer("blocked-tasks", blocked.run, needs_dwarf=True),
    ]


ANALYZERS: list[Analyzer] = _registry()
