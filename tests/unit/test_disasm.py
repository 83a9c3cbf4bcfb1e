"""Tests for kpostmortem.decode.disasm: decoding, memory operands, windows around a PC."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kpostmortem.decode.disasm import (
    BAD_MNEMONIC,
    MemOperand,
    decode,
    decode_window,
    effective_address,
    is_ud2,
    is_undefined_opcode,
    register_family,
    register_width,
)

BASE = 0xFFFFFFFFC0A2B000


def one(hex_bytes: str, address: int = BASE):
    insns = decode(bytes.fromhex(hex_bytes), address)
    assert len(insns) == 1, insns
    return insns[0]


def test_store_through_rbx_plus_0x18():
    insn = one("c7 43 18 2a 00 00 00")
    assert insn.text == "mov dword ptr [rbx + 0x18], 0x2a"
    assert insn.mem == MemOperand("rbx", None, 1, 0x18, None, 4, "write")
    assert insn.size == 7 and insn.bytes == bytes.fromhex("c743182a000000")


def test_load_is_read():
    insn = one("8b 58 14")
    assert insn.mem.access == "read" and insn.mem.base == "rax" and insn.mem.disp == 0x14


def test_rip_relative_load_needs_next_pc():
    insn = one("48 8b 05 11 22 00 00")
    assert insn.mem.base == "rip" and insn.mem.disp == 0x2211
    assert effective_address(insn.mem, {}) is None
    assert effective_address(insn.mem, {}, insn.next_address) == BASE + 7 + 0x2211


def test_push_pop_call_ret_touch_the_stack():
    push, pop, call, ret = decode(bytes.fromhex("57 5f e8 00 00 00 00 c3"), BASE)
    assert push.mem == MemOperand("rsp", None, 1, -8, None, 8, "write", implicit=True)
    assert pop.mem.access == "read" and pop.mem.implicit
    assert call.is_call and call.branch_target == BASE + 7 and call.mem.disp == -8
    assert ret.is_ret and ret.mem.base == "rsp" and not ret.is_call
    regs = {"rsp": 0xFFFFB1C2C0224000}
    assert effective_address(push.mem, regs) == 0xFFFFB1C2C0223FF8


def test_push_memory_has_explicit_then_implicit_operand():
    insn = one("ff 30")  # push qword ptr [rax]
    assert insn.mem.base == "rax" and insn.mem.access == "read" and not insn.mem.implicit
    assert insn.mems[1].implicit and insn.mems[1].access == "write"


def test_indirect_call_through_memory():
    insn = one("ff 50 08")
    assert insn.is_call and insn.branch_target is None
    assert insn.mem.base == "rax" and insn.mem.disp == 8 and insn.mem.access == "read"


def test_jumps_have_targets():
    jne = one("0f 85 f6 01 00 00")
    assert jne.branch_target == BASE + 6 + 0x1F6 and not jne.is_call
    back = one("eb fe")
    assert back.branch_target == BASE


def test_string_ops():
    stos = one("f3 ab")
    assert stos.mem.base == "rdi" and stos.mem.access == "write" and stos.mem.size == 4
    movs = one("48 a5")
    assert [m.base for m in movs.mems] == ["rdi", "rsi"]
    assert [m.access for m in movs.mems] == ["write", "read"]


@pytest.mark.parametrize(
    "code",
    ["0f b1 0b", "f0 48 0f b1 0b", "0f c7 0b", "48 0f c1 03", "48 87 03", "01 03", "ff 00"],
)
def test_read_modify_write(code):
    # cmpxchg, lock cmpxchg, cmpxchg8b, xadd, xchg, add, inc
    assert one(code).mem.access == "read-write"


def test_lea_and_nop_access_no_memory():
    assert one("48 8d 43 08").mem is None
    assert one("0f 1f 44 00 00").mem is None


def test_gs_relative_per_cpu_access():
    insn = one("65 48 8b 04 25 00 d1 01 00")
    assert insn.mem.segment == "gs" and insn.mem.disp == 0x1D100
    assert effective_address(insn.mem, {}) is None
    assert effective_address(insn.mem, {"gs_base": 0xFFFF8F3B7BD00000}) == 0xFFFF8F3B7BD1D100
    # drgn's StackFrame.registers() name it "gs.base"
    assert effective_address(insn.mem, {"gs.base": 0xFFFF8F3B7BD00000}) == 0xFFFF8F3B7BD1D100


def test_effective_address_index_scale_and_wrap():
    mem = MemOperand("rbx", "rcx", 8, -0x10, None, 8, "read")
    assert effective_address(mem, {"rbx": 0x1000, "rcx": 2}) == 0x1000
    assert effective_address(mem, {"rbx": 0}) is None  # rcx unknown
    assert effective_address(mem, {"rbx": 0, "rcx": 0}) == (1 << 64) - 0x10


def test_effective_address_sub_registers():
    insn = one("67 8b 03")  # mov eax, dword ptr [ebx]
    assert insn.mem.base == "ebx"
    assert effective_address(insn.mem, {"rbx": 0xFFFFFFFF00001234}) == 0x1234
    high = MemOperand("ah", None, 1, 0, None, 1, "read")
    assert effective_address(high, {"rax": 0xBEEF}) == 0xBE


def test_register_family_and_width():
    assert register_family("ebx") == "rbx"
    assert register_family("r8d") == "r8"
    assert register_family("al") == "rax"
    assert register_family("SIL") == "rsi"
    assert register_family("rip") == "rip"
    assert register_family("xmm0") == "xmm0"
    assert (register_width("r11w"), register_width("dh"), register_width("rsp")) == (16, 8, 64)


def test_ud2_and_bad_bytes():
    insns = decode(bytes.fromhex("0f 0b 06 0f b9 c0"), BASE)
    assert is_ud2(insns[0]) and is_undefined_opcode(insns[0])
    assert insns[1].mnemonic == BAD_MNEMONIC and insns[1].size == 1  # 0x06 is invalid in 64-bit
    assert is_undefined_opcode(insns[2]) and not is_ud2(insns[2])
    assert sum(i.size for i in insns) == 6


def test_unknown_arch_is_an_error():
    with pytest.raises(ValueError):
        decode(b"\x90", 0, arch="sparc")


# Code: line of a real 6.1 oops (our null-write dump): 42 bytes, <trap>, 21 bytes.
NULL_WRITE_CODE = (
    "cc cc cc cc 0f 1f 84 00 00 00 00 00 0f 1f 44 00 00 53 48 89 fb e8 82 ff ff ff 48 8b 43 08 "
    "be 2a 00 00 00 48 c7 c7 28 22 40 c0 <48> c7 40 18 2a 00 00 00 5b e9 bd 1b dd f3 0f 1f 40 00 "
    "0f 1f 44 00"
)


def code_bytes(line: str) -> tuple[bytes, int]:
    tokens = line.split()
    trap = next(i for i, t in enumerate(tokens) if t.startswith("<"))
    return bytes(int(t.strip("<>"), 16) for t in tokens), trap


def test_decode_window_aligns_on_the_trapping_instruction():
    code, trap = code_bytes(NULL_WRITE_CODE)
    pc = 0xFFFFFFFFC0400DAE
    insns, idx = decode_window(code, pc - trap, pc)
    assert idx == 5
    assert insns[idx].address == pc
    assert insns[idx].text == "mov qword ptr [rax + 0x18], 0x2a"
    assert [i.text for i in insns[:idx]] == [
        "mov rbx, rdi",
        "call 0xffffffffc0400d20",  # e8 82 ff ff ff: 0x7e back from the next insn
        "mov rax, qword ptr [rbx + 8]",
        "mov esi, 0x2a",
        "mov rdi, 0xffffffffc0402228",
    ]
    assert len(insns) == idx + 1 + 3
    assert insns[idx - 1].address + insns[idx - 1].size == pc
    rax_is_null = {"rax": 0, "rbx": 0xFFFF8F3B42C1E000}
    assert effective_address(insns[idx].mem, rax_is_null, insns[idx].next_address) == 0x18


def test_decode_window_ignores_a_misleading_prefix():
    # a stray 0x48 (REX.W) and a 0x0f would swallow the next bytes if decoding began there
    code = bytes.fromhex("0f 48 89 df 5b 5d 31 c0 c7 43 18 2a 00 00 00 5b c3")
    pc = 0x1000 + 8
    insns, idx = decode_window(code, 0x1000, pc, before=3, after=1)
    assert insns[idx].text == "mov dword ptr [rbx + 0x18], 0x2a"
    assert [i.text for i in insns[:idx]] == ["pop rbx", "pop rbp", "xor eax, eax"]


def test_decode_window_pc_outside_code_or_undecodable():
    assert decode_window(b"\x90\x90", 0x1000, 0x2000) == ([], None)
    assert decode_window(b"\x90\x90", 0x1000, 0x0FFF) == ([], None)
    insns, idx = decode_window(b"\x90\x06\x90", 0x1000, 0x1001)
    assert idx is None and insns[-2].mnemonic == BAD_MNEMONIC


def test_decode_window_pc_at_start():
    insns, idx = decode_window(bytes.fromhex("0f 0b 90"), 0x1000, 0x1000)
    assert idx == 0 and is_ud2(insns[0])


@given(st.binary(max_size=80), st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_decode_never_raises_and_covers_every_byte(code, address):
    insns = decode(code, address)
    assert sum(i.size for i in insns) == len(code)


@given(st.binary(max_size=64), st.integers(min_value=-8, max_value=72))
def test_decode_window_never_raises(code, offset):
    insns, idx = decode_window(code, 0xFFFFFFFFFFFFFFF0, 0xFFFFFFFFFFFFFFF0 + offset)
    if idx is not None:
        assert insns[idx].address == (0xFFFFFFFFFFFFFFF0 + offset) % (1 << 64)
