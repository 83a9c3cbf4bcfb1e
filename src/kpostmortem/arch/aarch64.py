"""arm64 (aarch64): what differs from x86-64 in reading a crash.

Pure (bytes, integers and text in, dataclasses and dicts out): the A64 instruction window
decoded with capstone into decode.disasm's Instruction, ESR_EL1 decoded, pointer
authentication codes stripped, the kernel's exception plumbing named, and the log's
"Mem abort info" and stack-overflow reports read.  References: the Arm ARM (ESR_EL1,
D17.2.37), arch/arm64/include/asm/esr.h, brk-imm.h, kernel/traps.c, mm/fault.c.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from kpostmortem.decode.disasm import BAD_MNEMONIC, Instruction, MemOperand

if TYPE_CHECKING:
    import capstone

__all__ = [
    "NAME", "STACK_POINTER", "LINK_REGISTER", "PLUMBING", "INTERRUPT_PLUMBING", "BUG_BRK_IMM",
    "EXCEPTION_VECTORS",
    "EsrInfo", "decode_esr", "strip_pac", "decode", "decode_window", "register_family",
    "effective_address", "is_bug_trap", "parse_mem_abort", "StackOverflowReport",
    "parse_stack_overflow",
]

NAME = "aarch64"
STACK_POINTER = "sp"
LINK_REGISTER = "x30"
"""bl/blr put the return address here: a call through a NULL pointer leaves the caller in lr."""
INSTRUCTION_SIZE = 4
_U64 = (1 << 64) - 1

# Exception entry and reporting on arm64 (arch/arm64/kernel/entry-common.c, traps.c, mm/fault.c,
# debug-monitors.c): never the culprit; the interrupted frame below them is.
PLUMBING = frozenset({
    "el1h_64_sync", "el1h_64_sync_handler", "el1t_64_sync", "el1t_64_sync_handler",
    "el1_abort", "el1_pc", "el1_sp_pc", "el1_undef", "el1_bti", "el1_gcs", "el1_mops", "el1_dbg",
    "el1_fpac", "el1_inv", "el1_brk64", "el1_breakpt", "el1_softstp", "el1_watchpt",
    "do_mem_abort", "do_sp_pc_abort", "do_translation_fault", "do_page_fault", "do_bad_area",
    "__do_kernel_fault", "die_kernel_fault", "do_alignment_fault", "do_bad", "do_tag_check_fault",
    "do_el1_undef", "do_el1_bti", "do_el1_fpac", "do_el1_brk64", "do_el1_mops", "do_undefinstr",
    "do_debug_exception", "brk_handler", "call_break_hook", "call_el1_break_hook", "bug_handler",
    "bug_brk_handler", "early_brk64", "arm64_notify_die", "arm64_enter_el1_dbg", "arm64_exit_el1_dbg",
    "reserved_fault_handler", "kasan_handler", "ubsan_handler", "cfi_handler",
    # Stack overflow: the exception is taken on the per-CPU overflow stack and reported there.
    "handle_bad_stack", "panic_bad_stack", "__bad_stack", "kernel_ventry",
    # 5.x kernels' names of the EL1 synchronous exception handler (el1_sync_handler → el1h_64_sync_handler)
    "el1_sync_handler", "el1_sync", "el1_da", "el1_ia",
})
INTERRUPT_PLUMBING = frozenset({
    "el1h_64_irq", "el1h_64_irq_handler", "el1_interrupt", "__el1_irq", "el1h_64_fiq",
    "el1h_64_fiq_handler", "__el1_pnmi", "call_on_irq_stack", "do_interrupt_handler",
    "gic_handle_irq", "generic_handle_domain_irq", "handle_domain_irq", "__handle_domain_irq",
    "arch_timer_handler_virt", "arch_timer_handler_phys", "handle_percpu_devid_irq",
    "el0_interrupt", "__el0_irq_handler_common", "el0t_64_irq", "el0t_64_irq_handler",
})

# The EL1 exception vectors' entry code (entry.S): drgn unwinds through the frame record they
# build inside pt_regs, so the frame after one of these took the exception, and its
# registers are in that pt_regs (not marked interrupted when panic() came later: a WARN).
EXCEPTION_VECTORS = frozenset({
    "el1h_64_sync", "el1h_64_irq", "el1h_64_fiq", "el1h_64_error",
    "el1t_64_sync", "el1t_64_irq", "el1t_64_fiq", "el1t_64_error",
})

# arch/arm64/include/asm/brk-imm.h: the immediates of the kernel's own brk instructions.
BUG_BRK_IMM = 0x800
BRK_IMMEDIATES = {
    0x004: "kprobe", 0x005: "uprobe", 0x006: "kprobe single-step", 0x100: "fault (unreachable code)",
    0x400: "kgdb (dynamic)", 0x401: "kgdb (compiled)", 0x800: "BUG()/WARN()",
}
BRK_RANGES = ((0x900, 0x9FF, "KASAN report"), (0x5500, 0x55FF, "UBSAN check"),
              (0x8000, 0x8FFF, "kCFI check"))


def brk_meaning(imm: int) -> str:
    """What a kernel ``brk #imm`` is for."""
    if imm in BRK_IMMEDIATES:
        return BRK_IMMEDIATES[imm]
    return next((what for lo, hi, what in BRK_RANGES if lo <= imm <= hi), "unknown brk immediate")


PROGRAM_COUNTER = "pc"
# struct user_pt_regs (the NT_PRSTATUS note's pr_reg, and the head of struct pt_regs)
PRSTATUS_REGS = (*(f"x{n}" for n in range(31)), "sp", "pc", "pstate")
PT_REGS = PRSTATUS_REGS


# ---------------------------------------------------------------------------- ESR_EL1

EXCEPTION_CLASSES = {
    0x00: "UNKNOWN (undefined instruction)", 0x01: "WFx", 0x07: "FP/ASIMD access",
    0x0E: "illegal execution state", 0x15: "SVC64", 0x18: "SYS64 (MSR/MRS)", 0x19: "SVE",
    0x1C: "FPAC (pointer authentication failure)", 0x20: "IABT (lower EL)",
    0x21: "IABT (current EL)", 0x22: "PC alignment", 0x24: "DABT (lower EL)",
    0x25: "DABT (current EL)", 0x26: "SP alignment", 0x2C: "FP exception", 0x2F: "SError",
    0x30: "breakpoint (lower EL)", 0x31: "breakpoint (current EL)", 0x32: "software step (lower EL)",
    0x33: "software step (current EL)", 0x34: "watchpoint (lower EL)",
    0x35: "watchpoint (current EL)", 0x3C: "BRK64",
}
_ABORTS = (0x20, 0x21, 0x24, 0x25)


def _fault_status(fsc: int) -> tuple[str, int | None]:
    """(kind, level) of a data/instruction fault status code (DFSC/IFSC)."""
    group, low = fsc >> 2, fsc & 3
    kinds = {0: "address size fault", 1: "translation fault", 2: "access flag fault",
             3: "permission fault"}
    if group in kinds:
        return kinds[group], low
    fixed = {
        0x10: "synchronous external abort", 0x11: "synchronous tag check fault",
        0x21: "alignment fault", 0x30: "TLB conflict abort", 0x31: "unsupported atomic update",
        0x29: "address size fault", 0x2B: "translation fault", 0x18: "synchronous parity error",
    }
    if fsc in fixed:
        return fixed[fsc], (-1 if fsc in (0x29, 0x2B) else None)
    return f"fault status {fsc:#04x}", None


@dataclass(frozen=True)
class EsrInfo:
    """ESR_EL1 decoded: why the CPU took the synchronous exception."""

    raw: int
    ec: int
    """Exception class, ESR[31:26]."""
    ec_name: str
    iss: int
    """Instruction-specific syndrome, ESR[24:0]."""
    abort: bool
    """A data or instruction abort (a memory access that faulted)."""
    instruction_fetch: bool
    """An instruction abort: the PC itself could not be fetched."""
    write: bool | None
    """WnR for a data abort (None otherwise; cache maintenance reports as a write)."""
    fault_kind: str | None
    """Translation/permission/access flag/address size/alignment fault…"""
    level: int | None
    """Page-table level the walk stopped at (0–3), for the level-based faults."""
    brk_immediate: int | None
    """The ``brk #imm`` comment for a BRK64 exception."""

    def describe(self) -> str:
        if self.abort:
            what = "instruction fetch" if self.instruction_fetch else \
                ("write" if self.write else "read")
            where = "kernel mode" if self.ec in (0x21, 0x25) else "user mode"
            level = f" at level {self.level}" if self.level is not None else ""
            return f"{self.ec_name}: {what}, {where}, {self.fault_kind}{level}"
        if self.brk_immediate is not None:
            return f"{self.ec_name}: brk #{self.brk_immediate:#x} ({brk_meaning(self.brk_immediate)})"
        return self.ec_name

    def to_dict(self) -> dict:
        return {"raw": self.raw, "name": "ESR_EL1", "ec": self.ec, "ec_name": self.ec_name,
                "iss": self.iss, "abort": self.abort, "instruction_fetch": self.instruction_fetch,
                "write": self.write, "fault_kind": self.fault_kind, "level": self.level,
                "brk_immediate": self.brk_immediate, "text": self.describe()}


def decode_esr(esr: int) -> EsrInfo:
    """Decode an ESR_EL1 value (the "ESR = 0x..." of an arm64 oops, or its "Oops: ..." code)."""
    esr &= 0xFFFF_FFFF_FFFF
    ec = (esr >> 26) & 0x3F
    iss = esr & 0x1FF_FFFF
    name = EXCEPTION_CLASSES.get(ec, f"EC {ec:#04x}")
    abort = ec in _ABORTS
    kind = level = write = None
    if abort:
        kind, level = _fault_status(iss & 0x3F)
        if ec in (0x24, 0x25):
            write = bool(iss & (1 << 6))
    return EsrInfo(raw=esr, ec=ec, ec_name=name, iss=iss, abort=abort,
                   instruction_fetch=ec in (0x20, 0x21), write=write, fault_kind=kind, level=level,
                   brk_immediate=iss & 0xFFFF if ec == 0x3C else None)


_MEM_ABORT = re.compile(r"\bESR = (0x[0-9a-fA-F]{1,16})")
_WNR = re.compile(r"\bWnR = ([01])\b")


def parse_mem_abort(lines: list[str]) -> dict:
    """The "Mem abort info" / "Data abort info" block of an arm64 oops: {"esr", "write"}."""
    out: dict = {}
    for line in lines:
        m = _MEM_ABORT.search(line)
        if m and "esr" not in out:
            out["esr"] = int(m.group(1), 16)
        m = _WNR.search(line)
        if m and "write" not in out:
            out["write"] = m.group(1) == "1"
    return out


# ---------------------------------------------------------------------------- pointers

def strip_pac(addr: int, pac_mask: int | None) -> int:
    """A code address with its pointer authentication code removed.

    Return addresses saved on an arm64 kernel stack are signed (``paciasp``): the PAC sits in
    the bits KERNELPACMASK (VMCOREINFO) names. Kernel addresses have those bits all ones, user
    addresses all zeros; bit 55 says which half the address belongs to.
    """
    if not pac_mask:
        return addr & _U64
    if addr & (1 << 55):
        return (addr | pac_mask) & _U64
    return addr & ~pac_mask & _U64


# ---------------------------------------------------------------------------- instructions

_FAMILY_ALIASES = {"fp": "x29", "lr": "x30", "wsp": "sp", "wzr": "xzr", "ip0": "x16", "ip1": "x17"}


def register_family(reg: str) -> str:
    """The 64-bit register a name belongs to: "w1" → "x1", "fp" → "x29", "lr" → "x30"."""
    name = reg.strip().lower()
    name = _FAMILY_ALIASES.get(name, name)
    if re.fullmatch(r"w([0-9]|[12][0-9]|30)", name):
        return "x" + name[1:]
    return name


_FP_SIZES = {"q": 16, "d": 8, "s": 4, "h": 2, "b": 1}


def _access_size(mnemonic: str, transfer_regs: list[str]) -> int:
    """Bytes a load/store moves: the b/h/sw suffix (ldrb, strh, ldrsw), else the width of
    the transfer register (w: 4, x: 8, q/d/s/h/b: SIMD), doubled for a pair (ldp, stp)."""
    m = mnemonic.lower()
    pair = 2 if re.match(r"(ld|st)(n|x|ax|lx)?p", m) else 1
    if m.endswith("b"):
        return pair
    if m.endswith("h"):
        return 2 * pair
    if m.endswith("sw"):
        return 4 * pair
    reg = transfer_regs[0] if transfer_regs else "x0"
    if reg.startswith("w"):
        return 4 * pair
    if reg[:1] in _FP_SIZES and reg[1:].isdigit():
        return _FP_SIZES[reg[0]] * pair
    return 8 * pair


def _access(mnemonic: str) -> str | None:
    m = mnemonic.lower()
    if m.startswith(("prfm", "prfum")):
        return None
    if m.startswith(("cas", "swp", "ldadd", "ldclr", "ldeor", "ldset", "ldsmax", "ldsmin",
                     "ldumax", "ldumin", "stadd", "stclr", "steor", "stset")):
        return "read-write"
    if m.startswith("ld"):
        return "read"
    if m.startswith("st"):
        return "write"
    return None


@cache
def _disassembler() -> capstone.Cs:
    import capstone

    md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    md.detail = True
    return md


def _convert(insn: capstone.CsInsn) -> Instruction:
    import capstone
    from capstone import arm64 as cs_arm64

    mnemonic = insn.mnemonic
    mems: list[MemOperand] = []
    target = None
    regs_named: list[str] = []
    access = _access(mnemonic)
    for op in insn.operands:
        if op.type == cs_arm64.ARM64_OP_REG:
            regs_named.append(insn.reg_name(op.reg) or "")
        elif op.type == cs_arm64.ARM64_OP_MEM and access:
            m = op.mem
            index = insn.reg_name(m.index) if m.index else None
            scale = 1 << op.shift.value if index and op.shift.type == cs_arm64.ARM64_SFT_LSL else 1
            mems.append(MemOperand(
                base=insn.reg_name(m.base) if m.base else None, index=index, scale=scale,
                disp=m.disp, segment=None, size=_access_size(mnemonic, regs_named), access=access))
        elif op.type == cs_arm64.ARM64_OP_IMM and (
                insn.group(capstone.CS_GRP_JUMP) or insn.group(capstone.CS_GRP_CALL)):
            target = op.imm & _U64  # the last one: tbz/tbnz name the tested bit first
    try:
        read_ids, write_ids = insn.regs_access()
        reads = tuple(dict.fromkeys(register_family(insn.reg_name(i) or "") for i in read_ids))
        writes = tuple(dict.fromkeys(register_family(insn.reg_name(i) or "") for i in write_ids))
    except capstone.CsError:
        reads = writes = ()
    base = mnemonic.lower()
    return Instruction(
        address=insn.address, size=insn.size, mnemonic=mnemonic, op_str=insn.op_str,
        bytes=bytes(insn.bytes), mem=mems[0] if mems else None, branch_target=target,
        is_call=base in ("bl", "blr", "blraa", "blraaz", "blrab", "blrabz"),
        is_ret=base in ("ret", "retaa", "retab", "eret"), mems=tuple(mems),
        writes=writes, reads=reads)


def _bad(code: bytes, offset: int, address: int) -> Instruction:
    return Instruction(address=(address + offset) & _U64, size=4, mnemonic=BAD_MNEMONIC, op_str="",
                       bytes=code[offset:offset + 4], mem=None, branch_target=None, is_call=False,
                       is_ret=False)


def decode(code: bytes, address: int) -> list[Instruction]:
    """Decode A64 code (fixed 4-byte instructions) loaded at ``address``; a word that does not
    decode becomes a 4-byte ``(bad)`` entry."""
    md = _disassembler()
    code = bytes(code)[: len(code) // 4 * 4]
    out: list[Instruction] = []
    for off in range(0, len(code), 4):
        insns = list(md.disasm(code[off:off + 4], address + off))
        out.append(_convert(insns[0]) if insns else _bad(code, off, address))
    return out


def decode_window(code: bytes, code_start: int, pc: int, *, before: int = 5,
                  after: int = 3) -> tuple[list[Instruction], int | None]:
    """The instructions around ``pc`` (A64 decodes backwards: every word is one instruction)
    and the index of the one at ``pc``, or None when pc is outside ``code`` or misaligned."""
    pc_off = pc - code_start
    if not 0 <= pc_off < len(code) or pc_off % 4:
        return [], None
    lo = max(0, pc_off - 4 * before)
    hi = min(len(code) // 4 * 4, pc_off + 4 * (after + 1))
    insns = decode(code[lo:hi], code_start + lo)
    at = (pc_off - lo) // 4
    return insns, (None if insns[at].mnemonic == BAD_MNEMONIC else at)


def is_bug_trap(insn: Instruction) -> bool:
    """``brk #0x800``: how arm64 BUG() and WARN() trap (resolved through __bug_table)."""
    return insn.mnemonic == "brk" and insn.op_str.replace(" ", "") in ("#0x800", "#2048")


def effective_address(mem: MemOperand, regs: Mapping[str, int], next_pc: int | None = None) -> int | None:
    """``[base, #disp]`` / ``[base, index, lsl #n]`` from register values (pre-index writeback
    forms address base+disp too; a post-indexed access reads at base, disp then added)."""
    addr = mem.disp
    for reg, scale in ((mem.base, 1), (mem.index, mem.scale)):
        if reg is None:
            continue
        family = register_family(reg)
        value = 0 if family == "xzr" else regs.get(family)
        if value is None:
            return None
        if reg.startswith("w"):
            value &= 0xFFFF_FFFF
        addr += value * scale
    return addr & _U64


# ---------------------------------------------------------------------------- stack overflow

_OVERFLOW = re.compile(r"Insufficient stack space to handle exception!")
_STACK_RANGE = re.compile(
    r"^(?P<which>Task|IRQ|Overflow|SDEI\w*) stack:\s*\[0x(?P<lo>[0-9a-f]{1,16})\.\.0x(?P<hi>[0-9a-f]{1,16})\]")
_ESR_LINE = re.compile(r"^ESR: (0x[0-9a-f]{1,16}) -- (.*)$")
_FAR_LINE = re.compile(r"^FAR: (0x[0-9a-f]{1,16})$")


@dataclass(frozen=True)
class StackOverflowReport:
    """arm64's report of a kernel stack overflow (arch/arm64/kernel/traps.c panic_bad_stack)."""

    stacks: dict[str, tuple[int, int]]
    """"task", "irq", "overflow": the [low, high) ranges the kernel printed."""
    esr: int | None
    far: int | None


def parse_stack_overflow(lines: list[str]) -> StackOverflowReport | None:
    """Read "Insufficient stack space to handle exception!" and the lines after it."""
    start = next((i for i, line in enumerate(lines) if _OVERFLOW.search(line)), None)
    if start is None:
        return None
    stacks: dict[str, tuple[int, int]] = {}
    esr = far = None
    for line in lines[start + 1:start + 12]:
        text = line.strip()
        m = _STACK_RANGE.match(text)
        if m:
            stacks[m.group("which").lower()] = (int(m.group("lo"), 16), int(m.group("hi"), 16))
            continue
        m = _ESR_LINE.match(text)
        if m:
            esr = int(m.group(1), 16)
        m = _FAR_LINE.match(text)
        if m:
            far = int(m.group(1), 16)
    return StackOverflowReport(stacks=stacks, esr=esr, far=far)
