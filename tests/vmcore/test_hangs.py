"""Hangs on real dumps: the wait object, its holder, the chain, the cycle and the guilty frame,
each checked against the dump itself (drgn's own reads of the lock's owner and wait list), and
against the scenario's [scenario.expect.hang], written before the crash.

Parametrised over the corpus group's scenarios that have an expect.hang table (CI builds those).
"""

from __future__ import annotations

import pytest

from kpostmortem.verdict.hangs import thread_name

from . import corpus
from .analysis import report_of

pytestmark = pytest.mark.vmcore

HANGS = [s for s in corpus.load_manifest() if s["expect"].get("hang")]
NAMES = [s["name"] for s in HANGS]
BY_NAME = {s["name"]: s for s in HANGS}


@pytest.fixture(scope="module")
def programs():
    """One drgn Program per dump, opened as kpostmortem opens it (module debug info by name)."""
    from kpostmortem.inputs.dump import open_dump

    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            meta = corpus.dump_meta(name)
            dump = open_dump(meta["path"], meta["vmlinux"], meta["debuginfo"])
            dump.load_module_debug_info(["crashpoc"])
            cache[name] = dump.prog
        return cache[name]

    return get


def _wait_for(name: str) -> dict:
    wf = (report_of(name).get("blocked_tasks") or {}).get("wait_for")
    assert wf, f"{name}: no wait-for facts in the report"
    return wf


def _links(name: str) -> dict[int, dict]:
    return {link["pid"]: link for link in _wait_for(name)["links"]}


def _member(wait: dict) -> str:
    """``&hub->conf_mutex`` → ``conf_mutex``."""
    return (wait.get("name") or "").rsplit("->", 1)[-1].rsplit(".", 1)[-1]


def test_there_are_hang_scenarios_to_check():
    assert NAMES, "no scenario of the tested groups has [scenario.expect.hang]"
    assert "hung-task" in NAMES


@pytest.mark.parametrize("name", [n for n in NAMES if BY_NAME[n]["expect"]["hang"]["kind"] not in ("spinlock", "rcu")])
def test_wait_objects_and_holders_are_what_the_dump_says(name, programs):
    """Every mutex/rwsem/completion the report names: the task is on its wait list and the
    holder is the lock's owner, as drgn's own helpers read them."""
    from drgn import Object
    from drgn.helpers.linux.list import list_for_each_entry
    from drgn.helpers.linux.locking import mutex_owner, rwsem_owner

    prog = programs(name)
    checked = 0
    for link in _wait_for(name)["links"]:
        w, h = link.get("wait") or {}, link.get("holder") or {}
        kind = w.get("kind")
        if kind == "mutex":
            lock = Object(prog, "struct mutex *", w["address"])
            waiters = [x.task.value_() for x in list_for_each_entry("struct mutex_waiter", lock.wait_list.address_of_(),
                                                                   "list")]
            owner = mutex_owner(lock)
            assert h.get("task") == owner.value_() and h.get("pid") == owner.pid.value_(), (name, link)
        elif kind in ("rwsem-write", "rwsem-read"):
            sem = Object(prog, "struct rw_semaphore *", w["address"])
            waiters = [x.task.value_() for x in list_for_each_entry("struct rwsem_waiter", sem.wait_list.address_of_(),
                                                                   "list")]
            assert h.get("task") == rwsem_owner(sem).value_(), (name, link)
        elif kind == "completion":
            x = Object(prog, "struct completion *", w["address"])
            waiters = [q.task.value_() for q in list_for_each_entry("struct swait_queue",
                                                                   x.wait.task_list.address_of_(), "task_list")]
            assert x.done.value_() == 0 and h.get("pid") is None and h.get("sure") == "unknown", (name, link)
        else:
            continue
        tasks = {t.pid.value_(): t.value_() for t in _tasks(prog, link["pid"])}
        assert tasks[link["pid"]] in waiters, f"{name}: {link['comm']} is not on the wait list of {w['name']}"
        assert w["verified"], (name, link)
        checked += 1
    assert checked, f"{name}: no lock read back"


def _tasks(prog, pid):
    from drgn.helpers.linux.pid import find_task

    return [find_task(prog, pid)]


@pytest.mark.parametrize("name", NAMES)
def test_chain_cycle_and_guilty_frame_match_the_scenario(name, programs):
    exp = BY_NAME[name]["expect"]
    hang = exp["hang"]
    wf = _wait_for(name)
    links = _links(name)
    v = report_of(name)["verdict"]
    assert (v["category"], v["function"]) == (exp["category"], exp["function"]), (name, v["title"])
    if hang["kind"] == "deadlock":
        assert len(wf["cycles"]) == 1, name
        cycle = [links[p] for p in wf["cycles"][0]]
        assert sorted(thread_name(link["comm"]) for link in cycle) == sorted(hang["tasks"])
        assert sorted(_member(link["wait"]) for link in cycle) == sorted(hang["cycle"])
        # each one's holder is the next one
        for i, link in enumerate(cycle):
            assert link["holder"]["pid"] == cycle[(i + 1) % len(cycle)]["pid"]
        for lock in hang["cycle"]:
            assert lock in v["title"], v["title"]
        return
    # Not a deadlock, and not called one.
    assert wf["cycles"] == [] and v["category"] != "deadlock" and "deadlock" not in v["title"].lower()
    if hang["kind"] == "spinlock":
        spin = wf["spinlock"]
        assert _member(spin["wait"]) in hang["locks"]
        assert thread_name(spin["comm"]) == hang["waiter"]
        assert thread_name(spin["holder"]["comm"]) == hang["holder"] and spin["holder"]["cpu"] != spin["cpu"]
        _check_spinlock_in_the_dump(name, programs(name), spin)
        return
    if hang["kind"] == "rcu":
        holders = wf["rcu"]["holders"]
        h = next(h for h in holders if thread_name(h["comm"]) == hang["holder"])
        _check_rcu_in_the_dump(name, programs(name), h)
        return
    chain = max(wf["chains"], key=len)
    assert [thread_name(links[p]["comm"]) for p in chain] == hang["chain"], name
    assert [_member(links[p]["wait"]) for p in chain if links[p].get("wait") and links[p]["wait"].get("name")] \
        == hang["locks"], name


def _check_rcu_in_the_dump(name, prog, holder):
    """The holder's CPU has not reported a quiescent state: its bit is set in its leaf rcu_node's
    qsmask, and its current task is the holder."""
    from drgn.helpers.linux.sched import cpu_curr

    rs = prog["rcu_state"]
    leaves = [rs.node[i] for i in range(prog["rcu_num_nodes"].value_())
              if rs.node[i].address_ >= rs.level[prog["rcu_num_lvls"].value_() - 1].value_()]
    cpu = holder["cpu"]
    rnp = next(n for n in leaves if n.grplo.value_() <= cpu <= n.grphi.value_())
    assert rnp.qsmask.value_() >> (cpu - rnp.grplo.value_()) & 1, f"{name}: CPU {cpu} reported its quiescent state"
    assert cpu_curr(prog, cpu).pid.value_() == holder["pid"]


def _check_spinlock_in_the_dump(name, prog, spin):
    """The holder is its CPU's current task, and the lock word is taken in the dump."""
    from drgn import Object
    from drgn.helpers.linux.sched import cpu_curr

    h = spin["holder"]
    assert cpu_curr(prog, h["cpu"]).value_() == h["task"]
    word = Object(prog, "spinlock_t *", spin["wait"]["address"]).rlock.raw_lock.val.counter.value_()
    assert word & 0xff, f"{name}: the lock is not taken in the dump (0x{word:x})"


@pytest.mark.parametrize("name", NAMES)
def test_reports_show_the_stuck_tasks_own_stack_and_the_holder(name):
    from kpostmortem.render.text import render_text

    text = render_text(report_of(name))
    hang = BY_NAME[name]["expect"]["hang"]
    assert any(h in text for h in ("DEADLOCK  cycle:", "HANG  wait-for chain:", "LOCKUP  ", "RCU STALL  ")), name
    for lock in hang.get("locks", hang.get("cycle", [])):
        assert f"->{lock}" in text, (name, lock)
    assert "stack of " in text
    assert BY_NAME[name]["expect"]["function"] in text.split("HANG")[-1].split("DEADLOCK")[-1]


# ------------------------------------------------------------ damaged or filtered memory

FAKE_LOCK = 0xffffffffff700000   # fixmap addresses no kdump page holds: our own segments
FAKE_TASK = 0xffffffffff710000


def _fake_mutex(prog, owner: int) -> int:
    """A struct mutex in a memory segment of our own, whose owner field is ``owner``."""
    size = prog.type("struct mutex").size
    blob = bytearray(size)
    blob[0:8] = owner.to_bytes(8, "little")
    prog.add_memory_segment(FAKE_LOCK, size, lambda addr, count, offset, phys: bytes(blob[offset:offset + count]))
    return FAKE_LOCK


def test_an_owner_on_an_excluded_page_is_an_unknown_holder_with_the_reason(programs):
    """makedumpfile left the owner's page out: the holder is unknown, and the report says why."""
    import drgn
    from drgn import Object

    from kpostmortem.helpers.locks import lock_owner

    prog = programs("hung-task")

    def excluded(addr, count, offset, phys):
        raise drgn.FaultError("excluded page", addr)

    prog.add_memory_segment(FAKE_TASK, 0x4000, excluded)
    h = lock_owner(Object(prog, "struct mutex *", _fake_mutex(prog, FAKE_TASK | 0x1)))
    assert h.task is None and h.pid is None and h.sure == "unknown"
    assert h.reason == (f"owner 0x{FAKE_TASK:x} unreadable: its page was excluded from the dump by "
                        "makedumpfile's filtering")


def test_an_owner_that_is_no_live_task_is_never_named(programs):
    """An owner pointer to memory that is readable but no task (freed, reused): unknown, not a name."""
    from drgn import Object

    from kpostmortem.helpers.locks import lock_owner

    prog = programs("hung-task")
    not_a_task = prog["init_mm"].address_  # readable kernel data, not a task_struct
    h = lock_owner(Object(prog, "struct mutex *", _fake_mutex(prog, not_a_task)))
    assert h.task is None and h.comm is None and h.sure == "unknown"
    assert "is not a live task" in h.reason
