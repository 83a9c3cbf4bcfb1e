"""Calling conventions, per architecture: which registers survive a call.

The backward scan that tells where a register got its value (helpers/fault.pointer_origin,
helpers/loop.py) reads these tables instead of treating a call as a write of every register:

- a callee-saved register is the same after a call as before it: the call is never its source;
- a caller-saved register is clobbered by a call: after it, the register holds the call's
  return value (the return registers) or nothing known, until a later instruction writes it.

Pure data. One entry per architecture; add AAPCS64 ("aarch64") next to the x86-64 SysV one.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Abi", "ABIS", "abi"]


@dataclass(frozen=True)
class Abi:
    """One calling convention, with registers by their full (64-bit) names."""

    name: str
    callee_saved: frozenset[str]
    """Preserved across calls (the callee restores them), the stack pointer included."""
    caller_saved: frozenset[str]
    """Clobbered by any call."""
    returns: tuple[str, ...]
    """Where a call leaves its return value, first register first."""
    arguments: tuple[str, ...]
    """Integer/pointer arguments, in order."""

    def survives_call(self, reg: str) -> bool:
        return reg in self.callee_saved

    def set_by_call(self, reg: str) -> bool:
        """True for the register a call leaves its (first) return value in."""
        return bool(self.returns) and reg == self.returns[0]


# System V AMD64 ABI, 3.2.1 "Registers": rbx, rbp, r12-r15 (and rsp) belong to the caller.
X86_64_SYSV = Abi(
    name="x86-64 System V",
    callee_saved=frozenset({"rbx", "rbp", "r12", "r13", "r14", "r15", "rsp"}),
    caller_saved=frozenset({"rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11"}),
    returns=("rax", "rdx"),
    arguments=("rdi", "rsi", "rdx", "rcx", "r8", "r9"),
)

# AAPCS64, 6.1.1 "General-purpose registers": x19-x28, the frame pointer x29 and sp are
# preserved; x30 (lr) is set by the call itself; x0-x17 are clobbered (x16/x17 by veneers).
AAPCS64 = Abi(
    name="AAPCS64",
    callee_saved=frozenset({*(f"x{n}" for n in range(19, 29)), "x29", "sp"}),
    caller_saved=frozenset({*(f"x{n}" for n in range(0, 19)), "x30"}),
    returns=("x0", "x1"),
    arguments=tuple(f"x{n}" for n in range(8)),
)

ABIS: dict[str, Abi] = {"x86_64": X86_64_SYSV, "aarch64": AAPCS64}


def abi(arch: str = "x86_64") -> Abi:
    """The calling convention of ``arch``; KeyError for one not described yet."""
    return ABIS[arch]
