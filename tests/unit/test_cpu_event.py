"""Pure logic of issue 17: CPU events from entry stubs and log records, the calling-convention
table, register writes, and the loop around a PC in decoded code (literal bytes)."""

from __future__ import annotations

import pytest

from kpostmortem.decode.cpuevent import event_of_entry, event_of_record
from kpostmortem.decode.disasm import decode
from kpostmortem.decode.loops import condition_text, find_loop
from kpostmortem.decode.regabi import abi

BASE = 0xFFFFFFFFC0000000


@pytest.mark.parametrize(("stub", "kind", "vector", "words"), [
    ("asm_exc_page_fault", "exception", "#PF", "faulting instruction"),
    ("asm_exc_general_protection", "exception", "#GP", "faulting instruction"),
    ("asm_exc_invalid_op", "exception", "#UD", "trapping instruction"),
    ("asm_exc_double_fault", "exception", "#DF", "faulting instruction"),
    ("page_fault", "exception", "#PF", "faulting instruction"),  # before 5.8
    ("asm_sysvec_apic_timer_interrupt", "interrupt", None, "interrupted instruction"),
    ("apic_timer_interrupt", "interrupt", None, "interrupted instruction"),
    ("asm_sysvec_call_function_single", "interrupt", None, "interrupted instruction"),
    ("asm_common_interrupt", "interrupt", None, "interrupted instruction"),
    ("asm_exc_nmi", "nmi", "NMI", "interrupted instruction"),
    ("asm_sysvec_some_future_vector", "interrupt", None, "interrupted instruction"),
])
def test_entry_stub_names_the_event_and_its_words(stub, kind, vector, words):
    e = event_of_entry(stub)
    assert (e.kind, e.vector, e.instruction_words) == (kind, vector, words)
    assert e.is_fault == (kind == "exception")
    assert stub in e.source


def test_unknown_stub_and_non_stub_give_no_event():
    assert event_of_entry("crashpoc_soft_lockup") is None
    assert event_of_entry(None) is None


@pytest.mark.parametrize(("kind", "event_kind", "vector"), [
    ("null-deref", "exception", "#PF"), ("gpf", "exception", "#GP"), ("bug", "exception", "#UD"),
    ("soft-lockup", "interrupt", None), ("rcu-stall", "interrupt", None), ("hard-lockup", "nmi", "NMI"),
    ("panic", None, None), ("hung-task", None, None),
])
def test_log_record_kind_implies_the_event(kind, event_kind, vector):
    e = event_of_record(kind)
    assert (e.kind if e else None, e.vector if e else None) == (event_kind, vector)


def test_x86_64_sysv_callee_saved_registers_survive_calls():
    conv = abi("x86_64")
    for reg in ("rbx", "rbp", "r12", "r13", "r14", "r15"):
        assert conv.survives_call(reg)
    for reg in ("rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11"):
        assert not conv.survives_call(reg)
    assert conv.set_by_call("rax") and not conv.set_by_call("rbx")
    with pytest.raises(KeyError):
        abi("s390x")


def test_register_writes_include_implicit_ones():
    insns = decode(bytes.fromhex("5b" "99" "488b4708"), BASE)  # pop rbx; cdq; mov rax, [rdi + 8]
    assert "rbx" in insns[0].writes and "rsp" in insns[0].writes
    assert "rdx" in insns[1].writes
    assert insns[2].writes == ("rax",) and "rdi" in insns[2].reads


# crashpoc_soft_lockup on 5.10: while (!READ_ONCE(dev->stop)) cpu_relax();
SPIN = bytes.fromhex("66666666908b87e800000085c0750cf3908b87e800000085c074f4c3cccccccc")


def test_spin_loop_found_with_its_exit_and_polled_operand():
    insns = decode(SPIN, BASE)
    pc = BASE + 0x11  # the interrupted mov eax, [rdi + 0xe8]
    loop = find_loop(insns, pc)
    assert (loop.head, loop.closing) == (BASE + 0xF, BASE + 0x19)
    assert loop.relaxes and not loop.calls
    assert "rax" in loop.written and "rdi" not in loop.written
    (ex,) = loop.exits
    assert (ex.relation, ex.left, ex.right) == ("!=", "eax", "0")
    assert (ex.memory.base, ex.memory.disp, ex.memory.size) == ("rdi", 0xE8, 4)
    assert ex.load == BASE + 0x11
    assert condition_text(ex, "dev->stop") == "`dev->stop` != 0"


def test_pc_outside_any_loop_has_none():
    insns = decode(SPIN, BASE)
    assert find_loop(insns, BASE + 0x5) is None  # the first check, before the loop


# A loop that calls a function (call rel32) and tests a bit: test byte ptr [rbx + 0x10], 4; je back.
CALL_LOOP = bytes.fromhex("e800000000" "f6431004" "74f5" "c3")


def test_loop_with_a_call_records_it_and_a_bit_test_condition():
    insns = decode(CALL_LOOP, BASE)
    loop = find_loop(insns, BASE)
    assert loop.calls and loop.calls[0][0] == BASE
    (ex,) = loop.exits
    assert ex.mask == 4 and ex.memory.base == "rbx" and ex.memory.disp == 0x10
    assert "is non-zero" in condition_text(ex, "dev->status")
    assert "rdi" in loop.written  # clobbered by the call (caller-saved)
    assert "rbx" not in loop.written


# arm64: while (!READ_ONCE(dev->stop)) cpu_relax(); as gcc 12 builds it (Debian's arm64 6.1
# crashpoc): ldr w1, [x0, #0xe8]; cbnz w1, out; nop; yield; ldr w1, [x0, #0xe8]; cbz w1, yield
A64_SPIN = bytes.fromhex("e9031eaa1f2003d53f2303d501e840b9a10000351f2003d53f2003d501e840b9c1ffff34bf2303d5c0035fd6")


def test_arm64_spin_loop_closed_by_cbz_polls_the_loaded_word():
    from kpostmortem.arch import aarch64

    insns = aarch64.decode(A64_SPIN, BASE)
    loop = find_loop(insns, BASE + 0x18, "aarch64")  # the interrupted yield
    assert (loop.head, loop.closing) == (BASE + 0x18, BASE + 0x20)
    assert loop.relaxes and loop.relax_instruction == "yield" and not loop.calls
    (ex,) = loop.exits
    # cbz back to the head: the loop leaves when the register is not zero
    assert (ex.relation, ex.left, ex.right) == ("!=", "w1", "0")
    assert (ex.memory.base, ex.memory.disp, ex.memory.size) == ("x0", 0xE8, 4)
    assert ex.load == BASE + 0x1C
    assert condition_text(ex, "dev->stop") == "`dev->stop` != 0"
    assert find_loop(insns, BASE + 0x10, "aarch64") is None  # the first check, before the loop


def test_arm64_conditions_and_bit_tests():
    from kpostmortem.arch import aarch64

    # ldr w1, [x0, #8]; tst w1, #0x4; b.eq head  (the loop leaves when bit 2 is set)
    ldr = bytes.fromhex("010840b9")
    tst = bytes.fromhex("3f001e72")
    beq = bytes.fromhex("c0ffff54")  # b.eq -8
    insns = aarch64.decode(ldr + tst + beq, BASE)
    loop = find_loop(insns, BASE, "aarch64")
    assert (loop.head, loop.closing) == (BASE, BASE + 8)
    (ex,) = loop.exits
    assert ex.mask == 4 and ex.memory.base == "x0" and ex.memory.disp == 8
    assert "is non-zero" in condition_text(ex, "dev->status")
    # tbnz w1, #3, head: the loop leaves when bit 3 is clear
    tbnz = bytes.fromhex("e1ff1f37")  # tbnz w1, #3, -4
    loop = find_loop(aarch64.decode(ldr + tbnz, BASE), BASE, "aarch64")
    assert (loop.head, loop.closing) == (BASE, BASE + 4)  # the label, not the bit number
    (ex,) = loop.exits
    assert ex.mask == 8 and ex.relation == "==" and ex.memory.disp == 8


def _origin(code: bytes, reg: str) -> dict:
    import drgn

    from kpostmortem.helpers.fault import pointer_origin

    insns = decode(code, BASE)
    return pointer_origin(drgn.Program(), [], insns, len(insns) - 1, reg, {}, 0, 0)


def test_callee_saved_register_is_never_sourced_from_a_call():
    # mov rbx, [rdi + 8]; call +0; mov dword ptr [rbx + 0x18], eax
    o = _origin(bytes.fromhex("488b5f08" "e800000000" "894318"), "rbx")
    assert o["instruction"] == "mov rbx, qword ptr [rdi + 8]" and "call" not in o["text"]


def test_caller_saved_return_register_comes_from_the_call():
    # mov rax, [rdi + 8]; call +0; mov dword ptr [rax + 0x18], 1
    o = _origin(bytes.fromhex("488b4708" "e800000000" "c7401801000000"), "rax")
    assert o["text"].startswith("rax was returned by the call")


def test_clobbered_caller_saved_register_is_unknown_not_a_guess():
    # mov rsi, [rdi + 8]; call +0; mov dword ptr [rsi], 1
    o = _origin(bytes.fromhex("488b7708" "e800000000" "c70601000000"), "rsi")
    assert o["unknown"] and "unknown" in o["text"]


def test_register_not_written_in_the_window_is_unknown():
    o = _origin(bytes.fromhex("e800000000" "894318"), "rbx")  # call; mov [rbx + 0x18], eax
    assert o["unknown"] and "callee-saved" in o["text"]
