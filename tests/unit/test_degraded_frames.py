"""Degraded mode's fallback on the log's call trace (analyzers/degraded.frames_from_log),
on literal oops text as 5.10 prints it (no <TASK> markers, "?" entries before the frames)."""

from __future__ import annotations

from kpostmortem.analyzers.degraded import frames_from_log
from kpostmortem.decode.oopslog import parse_dmesg_text, parse_log
from kpostmortem.report import Frame

NULL_CALL_510 = """\
[    8.429091] BUG: kernel NULL pointer dereference, address: 0000000000000000
[    8.429308] #PF: supervisor instruction fetch in kernel mode
[    8.429849] Oops: 0010 [#1] SMP NOPTI
[    8.429849] CPU: 0 PID: 90 Comm: sh Kdump: loaded Tainted: G OE 5.10.0-32-cloud-amd64 #1 Debian 5.10.223-1
[    8.429849] RIP: 0010:0x0
[    8.429849] Call Trace:
[    8.429849]  ? __die_body.cold+0x1a/0x1f
[    8.429849]  ? asm_exc_page_fault+0x1e/0x30
[    8.429849]  crashpoc_start_dev+0x16/0x30 [crashpoc]
[    8.429849]  crashpoc_fire_null_call+0xa/0x20 [crashpoc]
[    8.429849]  full_proxy_write+0x53/0x80
[    8.429849]  vfs_write+0xc4/0x270
[    8.429849] Modules linked in: crashpoc(OE)
[    8.429849] CR2: 0000000000000000
"""

PANIC_510 = """\
[   10.100000] Kernel panic - not syncing: crashpoc: device crashpoc0 lost its configuration
[   10.100001] CPU: 1 PID: 93 Comm: sh Kdump: loaded Tainted: G OE 5.10.0-32-cloud-amd64 #1 Debian 5.10.223-1
[   10.100002] Call Trace:
[   10.100003]  dump_stack+0x6b/0x83
[   10.100004]  panic+0x101/0x2d7
[   10.100005]  crashpoc_panic+0x2a/0x30 [crashpoc]
[   10.100006]  full_proxy_write+0x53/0x80
"""


def records(text: str):
    return parse_log(parse_dmesg_text(text)).records


def test_continues_after_the_last_frame_the_dump_and_the_log_share():
    dump = [Frame(0, None, pc=0, interrupted=True), Frame(1, "crashpoc_start_dev", 0x16, 0x30, module="crashpoc")]
    out = frames_from_log(dump, records(NULL_CALL_510), pid=90)
    assert [f.function for f in out] == [None, "crashpoc_start_dev", "crashpoc_fire_null_call",
                                         "full_proxy_write", "vfs_write"]
    assert [f.index for f in out] == list(range(5))
    assert out[2].module == "crashpoc" and out[2].segment == "LOG" and out[2].offset == 0xa


def test_nameless_dump_stack_takes_the_whole_reliable_trace():
    out = frames_from_log([Frame(0, None, pc=0xFFFFFFFF81000000)], records(PANIC_510), pid=93)
    assert [f.function for f in out[1:]] == ["dump_stack", "panic", "crashpoc_panic", "full_proxy_write"]
    assert all(f.segment == "LOG" for f in out[1:])


def test_another_tasks_trace_is_not_borrowed():
    dump = [Frame(0, None, pc=0xFFFFFFFF81000000)]
    assert frames_from_log(dump, records(PANIC_510), pid=7) == dump


WARN_PANIC_72 = """\
[   12.864383] WARNING: crashpoc.c:309 at crashpoc_warn+0x23/0x40 [crashpoc], CPU#0: sh/122
[   12.865447] CPU: 0 UID: 0 PID: 122 Comm: sh Kdump: loaded Tainted: G OE 7.2.12+deb14-cloud-amd64 #1
[   12.866211] RIP: 0010:crashpoc_warn+0x2c/0x40 [crashpoc]
[   12.868216] Call Trace:
[   12.868694]  <TASK>
[   12.868860]  crashpoc_trigger_write+0x171/0x1c0 [crashpoc]
[   12.869359]  full_proxy_write+0x6f/0xc0
[   12.870591]  </TASK>
[   12.870600] Kernel panic - not syncing: kernel: panic_on_warn set ...
[   12.870601] CPU: 0 UID: 0 PID: 122 Comm: sh Kdump: loaded Tainted: G OE 7.2.12+deb14-cloud-amd64 #1
[   12.870602] Call Trace:
[   12.870603]  <TASK>
[   12.870604]  dump_stack_lvl+0x5d/0x80
[   12.870605]  vpanic+0x11a/0x2f0
[   12.870606]  panic+0x6b/0x70
[   12.870607]  __warn.cold+0x93/0xfa
[   12.870608]  asm_exc_invalid_op+0x1a/0x20
[   12.870609] RIP: 0010:crashpoc_warn+0x2c/0x40 [crashpoc]
[   12.870610]  crashpoc_trigger_write+0x171/0x1c0 [crashpoc]
[   12.870611]  full_proxy_write+0x6f/0xc0
[   12.870612]  </TASK>
"""


def test_a_panic_in_an_exception_puts_the_reporting_records_rip_below_the_entry_stub():
    dump = [Frame(0, "__crash_kexec", 0x10, 0x100, pc=0xFFFFFFFF81000010), Frame(1, None, pc=0xFFFFFFFF81000100)]
    out = frames_from_log(dump, records(WARN_PANIC_72), pid=122)
    names = [f.function for f in out]
    stub = names.index("asm_exc_invalid_op")
    assert names[:2] == ["__crash_kexec", None] and names[2] == "dump_stack_lvl"
    assert names[stub + 1:] == ["crashpoc_warn", "crashpoc_trigger_write", "full_proxy_write"]
    assert out[stub + 1].interrupted and out[stub + 1].module == "crashpoc"


# ------------------------------------------------------------- which CPU crashed, without kallsyms

class _NoSymbols:
    """A program whose kallsyms cannot be read (Linux < 6.0 without vmlinux): no symbol at all."""

    def symbol(self, name):
        raise LookupError(name)

    def read(self, address, size):
        raise AssertionError("nothing to read without a symbol")


def _notes(*pids):
    from kpostmortem.inputs.elfinfo import PrStatus
    return [PrStatus(cpu=i, pid=pid, registers={}) for i, pid in enumerate(pids)]


def test_without_kallsyms_the_logs_last_report_picks_the_crashed_cpu():
    from kpostmortem.inputs.nodwarf import crashed_cpu
    # both CPUs run a task (a WARN made fatal by panic_on_warn on CPU 1 while CPU 0 runs another)
    notes = _notes(93, 92)
    assert crashed_cpu(_NoSymbols(), notes, (1, 92)).cpu == 1
    # the CPU of the "CPU: N" line wins over a PID that runs nowhere else
    assert crashed_cpu(_NoSymbols(), notes, (0, None)).cpu == 0
    # a report of an idle task: the PID is not unique, the CPU is
    assert crashed_cpu(_NoSymbols(), _notes(0, 0, 71), (1, 0)).cpu == 1
    # without the log the old guess stands: the only CPU running a task
    assert crashed_cpu(_NoSymbols(), _notes(0, 71), None).cpu == 1


def test_kernel_image_bounds_from_vmcoreinfo_leave_modules_outside():
    from kpostmortem.inputs.nodwarf import _image_from_vmcoreinfo
    # 5.10's VMCOREINFO (values from a real dump): _stext and image data symbols, a direct-map
    # pointer (mem_section) that must not stretch the range
    info = {"SYMBOL(_stext)": "ffffffffb5c00000", "SYMBOL(init_uts_ns)": "ffffffffb7213700",
            "SYMBOL(mem_section)": "ffff96f53ffd9000", "SYMBOL(clear_seq)": "ffffffffb7ac7dd0",
            "SYMBOL(prb)": "ffffffffb72597e0", "OSRELEASE": "5.10.0-32-cloud-amd64"}
    start, end = _image_from_vmcoreinfo(info)
    assert start == 0xffffffffb5c00000 and end == 0xffffffffb7ac7dd1
    assert start <= 0xffffffffb5d3a458 < end          # crash_setup_regs, in the kernel's text
    assert not start <= 0xffffffffc0060466 < end      # crashpoc, a module
    assert _image_from_vmcoreinfo({"OSRELEASE": "x"}) is None
