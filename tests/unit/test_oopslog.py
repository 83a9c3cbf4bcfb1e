"""Tests for kpostmortem.decode.oopslog: kernel log text → crash records."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpostmortem.decode.oopslog import (
    KINDS,
    LogAnalysis,
    LogLine,
    TraceEntry,
    parse_dmesg_text,
    parse_log,
    parse_trace_entry,
)

DATA = Path(__file__).parent / "data"


def analyse(text: str) -> LogAnalysis:
    return parse_log(parse_dmesg_text(text))


def fixture(name: str) -> LogAnalysis:
    return analyse((DATA / name).read_text())


def kinds(analysis: LogAnalysis) -> list[str]:
    return [r.kind for r in analysis.records]


def functions(entries, reliable_only=False) -> list[str]:
    return [e.function for e in entries if e.reliable or not reliable_only]


# --- parse_dmesg_text -------------------------------------------------------------------------


def test_dmesg_timestamp_and_one_space_removed():
    (line,) = parse_dmesg_text("[   52.779515]  crashpoc_write+0x5d/0x90 [crashpoc]")
    assert line == LogLine(" crashpoc_write+0x5d/0x90 [crashpoc]", 52.779515)


def test_dmesg_caller_id_and_level():
    a, b = parse_dmesg_text("<4>[  771.741335][T15335] BUG: x\n[    1.000000][    C0] y")
    assert (a.text, a.timestamp, a.caller, a.level) == ("BUG: x", 771.741335, "T15335", 4)
    assert (b.caller, b.level) == ("C0", None)


def test_dmesg_lines_without_timestamps_are_kept():
    lines = parse_dmesg_text("kpm-init: firing null_write\nKilled\r\n")
    assert [(ln.text, ln.timestamp) for ln in lines] == [
        ("kpm-init: firing null_write", None),
        ("Killed", None),
        ("", None),
    ]


def test_dmesg_serial_garbage_and_escapes_are_dropped():
    text = "syzkaller login: [  123.000001][    C1] rcu: INFO: x\r\n\x1b[0;32mok\x1b[0m\x00"
    first, second = parse_dmesg_text(text)
    assert (first.text, first.timestamp, first.caller) == ("rcu: INFO: x", 123.000001, "C1")
    assert second.text == "ok"


def test_dmesg_two_messages_on_one_console_line_are_split():
    lines = parse_dmesg_text("[    1.000000] first[    1.000100] second")
    assert [(ln.text, ln.timestamp) for ln in lines] == [("first", 1.0), ("second", 1.0001)]


def test_dmesg_kmsg_and_journal_formats():
    kmsg, journal = parse_dmesg_text(
        "4,1234,52770012,-,caller=T67;BUG: kernel NULL pointer dereference, address: 18\n"
        "Mar 01 12:00:00 host kernel: Oops: 0002 [#1] PREEMPT SMP NOPTI"
    )
    assert (kmsg.level, kmsg.timestamp, kmsg.caller) == (4, 52.770012, "T67")
    assert kmsg.text.startswith("BUG: kernel NULL")
    assert journal == LogLine("Oops: 0002 [#1] PREEMPT SMP NOPTI", None)


# --- trace entries ----------------------------------------------------------------------------


def test_trace_entry_forms():
    assert parse_trace_entry(" ? crashpoc_null_write+0x1c/0x30 [crashpoc]", "TASK") == (
        TraceEntry("crashpoc_null_write", 0x1C, 0x30, "crashpoc", False, "TASK")
    )
    old = parse_trace_entry(" [<ffffffff8107e0c3>] ? warn_slowpath_common+0x83/0xc0")
    assert old == TraceEntry(
        "warn_slowpath_common", 0x83, 0xC0, None, False, None, 0xFFFFFFFF8107E0C3
    )
    build_id = parse_trace_entry(" foo.cold+0x1/0x2 [mod 4b2a9c0e0a9d3f1e8c6d9b7a5f3e1d0c9b8a7f6e]")
    assert (build_id.function, build_id.module) == ("foo.cold", "mod")
    bare = parse_trace_entry(" ? 0xffffffffc0a2b000")
    assert (bare.function, bare.address, bare.reliable) == (
        "0xffffffffc0a2b000",
        0xFFFFFFFFC0A2B000,
        False,
    )
    arm64 = parse_trace_entry(" __switch_to+0x2b0/0x6e0 (T)")
    assert arm64.function == "__switch_to"
    assert parse_trace_entry("RIP: 0010:foo+0x1/0x2") is None
    assert (
        parse_trace_entry(" #0: ffffffff82b5f2e0 (rcu_read_lock){....}, at: f+0x36/0x1c0") is None
    )


# --- synthetic 6.1 / 6.12 reports (tests/unit/data/*.log) ------------------------------------


def test_null_deref_6_1_with_kdump_loaded_has_no_panic_line():
    a = fixture("oops_null_6.1.log")
    (rec,) = a.records
    assert rec.kind == "null-deref" and rec.is_oops
    assert rec.headline == "BUG: kernel NULL pointer dereference, address: 0000000000000018"
    assert (rec.first_line_index, rec.last_line_index) == (3, 45)
    assert rec.timestamp == 52.770012
    assert (rec.oops_number, rec.oops_code, rec.error_code, rec.fault_address) == (1, 2, 2, 0x18)
    assert rec.access == "supervisor write access in kernel mode"
    assert rec.page_table == "PGD 0 P4D 0"
    assert (rec.cpu, rec.pid, rec.comm, rec.uid) == (1, 67, "sh", None)
    assert rec.tainted == "G           OE" and rec.release == "6.1.0-18-amd64"
    assert rec.hardware.startswith("QEMU Standard PC (i440FX + PIIX, 1996)")
    assert rec.rip == TraceEntry("crashpoc_null_write", 0x1C, 0x30, "crashpoc", True, None)
    assert len(rec.code) == 64 and rec.code_trap_offset == 42 and rec.code[42] == 0xC7
    assert rec.registers["RBX"] == 0 and rec.registers["CR2"] == 0x18
    assert rec.registers["RSP"] == 0xFFFFB1C2C01D7E20 and rec.registers["SS"] == 0x18
    assert rec.registers["R8"] == 0 and rec.registers["R15"] == 0x561DD5A71970
    assert rec.registers["GS"] == 0xFFFF8F3B7BD00000 and rec.registers["KNLGS"] == 0
    assert rec.registers["EFLAGS"] == 0x10246 and rec.registers["CS"] == 0x10
    assert "RIP" not in rec.registers  # the user-mode "RIP: 0033:0x..." is inside the trace
    assert rec.gp_registers()["rbx"] == 0 and rec.gp_registers()["gs_base"] == 0xFFFF8F3B7BD00000
    assert functions(rec.call_trace, reliable_only=True) == [
        "crashpoc_write",
        "proc_reg_write",
        "vfs_write",
        "ksys_write",
        "do_syscall_64",
        "entry_SYSCALL_64_after_hwframe",
    ]
    assert {e.context for e in rec.call_trace} == {"TASK"}
    assert rec.call_trace[4] == TraceEntry(
        "crashpoc_null_write", 0x1C, 0x30, "crashpoc", False, "TASK"
    )
    assert rec.modules_linked_in[:3] == ("crashpoc", "nls_ascii", "nls_cp437")
    assert "crashpoc_other" not in rec.modules_linked_in and rec.last_unloaded == "crashpoc_other"
    assert rec.module_taints == {"crashpoc": "OE"}
    assert a.out_of_tree_modules == ("crashpoc",)
    assert a.module_verification_failures == ("crashpoc",)
    assert a.panic() is None and a.first_oops() is rec and a.cause() is rec


def test_null_deref_6_12_and_its_fatal_exception_panic():
    a = fixture("oops_null_6.12.log")
    oops, panic = a.records
    assert oops.kind == "null-deref" and oops.oops_number == 1 and oops.uid == 0
    assert (oops.cpu, oops.pid, oops.comm, oops.release) == (0, 412, "bash", "6.12.12-amd64")
    assert oops.registers["PKRU"] == 0x55555554
    assert oops.hints == ("note: bash[412] exited with irqs disabled",)
    assert oops.last_line_index == 57  # the executive summary after "end trace" is included
    assert panic.kind == "panic" and panic.panic_message == "Fatal exception"
    assert panic.escalates == 0 and panic.last_line_index == 60
    assert a.panic() is panic and a.cause() is oops and a.escalation_of(0) is panic
    assert a.kernel_offset == 0x1000000


def test_bug_6_1_is_bug_not_invalid_opcode():
    a = fixture("bug_6.1.log")
    bug, panic = a.records
    assert bug.kind == "bug" and bug.headline == "kernel BUG at /build/crashpoc/crashpoc.c:87!"
    assert (bug.bug_file, bug.bug_line, bug.oops_number, bug.oops_code) == (
        "/build/crashpoc/crashpoc.c",
        87,
        1,
        0,
    )
    assert bug.code[bug.code_trap_offset : bug.code_trap_offset + 2] == b"\x0f\x0b"
    assert bug.fault_address is None and bug.error_code is None
    assert panic.escalates == 0 and a.cause() is bug


def test_gpf_6_12_list_poison():
    a = fixture("gpf_list_poison_6.12.log")
    (gpf,) = a.records
    assert gpf.kind == "gpf" and gpf.oops_number == 1 and gpf.oops_code == 0
    assert gpf.fault_address == 0xDEAD000000000108
    assert gpf.registers["RDX"] == 0xDEAD000000000100
    assert gpf.rip.function == "crashpoc_list_uaf" and gpf.code_trap_offset == 42
    assert gpf.modules_linked_in[0] == "crashpoc"


def test_warning_escalated_by_panic_on_warn():
    a = fixture("warning_panic_on_warn_6.1.log")
    warning, panic = a.records
    assert warning.kind == "warning" and not warning.is_oops
    assert (warning.cpu, warning.pid, warning.comm) == (1, 88, "sh")
    assert (warning.bug_file, warning.bug_line) == ("/build/crashpoc/crashpoc.c", 101)
    assert warning.location == TraceEntry("crashpoc_warn", 0x15, 0x20, "crashpoc", True, None)
    assert warning.rip.function == "crashpoc_warn" and warning.modules_linked_in[0] == "crashpoc"
    assert panic.kind == "panic" and panic.escalates == 0
    assert panic.panic_message == "kernel: panic_on_warn set ..."
    assert functions(panic.call_trace)[:4] == [
        "dump_stack_lvl",
        "panic",
        "crashpoc_warn",
        "check_panic_on_warn.cold",
    ]
    # the regs printed inside the panic's trace belong to the trace, not the panic record
    assert panic.registers == {} and panic.rip is None
    assert a.first_oops() is None and a.cause() is warning


def test_soft_lockup_and_its_panic_in_irq_context():
    a = fixture("soft_lockup_6.1.log")
    lockup, panic = a.records
    assert lockup.kind == "soft-lockup" and lockup.lockup_seconds == 22
    assert (lockup.cpu, lockup.pid, lockup.comm) == (0, 95, "sh")
    assert lockup.rip.function == "crashpoc_spin" and lockup.code[42] == 0xEB
    assert panic.escalates == 0 and panic.tainted == "G           OEL"
    contexts = [(e.function, e.context) for e in panic.call_trace]
    assert contexts[0] == ("dump_stack_lvl", "IRQ")
    assert ("asm_sysvec_apic_timer_interrupt", "TASK") in contexts
    assert contexts[-1] == ("entry_SYSCALL_64_after_hwframe", "TASK")
    assert a.cause() is lockup


def test_hung_task_6_12():
    a = fixture("hung_task_6.12.log")
    hung, panic = a.records
    assert hung.kind == "hung-task" and hung.lockup_seconds == 120
    assert (hung.pid, hung.comm, hung.cpu) == (97, "sh", None)
    assert hung.tainted == "G           OE" and hung.release == "6.12.12-amd64"
    assert "crashpoc_deadlock" in functions(hung.call_trace)
    assert panic.escalates == 0 and (panic.pid, panic.comm, panic.cpu) == (30, "khungtaskd", 1)
    assert functions(panic.call_trace)[:3] == ["dump_stack_lvl", "panic", "watchdog"]


def test_stack_guard_page_6_1():
    a = fixture("stack_guard_6.1.log")
    (rec,) = a.records
    assert rec.kind == "stack-guard" and rec.oops_number == 1 and rec.is_oops
    assert rec.fault_address == 0xFFFFB1C2C0223FF8  # from CR2: the hashed %p is useless
    assert rec.call_trace[0].context == "#DF" and rec.call_trace[-1].context == "TASK"
    assert functions(rec.call_trace, reliable_only=True).count("crashpoc_recurse") == 8
    assert rec.modules_linked_in[0] == "crashpoc"


def test_stack_end_corruption_is_its_own_kind():
    a = fixture("stack_corruption_6.12.log")
    (rec,) = a.records
    assert rec.kind == "stack-corruption" and rec.escalates is None
    assert rec.panic_message == "corrupted stack end detected inside scheduler"
    assert a.panic() is rec and a.cause() is rec and a.first_oops() is None
    assert "crashpoc_stack_end" in functions(rec.call_trace)


def test_stack_protector_names_the_function():
    a = fixture("stack_protector_6.1.log")
    (rec,) = a.records
    assert rec.kind == "stack-protector"
    assert rec.location == TraceEntry("crashpoc_smash", 0x5E, 0x60, "crashpoc", True, None)


def test_sysrq_crash():
    a = fixture("sysrq_6.1.log")
    sysrq, panic = a.records
    assert sysrq.kind == "sysrq" and panic.escalates == 0
    assert "sysrq_handle_crash" in functions(panic.call_trace)
    assert a.cause() is sysrq and a.panic() is panic


def test_explicit_panic():
    a = fixture("explicit_panic_6.12.log")
    (rec,) = a.records
    assert rec.kind == "panic" and rec.escalates is None
    assert rec.panic_message == "crashpoc: explicit panic requested"
    assert (rec.cpu, rec.pid, rec.uid) == (1, 107, 0)
    assert functions(rec.call_trace)[2] == "crashpoc_panic"
    assert a.cause() is rec


# --- console logs of our real dumps (tests/unit/data/real, copied from the vmcore corpus) -----

REAL = {
    # scenario: (kinds, cause kind, rip function, fault address, pid)
    "null-write": (["null-deref"], "null-deref", "crashpoc_null_write", 0x18, 99),
    "null-write-612": (["null-deref"], "null-deref", "crashpoc_null_write", 0x18, 154),
    "null-read": (["null-deref"], "null-deref", "crashpoc_null_read", 0x14, 98),
    "bad-page-fault-612": (
        ["page-fault"],
        "page-fault",
        "crashpoc_bad_address",
        0xFF52D4CCC01B5040,
        148,
    ),
    "gpf": (["gpf"], "gpf", "crashpoc_gpf", 0xDEAD000000000110, 98),
    "bug-on": (["bug"], "bug", "crashpoc_bug_on", None, 98),
    "bug-on-612": (["bug"], "bug", "crashpoc_bug_on", None, 148),
    "timer-oops": (["null-deref"], "null-deref", "crashpoc_timer_update", 0x20, 0),
    "unknown-symbol": (["null-deref"], "null-deref", "crashpoc_null_write", 0x18, 100),
    "soft-lockup": (["soft-lockup", "panic"], "soft-lockup", "crashpoc_soft_lockup", None, 99),
    "warn-panic": (["warning", "panic"], "warning", "crashpoc_warn", None, 101),
    "sysrq-c": (["sysrq", "panic"], "sysrq", None, None, None),
    "stack-canary": (["stack-corruption"], "stack-corruption", None, None, 99),
    "module-panic-612": (["panic"], "panic", None, None, 150),
    "two-oopses": (["null-deref", "panic"], "panic", None, None, None),
}


@pytest.mark.parametrize("scenario", sorted(REAL))
def test_real_console_logs(scenario):
    want_kinds, cause_kind, rip, fault_address, pid = REAL[scenario]
    a = fixture(f"real/{scenario}.console.log")
    assert kinds(a) == want_kinds
    cause = a.cause()
    assert cause.kind == cause_kind
    assert (cause.rip.function if cause.rip else None) == rip
    assert cause.fault_address == fault_address
    assert cause.pid == pid
    for rec in a.records:
        assert rec.release is None or rec.release.startswith(("6.1.0-56", "6.12.117"))


def test_real_null_write_record_in_detail():
    a = fixture("real/null-write.console.log")
    (rec,) = a.records
    assert rec.rip == TraceEntry("crashpoc_null_write", 0x1E, 0x30, "crashpoc", True, None)
    assert rec.tainted == "G           OE" and rec.release == "6.1.0-56-cloud-amd64"
    assert (rec.error_code, rec.access) == (2, "supervisor write access in kernel mode")
    assert rec.code[rec.code_trap_offset : rec.code_trap_offset + 4] == bytes.fromhex("48c74018")
    assert rec.registers["RAX"] == 0
    assert functions(rec.call_trace, reliable_only=True)[0] == "crashpoc_trigger_write.cold"
    # the capture kernel's boot log after the crash must not leak into the record
    assert rec.last_line_index < next(
        i
        for i, ln in enumerate(parse_dmesg_text((DATA / "real/null-write.console.log").read_text()))
        if ln.text.startswith("Linux version")
    )


def test_real_timer_oops_in_irq_without_code_bytes():
    rec = fixture("real/timer-oops.console.log").records[0]
    assert rec.code is None and rec.code_trap_offset is None  # "Unable to access opcode bytes"
    assert rec.comm == "swapper/0" and rec.call_trace[0].context == "IRQ"


def test_real_two_oopses_panic_does_not_escalate_the_old_oops():
    a = fixture("real/two-oopses.console.log")
    oops, panic = a.records
    assert panic.escalates is None and panic.kind == "panic"
    assert a.first_oops() is oops and a.cause() is panic


def test_real_unknown_symbol_lines():
    a = fixture("real/unknown-symbol.console.log")
    assert a.unknown_symbols[0] == ("crashpoc_badsym", "crashpoc_missing_helper")
    assert "crashpoc_badsym" in a.module_verification_failures


def test_real_sysrq_not_tainted():
    panic = fixture("real/sysrq-c.console.log").panic()
    assert panic.tainted == "" and panic.comm == "sh"


# --- formats without a fixture file ----------------------------------------------------------


def test_6_12_invalid_opcode_line_joins_kernel_bug():
    a = analyse(
        "[ 9.1] ------------[ cut here ]------------\n"
        "[ 9.2] kernel BUG at mm/slub.c:435!\n"
        "[ 9.3] Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI\n"
        "[ 9.4] CPU: 3 UID: 0 PID: 1 Comm: swapper/0 Not tainted 6.12.0 #1\n"
        "[ 9.5] RIP: 0010:kfree+0x2f9/0x300\n"
    )
    (rec,) = a.records
    assert (rec.kind, rec.bug_file, rec.bug_line, rec.oops_number) == ("bug", "mm/slub.c", 435, 1)
    assert rec.tainted == "" and rec.release == "6.12.0" and rec.comm == "swapper/0"


def test_bare_invalid_opcode_and_divide_error():
    assert kinds(analyse("invalid opcode: 0000 [#1] SMP NOPTI\nRIP: 0010:f+0x1/0x2")) == [
        "invalid-opcode"
    ]
    a = analyse(
        "Oops: divide error: 0000 [#2] PREEMPT SMP NOPTI\n"
        "CPU: 0 PID: 5 Comm: x Not tainted 6.12.0 #1"
    )
    (rec,) = a.records
    assert (rec.kind, rec.oops_number, rec.pid) == ("divide-error", 2, 5)


def test_gpf_6_1_form_and_kasan_hint():
    a = analyse(
        "general protection fault, probably for non-canonical address 0xdffffc0000000003: "
        "0000 [#1] SMP KASAN\n"
        "KASAN: null-ptr-deref in range [0x0000000000000018-0x000000000000001f]\n"
        "CPU: 0 PID: 9 Comm: kworker/0:1 Not tainted 6.1.0 #1\n"
    )
    (rec,) = a.records
    assert rec.kind == "gpf" and rec.fault_address == 0xDFFFFC0000000003
    assert rec.hints == ("KASAN: null-ptr-deref in range [0x0000000000000018-0x000000000000001f]",)


def test_old_kernel_oops_formats():
    a = analyse(
        "BUG: unable to handle kernel NULL pointer dereference at           (null)\n"
        "IP: [<ffffffffa0000010>] foo+0x10/0x20 [mod]\n"
        "Oops: 0002 [#1] SMP\n"
        "CPU: 0 PID: 1 Comm: init Tainted: P           O    4.4.0-21-generic #37-Ubuntu\n"
        "RIP: 0010:[<ffffffffa0000010>]  [<ffffffffa0000010>] foo+0x10/0x20 [mod]\n"
        "Call Trace:\n"
        " [<ffffffff8107e0c3>] bar+0x83/0xc0\n"
        " <IRQ>  [<ffffffff8107e0d3>] ? baz+0x1/0x2\n"
        " <EOI>  [<ffffffff8107e0e3>] qux+0x3/0x4\n"
        "Code: 48 89 e5 <c7> 04 25 00 00 00 00 01 00 00 00\n"
        "RIP  [<ffffffffa0000010>] foo+0x10/0x20 [mod]\n"
    )
    (rec,) = a.records
    assert rec.kind == "null-deref" and rec.fault_address == 0 and rec.error_code == 2
    assert rec.tainted == "P           O" and rec.release == "4.4.0-21-generic"
    assert rec.rip == TraceEntry("foo", 0x10, 0x20, "mod", True, None, 0xFFFFFFFFA0000010)
    assert [(e.function, e.context, e.reliable) for e in rec.call_trace] == [
        ("bar", None, True),
        ("baz", "IRQ", False),
        ("qux", None, True),
    ]
    assert rec.code_trap_offset == 3  # Code: after the trace, as kernels before 4.x printed it


def test_page_fault_older_wording_and_call_through_null():
    a = analyse(
        "BUG: unable to handle page fault for address: 0000000000000000\n"
        "#PF: supervisor instruction fetch in kernel mode\n"
        "#PF: error_code(0x0010) - not-present page\n"
        "Oops: 0010 [#1] PREEMPT SMP NOPTI\n"
        "RIP: 0010:0x0\n"
        "Code: Unable to access opcode bytes at 0xffffffffffffffd6.\n"
    )
    (rec,) = a.records
    assert rec.kind == "page-fault" and rec.error_code == 0x10 and rec.rip is None
    assert rec.registers["RIP"] == 0 and rec.code is None
    assert rec.access == "supervisor instruction fetch in kernel mode"


def test_hard_lockup_and_panic():
    a = analyse(
        "[ 20.000000] watchdog: CPU1: Watchdog detected hard LOCKUP on cpu 1\n"
        "[ 20.000001] Modules linked in: crashpoc(OE)\n"
        "[ 20.000002] CPU: 1 PID: 50 Comm: sh Tainted: G           OE      6.1.0 #1\n"
        "[ 20.000003] RIP: 0010:crashpoc_hard+0x9/0x10 [crashpoc]\n"
        "[ 20.000004] Kernel panic - not syncing: Hard LOCKUP\n"
    )
    lockup, panic = a.records
    assert (lockup.kind, lockup.cpu, lockup.pid) == ("hard-lockup", 1, 50)
    assert panic.escalates == 0


def test_hard_lockup_panic_without_report_is_hard_lockup():
    (rec,) = analyse("Kernel panic - not syncing: Watchdog detected hard LOCKUP on cpu 0").records
    assert rec.kind == "hard-lockup"


def test_rcu_stall_takes_the_stalled_cpus_backtrace_only():
    a = analyse(
        "[ 30.0] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\n"
        "[ 30.1] rcu: \t0-...!: (1 GPs behind) idle=8d4/1/0x4000000000000000 softirq=1/1 fqs=0\n"
        "[ 30.2] \t(detected by 1, t=21002 jiffies, g=1, q=1 ncpus=2)\n"
        "[ 30.3] Sending NMI from CPU 1 to CPUs 0:\n"
        "[ 30.4] NMI backtrace for cpu 0\n"
        "[ 30.5] CPU: 0 PID: 77 Comm: sh Not tainted 6.1.0 #1\n"
        "[ 30.6] RIP: 0010:spin+0x2/0x10\n"
        "[ 30.7] Call Trace:\n"
        "[ 30.8]  <TASK>\n"
        "[ 30.9]  stuck_here+0x1/0x2\n"
        "[ 31.0]  </TASK>\n"
        "[ 31.1] NMI backtrace for cpu 1\n"
        "[ 31.2] CPU: 1 PID: 0 Comm: swapper/1 Not tainted 6.1.0 #1\n"
        "[ 31.3] Call Trace:\n"
        "[ 31.4]  <IRQ>\n"
        "[ 31.5]  nmi_cpu_backtrace+0x1/0x2\n"
        "[ 31.6]  </IRQ>\n"
        "[ 31.7] Kernel panic - not syncing: RCU Stall\n"
    )
    stall, panic = a.records
    assert (stall.kind, stall.cpu, stall.pid, stall.rip.function) == ("rcu-stall", 0, 77, "spin")
    assert functions(stall.call_trace) == ["stuck_here"]
    assert stall.last_line_index == 10
    assert panic.escalates == 0


def test_rcu_stall_backtrace_under_the_stalled_cpus_caller_id_is_the_records():
    """In the printk buffer the NMI backtrace carries the stalled CPU's caller id ("C0"), the
    stall report the noticing CPU's ("C1"); a nested RIP line in the trace is a frame."""
    a = analyse(
        "[ 6.769539][    C1] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\n"
        "[ 6.770244][    C1] rcu: \t0-...0: (1 GPs behind) idle=2254/1/0x4000000000000000 softirq=154/155 fqs=375\n"
        "[ 6.771356][    C1] Sending NMI from CPU 1 to CPUs 0:\n"
        "[ 6.225654][    C0] NMI backtrace for cpu 0\n"
        "[ 6.225654][    C0] CPU: 0 PID: 103 Comm: sh Kdump: loaded Tainted: G           OE      6.1.0 #1\n"
        "[ 6.225654][    C0] RIP: 0010:__sysvec_apic_timer_interrupt+0x4b/0x110\n"
        "[ 6.225654][    C0] Call Trace:\n"
        "[ 6.225654][    C0]  <IRQ>\n"
        "[ 6.225654][    C0]  sysvec_apic_timer_interrupt+0x69/0x90\n"
        "[ 6.225654][    C0]  </IRQ>\n"
        "[ 6.225654][    C0]  <TASK>\n"
        "[ 6.225654][    C0]  asm_sysvec_apic_timer_interrupt+0x16/0x20\n"
        "[ 6.225654][    C0] RIP: 0010:mydrv_poll+0x18/0x40 [mydrv]\n"
        "[ 6.225654][    C0]  ? mydrv_other+0x70/0x70 [mydrv]\n"
        "[ 6.225654][    C0]  mydrv_write+0x28/0x30 [mydrv]\n"
        "[ 6.225654][    C0] RIP: 0033:0x47b7a0\n"
        "[ 6.225654][    C0]  </TASK>\n"
        "[ 6.773374][    C1] Kernel panic - not syncing: RCU Stall\n"
    )
    stall, panic = a.records
    assert (stall.kind, stall.cpu, stall.pid, stall.comm) == ("rcu-stall", 0, 103, "sh")
    assert functions(stall.call_trace, reliable_only=True) == [
        "sysvec_apic_timer_interrupt", "asm_sysvec_apic_timer_interrupt", "mydrv_poll", "mydrv_write"]
    nested = stall.call_trace[2]
    assert nested.interrupted and nested.reliable and nested.module == "mydrv" and nested.offset == 0x18
    assert not any(e.interrupted for e in stall.call_trace if e.function != "mydrv_poll")
    assert panic.escalates == 0


def test_a_backtrace_nobody_asked_for_stays_out():
    a = analyse(
        "[ 5.0][    C1] Kernel panic - not syncing: RCU Stall\n"
        "[ 5.1][    C0] NMI backtrace for cpu 0\n"
        "[ 5.1][    C0] CPU: 0 PID: 9 Comm: kworker/0:1 Not tainted 6.1.0 #1\n"
    )
    (panic,) = a.records
    assert panic.pid is None


def test_oom_report_and_panic_on_oom():
    a = analyse(
        "[ 40.0] stress invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), "
        "order=0, oom_score_adj=0\n"
        "[ 40.1] CPU: 0 PID: 300 Comm: stress Not tainted 6.1.0 #1\n"
        "[ 40.2] Call Trace:\n"
        "[ 40.3]  <TASK>\n"
        "[ 40.4]  dump_stack_lvl+0x44/0x5c\n"
        "[ 40.5]  dump_header+0x4a/0x211\n"
        "[ 40.6]  </TASK>\n"
        "[ 40.7] Mem-Info:\n"
        "[ 40.8] Out of memory: Killed process 300 (stress) total-vm:1000kB, anon-rss:900kB\n"
        "[ 41.0] Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled\n"
    )
    oom, panic = a.records
    assert (oom.kind, oom.comm, oom.pid) == ("oom", "stress", 300)
    assert oom.last_line_index == 8  # the "Killed process" line belongs to the same report
    assert panic.escalates == 0


@pytest.mark.parametrize("bug_on_data_corruption", [True, False])
def test_list_corruption(bug_on_data_corruption):
    report = "list_del corruption, ffff888104a2c000->next is LIST_POISON1 (dead000000000100)\n"
    if bug_on_data_corruption:
        report += (
            "------------[ cut here ]------------\n"
            "kernel BUG at lib/list_debug.c:56!\n"
            "invalid opcode: 0000 [#1] PREEMPT SMP NOPTI\n"
        )
    else:
        report = (
            "------------[ cut here ]------------\n"
            + report
            + "WARNING: CPU: 0 PID: 7 at lib/list_debug.c:56 __list_del_entry_valid+0x8c/0xa0\n"
        )
    report += "CPU: 0 PID: 7 Comm: sh Not tainted 6.1.0 #1\n"
    (rec,) = analyse(report).records
    assert rec.kind == "list-corruption" and rec.headline.startswith("list_del corruption")
    assert (rec.bug_file, rec.bug_line, rec.pid) == ("lib/list_debug.c", 56, 7)
    assert rec.is_oops is bug_on_data_corruption


def test_bug_in_list_debug_without_message_is_list_corruption():
    (rec,) = analyse("kernel BUG at lib/list_debug.c:62!\ninvalid opcode: 0000 [#1] SMP").records
    assert rec.kind == "list-corruption"


def test_machine_check():
    a = analyse(
        "mce: [Hardware Error]: CPU 0: Machine Check Exception: 5 Bank 4: b200000000070005\n"
        "mce: [Hardware Error]: RIP !INEXACT! 10:<ffffffff8103ab48> {native_safe_halt+0x8/0x10}\n"
        "mce: [Hardware Error]: TSC 0 ADDR 1234 MISC 8c\n"
        "Kernel panic - not syncing: Fatal local machine check\n"
    )
    mce, panic = a.records
    assert mce.kind == "mce" and mce.last_line_index == 2 and panic.escalates == 0


def test_old_double_fault_then_machine_halted():
    a = analyse(
        "PANIC: double fault, error_code: 0x0\n"
        "CPU: 0 PID: 917 Comm: netifd Not tainted 4.14.0-rc1 #2\n"
        "RIP: 0010:compat_sock_ioctl+0xfea/0x103e\n"
        "RSP: 0000:0000000000277d78 EFLAGS: 00010283\n"
        "Call Trace:\n"
        "Code: 02 0f ff 89 c4 <e8> b3 52 05 00\n"
        "Kernel panic - not syncing: Machine halted.\n"
    )
    df, panic = a.records
    assert (df.kind, df.error_code, df.code_trap_offset) == ("double-fault", 0, 5)
    assert df.registers["RSP"] == 0x277D78 and panic.escalates == 0


def test_traps_prefix_and_stack_guard_6_12():
    a = analyse(
        "traps: PANIC: double fault, error_code: 0x0\n"
        "BUG: TASK stack guard page was hit at 00000000a9c1ba3b "
        "(stack is 0000000059e7b2f5..00000000bd9bf3e5)\n"
        "Oops: stack guard page: 0000 [#1] PREEMPT SMP NOPTI\n"
        "CR2: ffffc90000a2fff8 CR3: 0000000104a8e000 CR4: 0000000000750ef0\n"
        "Kernel panic - not syncing: Fatal exception in interrupt\n"
    )
    assert kinds(a) == ["double-fault", "stack-guard", "panic"]
    guard = a.records[1]
    assert guard.oops_number == 1 and guard.fault_address == 0xFFFFC90000A2FFF8
    assert a.records[2].escalates == 1


def test_new_warning_format():
    (rec,) = analyse(
        "WARNING: net/mac80211/tx.c:5152 at __ieee80211_beacon_get+0x125/0x1a0, CPU#1: syz.0.1/123"
    ).records
    assert (rec.kind, rec.cpu, rec.pid, rec.comm) == ("warning", 1, 123, "syz.0.1")
    assert (rec.bug_file, rec.bug_line, rec.location.function) == (
        "net/mac80211/tx.c",
        5152,
        "__ieee80211_beacon_get",
    )


def test_other_reports_and_non_reports():
    a = analyse(
        "BUG: KASAN: slab-use-after-free in foo+0x1/0x2\n"
        "UBSAN: array-index-out-of-bounds in drivers/x.c:12:5\n"
        "WARNING: possible circular locking dependency detected\n"
        "WARNING: the mand mount option is being deprecated and\n"
        "traps: a.out[123] general protection fault ip:401136 sp:7ffd error:0 in a.out\n"
        "sh[67]: segfault at 0 ip 0000000000401136 sp 00007ffd error 6 in a.out[401000+1000]\n"
    )
    assert kinds(a) == ["other", "other", "other"]


def test_panic_escalates_matching_report_by_message():
    a = analyse(
        "BUG: scheduling while atomic: sh/67/0x00000002\n"
        "Kernel panic - not syncing: scheduling while atomic\n"
    )
    assert a.records[1].escalates == 0


def test_interleaved_lines_from_other_cpus_do_not_break_a_record():
    a = analyse(
        "[ 5.000] BUG: kernel NULL pointer dereference, address: 0000000000000008\n"
        "[ 5.001] e1000: eth0 NIC Link is Up 1000 Mbps Full Duplex\n"
        "[ 5.002] #PF: supervisor read access in kernel mode\n"
        "[ 5.003] Oops: 0000 [#1] PREEMPT SMP NOPTI\n"
        "[ 5.004] systemd[1]: Started Journal Service.\n"
        "[ 5.005] CPU: 2 PID: 10 Comm: kworker/2:0 Not tainted 6.1.0 #1\n"
        "[ 5.006] RIP: 0010:foo+0x1/0x2\n"
        "[ 5.007] Call Trace:\n"
        "[ 5.008]  <TASK>\n"
        "[ 5.009]  bar+0x1/0x2\n"
        "[ 5.010] usb 1-1: new high-speed USB device number 2 using ehci-pci\n"
        "[ 5.011]  baz+0x1/0x2\n"
        "[ 5.012]  </TASK>\n"
        "[ 5.013] Modules linked in: a b\n"
    )
    (rec,) = a.records
    assert (rec.oops_number, rec.cpu, rec.access) == (1, 2, "supervisor read access in kernel mode")
    assert functions(rec.call_trace) == ["bar", "baz"]
    assert rec.modules_linked_in == ("a", "b") and rec.last_line_index == 13


def test_caller_ids_keep_interleaved_reports_apart():
    a = analyse(
        "[ 7.000][ T100] BUG: KASAN: out-of-bounds in f+0x1/0x2\n"
        "[ 7.001][ T200] Kernel panic - not syncing: corrupted stack end detected inside sched\n"
        "[ 7.002][ T200] CPU: 1 PID: 200 Comm: kworker/u16:3 Not tainted 6.3.0 #0\n"
        "[ 7.003][ T100] CPU: 0 PID: 100 Comm: kworker/0:1 Not tainted 6.3.0 #0\n"
        "[ 7.004][ T200] Call Trace:\n"
        "[ 7.005][ T100] Call Trace:\n"
        "[ 7.006][ T200]  <TASK>\n"
        "[ 7.007][ T100]  <TASK>\n"
        "[ 7.008][ T200]  panic+0x1/0x2\n"
        "[ 7.009][ T100]  kasan_report+0x1/0x2\n"
        "[ 7.010][ T200]  </TASK>\n"
        "[ 7.011][ T100]  </TASK>\n"
    )
    kasan, panic = a.records
    assert (kasan.pid, functions(kasan.call_trace), kasan.last_line_index) == (
        100,
        ["kasan_report"],
        11,
    )
    assert (panic.pid, functions(panic.call_trace), panic.kind) == (
        200,
        ["panic"],
        "stack-corruption",
    )


def test_second_stack_dump_does_not_overwrite_the_first():
    a = analyse(
        "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [sh:67]\n"
        "CPU: 0 PID: 67 Comm: sh Not tainted 6.1.0 #1\n"
        "Call Trace:\n"
        " <TASK>\n"
        " mine+0x1/0x2\n"
        " </TASK>\n"
        "Sending NMI from CPU 0 to CPUs 1:\n"
        "NMI backtrace for cpu 1\n"
        "CPU: 1 PID: 0 Comm: swapper/1 Not tainted 6.1.0 #1\n"
        "RIP: 0010:default_idle+0x1/0x2\n"
        "Call Trace:\n"
        " other+0x1/0x2\n"
    )
    (rec,) = a.records
    assert (rec.cpu, rec.pid, rec.rip, functions(rec.call_trace)) == (0, 67, None, ["mine"])


def test_module_loading_errors():
    a = analyse(
        "crashpoc_badsym: Unknown symbol no_such_symbol (err -2)\n"
        "foo: disagrees about version of symbol module_layout\n"
        "nvidia: module license 'NVIDIA' taints kernel.\n"
    )
    assert a.unknown_symbols == (("crashpoc_badsym", "no_such_symbol"),)
    assert a.symbol_version_errors == (("foo", "module_layout"),)
    assert a.module_license_taints == (("nvidia", "NVIDIA"),)
    assert a.records == ()


def test_empty_log():
    a = parse_log([])
    assert a.records == () and a.first_oops() is None and a.panic() is None and a.cause() is None


# --- robustness -------------------------------------------------------------------------------

VOCABULARY = [
    line
    for path in sorted(DATA.glob("**/*.log"))
    for line in path.read_text().splitlines()
    if "] " in line
]


def check_invariants(lines, analysis):
    for i, rec in enumerate(analysis.records):
        assert rec.kind in KINDS
        assert 0 <= rec.first_line_index <= rec.last_line_index < len(lines)
        if rec.escalates is not None:
            assert 0 <= rec.escalates < i
            assert analysis.records[rec.escalates].panic_message is None
        if rec.code is not None and rec.code_trap_offset is not None:
            assert 0 <= rec.code_trap_offset < len(rec.code)


@settings(max_examples=300)
@given(st.text())
def test_parse_dmesg_text_never_raises(text):
    for line in parse_dmesg_text(text):
        assert "\n" not in line.text and "\r" not in line.text


@settings(max_examples=300)
@given(st.lists(st.sampled_from(VOCABULARY), max_size=80))
def test_parse_log_never_raises_on_shuffled_report_lines(picked):
    lines = parse_dmesg_text("\n".join(picked))
    check_invariants(lines, parse_log(lines))


@settings(max_examples=300)
@given(
    st.lists(
        st.builds(
            LogLine,
            st.one_of(st.text(), st.sampled_from(VOCABULARY).map(lambda s: s.split("] ", 1)[1])),
            st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
            st.one_of(st.none(), st.sampled_from(["T1", "T2", "C0"])),
        ),
        max_size=60,
    )
)
def test_parse_log_never_raises_on_arbitrary_lines(lines):
    check_invariants(lines, parse_log(lines))


@settings(max_examples=200)
@given(st.sampled_from(VOCABULARY), st.integers(min_value=0, max_value=200), st.text(max_size=5))
def test_parse_log_never_raises_on_cut_and_garbled_lines(line, cut, junk):
    text = line[:cut] + junk + line[cut:]
    lines = parse_dmesg_text("\n".join([text, line, text]))
    check_invariants(lines, parse_log(lines))


def test_a_record_does_not_absorb_output_printed_much_later():
    a = analyse(
        "[ 10.000000] sysrq: Trigger a crash\n"
        "[ 95.000000] CPU: 3 PID: 1 Comm: init Not tainted 6.1.0 #1\n"
        "[ 95.000001] Call Trace:\n"
        "[ 95.000002]  foo+0x1/0x2\n"
    )
    (rec,) = a.records
    assert rec.cpu is None and rec.call_trace == () and rec.last_line_index == 0


def test_kdump_loaded_flag():
    assert fixture("oops_null_6.1.log").records[0].kdump_loaded is True
    assert fixture("bug_6.1.log").records[0].kdump_loaded is False
    assert fixture("bug_6.1.log").records[1].kdump_loaded is None


@pytest.mark.parametrize(
    "line",
    [
        # int() refuses decimal strings over 4300 digits: found by fuzzing, once raised ValueError
        "CPU: " + "1" * 5000 + " PID: 1 Comm: x Not tainted 6.1.0 #1",
        "watchdog: BUG: soft lockup - CPU#" + "9" * 5000 + " stuck for 1s! [a:1]",
        "Oops: 0002 [#" + "7" * 5000 + "] SMP",
        "4,1," + "5" * 5000 + ",-;BUG: x",
        "RAX: " + "f" * 5000 + " RBX: 0000000000000001",
        "BUG: kernel NULL pointer dereference, address: " + "0" * 5000,
    ],
)
def test_huge_numbers_do_not_raise(line):
    lines = parse_dmesg_text(
        "BUG: kernel NULL pointer dereference, address: 0000000000000018\n" + line
    )
    analysis = parse_log(lines)
    check_invariants(lines, analysis)
    for rec in analysis.records:
        assert all(value < 1 << 64 for value in rec.registers.values())
