"""Stack helpers: the stack-end canary of a task and the stack bounds.

Named after what they return; usable from any drgn session.
"""

from __future__ import annotations

from dataclasses import dataclass

import drgn
from drgn.helpers.linux.pid import for_each_task

__all__ = ["STACK_END_MAGIC", "CanaryState", "stack_end_canary", "damaged_canaries", "thread_size"]

STACK_END_MAGIC = 0x57AC6E9D


def thread_size(prog: drgn.Program) -> int:
    """THREAD_SIZE of this kernel (16 KiB on x86-64 without KASAN)."""
    try:
        return int(prog["THREAD_SIZE"])
    except (KeyError, LookupError):
        return 16384


def end_of_stack(task: drgn.Object) -> int:
    """Address of the lowest word of a task's stack, where STACK_END_MAGIC lives.

    With CONFIG_THREAD_INFO_IN_TASK (x86-64 since 4.9) it is ``task->stack``; before, the
    thread_info sat at the bottom and the canary right after it.
    """
    stack = int(task.stack)
    try:
        task.member_("thread_info")
        return stack
    except LookupError:
        return stack + drgn.sizeof(task.prog_.type("struct thread_info"))


@dataclass(frozen=True)
class CanaryState:
    """The stack-end canary of one task."""

    pid: int
    comm: str
    address: int
    value: int | None
    """The word read, None when the page is not in the dump."""
    intact: bool | None
    """None when unreadable."""
    overwritten_bytes: int
    """Bytes above the canary that differ from zero up to the first intact word (estimate)."""


def stack_end_canary(task: drgn.Object) -> CanaryState:
    """The stack-end canary of ``task`` (``struct task_struct *``)."""
    prog = task.prog_
    addr = end_of_stack(task)
    pid = int(task.pid)
    comm = task.comm.string_().decode(errors="replace")
    try:
        value = prog.read_u64(addr)
    except drgn.FaultError:
        return CanaryState(pid, comm, addr, None, None, 0)
    intact = value == STACK_END_MAGIC
    overwritten = 0
    if not intact:
        overwritten = 8
        try:
            data = prog.read(addr + 8, 248)
            for i in range(0, len(data), 8):
                if data[i : i + 8] == b"\0" * 8:
                    break
                overwritten += 8
        except drgn.FaultError:
            pass
    return CanaryState(pid, comm, addr, value, intact, overwritten)


def damaged_canaries(prog: drgn.Program, limit: int = 1_000_000) -> tuple[list[CanaryState], int, int]:
    """Check every task's canary: (damaged, number checked, number unreadable)."""
    damaged = []
    checked = unreadable = 0
    seen: set[int] = set()
    for task in for_each_task(prog):
        addr = task.value_()
        if addr in seen or checked >= limit:
            break
        seen.add(addr)
        checked += 1
        state = stack_end_canary(task)
        if state.intact is None:
            unreadable += 1
        elif not state.intact:
            damaged.append(state)
    return damaged, checked, unreadable
