"""What happened to the CPU at a pt_regs frame: an exception (which vector), a hardware
interrupt (timer, NMI, IPI, device), or no event at all (a panic() call, kdump's snapshot).

Pure: names and log record kinds in, a CpuEvent out. The words a report uses for the frame
and its instruction come from here, so that no report calls an interrupted instruction
"faulting" or "trapping".

Two sources, tried in this order:

- the entry stub just above the pt_regs frame on the unwound stack (``asm_exc_page_fault``,
  ``asm_sysvec_apic_timer_interrupt``, ``asm_exc_nmi``…; pre-5.8 kernels: ``page_fault``,
  ``apic_timer_interrupt``, ``nmi``…): what the CPU itself entered through;
- the crash record in the log, when the frame is the top of the dump's trace and no stub is
  above it (an oops's die() hands its pt_regs to crash_kexec, so the stub is not unwound).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["CpuEvent", "event_of_entry", "event_of_record", "PANIC_CALL"]


@dataclass(frozen=True)
class CpuEvent:
    """The event that saved a pt_regs frame."""

    kind: str
    """"exception", "interrupt", "nmi", "syscall" (user space's registers) or "panic-call"."""
    vector: str | None
    """Mnemonic of an x86 exception vector ("#PF", "#GP", "#UD", "#DF"…), "NMI", or None."""
    name: str
    """In words: "page fault", "local APIC timer interrupt", "IPI (function call)"."""
    source: str
    """Where it was read: "entry stub asm_exc_page_fault", "log record kind null-deref"."""

    @property
    def is_fault(self) -> bool:
        """True when an instruction caused it (an exception), so fault explanation applies."""
        return self.kind == "exception"

    @property
    def instruction_words(self) -> str:
        """How to name the instruction at the frame's PC."""
        if self.kind == "exception":
            return "trapping instruction" if self.vector in _TRAPS else "faulting instruction"
        if self.kind in ("interrupt", "nmi"):
            return "interrupted instruction"
        return "instruction"

    @property
    def frame_words(self) -> str:
        """How to name the pt_regs frame: "exception frame", "interrupt frame", "NMI frame"."""
        return {"exception": "exception frame", "interrupt": "interrupt frame",
                "nmi": "NMI frame", "syscall": "syscall frame"}.get(self.kind, "frame")

    def to_dict(self) -> dict:
        return asdict(self) | {"instruction_words": self.instruction_words, "frame_words": self.frame_words}


PANIC_CALL = CpuEvent("panic-call", None, "panic() call (no exception or interrupt)", "no pt_regs frame")

# Traps report the instruction that raised them by design (BUG()'s ud2, int3, debug traps).
_TRAPS = frozenset({"#UD", "#BP", "#DB"})

# x86 exception vectors by entry stub (arch/x86/include/asm/idtentry.h; "asm_" prefix since 5.8).
_EXCEPTIONS = {
    "exc_divide_error": ("#DE", "divide error"),
    "divide_error": ("#DE", "divide error"),
    "exc_debug": ("#DB", "debug exception"),
    "debug": ("#DB", "debug exception"),
    "exc_int3": ("#BP", "breakpoint (int3)"),
    "int3": ("#BP", "breakpoint (int3)"),
    "exc_overflow": ("#OF", "overflow"),
    "exc_bounds": ("#BR", "bound range exceeded"),
    "exc_invalid_op": ("#UD", "invalid opcode"),
    "invalid_op": ("#UD", "invalid opcode"),
    "exc_device_not_available": ("#NM", "device not available"),
    "exc_double_fault": ("#DF", "double fault"),
    "double_fault": ("#DF", "double fault"),
    "exc_invalid_tss": ("#TS", "invalid TSS"),
    "exc_segment_not_present": ("#NP", "segment not present"),
    "exc_stack_segment": ("#SS", "stack-segment fault"),
    "exc_general_protection": ("#GP", "general protection fault"),
    "general_protection": ("#GP", "general protection fault"),
    "exc_page_fault": ("#PF", "page fault"),
    "page_fault": ("#PF", "page fault"),
    "exc_coprocessor_error": ("#MF", "x87 floating-point error"),
    "exc_alignment_check": ("#AC", "alignment check"),
    "exc_machine_check": ("#MC", "machine check"),
    "machine_check": ("#MC", "machine check"),
    "exc_simd_coprocessor_error": ("#XM", "SIMD floating-point error"),
    "exc_virtualization_exception": ("#VE", "virtualization exception"),
    "exc_control_protection": ("#CP", "control-protection fault"),
    "exc_vmm_communication": ("#VC", "VMM communication exception"),
}
_NMI_STUBS = frozenset({"exc_nmi", "nmi", "exc_nmi_noist", "nmi_noist", "end_repeat_nmi", "repeat_nmi"})

# System vectors and device interrupts (arch/x86/include/asm/idtentry.h DECLARE_IDTENTRY_SYSVEC).
_INTERRUPTS = {
    "sysvec_apic_timer_interrupt": "local APIC timer interrupt",
    "apic_timer_interrupt": "local APIC timer interrupt",
    "sysvec_call_function": "IPI (function call)",
    "call_function_interrupt": "IPI (function call)",
    "sysvec_call_function_single": "IPI (function call, single CPU)",
    "call_function_single_interrupt": "IPI (function call, single CPU)",
    "sysvec_reschedule_ipi": "IPI (reschedule)",
    "reschedule_interrupt": "IPI (reschedule)",
    "sysvec_reboot": "IPI (reboot / stop CPU)",
    "reboot_interrupt": "IPI (reboot / stop CPU)",
    "sysvec_irq_work": "irq_work self-IPI",
    "irq_work_interrupt": "irq_work self-IPI",
    "sysvec_x86_platform_ipi": "platform IPI",
    "sysvec_thermal": "thermal interrupt",
    "sysvec_threshold": "MCE threshold interrupt",
    "sysvec_deferred_error": "deferred error interrupt",
    "sysvec_error_interrupt": "local APIC error interrupt",
    "sysvec_spurious_apic_interrupt": "spurious APIC interrupt",
    "sysvec_kvm_asyncpf_interrupt": "KVM async page fault interrupt",
    "sysvec_kvm_posted_intr_ipi": "KVM posted-interrupt IPI",
    "common_interrupt": "device interrupt",
    "spurious_interrupt": "spurious interrupt",
}
# arm64 exception vectors (arch/arm64/kernel/entry.S: el1h_64_irq…): what the vector says; the
# ESR in the log says more about a synchronous exception.
_ARM64 = {
    "el1h_64_irq": ("interrupt", None, "IRQ"),
    "el1h_64_fiq": ("interrupt", None, "FIQ"),
    "el1t_64_irq": ("interrupt", None, "IRQ"),
    "el1h_64_sync": ("exception", "sync", "synchronous exception"),
    "el1t_64_sync": ("exception", "sync", "synchronous exception"),
    "el1h_64_error": ("exception", "SError", "SError (asynchronous abort)"),
}

_SYSCALL_STUBS = frozenset({"entry_SYSCALL_64", "entry_SYSCALL_compat", "entry_INT80_compat",
                            "entry_SYSENTER_compat", "entry_SYSCALL_64_after_hwframe"})


def _stub_key(name: str) -> str:
    name = name.split(".")[0]  # .cold / .constprop suffixes
    return name[4:] if name.startswith("asm_") else name


def event_of_entry(stub: str | None) -> CpuEvent | None:
    """The event an entry stub's name says, or None when it names none we know."""
    if not stub:
        return None
    key = _stub_key(stub)
    source = f"entry stub {stub}"
    if key in _EXCEPTIONS:
        vector, name = _EXCEPTIONS[key]
        return CpuEvent("exception", vector, name, source)
    if key in _ARM64:
        kind, vector, name = _ARM64[key]
        return CpuEvent(kind, vector, name, source)
    if stub in _SYSCALL_STUBS:
        return CpuEvent("syscall", None, "system call from user space", source)
    if key in _NMI_STUBS:
        return CpuEvent("nmi", "NMI", "non-maskable interrupt (NMI)", source)
    if key in _INTERRUPTS:
        return CpuEvent("interrupt", None, _INTERRUPTS[key], source)
    if key.startswith("sysvec_"):
        return CpuEvent("interrupt", None, f"system vector interrupt ({key[7:]})", source)
    return None


# Log record kinds (decode/oopslog.py) of an oops raised by an exception on this CPU.
_RECORD_EXCEPTIONS = {
    "null-deref": ("#PF", "page fault"),
    "page-fault": ("#PF", "page fault"),
    "gpf": ("#GP", "general protection fault"),
    "bug": ("#UD", "invalid opcode (BUG()'s ud2)"),
    "warning": ("#UD", "invalid opcode (WARN()'s ud2)"),
    "invalid-opcode": ("#UD", "invalid opcode"),
    "list-corruption": ("#UD", "invalid opcode (BUG()'s ud2)"),
    "divide-error": ("#DE", "divide error"),
    "double-fault": ("#DF", "double fault"),
    "stack-guard": ("#DF", "double fault"),
    "mce": ("#MC", "machine check"),
}
# The same on arm64, where every one of them is a synchronous exception (ESR_EL1 says which):
# an abort for a bad access, a `brk` for BUG()/WARN().
_RECORD_EXCEPTIONS_ARM64 = {
    "null-deref": ("sync", "synchronous exception (abort)"),
    "page-fault": ("sync", "synchronous exception (abort)"),
    "bug": ("BRK", "breakpoint (BUG()'s brk #0x800)"),
    "warning": ("BRK", "breakpoint (WARN()'s brk #0x800)"),
    "list-corruption": ("BRK", "breakpoint (BUG()'s brk #0x800)"),
    "invalid-opcode": ("sync", "synchronous exception (undefined instruction)"),
}
# Records a timer/NMI watchdog raises about what a CPU was doing: the frame it saved was
# interrupted, nothing trapped.
_RECORD_INTERRUPTS = {
    "soft-lockup": ("interrupt", None, "timer interrupt (soft-lockup watchdog)"),
    "rcu-stall": ("interrupt", None, "timer interrupt (RCU stall check)"),
    "hard-lockup": ("nmi", "NMI", "non-maskable interrupt (hard-lockup watchdog)"),
}


def event_of_record(kind: str | None, arch: str | None = None) -> CpuEvent | None:
    """The event a crash record's kind implies for the CPU that printed it, if any.
    ``arch``: drgn's architecture name ("AARCH64"…); x86-64's vectors by default."""
    source = f"log record kind {kind}"
    # arm64 gets no x86 vector names: a kind its table lacks gets no event (the ESR says it)
    exceptions = _RECORD_EXCEPTIONS_ARM64 if arch == "AARCH64" else _RECORD_EXCEPTIONS
    if kind in exceptions:
        vector, name = exceptions[kind]
        return CpuEvent("exception", vector, name, source)
    if kind in _RECORD_INTERRUPTS:
        k, vector, name = _RECORD_INTERRUPTS[kind]
        return CpuEvent(k, vector, name, source)
    return None
