"""Summary analyzer: what took the system down, the panic settings in force, taints, command line.

Reads the dump's state (panic path on the crashed stack, sysctls) and the parsed log.
"""

from __future__ import annotations

import drgn
from drgn.helpers.linux.panic import panic_message
from drgn.helpers.linux.timekeeping import uptime

from kpostmortem.context import Context
from kpostmortem.decode.taint import decode_taint_mask
from kpostmortem.report import Frame, Report


def _panic_message_of(ctx: Context) -> bytes | None:
    """drgn's panic_message, matched on the log records the context has already read.

    ``panic_message(prog)`` reads and decodes the whole printk ring again (~12 ms on our
    dumps); its matcher is applied to the same text, built as ``get_dmesg(timestamps=False)``
    builds it. Falls back to the public helper if drgn's matcher moves.
    """
    try:
        from drgn.helpers.linux.panic import _panic_message
    except ImportError:
        return panic_message(ctx.prog)
    return _panic_message(b"\n".join([*(r.text for r in ctx.printk_records), b""]))


# Functions whose presence on the crashed stack says how the crash was triggered.
_HOW_BY_FUNCTION = (
    ("sysrq_handle_crash", "sysrq", "forced crash: SysRq-c (sysrq_handle_crash)"),
    ("watchdog_timer_fn", "watchdog", "watchdog: soft lockup detector called panic()"),
    ("watchdog_overflow_callback", "watchdog", "watchdog: hard lockup detector (NMI) called panic()"),
    ("check_hung_uninterruptible_tasks", "watchdog", "hung task detector called panic()"),
    ("check_panic_on_warn", "warn-escalated", "WARN() escalated by panic_on_warn"),
    ("out_of_memory", "oom", "out of memory with panic_on_oom"),
    ("exc_double_fault", "double-fault", "double fault"),
    ("handle_stack_overflow", "double-fault", "double fault: kernel stack overflow"),
)


def _int_sym(prog: drgn.Program, *names: str) -> int | None:
    for name in names:
        try:
            obj = prog[name]
        except (KeyError, LookupError):
            continue
        try:
            if obj.type_.unaliased_kind() == drgn.TypeKind.STRUCT:  # atomic_t and friends
                obj = obj.counter
            return int(obj)
        except (drgn.FaultError, AttributeError, TypeError):
            continue
    return None


def how_it_went_down(frames: list[Frame], records: list, panic_on_oops: int | None) -> tuple[str, str]:
    """(mode, description) of the crash path, from the crashed stack first and the log second."""
    names = [f.function or "" for f in frames]
    for func, mode, text in _HOW_BY_FUNCTION:
        if func in names:
            return mode, text
    kinds = [r.kind for r in records]
    if "panic" in names:
        i = names.index("panic")
        caller = next((n for n in names[i + 1 :] if n), "?")
        if caller in ("oops_end", "die", "die_addr", "__die", "do_trap"):
            return "oops-escalated", "oops escalated to panic() (panic_on_oops or oops in interrupt)"
        if caller in ("__schedule_bug", "schedule_debug", "__schedule", "schedule"):
            return "stack-end-check", "scheduler's stack-end check called panic()"
        if caller == "__stack_chk_fail":
            return "stack-protector", "stack protector failure called panic()"
        return "explicit-panic", f"explicit panic() called by {caller}"
    if any(k in ("double-fault", "stack-guard") for k in kinds):
        return "double-fault", "double fault"
    if frames and frames[0].interrupted:
        if "bug" in kinds:
            return "bug", "BUG() trapped (invalid opcode) → crash_kexec"
        via = " (panic_on_oops=1)" if panic_on_oops else ""
        return "oops", f"oops → crash_kexec directly, kdump armed{via}"
    return "unknown", "crash path not recognised"


def run(ctx: Context, report: Report) -> None:
    prog = ctx.prog
    s: dict = {}
    try:
        uts = prog["init_uts_ns"].name
        s["hostname"] = uts.nodename.string_().decode(errors="replace")
        s["release"] = uts.release.string_().decode(errors="replace")
        s["version"] = uts.version.string_().decode(errors="replace")
    except (KeyError, LookupError, drgn.FaultError):
        s["hostname"] = ctx.dump.header.hostname
        s["release"] = ctx.dump.header.release
    s["arch"] = ctx.dump.arch
    # The timekeeper is updated at tick granularity; the log's last timestamp may be later.
    last_log = max((ln.timestamp for ln in ctx.log_lines if ln.timestamp is not None), default=None)
    try:
        s["uptime_seconds"] = round(max(uptime(prog), last_log or 0.0), 3)
    except (LookupError, drgn.FaultError, ValueError):
        s["uptime_seconds"] = last_log
    s["crash_time"] = ctx.dump.header.crash_time
    msg = _panic_message_of(ctx)
    s["panic_message"] = msg.decode(errors="replace") if msg else None

    s["panic_on_oops"] = _int_sym(prog, "panic_on_oops")
    s["panic_on_warn"] = _int_sym(prog, "panic_on_warn")
    s["panic_timeout"] = _int_sym(prog, "panic_timeout")
    s["softlockup_panic"] = _int_sym(prog, "softlockup_panic")
    s["hung_task_panic"] = _int_sym(prog, "sysctl_hung_task_panic")
    s["panic_on_oom"] = _int_sym(prog, "sysctl_panic_on_oom")
    s["oops_count"] = _int_sym(prog, "oops_count")  # Linux 6.2+ counts oopses in the kernel itself

    records = list(ctx.log.records)
    mode, text = how_it_went_down(report.frames, records, s["panic_on_oops"])
    s["how"] = {"mode": mode, "description": text}
    # Crashes, not their escalations: oopses, BUGs, warnings, and panics that are not
    # "Fatal exception" follow-ups of an oops.
    crashes = [r for r in records if r.kind != "panic" or (r.escalates is None and not (
        (r.panic_message or "").lower().startswith("fatal exception")))]
    s["crashes_in_log"] = len(crashes)
    first = ctx.log.first_oops()
    s["first_oops"] = None if first is None else {
        "index": records.index(first),
        "kind": first.kind,
        "headline": first.headline,
        "timestamp": first.timestamp,
        "pid": first.pid,
        "comm": first.comm,
    }

    mask = _int_sym(prog, "tainted_mask") or 0
    flags = decode_taint_mask(mask)
    s["taint"] = {
        "mask": mask,
        "letters": "".join(f.letter for f in flags),
        "flags": [{"letter": f.letter, "name": f.name, "description": f.description} for f in flags],
    }
    try:
        s["cmdline"] = prog["saved_command_line"].string_().decode(errors="replace")
    except (KeyError, LookupError, drgn.FaultError):
        s["cmdline"] = ctx.dump.header.vmcoreinfo.get("COMMANDLINE")
    report.summary = s
