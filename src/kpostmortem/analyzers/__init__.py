"""Analyzers: small, independent steps that each fill part of the report from the Context.

A failing analyzer becomes an outcome in the report; the others still run.
"""

from __future__ import annotations

from .base import Analyzer, Skip, run_analyzers

__all__ = ["Analyzer", "Skip", "run_analyzers", "ANALYZERS"]


def _registry() -> list[Analyzer]:
    from . import crashinfo, fault, logs, modules, stackcheck, stacktrace, task

    return [
        Analyzer("log", logs.run),
        Analyzer("stack", stacktrace.run),
        Analyzer("task", task.run),
        Analyzer("summary", crashinfo.run),
        Analyzer("fault", fault.run),
        Analyzer("modules", modules.run),
        Analyzer("stack-checks", stackcheck.run),
    ]


ANALYZERS: list[Analyzer] = _registry()
