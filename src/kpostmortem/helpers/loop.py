"""What a stuck CPU was doing: the loop around the interrupted PC, read from the dump.

``stuck_loop(prog, trace, index)`` decodes the function of a pt_regs frame (an interrupt or
NMI stopped the CPU there), finds the loop containing the PC (decode/loops.py), and reads
back what it polls: the address from the frame's saved registers, the value from the dump's
memory, the name through DWARF ("`dev->stop`"). It also says whether the loop sleeps or
yields (then it is not a busy-wait), and which spin lock, taken before the loop in the same
function with no unlock on the way, is still held in the dump.

Works in any drgn session on any kernel; nothing here knows a driver's names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import drgn

from kpostmortem.decode.disasm import Instruction, effective_address, register_family
from kpostmortem.decode.loops import Loop, condition_text, find_loop
from kpostmortem.decode.regabi import abi
from kpostmortem.helpers.fault import _pointer_suspects_in, _source_of, _symbolize, program_arch

__all__ = ["stuck_loop", "SLEEPS", "LOCKS", "UNLOCKS"]

MAX_FUNCTION = 64 * 1024
"""Functions larger than this are not decoded whole."""

SLEEPS = re.compile(
    r"^(schedule\w*|__?cond_resched\w*|cond_resched\w*|msleep\w*|ssleep|usleep_range\w*|fsleep|"
    r"io_schedule\w*|yield|__might_sleep|wait_for_completion\w*|__wait_event\w*|prepare_to_wait\w*|"
    r"mutex_lock\w*|down\w*|rwsem_down\w*|__sched_yield|kthread_should_stop_or_park|"
    r"synchronize_rcu\w*|rcu_barrier\w*|flush_work|flush_workqueue|__flush_work\w*)$")
"""Callees that sleep or yield the CPU: a loop calling one is waiting, not spinning."""

LOCKS = re.compile(r"^_raw_(spin|read|write)_lock(_irqsave|_irq|_bh|_nested|_irqsave_nested)?$"
                   r"|^(do_raw_spin_lock|queued_spin_lock_slowpath|queued_(read|write)_lock_slowpath)$")
UNLOCKS = re.compile(r"^_raw_(spin|read|write)_unlock(_irqrestore|_irq|_bh)?$|^do_raw_spin_unlock$")


def _branch_text(prog: drgn.Program, insn: Instruction) -> str:
    if insn.branch_target is None:
        return insn.text
    return insn.text.replace(f"{insn.branch_target:#x}", _symbolize(prog, insn.branch_target))


def _function_code(prog: drgn.Program, pc: int) -> tuple[drgn.Symbol, list[Instruction]] | None:
    try:
        sym = prog.symbol(pc)
    except LookupError:
        return None
    if not sym.size or sym.size > MAX_FUNCTION:
        return None
    try:
        code = prog.read(sym.address, sym.size)
    except drgn.FaultError:
        return None
    return sym, program_arch(prog).decode(code, sym.address)


def _callee(prog: drgn.Program, target: int | None, text: str) -> str:
    if target is None:
        return text
    try:
        sym = prog.symbol(target)
    except LookupError:
        return f"{target:#x}"
    return sym.name if sym.address == target else _symbolize(prog, target)


def _read_uint(prog: drgn.Program, address: int, size: int) -> int | None:
    try:
        return int.from_bytes(prog.read(address, size), "little")
    except (drgn.FaultError, ValueError, OverflowError):
        return None


def _name_memory(prog: drgn.Program, trace: Sequence[drgn.StackFrame], first: int, idx: int,
                 base_value: int | None, disp: int, size: int, address: int) -> tuple[str | None, dict]:
    """Name polled memory: a member through a pointer variable (DWARF), else a global symbol."""
    facts: dict = {}
    if base_value is not None and trace:
        holders = _pointer_suspects_in(trace, first, idx, base_value, disp, size)
        if holders:
            frame, h = holders[0]
            facts |= {"variable": h.name, "member": h.member, "struct": h.struct, "type": h.type,
                      "frame": frame}
            return (f"{h.name}->{h.member}" if h.member else f"*{h.name}"), facts
    try:
        sym = prog.symbol(address)
        off = address - sym.address
        facts["symbol"] = sym.name
        return (sym.name if not off else f"{sym.name}+{off:#x}"), facts
    except LookupError:
        return None, facts


def _lines(prog: drgn.Program, loop: Loop) -> str | None:
    """file:first–last source lines the loop's instructions map to."""
    files: dict[str, list[int]] = {}
    for k in loop.instructions:
        src = _source_of(prog, k.address)
        if not src or ":" not in src:
            continue
        f, _, line = src.rpartition(":")
        try:
            files.setdefault(f, []).append(int(line))
        except ValueError:
            continue
    if not files:
        return None
    f, lines = max(files.items(), key=lambda kv: len(kv[1]))
    lo, hi = min(lines), max(lines)
    return f"{f}:{lo}" if lo == hi else f"{f}:{lo}–{hi}"


def _lock_argument(prog: drgn.Program, insns: list[Instruction], call_index: int, regs: dict[str, int],
                   pc: int, arch: str) -> tuple[int | None, str | None, int | None]:
    """The lock a call at insns[call_index] takes: (address, base register, displacement) when the
    first argument register is set from a callee-saved register (unchanged up to the PC, so
    the saved registers give its value) or from a constant."""
    conv = abi(arch)
    arg = conv.arguments[0]
    for j in range(call_index - 1, -1, -1):
        k = insns[j]
        if k.is_call:
            return None, None, None
        if arg not in k.writes:
            continue
        ops = [o.strip() for o in k.op_str.split(",")]
        if k.mnemonic == "mov" and len(ops) == 2 and not k.mem:
            try:
                return int(ops[1], 0) & (2**64 - 1), None, None
            except ValueError:
                src = ops[1]
                try:
                    fam = register_family(src)
                except (KeyError, ValueError):
                    return None, None, None
                disp = 0
        elif k.mnemonic == "lea" and "[" in k.op_str:
            # lea has no memory access (mem is None): parse "[rbx + 0x10]".
            m = re.search(r"\[(\w+)(?: \+ (0x[0-9a-f]+|\d+))?\]", k.op_str)
            if not m:
                return None, None, None
            if m.group(1) == "rip":
                return (k.next_address + int(m.group(2) or "0", 0)) & (2**64 - 1), None, None
            fam, disp = register_family(m.group(1)), int(m.group(2) or "0", 0)
        else:
            return None, None, None
        if not conv.survives_call(fam):
            return None, fam, disp
        # Unchanged from here to the PC? (callee-saved: calls keep it)
        later = [x for x in insns if k.address < x.address < pc]
        if any(fam in x.writes for x in later) or fam not in regs:
            return None, fam, disp
        return (regs[fam] + disp) & (2**64 - 1), fam, disp
    return None, None, None


def _held_locks(prog: drgn.Program, insns: list[Instruction], loop: Loop, regs: dict[str, int], pc: int,
                trace: Sequence[drgn.StackFrame], first: int, idx: int, arch: str) -> list[dict]:
    """Spin locks taken before the loop (in address order) with no unlock call on the way."""
    taken: list[dict] = []
    for i, k in enumerate(insns):
        if k.address >= loop.head:
            break
        if not k.is_call:
            continue
        name = _callee(prog, k.branch_target, k.op_str)
        if UNLOCKS.match(name):
            if taken:
                taken.pop()
            continue
        if not LOCKS.match(name):
            continue
        lock: dict = {"call": name, "at": _symbolize(prog, k.address), "source": _source_of(prog, k.address)}
        addr, base, disp = _lock_argument(prog, insns, i, regs, pc, arch)
        if addr is not None:
            lock["address"] = addr
            lock["locked_byte"] = _read_uint(prog, addr, 1)
            lock["held"] = None if lock["locked_byte"] is None else bool(lock["locked_byte"])
            expr, facts = _name_memory(prog, trace, first, idx, regs.get(base) if base else None,
                                       disp or 0, 4, addr)
            lock["name"] = expr
            lock.update({f"dwarf_{k2}": v for k2, v in facts.items()})
        taken.append(lock)
    return taken


def _preempt_count_address(prog: drgn.Program) -> int | None:
    """Per-CPU offset of the preempt counter: ``__preempt_count`` up to 6.1,
    ``pcpu_hot.preempt_count`` since 6.2 (x86 "x86/percpu: Move preempt_count next to
    current_task"). Per-CPU symbols are zero-based, so kallsyms cannot map an address to them."""
    try:
        return prog.symbol("__preempt_count").address
    except LookupError:
        pass
    try:
        return prog["pcpu_hot"].preempt_count.address_
    except (KeyError, LookupError, AttributeError):
        return None


def _preempt_disabled(prog: drgn.Program, insns: list[Instruction], loop: Loop) -> dict | None:
    """`inc gs:[preempt count]` before the loop with no `dec` on the way: preempt_disable()."""
    counter = _preempt_count_address(prog)
    if counter is None:
        return None
    depth, where = 0, None
    for k in insns:
        if k.address >= loop.head:
            break
        mem = k.mem
        if k.mnemonic not in ("inc", "dec", "add", "sub") or mem is None or mem.segment != "gs":
            continue
        addr = (k.next_address + mem.disp) & (2**64 - 1) if mem.base == "rip" else mem.disp
        if addr != counter:
            continue
        if k.mnemonic == "inc" or (k.mnemonic == "add" and k.op_str.endswith(", 1")):
            depth, where = depth + 1, k
        elif depth:
            depth -= 1
    if not depth or where is None:
        return None
    return {"at": _symbolize(prog, where.address), "address": where.address, "bytes": where.bytes.hex(),
            "text": where.text}


def stuck_loop(prog: drgn.Program, trace: Sequence[drgn.StackFrame], index: int,
               arch: str | None = None) -> dict | None:
    """The loop around the PC of ``trace[index]`` (an interrupted frame), as report data; None
    when the PC is in no loop of its function (or the function cannot be decoded).

    :param arch: "x86_64" or "aarch64"; the program's own when not given
    """
    if arch is None:
        arch = "aarch64" if prog.platform is not None and prog.platform.arch == drgn.Architecture.AARCH64 \
            else "x86_64"
    pc = trace[index].pc
    # the frames at the PC: inline ones (outermost last) and the physical frame they are in,
    # whichever of them the exception frame was found at (arm64 marks the innermost inline one)
    while trace[index].is_inline and index + 1 < len(trace) and trace[index + 1].pc == pc:
        index += 1
    frame = trace[index]
    first = index
    while first > 0 and trace[first - 1].is_inline and trace[first - 1].pc == pc:
        first -= 1
    try:
        regs = {k.lower(): v for k, v in frame.registers().items()}
    except (LookupError, ValueError):
        regs = {}
    found = _function_code(prog, pc)
    if found is None:
        return None
    sym, insns = found
    loop = find_loop(insns, pc, arch)
    if loop is None:
        return None
    out: dict = {
        "function": trace[first].function_name or sym.name,
        "frame_index": first,
        "head": loop.head, "head_symbol": _symbolize(prog, loop.head),
        "closing_branch": loop.closing, "closing_symbol": _symbolize(prog, loop.closing),
        "closing_instruction": _branch_text(prog, next(k for k in loop.instructions if k.address == loop.closing)),
        "source": _lines(prog, loop),
        "relaxes": loop.relaxes, "relax_instruction": loop.relax_instruction,
        "calls": [], "exits": [], "polls": [],
    }
    sleeps = []
    for addr, target, text in loop.calls:
        name = _callee(prog, target, text)
        out["calls"].append({"at": _symbolize(prog, addr), "callee": name})
        if SLEEPS.match(name):
            sleeps.append(name)
    out["sleeps"] = sleeps
    out["busy_wait"] = not sleeps
    for ex in loop.exits:
        e: dict = {"branch": _symbolize(prog, ex.branch), "relation": ex.relation,
                   "left": ex.left, "right": ex.right, "mask": ex.mask}
        name = None
        mem = ex.memory
        if mem is not None and mem.base and register_family(mem.base) != "rip" and mem.segment is None:
            base = register_family(mem.base)
            index_ok = mem.index is None or register_family(mem.index) not in loop.written
            if base not in loop.written and index_ok and base in regs:
                address = effective_address(mem, regs)
                poll: dict = {"operand": f"[{mem.base} + {mem.disp:#x}]" if mem.disp else f"[{mem.base}]",
                              "base_register": base, "base_value": regs[base], "displacement": mem.disp,
                              "address": address, "size": mem.size,
                              "value": _read_uint(prog, address, mem.size) if address is not None else None,
                              "read_at": _symbolize(prog, ex.load if ex.load is not None else ex.setter)}
                name, facts = _name_memory(prog, trace, first, index, regs[base], mem.disp, mem.size,
                                           address or 0)
                poll["name"] = name
                poll.update({f"dwarf_{k}": v for k, v in facts.items()})
                out["polls"].append(poll)
                e["poll"] = len(out["polls"]) - 1
            else:
                e["unknown"] = f"{base} changes inside the loop: the polled address is not fixed"
        elif mem is not None and mem.base and register_family(mem.base) == "rip":
            pc_next = next((k.next_address for k in loop.instructions
                            if k.address == (ex.load if ex.load is not None else ex.setter)), None)
            address = effective_address(mem, regs, next_pc=pc_next)
            if address is not None:
                name, facts = _name_memory(prog, trace, first, index, None, 0, mem.size, address)
                out["polls"].append({"operand": "rip-relative", "address": address, "size": mem.size,
                                     "value": _read_uint(prog, address, mem.size), "name": name,
                                     "read_at": _symbolize(prog, ex.load if ex.load is not None else ex.setter)}
                                    | {f"dwarf_{k}": v for k, v in facts.items()})
                e["poll"] = len(out["polls"]) - 1
        # Unnamed (no DWARF): the operand stands for the polled value, not the register it went to.
        poll_operand = out["polls"][e["poll"]]["operand"] if e.get("poll") is not None else None
        e["text"] = condition_text(ex, name or poll_operand)
        out["exits"].append(e)
    out["locks_held"] = _held_locks(prog, insns, loop, regs, pc, trace, first, index, arch)
    out["preempt_disabled"] = _preempt_disabled(prog, insns, loop)
    flags = regs.get("rflags", regs.get("eflags"))
    if flags is not None:
        out["interrupts_enabled"] = bool(flags & 0x200)  # IF in the saved flags
    out["text"] = _loop_text(out)
    return out


def _loop_text(lp: dict) -> str:
    """One sentence: where the loop is, what it polls, when it exits, what holds."""
    where = f"{lp['head_symbol']}–{lp['closing_symbol']}" + (f" ({lp['source']})" if lp.get("source") else "")
    parts = [f"spins in the loop {where}, closed by `{lp['closing_instruction']}` at {lp['closing_symbol']}"]
    if lp.get("preempt_disabled"):
        parts.append(f"with preemption disabled since {lp['preempt_disabled']['at']}")
    for lock in lp.get("locks_held") or []:
        name = f"`{lock['name']}`" if lock.get("name") else "a lock"
        state = {True: "still held in the dump", False: "not held in the dump"}.get(lock.get("held"), "")
        parts.append(f"with {name} taken by {lock['call']} at {lock['at']}" + (f" ({state})" if state else ""))
    if not lp["busy_wait"]:
        parts = [f"loops in {where} but calls {', '.join(lp['sleeps'])}: it sleeps or yields, not a busy-wait"]
    for e in lp["exits"]:
        poll = lp["polls"][e["poll"]] if e.get("poll") is not None else None
        if poll is not None and poll.get("name") and e.get("text"):
            held = "" if poll.get("value") is None else f"; it holds {poll['value']:#x} in the dump"
            parts.append(f"polls `{poll['name']}`, exits only when {e['text']}{held}")
        elif e.get("text"):
            parts.append(f"exits when {e['text']}")
    if not lp["exits"]:
        parts.append("no conditional exit: it can only leave by an interrupt or a call")
    return "; ".join(parts)
