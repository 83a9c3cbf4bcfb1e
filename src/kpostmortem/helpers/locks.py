"""What a blocked task waits on, who holds it, the wait-for chain and deadlock cycles.

drgn-style helpers, usable alone in any drgn session::

    >>> waiting_on(find_task(prog, 104))
    WaitObject(kind='mutex', name='&hub->conf_mutex', ...)
    >>> lock_owner(waiting_on(task).object).comm
    'hub-reset'
    >>> [link.comm for link in wait_chain(task)]
    >>> deadlocks(prog)

The wait object comes from the blocked task's own frames: the DWARF argument of the lock or
wait primitive it sleeps in (``lock`` of ``__mutex_lock``, ``sem`` of
``rwsem_down_write_slowpath``, ``x`` of ``wait_for_completion``…), and when the compiler left
that out, from the raw stack words of those frames, each candidate checked by finding the task
on the candidate's own wait list. It is named the way its user wrote it (``&hub->conf_mutex``)
from the DWARF variables of the frames that asked for it, or from a symbol or slab cache.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import drgn
from drgn import Object, Program
from drgn.helpers.linux.locking import RwsemLocked, mutex_owner, rwsem_locked, rwsem_owner
from drgn.helpers.linux.pid import find_task, for_each_task
from drgn.helpers.linux.sched import cpu_curr, task_cpu, task_state_to_char

from kpostmortem.helpers.source import normalize_source_path

__all__ = [
    "Holder",
    "WaitForGraph",
    "WaitLink",
    "WaitObject",
    "deadlocks",
    "lock_owner",
    "rcu_gp_holders",
    "spinlock_holders",
    "wait_chain",
    "wait_for_graph",
    "waiting_on",
]

# Wait and lock primitives, by the name of their (base) function: the kind of object a task
# asleep in them waits on and the parameter names that hold it, innermost first.
_MUTEX = ("mutex", ("lock",))
_RWSEM_W = ("rwsem-write", ("sem",))
_RWSEM_R = ("rwsem-read", ("sem",))
_SEMA = ("semaphore", ("sem",))
_COMPLETION = ("completion", ("x",))
_FOLIO = ("folio", ("folio", "page"))
_BUFFER = ("buffer", ("bh",))
_SPIN = ("spinlock", ("lock",))
PRIMITIVES: dict[str, tuple[str, tuple[str, ...]]] = {
    **dict.fromkeys(("__mutex_lock", "__mutex_lock_common", "__mutex_lock_slowpath", "mutex_lock",
                     "__mutex_lock_killable_slowpath", "__mutex_lock_interruptible_slowpath",
                     "mutex_lock_killable", "mutex_lock_interruptible", "mutex_lock_io",
                     "mutex_lock_nested", "mutex_lock_io_nested", "mutex_lock_killable_nested",
                     "mutex_lock_interruptible_nested"), _MUTEX),
    **dict.fromkeys(("rwsem_down_write_slowpath", "__down_write_common", "__down_write", "down_write",
                     "down_write_killable", "down_write_nested", "__down_write_killable"), _RWSEM_W),
    **dict.fromkeys(("rwsem_down_read_slowpath", "__down_read_common", "__down_read", "down_read",
                     "down_read_killable", "down_read_interruptible", "down_read_nested",
                     "__down_read_killable", "__down_read_interruptible"), _RWSEM_R),
    **dict.fromkeys(("__down", "__down_common", "__down_interruptible", "__down_killable", "__down_timeout",
                     "down", "down_interruptible", "down_killable", "down_timeout"), _SEMA),
    **dict.fromkeys(("wait_for_completion", "__wait_for_common", "wait_for_common", "do_wait_for_common",
                     "wait_for_common_io", "wait_for_completion_timeout", "wait_for_completion_io",
                     "wait_for_completion_io_timeout", "wait_for_completion_killable",
                     "wait_for_completion_interruptible", "wait_for_completion_state",
                     "wait_for_completion_killable_timeout",
                     "wait_for_completion_interruptible_timeout"), _COMPLETION),
    **dict.fromkeys(("folio_wait_bit_common", "folio_wait_bit", "folio_wait_bit_killable", "__folio_lock",
                     "__folio_lock_killable", "folio_wait_writeback", "folio_lock",
                     "wait_on_page_bit_common", "wait_on_page_bit", "__lock_page", "lock_page",
                     "wait_on_page_writeback"), _FOLIO),
    **dict.fromkeys(("__wait_on_buffer", "__lock_buffer", "wait_on_buffer", "lock_buffer"), _BUFFER),
    **dict.fromkeys(("synchronize_rcu", "synchronize_rcu_normal", "synchronize_rcu_expedited", "__wait_rcu_gp",
                     "wait_rcu_gp", "rcu_barrier", "synchronize_rcu_tasks"), ("rcu", ())),
    **dict.fromkeys(("synchronize_srcu", "__synchronize_srcu", "srcu_barrier"), ("srcu", ("ssp",))),
    **dict.fromkeys(("__flush_work", "flush_work", "__cancel_work_sync", "cancel_work_sync",
                     "__cancel_work_timer", "flush_delayed_work", "cancel_delayed_work_sync"),
                    ("work-flush", ("work", "dwork"))),
    **dict.fromkeys(("__flush_workqueue", "flush_workqueue", "drain_workqueue"), ("workqueue-flush", ("wq",))),
    **dict.fromkeys(("native_queued_spin_lock_slowpath", "queued_spin_lock_slowpath",
                     "__pv_queued_spin_lock_slowpath", "do_raw_spin_lock", "_raw_spin_lock",
                     "_raw_spin_lock_irqsave", "_raw_spin_lock_irq", "_raw_spin_lock_bh",
                     "pv_queued_spin_lock_slowpath", "queued_spin_lock", "__raw_spin_lock", "spin_lock",
                     "spin_lock_irqsave", "spin_lock_irq", "spin_lock_bh", "virt_spin_lock",
                     "__raw_spin_lock_irqsave", "__raw_spin_lock_irq"), _SPIN),
}
# Sleeping and scheduling frames between the primitive and schedule(): not where the task asked.
_SLEEP = frozenset({
    "__schedule", "schedule", "context_switch", "__switch_to", "__switch_to_asm", "finish_task_switch",
    "schedule_preempt_disabled", "schedule_timeout", "io_schedule", "io_schedule_timeout",
    "schedule_hrtimeout_range_clock", "schedule_hrtimeout_range", "schedule_hrtimeout", "bit_wait",
    "bit_wait_io", "__wait_on_bit", "__wait_on_bit_lock", "out_of_line_wait_on_bit",
    "out_of_line_wait_on_bit_lock", "prepare_to_wait_event", "rwsem_optimistic_spin", "osq_lock",
    "preempt_schedule", "preempt_schedule_common", "__cond_resched", "swait_finish", "finish_swait",
    "cpu_relax", "rep_nop",
})
_TIMED = frozenset({"msleep", "msleep_interruptible", "usleep_range_state", "do_nanosleep", "hrtimer_nanosleep",
                    "schedule_timeout_uninterruptible", "schedule_timeout_interruptible", "ssleep"})

# How far to follow lists and scan stacks: enough for real waiters, bounded on garbage.
MAX_WAITERS = 65536
MAX_STACK_WORDS = 512
NAME_FRAMES = 4
"""Frames outside the primitives searched for a variable that names the lock."""

_KIND_TYPES = {
    "mutex": "struct mutex", "rwsem-write": "struct rw_semaphore", "rwsem-read": "struct rw_semaphore",
    "semaphore": "struct semaphore", "completion": "struct completion", "folio": "struct folio",
    "buffer": "struct buffer_head", "spinlock": "spinlock_t", "work-flush": "struct work_struct",
    "workqueue-flush": "struct workqueue_struct", "srcu": "struct srcu_struct",
}


def _base(name: str | None) -> str:
    return (name or "").split(".", 1)[0]


def _is_sleep(name: str) -> bool:
    # schedule() and its helpers change between kernels (__schedule_loop since 6.9).
    return name in _SLEEP or name in _TIMED or name.startswith(("__schedule", "schedule"))


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as far as the dump says."""

    task: Object | None
    """``struct task_struct *`` of the holder, None when unknown or when nobody holds it."""
    pid: int | None = None
    comm: str | None = None
    how: str = ""
    """Where the answer comes from (``mutex.owner``, flag bits stripped…)."""
    sure: str = "certain"
    """``certain`` (the lock records it), ``likely`` (a hint the dump supports), ``hint``, or ``unknown``."""
    reason: str | None = None
    """Why the holder is unknown or only a hint."""
    readers: int | None = None
    """rw_semaphore: how many readers hold it."""
    state: str | None = None
    """The holder's task state letter (R, S, D…)."""
    cpu: int | None = None
    """For a spinlock: the CPU the holder runs on."""

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["task"] = None if self.task is None else self.task.value_()
        return {k: v for k, v in d.items() if v is not None}


@dataclass(frozen=True)
class WaitObject:
    """What a blocked task sleeps on."""

    kind: str
    """mutex, rwsem-write, rwsem-read, semaphore, completion, folio, buffer, rcu, srcu, work-flush,
    workqueue-flush, waitqueue, spinlock, sleep (a timed sleep) or unknown."""
    address: int | None
    """Address of the lock or wait object, None when not found."""
    name: str | None = None
    """As the code names it: ``&hub->conf_mutex``, ``&rtnl_mutex``, or None."""
    container: str | None = None
    """The struct the object is embedded in (``struct crashpoc_hub``), if known."""
    container_address: int | None = None
    primitive: str | None = None
    """The wait or lock function the task sleeps in."""
    site: str | None = None
    """The function that asked for the object (the first frame outside the primitives)."""
    site_frame: int | None = None
    """Index of that frame in the task's trace."""
    site_source: str | None = None
    how: str = ""
    """How the object was found: a DWARF argument, a raw stack word checked against a wait list…"""
    verified: bool = False
    """True when the task was found on the object's own wait list."""
    object: Object | None = field(default=None, compare=False, repr=False)
    """The object as a drgn ``Object`` (pointer), for further digging in a session."""

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "object"}
        return {k: v for k, v in d.items() if v is not None}


@dataclass(frozen=True)
class WaitLink:
    """One step of a wait-for chain: a task, what it waits on and who holds that."""

    task: Object
    pid: int
    comm: str
    state: str
    wait: WaitObject | None
    holder: Holder | None


# ---------------------------------------------------------------------------- reading

def _task_facts(task: Object) -> tuple[int, str, str]:
    return (int(task.pid), task.comm.string_().decode(errors="replace"), task_state_to_char(task))


def _frame_var(frame: drgn.StackFrame, name: str) -> Object | None:
    try:
        val = frame[name]
    except (KeyError, LookupError, drgn.FaultError, ValueError):
        return None
    except Exception:  # noqa: BLE001 - drgn raises on DWARF it cannot evaluate (DW_OP_GNU_parameter_ref)
        return None
    if val.absent_:
        return None
    return val


def _pointer_value(val: Object) -> int | None:
    try:
        kind = val.type_.kind
        if kind == drgn.TypeKind.POINTER:
            return val.value_() or None
        if val.address_ is not None and kind in (drgn.TypeKind.STRUCT, drgn.TypeKind.TYPEDEF):
            return val.address_
    except drgn.FaultError:
        return None
    return None


def _typed(prog: Program, kind: str, address: int) -> Object | None:
    tname = _KIND_TYPES.get(kind)
    if tname is None:
        return None
    try:
        return Object(prog, prog.pointer_type(prog.type(tname)), address)
    except LookupError:
        return None


def _list_tasks(head: Object, waiter_type: str, member: str = "list", task_member: str = "task") -> list[int]:
    """Task addresses on a wait list (``struct list_head``) of ``waiter_type`` entries, bounded."""
    prog = head.prog_
    out: list[int] = []
    try:
        wtype = prog.type(waiter_type)
        offset = drgn.offsetof(wtype, member)
        head_addr = head.address_
        node = head.next.value_()
        for _ in range(MAX_WAITERS):
            if node == head_addr or not node:
                break
            waiter = Object(prog, wtype, address=node - offset)
            out.append(waiter.member_(task_member).value_())
            node = prog.read_word(node)
    except (LookupError, drgn.FaultError):
        pass
    return out


def waiters_of(obj: Object, kind: str) -> list[int]:
    """Addresses of the tasks on a lock's or completion's wait list (``task_struct *`` values)."""
    o = obj.read_() if obj.type_.kind == drgn.TypeKind.POINTER else obj.address_of_()
    try:
        if kind == "mutex":
            return _list_tasks(o.wait_list, "struct mutex_waiter")
        if kind in ("rwsem-write", "rwsem-read"):
            return _list_tasks(o.wait_list, "struct rwsem_waiter")
        if kind == "semaphore":
            return _list_tasks(o.wait_list, "struct semaphore_waiter")
        if kind == "completion":
            # struct completion's waiters: a simple wait queue (swait) since 4.19.
            return _list_tasks(o.wait.task_list, "struct swait_queue", member="task_list")
    except (AttributeError, LookupError, drgn.FaultError):
        pass
    return []


def _stack_words(prog: Program, task: Object, lo: int, hi: int) -> list[int]:
    try:
        base = task.stack.value_()
        size = prog["THREAD_SIZE"].value_() if "THREAD_SIZE" in prog else 16384
    except (AttributeError, LookupError, drgn.FaultError):
        return []
    lo, hi = max(lo, base), min(hi, base + size, lo + 8 * MAX_STACK_WORDS)
    if hi <= lo:
        return []
    try:
        data = prog.read(lo, hi - lo)
    except drgn.FaultError:
        return []
    return [int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data) - 7, 8)]


# ----------------------------------------------------------------------------- naming

def _member_path(type_: drgn.Type, offset: int, want: drgn.Type) -> str | None:
    """``a.b`` for the member of ``type_`` at ``offset`` whose type is ``want`` (by name)."""
    type_ = type_.unqualified()
    while type_.kind == drgn.TypeKind.TYPEDEF:
        type_ = type_.type.unqualified()
    if type_.kind not in (drgn.TypeKind.STRUCT, drgn.TypeKind.UNION):
        return None
    want_name = want.unqualified().type_name()
    for m in type_.members:
        if m.bit_offset is None or m.bit_offset % 8:
            continue
        start = m.bit_offset // 8
        try:
            size = drgn.sizeof(m.type)
        except TypeError:
            continue
        if not start <= offset < start + size:
            continue
        if m.name is None:  # anonymous struct or union: its members are the parent's
            sub = _member_path(m.type, offset - start, want)
            if sub:
                return sub
            continue
        if offset == start and m.type.unqualified().type_name() == want_name:
            return m.name
        sub = _member_path(m.type, offset - start, want)
        if sub:
            return f"{m.name}.{sub}"
    return None


def _struct_of(val: Object) -> tuple[int, drgn.Type] | None:
    """(address, struct type) a variable points to or is."""
    try:
        t = val.type_.unqualified()
        while t.kind == drgn.TypeKind.TYPEDEF:
            t = t.type.unqualified()
        if t.kind == drgn.TypeKind.POINTER:
            target = t.type.unqualified()
            while target.kind == drgn.TypeKind.TYPEDEF:
                target = target.type.unqualified()
            if target.kind == drgn.TypeKind.STRUCT and target.is_complete():
                addr = val.value_()
                return (addr, target) if addr else None
        elif t.kind == drgn.TypeKind.STRUCT and val.address_ is not None:
            return val.address_, t
    except (drgn.FaultError, ValueError, LookupError):
        return None
    return None


def name_object(prog: Program, address: int, kind: str, frames: Sequence[drgn.StackFrame] = ()) -> tuple[
        str | None, str | None, int | None, str]:
    """(name, container struct, container address, how) for a lock or wait object at ``address``.

    Tried in order: a DWARF variable of ``frames`` that points to (or is) a struct holding the
    object (``&hub->conf_mutex``), a symbol (``&rtnl_mutex``), the slab object it lies in.
    """
    tname = _KIND_TYPES.get(kind)
    want = None
    if tname:
        try:
            want = prog.type(tname)
        except LookupError:
            want = None
    for frame in frames:
        try:
            names = frame.locals()
        except (LookupError, drgn.FaultError, ValueError):
            continue
        for var in names:
            val = _frame_var(frame, var)
            if val is None:
                continue
            if _pointer_value(val) == address and val.type_.kind == drgn.TypeKind.POINTER:
                # The variable is the object itself (``struct mutex *lock``): the caller's
                # name for it is better, keep looking, but remember this one.
                continue
            found = _struct_of(val)
            if not found or want is None:
                continue
            base, stype = found
            size = drgn.sizeof(stype)
            if not base <= address < base + size:
                continue
            path = _member_path(stype, address - base, want) if address != base else None
            if path is None and address != base:
                continue
            arrow = "->" if val.type_.kind == drgn.TypeKind.POINTER else "."
            name = f"&{var}{arrow}{path}" if path else (var if arrow == "->" else f"&{var}")
            return name, stype.type_name(), base, f"DWARF variable `{var}` of {frame.name}()"
    try:
        sym = prog.symbol(address)
        if sym.address == address:
            return f"&{sym.name}", None, None, "symbol"
        return f"&{sym.name}+0x{address - sym.address:x}", None, sym.address, "symbol"
    except LookupError:
        pass
    try:
        from drgn.helpers.linux.slab import slab_object_info

        info = slab_object_info(prog, address)
        if info is not None:
            cache = info.slab_cache.name.string_().decode(errors="replace")
            return (f"{cache} object 0x{info.address:x} + 0x{address - info.address:x}", f"slab object ({cache})",
                    info.address, "slab cache of the address")
    except (LookupError, drgn.FaultError, ValueError, NotImplementedError):
        pass
    return None, None, None, "unnamed"


# ----------------------------------------------------------------------- wait object

def _blocker_field(task: Object) -> tuple[str, int] | None:
    """Linux 6.16+ (CONFIG_DETECT_HUNG_TASK_BLOCKER) records the lock a task blocks on in
    ``task_struct.blocker``: the address with its type in the low 2 bits."""
    try:
        raw = task.blocker.value_()
    except (AttributeError, drgn.FaultError):
        return None
    if not raw:
        return None
    kinds = {0: "mutex", 1: "semaphore", 2: "rwsem-read", 3: "rwsem-write"}
    return kinds[raw & 3], raw & ~3


def waiting_on(task: Object, trace: Iterable[drgn.StackFrame] | None = None, *,
               cache: dict | None = None) -> WaitObject | None:
    """What a sleeping task waits on, from its stack; None when it is not asleep in a wait.

    :param task: ``struct task_struct *``
    :param trace: the task's stack frames, if already unwound (``prog.stack_trace(task)``), or
        the frames to look at (a soft-lockup CPU's frames below the watchdog's interrupt)
    :param cache: a dict shared by calls over many tasks (the wait-for graph's): each object's
        wait list is walked and its name found once, not once per waiter
    """
    prog = task.prog_
    if trace is None:
        trace = prog.stack_trace(task)
    frames = list(trace)
    prim_index = None
    kind = primitive = None
    address = None
    how = ""
    for i, frame in enumerate(frames):
        name = _base(frame.name)
        spec = PRIMITIVES.get(name)
        if spec is None:
            if _is_sleep(name):
                continue
            break
        kind_i, params = spec
        if kind is None:
            kind, primitive = kind_i, name
        prim_index = i
        if address is None:
            for p in params:
                val = _frame_var(frame, p)
                ptr = _pointer_value(val) if val is not None else None
                if ptr:
                    address, how = ptr, f"DWARF argument `{p}` of {frame.name}()"
                    break
    site_index = _site_index(frames, prim_index)
    if prim_index is not None and any(PRIMITIVES.get(_base(f.name), ("",))[0] == "rcu"
                                      for f in frames[:prim_index + 1]):
        # synchronize_rcu() sleeps on a completion of its own stack: the object is the grace period.
        kind, primitive, address = "rcu", next(_base(f.name) for f in frames[:prim_index + 1]
                                               if PRIMITIVES.get(_base(f.name), ("",))[0] == "rcu"), None
    if kind is None:
        timed = next((_base(f.name) for f in frames[:8] if _base(f.name) in _TIMED), None)
        wq = _waitqueue_from_stack(prog, task, frames)
        if wq is not None:
            return wq
        if timed:
            return _with_site(WaitObject("sleep", None, primitive=timed, how="a timed sleep: it wakes by itself"),
                              frames, site_index)
        return None
    if kind == "rcu" and address is None:
        return _with_site(WaitObject("rcu", None, name="an RCU grace period", primitive=primitive,
                                     how=f"{primitive}() on the stack"), frames, site_index)
    verified = False
    blocker = _blocker_field(task)
    if blocker and blocker[0].split("-")[0] == kind.split("-")[0]:
        if address is None:
            address, how = blocker[1], "task_struct.blocker"
        verified = address == blocker[1]
    if address is not None and kind in ("mutex", "rwsem-write", "rwsem-read", "semaphore", "completion"):
        obj = _typed(prog, kind, address)
        verified = verified or (obj is not None and task.value_() in _waiters(obj, kind, cache))
    if address is None or (not verified and kind in ("mutex", "rwsem-write", "rwsem-read", "semaphore",
                                                      "completion")):
        raw = _from_raw_stack(prog, task, frames, kind, prim_index, cache)
        if raw is not None:
            address, how, verified = raw, "raw stack word of the wait frames, checked on the object's wait list", True
    obj = _typed(prog, kind, address) if address is not None else None
    name = container = caddr = None
    if address is not None:
        lo = site_index if site_index is not None else (prim_index or 0) + 1
        key = ("name", kind, address)
        if cache is not None and key in cache:
            name, container, caddr = cache[key]
        else:
            name, container, caddr, _nhow = name_object(prog, address, kind, frames[lo:lo + NAME_FRAMES])
            if cache is not None and name is not None:
                cache[key] = (name, container, caddr)
    return _with_site(WaitObject(kind, address, name, container, caddr, primitive, how=how, verified=verified,
                                 object=obj), frames, site_index)


def _site_index(frames: Sequence[drgn.StackFrame], prim_index: int | None) -> int | None:
    start = 0 if prim_index is None else prim_index + 1
    for i in range(start, len(frames)):
        name = _base(frames[i].name)
        if name in PRIMITIVES or _is_sleep(name) or not name or name.startswith("0x"):
            continue
        return i
    return None


def _with_site(w: WaitObject, frames: Sequence[drgn.StackFrame], site_index: int | None) -> WaitObject:
    if site_index is None:
        return w
    f = frames[site_index]
    source = None
    try:
        file, line, _col = f.source()
        source = f"{normalize_source_path(file)}:{line}"
    except LookupError:
        pass
    return dataclasses.replace(w, site=_base(f.name), site_frame=site_index, site_source=source)


def _waiters(obj: Object, kind: str, cache: dict | None) -> set[int]:
    if cache is None:
        return set(waiters_of(obj, kind))
    key = ("waiters", kind, obj.value_())
    if key not in cache:
        cache[key] = set(waiters_of(obj, kind))
    return cache[key]


def _from_raw_stack(prog: Program, task: Object, frames: Sequence[drgn.StackFrame], kind: str,
                    prim_index: int | None, cache: dict | None = None) -> int | None:
    """A word of the wait frames' stack that is a lock with this task on its wait list."""
    if kind not in ("mutex", "rwsem-write", "rwsem-read", "semaphore", "completion") or not frames:
        return None
    try:
        lo = frames[0].sp
        hi_frame = frames[min(len(frames) - 1, (prim_index or 0) + 2)]
        hi = hi_frame.sp + 8 * 16
    except LookupError:
        return None
    me = task.value_()
    seen: set[int] = set()
    for word in _stack_words(prog, task, lo, hi):
        if word in seen or word < 0xffff000000000000 or word % 8:
            continue
        seen.add(word)
        obj = _typed(prog, kind, word)
        if obj is not None and me in _waiters(obj, kind, cache):
            return word
    return None


def _waitqueue_from_stack(prog: Program, task: Object, frames: Sequence[drgn.StackFrame]) -> WaitObject | None:
    """wait_event() and friends: a ``wait_queue_entry`` on the task's stack whose ``private`` is
    the task and whose ``func`` is a wake function; the head is the list node off the stack."""
    if not frames:
        return None
    try:
        wtype = prog.type("struct wait_queue_entry")
        off_private = drgn.offsetof(wtype, "private")
        off_entry = drgn.offsetof(wtype, "entry")
        base = task.stack.value_()
        size = prog["THREAD_SIZE"].value_() if "THREAD_SIZE" in prog else 16384
        lo = frames[0].sp
    except (LookupError, AttributeError, drgn.FaultError):
        return None
    me = task.value_()
    words = _stack_words(prog, task, lo, base + size)
    for i, word in enumerate(words):
        if word != me:
            continue
        entry_addr = lo + 8 * i - off_private
        try:
            entry = Object(prog, wtype, address=entry_addr)
            func = prog.symbol(entry.func.value_()).name
        except (LookupError, drgn.FaultError):
            continue
        if "wake" not in func:
            continue
        node = entry_addr + off_entry
        try:
            for _ in range(MAX_WAITERS):
                node = prog.read_word(node)
                if node == entry_addr + off_entry:
                    break
                if not base <= node < base + size:
                    # Off this task's stack: another waiter's entry (another stack) or the head.
                    try:
                        if "wake" in prog.symbol(prog.read_word(node - off_entry + drgn.offsetof(wtype, "func"))).name:
                            continue
                    except (LookupError, drgn.FaultError):
                        pass
                    head = node - drgn.offsetof(prog.type("struct wait_queue_head"), "head")
                    frames_named = frames[:NAME_FRAMES + 4]
                    name, container, caddr, _ = name_object(prog, head, "waitqueue", frames_named)
                    site = _site_index(frames, None)
                    return _with_site(WaitObject("waitqueue", head, name, container, caddr, primitive=func,
                                                 how="wait_queue_entry on the task's stack (private = the task)",
                                                 verified=True,
                                                 object=Object(prog, "struct wait_queue_head *", head)),
                                      frames, site)
        except drgn.FaultError:
            continue
    return None


# ---------------------------------------------------------------------------- holders

def _holder_of_task(owner: Object, how: str, known: set[int] | None, sure: str = "certain", **kw) -> Holder:
    """A Holder for an owner pointer, or "unknown holder" with the reason it cannot be named."""
    addr = owner.value_()
    if not addr:
        return Holder(None, how=how, sure="unknown", reason="the owner field is empty", **kw)
    if known is not None and addr not in known:
        return Holder(None, how=how, sure="unknown",
                      reason=f"owner 0x{addr:x} is not a task of the task list (exited, freed or damaged)", **kw)
    try:
        task = owner.read_()
        pid, comm, state = _task_facts(task)
    except drgn.FaultError as e:
        return Holder(None, how=how, sure="unknown", reason=f"owner 0x{addr:x} unreadable: {_fault_words(e)}", **kw)
    if known is None and not _is_live_task(owner):
        return Holder(None, how=how, sure="unknown",
                      reason=f"owner 0x{addr:x} is not a live task (freed, or not a task_struct)", **kw)
    return Holder(task, pid, comm, how, sure, state=state, **kw)


def _fault_words(e: drgn.FaultError) -> str:
    if "excluded" in str(e).lower():
        return "its page was excluded from the dump by makedumpfile's filtering"
    return str(e)


def _is_live_task(task: Object) -> bool:
    """A task_struct pointer that points at a live task: its slab object is allocated, and its
    pid finds it again in the pid hash (a freed task, or a pid reused since, does not)."""
    prog = task.prog_
    try:
        from drgn.helpers.linux.slab import slab_object_info

        info = slab_object_info(prog, task.value_())
        if info is not None and not info.allocated:
            return False
    except (LookupError, drgn.FaultError, ValueError, NotImplementedError, ImportError):
        pass
    try:
        pid = task.pid.value_()
        if pid <= 0:  # garbage, or the idle task: never a lock owner to name
            return False
        found = find_task(prog, pid)
        return bool(found) and found.value_() == task.value_()
    except (AttributeError, LookupError, ValueError, OverflowError, drgn.FaultError):
        return False


def lock_owner(obj: Object, kind: str | None = None, *, known_tasks: set[int] | None = None) -> Holder:
    """Who holds a lock: a ``struct mutex``, ``rw_semaphore``, ``semaphore``, ``completion``
    (nobody: the task meant to complete it is not recorded) or spinlock.

    :param obj: the lock object or a pointer to it
    :param kind: ``mutex``, ``rwsem-write``… (default: from the object's type)
    :param known_tasks: addresses of every task, to refuse an owner that is no task any more
    """
    prog = obj.prog_
    ptr = obj if obj.type_.kind == drgn.TypeKind.POINTER else obj.address_of_()
    if kind is None:
        kind = {v: k for k, v in _KIND_TYPES.items()}.get(ptr.type_.type.unqualified().type_name(), "unknown")
        kind = "rwsem-read" if kind == "rwsem-write" else kind
    try:
        if kind == "mutex":
            return _holder_of_task(mutex_owner(ptr), "mutex.owner, flag bits 0x7 stripped", known_tasks)
        if kind in ("rwsem-write", "rwsem-read"):
            return _rwsem_holder(prog, ptr, known_tasks)
        if kind == "semaphore":
            count = ptr.count.value_()
            try:
                # CONFIG_DETECT_HUNG_TASK_BLOCKER (6.16+) records the last task that took it.
                last = ptr.last_holder.value_()
            except AttributeError:
                last = 0
            if last:
                h = _holder_of_task(Object(prog, "struct task_struct *", last), "semaphore.last_holder",
                                    known_tasks, sure="likely")
                return dataclasses.replace(h, reason=f"count {count}; last_holder is the last task that took it")
            return Holder(None, how="semaphore.count", sure="unknown",
                          reason=f"count {count}: a semaphore records no holder (any task may up() it)")
        if kind == "completion":
            done = ptr.done.value_()
            return Holder(None, how="completion.done", sure="unknown",
                          reason=f"done = {done}: nobody has completed it, and a completion records no "
                                 "task that is meant to")
        if kind == "spinlock":
            return spinlock_holder(ptr, known_tasks=known_tasks)
    except drgn.FaultError as e:
        return Holder(None, how=kind, sure="unknown", reason=f"lock unreadable: {_fault_words(e)}")
    return Holder(None, how=kind, sure="unknown", reason=f"a {kind} records no holder")


def _rwsem_holder(prog: Program, sem: Object, known: set[int] | None) -> Holder:
    count = sem.count.counter.value_() & (2**64 - 1)
    state = rwsem_locked(sem)
    owner = rwsem_owner(sem)
    if state == RwsemLocked.WRITE_LOCKED:
        return _holder_of_task(owner, "rw_semaphore.owner (write-locked), flag bits stripped", known)
    if state == RwsemLocked.UNLOCKED:
        return Holder(None, how="rw_semaphore.count", sure="unknown", reason="not locked in the dump")
    # Read-locked: count >> 8 readers (RWSEM_READER_SHIFT, bit 63 RWSEM_FLAG_READFAIL aside).
    readers = (count & ~(1 << 63)) >> 8
    h = _holder_of_task(owner, "rw_semaphore.owner with RWSEM_READER_OWNED: the last reader to take it",
                        known, sure="likely" if readers == 1 else "hint", readers=readers)
    why = (f"{readers} reader(s) hold it; the kernel keeps no list of readers, owner names the last "
           "one to take it")
    return dataclasses.replace(h, reason=why if h.reason is None else f"{h.reason}; {why}")


def _qspinlock_word(lock: Object) -> int | None:
    try:
        raw = lock.read_()
        while raw.type_.kind != drgn.TypeKind.INT:
            for m in ("rlock", "raw_lock", "val", "counter"):
                if raw.type_.kind in (drgn.TypeKind.STRUCT, drgn.TypeKind.UNION, drgn.TypeKind.TYPEDEF):
                    try:
                        raw = raw.member_(m)
                        break
                    except LookupError:
                        continue
            else:
                return None
        return raw.value_() & 0xffffffff
    except (drgn.FaultError, LookupError, AttributeError):
        return None


def spinlock_holders(prog: Program, address: int, exclude_cpu: int | None = None) -> list[tuple[Holder, str]]:
    """Candidate holders of a spinlock: the tasks on the other CPUs whose frames refer to it.

    A queued spinlock records no owner. For each CPU's current task (except ``exclude_cpu``),
    look in its frames for a DWARF variable equal to the lock's address or pointing to a struct
    that contains it, then for the address among its saved registers and stack words.
    Returns (holder, why) best first.
    """
    from drgn.helpers.linux.cpumask import for_each_online_cpu

    out: list[tuple[int, Holder, str]] = []
    for cpu in for_each_online_cpu(prog):
        if cpu == exclude_cpu:
            continue
        try:
            task = cpu_curr(prog, cpu)
            pid, comm, state = _task_facts(task)
            trace = prog.stack_trace(task)
        except (drgn.FaultError, ValueError, LookupError):
            continue
        rank, why = _refers_to(prog, task, list(trace), address)
        if rank:
            sure = "likely" if rank >= 2 else "hint"
            out.append((rank, Holder(task, pid, comm, f"frames of CPU {cpu}'s current task", sure,
                                     state=state, cpu=cpu, reason=why), why))
    out.sort(key=lambda t: -t[0])
    return [(h, why) for _r, h, why in out]


def _refers_to(prog: Program, task: Object, frames: Sequence[drgn.StackFrame], address: int) -> tuple[int, str]:
    for frame in frames:
        if _base(frame.name) in PRIMITIVES:
            continue  # waiting for it, not holding it
        try:
            names = frame.locals()
        except (LookupError, drgn.FaultError, ValueError):
            names = []
        for var in names:
            val = _frame_var(frame, var)
            if val is None:
                continue
            if _pointer_value(val) == address:
                return 2, f"`{var}` of {frame.name}() is the lock's address"
            found = _struct_of(val)
            if found and found[0] <= address < found[0] + drgn.sizeof(found[1]):
                return 2, (f"`{var}` of {frame.name}() points to the {found[1].type_name()} that holds the lock "
                           f"(+0x{address - found[0]:x})")
    for frame in frames:
        try:
            regs = frame.registers()
        except (LookupError, ValueError):
            continue
        for reg, value in regs.items():
            if value == address:
                return 1, f"register {reg} of {frame.name}() holds the lock's address"
    return 0, ""


def spinlock_holder(lock: Object, *, known_tasks: set[int] | None = None, exclude_cpu: int | None = None) -> Holder:
    """The likely holder of a spinlock (see :func:`spinlock_holders`), or an unknown Holder."""
    prog = lock.prog_
    ptr = lock if lock.type_.kind == drgn.TypeKind.POINTER else lock.address_of_()
    word = _qspinlock_word(ptr)
    if word is not None and not word & 0xff:
        return Holder(None, how="the lock word", sure="unknown", reason=f"not locked in the dump (0x{word:x})")
    cands = spinlock_holders(prog, ptr.value_(), exclude_cpu)
    if not cands:
        return Holder(None, how="frames of the other CPUs' tasks", sure="unknown",
                      reason="a spinlock records no owner, and no other CPU's frames refer to it")
    h, why = cands[0]
    if len(cands) > 1:
        h = dataclasses.replace(h, sure="hint", reason=f"{why}; {len(cands) - 1} other CPU(s) refer to it too")
    return h


@dataclass(frozen=True)
class RcuHolder:
    """A CPU or a task that holds the current RCU grace period up."""

    cpu: int | None
    """A CPU that has not reported a quiescent state (its bit set in its leaf rcu_node's qsmask)."""
    task: Object | None
    """That CPU's current task, or a task preempted inside a read-side critical section."""
    pid: int | None
    comm: str | None
    state: str | None
    how: str


def rcu_gp_holders(prog: Program) -> list[RcuHolder]:
    """What holds the current RCU grace period up, from the rcu_node tree in the dump: each CPU
    whose bit is still set in its leaf node's ``qsmask`` (with its current task), and each task
    on a node's ``blkd_tasks`` list from ``gp_tasks`` on (preempted inside ``rcu_read_lock()``)."""
    out: list[RcuHolder] = []
    try:
        rs = prog["rcu_state"]
        levels = prog["rcu_num_lvls"].value_()
        nodes = prog["rcu_num_nodes"].value_()
        first_leaf = rs.level[levels - 1].value_()
    except (KeyError, LookupError, AttributeError, drgn.FaultError):
        return out  # no tree RCU (TINY_RCU) or not readable
    for i in range(nodes):
        try:
            rnp = rs.node[i]
            leaf = rnp.address_ >= first_leaf
            mask = rnp.qsmask.value_() if leaf else 0
            grplo = rnp.grplo.value_()
            bit = 0
            while mask:
                if mask & 1:
                    cpu = grplo + bit
                    try:
                        t = cpu_curr(prog, cpu)
                        pid, comm, state = _task_facts(t)
                    except (drgn.FaultError, ValueError, LookupError):
                        t, pid, comm, state = None, None, None, None
                    out.append(RcuHolder(cpu, t, pid, comm, state,
                                         f"rcu_node {i} qsmask: CPU {cpu} has not reported a quiescent state"))
                mask >>= 1
                bit += 1
            gp_tasks = rnp.gp_tasks.value_()
            if gp_tasks:
                head = rnp.blkd_tasks.address_
                node = gp_tasks
                for _ in range(MAX_WAITERS):
                    if node == head:
                        break
                    t = drgn.container_of(Object(prog, "struct list_head *", node), "struct task_struct",
                                          "rcu_node_entry")
                    pid, comm, state = _task_facts(t)
                    out.append(RcuHolder(None, t, pid, comm, state,
                                         f"rcu_node {i} blkd_tasks from gp_tasks: preempted inside rcu_read_lock()"))
                    node = prog.read_word(node)
        except drgn.FaultError:
            continue
    return out


# ---------------------------------------------------------------------- chains, cycles

@dataclass
class WaitForGraph:
    """Blocked tasks, what each waits on and who holds it; edges waiter → holder."""

    links: dict[int, WaitLink] = field(default_factory=dict)
    """Task address → its link."""
    cycles: list[list[int]] = field(default_factory=list)
    """Deadlocks: each a list of task addresses, each waiting for the next, the last for the first."""

    def chain(self, task_addr: int) -> list[WaitLink]:
        """The wait-for chain from a task: it, its holder, that one's holder… (stops on a repeat)."""
        out: list[WaitLink] = []
        seen: set[int] = set()
        addr: int | None = task_addr
        while addr is not None and addr in self.links and addr not in seen:
            seen.add(addr)
            link = self.links[addr]
            out.append(link)
            h = link.holder
            addr = h.task.value_() if h is not None and h.task is not None else None
        return out


def _blocked(prog: Program) -> list[Object]:
    return [t for t in for_each_task(prog) if task_state_to_char(t) == "D"]


def wait_for_graph(prog: Program, tasks: Iterable[Object] | None = None, *,
                   unwind: Callable[[Object], Sequence[drgn.StackFrame]] | None = None,
                   known_tasks: set[int] | None = None) -> WaitForGraph:
    """The wait-for graph over blocked tasks, built in time linear in their number.

    Each task waits on at most one object and each object has at most one holder recorded, so
    every task has at most one outgoing edge: following edges with a visited mark finds every
    cycle in one pass. Holders that are not blocked themselves end their chain (they are added
    as links with no wait of their own when they are asleep in one).

    :param tasks: the tasks to start from (default: every task in D state)
    :param unwind: how to unwind a task's stack (default ``prog.stack_trace``); kpostmortem
        passes one that loads the debug info of the modules the stack runs through
    :param known_tasks: every task's address (to refuse stale owner pointers)
    """
    graph = WaitForGraph()
    cache: dict = {}
    todo = list(_blocked(prog) if tasks is None else tasks)
    while todo:
        task = todo.pop()
        addr = task.value_()
        if addr in graph.links:
            continue
        try:
            pid, comm, state = _task_facts(task)
        except drgn.FaultError:
            continue
        try:
            wait = waiting_on(task, unwind(task) if unwind is not None else None, cache=cache)
        except (drgn.FaultError, ValueError, LookupError):
            wait = None
        holder = None
        if wait is not None and wait.object is not None:
            key = ("holder", wait.kind, wait.object.value_())
            if wait.kind == "spinlock":
                holder = spinlock_holder(wait.object, known_tasks=known_tasks, exclude_cpu=_cpu_of(task))
            elif key in cache:
                holder = cache[key]  # one owner read per lock, however many wait for it
            else:
                holder = cache[key] = lock_owner(wait.object, wait.kind, known_tasks=known_tasks)
        elif wait is not None and wait.kind == "rcu":
            if "rcu" not in cache:
                cache["rcu"] = rcu_gp_holders(prog)
            rh = next((r for r in cache["rcu"] if r.task is not None), None)
            holder = Holder(rh.task, rh.pid, rh.comm, rh.how, "likely", state=rh.state, cpu=rh.cpu,
                            reason="the current grace period waits for it") if rh is not None else \
                Holder(None, how="rcu_node tree", sure="unknown",
                       reason="no CPU or task holds the grace period up in the dump's rcu_node tree")
        elif wait is not None and wait.kind not in ("sleep",):
            holder = Holder(None, how=wait.kind, sure="unknown", reason=f"no {wait.kind} object found to read")
        graph.links[addr] = WaitLink(task, pid, comm, state, wait, holder)
        if holder is not None and holder.task is not None and holder.task.value_() not in graph.links:
            todo.append(holder.task)
    graph.cycles = _cycles(graph)
    return graph


def _cpu_of(task: Object) -> int | None:
    try:
        return task_cpu(task)
    except (drgn.FaultError, AttributeError):
        return None


def _cycles(graph: WaitForGraph) -> list[list[int]]:
    nxt: dict[int, int] = {}
    for addr, link in graph.links.items():
        h = link.holder
        if h is not None and h.task is not None and h.sure in ("certain", "likely"):
            nxt[addr] = h.task.value_()
    walk_of: dict[int, int] = {}
    cycles = []
    for walk, start in enumerate(graph.links):
        path: list[int] = []
        node: int | None = start
        while node is not None and node not in walk_of:
            walk_of[node] = walk
            path.append(node)
            node = nxt.get(node)
        if node is not None and walk_of[node] == walk:
            cycles.append(path[path.index(node):])
    return cycles


def wait_chain(task: Object, graph: WaitForGraph | None = None) -> list[WaitLink]:
    """The wait-for chain from ``task``: what it waits on, who holds that, what the holder waits
    on… until a task that waits on nothing found, an unknown holder, or a repeat (a cycle).

    :param task: ``struct task_struct *``
    """
    if graph is None:
        graph = wait_for_graph(task.prog_, [task])
    return graph.chain(task.value_())


def deadlocks(prog: Program, graph: WaitForGraph | None = None) -> list[list[WaitLink]]:
    """Every cycle of the wait-for graph over the blocked tasks: each a list of WaitLinks."""
    if graph is None:
        graph = wait_for_graph(prog)
    return [[graph.links[a] for a in cycle] for cycle in graph.cycles]
