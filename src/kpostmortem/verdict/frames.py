"""Guilty-frame choice: skip reporting machinery and generic helpers to find the suspect.

The skip lists are documented in docs/verdicts.md; each entry is a function name or a prefix.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from kpostmortem.arch import aarch64
from kpostmortem.report import Frame

__all__ = [
    "base_name", "choose_guilty", "is_helper", "is_plumbing", "PLUMBING", "PLUMBING_PREFIXES", "INTERRUPT_PLUMBING",
    "INTERRUPT_PLUMBING_PREFIXES",
    "SCHEDULER", "SCHEDULER_PREFIXES", "HELPERS", "HELPER_PREFIXES", "ALLOCATOR_PREFIXES",
]

_SUFFIX = re.compile(r"(\.(cold|constprop|isra|part|llvm|lto_priv|localalias|specialized)(\.\d+)?)+$")


def base_name(name: str | None) -> str | None:
    """``foo.constprop.0.isra.0`` → ``foo``: gcc's split or cloned symbols name their function."""
    if name is None:
        return None
    return _SUFFIX.sub("", name)


# Panic, oops and exception plumbing: never the culprit.
PLUMBING = frozenset({
    "crash_setup_regs", "__crash_kexec", "crash_kexec", "machine_crash_shutdown",
    "panic", "vpanic", "nmi_panic", "die", "die_addr", "__die", "__die_body", "oops_end", "oops_begin",
    "do_trap", "do_error_trap", "handle_bug", "report_bug", "page_fault_oops",
    "kernelmode_fixup_or_oops", "__bad_area_nosemaphore", "bad_area_nosemaphore",
    "do_user_addr_fault", "do_kern_addr_fault", "handle_page_fault", "no_context",
    "spurious_kernel_fault", "fixup_exception", "check_panic_on_warn", "__warn", "warn_slowpath_fmt",
    "dump_stack", "dump_stack_lvl", "show_stack", "show_regs", "handle_stack_overflow",
    # The OOM killer's report (a log's "invoked oom-killer" trace starts in it).
    "dump_header", "oom_kill_process",
    "__stack_chk_fail", "die_body", "__report_bug", "report_bug_entry", "__warn_printk",
    # Hardening checks that report and stop: the code that called the checked copy is the suspect.
    "fortify_panic", "__fortify_panic", "fortify_report", "__fortify_report", "usercopy_abort",
    "__check_object_size", "check_heap_object", "__check_heap_object", "refcount_warn_saturate",
})
# Exception entry, and the sanitizers' reporting (KASAN, KMSAN, KCSAN, UBSAN, KFENCE): the
# instrumented access is in the caller.
PLUMBING_PREFIXES = ("exc_", "asm_exc_", "__exc_", "kasan_", "__kasan_", "__asan_", "kmsan_", "__msan_",
                     "kcsan_", "__tsan_", "ubsan_", "__ubsan_handle_", "kfence_")

# Interrupt entry and the watchdogs that fire from it: the suspect is what they interrupted.
INTERRUPT_PLUMBING = frozenset({
    "watchdog_timer_fn", "watchdog_overflow_callback", "__hrtimer_run_queues", "hrtimer_interrupt",
    "__sysvec_apic_timer_interrupt", "sysvec_apic_timer_interrupt", "asm_sysvec_apic_timer_interrupt",
    "irq_exit_rcu", "__irq_exit_rcu", "__run_hrtimer", "perf_event_nmi_handler", "nmi_handle",
    "default_do_nmi", "exc_nmi", "asm_exc_nmi", "__perf_event_overflow", "perf_event_overflow",
    "handle_irq_event", "common_interrupt", "asm_common_interrupt",
    "rcu_sched_clock_irq", "update_process_times", "tick_sched_handle", "tick_sched_timer",
    "print_cpu_stall", "check_cpu_stall", "rcu_pending", "watchdog", "hung_task_panic",
    "check_hung_uninterruptible_tasks", "check_hung_task", "kthread", "ret_from_fork",
    "ret_from_fork_asm",
    # The timer interrupt's inlined wrapper, device-interrupt dispatch.
    "local_apic_timer_interrupt", "__common_interrupt", "handle_edge_irq", "handle_fasteoi_irq",
    "handle_irq_event_percpu", "__handle_irq_event_percpu", "handle_irq", "irq_enter_rcu",
    # An RCU stall seen from another CPU, and the NMI backtrace it asks of the stalled one.
    "print_other_cpu_stall", "rcu_dump_cpu_stacks", "panic_on_rcu_stall", "dump_cpu_task",
    "nmi_cpu_backtrace", "nmi_cpu_backtrace_handler", "nmi_trigger_cpumask_backtrace",
    "arch_trigger_cpumask_backtrace",
})
# Every system-vector entry of DEFINE_IDTENTRY_SYSVEC (asm_sysvec_X → sysvec_X → instr_sysvec_X
# → __sysvec_X): the timer, IPIs (call-function, reschedule, IRQ work), thermal, and the rest.
INTERRUPT_PLUMBING_PREFIXES = ("asm_sysvec_", "sysvec_", "instr_sysvec_", "__sysvec_")

# The other architectures' exception entry and reporting (arch/aarch64.py: el1h_64_sync,
# do_mem_abort, bug_handler, the overflow stack's panic_bad_stack…); names never collide.
PLUMBING = PLUMBING | aarch64.PLUMBING
INTERRUPT_PLUMBING = INTERRUPT_PLUMBING | aarch64.INTERRUPT_PLUMBING

# Scheduler, sleep, wait and lock primitives: for checks that fire inside schedule() and for
# hangs, the suspect is the code that went to sleep.
SCHEDULER = frozenset({
    "__schedule_bug", "schedule_debug", "__schedule", "schedule", "schedule_timeout",
    "context_switch", "__switch_to", "__switch_to_asm", "finish_task_switch",
    "schedule_preempt_disabled", "schedule_hrtimeout_range_clock", "schedule_hrtimeout_range",
    "msleep", "msleep_interruptible", "usleep_range_state", "do_nanosleep", "hrtimer_nanosleep",
    "io_schedule", "io_schedule_timeout", "wait_for_completion", "wait_for_common",
    "__wait_for_common", "do_wait_for_common", "wait_for_completion_timeout",
    "mutex_lock", "__mutex_lock", "__mutex_lock_slowpath", "mutex_lock_nested",
    "down", "__down", "__down_common", "down_read", "down_write", "rwsem_down_read_slowpath",
    "rwsem_down_write_slowpath", "_raw_spin_lock", "_raw_spin_lock_irqsave", "queued_spin_lock_slowpath",
    "native_queued_spin_lock_slowpath", "preempt_schedule", "preempt_schedule_common",
    "__cond_resched", "prepare_to_wait_event", "finish_wait", "cpu_relax",
})

SCHEDULER_PREFIXES = ("schedule_", "__schedule", "msleep", "usleep", "ssleep", "wait_for_", "__wait_",
                      "mutex_lock", "__mutex_lock", "down_", "rwsem_", "_raw_spin_lock", "do_nanosleep",
                      "hrtimer_nanosleep", "io_schedule", "preempt_schedule", "__cond_resched",
                      "_raw_read_lock", "_raw_write_lock", "queued_read_lock", "queued_write_lock",
                      "do_raw_spin_lock", "rt_mutex", "__rt_mutex", "rwbase_", "percpu_down", "percpu_rwsem",
                      "bit_wait", "out_of_line_wait_on_bit", "folio_wait_bit", "wait_on_page_bit", "__folio_lock",
                      "__lock_page")

# Generic helpers: a fault inside them is usually the caller's bug (for the title).
HELPERS = frozenset({
    "memcpy", "memset", "memmove", "memcmp", "__memcpy", "__memset", "__memmove", "memcpy_orig",
    "memcpy_erms", "memset_erms", "memset_orig", "strcpy", "strncpy", "strlen", "strnlen",
    "strcmp", "strncmp", "strscpy", "strcat", "sprintf", "snprintf", "vsnprintf",
    "strscpy_pad", "strchr", "strrchr", "strstr", "strsep", "memchr", "memscan", "kstrdup", "kstrndup",
    "kmemdup", "fortify_memcpy_chk", "strncpy_from_user", "_copy_from_user", "_copy_to_user",
    "copy_from_user", "copy_to_user", "__list_add", "__list_del", "__list_del_entry", "list_add_tail",
    "list_del_init", "list_move", "list_move_tail", "hlist_del", "__hlist_del", "hlist_add_head",
    "kfree_sensitive",
    "cpu_relax",    # a busy-wait's pause (arm64: yield, inlined with its own DWARF frame)
    "copy_user_generic_string", "copy_user_enhanced_fast_string", "rep_movs_alternative",
    "__list_add_valid", "__list_del_entry_valid", "__list_add_valid_or_report",
    "__list_del_entry_valid_or_report", "list_del", "list_add",
    "kfree", "kmem_cache_free", "__kmem_cache_free", "slab_free", "__slab_free", "do_slab_free",
    "kmalloc", "__kmalloc", "kmem_cache_alloc", "___slab_alloc", "__kmalloc_node",
    "vfree", "__vunmap", "kvfree",
})


# Allocator internals (page allocator, slab, vmalloc, the OOM killer): for an OOM panic or a
# fault inside them, the suspect is the code that asked for memory. 6.10+ adds ``_noprof``.
ALLOCATOR_PREFIXES = (
    "__alloc_pages", "alloc_pages", "__get_free_pages", "get_zeroed_page", "__folio_alloc", "folio_alloc",
    "out_of_memory", "check_panic_on_oom", "__kmalloc", "kmalloc", "kmem_cache_alloc", "__vmalloc",
    "vmalloc", "__vmalloc_node", "alloc_slab_page", "allocate_slab", "new_slab", "___slab_alloc",
    "__slab_alloc", "slab_alloc", "alloc_pages_mpol", "__alloc_frozen_pages", "kvmalloc", "__kvmalloc",
    "kzalloc", "krealloc", "__do_kmalloc",
)


# Inline atomic and refcount helpers: a NULL or freed object faults in them, not in its user.
HELPER_PREFIXES = ("refcount_", "__refcount_", "atomic_", "atomic64_", "arch_atomic", "raw_atomic")


def is_helper(name: str) -> bool:
    """Generic helpers and allocator internals: the caller is the suspect."""
    return name in HELPERS or name.startswith(ALLOCATOR_PREFIXES) or name.startswith(HELPER_PREFIXES)


def is_plumbing(name: str) -> bool:
    return name in PLUMBING or name.startswith(PLUMBING_PREFIXES)


def choose_guilty(frames: Sequence[Frame], *, skip_scheduler: bool = False,
                  skip_interrupt: bool = False, skip_helpers: bool = True) -> Frame | None:
    """The first frame that is not reporting or helper machinery.

    A frame with no function (the PC itself was invalid: a call through a NULL or garbage
    function pointer) is skipped; its caller, found from the return address, is the suspect.
    When every candidate is a helper, the innermost helper is returned.
    """
    first_helper = None
    for frame in frames:
        name = base_name(frame.function)
        if not name:
            continue
        if is_plumbing(name):
            continue
        if skip_interrupt and (name in INTERRUPT_PLUMBING or name.startswith(INTERRUPT_PLUMBING_PREFIXES)):
            continue
        if skip_scheduler and (name in SCHEDULER or name.startswith(SCHEDULER_PREFIXES)):
            continue
        if skip_helpers and is_helper(name):
            first_helper = first_helper or frame
            continue
        return frame
    return first_helper
