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
  2  usage error (bad options or arguments, a malformed known-bugs file)
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


known_bugs_option = click.option(
    "--known-bugs", "known_bugs", type=click.Path(dir_okay=False), metavar="FILE",
    help="Known-bugs TOML file to match crashes against (default: $KPOSTMORTEM_KNOWN_BUGS, else "
    "$XDG_CONFIG_HOME/kpostmortem/known-bugs.toml when it exists; docs/triage.md).",
)


def _load_known_bugs(option: str | None):
    """The known-bugs file of ``--known-bugs`` or its defaults, loaded; None when there is none.
    A file that cannot be read or is malformed ends the run: one line naming the line, exit 2."""
    from kpostmortem.verdict.known import find_known_bugs, load_known_bugs

    path = find_known_bugs(option)
    if path is None:
        return None
    try:
        return load_known_bugs(path)
    except KpmError as e:
        _fail(e.one_line(), e.exit_code)


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
@known_bugs_option
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
    known_bugs: str | None,
) -> None:
    """Analyse VMCORE and print the verdict and the report.

    Without a vmlinux for the dump's kernel (none given, none found) the analysis runs
    degraded, with a warning on stderr; --require-debuginfo makes that an error.
    """
    if redact_comm and not redact:
        raise click.UsageError("--redact-comm goes with --redact")
    log_kind = None if _dump_magic(vmcore) else _text_log_kind(vmcore)
    if log_kind is not None:
        known = _load_known_bugs(known_bugs)
        report = _text_log_report(vmcore, log_kind, vmlinux, debuginfo)
        if known is not None:
            report.known_bugs = known.match(report.to_dict())
        _emit_report(report, fmt, output, max_bytes, color, redact, redact_comm)
        return
    from kpostmortem.inputs.dump import open_dump, skip_session_plugins
    from kpostmortem.inputs.nodwarf import IMPORTS

    skip_session_plugins()

    # drgn logs its own warnings (unreadable module list…); the report says what failed.
    logging.getLogger("drgn").setLevel(logging.CRITICAL)
    try:
        opened = _in_background(lambda: open_dump(vmcore, vmlinux, debuginfo,
                                                  allow_no_debug_info=not require_debuginfo,
                                                  progress=_progress(sys.stderr.isatty())))
        # While drgn indexes the DWARF (on its own threads, without the GIL), read the
        # known-bugs file and import the rest (and what the analyzers import on first use:
        # capstone loads its library and every architecture's tables, ~30 ms; slab tracking
        # goes with the fault decoding). The loading thread's own imports wait (IMPORTS).
        with IMPORTS:
            known = _load_known_bugs(known_bugs)
            import capstone  # noqa: F401

            import kpostmortem.helpers.slabtrack  # noqa: F401
            from kpostmortem.pipeline import analyze_dump
            from kpostmortem.render import render  # noqa: F401 - imported while drgn indexes

        dump = opened()
        if dump.debug.degraded:
            click.echo(
                f"kpostmortem: warning: no vmlinux with debug info for kernel {dump.header.release or '?'}: "
                "degraded analysis from kallsyms, ORC and the log (pass --vmlinux FILE for a full one)",
                err=True,
            )
        report, _ctx = analyze_dump(dump, ["kpostmortem", *sys.argv[1:]], known)
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


def _dump_magic(path: str) -> bool:
    """Whether ``path`` starts like a dump (ELF, kdump, flattened, diskdump): then it is no
    text log, and the log reader is not imported (open_dump reads the header properly)."""
    from kpostmortem.inputs.elfinfo import dump_format_of

    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False  # a directory (pstore), or unreadable: the full sniff says which
    return dump_format_of(head) is not None


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
    global _REPORT_WRITTEN
    _REPORT_WRITTEN = True
    v = report.verdict
    sys.exit(ExitCode.VERDICT if v.category != "unknown" and v.confidence >= 0.5 else ExitCode.NO_VERDICT)



@main.command(epilog=EXIT_CODES_HELP)
@click.argument("vmcore", type=click.Path())
@with_debug_options
@known_bugs_option
def shell(vmcore: str, vmlinux: str | None, debuginfo: tuple[str, ...], known_bugs: str | None) -> None:
    """Open VMCORE in drgn's interactive session, with the analysis in scope.

    Debug info is found as for `analyze`. In the session: report, verdict, fault, panic_trace,
    ctx, drgn's helpers, kpostmortem's helpers and the %kpm commands; kpm_help() lists them.
    Commands may also be fed on standard input.
    """
    from kpostmortem.frontends.shell import open_session, run_shell

    known = _load_known_bugs(known_bugs)
    try:
        session = open_session(vmcore, vmlinux, debuginfo, progress=_progress(sys.stderr.isatty()), known=known)
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
Known bugs (--known-bugs, or the defaults of `analyze`): each dump line gets "known_bugs",
and the summary splits the signatures into known and new ones.
\b
Exit code: the worst of the dumps' own codes (0 verdict, 1 no confident verdict,
3 dump error, 4 debug-info error, 5 internal); 2 for a usage error (no dump found,
Dask not installed, scheduler unreachable, malformed known-bugs file).
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
@known_bugs_option
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
    known_bugs: str | None,
) -> None:
    """Analyse many dumps and text logs (DIR searched recursively, or FILES) in parallel and group
    them by signature: a crash seen as a dump and as a log shares its signature."""
    import json

    from kpostmortem.frontends.batch import FleetError, batch_exit_code, find_dumps, run_batch, text_line, text_summary
    from kpostmortem.inputs.dump import skip_session_plugins

    skip_session_plugins()  # before the workers start: they inherit the environment

    if redact_comm and not redact:
        raise click.UsageError("--redact-comm goes with --redact")
    known = _load_known_bugs(known_bugs)
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
        if known is not None and rec.get("ok"):
            rec["known_bugs"] = known.match(rec)
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


KNOWN_EXIT_HELP = """\b
Exit codes:
  0  done
  2  usage error: bad options, not a JSON report, a malformed known-bugs file
     (one line: FILE:LINE: what), a duplicate id
"""


@main.group(epilog=KNOWN_EXIT_HELP)
def known() -> None:
    """The known-bugs file: entries that analyze, batch and the shell match crashes against.

    \b
    Which file: --known-bugs FILE, else $KPOSTMORTEM_KNOWN_BUGS, else
    $XDG_CONFIG_HOME/kpostmortem/known-bugs.toml (~/.config when unset). Format: docs/triage.md.
    """


def _read_report(path: str) -> dict:
    """A report written by ``analyze --format json``; a usage error (exit 2) otherwise."""
    import json

    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except OSError as e:
        _fail(f"{path}: cannot read: {e.strerror or e}", ExitCode.USAGE)
    except (UnicodeDecodeError, ValueError) as e:
        _fail(f"{path}: not a kpostmortem JSON report ({e})", ExitCode.USAGE)
    if not isinstance(data, dict) or not isinstance(data.get("verdict"), dict):
        _fail(f"{path}: not a kpostmortem JSON report (no verdict; write one with analyze --format json)",
              ExitCode.USAGE)
    return data


@known.command("add", epilog=KNOWN_EXIT_HELP)
@click.argument("report_json", metavar="REPORT.json", type=click.Path(dir_okay=False))
@click.option("--id", "bug_id", required=True, help="The bug's id in your tracker (e.g. NET-1234); unique in the file.")
@click.option("--url", help="Link to the bug.")
@click.option("--note", help="What the bug is, in words (default: the verdict's title).")
@click.option("--fixed-in", metavar="VERSION", help="Kernel release or package version that fixes it.")
@click.option("--workaround", help="What to do until the fix is deployed.")
@click.option("--kernel", metavar="RANGE", help='Also require a kernel release range, e.g. ">=6.1, <6.13".')
@click.option(
    "--by", type=click.Choice(["signature", "function"]), default="signature", show_default=True,
    help="signature: the rule matches this crash's signature (its category, function and module are "
    "written out to read); function: category + function + module only, which also matches the bug "
    "on other kernels and call paths.",
)
@click.option("--known-bugs", "known_bugs", type=click.Path(dir_okay=False), metavar="FILE",
              help="The file to append to (created if missing); default: $KPOSTMORTEM_KNOWN_BUGS, else "
              "$XDG_CONFIG_HOME/kpostmortem/known-bugs.toml.")
@click.option("--print", "print_only", is_flag=True, help="Print the entry instead of appending it.")
def known_add(report_json: str, bug_id: str, url: str | None, note: str | None, fixed_in: str | None,
              workaround: str | None, kernel: str | None, by: str, known_bugs: str | None,
              print_only: bool) -> None:
    """Write a known-bugs entry for the crash of REPORT.json (from `analyze --format json`).

    The entry is appended to the file; the user's other entries are left as they are. The file
    with the new entry is validated first: nothing is written when it would be malformed (a
    duplicate id, a bad --fixed-in or --kernel), and the error names the line.
    """
    from kpostmortem.verdict.known import append_entry, default_path, entry_text, find_known_bugs, parse_known_bugs

    report = _read_report(report_json)
    try:
        entry = entry_text(report, bug_id, url, note, fixed_in, workaround, by, kernel)
        if print_only:
            parse_known_bugs(entry, "<entry>")  # a bad --fixed-in or --kernel fails here too
            click.echo(entry.lstrip("\n"), nl=False)
            return
        path = find_known_bugs(known_bugs) or default_path()
        loaded = append_entry(path, entry)
    except KpmError as e:
        _fail(e.one_line(), e.exit_code)
        return
    click.echo(f"{path}: added {bug_id} ({len(loaded)} entries)", err=True)


@known.command("check", epilog=KNOWN_EXIT_HELP)
@click.argument("file", required=False, type=click.Path(dir_okay=False))
def known_check(file: str | None) -> None:
    """Validate a known-bugs FILE (default: $KPOSTMORTEM_KNOWN_BUGS, else
    $XDG_CONFIG_HOME/kpostmortem/known-bugs.toml): exit 0 and a count, or one line naming the bad
    line, exit 2."""
    from kpostmortem.verdict.known import find_known_bugs

    path = find_known_bugs(file)
    if path is None:
        _fail("no known-bugs file: give FILE, set $KPOSTMORTEM_KNOWN_BUGS or create "
              "$XDG_CONFIG_HOME/kpostmortem/known-bugs.toml", ExitCode.USAGE)
        return
    loaded = _load_known_bugs(path)
    click.echo(f"{path}: {len(loaded)} entries, all valid")


DIFF_HELP = """\b
A and B: crash dumps (debug info from a meta.json beside the dump, else --vmlinux/--debuginfo,
else auto-discovery), kernel text logs (console, journal, pstore, kdump's dmesg: docs/logs.md),
or JSON reports written by `analyze --format json`.
\b
Exit codes: 0 the comparison was printed (same bug or not: see "same_bug" in --format json),
1 a text log holds no crash report, 2 usage error (an input is neither a dump, a log nor a report,
a malformed known-bugs file), 3 a dump cannot be opened, 4 debug info missing or not matching,
5 internal error.
"""


def _looks_like_json(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4096).lstrip().startswith(b"{")
    except OSError:
        return False


def _diff_side(path: str, vmlinux: str | None, debuginfo: tuple[str, ...], known) -> dict:
    """The report of one side of ``diff``: a JSON report as it is, a text log's, or a dump's."""
    import os

    from kpostmortem.frontends.batch import is_dump_file, read_sidecar

    if not os.path.exists(path):
        _fail(f"{path}: no such file", ExitCode.USAGE)
    dump = is_dump_file(path)
    log_kind = None if dump or _looks_like_json(path) else _text_log_kind(path)
    if log_kind is not None:
        report = _text_log_report(path, log_kind, vmlinux, debuginfo)
        if known is not None:
            report.known_bugs = known.match(report.to_dict())
        return report.to_dict()
    if not dump:
        report = _read_report(path)
        if known is not None:
            report["known_bugs"] = known.match(report)
        return report
    from kpostmortem.pipeline import analyze

    side = read_sidecar(path)
    if side is not None and vmlinux is None:
        vmlinux, debuginfo = side["vmlinux"], side["debuginfo"] + tuple(debuginfo)
    try:
        return analyze(path, vmlinux, debuginfo, command=None, known=known).to_dict()
    except KpmError as e:
        _fail(f"{path}: {e.one_line()}", e.exit_code)
    except Exception as e:  # noqa: BLE001 - never a traceback for the user
        _fail(f"internal error: {type(e).__name__}: {e} (please report with the command line)", ExitCode.INTERNAL)


@main.command(epilog=DIFF_HELP)
@click.argument("a", type=click.Path())
@click.argument("b", type=click.Path())
@click.option("--vmlinux", "vmlinux", multiple=True, type=click.Path(dir_okay=False),
              help="vmlinux with DWARF; give it twice for two kernels (the first for A, the second for B).")
@click.option("--debuginfo", "debuginfo", multiple=True, type=click.Path(),
              help="Directory of debug files, for both dumps; repeatable.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write here instead of stdout.")
@known_bugs_option
def diff(a: str, b: str, vmlinux: tuple[str, ...], debuginfo: tuple[str, ...], fmt: str, output: str | None,
         known_bugs: str | None) -> None:
    """What changed between two crashes A and B: kernel and build ID, command line, taints and
    their modules, loaded modules, panic sysctls, verdicts and signatures, and the crashed stacks
    side by side, aligned by function."""
    if len(vmlinux) > 2:
        raise click.UsageError("--vmlinux at most twice (for A, then B)")
    from kpostmortem.inputs.dump import skip_session_plugins

    skip_session_plugins()
    logging.getLogger("drgn").setLevel(logging.CRITICAL)
    known = _load_known_bugs(known_bugs)
    va = vmlinux[0] if vmlinux else None
    vb = vmlinux[-1] if vmlinux else None
    ra = _diff_side(a, va, debuginfo, known)
    rb = _diff_side(b, vb, debuginfo, known)
    from kpostmortem.render.diff import render_diff
    from kpostmortem.verdict.diff import diff_reports

    text = render_diff(printable(diff_reports(ra, rb, (a, b))), fmt)
    if output:
        try:
            with open(output, "w") as f:
                f.write(text)
        except OSError as e:
            _fail(f"{output}: cannot write: {e.strerror or e}", ExitCode.USAGE)
    else:
        click.echo(text, nl=False)


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


# Set once a report is written: what is left of the process is tearing down drgn's Program
# (its DWARF index, every cached object) and the interpreter, ~0.07 s a user waits for.
_REPORT_WRITTEN = False


def run() -> None:
    """The console script: ``main``, then, once a report is out, leave at once (os._exit after
    flushing) instead of tearing down what the OS reclaims anyway. Other commands (the
    interactive shell saves its history on exit) end normally."""
    try:
        main()
    except SystemExit as e:
        if not _REPORT_WRITTEN:
            raise
        code = e.code
        if isinstance(code, str):
            print(code, file=sys.stderr)
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)


if __name__ == "__main__":
    run()
