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
    "SCHEDULER", "SCHEDULER_PREFIXES", "SPIN_PREFIXES", "HELPERS", "HELPER_PREFIXES", "ALLOCATOR_PREFIXES",
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
    # Exception entry and reporting of 4.x kernels, met in old logs' traces.
    "fixup_bug", "do_invalid_op", "invalid_op", "do_general_protection", "general_protection",
    "page_fault", "do_page_fault", "__do_page_fault", "async_page_fault", "warn_slowpath_null",
    # The sanitizers' report printing (KASAN, KMSAN, KCSAN): the checked access is in the caller.
    "print_address_description", "print_report", "check_memory_region", "check_memory_region_inline",
    # Reports that print a stack: lockdep, spinlock debugging, UBSAN, sleeping-in-atomic, RCU
    # stalls and NMI backtraces (the stack they print is the suspect's, below them).
    "print_circular_bug", "check_noncircular", "spin_dump", "spin_bug", "handle_overflow",
    "dump_backtrace", "sched_show_task", "_sched_show_task", "nmi_cpu_backtrace",
    "nmi_trigger_cpumask_backtrace", "arch_trigger_cpumask_backtrace", "rcu_dump_cpu_stacks",
    "print_other_cpu_stall", "warn_alloc", "warn_bogus_irq_restore",
    "__stack_chk_fail", "die_body", "__report_bug", "report_bug_entry", "__warn_printk",
    # Hardening checks that report and stop: the code that called the checked copy is the suspect.
    "fortify_panic", "__fortify_panic", "fortify_report", "__fortify_report", "usercopy_abort",
    "__check_object_size", "check_heap_object", "__check_heap_object", "refcount_warn_saturate",
    # Reports that stop with their own BUG() or panic: the caller passed the bad value.
    "skb_panic", "skb_over_panic", "skb_under_panic", "__reiserfs_panic", "warn_slowpath_common",
    "ret_from_exception",    # riscv's exception return, printed as a frame
    "walk_stackframe", "__panic", "bad_page", "free_pages_check_bad", "check_new_page_bad",
    "panic_saved_regs", "do_trap_break", "do_DataAbort", "retint_kernel",
})
# Exception entry, and the sanitizers' reporting (KASAN, KMSAN, KCSAN, UBSAN, KFENCE): the
# instrumented access is in the caller.
PLUMBING_PREFIXES = ("exc_", "asm_exc_", "__exc_", "kasan_", "__kasan_", "__asan_", "kmsan_", "__msan_",
                     "kcsan_", "__tsan_", "ubsan_", "__ubsan_handle_", "kfence_", "__hwasan_",
                     # coverage instrumentation (KCOV) called from every basic block of its caller
                     "__sanitizer_cov_", "write_comp_data",
                     # retpoline and call-depth thunks: an indirect call's trampoline, not code
                     "__x86_indirect_thunk_", "__x86_indirect_call_thunk_", "__x86_return_thunk",
                     # system call entry: the suspect is in the call, never the entry code
                     "entry_SYSCALL", "entry_SYSENTER", "entry_INT80", "do_syscall_", "do_fast_syscall",
                     "__do_fast_syscall", "do_int80_syscall")

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
    # The IRQ-stack switch of Linux 5.8-5.12 (arch/x86/entry/entry_64.S), a function of its own
    # in every interrupt's trace; 5.13 replaced it with inline asm (call_on_irqstack), no frame.
    "asm_call_irq_on_stack", "asm_call_sysvec_on_stack", "asm_call_on_stack",
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
                      "__lock_page", "___preempt_schedule", "_cond_resched",
                      "lock_sock", "__lock_sock", "console_lock", "do_raw_write_lock",
                      "do_raw_read_lock")

# Spinning lock acquisition (spinlocks and rwlocks, the paravirt wait): a CPU a watchdog finds
# stuck in them is waiting for the lock's holder. Without the holder (a log, a dump read without
# DWARF), the suspect of a lockup or stall is the code that takes the lock; with it, the hang
# analysis names the holder (verdict/hangs.py).
SPIN_PREFIXES = ("_raw_spin_lock", "queued_spin_lock_slowpath", "native_queued_spin_lock_slowpath",
                 "__pv_queued_spin_lock_slowpath", "pv_queued_spin_lock_slowpath", "do_raw_spin_lock",
                 "_raw_read_lock", "_raw_write_lock", "queued_read_lock_slowpath", "queued_write_lock_slowpath",
                 "do_raw_read_lock", "do_raw_write_lock", "__raw_spin_lock", "arch_spin_lock", "spin_lock",
                 "pv_wait", "kvm_wait", "__pv_queued_spin_unlock", "virt_spin_lock")

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
    # The delay loops, clock reads and watchdog pets of a busy wait: the loop that calls them
    # is the suspect (a stall or lockup interrupts the CPU inside them most of the time).
    "delay_tsc", "delay_loop", "delay_halt", "delay_halt_mwaitx", "delay_halt_tpause", "__delay",
    "__const_udelay", "__udelay", "__ndelay", "udelay", "ndelay", "mdelay", "rep_nop", "native_read_tsc",
    "rdtsc", "rdtsc_ordered", "touch_nmi_watchdog", "touch_softlockup_watchdog",
    "copy_user_generic_string", "copy_user_enhanced_fast_string", "rep_movs_alternative",
    "__list_add_valid", "__list_del_entry_valid", "__list_add_valid_or_report",
    "__list_del_entry_valid_or_report", "list_del", "list_add",
    "kfree", "kmem_cache_free", "__kmem_cache_free", "slab_free", "__slab_free", "do_slab_free",
    "kmalloc", "__kmalloc", "kmem_cache_alloc", "___slab_alloc", "__kmalloc_node",
    "vfree", "__vunmap", "kvfree",
    # More library code that works on its caller's data: formatting, checksums, user and
    # iterator copies, trees and lookups, and the reference drops that free an object. A fault,
    # BUG or WARNING inside them is raised on the caller's object.
    "strlcpy", "strncat", "strnstr", "strndup", "memdup_user", "kmemdup_nul", "scnprintf", "vscnprintf",
    "kasprintf", "kvasprintf", "string", "pointer", "hex_dump_to_buffer", "print_hex_dump",
    "_copy_to_iter", "_copy_from_iter", "copy_to_iter", "copy_from_iter", "copy_page_to_iter",
    "copy_page_from_iter", "copy_folio_to_iter", "__might_fault", "might_fault",
    "kfree_skb", "kfree_skb_reason", "consume_skb", "iput", "iput_final", "ihold", "dput", "fast_dput",
    "drop_nlink", "mark_buffer_dirty", "put_device", "ida_free", "__phys_addr", "__virt_addr_valid",
    "unlock_page", "folio_unlock", "find_lock_entries", "truncate_inode_pages_range",
    "__wake_up", "__wake_up_common", "__wake_up_common_lock", "complete", "complete_all",
    "lock_timer_base", "__mod_timer", "mod_timer", "del_timer", "del_timer_sync", "__timer_delete_sync",
    "timer_delete_sync", "timer_delete", "__timer_delete", "try_to_del_timer_sync",
    "flush_work", "__flush_work", "queue_work_on", "__queue_work", "insert_work", "__queue_delayed_work",
    "queue_delayed_work_on", "flush_workqueue", "__flush_workqueue", "drain_workqueue",
    "destroy_workqueue", "cancel_work_sync", "__cancel_work_timer", "__cancel_work", "try_to_grab_pending",
    "work_is_static_object", "timer_is_static_object", "debug_print_object", "debug_check_no_obj_freed",
    "set_bit", "clear_bit", "change_bit", "test_and_set_bit", "test_and_clear_bit", "test_and_change_bit",
    "stack_trace_consume_entry", "arch_stack_walk", "stack_trace_save", "assertfail",
    "usercopy_warn", "proc_register", "cleanup_srcu_struct",
    "hex_string", "format_decode", "string_nocheck", "__read_once_word_nocheck", "read_word_at_a_time",
    "__virt_to_phys", "__phys_addr_symbol", "__local_bh_enable_ip", "local_bh_enable", "__seqprop_assert",
    "call_rcu", "__call_rcu", "init_timer_key", "__try_to_del_timer_sync", "memdup_user_nul", "kfree_skb_list",
    # The driver core and the USB core: device registration, removal and URB cancelling
    # act on the caller's device; a fault or WARNING in them is a driver's lifetime bug.
    "device_add", "device_del", "device_unregister", "device_destroy", "device_release",
    "get_device_parent", "device_remove_file", "device_for_each_child", "dpm_sysfs_remove",
    "devres_release_all", "add_uevent_var", "usb_kill_urb", "usb_kill_anchored_urbs", "usb_submit_urb",
    "usb_hcd_submit_urb", "usb_control_msg", "kthread_stop", "unregister_netdev", "rollback_registered",
    "rollback_registered_many",
    # socket buffers: skb_put()/skb_push()/skb_pull() BUG on the caller's length arithmetic
    "skb_put", "__skb_put", "skb_push", "__skb_push", "skb_pull", "__skb_pull", "call_rcu_sched",
    "sk_stop_timer", "sk_stop_timer_sync", "sk_reset_timer",
    # Registration and teardown in subsystem cores (procfs, netdev, I2C, TTY, hwrng) and the
    # device printk path: their WARNINGs and faults are about the caller's object or arguments
    "proc_create_data", "proc_create", "proc_create_seq_private", "proc_create_single_data",
    "unregister_netdevice_queue", "unregister_netdevice_many", "unregister_netdevice_many_notify",
    "i2c_del_adapter", "__unregister_client", "i2c_unregister_device", "tty_unregister_device",
    "hwrng_unregister", "dev_vprintk_emit", "dev_printk_emit", "_dev_printk", "__dev_printk", "va_format",
    "dev_printk", "_dev_info", "_dev_notice", "_dev_warn", "_dev_err", "_dev_crit", "_dev_alert", "_dev_emerg",
    "vzalloc", "release_sock",
    # MMIO accessors: the fault is on the driver's mapping
    "__raw_readb", "__raw_readw", "__raw_readl", "__raw_readq", "__raw_writeb", "__raw_writew",
    "__raw_writel", "__raw_writeq", "readb", "readw", "readl", "readq", "writeb", "writew", "writel", "writeq",
})


# Allocator internals (page allocator, slab, vmalloc, the OOM killer): for an OOM panic or a
# fault inside them, the suspect is the code that asked for memory. 6.10+ adds ``_noprof``.
ALLOCATOR_PREFIXES = (
    "__alloc_pages", "alloc_pages", "__get_free_pages", "get_zeroed_page", "__folio_alloc", "folio_alloc",
    "out_of_memory", "check_panic_on_oom", "__kmalloc", "kmalloc", "kmem_cache_alloc", "__vmalloc",
    "vmalloc", "__vmalloc_node", "alloc_slab_page", "allocate_slab", "new_slab", "___slab_alloc",
    "__slab_alloc", "slab_alloc", "alloc_pages_mpol", "__alloc_frozen_pages", "kvmalloc", "__kvmalloc",
    "kzalloc", "krealloc", "__do_kmalloc",
    # freeing, and the large-kmalloc and NUMA paths (an allocator WARNING is the caller's size)
    "__free_pages", "free_pages", "slab_free", "free_large_kmalloc", "__kmem_cache_alloc", "___kmalloc_large",
    "__kmalloc_large", "kmalloc_large", "alloc_page_interleave", "free_unref_", "__page_cache_alloc",
)


# Inline atomic and refcount helpers: a NULL or freed object faults in them, not in its user;
# and lockdep's and debugobjects' checks, which run inside lock and timer calls on the caller's
# object (the lock primitives themselves stay: see SCHEDULER for when they are skipped).
HELPER_PREFIXES = ("refcount_", "__refcount_", "atomic_", "atomic64_", "arch_atomic", "raw_atomic",
                   "lock_acquire", "__lock_acquire", "lock_release", "__lock_release", "lock_acquired",
                   "lock_contended", "lockdep_", "__lockdep_", "mark_lock", "validate_chain", "check_prev_add",
                   "perf_trace_lock", "trace_lock_", "debug_object", "__debug_object", "kcsan_",
                   # lockdep's and the lock debugging's reports, and the might_sleep() and
                   # smp_processor_id() checks: the report is about the code that called the lock
                   "print_usage_bug", "print_unlock_imbalance_bug", "print_lock_", "debug_check_no_locks",
                   "register_lock_class", "mark_held_locks", "lock_is_held", "__might_sleep", "___might_sleep",
                   "__might_resched", "might_sleep", "check_preemption_disabled", "debug_smp_processor_id",
                   "__this_cpu_preempt_check", "debug_lockdep_rcu_enabled",
                   # lock release and the rest of the lock primitives (taking a lock is in SCHEDULER)
                   "_raw_spin_unlock", "do_raw_spin_unlock", "_raw_read_unlock", "_raw_write_unlock",
                   "mutex_unlock", "__mutex_unlock", "up_read", "up_write", "_atomic_dec_and_lock",
                   "_raw_spin_trylock", "mutex_trylock", "down_read_trylock", "down_write_trylock",
                   "do_raw_spin_trylock", "mutex_remove_waiter", "mutex_optimistic_spin", "osq_lock",
                   "lock_downgrade", "reacquire_held_locks", "look_up_lock_class", "hlock_class",
                   "check_irq_usage", "check_usage", "print_bad_irq_dependency", "print_irq_inversion_bug",
                   "trace_hardirqs_", "trace_softirqs_", "__task_rq_lock", "task_rq_lock",
                   "__down_trylock_console_sem", "__printk_safe_flush", "aes_encrypt", "aes_decrypt",
                   "simple_copy_to_iter", "raw_spin_rq_", "aesti_",
                   # preemption bookkeeping inlined into preempt_enable() and the delay loops
                   "__preempt_count_", "preempt_count_",
                   # references, trees, lookups, checksums, printk and kobjects: library code
                   "kref_", "ref_tracker", "__list_", "list_", "hlist_", "rb_", "__rb_", "xas_", "xa_",
                   "rhashtable_lookup", "crc", "__crc", "printk", "_printk", "vprintk", "kobject_", "__kobject_",
                   "klist_", "sysfs_remove", "sysfs_create")


def is_helper(name: str) -> bool:
    """Generic helpers and allocator internals: the caller is the suspect."""
    return name in HELPERS or name.startswith(ALLOCATOR_PREFIXES) or name.startswith(HELPER_PREFIXES)


def is_plumbing(name: str) -> bool:
    return name in PLUMBING or name.startswith(PLUMBING_PREFIXES)


def choose_guilty(frames: Sequence[Frame], *, skip_scheduler: bool = False,
                  skip_interrupt: bool = False, skip_helpers: bool = True,
                  skip_spin: bool = False) -> Frame | None:
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
        if skip_spin and name.startswith(SPIN_PREFIXES):
            continue
        if skip_helpers and is_helper(name):
            first_helper = first_helper or frame
            continue
        return frame
    return first_helper
