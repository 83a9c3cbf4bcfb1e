"""Markdown renderer: a ticket bundle — verdict and evidence first, then the summary table, the fault,
a trimmed trace, the modules, the relevant log excerpt, and the exact version and command.

``max_bytes`` caps the size: whole sections give way first (each replaced by a line saying what was
left out), then lines from the end, and the cut is always stated.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from kpostmortem.render.common import fault_title, frame_lines, hexa, insn_lines, interrupted_lines, size_text
from kpostmortem.render.hang import hang_heading, hang_lines
from kpostmortem.render.text import known_bug_lines, stack_check_lines

TRACE_LINES = 24
"""Frames shown in the ticket's trace (after collapsing recursion)."""
RECORD_LINES = 80
"""Lines of each crash record in the log excerpt."""
TAIL_LINES = 30
"""Lines of the log's tail shown when the log has no crash record."""
MIN_BYTES = 256
"""The smallest cap that still leaves room for the title and the note saying what was cut."""

_KIND_WORDS = {"host": "host name", "ip": "IP address", "mac": "MAC address", "user": "user name",
               "secret": "secret", "comm": "process name"}


@dataclass
class _Section:
    name: str
    lines: list[str]
    drop_order: int | None = None
    """Sections with a lower number give way first under a size cap; None never does."""


def _cell(v: Any) -> str:
    return str(v if v is not None else "—").replace("|", "\\|").replace("\n", " ")


def render_markdown(report: dict[str, Any], max_bytes: int | None = None, **_options: Any) -> str:
    sections = [
        _Section("verdict", _verdict(report)),
        _Section("evidence", _evidence(report), 7),
        _Section("summary", _summary(report), 6),
        _Section("fault", _fault(report), 4),
        _Section("interrupted", _interrupted(report), 4),
        _Section("trace", _trace(report), 5),
        _Section("hang", _hang(report), 5),
        _Section("stack checks", _stack_checks(report), 2),
        _Section("modules", _modules(report), 3),
        _Section("log excerpt", _log_excerpt(report), 1),
        _Section("analyzers", _analyzers(report), 2),
        _Section("footer", _footer(report)),
    ]
    sections = [s for s in sections if s.lines]
    text = _join(sections)
    if max_bytes is not None and len(text.encode()) > max_bytes:
        text = _cap(sections, max(max_bytes, MIN_BYTES))
    return text


def _join(sections: list[_Section]) -> str:
    return "\n".join(line for s in sections for line in [*s.lines, ""])


def _verdict(report: dict[str, Any]) -> list[str]:
    v = report.get("verdict") or {}
    out = [f"## {v.get('title', 'kpostmortem report')}", ""]
    out.append(
        f"**Category** `{v.get('category')}` · **confidence** {v.get('confidence')} · "
        f"**signature** `{v.get('signature')}`" + (" · **degraded** (no kernel DWARF)" if v.get("degraded") else "")
    )
    out.append("")
    where = f"**Where** `{v.get('function') or '?'}` at `{v.get('source') or 'source unknown'}`"
    cul = v.get("culprit") or {}
    if v.get("module"):
        taints = ", ".join(cul.get("taint_names") or [])
        where += f" in module `{v['module']}`" + (f" ({taints})" if taints else "")
    else:
        where += " (core kernel)"
    out.append(where)
    if v.get("explanation"):
        out += ["", v["explanation"]]
    known = known_bug_lines(report)
    if known:
        out.append("")
        out += [f"  {line.strip()}" if line.startswith("  ") else f"- **{line}**" for line in known]
    red = report.get("redaction")
    if red:
        kinds = red.get("kinds") or {}
        done = [f"{n['distinct']} {_KIND_WORDS.get(k, k)}{'s' if n['distinct'] != 1 else ''}"
                for k, n in kinds.items() if n.get("occurrences")]
        out += ["", "> **Redacted** before sharing: " + (", ".join(done) or "nothing was found to redact")
                + "; a placeholder such as `<host-1>` stands for the same value wherever it appears."
                + ("" if red.get("comm") else " Process names are kept.")]
    return out


def _evidence(report: dict[str, Any]) -> list[str]:
    v = report.get("verdict") or {}
    out = ["### Evidence", ""]
    for e in v.get("evidence", []):
        unchecked = e["text"].startswith("? ")  # no re-checkable fact behind it
        mark = "?" if unchecked else "✔" if e.get("agrees", True) else "✘"
        out.append(f"- {mark} {e['text'][2:] if unchecked else e['text']}"
                   + (f" _({e['source']})_" if e.get("source") else ""))
    out += [f"- ? could not check: {m}" for m in v.get("missing", [])]
    return out if len(out) > 2 else []


def _summary(report: dict[str, Any]) -> list[str]:
    d = report.get("dump") or {}
    s = report.get("summary") or {}
    t = report.get("crashed_task") or {}
    taint = s.get("taint") or {}
    rows = [
        ("Kernel", f"{d.get('release')} {d.get('arch')}" + (f" ({s['version']})" if s.get("version") else "")),
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
    return ["### Summary", "", "| | |", "|---|---|", *(f"| {_cell(k)} | {_cell(val)} |" for k, val in rows)]


def _fault(report: dict[str, Any]) -> list[str]:
    """What the faulting instruction did, in words, then the decoded window around it."""
    fault = report.get("fault") or {}
    if not fault.get("instructions") and not fault.get("trapping_instruction") and not fault.get("call_target"):
        return []
    out = [f"### Fault — `{fault.get('function') or '?'}` ({fault.get('source') or '?'})", ""]
    if fault.get("invalid_pc"):
        caller = fault.get("caller") or {}
        out = [f"### Fault — PC `{hexa(fault.get('pc'))}` is not in kernel text, called from "
               f"`{caller.get('symbol', '?')}` ({caller.get('source') or '?'})", ""]
    facts = []
    if fault.get("trapping_instruction"):
        facts.append(f"{fault_title(fault).lower()} `{fault['trapping_instruction']}`")
    if fault.get("operand"):
        facts.append(f"{fault.get('access') or 'access'} of `{fault['operand']}`")
    if fault.get("bad_register"):
        facts.append(f"`{fault['bad_register']}` = `{hexa(fault.get('bad_register_value'))}`")
    if fault.get("effective_address") is not None:
        facts.append(f"effective address `{hexa(fault['effective_address'])}`")
    if fault.get("fault_address") is not None:
        facts.append(f"fault address `{hexa(fault['fault_address'])}`")
    if facts:
        out += [" · ".join(facts), ""]
    notes = []
    cls = fault.get("address_class") or {}
    if cls.get("description"):
        notes.append(f"address: {cls['description']}")
    ec = fault.get("error_code") or {}
    if ec.get("text"):
        notes.append(f"page-fault error code {hexa(ec.get('raw'))}: {ec['text']}")
    for sus in fault.get("suspects", [])[:2]:
        member = f" (accessed `{sus['name']}->{sus['member']}`, {sus['struct']})" if sus.get("member") else ""
        notes.append(f"`{fault.get('bad_register')}` holds `{sus['name']}` ({sus.get('type')}) "
                     f"in {sus.get('function')}(){member}")
    if (fault.get("origin") or {}).get("text"):
        notes.append(fault["origin"]["text"])
    target = fault.get("call_target") or {}
    if target.get("expression"):
        member = f" ({target['struct']}, member `{target['member']}`)" if target.get("member") else ""
        notes.append(f"called through `{target['expression']}`{member} = `{hexa(target.get('value'))}` "
                     f"at {target.get('call_symbol')}: `{target['call']}`")
    if fault.get("poison"):
        notes.append(f"poison value: {fault['poison']}")
    if fault.get("identity"):
        notes.append(f"the address is {fault['identity']}")
    if fault.get("mapping"):
        notes.append(f"page tables: {fault['mapping']}")
    bug = fault.get("bug") or {}
    if bug.get("file"):
        notes.append(f"{'WARN' if bug.get('warning') else 'BUG'} at {bug['file']}:{bug.get('line')}")
    out += [f"- {n}" for n in notes]
    if notes:
        out.append("")
    if fault.get("instructions"):
        out += ["```", *insn_lines(fault), "```"]
    return out


def _interrupted(report: dict[str, Any]) -> list[str]:
    """An interrupt or NMI stopped the CPU: the interrupted instruction and its loop (no fault)."""
    it = report.get("interrupted") or {}
    if not it.get("instructions") and not it.get("loop") and not it.get("event"):
        return []
    title, lines = interrupted_lines(it)
    loop_text = (it.get("loop") or {}).get("text")
    body = [x for x in lines if x.strip() != (loop_text or "\0")]
    out = [f"### Interrupted instruction — {title}", ""]
    if loop_text:
        out += [loop_text, ""]
    return out + ["```", *body, "```"]


def _trace(report: dict[str, Any]) -> list[str]:
    """The crashed task's trace, runs of one function (recursion) collapsed, at most TRACE_LINES frames."""
    t = report.get("crashed_task") or {}
    frames = (report.get("stack") or {}).get("frames", [])
    if not frames:
        return []
    # Chunks of frames to show, separated by the runs left out: (frames, skipped after them).
    chunks: list[tuple[list[dict[str, Any]], int]] = []
    shown: list[dict[str, Any]] = []
    i = 0
    while i < len(frames):
        j = i
        fn = frames[i].get("function")
        while fn and j + 1 < len(frames) and frames[j + 1].get("function") == fn:
            j += 1
        if j - i + 1 >= 4:
            chunks.append(([*shown, frames[i]], j - i - 1))
            shown = [frames[j]]
        else:
            shown.extend(frames[i : j + 1])
        i = j + 1
    chunks.append((shown, 0))
    lines: list[str] = []
    room, skipped = TRACE_LINES, 0
    verdict = report.get("verdict") or {}
    for chunk, run in chunks:
        if room <= 0:
            break
        lines += frame_lines({"stack": {"frames": chunk[:room]}, "verdict": verdict})
        room -= min(room, len(chunk))
        if run and room > 0:
            fn = chunk[-1].get("function")
            lines.append(f"      … {run} more frames of {fn} (#{chunk[-1]['index'] + 1}–#{chunk[-1]['index'] + run})")
            skipped += run
    hidden = len(frames) - (TRACE_LINES - room) - skipped
    if hidden > 0:
        lines.append(f"  … {hidden} more frames (full trace in --format json)")
    head = f"### Call trace (pid {t.get('pid')} `{t.get('comm')}`, CPU {t.get('cpu')})"
    return [head, "", "```", *lines, "```"]


def _hang(report: dict[str, Any]) -> list[str]:
    """What the stuck tasks wait for, who holds it, and their stacks (the text report's lines)."""
    head = hang_heading(report)
    return [f"### {head}", "", "```", *hang_lines(report), "```"] if head else []


def _stack_checks(report: dict[str, Any]) -> list[str]:
    """The text report's STACK CHECKS lines, unwrapped, in a code block."""
    lines = stack_check_lines(report, width=None)
    return ["### Stack checks", "", "```", *lines, "```"] if lines else []


def _modules(report: dict[str, Any]) -> list[str]:
    v = report.get("verdict") or {}
    mods = report.get("modules") or {}
    if not mods.get("loaded") and not mods.get("unknown_symbols"):
        return []
    out = ["### Modules", ""]
    rows = [m for m in mods.get("loaded", []) if m.get("taints") or m.get("frames") or m["name"] == v.get("module")]
    if rows:
        out += ["| module | size | state | taints | frames |", "|---|---|---|---|---|"]
        for m in rows:
            frames = _ranges(m.get("frames", []))
            cells = [m["name"], size_text(m.get("size")), m.get("state"), m.get("taints") or "—", frames or "—"]
            out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        out.append("")
    n = mods.get("count", 0)
    out.append(f"{n} module{'s' if n != 1 else ''} loaded, {len(mods.get('tainting', []))} tainting.")
    for u in mods.get("unknown_symbols", []):
        out.append(f"- log: `{u['module']}`: Unknown symbol `{u['symbol']}`")
    for u in mods.get("symbol_version_errors", []):
        out.append(f"- log: `{u['module']}`: disagrees about version of symbol `{u['symbol']}`")
    return out


def _ranges(indexes: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``#0–#2, #5``."""
    out: list[str] = []
    for i in indexes:
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return ", ".join(f"#{a}" if a == b else f"#{a}–#{b}" for a, b in out)


def _squeeze(lines: list[str]) -> list[str]:
    """Runs of one repeated line (a recursion in the oops's trace) as the line and a count."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        j = i
        while j + 1 < len(lines) and lines[j + 1] == lines[i]:
            j += 1
        out.append(lines[i])
        if j - i >= 2:
            out.append(f"[… the same line {j - i} more times]")
        elif j > i:
            out.append(lines[j])
        i = j + 1
    return out


def _log_excerpt(report: dict[str, Any]) -> list[str]:
    """The crash records of the log (each cut to RECORD_LINES), else the log's last lines."""
    log = report.get("log") or {}
    body: list[str] = []
    recs = log.get("records", [])
    for r in recs:
        lines = _squeeze(r.get("lines", []))
        body += lines[:RECORD_LINES]
        if len(lines) > RECORD_LINES:
            body.append(f"[… {len(lines) - RECORD_LINES} more lines of this record omitted]")
        body.append("")
    what = f"{len(recs)} crash record{'s' if len(recs) != 1 else ''}"
    if not recs:
        tail = log.get("tail", [])[-TAIL_LINES:]
        body = [line.get("text", "") for line in tail]
        what = f"last {len(body)} lines"
    if not body:
        return []
    while body and not body[-1]:
        body.pop()
    return ["<details><summary>Kernel log: " + what + "</summary>", "", "```", *body, "```", "</details>"]


def _analyzers(report: dict[str, Any]) -> list[str]:
    bad = [o for o in report.get("analyzers", []) if o["status"] != "ok"]
    if not bad:
        return []
    return ["### Analyzers not ok", "", *(f"- `{o['name']}` {o['status']}: {o.get('detail')}" for o in bad)]


def _footer(report: dict[str, Any]) -> list[str]:
    tool = report.get("tool") or {}
    cmd = shlex.join(tool.get("command") or []) or "kpostmortem analyze"
    return [f"_kpostmortem {tool.get('version')} · `{cmd}`_"]


def _cap(sections: list[_Section], max_bytes: int) -> str:
    """Fit ``max_bytes``: keep the most important sections that fit whole, name the others; always say so.

    Sections that never give way (the verdict, the footer) stay; the others are taken back in
    order of importance (highest ``drop_order`` first) as long as the whole still fits. One line
    before the footer lists what was left out. If even that is too long, lines are cut from the end.
    """
    keep = {i for i, s in enumerate(sections) if s.drop_order is None}
    candidates = sorted((i for i in range(len(sections)) if i not in keep), key=lambda i: -sections[i].drop_order)

    def build(kept: set[int]) -> str:
        left_out = [sections[i] for i in range(len(sections)) if i not in kept]
        parts = [s for i, s in enumerate(sections) if i in kept]
        if left_out:
            n = sum(1 for s in left_out for line in s.lines if line)
            what = ", ".join(s.name for s in left_out)
            note = _Section("cut", [f"_[{n} more lines omitted to fit {max_bytes} bytes: {what} — "
                                    "attach `--format json` for all]_"])
            parts.insert(len(parts) - 1 if parts and parts[-1].name == "footer" else len(parts), note)
        return _join(parts)

    tried_part = False
    for i in candidates:
        if len(build(keep | {i}).encode()) <= max_bytes:
            keep.add(i)
        elif not tried_part:
            # The most important section that does not fit whole may fit in part (its first lines).
            tried_part = True
            whole = sections[i]
            for n in range(len(whole.lines) - 1, 2, -1):
                sections[i] = _Section(whole.name, _head(whole.lines, n), whole.drop_order)
                if len(build(keep | {i}).encode()) <= max_bytes:
                    keep.add(i)
                    break
            else:
                sections[i] = whole
    text = build(keep)
    return text if len(text.encode()) <= max_bytes else _cut_lines(text, max_bytes)


def _head(lines: list[str], n: int) -> list[str]:
    """The first ``n`` lines of a section, code block closed, and how many lines were left out."""
    part = lines[:n]
    if sum(1 for ln in part if ln.startswith("```")) % 2:
        part.append("```")
    if sum(ln.count("<details>") - ln.count("</details>") for ln in part) > 0:
        part.append("</details>")
    rest = sum(1 for ln in lines[n:] if ln and not ln.startswith(("```", "</details>")))
    return [*part, f"_[… {rest} more lines of this section omitted]_"]


def _cut_lines(text: str, max_bytes: int) -> str:
    """Cut at a line boundary, close an open code block, and say how much was cut."""
    lines = text.split("\n")
    note = "\n**[report cut to {max} bytes: {cut} more lines omitted — attach --format json for all]**"
    room = max_bytes - len(note.format(max=max_bytes, cut=len(lines)).encode()) - len("```\n</details>\n")
    kept: list[str] = []
    size = 0
    for line in lines:
        n = len(line.encode()) + 1
        if size + n > room:
            break
        kept.append(line)
        size += n
    if sum(1 for ln in kept if ln.startswith("```")) % 2:
        kept.append("```")
    if sum(ln.count("<details>") - ln.count("</details>") for ln in kept) > 0:
        kept.append("</details>")
    kept.append(note.format(max=max_bytes, cut=len(lines) - len(kept)))
    return "\n".join(kept)
