"""The ``kpostmortem`` command: thin click front end over the pipeline and the renderers.

Exit codes: 0 verdict, 1 no confident verdict, 2 usage error, 3 dump error,
4 debug-info error, 5 internal error.
"""

from __future__ import annotations

import logging
import os
import re
import sys

import click

from kpostmortem import __version__
from kpostmortem.errors import ExitCode, KpmError

EXIT_CODES_HELP = """\b
Exit codes:
  0  a verdict was reached (confidence >= 0.5)
  1  the analysis ran but no confident verdict
  2  usage error (bad options or arguments)
  3  the dump cannot be opened or is not a kernel crash dump
  4  debug info missing, unreadable or not matching the dump
  5  internal error in kpostmortem
"""


# Control characters (C0 but newline and tab, DEL, C1) in strings read from the dump — a task
# name, the log, the panic message — would reach the terminal as escape sequences.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(data):
    """``data`` (a report dict) with every control character in its strings shown as \\xNN."""
    if isinstance(data, str):
        return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", data)
    if isinstance(data, dict):
        return {printable(k): printable(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [printable(v) for v in data]
    return data


def _fail(message: str, code: int) -> None:
    click.echo(f"kpostmortem: error: {message}", err=True)
    sys.exit(code)


def _progress(enabled: bool):
    if not enabled:
        return None

    def say(msg: str) -> None:
        click.echo(f"… {msg}", err=True)

    return say


def _in_background(fn):
    """Start ``fn()`` on a thread; returns a function that waits for it and returns its value
    or raises its exception. The wait stays interruptible (^C), and the thread is a daemon so
    an interrupted process does not wait for it."""
    import threading

    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed over to the waiting thread
            outcome["error"] = e

    thread = threading.Thread(target=run, name="kpostmortem-open", daemon=True)
    thread.start()

    def wait():
        while thread.is_alive():
            thread.join(0.05)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    return wait


@click.group(epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kpostmortem")
def main() -> None:
    """Kernel crash dump post-mortem: from a vmcore to a root-cause verdict."""


debug_options = [
    click.option("--vmlinux", type=click.Path(dir_okay=False), help="vmlinux with DWARF (e.g. from the -dbg package)."),
    click.option(
        "--debuginfo",
        "debuginfo",
        multiple=True,
        type=click.Path(),
        help="Directory of debug files (module .ko/.ko.debug, .build-id); repeatable.",
    ),
]


def with_debug_options(f):
    for opt in reversed(debug_options):
        f = opt(f)
    return f


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("vmcore", type=click.Path(readable=False))  # open_dump says why it cannot read it (exit 3)
@with_debug_options
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write the report here instead of stdout."
)
@click.option(
    "--max-bytes", type=click.IntRange(min=256), default=None,
    help="Cap the Markdown report at this size: the least important sections give way first, and the "
    "report says what it left out.",
)
@click.option("--color/--no-color", default=None, help="Colour the text report (default: only on a terminal).")
@click.option(
    "--redact",
    is_flag=True,
    help="Replace host names, IP/MAC addresses, user names and home paths, and command-line secrets "
    "with stable placeholders (<host-1>…) before rendering, in every format.",
)
@click.option("--redact-comm", is_flag=True, help="With --redact, also replace the names of user processes.")
@click.option(
    "--require-debuginfo",
    is_flag=True,
    help="Fail (exit 4) when no vmlinux with DWARF is found, instead of a degraded analysis "
    "from kallsyms, ORC and the log.",
)
def analyze(
    vmcore: str,
    vmlinux: str | None,
    debuginfo: tuple[str, ...],
    fmt: str,
    output: str | None,
    max_bytes: int | None,
    color: bool | None,
    redact: bool,
    redact_comm: bool,
    require_debuginfo: bool,
) -> None:
    """Analyse VMCORE and print the verdict and the report.

    Without a vmlinux for the dump's kernel (none given, none found) the analysis runs
    degraded, with a warning on stderr; --require-debuginfo makes that an error.
    """
    if redact_comm and not redact:
        raise click.UsageError("--redact-comm goes with --redact")
    log_kind = _text_log_kind(vmcore)
    if log_kind is not None:
        report = _text_log_report(vmcore, log_kind, vmlinux, debuginfo)
        _emit_report(report, fmt, output, max_bytes, color, redact, redact_comm)
        return
    from kpostmortem.inputs.dump import open_dump, skip_session_plugins

    skip_session_plugins()

    # drgn logs its own warnings (unreadable module list…); the report says what failed.
    logging.getLogger("drgn").setLevel(logging.CRITICAL)
    try:
        opened = _in_background(lambda: open_dump(vmcore, vmlinux, debuginfo,
                                                  allow_no_debug_info=not require_debuginfo,
                                                  progress=_progress(sys.stderr.isatty())))
        # While drgn indexes the DWARF (on its own threads, without the GIL), import the rest.
        from kpostmortem.pipeline import analyze_dump
        from kpostmortem.render import render  # noqa: F401 - imported while drgn indexes

        dump = opened()
        if dump.debug.degraded:
            click.echo(
                f"kpostmortem: warning: no vmlinux with debug info for kernel {dump.header.release or '?'}: "
                "degraded analysis from kallsyms, ORC and the log (pass --vmlinux FILE for a full one)",
                err=True,
            )
        report, _ctx = analyze_dump(dump, ["kpostmortem", *sys.argv[1:]])
    except KpmError as e:
        _fail(e.one_line(), e.exit_code)
        return
    except KeyboardInterrupt:
        _fail("interrupted", 130)
        return
    except Exception as e:  # noqa: BLE001 - never a traceback for the user
        _fail(f"internal error: {type(e).__name__}: {e} (please report with the command line)", ExitCode.INTERNAL)
        return
    _emit_report(report, fmt, output, max_bytes, color, redact, redact_comm)


def _text_log_kind(path: str) -> str | None:
    """sniff_input's answer when ``path`` is a text log (or pstore directory), else None."""
    from kpostmortem.inputs.log import LOG_KINDS, sniff_input

    try:
        kind = sniff_input(path)
    except OSError:
        return None  # open_dump says why it cannot be read, in one line
    return kind if kind in LOG_KINDS else None


def _text_log_report(path: str, kind: str, vmlinux: str | None, debuginfo: tuple[str, ...]):
    """The report of a text log; ends the run with one line when there is none (exit 1, 3, 4, 5)."""
    try:
        from kpostmortem.inputs.log import open_log
        from kpostmortem.logpipeline import analyze_log_source

        source = open_log(path, kind)
        click.echo(f"kpostmortem: input: {source.describe}", err=True)
        if not source.analysis.records:
            _fail(f"{path}: no kernel crash report found{source.no_report_hint}", ExitCode.NO_VERDICT)
        return analyze_log_source(source, vmlinux, debuginfo, ["kpostmortem", *sys.argv[1:]])
    except KpmError as e:
        _fail(e.one_line(), e.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as e:  # noqa: BLE001 - never a traceback for the user
        _fail(f"internal error: {type(e).__name__}: {e} (please report with the command line)", ExitCode.INTERNAL)


def _emit_report(report, fmt: str, output: str | None, max_bytes: int | None, color: bool | None,
                 redact: bool, redact_comm: bool) -> None:
    """Render the report as asked, write it, and exit with the verdict's code."""
    from kpostmortem.render import render

    try:
        data = printable(report.to_dict())
        if redact:
            from kpostmortem.render.redact import redact_report, redaction_note

            data = redact_report(data, comms=redact_comm)
        use_color = color if color is not None else (output is None and sys.stdout.isatty())
        text = render(data, fmt, color=use_color, max_bytes=max_bytes)
        if redact and fmt == "text":
            text += redaction_note(data["redaction"]) + "\n"
    except Exception as e:  # noqa: BLE001 - never a traceback for the user
        _fail(f"internal error: {type(e).__name__}: {e} (please report with the command line)", ExitCode.INTERNAL)
        return
    if output:
        try:
            with open(output, "w") as f:
                f.write(text)
        except OSError as e:
            _fail(f"{output}: cannot write the report: {e.strerror or e}", ExitCode.USAGE)
            return
    else:
        click.echo(text, nl=False)
    v = report.verdict
    sys.exit(ExitCode.VERDICT if v.category != "unknown" and v.confidence >= 0.5 else ExitCode.NO_VERDICT)



@main.command(epilog=EXIT_CODES_HELP)
@click.argument("vmcore", type=click.Path())
@with_debug_options
def shell(vmcore: str, vmlinux: str | None, debuginfo: tuple[str, ...]) -> None:
    """Open VMCORE in drgn's interactive session, with the analysis in scope.

    Debug info is found as for `analyze`. In the session: report, verdict, fault, panic_trace,
    ctx, drgn's helpers, kpostmortem's helpers and the %kpm commands; kpm_help() lists them.
    Commands may also be fed on standard input.
    """
    from kpostmortem.frontends.shell import open_session, run_shell

    try:
        session = open_session(vmcore, vmlinux, debuginfo, progress=_progress(sys.stderr.isatty()))
    except KpmError as e:
        _fail(e.one_line(), e.exit_code)
        return
    except KeyboardInterrupt:
        _fail("interrupted", 130)
        return
    except Exception as e:  # noqa: BLE001 - never a traceback for the user
        _fail(f"internal error: {type(e).__name__}: {e} (please report with the command line)", ExitCode.INTERNAL)
        return
    run_shell(session)


BATCH_HELP = """\b
Output: one JSON line per dump as it completes ("kind": "dump": path, ok, exit_code,
signature, category, title, crash_time… or error), then one "kind": "summary" line that
groups the dumps by signature (count, first/last seen, an example each).
\b
Debug info per dump: meta.json (or VMCORE.meta.json) beside the dump with keys
vmlinux and debuginfo, else --vmlinux/--debuginfo, else auto-discovery.
\b
Exit code: the worst of the dumps' own codes (0 verdict, 1 no confident verdict,
3 dump error, 4 debug-info error, 5 internal); 2 for a usage error (no dump found,
Dask not installed, scheduler unreachable).
"""


@main.command(epilog=BATCH_HELP)
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@with_debug_options
@click.option(
    "-j", "--jobs", type=click.IntRange(min=1), default=lambda: os.cpu_count() or 1,
    show_default="number of CPUs", help="Parallel analysing processes.",
)
@click.option("--format", "fmt", type=click.Choice(["json", "text"]), default="json", show_default=True)
@click.option(
    "--logs", is_flag=True,
    help="In directories, also take kernel text logs (*.log, dmesg*, vmcore-dmesg.txt, kern.log*, messages*, "
    "pstore dmesg-* files); logs named on the command line are always taken.",
)
@click.option(
    "--scheduler", metavar="ADDRESS",
    help="Run the analyses on the Dask distributed scheduler at ADDRESS (tcp://host:port) instead of local "
    "processes; workers need kpostmortem and the same paths. Needs the 'fleet' extra.",
)
@click.option("--redact", is_flag=True, help="Redact each report (host names, addresses, secrets) before use.")
@click.option("--redact-comm", is_flag=True, help="With --redact, also redact the names of user processes.")
def batch(
    paths: tuple[str, ...],
    vmlinux: str | None,
    debuginfo: tuple[str, ...],
    jobs: int,
    fmt: str,
    logs: bool,
    scheduler: str | None,
    redact: bool,
    redact_comm: bool,
) -> None:
    """Analyse many dumps and text logs (DIR searched recursively, or FILES) in parallel and group
    them by signature: a crash seen as a dump and as a log shares its signature."""
    import json

    from kpostmortem.frontends.batch import FleetError, batch_exit_code, find_dumps, run_batch, text_line, text_summary
    from kpostmortem.inputs.dump import skip_session_plugins

    skip_session_plugins()  # before the workers start: they inherit the environment

    if redact_comm and not redact:
        raise click.UsageError("--redact-comm goes with --redact")
    found = find_dumps(paths, vmlinux, debuginfo, redact=redact, redact_comm=redact_comm, logs=logs)
    if not found:
        _fail(f"no crash dump found in {' '.join(paths)}", ExitCode.USAGE)
        return
    total = len(found)
    progress = sys.stderr.isatty()
    done = 0

    def emit(rec: dict) -> None:
        nonlocal done
        done += 1
        click.echo(json.dumps(rec) if fmt == "json" else text_line(rec))
        if progress:
            click.echo(f"… {done}/{total}", err=True)

    try:
        records, summary = run_batch(found, jobs, scheduler, emit)
    except FleetError as e:
        _fail(str(e), ExitCode.USAGE)
        return
    except KeyboardInterrupt:
        _fail("interrupted", 130)
        return
    click.echo(json.dumps(summary) if fmt == "json" else text_summary(summary))
    sys.exit(batch_exit_code(records))


@main.command()
@click.argument("code", required=False)
@click.option("--list", "list_all", is_flag=True, help="List every category code with its one-line summary.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def explain(code: str | None, list_all: bool, fmt: str) -> None:
    """What a verdict category CODE means, the evidence behind it, and what to look at next."""
    import json

    from kpostmortem.verdict.categories import CATEGORIES, lookup, suggest

    if list_all or not code:
        if fmt == "json":
            click.echo(json.dumps([c.to_dict() for c in CATEGORIES.values()], indent=2))
        else:
            width = max(len(c) for c in CATEGORIES)
            click.echo("\n".join(f"{c.code:<{width}}  {c.summary}" for c in CATEGORIES.values()))
        if not list_all:
            click.echo("\nkpostmortem explain CODE for one of them.", err=True)
        return
    cat = lookup(code)
    if cat is None:
        close = suggest(code)
        hint = f"; did you mean {', '.join(close)}?" if close else "; kpostmortem explain --list shows them all"
        _fail(f"no category {code!r}{hint}", ExitCode.USAGE)
        return
    click.echo(json.dumps(cat.to_dict(), indent=2) if fmt == "json" else cat.text())


if __name__ == "__main__":
    main()
