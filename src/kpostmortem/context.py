"""Lazy, cached facts about one opened dump that every analyzer may need.

Each fact is computed once on first use; a fact that cannot be read raises, and the
analyzer asking for it records the failure in its outcome.
"""

from __future__ import annotations

from functools import cached_property

import drgn
from drgn.helpers.linux.printk import get_printk_records
from drgn.helpers.linux.stack import LinuxKernelStack, kernel_stack_trace

from .dump import Dump
from .helpers.modules import module_of_address
from .oopslog import LogAnalysis, LogLine, parse_log

__all__ = ["Context"]

# How many rounds of "unwind, load debug info of the modules found, unwind again".
MAX_TRACE_ROUNDS = 3


class Context:
    """Facts about the dump shared by the analyzers, computed lazily once."""

    def __init__(self, dump: Dump) -> None:
        self.dump = dump
        self.prog: drgn.Program = dump.prog

    @cached_property
    def crashed_thread(self) -> drgn.Thread:
        """The thread that crashed (the CPU that called crash_kexec)."""
        return self.prog.crashed_thread()

    @cached_property
    def panic_task(self) -> drgn.Object:
        """``struct task_struct *`` of the crashed thread."""
        return self.crashed_thread.object

    @cached_property
    def trace(self) -> LinuxKernelStack:
        """The crashed task's stack, segmented, with module debug info loaded as needed.

        Module frames cannot be unwound or symbolised without the module's debug file, so
        unwind, load debug info for the modules the trace touches, and unwind again.
        """
        trace = kernel_stack_trace(self.prog, self.panic_task)
        for _ in range(MAX_TRACE_ROUNDS):
            modules = {m for m in (module_of_address(self.prog, f.pc) for f in trace) if m}
            if not self.dump.load_module_debug_info(modules):
                break
            trace = kernel_stack_trace(self.prog, self.panic_task)
        return trace

    @cached_property
    def printk_records(self) -> list:
        """drgn's PrintkRecords of the kernel log buffer."""
        return get_printk_records(self.prog)

    @cached_property
    def log_lines(self) -> list[LogLine]:
        """The kernel log as LogLines: one per message line, with its timestamp."""
        lines = []
        for record in self.printk_records:
            ts = record.timestamp / 1e9
            for text in record.text.decode(errors="replace").split("\n"):
                lines.append(LogLine(text=text, timestamp=ts))
        return lines

    @cached_property
    def log(self) -> LogAnalysis:
        """The kernel log parsed into crash records."""
        return parse_log(self.log_lines)
