"""Stack helpers: every task's stack-end canary, stack bounds and guard pages, per-frame stack
use, recursion, stack-protector failures, how far a trace can be trusted, and a ``bt -t`` scan.

Named after what they return and usable from any drgn session::

    >>> stack_end_canary(find_task(prog, 1))
    >>> stack_usage(prog.crashed_thread().object)
    >>> recursion_in(kernel_stack_trace(prog, 98))

The ``_``-prefixed functions at the end are pure (bytes, ints and names in, facts out) and are
unit-tested without a dump.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import drgn
from drgn.helpers.linux.cpumask import for_each_online_cpu
from drgn.helpers.linux.list import list_for_each_entry
from drgn.helpers.linux.mm import follow_phys
from drgn.helpers.linux.percpu import per_cpu
from drgn.helpers.linux.pid import for_each_pid, pid_task
from drgn.helpers.linux.sched import idle_task, task_cpu, task_state_to_char
from drgn.helpers.linux.stack import kernel_stack_trace

if TYPE_CHECKING:
    import capstone

__all__ = [
    "STACK_END_MAGIC",
    "CanaryState",
    "CanarySweep",
    "StackBounds",
    "StackRange",
    "FrameUse",
    "StackUsage",
    "Recursion",
    "StackProtectorFailure",
    "TraceReliability",
    "TextAddress",
    "StackScan",
    "thread_size",
    "end_of_stack",
    "stack_not_used",
    "stack_end_canary",
    "stack_end_canaries",
    "is_uninterruptible",
    "damaged_canaries",
    "stack_bounds",
    "cpu_stacks",
    "stack_ranges",
    "stack_range_of",
    "stack_usage",
    "recursion_in",
    "stack_protector_failure",
    "trace_reliability",
    "text_addresses_in",
    "scan_stack_for_text",
]

STACK_END_MAGIC = 0x57AC6E9D
"""The word the kernel writes at the end of every task's stack (``include/uapi/linux/magic.h``)."""

# Functions a complete kernel trace ends in, at the top of the task stack (kernel threads,
# idle tasks; tasks from user space end in an entry frame followed by their user frame).
_STACK_BOTTOM_FUNCTIONS = frozenset({
    "ret_from_fork", "ret_from_fork_asm", "secondary_startup_64", "secondary_startup_64_no_verify",
    "common_startup_64", "x86_64_start_kernel", "x86_64_start_reservations", "start_kernel",
    "entry_SYSCALL_64", "entry_SYSCALL_64_after_hwframe", "entry_SYSCALL_compat",
    "entry_SYSENTER_compat", "entry_INT80_compat",
})

# Errors a canary sweep keeps word for word; the rest are counted.
_MAX_ERRORS = 10

# Bytes the outermost kernel frame may sit below the stack top beyond the pt_regs kept there.
_TOP_SLACK = 64


# --------------------------------------------------------------------------------------------
# Stack-end canary


def thread_size(prog: drgn.Program) -> int:
    """``THREAD_SIZE`` of this kernel (16 KiB on x86-64 without KASAN)."""
    try:
        return int(prog["THREAD_SIZE"])
    except (KeyError, LookupError):
        return 16384


def _page_size(prog: drgn.Program) -> int:
    try:
        return int(prog["PAGE_SIZE"])
    except (KeyError, LookupError):
        return 4096


def _word_size(prog: drgn.Program) -> int:
    return 8 if prog.platform is None or prog.platform.flags & drgn.PlatformFlags.IS_64_BIT else 4


def _byteorder(prog: drgn.Program) -> str:
    little = prog.platform is None or prog.platform.flags & drgn.PlatformFlags.IS_LITTLE_ENDIAN
    return "little" if little else "big"


def _thread_info_in_task(prog: drgn.Program) -> bool:
    """Whether ``struct thread_info`` is inside ``struct task_struct`` (CONFIG_THREAD_INFO_IN_TASK).

    Linux 4.9, commit c65eacbe290b ("sched/core: Allow putting thread_info into task_struct"),
    moved it there on x86-64; before, and on architectures without it, the thread_info sits
    at the bottom of the stack and the canary right above it.
    """
    try:
        prog.type("struct task_struct").member("thread_info")
        return True
    except LookupError:
        return False


def _end_of_stack_address(prog: drgn.Program, stack: int, ti_in_task: bool) -> int:
    if ti_in_task:
        return stack
    return stack + drgn.sizeof(prog.type("struct thread_info"))


def end_of_stack(task: drgn.Object) -> drgn.Object:
    """The lowest word of a task's stack, where ``STACK_END_MAGIC`` lives, as the kernel's
    ``end_of_stack()`` computes it (stacks that grow down; no architecture drgn supports has
    CONFIG_STACK_GROWSUP).

    With CONFIG_THREAD_INFO_IN_TASK it is ``task->stack``; before Linux 4.9 (commit
    c65eacbe290b), it is right after the ``struct thread_info`` at the bottom of the stack.

    :param task: ``struct task_struct *``
    :return: ``unsigned long *``
    """
    prog = task.prog_
    address = _end_of_stack_address(prog, int(task.stack), _thread_info_in_task(prog))
    return drgn.Object(prog, prog.pointer_type(prog.type("unsigned long")), address)


def stack_not_used(task: drgn.Object) -> int:
    """Bytes of a task's stack never written since it was allocated (zeroed), counted from
    the canary up to the first non-zero word, as the kernel's ``stack_not_used()``
    (CONFIG_DEBUG_STACK_USAGE) counts them: the canary word is included.

    :param task: ``struct task_struct *``
    """
    return stack_end_canary(task).stack_not_used


@dataclass(frozen=True)
class CanaryState:
    """The stack-end canary of one task."""

    pid: int
    """Task's PID."""
    comm: str
    """Task's command name."""
    task: int
    """Address of the ``struct task_struct``."""
    address: int
    """Address of the canary (``end_of_stack(task)``), 0 for a task without a stack."""
    value: int | None
    """The word read there, None when it could not be read (page not in the dump, no stack)."""
    intact: bool | None
    """``value == STACK_END_MAGIC``; None when unreadable."""
    bytes_changed: int = 0
    """How many bytes of the canary word differ from ``STACK_END_MAGIC``."""
    overwritten_bytes: int = 0
    """Estimate of the bytes written over from the canary upwards: the changed part of the
    canary word plus the non-zero words right above it, up to the first zero word."""
    stack_not_used: int | None = None
    """Bytes from the canary to the first non-zero word above it, canary word included (the
    kernel's ``stack_not_used()``): the task's lowest headroom ever. For a damaged canary,
    one word means the stack itself grew into it (overflow); more means a stray write."""
    headroom_exact: bool = True
    """False when only the canary's page was read and all of it above the canary is unused:
    ``stack_not_used`` is then a lower bound (the task is nowhere near its stack's end)."""
    thread_info_intact: bool | None = None
    """Old layout only (thread_info below the canary): whether ``thread_info->task`` still points
    back at the task. None where the thread_info lives in the task_struct."""
    no_stack: bool = False
    """True for an exited task whose stack was already freed (``task->stack == NULL``)."""

    @property
    def cause(self) -> str | None:
        """For a damaged canary, what the memory above it says: "overflow" or "stray write"."""
        if self.intact is not False or self.stack_not_used is None:
            return None
        return "overflow" if self.stack_not_used <= 8 else "stray write"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cause"] = self.cause
        return d

    def __str__(self) -> str:
        head = f"{self.comm}[{self.pid}]"
        if self.no_stack:
            return f"{head}: no stack (exited task)"
        if self.intact is None:
            return f"{head}: stack-end canary at 0x{self.address:x} unreadable (page not in the dump)"
        if self.intact:
            headroom = ""
            if self.stack_not_used is not None:
                headroom = f", {'' if self.headroom_exact else 'at least '}{self.stack_not_used} bytes never used"
            return f"{head}: stack-end canary intact at 0x{self.address:x}{headroom}"
        text = (f"{head}: stack-end canary OVERWRITTEN at 0x{self.address:x}: 0x{self.value:x} "
                f"(expected 0x{STACK_END_MAGIC:x}), {self.bytes_changed} byte(s) changed, "
                f"~{self.overwritten_bytes} bytes written over from the canary up")
        if self.cause:
            text += f"; {self.stack_not_used} bytes above untouched: {self.cause}"
        if self.thread_info_intact is False:
            text += "; thread_info below it damaged too"
        return text


@dataclass
class _CanaryReader:
    """Offsets and sizes computed once, so that sweeping thousands of tasks stays cheap.

    On a compressed dump every read decompresses the page it touches (libkdumpfile keeps
    almost no cache): reading ``task.pid``, ``task.comm`` and ``task.stack`` one by one cost
    ~13 µs each on threads-10k. The fields the sweep needs are read in one block instead,
    and decoded here.
    """

    prog: drgn.Program
    size: int = 0
    word: int = 8
    byteorder: str = "little"
    ti_in_task: bool = True
    ti_size: int = 0
    ti_task_offset: int | None = None
    page: int = 4096
    block: tuple[int, int] | None = None
    """(start, length) of the task_struct span holding __state/state, stack, pid and comm."""
    fields: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Field name -> (offset in the block, size)."""

    def __post_init__(self) -> None:
        prog = self.prog
        self.size = thread_size(prog)
        self.page = _page_size(prog)
        self.word = _word_size(prog)
        self.byteorder = _byteorder(prog)
        self.ti_in_task = _thread_info_in_task(prog)
        if not self.ti_in_task:
            ti = prog.type("struct thread_info")
            self.ti_size = drgn.sizeof(ti)
            try:
                self.ti_task_offset = drgn.offsetof(ti, "task")
            except LookupError:
                self.ti_task_offset = None
        try:
            tt = prog.type("struct task_struct")
            spans = {}
            for name in ("__state", "state", "stack", "pid", "comm"):
                try:
                    spans[name] = (drgn.offsetof(tt, name), drgn.sizeof(tt.member(name).type))
                except LookupError:
                    continue
            if {"stack", "pid", "comm"} <= spans.keys() and ("__state" in spans or "state" in spans):
                start = min(off for off, _ in spans.values())
                end = max(off + size for off, size in spans.values())
                self.block = (start, end - start)
                self.fields = {n: (off - start, size) for n, (off, size) in spans.items()}
        except (LookupError, ValueError):
            self.block = None

    def _task_fields(self, task: drgn.Object) -> tuple[int, str, int, int | None]:
        """(pid, comm, stack, state word) of ``task``: one read where the layout is known."""
        task_addr = task.value_()
        if self.block is not None:
            try:
                raw = self.prog.read(task_addr + self.block[0], self.block[1])
            except drgn.FaultError:
                raw = None
            if raw is not None:
                f, order = self.fields, self.byteorder

                def num(name: str, signed: bool = False) -> int:
                    off, size = f[name]
                    return int.from_bytes(raw[off:off + size], order, signed=signed)

                off, size = f["comm"]
                comm = raw[off:off + size].split(b"\0", 1)[0].decode(errors="replace")
                state = num("__state") if "__state" in f else num("state", signed=True)
                return num("pid", signed=True), comm, num("stack"), state
        # Unknown layout or a page of the task missing: field by field, as drgn reads them.
        pid = int(task.pid)
        comm = task.comm.string_().decode(errors="replace")
        return pid, comm, int(task.stack), _state_word(task)

    def read(self, task: drgn.Object, full: bool = True) -> CanaryState:
        """The canary of ``task``; ``full=False`` reads only the canary's page (one page to
        decompress per task), enough unless the task used its stack down to that page."""
        return self.read_with_state(task, full)[0]

    def read_with_state(self, task: drgn.Object, full: bool = True) -> tuple[CanaryState, int]:
        """:meth:`read`, and the task's state word read with the other fields."""
        prog = self.prog
        pid, comm, stack, state_word = self._task_fields(task)
        task_addr = task.value_()
        if not stack:
            return CanaryState(pid, comm, task_addr, 0, None, None, no_stack=True), state_word
        canary = stack + (0 if self.ti_in_task else self.ti_size)
        end = stack + self.size
        if not full:
            end = min(end, (canary // self.page + 1) * self.page)
        try:
            data = prog.read(canary, end - canary)
        except drgn.FaultError:
            data = _read_prefix(prog, canary, end - canary, self.page)
        if len(data) < self.word:
            return CanaryState(pid, comm, task_addr, canary, None, None), state_word
        value = int.from_bytes(data[: self.word], self.byteorder)
        changed, overwritten, not_used = _canary_damage(data, self.word, self.byteorder)
        exact = not_used < len(data) or canary + len(data) == stack + self.size
        ti_ok = None
        if not self.ti_in_task and self.ti_task_offset is not None:
            try:
                ti_ok = prog.read_word(stack + self.ti_task_offset) == task_addr
            except drgn.FaultError:
                ti_ok = None
        return (CanaryState(pid, comm, task_addr, canary, value, value == STACK_END_MAGIC,
                            changed, overwritten, not_used, exact, ti_ok), state_word)


def _read_prefix(prog: drgn.Program, address: int, size: int, page: int) -> bytes:
    """As much of [address, address + size) as the dump has, page by page from the start."""
    out = bytearray()
    end = address + size
    while address < end:
        chunk = min(end, (address // page + 1) * page) - address
        try:
            out += prog.read(address, chunk)
        except drgn.FaultError:
            break
        address += chunk
    return bytes(out)


def stack_end_canary(task: drgn.Object) -> CanaryState:
    """The stack-end canary of a task and what the memory around it says.

    The kernel checks ``*end_of_stack(task) != STACK_END_MAGIC`` in ``schedule()``
    (CONFIG_SCHED_STACK_END_CHECK) and panics with "corrupted stack end detected inside
    scheduler".

    :param task: ``struct task_struct *``
    """
    return _CanaryReader(task.prog_).read(task)


def _every_task(prog: drgn.Program, errors: list[str],
                stops: list[drgn.FaultError] | None = None) -> Iterator[drgn.Object]:
    """Every task once: the idle tasks, then every task of the PID table.

    The same walk as ``for_each_task(prog, idle=True)``, but a task whose ``struct pid`` or
    ``task_struct`` page is missing from the dump is recorded in ``errors`` and skipped
    instead of ending the walk; if the PID table itself cannot be walked, the task list
    (``init_task.tasks``, thread-group leaders) is walked instead. ``stops`` collects the
    read errors that kept tasks out of the walk.
    """
    stops = [] if stops is None else stops
    seen: set[int] = set()
    try:
        for cpu in for_each_online_cpu(prog):
            task = idle_task(prog, cpu)
            seen.add(task.value_())
            yield task
    except (drgn.FaultError, LookupError) as e:
        errors.append(f"idle tasks: {e}")
    try:
        pidtype_pid = prog["PIDTYPE_PID"]
        for pid in for_each_pid(prog):
            try:
                task = pid_task(pid, pidtype_pid)
            except drgn.FaultError as e:
                errors.append(f"pid 0x{pid.value_():x}: {e}")
                stops.append(e)
                continue
            if task and task.value_() not in seen:
                seen.add(task.value_())
                yield task
    except drgn.FaultError as e:
        errors.append(f"PID table walk stopped, walking the task list instead: {e}")
        stops.append(e)  # the task list has thread-group leaders only: threads are missed
        try:
            head = prog["init_task"].tasks.address_of_()
            walked: set[int] = set()
            for task in list_for_each_entry("struct task_struct", head, "tasks"):
                addr = task.value_()
                if addr in walked:  # a corrupted list that cycles without passing the head
                    errors.append(f"task list cycles at 0x{addr:x}: walk stopped")
                    break
                walked.add(addr)
                if addr in seen:
                    continue
                seen.add(addr)
                yield task
        except drgn.FaultError as e2:
            errors.append(f"task list walk stopped: {e2}")
            stops.append(e2)


@dataclass
class CanarySweep:
    """The stack-end canaries of every task of a dump."""

    checked: int = 0
    """Tasks checked (every task of the PID table plus the idle tasks)."""
    intact: int = 0
    """Canaries equal to ``STACK_END_MAGIC``."""
    unreadable: int = 0
    """Canaries whose page is not in the dump."""
    no_stack: int = 0
    """Exited tasks whose stack is already freed."""
    unreachable: int = 0
    """PIDs whose task could not be reached (its ``struct pid`` or ``task_struct`` page is
    missing from the dump): not counted in ``checked``."""
    damaged: list[CanaryState] = field(default_factory=list)
    """Tasks whose canary is overwritten."""
    least_headroom: list[CanaryState] = field(default_factory=list)
    """The tasks that came closest to the end of their stack (smallest ``stack_not_used``),
    among those that reached into the canary's page."""
    seconds: float = 0.0
    """Time the sweep over the tasks took."""
    setup_seconds: float = 0.0
    """Time spent once before it (type and THREAD_SIZE lookups)."""
    errors: list[str] = field(default_factory=list)
    """Tasks that could not be reached or read (pages missing from the dump), capped."""
    uninterruptible: list[drgn.Object] = field(default_factory=list)
    """Tasks seen in uninterruptible sleep (``D``) on the way: their state is read from the
    ``task_struct`` page the canary check has just read, so a blocked-tasks report needs no
    second walk (on a compressed dump each task's page is decompressed once, not twice)."""
    walk_errors: list[drgn.FaultError] = field(default_factory=list)
    """Read errors that kept tasks out of the walk (a PID, the PID table, the task list):
    when not empty, ``uninterruptible`` may miss some."""
    state_errors: list[drgn.FaultError] = field(default_factory=list)
    """Tasks reached whose state could not be read (their ``task_struct`` page is missing):
    when not empty, ``uninterruptible`` may miss some too."""

    @property
    def tasks_per_second(self) -> float:
        return self.checked / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "intact": self.intact,
            "unreadable": self.unreadable,
            "no_stack": self.no_stack,
            "unreachable": self.unreachable,
            "damaged": [c.to_dict() for c in self.damaged],
            "least_headroom": [c.to_dict() for c in self.least_headroom],
            "errors": list(self.errors),
        }

    def __str__(self) -> str:
        lines = [f"{self.checked} tasks: {self.intact} canaries intact, {len(self.damaged)} overwritten, "
                 f"{self.unreadable} unreadable, {self.no_stack} without a stack, "
                 f"{self.unreachable} tasks unreachable "
                 f"({self.tasks_per_second:.0f} tasks/s)"]
        lines.extend(f"  {c}" for c in self.damaged)
        return "\n".join(lines)


TASK_UNINTERRUPTIBLE = 0x2


def _state_word(task: drgn.Object) -> int:
    """The task's state bits: ``__state`` since Linux 5.14, ``state`` before."""
    try:
        return int(task.__state)
    except AttributeError:
        return int(task.state)


def is_uninterruptible(task: drgn.Object) -> bool:
    """Whether ``task`` is in ``D`` state, as ps and drgn's ``task_state_to_char`` say.

    The state word (``__state`` since Linux 5.14, ``state`` before) is tested first: it is
    one integer, and most tasks are not blocked. False when the task cannot be read.
    """
    try:
        return bool(_state_word(task) & TASK_UNINTERRUPTIBLE) and task_state_to_char(task) == "D"
    except (drgn.FaultError, AttributeError, LookupError, ValueError):
        return False


def _d_state(task: drgn.Object) -> bool | None:
    """Whether ``task`` is in ``D`` state; None when its state cannot be read."""
    try:
        return bool(_state_word(task) & TASK_UNINTERRUPTIBLE) and task_state_to_char(task) == "D"
    except drgn.FaultError:
        return None
    except (AttributeError, LookupError, ValueError):
        return False


def stack_end_canaries(prog: drgn.Program, limit: int = 1_000_000, keep_least: int = 3) -> CanarySweep:
    """Check the stack-end canary of every task, idle tasks included.

    :param limit: stop after this many tasks
    :param keep_least: how many tasks with the least headroom to keep
    """
    setup = time.perf_counter()
    reader = _CanaryReader(prog)
    sweep = CanarySweep()
    start = time.perf_counter()
    sweep.setup_seconds = start - setup
    readable: list[CanaryState] = []
    errors: list[str] = []
    for task in _every_task(prog, errors, sweep.walk_errors):
        if sweep.checked >= limit:
            break
        sweep.checked += 1
        try:
            state, word = reader.read_with_state(task, full=False)
            if state.intact is False:
                state = reader.read(task)
        except drgn.FaultError as e:
            sweep.unreadable += 1
            errors.append(f"task 0x{task.value_():x}: {e}")
            # The block read failed; the state word alone may still be readable.
            d_state = _d_state(task)
            if d_state is None:
                sweep.state_errors.append(e)
            elif d_state:
                sweep.uninterruptible.append(task)
            continue
        if word & TASK_UNINTERRUPTIBLE:
            d_state = _d_state(task)
            if d_state is None:
                sweep.state_errors.append(drgn.FaultError("task state unreadable", task.value_()))
            elif d_state:
                sweep.uninterruptible.append(task)
        if state.no_stack:
            sweep.no_stack += 1
        elif state.intact is None:
            sweep.unreadable += 1
        elif state.intact:
            sweep.intact += 1
            readable.append(state)
        else:
            sweep.damaged.append(state)
    sweep.unreachable = sum(1 for e in errors if e.startswith("pid "))
    sweep.errors = errors[:_MAX_ERRORS] + ([f"… and {len(errors) - _MAX_ERRORS} more"]
                                           if len(errors) > _MAX_ERRORS else [])
    close = sorted((c for c in readable if c.headroom_exact), key=lambda c: (c.stack_not_used or 0, c.pid))
    sweep.least_headroom = close[:keep_least]
    sweep.seconds = time.perf_counter() - start
    return sweep


def damaged_canaries(prog: drgn.Program, limit: int = 1_000_000) -> tuple[list[CanaryState], int, int]:
    """Check every task's canary: (damaged, number checked, number unreadable).

    A shorthand for :func:`stack_end_canaries`, which says more.
    """
    sweep = stack_end_canaries(prog, limit)
    return sweep.damaged, sweep.checked, sweep.unreadable


# --------------------------------------------------------------------------------------------
# Stack bounds, guard pages, per-CPU stacks


def _is_mapped(prog: drgn.Program, address: int) -> bool | None:
    """Whether the kernel page tables map ``address``; None when they cannot be read."""
    try:
        follow_phys(prog["init_mm"].address_of_(), address)
        return True
    except drgn.FaultError as e:
        # drgn reports an absent translation as a fault at the address itself; a fault
        # elsewhere is a page-table page missing from the dump.
        return False if getattr(e, "address", None) == address else None
    except (LookupError, ValueError, NotImplementedError):
        return None


@dataclass(frozen=True)
class StackRange:
    """A stack, or the guard page below one: [start, end)."""

    kind: str
    """"task", "irq", "exception" or "user"."""
    name: str
    """"task", "IRQ", the IST stack name ("DF", "NMI", "DB", "MCE", "VC", "VC2") or "exception"
    when the kernel does not tell them apart, "user"."""
    start: int
    end: int
    cpu: int | None = None
    """The CPU of a per-CPU stack."""
    guard: bool = False
    """True for the page below the stack ``name``: its guard page when one is there."""
    mapped: bool | None = None
    """For that page: False = unmapped (a real guard page), True = mapped (no guard page: an
    overflow runs into whatever memory is there), None = not checked."""

    def __contains__(self, address: int) -> bool:
        return self.start <= address < self.end

    @property
    def description(self) -> str:
        names = {"DF": "double-fault", "NMI": "NMI", "DB": "debug", "MCE": "machine-check",
                 "VC": "#VC", "VC2": "#VC fallback"}
        if self.kind == "task":
            what = "the task stack"
        elif self.kind == "irq":
            what = f"CPU {self.cpu}'s IRQ stack"
        elif self.kind == "exception":
            what = f"CPU {self.cpu}'s {names.get(self.name, self.name)} stack" + (
                f" ({self.name})" if self.name in names else "")
        else:
            what = "user space"
        if not self.guard:
            return what
        return f"page below {what} (mapped: no guard page)" if self.mapped else f"guard page below {what}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["description"] = self.description
        return d

    def __str__(self) -> str:
        return f"{self.description}: 0x{self.start:x}-0x{self.end:x}"


@dataclass(frozen=True)
class StackBounds:
    """Where a task's stack is, and what guards its end."""

    pid: int
    comm: str
    start: int
    """``task->stack``: the lowest address (the end the stack grows towards)."""
    end: int
    """``task->stack + THREAD_SIZE``: the top, where the stack starts."""
    vmap: bool | None
    """Whether the stack is vmalloc'd (CONFIG_VMAP_STACK: ``task->stack_vm_area`` set)."""
    guard_start: int
    """Start of the page below the stack."""
    guard_mapped: bool | None
    """Whether that page is mapped: False is the guard page VMAP_STACK leaves (a write there
    faults, and the fault on the stack becomes a double fault); None when unknown."""

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def has_guard_page(self) -> bool:
        return self.guard_mapped is False or (self.guard_mapped is None and bool(self.vmap))

    def __contains__(self, address: int) -> bool:
        return self.start <= address < self.end

    def in_guard(self, address: int) -> bool:
        """Whether ``address`` is in the page right below the stack."""
        return self.guard_start <= address < self.start

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = self.size
        d["has_guard_page"] = self.has_guard_page
        return d

    def __str__(self) -> str:
        guard = {True: "guard page below (unmapped)", False: "no guard page below"}[self.has_guard_page]
        vmap = {True: "vmalloc'd", False: "not vmalloc'd", None: "allocation unknown"}[self.vmap]
        return f"{self.comm}[{self.pid}] stack 0x{self.start:x}-0x{self.end:x} ({self.size} bytes, {vmap}, {guard})"


def stack_bounds(task: drgn.Object) -> StackBounds:
    """The bounds of a task's stack and whether an unmapped guard page sits below it.

    :param task: ``struct task_struct *``
    """
    prog = task.prog_
    start = int(task.stack)
    try:
        # CONFIG_VMAP_STACK, Linux 4.9, commit ba14a194a434 ("fork: Add generic vmalloced
        # stack support").
        vmap: bool | None = bool(task.stack_vm_area)
    except AttributeError:
        vmap = False
    page = _page_size(prog)
    guard_start = start - page
    return StackBounds(
        pid=int(task.pid),
        comm=task.comm.string_().decode(errors="replace"),
        start=start,
        end=start + thread_size(prog),
        vmap=vmap,
        guard_start=guard_start,
        guard_mapped=_is_mapped(prog, guard_start) if start else None,
    )


def _cpu_entry_area(prog: drgn.Program, cpu: int) -> drgn.Object:
    """``struct cpu_entry_area`` of a CPU (Linux 4.15+, KPTI).

    Learnt from drgn's ``_x86_64_exception_stacks``: the areas start one page into the fixmap
    at 0xfffffe0000000000; since Linux 6.2, commit 97e3d26b5e5f ("x86/mm: Randomize per-cpu
    entry area"), at a per-CPU random offset ``_cea_offset``, before at the CPU number.
    """
    cea_type = prog.type("struct cpu_entry_area")
    try:
        offset = int(per_cpu(prog["_cea_offset"], cpu))
    except LookupError:
        offset = cpu
    base = 0xFFFFFE0000000000 + _page_size(prog) + offset * drgn.sizeof(cea_type)
    return drgn.Object(prog, cea_type, address=base)


def _x86_64_exception_stacks(prog: drgn.Program, cpu: int) -> list[StackRange]:
    try:
        cea = _cpu_entry_area(prog, cpu)
    except LookupError:
        # Before Linux 4.15 (no cpu_entry_area): the per-CPU exception_stacks array itself.
        estacks = per_cpu(prog["exception_stacks"], cpu)
        base = int(estacks.address_of_())
        return [StackRange("exception", "exception", base, base + drgn.sizeof(estacks), cpu)]
    try:
        # Linux 5.1, commit 019b17b3ffe4 ("x86/exceptions: Add structs for exception
        # stacks"): one member per IST stack, each with its guard page (FOO_stack_guard).
        estacks = cea.estacks
        members = [m.name for m in estacks.type_.members if m.name]
    except AttributeError:
        base = int(cea.address_of_())
        return [StackRange("exception", "exception", base, base + drgn.sizeof(cea), cpu)]
    out = []
    for member in members:
        if not member.endswith("_stack"):
            continue
        name = member[: -len("_stack")]
        stack = estacks.member_(member)
        start = int(stack.address_of_())
        out.append(StackRange("exception", name, start, start + drgn.sizeof(stack), cpu))
        if f"{member}_guard" in members:
            guard = estacks.member_(f"{member}_guard")
            gstart = int(guard.address_of_())
            out.append(StackRange("exception", name, gstart, gstart + drgn.sizeof(guard), cpu, guard=True))
    return out


def _x86_64_irq_stack(prog: drgn.Program, cpu: int) -> list[StackRange]:
    try:
        # A per-CPU global before Linux 6.2 and again since 6.15 (commit c6a0918072ea).
        ptr = int(per_cpu(prog["hardirq_stack_ptr"], cpu))
    except LookupError:
        try:
            # Linux 6.2 to 6.14: in pcpu_hot (commit d7b6d709a76a).
            ptr = int(per_cpu(prog["pcpu_hot"], cpu).hardirq_stack_ptr)
        except (LookupError, AttributeError):
            # Before Linux 5.2, commit 758a2e312228 ("x86/irq/64: Rename irq_stack_ptr to
            # hardirq_stack_ptr").
            ptr = int(per_cpu(prog["irq_stack_ptr"], cpu))
    if not ptr:
        return []
    page = _page_size(prog)
    # The pointer sits one word below the top (the stack's first slot holds the previous SP).
    top = (ptr + page - 1) // page * page
    start = top - thread_size(prog)  # IRQ_STACK_SIZE == THREAD_SIZE on x86-64
    out = [StackRange("irq", "IRQ", start, top, cpu)]
    if _is_mapped(prog, start - page) is False:
        out.append(StackRange("irq", "IRQ", start - page, start, cpu, guard=True, mapped=False))
    return out


def _aarch64_cpu_stacks(prog: drgn.Program, cpu: int) -> list[StackRange]:
    """arm64's per-CPU IRQ stack (``irq_stack_ptr``: its base, IRQ_STACK_SIZE == THREAD_SIZE)
    and overflow stack (``overflow_stack``, where an exception that finds SP off the task
    stack runs panic_bad_stack())."""
    out: list[StackRange] = []
    base = int(per_cpu(prog["irq_stack_ptr"], cpu))
    if base:
        out.append(StackRange("irq", "IRQ", base, base + thread_size(prog), cpu))
    try:
        # Two per-CPU arrays are named overflow_stack in the DWARF: the kernel's
        # (arch/arm64/kernel/traps.c) and the KVM nVHE hypervisor's (its ELF symbol is
        # __kvm_nvhe_overflow_stack); a lookup by name may give either. The ELF symbol
        # overflow_stack is the kernel's.
        var = prog["overflow_stack"]
        address = prog.symbol("overflow_stack").address
        if var.address_ != address:
            var = drgn.Object(prog, var.type_, address=address)
        overflow = per_cpu(var, cpu)
        start = int(overflow.address_of_())
        out.append(StackRange("exception", "overflow", start, start + drgn.sizeof(overflow), cpu))
    except LookupError:
        pass  # CONFIG_VMAP_STACK=n: no overflow stack
    return out


def cpu_stacks(prog: drgn.Program, cpu: int) -> list[StackRange]:
    """A CPU's own stacks: the IRQ stack and the exception stacks (x86-64's IST stacks, arm64's
    overflow stack), each with the guard page below it when there is one. Other
    architectures give an empty list.

    :param cpu: CPU number
    """
    arch = prog.platform.arch if prog.platform is not None else None
    parts = {drgn.Architecture.X86_64: (_x86_64_irq_stack, _x86_64_exception_stacks),
             drgn.Architecture.AARCH64: (_aarch64_cpu_stacks,)}.get(arch, ())
    out: list[StackRange] = []
    for part in parts:
        try:
            out.extend(part(prog, cpu))
        except (LookupError, drgn.FaultError):
            pass
    return out


def stack_ranges(task: drgn.Object) -> list[StackRange]:
    """Every stack a task's trace may run on: its own stack (and guard page), its CPU's IRQ
    and exception stacks (and guard pages), and user space.

    :param task: ``struct task_struct *``
    """
    prog = task.prog_
    bounds = stack_bounds(task)
    out = [StackRange("task", "task", bounds.start, bounds.end)]
    if bounds.start:
        out.append(StackRange("task", "task", bounds.guard_start, bounds.start, guard=True,
                              mapped=bounds.guard_mapped))
    try:
        cpu = task_cpu(task)
    except (LookupError, drgn.FaultError):
        cpu = None
    if cpu is not None:
        out.extend(cpu_stacks(prog, cpu))
    page = _page_size(prog)
    out.append(StackRange("user", "user", page, 1 << (63 if _word_size(prog) == 8 else 31)))
    return out


def stack_range_of(task: drgn.Object, address: int) -> StackRange | None:
    """The stack (or guard page) of a task's that holds ``address``, None if none does.

    The page below a stack without a guard page is returned with ``guard=False``: an address
    there is past the stack's end all the same.

    :param task: ``struct task_struct *``
    """
    return _range_of(stack_ranges(task), address)


def _range_of(ranges: Sequence[StackRange], address: int | None) -> StackRange | None:
    if address is None:
        return None
    return next((r for r in ranges if address in r), None)


# --------------------------------------------------------------------------------------------
# Per-frame stack use and recursion


def _progress_key(frame: drgn.StackFrame) -> tuple | None:
    """What must change from one frame to the next if the unwinder moves: PC, stack pointer,
    frame pointer, link register. None when neither pointer is known (nothing to compare)."""
    sp = _sp(frame)
    try:
        regs = frame.registers()
    except (LookupError, ValueError):
        regs = {}
    fp = regs.get("x29", regs.get("rbp"))
    if sp is None and fp is None:
        return None
    return (frame.pc, sp, fp, regs.get("x30"))


def unwinder_loop_at(trace: Iterable[drgn.StackFrame]) -> int | None:
    """Index of the first real frame that repeats the one before it exactly (same PC, stack and
    frame pointers, link register): the unwinder made no progress from there on and every
    later frame is that one again — drgn's arm64 unwind after a stack-overflow exception reads
    one frame record over and over. None when the trace always moves on."""
    prev = None
    for i, frame in enumerate(trace):
        if frame.is_inline:
            continue
        key = _progress_key(frame)
        if key is not None and key == prev:
            return i
        prev = key
    return None


def _physical_frames(trace: Iterable[drgn.StackFrame]) -> list[tuple[int, drgn.StackFrame]]:
    """(index in the trace, frame) of every real frame; inline frames share the next one's SP.
    A trace where the unwinder loops (``unwinder_loop_at``) ends before the repeats."""
    return _physical_frames_cut(trace)[0]


def _physical_frames_cut(trace: Iterable[drgn.StackFrame]) -> tuple[list[tuple[int, drgn.StackFrame]], bool]:
    """``_physical_frames`` and whether the unwinder's loop cut the trace short."""
    frames = list(trace)
    loop = unwinder_loop_at(frames)
    return [(i, f) for i, f in enumerate(frames[:loop]) if not f.is_inline], loop is not None


def _sp(frame: drgn.StackFrame) -> int | None:
    try:
        return frame.sp
    except LookupError:
        pass
    try:
        # arm64 frames drgn unwound through frame records know x29, not sp: the record sits
        # at the bottom of the frame, so it places the frame on its stack just as well
        return frame.register("x29")
    except (LookupError, ValueError):
        return None


def _name(frame: drgn.StackFrame) -> str | None:
    name = frame.name
    return None if not name or name.startswith("0x") else name


@dataclass(frozen=True)
class FrameUse:
    """How much stack one frame takes."""

    index: int
    """Frame index in the trace (inline frames counted, as in the report)."""
    function: str | None
    sp: int | None
    bytes: int | None
    """Stack the function took: the next outer frame's SP minus this one's (for the outermost
    frame on a stack: the stack top minus its SP). None when unknown."""
    stack: str | None
    """Description of the stack the frame runs on (task stack, guard page, IRQ stack…)."""
    depth: int | None = None
    """For frames on the task stack: bytes from the stack top down to this frame's SP."""


@dataclass(frozen=True)
class StackUsage:
    """Per-frame stack use of a task's trace against THREAD_SIZE."""

    bounds: StackBounds
    frames: tuple[FrameUse, ...]
    thread_size: int
    depth: int | None
    """Bytes from the top of the task stack to the deepest SP on it (or in its guard page)."""
    deepest_index: int | None
    """The frame with that SP."""

    @property
    def past_end(self) -> int:
        """Bytes the deepest SP is below the end of the stack (0 when inside)."""
        return max(0, (self.depth or 0) - self.thread_size)

    @property
    def percent(self) -> float | None:
        return None if self.depth is None else round(100.0 * self.depth / self.thread_size, 1)

    def largest(self, n: int = 5) -> list[FrameUse]:
        """The n largest frames, one per function (its largest)."""
        best: dict[str | None, FrameUse] = {}
        for f in self.frames:
            if f.bytes is None or f.bytes <= 0:
                continue
            if f.function not in best or f.bytes > (best[f.function].bytes or 0):
                best[f.function] = f
        return sorted(best.values(), key=lambda f: (-(f.bytes or 0), f.index))[:n]

    def deepest(self, n: int = 3) -> list[FrameUse]:
        """The n frames nearest the end of the task stack."""
        on_task = [f for f in self.frames if f.depth is not None]
        return sorted(on_task, key=lambda f: (-(f.depth or 0), f.index))[:n]

    def to_dict(self) -> dict[str, Any]:
        return {
            "thread_size": self.thread_size,
            "depth": self.depth,
            "percent": self.percent,
            "past_end": self.past_end,
            "deepest_frame": self.deepest_index,
            "frames": [asdict(f) for f in self.frames],
            "largest": [asdict(f) for f in self.largest()],
            "deepest": [asdict(f) for f in self.deepest()],
        }

    def __str__(self) -> str:
        if self.depth is None:
            return "stack depth unknown (no frame on the task stack)"
        text = f"stack depth {self.depth} of {self.thread_size} bytes (THREAD_SIZE), {self.percent}%"
        if self.past_end:
            text += f": {self.past_end} bytes past the end"
        big = ", ".join(f"{f.function} {f.bytes}" for f in self.largest(3))
        return text + (f"; largest frames: {big}" if big else "")


def stack_usage(task: drgn.Object, trace: Iterable[drgn.StackFrame] | None = None) -> StackUsage:
    """How much stack each frame of a task's trace takes, and how deep the trace goes.

    Frame sizes come from successive frame SPs on the same stack; the depth is measured from
    the top of the task stack, so a trace that ran into the guard page is deeper than
    THREAD_SIZE.

    :param task: ``struct task_struct *``
    :param trace: the task's trace (``kernel_stack_trace(task)`` when omitted)
    """
    if trace is None:
        trace = kernel_stack_trace(task.prog_, task)
    bounds = stack_bounds(task)
    ranges = stack_ranges(task)
    phys, cut = _physical_frames_cut(trace)
    facts = []
    for i, frame in phys:
        sp = _sp(frame)
        r = _range_of(ranges, sp)
        facts.append((i, _name(frame), sp, r))
    uses = []
    for n, (i, name, sp, r) in enumerate(facts):
        size = None
        if sp is not None and r is not None and r.kind != "user":
            top = bounds.end if r.kind == "task" else r.end
            nxt = facts[n + 1] if n + 1 < len(facts) else None
            same = nxt is not None and nxt[2] is not None and nxt[3] is not None and (
                (nxt[3].kind, nxt[3].name, nxt[3].cpu) == (r.kind, r.name, r.cpu))
            size = (nxt[2] - sp) if same else (top - sp if not r.guard or r.kind == "task" else None)
            if nxt is None and cut:
                size = None  # the unwind stopped here: what lies above this frame is not known
        depth = bounds.end - sp if sp is not None and r is not None and r.kind == "task" else None
        uses.append(FrameUse(i, name, sp, size, r.description if r else None, depth))
    depths = [(u.depth, u.index) for u in uses if u.depth is not None]
    depth, deepest = max(depths) if depths else (None, None)
    return StackUsage(bounds, tuple(uses), thread_size(task.prog_), depth, deepest)


@dataclass(frozen=True)
class Recursion:
    """A function, or a cycle of functions, repeated on a stack."""

    functions: tuple[str, ...]
    """The cycle, innermost first (one name for plain recursion)."""
    repeats: int
    """How many times the cycle repeats."""
    first: int
    """Index of the innermost frame of the run (in the trace, inline frames counted)."""
    last: int
    """Index of the outermost frame of the run."""
    bytes_per_cycle: int | None
    """Stack one repetition takes (the most common value), None when SPs are unknown."""
    bytes: int | None
    """Stack the whole run takes."""

    @property
    def summary(self) -> str:
        what = " → ".join(self.functions)
        unit = "frame" if len(self.functions) == 1 else "cycle"
        text = f"{what} × {self.repeats}"
        if self.bytes_per_cycle is not None:
            text += f", {self.bytes_per_cycle} bytes per {unit}"
        if self.bytes is not None:
            text += f" ({self.bytes} bytes in all)"
        return text

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["functions"] = list(self.functions)
        d["summary"] = self.summary
        return d

    def __str__(self) -> str:
        return f"{self.summary}, frames #{self.first}–#{self.last}"


def recursion_in(trace: Iterable[drgn.StackFrame], min_repeats: int = 3, max_cycle: int = 4) -> list[Recursion]:
    """Runs of a repeated function or cycle of functions in a trace, largest first.

    :param trace: a ``drgn.StackTrace`` or ``LinuxKernelStack``
    :param min_repeats: fewest repetitions that count as recursion
    :param max_cycle: longest cycle of functions looked for
    """
    phys = _physical_frames(trace)
    names = [_name(f) for _, f in phys]
    sps = [_sp(f) for _, f in phys]
    runs = _find_cycles(names, min_repeats, max_cycle)
    out = []
    for start, period, repeats in runs:
        sizes = _frame_sizes(sps[start : start + period * repeats + 1])[: period * repeats]
        cycle_sizes = [sizes[k : k + period] for k in range(0, len(sizes), period)]
        sums = [sum(c) for c in cycle_sizes if len(c) == period and all(s is not None for s in c)]
        per = Counter(sums).most_common(1)[0][0] if sums else None
        known = [s for s in sizes if s is not None]
        total = sum(known) if known and len(known) == len(sizes) else None
        cycle = tuple(n or "??" for n in names[start : start + period])
        out.append(Recursion(cycle, repeats, phys[start][0], phys[start + period * repeats - 1][0], per, total))
    out.sort(key=lambda r: (-(r.bytes or 0), -r.repeats * len(r.functions), r.first))
    return out


# --------------------------------------------------------------------------------------------
# Stack-protector failures and trust in the trace


@dataclass(frozen=True)
class StackProtectorFailure:
    """``__stack_chk_fail`` on a trace: the frame whose stack-protector canary failed."""

    check_frame: int
    """Index of the ``__stack_chk_fail`` frame."""
    index: int | None
    """Index of the frame whose canary failed (the caller of ``__stack_chk_fail``)."""
    function: str | None
    sp: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        if self.index is None:
            return f"__stack_chk_fail at frame #{self.check_frame}, caller unknown"
        return f"stack-protector canary of {self.function}() failed (frame #{self.index})"


def stack_protector_failure(trace: Iterable[drgn.StackFrame]) -> StackProtectorFailure | None:
    """The frame whose stack-protector canary failed, when ``__stack_chk_fail`` is on the
    trace (CONFIG_STACKPROTECTOR: the function's epilogue found its canary changed).

    :param trace: a ``drgn.StackTrace`` or ``LinuxKernelStack``
    """
    frames = list(trace)
    found = _protector_victim([_name(f) for f in frames], [f.is_inline for f in frames])
    if found is None:
        return None
    check, victim = found
    if victim is None:
        return StackProtectorFailure(check, None, None, None)
    return StackProtectorFailure(check, victim, _name(frames[victim]), _sp(frames[victim]))


@dataclass(frozen=True)
class TraceReliability:
    """Whether a trace can be believed, and why not."""

    trustworthy: bool
    problems: tuple[str, ...] = ()
    """What makes the trace doubtful (unwinder stopped early, PC outside text, SP outside any
    stack, SPs going the wrong way)."""
    explained: tuple[str, ...] = ()
    """Oddities that are the crash itself rather than a bad unwind (an SP in the guard page)."""

    def to_dict(self) -> dict[str, Any]:
        return {"trustworthy": self.trustworthy, "problems": list(self.problems),
                "explained": list(self.explained)}

    def __str__(self) -> str:
        head = "trace trustworthy" if self.trustworthy else "trace NOT trustworthy"
        return "\n".join([head, *(f"  ✘ {p}" for p in self.problems), *(f"  · {e}" for e in self.explained)])


@dataclass(frozen=True)
class _FrameFact:
    """What :func:`_trace_problems` needs to know of one real frame (pure data)."""

    index: int
    name: str | None
    pc: int
    sp: int | None
    in_text: bool | None
    """PC in kernel or module text; None when it cannot be told."""
    stack: StackRange | None
    interrupted: bool
    user: bool
    """A user-space frame (the last of a trace from a syscall)."""


def _text_checker(prog: drgn.Program) -> Any:
    """A function telling whether an address is in kernel or module text (None: cannot tell).

    The core kernel's ``_stext``..``_etext`` first (a drgn symbol lookup by address costs
    ~1 ms); then symbols, and the modules' memory for addresses in a module whose symbols are
    not loaded.
    """
    from kpostmortem.helpers.modules import kernel_text, module_of_address

    text = kernel_text(prog) or (0, 0)
    cache: dict[int, bool | None] = {}

    def in_text(address: int) -> bool | None:
        if address in cache:
            return cache[address]
        if text[0] <= address < text[1]:
            return True
        result: bool | None
        try:
            sym = prog.symbol(address)
            result = sym.kind in (drgn.SymbolKind.FUNC, drgn.SymbolKind.UNKNOWN)
        except LookupError:
            result = text[0] <= address < text[1] or module_of_address(prog, address) is not None
        except (drgn.FaultError, ValueError):
            result = None
        cache[address] = result
        return result

    return in_text


def trace_reliability(task: drgn.Object, trace: Iterable[drgn.StackFrame] | None = None) -> TraceReliability:
    """Check a task's trace for signs that the unwinder was misled: it stopped before the top
    of the task stack, a return address is outside kernel text, an SP is outside every stack
    of the task, or SPs decrease going outwards. An SP in the guard page below the task stack
    is the overflow itself and is listed as explained.

    :param task: ``struct task_struct *``
    :param trace: the task's trace (``kernel_stack_trace(task)`` when omitted)
    """
    prog = task.prog_
    if trace is None:
        trace = kernel_stack_trace(prog, task)
    ranges = stack_ranges(task)
    in_text = _text_checker(prog)
    facts = []
    for i, frame in _physical_frames(trace):
        sp = _sp(frame)
        user = frame.pc < (1 << 63) and _word_size(prog) == 8
        # A return address may sit past the end of its function (a call to a noreturn function
        # as its last instruction): look it up one byte back, as unwinders do.
        pc = frame.pc if frame.interrupted else frame.pc - 1
        # An SP right at a stack's top is on it, empty: arm64's call_on_irq_stack has just
        # switched to the IRQ stack when it calls the handler.
        where = _range_of(ranges, sp) or (_range_of(ranges, sp - 1) if sp else None)
        facts.append(_FrameFact(i, _name(frame), frame.pc, sp, None if user else in_text(pc),
                                where, frame.interrupted, user))
    try:
        regs_size = drgn.sizeof(prog.type("struct pt_regs"))
    except LookupError:
        regs_size = 168
    problems, explained = _trace_problems(facts, regs_size)
    return TraceReliability(not problems, tuple(problems), tuple(explained))


# --------------------------------------------------------------------------------------------
# Scan a stack for return addresses (crash's bt -t)


@dataclass(frozen=True)
class TextAddress:
    """A stack word that points into kernel text: maybe a return address."""

    slot: int
    """Stack address of the word."""
    value: int
    symbol: str
    """``function+0xoffset``."""
    function: str
    module: str | None
    after_call: bool | None
    """The bytes before it decode as a call instruction (so it is a plausible return address);
    None when that cannot be checked."""
    in_trace: bool = False
    """The unwound trace has this PC too."""


@dataclass
class StackScan:
    """A GUESS at a stack's frames: every word on it that points into kernel text, as crash's
    ``bt -t`` lists them. Stale return addresses of calls long returned show up too."""

    start: int
    end: int
    entries: list[TextAddress] = field(default_factory=list)
    label: str = "guess: words on the stack pointing into kernel text (like crash's bt -t), not an unwind"

    @property
    def return_addresses(self) -> list[TextAddress]:
        """Entries that follow a call instruction: the likelier frames."""
        return [e for e in self.entries if e.after_call is not False]

    def functions(self) -> list[str]:
        """Functions of the likelier return addresses, innermost first, consecutive repeats merged."""
        out: list[str] = []
        for e in self.return_addresses:
            if not out or out[-1] != e.function:
                out.append(e.function)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"guess": True, "label": self.label, "start": self.start, "end": self.end,
                "entries": [asdict(e) for e in self.entries], "functions": self.functions()}

    def __str__(self) -> str:
        lines = [f"GUESS — {self.label}; 0x{self.start:x}-0x{self.end:x}"]
        for e in self.entries:
            mark = {True: "call", False: "    ", None: "  ? "}[e.after_call]
            mod = f" [{e.module}]" if e.module else ""
            lines.append(f"  [0x{e.slot:x}] {mark} {e.symbol}{mod}" + ("  (in trace)" if e.in_trace else ""))
        return "\n".join(lines)


_CS: capstone.Cs | None = None


def _disassembler() -> capstone.Cs:
    global _CS
    if _CS is None:
        import capstone  # here, not at import: only the stack scan disassembles

        _CS = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    return _CS


def text_addresses_in(prog: drgn.Program, start: int, end: int,
                      trace_pcs: Iterable[int] = ()) -> StackScan:
    """Every word in [start, end) that points into kernel or module text (a guess at frames).

    :param trace_pcs: PCs of the unwound trace, to mark the entries it confirms
    """
    word = _word_size(prog)
    order = _byteorder(prog)
    start -= start % word
    data = _read_prefix(prog, start, end - start, _page_size(prog))
    known = set(trace_pcs)
    x86 = prog.platform is not None and prog.platform.arch == drgn.Architecture.X86_64
    arm64 = prog.platform is not None and prog.platform.arch == drgn.Architecture.AARCH64
    if arm64:
        from kpostmortem.arch import aarch64
        from kpostmortem.helpers.fault import pac_mask

        mask = pac_mask(prog)
    scan = StackScan(start, end)
    # A recursion leaves the same few return addresses hundreds of times: look each up once;
    # and a symbol lookup that misses costs most (~0.6 ms): data pointers are not looked up.
    seen: dict[int, tuple[str, str, str | None, bool | None] | None] = {}
    ranges = _code_ranges(prog)
    for off in range(0, len(data) - word + 1, word):
        value = int.from_bytes(data[off : off + word], order)
        if arm64:
            # saved return addresses are signed (paciasp): strip the PAC to see the address
            value = aarch64.strip_pac(value, mask)
        if value < (1 << 63):
            continue
        if value not in seen:
            code = ranges is None or any(lo <= value < hi for lo, hi in ranges)
            seen[value] = _text_address(prog, value, x86, arm64) if code else None
        hit = seen[value]
        if hit is None:
            continue
        symbol, function, module, after_call = hit
        scan.entries.append(TextAddress(
            slot=start + off, value=value, symbol=symbol, function=function,
            module=module, after_call=after_call, in_trace=value in known))
    return scan


def _code_ranges(prog: drgn.Program) -> list[tuple[int, int]] | None:
    """Where kernel and module code can be: the kernel's text and init text, and each loaded
    module's memory (drgn's address ranges). None when the kernel's text is not known (then
    every word is looked up)."""
    key = "kpostmortem.code_ranges"
    if key not in prog.cache:
        prog.cache[key] = _find_code_ranges(prog)
    return prog.cache[key]


def _find_code_ranges(prog: drgn.Program) -> list[tuple[int, int]] | None:
    from kpostmortem.helpers.modules import kernel_text

    text = kernel_text(prog)
    if text is None:
        return None
    ranges = [text]
    try:
        ranges.append((prog.symbol("_sinittext").address, prog.symbol("_einittext").address))
    except LookupError:
        pass
    try:
        # loaded_modules() creates drgn's module objects from the kernel's list, which
        # modules() alone would not have yet in a fresh session
        loaded = [m for m, _new in prog.loaded_modules()]
    except (drgn.FaultError, LookupError, ValueError):
        return None  # no module list: look every word up
    for module in loaded:
        if isinstance(module, drgn.RelocatableModule):
            ranges.extend((lo, hi) for lo, hi in (module.address_ranges or ()) if hi > lo)
    return ranges


def _text_address(prog: drgn.Program, value: int, x86: bool, arm64: bool
                  ) -> tuple[str, str, str | None, bool | None] | None:
    """(symbol+offset, function, module, whether a call precedes it) of a word that points
    inside a function, else None."""
    from kpostmortem.helpers.modules import module_of_address

    try:
        sym = prog.symbol(value)
    except (LookupError, ValueError):
        return None
    if sym.kind != drgn.SymbolKind.FUNC or value == sym.address:
        return None
    after_call = None
    if x86:
        try:
            after_call = _follows_call(prog.read(value - 7, 7))
        except drgn.FaultError:
            after_call = None
    elif arm64:
        from kpostmortem.arch import aarch64

        try:
            after_call = any(i.is_call for i in aarch64.decode(prog.read(value - 4, 4), value - 4))
        except drgn.FaultError:
            after_call = None
    return f"{sym.name}+0x{value - sym.address:x}", sym.name, module_of_address(prog, value), after_call


def scan_stack_for_text(task: drgn.Object, trace: Iterable[drgn.StackFrame] | None = None) -> StackScan:
    """A GUESS at a task's frames when its trace cannot be trusted: the words of its stack,
    from its saved or innermost SP to the top, that point into kernel text (like crash's
    ``bt -t``), each marked when the bytes before it are a call instruction.

    :param task: ``struct task_struct *``
    :param trace: the task's trace, if already unwound: it gives the starting SP and marks the
        entries the trace has too
    """
    prog = task.prog_
    bounds = stack_bounds(task)
    pcs: list[int] = []
    start = bounds.start
    if trace is not None:
        frames = list(trace)
        pcs = [f.pc for f in frames]
        sps = [s for s in (_sp(f) for f in frames) if s is not None and s in bounds]
        if sps:
            start = min(sps)
    return text_addresses_in(prog, start, bounds.end, pcs)


# --------------------------------------------------------------------------------------------
# Pure parts


def _leading_zero_bytes(data: bytes) -> int:
    """How many bytes at the start of ``data`` are zero (all of them if it is all zero).

    As one little-endian integer, the lowest set bit is the first non-zero byte: 3 µs for a
    4 KiB page against 8 µs for ``len(data) - len(data.lstrip(b"\0"))``, on every task.
    """
    x = int.from_bytes(data, "little")
    return ((x & -x).bit_length() - 1) // 8 if x else len(data)


def _canary_damage(data: bytes, word: int = 8, byteorder: str = "little") -> tuple[int, int, int]:
    """(bytes of the canary changed, bytes written over from the canary up, stack_not_used).

    :param data: the stack from the canary word up (at least one word)
    """
    magic = STACK_END_MAGIC.to_bytes(word, byteorder)
    canary = data[:word]
    differ = [k for k in range(word) if canary[k] != magic[k]]
    zero = bytes(word)
    above = data[word : len(data) - len(data) % word]
    first_nonzero = _leading_zero_bytes(above)
    not_used = word + first_nonzero - first_nonzero % word
    if not differ:
        return 0, 0, not_used
    # The changed span of the canary word, from its lowest address.
    span = (max(differ) + 1) if byteorder == "little" else (word - min(differ))
    overwritten = span
    if not_used == word:
        k = data.find(zero, word)
        while k != -1 and k % word:
            k = data.find(zero, k + 1)
        overwritten = len(data) - len(data) % word if k == -1 else k
    return len(differ), overwritten, not_used


def _frame_sizes(sps: Sequence[int | None]) -> list[int | None]:
    """Bytes each frame takes from successive SPs (innermost first); the last one is unknown."""
    out: list[int | None] = [b - a if a is not None and b is not None else None
                             for a, b in zip(sps, sps[1:], strict=False)]
    return [*out, None] if sps else []


def _find_cycles(names: Sequence[str | None], min_repeats: int = 3, max_cycle: int = 4) -> list[tuple[int, int, int]]:
    """(start, period, repeats) of each maximal run where names[start:start+period] repeats.

    The shortest period covering the most frames wins; a cycle must not be one name repeated
    (that is a period-1 run) and unknown names never form a cycle.
    """
    out = []
    i = 0
    n = len(names)
    while i < n:
        best = None
        for period in range(1, max_cycle + 1):
            cycle = names[i : i + period]
            if len(cycle) < period or any(c is None for c in cycle):
                break
            if period > 1 and len(set(cycle)) == 1:
                continue
            repeats = 1
            while names[i + repeats * period : i + (repeats + 1) * period] == cycle:
                repeats += 1
            if repeats >= min_repeats and (best is None or repeats * period > best[1] * best[2]):
                best = (i, period, repeats)
        if best is None:
            i += 1
            continue
        out.append(best)
        i += best[1] * best[2]
    return out


def _protector_victim(names: Sequence[str | None], inline: Sequence[bool]) -> tuple[int, int | None] | None:
    """(index of ``__stack_chk_fail``, index of the real frame that called it) or None."""
    check = next((i for i, name in enumerate(names) if name == "__stack_chk_fail"), None)
    if check is None:
        return None
    # The caller is the next real frame; its inline frames come first and share its canary.
    for j in range(check + 1, len(names)):
        if not inline[j]:
            return check, j
    return check, None


def _follows_call(before: bytes) -> bool:
    """Whether the bytes right before an address end with an x86-64 call instruction."""
    cs = _disassembler()
    for length in range(2, min(7, len(before)) + 1):
        insn = next(cs.disasm(before[-length:], 0, 1), None)
        if insn is not None and insn.size == length and insn.mnemonic == "call":
            return True
    return False


def _trace_problems(facts: Sequence[_FrameFact], regs_size: int) -> tuple[list[str], list[str]]:
    """(problems, explained oddities) of a trace, from what is known of each real frame."""
    problems: list[str] = []
    explained: list[str] = []
    kernel = [f for f in facts if not f.user]
    if not kernel:
        return ["no kernel frame"], explained
    for k, f in enumerate(kernel):
        label = f"#{f.index} {f.name or hex(f.pc)}"
        if f.in_text is False:
            # A bad PC in an exception frame is a call through a bad pointer when the caller is
            # sound; anywhere else the unwinder followed a word that is no return address.
            nxt = kernel[k + 1] if k + 1 < len(kernel) else None
            if not (f.interrupted and nxt is not None and nxt.in_text):
                problems.append(f"{label}: PC 0x{f.pc:x} is outside kernel text")
        if f.sp is None:
            problems.append(f"{label}: no stack pointer")
        elif f.stack is None or f.stack.kind == "user":
            problems.append(f"{label}: SP 0x{f.sp:x} is outside every stack of the task")
        elif f.stack.guard:
            explained.append(f"{label}: SP 0x{f.sp:x} is in the {f.stack.description}: that stack overflowed")
    for a, b in zip(kernel, kernel[1:], strict=False):
        if a.sp is None or b.sp is None or a.stack is None or b.stack is None:
            continue
        if (a.stack.kind, a.stack.name, a.stack.cpu) == (b.stack.kind, b.stack.name, b.stack.cpu) and b.sp < a.sp:
            problems.append(f"#{b.index} {b.name or hex(b.pc)}: SP 0x{b.sp:x} is below its callee's 0x{a.sp:x}")
    last = kernel[-1]
    if not any(f.user for f in facts[facts.index(last) + 1 :]):
        on_task = last.stack is not None and last.sp is not None and last.stack.kind == "task" and not last.stack.guard
        at_top = on_task and last.stack.end - last.sp <= regs_size + _TOP_SLACK
        if not at_top and (last.name or "") not in _STACK_BOTTOM_FUNCTIONS:
            if on_task:
                where = f"{last.stack.end - last.sp} bytes below the top of the task stack"
            else:
                where = last.stack.description if last.stack is not None else "off every stack"
            problems.append(f"unwinder stopped early at #{last.index} {last.name or hex(last.pc)} ({where})")
    return problems, explained
