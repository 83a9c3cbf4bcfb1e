"""The analyzer contract and the runner that isolates each analyzer's failure."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import drgn

from kpostmortem.context import Context
from kpostmortem.report import Outcome, Report

__all__ = ["Analyzer", "Skip", "run_analyzers"]


class Skip(Exception):
    """Raised by an analyzer that has nothing to do here; the message says why."""


@dataclass(frozen=True)
class Analyzer:
    """A named analysis step and what it needs."""

    name: str
    """Short name, shown in the report's outcomes."""
    run: Callable[[Context, Report], None]
    """Fills its sections of the report."""
    needs_dwarf: bool = False
    """Skip in degraded mode (no kernel DWARF)."""
    only_degraded: bool = False
    """Run only in degraded mode (a stand-in for analyzers that need DWARF); absent otherwise."""


# What each analyzer reads, in words for "the filtering dropped …".
_READS = {
    "stack-checks": "the task list",
    "blocked-tasks": "the task list",
    "task": "the crashed task",
    "modules": "the module list",
    "stack": "the crashed stack",
    "log": "the kernel log buffer",
    "summary": "kernel state (uts, sysctls, taints)",
    "fault": "the faulting code",
    "interrupted": "the interrupted code",
}


def is_excluded_page(e: BaseException) -> bool:
    """A read of a page that makedumpfile's filtering left out of the dump (libkdumpfile's
    "Excluded page"), as opposed to memory that never existed or a damaged file."""
    return isinstance(e, drgn.FaultError) and "excluded page" in str(e).lower()


def _describe_error(e: BaseException, dump_level: int | None = None) -> str:
    if is_excluded_page(e):
        level = f" (dump level {dump_level})" if dump_level is not None else ""
        return f"memory at 0x{e.address:x} was excluded from the dump by makedumpfile's filtering{level}"
    if isinstance(e, drgn.FaultError):
        return f"FaultError: memory at 0x{e.address:x} unreadable: {e.message}"
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def excluded_pages_problem(failed: dict[str, int], level: int | None, release: str | None) -> dict:
    """The dump problem "filtering dropped what the analysis needs", with its fix."""
    what = sorted({_READS.get(name, name) for name in failed})
    addrs = sorted({f"0x{a:x}" for a in failed.values()})
    lvl = f"-d {level}" if level is not None else "its dump level"
    text = (f"makedumpfile's filtering ({lvl}) excluded pages the analysis needs: "
            f"{', '.join(what)} (first unreadable address {addrs[0]})")
    if level is not None and level & 8:
        cause = (f"a makedumpfile older than the kernel ({release or '?'}) takes slab pages (tasks, "
                 "modules) for user pages and drops them at any dump level with bit 8")
        fix = (f"capture again with a lower dump level (makedumpfile -d 7 keeps slab pages) or with a "
               f"makedumpfile release that supports {release or 'this kernel'}")
    else:
        cause = "the dump level leaves out pages these structures live in"
        fix = "capture again with a lower dump level (makedumpfile -d 1, or -d 0 for everything)"
    return {"kind": "excluded-pages", "text": text, "cause": cause, "fix": fix,
            "analyzers": sorted(failed), "addresses": addrs, "dump_level": level}


def run_analyzers(ctx: Context, report: Report, analyzers: Sequence[Analyzer]) -> None:
    """Run each analyzer, isolating failures into outcomes."""
    # The verdict engine reads this before the pipeline fills debug_info in full.
    report.debug_info.setdefault("degraded", ctx.dump.debug.degraded)
    excluded: dict[str, int] = {}
    for analyzer in analyzers:
        if analyzer.only_degraded and not ctx.dump.debug.degraded:
            continue
        start = time.perf_counter()
        if analyzer.needs_dwarf and ctx.dump.debug.degraded:
            outcome = Outcome(analyzer.name, "skipped", "needs the kernel's DWARF (no vmlinux)")
        else:
            try:
                analyzer.run(ctx, report)
                outcome = Outcome(analyzer.name, "ok")
            except Skip as e:
                outcome = Outcome(analyzer.name, "skipped", str(e))
            except Exception as e:  # noqa: BLE001 - failure is data: one analyzer never kills the report
                outcome = Outcome(analyzer.name, "failed", _describe_error(e, ctx.dump.header.dump_level))
                if is_excluded_page(e):
                    excluded[analyzer.name] = e.address
        outcome.seconds = round(time.perf_counter() - start, 4)
        report.outcomes.append(outcome)
    # What degraded mode could not set up (no kallsyms in VMCOREINFO before Linux 6.0…).
    state = getattr(ctx.dump, "degraded", None)
    for text in state.problems if state is not None else ():
        report.dump.setdefault("problems", []).append(
            {"kind": "degraded", "text": text, "fix": "pass --vmlinux FILE from the kernel's -dbg/-debuginfo package"})
    # Modules whose debug files were missing, known only once the stack has been read.
    report.debug_info.setdefault("modules_missing", sorted(ctx.dump.debug.modules_missing))
    if excluded:
        problem = excluded_pages_problem(excluded, ctx.dump.header.dump_level, ctx.dump.header.release)
        report.dump.setdefault("problems", []).append(problem)
