"""arch/: the per-architecture decoders on literal bytes and text (no dump)."""

from __future__ import annotations

import struct

import pytest

from kpostmortem import arch
from kpostmortem.arch import aarch64
from kpostmortem.inputs.elfinfo import read_dump_header

BASE = 0xFFFF800001000000


def a64(*words: int) -> bytes:
    return struct.pack(f"<{len(words)}I", *words)


# ------------------------------------------------------------------ ESR_EL1

@pytest.mark.parametrize("esr, text", [
    (0x96000046, "DABT (current EL): write, kernel mode, translation fault at level 2"),
    (0x96000005, "DABT (current EL): read, kernel mode, translation fault at level 1"),
    (0x9600004F, "DABT (current EL): write, kernel mode, permission fault at level 3"),
    (0x96000021, "DABT (current EL): read, kernel mode, alignment fault"),
    (0x86000004, "IABT (current EL): instruction fetch, kernel mode, translation fault at level 0"),
    (0x92000006, "DABT (lower EL): read, user mode, translation fault at level 2"),
    (0xF2000800, "BRK64: brk #0x800 (BUG()/WARN())"),
    (0xF2000904, "BRK64: brk #0x904 (KASAN report)"),
    (0x56000000, "SVC64"),
])
def test_decode_esr(esr, text):
    assert aarch64.decode_esr(esr).describe() == text


def test_esr_fields():
    e = aarch64.decode_esr(0x96000046)
    assert (e.ec, e.abort, e.write, e.level, e.fault_kind) == (0x25, True, True, 2, "translation fault")
    assert e.to_dict()["name"] == "ESR_EL1" and e.to_dict()["raw"] == 0x96000046
    assert aarch64.decode_esr(0x86000004).instruction_fetch


def test_mem_abort_block():
    lines = ["Mem abort info:", "  ESR = 0x0000000096000046", "  EC = 0x25: DABT (current EL), IL = 32 bits",
             "Data abort info:", "  ISV = 0, ISS = 0x00000046", "  CM = 0, WnR = 1"]
    assert aarch64.parse_mem_abort(lines) == {"esr": 0x96000046, "write": True}


# ------------------------------------------------------------------ pointer authentication

def test_strip_pac():
    mask = 0xFF7F000000000000          # 48-bit VA, PAC in bits 63..56 and 54..48
    signed = 0x3A2FA02F72F0A2B0        # a kernel return address with a PAC in its top bits
    assert aarch64.strip_pac(signed | 1 << 55, mask) == 0xFFFFA02F72F0A2B0
    assert aarch64.strip_pac(0x0012_0000_0040_1000, mask) == 0x0000_0000_0040_1000   # user half
    assert aarch64.strip_pac(0xFFFFA02F72F0A2B0, None) == 0xFFFFA02F72F0A2B0
    assert arch.get("x86_64").strip_pac(0x1234, mask) == 0x1234


# ------------------------------------------------------------------ instructions

def test_decode_loads_stores_calls():
    code = a64(0xF9400E60,   # ldr x0, [x19, #0x18]
               0xB9001801,   # str w1, [x0, #0x18]
               0xD63F0020,   # blr x1
               0xD4210000,   # brk #0x800
               0xA9BF7BFD,   # stp x29, x30, [sp, #-0x10]!
               0x39400000)   # ldrb w0, [x0]
    ldr, st, blr, brk, stp, ldrb = aarch64.decode(code, BASE)
    assert (ldr.mem.base, ldr.mem.disp, ldr.mem.size, ldr.mem.access, ldr.writes) == ("x19", 0x18, 8, "read", ("x0",))
    assert (st.mem.base, st.mem.size, st.mem.access) == ("x0", 4, "write")
    assert blr.is_call and blr.mem is None and "x30" in blr.writes
    assert aarch64.is_bug_trap(brk) and not aarch64.is_bug_trap(ldr)
    assert (stp.mem.base, stp.mem.disp, stp.mem.size) == ("sp", -0x10, 16)
    assert ldrb.mem.size == 1
    assert [i.address for i in (ldr, st, blr)] == [BASE, BASE + 4, BASE + 8]


def test_decode_bl_target_and_bad_word():
    bl, bad = aarch64.decode(a64(0x94000004, 0x00000000), BASE)
    assert bl.is_call and bl.branch_target == BASE + 0x10
    assert bad.mnemonic in ("(bad)", "udf")


def test_decode_window_is_aligned():
    code = a64(*[0xD503201F] * 8)     # nop x 8
    insns, at = aarch64.decode_window(code, BASE, BASE + 16, before=2, after=1)
    assert at == 2 and [i.address for i in insns] == [BASE + 8, BASE + 12, BASE + 16, BASE + 20]
    assert aarch64.decode_window(code, BASE, BASE + 2) == ([], None)
    assert aarch64.decode_window(code, BASE, BASE + 64) == ([], None)


def test_effective_address_and_families():
    [st] = aarch64.decode(a64(0xB9001801), BASE)       # str w1, [x0, #0x18]
    assert aarch64.effective_address(st.mem, {"x0": 0}) == 0x18
    assert aarch64.effective_address(st.mem, {}) is None
    [ldr] = aarch64.decode(a64(0xF8617800), BASE)      # ldr x0, [x0, x1, lsl #3]
    assert aarch64.effective_address(ldr.mem, {"x0": 0x1000, "x1": 2}) == 0x1010
    assert [aarch64.register_family(r) for r in ("w3", "x3", "fp", "lr", "wzr", "sp")] == \
        ["x3", "x3", "x29", "x30", "xzr", "sp"]


# ------------------------------------------------------------------ stack overflow report

OVERFLOW = """\
Insufficient stack space to handle exception!
ESR: 0x0000000096000047 -- DABT (current EL)
FAR: 0xffff8000086bfe90
Task stack:     [0xffff8000086c0000..0xffff8000086c4000]
IRQ stack:      [0xffff800008008000..0xffff80000800c000]
Overflow stack: [0xffff00003fdb92d0..0xffff00003fdba2d0]
CPU: 1 PID: 110 Comm: sh Kdump: loaded Tainted: G           OE      6.1.0-57-cloud-arm64 #1
""".splitlines()


def test_parse_stack_overflow():
    r = aarch64.parse_stack_overflow(OVERFLOW)
    assert r.stacks["task"] == (0xFFFF8000086C0000, 0xFFFF8000086C4000)
    assert r.stacks["overflow"] == (0xFFFF00003FDB92D0, 0xFFFF00003FDBA2D0)
    assert set(r.stacks) == {"task", "irq", "overflow"}
    assert (r.esr, r.far) == (0x96000047, 0xFFFF8000086BFE90)
    # the fault address is just below the task stack: the guard area the recursion ran into
    assert r.far < r.stacks["task"][0]
    assert aarch64.parse_stack_overflow(OVERFLOW[1:]) is None


def test_plumbing_names_the_brk_and_abort_handlers():
    assert {"bug_handler", "el1h_64_sync_handler", "do_mem_abort", "panic_bad_stack"} <= aarch64.PLUMBING
    from kpostmortem.verdict.frames import is_plumbing

    assert is_plumbing("bug_handler") and is_plumbing("el1_dbg") and not is_plumbing("crashpoc_warn")


# ------------------------------------------------------------------ which architecture

def _elf_core(e_machine: int) -> bytes:
    """A minimal little-endian ELF64 core header (no segments) for the given e_machine."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    return ident + struct.pack("<HHIQQQIHHHHHH", 4, e_machine, 1, 0, 0, 0, 0, 64, 56, 0, 64, 0, 0)


@pytest.mark.parametrize("e_machine, name, ok", [
    (62, "x86_64", True), (183, "aarch64", True), (21, "ppc64", False), (22, "s390x", False),
])
def test_elf_machine_sniffing(tmp_path, e_machine, name, ok):
    f = tmp_path / "vmcore"
    f.write_bytes(_elf_core(e_machine))
    header = read_dump_header(f)
    assert arch.canonical_name(header.machine) == name
    assert arch.supported(header.machine) is ok
    if ok:
        assert arch.get(header.machine).NAME == name
    else:
        with pytest.raises(arch.UnsupportedArchitecture, match="architecture not supported yet"):
            arch.get(header.machine)


def test_unsupported_dump_exits_3(tmp_path):
    from click.testing import CliRunner

    from kpostmortem.frontends.cli import main

    f = tmp_path / "vmcore"
    f.write_bytes(_elf_core(22))
    r = CliRunner().invoke(main, ["analyze", str(f)])
    assert r.exit_code == 3, r.output
    assert "s390x kernel dump: architecture not supported yet" in r.output
    assert "Traceback" not in r.output


def test_prstatus_of_arm64_and_others():
    """pr_pid at 32 and pr_reg at 112 in both 64-bit layouts; arm64's pr_reg is user_pt_regs."""
    from kpostmortem.inputs.elfinfo import parse_prstatus

    regs = list(range(100, 134))                       # x0..x30, sp, pc, pstate
    desc = bytearray(112 + 8 * 34 + 8)
    struct.pack_into("<i", desc, 32, 4242)
    struct.pack_into("<34Q", desc, 112, *regs)
    pr = parse_prstatus(bytes(desc), 1, "aarch64")
    assert (pr.cpu, pr.pid) == (1, 4242)
    assert (pr.registers["x0"], pr.registers["x30"], pr.registers["sp"], pr.registers["pc"],
            pr.registers["pstate"]) == (100, 130, 131, 132, 133)
    assert parse_prstatus(bytes(desc[:200]), 0, "aarch64") is None      # cut short
    assert parse_prstatus(bytes(desc), 0, "EM_S390") is None
