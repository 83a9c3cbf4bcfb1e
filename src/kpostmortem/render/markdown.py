"""Markdown renderer: a ticket bundle — verdict and evidence first, trace and log in code blocks."""

from __future__ import annotations

from typing import Any

from .common import frame_lines, hexa, insn_lines, size_text


def _cell(v: Any) -> str:
    return str(v if v is not None else "—").replace("|", "\\|").replace("\n", " ")


def render_markdown(report: dict[str, Any], max_bytes: int | None = None, **_options: Any) -> str:
    v = report.get("verdict") or {}
    d = report.get("dump") or {}
    s = report.get("summary") or {}
    t = report.get("crashed_task") or {}
    tool = report.get("tool") or {}
    out: list[str] = [f"## {v.get('title', 'kpostmortem report')}", ""]
    out.append(
        f"**Category** `{v.get('category')}` · **confidence** {v.get('confidence')} · "
        f"**signature** `{v.get('signature')}`" + (" · **degraded** (no kernel DWARF)" if v.get("degraded") else "")
    )
    out.append("")
    loc = v.get("source") or "source unknown"
    out.append(
        f"**Where** `{v.get('function') or '?'}` at `{loc}`"
        + (f" in module `{v['module']}`" if v.get("module") else " (core kernel)")
    )
    if v.get("explanation"):
        out += ["", v["explanation"]]
    out += ["", "### Evidence", ""]
    for e in v.get("evidence", []):
        out.append(
            f"- {'✔' if e.get('agrees', True) else '✘'} {e['text']}"
            + (f" _({e['source']})_" if e.get("source") else "")
        )
    for m in v.get("missing", []):
        out.append(f"- ? could not check: {m}")
    taint = s.get("taint") or {}
    out += ["", "### Summary", "", "| | |", "|---|---|"]
    rows = [
        ("Kernel", f"{d.get('release')} {d.get('arch')}"),
        ("Dump", f"{d.get('file')} ({d.get('format')}, dump level {d.get('dump_level')}, {size_text(d.get('size'))})"),
        ("Host", s.get("hostname")),
        ("Uptime at crash", f"{s.get('uptime_seconds')} s"),
        ("How it went down", (s.get("how") or {}).get("description")),
        ("Panic message", s.get("panic_message")),
        ("Crashed task", f"pid {t.get('pid')} `{t.get('comm')}` on CPU {t.get('cpu')}, {t.get('context')} context"),
        ("Crash records in log", s.get("crashes_in_log")),
        (
            "panic_on_oops / panic_on_warn / panic=",
            f"{s.get('panic_on_oops')} / {s.get('panic_on_warn')} / {s.get('panic_timeout')}",
        ),
        ("Tainted", ", ".join(f"{f['letter']} ({f['description']})" for f in taint.get("flags", [])) or "no"),
        ("Command line", f"`{s.get('cmdline')}`" if s.get("cmdline") else None),
    ]
    out += [f"| {_cell(k)} | {_cell(val)} |" for k, val in rows]
    fault = report.get("fault") or {}
    if fault.get("instructions"):
        out += ["", f"### Faulting instruction — `{fault.get('function')}` ({fault.get('source') or '?'})", "", "```"]
        out += insn_lines(fault)
        out.append("```")
        facts = []
        if fault.get("operand"):
            facts.append(f"{fault.get('access')} of `{fault['operand']}`")
        if fault.get("effective_address") is not None:
            facts.append(f"effective address `{hexa(fault['effective_address'])}`")
        if fault.get("fault_address") is not None:
            facts.append(f"fault address `{hexa(fault['fault_address'])}`")
        if facts:
            out += ["", " · ".join(facts)]
    out += ["", f"### Call trace (pid {t.get('pid')} `{t.get('comm')}`, CPU {t.get('cpu')})", "", "```"]
    out += frame_lines(report, limit=30)
    out.append("```")
    mods = report.get("modules") or {}
    if mods.get("loaded"):
        out += ["", "### Modules", "", "| module | size | state | taints | frames |", "|---|---|---|---|---|"]
        for m in mods["loaded"]:
            if m.get("taints") or m.get("frames") or m["name"] == v.get("module"):
                frames = ", ".join(f"#{i}" for i in m.get("frames", []))
                cells = [m["name"], size_text(m.get("size")), m.get("state"), m.get("taints") or "—", frames or "—"]
                out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        out.append(f"\n{mods.get('count', 0)} modules loaded, {len(mods.get('tainting', []))} tainting.")
        for u in mods.get("unknown_symbols", []):
            out.append(f"- log: `{u['module']}`: Unknown symbol `{u['symbol']}`")
    log = report.get("log") or {}
    recs = log.get("records", [])
    if recs:
        out += ["", "<details><summary>Kernel log: crash records</summary>", "", "```"]
        for r in recs:
            out += r.get("lines", [])
            out.append("")
        out += ["```", "</details>"]
    bad = [o for o in report.get("analyzers", []) if o["status"] != "ok"]
    if bad:
        out += ["", "### Analyzers not ok", ""]
        out += [f"- `{o['name']}` {o['status']}: {o.get('detail')}" for o in bad]
    cmd = " ".join(tool.get("command") or []) or "kpostmortem analyze"
    out += ["", f"_kpostmortem {tool.get('version')} · `{cmd}`_", ""]
    text = "\n".join(out)
    if max_bytes is not None and len(text.encode()) > max_bytes:
        text = _cap(text, max_bytes)
    return text


def _cap(text: str, max_bytes: int) -> str:
    """Cut at a line boundary and say how much was cut (never silently)."""
    lines = text.split("\n")
    kept: list[str] = []
    size = 0
    note_room = 200
    for line in lines:
        n = len(line.encode()) + 1
        if size + n > max_bytes - note_room:
            break
        kept.append(line)
        size += n
    if sum(1 for ln in kept if ln.startswith("```")) % 2:
        kept.append("```")
    cut = len(lines) - len(kept)
    kept.append(f"\n**[report cut to {max_bytes} bytes: {cut} more lines omitted — attach --format json for all]**")
    return "\n".join(kept)
