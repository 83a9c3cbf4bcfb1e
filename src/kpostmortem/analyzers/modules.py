"""Modules analyzer: loaded modules, their taints, and the log's module-loading failures."""

from __future__ import annotations

from kpostmortem.context import Context
from kpostmortem.helpers.modules import loaded_modules, module_facts, modules_section
from kpostmortem.report import Report


def run(ctx: Context, report: Report) -> None:
    mods = [module_facts(m) for m in loaded_modules(ctx.prog)]
    report.modules = modules_section(mods, report.frames, ctx.log, ctx.dump.debug.modules)
