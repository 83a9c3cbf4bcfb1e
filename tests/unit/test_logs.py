"""Text logs as input: sniffing, the formats people have (syslog, journal, pstore, CRLF), the
report and verdict made from a log alone, and bounded memory on a stream. Literal log text only."""

from __future__ import annotations

import gzip
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from kpostmortem.decode.oopscode import explain_code_bytes
from kpostmortem.decode.oopslog import LogLine, parse_log, split_log_line
from kpostmortem.errors import DumpError
from kpostmortem.inputs.log import open_log, sniff_input
from kpostmortem.logpipeline import analyze_log

DATA = Path(__file__).parent / "data"
NULL_WRITE = (DATA / "oops_null_6.1.log").read_text()


def write(tmp_path: Path, text: str, name: str = "log.txt") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def verdict_of(tmp_path: Path, text: str, name: str = "log.txt") -> dict:
    return analyze_log(write(tmp_path, text, name), command=[]).to_dict()["verdict"]


# --- sniffing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "kind"), [
    (b"", "empty"),
    (b"KDUMP   \x00\x00", "kdump"),
    (b"\x7fELF\x02\x01\x01", "elf"),
    (b"makedumpfile\x00\x00", "flattened"),
    (b"[    1.000000] Linux version 6.1.0\n", "text"),
    (bytes(range(256)) * 64, "binary"),
    ("Nov 25 09:30:01 hôte kernel: ça va\n".encode(), "text"),
])
def test_sniff_input(tmp_path, data, kind):
    f = tmp_path / "input"
    f.write_bytes(data)
    assert sniff_input(str(f)) == kind


def test_sniff_gzip_log_and_gzip_junk(tmp_path):
    log, junk = tmp_path / "kern.log.gz", tmp_path / "junk.gz"
    log.write_bytes(gzip.compress(NULL_WRITE.encode()))
    junk.write_bytes(gzip.compress(bytes(range(256)) * 64))
    assert sniff_input(str(log)) == "gzip-text"
    assert sniff_input(str(junk)) == "binary"
    assert analyze_log(str(log), command=[]).verdict.function == "crashpoc_null_write"


def test_empty_and_binary_are_refused_in_one_line(tmp_path):
    for data, words in ((b"", "empty file"), (bytes(range(256)) * 64, "neither a kernel crash dump nor a text log")):
        f = tmp_path / "x"
        f.write_bytes(data)
        with pytest.raises(DumpError, match=words):
            open_log(str(f))


# --- line formats -----------------------------------------------------------------------------


def test_syslog_and_journal_prefixes_keep_kernel_lines_only():
    lines = [
        "Nov 25 09:30:01 web1 kernel: [   52.770012] BUG: kernel NULL pointer dereference, address: 18",
        "Nov 25 09:30:01 web1 systemd[1]: Started Session 5 of user root.",
        "2026-11-25T09:30:01.123456+00:00 web1 kernel: Oops: 0002 [#1] SMP",
        "<4>1 2026-11-25T09:30:01Z web1 kernel - - - ignored",
    ]
    out = [ln for raw in lines for ln in split_log_line(raw)]
    assert [ln.text for ln in out[:2]] == ["BUG: kernel NULL pointer dereference, address: 18",
                                            "Oops: 0002 [#1] SMP"]
    assert out[0].timestamp == pytest.approx(52.770012)


def test_journal_file_with_user_space_interleaved(tmp_path):
    body = [ln.split("] ", 1)[1] for ln in NULL_WRITE.splitlines() if "] " in ln]
    text = []
    for i, msg in enumerate(body):
        text.append(f"Nov 25 09:30:{i % 60:02d} web1 kernel: {msg}")
        if i % 5 == 0:
            text.append(f"Nov 25 09:30:{i % 60:02d} web1 sshd[812]: Accepted publickey for root from 10.0.0.{i}")
    report = analyze_log(write(tmp_path, "\n".join(text)), command=[]).to_dict()
    assert report["dump"]["log_kind"] == "journal"
    assert report["summary"]["hostname"] == "web1"
    v = report["verdict"]
    assert (v["category"], v["function"], v["module"]) == ("null-pointer-dereference", "crashpoc_null_write",
                                                           "crashpoc")


def test_crlf_levels_and_caller_ids_give_the_same_verdict(tmp_path):
    plain = verdict_of(tmp_path, NULL_WRITE, "plain.log")
    decorated = "\r\n".join(
        ("<4>" + ln.replace("] ", "][  T67] ", 1)) if ln.startswith("[") else ln for ln in NULL_WRITE.splitlines()
    )
    other = verdict_of(tmp_path, decorated, "decorated.log")
    assert (other["title"], other["signature"]) == (plain["title"], plain["signature"])


def test_no_timestamps_at_all(tmp_path):
    bare = "\n".join(ln.split("] ", 1)[1] if "] " in ln else ln for ln in NULL_WRITE.splitlines())
    assert verdict_of(tmp_path, bare)["signature"] == verdict_of(tmp_path, NULL_WRITE, "b.log")["signature"]


# --- pstore -----------------------------------------------------------------------------------


def _pstore_parts(text: str, parts: int) -> list[str]:
    """``text`` cut into pstore parts as kmsg_dump writes them: Part1 is the end of the log."""
    lines = text.splitlines()
    size = -(-len(lines) // parts)
    chunks = [lines[i : i + size] for i in range(0, len(lines), size)]
    return ["\n".join([f"Oops#1 Part{len(chunks) - n}", *chunk]) for n, chunk in enumerate(chunks)]


def test_pstore_directory_of_parts_in_reverse_order(tmp_path):
    d = tmp_path / "pstore"
    d.mkdir()
    for part in _pstore_parts(NULL_WRITE, 3):
        number = int(part.split("\n", 1)[0].rsplit("Part", 1)[1])
        # ramoops numbers its files from the most recent part: dmesg-ramoops-0 is Part1
        (d / f"dmesg-ramoops-{number - 1}").write_text(part)
    (d / "console-ramoops-0").write_text("unrelated console text\n")
    assert sniff_input(str(d)) == "pstore-dir"
    report = analyze_log(str(d), command=[]).to_dict()
    assert report["dump"]["log_kind"] == "pstore" and report["dump"]["pstore_parts"] == 3
    assert report["verdict"]["signature"] == verdict_of(tmp_path, NULL_WRITE)["signature"]


def test_pstore_parts_concatenated_in_one_file_and_a_missing_part(tmp_path):
    parts = _pstore_parts(NULL_WRITE, 3)
    whole = analyze_log(write(tmp_path, "\n".join(parts), "dmesg-efi-1"), command=[]).to_dict()
    assert whole["verdict"]["function"] == "crashpoc_null_write"
    assert not whole["dump"]["problems"]
    gap = analyze_log(write(tmp_path, "\n".join([parts[0], parts[2]]), "dmesg-efi-2"), command=[]).to_dict()
    assert any("part(s) 2 missing" in p["text"] for p in gap["dump"]["problems"])


# --- what the verdict says ----------------------------------------------------------------------


WARNING_ONLY = """\
[   10.000000] ------------[ cut here ]------------
[   10.000001] WARNING: CPU: 0 PID: 88 at drivers/net/foo.c:123 foo_xmit+0x3c/0x90 [foo]
[   10.000002] Modules linked in: foo(O)
[   10.000003] CPU: 0 PID: 88 Comm: ping Tainted: G           O       6.1.0-18-amd64 #1  Debian 6.1.76-1
[   10.000004] RIP: 0010:foo_xmit+0x3c/0x90 [foo]
[   10.000005] Code: 48 85 c0 74 05 e8 00 00 00 00 <0f> 0b 31 c0 c3 cc cc cc cc 66 90 66 90 66 90 66 90 66 90 66 90
[   10.000006] RSP: 0018:ffffb1c2c01d7e20 EFLAGS: 00010246
[   10.000007] RAX: 0000000000000000 RBX: 0000000000000000 RCX: 0000000000000000
[   10.000008] Call Trace:
[   10.000009]  <TASK>
[   10.000010]  dev_hard_start_xmit+0x8d/0x1e0
[   10.000011]  __dev_queue_xmit+0x27a/0xc30
[   10.000012]  ip_finish_output2+0x170/0x5a0
[   10.000013]  </TASK>
[   10.000014] ---[ end trace 0000000000000000 ]---
[   12.500000] foo: link up
[   13.000000] systemd-journald[210]: Received SIGTERM
"""


def test_warning_without_panic_is_a_warning_the_machine_survived(tmp_path):
    report = analyze_log(write(tmp_path, WARNING_ONLY), command=[]).to_dict()
    v = report["verdict"]
    assert (v["category"], v["function"], v["module"]) == ("warning", "foo_xmit", "foo")
    assert v["title"] == "WARNING in foo_xmit [foo]"
    assert report["summary"]["how"]["fatal"] is False
    assert "survived" in v["explanation"]
    assert any("machine survived" in e["text"] for e in v["evidence"])
    assert report["fault"]["is_ud2"]


def test_oops_that_only_killed_a_task_survives(tmp_path):
    text = NULL_WRITE + "[   60.000000] note: sh[67] exited with irqs disabled\n[   70.000000] eth0: link up\n"
    report = analyze_log(write(tmp_path, text), command=[]).to_dict()
    assert report["verdict"]["category"] == "null-pointer-dereference"
    assert report["summary"]["how"]["fatal"] is False
    assert "killed sh[67]" in report["summary"]["how"]["description"]


def test_two_reports_the_first_one_is_the_verdict(tmp_path):
    second = (DATA / "explicit_panic_6.12.log").read_text()
    report = analyze_log(write(tmp_path, NULL_WRITE + second), command=[]).to_dict()
    assert len(report["log"]["records"]) >= 2
    assert report["verdict"]["function"] == "crashpoc_null_write"


def test_truncated_report_still_gets_a_verdict(tmp_path):
    cut = NULL_WRITE[: NULL_WRITE.index("Call Trace:")]
    v = verdict_of(tmp_path, cut)
    assert (v["category"], v["function"]) == ("null-pointer-dereference", "crashpoc_null_write")


def test_a_log_lists_what_it_cannot_tell_and_keeps_the_schema(tmp_path):
    report = analyze_log(write(tmp_path, NULL_WRITE), command=[]).to_dict()
    assert report["dump"]["source"] == "log"
    assert report["schema_version"] == 1
    assert any("other tasks' stacks" in m for m in report["verdict"]["missing"])
    assert report["verdict"]["confidence"] < 0.99


def test_text_that_is_no_kernel_log_is_refused(tmp_path):
    with pytest.raises(DumpError, match="not a kernel crash dump, nor a kernel log"):
        open_log(write(tmp_path, "this is not a crash dump\n" * 10))


def test_log_without_a_crash_has_no_records(tmp_path):
    src = open_log(write(tmp_path, "[    1.000000] Linux version 6.1.0\n[    2.000000] eth0: link up\n"))
    assert src.analysis.records == ()


def test_cli_no_crash_report_exit_1_one_line(tmp_path):
    path = write(tmp_path, "[    1.000000] Linux version 6.1.0\n[    2.000000] eth0: link up\n")
    p = subprocess.run([sys.executable, "-m", "kpostmortem.frontends.cli", "analyze", path],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("kpostmortem: error:")]
    assert len(errors) == 1 and "no kernel crash report found" in errors[0], p.stderr
    assert "Traceback" not in p.stderr


# --- the Code: bytes ----------------------------------------------------------------------------


def test_code_bytes_decoded_with_the_bad_register():
    code = bytes.fromhex("4885c07405e800000000") + bytes.fromhex("c743182a000000") + b"\x5b\xc3"
    ex = explain_code_bytes(code, 10, function="f", offset=0x1c, size=0x30,
                            registers={"rbx": 0, "rsp": 0xFFFFB1C2C01D7E20}, fault_address=0x18, error_code=2)
    assert ex["trapping_instruction"] == "mov dword ptr [rbx + 0x18], 0x2a"
    assert (ex["bad_register"], ex["effective_address"], ex["address_matches"]) == ("rbx", 0x18, True)
    assert ex["address_class"]["kind"] in ("null", "near-null")
    assert ex["instructions"][-1]["symbol"].startswith("f+0x")


def test_code_bytes_without_a_marker_say_so():
    ex = explain_code_bytes(b"\x90\x90", None, function="f", offset=1, registers={})
    assert ex["trapping_instruction"] is None and ex["problems"]


# --- streaming ------------------------------------------------------------------------------


def test_parse_log_streams_with_bounded_memory():
    """A log read from a generator: the peak memory does not grow with the log's length, the
    records keep a bounded number of lines, and the crash in the middle is found."""
    crash = [LogLine(t.split("] ", 1)[1], 5000.0) for t in NULL_WRITE.splitlines() if "] " in t]

    def stream(n: int):
        for i in range(n):
            yield LogLine(f"eth0: rx {i} packets", i / 100)
        yield from crash
        for i in range(n):
            yield LogLine(f"eth0: tx {i} packets", 6000 + i / 100)

    peaks = []
    for n in (4_000, 16_000):
        tracemalloc.start()
        analysis = parse_log(stream(n), keep_lines=100)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert analysis.lines_total == 2 * n + len(crash)
        assert [r.kind for r in analysis.records] == ["null-deref"]
        assert len(analysis.record_lines[0]) <= 100
    assert peaks[1] < peaks[0] * 1.5 + 64 * 1024, peaks  # four times the lines, not four times the memory


# --- batch ---------------------------------------------------------------------------------


def test_batch_takes_logs_from_directories_only_when_asked(tmp_path):
    from kpostmortem.frontends.batch import analyze_one, find_dumps

    (tmp_path / "host1").mkdir()
    (tmp_path / "host1" / "dmesg.202611250930").write_text(NULL_WRITE)
    (tmp_path / "host1" / "meta.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("not a log by its name")
    (tmp_path / "healthy.log").write_text("[    1.000000] Linux version 6.1.0\n")
    assert find_dumps([str(tmp_path)]) == []
    jobs = find_dumps([str(tmp_path)], logs=True)
    assert sorted(Path(j.path).name for j in jobs) == ["dmesg.202611250930", "healthy.log"]
    records = {Path(j.path).name: analyze_one(j) for j in jobs}
    crash, healthy = records["dmesg.202611250930"], records["healthy.log"]
    assert crash["ok"] and crash["signature"] == verdict_of(tmp_path, NULL_WRITE)["signature"]
    assert not healthy["ok"] and healthy["exit_code"] == 1 and "no kernel crash report found" in healthy["error"]
