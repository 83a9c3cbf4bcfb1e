"""Formatting shared by the human renderers: sizes, addresses, the trace and instruction lines."""

from __future__ import annotations

from typing import Any

WIDTH = 100
"""Columns a text report fits in."""


def hexa(v: int | str | None) -> str:
    """0x-hex of an address; a normalised report's placeholders ("ADDR") pass through."""
    if v is None:
        return "?"
    return v if isinstance(v, str) else f"0x{v:x}"


def size_text(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def event_mark(event: dict[str, Any] | None) -> str:
    """The trace's mark for a pt_regs frame: "#PF" (an exception's vector), "interrupt", "NMI",
    "pt_regs" (kept short: the trace line must fit 100 columns)."""
    if not event:
        return "pt_regs"
    if event.get("kind") == "exception":
        return event.get("vector") or "exception"
    return {"interrupt": "interrupt", "nmi": "NMI", "syscall": "syscall"}.get(event.get("kind") or "", "pt_regs")


def frame_lines(report: dict[str, Any], limit: int | None = None) -> list[str]:
    """Call-trace lines: index, symbol, source, [module], markers, segment changes."""
    stack = report.get("stack") or {}
    frames = stack.get("frames", [])
    guilty = (report.get("verdict") or {}).get("guilty_frame")
    lines = []
    seg = None
    shown = frames if limit is None else frames[:limit]
    runs = _runs(shown, guilty)
    for i, f in enumerate(shown):
        if i in runs:
            n, last = runs[i]
            lines.append(f"      … {f.get('function')} ×{n} more (frames #{f['index']}–#{last}: recursion) …")
        if any(start <= i < start + n for start, (n, _last) in runs.items()):
            continue
        if f.get("pc") is not None and f["pc"] < 1 << 63 and f.get("function") is None:
            lines.append(f"      user space: rip {hexa(f['pc'])}")
            continue
        if f.get("segment") != seg:
            if seg is not None:
                lines.append(f"      ── {f.get('segment') or '?'} stack ──")
            seg = f.get("segment")
        marks = []
        if f.get("interrupted") and not f.get("inline"):
            marks.append(f"← {event_mark(f.get('event'))}")
        if f.get("inline"):
            marks.append("(inlined)")
        if f.get("index") == guilty:
            marks.append("◀ guilty")
        mod = f"[{f['module']}]" if f.get("module") else ""
        src = f.get("source") or ""
        line = f"  #{f['index']:<3d}{f['symbol']:<32s} {src:<28s} {mod:<10s} {' '.join(marks)}".rstrip()
        while len(line) > WIDTH and "/" in src.removeprefix("…/"):
            # a long header path (arch/arm64/include/asm/vdso/processor.h): its leading
            # directories go first, the file and line stay
            src = "…/" + src.removeprefix("…/").split("/", 1)[1]
            line = f"  #{f['index']:<3d}{f['symbol']:<32s} {src:<28s} {mod:<10s} {' '.join(marks)}".rstrip()
        lines.append(line)
    if limit is not None and len(frames) > limit:
        lines.append(f"  … {len(frames) - limit} more frames (full trace in --format json)")
    return lines


def _runs(frames: list[dict[str, Any]], guilty: int | None) -> dict[int, tuple[int, int]]:
    """Runs of one function repeated more than 4 times: {first hidden position: (count, last index)}.

    The first two and the last frame of a run stay visible; the guilty frame is never hidden.
    """
    out: dict[int, tuple[int, int]] = {}
    i = 0
    while i < len(frames):
        j = i
        while j + 1 < len(frames) and frames[j + 1].get("function") == frames[i].get("function"):
            j += 1
        if frames[i].get("function") and j - i + 1 > 4:
            start, end = i + 2, j - 1  # hide start..end
            hidden_guilty = [k for k in range(start, end + 1) if frames[k].get("index") == guilty]
            if hidden_guilty:
                start = hidden_guilty[0] + 1
            if end >= start:
                out[start] = (end - start + 1, frames[end]["index"])
        i = j + 1
    return out


def insn_lines(fault: dict[str, Any]) -> list[str]:
    out = []
    for i in fault.get("instructions", []):
        mark = "→ " if i.get("trap") else "  "
        target = ""
        comment = ""
        if i.get("trap") and fault.get("bad_register"):
            reg = fault["bad_register"]
            comment = f"   ; {reg} = {hexa((fault.get('registers') or {}).get(reg))}"
        elif i.get("trap") and fault.get("comment"):
            comment = f"   ; {fault['comment']}"
        out.append(f"  {mark}{i['symbol']:<36s} {i['text']}{target}{comment}")
    return out


def fault_title(fault: dict[str, Any]) -> str:
    """Title of the fault section, in the words of the CPU event: "FAULTING INSTRUCTION" for a
    fault, "TRAPPING INSTRUCTION" for BUG()'s ud2 and other traps."""
    words = (fault.get("cpu_event") or {}).get("instruction_words") or "faulting instruction"
    return words.upper()


def interrupted_lines(it: dict[str, Any]) -> tuple[str, list[str]]:
    """The interrupted-instruction section: (title suffix, lines): the window and the loop."""
    event = it.get("event") or {}
    title = f"{it.get('function') or '?'} ({it.get('source') or '?'})"
    polls = ((it.get("loop") or {}).get("polls") or [])
    comment = None
    if polls and polls[0].get("base_register"):
        p = polls[0]
        comment = f"{p['base_register']} = {hexa((it.get('registers') or {}).get(p['base_register']))}"
    lines = [f"  stopped by a {event.get('name', 'interrupt')} ({event.get('source', '?')})"]
    held = it.get("stalled_cpu")
    if held:
        lines.insert(0, f"  on CPU {held.get('cpu')}, {held.get('comm')}[{held.get('pid')}]: the CPU holding the RCU "
                        f"grace period up ({held.get('how')}), not the CPU that noticed the stall and panicked")
    lines += insn_lines({"instructions": it.get("instructions") or [], "comment": comment})
    lp = it.get("loop")
    if lp:
        lines.append(f"  {lp['text']}")
    for p in it.get("problems") or []:
        lines.append(f"  {p}")
    return title, lines
