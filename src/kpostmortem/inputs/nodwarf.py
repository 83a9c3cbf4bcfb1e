"""Degraded mode: what a kernel dump still tells without the kernel's DWARF.

- symbols: the kernel's own kallsyms tables, found through VMCOREINFO (Linux 6.0+), with
  ``drgn.helpers.linux.kallsyms.load_vmlinux_kallsyms``;
- the crashed CPU's stack: its NT_PRSTATUS registers unwound with the kernel's built-in ORC
  tables (drgn reads them from memory once the kernel's address range is known);
- the log: the printk ring buffer, laid out by VMCOREINFO's SYMBOL/SIZE/OFFSET entries (what
  ``makedumpfile --dump-dmesg`` reads);
- module names: the ``modules`` list, whose head of ``struct module`` (state, list, name) has
  kept its layout since Linux 2.6;
- module functions: anchored from the log, whose oops names ``func+off/size [module]`` for
  PCs that the stack has as bare addresses.

Every loop over dump memory is bounded and stops on a cycle; every read may fail.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import drgn

from kpostmortem import arch as arches
from kpostmortem.inputs.elfinfo import DumpHeader, PrStatus

if TYPE_CHECKING:  # imported where used: open_dump imports this module before the analysis needs oopslog
    from kpostmortem.decode.oopslog import LogLine

__all__ = [
    "DegradedState",
    "enable_degraded",
    "crashed_cpu",
    "stack_from_prstatus",
    "printk_lines_from_vmcoreinfo",
    "module_names",
    "anchor_module_symbols",
    "MODULE_RANGES_KEY",
]

MODULE_RANGES_KEY = "kpostmortem.module_ranges"
"""prog.cache key: [(start, end, module name)] learnt from the log in degraded mode."""

MAX_MODULES = 10_000
MAX_RECORDS = 1 << 20
MAX_FRAMES = 256
MAX_CONSECUTIVE_FAULTS = 4096
_U64 = (1 << 64) - 1

# struct pt_regs on x86-64 (arch/x86/include/asm/ptrace.h): 21 unsigned longs.
_PT_REGS = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
            "rsi", "rdi", "orig_rax", "rip", "cs", "rflags", "rsp", "ss")


@dataclass
class DegradedState:
    """What degraded mode could set up, and what it could not."""

    kallsyms: bool = False
    """Kernel symbols loaded from the dump's kallsyms."""
    kernel_range: tuple[int, int] | None = None
    """[_text, _end) of the kernel image: where built-in ORC applies."""
    problems: list[str] = field(default_factory=list)
    """What could not be set up, in words."""


IMAGE_RANGE_KEY = "kpostmortem.image_range"
"""prog.cache key: [start, end) bounding the kernel image's text and data, from VMCOREINFO, when
kallsyms cannot be read (its _text/_end are unknown)."""
_IMAGE_SPAN = 1 << 30   # x86-64's KERNEL_IMAGE_SIZE with KASLR; larger than any arm64 image


def _image_from_vmcoreinfo(info: dict[str, str]) -> tuple[int, int] | None:
    """[_stext, the highest image symbol VMCOREINFO names] (VMCOREINFO has given _stext since
    Linux 4.x, and names data and bss objects of the image: init_uts_ns, prb, clear_seq...).

    Enough to tell a PC in the kernel's own code (a panic path's crash_setup_regs) from one in a
    module, which is all that is asked of it when kallsyms cannot be read.
    """
    start = _vmcoreinfo_symbol(info, "_stext")
    if start is None:
        return None
    inside = [a for k in info if k.startswith("SYMBOL(")
              if (a := _vmcoreinfo_symbol(info, k[7:-1])) is not None and start <= a < start + _IMAGE_SPAN]
    return start, max(inside) + 1


def _vmcoreinfo_int(info: dict[str, str], key: str) -> int | None:
    try:
        return int(info[key], 0)
    except (KeyError, ValueError):
        return None


def _vmcoreinfo_symbol(info: dict[str, str], name: str) -> int | None:
    try:
        return int(info[f"SYMBOL({name})"], 16)
    except (KeyError, ValueError):
        return None


# Held while another thread imports the analysis (kpostmortem.frontends.cli loads the dump on
# a thread meanwhile): enable_degraded's import of a drgn helper module while that thread
# imports the whole drgn.helpers.linux package can deadlock Python's per-module import locks
# (_DeadlockError: 4 runs in 40 of a degraded `analyze`).
IMPORTS = threading.Lock()


def enable_degraded(prog: drgn.Program, header: DumpHeader) -> DegradedState:
    """Give ``prog`` the kernel's kallsyms and built-in ORC, for a dump without vmlinux."""
    state = DegradedState()
    with IMPORTS:
        from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms

    try:
        index = load_vmlinux_kallsyms(prog)
        prog.register_symbol_finder("kallsyms", index, enable_index=0)
        state.kallsyms = True
    except drgn.MissingDebugInfoError:
        # VMCOREINFO names the kallsyms tables only from Linux 6.0 on ("vmcoreinfo: include
        # kallsyms symbols"): with an older kernel the log is the only source of names
        state.problems.append(
            "no kernel symbols: VMCOREINFO does not locate the kallsyms tables (it does from "
            "Linux 6.0 on); functions are named from the log's oops report only"
        )
        image = _image_from_vmcoreinfo(header.vmcoreinfo)
        if image is not None:
            prog.cache[IMAGE_RANGE_KEY] = image
        return state
    except (LookupError, ValueError, drgn.FaultError, OSError, NotImplementedError) as e:
        state.problems.append(
            f"no kernel symbols: the dump's kallsyms could not be read ({e}); VMCOREINFO names them "
            "only from Linux 6.0 on"
        )
        return state
    try:
        start = prog.symbol("_text").address
        end = prog.symbol("_end").address
    except LookupError:
        state.problems.append("kallsyms has no _text/_end: the stack cannot be unwound with ORC")
        return state
    try:
        main = prog.main_module()
    except LookupError:
        try:
            main = next(iter(prog.loaded_modules()))[0]
        except (StopIteration, LookupError, ValueError, drgn.FaultError):
            main = None
    if main is None or not isinstance(main, drgn.MainModule):
        state.problems.append("drgn created no kernel module: the stack cannot be unwound with ORC")
        return state
    if main.address_range is None:
        main.address_range = (start, end)
    state.kernel_range = (start, end)

    # kallsyms also holds absolute and per-CPU symbols near 0 (__per_cpu_start = 0): a
    # NULL PC must not be named after them. Look addresses up inside the kernel image only.
    def in_kernel(prog, name, address, one):
        if address is not None and not start <= address < end:
            return []
        return index(prog, name, address, one)

    prog.register_symbol_finder("kallsyms-kernel", in_kernel, enable_index=0)
    prog.set_enabled_symbol_finders([n for n in prog.enabled_symbol_finders() if n != "kallsyms"])
    return state


def crashed_cpu(prog: drgn.Program, prstatus: Sequence[PrStatus],
                logged: tuple[int | None, int | None] | None = None) -> PrStatus | None:
    """The NT_PRSTATUS of the CPU that crashed: ``crashing_cpu`` (x86, set by kdump's
    shutdown path), else ``panic_cpu``, else the CPU the log's last crash report came from
    (``logged``: its "CPU: N PID: P" line), else the only CPU running a task."""
    for name in ("crashing_cpu", "panic_cpu"):
        try:
            raw = prog.read(prog.symbol(name).address, 4)
        except (LookupError, drgn.FaultError):
            continue
        (cpu,) = struct.unpack("<i", raw)
        if 0 <= cpu < len(prstatus):
            return prstatus[cpu]
    if logged is not None:
        # Without kallsyms (VMCOREINFO locates it only from Linux 6.0 on) neither variable can
        # be found. The report the kernel printed last before crash_kexec() came from the
        # crashing CPU: its CPU and PID pick the note, which the "only busy CPU" guess gets
        # wrong whenever another CPU runs a task too (it may run a task on every CPU).
        cpu, pid = logged
        for match in ([p for p in prstatus if p.cpu == cpu and pid in (None, p.pid)],
                      [p for p in prstatus if pid is not None and p.pid == pid]):
            if len(match) == 1:
                return match[0]
    busy = [p for p in prstatus if p.pid != 0]
    if len(busy) == 1:
        return busy[0]
    return prstatus[0] if prstatus else None


def _arch(prog: drgn.Program):
    return arches.get(prog.platform.arch.name if prog.platform is not None else None)


def _pt_regs_type(prog: drgn.Program, names: Sequence[str] = _PT_REGS) -> drgn.Type:
    u64 = prog.int_type("unsigned long", 8, False)
    return prog.struct_type("pt_regs", 8 * len(names),
                            [drgn.TypeMember(u64, name, 64 * i) for i, name in enumerate(names)])


def stack_from_prstatus(prog: drgn.Program, pr: PrStatus, kernel_range: tuple[int, int] | None):
    """The crashed CPU's stack from its saved registers, as a LinuxKernelStack of one segment.

    Without module debug info a module's ORC cannot be found, so the unwind is cut after the
    first frame outside ``kernel_range`` (the kernel image): what follows it would be guesses.
    With the kernel's DWARF (``kernel_range`` None) drgn finds module ORC and nothing is cut.
    """
    from drgn.helpers.linux.stack import LinuxKernelStack, StackKind, StackSegment

    cpu = _arch(prog)

    def unwind(registers: dict[str, int]) -> list:
        regs = drgn.Object(prog, _pt_regs_type(prog, cpu.PT_REGS),
                           value={n: registers[n] for n in cpu.PT_REGS})
        if cpu.LINK_REGISTER:
            return _frame_records(prog, cpu, registers, regs)
        out = []
        for frame in prog.stack_trace(regs):
            if len(out) >= MAX_FRAMES:
                break
            out.append(frame)
            if kernel_range is not None and not kernel_range[0] <= frame.pc < kernel_range[1]:
                break
        return out

    frames = unwind(pr.registers)
    pc, sp = pr.registers[cpu.PROGRAM_COUNTER], pr.registers[cpu.STACK_POINTER]
    if kernel_range is not None and frames and not kernel_range[0] <= pc < kernel_range[1] and not _readable(prog, pc):
        # A call through a bad pointer (NULL, garbage): no code at the PC, but the call left
        # its return address on top of the stack (x86) or in the link register (arm64). Go
        # on from the caller.
        if cpu.LINK_REGISTER:
            ret, after = pr.registers[cpu.LINK_REGISTER], {}
        else:
            try:
                ret = int.from_bytes(prog.read(sp, 8), "little")
            except drgn.FaultError:
                ret = None
            after = {cpu.STACK_POINTER: (sp + 8) & _U64}
        if ret is not None and _readable(prog, ret):
            caller = unwind({**pr.registers, cpu.PROGRAM_COUNTER: ret, **after})
            frames = frames[:1] + [_ReturnFrame(f) if i == 0 else f for i, f in enumerate(caller)]
    return LinuxKernelStack(prog, [StackSegment(StackKind.UNKNOWN, frames[:MAX_FRAMES])])


def _frame_records(prog: drgn.Program, cpu, registers: dict[str, int], regs: drgn.Object) -> list:
    """arm64 without DWARF (no ORC there): the frame at the PC, then the chain of frame records
    (x29 → [previous x29, return address]), each return address stripped of its pointer
    authentication code (VMCOREINFO's KERNELPACMASK): drgn's own fallback stops at the first
    signed one."""
    out = list(prog.stack_trace(regs))[:1]
    mask = _vmcoreinfo_int(_vmcoreinfo(prog), "NUMBER(KERNELPACMASK)")
    fp, seen = registers["x29"], set()
    while fp and fp not in seen and len(out) < MAX_FRAMES:
        seen.add(fp)
        try:
            next_fp, lr = prog.read_u64(fp), prog.read_u64(fp + 8)
        except drgn.FaultError:
            break
        ret = cpu.strip_pac(lr, mask)
        if not ret or not _readable(prog, ret):
            break
        caller = {**registers, "pc": ret, "x29": next_fp, "x30": ret, "sp": (fp + 16) & _U64}
        frame = next(iter(prog.stack_trace(drgn.Object(prog, regs.type_, value=caller))), None)
        if frame is None:
            break
        out.append(_ReturnFrame(frame, prog))
        fp = next_fp
    return out


def _vmcoreinfo(prog: drgn.Program) -> dict[str, str]:
    try:
        raw = prog["VMCOREINFO"].string_().decode(errors="replace")
    except (KeyError, LookupError, drgn.FaultError):
        return {}
    return dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)


def _readable(prog: drgn.Program, addr: int) -> bool:
    try:
        prog.read(addr, 1)
        return True
    except drgn.FaultError:
        return False


class _ReturnFrame:
    """A drgn StackFrame unwound from registers made up from a return address: a call frame,
    not an exception frame, whatever drgn says."""

    interrupted = False

    def __init__(self, frame: drgn.StackFrame, prog: drgn.Program | None = None) -> None:
        self._frame = frame
        self._prog = prog

    def symbol(self) -> drgn.Symbol:
        """The calling function: a return address after a noreturn call at a function's end
        is the next function's first byte, so look up pc - 1 (as drgn does for call frames)."""
        if self._prog is None:
            return self._frame.symbol()
        return self._prog.symbol(self._frame.pc - 1)

    def __getattr__(self, name: str):
        return getattr(self._frame, name)


def printk_lines_from_vmcoreinfo(prog: drgn.Program, info: dict[str, str]) -> list[LogLine]:
    """The kernel log from the lockless printk ring buffer (Linux 5.10+), DWARF-free.

    :raises LookupError: VMCOREINFO does not describe the ring buffer (older kernel)
    :raises drgn.FaultError: the ring buffer's memory is not in the dump
    """
    from kpostmortem.decode.oopslog import LogLine

    def off(name: str) -> int:
        v = _vmcoreinfo_int(info, f"OFFSET({name})")
        if v is None:
            raise LookupError(f"VMCOREINFO has no OFFSET({name}): cannot read the log without DWARF")
        return v

    def size(name: str) -> int:
        v = _vmcoreinfo_int(info, f"SIZE({name})")
        if v is None:
            raise LookupError(f"VMCOREINFO has no SIZE({name}): cannot read the log without DWARF")
        return v

    prb_ptr = _vmcoreinfo_symbol(info, "prb")
    if prb_ptr is None:
        raise LookupError("VMCOREINFO has no SYMBOL(prb): not a lockless printk ring buffer (Linux < 5.10)")
    def read(addr: int, size: int) -> bytes:
        # Damaged VMCOREINFO values (negative, huge) wrap like the kernel's own arithmetic
        # (found by fuzzing: SYMBOL(prb)=-1 raised OverflowError).
        return prog.read(addr & _U64, size)

    u64 = lambda addr: int.from_bytes(read(addr, 8), "little")  # noqa: E731
    prb = u64(prb_ptr)
    desc_ring = prb + off("printk_ringbuffer.desc_ring")
    text_ring = prb + off("printk_ringbuffer.text_data_ring")
    count_bits = int.from_bytes(read(desc_ring + off("prb_desc_ring.count_bits"), 4), "little")
    descs = u64(desc_ring + off("prb_desc_ring.descs"))
    infos = u64(desc_ring + off("prb_desc_ring.infos"))
    head_id = u64(desc_ring + off("prb_desc_ring.head_id"))
    tail_id = u64(desc_ring + off("prb_desc_ring.tail_id"))
    size_bits = int.from_bytes(read(text_ring + off("prb_data_ring.size_bits"), 4), "little")
    data = u64(text_ring + off("prb_data_ring.data"))
    if not 0 < count_bits <= 24 or not 0 < size_bits <= 32:
        raise ValueError(f"printk ring buffer header is damaged (count_bits {count_bits}, size_bits {size_bits})")
    desc_size, info_size = size("prb_desc"), size("printk_info")
    sv_off = off("prb_desc.state_var")
    lpos_off = off("prb_desc.text_blk_lpos")
    begin_off, next_off = off("prb_data_blk_lpos.begin"), off("prb_data_blk_lpos.next")
    seq_off, ts_off = off("printk_info.seq"), off("printk_info.ts_nsec")
    len_off, caller_off = off("printk_info.text_len"), off("printk_info.caller_id")

    id_mask = (1 << 62) - 1
    ring_mask = (1 << count_bits) - 1
    data_mask = (1 << size_bits) - 1
    records: list[tuple[int, float, str | None, str]] = []
    current = tail_id & id_mask
    head = head_id & id_mask
    faults = 0
    for _ in range(min(ring_mask + 1, MAX_RECORDS)):
        idx = current & ring_mask
        desc = descs + idx * desc_size
        try:
            state_var = u64(desc + sv_off)
            if state_var & id_mask == current and (state_var >> 62) & 3 in (1, 2):  # committed, finalized
                raw_begin = u64(desc + lpos_off + begin_off)
                raw_next = u64(desc + lpos_off + next_off)
                inf = infos + idx * info_size
                seq = u64(inf + seq_off)
                ts = u64(inf + ts_off)
                caller = int.from_bytes(read(inf + caller_off, 4), "little")
                text = None
                if not (raw_begin & 1 and raw_next & 1):  # both odd: a data-less record (skipped, as drgn does)
                    begin = (raw_begin & data_mask) + 8  # each data block starts with its id
                    nxt = raw_next & data_mask
                    if begin > nxt:  # the block wrapped: its text is at the ring's start
                        begin = 8
                    text_len = int.from_bytes(read(inf + len_off, 2), "little")
                    text_len = min(text_len, max(0, nxt - begin))
                    text = read(data + begin, text_len).decode(errors="replace")
                who = f"C{caller & 0x7FFFFFFF}" if caller & 0x80000000 else f"T{caller}"
                if text is not None:
                    records.append((seq, ts / 1e9, who, text))
            faults = 0
        except drgn.FaultError:
            faults += 1  # one unreadable record; the others may be fine, but not thousands
            if faults >= MAX_CONSECUTIVE_FAULTS:
                break
        if current == head:
            break
        current = (current + 1) & id_mask
    records.sort(key=lambda r: r[0])
    lines = []
    for _seq, ts, who, text in records:
        for part in text.split("\n"):
            lines.append(LogLine(text=part, timestamp=ts, caller=who))
    return lines


def module_names(prog: drgn.Program, limit: int = MAX_MODULES) -> tuple[list[str], str | None]:
    """Names of the loaded modules, walking ``modules`` by raw reads: (names, problem or None).

    ``struct module`` starts with ``enum module_state state; struct list_head list; char
    name[MODULE_NAME_LEN]`` on every 64-bit kernel. Stops at a cycle, a bad name or a fault.
    """
    try:
        head = prog.symbol("modules").address
    except LookupError:
        return [], "kallsyms has no 'modules' list"
    names: list[str] = []
    seen = {head}
    try:
        node = int.from_bytes(prog.read(head, 8), "little")
        while node != head:
            if node in seen:
                return names, f"the module list loops back to 0x{node:x}: corrupted"
            if len(names) >= limit:
                return names, f"more than {limit} modules: stopped"
            seen.add(node)
            raw = prog.read((node - 8 + 24) & _U64, 56).split(b"\0", 1)[0]
            name = raw.decode("ascii", errors="replace")
            if not raw or not name.isprintable():
                return names, f"module at 0x{node - 8:x} has no readable name: list damaged"
            names.append(name)
            node = int.from_bytes(prog.read(node, 8), "little")
    except drgn.FaultError as e:
        return names, f"module list unreadable at 0x{e.address:x}: {e.message}"
    return names, None


def anchor_module_symbols(prog: drgn.Program, trace, records: Sequence) -> list[tuple[int, int, str, str]]:
    """Name module frames from the log: (start, end, function, module) of each anchored symbol.

    A frame's PC outside the kernel image has no kallsyms name here. The oops record that
    describes this crash prints the function around it as ``func+off/size [module]``: its RIP
    line for the exception frame, its call trace for the frame after a named one. Registers a
    symbol finder for them and records their ranges for ``module_of_address``.
    """
    kernel = prog.main_module().address_range if _has_main(prog) else prog.cache.get(IMAGE_RANGE_KEY)
    frames = list(trace)
    anchors: dict[int, tuple[int, int, str, str]] = {}

    def add(pc: int, entry) -> bool:
        if entry is None or entry.module is None or entry.offset is None or entry.size is None:
            return False
        # A return address may sit just past a noreturn function's last call (offset == size).
        if not 0 <= entry.offset <= entry.size or pc < entry.offset:
            return False
        start = pc - entry.offset
        anchors.setdefault(start, (start, start + max(entry.size, entry.offset + 1), entry.function, entry.module))
        return True

    def outside(pc: int) -> bool:
        return kernel is None or not kernel[0] <= pc < kernel[1]

    recs = list(reversed(list(records)))  # the crash that took the dump is the latest
    todo = [f for f in frames if outside(f.pc)]
    named: set[int] = set()
    # 1. An exception frame: the latest record whose RIP line names a module function.
    for frame in todo:
        if frame.interrupted:
            rip = next((r.rip for r in recs if r.rip is not None and r.rip.module), None)
            if rip is not None and add(frame.pc, rip):
                named.add(frame.pc)
    # 1b. The frame after an exception frame whose PC is not code (a call through a NULL
    # pointer): arm64's and riscv's "lr :" line names the caller the return address is in.
    if len(frames) > 1 and frames[0].interrupted and frames[1].pc not in named and outside(frames[1].pc):
        rec = next((r for r in recs if getattr(r, "link", None) is not None), None)
        # Only when the record's pc names no function: a valid PC's function may have called
        # others since it was entered, leaving lr stale.
        link = rec.link if rec is not None and rec.rip is None and rec.link.module else None
        if link is not None and add(frames[1].pc, link):
            named.add(frames[1].pc)
    # 2. A return address after a named frame: the entry after that name in a call trace.
    for i, frame in enumerate(frames):
        if i == 0 or frame.interrupted or frame.pc in named or not outside(frame.pc):
            continue
        try:
            # frame.symbol(), not prog.symbol(pc): a return address after a noreturn call
            # is the next function's first byte; drgn looks it up at pc - 1.
            prev = frames[i - 1].symbol().name
        except LookupError:
            continue
        for rec in recs:
            reliable = [e for e in rec.call_trace if e.reliable]
            names = [e.function for e in reliable]
            j = names.index(prev) + 1 if prev in names else len(reliable)
            if j < len(reliable) and add(frame.pc, reliable[j]):
                named.add(frame.pc)
                break
    # 3. The unwind skipped frames: the one module function of the latest call trace whose
    # offset puts a function entry (endbr64, ftrace nop, push rbp) at pc - offset.
    for frame in todo:
        if frame.interrupted or frame.pc in named:
            continue
        for rec in recs:
            fits = [e for e in rec.call_trace
                    if e.reliable and e.module and e.offset is not None and e.size and e.offset <= e.size
                    and frame.pc >= e.offset and _function_entry(prog, frame.pc - e.offset)]
            if len({(frame.pc - e.offset, e.function) for e in fits}) == 1 and add(frame.pc, fits[0]):
                named.add(frame.pc)
                break
            if rec.call_trace:
                break  # only the latest record with a call trace describes this stack
    if not anchors:
        return []
    table = sorted(anchors.values())

    def finder(_prog, name, address, one):
        out = []
        for start, end, func, _mod in table:
            if (address is None or start <= address < end) and (name is None or name == func):
                out.append(drgn.Symbol(func, start, end - start, drgn.SymbolBinding.GLOBAL, drgn.SymbolKind.FUNC))
                if one:
                    break
        return out

    prog.register_symbol_finder("oops-log", finder, enable_index=0)
    ranges = prog.cache.setdefault(MODULE_RANGES_KEY, [])
    ranges.extend((start, end, mod) for start, end, _f, mod in table)
    return table


# endbr64; the 5-byte NOP ftrace leaves at a function's entry; push rbp; mov rbp, rsp; a
# 4-byte NOP. Until Linux 5.15 ("x86/asm: Cleanup the NOP mess") the entry NOP was the CPU's
# "ideal" one, chosen at boot: on AMD (and QEMU's TCG CPU) K8's 66 66 66 66 90.
_ENTRY_BYTES = (b"\xf3\x0f\x1e\xfa", b"\x0f\x1f\x44\x00\x00", b"\x66\x66\x66\x66\x90",
                b"\x55\x48\x89\xe5", b"\x66\x0f\x1f\x00")


# arm64 (little-endian words): the patchable entry of -fpatchable-function-entry=2 (`nop`, or
# `mov x9, x30` once ftrace has patched it), `paciasp`, `bti c`.
_ENTRY_WORDS_AARCH64 = (b"\x1f\x20\x03\xd5", b"\xe9\x03\x1e\xaa", b"\x3f\x23\x03\xd5", b"\x5f\x24\x03\xd5")


def _function_entry(prog: drgn.Program, addr: int) -> bool:
    """Whether the code at ``addr`` starts like a compiled kernel function."""
    try:
        code = prog.read(addr, 5)
    except drgn.FaultError:
        return False
    if prog.platform is not None and prog.platform.arch == drgn.Architecture.AARCH64:
        return addr % 4 == 0 and any(code.startswith(b) for b in _ENTRY_WORDS_AARCH64)
    return any(code.startswith(b) for b in _ENTRY_BYTES)


def _has_main(prog: drgn.Program) -> bool:
    try:
        return prog.main_module().address_range is not None
    except LookupError:
        return False
