"""The loop a PC sits in, read from a decoded function: its closing backward branch, its exits
and the conditions they test, the memory those conditions depend on, and the calls in it.

Pure: decoded instructions (decode/disasm.py) in, a Loop out. The dump-side reading (register
values, the polled memory's value, DWARF names) is helpers/loop.py.

x86-64 (jcc conditions and flag-setting instructions) and arm64 (``b.cond`` after
``cmp``/``tst``/``subs``…, and ``cbz``/``cbnz``/``tbz``/``tbnz``, which test a register
themselves).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kpostmortem import arch as arches
from kpostmortem.decode.disasm import Instruction, MemOperand
from kpostmortem.decode.regabi import abi

__all__ = ["Exit", "Loop", "find_loop", "negate", "condition_text", "POLLING_HINTS"]

# x86 condition codes: jcc suffix -> (relation of "a OP b" after cmp a, b, negation).
_X86_CC = {
    "e": "==", "z": "==", "ne": "!=", "nz": "!=",
    "a": ">u", "nbe": ">u", "ae": ">=u", "nb": ">=u", "nc": ">=u", "b": "<u", "nae": "<u", "c": "<u",
    "be": "<=u", "na": "<=u", "g": ">", "nle": ">", "ge": ">=", "nl": ">=", "l": "<", "nge": "<",
    "le": "<=", "ng": "<=", "s": "<0", "ns": ">=0",
}
_NEGATE = {"==": "!=", "!=": "==", ">u": "<=u", "<=u": ">u", ">=u": "<u", "<u": ">=u",
           ">": "<=", "<=": ">", ">=": "<", "<": ">=", "<0": ">=0", ">=0": "<0"}
_FLAG_SETTERS = ("test", "cmp", "and", "sub", "add", "dec", "inc", "or", "xor", "bt")

# A64 condition codes of b.cond after cmp a, b (same relations as x86's)
_A64_CC = {
    "eq": "==", "ne": "!=", "hs": ">=u", "cs": ">=u", "lo": "<u", "cc": "<u", "hi": ">u", "ls": "<=u",
    "ge": ">=", "lt": "<", "gt": ">", "le": "<=", "mi": "<0", "pl": ">=0",
}
# branches that test a register themselves: cbz/cbnz compare it with 0, tbz/tbnz test one bit
_A64_REG_TESTS = {"cbz": "==", "cbnz": "!=", "tbz": "==", "tbnz": "!="}
# only these set the flags on arm64 (add/sub/and without "s" do not)
_A64_FLAG_SETTERS = frozenset({"cmp", "cmn", "tst", "subs", "adds", "ands", "negs", "bics", "ccmp", "ccmn"})

POLLING_HINTS = frozenset({"pause", "yield", "wfe"})
"""Instructions that mark a spin-wait (cpu_relax() is ``pause`` on x86, ``yield`` on arm64;
arm64's smp_cond_load_*() waits in ``wfe``)."""


def _is_load(insn: Instruction) -> bool:
    m = insn.mnemonic.lower()
    return m.startswith("mov") or m.startswith("ld")


def negate(rel: str) -> str:
    return _NEGATE.get(rel, f"not {rel}")


@dataclass
class Exit:
    """One way out of the loop: a conditional branch and the condition under which it leaves."""

    branch: int
    """Address of the branch."""
    relation: str | None
    """The exit's condition as a relation ("!=", "==", ">u"…) between ``left`` and ``right``."""
    left: str | None = None
    """What is compared: a register ("eax"), a memory operand, or "X & 0x4"-style text."""
    right: str | None = None
    """What it is compared with ("0", "0x10", a register)."""
    mask: int | None = None
    """For ``test x, imm``: the bits tested."""
    setter: int | None = None
    """Address of the instruction that set the flags."""
    memory: MemOperand | None = None
    """The memory the tested value came from (a load in the loop, or the compare's operand)."""
    load: int | None = None
    """Address of the load that read ``memory``, when it is not the compare itself."""


@dataclass
class Loop:
    """A loop in a decoded function."""

    head: int
    """Address the closing branch jumps back to (first instruction of the loop)."""
    closing: int
    """Address of the backward branch that closes it."""
    end: int
    """Address just past the closing branch."""
    instructions: list[Instruction] = field(default_factory=list)
    exits: list[Exit] = field(default_factory=list)
    calls: list[tuple[int, int | None, str]] = field(default_factory=list)
    """(address, direct target or None, operand text) of each call in the loop."""
    relaxes: bool = False
    """Contains a spin-wait hint (cpu_relax(): ``pause``, ``yield``)."""
    relax_instruction: str | None = None
    """That hint's mnemonic."""
    written: frozenset[str] = frozenset()
    """Registers the loop may change (explicit writes, and caller-saved ones at each call)."""

    def __contains__(self, address: int) -> bool:
        return self.head <= address < self.end


def _cc(mnemonic: str) -> str | None:
    m = mnemonic.lower()
    if m.startswith("b."):
        return _A64_CC.get(m[2:])
    if m in _A64_REG_TESTS:
        return _A64_REG_TESTS[m]
    if not m.startswith("j") or m in ("jmp", "jecxz", "jrcxz"):
        return None
    return _X86_CC.get(m[1:])


def _is_branch(insn: Instruction) -> bool:
    m = insn.mnemonic.lower()
    return insn.branch_target is not None and not insn.is_call and (
        m.startswith("j") or m == "b" or m.startswith("b.") or m in _A64_REG_TESTS)


def find_loop(insns: list[Instruction], pc: int, arch: str = "x86_64") -> Loop | None:
    """The innermost loop of ``insns`` (one function, decoded in order) containing ``pc``.

    A loop is closed by a backward branch at ``b`` to ``t`` with ``t <= pc <= b``; of several,
    the shortest. Returns None when no backward branch spans ``pc``.
    """
    best: tuple[int, int, int] | None = None
    for i, insn in enumerate(insns):
        t = insn.branch_target
        if not _is_branch(insn) or t is None or t > insn.address:
            continue
        if t <= pc <= insn.address and (best is None or insn.address - t < best[1] - best[0]):
            best = (t, insn.address, i)
    if best is None:
        return None
    head, closing, ci = best
    body = [k for k in insns if head <= k.address <= closing]
    close = insns[ci]
    loop = Loop(head=head, closing=closing, end=close.address + close.size, instructions=body)
    conv = abi(arch)
    written: set[str] = set()
    for k in body:
        written.update(k.writes)
        if k.is_call:
            loop.calls.append((k.address, k.branch_target, k.op_str))
            written.update(conv.caller_saved)
        if k.mnemonic in POLLING_HINTS:
            loop.relaxes = True
            loop.relax_instruction = k.mnemonic
    loop.written = frozenset(written)
    for idx, k in enumerate(body):
        rel = _cc(k.mnemonic)
        if rel is None or k.branch_target is None:
            continue
        if k.address == closing and k.branch_target == head:
            exit_rel = negate(rel)  # falls through (leaves) when the back-branch is not taken
        elif k.branch_target in loop:
            continue
        else:
            exit_rel = rel  # taken branch leaves the loop
        loop.exits.append(_describe_exit(body, idx, exit_rel, arch))
    return loop


def _is_flag_setter(insn: Instruction, arch: str) -> bool:
    mnem = insn.mnemonic.split()[-1].lower()
    if arch == "aarch64":
        return mnem in _A64_FLAG_SETTERS
    return mnem.startswith(_FLAG_SETTERS)


def _describe_register_test(body: list[Instruction], idx: int, ex: Exit, arch: str) -> Exit:
    """arm64's cbz/cbnz (register == / != 0) and tbz/tbnz (one bit clear / set)."""
    branch = body[idx]
    ops = [o.strip() for o in branch.op_str.split(",")]
    reg = ops[0] if ops else None
    ex.setter = branch.address
    if branch.mnemonic.lower() in ("tbz", "tbnz") and len(ops) > 1:
        try:
            ex.mask = 1 << int(ops[1].lstrip("#"), 0)
        except ValueError:
            ex.mask = None
        ex.left, ex.right = (f"{reg} & {ex.mask:#x}" if ex.mask is not None else reg), "0"
    else:
        ex.left, ex.right = reg, "0"
    return _trace_load(body, idx, reg, ex, arch)


def _trace_load(body: list[Instruction], before: int, reg: str | None, ex: Exit, arch: str) -> Exit:
    """The tested register: loaded from memory earlier in the loop (mov/movzx…/ldr… reg, [mem]).
    Instructions list what they write as 64-bit registers (``writes``): so is ``reg`` here."""
    fam = arches.get(arch).register_family(reg) if reg else None
    if fam is None:
        return ex
    for j in range(before - 1, -1, -1):
        k = body[j]
        if fam in k.writes or k.is_call:
            if k.mem is not None and not k.mem.implicit and _is_load(k) and not k.is_call:
                ex.memory = k.mem
                ex.load = k.address
            break
    return ex


def _describe_exit(body: list[Instruction], idx: int, rel: str, arch: str = "x86_64") -> Exit:
    """What the branch at body[idx] tests: the flag setter before it, and where its value came
    from (a load of memory earlier in the loop)."""
    ex = Exit(branch=body[idx].address, relation=rel)
    if body[idx].mnemonic.lower() in _A64_REG_TESTS:
        return _describe_register_test(body, idx, ex, arch)
    setter = None
    for j in range(idx - 1, -1, -1):
        if _is_flag_setter(body[j], arch):
            setter = j
            break
        if body[j].is_call or _is_branch(body[j]):
            break
    if setter is None:
        ex.relation = None
        return ex
    s = body[setter]
    ex.setter = s.address
    ops = [o.strip() for o in s.op_str.split(",")]
    mnem = s.mnemonic.split()[-1].lower()
    left = ops[0] if ops else None
    right = ops[1] if len(ops) > 1 else None
    if right is not None and right.startswith("#"):
        right = right[1:]  # A64 immediates: "#0x4"
    if mnem in ("test", "tst"):
        if right == left:
            right = "0"
            # test r, r: e/ne compare r with 0; s/ns its sign
        else:
            try:
                ex.mask = int(right or "", 0)
            except ValueError:
                ex.mask = None
            left = f"{left} & {right}"
            right = "0"
            ex.relation = {"==": "==", "!=": "!="}.get(rel, rel)
    elif mnem in ("cmp", "cmn"):
        pass
    else:
        right = "0"  # and/sub/add/dec…: the flags describe the result
    ex.left, ex.right = left, right
    if s.mem is not None and not s.mem.implicit:
        ex.memory = s.mem
        return ex
    return _trace_load(body, setter, ops[0] if ops else None, ex, arch)


def condition_text(ex: Exit, name: str | None = None) -> str | None:
    """The exit condition in words, with ``name`` for the polled value: "`dev->stop` != 0"."""
    if ex.relation is None or ex.left is None:
        return None
    left = ex.left
    if name:
        left = f"`{name}` & {ex.mask:#x}" if ex.mask is not None else f"`{name}`"
    rel = ex.relation.replace("u", " (unsigned)") if ex.relation.endswith("u") else ex.relation
    if rel == "<0":
        return f"{left} < 0"
    if rel == ">=0":
        return f"{left} >= 0"
    if ex.mask is not None and ex.right == "0":
        return f"{left} is {'non-zero (a tested bit set)' if rel == '!=' else 'zero (the tested bits clear)'}"
    return f"{left} {rel} {ex.right}"
