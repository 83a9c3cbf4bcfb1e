"""Explain the faulting instruction of an exception frame: decode, operand, register, variable.

``explain_fault(prog, trace)`` works in any drgn session; the fault analyzer uses it too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import drgn
from drgn.helpers.common.type import member_at_offset

from kpostmortem import arch as arches
from kpostmortem.arch import aarch64
from kpostmortem.decode.cpuevent import event_of_entry
from kpostmortem.decode.disasm import Instruction, register_family
from kpostmortem.decode.faultclass import classify_address, decode_pf_error_code, recognize_poison
from kpostmortem.decode.regabi import Abi, abi
from kpostmortem.helpers.modules import kernel_text, module_of_address
from kpostmortem.helpers.source import normalize_source_path

__all__ = ["FaultExplanation", "Suspect", "explain_fault", "explain_fault_at", "exception_frame_index", "read_code"]

CODE_BEFORE = 64
CODE_AFTER = 32


@dataclass
class Suspect:
    """A variable (local or parameter) that held the bad pointer at the faulting PC."""

    name: str
    """Variable name."""
    type: str
    """Its C type."""
    function: str
    """Function (possibly inlined) it belongs to."""
    member: str | None = None
    """Struct member accessed through it at the operand's displacement."""
    struct: str | None = None
    """The pointed-to type."""


@dataclass
class FaultExplanation:
    """What the trapping instruction tried to do, and with what."""

    frame_index: int
    """Index of the exception (pt_regs) frame in the trace."""
    pc: int
    function: str | None
    source: str | None
    registers: dict[str, int] = field(default_factory=dict)
    instructions: list[dict] = field(default_factory=list)
    """Decoded window: address, symbol, text, source, trap (bool)."""
    trap_index: int | None = None
    trapping_instruction: str | None = None
    access: str | None = None
    """"read", "write", "read-write" or None for a non-memory instruction."""
    operand: str | None = None
    """The memory operand as written, e.g. ``dword ptr [rbx + 0x18]``."""
    base_register: str | None = None
    index_register: str | None = None
    displacement: int | None = None
    effective_address: int | None = None
    fault_address: int | None = None
    """CR2 / the address the kernel reported."""
    fault_address_source: str | None = None
    address_matches: bool | None = None
    """Effective address == reported fault address."""
    address_class: dict | None = None
    poison: str | None = None
    bad_register: str | None = None
    """The register that held the bad pointer."""
    bad_register_value: int | None = None
    error_code: dict | None = None
    suspects: list[Suspect] = field(default_factory=list)
    mapping: str | None = None
    """Page-table walk of the fault address in init_mm: "mapped", "not mapped", or why unknown."""
    identity: str | None = None
    """What the fault address is (drgn's identify_address: vmap area, slab object, symbol…)."""
    identity_fact: dict | None = None
    """The identity as a re-checkable fact: {"type": "vmap", "address", "start", "end"} or
    {"type": "identify", "address", "text"} (drgn's identify_address)."""
    va_bits: int = 48
    """Virtual address bits of this kernel (57 with 5-level paging)."""
    origin: dict | None = None
    """Where the bad register got its value: the instruction that loaded it and from what."""
    bug: dict | None = None
    """The ``__bug_table`` entry of the PC (file, line, warning flag), for BUG()/WARN()."""
    invalid_pc: bool = False
    """True when the PC itself is not in kernel text (a call through a bad function pointer)."""
    caller: dict | None = None
    """For an invalid PC: the caller found from the return address on the stack."""
    slab_object: dict | None = None
    """A freed slab object the bad pointer was read from (or points into), with its alloc/free
    tracks when the cache stores them (slub_debug=U; helpers/slabtrack.py)."""
    call_target: dict | None = None
    """For an invalid PC: the function pointer the caller called through, named through the
    decoded call, the loads before it and DWARF (helpers/provenance.py), e.g.
    {"expression": "dev->ops->start", "struct": "struct foo_ops", "member": "start", "value": 0}."""
    from_log: bool = False
    """True when explained from an earlier oops's log record (RIP, register dump), not a frame."""
    is_ud2: bool = False
    cpu_event: dict | None = None
    """What happened to the CPU at this frame (decode/cpuevent.py): the exception vector and the
    words for its instruction ("faulting instruction", "trapping instruction")."""
    code_source: str | None = None
    """"dump" when the bytes were read from the dump's memory, "debug-file" as fallback."""
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        lines = [f"fault in {self.function or '?'} ({self.source or 'source unknown'}), frame #{self.frame_index}"]
        for insn in self.instructions:
            lines.append(f"  {'→' if insn['trap'] else ' '} {insn['symbol']:<34s} {insn['text']}")
        if self.invalid_pc:
            lines.append(f"  PC {self.pc:#x} is not in kernel text; called from "
                         f"{(self.caller or {}).get('symbol', '?')}")
        if self.operand:
            lines.append(f"  {self.access} of {self.operand}: effective address "
                         f"{'?' if self.effective_address is None else hex(self.effective_address)}, "
                         f"fault address {'?' if self.fault_address is None else hex(self.fault_address)}")
        if self.bad_register:
            lines.append(f"  bad pointer in {self.bad_register} = {self.bad_register_value:#x}"
                         + (f" ({self.poison})" if self.poison else ""))
        if self.address_class:
            lines.append(f"  {self.address_class['description']}")
        for s in self.suspects:
            access = f", accessing {s.name}->{s.member}" if s.member else ""
            lines.append(f"  {self.bad_register} holds `{s.name}` ({s.type}) in {s.function}(){access}")
        if self.origin and self.origin.get("text"):
            lines.append(f"  {self.origin['text']}")
        if self.mapping:
            lines.append(f"  page-table walk: {self.mapping}" + (f"; {self.identity}" if self.identity else ""))
        if self.bug and self.bug.get("file"):
            lines.append(f"  __bug_table: {'WARN' if self.bug['warning'] else 'BUG'} at "
                         f"{self.bug['file']}:{self.bug['line']}")
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)


# Where kdump saves the crashing CPU's registers: drgn marks these frames as interrupted,
# but their registers are a snapshot taken by panic()/crash_kexec(), not an exception.
KDUMP_CAPTURE = frozenset({
    "crash_setup_regs", "__crash_kexec", "crash_kexec", "machine_crash_shutdown",
    "native_machine_crash_shutdown", "crash_save_cpu", "panic", "vpanic",
})


def is_kdump_capture_frame(frame: drgn.StackFrame) -> bool:
    """True for the frames whose registers kdump captured at crash time."""
    return (frame.function_name or frame.name or "") in KDUMP_CAPTURE


def exception_frame_index(trace: Sequence[drgn.StackFrame]) -> int | None:
    """Index of the innermost frame whose registers come from an exception (pt_regs)."""
    n = len(trace)
    for i, frame in enumerate(trace):
        if frame.pc < 1 << 63 and 0 < i == n - 1:
            return None  # user space below the syscall: its pt_regs are not a kernel exception
        if frame.interrupted and not is_kdump_capture_frame(frame):
            return i
    # arm64: a frame right after an EL1 vector's entry code took the exception; drgn reached
    # it through the frame record in pt_regs, so it is not marked interrupted (exception_registers)
    for i in range(n - 1):
        if (trace[i].name or "") in aarch64.EXCEPTION_VECTORS:
            return i + 1
    return None


def exception_registers(prog: drgn.Program, trace: Sequence[drgn.StackFrame], idx: int) -> dict[str, int]:
    """The registers at the exception frame ``idx``: drgn's for an interrupted frame, else
    (arm64, see exception_frame_index) the pt_regs whose frame record the vector entry
    frame before it points at: ``x29 - offsetof(struct pt_regs, stackframe)``."""
    frame = trace[idx]
    if frame.interrupted or idx == 0:
        return {k.lower(): v for k, v in frame.registers().items()}
    try:
        pt_regs_type = prog.type("struct pt_regs")
        fp = trace[idx - 1].register("x29")
        regs = drgn.Object(prog, pt_regs_type, address=fp - drgn.offsetof(pt_regs_type, "stackframe"))
        out = {f"x{n}": int(regs.regs[n]) for n in range(31)}
        out |= {"sp": int(regs.sp), "pstate": int(regs.pstate)}
        if int(regs.pc) != frame.pc:
            raise ValueError("pt_regs.pc is not the frame's PC")
        return out
    except (LookupError, ValueError, drgn.FaultError):
        return {k.lower(): v for k, v in frame.registers().items()}


def read_code(prog: drgn.Program, pc: int, before: int = CODE_BEFORE, after: int = CODE_AFTER) -> tuple[bytes, int]:
    """Read instruction bytes around ``pc``: (bytes, start address).

    Shrinks the window when pages are missing from the dump.
    """
    for b, a in ((before, after), (before, 16), (32, 16), (0, 16)):
        try:
            return prog.read(pc - b, b + a), pc - b
        except drgn.FaultError:
            continue
    raise drgn.FaultError("instruction bytes not in the dump", pc)


def _symbolize(prog: drgn.Program, addr: int) -> str:
    try:
        sym = prog.symbol(addr)
    except LookupError:
        return f"0x{addr:x}"
    off = addr - sym.address
    return f"{sym.name}+0x{off:x}" if off else sym.name


def _source_of(prog: drgn.Program, addr: int) -> str | None:
    try:
        locs = prog.source_location(addr)
    except (LookupError, ValueError):
        return None
    try:
        loc = locs[0]
    except IndexError:
        return None
    return f"{normalize_source_path(loc.filename)}:{loc.line}"


def _same_function(prog: drgn.Program, insns: list[Instruction], trap: int) -> tuple[list[Instruction], int]:
    try:
        sym = prog.symbol(insns[trap].address)
    except LookupError:
        return insns, trap
    lo, hi = sym.address, sym.address + (sym.size or 0)
    keep = [i for i, insn in enumerate(insns) if lo <= insn.address < hi or i == trap]
    return [insns[i] for i in keep], keep.index(trap)


def _insn_dict(prog: drgn.Program, insn: Instruction, trap: bool) -> dict:
    text = f"{insn.mnemonic} {insn.op_str}".strip()
    target = None
    if insn.branch_target is not None:
        target = _symbolize(prog, insn.branch_target)
        text = text.replace(f"0x{insn.branch_target:x}", target)
    return {
        "address": insn.address,
        "symbol": _symbolize(prog, insn.address),
        "bytes": insn.bytes.hex(),
        "text": text,
        "target": target,
        "source": _source_of(prog, insn.address),
        "trap": trap,
    }


def _pointer_suspects(trace: Sequence[drgn.StackFrame], first: int, last: int, value: int,
                      disp: int, size: int) -> list[Suspect]:
    """Variables of frames first..last (an inline chain at one PC) that are pointers equal to value."""
    return [s for _, s in _pointer_suspects_in(trace, first, last, value, disp, size)]


def _pointer_suspects_in(trace: Sequence[drgn.StackFrame], first: int, last: int, value: int,
                         disp: int, size: int) -> list[tuple[int, Suspect]]:
    """The same, each with the index of the frame it was read in."""
    found: list[tuple[int, int, Suspect]] = []
    for i in range(first, last + 1):
        frame = trace[i]
        func = frame.function_name or frame.name or "?"
        try:
            names = frame.locals()
        except (LookupError, ValueError):
            continue
        for name in names:
            try:
                obj = frame[name]
                if obj.absent_:
                    continue
                t = obj.type_.unaliased()
                if t.kind != drgn.TypeKind.POINTER or obj.value_() != value:
                    continue
            except (drgn.FaultError, LookupError, ValueError, TypeError, drgn.ObjectAbsentError):
                continue
            target = t.type.unaliased()
            member = None
            score = 0
            if target.kind in (drgn.TypeKind.STRUCT, drgn.TypeKind.UNION, drgn.TypeKind.CLASS):
                try:
                    # drgn names every union member at that offset ("val.counter or locked or
                    # locked_pending"): keep one designator, the first whose size is the access's
                    choices = member_at_offset(target, disp).split(" or ")
                    member = next((m for m in choices if _member_size(target, m) == size), choices[0])
                    if not member.startswith("<"):
                        score = 3 if _member_size(target, member) == size else 2
                except (TypeError, ValueError):
                    member = None
            suspect = Suspect(
                name=name,
                type=str(obj.type_.type_name()),
                function=func,
                member=member,
                struct=str(target.type_name()) if member else None,
            )
            found.append((score, i, suspect))
    found.sort(key=lambda x: -x[0])
    if found and found[0][0] > 0:
        best = found[0][0]
        return [(i, s) for sc, i, s in found if sc == best]
    return [(i, s) for _, i, s in found]


def virtual_address_bits(prog: drgn.Program) -> int:
    """48, or 57 when the kernel runs with 5-level paging (LA57)."""
    for name in ("__pgtable_l5_enabled", "pgtable_l5_enabled"):
        try:
            return 57 if int(prog[name]) else 48
        except (KeyError, LookupError, TypeError, drgn.FaultError):
            continue
    return 48


def kernel_mapping(prog: drgn.Program, addr: int) -> str:
    """Walk init_mm's page tables for a kernel address: "mapped", "not mapped" or "unknown: why"."""
    from drgn.helpers.linux.mm import follow_phys

    if addr >> 63 == 0:
        return "user address (not walked)"
    try:
        follow_phys(prog["init_mm"].address_of_(), addr)
        return "mapped"
    except drgn.FaultError as e:
        text = str(e)
        if "excluded" in text or "not present in the dump" in text:
            return f"unknown: page tables not in the dump ({text})"
        return "not mapped"
    except (LookupError, ValueError, NotImplementedError) as e:
        return f"unknown: {e}"


def identify(prog: drgn.Program, addr: int) -> str | None:
    """drgn's identify_address, never raising."""
    from drgn.helpers.common.memory import identify_address

    try:
        return identify_address(prog, addr)
    except (drgn.FaultError, LookupError, ValueError, TypeError, OverflowError):
        return None


VM_NO_GUARD = 0x40  # include/linux/vmalloc.h


def vmap_area_of(prog: drgn.Program, addr: int) -> tuple[int, int] | None:
    """(va_start, va_end) of the vmap area holding ``addr``, if any."""
    from drgn.helpers.linux.mm import find_vmap_area

    try:
        va = find_vmap_area(prog, addr)
        return (int(va.va_start), int(va.va_end)) if va else None
    except (drgn.FaultError, LookupError, ValueError, AttributeError, TypeError):
        return None


def vmap_context(prog: drgn.Program, addr: int) -> str | None:
    """Describe ``addr`` relative to the vmalloc area holding it: inside, or in its guard page."""
    from drgn.helpers.linux.mm import find_vmap_area

    try:
        va = find_vmap_area(prog, addr)
        if not va:
            return None
        start, end = int(va.va_start), int(va.va_end)
        vm = va.vm
        if not vm:
            return f"in a vmap area {start:#x}-{end:#x} with no vm_struct (being freed?)"
        size = int(vm.size)
        usable = size if int(vm.flags) & VM_NO_GUARD else size - 4096
        caller = _symbolize(prog, int(vm.caller)) if int(vm.caller) else "?"
        if caller.startswith("0x"):
            # Module init code is freed after loading, and its symbols with it.
            owner = module_of_address(prog, int(vm.caller))
            caller = f"{owner}'s init code" if owner else f"unknown code at {caller}"
    except (drgn.FaultError, LookupError, ValueError, AttributeError, TypeError):
        return None
    if start + usable <= addr < start + size:
        return (f"in the guard page after a {usable // 1024} KiB vmalloc area allocated by {caller}: "
                f"{addr - start - usable:#x} bytes past its end (out-of-bounds access)")
    return f"inside a {usable // 1024} KiB vmalloc area allocated by {caller}, at offset {addr - start:#x}"


def _member_size(struct: drgn.Type, designator: str) -> int | None:
    """sizeof a member designator such as ``val.counter`` or ``slots[2]``, or None."""
    t = struct
    try:
        for part in designator.split("."):
            name, _, index = part.partition("[")
            t = t.unaliased().member(name).type
            for _ in range(index.count("]")):
                t = t.unaliased().type  # an array's element
        return drgn.sizeof(t)
    except (LookupError, ValueError, TypeError):
        return None


def _dest_register(insn: Instruction) -> str | None:
    """The register an instruction writes as its first operand (mov/lea/add… reg, …)."""
    if not insn.op_str or insn.mnemonic.startswith(("cmp", "test", "push", "j", "call", "ret")):
        return None
    first = insn.op_str.split(",")[0].strip()
    if "[" in first or " " in first:
        return None
    try:
        return register_family(first)
    except (KeyError, ValueError):
        return None


def _written(insn: Instruction, reg: str, conv: Abi) -> bool:
    """Whether ``insn`` may change ``reg``: an explicit or implicit write, or a call (which
    clobbers the caller-saved registers)."""
    if insn.is_call:
        return not conv.survives_call(reg)
    if insn.writes:
        return reg in insn.writes
    return _dest_register(insn) == reg


def _load_chain(insns: list[Instruction], j: int, trap: int, regs: dict[str, int],
                frames: list[drgn.StackFrame]) -> dict | None:
    """Name the memory ``insns[j]`` (a load) read, through the loads that set its base register
    (helpers/provenance.py): "`dev->last_done->node.next`", with the slot's address read back."""
    from kpostmortem.helpers.provenance import Namer

    insn = insns[j]
    mem = insn.mem
    namer = Namer(insns, trap, regs, frames)
    base = namer.base_object(register_family(mem.base), j)
    if base is None:
        return None
    loaded = namer.load(base, mem.disp, insn)
    if loaded is None:
        return None
    step = namer.steps[-1]
    return {"expression": loaded[0], "struct": step["struct"], "member": step["member"],
            "address": step["address"], "size": mem.size, "steps": namer.steps}


def pointer_origin(prog: drgn.Program, trace: Sequence[drgn.StackFrame], insns: list[Instruction],
                   trap: int, bad_register: str, regs: dict[str, int], first: int, idx: int,
                   arch: str = "x86_64") -> dict | None:
    """Find the instruction before the trap that last wrote ``bad_register``, and read it back.

    For a load (``mov rax, [rbx + 8]``) whose base register is unchanged up to the trap, the
    base register's value at the trap is the value it had then, so DWARF can name the variable
    and ``member_at_offset`` the member: "rax was loaded from `dev->cfg`".

    Calls follow the architecture's calling convention (decode/regabi.py): a callee-saved
    register goes through a call unchanged, so the scan continues past it; a caller-saved one
    was set by the call (the return register: "returned by the call to f") or left unknown.
    When no source is found, the answer says "unknown" (``unknown`` = True), never a guess.
    """
    conv = abi(arch)
    for j in range(trap - 1, -1, -1):
        insn = insns[j]
        where = _symbolize(prog, insn.address)
        if insn.is_call:
            if conv.survives_call(bad_register):
                continue  # callee-saved: the call cannot have set it
            callee = _symbolize(prog, insn.branch_target) if insn.branch_target is not None else insn.op_str
            base = {"instruction": insn.text, "symbol": where, "source": _source_of(prog, insn.address),
                    "call": callee}
            if conv.set_by_call(bad_register):
                return base | {"returned_by": callee,
                               "text": f"{bad_register} was returned by the call to {callee} at {where}"}
            return base | {"unknown": True,
                           "text": f"{bad_register}: source unknown (caller-saved, clobbered by the call "
                                   f"to {callee} at {where}, and not written after it)"}
        if not (bad_register in insn.writes if insn.writes else _dest_register(insn) == bad_register):
            continue
        origin: dict = {"instruction": insn.text, "symbol": where, "source": _source_of(prog, insn.address),
                        "at_address": insn.address, "bytes": insn.bytes.hex()}
        mem = insn.mem
        if mem is None or not insn.mnemonic.startswith(("mov", "ldr", "ldur")) or not mem.base \
                or mem.base == "rip" \
                or mem.implicit:
            origin["text"] = f"{bad_register} was set by `{origin['instruction']}` at {origin['symbol']}"
            return origin
        base = register_family(mem.base)
        clobbered = base == bad_register or any(_written(k, base, conv) for k in insns[j + 1 : trap])
        origin["loaded_from"] = mem.disp
        origin["base_register"] = base
        text = f"{bad_register} was loaded from [{base} + {mem.disp:#x}] at {origin['symbol']}"
        if not clobbered and base in regs:
            origin["base_value"] = regs[base]
            origin["address"] = (regs[base] + mem.disp) & (2**64 - 1)
            origin["size"] = mem.size
        if not clobbered and base in regs and trace:
            holders = _pointer_suspects(trace, first, idx, regs[base], mem.disp, mem.size)
            if holders:
                h = holders[0]
                origin["variable"] = h.name
                origin["member"] = h.member
                origin["struct"] = h.struct
                expr = f"{h.name}->{h.member}" if h.member else f"*{h.name}"
                text = f"{bad_register} was loaded from `{expr}` ({h.struct or h.type}) at {origin['symbol']}"
        elif clobbered and trace and mem.index is None:
            # The base was itself loaded: follow the loads back to a variable DWARF knows.
            chain = _load_chain(insns[: trap + 1], j, trap, regs, [trace[i] for i in range(first, idx + 1)])
            if chain is not None:
                origin.update(chain)
                text = (f"{bad_register} was loaded from `{chain['expression']}` ({chain['struct']}) "
                        f"at {origin['symbol']}")
        origin["text"] = text
        return origin
    if not insns[:trap]:
        return None
    kept = ", callee-saved: kept across the calls in it" if conv.survives_call(bad_register) else ""
    return {"unknown": True, "text": f"{bad_register}: source unknown (not written in the decoded window "
                                     f"from {_symbolize(prog, insns[0].address)}{kept})"}


# include/asm-generic/bug.h
BUGFLAG_WARNING = 1 << 0
# How far before its trap a WARN's bug_entry may point (its argument setup: a few movs and leas).
WARN_SETUP_BYTES = 32


def _bug_file(prog: drgn.Program, entry: int, field_offset: int, disp: int) -> str | None:
    """The file name a relative ``bug_entry`` points at.

    x86-64's ``__BUG_REL`` wrote ``.long val - 2b`` (from the entry's start: 5.10) and now
    writes ``.long val - .`` (from the field itself), and lib/bug.c reads it the same way as
    its kernel wrote it; the struct is the same in both. The string the entry means starts after
    a NUL (the previous string's end): the other reading lands 4 bytes into it (or before it).
    """
    mask = 2**64 - 1
    candidates = [(entry + field_offset + disp) & mask, (entry + disp) & mask]
    for ptr in candidates:
        try:
            text = prog.read_c_string(ptr, max_size=4096).decode(errors="replace")
            before = prog.read(ptr - 1, 1)
        except drgn.FaultError:
            continue
        if text and text.isprintable() and before == b"\0":
            return text
    try:
        return prog.read_c_string(candidates[0], max_size=4096).decode(errors="replace") or None
    except drgn.FaultError:
        return None


def bug_entry_at(prog: drgn.Program, pc: int) -> dict | None:
    """The ``struct bug_entry`` for a BUG()/WARN() at ``pc``: file, line, whether it is a WARN.

    Searches the owning module's ``bug_table`` or the core ``__start___bug_table`` section;
    handles relative (``bug_addr_disp``) and absolute (``bug_addr``) entry layouts.
    """
    from drgn.helpers.linux.module import address_to_module

    try:
        entry_type = prog.type("struct bug_entry")
    except LookupError:
        return None
    tables: list[tuple[int, int]] = []
    try:
        mod = address_to_module(prog, pc)
    except (LookupError, ValueError, drgn.FaultError):
        mod = None
    if mod:
        tables.append((int(mod.bug_table), int(mod.num_bugs)))
    else:
        try:
            start = prog.symbol("__start___bug_table").address
            stop = prog.symbol("__stop___bug_table").address
            tables.append((start, (stop - start) // drgn.sizeof(entry_type)))
        except LookupError:
            return None
    relative = any(m.name == "bug_addr_disp" for m in entry_type.members)
    # A WARN that passes its arguments to the trap (x86's UD1 WARN of the 7.x kernels, whose
    # bug_entry gained format_disp) records where its argument setup starts, a few instructions
    # before the trap the exception frame points at: then the nearest entry before pc counts,
    # when no entry is at pc itself.
    setup = WARN_SETUP_BYTES if any(m.name == "format_disp" for m in entry_type.members) else 0
    for table, count in tables:
        entries = drgn.Object(prog, prog.array_type(entry_type, count), address=table)
        found: tuple[int, int] | None = None    # (address, index) of the entry for pc
        for i in range(min(count, 200_000)):
            eaddr = table + i * drgn.sizeof(entry_type)
            addr = (eaddr + int(entries[i].bug_addr_disp)) & (2**64 - 1) if relative \
                else int(entries[i].bug_addr)
            if addr == pc:
                found = (addr, i)
                break
            if pc - setup <= addr < pc and (found is None or addr > found[0]):
                found = (addr, i)
        if found is not None:
            i = found[1]
            e = entries[i]
            eaddr = table + i * drgn.sizeof(entry_type)
            try:
                if relative:
                    foff = drgn.offsetof(entry_type, "file_disp")
                    file = _bug_file(prog, eaddr, foff, int(e.file_disp))
                else:
                    file_ptr = int(e.file)
                    file = prog.read_c_string(file_ptr, max_size=4096).decode(errors="replace") if file_ptr else None
            except (LookupError, drgn.FaultError):
                file = None
            flags = int(e.flags)
            return {
                "file": normalize_source_path(file) if file else None,
                "line": int(e.line) if file else None,
                "flags": flags,
                "warning": bool(flags & BUGFLAG_WARNING),
                "entry": eaddr,
            }
    return None


def _name_call_target(prog: drgn.Program, trace: Sequence[drgn.StackFrame] | None, idx: int, ret: int,
                      regs: dict[str, int]) -> dict | None:
    """Name the function pointer behind a call to a bad PC, from the caller's frames at ``ret``."""
    from kpostmortem.helpers.provenance import name_call_target

    frames = []
    for frame in list(trace or [])[idx + 1 :]:
        if frame.pc != ret:
            break
        frames.append(frame)
        if not frame.is_inline:
            break
    try:
        return name_call_target(prog, ret, regs, frames)
    except (drgn.FaultError, LookupError, ValueError) as e:
        return {"expression": None, "problem": f"the call before {_symbolize(prog, ret)} could not be read: {e}"}


def _pc_in_text(prog: drgn.Program, pc: int) -> bool:
    """Whether ``pc`` is in kernel or module code (symbolised or not: a module may lack debug info)."""
    text = kernel_text(prog)
    if text is not None and text[0] <= pc < text[1]:
        return True
    try:
        prog.symbol(pc)
        return True
    except LookupError:
        pass
    return module_of_address(prog, pc) is not None


def program_arch(prog: drgn.Program):
    """The arch/ module of the dump's architecture (kpostmortem.arch.x86_64, .aarch64)."""
    platform = prog.platform
    return arches.get(platform.arch.name if platform is not None else None)


def pac_mask(prog: drgn.Program) -> int | None:
    """KERNELPACMASK from VMCOREINFO: the bits of a signed kernel code pointer that hold its
    pointer authentication code (arm64 with PAC), else None."""
    try:
        text = prog["VMCOREINFO"].string_().decode()
    except (KeyError, LookupError, drgn.FaultError, AttributeError):
        try:
            text = prog.read(int(prog["vmcoreinfo_data"]), 4096).split(b"\0")[0].decode()
        except (KeyError, LookupError, drgn.FaultError, ValueError):
            return None
    for line in text.splitlines():
        if line.startswith("NUMBER(KERNELPACMASK)="):
            return int(line.split("=", 1)[1], 0)
    return None


def instruction_window(prog: drgn.Program, pc: int, before: int = 6,
                       after: int = 4) -> tuple[list[Instruction], int | None, list[dict]]:
    """Decode the instructions around ``pc`` from the dump, kept inside pc's function:
    (instructions, index of the one at pc or None, their report dicts). Raises FaultError."""
    code, start = read_code(prog, pc)
    insns, at = program_arch(prog).decode_window(code, start, pc, before=before, after=after)
    if at is not None:
        insns, at = _same_function(prog, insns, at)
    return insns, at, [_insn_dict(prog, insn, i == at) for i, insn in enumerate(insns)]


def explain_fault(
    prog: drgn.Program,
    trace: Sequence[drgn.StackFrame],
    fault_address: int | None = None,
    fault_address_source: str | None = None,
    error_code: int | None = None,
    event: dict | None = None,
) -> FaultExplanation | None:
    """Decode and explain the instruction that trapped in the innermost exception frame.

    :param trace: the crashed thread's stack trace (``prog.crashed_thread().stack_trace()``
        or a ``LinuxKernelStack``)
    :param fault_address: CR2 or the address the kernel's oops message reported, if known
    :param error_code: the page-fault error code, if known
    :param event: what the CPU entered through at that frame (decode/cpuevent.CpuEvent.to_dict());
        found from the entry stub above the frame when not given
    :return: None when the trace has no exception frame (e.g. a plain ``panic()``), or when an
        interrupt or NMI stopped the CPU there (nothing faulted: see helpers/loop.stuck_loop)
    """
    idx = exception_frame_index(trace)
    if idx is None:
        return None
    if event is None and idx > 0:
        # What the CPU entered through, from the entry stub above the pt_regs frame: an
        # interrupt or NMI is not a fault, and has nothing to explain as one.
        stub = next((f for f in reversed(list(trace)[:idx]) if not f.is_inline), None)
        found = event_of_entry((stub.function_name or stub.name) if stub is not None else None)
        event = found.to_dict() if found is not None else None
    if event is not None and event.get("kind") != "exception":
        return None
    frame = trace[idx]
    # The inline chain sharing this PC starts at the outermost inline frame before idx.
    first = idx
    while first > 0 and trace[first - 1].is_inline and trace[first - 1].pc == frame.pc:
        first -= 1
    regs = exception_registers(prog, trace, idx)
    ex = explain_fault_at(prog, frame.pc, regs, trace=trace, frame_range=(first, idx),
                          fault_address=fault_address, fault_address_source=fault_address_source,
                          error_code=error_code)
    ex.cpu_event = event
    return ex


def explain_fault_at(
    prog: drgn.Program,
    pc: int,
    regs: dict[str, int],
    *,
    trace: Sequence[drgn.StackFrame] | None = None,
    frame_range: tuple[int, int] = (0, 0),
    fault_address: int | None = None,
    fault_address_source: str | None = None,
    error_code: int | None = None,
) -> FaultExplanation:
    """Explain a fault at ``pc`` with registers ``regs`` (lower-case names, ``rsp`` included).

    Works without a stack trace — e.g. for an earlier oops known only from the log (its RIP and
    register dump), whose task has exited: the code is still in the dump. Without a trace no
    DWARF variable can be named.
    """
    first, idx = frame_range
    try:
        function = prog.symbol(pc).name
    except LookupError:
        function = None
    if trace is not None:
        function = trace[first].function_name or trace[first].name
    ex = FaultExplanation(
        frame_index=first,
        pc=pc,
        function=function,
        source=_source_of(prog, pc),
        registers=regs,
        fault_address=fault_address,
        fault_address_source=fault_address_source,
    )
    cpu = program_arch(prog)
    if error_code is not None and cpu.NAME == "aarch64":
        ex.error_code = cpu.decode_esr(error_code).to_dict()   # ESR_EL1, not an x86 #PF code
    elif error_code is not None:
        ex.error_code = asdict(decode_pf_error_code(error_code)) | {
            "text": decode_pf_error_code(error_code).describe()
        }
    ex.va_bits = virtual_address_bits(prog)
    if not _pc_in_text(prog, pc):
        # The PC is not in any known text: a call through a NULL or garbage function pointer.
        # The call pushed the return address, so [sp] names the caller.
        ex.invalid_pc = True
        ex.address_class = asdict(classify_address(pc, va_bits=ex.va_bits))
        try:
            # x86's call pushed the return address; arm64's bl/blr left it in lr (unsigned
            # there: only a saved copy on the stack carries a PAC, stripped all the same)
            ret = cpu.strip_pac(regs[cpu.LINK_REGISTER], pac_mask(prog)) if cpu.LINK_REGISTER \
                else prog.read_u64(regs["rsp"])
            sym = prog.symbol(ret)
            ex.caller = {
                "function": sym.name,
                "symbol": _symbolize(prog, ret),
                "return_address": ret,
                "source": _source_of(prog, ret - (4 if cpu.LINK_REGISTER else 1)),
                "module": module_of_address(prog, ret),
            }
        except (KeyError, LookupError, drgn.FaultError):
            ex.problems.append("PC is not in kernel text and [rsp] holds no return address into text")
            return ex
        ex.call_target = _name_call_target(prog, trace, idx, ret, regs)
        return ex
    try:
        insns, trap, ex.instructions = instruction_window(prog, pc)
        ex.code_source = "dump"
    except drgn.FaultError as e:
        ex.problems.append(f"instruction bytes at 0x{pc:x} not readable: {e}")
        return ex
    ex.trap_index = trap
    if trap is None:
        ex.problems.append("the faulting PC does not start a whole instruction")
        return ex
    insn = insns[trap]
    ex.trapping_instruction = f"{insn.mnemonic} {insn.op_str}".strip()
    ex.is_ud2 = cpu.is_bug_trap(insn)     # ud2 on x86, brk #0x800 on arm64
    # 7.x's x86 WARN traps with ud1 (as UBSAN's checks do): it is WARN()'s when the bug table
    # has an entry for it
    if ex.is_ud2 or insn.mnemonic == "ud1":
        try:
            ex.bug = bug_entry_at(prog, pc)
        except (drgn.FaultError, LookupError, ValueError, TypeError) as e:
            ex.problems.append(f"__bug_table not readable: {e}")
        ex.is_ud2 = ex.is_ud2 or ex.bug is not None
    mem = insn.mem
    if mem is None:
        return ex
    ex.access = mem.access
    ex.base_register = mem.base
    ex.index_register = mem.index
    ex.displacement = mem.disp
    ops = [o.strip() for o in insn.op_str.split(",")] if cpu.NAME == "x86_64" else \
        re.findall(r"\[[^\]]*\]!?", insn.op_str)
    ex.operand = next((o for o in ops if "[" in o), None)
    next_pc = insn.address + insn.size
    ex.effective_address = cpu.effective_address(mem, regs, next_pc=next_pc)
    target = ex.fault_address if ex.fault_address is not None else ex.effective_address
    if ex.fault_address is not None and ex.effective_address is not None:
        ex.address_matches = ex.fault_address == ex.effective_address
    if target is not None:
        ex.address_class = asdict(classify_address(target, va_bits=ex.va_bits))
        if (ex.address_class or {}).get("kind") in ("kernel", "non-canonical"):
            ex.mapping = kernel_mapping(prog, target)
            vmap = vmap_context(prog, target)
            ex.identity = vmap or identify(prog, target)
            area = vmap_area_of(prog, target) if vmap else None
            if area is not None:
                ex.identity_fact = {"type": "vmap", "address": target, "start": area[0], "end": area[1]}
            elif ex.identity:
                ex.identity_fact = {"type": "identify", "address": target, "text": ex.identity}
    # The register that held the bad pointer: the base (or index) register whose value makes
    # the effective address bad.
    for reg in (mem.base, mem.index):
        if reg and reg not in ("rip",):
            family = cpu.register_family(reg)
            value = regs.get(family)
            if value is None:
                continue
            ex.bad_register = family
            ex.bad_register_value = value
            ex.poison = recognize_poison(value)
            break
    if trace is not None and ex.bad_register_value is not None and mem.base \
            and ex.bad_register == cpu.register_family(mem.base):
        ex.suspects = _pointer_suspects(trace, first, idx, ex.bad_register_value, mem.disp, mem.size)
    if ex.bad_register:
        ex.origin = pointer_origin(prog, trace or [], insns, trap, ex.bad_register, regs, first, idx,
                                   arch=cpu.NAME)
    ex.slab_object = _freed_object(prog, ex)
    return ex


def _freed_object(prog: drgn.Program, ex: FaultExplanation) -> dict | None:
    """The free slab object the bad pointer was loaded from, or that the access hit."""
    from kpostmortem.helpers.slabtrack import object_tracks

    for addr in ((ex.origin or {}).get("address"), ex.effective_address):
        if addr is None or addr >> 63 == 0:
            continue
        found = object_tracks(prog, addr)
        if found is not None and not found["allocated"]:
            return found
    return None
