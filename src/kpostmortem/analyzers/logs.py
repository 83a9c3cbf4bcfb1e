"""Log analyzer: the crash blocks of the printk buffer, parsed, and the log's tail."""

from __future__ import annotations

from kpostmortem.context import Context
from kpostmortem.helpers.source import normalize_source_path
from kpostmortem.report import Report

TAIL_LINES = 40


def _rip_source(prog, rip) -> str | None:
    """file:line of an oops's RIP (``func+off``), resolved with this dump's debug info."""
    try:
        addr = prog.symbol(rip.function).address + (rip.offset or 0)
        loc = prog.source_location(addr)[0]
    except (LookupError, ValueError, IndexError):
        return None
    return f"{normalize_source_path(loc.filename)}:{loc.line}"


def _record_dict(rec, index: int, lines, prog=None) -> dict:
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
        "rip_source": _rip_source(prog, rip) if rip is not None and prog is not None else None,
        "fault_address": rec.fault_address,
        "error_code": rec.error_code,
        "access": rec.access,
        "bug_file": rec.bug_file,
        "bug_line": rec.bug_line,
        "panic_message": rec.panic_message,
        "escalates": getattr(rec, "escalates", None),
        # "? func" entries are stale stack words, different on every boot: reliable ones only.
        "call_trace": [e.function for e in rec.call_trace if e.reliable],
        "lines": [ln.text for ln in lines[rec.first_line_index : rec.last_line_index + 1]],
    }


def run(ctx: Context, report: Report) -> None:
    lines = ctx.log_lines
    log = ctx.log
    report.log = {
        "records": [_record_dict(r, i, lines, ctx.prog) for i, r in enumerate(log.records)],
        "unknown_symbols": [list(x) for x in log.unknown_symbols],
        "symbol_version_errors": [list(x) for x in log.symbol_version_errors],
        "module_verification_failures": list(log.module_verification_failures),
        "tail": [{"timestamp": ln.timestamp, "text": ln.text} for ln in lines[-TAIL_LINES:]],
        "lines_total": len(lines),
    }
