"""What each verdict category means, what evidence supports it and what to look at next.

The codes are the stable ones of VERDICTS.md; ``kpostmortem explain CODE`` prints these entries.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ALIASES", "Category", "CATEGORIES", "lookup", "suggest"]


@dataclass(frozen=True)
class Category:
    """One verdict category, explained."""

    code: str
    """The stable kebab-case code used in reports."""
    summary: str
    """One line: what happened."""
    meaning: str
    """A paragraph: what the kernel did and why it stopped."""
    evidence: tuple[str, ...]
    """Facts in a dump that support this verdict (what kpostmortem looks for)."""
    next_steps: tuple[str, ...]
    """What a person should look at next."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["evidence"], d["next_steps"] = list(self.evidence), list(self.next_steps)
        return d

    def text(self) -> str:
        """The entry as plain text for a terminal."""
        lines = [f"{self.code}: {self.summary}", "", *_wrap(self.meaning), "", "Evidence that supports it:"]
        for e in self.evidence:
            lines += _wrap(e, first="  - ", rest="    ")
        lines += ["", "What to look at next:"]
        for n in self.next_steps:
            lines += _wrap(n, first="  - ", rest="    ")
        return "\n".join(lines)


def _wrap(text: str, width: int = 88, first: str = "", rest: str = "") -> list[str]:
    out, line = [], first
    for word in text.split():
        if line.strip(" -") and len(line) + 1 + len(word) > width:
            out.append(line)
            line = rest + word
        else:
            line = f"{line} {word}" if line.strip(" -") else line + word
    return out + ([line] if line.strip(" -") else [])


_SHELL = "`kpostmortem shell VMCORE` (drgn with the analysis in scope)"

CATEGORIES: dict[str, Category] = {c.code: c for c in (
    Category(
        "null-pointer-dereference",
        "kernel code read or wrote through a NULL pointer (or NULL plus a small offset)",
        "The CPU took a page fault in kernel mode on an address in the first pages of the address "
        "space, which is never mapped. Almost always a pointer that was NULL: the small offset is "
        "the member of the structure that was accessed through it (0x18 = the member at offset 24).",
        (
            "the oops line `BUG: kernel NULL pointer dereference, address: …` and CR2 in the first pages",
            "the faulting instruction's memory operand, with its base register = 0",
            "the effective address computed from pt_regs equal to the reported fault address",
            "the variable the base register holds at that PC (DWARF location lists), and its member",
            "the page-fault error code: read or write, kernel mode, page not present",
        ),
        (
            "the guilty function's source line: which pointer was NULL, and where it was set",
            "the callers in the trace: who passed the pointer, and whether NULL is a legal value there",
            "lifetime races: the object torn down (pointer cleared) while another path still used it",
            f"{_SHELL}: `fault`, then print the structures around the NULL pointer",
        ),
    ),
    Category(
        "bad-page-fault",
        "kernel-mode page fault on a non-NULL address with no valid mapping",
        "The kernel touched an address that is not NULL-ish and has no valid mapping for that access: "
        "an unmapped kernel address (a vmalloc guard page, a freed vmalloc area, a stale pointer), a "
        "user address dereferenced directly from kernel code, or a write to read-only memory.",
        (
            "the oops line `BUG: unable to handle page fault for address: …` and CR2",
            "the page-fault error code bits: write/read/instruction fetch, present or not, user or kernel",
            "what the address is: direct map, vmalloc (guard page?), module area, user range",
            "a page-table walk of the address in the dump",
        ),
        (
            "what object the address should belong to: out-of-bounds index, past the end of a buffer",
            "use-after-free of a vmalloc area or a module that was unloaded",
            "a user pointer used without copy_from_user()/copy_to_user()",
            "a write to rodata or to text (a missing set_memory_rw, a stray write)",
        ),
    ),
    Category(
        "general-protection-fault",
        "#GP, usually through a non-canonical pointer (poison values, garbage)",
        "The CPU raised a general-protection exception. In kernel code this is nearly always a memory "
        "access through a non-canonical address, which no page table can map: a pointer overwritten "
        "with a poison value (LIST_POISON, slab poison 0x6b6b…), random data, or an uninitialised value.",
        (
            "the oops line `general protection fault, probably for non-canonical address 0x…`",
            "the faulting operand's effective address is non-canonical",
            "the bad register's value matches a poison pattern (0xdead000000000100/122, 0x6b6b6b6b…)",
        ),
        (
            "a poison value names its story: LIST_POISON = an entry used after list_del(); 0x6b = use after kfree",
            "where the pointer was loaded from, and who freed or overwrote that memory",
            "debug options to catch it earlier: KASAN, SLUB_DEBUG (slub_debug=FZPU), DEBUG_LIST",
        ),
    ),
    Category(
        "bug-assertion",
        "BUG()/BUG_ON() fired: `kernel BUG at file:line`",
        "Code asserted a condition it considers impossible, and the condition was true. BUG() executes "
        "ud2; the kernel finds the address in its __bug_table, prints `kernel BUG at file:line` and kills "
        "the task (or panics with panic_on_oops).",
        (
            "the `kernel BUG at FILE:LINE!` line and `invalid opcode: 0000`",
            "ud2 at the faulting PC",
            "a __bug_table entry for the PC, with the same file and line",
        ),
        (
            "the condition at FILE:LINE and the state it checks: which invariant broke",
            "the structures the condition reads, in the dump (the values are still there)",
            "the code that last changed that state; recent changes in that area",
        ),
    ),
    Category(
        "warning-escalated",
        "a WARN() turned fatal by panic_on_warn",
        "A WARN()/WARN_ON() fired: the kernel thinks something is wrong but could continue. The system "
        "had kernel.panic_on_warn=1 (common in test fleets and fuzzing), so the warning panicked.",
        (
            "the `WARNING: CPU: … at FILE:LINE FUNC` line and the warning's message",
            "`Kernel panic - not syncing: kernel: panic_on_warn set`",
            "a __bug_table entry flagged as a warning at the PC, panic_on_warn = 1 in the dump",
        ),
        (
            "the condition at FILE:LINE: on a production system without panic_on_warn this is a warning, "
            "but it still points at a real bug",
            "the message's values (counters, states) and the code that changed them",
        ),
    ),
    Category(
        "warning",
        "a WARN() fired and the machine survived it (no panic_on_warn)",
        "A WARN()/WARN_ON() fired: the kernel found a state it considers a bug, printed a report with "
        "the registers and the call trace, tainted itself (W) and carried on. Found in logs (console, "
        "journal, pstore) of machines that did not go down; with panic_on_warn=1 the same report is "
        "`warning-escalated`. The verdict says what the log shows after the report.",
        (
            "the `WARNING: CPU: … at FILE:LINE FUNC` line and its call trace",
            "no `Kernel panic` and no new boot after the report in the log",
            "the `Code:` bytes: a ud2 at the RIP (the WARN trap on x86-64)",
        ),
        (
            "the condition at FILE:LINE: it still points at a real bug, and later crashes often start here",
            "how often it fires: the same signature across the fleet's logs (`kpostmortem batch`)",
            "whether the machine crashed later: a later oops in the same log may be its consequence",
        ),
    ),
    Category(
        "stack-overflow",
        "a kernel stack ran past its end (guard page hit, or recursion/large frames)",
        "The kernel stack of a task (16 KiB on x86-64) was exhausted. With VMAP_STACK the access to the "
        "guard page below the stack raises a double fault: `BUG: TASK stack guard page was hit`. Causes "
        "are unbounded recursion, large on-stack arrays, or deep call chains (storage stacks, nested IRQs).",
        (
            "`BUG: TASK stack guard page was hit at …` and `stack guard page: 0000` in the dump's log "
            "(the double-fault report often never reaches the console)",
            "the stack pointer outside the task's stack",
            "the same function repeated many times in the trace",
        ),
        (
            "the repeating frames: the recursion's exit condition",
            "large stack frames in the trace (`objdump -d` prologue sub rsp, or -fstack-usage)",
            "interrupts stacked on a deep task stack",
        ),
    ),
    Category(
        "stack-corruption",
        "the stack-end canary (STACK_END_MAGIC) or a stack-protector canary was overwritten",
        "Something wrote over the bottom of a task's stack (the STACK_END_MAGIC word checked by the "
        "scheduler: `corrupted stack end detected inside scheduler`) or over a function's stack "
        "protector canary (`stack-protector: Kernel stack is corrupted in: FUNC`). The code that wrote "
        "was running on that stack before the check.",
        (
            "the panic message naming the check",
            "the task's stack-end word != 0x57AC6E9D (checked for every task in the dump)",
            "`__stack_chk_fail` in the trace for the stack protector",
        ),
        (
            "the function named by the stack protector, or the code that ran on the task before it slept",
            "on-stack buffers written with an unchecked length (memcpy, sprintf, array index)",
            "stack depth: a near-overflow can also overwrite the end marker",
        ),
    ),
    Category(
        "explicit-panic",
        "code called panic() deliberately",
        "A kernel or module function decided the system cannot go on and called panic() with a message. "
        "The caller of panic() is the guilty frame; the message usually says why.",
        (
            "`Kernel panic - not syncing: MESSAGE`",
            "panic() called from the guilty frame on the crashed stack",
        ),
        (
            "the message and the condition in the caller that led to it",
            "whether the condition is a real fault (hardware, corrupted state) or a policy (a panic_on_* knob)",
        ),
    ),
    Category(
        "deliberate-crash",
        "an operator forced the crash (SysRq-c, echo c > /proc/sysrq-trigger)",
        "Someone or something asked for a crash dump on purpose: SysRq-c from a console, a write to "
        "/proc/sysrq-trigger, or a watchdog/management agent that does so. The dump is the state of a "
        "running system, not of a bug at the crashing PC.",
        (
            "`sysrq: Trigger a crash` and `Kernel panic - not syncing: sysrq triggered crash`",
            "sysrq_handle_crash in the trace",
        ),
        (
            "why it was triggered: a hang being investigated? then look at the other tasks, not the crashing one",
            "blocked tasks (state D), lock owners, and what each CPU was running",
        ),
    ),
    Category(
        "soft-lockup",
        "a CPU ran kernel code for too long without scheduling (watchdog: soft lockup)",
        "The soft-lockup watchdog noticed that a CPU had not scheduled for longer than 2 x "
        "watchdog_thresh seconds: kernel code looping with preemption disabled, or spinning on a lock. "
        "softlockup_panic=1 turned it into a panic. The suspect is the code the watchdog interrupt "
        "interrupted, not the watchdog.",
        (
            "`watchdog: BUG: soft lockup - CPU#N stuck for Ns! [comm:pid]`",
            "the interrupted frame under the watchdog's timer interrupt on that CPU",
            "softlockup_panic set in the dump",
        ),
        (
            "the loop in the guilty function: its exit condition, and whether it should call cond_resched()",
            "a spinlock being waited for: who holds it (the other CPUs' stacks)",
        ),
    ),
    Category(
        "hard-lockup",
        "a CPU stopped taking interrupts for too long (NMI watchdog: hard lockup)",
        "The NMI watchdog noticed a CPU that had not serviced its timer interrupt: code looping with "
        "interrupts disabled, usually spinning on a lock taken with spin_lock_irqsave.",
        (
            "`watchdog: Watchdog detected hard LOCKUP on cpu N` and the NMI backtrace",
            "the interrupted frame under the NMI on that CPU",
        ),
        (
            "the lock or loop with interrupts off; the owner of the lock on another CPU",
            "lock ordering between interrupt and process context (a deadlock on one CPU)",
        ),
    ),
    Category(
        "hung-task",
        "a task stayed in uninterruptible sleep (D) too long (hung_task_panic)",
        "khungtaskd found a task blocked in state D for longer than hung_task_timeout_secs, and "
        "hung_task_panic turned that into a panic. The suspect is what the task is waiting for, found "
        "from its own stack below the scheduler, wait and lock primitives.",
        (
            "`INFO: task COMM:PID blocked for more than N seconds.`",
            "the blocked task's stack: the wait or lock it sleeps in, and the caller",
        ),
        (
            "who should have woken it: the owner of the mutex/semaphore, the completion's signaller, the I/O",
            "other blocked tasks: a deadlock shows as a cycle of owners",
        ),
    ),
    Category(
        "deadlock",
        "blocked tasks wait for each other in a cycle (a hung task that can never wake)",
        "A hang whose wait-for graph has a cycle: each task sleeps on a lock (mutex, rw_semaphore…) "
        "held by the next, the last holds what the first waits for, so none can ever run again. "
        "Usually two code paths take the same two locks in opposite orders (ABBA). The hang detector "
        "(khungtaskd, hung_task_panic) noticed it; kpostmortem reads each lock's owner from the dump. "
        "A sub-kind of hung-task with a code of its own: the fix is lock ordering, not a wake-up.",
        (
            "each blocked task's wait object from its stack (the DWARF argument of the lock primitive, "
            "checked on the lock's wait list) and the lock's owner (mutex.owner, rwsem owner)",
            "the cycle of the wait-for graph, and each task's acquisition site (file:line)",
        ),
        (
            "the acquisition sites: which path takes the locks in the other order; pick one order",
            "lockdep (CONFIG_PROVE_LOCKING) on a test kernel reports such inversions before they hang",
        ),
    ),
    Category(
        "rcu-stall",
        "RCU detected a CPU or task that did not pass a quiescent state in time",
        "A grace period could not end because a CPU stayed in an RCU read-side critical section, or "
        "with preemption/interrupts off, for too long. Often the same root cause as a soft lockup.",
        (
            "`rcu: INFO: rcu_sched detected stalls on CPUs/tasks`",
            "the stalled CPU's interrupted frame",
        ),
        (
            "the loop or wait on the stalled CPU; long rcu_read_lock() sections",
        ),
    ),
    Category(
        "out-of-memory",
        "panic on out-of-memory (panic_on_oom, or no killable process)",
        "Memory ran out and the system was configured to panic rather than kill a process (vm.panic_on_oom), "
        "or the OOM killer found nothing to kill.",
        (
            "the OOM report in the log (`invoked oom-killer`, the memory summary and task list)",
            "`Kernel panic - not syncing: Out of memory` / `System is deadlocked on memory`",
        ),
        (
            "the biggest consumers in the OOM report; slab usage (a kernel memory leak?)",
            "the allocation that failed: order, GFP flags, the caller",
        ),
    ),
    Category(
        "memory-corruption",
        "list or slab corruption, use-after-free patterns",
        "A debug check found a data structure in an impossible state: a list entry whose neighbours do "
        "not point back (`list_add corruption`, `list_del corruption`), slab redzones or poison overwritten, "
        "a double free. The check fires after the damage; the writer is elsewhere.",
        (
            "`list_add corruption` / `list_del corruption` / slab `Redzone overwritten` / `Poison overwritten`",
            "poison values in registers or in the object",
        ),
        (
            "the object's type and who else uses it; its last free (slub_debug=U keeps alloc/free traces)",
            "KASAN on a reproducer, to catch the first bad access rather than the later check",
        ),
    ),
    Category(
        "locking-violation",
        "lockdep (or RCU's lockdep) found a lock used against its rules; the machine usually survives",
        "A debug kernel's lock validator (CONFIG_PROVE_LOCKING, CONFIG_PROVE_RCU) saw an acquisition "
        "that can deadlock (a lock-order cycle, a recursion, an IRQ-safe lock taken where interrupts "
        "can come in), a lock released that was not held, freed while held, still held on return to "
        "user space or at exit, or an RCU-protected pointer read outside the read side. lockdep "
        "reports such a bug the first time the code path runs, before it ever hangs a machine, and "
        "turns itself off after its first report. kpostmortem blames the acquisition lockdep objects "
        "to (its first `at:` line), not the lock primitive.",
        (
            "the report's headline (`possible circular locking dependency detected`, `inconsistent lock "
            "state`, `bad unlock balance detected`, `suspicious RCU usage`...) and its `at:` lines",
            "the dependency chain: the other paths that took the same locks in the other order",
            "no panic after the report (the machine survived), unless panic_on_warn made it fatal",
        ),
        (
            "the two acquisitions lockdep prints: which order is the documented one, and which path breaks it",
            "the held-locks list: which locks the task held at the report",
            "lockdep reports only the first problem it meets: fix it and run again for the next",
        ),
    ),
    Category(
        "invalid-context",
        "code slept, scheduled or used per-CPU data where it must not (atomic or preemptible context)",
        "A debug check (CONFIG_DEBUG_ATOMIC_SLEEP, CONFIG_DEBUG_PREEMPT) caught code that may sleep "
        "running with a spinlock held, interrupts off or inside an RCU read-side section "
        "(`sleeping function called from invalid context`), a call into the scheduler in atomic "
        "context (`scheduling while atomic`, which also panics some kernels), or a per-CPU access "
        "from preemptible code (`using smp_processor_id() in preemptible`). On a production kernel the "
        "same bug is a rare deadlock or a corrupted per-CPU value.",
        (
            "the report's headline and its `in_atomic()`, `irqs_disabled()`, `preempt_count` lines",
            "the call trace: the function that slept or read the CPU number, and its caller",
            "`Preemption disabled at:` and the held locks, when printed: who made the context atomic",
        ),
        (
            "which lock or section made the context atomic, and whether the sleeping call can move out of it",
            "GFP_KERNEL allocations under spinlocks (use GFP_ATOMIC or allocate before taking the lock)",
        ),
    ),
    Category(
        "memory-leak",
        "kmemleak found an allocated object that nothing points to any more",
        "kmemleak (CONFIG_DEBUG_KMEMLEAK) scans memory for pointers to every allocated object; one "
        "that no pointer reaches after a few scans is reported as `unreferenced object`, with its "
        "size, the task that allocated it and the allocation's stack. Not a crash: the memory is lost "
        "until reboot. kpostmortem blames the first frame of that stack that is not an allocation "
        "wrapper.",
        (
            "`unreferenced object 0x… (size N)` and its `backtrace:`",
            "the object's hex dump: the type it held often shows in its first bytes",
        ),
        (
            "every path that frees what the allocation site allocates: the error paths first",
            "reference counts taken and not dropped on the object that owns it",
        ),
    ),
    Category(
        "uninitialized-memory",
        "KMSAN saw a value computed from uninitialized memory used (a branch, a pointer, a copy out)",
        "KernelMemorySanitizer (CONFIG_KMSAN) tracks which bits of memory were ever written and reports "
        "when an uninitialized value decides a branch, is dereferenced, or leaves the kernel "
        "(`uninit-value`, `kernel-infoleak`). It prints where the value was used and, below, where the "
        "memory came from (`Uninit was created at:`).",
        (
            "`BUG: KMSAN: uninit-value in FUNC` and its stack",
            "the `Uninit was created at:` stack: the allocation that was never fully written",
        ),
        (
            "the allocation in `Uninit was created at`: which fields are left unset, and who should set them",
            "partial copies (copy_from_user of fewer bytes than the struct, padding copied to user space)",
        ),
    ),
    Category(
        "data-race",
        "KCSAN saw two CPUs access the same memory at once, at least one writing, without synchronisation",
        "The Kernel Concurrency Sanitizer (CONFIG_KCSAN) sets watchpoints on sampled accesses and "
        "reports a plain access that raced with a write from another CPU (`data-race in f / g`). "
        "Such a race can tear a value or let the compiler cache it; many are benign counters and need "
        "only READ_ONCE()/WRITE_ONCE(), some are real bugs.",
        (
            "`BUG: KCSAN: data-race in FUNC / FUNC2` and the two accesses' stacks",
            "the value that changed, when printed",
        ),
        (
            "whether the two accesses are meant to be serialised by a lock, and whether one path skips it",
            "READ_ONCE()/WRITE_ONCE() or data_race() for intended lockless accesses",
        ),
    ),
    Category(
        "undefined-behavior",
        "UBSAN caught undefined behaviour: an out-of-bounds index, an overflow, a bad shift",
        "The Undefined Behaviour Sanitizer (CONFIG_UBSAN) instruments arithmetic and array indexing "
        "and reports the C undefined behaviour it sees (`array-index-out-of-bounds`, "
        "`shift-out-of-bounds`, `signed-integer-overflow`, `invalid-load`). The kernel carries on unless "
        "panic_on_warn is set; the result of the operation is whatever the CPU made of it.",
        (
            "`UBSAN: KIND in FILE:LINE` and the operands it prints",
            "the call trace: the function that computed the bad value",
        ),
        (
            "where the index, shift count or operand comes from: user input that is not range-checked",
        ),
    ),
    Category(
        "invalid-opcode",
        "invalid opcode in kernel mode that is not a BUG()",
        "The CPU could not decode the instruction at the PC: a jump into data or the middle of an "
        "instruction, corrupted text, or an instruction the CPU does not support.",
        (
            "`invalid opcode: 0000` without a `kernel BUG at` line",
            "the bytes at the PC, decoded",
        ),
        (
            "how control got there: a bad function pointer, a corrupted return address",
            "CPU features the code assumed (an instruction built for a newer CPU)",
        ),
    ),
    Category(
        "divide-error",
        "integer division by zero (or overflow) in kernel mode",
        "A div/idiv instruction in kernel code had a zero divisor, or a quotient that does not fit.",
        (
            "`divide error: 0000`",
            "the div instruction at the PC and its divisor register = 0",
        ),
        (
            "where the divisor came from: an unvalidated value, a rate or size that can be zero",
        ),
    ),
    Category(
        "hardware-error",
        "machine check or similar hardware-reported error",
        "The CPU or platform reported an uncorrectable hardware error (machine check): memory, cache, "
        "bus or CPU. The software in the trace is usually a bystander.",
        (
            "`Machine check events logged`, MCE records, `Kernel panic - not syncing: Fatal machine check`",
        ),
        (
            "the MCE bank and address: which DIMM or CPU; the platform's error logs (BMC, EDAC)",
            "whether the same host fails repeatedly: replace hardware before debugging software",
        ),
    ),
    Category(
        "unknown",
        "not enough evidence for a verdict",
        "kpostmortem could not decide what kind of failure this is. The report says what it could not see: "
        "analyzers that failed, memory excluded from the dump, missing debug info.",
        (
            "the report's `missing` list and analyzer outcomes",
        ),
        (
            "missing debug info: pass --vmlinux and --debuginfo (the -dbg package of the exact kernel)",
            "a dump filtered too hard (makedumpfile -d 31 drops pages some analyzers need) or truncated",
            f"{_SHELL}: read the log (`dmesg`) and the crashed task's stack yourself",
        ),
    ),
)}


# Other names people (and the kernel's log) use for a category: log record kinds, short forms.
ALIASES = {
    "null": "null-pointer-dereference", "null-deref": "null-pointer-dereference",
    "page-fault": "bad-page-fault", "gpf": "general-protection-fault", "gp": "general-protection-fault",
    "bug": "bug-assertion", "bug-on": "bug-assertion", "warn": "warning", "warn-panic": "warning-escalated",
    "double-fault": "stack-overflow", "stack-guard": "stack-overflow", "stack-protector": "stack-corruption",
    "panic": "explicit-panic", "sysrq": "deliberate-crash", "oom": "out-of-memory",
    "list-corruption": "memory-corruption", "use-after-free": "memory-corruption", "uaf": "memory-corruption",
    "ud2": "invalid-opcode", "mce": "hardware-error", "machine-check": "hardware-error",
    "lockdep": "locking-violation", "possible-deadlock": "locking-violation",
    "sleep-in-atomic": "invalid-context", "scheduling-while-atomic": "invalid-context",
    "kmemleak": "memory-leak", "leak": "memory-leak", "kmsan": "uninitialized-memory",
    "uninit-value": "uninitialized-memory", "kcsan": "data-race", "ubsan": "undefined-behavior",
}


def lookup(code: str) -> Category | None:
    """The category with this code or alias (case, spaces and underscores ignored)."""
    key = code.strip().lower().replace("_", "-").replace(" ", "-")
    return CATEGORIES.get(ALIASES.get(key, key))


def suggest(code: str) -> list[str]:
    """Codes that look like ``code`` (for a typo), best first."""
    code = code.strip().lower()
    hits = [c for c in CATEGORIES if code and code in c]
    return hits or difflib.get_close_matches(code, list(CATEGORIES), n=3, cutoff=0.5)
