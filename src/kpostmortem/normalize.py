"""Normalise a report dict into the facts that stay equal across boots of the same crash.

Drops addresses (KASLR), timings, pids, sizes and paths; keeps symbol+offset, sources,
categories and texts with addresses masked. Golden files and dump comparisons use it.
"""

from __future__ import annotations

import re
from typing import Any

_KADDR = re.compile(r"\b(0x)?(ff[0-9a-f]{14}|[0-9a-f]{16})\b", re.I)
_TIME = re.compile(r"\b\d+\.\d+ ?s\b")
_PID = re.compile(r"\b(pid|PID:?)\s+\d+")
_BRACKET_PID = re.compile(r"\[(\d+)\]")


def mask(text: str | None) -> str | None:
    """Mask kernel addresses, timings and pids in a line of text."""
    if text is None:
        return None
    text = _KADDR.sub("ADDR", text)
    text = _TIME.sub("T s", text)
    text = _PID.sub(lambda m: m.group(1) + " N", text)
    return _BRACKET_PID.sub("[N]", text)


def normalized_report(report: dict[str, Any]) -> dict[str, Any]:
    """The stable subset of a report dict (see module docstring)."""
    v = report.get("verdict") or {}
    s = report.get("summary") or {}
    t = report.get("crashed_task") or {}
    f = report.get("fault") or {}
    frames = (report.get("stack") or {}).get("frames", [])
    mods = report.get("modules") or {}
    log = report.get("log") or {}
    sc = report.get("stack_checks") or {}
    return {
        "verdict": {
            "category": v.get("category"),
            "title": v.get("title"),
            "function": v.get("function"),
            "module": v.get("module"),
            "source": v.get("source"),
            "signature": v.get("signature"),
            "guilty_frame": v.get("guilty_frame"),
            "evidence": [mask(e["text"]) for e in v.get("evidence", [])],
            "degraded": v.get("degraded"),
        },
        "summary": {
            "how": (s.get("how") or {}).get("mode"),
            "panic_message": mask(s.get("panic_message")),
            "panic_on_oops": s.get("panic_on_oops"),
            "panic_on_warn": s.get("panic_on_warn"),
            "panic_timeout": s.get("panic_timeout"),
            "taint": (s.get("taint") or {}).get("letters"),
            "crashes_in_log": s.get("crashes_in_log"),
            "first_oops": mask((s.get("first_oops") or {}).get("headline")),
        },
        "crashed_task": {"comm": t.get("comm"), "context": t.get("context")},
        "frames": [
            {k: fr.get(k) for k in ("function", "offset", "source", "module", "inline", "interrupted", "segment")}
            for fr in frames
        ],
        "fault": {
            "function": f.get("function"),
            "source": f.get("source"),
            "trapping_instruction": mask(f.get("trapping_instruction")),
            "access": f.get("access"),
            "operand": f.get("operand"),
            "bad_register": f.get("bad_register"),
            "address_class": (f.get("address_class") or {}).get("kind"),
            "suspects": f.get("suspects", []),
            "instructions": [
                mask(i.get("symbol")) + ": " + (mask(i.get("text")) or "") for i in f.get("instructions", [])
            ],
        }
        if f
        else {},
        "modules": [
            {"name": m["name"], "taints": m.get("taints"), "state": m.get("state")} for m in mods.get("loaded", [])
        ],
        "unknown_symbols": mods.get("unknown_symbols", []),
        "log_records": [{"kind": r["kind"], "headline": mask(r["headline"])} for r in log.get("records", [])],
        "canaries_damaged": [c.get("comm") for c in sc.get("canaries_damaged", [])],
        "analyzers": {o["name"]: o["status"] for o in report.get("analyzers", [])},
    }
