"""The report of a text log: the sections a dump's analyzers fill, from the crash record alone.

No drgn: the crashed stack is the record's call trace, the fault is its "Code:" bytes decoded
against its register dump, the modules are "Modules linked in:". What only memory could tell
(other tasks' stacks, canaries, page tables, sysctls) is left out and said so in the verdict.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from kpostmortem import __version__
from kpostmortem.decode.oopscode import explain_code_bytes
from kpostmortem.decode.oopslog import OopsRecord, TraceEntry
from kpostmortem.decode.reportkinds import report_kind_named
from kpostmortem.decode.taint import MODULE_TAINT_WORDS, decode_taint_letters
from kpostmortem.inputs.log import LogSource
from kpostmortem.report import Frame, Report
from kpostmortem.verdict.engine import category_of_record, decide, log_fallback_record, primary_record
from kpostmortem.verdict.frames import base_name, choose_guilty, is_helper

__all__ = ["log_report", "record_dict", "record_frames"]

TAIL_LINES = 40
FAULT_KINDS = frozenset({"null-deref", "page-fault", "gpf", "bug", "invalid-opcode", "divide-error",
                         "double-fault", "stack-guard", "warning", "list-corruption", "other"})


def record_dict(rec: OopsRecord, index: int, lines: Sequence[str], rip_source: str | None = None) -> dict:
    """A log record as the report's ``log.records`` entry (the same for dumps and logs)."""
    rip = rec.rip
    return {
        "index": index,
        "kind": rec.kind,
        "headline": rec.headline,
        "timestamp": rec.timestamp,
        "oops_number": rec.oops_number,
        "cpu": rec.cpu,
        "pid": rec.pid,
        "comm": rec.comm,
        "tainted": rec.tainted,
        "rip": None if rip is None else {"function": rip.function, "offset": rip.offset, "module": rip.module},
        "rip_source": rip_source,
        "fault_address": rec.fault_address,
        "error_code": rec.error_code,
        "access": rec.access,
        "bug_file": rec.bug_file,
        "bug_line": rec.bug_line,
        "panic_message": rec.panic_message,
        "escalates": rec.escalates,
        "report_kind": rec.report_kind,
        # "? func" entries are stale stack words, different on every boot: reliable ones only.
        "call_trace": [e.function for e in rec.call_trace if e.reliable],
        "lines": list(lines),
    }


def _arch(rec: OopsRecord) -> str | None:
    regs = rec.registers
    if "RSP" in regs or "RAX" in regs or (rec.rip is not None and rec.code is not None and "X29" not in regs):
        return "x86_64"
    if "X29" in regs or "LR" in regs or "PSTATE" in regs or rec.link is not None:
        return "aarch64"
    if "ESP" in regs or "EAX" in regs:
        return "i386"
    return None


def _frame(index: int, entry: TraceEntry, interrupted: bool = False) -> Frame:
    function = None if entry.function.startswith("0x") or entry.function == "(null)" else entry.function
    return Frame(index=index, function=function, offset=entry.offset, size=entry.size, pc=entry.address,
                 module=entry.module, interrupted=interrupted, segment=entry.context or "TASK")


def record_frames(rec: OopsRecord, trace: Sequence[TraceEntry] | None = None) -> list[Frame]:
    """The crashed stack as the record printed it: the RIP (the exception frame), then the
    call trace's reliable entries ("?" ones are stale words found by scanning the stack).
    ``trace``: the call trace to use instead of the record's own (its panic's)."""
    frames: list[Frame] = []
    if rec.rip is not None:
        frames.append(_frame(0, rec.rip, interrupted=True))
    elif "RIP" in rec.registers and rec.is_oops:
        frames.append(Frame(index=0, function=None, pc=rec.registers["RIP"], interrupted=True, segment="TASK"))
        if rec.link is not None:
            # arm64: the PC is not code (a call through a NULL pointer) and the caller's return
            # address is only in lr, a leaf's frame record not being written yet.
            frames.append(_frame(1, rec.link))
    elif rec.location is not None and (rec.kind in ("warning", "other") or not rec.call_trace):
        # The function the WARNING or sanitizer line names, when the record printed no RIP
        # (old kernels print the WARNING's registers inside the panic's trace); or the one a
        # panic message names when no trace follows ("stack-protector: Kernel stack is
        # corrupted in: f+0x7ea/0x7f0" then an empty "Call Trace:").
        frames.append(_frame(0, rec.location, interrupted=True))
    # A debug report's own places (lockdep's "at:" acquisition, kmemleak's allocation stack)
    # come before its call trace, the reporting context; after it for the kinds whose trace
    # names the suspect first.
    kind = report_kind_named(rec.report_kind)
    sites = list(rec.sites) if rec.rip is None else []
    trace_first = kind is not None and kind.trace_first
    if not trace_first:
        frames += [_frame(len(frames) + i, entry) for i, entry in enumerate(sites)]
    trace = list(rec.call_trace if trace is None else trace)
    if rec.rip is not None and trace and trace[0].function == rec.rip.function \
            and trace[0].offset == rec.rip.offset:
        # arm64 and riscv print the exception's PC again as the trace's first entry: one frame.
        trace = trace[1:]
    link = rec.link
    if rec.rip is not None and link is not None and not link.function.startswith("0x") \
            and base_name(link.function) != base_name(rec.rip.function) \
            and not any(e.reliable and e.function == link.function for e in trace[:1]):
        # lr names another function than pc: the faulting function has called nothing yet, so lr
        # is the return address into its caller. The kernel's frame-record unwind skips that
        # caller when the function is a leaf (no frame record of its own): lr is all that has it.
        frames.append(_frame(len(frames), link))
    for entry in trace:
        if entry.reliable:
            frames.append(_frame(len(frames), entry, interrupted=entry.interrupted))
    if trace_first:
        frames += [_frame(len(frames) + i, entry) for i, entry in enumerate(sites)]
    guilty = choose_guilty(frames, skip_scheduler=True, skip_interrupt=True)
    if guilty is None or is_helper(base_name(guilty.function) or ""):
        # Nothing but reporting machinery and helpers among the reliable entries: old kernels
        # without ORC mark every frame below an exception "?" (the WARNING's caller, the
        # sanitizer's culprit). Those entries are all the log has: take them, in order.
        seen = {f.function for f in frames}
        for entry in trace:
            if not entry.reliable and entry.function not in seen and not entry.function.startswith("0x"):
                seen.add(entry.function)
                frames.append(_frame(len(frames), entry))
    return frames


def _fault(rec: OopsRecord, arch: str | None) -> dict:
    if rec.kind not in FAULT_KINDS or (rec.rip is None and "RIP" not in rec.registers):
        return {}
    rip = rec.rip
    pc = rec.registers.get("RIP")
    if pc is None and rip is not None:
        pc = rip.address
    return explain_code_bytes(
        rec.code, rec.code_trap_offset,
        function=rip.function if rip is not None else None,
        offset=rip.offset if rip is not None else None,
        size=rip.size if rip is not None else None,
        registers=rec.gp_registers(), pc=pc,
        fault_address=rec.fault_address, error_code=rec.error_code, arch=arch or "x86_64",
    )


def _modules(rec: OopsRecord | None, frames: list[Frame], source: LogSource) -> dict:
    log = source.analysis
    loaded = []
    for name in (rec.modules_linked_in if rec is not None else ()):
        taints = (rec.module_taints.get(name) or "") if rec is not None else ""
        letters = [f.letter for f in decode_taint_letters(taints)]
        loaded.append({
            "name": name, "taints": taints,
            "taint_names": [MODULE_TAINT_WORDS.get(x, x) for x in letters],
            "frames": [f.index for f in frames if f.module == name],
            "state": None, "size": None, "debug_file": None,
        })
    loaded.sort(key=lambda m: m["name"])
    return {
        "loaded": loaded,
        "count": len(loaded),
        "tainting": [m["name"] for m in loaded if m["taints"]],
        "in_trace": sorted({f.module for f in frames if f.module}),
        "unknown_symbols": [{"module": m, "symbol": s} for m, s in log.unknown_symbols],
        "symbol_version_errors": [{"module": m, "symbol": s} for m, s in log.symbol_version_errors],
        "verification_failures": list(log.module_verification_failures),
        "from_log": True,
    }


def _after(source: LogSource, index: int) -> tuple[OopsRecord | None, bool]:
    """(the panic that followed record ``index``, whether a new kernel booted after it)."""
    log = source.analysis
    rec = log.records[index]
    panic = log.escalation_of(index)
    if panic is None:
        panic = next((r for r in log.records[index + 1 :] if r.panic_message is not None), None)
    booted = any(b > rec.last_line_index for b in log.boots)
    return panic, booted


def how_it_ended(source: LogSource, index: int) -> dict:
    """Whether the machine went down at record ``index``, read from what the log says next."""
    log = source.analysis
    rec = log.records[index]
    panic, booted = _after(source, index)
    if rec.panic_message is not None:
        return {"mode": "panic", "fatal": True, "description": f"panic: {rec.panic_message}"}
    if panic is not None:
        return {"mode": "panic", "fatal": True,
                "description": f"the report ends in a panic: {panic.panic_message or '?'}"}
    if booted:
        kdump = " (Kdump: loaded: crash_kexec into the capture kernel)" if rec.kdump_loaded else ""
        return {"mode": "rebooted", "fatal": True,
                "description": f"a new kernel boots right after the report{kdump}"}
    last = log.lines_total - 1
    if rec.last_line_index >= last:
        return {"mode": "log-ends", "fatal": None,
                "description": "the log ends with this report: whether the machine survived it is not in the log"}
    if rec.kind == "warning":
        return {"mode": "survived", "fatal": False,
                "description": "a WARNING without panic_on_warn: the kernel printed it and carried on"}
    if rec.is_oops:
        who = f"{rec.comm}[{rec.pid}]" if rec.comm else "the current task"
        return {"mode": "survived", "fatal": False,
                "description": f"the oops killed {who} and the kernel kept running (panic_on_oops=0): "
                               "no panic follows in the log"}
    return {"mode": "survived", "fatal": False,
            "description": "reported, and the kernel kept running: no panic follows in the log"}


def log_report(source: LogSource, command: Sequence[str] | None = None) -> Report:
    """The Report of a parsed text log: the same sections and verdict contract as a dump's."""
    start = time.perf_counter()
    log = source.analysis
    report = Report()
    report.tool = {"name": "kpostmortem", "version": __version__,
                   "command": list(command) if command is not None else None}
    records = [
        record_dict(r, i, [ln.text for ln in (log.record_lines[i] if i < len(log.record_lines) else ())])
        for i, r in enumerate(log.records)
    ]
    primary, pidx = primary_record(records)
    if primary is None:
        primary, pidx = log_fallback_record(records)
    rec = log.records[pidx] if pidx >= 0 else None
    arch = _arch(rec) if rec is not None else None
    release = next((r.release for r in ([rec] if rec else []) + list(log.records) if r.release), None)
    report.dump = {
        "source": "log",
        "path": source.path,
        "file": os.path.basename(source.path.rstrip("/")),
        "format": f"{source.kind} log",
        "log_kind": source.kind,
        "size": source.size,
        "lines": log.lines_total,
        "pstore_parts": source.pstore_parts,
        "dump_level": None,
        "compression": None,
        "release": release,
        "arch": arch,
        "build_id": None,
        "header_problems": [],
        "problems": [{"kind": "log", "text": p} for p in source.problems],
    }
    report.log = {
        "records": records,
        "unknown_symbols": [list(x) for x in log.unknown_symbols],
        "symbol_version_errors": [list(x) for x in log.symbol_version_errors],
        "module_verification_failures": list(log.module_verification_failures),
        "tail": [{"timestamp": ln.timestamp, "text": ln.text} for ln in source.tail[-TAIL_LINES:]],
        "lines_total": log.lines_total,
    }
    if rec is not None:
        panic = log.escalation_of(pidx)
        if not rec.call_trace and panic is not None and panic.call_trace:
            # "sysrq: Trigger a crash", an old kernel's WARNING print no stack: the panic that
            # follows prints the one the crash itself ran on, as a dump's crashed thread has it.
            report.frames = record_frames(rec, panic.call_trace)
            if not report.frames:
                report.frames = record_frames(panic)
        else:
            report.frames = record_frames(rec)
        report.crashed_task = {"pid": rec.pid, "comm": rec.comm, "cpu": rec.cpu, "state": None,
                               "context": _context(rec), "kernel_thread": None, "from_log": True}
        report.fault = _fault(rec, arch)
        report.stack = {"segments": [], "from_log": True, "reliable_entries": len(report.frames),
                        "unreliable_entries": sum(not e.reliable for e in rec.call_trace)}
    report.modules = _modules(rec, report.frames, source)
    report.summary = _summary(source, rec, pidx, release, arch)
    report.debug_info = {"degraded": False, "vmlinux": None, "modules": {}, "modules_missing": [],
                         "seconds": 0.0}
    report.verdict = decide(report)
    report.tool["seconds"] = round(time.perf_counter() - start, 3)
    return report


def _context(rec: OopsRecord) -> str:
    contexts = {e.context for e in rec.call_trace if e.reliable and e.context}
    for name, word in (("NMI", "nmi"), ("IRQ", "hardirq"), ("SOFTIRQ", "softirq")):
        if name in contexts:
            return word
    return "process" if rec.call_trace else "unknown"


def _summary(source: LogSource, rec: OopsRecord | None, pidx: int, release: str | None,
             arch: str | None) -> dict[str, Any]:
    log = source.analysis
    s: dict[str, Any] = {"hostname": source.hostname, "release": release, "arch": arch,
                         "cmdline": source.cmdline, "uptime_seconds": None, "crash_time": None}
    s["how"] = how_it_ended(source, pidx) if rec is not None else {
        "mode": "none", "fatal": None, "description": "no kernel crash report in the log"}
    panic = log.panic()
    s["panic_message"] = panic.panic_message if panic is not None else None
    for key in ("panic_on_oops", "panic_on_warn", "panic_timeout", "softlockup_panic", "hung_task_panic",
                "panic_on_oom", "oops_count"):
        s[key] = None
    crashes = [r for r in log.records if category_of_record({"kind": r.kind, "escalates": r.escalates,
                                                             "panic_message": r.panic_message}) or
               r.kind == "warning"]
    s["crashes_in_log"] = len(crashes)
    first = log.first_oops()
    s["first_oops"] = None if first is None else {
        "index": log.records.index(first), "kind": first.kind, "headline": first.headline,
        "timestamp": first.timestamp, "pid": first.pid, "comm": first.comm,
    }
    letters = (rec.tainted or "") if rec is not None else ""
    flags = decode_taint_letters(letters)
    s["taint"] = {"mask": None, "letters": "".join(f.letter for f in flags),
                  "flags": [{"letter": f.letter, "name": f.name, "description": f.description} for f in flags]}
    if rec is not None:
        s["hardware"] = rec.hardware
    return s

