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


# --- reports of other kinds and older kernels -------------------------------------------------

KASAN_IN_A_LOCK = """\
[   19.121834] BUG: KASAN: use-after-free in __lock_acquire+0x3c41/0x3cf0
[   19.121839] Read of size 8 at addr ffff8801c75ea0f8 by task poller/3471
[   19.121847] CPU: 1 PID: 3471 Comm: poller Not tainted 4.15.0 #87
[   19.121852] Call Trace:
[   19.121861]  dump_stack+0x137/0x198
[   19.121877]  print_address_description+0x73/0x250
[   19.121889]  kasan_report+0x23b/0x360
[   19.121897]  __asan_report_load8_noabort+0x14/0x20
[   19.121903]  __lock_acquire+0x3c41/0x3cf0
[   19.121983]  lock_acquire+0x16b/0x420
[   19.122007]  _raw_spin_lock_irqsave+0x96/0xc0
[   19.122019]  remove_wait_queue+0x24/0x1b0
[   19.122027]  ep_unregister_pollwait.isra.7+0x9d/0x360
[   19.122040]  ep_free+0xae/0x230
"""

OLD_WARNING = """\
[   55.967976] WARNING: CPU: 1 PID: 8377 at lib/refcount.c:186 refcount_sub_and_test+0x167/0x1b0
[   56.041277] Kernel panic - not syncing: panic_on_warn set ...
[   56.048693] CPU: 1 PID: 8377 Comm: worker Not tainted 4.13.0 #2
[   56.065137] Call Trace:
[   56.067707]  dump_stack+0x194/0x257
[   56.076017]  panic+0x1e4/0x3fb
[   56.098863]  __warn+0x1c4/0x1e0
[   56.107126]  report_bug+0x211/0x2d0
[   56.110735]  fixup_bug+0x40/0x90
[   56.114123]  do_trap+0x260/0x390
[   56.117481]  do_error_trap+0x120/0x390
[   56.150845]  do_invalid_op+0x1b/0x20
[   56.154533]  invalid_op+0x1e/0x30
[   56.157961] RIP: 0010:refcount_sub_and_test+0x167/0x1b0
[   56.163554] RSP: 0018:ffff8801c5e37720 EFLAGS: 00010212
[   56.205118]  ? refcount_sub_and_test+0x167/0x1b0
[   56.208636]  ? sctp_wfree+0x1a0/0x650
[   56.213644]  ? skb_release_head_state+0x124/0x260
"""


def test_sanitizer_report_names_the_caller_of_a_lock_primitive(tmp_path):
    v = verdict_of(tmp_path, KASAN_IN_A_LOCK)
    assert (v["category"], v["function"]) == ("memory-corruption", "remove_wait_queue")


def test_old_kernel_warning_falls_back_on_the_scanned_entries(tmp_path):
    """4.x kernels print a WARNING's registers inside the panic's trace and mark every frame
    below it "?": with nothing else but helpers and plumbing, those entries are used."""
    v = verdict_of(tmp_path, OLD_WARNING)
    assert (v["category"], v["function"]) == ("warning-escalated", "sctp_wfree")


ARM64_NULL_CALL = """\
[   19.029565] Unable to handle kernel NULL pointer dereference at virtual address 0000000000000000
[   19.031899] Internal error: Oops: 0000000086000006 [#1] SMP
[   19.032173] Modules linked in: mydrv(OE)
[   19.032590] CPU: 1 PID: 104 Comm: sh Kdump: loaded Tainted: G           OE      6.1.0-57-cloud-arm64 #1
[   19.033304] pc : 0x0
[   19.033859] lr : mydrv_start_dev+0x2c/0x60 [mydrv]
[   19.033984] sp : ffff800008713a30
[   19.034063] x29: ffff800008713a30 x28: ffff000009984100 x27: 0000000000000000
[   19.034101] x2 : 0000000000000000 x1 : 000000000000002a x0 : ffff000004a1b200
[   19.037289] Call trace:
[   19.037400]  0x0
[   19.037500]  mydrv_fire+0x20/0x40 [mydrv]
[   19.037600]  mydrv_write+0x48/0x90 [mydrv]
[   19.037700]  vfs_write+0xdc/0x3a0
[   19.038971] Code: bad PC value
"""


def test_arm64_register_dump_gives_category_function_module(tmp_path):
    report = analyze_log(write(tmp_path, ARM64_NULL_CALL), command=[]).to_dict()
    v = report["verdict"]
    # pc is 0 (a call through a NULL pointer): the caller is in lr, not yet in the trace
    assert (v["category"], v["function"], v["module"]) == ("null-pointer-dereference", "mydrv_start_dev", "mydrv")
    assert report["dump"]["arch"] == "aarch64"
    regs = report["fault"]["registers"]
    assert (regs["x1"], regs["x29"], regs["sp"]) == (0x2A, 0xFFFF800008713A30, 0xFFFF800008713A30)


def test_arm64_code_words_are_bytes_in_memory_order():
    from kpostmortem.decode.oopslog import parse_dmesg_text

    text = "[    1.0] Internal error: Oops: 96000046 [#1] SMP\n[    1.1] Code: d2800541 (f9000c41)\n"
    (rec,) = parse_log(parse_dmesg_text(text)).records
    assert rec.code == bytes.fromhex("410580d2" "410c00f9") and rec.code_trap_offset == 4


# --- formats of other architectures, sanitizers and old kernels -------------------------------

KMSAN_HEADERLESS = """\
[  417.716144][ T7542] =====================================================
[  417.723574][ T7542] BUG: KMSAN: uninit-value in crc32_le_base+0x43c/0xd80
[  417.730751][ T7542]  crc32_le_base+0x43c/0xd80
[  417.736320][ T7542]  nilfs_add_checksums_on_logs+0xb2c/0xe70
[  417.742485][ T7542]  nilfs_segctor_do_construct+0x9d40/0xde70
[  417.759973][ T7542]  kthread+0x3e8/0x540
[  417.768957][ T7542]
[  417.771436][ T7542] Uninit was created at:
[  417.776266][ T7542]  __alloc_pages+0x9a4/0xe00
[  417.824266][ T7542]  nilfs_write_begin+0xfc/0x200
"""

ARM32_NULL_CALL = """\
[  794.144523][ T8604] Unable to handle kernel NULL pointer dereference at virtual address 00000000
[  794.146728][ T8604] Internal error: Oops: 80000207 [#1] PREEMPT SMP ARM
[  794.147404][ T8604] Modules linked in:
[  794.148040][ T8604] CPU: 1 PID: 8604 Comm: sh Not tainted 6.0.0 #0
[  794.149804][ T8604] PC is at 0x0
[  794.150448][ T8604] LR is at gsmld_receive_buf+0xc0/0x15c
[  794.172256][ T8604] Backtrace:
[  794.172767][ T8604] [<808ea9f4>] (gsmld_receive_buf) from [<808dcfac>] (tty_ioctl+0x7b4/0xa6c)
[  794.173988][ T8604] [<808dc7f8>] (tty_ioctl) from [<804b9814>] (sys_ioctl+0x110/0xa74)
"""

OLD_CALL_TRACE_MID_LINE = """\
[   46.534609] BUG: KASAN: use-after-free in __list_del_entry+0x196/0x1d0
[   46.570833] Read of size 8 at addr ffff8801ce6e8e10 by task kworker/1:2/2403
[   46.635460] CPU: 1 PID: 2403 Comm: kworker/1:2 Not tainted 4.9.86 #50
[   46.907461]  ffff8801ce6e8e10 0000000000000008 0000000000000000Call Trace:
[   46.907475]  [<ffffffff81d956f9>] dump_stack+0xc1/0x128
[   46.907483]  [<ffffffff8153e083>] print_address_description+0x73/0x280
[   46.907487]  [<ffffffff8153e5a5>] kasan_report+0x275/0x360
[   46.907502]  [<ffffffff81dfd0b6>] __list_del_entry+0x196/0x1d0
[   46.907506]  [<ffffffff82d64cbc>] binder_release_work+0x8c/0x260
[   46.907513]  [<ffffffff82d652b8>] binder_thread_release+0x428/0x600
"""

WARNING_WITH_CONDITION = (
    "[ 9877.700279][    C0] WARNING: [time_after(jiffies, timeout)] io_uring/io_uring.c:3026 at "
    "io_ring_exit_work+0x44c/0xbc0, CPU#0: kworker/u8:0/10040\n"
) + """\
[ 9877.701489][    C0] Modules linked in:
[ 9877.706821][    C0] epc : io_ring_exit_work+0x44c/0xbc0
[ 9877.707647][    C0]  ra : io_ring_exit_work+0x44c/0xbc0
[ 9877.713144][    C0] [<ffffffff80014264>] io_ring_exit_work+0x44c/0xbc0
[ 9877.714119][    C0] [<ffffffff801c2668>] process_one_work+0x930/0x1e14
"""

LOCKDEP_BRACKETS = """\
[  264.309846] [ BUG: bad unlock balance detected! ]
[  264.309850] 4.9.0 #1 Not tainted
[  264.309860] syz-executor/1234 is trying to release lock (mrt_lock) at:
[  264.309875] Call Trace:
[  264.309880]  [<ffffffff81d956f9>] dump_stack+0xc1/0x128
[  264.309890]  [<ffffffff8123a1b0>] print_unlock_imbalance_bug+0x1b0/0x1e0
[  264.309900]  [<ffffffff8123f0b0>] lock_release+0x5f0/0x9e0
[  264.309910]  [<ffffffff8389c6b3>] _raw_read_unlock+0x23/0x40
[  264.309920]  [<ffffffff83112233>] ipmr_mfc_seq_stop+0x63/0x90
[  264.309930]  [<ffffffff81599d43>] seq_read+0x3f3/0x1180
"""


@pytest.mark.parametrize("text, category, function", [
    # KMSAN prints its stack under the headline with no "Call Trace:"; crc32 is library code
    (KMSAN_HEADERLESS, "uninitialized-memory", "nilfs_add_checksums_on_logs"),
    # 32-bit arm: "PC is at 0x0" (a call through NULL), the unwinder's "(f) from" lines
    (ARM32_NULL_CALL, "null-pointer-dereference", "gsmld_receive_buf"),
    # 4.9 prints "Call Trace:" after the stack's words; list debugging is the caller's object
    (OLD_CALL_TRACE_MID_LINE, "memory-corruption", "binder_release_work"),
    # 7.x prints the WARN_ON() condition in brackets; riscv's "epc :" and headerless trace
    (WARNING_WITH_CONDITION, "warning", "io_ring_exit_work"),
    # lockdep's 4.x headline in brackets; the lock release and its report are skipped
    (LOCKDEP_BRACKETS, "locking-violation", "ipmr_mfc_seq_stop"),
])
def test_reports_of_other_formats_name_the_function(tmp_path, text, category, function):
    v = verdict_of(tmp_path, text)
    assert (v["category"], v["function"]) == (category, function)


def test_library_code_is_skipped_for_the_caller():
    from kpostmortem.report import Frame
    from kpostmortem.verdict.frames import choose_guilty

    names = ["__x86_indirect_thunk_rax", "__sanitizer_cov_trace_pc", "crc16", "device_del", "xas_load",
             "hdm_disconnect", "usb_disconnect"]
    frames = [Frame(index=i, function=n) for i, n in enumerate(names)]
    assert choose_guilty(frames).function == "hdm_disconnect"


SYMBOLIZED_ARM64 = """\
[  100.000001] Unable to handle kernel NULL pointer dereference at virtual address 0000000000000000
[  100.000002] Internal error: Oops: 0000000096000006 [#1] PREEMPT SMP
[  100.000003] Modules linked in:
[  100.000004] CPU: 0 PID: 1234 Comm: mount Not tainted 6.1.0 #1
[  100.000005] pc : _compound_head include/linux/page-flags.h:253 [inline]
[  100.000006] pc : unlock_page+0x18/0xb8 mm/folio-compat.c:20
[  100.000007] lr : ni_readpage_cmpr+0x328/0x7cc fs/ntfs3/frecord.c:2139
[  100.000008] Call trace:
[  100.000009]  _compound_head include/linux/page-flags.h:253 [inline]
[  100.000010]  unlock_page+0x18/0xb8 mm/folio-compat.c:19
[  100.000011]  ni_readpage_cmpr+0x328/0x7cc fs/ntfs3/frecord.c:2139
[  100.000012]  ntfs_read_folio+0xd8/0x128 fs/ntfs3/inode.c:697
"""


def test_traces_symbolized_by_decode_stacktrace_are_read(tmp_path):
    """decode_stacktrace.sh adds "file:line" after each frame and prints inlined frames: a page
    helper's caller is the suspect."""
    v = verdict_of(tmp_path, SYMBOLIZED_ARM64)
    assert (v["category"], v["function"]) == ("null-pointer-dereference", "ni_readpage_cmpr")


RCU_STALL_STALE_CLOCK = """\
[   13.554529] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:
[   13.555537] rcu: \t0-...0: (0 ticks this GP) idle=d154/1/0x4000000000000000 softirq=370/370 fqs=149
[   13.556325] \t(detected by 1, t=753 jiffies, g=-499, q=28 ncpus=2)
[   13.557148] Sending NMI from CPU 1 to CPUs 0:
[   11.934509] NMI backtrace for cpu 0
[   11.934509] CPU: 0 PID: 102 Comm: sh Tainted: G           OE      6.1.0-57-cloud-amd64 #1  Debian 6.1.192-3
[   11.934509] RIP: 0010:mydrv_spin+0x20/0x40 [mydrv]
[   11.934509] RSP: 0018:ff4acb89803dbbd0 EFLAGS: 00000046
[   11.934509] Call Trace:
[   11.934509]  <TASK>
[   11.934509]  mydrv_write+0x28/0x30 [mydrv]
[   11.934509]  vfs_write+0xc7/0x3f0
[   11.934509]  </TASK>
[   13.558165] Kernel panic - not syncing: RCU Stall
[   13.558165] CPU: 1 PID: 0 Comm: swapper/1 Tainted: G           OE      6.1.0-57-cloud-amd64 #1  Debian 6.1.192-3
[   13.558165] Call Trace:
[   13.558165]  <IRQ>
[   13.558165]  panic+0x118/0x2f4
[   13.558165]  panic_on_rcu_stall+0x30/0x35
[   13.558165]  </IRQ>
[   13.558165]  <TASK>
[   13.558165]  asm_sysvec_apic_timer_interrupt+0x16/0x20
[   13.558165] RIP: 0010:native_safe_halt+0xb/0x10
"""


def test_a_stalled_cpus_stale_clock_is_not_a_reboot(tmp_path):
    """The CPU spinning with interrupts off prints its NMI backtrace stamped with its own stale
    clock, seconds behind: the backtrace still belongs to the stall, which names its function."""
    v = verdict_of(tmp_path, RCU_STALL_STALE_CLOCK)
    assert (v["category"], v["function"], v["module"]) == ("rcu-stall", "mydrv_spin", "mydrv")


HUNG_PASS = """\
[   15.834674] INFO: task kworker/0:0:7 blocked for more than 120 seconds.
[   15.835277]       Tainted: G           OE      6.1.0-57-cloud-amd64 #1 Debian 6.1.192-3
[   15.836024] task:kworker/0:0     state:D stack:0     pid:7     ppid:2      flags:0x00004000
[   15.836919] Workqueue: events bar_reconfig_fn [bar]
[   15.838181] Call Trace:
[   15.838824]  <TASK>
[   15.839176]  __schedule+0x34d/0xa00
[   15.840085]  schedule+0x5a/0xd0
[   15.840330]  schedule_preempt_disabled+0x11/0x20
[   15.840631]  __mutex_lock.constprop.0+0x39d/0x720
[   15.841048]  bar_reconfig+0x4e/0x70 [bar]
[   15.841408]  process_one_work+0x1c7/0x380
[   15.841560]  worker_thread+0x4d/0x380
[   15.841808]  kthread+0xda/0x100
[   15.842492]  ret_from_fork+0x22/0x30
[   15.843069]  </TASK>
[   15.843507] INFO: task bar-svc:106 blocked for more than 120 seconds.
[   15.843909]       Tainted: G           OE      6.1.0-57-cloud-amd64 #1 Debian 6.1.192-3
[   15.845450] Call Trace:
[   15.845633]  <TASK>
[   15.845813]  __schedule+0x34d/0xa00
[   15.846408]  schedule+0x5a/0xd0
[   15.846942]  __mutex_lock.constprop.0+0x39d/0x720
[   15.848212]  bar_sync_state+0x38/0x60 [bar]
[   15.848891]  kthread+0xda/0x100
[   15.849784]  </TASK>
[   15.850655] Kernel panic - not syncing: hung_task: blocked tasks
[   15.851475] CPU: 1 PID: 29 Comm: khungtaskd Kdump: loaded Tainted: G           OE      6.1.0-57-cloud-amd64 #1
[   15.852788] Call Trace:
[   15.853087]  <TASK>
[   15.853300]  dump_stack_lvl+0x44/0x5c
[   15.853572]  panic+0x118/0x2f4
[   15.853822]  watchdog.cold+0xc/0xbb
[   15.854079]  kthread+0xda/0x100
[   15.854079]  </TASK>
"""


def test_hung_task_pass_naming_several_tasks_blames_the_first_ones_wait_site(tmp_path):
    """The tasks one khungtaskd pass names and the panic that ends it are one event: the
    first task's own trace is the verdict's, its scheduler and lock frames skipped."""
    report = analyze_log(write(tmp_path, HUNG_PASS), command=[]).to_dict()
    v = report["verdict"]
    assert (v["category"], v["function"], v["module"]) == ("hung-task", "bar_reconfig", "bar")
    assert v["title"] == "INFO: task hung in bar_reconfig [bar]"
    assert not any("later crash" in e["text"] for e in v["evidence"])


SPIN_LOCKUP = """\
[   30.100000] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [bar-status:120]
[   30.100001] Modules linked in: bar(OE)
[   30.100002] CPU: 1 PID: 120 Comm: bar-status Tainted: G           OEL     6.1.0-57-cloud-amd64 #1 Debian 6.1.192-3
[   30.100003] RIP: 0010:native_queued_spin_lock_slowpath+0x5d/0x2c0
[   30.100004] Call Trace:
[   30.100005]  <TASK>
[   30.100006]  _raw_spin_lock+0x25/0x30
[   30.100007]  bar_read_status+0x1c/0x50 [bar]
[   30.100008]  bar_status_thread+0x2e/0x60 [bar]
[   30.100009]  kthread+0xda/0x100
[   30.100010]  ret_from_fork+0x22/0x30
[   30.100011]  </TASK>
[   30.100012] Kernel panic - not syncing: softlockup: hung tasks
"""


def test_soft_lockup_in_a_spin_lock_blames_the_code_taking_it(tmp_path):
    v = analyze_log(write(tmp_path, SPIN_LOCKUP), command=[]).to_dict()["verdict"]
    assert (v["category"], v["function"], v["module"]) == ("soft-lockup", "bar_read_status", "bar")


def test_rcu_stall_in_a_delay_loop_blames_the_loop(tmp_path):
    text = SPIN_LOCKUP.replace("native_queued_spin_lock_slowpath+0x5d/0x2c0", "delay_tsc+0x2f/0x60") \
        .replace("_raw_spin_lock+0x25/0x30", "__const_udelay+0x37/0x40")
    v = analyze_log(write(tmp_path, text), command=[]).to_dict()["verdict"]
    assert (v["function"], v["module"]) == ("bar_read_status", "bar")
