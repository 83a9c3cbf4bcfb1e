"""Degraded-mode analyzer: without the kernel's DWARF, fill the crashed task, the summary and
the module list from what needs no types: the CPUs' NT_PRSTATUS notes, the dump header, the
kernel log (read through VMCOREINFO) and the raw ``modules`` list.

Runs only in degraded mode, in place of the task, summary and modules analyzers.
"""

from __future__ import annotations

from dataclasses import asdict

from kpostmortem.context import Context
from kpostmortem.decode.taint import decode_taint_letters, taint_mask_from_letters
from kpostmortem.helpers.modules import modules_section
from kpostmortem.helpers.trace import frames_from_log
from kpostmortem.inputs.nodwarf import module_names
from kpostmortem.report import Frame, Report


def _how(frames, records) -> tuple[str, str]:
    names = [f.function or "" for f in frames]
    kinds = [r.kind for r in records]
    if "sysrq_handle_crash" in names or "sysrq" in kinds:
        return "sysrq", "forced crash: SysRq-c (sysrq_handle_crash)"
    if "watchdog_timer_fn" in names or "watchdog_timer_fn.cold" in names:
        return "watchdog", "watchdog: soft lockup detector called panic()"
    if frames and frames[0].interrupted:
        return "oops", "oops → crash_kexec directly, kdump armed"
    if "panic" in names:
        i = names.index("panic")
        caller = next((n for n in names[i + 1 :] if n), None)
        return "explicit-panic", f"explicit panic() called by {caller or 'an unnamed module function'}"
    return "unknown", "crash path not recognised (degraded mode: no kernel DWARF)"


def run(ctx: Context, report: Report) -> None:
    header = ctx.dump.header
    pr = ctx.crashed_prstatus
    records = list(ctx.log.records)
    state = getattr(ctx.dump, "degraded", None)
    last_pc = report.frames[-1].pc if report.frames else None
    cut = state is not None and (not state.kallsyms or (
        # the unwind stops after the first module frame: module ORC needs the module's debug file
        state.kernel_range is not None and last_pc is not None
        and not state.kernel_range[0] <= last_pc < state.kernel_range[1]))
    if cut and report.frames:
        before = len(report.frames)
        report.frames = frames_from_log(report.frames, records, pr.pid)
        if len(report.frames) > before:
            report.stack.setdefault("segments", []).append(
                {"kind": "LOG", "first": before, "last": len(report.frames) - 1})
            report.stack["depth"] = len(report.frames)
            report.stack["from_log"] = ("frames from the log's call trace: without debug info the "
                                        "dump's stack cannot be unwound further")
    rec = next((r for r in reversed(records) if r.pid == pr.pid and r.comm), None)
    report.crashed_task = {
        "pid": pr.pid,
        "comm": rec.comm if rec else None,
        "cpu": pr.cpu,
        "state": None,
        "preempt_count": None,
        "context": "unknown",
        "kernel_thread": None,
        "stack_segments": [s["kind"] for s in report.stack.get("segments", [])],
        "source": "NT_PRSTATUS note and the kernel log (degraded mode)",
    }

    tainted = next((r.tainted for r in reversed(records) if r.tainted is not None), None)
    flags = decode_taint_letters(tainted) if tainted else []
    panic = next((r for r in reversed(records) if r.panic_message), None)
    first = ctx.log.first_oops()
    mode, text = _how(report.frames, records)
    lines = ctx.log_lines
    report.summary = {
        "hostname": header.hostname,
        "release": header.release,
        "arch": ctx.dump.arch,
        "uptime_seconds": lines[-1].timestamp if lines else None,
        "crash_time": header.crash_time,
        "panic_message": panic.panic_message if panic else None,
        "panic_on_oops": None, "panic_on_warn": None, "panic_timeout": None, "softlockup_panic": None,
        "hung_task_panic": None, "panic_on_oom": None, "oops_count": None,
        "how": {"mode": mode, "description": text},
        "crashes_in_log": len([r for r in records if r.kind not in ("panic", "sysrq")]),
        "first_oops": None if first is None else {
            "index": records.index(first), "kind": first.kind, "headline": first.headline,
            "timestamp": first.timestamp, "pid": first.pid, "comm": first.comm,
        },
        "taint": {
            "mask": taint_mask_from_letters(tainted) if tainted else 0,
            "letters": "".join(f.letter for f in flags),
            "flags": [{"letter": f.letter, "name": f.name, "description": f.description} for f in flags],
            "source": "the oops's Tainted: field",
        },
        "cmdline": header.vmcoreinfo.get("COMMANDLINE"),
        "degraded": True,
    }

    # Hung tasks: without the task list, the hung-task detector's report in the log names
    # each blocked task and prints its stack (reliable entries only, as frames).
    blocked = []
    for r in records:
        if r.kind != "hung-task" or len(blocked) >= 20:
            continue
        frames = [asdict(Frame(index=i, function=e.function, offset=e.offset, size=e.size, module=e.module,
                               segment=e.context))
                  for i, e in enumerate(e for e in r.call_trace if e.reliable)]
        blocked.append({"pid": r.pid, "comm": r.comm, "blocked_seconds": r.lockup_seconds, "frames": frames,
                        "source": "the hung-task report in the log (degraded mode)"})
    if blocked:
        report.blocked_tasks = {"count": len(blocked), "tasks": blocked}

    names, problem = module_names(ctx.prog)
    taints: dict[str, str] = {}
    for r in records:
        taints.update(r.module_taints)
    logged: set[str] = set()
    if problem is not None or not names:
        # No raw list (before Linux 6.0 VMCOREINFO does not locate kallsyms, so not `modules`
        # either), and a panic() prints no "Modules linked in:": the modules the log's traces
        # name as "func+off/size [mod]" were loaded when the kernel printed them.
        for r in records:
            logged.update(e.module for e in (*r.call_trace, *filter(None, [r.rip])) if e.module)
    mods = [
        {"name": name, "size": None, "state": None, "taints": taints.get(name, ""),
         "version": None, "srcversion": None, "sig_ok": None}
        for name in set(names) | set(taints) | logged
    ]
    report.modules = modules_section(mods, report.frames, ctx.log, ctx.dump.debug.modules) | {
        "source": "the raw modules list and the log's 'Modules linked in:' (degraded mode)",
        "problem": problem,
    }
