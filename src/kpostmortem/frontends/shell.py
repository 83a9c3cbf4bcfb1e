"""``kpostmortem shell``: drgn's interactive session on a dump, with the analysis in scope.

The dump is opened and analysed as by ``analyze``; then drgn's REPL starts with ``report``,
``verdict``, ``fault``, ``panic_trace``, ``ctx``, kpostmortem's helpers and its ``%kpm`` commands.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import drgn

from kpostmortem import __version__
from kpostmortem.context import Context
from kpostmortem.inputs.dump import Dump, open_dump
from kpostmortem.report import Report

if TYPE_CHECKING:
    from kpostmortem.verdict.known import KnownBugs

__all__ = ["Session", "open_session", "session_banner", "session_globals", "run_shell"]

VARIABLES = (
    ("report", "the whole Report: .fault .frames .stack_checks .modules .log, .to_dict()"),
    ("verdict", "the Verdict: .title .category .confidence .evidence (dataclasses.asdict)"),
    ("fault", "FaultExplanation of the trapping instruction (None for a plain panic); print_fault()"),
    ("panic_trace", "the crashed task's stack; panic_trace[0].locals(), panic_trace[0]['var']"),
    ("ctx", "the analysis Context: .panic_task .log.records .printk_records"),
    ("dump", "the opened Dump: .debug (debug info loaded), .load_module_debug_info([...])"),
)


@dataclasses.dataclass
class Session:
    """An opened, analysed dump, ready for the REPL."""

    dump: Dump
    report: Report
    context: Context


def open_session(
    path: str,
    vmlinux: str | None = None,
    debuginfo: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
    known: KnownBugs | None = None,
) -> Session:
    """Open and analyse ``path`` as ``kpostmortem analyze`` does.

    :raises KpmError: the dump or its debug info cannot be opened (one line, an exit code)
    """
    from kpostmortem.session import analysis_of_dump

    dump = open_dump(path, vmlinux, debuginfo, progress=progress)
    if progress:
        progress("analysing")
    report, context = analysis_of_dump(dump, known)
    return Session(dump, report, context)


def _summary(func: Callable[..., Any]) -> str:
    """First sentence of a docstring, reST markup dropped."""
    doc = (inspect.getdoc(func) or "").split("\n\n", 1)[0].split(":param", 1)[0]
    doc = re.sub(r":\w+:`~?([^`]+)`", r"\1", " ".join(doc.split()))
    return doc.replace("``", "").split(". ", 1)[0].rstrip(".")


def kpm_help() -> None:
    """Print what kpostmortem puts in this session: variables, helpers, commands."""
    from kpostmortem import helpers

    print("kpostmortem in this drgn session\n\nVariables:")
    for name, text in VARIABLES:
        print(f"  {name:<12s} {text}")
    print("\nHelpers (from kpostmortem.helpers import *):")
    for name in helpers.__all__:
        obj = getattr(helpers, name)
        if not callable(obj) or inspect.isclass(obj):
            continue
        print(f"  {name + '()':<26s} {_summary(obj)}")
    print(
        "\nCommands (add --help):\n"
        "  %kpm          the whole report, as `kpostmortem analyze` prints it\n"
        "  %kpm_verdict  the verdict and its evidence\n"
        "  %kpm_fault    the faulting instruction explained\n"
        "  %kpm_stack    stack-end canaries of every task (or of one PID)\n"
        "\ndrgn: help(drgn), and its helpers: find_task(pid), for_each_task(), print_dmesg(), ..."
    )


def session_globals(session: Session, base: dict[str, Any]) -> dict[str, Any]:
    """drgn's default globals plus kpostmortem's helpers and the analysis results."""
    from kpostmortem import helpers
    from kpostmortem.session import fault_explanation

    scope = dict(base)
    scope.update({name: getattr(helpers, name) for name in helpers.__all__})
    scope.update(
        report=session.report,
        verdict=session.report.verdict,
        fault=fault_explanation(session.dump.prog),
        panic_trace=session.context.trace,
        ctx=session.context,
        dump=session.dump,
        kpm_help=kpm_help,
    )
    return scope


def session_banner(session: Session, drgn_banner: str) -> str:
    """The verdict, how to get help, then drgn's own banner and our import line."""
    v = session.report.verdict
    d = session.report.dump
    where = v.source or "source unknown"
    if v.function:
        where += f" in {v.function}()"
    if v.module:
        where += f" [{v.module}]"
    lines = [
        f"kpostmortem {__version__} shell · {d.get('file')} ({d.get('release') or '?'} "
        f"{d.get('arch') or ''}) · drgn {drgn.__version__}",
        f"VERDICT  {v.title}",
        f"         {v.category} · confidence {v.confidence} · {where}",
        *(f"         {m['message']}" for m in session.report.known_bugs or []),
        "In scope: " + ", ".join(name for name, _ in VARIABLES) + ", drgn's and kpostmortem's helpers.",
        "Help: kpm_help(); commands: %kpm, %kpm_verdict, %kpm_fault, %kpm_stack (each with --help).",
        drgn_banner,
        ">>> from kpostmortem.helpers import *",
    ]
    return "\n".join(lines)


def run_shell(session: Session) -> None:
    """Run drgn's interactive session on the analysed dump until the user exits."""
    from drgn.cli import run_interactive

    from kpostmortem.frontends.drgn_plugin import register_commands

    # Also when drgn plugins are disabled (DRGN_DISABLE_PLUGINS): the banner promises them.
    register_commands()
    run_interactive(
        session.dump.prog,
        banner_func=lambda banner: session_banner(session, banner),
        globals_func=lambda base: session_globals(session, base),
    )
