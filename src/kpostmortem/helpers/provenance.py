"""Name a register's value as a C expression: follow its loads back through the decoded code
to a variable DWARF knows, then down through the struct members at each displacement.

The use: a call through a NULL (or bad) function pointer. The crash frame's PC is the bad
target, so nothing there can be decoded; the return address on the stack points after the
call. Decoding that call (``call __x86_indirect_thunk_rax``, ``call rax``, ``call qword ptr
[rax + 0x10]``, the call-depth-tracking and IBT thunks) gives the register or memory slot that
held the target; scanning back gives the loads (``mov rax, [rdi + 0x10]; mov rax, [rax + 8]``)
and the saved registers give the base's value, which names a variable (``dev``). Each step
then reads the member at the load's displacement through drgn: ``dev->ops->start``.

Registers follow the calling convention (decode/regabi.py): a callee-saved register keeps
its value across calls, a caller-saved one is lost at a call. When a step cannot be named
the answer is None — no guess.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import drgn
from drgn.helpers.common.type import member_at_offset

from kpostmortem.decode.disasm import Instruction, decode_window, register_family
from kpostmortem.decode.regabi import abi

__all__ = ["Namer", "call_target", "name_call_target"]

MAX_DEPTH = 4
# Indirect-call thunks: retpolines (__x86_indirect_thunk_REG), call depth tracking
# (__x86_indirect_call_thunk_REG, 6.2+), IBT/FineIBT variants that keep the register name.
_THUNK = re.compile(r"^__x86_indirect_(?:call_|jump_)?thunk_(\w+)$")


_GPRS = ("rax", "rcx", "rdx", "rbx", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")


def _thunk_register(prog: drgn.Program, target: int, suffix: str) -> str | None:
    """The register a thunk calls through. The thunks share addresses with aliases (the first
    one is also ``__x86_indirect_thunk_array``), so look each register's thunk up by name."""
    if suffix in _GPRS:
        return suffix
    for prefix in ("__x86_indirect_thunk_", "__x86_indirect_call_thunk_", "__x86_indirect_jump_thunk_"):
        for reg in _GPRS:
            try:
                if prog.symbol(prefix + reg).address == target:
                    return reg
            except LookupError:
                continue
    return None


def call_target(prog: drgn.Program, ret: int) -> tuple[list[Instruction], int, str | None, Instruction] | None:
    """Decode the call just before return address ``ret``: (window, index of the call, the
    register holding the target or None when the call reads it from memory, the call)."""
    try:
        code = prog.read(ret - 64, 64 + 16)
    except drgn.FaultError:
        return None
    insns, at = decode_window(code, ret - 64, ret, before=16, after=0)
    if at is None or at == 0:
        return None
    call = insns[at - 1]
    if not call.is_call or call.next_address != ret:
        return None
    try:
        sym = prog.symbol(call.address)
        insns = [k for k in insns[:at] if k.address >= sym.address]  # the caller's code only
    except LookupError:
        insns = insns[:at]
    ci = len(insns) - 1
    if call.branch_target is not None:
        try:
            name = prog.symbol(call.branch_target).name
        except LookupError:
            return None
        m = _THUNK.match(name)
        if not m:
            return None  # a direct call: no function pointer
        reg = _thunk_register(prog, call.branch_target, m.group(1))
        return None if reg is None else (insns, ci, reg, call)
    if call.mem is not None and not call.mem.implicit:
        return insns, ci, None, call
    try:
        return insns, ci, register_family(call.op_str.strip()), call
    except (KeyError, ValueError):
        return None


def _variables(frames: Sequence[drgn.StackFrame]) -> list[tuple[str, drgn.Object]]:
    out = []
    for frame in frames:
        try:
            names = frame.locals()
        except (LookupError, ValueError):
            continue
        for name in names:
            try:
                obj = frame[name]
                if obj.absent_ or obj.type_.unaliased().kind != drgn.TypeKind.POINTER:
                    continue
                out.append((name, obj))
            except (LookupError, ValueError, drgn.FaultError, drgn.ObjectAbsentError):
                continue
    return out


class Namer:
    """Follows loads back from a point in a decoded window (see the module's docstring)."""

    def __init__(self, insns: list[Instruction], end: int, regs: dict[str, int],
                 frames: Sequence[drgn.StackFrame], arch: str = "x86_64") -> None:
        self.insns, self.end, self.regs, self.conv = insns, end, regs, abi(arch)
        self.vars = _variables(frames)
        self.steps: list[dict] = []

    def _unchanged(self, reg: str, start: int) -> bool:
        """reg keeps its value from insns[start] up to the call (the saved registers' moment)."""
        for k in self.insns[start : self.end]:
            if (k.is_call and not self.conv.survives_call(reg)) or reg in k.writes:
                return False
        return True

    def variable(self, value: int) -> tuple[str, drgn.Object] | None:
        for name, obj in self.vars:
            try:
                if obj.value_() == value:
                    return name, obj
            except (drgn.FaultError, drgn.ObjectAbsentError, ValueError):
                continue
        return None

    def resolve(self, reg: str, before: int, depth: int = MAX_DEPTH) -> tuple[str, drgn.Object] | None:
        """The value of ``reg`` just before insns[before], as (C expression, drgn Object)."""
        for j in range(before - 1, -1, -1):
            k = self.insns[j]
            if k.is_call:
                if self.conv.survives_call(reg):
                    continue
                return None
            if reg not in k.writes:
                continue
            mem = k.mem
            if k.mnemonic == "mov" and mem is not None and not mem.implicit and mem.base \
                    and mem.index is None and mem.segment is None and register_family(mem.base) != "rip":
                base = self.base_object(register_family(mem.base), j, depth)
                return None if base is None else self.load(base, mem.disp, k)
            ops = [o.strip() for o in k.op_str.split(",")]
            if k.mnemonic == "mov" and len(ops) == 2 and depth:
                try:
                    return self.resolve(register_family(ops[1]), j, depth - 1)
                except (KeyError, ValueError):
                    return None
            return None
        return self.variable(self.regs[reg]) if reg in self.regs and self._unchanged(reg, 0) else None

    def base_object(self, base: str, at: int, depth: int = MAX_DEPTH) -> tuple[str, drgn.Object] | None:
        """The pointer in ``base`` when insns[at] executed."""
        if base in self.regs and self._unchanged(base, at + 1) and base not in self.insns[at].writes:
            found = self.variable(self.regs[base])
            if found is not None:
                self.steps.append({"type": "register", "register": base, "value": self.regs[base],
                                   "variable": found[0]})
                return found
        return self.resolve(base, at, depth - 1) if depth else None

    def load(self, base: tuple[str, drgn.Object], disp: int, insn: Instruction) -> tuple[str, drgn.Object] | None:
        """``base->member`` for the member at ``disp`` of the struct ``base`` points to."""
        expr, obj = base
        try:
            target = obj.type_.unaliased().type.unaliased()
            if target.kind not in (drgn.TypeKind.STRUCT, drgn.TypeKind.UNION):
                return None
            member = member_at_offset(target, disp)
        except (TypeError, ValueError, LookupError):
            return None
        if member.startswith("<") or "[" in member or "+" in member:
            return None
        out = obj
        try:
            for part in member.split("."):
                out = out.member_(part)
            address = out.address_
        except (LookupError, AttributeError, drgn.FaultError):
            return None
        self.steps.append({"type": "load", "instruction": insn.text, "address": address,
                           "struct": str(target.unqualified().type_name()), "member": member})
        return f"{expr}->{member}", out


def _symbol_offset(prog: drgn.Program, address: int) -> str:
    try:
        sym = prog.symbol(address)
    except LookupError:
        return f"{address:#x}"
    return sym.name + (f"+{address - sym.address:#x}" if address != sym.address else "")


def _call_text(prog: drgn.Program, call: Instruction) -> str:
    if call.branch_target is None:
        return call.text
    try:
        sym = prog.symbol(call.branch_target)
    except LookupError:
        return call.text
    name = sym.name
    if _THUNK.match(name) and name.endswith("_array"):
        reg = _thunk_register(prog, call.branch_target, "array")
        name = f"__x86_indirect_thunk_{reg}" if reg else name
    return call.text.replace(f"{call.branch_target:#x}", name)


def name_call_target(prog: drgn.Program, ret: int, regs: dict[str, int],
                     frames: Sequence[drgn.StackFrame], arch: str = "x86_64") -> dict | None:
    """Name the function pointer a call before ``ret`` went through.

    :param regs: the registers at the call (an exception frame at the bad target: nothing ran
        between the call and the fault, so they are the caller's registers, rsp 8 lower)
    :param frames: the caller's frames at ``ret`` (its inline chain), for DWARF variables
    :return: {"expression": "dev->ops->start", "struct", "member", "value", "address",
        "call", "register", "steps"} or None when it cannot be named
    """
    found = call_target(prog, ret)
    if found is None:
        return None
    insns, ci, reg, call = found
    namer = Namer(insns, ci, regs, frames, arch)
    if reg is not None:
        named = namer.resolve(reg, ci)
    else:
        mem = call.mem
        if mem is None or not mem.base or mem.index is not None or register_family(mem.base) == "rip":
            return None
        base = namer.base_object(register_family(mem.base), ci, MAX_DEPTH)
        named = None if base is None else namer.load(base, mem.disp, call)
    if named is None:
        return None
    expr, obj = named
    try:
        value = obj.value_()
    except (drgn.FaultError, ValueError):
        value = None
    last = namer.steps[-1] if namer.steps and namer.steps[-1]["type"] == "load" else {}
    return {
        "expression": expr,
        "struct": last.get("struct"),
        "member": last.get("member"),
        "address": last.get("address"),
        "value": value,
        "call": _call_text(prog, call),
        "call_address": call.address,
        "call_symbol": _symbol_offset(prog, call.address),
        "register": reg,
        "register_value": regs.get(reg) if reg else None,
        "steps": namer.steps,
    }
