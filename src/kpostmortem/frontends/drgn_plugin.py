"""drgn plugin: registers kpostmortem's commands when drgn opens a Linux kernel.

Loaded through the ``drgn.plugins`` entry point. In drgn: ``%kpm``, ``%kpm_verdict``,
``%kpm_fault``, ``%kpm_stack`` (each with ``--help``), or ``drgn.commands.run_command(prog, "kpm")``.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import drgn

__all__ = ["COMMANDS", "drgn_prog_set", "register_commands"]

logger = logging.getLogger("drgn.plugins.kpostmortem")

COMMANDS = ("kpm", "kpm_verdict", "kpm_fault", "kpm_stack")
"""Names of the commands this plugin registers."""

_registered = False


def _is_linux_kernel(prog: drgn.Program) -> bool:
    return bool(prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL)


def _analysis_arguments() -> tuple:
    from drgn.commands import argument

    return (
        argument("--debuginfo", metavar="DIR", action="append",
                 help="directory of module debug files (.ko, .ko.debug); repeatable; "
                      "giving it reruns the analysis"),
        argument("--refresh", action="store_true", help="rerun the analysis instead of reusing it"),
        argument("-h", "--help", action="store_true", help="show this help"),
    )


def _analysis(prog: drgn.Program, args: argparse.Namespace):
    from kpostmortem.session import crash_analysis

    return crash_analysis(prog, args.debuginfo, refresh=args.refresh)


def _debuginfo_call(func: str, args: argparse.Namespace) -> str:
    """The call that reruns the analysis with the command's --debuginfo/--refresh, or ""."""
    if not args.debuginfo and not args.refresh:
        return ""
    params = [f"debuginfo={args.debuginfo!r}"] if args.debuginfo else []
    params += ["refresh=True"] if args.refresh else []
    return f"{func}(prog, {', '.join(params)})"


def _python(*lines: str) -> str:
    """Equivalent drgn code for ``--drgn``: the imports, a blank line, the code."""
    imports = ["from kpostmortem.helpers import *"]
    imports += [line for line in lines if line.startswith("from ")]
    code = [line for line in lines if line and not line.startswith("from ")]
    return "\n".join([*sorted(imports), "", *code])


def _missing_debug_info_note(report) -> str | None:
    """A hint when modules the analysis needed had no debug file: the verdict is weaker then."""
    missing = report.debug_info.get("modules_missing") or []
    if not missing:
        return None
    names = ", ".join(missing)
    return (f"note: no debug info for module(s) {names}: frames, variables and the verdict are "
            f"weaker; rerun with --debuginfo DIR, or start drgn with -s {missing[0]}.ko")


def _print_note(report) -> None:
    note = _missing_debug_info_note(report)
    if note:
        print(note)


def _cmd_kpm(prog: drgn.Program, name: str, args: argparse.Namespace, *,
             parser: argparse.ArgumentParser, **kwargs: Any) -> None:
    if args.help:
        print(parser.format_help(), end="")
        return
    from kpostmortem.render import render

    report, _context = _analysis(prog, args)
    print(render(report.to_dict(), args.format), end="")


def _cmd_kpm_verdict(prog: drgn.Program, name: str, args: argparse.Namespace, *,
                     parser: argparse.ArgumentParser, **kwargs: Any) -> None:
    if args.help:
        print(parser.format_help(), end="")
        return
    if args.drgn:
        print(_python(_debuginfo_call("crash_analysis", args), "print(crash_verdict(prog))"))
        return
    report, _context = _analysis(prog, args)
    print(report.verdict)
    _print_note(report)


def _cmd_kpm_fault(prog: drgn.Program, name: str, args: argparse.Namespace, *,
                   parser: argparse.ArgumentParser, **kwargs: Any) -> None:
    if args.help:
        print(parser.format_help(), end="")
        return
    if args.drgn:
        print(_python(_debuginfo_call("crash_analysis", args), "ex = fault_explanation(prog)",
                      "print(format_fault_explanation(ex))  # ex.to_dict() for the data"))
        return
    from kpostmortem.session import fault_explanation, format_fault_explanation

    report, _context = _analysis(prog, args)
    ex = fault_explanation(prog)
    if ex is None:
        outcome = next((o for o in report.outcomes if o.name == "fault"), None)
        print(f"no fault to explain ({outcome.detail if outcome else 'fault analyzer not run'})")
    else:
        print(format_fault_explanation(ex))
    _print_note(report)


def _cmd_kpm_stack(prog: drgn.Program, name: str, args: argparse.Namespace, *,
                   parser: argparse.ArgumentParser, **kwargs: Any) -> None:
    if args.help:
        print(parser.format_help(), end="")
        return
    from kpostmortem.session import format_stack_checks

    if args.drgn:
        if args.pid is not None:
            print(_python("from drgn.helpers.linux.pid import find_task",
                          f"print(stack_end_canary(find_task(prog, {args.pid})))"))
        else:
            print(_python(_debuginfo_call("crash_analysis", args), "print_stack_checks(prog)",
                          "damaged, checked, unreadable = damaged_canaries(prog)"))
        return
    if args.pid is not None:
        from drgn.helpers.linux.pid import find_task

        from kpostmortem.helpers.stack import stack_end_canary

        task = find_task(prog, args.pid)
        if not task:
            print(f"no task with pid {args.pid}")
            return
        state = stack_end_canary(task)
        word = {True: "intact", False: "OVERWRITTEN", None: "unreadable (page not in the dump)"}
        value = "?" if state.value is None else f"0x{state.value:x}"
        print(f"{state.comm}[{state.pid}]: stack-end canary at 0x{state.address:x} = {value}: "
              f"{word[state.intact]}")
        return
    report, _context = _analysis(prog, args)
    print(format_stack_checks(report))


def register_commands() -> None:
    """Register the kpostmortem commands in drgn's default command namespace (once).

    They are enabled only for Linux kernel programs.
    """
    global _registered
    if _registered:
        return
    from drgn.commands import argument, drgn_argument
    from drgn.commands.linux import linux_kernel_command

    analysis = _analysis_arguments()
    linux_kernel_command(
        name="kpm",
        description="run kpostmortem's analysis and print the report",
        long_description="Run every kpostmortem analyzer and the verdict engine on this kernel "
        "(once; later kpm commands reuse the result) and print the report as "
        "`kpostmortem analyze` does.",
        arguments=(
            argument("--format", choices=("text", "json", "markdown"), default="text",
                     help="report format (default: text)"),
            *analysis,
        ),
    )(_cmd_kpm)
    linux_kernel_command(
        name="kpm_verdict",
        description="print kpostmortem's root-cause verdict",
        long_description="The verdict of the crash: title, category, confidence, guilty "
        "function and module, and the evidence for it.",
        arguments=(*analysis, drgn_argument),
    )(_cmd_kpm_verdict)
    linux_kernel_command(
        name="kpm_fault",
        description="explain the faulting instruction of the crashed task",
        long_description="Decode the instructions around the trapping PC of the crashed task's "
        "exception frame: the memory operand, the register that held the bad pointer and its "
        "value, the effective and reported fault addresses, and which variable and struct "
        "member it was (needs the module's debug info).",
        arguments=(*analysis, drgn_argument),
    )(_cmd_kpm_fault)
    linux_kernel_command(
        name="kpm_stack",
        description="print kpostmortem's stack checks",
        long_description="Stack-end canaries (STACK_END_MAGIC) of every task and of the "
        "crashed task, the stack size; with PID, the canary of that task only.",
        arguments=(
            argument("pid", type=int, nargs="?", help="check only this task's canary"),
            *analysis,
            drgn_argument,
        ),
    )(_cmd_kpm_stack)
    _registered = True


def drgn_prog_set(prog: drgn.Program) -> None:
    """drgn plugin hook, called when a program is set: register our commands for a kernel."""
    try:
        if _is_linux_kernel(prog):
            register_commands()
    except Exception:  # noqa: BLE001 - a plugin must never break drgn
        logger.debug("kpostmortem commands not registered", exc_info=True)
