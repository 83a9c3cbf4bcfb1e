"""x86-64: the architecture kpostmortem started on; its decoding lives in decode/.

The same names as aarch64.py, so generic code asks ``arch.get(name)`` instead of assuming
x86: the instruction window (decode/disasm.py, capstone X86-64), the page-fault error code
(decode/faultclass.py), ud2 as the BUG()/WARN() trap, and the return address of a call
through a bad pointer at [rsp].
"""

from __future__ import annotations

from collections.abc import Mapping

from kpostmortem.decode import disasm
from kpostmortem.decode.disasm import Instruction, MemOperand

__all__ = ["NAME", "STACK_POINTER", "LINK_REGISTER", "PLUMBING", "INTERRUPT_PLUMBING", "decode",
           "decode_window", "register_family", "effective_address", "is_bug_trap", "strip_pac"]

NAME = "x86_64"
STACK_POINTER = "rsp"
LINK_REGISTER = None
"""A call pushes its return address: after a call through a NULL pointer it is at [rsp]."""
PROGRAM_COUNTER = "rip"
# struct user_regs_struct (the NT_PRSTATUS note's pr_reg) under drgn's register names; its
# first 21 are struct pt_regs
PRSTATUS_REGS = (
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
    "rsi", "rdi", "orig_rax", "rip", "cs", "rflags", "rsp", "ss", "fs_base", "gs_base", "ds",
    "es", "fs", "gs",
)
PT_REGS = PRSTATUS_REGS[:21]
# x86's exception plumbing is in verdict/frames.py (it came first); nothing more here.
PLUMBING: frozenset[str] = frozenset()
INTERRUPT_PLUMBING: frozenset[str] = frozenset()


def decode(code: bytes, address: int) -> list[Instruction]:
    return disasm.decode(code, address, "x86_64")


def decode_window(code: bytes, code_start: int, pc: int, *, before: int = 5,
                  after: int = 3) -> tuple[list[Instruction], int | None]:
    return disasm.decode_window(code, code_start, pc, before=before, after=after, arch="x86_64")


def register_family(reg: str) -> str:
    return disasm.register_family(reg)


def effective_address(mem: MemOperand, regs: Mapping[str, int], next_pc: int | None = None) -> int | None:
    return disasm.effective_address(mem, regs, next_pc=next_pc)


def is_bug_trap(insn: Instruction) -> bool:
    """``ud2``: how x86 BUG() and WARN() trap (resolved through __bug_table)."""
    return disasm.is_ud2(insn)


def strip_pac(addr: int, pac_mask: int | None = None) -> int:
    """x86-64 has no pointer authentication: addresses come back unchanged."""
    return addr
