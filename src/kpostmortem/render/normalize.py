"""Normalise a report dict into the facts that stay equal across boots of the same crash.

The result keeps the report's shape (renderers can render it) but drops what changes
between boots — addresses (KASLR), timings, pids, CPU numbers, paths, sizes of the dump —
and masks the same in texts. Golden files and cross-dump comparisons use it.
"""

from __future__ import annotations

import json
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
_TASK_PID = re.compile(r"\b(task \S+):\d+\b")  # "task kworker/0:0:7 blocked": the pid is the last field
# 7.x's WARNING line ends in "CPU#0: comm/pid"
_COMM_PID = re.compile(r"(CPU#\s*\w+: [^\s/]+)/\d+\b")
# Where a module's data sits inside its vmalloc'ed area moves with each load.
_MODULE_OFFSET = re.compile(r"(allocated by load_module\S*, at offset )0x[0-9a-f]+")
# A stack scan reads stale words: which ones are left varies per boot.
_SCAN_GUESS = re.compile(r"(GUESS, not an unwind: return addresses found on the stack, innermost first:).*")
_PERCPU_COMM = re.compile(r"\b(swapper|kworker|ksoftirqd|migration|cpuhp|idle_inject|rcuc|kthreadd)/[\d:]+[A-Za-z]*")
_KADDR = re.compile(r"\b(0x)?(ff[0-9a-f]{14})\b", re.I)
_TIME = re.compile(r"\b\d+\.\d+ ?s\b")
_PID = re.compile(r"\b(pid|PID:?|CPU:?|CPU#)\s*\d+")
_BRACKET = re.compile(r"\[([\w/:.-]*?):?\d+\]")
_STUCK = re.compile(r"stuck for \d+s")
# An out-of-tree module's __FILE__ is the absolute path it was built in (`kernel BUG at
# /home/me/build/foo.c:211!`): the machine's, not the bug's. In-tree paths are relative.
_ABS_SOURCE = re.compile(r"(?<![\w.~-])/(?:[\w.+~-]+/)+([\w.+~-]+\.(?:c|h|S|rs))\b")


def mask(text: str | None) -> str | None:
    """Mask kernel addresses, durations, pids and CPU numbers in a line of text."""
    if text is None:
        return None
    text = _ABS_SOURCE.sub(r"…/\1", text)
    text = _KADDR.sub("ADDR", text)
    text = _HEX16.sub(lambda m: m.group(0) if int(m.group(0), 16) < 0x10000 else "ADDR", text)
    text = _RIP_DISP.sub(r"[rip \1 DISP]", text)
    text = _TASK_PID.sub(r"\1:N", text)
    text = _PERCPU_COMM.sub(lambda m: m.group(1) + "/N", text)
    text = _TIME.sub("T s", text)
    text = _STUCK.sub("stuck for Ns", text)
    text = _PID.sub(lambda m: m.group(1) + " N", text)
    text = _COMM_PID.sub(r"\1/N", text)
    text = _MODULE_OFFSET.sub(r"\1OFF", text)
    text = _SCAN_GUESS.sub(r"\1 …", text)
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


_SERIES = re.compile(r"^(\d+\.\d+)\S*?(?:-(?:\d+-)?([a-z][\w-]*))?$")
_VERSION_NUMBER = re.compile(r"\b\d+\.\d+[\w.+~-]*")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_LINE = re.compile(r":\d+$")


def release_series(release: str | None) -> str | None:
    """`6.1.0-57-cloud-amd64` → `6.1.*-cloud-amd64`: the series and flavour, without the ABI
    number and patch level that every Debian kernel update changes."""
    if not release:
        return release
    m = _SERIES.match(release)
    if not m:
        return release
    return f"{m.group(1)}.*" + (f"-{m.group(2)}" if m.group(2) else "")


def _file_only(source: str | None) -> str | None:
    return _LINE.sub("", source) if source else source


def _kernel_owned_frame(frame: dict[str, Any]) -> bool:
    return frame.get("module") is None and bool(frame.get("function"))


def _mask_kernel_code(out: dict[str, Any], report: dict[str, Any]) -> None:
    """Offsets and line numbers inside vmlinux move with every kernel update; the function
    names, the files and everything attributed to a module (its lines included) stay."""
    for f in (out.get("stack") or {}).get("frames", []):
        if _kernel_owned_frame(f):
            f.update(offset=None, symbol=f["function"], source=_file_only(f.get("source")))
    for rec in (out.get("log") or {}).get("records", []):
        rip = rec.get("rip")
        if isinstance(rip, dict) and rip.get("module") is None:
            rip["offset"] = None
    verdict = out.get("verdict") or {}
    if verdict.get("module") is None:
        verdict["source"] = _file_only(verdict.get("source"))
    fault = out.get("fault")
    frames = (report.get("stack") or {}).get("frames") or []
    index = (report.get("fault") or {}).get("frame_index")
    if fault and isinstance(index, int) and 0 <= index < len(frames) and _kernel_owned_frame(frames[index]):
        # A fault in the kernel's own code (a BUG in lib/, SysRq): its instruction window
        # and the compiler's choices in it are the kernel build's, not the bug's.
        fault.pop("instructions", None)
        fault.pop("trap_index", None)
        fault["source"] = _file_only(fault.get("source"))


def _cut_interrupted_task(out: dict[str, Any], report: dict[str, Any]) -> None:
    """A bug in interrupt code (a timer callback, a softirq): which task the interrupt
    happened to land on, and what it was doing (idling, freeing module memory in a
    kworker, …), is a matter of timing. Keep the interrupt's frames and mark the rest."""
    frames = (report.get("stack") or {}).get("frames") or []
    guilty = (report.get("verdict") or {}).get("guilty_frame")
    if not isinstance(guilty, int) or not 0 <= guilty < len(frames):
        return
    segment = frames[guilty].get("segment")
    if segment in (None, "TASK", "USER") or not any(f.get("segment") == "TASK" for f in frames[guilty:]):
        return
    kept = out["stack"]["frames"]
    cut = next(i for i, f in enumerate(kept) if i and f.get("segment") == "TASK")
    irq_names = {f.get("function") for f in kept[:cut]}
    out["stack"]["frames"] = kept[:cut]
    interrupted = "(the interrupted task)"
    if out.get("crashed_task"):
        out["crashed_task"].update(comm=interrupted, kernel_thread=None)
    first = (out.get("summary") or {}).get("first_oops")
    if isinstance(first, dict) and first.get("comm"):
        first["comm"] = interrupted
    for rec in (out.get("log") or {}).get("records", []):
        trace = rec.get("call_trace") or []
        last = max((i for i, name in enumerate(trace) if name in irq_names), default=None)
        if last is not None:
            rec["call_trace"] = trace[: last + 1]
            if rec.get("comm"):
                rec["comm"] = interrupted


def _mask_release(report: dict[str, Any]) -> dict[str, Any]:
    release = (report.get("dump") or {}).get("release") or (report.get("summary") or {}).get("release")
    if not release:
        return report
    return json.loads(json.dumps(report).replace(json.dumps(release)[1:-1],
                                                 json.dumps(release_series(release))[1:-1]))


def normalized_report(report: dict[str, Any]) -> dict[str, Any]:
    """The boot-independent subset of a report dict, in the report's own shape.

    Also independent of which kernel of a series the dump came from: the release, the
    version string and build date, and offsets and line numbers inside vmlinux change with
    every distribution update; the verdict, the functions, the modules, the module's own
    source lines, the fault explanation and the evidence do not.
    """
    report = _mask_release(report)
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
    summary = out.get("summary") or {}
    if summary.get("version"):
        summary["version"] = _DATE.sub("DATE", _VERSION_NUMBER.sub("V", summary["version"]))
    _mask_kernel_code(out, report)
    _mask_interrupted_position(out)
    _mask_branch_targets(out)
    _cut_interrupted_task(out, report)
    _mask_slab_tracks(out)
    _mask_overflow_canary(out, report)
    return out


def _mask_interrupted_position(out: dict[str, Any]) -> None:
    """Where in its loop a stuck CPU was stopped is timing (a loop through udelay() is stopped
    anywhere in delay_tsc): the golden keeps what stopped it, not the instruction; the loop
    and the instruction are checked against the dump by tests/vmcore/test_cpu_event.py."""
    it = out.get("interrupted")
    if it:
        out["interrupted"] = {k: it[k] for k in ("event", "stalled_cpu") if k in it}
        # the functions inlined at the stopped PC, and the line the log's RIP names, move with it
        stack = out.get("stack") or {}
        frames = stack.get("frames") or []
        keep = [f for f in frames if not (f.get("inline") and f.get("interrupted"))]
        if len(keep) != len(frames):
            new_index = {f["index"]: i for i, f in enumerate(keep)}
            stack["frames"] = [{**f, "index": i} for i, f in enumerate(keep)]
            g = out["verdict"].get("guilty_frame")
            if g is not None:
                out["verdict"]["guilty_frame"] = new_index.get(g, g)
        for rec in (out.get("log") or {}).get("records", []):
            if rec.get("kind") in ("rcu-stall", "soft-lockup", "hard-lockup") and rec.get("rip_source"):
                # the stopped PC's file too: an inline cpu_relax() (processor.h) or its caller
                rec["rip_source"] = "(where the CPU was stopped)"
    for e in out["verdict"]["evidence"]:
        for prefix in ("interrupted instruction", "the loop", "interrupts were disabled"):
            # "the loop polls `lock->val.counter`" names the polled variable only where DWARF
            # has a location for it at the stopped PC
            if e["kind"] in ("instruction", "memory") and e["text"].startswith(prefix):
                e["text"] = prefix + " …"


def _mask_branch_targets(out: dict[str, Any]) -> None:
    """A module's call to the kernel goes through a PLT veneer or straight to the symbol
    depending on how far KASLR put the module from the kernel (arm64 `bl`)."""
    for insn in (out.get("fault") or {}).get("instructions") or []:
        if isinstance(insn, dict) and insn.get("target") is not None and insn.get("text"):
            insn["target"] = "TARGET"
            insn["text"] = insn["text"].split(" ", 1)[0] + " TARGET"


def _mask_overflow_canary(out: dict[str, Any], report: dict[str, Any]) -> None:
    """A stack overflow that reached the guard page may or may not have written over the
    stack-end word on the way: its frames need not touch every word, and the stack's start
    is randomised per system call. That one canary is a matter of the boot, not the bug."""
    if not (report.get("stack_checks") or {}).get("guard_page_hit"):
        return
    sc = out.get("stack_checks") or {}
    sc["canaries_damaged"] = [c for c in sc.get("canaries_damaged", []) if c.get("cause") != "overflow"]
    sc["crashed_task_canary_damaged"] = None
    verdict = out.get("verdict") or {}
    verdict["evidence"] = [e for e in verdict.get("evidence", [])
                           if not (e.get("text") or "").startswith("stack-end canary")]


_TRACK = re.compile(r"\b(last (?:freed|allocated) by) .*$")           # an evidence line
_TRACK_NAME = re.compile(r"\b(last (?:freed|allocated) by) [\w.]+\(\)")  # in a sentence


def _mask_slab_tracks(out: dict[str, Any]) -> None:
    """SLUB keeps only the last allocation and free of an object: once another task reuses
    a freed object (which one, and when, is a matter of timing), the tracks are its. Keep
    that the tracks were read, not whose they are."""
    slab = (out.get("fault") or {}).get("slab_object")
    if isinstance(slab, dict):
        for key in ("alloc", "free"):
            if key in slab:
                slab[key] = {"recorded": bool(slab[key])}
        slab.pop("allocated", None)
    for e in (out.get("verdict") or {}).get("evidence", []):
        e["text"] = _TRACK.sub(r"\1 …", e.get("text") or "")
    if (out.get("verdict") or {}).get("explanation"):
        out["verdict"]["explanation"] = _TRACK_NAME.sub(r"\1 …", out["verdict"]["explanation"])


def differences(want: Any, got: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """Every leaf where two normalised reports differ: (path, want, got)."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = []
        for k in sorted(set(want) | set(got), key=str):
            out += differences(want.get(k, _ABSENT), got.get(k, _ABSENT), f"{path}.{k}" if path else k)
        return out
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return [d for i, (a, b) in enumerate(zip(want, got, strict=True))
                for d in differences(a, b, f"{path}[{i}]")]
    return [] if want == got else [(path, want, got)]


_ABSENT = "(absent)"
_FRAME_PATH = re.compile(r"^stack\.frames\[(\d+)\]")
_CALL_TRACE_PATH = re.compile(r"^log\.records\[\d+\]\.call_trace(\[\d+\])?$")


def kernel_owned(path: str, *reports: dict[str, Any]) -> bool:
    """Whether a difference at PATH is the kernel's own code changing (a distribution update
    re-inlined or renamed one of its functions), not the analysis of the bug: a frame that
    is vmlinux's in every report, or an entry of a log record's call trace that names no
    module function."""
    m = _FRAME_PATH.match(path)
    if m:
        i = int(m.group(1))
        frames = [(r.get("stack") or {}).get("frames") or [] for r in reports]
        return all(i < len(f) and _kernel_owned_frame(f[i]) for f in frames)
    if _CALL_TRACE_PATH.match(path):
        module_functions = {f.get("function") for r in reports
                            for f in (r.get("stack") or {}).get("frames") or [] if f.get("module")}
        entries = [v for r in reports for v in _get(r, path) if isinstance(v, str)]
        return not module_functions & set(entries)
    return False


def _get(report: dict[str, Any], path: str) -> list[Any]:
    """The value(s) at a differences() path, flattened to a list (empty when absent)."""
    value: Any = report
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            i = int(part[1:-1])
            value = value[i] if isinstance(value, list) and i < len(value) else None
        else:
            value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, list) else [value]


def explain_differences(name: str, want: dict[str, Any], got: dict[str, Any], limit: int = 4) -> str:
    """One line on why a normalised report differs from its golden: a kernel update that
    changed only the kernel's own code, or a change in the analysis."""
    diffs = differences(want, got)
    if not diffs:
        return f"{name}: equal to its golden report"
    shown = "; ".join(f"{p}: {a!r} → {b!r}" for p, a, b in diffs[:limit]) + (
        f"; … {len(diffs) - limit} more" if len(diffs) > limit else "")
    if all(kernel_owned(p, want, got) for p, _, _ in diffs):
        return (f"{name}: only the kernel's own code differs from the golden (a distribution kernel "
                f"update, not a change in the analysis): {shown}")
    return f"{name}: the analysis differs from the golden: {shown}"
