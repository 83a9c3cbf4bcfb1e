"""Text renderer: the terminal report, verdict first, readable at 100 columns."""

from __future__ import annotations

import textwrap
from typing import Any

from .common import frame_lines, hexa, insn_lines, size_text

_BOLD, _RED, _GREEN, _YELLOW, _DIM, _RESET = "\033[1m", "\033[31m", "\033[32m", "\033[33m", "\033[2m", "\033[0m"


WIDTH = 100


def render_text(report: dict[str, Any], color: bool = False, **_options: Any) -> str:
    def c(code: str, s: str) -> str:
        return f"{code}{s}{_RESET}" if color else s

    v = report.get("verdict") or {}
    d = report.get("dump") or {}
    s = report.get("summary") or {}
    t = report.get("crashed_task") or {}
    tool = report.get("tool") or {}
    out: list[str] = []
    level = f", dump level {d['dump_level']}" if d.get("dump_level") is not None else ""
    fmt = {"kdump": "kdump-compressed", "elf": "ELF"}.get(d.get("format"), d.get("format"))
    out.append(
        f"kpostmortem {tool.get('version', '?')} · {d.get('file', '?')} ({fmt}{level}, "
        f"{size_text(d.get('size'))}) · {d.get('release') or '?'} {d.get('arch') or ''}"
    )
    out.append("")
    out.append(f"{c(_BOLD, 'VERDICT')}  {c(_BOLD + _RED, v.get('title', '?'))}")
    out.append(
        f"         category {v.get('category')} · confidence {v.get('confidence')} · "
        f"signature {v.get('signature')}" + (" · DEGRADED (no kernel DWARF)" if v.get("degraded") else "")
    )
    where = v.get("source") or "source unknown"
    out.append(f"         {where} — in {v.get('function') or '?'}()" + (f" [{v['module']}]" if v.get("module") else ""))
    if v.get("explanation"):
        out.append(textwrap.fill(v["explanation"], WIDTH, initial_indent=" " * 9, subsequent_indent=" " * 9))
    cul = v.get("culprit")
    if cul:
        words = ", ".join(cul.get("taint_names") or []) or "no taint flags"
        out.append(f"         culprit module {cul['name']}: {words}")
    out.append("")
    out.append(c(_BOLD, "EVIDENCE"))
    for e in v.get("evidence", []):
        mark = c(_GREEN, "✔") if e.get("agrees", True) else c(_YELLOW, "✘")
        src = f"({e['source']})" if e.get("source") else ""
        line = f"  {mark} {e['text']}"
        if src and len(line) + len(src) + 3 <= WIDTH:
            out.append(f"{line}   {c(_DIM, src)}")
        else:
            out.append(line)
            if src:
                out.append(" " * max(4, WIDTH - len(src)) + c(_DIM, src))
    for m in v.get("missing", []):
        out.append(f"  {c(_YELLOW, '?')} could not check: {m}")
    out.append("")
    out.append(c(_BOLD, "HOW IT WENT DOWN"))
    how = (s.get("how") or {}).get("description", "?")
    fo = s.get("first_oops")
    n = s.get("crashes_in_log")
    if t:
        out.append(
            f"  crashed task: pid {t.get('pid')} ({t.get('comm')}) on CPU {t.get('cpu')}, "
            f"{t.get('context')} context, state {t.get('state')}"
        )
    out.append(f"  {how}")
    if s.get("panic_message"):
        out.append(f"  panic message: {s['panic_message']}")
    if fo:
        ts = f" at {fo['timestamp']:.2f} s" if fo.get("timestamp") is not None else ""
        more = f" (of {n} crash records in the log; the first is usually the root)" if n and n > 1 else ""
        out.append(f"  first oops{ts}: {fo['headline']}{more}")
    pt = s.get("panic_timeout")
    pt_text = {None: "?", 0: "0 (wait forever)"}.get(
        pt, f"{pt} ({'reboot immediately' if pt and pt < 0 else 'reboot after that many s'})"
    )
    out.append(
        f"  panic_on_oops={s.get('panic_on_oops')} · panic_on_warn={s.get('panic_on_warn')} · "
        f"panic= timeout {pt_text} · uptime {s.get('uptime_seconds')} s"
    )
    taint = s.get("taint") or {}
    if taint.get("letters"):
        flags = ", ".join(f"{f['letter']} ({f['description']})" for f in taint.get("flags", []))
        out.append(f"  tainted: {flags}")
    if s.get("hostname") or s.get("cmdline"):
        out.append(f"  host {s.get('hostname')} · cmdline: {s.get('cmdline')}")
    fault = report.get("fault") or {}
    if fault.get("invalid_pc"):
        out.append("")
        caller = fault.get("caller") or {}
        out.append(c(_BOLD, "FAULTING INSTRUCTION") + f"  none: PC {hexa(fault.get('pc'))} is not in kernel text")
        out.append(f"  called from {caller.get('symbol', '?')} ({caller.get('source') or '?'}): a bad function pointer")
    if fault.get("instructions"):
        out.append("")
        out.append(c(_BOLD, f"FAULTING INSTRUCTION  {fault.get('function')} ({fault.get('source') or '?'})"))
        out.extend(insn_lines(fault))
        facts = []
        if fault.get("operand"):
            facts.append(f"{fault.get('access')} of {fault['operand']}")
        if fault.get("effective_address") is not None:
            facts.append(f"effective address {hexa(fault['effective_address'])}")
        if fault.get("fault_address") is not None:
            facts.append(f"fault address {hexa(fault['fault_address'])}")
        if facts:
            out.append("  " + " · ".join(facts))
        if fault.get("address_class"):
            out.append(f"  {fault['address_class'].get('description')}")
        if fault.get("mapping"):
            out.append(
                f"  page-table walk: {fault['mapping']}" + (f" · {fault['identity']}" if fault.get("identity") else "")
            )
        if (fault.get("origin") or {}).get("text"):
            out.append(f"  {fault['origin']['text']}")
        if (fault.get("bug") or {}).get("file"):
            b = fault["bug"]
            out.append(f"  __bug_table: {'WARN' if b.get('warning') else 'BUG'} at {b['file']}:{b['line']}")
        for sus in fault.get("suspects", []):
            mem = f": accessing `{sus['name']}->{sus['member']}`" if sus.get("member") else ""
            out.append(
                f"  {fault.get('bad_register')} holds `{sus['name']}` ({sus['type']}) in {sus['function']}(){mem}"
            )
    out.append("")
    out.append(c(_BOLD, f"CALL TRACE (crashed task: pid {t.get('pid')} {t.get('comm')}, CPU {t.get('cpu')})"))
    out.extend(frame_lines(report, limit=40))
    sc = report.get("stack_checks") or {}
    if sc:
        out.append("")
        dmg = sc.get("canaries_damaged") or []
        if dmg:
            names = ", ".join(f"{x['comm']}[{x['pid']}] ({x['overwritten_bytes']} B)" for x in dmg)
            out.append(c(_BOLD, "STACK CHECKS") + f"  stack-end canary overwritten: {names}")
        else:
            out.append(
                c(_BOLD, "STACK CHECKS")
                + f"  every task's stack-end canary intact ({sc.get('canaries_checked')} tasks)"
            )
    mods = report.get("modules") or {}
    if mods:
        out.append("")
        out.append(c(_BOLD, "MODULES") + f"  {mods.get('count', 0)} loaded · {len(mods.get('tainting', []))} tainting")
        for m in mods.get("loaded", []):
            if m.get("taints") or m.get("frames") or m["name"] == v.get("module"):
                owns = f"owns frames #{m['frames'][0]}–#{m['frames'][-1]}" if m.get("frames") else ""
                out.append(
                    f"  {m['name']:<16s} {size_text(m.get('size')):>10s}  {m.get('state') or '?':<6s} "
                    f"{m.get('taints') or '-':<4s} {owns}"
                )
        for u in mods.get("unknown_symbols", []):
            out.append(f"  log: {u['module']}: Unknown symbol {u['symbol']}")
        for u in mods.get("symbol_version_errors", []):
            out.append(f"  log: {u['module']}: disagrees about version of symbol {u['symbol']}")
    bad = [o for o in report.get("analyzers", []) if o["status"] != "ok"]
    if bad:
        out.append("")
        out.append(c(_BOLD, "ANALYZERS"))
        for o in bad:
            out.append(f"  {o['name']}: {o['status']}: {o.get('detail')}")
    out.append("")
    out.append(c(_BOLD, "NEXT"))
    out.append(f"  kpostmortem shell {d.get('path', 'VMCORE')}")
    out.append("      an interactive drgn session with report, verdict, fault, panic_trace in scope")
    out.append("  --format markdown --redact        for a ticket, with host names and secrets removed")
    return "\n".join(out) + "\n"
