"""Text renderer: the terminal report, verdict first, readable at 100 columns."""

from __future__ import annotations

import textwrap
from typing import Any

from kpostmortem.render.common import fault_title, frame_lines, hexa, insn_lines, interrupted_lines, size_text
from kpostmortem.render.hang import hang_heading, hang_lines

_BOLD, _RED, _GREEN, _YELLOW, _DIM, _RESET = "\033[1m", "\033[31m", "\033[32m", "\033[33m", "\033[2m", "\033[0m"


WIDTH = 100


def _wrap(line: str) -> list[str]:
    """Wrap a long prose line at WIDTH, continuation lines indented under its text."""
    if len(line) <= WIDTH:
        return [line]
    return textwrap.wrap(line, WIDTH, subsequent_indent="      ", break_on_hyphens=False)


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
    if d.get("source") == "log":
        fmt, level = f"text log: {d.get('log_kind')}", f", {d.get('lines')} lines"
    out.append(
        f"kpostmortem {tool.get('version', '?')} · {d.get('file', '?')} ({fmt}{level}, "
        f"{size_text(d.get('size'))}) · {d.get('release') or '?'} {d.get('arch') or ''}"
    )
    out.append("")
    title_lines = textwrap.wrap(v.get("title", "?"), WIDTH - 9, break_on_hyphens=False) or ["?"]
    out.append(f"{c(_BOLD, 'VERDICT')}  {c(_BOLD + _RED, title_lines[0])}")
    out.extend(" " * 9 + c(_BOLD + _RED, t) for t in title_lines[1:])
    out.append(
        f"         category {v.get('category')} · confidence {v.get('confidence')} · "
        f"signature {v.get('signature')}" + (" · DEGRADED (no kernel DWARF)" if v.get("degraded") else "")
    )
    where = v.get("source") or "source unknown"
    out.append(f"         {where} — in {v.get('function') or '?'}()" + (f" [{v['module']}]" if v.get("module") else ""))
    if v.get("explanation"):
        out.append(textwrap.fill(
                v["explanation"], WIDTH, initial_indent=" " * 9, subsequent_indent=" " * 9, break_on_hyphens=False
            ))
    cul = v.get("culprit")
    if cul:
        words = ", ".join(cul.get("taint_names") or []) or "no taint flags"
        out.append(f"         culprit module {cul['name']}: {words}")
    for line in known_bug_lines(report):
        indent = " " * (11 if line.startswith("  ") else 9)
        wrapped = textwrap.wrap(line.strip(), WIDTH, initial_indent=indent, subsequent_indent=indent,
                                break_on_hyphens=False)
        out.extend(c(_YELLOW, w) if line.startswith("matches ") else w for w in wrapped)
    out.append("")
    out.append(c(_BOLD, "EVIDENCE"))
    for e in v.get("evidence", []):
        mark = c(_GREEN, "✔") if e.get("agrees", True) else c(_YELLOW, "✘")
        text = e["text"]
        if text.startswith("? "):  # a claim with no re-checkable fact behind it
            mark, text = c(_YELLOW, "?"), text[2:]
        src = f"({e['source']})" if e.get("source") else ""
        text_lines = textwrap.wrap(text, WIDTH - 4, subsequent_indent="  ", break_on_hyphens=False) or [""]
        lines = [f"  {mark} {text_lines[0]}"] + [f"    {t}" for t in text_lines[1:]]
        if src and len(lines[-1]) + 3 + len(src) <= WIDTH:
            lines[-1] += "   " + c(_DIM, src)
        elif src:
            lines.append(" " * max(4, WIDTH - len(src)) + c(_DIM, src))
        out.extend(lines)
    for m in v.get("missing", []):
        out.append(f"  {c(_YELLOW, '?')} could not check: {m}")
    out.append("")
    out.append(c(_BOLD, "HOW IT WENT DOWN"))
    how_start = len(out)
    how = (s.get("how") or {}).get("description", "?")
    fo = s.get("first_oops")
    n = s.get("crashes_in_log")
    if t:
        state = f", state {t.get('state')}" if t.get("state") is not None else ""
        out.append(
            f"  crashed task: pid {t.get('pid')} ({t.get('comm')}) on CPU {t.get('cpu')}, "
            f"{t.get('context')} context{state}"
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
    if d.get("source") != "log":  # sysctls and uptime are memory, not log text
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
    out[how_start:] = [wrapped for line in out[how_start:] for wrapped in _wrap(line)]
    fault = report.get("fault") or {}
    if fault.get("invalid_pc"):
        out.append("")
        caller = fault.get("caller") or {}
        out.append(c(_BOLD, fault_title(fault)) + f"  none: PC {hexa(fault.get('pc'))} is not in kernel text")
        out.append(f"  called from {caller.get('symbol', '?')} ({caller.get('source') or '?'}): a bad function pointer")
        target = fault.get("call_target") or {}
        if target.get("expression"):
            member = f" ({target['struct']}, member `{target['member']}`)" if target.get("member") else ""
            out.extend(_wrap(f"  through `{target['expression']}`{member} = {hexa(target.get('value'))}: "
                             f"`{target['call']}`"))
            for step in target.get("steps") or []:
                if step.get("type") == "load":
                    out.append(f"    {step['instruction']}   ; loads `{step['member']}` of {step['struct']}")
    if fault.get("instructions"):
        out.append("")
        out.append(c(_BOLD, f"{fault_title(fault)}  {fault.get('function')} ({fault.get('source') or '?'})"))
        out.extend(insn_lines(fault))
        facts = []
        if fault.get("operand"):
            facts.append(f"{fault.get('access')} of {fault['operand']}")
        if fault.get("effective_address") is not None:
            facts.append(f"effective address {hexa(fault['effective_address'])}")
        if fault.get("fault_address") is not None:
            facts.append(f"fault address {hexa(fault['fault_address'])}")
        if facts:
            out.extend(_wrap("  " + " · ".join(facts)))
        if fault.get("address_class"):
            out.append(f"  {fault['address_class'].get('description')}")
        if fault.get("mapping"):
            identity = f" · {fault['identity']}" if fault.get("identity") else ""
            out.extend(_wrap(f"  page-table walk: {fault['mapping']}{identity}"))
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
    it = report.get("interrupted") or {}
    if it.get("instructions") or it.get("loop") or it.get("event"):
        title, lines = interrupted_lines(it)
        out.append("")
        out.append(c(_BOLD, "INTERRUPTED INSTRUCTION") + f"  {title}")
        out.extend(wrapped for line in lines
                   for wrapped in (_wrap(line) if not line.startswith(("  → ", "    ")) else [line]))
    out.append("")
    out.append(c(_BOLD, f"CALL TRACE (crashed task: pid {t.get('pid')} {t.get('comm')}, CPU {t.get('cpu')})"))
    out.extend(frame_lines(report, limit=40))
    hang = hang_heading(report)
    if hang:
        out.append("")
        out.append(c(_BOLD, hang))
        out.extend(wrapped for line in hang_lines(report) for wrapped in _wrap(line))
    checks = stack_check_lines(report)
    if checks:
        out.append("")
        out.append(c(_BOLD, "STACK CHECKS") + f"  {checks[0]}")
        out.extend(checks[1:])
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
    if d.get("source") == "log":
        out.append(f"  kpostmortem analyze {d.get('path', 'LOG')} --vmlinux VMLINUX")
        out.append("      source lines and inlined frames of the trace, the Code: bytes checked against the binary")
    else:
        out.append(f"  kpostmortem shell {d.get('path', 'VMCORE')}")
        out.append("      an interactive drgn session with report, verdict, fault, panic_trace in scope")
    out.append("  --format markdown --redact        for a ticket, with host names and secrets removed")
    return "\n".join(out) + "\n"


def known_bug_lines(report: dict[str, Any]) -> list[str]:
    """The known-bugs part of the verdict: one line per matching entry (its message), its
    workaround and link indented under it; one line saying none matched when a file was used
    (no ``known_bugs`` key: no file, no lines). The Markdown renderer shows the same lines."""
    if "known_bugs" not in report:
        return []
    matches = report.get("known_bugs") or []
    if not matches:
        return ["no entry of the known-bugs file matches this crash: a new one"]
    out = []
    for m in matches:
        out.append(m["message"])
        more = [f"workaround: {m['workaround']}" if m.get("workaround") else "", m.get("url") or ""]
        if any(more):
            out.append("  " + " · ".join(x for x in more if x))
    return out


def _hex_or_q(value: int | str | None) -> str:
    if value is None:
        return "?"
    return value if isinstance(value, str) else f"0x{value:x}"


def stack_check_lines(report: dict[str, Any], width: int | None = WIDTH) -> list[str]:
    """The STACK CHECKS section as plain lines (the first is the headline), wrapped at ``width``
    (None: not wrapped); empty when the report has no stack checks. The Markdown renderer shows
    the same lines."""
    sc = report.get("stack_checks") or {}
    if not sc:
        return []
    damaged = sc.get("canaries_damaged") or []
    checked = sc.get("canaries_checked")
    gaps = [f"{sc[k]} {w}" for k, w in (("canaries_unreadable", "unreadable"),
                                         ("tasks_unreachable", "tasks unreachable")) if sc.get(k)]
    gap = f"; {', '.join(gaps)}" if gaps else ""
    if damaged:
        names = ", ".join(f"{x.get('comm')}[{x.get('pid')}] ({x.get('overwritten_bytes')} B)" for x in damaged)
        head = f"stack-end canary overwritten: {names} ({checked} tasks checked{gap})"
    else:
        every = "every readable" if gaps else "every"
        head = f"{every} task's stack-end canary intact ({checked} tasks{gap})"
    lines = [head]
    for x in damaged:
        text = f"{x.get('comm')}[{x.get('pid')}] at {_hex_or_q(x.get('address'))}: {_hex_or_q(x.get('value'))} " \
               f"instead of 0x57ac6e9d, {x.get('bytes_changed')} byte(s) changed"
        if x.get("cause"):
            text += f"; {x.get('stack_not_used')} bytes from it up never used: {x['cause']}"
        lines.append(text)
    b = sc.get("stack_bounds")
    if b:
        guard = "unmapped guard page below" if b.get("has_guard_page") else "no guard page below"
        vmap = {True: "vmalloc'd", False: "not vmalloc'd"}.get(b.get("vmap"), "allocation unknown")
        lines.append(f"crashed task {b.get('comm')}[{b.get('pid')}]: stack {_hex_or_q(b.get('start'))}–"
                     f"{_hex_or_q(b.get('end'))} ({b.get('size')} bytes, {vmap}, {guard})")
    hit = sc.get("guard_page_hit")
    if hit:
        lines.append(f"✘ frame #{hit.get('frame')} {hit.get('function')}: SP {_hex_or_q(hit.get('sp'))} is "
                     f"{hit.get('below_by')} bytes below the stack, in its "
                     f"{'guard page' if hit.get('unmapped_guard') else 'page below'}: the stack overflowed")
    elif sc.get("first_sp"):
        f = sc["first_sp"]
        lines.append(f"SP of frame #{f.get('frame')} on {f.get('stack') or 'no known stack'}")
    u = sc.get("usage") or {}
    if u.get("depth") is not None:
        past = f", {u['past_end']} bytes past the end" if u.get("past_end") else ""
        big = ", ".join(f"{x.get('function')} {x.get('bytes')}" for x in (u.get("largest") or [])[:3])
        lines.append(f"depth {u['depth']} of {u.get('thread_size')} bytes ({u.get('percent')}%{past})"
                     + (f" · largest frames: {big}" if big else ""))
    for r in sc.get("recursion") or []:
        lines.append(f"recursion: {r.get('summary')}, frames #{r.get('first')}–#{r.get('last')}")
    prot = sc.get("stack_protector")
    if prot:
        lines.append(f"✘ __stack_chk_fail (frame #{prot.get('check_frame')}): the stack-protector canary of "
                     f"{prot.get('function') or '?'} (frame #{prot.get('index')}) failed")
    for e in sc.get("exception_stacks_used") or []:
        lines.append(f"{e.get('stack')} used: {' → '.join((e.get('functions') or [])[:4])}")
    close = [x for x in sc.get("least_headroom") or [] if x.get("stack_not_used") is not None]
    if close:
        lines.append("least headroom: " + ", ".join(f"{x['comm']}[{x['pid']}] {x['stack_not_used']} bytes"
                                                    for x in close))
    if sc.get("trace_trustworthy") is False:
        lines.append("✘ trace NOT trustworthy: " + "; ".join(sc.get("trace_problems") or []))
        functions = (sc.get("scan") or {}).get("functions") or []
        if functions:
            lines.append("GUESS (stack scanned for kernel text like crash's bt -t, not an unwind): "
                         + " ← ".join(functions[:12]))
    elif sc.get("trace_trustworthy"):
        lines.append("trace trustworthy: SPs on known stacks and in order, PCs in text, unwound to the top")
    errors = sc.get("canary_errors") or []
    if errors:
        n = (sc.get("canaries_unreadable") or 0) + (sc.get("tasks_unreachable") or 0)
        lines.append(f"? tasks not read, e.g. {errors[0]}" + (f" (+{n - 1} more)" if n > 1 else ""))
    lines.extend(f"? could not check {p}" for p in sc.get("problems") or [])
    if width is None:
        return [lines[0], *(f"  {line}" for line in lines[1:])]
    wrapped = [lines[0]]
    for line in lines[1:]:
        wrapped += textwrap.wrap(line, width, initial_indent="  ", subsequent_indent="      ",
                                 break_on_hyphens=False) or [""]
    return wrapped
