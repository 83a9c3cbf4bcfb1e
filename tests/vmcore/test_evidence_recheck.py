"""Every evidence line of every corpus report, re-checked against the dump with plain drgn.

Each evidence item carries the facts it rests on (``facts``: a register of a frame, memory at
an address, an instruction's bytes, words of the kernel log, a DWARF variable, a frame of the
unwind…). This test reads each of them back itself — the register from drgn's own unwind,
the memory with ``prog.read``, the log from the printk buffer, the lock or task from the
kernel's structures — without kpostmortem's analysis code. An item with no fact must be
marked "?" (a reading, not a checked claim).
"""

from __future__ import annotations

import capstone
import drgn
import pytest
from drgn.helpers.common.memory import identify_address
from drgn.helpers.linux.mm import find_vmap_area, follow_phys
from drgn.helpers.linux.module import find_module
from drgn.helpers.linux.pid import find_task
from drgn.helpers.linux.printk import get_printk_records
from drgn.helpers.linux.sched import task_state_to_char
from drgn.helpers.linux.slab import slab_object_info
from drgn.helpers.linux.stackdepot import stack_depot_fetch

from .analysis import report_of
from .corpus import load_manifest, open_program

SCENARIOS = [s for s in load_manifest() if not s["expect"].get("damaged")]
# include/linux/panic.h: taint bits of the letters a module can carry.
TAINT_BITS = {"P": 0, "O": 12, "E": 13, "F": 1, "C": 10}
_MD = {"X86_64": capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64),
       "AARCH64": capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)}


def _md(prog) -> capstone.Cs:
    """capstone for the dump's own instruction set (x86-64 or arm64)."""
    return _MD[prog.platform.arch.name]


def _base(name: str | None) -> str | None:
    return name.split(".")[0] if name else name


class Dump:
    """What a re-check reads: the program, drgn's own unwind of the crashed thread, the log."""

    def __init__(self, name: str) -> None:
        self.prog = open_program(name)
        try:  # modules whose debug file is missing or stale are still named by their own symtab
            from drgn.helpers.linux.kallsyms import load_module_kallsyms

            self.prog.register_symbol_finder("module-kallsyms", load_module_kallsyms(self.prog), enable_index=-1)
        except (ImportError, LookupError, ValueError, NotImplementedError):
            pass
        self.trace = list(self.prog.crashed_thread().stack_trace())
        self.log = "\n".join(r.text.decode(errors="replace") for r in get_printk_records(self.prog))

    def frame(self, index: int, pid: int | None = None) -> drgn.StackFrame:
        """Frame ``index`` of the crashed thread, or of task ``pid`` (another CPU's section)."""
        if pid is None:
            return self.trace[index]
        return list(self.prog.stack_trace(find_task(self.prog, pid)))[index]


def _frame_matches(frame: drgn.StackFrame, function: str | None) -> bool:
    names = {_base(frame.function_name), _base(frame.name)}
    try:
        names.add(_base(frame.symbol().name))  # a module without its debug file: its kallsyms
    except LookupError:
        pass
    if frame.pc < 1 << 63:
        names.add(None)  # user space or a bad PC: no function name
    return _base(function) in names


def recheck(d: Dump, fact: dict) -> str | None:  # noqa: C901 - one branch per fact type
    """None when the fact holds in the dump, else what differs."""
    t = fact["type"]
    prog = d.prog
    if t == "register":
        frame = d.frame(fact["frame"], fact.get("pid"))
        got = {k.lower(): v for k, v in frame.registers().items()}.get(fact["register"])
        return None if got == fact["value"] else f"{fact['register']} of frame #{fact['frame']} is {got}"
    if t == "log-register":
        text = f"{fact['register'].upper()}: {fact['value']:016x}"
        return None if text in d.log else f"the log has no {text!r}"
    if t == "memory":
        got = prog.read(fact["address"], fact["size"])
        return None if got == fact["value"].to_bytes(fact["size"], "little") else f"memory holds {got.hex()}"
    if t == "instruction":
        code = bytes.fromhex(fact["bytes"])
        if prog.read(fact["address"], len(code)) != code:
            return "the bytes in the dump differ"
        insn = next(_md(prog).disasm(code, fact["address"]))
        return None if fact["text"].startswith(insn.mnemonic) else f"decodes as {insn.mnemonic} {insn.op_str}"
    if t == "log":
        return None if fact["contains"] in d.log else f"the log does not say {fact['contains']!r}"
    if t == "variable":
        frame = d.frame(fact["frame"], fact.get("pid"))
        obj = frame[fact["name"]]
        if obj.value_() != fact["value"]:
            return f"{fact['name']} is {obj.value_():#x} in frame #{fact['frame']}"
        if fact.get("member") and fact.get("displacement") is not None:
            offset = drgn.offsetof(obj.type_.type, fact["member"].split("[")[0])
            if offset != fact["displacement"]:
                return f"{fact['member']} is at offset {offset:#x}"
        return None
    if t == "frame":
        frame = d.frame(fact["index"], fact.get("pid"))
        if not _frame_matches(frame, fact["function"]):
            return f"frame #{fact['index']} is {frame.name}"
        if fact.get("pc") is not None and frame.pc != fact["pc"]:
            return f"frame #{fact['index']} pc {frame.pc:#x}"
        if fact.get("sp") is not None and frame.sp != fact["sp"]:
            return f"frame #{fact['index']} sp {frame.sp:#x}"
        if fact.get("interrupted") and not frame.interrupted:
            return f"frame #{fact['index']} is not a pt_regs frame"
        return None
    if t == "task-stack":
        task = find_task(prog, fact["pid"])
        return None if task.stack.value_() == fact["start"] else f"task->stack is {task.stack.value_():#x}"
    if t == "page-table":
        try:
            follow_phys(prog["init_mm"].address_of_(), fact["address"])
            mapped = True
        except drgn.FaultError:
            mapped = False
        return None if mapped == fact["mapped"] else f"mapped is {mapped}"
    if t == "text-on-stack":
        words = prog.read(fact["start"], fact["end"] - fact["start"])
        found = set()
        for i in range(0, len(words), 8):
            try:
                found.add(_base(prog.symbol(int.from_bytes(words[i : i + 8], "little")).name))
            except LookupError:
                continue
        missing = [f for f in fact["functions"] if _base(f) not in found]
        return None if not missing else f"no return address into {missing}"
    if t == "canary":
        task = find_task(prog, fact["pid"])
        got = prog.read_u64(task.stack.value_())  # end_of_stack() with THREAD_INFO_IN_TASK
        return None if got == fact["value"] else f"end of stack holds {got:#x}"
    if t == "task":
        task = find_task(prog, fact["pid"])
        state = task_state_to_char(task)
        names = {_base(f.name) for f in prog.stack_trace(task)}
        if state != fact["state"]:
            return f"state {state}"
        return None if _base(fact["function"]) in names else f"{fact['function']} not on its stack"
    if t == "bug-entry":
        entry = drgn.Object(prog, "struct bug_entry", address=fact["address"])
        ok = int(entry.line) == fact["line"] and int(entry.flags) == fact["flags"]
        return None if ok else f"bug_entry says line {int(entry.line)} flags {int(entry.flags)}"
    if t == "vmap":
        va = find_vmap_area(prog, fact["address"])
        got = (int(va.va_start), int(va.va_end)) if va else None
        return None if got == (fact["start"], fact["end"]) else f"vmap area {got}"
    if t == "identify":
        got = identify_address(prog, fact["address"])
        return None if got == fact["text"] else f"identify_address says {got!r}"
    if t == "module":
        mod = find_module(prog, fact["name"])
        if not mod:
            return f"no module {fact['name']}"
        taints = int(mod.taints)
        bad = [c for c in fact["taints"] if c in TAINT_BITS and not taints >> TAINT_BITS[c] & 1]
        return None if not bad else f"module taints {taints:#x} lack {bad}"
    if t == "code":
        insn = next(_md(prog).disasm(prog.read(fact["end"], 16), fact["end"]))
        # the branch's label is its last operand ("0x…" on x86, "w1, #0x…" for arm64's cbz)
        last = insn.op_str.split(",")[-1].strip().lstrip("#")
        target = int(last, 16) if last.startswith("0x") else None
        return None if target == fact["address"] else f"{insn.mnemonic} {insn.op_str} does not close the loop"
    if t == "slab-object":
        info = slab_object_info(prog, fact["address"])
        if info is None:
            return "not in a slab object"
        got = (info.address, info.slab_cache.name.string_().decode(), info.allocated)
        want = (fact["object"], fact["cache"], fact["allocated"])
        return None if got == want else f"slab_object_info says {got}"
    if t == "slab-track":
        track = drgn.Object(prog, "struct track", address=fact["address"])
        if (int(track.pid), int(track.cpu)) != (fact["pid"], fact["cpu"]):
            return f"track pid {int(track.pid)} cpu {int(track.cpu)}"
        names = [_base(prog.symbol(f.pc).name) for f in stack_depot_fetch(track.handle)][: len(fact["stack"])]
        return None if names == [_base(n) for n in fact["stack"]] else f"stack depot says {names}"
    return f"unknown fact type {t}"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s["name"])
def test_every_evidence_item_rechecks_against_the_dump(scenario, record_property):
    report = report_of(scenario["name"])
    d = Dump(scenario["name"])
    failures, checked, marked = [], 0, 0
    for e in report["verdict"]["evidence"]:
        if e["text"].startswith("? "):
            marked += 1
            continue
        assert e["facts"], f"an unmarked claim with no fact: {e['text']}"
        for fact in e["facts"]:
            problem = recheck(d, fact)
            if problem:
                failures.append(f"{e['text'][:90]} — {fact['type']}: {problem}")
        checked += 1
    record_property("evidence_rechecked", checked)
    record_property("evidence_marked", marked)
    print(f"{scenario['name']}: {checked} evidence items re-checked, {marked} marked '?'")
    assert not failures, "\n".join(failures)
    assert checked, "no evidence item could be re-checked"
