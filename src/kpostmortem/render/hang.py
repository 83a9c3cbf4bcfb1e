"""The HANG section of a report: what the stuck tasks wait for, who holds it, the chain or the
cycle, and the stacks of the waiters and holders (from ``blocked_tasks.wait_for``)."""

from __future__ import annotations

from typing import Any

from kpostmortem.render.common import frame_lines, hexa

__all__ = ["hang_heading", "hang_lines"]

STACK_FRAMES = 14
"""Frames shown per task stack; the JSON report has them all."""


def _wait_for(report: dict[str, Any]) -> dict[str, Any]:
    return (report.get("blocked_tasks") or {}).get("wait_for") or {}


def hang_heading(report: dict[str, Any]) -> str | None:
    """``DEADLOCK  cycle: a[1] → b[2] → a[1]``, ``HANG  wait-for chain: …`` or None."""
    wf = _wait_for(report)
    links = {link["pid"]: link for link in wf.get("links") or []}
    if wf.get("cycles"):
        cycle = wf["cycles"][0]
        return "DEADLOCK  cycle: " + " → ".join(_who(links.get(p, {"pid": p})) for p in [*cycle, cycle[0]])
    rcu = (wf.get("rcu") or {}).get("holders") or []
    if rcu and not wf.get("links"):
        who = ", ".join(f"{h.get('comm')}[{h.get('pid')}]" + (f" on CPU {h['cpu']}" if h.get("cpu") is not None else "")
                        for h in rcu)
        return f"RCU STALL  grace period held up by {who}"
    if wf.get("spinlock"):
        s = wf["spinlock"]
        h = s.get("holder") or {}
        holder = f"{h.get('comm')}[{h['pid']}] on CPU {h.get('cpu')}" if h.get("pid") is not None else "unknown holder"
        return f"LOCKUP  {s.get('comm')}[{s.get('pid')}] on CPU {s.get('cpu')} spins on a lock held by {holder}"
    chains = [c for c in wf.get("chains") or [] if c]
    if chains:
        chain = max(chains, key=len)
        return "HANG  wait-for chain: " + " → ".join(_who(links.get(p, {"pid": p})) for p in chain)
    return None


def _who(link: dict) -> str:
    return f"{link.get('comm', '?')}[{link.get('pid')}]"


def _object_lines(wait: dict | None) -> list[str]:
    if not wait:
        return ["    waits for no lock found on its stack"]
    if wait.get("kind") == "sleep":
        return [f"    timed sleep in {wait.get('primitive')}() from {wait.get('site')}() "
                f"{wait.get('site_source') or ''}".rstrip()]
    name = wait.get("name") or "an unnamed object"
    where = ""
    if wait.get("container") and wait.get("container_address") is not None:
        where = f" in {wait['container']} at {hexa(wait['container_address'])}"
    lines = [f"    waits for {name}: {wait.get('kind')} at {hexa(wait.get('address'))}{where}"]
    site = f"{wait.get('site')}() {wait.get('site_source') or ''}".rstrip() if wait.get("site") else "?"
    checked = ", found on its wait list" if wait.get("verified") else ""
    lines.append(f"    asked for in {site}, sleeping in {wait.get('primitive')}() ({wait.get('how')}{checked})")
    return lines


def _holder_line(holder: dict | None) -> list[str]:
    if not holder:
        return []
    if holder.get("pid") is not None:
        sure = "" if holder.get("sure") == "certain" else f" — {holder.get('sure')}: {holder.get('reason')}"
        state = f", state {holder['state']}" if holder.get("state") else ""
        return [f"    held by {holder.get('comm')}[{holder['pid']}]{state} ({holder.get('how')}){sure}"]
    return [f"    unknown holder: {holder.get('reason') or holder.get('how')}"]


def _frames(report: dict[str, Any], pid: int, link: dict) -> list[dict]:
    for t in (report.get("blocked_tasks") or {}).get("tasks") or []:
        if t.get("pid") == pid and t.get("frames"):
            return t["frames"]
    return link.get("frames") or []


def _stack(frames: list[dict]) -> list[str]:
    """A task's stack from the code the interrupt or NMI stopped (for a task that was running),
    the interrupt's own frames left to the JSON report."""
    start = next((i for i in range(1, len(frames))
                  if frames[i].get("interrupted") and not frames[i - 1].get("interrupted")), 0)
    shown = [{**f, "symbol": _symbol(f)} for f in frames[start:]]
    above = [f"      ({start} frames of the interrupt that stopped it above these, in --format json)"] if start else []
    return above + frame_lines({"stack": {"frames": shown}}, limit=STACK_FRAMES)


def _symbol(f: dict) -> str:
    if f.get("symbol"):
        return f["symbol"]
    fn = f.get("function") or "??"
    return fn + (f"+0x{f['offset']:x}" if f.get("offset") is not None else "")


def hang_lines(report: dict[str, Any]) -> list[str]:
    """The section's lines under its heading: each task of the chain or cycle with its wait
    object and holder, then each one's own stack."""
    wf = _wait_for(report)
    if not wf:
        return []
    links = {link["pid"]: link for link in wf.get("links") or []}
    lines: list[str] = []
    spin = wf.get("spinlock")
    if spin:
        lines.append(f"  {spin.get('comm')}[{spin.get('pid')}] on CPU {spin.get('cpu')}:")
        lines += _object_lines(spin.get("wait")) + _holder_line(spin.get("holder"))
        if spin.get("holder_frames"):
            h = spin.get("holder") or {}
            lines.append(f"  stack of the holder {h.get('comm')}[{h.get('pid')}] on CPU {h.get('cpu')}:")
            lines += _stack(spin["holder_frames"])
        return lines
    for h in (wf.get("rcu") or {}).get("holders") or []:
        who = f"{h.get('comm')}[{h.get('pid')}]"
        lines.append(f"  RCU grace period held up by {who}, state {h.get('state')}: {h.get('how')}")
        if h.get("frames"):
            lines.append(f"  stack of {h.get('comm')}[{h.get('pid')}]:")
            lines += _stack(h["frames"])
    order: list[int] = []
    for group in [*(wf.get("cycles") or []), *(wf.get("chains") or [])]:
        order += [p for p in group if p not in order]
    for pid in order:
        link = links.get(pid)
        if link is None:
            continue
        lines.append(f"  {_who(link)}, state {link.get('state')}:")
        lines += _object_lines(link.get("wait")) + _holder_line(link.get("holder"))
    for pid in order:
        link = links.get(pid)
        frames = _frames(report, pid, link or {})
        if frames:
            lines.append(f"  stack of {_who(link or {'pid': pid})}:")
            lines += _stack(frames)
    return lines
