"""Normalise a report dict into the facts that stay equal across boots of the same crash.

The result keeps the report's shape (renderers can render it) but drops what changes
between boots — addresses (KASLR), timings, pids, CPU numbers, paths, sizes of the dump —
and masks the same in texts. Golden files and cross-dump comparisons use it.
"""

from __future__ import annotations

import re
from typing import Any

# Keys whose values change between boots or machines.
DROP_KEYS = frozenset({
    "pc", "sp", "address", "bytes", "registers", "seconds", "timestamp", "crash_time", "uptime_seconds",
    "path", "pid", "cpu", "preempt_count", "command", "size", "build_id", "vmlinux", "vmlinux_build_id",
    "dump_build_id", "modules", "searched", "tail", "lines_total", "canaries_checked", "return_address",
    "bad_register_value", "first_line_index", "last_line_index", "value", "mask", "nr_cpus", "debug_file",
    "srcversion", "code", "stack_segments", "lines",
    # stack use varies per syscall (CONFIG_RANDOMIZE_KSTACK_OFFSET); task counts per boot
    "depth", "percent", "canaries_intact", "bytes_used",
})
# Keys dropped only inside the report's ``debug_info`` section (paths of this machine).
_KERNEL_HALF = 0xFF00000000000000

# %p prints hashed pointers: 16 hex digits that change every boot (small values, like a NULL
# dereference's 0000000000000018, are kept).
_HEX16 = re.compile(r"\b[0-9a-f]{16}\b", re.I)
# rip-relative displacements depend on where the module was loaded.
_RIP_DISP = re.compile(r"\[rip ([+-]) 0x[0-9a-f]+\]")
_TASK_PID = re.compile(r"\b(task \S+?):\d+\b")
_PERCPU_COMM = re.compile(r"\b(swapper|kworker|ksoftirqd|migration|cpuhp|idle_inject|rcuc|kthreadd)/[\d:]+[A-Za-z]*")
_KADDR = re.compile(r"\b(0x)?(ff[0-9a-f]{14})\b", re.I)
_TIME = re.compile(r"\b\d+\.\d+ ?s\b")
_PID = re.compile(r"\b(pid|PID:?|CPU:?|CPU#)\s*\d+")
_BRACKET = re.compile(r"\[([\w/:.-]*?):?\d+\]")
_STUCK = re.compile(r"stuck for \d+s")


def mask(text: str | None) -> str | None:
    """Mask kernel addresses, durations, pids and CPU numbers in a line of text."""
    if text is None:
        return None
    text = _KADDR.sub("ADDR", text)
    text = _HEX16.sub(lambda m: m.group(0) if int(m.group(0), 16) < 0x10000 else "ADDR", text)
    text = _RIP_DISP.sub(r"[rip \1 DISP]", text)
    text = _TASK_PID.sub(r"\1:N", text)
    text = _PERCPU_COMM.sub(lambda m: m.group(1) + "/N", text)
    text = _TIME.sub("T s", text)
    text = _STUCK.sub("stuck for Ns", text)
    text = _PID.sub(lambda m: m.group(1) + " N", text)
    return _BRACKET.sub(lambda m: f"[{m.group(1)}:N]" if m.group(1) else "[N]", text)


def _walk(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _walk(v) for k, v in value.items() if k not in DROP_KEYS}
    if isinstance(value, list):
        return [_walk(v) for v in value]
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= _KERNEL_HALF:
        return "ADDR"
    return value


_NUMBER = re.compile(r"\b\d+\b")


def _stack_checks(sc: dict[str, Any]) -> dict[str, Any]:
    """What stack forensics concluded, without the per-boot sizes (stack offsets are randomised).

    Keeps the section's shape (dicts stay dicts) so the renderers can render it.
    """
    if not sc:
        return {}

    def only(d: dict[str, Any] | None, *keys: str) -> dict[str, Any] | None:
        return None if not d else {k: d.get(k) for k in keys}

    return {
        "canaries_damaged": [only(c, "comm", "cause") for c in sc.get("canaries_damaged", [])],
        "crashed_task_canary_damaged": sc.get("crashed_task_canary_damaged"),
        "guard_page_hit": only(sc.get("guard_page_hit"), "function", "unmapped_guard"),
        "recursion": [only(r, "functions") for r in sc.get("recursion") or []],
        "double_fault": only(sc.get("double_fault"), "name"),
        "stack_protector": only(sc.get("stack_protector"), "function"),
        "trace_trustworthy": sc.get("trace_trustworthy"),
    }


# An idle CPU's stack ends in the path that started it: rest_init/start_kernel on the boot
# CPU, start_secondary on the others. Which CPU an interrupt (a timer, a watchdog) lands on
# varies per boot, so everything below the idle loop's entry is left out.
_IDLE_ENTRY = "cpu_startup_entry"


def _cut_boot_path(names: list[str | None]) -> int:
    """How many entries to keep: up to and including the idle loop's entry, or all."""
    return names.index(_IDLE_ENTRY) + 1 if _IDLE_ENTRY in names else len(names)


def normalized_report(report: dict[str, Any]) -> dict[str, Any]:
    """The boot-independent subset of a report dict, in the report's own shape."""
    out = _walk(report)
    out["stack_checks"] = _stack_checks(report.get("stack_checks") or {})
    stack = out.get("stack") or {}
    if "frames" in stack:
        # Recursion depth varies per boot (randomised stack offset): one entry per run of
        # identical frames, renumbered.
        frames = []
        for f in stack["frames"]:
            f = {k: v for k, v in f.items() if k != "index"}
            if frames and frames[-1] == f:
                continue
            frames.append(f)
        frames = frames[:_cut_boot_path([f.get("function") for f in frames])]
        stack["frames"] = [{**f, "index": i} for i, f in enumerate(frames)]
    stack.pop("segments", None)
    for m in (out.get("modules") or {}).get("loaded", []):
        m.pop("frames", None)
    for rec in (out.get("log") or {}).get("records", []):
        trace = rec.get("call_trace") or []
        trace = trace[:_cut_boot_path(trace)]
        rec["call_trace"] = [f for i, f in enumerate(trace) if i == 0 or trace[i - 1] != f]
    if out["verdict"].get("explanation"):
        out["verdict"]["explanation"] = _NUMBER.sub("N", out["verdict"]["explanation"])
    # Which kworkers happen to sleep in D state at crash time is a matter of timing.
    out.pop("blocked_tasks", None)
    # Evidence keeps its claims; sizes, counts and offsets in its wording may vary per boot.
    out["verdict"]["evidence"] = [
        {"kind": e.get("kind"), "agrees": e.get("agrees"), "text": _NUMBER.sub("N", mask(e.get("text")) or "")}
        for e in (report.get("verdict") or {}).get("evidence", [])
    ]
    debug = report.get("debug_info") or {}
    out["debug_info"] = {"degraded": debug.get("degraded"), "modules": sorted(debug.get("modules", {}))}
    out["tool"] = {"name": (report.get("tool") or {}).get("name")}
    return out
