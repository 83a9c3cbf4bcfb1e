"""The analysis as drgn-session helpers: run it on an open Program, get its results, print them.

Front end for interactive work (``kpostmortem shell``, the drgn plugin, any drgn session via
``from kpostmortem.helpers import *``). The analysis runs once per Program and is cached.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import drgn
from drgn.helpers.common.prog import takes_program_or_default

from kpostmortem.inputs.dump import DebugInfoStatus, Dump
from kpostmortem.inputs.elfinfo import DumpHeader, read_dump_header
from kpostmortem.render.common import hexa, insn_lines
from kpostmortem.report import Report, Verdict

if TYPE_CHECKING:
    from drgn.helpers.linux.stack import LinuxKernelStack

    from kpostmortem.context import Context
    from kpostmortem.helpers.fault import FaultExplanation
    from kpostmortem.verdict.known import KnownBugs

__all__ = [
    "crash_analysis",
    "crash_report",
    "crash_verdict",
    "dump_of_program",
    "fault_explanation",
    "format_fault_explanation",
    "format_stack_checks",
    "panic_stack_trace",
    "print_fault",
    "print_report",
    "print_stack_checks",
    "print_verdict",
]

_CACHE_KEY = "kpostmortem.analysis"


@dataclass
class _CachedAnalysis:
    report: Report
    context: Context
    debuginfo: tuple[str, ...]


def dump_of_program(prog: drgn.Program, debuginfo: Sequence[str] = ()) -> Dump:
    """Wrap a Program opened elsewhere (``drgn -c``, a script) as a :class:`~kpostmortem.inputs.dump.Dump`.

    The debug info already loaded in ``prog`` is recorded as is; module debug files are looked
    for later, on demand, in ``debuginfo`` and the standard places.

    :param debuginfo: directories of module debug files (``.ko``, ``.ko.debug``)
    """
    path = prog.core_dump_path
    header = DumpHeader("unknown", 0)
    if path:
        try:
            header = read_dump_header(path)
        except OSError as e:
            header = DumpHeader("unknown", 0, problems=(f"cannot read the dump header: {e}",))
    debug = DebugInfoStatus(dump_build_id=header.build_id)
    try:
        main = prog.main_module()
    except LookupError:
        main = None
    if main is not None:
        if main.build_id:
            debug.dump_build_id = main.build_id.hex()
        if main.debug_file_status == drgn.ModuleFileStatus.HAVE:
            debug.vmlinux = main.debug_file_path
            debug.vmlinux_build_id = debug.dump_build_id
    for module in prog.modules():
        if (isinstance(module, drgn.RelocatableModule)
                and module.debug_file_status == drgn.ModuleFileStatus.HAVE):
            debug.modules[module.name.replace("-", "_")] = module.debug_file_path or "?"
    return Dump(path or "<live kernel>", header, prog, debug, [os.fspath(d) for d in debuginfo])


def analysis_of_dump(dump: Dump, known: KnownBugs | None = None) -> tuple[Report, Context]:
    """Run the whole analysis on ``dump`` and remember it on its Program for the helpers below.

    :param known: a loaded known-bugs file to match the crash against; None: the default file
        (``$KPOSTMORTEM_KNOWN_BUGS``, else ``$XDG_CONFIG_HOME/kpostmortem/known-bugs.toml``), if any
    """
    # Imported here, like kpostmortem.helpers.* below: kpostmortem.helpers re-exports this
    # module, so importing any of them at module level would be an import cycle.
    from kpostmortem.pipeline import analyze_dump

    report, context = analyze_dump(dump, command=None, known=known if known is not None else _default_known_bugs())
    dump.prog.cache[_CACHE_KEY] = _CachedAnalysis(report, context, tuple(dump._debuginfo_dirs))
    return report, context


def _default_known_bugs() -> KnownBugs | None:
    """The default known-bugs file, loaded; a malformed one is a warning here (the session still
    opens), not an error as in ``kpostmortem analyze``."""
    import sys

    from kpostmortem.verdict.known import KnownBugsError, find_known_bugs, load_known_bugs

    path = find_known_bugs()
    if path is None:
        return None
    try:
        return load_known_bugs(path)
    except KnownBugsError as e:
        print(f"kpostmortem: warning: known bugs not matched: {e.one_line()}", file=sys.stderr)
        return None


@takes_program_or_default
def crash_analysis(
    prog: drgn.Program, debuginfo: Sequence[str] | None = None, refresh: bool = False
) -> tuple[Report, Context]:
    """The analysis of a kernel crash dump: its report and the context it was made from.

    Runs kpostmortem's whole pipeline (every analyzer and the verdict engine) on ``prog`` the
    first time, then returns the cached result.

    :param debuginfo: directories of module debug files; giving new ones reruns the analysis
    :param refresh: rerun even if a result is cached
    :raises ValueError: ``prog`` is not a Linux kernel
    """
    if not prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL:
        raise ValueError("kpostmortem analyses Linux kernel crash dumps; this program is not a kernel")
    cached = prog.cache.get(_CACHE_KEY)
    if (cached is not None and not refresh
            and (debuginfo is None or tuple(debuginfo) == cached.debuginfo)):
        return cached.report, cached.context
    return analysis_of_dump(dump_of_program(prog, debuginfo or ()))


@takes_program_or_default
def crash_report(prog: drgn.Program) -> Report:
    """The full report of the crash (see :func:`crash_analysis`); ``.to_dict()`` for JSON."""
    return crash_analysis(prog)[0]


@takes_program_or_default
def crash_verdict(prog: drgn.Program) -> Verdict:
    """The root-cause verdict of the crash: category, title, guilty function, evidence.

    >>> crash_verdict(prog).title
    'BUG: kernel NULL pointer dereference in crashpoc_null_write [crashpoc]'
    """
    return crash_analysis(prog)[0].verdict


@takes_program_or_default
def panic_stack_trace(prog: drgn.Program) -> LinuxKernelStack:
    """The crashed task's stack, segmented (task, IRQ, exception…), as the analysis unwound it.

    Unlike ``prog.crashed_thread().stack_trace()``, the debug info of the modules on the
    stack has been loaded first, so module frames have names, lines and variables.
    """
    return crash_analysis(prog)[1].trace


def _fault_from_dict(d: dict) -> FaultExplanation:
    from kpostmortem.helpers.fault import FaultExplanation, Suspect

    return FaultExplanation(**{**d, "suspects": [Suspect(**s) for s in d.get("suspects", [])]})


@takes_program_or_default
def fault_explanation(prog: drgn.Program) -> FaultExplanation | None:
    """What the trapping instruction of the crashed task tried to do, and with what.

    The decoded instructions, the memory operand and its effective address, the register
    that held the bad pointer, and the variable (and ``struct`` member) it belonged to.

    :return: None when the crashed stack has no exception frame (a plain ``panic()``)
    """
    report = crash_analysis(prog)[0]
    return _fault_from_dict(report.fault) if report.fault else None


def format_fault_explanation(ex: FaultExplanation) -> str:
    """The fault explanation as text: the instruction window, then what it did, in words."""
    d = ex.to_dict()
    words = (ex.cpu_event or {}).get("instruction_words") or "faulting instruction"
    lines = [f"{words} in {ex.function or '?'} ({ex.source or 'source unknown'})"]
    lines.extend(insn_lines(d))
    if ex.trapping_instruction:
        lines.append(f"  {words}: {ex.trapping_instruction}")
    if ex.operand:
        lines.append(f"  {ex.access or 'access'} of {ex.operand}")
    regs = [r for r in (ex.base_register, ex.index_register) if r]
    for reg in regs:
        value = ex.registers.get(reg)
        if value is None and ex.bad_register:
            value = ex.registers.get(ex.bad_register)
        lines.append(f"  {reg} = {hexa(value)}")
    if ex.effective_address is not None or ex.fault_address is not None:
        match = {True: " (they match)", False: " (they differ)"}.get(ex.address_matches, "")
        lines.append(
            f"  effective address {hexa(ex.effective_address)} · fault address "
            f"{hexa(ex.fault_address)}{match}"
        )
    if ex.address_class:
        lines.append(f"  {ex.address_class.get('description')}")
    # Facts the fault helper may or may not know how to find yet, shown when present.
    for label, key in (("identified as", "identity"), ("page tables", "mapping")):
        if getattr(ex, key, None):
            lines.append(f"  {label}: {getattr(ex, key)}")
    caller = getattr(ex, "caller", None)
    if caller:
        lines.append(f"  PC is not code: called from {caller.get('symbol')} ({caller.get('source') or '?'})")
    bug = getattr(ex, "bug", None)
    if bug:
        lines.append(f"  __bug_table: {bug}")
    if ex.error_code:
        lines.append(f"  page-fault error code: {ex.error_code.get('text')}")
    if ex.poison:
        lines.append(f"  {ex.bad_register} holds a poison value: {ex.poison}")
    for s in ex.suspects:
        member = f", accessed `{s.name}->{s.member}` ({s.struct})" if s.member else ""
        lines.append(f"  {ex.bad_register} holds `{s.name}` ({s.type}) in {s.function}(){member}")
    origin = getattr(ex, "origin", None)
    if origin and origin.get("text"):
        lines.append(f"  {origin['text']}")
    if ex.bad_register and not ex.suspects:
        lines.append(f"  no variable found holding {ex.bad_register} (module or kernel DWARF missing?)")
    lines.extend(f"  problem: {p}" for p in ex.problems)
    return "\n".join(lines)


def format_stack_checks(report: Report) -> str:
    """The stack checks of a report as text: every task's stack-end canary, and the rest."""
    sc = dict(report.stack_checks)
    if not sc:
        outcome = next((o for o in report.outcomes if o.name == "stack-checks"), None)
        why = f"{outcome.status}: {outcome.detail}" if outcome else "not run"
        return f"stack checks: none ({why})"
    task = report.crashed_task
    lines = [
        f"stack-end canaries (STACK_END_MAGIC at the lowest word of each task's stack): "
        f"{sc.pop('canaries_checked', '?')} tasks checked, "
        f"{sc.pop('canaries_unreadable', 0)} unreadable"
    ]
    damaged = sc.pop("canaries_damaged", [])
    crashed_damaged = sc.pop("crashed_task_canary_damaged", None)
    if damaged:
        for c in damaged:
            lines.append(
                f"  OVERWRITTEN: {c['comm']}[{c['pid']}] at {hexa(c['address'])}: "
                f"{hexa(c['value'])}, ~{c['overwritten_bytes']} bytes above it differ from zero"
            )
    else:
        lines.append("  every canary intact")
    if task:
        state = {True: "OVERWRITTEN", False: "intact", None: "?"}[crashed_damaged]
        lines.append(f"  crashed task {task.get('comm')}[{task.get('pid')}]: canary {state}")
    size = sc.pop("thread_size", None)
    if size:
        lines.append(f"thread stack size (THREAD_SIZE): {size} bytes")
    # Checks added later by the stack analyzer show up here as they are.
    lines.extend(f"{key.replace('_', ' ')}: {value}" for key, value in sc.items())
    return "\n".join(lines)


@takes_program_or_default
def print_verdict(prog: drgn.Program) -> None:
    """Print the verdict of the crash with its evidence (see :func:`crash_verdict`)."""
    print(crash_verdict(prog))


@takes_program_or_default
def print_fault(prog: drgn.Program) -> None:
    """Print the explanation of the faulting instruction (see :func:`fault_explanation`)."""
    ex = fault_explanation(prog)
    if ex is None:
        report = crash_report(prog)
        outcome = next((o for o in report.outcomes if o.name == "fault"), None)
        print(f"no fault to explain ({outcome.detail if outcome else 'fault analyzer not run'})")
        return
    print(format_fault_explanation(ex))


@takes_program_or_default
def print_stack_checks(prog: drgn.Program) -> None:
    """Print the stack checks: stack-end canaries of every task, stack size."""
    print(format_stack_checks(crash_report(prog)))


@takes_program_or_default
def print_report(prog: drgn.Program, fmt: str = "text") -> None:
    """Print the whole report as ``kpostmortem analyze`` does.

    :param fmt: ``"text"``, ``"json"`` or ``"markdown"``
    """
    from kpostmortem.render import render

    print(render(crash_report(prog).to_dict(), fmt), end="")


def _display_with_str() -> None:
    """Let drgn's REPL show verdicts and reports with their ``__str__``, as it does its own types."""
    try:
        from drgn.cli import display_str
    except ImportError:  # drgn before 0.0.31 has no display_str: the dataclass repr is shown
        return
    from kpostmortem.helpers.fault import FaultExplanation
    from kpostmortem.helpers.stack import CanaryState

    for cls in (Verdict, Report, FaultExplanation, CanaryState):
        display_str(cls)


_display_with_str()
