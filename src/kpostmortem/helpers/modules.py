"""Loadable-module helpers: which module owns an address, a module's taints and state.

Thin layers over drgn.helpers.linux.module.
"""

from __future__ import annotations

import drgn
from drgn.helpers.linux.module import address_to_module, for_each_module, module_taints

from kpostmortem.decode.taint import MODULE_TAINT_WORDS

__all__ = ["module_of_address", "kernel_text", "module_facts", "loaded_modules", "modules_section", "TAINT_WORDS"]

TAINT_WORDS = MODULE_TAINT_WORDS
"""Module taint letters in the words a report uses."""

MODULE_STATES = {0: "live", 1: "coming", 2: "going", 3: "unformed"}


def kernel_text(prog: drgn.Program) -> tuple[int, int] | None:
    """[_stext, _etext) of the core kernel, looked up once per program; None when unknown."""
    key = "kpostmortem.kernel_text"
    if key not in prog.cache:
        try:
            prog.cache[key] = (prog.symbol("_stext").address, prog.symbol("_etext").address)
        except LookupError:
            prog.cache[key] = None
    return prog.cache[key]


def module_of_address(prog: drgn.Program, addr: int | None) -> str | None:
    """Name of the loadable module whose memory holds ``addr``, or None for core kernel.

    :param addr: a kernel virtual address (a PC, a data pointer)
    """
    if not addr:
        return None
    try:
        mod = address_to_module(prog, addr)
    except (drgn.FaultError, LookupError, ValueError):
        # Without DWARF (degraded mode) struct module is unknown; use the ranges learnt from
        # the oops log, if any (kpostmortem.inputs.nodwarf.anchor_module_symbols).
        for start, end, name in prog.cache.get("kpostmortem.module_ranges", ()):
            if start <= addr < end:
                return name
        return None
    if not mod:
        return None
    return mod.name.string_().decode(errors="replace")


def _module_size(mod: drgn.Object) -> int:
    try:
        # Linux 6.4 (commit ac3b43283923 "module: replace module_layout with module_memory")
        return sum(int(m.size) for m in mod.mem)
    except AttributeError:
        return int(mod.core_layout.size) + int(mod.init_layout.size)


def module_facts(mod: drgn.Object) -> dict:
    """Name, size, state, taint letters, version and srcversion of a ``struct module *``."""
    facts: dict = {"name": mod.name.string_().decode(errors="replace")}
    try:
        facts["size"] = _module_size(mod)
    except (drgn.FaultError, AttributeError):
        facts["size"] = None
    try:
        facts["state"] = MODULE_STATES.get(int(mod.state), str(int(mod.state)))
    except drgn.FaultError:
        facts["state"] = None
    try:
        facts["taints"] = module_taints(mod).strip()
    except (drgn.FaultError, LookupError):
        facts["taints"] = ""
    for attr in ("version", "srcversion"):
        try:
            value = getattr(mod, attr)
            facts[attr] = value.string_().decode(errors="replace") if value else None
        except (drgn.FaultError, AttributeError):
            facts[attr] = None
    try:
        facts["sig_ok"] = bool(mod.sig_ok)
    except AttributeError:
        facts["sig_ok"] = None
    return facts


def loaded_modules(prog: drgn.Program, limit: int = 10000) -> list[drgn.Object]:
    """``struct module *`` of every loaded module, bounded against a corrupted (cyclic) list."""
    out = []
    seen = set()
    for mod in for_each_module(prog):
        addr = mod.value_()
        if addr in seen or len(out) >= limit:
            break
        seen.add(addr)
        out.append(mod)
    return out


def modules_section(mods: list[dict], frames: list, log, debug_files: dict[str, str]) -> dict:
    """The report's modules section from per-module facts (``module_facts`` or degraded ones),
    the crashed stack's frames, the parsed log and the debug files loaded per module."""
    from kpostmortem.decode.taint import decode_taint_letters

    for m in mods:
        m["taint_names"] = [TAINT_WORDS.get(f.letter, f.name) for f in decode_taint_letters(m.get("taints") or "")]
        m["frames"] = [f.index for f in frames if f.module == m["name"]]
        m["debug_file"] = debug_files.get(m["name"])
    mods.sort(key=lambda m: m["name"])
    return {
        "loaded": mods,
        "count": len(mods),
        "tainting": [m["name"] for m in mods if m.get("taints")],
        "in_trace": sorted({f.module for f in frames if f.module}),
        "unknown_symbols": [{"module": m, "symbol": s} for m, s in log.unknown_symbols],
        "symbol_version_errors": [{"module": m, "symbol": s} for m, s in log.symbol_version_errors],
        "verification_failures": list(log.module_verification_failures),
    }
