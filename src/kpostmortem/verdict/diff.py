"""What changed between two crashes: two report dicts (dumps or logs) in, one diff dict out.

The kernel (release, ``uname -v``, build ID), command line, taints and the modules that set them,
loaded modules (added, removed, version/srcversion changed), the panic-relevant sysctls, the
verdicts and signatures, and the crashed stacks aligned by function. ``kpostmortem diff`` renders
it (render/diff.py); docs/triage.md documents the JSON.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from kpostmortem.verdict.frames import base_name

__all__ = ["PANIC_SYSCTLS", "align_stacks", "diff_reports", "stack_functions"]

PANIC_SYSCTLS = (
    ("panic_on_oops", "kernel.panic_on_oops"),
    ("panic_on_warn", "kernel.panic_on_warn"),
    ("panic_timeout", "kernel.panic"),
    ("softlockup_panic", "kernel.softlockup_panic"),
    ("hung_task_panic", "kernel.hung_task_panic"),
    ("hung_task_timeout", "kernel.hung_task_timeout_secs"),
    ("panic_on_oom", "vm.panic_on_oom"),
)
"""(report key, sysctl name) of the knobs that decide whether a failure becomes a crash."""

VERDICT_KEYS = ("category", "title", "signature", "function", "module", "source", "confidence")


def _pair(a: Any, b: Any) -> dict[str, Any]:
    return {"a": a, "b": b, "same": a == b}


def _kernel(ra: Mapping[str, Any], rb: Mapping[str, Any]) -> dict[str, Any]:
    def facts(r: Mapping[str, Any]) -> dict[str, Any]:
        d, s = r.get("dump") or {}, r.get("summary") or {}
        build_id = d.get("build_id") or (r.get("debug_info") or {}).get("vmlinux_build_id")
        return {"release": d.get("release") or s.get("release"), "version": s.get("version"),
                "build_id": build_id, "arch": d.get("arch") or s.get("arch")}

    fa, fb = facts(ra), facts(rb)
    out = {k: _pair(fa[k], fb[k]) for k in fa}
    # A fact is only compared when both sides know it (a log has no build ID, maybe no arch).
    known = [k for k in out if fa[k] is not None and fb[k] is not None]
    out["same"] = all(out[k]["same"] for k in known)
    return out


def _cmdline(ra: Mapping[str, Any], rb: Mapping[str, Any]) -> dict[str, Any]:
    a = (ra.get("summary") or {}).get("cmdline")
    b = (rb.get("summary") or {}).get("cmdline")

    def words(c: str | None) -> list[str]:
        if not c:
            return []
        try:
            return shlex.split(c)
        except ValueError:
            return c.split()

    wa, wb = words(a), words(b)
    return {"a": a, "b": b, "same": wa == wb,
            "added": [w for w in wb if w not in wa], "removed": [w for w in wa if w not in wb]}


def _taint_letters(r: Mapping[str, Any]) -> str | None:
    taint = (r.get("summary") or {}).get("taint")
    if isinstance(taint, dict):
        return taint.get("letters") or ""
    return None


def _taint_sources(r: Mapping[str, Any]) -> dict[str, list[str]]:
    """{taint letter: modules that carry it}, from the module list."""
    out: dict[str, list[str]] = {}
    for m in (r.get("modules") or {}).get("loaded") or []:
        for letter in m.get("taints") or "":
            out.setdefault(letter, []).append(m["name"])
    return out


def _taints(ra: Mapping[str, Any], rb: Mapping[str, Any]) -> dict[str, Any]:
    la, lb = _taint_letters(ra), _taint_letters(rb)
    sa, sb = _taint_sources(ra), _taint_sources(rb)
    return {
        "a": la, "b": lb, "same": la == lb and sa == sb,
        "added": [c for c in (lb or "") if c not in (la or "")],
        "removed": [c for c in (la or "") if c not in (lb or "")],
        "sources": {"a": sa, "b": sb},
    }


def _modules(ra: Mapping[str, Any], rb: Mapping[str, Any]) -> dict[str, Any]:
    def table(r: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        return {m["name"]: m for m in (r.get("modules") or {}).get("loaded") or [] if m.get("name")}

    ta, tb = table(ra), table(rb)
    changed = []
    for name in sorted(set(ta) & set(tb)):
        what = {k: _pair(ta[name].get(k), tb[name].get(k)) for k in ("version", "srcversion", "taints")}
        differs = {k: v for k, v in what.items() if not v["same"] and v["a"] is not None and v["b"] is not None}
        if differs:
            changed.append({"name": name, **{k: {"a": v["a"], "b": v["b"]} for k, v in differs.items()}})
    added, removed = sorted(set(tb) - set(ta)), sorted(set(ta) - set(tb))
    return {"count": _pair(len(ta), len(tb)), "added": added, "removed": removed, "changed": changed,
            "same": not (added or removed or changed)}


def _sysctls(ra: Mapping[str, Any], rb: Mapping[str, Any]) -> dict[str, Any]:
    def value(r: Mapping[str, Any], key: str) -> Any:
        if key == "hung_task_timeout":
            return (r.get("blocked_tasks") or {}).get(key)
        return (r.get("summary") or {}).get(key)

    rows = [{"name": name, "key": key, **_pair(value(ra, key), value(rb, key))} for key, name in PANIC_SYSCTLS]
    # A side that could not read a knob (a log) does not make it differ.
    return {"values": rows, "same": all(r["same"] or r["a"] is None or r["b"] is None for r in rows)}


def _verdicts(ra: Mapping[str, Any], rb: Mapping[str, Any]) -> dict[str, Any]:
    va, vb = ra.get("verdict") or {}, rb.get("verdict") or {}
    out: dict[str, Any] = {k: _pair(va.get(k), vb.get(k)) for k in VERDICT_KEYS}
    out["same_bug"] = bool(va.get("signature")) and va.get("signature") == vb.get("signature")
    if "known_bugs" in ra or "known_bugs" in rb:
        out["known_bugs"] = {"a": [m["id"] for m in ra.get("known_bugs") or []],
                             "b": [m["id"] for m in rb.get("known_bugs") or []]}
    return out


_TRACE_NAME = re.compile(r"^\s*(?:\?\s*)?([A-Za-z_.$][\w.$]*)")


def stack_functions(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The crashed stack as [{index, function, module}], from ``stack.frames``, else from the
    first crash record's call trace (a report with no unwound stack); functions as base names."""
    frames = (report.get("stack") or {}).get("frames") or []
    out = [{"index": f.get("index", i), "function": base_name(f["function"]), "module": f.get("module")}
           for i, f in enumerate(frames) if f.get("function")]
    if out:
        return out
    records = (report.get("log") or {}).get("records") or []
    for rec in records[:1]:
        rip = rec.get("rip") or {}
        if rip.get("function"):
            out.append({"index": 0, "function": base_name(rip["function"]), "module": rip.get("module")})
        for entry in rec.get("call_trace") or []:
            name = entry.get("function") if isinstance(entry, dict) else entry
            m = _TRACE_NAME.match(name or "")
            if m:
                out.append({"index": len(out), "function": base_name(m.group(1)),
                            "module": entry.get("module") if isinstance(entry, dict) else None})
    return out


def align_stacks(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows pairing the frames of two stacks by function name (longest common subsequence):
    ``{"a": frame or None, "b": frame or None, "same": bool}``, innermost first."""
    na, nb = len(a), len(b)
    lcs = [[0] * (nb + 1) for _ in range(na + 1)]
    for i in range(na - 1, -1, -1):
        for j in range(nb - 1, -1, -1):
            lcs[i][j] = (lcs[i + 1][j + 1] + 1 if a[i]["function"] == b[j]["function"]
                         else max(lcs[i + 1][j], lcs[i][j + 1]))
    rows, i, j = [], 0, 0
    while i < na or j < nb:
        if i < na and j < nb and a[i]["function"] == b[j]["function"]:
            rows.append({"a": a[i], "b": b[j], "same": True})
            i, j = i + 1, j + 1
        elif j >= nb or (i < na and lcs[i + 1][j] >= lcs[i][j + 1]):
            rows.append({"a": a[i], "b": None, "same": False})
            i += 1
        else:
            rows.append({"a": None, "b": b[j], "same": False})
            j += 1
    return rows


def _stacks(ra: Mapping[str, Any], rb: Mapping[str, Any]) -> dict[str, Any]:
    sa, sb = stack_functions(ra), stack_functions(rb)
    rows = align_stacks(sa, sb)
    common = sum(r["same"] for r in rows)
    return {"rows": rows, "common": common, "a_frames": len(sa), "b_frames": len(sb),
            "same": bool(rows) and common == len(rows)}


def _label(r: Mapping[str, Any], fallback: str) -> dict[str, Any]:
    d, s = r.get("dump") or {}, r.get("summary") or {}
    return {"path": d.get("path") or (r.get("input") or {}).get("path") or fallback,
            "hostname": s.get("hostname"), "crash_time": s.get("crash_time"),
            "uptime_seconds": s.get("uptime_seconds")}


def diff_reports(ra: Mapping[str, Any], rb: Mapping[str, Any], names: tuple[str, str] = ("A", "B")) -> dict[str, Any]:
    """Compare two report dicts; every section says ``same`` and what differs (``a``/``b``)."""
    out: dict[str, Any] = {
        "kind": "diff",
        "a": _label(ra, names[0]),
        "b": _label(rb, names[1]),
        "kernel": _kernel(ra, rb),
        "cmdline": _cmdline(ra, rb),
        "taint": _taints(ra, rb),
        "modules": _modules(ra, rb),
        "sysctls": _sysctls(ra, rb),
        "verdict": _verdicts(ra, rb),
        "stacks": _stacks(ra, rb),
    }
    env = all(out[k]["same"] for k in ("kernel", "cmdline", "taint", "modules", "sysctls"))
    out["same_environment"] = env
    out["same_bug"] = out["verdict"]["same_bug"]
    out["headline"] = _headline(out)
    return out


def _headline(d: dict[str, Any]) -> str:
    v = d["verdict"]
    bug = (f"the same bug (signature {v['signature']['a']})" if d["same_bug"]
           else "different bugs" + ("" if v["category"]["same"] else
                                    f" ({v['category']['a']} vs {v['category']['b']})"))
    k = d["kernel"]
    if k["same"]:
        where = "on the same kernel"
    else:
        where = f"on different kernels ({k['release']['a']} → {k['release']['b']})" if not k["release"]["same"] \
            else "on different builds of one kernel release"
    env = [name for name in ("cmdline", "taint", "modules", "sysctls") if not d[name]["same"]]
    tail = f"; also differ: {', '.join(env)}" if env else (
        "; same command line, taints, modules and panic sysctls" if k["same"] else "")
    return f"{bug[0].upper()}{bug[1:]} {where}{tail}"
