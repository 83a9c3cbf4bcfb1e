"""Rendering of ``kpostmortem diff``: the dict of verdict/diff.py as text, Markdown or JSON."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["render_diff"]

_WIDTH = 44


def _v(x: Any) -> str:
    if x is None:
        return "?"
    if x == "":
        return "(none)"
    return str(x)


def _frame(f: dict[str, Any] | None) -> str:
    if f is None:
        return ""
    mod = f" [{f['module']}]" if f.get("module") else ""
    return f"#{f['index']:<3} {f['function']}{mod}"


def _lines(d: dict[str, Any], md: bool) -> list[str]:
    """The diff as lines; ``md`` adds Markdown headings, code spans and fenced blocks."""
    code = (lambda s: f"`{s}`") if md else (lambda s: s)
    head = (lambda s: f"### {s}") if md else (lambda s: s.upper())
    bullet = "- " if md else "  "
    out = [f"## {d['headline']}" if md else d["headline"], ""]
    for side in ("a", "b"):
        host = d[side].get("hostname")
        out.append(f"{bullet}{side.upper()}: {code(d[side]['path'])}" + (f" (host {host})" if host else ""))

    def pair(name: str, p: dict[str, Any]) -> str:
        if p["same"]:
            return f"{bullet}{name}: {code(_v(p['a']))} (same)"
        return f"{bullet}{name}: {code(_v(p['a']))} → {code(_v(p['b']))}"

    out += ["", head("Verdict")]
    v = d["verdict"]
    for key in ("title", "category", "signature", "function", "module", "source", "confidence"):
        out.append(pair(key, v[key]))
    if "known_bugs" in v:
        kb = v["known_bugs"]
        out.append(f"{bullet}known bugs: {', '.join(kb['a']) or 'none'} → {', '.join(kb['b']) or 'none'}")

    out += ["", head("Kernel")]
    k = d["kernel"]
    for key, name in (("release", "release"), ("version", "uname -v"), ("build_id", "build ID"), ("arch", "arch")):
        out.append(pair(name, k[key]))

    out += ["", head("Command line")]
    c = d["cmdline"]
    if c["same"]:
        out.append(f"{bullet}same: {code(_v(c['a']))}")
    else:
        out.append(f"{bullet}A: {code(_v(c['a']))}")
        out.append(f"{bullet}B: {code(_v(c['b']))}")
        if c["added"]:
            out.append(f"{bullet}added in B: {' '.join(code(w) for w in c['added'])}")
        if c["removed"]:
            out.append(f"{bullet}removed in B: {' '.join(code(w) for w in c['removed'])}")

    out += ["", head("Taints")]
    t = d["taint"]
    out.append(pair("letters", t))

    def sources(s: dict[str, list[str]]) -> str:
        return "; ".join(f"{letter}: {', '.join(mods)}" for letter, mods in sorted(s.items())) or "no module"

    out.append(f"{bullet}set by: A {sources(t['sources']['a'])} · B {sources(t['sources']['b'])}")

    out += ["", head("Modules")]
    m = d["modules"]
    out.append(pair("loaded", m["count"]))
    if m["added"]:
        out.append(f"{bullet}added in B: {', '.join(code(x) for x in m['added'])}")
    if m["removed"]:
        out.append(f"{bullet}removed in B: {', '.join(code(x) for x in m['removed'])}")
    for ch in m["changed"]:
        what = ", ".join(f"{k} {_v(x['a'])} → {_v(x['b'])}" for k, x in ch.items() if k != "name")
        out.append(f"{bullet}changed: {code(ch['name'])}: {what}")
    if m["same"]:
        out.append(f"{bullet}same modules, versions and srcversions")

    out += ["", head("Panic sysctls")]
    for row in d["sysctls"]["values"]:
        out.append(pair(row["name"], row))

    s = d["stacks"]
    out += ["", head("Crashed stacks") + f" aligned by function: {s['common']} in common, "
            f"A {s['a_frames']} frames, B {s['b_frames']}"]
    if md:
        out.append("```")
    out.append(f"  {'A':<{_WIDTH}}   B")
    for row in s["rows"]:
        mark = "=" if row["same"] else ("<" if row["b"] is None else ">")
        out.append(f"  {_frame(row['a']):<{_WIDTH}} {mark} {_frame(row['b'])}".rstrip())
    if md:
        out.append("```")
    return out


def render_diff(d: dict[str, Any], fmt: str = "text") -> str:
    """``fmt``: ``text``, ``markdown`` or ``json``."""
    if fmt == "json":
        return json.dumps(d, indent=2, sort_keys=False) + "\n"
    return "\n".join(_lines(d, fmt == "markdown")) + "\n"
