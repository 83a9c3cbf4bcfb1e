"""Parse kernel log text (dmesg, serial console, drgn's printk records) into crash records.

Pure text processing after the printk formats of Linux 4.x-6.x: oopses, BUG/WARNING, panics.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kpostmortem.decode.reportkinds import ReportKind, SiteScanner, report_kind

__all__ = [
    "KINDS",
    "OOPS_KINDS",
    "LogAnalysis",
    "LogLine",
    "OopsRecord",
    "TraceEntry",
    "parse_dmesg_text",
    "parse_log",
    "parse_trace_entry",
    "split_log_line",
]

KINDS = (
    "null-deref",
    "page-fault",
    "gpf",
    "bug",
    "warning",
    "panic",
    "soft-lockup",
    "hard-lockup",
    "hung-task",
    "rcu-stall",
    "double-fault",
    "stack-guard",
    "stack-corruption",
    "stack-protector",
    "oom",
    "list-corruption",
    "invalid-opcode",
    "divide-error",
    "sysrq",
    "mce",
    "other",
)
"""Every value OopsRecord.kind can take."""

OOPS_KINDS = frozenset(
    {
        "null-deref",
        "page-fault",
        "gpf",
        "bug",
        "invalid-opcode",
        "divide-error",
        "double-fault",
        "stack-guard",
    }
)
"""Kinds that are CPU exceptions the kernel reports through die() ("Oops: ... [#N]")."""


@dataclass(frozen=True)
class LogLine:
    """One kernel message line."""

    text: str
    """The message, without timestamp or caller prefix (leading spaces of trace lines kept)."""
    timestamp: float | None
    """Seconds since boot, or None when the line had none."""
    caller: str | None = None
    """CONFIG_PRINTK_CALLER id, "T67" (task) or "C1" (CPU context), when the log has them."""
    level: int | None = None
    """Console log level 0-7 when the source carried it ("<4>", /dev/kmsg), else None."""


@dataclass(frozen=True)
class TraceEntry:
    """A symbolized code address as the kernel prints it: ``func+0x19/0x30 [module]``."""

    function: str
    """Symbol name; for an address with no symbol, the address as printed ("0xffff...")."""
    offset: int | None
    """Offset into the symbol, or None when not printed."""
    size: int | None
    """Symbol size, or None when not printed."""
    module: str | None
    """Module name from "[module]" (build id dropped), None for core kernel."""
    reliable: bool
    """False when the kernel printed "? " before it (a stack scan guess, not an unwound frame)."""
    context: str | None
    """Stack section it was printed in: "TASK", "IRQ", "SOFTIRQ", "NMI", "#DF"...; else None."""
    address: int | None = None
    """The raw address when printed ("[<ffffffff8107e0c3>]" of old kernels, bare "0x...")."""
    interrupted: bool = False
    """A "RIP:" line inside the trace: the PC an interrupt or exception stopped (the kernel
    prints the nested pt_regs it crossed), not a return address."""


@dataclass(frozen=True)
class OopsRecord:
    """One crash report in the log: its headline and what the following lines said."""

    kind: str
    """What happened; one of KINDS ("null-deref", "gpf", "bug", "panic", ...)."""
    headline: str
    """The line that opened the record, e.g. "BUG: kernel NULL pointer dereference, address: 18"."""
    first_line_index: int
    """Index of the headline in the lines given to parse_log."""
    last_line_index: int
    """Index of the last line recognised as part of this record."""
    timestamp: float | None
    """Timestamp of the headline."""
    oops_number: int | None
    """N of "Oops: 0002 [#N]" (die counter), or None when no die line was seen."""
    oops_code: int | None
    """The hex code of the die line ("0002"): error code & 0xffff."""
    cpu: int | None
    """CPU from the "CPU: N PID: ..." line (or from the headline for lockups and warnings)."""
    pid: int | None
    """PID of the current task (or of the hung task)."""
    comm: str | None
    """Command name of that task."""
    tainted: str | None
    """Taint letters as printed ("G           OE"); "" for "Not tainted"; None if not printed."""
    release: str | None
    """Kernel release from the "CPU:" line ("6.1.0-18-amd64")."""
    hardware: str | None
    """Text after "Hardware name: "."""
    rip: TraceEntry | None
    """Symbolized instruction pointer of the "RIP:" line (None when RIP is a bare number:
    see registers["RIP"])."""
    fault_address: int | None
    """Faulting address: from the headline, "#GP ... address 0x...", or CR2 for page faults."""
    error_code: int | None
    """Exception error code: "#PF: error_code(0x0002)", "double fault, error_code: 0x0"."""
    access: str | None
    """Text of "#PF: supervisor write access in kernel mode"."""
    bug_file: str | None
    """File of "kernel BUG at file:line!" or of a WARNING's "at file:line"."""
    bug_line: int | None
    """Line of the same."""
    panic_message: str | None
    """Text after "Kernel panic - not syncing: " (panic records only)."""
    registers: dict[str, int]
    """Register dump, upper-case names as printed ("RSP", "RAX", "R8" for "R08", "EFLAGS",
    "CR2", "FS"/"GS"/"KNLGS" bases, "SS"/"CS"...; "RIP" only when printed as a number)."""
    code: bytes | None
    """The "Code:" bytes."""
    code_trap_offset: int | None
    """Index in ``code`` of the byte printed as "<..>" (the faulting instruction's first)."""
    call_trace: tuple[TraceEntry, ...]
    """The record's first "Call Trace:", outermost-last, "?" entries included."""
    modules_linked_in: tuple[str, ...]
    """Module names of "Modules linked in:", taint flags and "[last unloaded: x]" dropped."""
    lockup_seconds: int | None
    """Seconds stuck: "stuck for 22s!", "blocked for more than 120 seconds"."""
    escalates: int | None = None
    """For a panic record: index in LogAnalysis.records of the record whose report it ends
    ("Fatal exception" after an oops, "panic_on_warn set" after a WARNING, "softlockup: hung
    tasks" after a soft lockup...). None for a panic that is the crash itself."""
    uid: int | None = None
    """UID from the 6.12 "CPU: 1 UID: 0 PID: 67" form."""
    workqueue: str | None = None
    """Text after "Workqueue: " ("events foo_work_fn")."""
    module_taints: dict[str, str] = field(default_factory=dict)
    """Module name → taint letters for modules printed with flags ("crashpoc(OE)")."""
    last_unloaded: str | None = None
    """Module of "[last unloaded: x]"."""
    location: TraceEntry | None = None
    """Code location the headline or panic message names: a WARNING's caller, the function
    of "stack-protector: Kernel stack is corrupted in: f+0x5e/0x60"."""
    page_table: str | None = None
    """The page-table walk line of a page fault ("PGD 0 P4D 0")."""
    hints: tuple[str, ...] = ()
    """Diagnostic lines in or just before the record: "KASAN: null-ptr-deref in range ...",
    "kernel tried to execute NX-protected page ...", "note: sh[67] exited with ..."."""
    kdump_loaded: bool | None = None
    """Whether the "CPU:" line said "Kdump: loaded" (None without a "CPU:" line)."""
    link: TraceEntry | None = None
    """arm64's "lr :" line symbolized: the return address of the faulting function's caller."""
    report_kind: str | None = None
    """For a debug report (kind "other"): its ReportKind's name (decode/reportkinds.py)."""
    sites: tuple[TraceEntry, ...] = ()
    """Frames such a report names apart from its call trace, in the kind's order of
    preference: lockdep's "at:" acquisitions, kmemleak's allocation stack..."""

    @property
    def is_oops(self) -> bool:
        """True for a CPU exception reported through die() (an "Oops: ... [#N]" line)."""
        return self.oops_number is not None or self.kind in OOPS_KINDS

    def gp_registers(self) -> dict[str, int]:
        """Registers under disasm's lower-case names ("rax", "r8", "rsp", "gs_base", "rip")."""
        out: dict[str, int] = {}
        for name, value in self.registers.items():
            if name in _GPR_NAMES or name == "RIP" or _ARM64_GPR.match(name):
                out[name.lower()] = value
            elif name in ("FS", "GS"):
                out[f"{name.lower()}_base"] = value
        return out


@dataclass(frozen=True)
class LogAnalysis:
    """Everything parse_log found in a log."""

    records: tuple[OopsRecord, ...]
    """Crash records, in log order."""
    unknown_symbols: tuple[tuple[str, str], ...]
    """(module, symbol) of "mod: Unknown symbol sym (err -2)"."""
    symbol_version_errors: tuple[tuple[str, str], ...]
    """(module, symbol) of "mod: disagrees about version of symbol sym"."""
    module_verification_failures: tuple[str, ...]
    """Modules of "mod: module verification failed: signature and/or required key missing"."""
    out_of_tree_modules: tuple[str, ...] = ()
    """Modules of "mod: loading out-of-tree module taints kernel."."""
    module_license_taints: tuple[tuple[str, str], ...] = ()
    """(module, license) of "mod: module license 'x' taints kernel."."""
    kernel_offset: int | None = None
    """KASLR offset of "Kernel Offset: 0x... from 0xffffffff81000000"; 0 for "disabled"."""
    record_lines: tuple[tuple[LogLine, ...], ...] = ()
    """The lines of each record (first_line_index to last_line_index, at most ``keep_lines`` of
    them), when parse_log was asked to keep them: streamed input is not kept whole."""
    lines_total: int = 0
    """How many lines parse_log read."""
    boots: tuple[int, ...] = ()
    """Indices of the lines where a new kernel's log starts after the log's own start (kdump's
    capture kernel on the console, the next boot in a syslog file): "Linux version" at time 0,
    or time going back."""

    def first_oops(self) -> OopsRecord | None:
        """The first record that is an oops-like fault (see OopsRecord.is_oops)."""
        return next((r for r in self.records if r.is_oops), None)

    def panic(self) -> OopsRecord | None:
        """The first "Kernel panic - not syncing" record, if any."""
        return next((r for r in self.records if r.panic_message is not None), None)

    def cause(self) -> OopsRecord | None:
        """The record that explains the crash: what the panic escalates, else the panic itself,
        else the first oops, else None."""
        panic = self.panic()
        if panic is not None:
            if panic.escalates is not None and 0 <= panic.escalates < len(self.records):
                return self.records[panic.escalates]
            return panic
        return self.first_oops()

    def escalation_of(self, record_index: int) -> OopsRecord | None:
        """The panic record that escalates records[record_index], if any."""
        return next((r for r in self.records if r.escalates == record_index), None)


# ---------------------------------------------------------------------------------------------
# Line formats

_HEX = r"[0-9a-fA-F]{1,16}(?![0-9a-fA-F])"  # a 64-bit value, not a longer run of hex
_PREFIX = r"(?:[\w.\-/]+ ?: )?"  # a pr_fmt() prefix such as "watchdog: " or "traps: "
_SYMBOL = re.compile(
    r"(?P<func>[^\s+\[\]()<>?]+)\+0x(?P<off>[0-9a-fA-F]{1,16})/0x(?P<size>[0-9a-fA-F]{1,16})"
    r"(?:\s+\[(?P<mod>[^\]\s]+)(?:\s+[0-9a-fA-F]{1,64})?\])?"  # [module build-id]
)
_ENTRY = re.compile(
    r"^\s*(?:\[<(?P<addr>[0-9a-fA-F]{1,16})>\]\s*)?(?P<q>\?\s+)?"
    r"(?:(?P<sym>[^\s+\[\]()<>?]+\+0x[0-9a-fA-F]{1,16}/0x[0-9a-fA-F]{1,16}(?:\s+\[[^\]]+\])?)"
    r"|0x(?P<bare>[0-9a-fA-F]{1,16})|\(null\))"
    r"(?:\s+\([A-Z]\))?"
    # decode_stacktrace.sh's (and syzkaller's) source location after the symbol: "mm/filemap.c:2407"
    r"(?:\s+[\w./\-+]+\.[chS]:\d{1,9}(?::\d{1,9})?)?\s*$"
)
# decode_stacktrace.sh's inlined frames: "_compound_head include/linux/page-flags.h:253 [inline]"
# (read and dropped: the physical frame follows)
_INLINE_ENTRY = re.compile(
    r"^\s*(?P<q>\?\s+)?(?P<func>[A-Za-z_][\w.]*) [\w./\-+]+\.[chS]:\d{1,9}(?::\d{1,9})? \[inline\]\s*$"
)
_MARKER = re.compile(r"^\s*<(/?)([A-Z#][A-Z0-9#_]*)>\s*(.*)$")
# 32-bit arm's unwinder: "[<808ea9f4>] (gsmld_receive_buf) from [<808dcfac>] (tty_ioctl+0x7b4/0xa6c)"
# (the function of this frame, then its caller, which the next line repeats)
_ARM_ENTRY = re.compile(
    r"^\s*\[<(?P<addr>[0-9a-fA-F]{1,16})>\]\s*\((?P<func>[^\s+()]+)(?:\+0x(?P<off>[0-9a-fA-F]+)/0x"
    r"(?P<size>[0-9a-fA-F]+))?(?:\s+\[(?P<mod>[^\]\s]+)\])?\) from "
)
# powerpc's stack lines start with the frame's stack pointer and return address in brackets.
_PPC_ENTRY = re.compile(r"^\s*\[[0-9a-fA-F]{8,16}\]\s+\[([0-9a-fA-F]{8,16})\]\s+")
# A stack entry as the sanitizers (KMSAN) and some architectures (riscv) print it with no
# "Call Trace:" line before: a symbolized address alone on its line.
_HEADERLESS_ENTRY = re.compile(r"^\s*(?:\[<[0-9a-fA-F]{1,16}>\]\s*)?[^\s+\[\]()<>?]+\+0x[0-9a-fA-F]+/0x[0-9a-fA-F]+")

_H_NULL = re.compile(r"BUG: kernel NULL pointer dereference, address: (" + _HEX + ")")
_H_NULL_OLD = re.compile(
    r"BUG: unable to handle kernel NULL pointer dereference at\s+(" + _HEX + r"|\(null\))"
)
_H_PF = re.compile(r"BUG: unable to handle page fault for address: (" + _HEX + ")")
_H_PF_OLD = re.compile(r"BUG: unable to handle kernel paging request at (" + _HEX + ")")
_H_ARM_NULL = re.compile(
    r"Unable to handle kernel NULL pointer dereference at virtual address (" + _HEX + ")"
)
_H_ARM_PF = re.compile(r"Unable to handle kernel [\w \-]+ at virtual address (" + _HEX + ")")
# powerpc (arch/powerpc/mm/fault.c): "BUG: Kernel NULL pointer dereference on read at 0x00000010",
# "BUG: Unable to handle kernel data access on write at 0x…", 4.x's "Unable to handle kernel
# paging request for data at address 0x…"
_H_PPC_NULL = re.compile(r"BUG: Kernel NULL pointer dereference (?:on \w+ )?at (?:0x)?(" + _HEX + ")")
_H_PPC_PF = re.compile(
    r"(?:BUG: Unable to handle kernel (?:data access|instruction fetch)[\w ()]*? at|"
    r"Unable to handle kernel paging request for (?:data|instruction fetch) at address) (?:0x)?(" + _HEX + ")"
)
# Every headline below contains one of these: a cheap test before trying them one by one.
_HEADLINE_WORDS = re.compile(
    r"BUG|Kernel panic|\[#\d|Unable to handle kernel|PANIC: |WARNING: |LOCKUP|INFO: |Insufficient stack|"
    r"oom-killer|ut of memory|list_|Trigger a crash|Hardware Error|UBSAN: |Unhandled fault|unreferenced object|"
    r"Unable to handle kernel|Oops: "
)
_FAULT_HEADLINES = (
    (_H_NULL, "null-deref"),
    (_H_NULL_OLD, "null-deref"),
    (_H_ARM_NULL, "null-deref"),
    (_H_PF, "page-fault"),
    (_H_PF_OLD, "page-fault"),
    (_H_ARM_PF, "page-fault"),
    (_H_PPC_NULL, "null-deref"),
    (_H_PPC_PF, "page-fault"),
)
_H_GUARD = re.compile(r"BUG: (?:(\S+) )?stack guard page was hit at (\S+)")
# arm64 (arch/arm64/kernel/traps.c panic_bad_stack): the exception that found SP off the task
# stack runs on the per-CPU overflow stack and panics "kernel stack overflow".
_H_ARM_OVERFLOW = re.compile(r"^Insufficient stack space to handle exception!")
_H_DF = re.compile(r"PANIC: double fault, error_code: (0x" + _HEX + ")")
_H_KBUG = re.compile(r"kernel BUG at (.+?):(\d{1,18})!")
_H_KBUG_NOINFO = re.compile(r"Kernel BUG at (\S+) \[verbose debug info unavailable\]")
_H_WARN = re.compile(
    r"^" + _PREFIX + r"WARNING: CPU: (?P<cpu>\d{1,18}) PID: (?P<pid>\d{1,18}) at "
    r"(?:(?P<file>[^\s:]+):(?P<line>\d{1,18}) )?(?P<where>.*)$"
)
_H_WARN_NEW = re.compile(
    r"^" + _PREFIX + r"WARNING: (?:\[.*\] )?(?:(?P<file>[^\s:]+):(?P<line>\d{1,18}) )?at (?P<where>.*?), "
    r"CPU#(?P<cpu>\d{1,18}): (?P<comm>.*)/(?P<pid>\d{1,18})$"
)
_H_LOCKDEP = re.compile(
    r"^WARNING: (?:possible |inconsistent lock|suspicious RCU|bad unlock|held lock|"
    r"lock held|Nested lock|\S+ still has locks held|\S+-safe -> \S+-unsafe)"
    # lockdep's INFO: reports, and its 4.x headlines in brackets ("[ BUG: bad unlock balance
    # detected! ]", "[ INFO: possible recursive locking detected ]")
    r"|^INFO: (?:trying to register non-static key|suspicious RCU usage|possible |inconsistent lock|"
    r"task \S+ can't die)"
    r"|^\[ (?:BUG|INFO): .+ \]\s*$"
    # 32-bit arm's fault that has no oops of its own yet
    r"|^Unhandled fault: "
)
_H_DIE = re.compile(
    r"^(?:Oops: )?(?P<str>[^\[\]]+?): (?P<code>[0-9a-f]{4,16}) \[#(?P<n>\d{1,18})\]"
    # powerpc: "Oops: Kernel access of bad area, sig: 11 [#1]"
    r"|^Oops: (?P<ppc>[^\[\]]+?), sig: (?P<sig>\d{1,3}) \[#(?P<pn>\d{1,18})\]"
)
_H_PANIC = re.compile(r"Kernel panic - not syncing: ?(.*)$")
_H_SOFT = re.compile(
    r"BUG: soft lockup - CPU#(\d{1,18}) stuck for (\d{1,18})s! \[(.*):(\d{1,18})\]"
)
_H_HARD = re.compile(r"Watchdog detected hard LOCKUP on cpu (\d{1,18})")
_H_HUNG = re.compile(r"INFO: task (.+):(\d{1,18}) blocked .*?for more than (\d{1,18}) seconds")
_H_RCU = re.compile(
    r"INFO: (\S+) (?:self-detected stall on CPU|detected (?:expedited )?stalls on (?:CPUs/)?tasks)"
)
_H_OOM = re.compile(r"^(.+?) invoked oom-killer: ")
_H_OOM_KILL = re.compile(
    r"^(?:Memory cgroup )?[Oo]ut of memory(?:\s\(oom_kill_allocating_task\))?:"
)
_H_LIST = re.compile(r"^" + _PREFIX + r"(?:__)?h?list_\w+ (?:corruption|double add)")
_H_SYSRQ = re.compile(r"^(?:sysrq|SysRq)\s*: Trigger a crash")
_H_MCE = re.compile(r"\[Hardware Error\]:")
_H_BUG_OTHER = re.compile(r"^" + _PREFIX + r"BUG: \S")
_H_UBSAN = re.compile(r"^" + _PREFIX + r"UBSAN: \S")
# kmemleak's report of one leaked object (mm/kmemleak.c print_unreferenced)
_H_LEAK = re.compile(r"^unreferenced object 0x[0-9a-fA-F]+ \(size \d+\):")

_PF_ACCESS = re.compile(r"^#PF: ((?:supervisor|user) .+ in (?:kernel|user) mode)")
_PF_CODE = re.compile(r"^#PF: error_code\((0x" + _HEX + r")\)")
_PAGE_TABLE = re.compile(r"^PGD \S+")
_CPU_LINE = re.compile(r"^CPU: (\d{1,18}) (?:UID: (\d{1,18}) )?PID: (\d{1,18}) Comm: (.*)$")
_TAINT_RELEASE = re.compile(r"^(?:Not tainted|Tainted: (?P<t>[A-Z ]*?))\s+(?P<rel>\S+)\s+#")
_TAINT_RELEASE_LOOSE = re.compile(r"^(?:Not tainted|Tainted: (?P<t>[A-Z ]*[A-Z]))\s+(?P<rel>\S+)")
_HUNG_TAINT = re.compile(r"^(?:Not tainted|Tainted: )")
_HARDWARE = re.compile(r"^Hardware name: (.*)$")
_WORKQUEUE = re.compile(r"^Workqueue: (.*)$")
# x86's "RIP: 0010:f+0x1/0x2", arm64's "pc : f+0x1/0x2", riscv's "epc : …", 32-bit arm's "PC is at …"
_RIP = re.compile(r"^(?:(?:RIP|pc|epc) ?: |PC is at |NIP (?=\[[0-9a-fA-F]{8,16}\]))(?:([0-9a-fA-F]{4}):)?(.*)$")
# "[<ffffffff81234567>] " (old kernels), powerpc's "NIP [c00000000022d79c] "
_RIP_ADDRESS = re.compile(r"^\[<?(" + _HEX + r")>?\]\s*")
_BARE_HEX = re.compile(r"^(?:0x)?(" + _HEX + r")\s*$")
_GP_ADDRESS = re.compile(r"(?:non-canonical address|maybe for address) (0x" + _HEX + ")")
_CODE = re.compile(r"^Code: (.*)$")
_REG_START = re.compile(
    r"^(?:RSP|RAX|RBX|RCX|RDX|RSI|RDI|RBP|R0[89]|R1[0-5]|FS|GS|CS|DS|ES|CR[0234]|DR[0-7]|"
    r"PKRU|EFLAGS|ORIG_RAX|x\d{1,2} ?|sp ?|pstate): "
)
# arm64's and riscv's link register line: "lr : caller+0x20/0x50 [mod]" (the caller when pc is
# not code); 32-bit arm's "LR is at caller+0x20/0x50".
_LR = re.compile(r"^(?:(?:lr|ra) ?: |LR is at |LR \[[0-9a-fA-F]{8,16}\] )(.*)$")
_REG_PAIR = re.compile(
    r"([A-Za-z][A-Za-z0-9_]*):\s*(?:([0-9a-fA-F]{4}):)?(" + _HEX + r")(?:\(([0-9a-fA-F]+)\))?"
)
# 4.9 and older print "Call Trace:" after the stack's words, on the same line.
# 32-bit arm's "Backtrace:" may say why its unwind stops ("Backtrace: frame pointer underflow").
_CALL_TRACE = re.compile(r"^(?:.*?Call [Tt]race:|Backtrace:(?: [a-z][a-z ]*)?)\s*$")
_MODULES = re.compile(r"^Modules linked in:(.*)$")
_LAST_UNLOADED = re.compile(r"\[last unloaded: ([^\]]*)\]")
_MODULE_TOKEN = re.compile(r"^([^\s()\[\]]+)(?:\(([A-Z+\-]*)\))?$")
_END_TRACE = re.compile(r"^---\[ end trace [0-9a-fA-F]* ?\]---")
_END_PANIC = re.compile(r"---\[ end Kernel panic - not syncing")
_NMI_BT = re.compile(r"^NMI backtrace for cpu (\d{1,18})")
_OTHER_CPU = re.compile(r"^(?:Sending NMI from CPU \d+ to CPUs|Task dump for CPU \d+:)")
_RCU_CPU = re.compile(r"^(?:rcu: )?\s*(\d{1,18})-\S*: \(")
_TRACE_BREAK = re.compile(
    r"^(?:Modules linked in:|---\[|Kernel Offset:|Rebooting in|CPU: \d|Hardware name:|"
    r"Call [Tt]race:|NMI backtrace for cpu|Sending NMI from|Task dump for CPU|task:\S|"
    r"Showing all locks|INFO: lockdep|irq event stamp:|Allocated by task|Freed by task|"
    r"Last potentially related|Second to last potentially related|The buggy address|"
    r"Memory state around|={10}|-{10}|\S.*\bby task \d+ on cpu \d+)"
)
_HINTS = re.compile(
    r"^(?:KASAN: .+ in range \[|kernel tried to execute NX-protected page|"
    r"unable to execute userspace code|note: \S+\[\d+\] exited with|"
    r"Thread overran stack, or stack corrupted|Corrupted page table at address|"
    r"Bad RIP value|stack-protector:|kernel stack overflow)"
)
_PRE_HINTS = re.compile(
    r"^(?:kernel tried to execute NX-protected page|unable to execute userspace code|"
    r"kernel attempted to access user page)"
)
_KERNEL_OFFSET = re.compile(r"^Kernel Offset: (?:(0x" + _HEX + r") from|disabled)")
_UNKNOWN_SYMBOL = re.compile(r"^(\S+): Unknown symbol (\S+)(?: \(err -?\d+\))?")
_SYMBOL_VERSION = re.compile(r"^(\S+): disagrees about version of symbol (\S+)")
_VERIFY_FAIL = re.compile(r"^(\S+): module verification failed: ")
_OOT = re.compile(r"^(\S+): loading out-of-tree module taints kernel")
_LICENSE = re.compile(r"^(\S+): module license '([^']*)' taints kernel")

_GPR_NAMES = frozenset(
    {"RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP", "RSP"} | {f"R{n}" for n in range(8, 16)}
)
_REGISTER_ALIASES = {"R08": "R8", "R09": "R9"}
_ARM64_GPR = re.compile(r"^(?:X\d{1,2}|SP|LR|PC)$")
_ARM64_PAD = re.compile(r"\b(x\d|sp) :")

# Kinds whose headline is followed by the die() line of the same report.
_TAKES_DIE_LINE = frozenset(
    {"null-deref", "page-fault", "bug", "list-corruption", "stack-guard", "double-fault"}
)
_DIE_LINE_WINDOW = 80


def _hex(text: str) -> int | None:
    try:
        return int(text, 16)
    except ValueError:
        return None


def parse_trace_entry(text: str, context: str | None = None) -> TraceEntry | None:
    """Parse one call-trace line (" ? foo+0x1/0x2 [mod]", " [<ffff...>] foo+0x1/0x2",
    " 0xffffffffc0a2b000"), or return None when the line is not one."""
    ppc = _PPC_ENTRY.match(text)
    if ppc is not None:
        # powerpc: "[stack pointer] [return address] f+0x1/0x2", "(unreliable)" for a guess
        rest = text[ppc.end():]
        unreliable = rest.rstrip().endswith("(unreliable)")
        entry = parse_trace_entry(" " + rest.rstrip().removesuffix("(unreliable)"), context)
        if entry is None:
            return None
        return TraceEntry(entry.function, entry.offset, entry.size, entry.module,
                          entry.reliable and not unreliable, context, _hex(ppc.group(1)))
    m = _ENTRY.match(text)
    if m is None:
        arm = _ARM_ENTRY.match(text)
        if arm is None:
            return None
        off = int(arm.group("off"), 16) if arm.group("off") else None
        size = int(arm.group("size"), 16) if arm.group("size") else None
        return TraceEntry(arm.group("func"), off, size, arm.group("mod"), True, context, _hex(arm.group("addr")))
    address = _hex(m.group("addr")) if m.group("addr") else None
    reliable = m.group("q") is None
    if m.group("sym"):
        sym = _parse_symbol(m.group("sym"))
        if sym is None:
            return None
        func, off, size, mod = sym
        return TraceEntry(func, off, size, mod, reliable, context, address)
    if m.group("bare"):
        value = _hex(m.group("bare"))
        return TraceEntry("0x" + m.group("bare"), None, None, None, reliable, context, value)
    return TraceEntry("(null)", None, None, None, reliable, context, address)


def _interrupted_entry(rest: str, context: str | None) -> TraceEntry | None:
    """The frame of a "RIP: 0010:func+0x18/0x40 [mod]" line printed inside a call trace; None
    for a user-mode or unsymbolised PC ("RIP: 0033:0x47b7a0")."""
    rest = rest.strip()
    address = None
    m = _RIP_ADDRESS.match(rest)
    while m is not None:
        address = _hex(m.group(1))
        rest = rest[m.end():]
        m = _RIP_ADDRESS.match(rest)
    sym = _parse_symbol(rest)
    if sym is None:
        return None
    func, off, size, mod = sym
    return TraceEntry(func, off, size, mod, True, context, address, interrupted=True)


def _parse_symbol(text: str) -> tuple[str, int | None, int | None, str | None] | None:
    m = _SYMBOL.search(text)
    if m is None:
        return None
    return m.group("func"), _hex(m.group("off")), _hex(m.group("size")), m.group("mod")


def _symbol_entry(text: str) -> TraceEntry | None:
    sym = _parse_symbol(text)
    if sym is None:
        return None
    func, off, size, mod = sym
    return TraceEntry(func, off, size, mod, True, None)


_INLINED = TraceEntry("(inlined)", None, None, None, False, None)


def _site_entry(text: str) -> TraceEntry | None:
    """A stack line of a debug report's own stack (kmemleak's backtrace...): decode_stacktrace.sh's
    inlined-frame lines continue the stack but name no physical frame (unreliable: not kept)."""
    if _INLINE_ENTRY.match(text):
        return _INLINED
    return parse_trace_entry(text)


def _named_entry(name: str) -> TraceEntry:
    """A function a report names bare ("last function: foo_work_fn")."""
    return TraceEntry(name, None, None, None, True, None)


def _parse_code(text: str) -> tuple[bytes | None, int | None]:
    data = bytearray()
    trap: int | None = None
    for token in text.split():
        marked = token[:1] in "<(" and token[-1:] in ">)"
        word = token[1:-1] if marked else token
        if len(word) == 8:  # arm64 and others print 32-bit instruction words, in CPU order
            value = _hex(word)
            if value is None or (marked and trap is not None):
                break
            if marked:
                trap = len(data)
            data += value.to_bytes(4, "little")
            continue
        if len(token) == 4 and token[0] in "<(" and token[3] in ">)":
            value = _hex(token[1:3])
            if value is None or trap is not None:
                break
            trap = len(data)
            data.append(value)
        elif len(token) == 2:
            value = _hex(token)
            if value is None:
                break
            data.append(value)
        else:
            break
    if not data:
        return None, None
    return bytes(data), trap


def _parse_modules(text: str) -> tuple[tuple[str, ...], dict[str, str], str | None]:
    last_unloaded = None
    m = _LAST_UNLOADED.search(text)
    if m:
        last_unloaded = m.group(1).split("(")[0].strip() or None
        text = text[: m.start()] + text[m.end() :]
    names: list[str] = []
    taints: dict[str, str] = {}
    for token in text.split():
        mod = _MODULE_TOKEN.match(token)
        if mod is None:
            continue
        names.append(mod.group(1))
        if mod.group(2):
            taints[mod.group(1)] = mod.group(2)
    return tuple(names), taints, last_unloaded


def _parse_registers(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in _REG_PAIR.finditer(text):
        name = m.group(1).upper()
        name = _REGISTER_ALIASES.get(name, name)
        value = _hex(m.group(3))
        if value is None:
            continue
        if m.group(2) is not None:  # "RSP: 0018:ffff..." → SS selector, then RSP
            selector = _hex(m.group(2))
            if name == "RSP" and selector is not None:
                out.setdefault("SS", selector)
        out.setdefault(name, value)
    return out


def _taint_and_release(text: str) -> tuple[str | None, str | None] | None:
    m = _TAINT_RELEASE.match(text) or _TAINT_RELEASE_LOOSE.match(text)
    if m is None:
        return None
    taint = m.group("t")
    return ("" if taint is None else taint.rstrip()), m.group("rel")


def _die_kind(description: str) -> str:
    s = description.lower().replace("_", " ")  # 4.x: "divide_error: 0000 [#1]"
    if s.startswith("general protection fault") or "general protection" in s:
        return "gpf"
    if s.startswith("invalid opcode"):
        return "invalid-opcode"
    if s.startswith("divide error"):
        return "divide-error"
    if "stack guard page" in s:
        return "stack-guard"
    if "double fault" in s or "double-fault" in s:
        return "double-fault"
    if "bug" in s:
        return "bug"
    if s == "oops":
        return "page-fault"
    return "other"


# ---------------------------------------------------------------------------------------------
# Record assembly


class _Builder:
    """Mutable state of one record while its lines are read."""

    def __init__(self, index: int, line: LogLine, kind: str, headline: str,
                 report: ReportKind | None = None) -> None:
        self.kind = kind
        self.headline = headline
        self.first = index
        self.last = index
        self.timestamp = line.timestamp
        self.last_stamp = line.timestamp
        self.caller = line.caller
        self.oops_number: int | None = None
        self.oops_code: int | None = None
        self.cpu: int | None = None
        self.pid: int | None = None
        self.comm: str | None = None
        self.uid: int | None = None
        self.kdump_loaded: bool | None = None
        self.tainted: str | None = None
        self.release: str | None = None
        self.hardware: str | None = None
        self.workqueue: str | None = None
        self.rip: TraceEntry | None = None
        self.fault_address: int | None = None
        self.error_code: int | None = None
        self.access: str | None = None
        self.bug_file: str | None = None
        self.bug_line: int | None = None
        self.panic_message: str | None = None
        self.registers: dict[str, int] = {}
        self.code: bytes | None = None
        self.code_trap_offset: int | None = None
        self.trace: list[TraceEntry] = []
        self.modules: tuple[str, ...] | None = None
        self.module_taints: dict[str, str] = {}
        self.last_unloaded: str | None = None
        self.lockup_seconds: int | None = None
        self.location: TraceEntry | None = None
        self.link: TraceEntry | None = None
        # a debug report's own places (lockdep's "at:" lines, kmemleak's backtrace)
        self.report = report
        self.scanner = SiteScanner(report, _site_entry, _symbol_entry, _named_entry) \
            if report is not None and report.steps else None
        self.page_table: str | None = None
        self.hints: list[str] = []
        # reading state
        self.trace_state = "none"  # "none" → "open" → "done"
        self.contexts: list[str] = []
        self.embedded = False  # the last RIP line belonged to a frame inside the trace
        self.foreign = False  # reading another CPU's backtrace
        self.asked_backtrace = False  # "Sending NMI from CPU x to CPUs y" seen
        self.ended = False  # "---[ end trace ]---" seen
        self.closed = False

    # -- lines -------------------------------------------------------------------------------

    def extend(self, index: int, line: LogLine) -> None:
        """Count line ``index`` as the record's last one so far."""
        self.last = index
        if line.timestamp is not None:
            self.last_stamp = line.timestamp

    def feed(self, index: int, text: str) -> bool:
        """Read one line of this record's caller; True when it was recognised as ours."""
        if self.closed:
            return False
        body = text.strip()
        scanned = self.scanner is not None and not self.foreign and self.scanner.feed(text)
        if self._other_cpu(body):
            return not self.foreign
        if self.foreign:
            return False
        if self.trace_state == "open":
            handled = self._trace_line(text, body)
            if handled is not None:
                return handled or scanned
        if self.ended:
            return self._after_end(body) or scanned
        if self._body_line(body):
            return True
        if scanned:
            return True
        if self.trace_state == "none" and self.headerless_stack and _HEADERLESS_ENTRY.match(text):
            # KMSAN prints the stack right under its headline, riscv right after the registers
            self.trace_state = "open"
            return self._trace_entry(text)
        return False

    @property
    def headerless_stack(self) -> bool:
        """Whether a stack may start without a "Call Trace:" line: under a sanitizer's headline,
        or after a register dump (never under lockdep's headlines, whose dependency chains
        print stacks of other acquisitions before the report's own)."""
        if self.kind == "other":
            return any(word in self.headline for word in ("KMSAN:", "KASAN:", "KFENCE:", "UBSAN:", "KCSAN:"))
        return bool(self.registers) or self.rip is not None

    def _other_cpu(self, body: str) -> bool:
        m = _NMI_BT.match(body)
        if m is not None:
            cpu = int(m.group(1))
            mine = not self.trace and (self.cpu is None or self.cpu == cpu)
            self.foreign = not mine
            if mine:
                self.cpu = cpu
            self._end_trace()
            return True
        if _OTHER_CPU.match(body):
            if self.trace:
                self.foreign = True
            elif body.startswith("Sending NMI"):
                self.asked_backtrace = True
            self._end_trace()
            return True
        return False

    def wants_backtrace(self, cpu: int) -> bool:
        """Whether an "NMI backtrace for cpu N" printed under another caller id (the NMI on
        CPU N prints it as "C<N>") is this record's: it asked for one, or names that CPU as
        stalled, and has no trace of its own yet."""
        if self.closed or self.foreign or self.trace:
            return False
        return self.cpu == cpu or (self.asked_backtrace and self.kind in ("rcu-stall", "hard-lockup", "soft-lockup"))

    def _trace_line(self, text: str, body: str) -> bool | None:
        """Handle a line while a call trace is open; None to fall through to the body rules."""
        if not body:
            if self.trace:
                self._end_trace()
            return False
        marker = _MARKER.match(body)
        if marker is not None:
            closing, name, rest = marker.groups()
            self._context_marker(bool(closing), name)
            if rest:
                self._trace_entry(rest)
            return True
        if self._trace_entry(text):
            return True
        rip = _RIP.match(body)
        if rip is not None:
            self.embedded = True
            entry = _interrupted_entry(rip.group(2), self.contexts[-1] if self.contexts else None)
            if entry is not None:
                self.trace.append(entry)
            return True
        if _CODE.match(body) or _REG_START.match(body):
            if self.embedded:
                return True
            self._end_trace()
            return None
        if _TRACE_BREAK.match(body):
            self._end_trace()
            return None
        return False  # a line from elsewhere, interleaved: skip it

    def _trace_entry(self, text: str) -> bool:
        ppc = _PPC_ENTRY.match(text)
        if _INLINE_ENTRY.match(text[ppc.end():] if ppc is not None else text):
            # decode_stacktrace.sh's inlined frame: part of the physical frame on the next line,
            # which the unsymbolized log and the dump's frame list name alone
            return True
        context = self.contexts[-1] if self.contexts else None
        entry = parse_trace_entry(text, context)
        if entry is None:
            return False
        self.trace.append(entry)
        return True

    def _context_marker(self, closing: bool, name: str) -> None:
        if name == "EOI":
            if self.contexts and self.contexts[-1] == "IRQ":
                self.contexts.pop()
            return
        if not closing:
            self.contexts.append(name)
            return
        if name in self.contexts:
            while self.contexts and self.contexts.pop() != name:
                pass
        if name == "TASK" and not self.contexts:
            self._end_trace()

    def _end_trace(self) -> None:
        if self.trace_state == "open":
            self.trace_state = "done"
        self.contexts = []
        self.embedded = False

    def _after_end(self, body: str) -> bool:
        """After "---[ end trace ]---": only the executive summary (RIP, Code, registers)."""
        if _RIP.match(body) or _CODE.match(body) or _REG_START.match(body):
            return self._body_line(body)
        if _HINTS.match(body):
            self.hints.append(body)
            return True
        if _TRACE_BREAK.match(body) and not body.startswith("---[ end trace"):
            self.closed = True
        return False

    def _body_line(self, body: str) -> bool:
        for pattern, handler in self._handlers():
            m = pattern.match(body)
            if m is not None:
                handler(m, body)
                return True
        return False

    def _handlers(self) -> tuple[tuple[re.Pattern[str], Callable[[re.Match[str], str], None]], ...]:
        return (
            (_PF_ACCESS, self._on_access),
            (_PF_CODE, self._on_pf_code),
            (_PAGE_TABLE, self._on_page_table),
            (_CPU_LINE, self._on_cpu_line),
            (_HUNG_TAINT, self._on_hung_taint),
            (_HARDWARE, self._on_hardware),
            (_WORKQUEUE, self._on_workqueue),
            (_RIP, self._on_rip),
            (_LR, self._on_link),
            (_CODE, self._on_code),
            (_REG_START, self._on_registers),
            (_CALL_TRACE, self._on_call_trace),
            (_MODULES, self._on_modules),
            (_END_TRACE, self._on_end_trace),
            (_RCU_CPU, self._on_rcu_cpu),
            (_HINTS, self._on_hint),
        )

    def _on_access(self, m: re.Match[str], body: str) -> None:
        if self.access is None:
            self.access = m.group(1)

    def _on_pf_code(self, m: re.Match[str], body: str) -> None:
        if self.error_code is None:
            self.error_code = _hex(m.group(1)[2:])

    def _on_page_table(self, m: re.Match[str], body: str) -> None:
        if self.page_table is None:
            self.page_table = body

    def _on_cpu_line(self, m: re.Match[str], body: str) -> None:
        if self.trace_state != "none":
            self.foreign = True  # another dump_stack() after our trace: not ours
            return
        cpu, uid, pid, rest = m.groups()
        comm, kdump, after = _split_comm(rest)
        if self.kdump_loaded is None:
            self.kdump_loaded = kdump
        if self.cpu is None:
            self.cpu = int(cpu)
        if uid is not None and self.uid is None:
            self.uid = int(uid)
        if self.pid is None:
            self.pid = int(pid)
        if self.comm is None and self.pid == int(pid):
            self.comm = comm
        tr = _taint_and_release(after) if after is not None else None
        if tr is not None:
            if self.tainted is None:
                self.tainted = tr[0]
            if self.release is None:
                self.release = tr[1]

    def _on_hung_taint(self, m: re.Match[str], body: str) -> None:
        if self.kind != "hung-task" or self.tainted is not None:
            return
        tr = _taint_and_release(body)
        if tr is not None:
            self.tainted, self.release = tr

    def _on_hardware(self, m: re.Match[str], body: str) -> None:
        if self.hardware is None:
            self.hardware = m.group(1).strip()

    def _on_workqueue(self, m: re.Match[str], body: str) -> None:
        if self.workqueue is None:
            self.workqueue = m.group(1).strip()

    def _on_rip(self, m: re.Match[str], body: str) -> None:
        self.embedded = False
        if self.rip is not None or "RIP" in self.registers:
            return
        cs, rest = m.group(1), m.group(2)
        if cs is not None:
            self.registers.setdefault("CS", int(cs, 16))
        rest = rest.strip()
        address = None
        addr_m = _RIP_ADDRESS.match(rest)
        while addr_m is not None:
            address = _hex(addr_m.group(1))
            rest = rest[addr_m.end() :]
            addr_m = _RIP_ADDRESS.match(rest)
        sym = _parse_symbol(rest)
        if sym is not None:
            func, off, size, mod = sym
            self.rip = TraceEntry(func, off, size, mod, True, None, address)
            return
        bare = _BARE_HEX.match(rest)
        if bare is not None:
            value = _hex(bare.group(1))
            if value is not None:
                self.registers["RIP"] = value
        elif address is not None:
            self.registers["RIP"] = address

    def _on_link(self, m: re.Match[str], body: str) -> None:
        if self.embedded or self.link is not None:
            return
        self.link = _symbol_entry(m.group(1))
        if self.link is None:
            bare = _BARE_HEX.match(m.group(1).strip())
            if bare is not None and _hex(bare.group(1)) is not None:
                self.registers.setdefault("LR", _hex(bare.group(1)))

    def _on_code(self, m: re.Match[str], body: str) -> None:
        if self.embedded or self.code is not None:
            return
        self.code, self.code_trap_offset = _parse_code(m.group(1))

    def _on_registers(self, m: re.Match[str], body: str) -> None:
        if self.embedded:
            return
        if body[:1] in "xs":
            body = _ARM64_PAD.sub(r"\1:", body)  # arm64's "sp : ffff80000871" and "x9 : 0000…"
        for name, value in _parse_registers(body).items():
            self.registers.setdefault(name, value)

    def _on_call_trace(self, m: re.Match[str], body: str) -> None:
        if self.trace_state == "none":
            self.trace_state = "open"
            self.contexts = []
            self.embedded = False
        elif self.trace:
            self.foreign = True  # a second stack dump: some other task's or CPU's

    def _on_modules(self, m: re.Match[str], body: str) -> None:
        if self.modules is None:
            self.modules, self.module_taints, self.last_unloaded = _parse_modules(m.group(1))

    def _on_end_trace(self, m: re.Match[str], body: str) -> None:
        self.ended = True
        self._end_trace()

    def _on_rcu_cpu(self, m: re.Match[str], body: str) -> None:
        if self.kind == "rcu-stall" and self.cpu is None:
            self.cpu = int(m.group(1))

    def _on_hint(self, m: re.Match[str], body: str) -> None:
        self.hints.append(body)

    # -- merging the die line and its companions -------------------------------------------

    def takes_die_line(self, index: int) -> bool:
        return (
            self.kind in _TAKES_DIE_LINE
            and self.oops_number is None
            and not self.ended
            and self.trace_state == "none"
            and index - self.first <= _DIE_LINE_WINDOW
        )

    def apply_die(self, m: re.Match[str]) -> None:
        self.oops_code = _hex(m.group("code")) if m.group("code") else None
        self.oops_number = int(m.group("n") or m.group("pn"))
        description = m.group("str") or m.group("ppc")
        gp = _GP_ADDRESS.search(description)
        if gp is not None and self.fault_address is None:
            self.fault_address = _hex(gp.group(1)[2:])

    def record(self, escalates: int | None = None) -> OopsRecord:
        fault_address = self.fault_address
        if fault_address is None and self.kind in ("null-deref", "page-fault", "stack-guard"):
            fault_address = self.registers.get("CR2")
        error_code = self.error_code
        if error_code is None and self.kind in ("null-deref", "page-fault"):
            error_code = self.oops_code
        kind = self.kind
        if kind in ("bug", "warning") and (self.bug_file or "").endswith("list_debug.c"):
            kind = "list-corruption"  # CHECK_DATA_CORRUPTION() in lib/list_debug.c
        return OopsRecord(
            kind=kind,
            headline=self.headline,
            first_line_index=self.first,
            last_line_index=self.last,
            timestamp=self.timestamp,
            oops_number=self.oops_number,
            oops_code=self.oops_code,
            cpu=self.cpu,
            pid=self.pid,
            comm=self.comm,
            tainted=self.tainted,
            release=self.release,
            hardware=self.hardware,
            rip=self.rip,
            fault_address=fault_address,
            error_code=error_code,
            access=self.access,
            bug_file=self.bug_file,
            bug_line=self.bug_line,
            panic_message=self.panic_message,
            registers=dict(self.registers),
            code=self.code,
            code_trap_offset=self.code_trap_offset,
            call_trace=tuple(self.trace),
            modules_linked_in=self.modules or (),
            lockup_seconds=self.lockup_seconds,
            escalates=escalates,
            uid=self.uid,
            workqueue=self.workqueue,
            module_taints=dict(self.module_taints),
            last_unloaded=self.last_unloaded,
            location=self.location,
            page_table=self.page_table,
            hints=tuple(self.hints),
            kdump_loaded=self.kdump_loaded,
            link=self.link,
            report_kind=None if self.report is None else self.report.name,
            sites=tuple(self.scanner.sites) if self.scanner is not None else (),
        )


def _split_comm(rest: str) -> tuple[str, bool, str | None]:
    """Split "sh Kdump: loaded Tainted: G ..." into ("sh", kdump_loaded, "Tainted: G ...")."""
    cut = len(rest)
    for needle in (" Kdump: loaded ", " Not tainted", " Tainted: "):
        pos = rest.find(needle)
        if pos != -1:
            cut = min(cut, pos)
    comm = rest[:cut]
    after = rest[cut:].strip()
    kdump = after.startswith("Kdump: loaded")
    if kdump:
        after = after[len("Kdump: loaded") :].strip()
    return comm, kdump, (after or None)


# ---------------------------------------------------------------------------------------------
# Headlines


@dataclass(frozen=True)
class _Headline:
    """What a headline line says: the record kind and how it fills or joins a record."""

    kind: str
    """Kind of the record the line opens."""
    apply: Callable[[_Builder], None] | None = None
    """Sets the fields the headline itself carries (address, file:line, pid...)."""
    die: re.Match[str] | None = None
    """For a die() line ("Oops: 0002 [#1]"): its match, merged into the report it ends."""
    merge_into: tuple[str, ...] = ()
    """Kinds of an open record this line continues instead of opening a new one."""
    report: ReportKind | None = None
    """For a debug report (kind "other"): what kind, and where it names its suspect."""


def _headline(body: str) -> _Headline | None:
    if _HEADLINE_WORDS.search(body) is None:
        return None
    m = _H_PANIC.search(body)
    if m is not None:
        message = m.group(1).strip()

        def panic(b: _Builder, message: str = message) -> None:
            b.panic_message = message
            b.location = _symbol_entry(message)

        return _Headline("panic", panic)
    m = _H_DIE.match(body)
    if m is not None:
        return _Headline(_die_kind(m.group("str") or m.group("ppc")), die=m)
    for pattern, kind in _FAULT_HEADLINES:
        m = pattern.search(body)
        if m is not None:
            address = 0 if m.group(1) == "(null)" else _hex(m.group(1))

            def fault(b: _Builder, address: int | None = address) -> None:
                b.fault_address = address

            return _Headline(kind, fault)
    m = _H_GUARD.search(body) or _H_ARM_OVERFLOW.search(body)
    if m is not None:
        return _Headline("stack-guard")
    m = _H_DF.search(body)
    if m is not None:
        code = _hex(m.group(1)[2:])

        def double_fault(b: _Builder, code: int | None = code) -> None:
            b.error_code = code

        return _Headline("double-fault", double_fault)
    m = _H_KBUG.search(body)
    if m is not None:
        file, line = m.group(1), int(m.group(2))

        def kbug(b: _Builder, file: str = file, line: int = line) -> None:
            b.bug_file, b.bug_line = file, line

        return _Headline("bug", kbug, merge_into=("list-corruption",))
    m = _H_KBUG_NOINFO.search(body)
    if m is not None:
        where = m.group(1)

        def kbug_noinfo(b: _Builder, where: str = where) -> None:
            b.location = _symbol_entry(where)

        return _Headline("bug", kbug_noinfo, merge_into=("list-corruption",))
    m = _H_WARN.match(body) or _H_WARN_NEW.match(body)
    if m is not None:
        return _Headline("warning", _warning_fields(m), merge_into=("list-corruption",))
    m = _H_SOFT.search(body)
    if m is not None:
        cpu, seconds, comm, pid = int(m.group(1)), int(m.group(2)), m.group(3), int(m.group(4))

        def soft(
            b: _Builder, cpu: int = cpu, s: int = seconds, c: str = comm, p: int = pid
        ) -> None:
            b.cpu, b.lockup_seconds, b.comm, b.pid = cpu, s, c, p

        return _Headline("soft-lockup", soft)
    m = _H_HARD.search(body)
    if m is not None:
        hard_cpu = int(m.group(1))

        def hard(b: _Builder, cpu: int = hard_cpu) -> None:
            b.cpu = cpu

        return _Headline("hard-lockup", hard)
    m = _H_HUNG.search(body)
    if m is not None:
        comm, pid, seconds = m.group(1), int(m.group(2)), int(m.group(3))

        def hung(b: _Builder, c: str = comm, p: int = pid, s: int = seconds) -> None:
            b.comm, b.pid, b.lockup_seconds = c, p, s

        return _Headline("hung-task", hung)
    if _H_RCU.search(body):
        return _Headline("rcu-stall")
    m = _H_OOM.match(body)
    if m is not None:
        oom_comm = m.group(1).split()[-1] if m.group(1).split() else m.group(1)

        def oom(b: _Builder, c: str = oom_comm) -> None:
            b.comm = c

        return _Headline("oom", oom)
    if _H_OOM_KILL.match(body):
        return _Headline("oom", merge_into=("oom",))
    if _H_LIST.match(body):
        return _Headline("list-corruption")
    if _H_SYSRQ.match(body):
        return _Headline("sysrq")
    if _H_MCE.search(body):
        return _Headline("mce", merge_into=("mce",))
    if _H_BUG_OTHER.match(body) or _H_UBSAN.match(body) or _H_LOCKDEP.match(body) or _H_LEAK.match(body):
        # "BUG: KASAN: use-after-free in f+0x1/0x2", "BUG: KMSAN: uninit-value in f+0x1/0x2":
        # the sanitizers name the function that made the bad access.
        report = report_kind(body)
        _, sep, after = body.partition(" in ")
        where = _symbol_entry(after) if sep else None
        if where is None:
            return _Headline("other", report=report)

        def other(b: _Builder, where: TraceEntry = where) -> None:
            if b.location is None:
                b.location = where

        return _Headline("other", other, report=report)
    return None


def _warning_fields(m: re.Match[str]) -> Callable[[_Builder], None]:
    groups = m.groupdict()
    cpu = int(groups["cpu"])
    pid = int(groups["pid"])
    file = groups.get("file")
    line = int(groups["line"]) if groups.get("line") else None
    where = _symbol_entry(groups.get("where") or "")
    comm = groups.get("comm")

    def warning(b: _Builder) -> None:
        if b.bug_file is None and file is not None:
            b.bug_file, b.bug_line = file, line
        if b.location is None:
            b.location = where
        if b.cpu is None:
            b.cpu = cpu
        if b.pid is None:
            b.pid = pid
        if b.comm is None and comm is not None:
            b.comm = comm

    return warning


# ---------------------------------------------------------------------------------------------
# Escalation: which earlier record a panic ends


def _escalation_targets(message: str) -> Callable[[_Builder], bool] | None:
    msg = message.lower()
    if "panic_on_warn set" in msg or "warned too often" in msg or "panic_on_kmsan set" in msg:
        return lambda b: b.kind in ("warning", "list-corruption", "other")
    if "softlockup" in msg or "soft lockup" in msg:
        return lambda b: b.kind == "soft-lockup"
    if "hard lockup" in msg or "hardlockup" in msg:
        return lambda b: b.kind == "hard-lockup"
    if "hung_task" in msg or "hung task" in msg:
        return lambda b: b.kind == "hung-task"
    if "rcu stall" in msg:
        return lambda b: b.kind == "rcu-stall"
    if "sysrq triggered crash" in msg:
        return lambda b: b.kind == "sysrq"
    if "out of memory" in msg or "deadlocked on memory" in msg:
        return lambda b: b.kind == "oom"
    if "machine check" in msg:
        return lambda b: b.kind == "mce"
    if "machine halted" in msg or "stack guard" in msg or "double fault" in msg \
            or "kernel stack overflow" in msg:
        return lambda b: b.kind in ("stack-guard", "double-fault") or b.oops_number is not None
    if "fatal exception" in msg or "attempted to kill" in msg or msg.startswith("oops"):
        return lambda b: b.oops_number is not None or b.kind in OOPS_KINDS
    if len(msg) >= 8:  # panic("scheduling while atomic") after "BUG: scheduling while atomic: "
        return lambda b: msg in b.headline.lower()
    return None


_PANIC_MESSAGE_KINDS = (
    ("sysrq triggered crash", "sysrq"),
    ("corrupted stack end detected", "stack-corruption"),
    ("stack-protector", "stack-protector"),
    ("softlockup", "soft-lockup"),
    ("hard lockup", "hard-lockup"),
    ("hung_task", "hung-task"),
    ("rcu stall", "rcu-stall"),
    ("out of memory", "oom"),
    ("deadlocked on memory", "oom"),
    ("machine check", "mce"),
    ("stack guard", "stack-guard"),
    ("kernel stack overflow", "stack-guard"),     # arm64's panic_bad_stack()
    ("double fault", "double-fault"),
)

_ESCALATION_MAX_SECONDS = 120.0
_BOOT_CLOCK = 1.0  # seconds: a timestamp that goes back below this is a new boot's first lines
_RECORD_GAP = 30.0
_ESCALATION_MAX_LINES = 4000


def _resolve_escalations(builders: list[_Builder]) -> list[int | None]:
    escalates: list[int | None] = [None] * len(builders)
    for i, b in enumerate(builders):
        if b.panic_message is None:
            continue
        accepts = _escalation_targets(b.panic_message)
        if accepts is not None:
            for j in range(i - 1, -1, -1):
                target = builders[j]
                if target.panic_message is not None:
                    continue
                if not _near(target, b):
                    break
                if accepts(target):
                    escalates[i] = j
                    break
        if escalates[i] is None:
            msg = b.panic_message.lower()
            b.kind = next((k for needle, k in _PANIC_MESSAGE_KINDS if needle in msg), "panic")
    return escalates


def _near(target: _Builder, panic: _Builder) -> bool:
    if target.timestamp is not None and panic.timestamp is not None:
        return panic.timestamp - target.timestamp <= _ESCALATION_MAX_SECONDS
    return panic.first - target.last <= _ESCALATION_MAX_LINES


# ---------------------------------------------------------------------------------------------
# Entry points


class _Parser:
    def __init__(self) -> None:
        self.builders: list[_Builder] = []
        self.open: dict[str | None, _Builder] = {}
        self.latest: _Builder | None = None
        self.pending_hints: list[tuple[int, str]] = []
        self.unknown_symbols: list[tuple[str, str]] = []
        self.version_errors: list[tuple[str, str]] = []
        self.verify_failures: list[str] = []
        self.out_of_tree: list[str] = []
        self.licenses: list[tuple[str, str]] = []
        self.kernel_offset: int | None = None
        self.last_stamp: float | None = None
        self.keep_lines = 0
        self.kept: list[list[LogLine]] = []
        self.boots: list[int] = []
        self.lines_total = 0

    def feed(self, index: int, line: LogLine) -> None:
        self.lines_total = index + 1
        self._feed(index, line)
        if self.keep_lines:
            self._keep(index, line)

    def _keep(self, index: int, line: LogLine) -> None:
        """Remember the line for the records it may belong to: open ones, newest first."""
        while len(self.kept) < len(self.builders):
            self.kept.append([])
        for n in range(len(self.builders) - 1, max(-1, len(self.builders) - 9), -1):
            b, kept = self.builders[n], self.kept[n]
            if b.closed and b.last < index:
                continue
            if b.first <= index and len(kept) < self.keep_lines:
                kept.append(line)

    def _feed(self, index: int, line: LogLine) -> None:
        text = line.text.replace("\r", "").rstrip()
        body = text.strip()
        self._notice_reboot(line, body)
        if not body:
            self._route(index, line, text)
            return
        if self._global_line(index, body):
            return
        hl = _headline(body)
        if hl is not None:
            self._on_headline(index, line, body, hl)
            return
        if _PRE_HINTS.match(body):
            self.pending_hints.append((index, body))
        self._route(index, line, text)

    def _notice_reboot(self, line: LogLine, body: str) -> None:
        """A new kernel's log (kdump's capture kernel on the console) ends every open record."""
        stamp = line.timestamp
        # A new boot's clock starts again near zero. A line stamped only a little earlier is not
        # one: a CPU that spins with interrupts off prints its NMI backtrace with its own stale
        # clock, seconds behind the CPU that asked for it.
        restarted = (
            stamp is not None and self.last_stamp is not None and stamp + 1.0 < self.last_stamp
            and stamp < _BOOT_CLOCK
        )
        if restarted or (body.startswith("Linux version ") and (stamp or 0.0) < _BOOT_CLOCK):
            # Not the log's own start: a boot banner after other kernel lines.
            earlier = self.last_stamp is not None or self.lines_total > 50
            if earlier and (not self.boots or self.boots[-1] < self.lines_total - 50):
                self.boots.append(self.lines_total - 1)
            for b in self.open.values():
                b.closed = True
            self.open.clear()
            self.latest = None
        if stamp is not None:
            self.last_stamp = stamp

    def _current(self, line: LogLine) -> _Builder | None:
        b = self.latest if line.caller is None else self.open.get(line.caller)
        if b is None or b.closed:
            return None
        stamp = line.timestamp
        if stamp is not None and b.last_stamp is not None and stamp - b.last_stamp > _RECORD_GAP:
            b.closed = True  # a report is printed in one go; this line is from later
            return None
        return b

    def _route(self, index: int, line: LogLine, text: str) -> None:
        b = self._current(line)
        if b is None and line.caller is not None:
            b = self._adopt_backtrace(line, text)
        if b is not None and b.feed(index, text):
            b.extend(index, line)

    def _adopt_backtrace(self, line: LogLine, text: str) -> _Builder | None:
        """A stalled CPU's NMI backtrace comes from that CPU's NMI handler, under its own
        caller id ("C0"), not the reporting CPU's: route it, and the lines after it from that
        caller, to the open record that asked for it."""
        m = _NMI_BT.match(text.strip())
        if m is None:
            return None
        cpu = int(m.group(1))
        b = next((b for b in reversed(self.builders) if b.wants_backtrace(cpu)), None)
        if b is not None:
            self.open[line.caller] = b
        return b

    def _on_headline(self, index: int, line: LogLine, body: str, hl: _Headline) -> None:
        cur = self._current(line)
        if cur is not None:
            if hl.die is not None and cur.takes_die_line(index):
                cur.apply_die(hl.die)
                cur.extend(index, line)
                return
            if hl.report is not None and hl.report.merges and cur.report is hl.report \
                    and cur.scanner is not None and not cur.scanner.sites:
                # kmemleak's "unreferenced object" under syzkaller's "BUG: memory leak"
                cur.extend(index, line)
                return
            if (
                cur.kind in hl.merge_into
                and not cur.ended
                and (cur.trace_state == "none" or cur.kind == hl.kind)
            ):
                if hl.apply is not None:
                    hl.apply(cur)
                cur.extend(index, line)
                return
            cur.closed = True
        b = _Builder(index, line, hl.kind, body, hl.report)
        if hl.apply is not None:
            hl.apply(b)
        if hl.die is not None:
            b.apply_die(hl.die)
        b.hints.extend(h for i, h in self.pending_hints if index - i <= 3)
        self.pending_hints = []
        self.builders.append(b)
        self.open[line.caller] = b
        self.latest = b

    def _global_line(self, index: int, body: str) -> bool:
        m = _KERNEL_OFFSET.match(body)
        if m is not None:
            self.kernel_offset = _hex(m.group(1)[2:]) if m.group(1) else 0
            return True
        if _END_PANIC.search(body):
            for b in reversed(self.builders):
                if b.panic_message is not None and not b.closed:
                    b.last = index
                    b.closed = True
                    break
            return True
        m = _UNKNOWN_SYMBOL.match(body)
        if m is not None:
            self.unknown_symbols.append((m.group(1), m.group(2)))
            return True
        m = _SYMBOL_VERSION.match(body)
        if m is not None:
            self.version_errors.append((m.group(1), m.group(2)))
            return True
        m = _VERIFY_FAIL.match(body)
        if m is not None:
            self.verify_failures.append(m.group(1))
            return True
        m = _OOT.match(body)
        if m is not None:
            self.out_of_tree.append(m.group(1))
            return True
        m = _LICENSE.match(body)
        if m is not None:
            self.licenses.append((m.group(1), m.group(2)))
            return True
        return False

    def finish(self) -> LogAnalysis:
        escalates = _resolve_escalations(self.builders)
        kept = tuple(
            tuple(lines[: b.last - b.first + 1]) for b, lines in zip(self.builders, self.kept, strict=False)
        )
        return LogAnalysis(
            records=tuple(b.record(e) for b, e in zip(self.builders, escalates, strict=True)),
            unknown_symbols=tuple(self.unknown_symbols),
            symbol_version_errors=tuple(self.version_errors),
            module_verification_failures=tuple(self.verify_failures),
            out_of_tree_modules=tuple(self.out_of_tree),
            module_license_taints=tuple(self.licenses),
            kernel_offset=self.kernel_offset,
            record_lines=kept if self.keep_lines else (),
            lines_total=self.lines_total,
            boots=tuple(self.boots),
        )


def parse_log(lines: Iterable[LogLine], keep_lines: int = 0) -> LogAnalysis:
    """Find the crash records in a kernel log (see OopsRecord) and the module-loading errors.

    Lines of one report are gathered by their printk caller id when the log has them, else
    by position; unrelated lines interleaved from other CPUs are skipped, not taken for the
    end of a report. Never raises on odd input.

    ``lines`` may be a stream (a generator over a huge file): it is read once, and only the
    parser's state is kept. With ``keep_lines`` > 0 the lines of each record (up to that many
    per record) are kept in ``LogAnalysis.record_lines``.
    """
    parser = _Parser()
    parser.keep_lines = keep_lines
    for index, line in enumerate(lines):
        parser.feed(index, line)
    return parser.finish()


# ---------------------------------------------------------------------------------------------
# Log text

_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_STAMP = re.compile(r"\[\s*(\d{1,10})\.(\d{6})\](?:\[\s*([TC]\d+)\])?")
_LEAD_STAMP = re.compile(r"^\[\s*(\d{1,10})\.(\d{1,9})\](?:\[\s*([TC]\d+)\])?")
_KMSG = re.compile(r"^(\d{1,4}),\d+,(\d{1,18}),[^;]*?(?:caller=([TC]\d+)[^;]*)?;(.*)$")
_SYSLOG_LEVEL = re.compile(r"^<(\d{1,3})>")
# A syslog or journal prefix: "Nov 25 09:30:01 host ", "2026-11-25T09:30:01.123456+00:00 host ",
# RFC 5424's "<4>1 2026-11-25T09:30:01Z host ", then the program: "kernel: " or "prog[pid]: ".
_SYSLOG_PREFIX = re.compile(
    r"^(?:<\d{1,3}>\d? ?)?"
    r"(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)?|"
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?)"
    r" (?:\S+ )?(?P<prog>[\w.\-/@]+)(?:\[\d+\])?: ?"
)


def _after_stamp(text: str) -> str:
    return text[1:] if text.startswith(" ") else text


def parse_dmesg_text(text: str) -> list[LogLine]:
    """Split log text into LogLines: "[    3.770012] msg" (dmesg, console, drgn), with the
    "[T67]"/"[C1]" caller field, "<4>" levels, /dev/kmsg records, journal and syslog lines
    (the kernel's only: other programs' lines are dropped), or no timestamps at all. Carriage
    returns, ANSI escapes and control bytes are removed; text before a timestamp (serial
    garbage, a login prompt) is dropped, and a line holding several timestamped messages is
    split."""
    out: list[LogLine] = []
    for raw in text.split("\n"):
        out.extend(split_log_line(raw))
    return out


def split_log_line(raw: str) -> list[LogLine]:
    """One line of log text (no newline) as LogLines: see parse_dmesg_text. Empty for a
    syslog/journal line of a program other than the kernel."""
    return _split_line(_CONTROL.sub("", _ANSI.sub("", raw.replace("\r", ""))))


def _split_line(line: str) -> list[LogLine]:
    kmsg = _KMSG.match(line)
    if kmsg is not None:
        level = int(kmsg.group(1)) & 7
        return [LogLine(kmsg.group(4), int(kmsg.group(2)) / 1e6, kmsg.group(3), level)]
    syslog_prefix = _SYSLOG_PREFIX.match(line)
    if syslog_prefix is not None:
        if syslog_prefix.group("prog") != "kernel":
            return []  # user space's lines in a syslog file: not the kernel's
        line = line[syslog_prefix.end() :]
    level = None
    syslog = _SYSLOG_LEVEL.match(line)
    if syslog is not None:
        level = int(syslog.group(1)) & 7
        line = line[syslog.end() :]
    # (start, end, timestamp, caller) of each timestamp prefix on the line
    stamps: list[tuple[int, int, float, str | None]] = []
    lead = _LEAD_STAMP.match(line)
    if lead is not None:
        stamps.append((0, lead.end(), float(f"{lead.group(1)}.{lead.group(2)}"), lead.group(3)))
    for m in _STAMP.finditer(line, lead.end() if lead is not None else 0):
        stamps.append((m.start(), m.end(), float(f"{m.group(1)}.{m.group(2)}"), m.group(3)))
    if not stamps:
        return [LogLine(line, None, None, level)]
    out = []
    for n, (_start, end, timestamp, caller) in enumerate(stamps):
        stop = stamps[n + 1][0] if n + 1 < len(stamps) else len(line)
        message = _after_stamp(line[end:stop])
        out.append(LogLine(message, timestamp, caller, level if n == 0 else None))
    return out
