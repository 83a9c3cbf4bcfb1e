"""drgn sessions on a real dump: `kpostmortem shell` fed on stdin, the plugin's commands in plain
drgn and through drgn's command API, and the helpers of `from kpostmortem.helpers import *`.

Everything runs on the null-write dump: crashpoc_null_write() writes `cfg->limit` through a
NULL `cfg` (loaded into rax from `dev->cfg`, dev in rbx)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys

import drgn
import pytest
from drgn.commands import CommandNotFoundError, run_command

from .corpus import dump_meta

pytestmark = pytest.mark.vmcore

SCENARIO = "null-write"
TITLE = "BUG: kernel NULL pointer dereference in crashpoc_null_write [crashpoc]"


@pytest.fixture(scope="module")
def meta():
    return dump_meta(SCENARIO)


@pytest.fixture
def env(tmp_path):
    """A child environment that keeps drgn's REPL history out of the user's home."""
    return {**os.environ, "XDG_STATE_HOME": str(tmp_path)}


def _shell(meta, env, stdin: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "kpostmortem.frontends.cli", "shell", meta["path"], "--vmlinux", meta["vmlinux"]]
    for d in meta["debuginfo"]:
        cmd += ["--debuginfo", d]
    return subprocess.run([*cmd, *extra], input=stdin, capture_output=True, text=True, env=env,
                          timeout=300)


def _source_line(pattern: str) -> int:
    """1-based line of the first line of crashpoc.c matching pattern."""
    source = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures/vmcores/crashpoc/crashpoc.c")
    with open(source) as f:
        return next(i for i, text in enumerate(f, 1) if re.search(pattern, text))


def _program(meta, *debug_files: str) -> drgn.Program:
    prog = drgn.Program()
    prog.set_core_dump(meta["path"])
    prog.load_debug_info([meta["vmlinux"], *debug_files])
    return prog


# ── kpostmortem shell ────────────────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def crashed(meta):
    """(pid of the crashed task, number of tasks) read from the dump itself, not assumed."""
    from drgn.helpers.linux.pid import for_each_task

    prog = drgn.Program()
    prog.set_core_dump(meta["path"])
    prog.load_debug_info([meta["vmlinux"]])
    return int(prog.crashed_thread().object.pid), sum(1 for _ in for_each_task(prog))


@pytest.fixture(scope="module")
def shell_session(meta, crashed, tmp_path_factory):
    """One shell session fed a script on stdin: (stdout, stderr, exit code)."""
    pid = crashed[0]
    script = "\n".join([
        "verdict.title",
        "verdict.category, verdict.confidence >= 0.9",
        "print_fault()",
        "panic_trace[0]['cfg']",
        "fault.bad_register, fault.suspects[0].member",
        f"%kpm_stack {pid}",
        "%kpm_verdict --help",
        "report",
        "kpm_help()",
        "'verdict' in report.to_dict() and 'crashed_task' in report.to_dict()",
        "crash_verdict() is verdict",
        f"find_task(prog, {pid}).comm",
    ]) + "\n"
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path_factory.mktemp("state"))}
    proc = _shell(meta, env, script)
    return proc.stdout, proc.stderr, proc.returncode


def test_shell_banner_names_the_verdict_and_the_way_to_help(shell_session):
    _out, err, rc = shell_session
    assert rc == 0, err
    banner = err.split(">>> import drgn", 1)[0]
    assert f"VERDICT  {TITLE}" in banner
    assert "null-pointer-dereference · confidence 0.99" in banner
    assert "kpm_help()" in banner
    assert ">>> from drgn.helpers.linux import *" in err
    assert ">>> from kpostmortem.helpers import *" in err


def test_shell_has_the_analysis_in_scope(shell_session):
    out, _err, _rc = shell_session
    assert f"'{TITLE}'" in out
    assert "('null-pointer-dereference', True)" in out
    assert "(struct crashpoc_cfg *)0x0" in out  # panic_trace holds the module frame's variables
    assert "('rax', 'limit')" in out
    assert out.count(">>> True\n") >= 2  # report sections; crash_verdict() cached: the same object
    assert "(char [16])\"sh\"" in out  # drgn's own helpers are there too


def test_shell_print_fault_names_registers_variable_and_member(shell_session):
    out, _err, _rc = shell_session
    assert "→ crashpoc_null_write+0x1e" in out
    assert "mov qword ptr [rax + 0x18], 0x2a" in out
    assert "mov rax, qword ptr [rbx + 8]" in out
    assert "rax holds `cfg` (struct crashpoc_cfg *) in crashpoc_null_write(), " \
           "accessed `cfg->limit` (struct crashpoc_cfg)" in out
    assert "effective address 0x18 · fault address 0x18 (they match)" in out


def test_shell_runs_plugin_commands_and_shows_results_readably(shell_session, crashed, meta):
    out, _err, _rc = shell_session
    assert f"sh[{crashed[0]}]: stack-end canary at 0x" in out and ": intact" in out
    assert "usage: kpm_verdict" in out and "--debuginfo DIR" in out
    # `report` and `verdict` are shown by drgn's REPL with their __str__, not the dataclass repr
    assert f"Report on vmcore ({meta['release']} x86_64)" in out  # the release the dump was made on
    assert re.search(r"analyzers: (\d+)/\1 ok", out)
    assert "Report(tool=" not in out
    assert "Variables:" in out and "fault_explanation()" in out and "%kpm_fault" in out


def test_shell_verdict_displays_as_text(meta, env):
    proc = _shell(meta, env, "verdict\n")
    assert proc.returncode == 0, proc.stderr
    assert f">>> {TITLE}\n  category null-pointer-dereference · confidence 0.99" in proc.stdout
    evidence = [line for line in proc.stdout.splitlines() if line.startswith("  ✔ ")]
    assert len(evidence) >= 3 and any("`cfg" in line for line in evidence), evidence
    assert "Verdict(" not in proc.stdout


def test_shell_missing_dump_is_one_line_and_exit_code_3(tmp_path, env):
    proc = subprocess.run([sys.executable, "-m", "kpostmortem.frontends.cli", "shell", str(tmp_path / "nope")],
                          input="", capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 3
    assert proc.stderr == f"kpostmortem: error: {tmp_path / 'nope'}: no such file\n"
    assert proc.stdout == ""


def test_shell_bad_vmlinux_is_one_line_and_exit_code_4(meta, env, tmp_path):
    bogus = tmp_path / "vmlinux"
    bogus.write_text("not an ELF file\n")
    proc = subprocess.run(
        [sys.executable, "-m", "kpostmortem.frontends.cli", "shell", meta["path"], "--vmlinux", str(bogus)],
        input="", capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 4
    assert proc.stderr.startswith("kpostmortem: error: ")
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr


# ── the drgn plugin ──────────────────────────────────────────────────────────────────────────


def test_plugin_commands_in_plain_drgn(meta, env, crashed):
    """`drgn -c VMCORE -s vmlinux -s crashpoc.ko`, no kpostmortem CLI: the entry point registers them."""
    code = "\n".join(f"run_command(prog, {c!r})" for c in
                     ("kpm_verdict", "kpm_fault", "kpm_stack", "kpm_stack --help", "kpm --help"))
    proc = subprocess.run(
        [sys.executable, "-m", "drgn", "-q", "-c", meta["path"], "-s", meta["vmlinux"],
         "-s", meta["module_ko"], "-e", "from drgn.commands import run_command\n" + code],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith(TITLE + "\n  category null-pointer-dereference · confidence 0.99")
    assert "rax holds `cfg` (struct crashpoc_cfg *)" in out and "`cfg->limit`" in out
    assert "mov rax, qword ptr [rbx + 8]" in out
    pid, ntasks = crashed
    m = re.search(r"(\d+) tasks checked", out)
    assert m and int(m.group(1)) >= ntasks and "every canary intact" in out
    assert f"crashed task sh[{pid}]: canary intact" in out
    assert "usage: kpm_stack [--debuginfo DIR] [--refresh] [-h] [--drgn] [pid]" in out
    assert "usage: kpm [--format {text,json,markdown}]" in out
    assert "note: no debug info" not in out


@pytest.fixture(scope="module")
def kernel_prog(meta):
    """A Program made with drgn's API only, vmlinux loaded, the module's debug file not."""
    return _program(meta)


def test_plugin_command_api_with_debuginfo_option(kernel_prog, meta, capsys, tmp_path):
    crashpoc_dir = os.path.dirname(meta["module_ko"])
    run_command(kernel_prog, f"kpm_fault --debuginfo {crashpoc_dir}")
    out = capsys.readouterr().out
    line = _source_line(r"cfg->limit = 42")
    assert out.startswith(f"faulting instruction in crashpoc_null_write (crashpoc.c:{line})\n")
    assert "rax = 0x0" in out
    assert "accessed `cfg->limit` (struct crashpoc_cfg)" in out
    run_command(kernel_prog, "kpm_verdict")  # reuses the analysis made with --debuginfo
    assert capsys.readouterr().out.startswith(TITLE + "\n")
    run_command(kernel_prog, f"kpm --format json > {tmp_path / 'report.json'}")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["verdict"]["title"] == TITLE


def test_plugin_says_when_module_debug_info_is_missing(meta, capsys):
    prog = _program(meta)
    run_command(prog, "kpm_verdict")
    out = capsys.readouterr().out
    assert "note: no debug info for module(s) crashpoc" in out
    assert "-s crashpoc.ko" in out


def test_plugin_drgn_option_prints_python(kernel_prog, capsys):
    run_command(kernel_prog, "kpm_stack 42 --drgn")
    out = capsys.readouterr().out
    assert "from kpostmortem.helpers import *" in out
    assert "print(stack_end_canary(find_task(prog, 42)))" in out


def test_plugin_commands_only_for_linux_kernels():
    with pytest.raises(CommandNotFoundError):
        run_command(drgn.Program(), "kpm_verdict")


# ── helpers in any drgn session ──────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def full_prog(meta):
    return _program(meta, meta["module_ko"])


def test_star_import_gives_the_helpers():
    scope: dict = {}
    exec("from kpostmortem.helpers import *", scope)
    for name in ("crash_verdict", "crash_report", "fault_explanation", "print_fault",
                 "print_verdict", "stack_end_canary", "damaged_canaries", "panic_stack_trace"):
        assert callable(scope[name]), name


def test_crash_verdict_on_a_program_opened_by_drgn(full_prog, meta):
    from kpostmortem.helpers import crash_report, crash_verdict

    v = crash_verdict(full_prog)
    assert v.title == TITLE
    assert (v.category, v.function, v.module) == ("null-pointer-dereference", "crashpoc_null_write",
                                                  "crashpoc")
    assert crash_verdict(full_prog) is v  # cached on the Program
    assert str(v).startswith(TITLE + "\n")
    assert dataclasses.asdict(v)["title"] == TITLE
    report = crash_report(full_prog)
    assert report.dump["format"] == "kdump" and report.dump["release"] == meta["release"]
    assert report.debug_info["modules"]["crashpoc"] == meta["module_ko"]


def test_fault_explanation_is_data_and_text(full_prog, capsys):
    from kpostmortem.helpers import FaultExplanation, fault_explanation, print_fault

    ex = fault_explanation(full_prog)
    assert isinstance(ex, FaultExplanation)
    assert (ex.bad_register, ex.bad_register_value, ex.fault_address) == ("rax", 0, 0x18)
    assert [(s.name, s.member) for s in ex.suspects] == [("cfg", "limit")]
    assert ex.to_dict()["suspects"][0]["struct"] == "struct crashpoc_cfg"
    assert print_fault(full_prog) is None
    out = capsys.readouterr().out
    assert "write of qword ptr [rax + 0x18]" in out and "`cfg->limit`" in out


def test_stack_helpers(full_prog, crashed, capsys):
    from drgn.helpers.linux.pid import find_task

    from kpostmortem.helpers import damaged_canaries, print_stack_checks, stack_end_canary

    pid, ntasks = crashed
    state = stack_end_canary(find_task(full_prog, pid))
    assert (state.pid, state.comm, state.intact) == (pid, "sh", True)
    damaged, checked, unreadable = damaged_canaries(full_prog)
    # every task of the task list, plus the other CPUs' idle tasks
    assert damaged == [] and unreadable == 0 and ntasks <= checked <= ntasks + 8
    print_stack_checks(full_prog)
    assert f"{checked} tasks checked, 0 unreadable" in capsys.readouterr().out


def test_panic_stack_trace_has_module_frames(full_prog):
    from kpostmortem.helpers import panic_stack_trace

    trace = panic_stack_trace(full_prog)
    assert trace[0].name == "crashpoc_null_write"
    assert trace[0]["cfg"].value_() == 0
