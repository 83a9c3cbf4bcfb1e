"""Lazy, cached facts about one opened dump that every analyzer may need.

Each fact is computed once on first use; a fact that cannot be read raises, and the
analyzer asking for it records the failure in its outcome.
"""

from __future__ import annotations

from functools import cached_property

import drgn
from drgn.helpers.linux.printk import get_printk_records
from drgn.helpers.linux.stack import LinuxKernelStack, kernel_stack_trace

from kpostmortem.decode.oopslog import LogAnalysis, LogLine, parse_log
from kpostmortem.helpers.modules import module_of_address
from kpostmortem.helpers.stack import CanarySweep, stack_end_canaries
from kpostmortem.inputs.dump import Dump
from kpostmortem.inputs.elfinfo import PrStatus
from kpostmortem.inputs.nodwarf import (
    anchor_module_symbols,
    crashed_cpu,
    printk_lines_from_vmcoreinfo,
    stack_from_prstatus,
)

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

        Degraded mode (no kernel DWARF): the crashed CPU's saved registers unwound with the
        kernel's built-in ORC; module frames named from the oops log.
        """
        if self.dump.debug.degraded:
            return self._degraded_trace()
        # The modules the log's crash records name ("[crashpoc]") are on the crashed stack:
        # their debug info first saves unwinding twice (the loop below still catches others).
        self.dump.load_module_debug_info(self._logged_modules())
        try:
            return self.task_trace(self.panic_task)
        except drgn.FaultError:
            # The crashed task_struct is unreadable (filtered out, corrupted): its CPU's saved
            # registers still give the stack.
            if not self.dump.header.prstatus:
                raise
            return self._with_module_debug_info(lambda: stack_from_prstatus(self.prog, self.crashed_prstatus, None))

    @cached_property
    def crashed_prstatus(self) -> PrStatus:
        """The crashed CPU's NT_PRSTATUS note (pid and registers), read from the dump's header."""
        pr = crashed_cpu(self.prog, self.dump.header.prstatus, self._logged_crash_cpu())
        if pr is None:
            raise LookupError("the dump has no NT_PRSTATUS notes: no CPU registers to unwind")
        return pr

    def _logged_crash_cpu(self) -> tuple[int | None, int | None] | None:
        """(CPU, PID) of the log's last crash record: the panic's, else the last one's."""
        try:
            records = self.log.records
        except Exception:  # noqa: BLE001 - no log: the notes alone pick the CPU
            return None
        if not records:
            return None
        rec = next((r for r in reversed(records) if r.panic_message is not None), records[-1])
        return None if rec.cpu is None and rec.pid is None else (rec.cpu, rec.pid)

    def _logged_modules(self) -> set[str]:
        """Modules of the RIP and call-trace entries of the log's last record that printed a
        stack (the crash the dump was taken at)."""
        try:
            records = self.log.records
        except Exception:  # noqa: BLE001 - no log: the unwind finds the modules itself
            return set()
        rec = next((r for r in reversed(records) if r.rip is not None or r.call_trace), None)
        if rec is None:
            return set()
        return {e.module for e in (rec.rip, *rec.call_trace) if e is not None and e.module and e.reliable}

    def _degraded_trace(self) -> LinuxKernelStack:
        state = self.dump.degraded
        # No kernel range, no ORC: keep the first frame only.
        kernel_range = (state.kernel_range if state is not None else None) or (0, 0)
        trace = stack_from_prstatus(self.prog, self.crashed_prstatus, kernel_range)
        try:
            records = self.log.records
        except Exception:  # noqa: BLE001 - no log, no names for module frames; the trace stands
            return trace
        if anchor_module_symbols(self.prog, trace, records):
            trace = stack_from_prstatus(self.prog, self.crashed_prstatus, kernel_range)
        return trace

    def task_trace(self, task: drgn.Object) -> LinuxKernelStack:
        """Any task's segmented stack, loading debug info of the modules it runs through."""
        return self._with_module_debug_info(lambda: kernel_stack_trace(self.prog, task))

    def _with_module_debug_info(self, unwind):
        trace = unwind()
        for _ in range(MAX_TRACE_ROUNDS):
            # (a recursion repeats a few PCs over a thousand frames: each is looked up once)
            modules = {m for m in (module_of_address(self.prog, pc) for pc in {f.pc for f in trace}) if m}
            if not self.dump.load_module_debug_info(modules):
                break
            trace = unwind()
        if self.dump.debug.modules_missing and self.dump.use_module_kallsyms():
            # Modules without debug files: name their frames from their own kallsyms.
            trace = unwind()
        return trace

    @cached_property
    def canary_sweep(self) -> CanarySweep:
        """Every task's stack-end canary, and the tasks in D state met on the way.

        The one walk over every task: the stack checks report the canaries, the blocked-tasks
        analyzer takes the D tasks from it instead of walking again.
        """
        return stack_end_canaries(self.prog)

    @cached_property
    def printk_records(self) -> list:
        """drgn's PrintkRecords of the kernel log buffer."""
        return get_printk_records(self.prog)

    @cached_property
    def log_lines(self) -> list[LogLine]:
        """The kernel log as LogLines: one per message line, with its timestamp.

        Degraded mode reads the ring buffer through VMCOREINFO's layout instead of DWARF.
        """
        if self.dump.debug.degraded:
            return printk_lines_from_vmcoreinfo(self.prog, self.dump.header.vmcoreinfo)
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
