"""Disassemble kernel code bytes with capstone: operands, branch targets, effective addresses.

Pure functions on bytes and integers; x86-64 today, with an ``arch`` argument as the seam.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # capstone is imported where code is decoded: a panic without an oops needs none
    import capstone


__all__ = [
    "ARCHES",
    "Instruction",
    "MemOperand",
    "decode",
    "decode_window",
    "effective_address",
    "is_ud2",
    "is_undefined_opcode",
    "register_family",
    "register_width",
]

_U64 = (1 << 64) - 1

ARCHES = ("x86_64",)
"""Architectures ``decode`` knows."""

BAD_MNEMONIC = "(bad)"
"""Mnemonic of the one-byte placeholder for bytes that do not decode (as objdump shows)."""


@dataclass(frozen=True)
class MemOperand:
    """A memory operand: ``segment:[base + index*scale + disp]``, its size and access."""

    base: str | None
    """Base register as written (``"rbx"``, ``"eax"``, ``"rip"``), or None."""
    index: str | None
    """Index register as written, or None."""
    scale: int
    """Index scale: 1, 2, 4 or 8."""
    disp: int
    """Signed displacement (an absolute address when there is no base or index)."""
    segment: str | None
    """Segment override (``"gs"`` for per-CPU data, ``"fs"``), or None."""
    size: int
    """Bytes accessed."""
    access: str
    """"read", "write" or "read-write"."""
    implicit: bool = False
    """True for a stack slot the instruction touches without naming it (push, pop, call, ret)."""


@dataclass(frozen=True)
class Instruction:
    """One decoded instruction."""

    address: int
    """Address of its first byte."""
    size: int
    """Length in bytes."""
    mnemonic: str
    """Mnemonic, Intel syntax (``"mov"``; ``"(bad)"`` for an undecodable byte)."""
    op_str: str
    """Operands as text, Intel syntax."""
    bytes: bytes
    """The instruction's bytes."""
    mem: MemOperand | None
    """The memory operand it accesses: the first explicit one, else its implicit stack slot.

    None when it touches no memory (``lea`` and multi-byte ``nop`` only compute addresses)."""
    branch_target: int | None
    """Target of a direct jump or call, else None."""
    is_call: bool
    """A call instruction (direct or indirect)."""
    is_ret: bool
    """A return instruction."""
    mems: tuple[MemOperand, ...] = ()
    """Every memory operand, explicit ones first (``movs`` has two), then the stack slot."""
    writes: tuple[str, ...] = ()
    """General-purpose registers it writes, explicit or implicit, as 64-bit family names
    (``cdq`` writes rdx, ``pop rbx`` rbx and rsp); not what a call's callee clobbers."""
    reads: tuple[str, ...] = ()
    """General-purpose registers it reads (operands, address registers, implicit ones)."""

    @property
    def next_address(self) -> int:
        """Address of the following instruction (what rip-relative operands are relative to)."""
        return (self.address + self.size) & _U64

    @property
    def text(self) -> str:
        """``"mnemonic op_str"``, as a disassembler prints it."""
        return f"{self.mnemonic} {self.op_str}".strip()


@cache
def _disassembler(arch: str) -> capstone.Cs:
    if arch != "x86_64":
        raise ValueError(f"unsupported architecture {arch!r}; known: {', '.join(ARCHES)}")
    import capstone

    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.detail = True
    return md


# Instructions whose explicit memory operand is read and written even where capstone 5 says
# "read" (it does for cmpxchg); and ones that name memory without accessing it.
_READ_WRITE = frozenset({"cmpxchg", "cmpxchg8b", "cmpxchg16b", "xadd", "xchg"})
_NO_ACCESS = frozenset({"lea", "nop", "endbr64", "endbr32"})
_PUSHES = frozenset({"push", "pushfq", "pushf", "call"})
_POPS = frozenset({"pop", "popfq", "popf", "ret", "retf", "leave"})


def _access(mnemonic: str, cs_access: int) -> str:
    import capstone

    if mnemonic in _READ_WRITE:
        return "read-write"
    read = bool(cs_access & capstone.CS_AC_READ)
    write = bool(cs_access & capstone.CS_AC_WRITE)
    if read and write:
        return "read-write"
    if write:
        return "write"
    return "read"


def _stack_slot(mnemonic: str) -> MemOperand | None:
    if mnemonic in _PUSHES:
        return MemOperand("rsp", None, 1, -8, None, 8, "write", implicit=True)
    if mnemonic == "leave":
        return MemOperand("rbp", None, 1, 0, None, 8, "read", implicit=True)
    if mnemonic in _POPS:
        return MemOperand("rsp", None, 1, 0, None, 8, "read", implicit=True)
    return None


def _convert(insn: capstone.CsInsn) -> Instruction:
    import capstone
    from capstone import x86 as cs_x86

    mnemonic = insn.mnemonic
    base_mnemonic = mnemonic.split()[-1] if mnemonic else mnemonic
    mems: list[MemOperand] = []
    target = None
    for op in insn.operands:
        if op.type == cs_x86.X86_OP_MEM and base_mnemonic not in _NO_ACCESS:
            m = op.mem
            mems.append(
                MemOperand(
                    base=insn.reg_name(m.base) if m.base else None,
                    index=insn.reg_name(m.index) if m.index else None,
                    scale=m.scale,
                    disp=m.disp,
                    segment=insn.reg_name(m.segment) if m.segment else None,
                    size=op.size,
                    access=_access(base_mnemonic, op.access),
                )
            )
        elif op.type == cs_x86.X86_OP_IMM and target is None:
            if insn.group(capstone.CS_GRP_JUMP) or insn.group(capstone.CS_GRP_CALL):
                target = op.imm & _U64
    slot = _stack_slot(base_mnemonic)
    if slot is not None:
        mems.append(slot)
    reads, writes = _gpr_access(insn)
    return Instruction(
        address=insn.address,
        size=insn.size,
        mnemonic=mnemonic,
        op_str=insn.op_str,
        bytes=bytes(insn.bytes),
        mem=mems[0] if mems else None,
        branch_target=target,
        is_call=insn.group(capstone.CS_GRP_CALL),
        is_ret=insn.group(capstone.CS_GRP_RET) or insn.group(capstone.CS_GRP_IRET),
        mems=tuple(mems),
        writes=writes,
        reads=reads,
    )


def _gpr_access(insn: capstone.CsInsn) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(read, written) general-purpose registers of an instruction, as family names."""
    import capstone

    try:
        read_ids, write_ids = insn.regs_access()
    except capstone.CsError:
        return (), ()
    families = _families()

    def names(ids: list[int]) -> tuple[str, ...]:
        out: list[str] = []
        for i in ids:
            fam = families.get(insn.reg_name(i) or "")
            if fam and fam[0] not in out:
                out.append(fam[0])
        return tuple(out)

    written = names(write_ids)
    # xor eax, eax reads eax only formally: the result does not depend on it.
    read = names(read_ids)
    return read, written


def _bad(code: bytes, offset: int, address: int) -> Instruction:
    return Instruction(
        address=(address + offset) & _U64,
        size=1,
        mnemonic=BAD_MNEMONIC,
        op_str="",
        bytes=code[offset : offset + 1],
        mem=None,
        branch_target=None,
        is_call=False,
        is_ret=False,
    )


def decode(code: bytes, address: int, arch: str = "x86_64") -> list[Instruction]:
    """Decode all of ``code``, loaded at ``address``.

    A byte that does not start a valid instruction becomes a one-byte ``(bad)`` entry and
    decoding resumes after it, so the result always covers every byte. Raises ValueError
    only for an unknown ``arch``.
    """
    md = _disassembler(arch)
    code = bytes(code)
    address &= _U64
    out: list[Instruction] = []
    offset = 0
    while offset < len(code):
        start = (address + offset) & _U64
        for insn in md.disasm(code[offset:], start):
            out.append(_convert(insn))
            offset += insn.size
        if offset < len(code):
            out.append(_bad(code, offset, address))
            offset += 1
    return out


def _boundaries(arch: str, code: bytes, start_off: int, pc_off: int, base: int) -> tuple[int, ...] | None:
    """Start addresses of the instructions decoded from ``start_off`` if they end exactly at
    ``pc_off`` with no invalid byte on the way, else None.

    Only lengths are needed here, so capstone's light mode (no operand details) is used: the
    full conversion is done once, for the run that wins.
    """
    md = _disassembler(arch)
    addresses = []
    end = start_off
    for address, size, _mnemonic, _ops in md.disasm_lite(code[start_off:pc_off], base + start_off):
        addresses.append(address)
        end += size
    return tuple(addresses) if addresses and end == pc_off else None


def decode_window(
    code: bytes,
    code_start: int,
    pc: int,
    *,
    before: int = 5,
    after: int = 3,
    arch: str = "x86_64",
) -> tuple[list[Instruction], int | None]:
    """Decode the instructions around ``pc`` in ``code`` (which covers [code_start, +len)).

    x86 code cannot be decoded backwards, so, like scripts/decodecode, this tries every start
    offset before ``pc`` and keeps the runs of valid instructions that end exactly at ``pc``;
    the boundaries most of them agree on give the ``before`` instructions. Then it decodes
    forward from ``pc``. Returns the instructions and the index of the one at ``pc``, or
    None as the index when ``pc`` is outside ``code`` or its bytes do not decode.
    """
    code = bytes(code)
    pc_off = (pc - code_start) & _U64
    if pc_off >= len(code):
        return [], None
    votes: Counter[tuple[int, ...]] = Counter()
    if before > 0:
        for start_off in range(pc_off):
            run = _boundaries(arch, code, start_off, pc_off, code_start)
            if run:
                votes[run[-before:]] += 1
    prefix: list[Instruction] = []
    if votes:
        best = max(votes.values())
        # Among equally supported alignments, the one from the earliest start (most context):
        # a Counter keeps the order in which its keys were first seen.
        key = next(k for k, n in votes.items() if n == best)
        tail_off = (key[0] - code_start) & _U64
        prefix = decode(code[tail_off:pc_off], key[0], arch)
    forward = decode(code[pc_off:], pc, arch)
    at_pc = forward[0]
    rest = []
    for insn in forward[1:]:
        if len(rest) >= after:
            break
        rest.append(insn)
    if at_pc.mnemonic == BAD_MNEMONIC:
        return [*prefix, at_pc, *rest], None
    return [*prefix, at_pc, *rest], len(prefix)


# x86-64 register families: every name of a general-purpose register -> its 64-bit name.
def _families() -> dict[str, tuple[str, int]]:
    table: dict[str, tuple[str, int]] = {}
    for letter in "abcd":
        full = f"r{letter}x"
        table.update(
            {
                full: (full, 64),
                f"e{letter}x": (full, 32),
                f"{letter}x": (full, 16),
                f"{letter}l": (full, 8),
                f"{letter}h": (full, 8),
            }
        )
    for name in ("si", "di", "bp", "sp"):
        full = f"r{name}"
        table.update(
            {full: (full, 64), f"e{name}": (full, 32), name: (full, 16), f"{name}l": (full, 8)}
        )
    for n in range(8, 16):
        full = f"r{n}"
        table.update(
            {
                full: (full, 64),
                f"r{n}d": (full, 32),
                f"r{n}w": (full, 16),
                f"r{n}b": (full, 8),
                f"r{n}l": (full, 8),
            }
        )
    table.update({"rip": ("rip", 64), "eip": ("rip", 32), "ip": ("rip", 16)})
    return table


_FAMILY = _families()
_HIGH_BYTE = frozenset({"ah", "bh", "ch", "dh"})


def register_family(reg: str) -> str:
    """The 64-bit register a (sub-)register belongs to: "ebx" → "rbx", "r8d" → "r8", "al" →
    "rax". Names that are not general-purpose registers come back lower-cased."""
    name = reg.strip().lower()
    return _FAMILY.get(name, (name, 64))[0]


def register_width(reg: str) -> int:
    """Width in bits of a general-purpose (sub-)register name; 64 for unknown names."""
    return _FAMILY.get(reg.strip().lower(), ("", 64))[1]


def _register_value(reg: str, regs: Mapping[str, int]) -> int | None:
    name = reg.lower()
    family = register_family(name)
    value = regs.get(family)
    if value is None:
        return None
    value &= _U64
    if name in _HIGH_BYTE:
        return (value >> 8) & 0xFF
    width = register_width(name)
    return value & ((1 << width) - 1)


def effective_address(
    mem: MemOperand, regs: Mapping[str, int], next_pc: int | None = None
) -> int | None:
    """Compute ``mem``'s linear address from register values, or None if one is unknown.

    ``regs`` has lower-case 64-bit names ("rax", ..., "r15", "rsp", "rip"); a sub-register
    base or index ("eax") uses that register's low bits. A rip-relative operand needs
    ``next_pc`` (the address after the instruction). An ``fs``/``gs`` override adds
    ``regs["gs_base"]`` (or drgn's ``"gs.base"``); other segments have base 0 in 64-bit mode.
    The result wraps to 64 bits.
    """
    addr = mem.disp
    narrow = False
    if mem.base is not None:
        if register_family(mem.base) == "rip":
            if next_pc is None:
                return None
            addr += next_pc
        else:
            value = _register_value(mem.base, regs)
            if value is None:
                return None
            addr += value
            narrow = register_width(mem.base) == 32
    if mem.index is not None and mem.index.lower() not in ("riz", "eiz"):
        value = _register_value(mem.index, regs)
        if value is None:
            return None
        addr += value * mem.scale
        narrow = narrow or register_width(mem.index) == 32
    if narrow:
        addr &= 0xFFFFFFFF  # 32-bit address-size override
    if mem.segment in ("fs", "gs"):
        seg_base = regs.get(f"{mem.segment}_base", regs.get(f"{mem.segment}.base"))
        if seg_base is None:
            return None
        addr += seg_base
    return addr & _U64


def is_ud2(insn: Instruction) -> bool:
    """True for ``ud2``, the trap that BUG() and WARN() compile to on x86."""
    return insn.mnemonic == "ud2"


def is_undefined_opcode(insn: Instruction) -> bool:
    """True for any deliberate #UD instruction: ``ud0``, ``ud1`` (UBSAN traps) or ``ud2``."""
    return insn.mnemonic in ("ud0", "ud1", "ud2")
