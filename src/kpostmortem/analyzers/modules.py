"""Modules analyzer: loaded modules, their taints, and the log's module-loading failures."""

from __future__ import annotations

from ..context import Context
from ..helpers.modules import loaded_modules, module_facts
from ..report import Report
from ..taint import decode_taint_letters

TAINT_WORDS = {"O": "out-of-tree", "E": "unsigned", "P": "proprietary", "F": "force-loaded",
               "C": "staging", "X": "auxiliary", "K": "livepatch", "T": "randstruct", "N": "test"}


def run(ctx: Context, report: Report) -> None:
    mods = [module_facts(m) for m in loaded_modules(ctx.prog)]
    for m in mods:
        m["taint_names"] = [TAINT_WORDS.get(f.letter, f.name) for f in decode_taint_letters(m["taints"])]
        m["frames"] = [f.index for f in report.frames if f.module == m["name"]]
        m["debug_file"] = ctx.dump.debug.modules.get(m["name"])
    mods.sort(key=lambda m: m["name"])
    report.modules = {
        "loaded": mods,
        "count": len(mods),
        "tainting": [m["name"] for m in mods if m["taints"]],
        "in_trace": sorted({f.module for f in report.frames if f.module}),
        "unknown_symbols": [{"module": m, "symbol": s} for m, s in ctx.log.unknown_symbols],
        "symbol_version_errors": [{"module": m, "symbol": s} for m, s in ctx.log.symbol_version_errors],
        "verification_failures": list(ctx.log.module_verification_failures),
    }
