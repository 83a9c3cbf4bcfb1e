"""The bad-input matrix (docs/errors.md): every damaged dump, wrong or missing debug info and
hostile file, through the real CLI in a subprocess. Each row ends in one error line with its
documented exit code, or in a report that says what it could not read. Never a traceback.

Damaged inputs are made from the corpus in tmp_path; the corpus itself is only read.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .corpus import dump_meta

pytestmark = pytest.mark.vmcore

OK, NO_VERDICT, USAGE, DUMP, DEBUG_INFO, INTERNAL = 0, 1, 2, 3, 4, 5
NULL_WRITE = ("null-pointer-dereference", "crashpoc_null_write", "crashpoc")


def run_cli(*args: str, prefix: tuple[str, ...] = (), env: dict | None = None, timeout: int = 300):
    """``kpostmortem analyze ARGS`` in a fresh interpreter: (exit code, stdout, stderr)."""
    cmd = [*prefix, sys.executable, "-m", "kpostmortem.frontends.cli", "analyze", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert "Traceback" not in p.stderr, p.stderr
    assert "Traceback" not in p.stdout
    return p.returncode, p.stdout, p.stderr


def assert_one_line_error(rc: int, err: str, code: int, *words: str) -> None:
    assert rc == code, f"exit {rc}, expected {code}: {err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kpostmortem: error: "), err
    for w in words:
        assert w in lines[0], (w, err)


def json_report(*args: str, **kw) -> tuple[int, dict, str]:
    rc, out, err = run_cli(*args, "--format", "json", **kw)
    return rc, json.loads(out), err


@pytest.fixture(scope="module")
def nw():
    """null-write (6.1, kdump -d 31): the dump every damaged copy starts from."""
    return dump_meta("null-write")


def debug_args(meta: dict) -> list[str]:
    return ["--vmlinux", meta["vmlinux"], *[a for d in meta["debuginfo"] for a in ("--debuginfo", d)]]


# ------------------------------------------------------------------- not a dump at all


def test_empty_file(tmp_path):
    f = tmp_path / "vmcore"
    f.write_bytes(b"")
    rc, _out, err = run_cli(str(f))
    assert_one_line_error(rc, err, DUMP, "empty file", "copy it again")


def test_directory(tmp_path):
    (tmp_path / "crash").mkdir()
    rc, _out, err = run_cli(str(tmp_path / "crash"))
    assert_one_line_error(rc, err, DUMP, "is a directory")


def test_directory_holding_a_vmcore_suggests_it(tmp_path, nw):
    d = tmp_path / "crash"
    d.mkdir()
    (d / "vmcore").symlink_to(nw["path"])
    rc, _out, err = run_cli(str(d))
    assert_one_line_error(rc, err, DUMP, "is a directory", f"did you mean {d / 'vmcore'}")


def test_missing_file(tmp_path):
    rc, _out, err = run_cli(str(tmp_path / "nothing-here"))
    assert_one_line_error(rc, err, DUMP, "no such file")


def test_file_without_read_permission(tmp_path, nw):
    """Root reads any file, so the CLI runs as root *without* CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH (capsh drops them): the kernel then enforces the 000 mode."""
    capsh = shutil.which("capsh")
    assert capsh, "capsh (libcap2-bin) is needed to drop root's file-permission override"
    f = tmp_path / "vmcore"
    shutil.copyfile(nw["path"], f)
    f.chmod(0)
    inner = " ".join([sys.executable, "-m", "kpostmortem.frontends.cli", "analyze", str(f)])
    p = subprocess.run([capsh, "--drop=cap_dac_override,cap_dac_read_search", "--", "-c", inner],
                       capture_output=True, text=True, timeout=120)
    assert "Traceback" not in p.stderr
    assert_one_line_error(p.returncode, p.stderr, DUMP, "permission denied", "run as a user who can read")


def test_random_bytes(tmp_path):
    f = tmp_path / "vmcore"
    f.write_bytes(random.Random(8).randbytes(1 << 20))
    rc, _out, err = run_cli(str(f))
    assert_one_line_error(rc, err, DUMP, "not a kernel crash dump", "kdump saved")


@pytest.fixture(scope="module")
def user_core(tmp_path_factory) -> Path:
    """A real user-space core dump: gdb's gcore of a sleeping process."""
    gcore = shutil.which("gcore")
    assert gcore, "gdb's gcore is needed to make a user-space core dump"
    d = tmp_path_factory.mktemp("usercore")
    proc = subprocess.Popen(["sleep", "300"])
    try:
        time.sleep(0.2)
        subprocess.run([gcore, "-o", str(d / "core"), str(proc.pid)], capture_output=True, timeout=120, check=True)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return d / f"core.{proc.pid}"


def test_user_space_core_dump(user_core):
    assert user_core.read_bytes()[:4] == b"\x7fELF"
    rc, _out, err = run_cli(str(user_core))
    assert_one_line_error(rc, err, DUMP, "user-space process", "gdb")


def test_elf_that_is_not_a_core():
    rc, _out, err = run_cli("/bin/ls")
    assert_one_line_error(rc, err, DUMP, "not a core dump", "--vmlinux")


def test_vmlinux_given_as_the_dump(nw):
    rc, _out, err = run_cli(nw["vmlinux"])
    assert_one_line_error(rc, err, DUMP, "not a core dump")


def test_flattened_stream_says_how_to_convert_it(tmp_path):
    f = tmp_path / "vmcore.flat"
    f.write_bytes(b"makedumpfile".ljust(4096, b"\0"))
    rc, _out, err = run_cli(str(f))
    assert_one_line_error(rc, err, DUMP, "flattened", "makedumpfile -R")


# ------------------------------------------------------------------------ damaged dumps


def test_damaged_elf_dump_header(tmp_path):
    """An ELF dump whose program-header offset points past the end of the file."""
    src = dump_meta("null-write-elf")["path"]
    with open(src, "rb") as f:
        data = bytearray(f.read(1 << 20))
    data[32:40] = (1 << 40).to_bytes(8, "little")  # e_phoff
    out = tmp_path / "vmcore"
    out.write_bytes(data)
    rc, _out, err = run_cli(str(out))
    assert_one_line_error(rc, err, DUMP, "copy it again")


def _log_pfns(meta: dict) -> set[int]:
    """The page frames the printk log lives in, with the page tables that map them: what
    the log analyzer must read, found in the dump itself with drgn (x86-64 paging)."""
    import drgn
    from drgn.helpers.linux.mm import follow_pfn

    from .corpus import open_program

    prog = open_program(meta["scenario"])
    mm = prog["init_mm"].address_of_()
    prb = prog["prb"]
    desc, text = prb.desc_ring, prb.text_data_ring
    count = 1 << desc.count_bits.value_()
    spans = [(prb.address_of_().value_(), 8), (prb.value_(), drgn.sizeof(prb[0])),
             (desc.descs.value_(), count * drgn.sizeof(desc.descs[0])),
             (desc.infos.value_(), count * drgn.sizeof(desc.infos[0])),
             (text.data.value_(), 1 << text.size_bits.value_())]
    try:
        levels = 5 if prog["__pgtable_l5_enabled"].value_() else 4
    except KeyError:
        levels = 4
    shifts = (48, 39, 30, 21, 12)[5 - levels:]
    top = follow_pfn(mm, mm.pgd.value_()).value_()
    pfns: set[int] = set()
    for start, size in spans:
        for addr in range(start & ~0xFFF, start + size, 0x1000):
            pfns.add(follow_pfn(mm, addr).value_())
            table = top
            for shift in shifts:  # the tables the translation walks through
                pfns.add(table)
                entry = prog.read_u64((table << 12) + ((addr >> shift) & 0x1FF) * 8, True)
                if not entry & 1 or entry & 0x80 or shift == 12:  # not present, huge page, leaf
                    break
                table = (entry & 0x000F_FFFF_FFFF_F000) >> 12
    return pfns


@pytest.fixture(scope="module")
def log_layout(nw):
    """Where the log's pages lie in null-write's file: (first byte, end) of their data."""
    from kpostmortem.inputs.elfinfo import kdump_page_extents

    extents = kdump_page_extents(nw["path"], _log_pfns(nw))
    assert extents, "the printk log's pages are not in the dump"
    return min(o for o, _ in extents.values()), max(o + n for o, n in extents.values())


def _page_data_start(path: str) -> int:
    """Offset of the first page's data in a kdump-compressed file."""
    from kpostmortem.inputs.elfinfo import kdump_page_extents

    with open(path, "rb") as f:
        head = f.read(464)
    block_size, sub_hdr_size, bitmap_blocks, max_mapnr = struct.unpack_from("<iiiI", head, 428)
    first = kdump_page_extents(path, range(max_mapnr))
    return min(o for o, _ in first.values())


def _truncated_report(tmp_path: Path, nw: dict, cut: int) -> tuple[int, dict]:
    f = tmp_path / "vmcore"
    with open(nw["path"], "rb") as src:
        f.write_bytes(src.read(cut))
    rc, rep, _err = json_report(str(f), *debug_args(nw))
    if cut < Path(nw["path"]).stat().st_size:
        assert any("truncated" in p for p in rep["dump"]["header_problems"]), rep["dump"]
        missing = " | ".join(rep["verdict"]["missing"])
        assert "truncated" in missing and "copy the dump again" in missing, missing
        assert rep["verdict"]["confidence"] <= 0.99 - 0.1
    return rc, rep


def test_truncated_after_the_log(tmp_path, nw, log_layout):
    """Cut inside the page data that lies after the log (pages are stored in pfn order): the
    log and the page tables that map it survive, so the crash's category is still
    recognised from the log, with what else was lost named. Where the log happens to be
    the last data in the file, nothing is cut and the full verdict must come out."""
    size = Path(nw["path"]).stat().st_size
    _, log_end = log_layout
    rc, rep = _truncated_report(tmp_path, nw, log_end + (size - log_end) // 2)
    assert rep["verdict"]["category"] == NULL_WRITE[0], rep["verdict"]
    assert next(o for o in rep["analyzers"] if o["name"] == "log")["status"] == "ok"
    if log_end < size:
        assert rc in (OK, NO_VERDICT)


def test_truncated_before_the_log(tmp_path, nw, log_layout):
    """Cut just before the first page the log needs: the log analyzer fails naming the
    address it could not read, and no evidence claims a log record."""
    log_start, _ = log_layout
    rc, rep = _truncated_report(tmp_path, nw, log_start)
    assert rc in (OK, NO_VERDICT)
    log = next(o for o in rep["analyzers"] if o["name"] == "log")
    assert log["status"] == "failed" and "0x" in log["detail"], log
    assert not [e for e in rep["verdict"]["evidence"] if e["kind"] == "log"], rep["verdict"]["evidence"]


def test_truncated_before_any_page(tmp_path, nw):
    """Headers, bitmaps and descriptors intact, no page data at all: no verdict, and every
    analyzer that failed names the address it could not read."""
    rc, rep = _truncated_report(tmp_path, nw, _page_data_start(nw["path"]))
    assert rc == NO_VERDICT, rep["verdict"]
    assert rep["verdict"]["category"] == "unknown"
    failed = [o for o in rep["analyzers"] if o["status"] == "failed"]
    assert failed and all("0x" in o["detail"] for o in failed), failed


@pytest.mark.parametrize("what,at,length,value,words", [
    ("block size", 428, 4, 0xFF, "impossible block size"),
    ("sub-header (VMCOREINFO offset)", 4096 + 32, 16, 0xFF, "VMCOREINFO lies outside the file"),
])
def test_damaged_kdump_header(tmp_path, nw, what, at, length, value, words):
    data = bytearray(Path(nw["path"]).read_bytes())
    data[at : at + length] = bytes([value]) * length
    f = tmp_path / "vmcore"
    f.write_bytes(data)
    rc, _out, err = run_cli(str(f), *debug_args(nw))
    assert_one_line_error(rc, err, DUMP, "damaged kdump header", words, "copy the dump again")


def test_damaged_kdump_utsname(tmp_path, nw):
    """Garbage in the header's utsname: libkdumpfile refuses the file (a plain Exception)."""
    data = bytearray(Path(nw["path"]).read_bytes())
    data[12 : 12 + 390] = b"A" * 390
    f = tmp_path / "vmcore"
    f.write_bytes(data)
    rc, _out, err = run_cli(str(f), *debug_args(nw))
    assert_one_line_error(rc, err, DUMP, "cannot open it as a kernel dump", "copy it again")


def test_unknown_kdump_header_version_is_reported(tmp_path, nw):
    data = bytearray(Path(nw["path"]).read_bytes())
    data[8:12] = b"\xff\xff\xff\xff"
    f = tmp_path / "vmcore"
    f.write_bytes(data)
    rc, rep, _err = json_report(str(f), *debug_args(nw))
    assert rc in (OK, NO_VERDICT)
    assert any("header version -1" in m for m in rep["verdict"]["missing"]), rep["verdict"]["missing"]


# ------------------------------------------------------------------- debug info problems


def test_another_kernels_vmlinux_is_refused_naming_both_build_ids(nw):
    other = dump_meta("null-write-612")["vmlinux"]
    from kpostmortem.inputs.elfinfo import build_id, read_dump_header

    rc, _out, err = run_cli(nw["path"], "--vmlinux", other)
    assert_one_line_error(rc, err, DEBUG_INFO, "does not match the dump", build_id(other),
                          read_dump_header(nw["path"]).build_id)


def test_no_debug_info_runs_degraded_with_a_warning(nw):
    rc, rep, err = json_report(nw["path"])
    assert rc == OK
    warning = err.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("kpostmortem: warning: no vmlinux"), err
    v = rep["verdict"]
    assert v["degraded"] and rep["debug_info"]["degraded"]
    assert (v["category"], v["function"], v["module"]) == NULL_WRITE
    assert any("kernel DWARF" in m for m in v["missing"])


def test_no_debug_info_with_require_debuginfo_fails(nw):
    rc, _out, err = run_cli(nw["path"], "--require-debuginfo")
    assert_one_line_error(rc, err, DEBUG_INFO, "no vmlinux with debug info", "--vmlinux")


def test_vmlinux_without_module_debug_files(tmp_path, nw):
    """The module's frames are named from its own kallsyms; the report says its debug file
    was missing and what to pass."""
    rc, rep, _err = json_report(nw["path"], "--vmlinux", nw["vmlinux"], "--debuginfo", str(tmp_path))
    assert rc == OK
    v = rep["verdict"]
    assert (v["category"], v["function"], v["module"]) == NULL_WRITE
    assert rep["debug_info"]["modules_missing"] == ["crashpoc"]
    assert any("debug info of module crashpoc" in m for m in v["missing"]), v["missing"]
    assert v["confidence"] < json_report(nw["path"], *debug_args(nw))[1]["verdict"]["confidence"]


# ----------------------------------------------------------------------- filtered dumps


def test_unfiltered_and_d31_dumps_of_the_same_crash_agree():
    verdicts = {}
    for name in ("null-write-full", "null-write"):
        meta = dump_meta(name)
        rc, rep, _err = json_report(meta["path"], *debug_args(meta))
        assert rc == OK, name
        v = rep["verdict"]
        verdicts[name] = (v["category"], v["function"], v["module"])
    assert verdicts["null-write-full"] == verdicts["null-write"]


def test_excluded_pages_are_explained_with_the_fix():
    """6.12 filtered at -d 31 by a makedumpfile older than the kernel: slab pages are left out.
    Which ones depends on where the slab lay on that boot, so the expectation follows what the
    analysis actually hit: every failure says "excluded" and the report explains it with the
    fix; with no failure, no such claim. The crash's verdict comes out either way."""
    meta = dump_meta("null-write-d31")
    rc, rep, _err = json_report(meta["path"], *debug_args(meta))
    v = rep["verdict"]
    assert (v["category"], v["function"], v["module"]) == NULL_WRITE
    failed = [o for o in rep["analyzers"] if o["status"] == "failed"]
    assert all("excluded from the dump by makedumpfile" in o["detail"] for o in failed), failed
    problems = rep["dump"].get("problems", [])
    rc, out, _err = run_cli(meta["path"], *debug_args(meta))
    assert rc == OK
    if failed:
        assert [p["kind"] for p in problems] == ["excluded-pages"]
        assert problems[0]["dump_level"] == 31 and problems[0]["addresses"]
        assert "excluded pages the analysis needs" in out
        assert "makedumpfile -d 7" in out and "supports 6.12" in out
        assert v["confidence"] <= 0.99 - 0.1
    else:
        assert "excluded-pages" not in [p["kind"] for p in problems]
        assert "excluded pages the analysis needs" not in out


def test_report_file_that_cannot_be_written(tmp_path, nw):
    rc, _out, err = run_cli(nw["path"], *debug_args(nw), "-o", str(tmp_path / "no-such-dir" / "report.txt"))
    assert_one_line_error(rc, err, USAGE, "cannot write the report")


# ----------------------------------------------------------- the dump is only ever read


def test_dump_is_not_modified_and_nothing_is_left_behind(tmp_path, nw):
    f = tmp_path / "dump" / "vmcore"
    f.parent.mkdir()
    shutil.copyfile(nw["path"], f)
    f.chmod(0o444)
    before = (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns, f.stat().st_size)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    for extra in ([], debug_args(nw)):
        rc, _out, _err = run_cli(str(f), *extra, env=env)
        assert rc == OK
    after = (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns, f.stat().st_size)
    assert before == after
    assert sorted(p.name for p in f.parent.iterdir()) == ["vmcore"]
    assert list(scratch.iterdir()) == []


def test_nothing_from_the_dump_is_executed():
    """No eval/exec/pickle/shell in the analysis code: dump bytes are only parsed."""
    src = Path(__file__).resolve().parents[2] / "src" / "kpostmortem"
    allowed = {"shell.py", "drgn_plugin.py"}  # the interactive session runs what the user types
    bad = []
    for path in src.rglob("*.py"):
        if path.name in allowed:
            continue
        for m in re.finditer(r"(?<![\w.])(eval|exec)\(|\bpickle\b|os\.system\(|\bsubprocess\b|marshal\.loads",
                             path.read_text()):
            bad.append(f"{path.relative_to(src)}: {m.group(0)}")
    assert not bad, bad


def test_control_characters_from_the_dump_never_reach_the_terminal(nw):
    """A task name, a log line or a panic message may hold terminal escape sequences (any
    user can name a process "\\x1b]0;…"): the report shows them as \\xNN."""
    from kpostmortem.frontends.cli import printable

    hostile = {"crashed_task": {"comm": "sh\x1b]0;owned\x07", "pid": 99},
               "log": {"tail": [{"text": "\x9b2J\tok\n"}]}, "verdict": None}
    shown = printable(hostile)
    assert shown["crashed_task"] == {"comm": "sh\\x1b]0;owned\\x07", "pid": 99}
    assert shown["log"]["tail"][0]["text"] == "\\x9b2J\tok\n" and shown["verdict"] is None
    rc, out, _err = run_cli(nw["path"], *debug_args(nw), "--no-color")
    assert rc == OK and "\x1b" not in out and "\x9b" not in out
