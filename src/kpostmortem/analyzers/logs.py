"""Log analyzer: the crash blocks of the printk buffer, parsed, and the log's tail."""

from __future__ import annotations

from kpostmortem.context import Context
from kpostmortem.helpers.source import normalize_source_path
from kpostmortem.logreport import record_dict
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


def run(ctx: Context, report: Report) -> None:
    lines = ctx.log_lines
    log = ctx.log
    report.log = {
        "records": [
            record_dict(r, i, [ln.text for ln in lines[r.first_line_index : r.last_line_index + 1]],
                        _rip_source(ctx.prog, r.rip) if r.rip is not None else None)
            for i, r in enumerate(log.records)
        ],
        "unknown_symbols": [list(x) for x in log.unknown_symbols],
        "symbol_version_errors": [list(x) for x in log.symbol_version_errors],
        "module_verification_failures": list(log.module_verification_failures),
        "tail": [{"timestamp": ln.timestamp, "text": ln.text} for ln in lines[-TAIL_LINES:]],
        "lines_total": len(lines),
    }
