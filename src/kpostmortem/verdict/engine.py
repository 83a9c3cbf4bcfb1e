"""Weigh the report's sections into one Verdict: category, guilty frame, confidence, evidence.

Pure rules over plain data: the log's crash records, the crashed stack, the decoded fault,
the stack checks and the module list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kpostmortem.decode.reportkinds import ReportKind, report_kind_named
from kpostmortem.report import Evidence, Frame, Report, Verdict
from kpostmortem.verdict.frames import base_name, choose_guilty, is_helper, is_plumbing
from kpostmortem.verdict.hangs import hang_explanation, hang_guilty, rcu_holder_guilty, spin_holder_guilty
from kpostmortem.verdict.titles import make_signature, make_title

__all__ = ["decide", "category_of_record", "log_fallback_record", "primary_record"]

NULL_WINDOW = 0x10000
CONFIDENT = 0.5

# Log record kinds that describe a crash rather than the panic that followed it.
_RECORD_CATEGORY = {
    "null-deref": "null-pointer-dereference",
    "page-fault": "bad-page-fault",
    "gpf": "general-protection-fault",
    "bug": "bug-assertion",
    "warning": "warning-escalated",
    "soft-lockup": "soft-lockup",
    "hard-lockup": "hard-lockup",
    "hung-task": "hung-task",
    "rcu-stall": "rcu-stall",
    "double-fault": "stack-overflow",
    "stack-guard": "stack-overflow",
    "stack-corruption": "stack-corruption",
    "stack-protector": "stack-corruption",
    "oom": "out-of-memory",
    "list-corruption": "memory-corruption",
    "invalid-opcode": "invalid-opcode",
    "divide-error": "divide-error",
    "sysrq": "deliberate-crash",
    "mce": "hardware-error",
}

# Panic messages that name their cause.
_PANIC_MESSAGE_CATEGORY = (
    ("sysrq triggered crash", "deliberate-crash"),
    ("corrupted stack end", "stack-corruption"),
    ("stack-protector", "stack-corruption"),
    ("softlockup", "soft-lockup"),
    ("hard lockup", "hard-lockup"),
    ("hardlockup", "hard-lockup"),
    ("hung_task", "hung-task"),
    ("hung task", "hung-task"),
    ("out of memory", "out-of-memory"),
    ("deadlocked on memory", "out-of-memory"),
    ("panic_on_warn", "warning-escalated"),
    ("double fault", "stack-overflow"),
)

_DUMP_MODE_CATEGORY = {
    "sysrq": "deliberate-crash",
    "double-fault": "stack-overflow",
    "stack-end-check": "stack-corruption",
    "stack-protector": "stack-corruption",
    "warn-escalated": "warning-escalated",
    "oom": "out-of-memory",
    "explicit-panic": "explicit-panic",
    "bug": "bug-assertion",
}

_ESCALATION_MESSAGES = ("fatal exception", "fatal exception in interrupt", "fatal machine check")


def category_of_record(rec: dict) -> str | None:
    """The category a log record implies on its own, or None for a mere escalation."""
    kind = rec.get("kind")
    if kind == "panic":
        msg = (rec.get("panic_message") or "").lower()
        if rec.get("escalates") is not None or msg.strip() in _ESCALATION_MESSAGES:
            return None
        for needle, cat in _PANIC_MESSAGE_CATEGORY:
            if needle in msg:
                return cat
        return "explicit-panic"
    if kind == "page-fault":
        addr = rec.get("fault_address")
        if addr is not None and addr < NULL_WINDOW:
            return "null-pointer-dereference"
    if kind == "other":
        # Debug reports of a known kind (lockdep, kmemleak, KMSAN, ...: decode/reportkinds.py),
        # and KASAN/KFENCE, which found a bad access to memory.
        report = report_kind_named(rec.get("report_kind"))
        if report is not None:
            return report.category
        headline = rec.get("headline") or ""
        if "KASAN: null-ptr-deref" in headline:
            return "null-pointer-dereference"
        if "KASAN: " in headline or "KFENCE: " in headline:
            return "memory-corruption"
    return _RECORD_CATEGORY.get(kind or "")


def _survivable(rec: dict) -> bool:
    """A report the kernel prints and carries on from: a WARNING, a debug report (lockdep,
    kmemleak, KMSAN...), unless a panic ends it."""
    return rec.get("kind") == "warning" or report_kind_named(rec.get("report_kind")) is not None


def log_fallback_record(records: list[dict]) -> tuple[dict | None, int]:
    """For a log with no fatal record: the first report the machine survived (a WARNING, a
    lockdep or kmemleak report...), else the first record of any kind."""
    pidx = next((i for i, r in enumerate(records) if _survivable(r)), 0 if records else -1)
    return (records[pidx] if pidx >= 0 else None), pidx


def primary_record(records: list[dict]) -> tuple[dict | None, int]:
    """The record that started the crash: the first fatal one; escalated warnings count."""
    escalated = {r.get("escalates") for r in records if r.get("kind") == "panic"}
    for i, rec in enumerate(records):
        if _survivable(rec) and i not in escalated:
            continue  # a WARN or a debug report that did not panic is context, not the cause
        if category_of_record(rec) is not None:
            return rec, i
    return None, -1


@dataclass
class _Decision:
    category: str = "unknown"
    frames: list[Frame] = field(default_factory=list)
    guilty: Frame | None = None
    function: str | None = None
    module: str | None = None
    source: str | None = None
    message: str | None = None
    variant: str | None = None
    callers: list[str] = field(default_factory=list)
    """Function names below the guilty frame (for the signature), when not from the crashed stack."""
    score: float = 0.2
    evidence: list[Evidence] = field(default_factory=list)
    report: ReportKind | None = None
    """The debug report the verdict rests on (lockdep, kmemleak...), if any."""

    def add(self, kind: str, text: str, source: str | None = None, weight: float = 0.0,
            agrees: bool = True, facts: list[dict] | None = None) -> None:
        self.evidence.append(Evidence(kind, text, source, agrees, facts or []))
        self.score += weight


def _hex(v: int | None) -> str:
    return "?" if v is None else f"0x{v:x}"


def _fault_address_register(fault: dict) -> str:
    """Where the CPU put the faulting address: CR2 on x86-64, FAR_EL1 on arm64 (whose pt_regs
    have a pstate)."""
    return "FAR_EL1" if "pstate" in (fault.get("registers") or {}) else "CR2"


def _rec_is_current(rec: dict, report: Report) -> bool:
    """Whether the log record describes the crash on the crashed task's stack."""
    task = report.crashed_task
    if rec.get("pid") is not None and task.get("pid") is not None and rec["pid"] != task["pid"]:
        return False
    records = report.log.get("records", [])
    later = [
        r for r in records[rec.get("index", 0) + 1 :]
        if category_of_record(r) is not None and (r.get("pid") is None or r.get("pid") != rec.get("pid"))
    ]
    return not later


def _guilty_from_trace(d: _Decision, report: Report) -> None:
    cat = d.category
    # A bad memory access inside a lock or wait primitive (the lock word, the wait queue) is on
    # the caller's object: the caller is the suspect, as for hangs.
    # A WARNING inside them (lock debugging's checks) is about the caller's lock too.
    skip_sched = cat in ("stack-corruption", "hung-task", "general-protection-fault", "bad-page-fault",
                         "null-pointer-dereference", "memory-corruption", "warning", "warning-escalated",
                         # debug reports (lockdep, sleeping in atomic, KMSAN...) are about how the
                         # caller used a lock or slept, not the primitive
                         "unknown", "locking-violation", "invalid-context", "memory-leak",
                         "uninitialized-memory", "data-race", "undefined-behavior")
    skip_irq = cat in ("soft-lockup", "hard-lockup", "rcu-stall", "hung-task")
    frames = report.frames
    if d.report is not None and d.report.skip is not None:
        # the report's own machinery (kmemleak's allocation wrappers, page_owner...)
        skip = d.report.skip
        frames = [f for f in frames if not skip.search(base_name(f.function) or "")]
    if cat == "stack-corruption":
        # The stack-end check fires inside schedule(): the suspect is the task's own code.
        d.guilty = choose_guilty(frames, skip_scheduler=True, skip_interrupt=True)
    elif skip_irq:
        # The watchdog fires from an interrupt on the stuck CPU: the suspect is the code that
        # interrupt interrupted (the first pt_regs frame), not the watchdog's own frames.
        first_irq = next((i for i, f in enumerate(frames) if f.interrupted), 0)
        d.guilty = choose_guilty(frames[first_irq:], skip_scheduler=skip_sched, skip_interrupt=True,
                                 skip_spin=True)
    else:
        d.guilty = choose_guilty(frames, skip_scheduler=skip_sched, skip_interrupt=skip_irq)
        if d.guilty is None and skip_sched:
            # nothing but scheduler code on the stack (a fault in schedule_tail() itself, the
            # first function a new task runs): the scheduler frame is the suspect after all
            d.guilty = choose_guilty(frames, skip_interrupt=skip_irq)
    handler = None
    if cat == "deliberate-crash":
        hit = next((f for f in frames if f.function == "sysrq_handle_crash"), None)
        if hit is None and _returns_into_next(d.guilty) and any(f.function == "__handle_sysrq" for f in frames):
            # arm64 prints the return address after sysrq_handle_crash()'s closing call to panic()
            # as the next function's first byte (`sysrq_reset_seq_param_set+0x0`): the frame is
            # the 'c' key's handler, which "sysrq: Trigger a crash" names.
            handler = "sysrq_handle_crash"
        d.guilty = hit or d.guilty
    if d.guilty is not None:
        d.function = handler or base_name(d.guilty.function)
        d.module = None if handler else d.guilty.module
        d.source = None if handler else d.guilty.source


def _returns_into_next(frame: Frame | None) -> bool:
    """A caller frame printed at offset 0 of its function: a return address just past a call
    that was the last instruction of the function before it in memory (a noreturn call such as
    panic(); arm64 ends such functions with the `bl`). Only a log's frames can be named so: an
    unwinder looks return addresses up at pc - 1."""
    return frame is not None and frame.index > 0 and not frame.interrupted and frame.offset == 0 \
        and frame.pc is None


def _guilty_from_blocked(d: _Decision, report: Report, rec: dict | None) -> bool:
    """Hung task: the suspect is where the blocked task waits, not the detector that noticed."""
    if hang_guilty(d, report, rec):
        return True
    tasks = (report.blocked_tasks or {}).get("tasks", [])
    pid = (rec or {}).get("pid")
    task = next((t for t in tasks if t.get("pid") == pid), tasks[0] if tasks else None)
    if not task or not task.get("frames"):
        return False
    frames = [Frame(**f) for f in task["frames"]]
    d.guilty = None
    g = choose_guilty(frames, skip_scheduler=True, skip_interrupt=True)
    if g is None:
        return False
    d.function, d.module, d.source = base_name(g.function), g.module, g.source
    d.callers = [base_name(f.function) or "" for f in frames[g.index + 1 :] if not f.inline]
    secs = f" for {task['blocked_seconds']} s" if task.get("blocked_seconds") is not None else ""
    d.add("state", f"task {task['comm']}[{task['pid']}] is in D state{secs}, waiting in {d.function}()",
          "the blocked task's own stack in the dump", 0.2,
          facts=[{"type": "task", "pid": task["pid"], "state": "D", "function": g.function}])
    return True


def _guilty_from_record(d: _Decision, rec: dict) -> None:
    rip = rec.get("rip")
    if rip and rip.get("function") and not is_plumbing(base_name(rip["function"]) or ""):
        d.function = base_name(rip["function"])
        d.module = rip.get("module")
        d.source = rec.get("rip_source")
        d.callers = [base_name(n) or "" for n in rec.get("call_trace", [])]
        return
    for name in rec.get("call_trace", []):
        b = base_name(name)
        if b and not is_plumbing(b):
            d.function = b
            return


def _fault_evidence(d: _Decision, report: Report) -> None:
    fault = report.fault
    if not fault:
        return
    insn = fault.get("trapping_instruction")
    event = fault.get("cpu_event") or {}
    words = event.get("instruction_words") or "instruction at the exception frame's PC"
    vector = f" ({event['vector']} {event['name']})" if event.get("vector") else ""
    where = "decoded at the oops's RIP, registers from its log" if fault.get("from_log") else \
        "decoded at the frame's PC"
    if insn:
        regs = fault.get("registers", {})
        reg = fault.get("bad_register")
        regtxt = f", {reg} = {_hex(regs.get(reg))}" if reg else ""
        d.add("instruction", f"{words}{vector}: {insn}{regtxt}", where,
              facts=_instruction_facts(fault) + _register_facts(fault, [reg] if reg else []))
    ea, fa = fault.get("effective_address"), fault.get("fault_address")
    # A stack overflow's #PF faults again pushing its own frame onto the guard page (→ #DF):
    # CR2 is then that push, not the instruction's operand.
    if ea is not None and fa is not None and d.category != "stack-overflow":
        facts = _instruction_facts(fault) + _register_facts(
            fault, [r for r in (fault.get("base_register"), fault.get("index_register")) if r and r != "rip"]) \
            + _address_in_log(report, fa)
        if ea == fa:
            d.add("instruction", f"effective address {_hex(ea)} = reported fault address",
                  f"operand arithmetic on pt_regs vs {_fault_address_register(fault)}", 0.1, facts=facts)
        else:
            d.add("instruction", f"effective address {_hex(ea)} ≠ reported fault address {_hex(fa)}",
                  f"operand arithmetic on pt_regs vs {_fault_address_register(fault)}", -0.05, agrees=False,
                  facts=facts)
    cls = fault.get("address_class") or {}
    kind = cls.get("kind")
    if kind:
        agrees = {
            "null-pointer-dereference": kind in ("null", "near-null"),
            "general-protection-fault": kind in ("non-canonical", "poison"),
            "bad-page-fault": kind not in ("null", "near-null"),
        }.get(d.category)
        if agrees is not None:
            classified = fault.get("fault_address") if fault.get("fault_address") is not None else \
                fault.get("effective_address")
            facts = _address_in_log(report, fault.get("fault_address")) or (
                _instruction_facts(fault) + _register_facts(fault, [fault.get("bad_register")] if
                                                             fault.get("bad_register") else []))
            d.add("register", f"address class: {cls.get('description')}", "fault address",
                  0.05 if agrees else -0.1, agrees=agrees, facts=facts if classified is not None else [])
    for s in fault.get("suspects", [])[:2]:
        access = f", the access is `{s['name']}->{s['member']}`" if s.get("member") else ""
        holds = f"{fault.get('bad_register')} holds `{s['name']}` ({s['type']}) in {s['function']}()"
        d.add("debuginfo", holds + access, "DWARF location of the variable at this PC", 0.03,
              facts=_register_facts(fault, [fault.get("bad_register")]) + [
                  {"type": "variable", "frame": fault.get("frame_index"), "name": s["name"],
                   "value": fault.get("bad_register_value"), "member": s.get("member"),
                   "displacement": fault.get("displacement")}])
    origin = fault.get("origin") or {}
    if origin.get("text") and not origin.get("unknown"):
        d.add("debuginfo", origin["text"], "backward scan of the decoded window + DWARF",
              facts=_origin_facts(fault, origin))
    if fault.get("mapping") and d.category in ("bad-page-fault", "general-protection-fault"):
        mapped = fault["mapping"] == "mapped"
        walked = fault.get("fault_address") if fault.get("fault_address") is not None else \
            fault.get("effective_address")
        known = fault["mapping"] in ("mapped", "not mapped")
        ec = fault.get("error_code") or {}
        # a permission fault is on a present page: "mapped" is what it must find
        want_mapped = ec.get("fault_kind") == "permission fault" or bool(ec.get("present"))
        d.add("memory", f"page-table walk of {_hex(walked)}: {fault['mapping']}",
              "init_mm page tables in the dump", 0.05 if mapped == want_mapped else -0.05,
              agrees=mapped == want_mapped,
              facts=[{"type": "page-table", "address": walked, "mapped": mapped}] if known else [])
    if fault.get("identity"):
        d.add("memory", f"{_hex(fault.get('fault_address', fault.get('effective_address')))} is {fault['identity']}",
              "drgn identify_address", facts=[fault["identity_fact"]] if fault.get("identity_fact") else [])
    bug = fault.get("bug")
    if bug and bug.get("file"):
        kind = "WARN" if bug.get("warning") else "BUG"
        agrees = (d.category == "warning-escalated") == bool(bug.get("warning"))
        d.add("instruction", f"__bug_table entry at the PC: {kind} at {bug['file']}:{bug['line']}",
              "the kernel's bug table in the dump", 0.05 if agrees else -0.1, agrees=agrees,
              facts=[{"type": "bug-entry", "address": bug.get("entry"), "line": bug["line"],
                      "flags": bug.get("flags")}] if bug.get("entry") is not None else [])
    if fault.get("invalid_pc"):
        caller = fault.get("caller") or {}
        facts = _register_facts(fault, ["rip"])
        if caller.get("return_address") is not None and "rsp" in (fault.get("registers") or {}):
            facts.append({"type": "memory", "address": fault["registers"]["rsp"], "size": 8,
                          "value": caller["return_address"]})
        d.add("register", f"PC {_hex(fault.get('pc'))} is not in kernel text: a call through a bad function pointer"
              + (f"; the return address on the stack is in {caller.get('symbol')}" if caller else ""),
              "pt_regs + [rsp]", facts=facts)
        target = fault.get("call_target") or {}
        if target.get("expression"):
            d.add("debuginfo", f"{_call_target_text(target)}: {target.get('call_symbol', 'the caller')} called through "
                  f"it (`{target['call']}`" + (f", {target['register']} = {_hex(target.get('register_value'))}"
                                               if target.get("register") else "") + ")",
                  "the call before the return address, the loads before it + DWARF", 0.05,
                  facts=_call_target_facts(fault, target))
    if fault.get("poison"):
        d.add("memory", f"bad pointer is a poison value: {fault['poison']}", "register value",
              facts=_register_facts(fault, [fault.get("bad_register")]) if fault.get("bad_register") else [])
    ec = fault.get("error_code")
    if ec:
        d.add("register", f"{ec.get('name', 'page-fault error code')} {_hex(ec.get('raw'))}: {ec.get('text')}",
              "oops message",
              facts=_in_log(report, _error_code_words(ec)) if ec.get("raw") is not None else [])
    if fault.get("is_ud2") and d.category in ("bug-assertion", "warning-escalated"):
        d.add("instruction", f"{fault.get('trapping_instruction') or 'ud2'} at the trapping PC (BUG()/WARN() trap)",
              "decoded at the frame's PC", 0.05,
              facts=_instruction_facts(fault))


def _freed_object_evidence(d: _Decision, report: Report) -> None:
    """A freed slab object on the fault's path: where it is, and its last free and allocation."""
    obj = (report.fault or {}).get("slab_object")
    if not obj:
        return
    d.add("memory", f"{_hex(obj['object'])} is a free object of slab cache {obj['cache']} "
          f"(offset {obj['offset']:#x}): the access used freed memory", "drgn slab_object_info",
          0.05, facts=[{"type": "slab-object", "address": obj["object"] + obj["offset"], "object": obj["object"],
                        "cache": obj["cache"], "allocated": False}])
    # SLUB keeps the LAST allocation and free only: after a reuse they are the reuser's.
    for item, verb in (("free", "last freed"), ("alloc", "last allocated")):
        t = obj.get(item)
        if not t or not t.get("addr"):
            continue
        stack = " ← ".join(t["stack"][:6]) if t.get("stack") else t.get("function")
        d.add("memory", f"{verb} by {t.get('by')}() (pid {t['pid']}, CPU {t['cpu']}): {stack}",
              "the object's SLUB track (slub_debug=U) and the stack depot",
              facts=[{"type": "memory", "address": t["address"], "size": 8, "value": t["addr"]},
                     {"type": "slab-track", "address": t["address"], "pid": t["pid"], "cpu": t["cpu"],
                      "stack": (t.get("stack") or [])[:6]}])


def _instruction_facts(section: dict) -> list[dict]:
    """The instruction at the frame's PC as a re-checkable fact: its address, bytes and text."""
    insns = section.get("instructions") or []
    at = section.get("trap_index", section.get("pc_index"))
    if at is None or not 0 <= at < len(insns):
        return []
    i = insns[at]
    return [{"type": "instruction", "address": i.get("address"), "bytes": i.get("bytes"),
             "text": i.get("text")}]


def _register_facts(section: dict, names: list[str]) -> list[dict]:
    """Saved registers of the pt_regs frame, as facts (frame index, register, value)."""
    regs = section.get("registers") or {}
    if section.get("from_log"):
        return [{"type": "log-register", "register": r, "value": regs[r]} for r in names if r in regs]
    return [{"type": "register", "frame": section.get("frame_index"), "register": r, "value": regs[r]}
            for r in names if r in regs]


def _origin_facts(fault: dict, origin: dict) -> list[dict]:
    """Where the bad register was loaded from: the base register (unchanged up to the PC) and,
    when DWARF named it, the variable that holds the same pointer in that frame."""
    facts = [{"type": "instruction", "address": origin["at_address"], "bytes": origin["bytes"],
              "text": origin.get("instruction")}] if origin.get("bytes") else []
    if origin.get("base_register") in (fault.get("registers") or {}) and origin.get("base_value") is not None:
        facts += _register_facts(fault, [origin["base_register"]])
    for step in origin.get("steps") or []:
        if step.get("type") == "register" and not fault.get("from_log"):
            facts += _register_facts(fault, [step["register"]])
            facts.append({"type": "variable", "frame": fault.get("frame_index"), "name": step["variable"],
                          "value": step["value"]})
    if origin.get("variable") and origin.get("base_value") is not None and not fault.get("from_log"):
        facts.append({"type": "variable", "frame": fault.get("frame_index"), "name": origin["variable"],
                      "value": origin["base_value"], "member": origin.get("member"),
                      "displacement": origin.get("loaded_from")})
    if origin.get("address") is not None and fault.get("bad_register") in (fault.get("registers") or {}):
        facts.append({"type": "memory", "address": origin["address"], "size": origin.get("size") or 8,
                      "value": fault["registers"][fault["bad_register"]],
                      "note": "the loaded value is still in memory (unless written since)"})
    return facts


def _call_target_text(target: dict) -> str:
    """"`dev->ops->probe` was NULL (struct foo_ops, member `probe`)"."""
    value = target.get("value")
    state = "was NULL" if value == 0 else f"held {_hex(value)}"
    where = f" ({target['struct']}, member `{target['member']}`)" if target.get("member") else ""
    return f"`{target['expression']}` {state}{where}"


def _call_target_facts(fault: dict, target: dict) -> list[dict]:
    facts = _register_facts(fault, [target["register"]]) if target.get("register") else []
    for step in target.get("steps") or []:
        if step.get("type") == "register":
            facts += _register_facts(fault, [step["register"]])
            facts.append({"type": "variable", "frame": (fault.get("frame_index") or 0) + 1,
                          "name": step["variable"], "value": step["value"]})
    if target.get("address") is not None and target.get("value") is not None:
        facts.append({"type": "memory", "address": target["address"], "size": 8, "value": target["value"]})
    return facts


def _error_code_words(ec: dict) -> str:
    """How the oops printed the fault's syndrome: arm64's "ESR = 0x%016lx" (ESR_EL1), x86's
    "#PF: error_code(0x%04lx)"."""
    if "ESR" in (ec.get("name") or ""):
        return f"ESR = {ec['raw']:#018x}"
    return f"error_code({ec['raw']:#06x})"


def _in_log(report: Report, text: str) -> list[dict]:
    """A log fact: ``text`` is in the kernel log (the crash record that holds it, if one does)."""
    for rec in report.log.get("records", []):
        if any(text in line for line in [rec.get("headline") or "", *(rec.get("lines") or [])]):
            return [{"type": "log", "record": rec.get("index"), "contains": text}]
    return [{"type": "log", "record": None, "contains": text}]


def _address_in_log(report: Report, address: int | None) -> list[dict]:
    """The reported fault address, as the log printed it (%016lx, or 0x%lx in some messages)."""
    if address is None:
        return []
    for text in (f"{address:016x}", f"{address:#x}"):
        facts = _in_log(report, text)
        if facts[0]["record"] is not None:
            return facts
    return _in_log(report, f"{address:016x}")


def _frame_fact(report: Report, index: int | None, sp: bool = False) -> dict:
    frame = report.frames[index] if index is not None and 0 <= index < len(report.frames) else None
    if frame is None:
        return {"type": "frame", "index": index, "function": None}
    fact = {"type": "frame", "index": index, "function": frame.function, "pc": frame.pc}
    if sp and frame.sp is not None:
        fact["sp"] = frame.sp
    return fact


def _task_stack_fact(bounds: dict) -> dict:
    return {"type": "task-stack", "pid": bounds.get("pid"), "start": bounds.get("start"), "end": bounds.get("end")}


# Functions on the crashed stack that show how it went down (analyzers/crashinfo.py).
_HOW_FUNCTIONS = ("sysrq_handle_crash", "watchdog_timer_fn", "check_hung_uninterruptible_tasks", "check_panic_on_warn",
                  "out_of_memory", "exc_double_fault", "handle_stack_overflow", "__stack_chk_fail", "panic")


def _how_facts(report: Report) -> list[dict]:
    for name in _HOW_FUNCTIONS:
        for f in report.frames:
            if base_name(f.function) == name:
                return [_frame_fact(report, f.index)]
    if report.frames and report.frames[0].interrupted:
        return [_frame_fact(report, 0) | {"interrupted": True}]
    return []


def _log_facts(d: _Decision, report: Report) -> None:
    """Log evidence quotes the log: attach where the quoted words are."""
    records = report.log.get("records", [])
    for e in d.evidence:
        if e.facts or e.kind != "log":
            continue
        rec = next((r for r in records if r.get("headline") and r["headline"] in e.text), None)
        if rec is not None:
            e.facts = [{"type": "log", "record": rec.get("index"), "contains": rec["headline"]}]
        elif e.text.startswith("assertion at "):
            # "file.c:211", as BUG() printed it: after a directory (6.1's absolute M= path) or
            # alone (7.2 prints an external module's file without one)
            e.facts = _in_log(report, e.text.removeprefix("assertion at ").rsplit("/", 1)[-1])


def _mark_unchecked(d: _Decision) -> None:
    """A claim with nothing to re-check it against is marked "?" (it is a reading, not a fact)."""
    for e in d.evidence:
        if not e.facts and not e.text.startswith("? "):
            e.text = "? " + e.text


def _interrupt_evidence(d: _Decision, report: Report) -> None:
    """An interrupt or NMI stopped the crashed CPU: the instruction it interrupted and the loop
    around it, with what the loop polls and what it holds."""
    it = report.interrupted
    if not it:
        return
    held = it.get("stalled_cpu") or {}
    # The section may be another CPU's (an RCU stall noticed elsewhere): its frame facts then
    # name the task whose stack their indexes count in.
    _interrupt_evidence_of(d, it, held.get("pid"))


def _interrupt_evidence_of(d: _Decision, it: dict, pid: int | None) -> None:
    def on(facts: list[dict]) -> list[dict]:
        if pid is not None:
            for f in facts:
                if f.get("type") in ("register", "variable", "frame"):
                    f["pid"] = pid
        return facts

    event = it.get("event") or {}
    if it.get("instruction"):
        d.add("instruction", f"interrupted instruction: {it['instruction']} in {it.get('function')} "
              f"(stopped by a {event.get('name', 'interrupt')})",
              f"decoded at the interrupt frame's PC; {event.get('source', 'entry stub')}",
              facts=on(_instruction_facts(it) + [{"type": "frame", "index": it.get("frame_index"),
                                                  "function": it.get("function")}]))
    elif event:
        why = "; ".join(it.get("problems") or []) or "no code at the PC"
        d.add("instruction", f"interrupted instruction: not decoded ({why}), in {it.get('function')} "
              f"(stopped by a {event.get('name', 'interrupt')})",
              f"the interrupt frame; {event.get('source', 'entry stub')}",
              facts=on([{"type": "frame", "index": it.get("frame_index"), "function": it.get("function")}]))
    if it.get("interrupts_enabled") is False:
        d.add("instruction", f"interrupts were disabled in {it.get('function')} (EFLAGS.IF clear in the saved "
              f"registers, rflags = {_hex((it.get('registers') or {}).get('rflags'))}): the CPU took no timer tick, "
              "so nothing on it could notice or end the wait", "the interrupted frame's saved registers",
              facts=on(_register_facts(it, ["rflags"])))
    lp = it.get("loop")
    if not lp:
        return
    stuck = d.category in ("soft-lockup", "hard-lockup", "rcu-stall")
    where = f"{lp['head_symbol']}–{lp['closing_symbol']}" + (f" ({lp['source']})" if lp.get("source") else "")
    if lp.get("busy_wait"):
        relax = f", cpu_relax() ({lp.get('relax_instruction') or 'pause'}) in it" if lp.get("relaxes") else ""
        calls = f", calls {', '.join(c['callee'] for c in lp['calls'])} (none sleeps)" if lp.get("calls") else \
            ", no call in it"
        d.add("instruction", f"busy-wait loop {where}, closed by `{lp['closing_instruction']}`{calls}{relax}",
              "the decoded function: backward branch spanning the interrupted PC", 0.05 if stuck else 0.0,
              facts=[{"type": "code", "address": lp["head"], "end": lp["closing_branch"],
                      "text": lp["closing_instruction"]}])
    else:
        d.add("instruction", f"the loop {where} calls {', '.join(lp['sleeps'])}: it sleeps or yields, "
              "so it is not a busy-wait", "the decoded function", -0.05 if stuck else 0.0, agrees=not stuck)
    for e in lp.get("exits") or []:
        poll = lp["polls"][e["poll"]] if e.get("poll") is not None else None
        if poll is None or not e.get("text"):
            continue
        named = bool(poll.get("name"))
        name = f"`{poll['name']}` ({poll.get('operand')}, " if named else f"{poll.get('operand')} ("
        value = "?" if poll.get("value") is None else _hex(poll["value"])
        base = f"{poll['base_register']} = {_hex(poll.get('base_value'))}" if poll.get("base_register") else \
            "rip-relative"
        facts = []
        if poll.get("base_register"):
            facts += _register_facts(it, [poll["base_register"]])
        if poll.get("value") is not None:
            facts.append({"type": "memory", "address": poll["address"], "size": poll["size"], "value": poll["value"]})
        if poll.get("dwarf_variable"):
            frame = poll.get("dwarf_frame")
            facts.append({"type": "variable", "frame": it.get("frame_index") if frame is None else frame,
                          "name": poll["dwarf_variable"],
                          "value": poll.get("base_value"), "member": poll.get("dwarf_member"),
                          "displacement": poll.get("displacement")})
        d.add("memory", f"the loop polls {name}{base}), which holds {value} in the dump; "
              f"it exits only when {e['text']}",
              "saved registers + the dump's memory" + (" + DWARF" if named else ""),
              0.05 if stuck else 0.0, facts=on(facts))
    pre = lp.get("preempt_disabled")
    if pre:
        d.add("instruction", f"preemption disabled before the loop (`{pre['text']}` increments the preempt "
              f"count at {pre['at']}, nothing decrements it before the loop)", "the decoded function",
              facts=[{"type": "instruction", "address": pre["address"], "bytes": pre["bytes"], "text": pre["text"]}])
    for lock in lp.get("locks_held") or []:
        name = f"`{lock['name']}`" if lock.get("name") else "a lock"
        held = {True: ", still held in the dump", False: ", but not held in the dump"}.get(lock.get("held"), "")
        facts = [{"type": "memory", "address": lock["address"], "size": 1, "value": lock["locked_byte"]}] \
            if lock.get("locked_byte") is not None else []
        d.add("memory", f"{name} taken by {lock['call']} at {lock['at']} before the loop, no unlock on the way{held}",
              "the decoded function + the lock word in the dump", facts=facts, agrees=lock.get("held") is not False)


def _stack_category(d: _Decision, report: Report) -> None:
    """Stack trouble read from the dump itself gives the category when the log names none."""
    sc = report.stack_checks
    if not sc or d.category != "unknown":
        return
    hit = sc.get("guard_page_hit")
    if hit or (sc.get("usage") or {}).get("past_end"):
        d.category = "stack-overflow"
        d.add("state", "stack overflow read from the dump: the crashed task's SP is below its stack",
              "stack checks (no crash record in the log)", 0.35,
              facts=[_frame_fact(report, hit["frame"], sp=True), _task_stack_fact(sc.get("stack_bounds") or {})]
              if hit else [])
    elif sc.get("crashed_task_canary_damaged") or (sc.get("stack_protector") or {}).get("function"):
        d.category = "stack-corruption"
        d.add("state", "stack corruption read from the dump: a canary of the crashed task is overwritten",
              "stack checks (no crash record in the log)", 0.3)


def _stack_hog(usage: dict) -> dict | None:
    """The biggest frame on the task stack (of code that is not plumbing, scheduler or a helper),
    the outermost of equals, when it is at least a quarter page: a chain of big frames' culprit."""
    frames = [f for f in usage.get("frames") or []
              if f.get("bytes") and f.get("depth") is not None and f.get("function")
              and not is_plumbing(base_name(f["function"]) or "") and not is_helper(base_name(f["function"]) or "")]
    if not frames:
        return None
    hog = max(frames, key=lambda f: (f["bytes"], f["index"]))
    return hog if hog["bytes"] >= 1024 else None


def _guilty_at(d: _Decision, report: Report, index: int | None, function: str | None) -> None:
    """Make frame ``index`` the guilty one, if the report's trace has that function there."""
    if index is None or not 0 <= index < len(report.frames):
        return
    frame = report.frames[index]
    if base_name(frame.function) != base_name(function):
        return
    d.guilty = frame
    d.function, d.module, d.source = base_name(frame.function), frame.module, frame.source


def _stack_evidence(d: _Decision, report: Report, current: bool) -> None:
    """Evidence from the stack checks: the guard page, the double-fault stack, the depth and the
    recursion of an overflow; overwritten canaries; a trace not to be trusted, with a guess."""
    sc = report.stack_checks
    if not sc:
        return
    if d.category == "stack-overflow":
        hit = sc.get("guard_page_hit")
        bounds = sc.get("stack_bounds") or {}
        if hit:
            where = "in its unmapped guard page" if hit.get("unmapped_guard") else "in the page below it"
            d.add("stack", f"frame #{hit['frame']} {hit.get('function')}: SP {_hex(hit.get('sp'))} is "
                  f"{hit.get('below_by')} bytes below the task stack ({_hex(bounds.get('start'))}–"
                  f"{_hex(bounds.get('end'))}), {where}",
                  "frame SPs of the unwind vs task->stack and the kernel page tables", 0.15,
                  facts=[_frame_fact(report, hit["frame"], sp=True), _task_stack_fact(bounds)]
                  + ([{"type": "page-table", "address": hit["guard_start"], "mapped": False}]
                     if hit.get("unmapped_guard") and hit.get("guard_start") is not None else []))
        df = sc.get("double_fault")
        if df and df.get("functions"):
            d.add("memory", f"{df.get('stack')} holds {' → '.join(df['functions'][:3])}: a double fault ran there",
                  "per-CPU exception stack scanned for return addresses", 0.05,
                  facts=[{"type": "text-on-stack", "start": df.get("start"), "end": df.get("end"),
                          "functions": df["functions"][:3]}] if df.get("start") is not None else [])
        usage = sc.get("usage") or {}
        if usage.get("depth") is not None:
            past = f": {usage['past_end']} bytes past the end" if usage.get("past_end") else ""
            d.add("stack", f"stack depth {usage['depth']} of {usage.get('thread_size')} bytes (THREAD_SIZE){past}",
                  "frame SPs of the unwind", 0.05 if usage.get("past_end") else 0.0,
                  facts=[_frame_fact(report, 0, sp=True), _task_stack_fact(bounds)] if report.frames else [])
        recursion = (sc.get("recursion") or [None])[0]
        if recursion:
            d.add("stack", f"recursion: {recursion['summary']}, frames #{recursion['first']}–#{recursion['last']}",
                  "function names and SPs of the unwind", 0.1,
                  facts=[_frame_fact(report, recursion["first"], sp=True),
                         _frame_fact(report, recursion["last"], sp=True)])
            if current:
                # The recursing function is the suspect, not whichever frame ran out of stack. Of
                # a cycle (a → b → c → a…), the member whose name sorts first, at its innermost
                # frame: which member touched the guard page depends on how deep the stack was
                # when the recursion began, which moves with the kernel build, and must not
                # split one bug into several titles and signatures.
                members = sorted({base_name(n) for n in recursion.get("functions") or [] if n and n != "??"})
                lo, hi = recursion.get("first"), recursion.get("last")
                at = next((f.index for f in report.frames if members and lo is not None and hi is not None
                           and lo <= f.index <= hi and base_name(f.function) == members[0]), None)
                _guilty_at(d, report, at, members[0] if members else None)
        elif usage.get("largest"):
            big = ", ".join(f"{f.get('function')} {f.get('bytes')} bytes" for f in usage["largest"][:3])
            d.add("stack", f"no recursion; largest frames: {big}", "frame SPs of the unwind")
            hog = _stack_hog(usage)
            if current and hog is not None and d.guilty is not None and hog["index"] != d.guilty.index:
                # A chain of big frames: which frame touched the guard page depends on how deep
                # the chain started (the kernel build's own frames below it), the biggest frame
                # on the task stack does not; it is also what has to shrink.
                d.add("stack", f"the biggest frame on the task stack is {hog['function']} ({hog['bytes']} bytes, "
                      f"frame #{hog['index']}): the suspect, rather than {d.function}, which only ran out",
                      "frame SPs of the unwind", facts=[_frame_fact(report, hog["index"], sp=True)])
                _guilty_at(d, report, hog["index"], hog["function"])
    damaged = sc.get("canaries_damaged") or []
    if damaged and (d.category == "stack-corruption" or sc.get("crashed_task_canary_damaged")):
        names = ", ".join(f"{c.get('comm')}[{c.get('pid')}]" for c in damaged[:3])
        first = damaged[0]
        text = f"stack-end canary (STACK_END_MAGIC) overwritten in {names}"
        if first.get("value") is not None:
            text += f": {_hex(first['value'])} instead of 0x57ac6e9d"
        if first.get("cause") == "stray write":
            text += f"; the {first['stack_not_used'] - 8} bytes above it never used: a stray write, not an overflow"
        elif first.get("cause") == "overflow":
            text += "; the stack was used right down to it: an overflow"
        d.add("memory", text, "end_of_stack() of every task", 0.15 if d.category == "stack-corruption" else 0.0,
              facts=[{"type": "canary", "pid": c.get("pid"), "value": c.get("value")} for c in damaged[:3]
                     if c.get("pid") is not None and c.get("value") is not None])
    protector = sc.get("stack_protector") or {}
    if protector.get("function"):
        d.add("stack", f"__stack_chk_fail called from {protector['function']} (frame #{protector.get('index')}): "
              "its stack-protector canary was overwritten", "drgn unwind of the dump",
              0.15 if d.category == "stack-corruption" else 0.0,
              facts=[_frame_fact(report, protector.get("index"))] + [
                  _frame_fact(report, f.index) for f in report.frames if f.function == "__stack_chk_fail"][:1])
        if d.category == "stack-corruption" and current:
            _guilty_at(d, report, protector.get("index"), protector["function"])
    if sc.get("trace_trustworthy") is False:
        problems = sc.get("trace_problems") or []
        more = f" (+{len(problems) - 2} more)" if len(problems) > 2 else ""
        d.add("stack", "the unwound trace may be wrong: " + "; ".join(problems[:2]) + more,
              "stack checks of the unwind", -0.1, agrees=False)
        functions = (sc.get("scan") or {}).get("functions") or []
        if functions:
            d.add("stack", "GUESS, not an unwind: return addresses found on the stack, innermost first: "
                  + " ← ".join(functions[:8]), "scan of the task stack for kernel text, like crash's bt -t")


def decide(report: Report) -> Verdict:
    """Weigh the report's sections into a Verdict."""
    d = _Decision()
    records = report.log.get("records", [])
    summary = report.summary
    how = (summary.get("how") or {}).get("mode", "unknown")
    primary, pidx = primary_record(records)
    from_log = report.dump.get("source") == "log"
    if primary is None and from_log:
        primary, pidx = log_fallback_record(records)

    # 1. Category: the log's first fatal record, checked against the dump's own crash path.
    if primary is not None:
        d.category = category_of_record(primary) or "unknown"
        d.report = report_kind_named(primary.get("report_kind"))
        if d.report is not None and d.report.variant:
            d.variant = d.report.variant
        if primary.get("kind") == "warning" and primary.get("index", pidx) not in {
                r.get("escalates") for r in records}:
            d.category = "warning"
        d.message = primary.get("panic_message") or primary.get("headline")
        d.add("log", primary.get("headline", ""), f"printk log, record {pidx + 1} of {len(records)}", 0.5)
        if primary.get("kind") == "panic" and primary.get("panic_message"):
            d.message = primary["panic_message"]
    elif how in _DUMP_MODE_CATEGORY:
        d.category = _DUMP_MODE_CATEGORY[how]
        d.add("state", f"crash path on the crashed stack: {summary['how']['description']}",
              "dump state (no crash record in the log)", 0.4)
    elif report.fault:
        cls = (report.fault.get("address_class") or {}).get("kind")
        if report.fault.get("is_ud2"):
            d.category = "bug-assertion"
        elif cls in ("null", "near-null"):
            d.category = "null-pointer-dereference"
        elif cls in ("non-canonical", "poison"):
            d.category = "general-protection-fault"
        elif report.fault.get("effective_address") is not None:
            d.category = "bad-page-fault"
        if d.category != "unknown":
            d.add("instruction", "category inferred from the decoded fault (no crash record in the log)",
                  "dump state", 0.35, facts=_instruction_facts(report.fault))
    if how in _DUMP_MODE_CATEGORY and d.category == _DUMP_MODE_CATEGORY[how] and primary is not None:
        d.add("state", f"dump state agrees: {summary['how']['description']}", "crashed stack", 0.1,
              facts=_how_facts(report))
    _stack_category(d, report)

    # 2. The guilty frame: from the crashed stack when the primary record is this crash,
    # otherwise from the (earlier) record's own RIP.
    # A log's frames are its primary record's own trace (logreport), whatever followed it: the
    # other tasks one hung-task pass names, the panic that ends it.
    current = primary is None or (from_log and report.frames) or _rec_is_current(primary, report)
    if d.category == "hung-task" and _guilty_from_blocked(d, report, primary):
        pass
    elif current and report.frames:
        _guilty_from_trace(d, report)
        # A log's frames are its record's own trace: there is no unwind to check the RIP against.
        if primary is not None and not from_log:
            rip = (primary.get("rip") or {}).get("function")
            if rip and d.guilty is not None:
                if base_name(rip) == d.function:
                    kind = ((d.guilty.event or {}).get("frame_words") or "pt_regs frame") \
                        if d.guilty.interrupted else "frame"
                    d.add("stack", f"crashed stack's {kind} is in {d.function}, as the log's RIP line says",
                          "drgn unwind of the dump", 0.15,
                          facts=[{"type": "frame", "index": d.guilty.index, "function": d.guilty.function}])
                elif report.frames and base_name(report.frames[0].function) == base_name(rip):
                    d.add("stack", f"exception frame {rip} matches the log's RIP line", "drgn unwind", 0.1,
                          facts=[_frame_fact(report, 0)])
            elif d.guilty is not None and primary.get("kind") == "panic":
                d.add("stack", f"panic() called from {d.function}", "drgn unwind of the dump", 0.15,
                      facts=[_frame_fact(report, d.guilty.index)] + [
                          _frame_fact(report, f.index) for f in report.frames if f.function == "panic"][:1])
    elif primary is not None:
        _guilty_from_record(d, primary)
        fault = report.fault or {}
        if not d.source and fault.get("from_log") and base_name(fault.get("function")) == d.function:
            d.source = fault.get("source")
        later = [r for r in records[pidx + 1 :] if category_of_record(r)]
        if later:
            d.add("log", f"the dump was taken at a later crash ({later[-1].get('headline')}); "
                  "the first one is the root", "printk log order", 0.0)

    if d.function is None and primary is not None and not from_log \
            and (primary.get("rip") or {}).get("function"):
        # The dump's crashed frame has no symbol (its module's pages or symbol table filtered
        # out of the dump): the log's RIP line, printed by the kernel itself, still names it.
        _guilty_from_record(d, primary)
        if d.function:
            d.guilty = None
            d.add("log", f"the dump's crashed frame has no symbol (its module's data is not in the dump); "
                  f"the log's RIP line names {d.function}", "printk log, RIP line", 0.05)

    if d.category == "soft-lockup" and current:
        spin_holder_guilty(d, report)
    if d.category == "rcu-stall":
        rcu_holder_guilty(d, report)

    # A call through a bad function pointer: the frame with the invalid PC names nothing;
    # its caller, from the return address on the stack, is the suspect.
    caller = (report.fault or {}).get("caller")
    if current and caller and (report.fault or {}).get("invalid_pc"):
        if d.guilty is None or d.guilty.index <= (report.fault or {}).get("frame_index", 0) or not d.function:
            d.function = base_name(caller.get("function"))
            d.module = caller.get("module")
            d.source = caller.get("source")

    # 3. Supporting facts.
    if from_log:
        _log_ending(d, report)
    if _returns_into_next(d.guilty) and d.function == base_name(d.guilty.function):
        d.add("stack", f"{d.guilty.function}+0x0 is a return address at the first byte of a function: the call "
              f"was the last instruction of the function before {d.guilty.function} in memory (a call that "
              "does not return, such as panic()), which the log cannot name; the module's or vmlinux's "
              "symbols can", "call trace offsets", -0.15, agrees=False)
    _stack_evidence(d, report, current)
    _fault_evidence(d, report)
    _interrupt_evidence(d, report)
    _memory_corruption(d, report, primary)
    if d.guilty is not None and d.guilty.source:
        d.score += 0.05
    if primary is not None and primary.get("bug_file"):
        d.add("log", f"assertion at {primary['bug_file']}:{primary.get('bug_line')}", "kernel BUG/WARNING line")
        if d.category in ("bug-assertion", "warning-escalated") and not d.source:
            d.source = f"{primary['bug_file']}:{primary.get('bug_line')}"

    culprit = _culprit(report, d.module)
    if culprit:
        words = ", ".join(culprit["taint_names"]) or "no taints"
        d.add("module", f"guilty code is in module {d.module} ({words})", "module list",
              facts=[{"type": "module", "name": d.module, "taints": culprit.get("taints") or ""}])

    _log_facts(d, report)
    _mark_unchecked(d)
    if d.category == "unknown":
        d.score = min(d.score, 0.3)
    confidence, missing = _what_was_missing(min(0.99, d.score), report)
    degraded = bool(report.debug_info.get("degraded"))
    if d.guilty is not None:
        d.callers = [base_name(f.function) or "" for f in report.frames[d.guilty.index + 1 :] if not f.inline]
    ctx_frames = _context_frames(d.callers, d.function)
    return Verdict(
        category=d.category,
        title=make_title(d.category, d.function, d.module, d.message, d.variant,
                         d.report.title_phrase(primary.get("headline") or "")
                         if d.report is not None and primary is not None else None),
        function=d.function,
        module=d.module,
        source=d.source,
        confidence=confidence,
        signature=make_signature(d.category, d.function, d.module, ctx_frames),
        evidence=d.evidence,
        explanation=_with_ending(_explain(d, report), report),
        culprit=culprit,
        guilty_frame=d.guilty.index if d.guilty is not None else None,
        degraded=degraded,
        missing=missing,
    )


def _memory_corruption(d: _Decision, report: Report, primary: dict | None) -> None:
    """Refine BUG/#GP into memory corruption when the evidence says what was corrupted."""
    records = report.log.get("records", [])
    bug_file = (primary or {}).get("bug_file") or ""
    list_record = next((r for r in records if r.get("kind") == "list-corruption"), None)
    if d.category in ("bug-assertion", "memory-corruption") and (list_record or bug_file.endswith("list_debug.c")):
        d.category, d.variant = "memory-corruption", "list"
        if list_record:
            d.add("log", list_record["headline"], "CONFIG_DEBUG_LIST check", 0.1)
        return
    _freed_object_evidence(d, report)
    poison = (report.fault or {}).get("poison") or ""
    if d.category == "general-protection-fault" and poison.startswith("slab free poison"):
        d.category, d.variant = "memory-corruption", "use-after-free"
        d.add("memory", "the bad pointer was read from a freed slab object (free poison 0x6b): use-after-free",
              "register value", 0.05,
              facts=_register_facts(report.fault, [report.fault["bad_register"]])
              if report.fault.get("bad_register") else [])


# Confidence lost for what the analysis could not see, taken off the evidence's score
# (after its cap, so that a strong case still shows the loss).
DEGRADED_PENALTY = 0.15
FAILED_PENALTY = 0.05
FAILED_CORE_PENALTY = 0.1  # the log or the crashed stack: what the verdict stands on
DUMP_PROBLEM_PENALTY = 0.1
MODULE_DEBUG_PENALTY = 0.05
LOG_PENALTY = 0.1  # a text log: no memory to check the log's claims against
LOG_NO_DEBUG_PENALTY = 0.05


def _what_was_missing(score: float, report: Report) -> tuple[float, list[str]]:
    """(confidence, what could not be checked): dump problems first, then failed analyzers,
    then what degraded mode (no kernel DWARF) skipped."""
    missing: list[str] = []
    dump = report.dump or {}
    for text in dump.get("header_problems") or []:
        fix = ("copy the dump again in full (was the disk kdump wrote to full?)" if "truncated" in text
               else "check the file: its header is damaged")
        missing.append(f"dump file: {text}; fix: {fix}")
        score -= DUMP_PROBLEM_PENALTY
    problems = dump.get("problems") or []
    for p in problems:
        missing.append(p["text"] + (f"; fix: {p['fix']}" if p.get("fix") else ""))
    score -= DUMP_PROBLEM_PENALTY * len(problems)
    for o in report.outcomes:
        if o.status != "failed":
            continue
        missing.append(f"{o.name}: {o.detail}")
        score -= FAILED_PENALTY + (FAILED_CORE_PENALTY if o.name in ("stack", "log") else 0.0)
    no_debug = [m for m in report.debug_info.get("modules_missing") or [] if m in {f.module for f in report.frames}]
    if no_debug and not report.debug_info.get("degraded"):
        missing.append(f"debug info of module {', '.join(no_debug)}: no source lines or variables in its "
                       "frames (names from its kallsyms); give its .ko/.ko.debug with --debuginfo DIR")
        score -= MODULE_DEBUG_PENALTY
    if dump.get("source") == "log":
        score -= LOG_PENALTY
        missing.append("a log holds no memory: other tasks' stacks, stack-end canaries, page tables, slab "
                       "objects and sysctls (panic_on_oops…) were not checked; a vmcore would show them")
        if not report.debug_info.get("vmlinux"):
            score -= LOG_NO_DEBUG_PENALTY
            missing.append("kernel debug info: no source lines, inlined frames or variables; give --vmlinux "
                           "(the -dbg/-debuginfo package of the log's kernel)")
    if report.debug_info.get("degraded"):
        score -= DEGRADED_PENALTY
        skipped = [o.name for o in report.outcomes if o.status == "skipped" and "DWARF" in (o.detail or "")]
        missing.append(
            "kernel DWARF (no vmlinux): no source lines, variables or task list; symbols from "
            "kallsyms, stack from ORC, log through VMCOREINFO"
            + (f"; skipped: {', '.join(skipped)}" if skipped else "")
        )
    return round(max(0.05, score), 2), missing


def _context_frames(callers: list[str], function: str | None) -> list[str]:
    """The first three distinct meaningful callers of the guilty function, for the signature.

    Inline frames are left out (they exist only with DWARF, so a degraded analysis of the same
    bug would otherwise sign differently); from a log record, the guilty function itself and
    what precedes it in its call trace are skipped.
    """
    if function in callers:
        callers = callers[callers.index(function) + 1 :]
    out: list[str] = []
    for name in callers:
        if name and name != function and not is_plumbing(name) and name not in out:
            out.append(name)
        if len(out) == 3:
            break
    return out


def _culprit(report: Report, module: str | None) -> dict[str, Any] | None:
    if not module:
        return None
    for m in report.modules.get("loaded", []):
        if m["name"] == module:
            return {
                "name": module,
                "taints": m.get("taints", ""),
                "taint_names": m.get("taint_names", []),
                "out_of_tree": "O" in m.get("taints", ""),
                "unsigned": "E" in m.get("taints", ""),
                "proprietary": "P" in m.get("taints", ""),
                "version": m.get("version"),
                "srcversion": m.get("srcversion"),
            }
    return {"name": module, "taints": None, "taint_names": [], "out_of_tree": None,
            "unsigned": None, "proprietary": None}


def _explain(d: _Decision, report: Report) -> str | None:
    hang = hang_explanation(d, report)
    if hang:
        return hang
    f = report.fault or {}
    where = f"{d.function}()" if d.function else "unknown code"
    target = f.get("call_target") or {}
    if f.get("invalid_pc") and target.get("expression"):
        return f"{where} called through a function pointer: {_call_target_text(target)}."
    if d.category == "null-pointer-dereference":
        acc = {"write": "wrote to", "read": "read from"}.get(f.get("access") or "", "accessed")
        addr = f.get("fault_address", f.get("effective_address"))
        through = ""
        if f.get("suspects"):
            s = f["suspects"][0]
            through = f" through `{s['name']}` == NULL" + (f" (member `{s['member']}`)" if s.get("member") else "")
        origin = f.get("origin") or {}
        came = ""
        if origin.get("variable") and f.get("suspects"):
            expr = f"{origin['variable']}->{origin['member']}" if origin.get("member") else origin["variable"]
            came = f"; `{f['suspects'][0]['name']}` was loaded from `{expr}`"
        return f"{where} {acc} address {_hex(addr)}{through}{came}."
    if d.category == "general-protection-fault":
        return f"{where} used a non-canonical pointer ({_hex(f.get('bad_register_value'))})" + (
            f", a poison value: {f['poison']}." if f.get("poison") else ".")
    if d.category == "bad-page-fault":
        ident = f" ({f['identity']})" if f.get("identity") else ""
        ec = f.get("error_code") or {}
        if ec.get("fault_kind") == "permission fault" or (ec.get("present") and ec.get("write")):
            # a present page the access may not make: ESR_EL1's permission fault, x86's P+W bits
            return (f"{where} wrote to {_hex(f.get('fault_address'))}{ident}, which is mapped "
                    "read-only (a permission fault on a present page).")
        return f"{where} touched {_hex(f.get('fault_address'))}{ident}, which has no valid mapping."
    if d.category in ("bug-assertion", "warning-escalated") and (f.get("bug") or {}).get("file"):
        b = f["bug"]
        return f"{where} hit {'WARN' if b.get('warning') else 'BUG'}() at {b['file']}:{b['line']}."
    if d.category == "stack-overflow":
        sc = report.stack_checks or {}
        hit = sc.get("guard_page_hit") or {}
        end = "into its guard page" if hit.get("unmapped_guard") else "past its end"
        rec = (sc.get("recursion") or [None])[0]
        if rec and rec.get("bytes_per_cycle"):
            unit = "frame" if len(rec.get("functions") or []) == 1 else "cycle"
            return (f"{where} recursed {rec['repeats']} times ({rec['bytes_per_cycle']} bytes per {unit}) "
                    f"and ran the kernel stack {end}.")
        return f"{where} ran the kernel stack {end}."
    if d.category == "stack-corruption":
        if ((report.stack_checks or {}).get("stack_protector") or {}).get("function"):
            return f"the stack-protector canary of {where}'s frame was overwritten (__stack_chk_fail)."
        return f"the stack-end canary was overwritten; {where} was running on that stack."
    if d.category == "explicit-panic":
        return f"{where} called panic(): {d.message}"
    records = report.log.get("records", [])
    if d.category == "hung-task":
        tasks = (report.blocked_tasks or {}).get("tasks", [])
        hung = next((r.get("pid") for r in records if r.get("kind") == "hung-task"), None)
        t = next((x for x in tasks if x.get("pid") == hung), tasks[0] if tasks else {})
        who = f"task {t.get('comm')}[{t.get('pid')}]" if t else "a task"
        return (f"{who} slept uninterruptibly in {where} past the hung-task timeout; "
                "khungtaskd panicked (hung_task_panic).")
    if d.category == "out-of-memory":
        oom = next((r for r in records if r.get("kind") == "oom"), None)
        asked = ""
        if oom:
            m = re.search(r"gfp_mask=\S+, order=(\d+)", oom.get("headline", ""))
            asked = f" (an order-{m.group(1)} allocation)" if m else ""
        return f"{where} kept allocating{asked} until memory ran out; panic_on_oom made the OOM a panic."
    if d.category == "memory-corruption" and d.variant == "use-after-free":
        obj = f.get("slab_object") or {}
        who = ""
        if (obj.get("free") or {}).get("by") and (obj.get("alloc") or {}).get("by"):
            who = (f" The object ({obj.get('cache')}) was last freed by {obj['free']['by']}() and last "
                   f"allocated by {obj['alloc']['by']}().")
        return f"{where} followed a pointer read from a freed slab object (free poison 0x6b…): use-after-free.{who}"
    if d.category == "memory-corruption" and d.variant == "list":
        lst = next((r for r in records if r.get("kind") == "list-corruption"), None)
        return f"{where} added to a list whose links were already corrupted" + (
            f" ({lst['headline'].split('.')[0]})." if lst else ".")
    return None


def _log_ending(d: _Decision, report: Report) -> None:
    """For a log: whether the machine went down at the crash, from what the log says next; and
    whether its Code: bytes are the binary's (debug info given)."""
    how = report.summary.get("how") or {}
    if how.get("fatal") is False:
        d.add("log", f"the machine survived: {how.get('description')}", "the log after the report")
    elif how.get("fatal"):
        d.add("log", f"the machine went down: {how.get('description')}", "the log after the report", 0.05)
    check = (report.fault or {}).get("code_check")
    if check:
        d.add("instruction", check["text"], "the log's Code: line vs the binary given",
              0.05 if check["matches"] else -0.15, agrees=check["matches"])


def _with_ending(explanation: str | None, report: Report) -> str | None:
    """A log's explanation says when the machine survived the report."""
    how = report.summary.get("how") or {}
    if report.dump.get("source") != "log" or how.get("fatal") is not False:
        return explanation
    return " ".join(x for x in (explanation, "The machine survived it:", how.get("description", "") + ".") if x)
