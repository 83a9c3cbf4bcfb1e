"""Hang rules on the smallest wait-for facts that exercise them (pure data, no dump).

The same rules run on real dumps in tests/vmcore/test_hangs.py; here each case is one rule:
a cycle is a deadlock whatever task the detector named first, the end of a chain is the
suspect, a holder that makes progress is no deadlock, an unknown holder stays unknown.
"""

from __future__ import annotations

import dataclasses

from kpostmortem.render.hang import hang_heading, hang_lines
from kpostmortem.render.markdown import render_markdown
from kpostmortem.render.text import render_text
from kpostmortem.report import Frame, Report
from kpostmortem.verdict import decide
from kpostmortem.verdict.hangs import thread_name

SCHED = ["context_switch", "__schedule", "schedule", "schedule_preempt_disabled", "__mutex_lock.constprop.0"]


def frames(*names, module="drv"):
    out = [Frame(index=i, function=n, offset=0x10, source="kernel/sched/core.c:1") for i, n in enumerate(SCHED)]
    for n in names:
        out.append(Frame(index=len(out), function=n, offset=0x20, module=module, source=f"drv.c:{len(out) + 100}"))
    out.append(Frame(index=len(out), function="kthread", offset=0x30))
    return [dataclasses.asdict(f) for f in out]


SITE = len(SCHED)


def wait(kind, name, site, site_frame=SITE, address=0x1000):
    return {"kind": kind, "address": address, "name": name, "container": "struct foo_dev",
            "container_address": 0xf00, "primitive": "__mutex_lock_common", "site": site,
            "site_frame": site_frame, "site_source": f"drv.c:{site_frame + 100}", "how": "DWARF argument `lock`",
            "verified": True}


def holder(pid, comm, state="D", how="mutex.owner, flag bits 0x7 stripped", sure="certain"):
    return {"task": 0xabc0 + pid, "pid": pid, "comm": comm, "how": how, "sure": sure, "state": state}


def hung_report(pid, tasks, wait_for):
    r = Report()
    r.log = {"records": [
        {"index": 0, "kind": "hung-task", "headline": f"INFO: task x:{pid} blocked for more than 2 seconds.",
         "pid": pid, "rip": None, "call_trace": [], "panic_message": None, "escalates": None},
        {"index": 1, "kind": "panic", "headline": "Kernel panic - not syncing: hung_task: blocked tasks",
         "pid": 30, "rip": None, "call_trace": [], "panic_message": "hung_task: blocked tasks",
         "escalates": 0},
    ]}
    r.frames = [Frame(index=i, function=n) for i, n in enumerate(["panic", "watchdog", "kthread"])]
    r.summary = {"how": {"mode": "watchdog", "description": "hung task detector called panic()"}}
    r.crashed_task = {"pid": 30, "comm": "khungtaskd"}
    r.blocked_tasks = {"count": len(tasks), "hung_task_timeout": 2, "tasks": tasks, "wait_for": wait_for}
    return r


def abba(named_pid):
    tasks = [{"pid": 51, "comm": "kworker/1:2", "blocked_seconds": 4.0, "frames": frames("foo_reconfig")},
             {"pid": 106, "comm": "foo-svc", "blocked_seconds": 4.0, "frames": frames("foo_sync_state")}]
    links = [
        {"pid": 51, "comm": "kworker/1:2", "state": "D", "wait": wait("mutex", "&dev->state_mutex", "foo_reconfig"),
         "holder": holder(106, "foo-svc")},
        {"pid": 106, "comm": "foo-svc", "state": "D", "wait": wait("mutex", "&dev->conf_mutex", "foo_sync_state"),
         "holder": holder(51, "kworker/1:2")},
    ]
    cycle = [51, 106] if named_pid == 51 else [106, 51]
    return hung_report(named_pid, tasks, {"links": links, "chains": [cycle], "cycles": [cycle]})


def test_a_cycle_is_an_abba_deadlock_with_a_title_that_names_both_tasks_and_locks():
    v = decide(abba(51))
    assert v.category == "deadlock"
    assert v.title == "ABBA deadlock between foo-svc and kworker on dev->conf_mutex and dev->state_mutex [drv]"
    assert "wait-for cycle" in " ".join(e.text for e in v.evidence)
    assert "drv.c:105" in " ".join(e.text for e in v.evidence)  # both acquisition sites


def test_the_deadlock_verdict_does_not_depend_on_which_task_the_detector_named_first():
    a, b = decide(abba(51)), decide(abba(106))
    assert (a.function, a.title, a.signature) == (b.function, b.title, b.signature)
    assert a.function == "foo_reconfig"  # the acquisition site that sorts first


def chain_report(last_wait, last_state="D", last_frames=None):
    tasks = [{"pid": 102, "comm": "fooctl", "blocked_seconds": 4.0, "frames": frames("foo_configure")}]
    links = [
        {"pid": 102, "comm": "fooctl", "state": "D", "wait": wait("mutex", "&dev->conf_mutex", "foo_configure"),
         "holder": holder(104, "foo-reset", state=last_state)},
        {"pid": 104, "comm": "foo-reset", "state": last_state, "wait": last_wait,
         "holder": None if last_wait is None or last_wait["kind"] == "sleep" else
         {"how": "completion.done", "sure": "unknown", "reason": "done = 0: nobody has completed it"},
         "frames": last_frames or frames("foo_reset")},
    ]
    return hung_report(102, tasks, {"links": links, "chains": [[102, 104]], "cycles": []})


def test_the_end_of_a_chain_is_the_suspect_not_the_task_the_detector_named():
    v = decide(chain_report(wait("completion", "&dev->reset_done", "foo_reset")))
    assert v.category == "hung-task"
    assert v.function == "foo_reset" and v.module == "drv"
    assert v.source == "drv.c:105"
    assert "the end of the chain" in " ".join(e.text for e in v.evidence)
    assert "fooctl → foo-reset" in v.explanation


def test_a_holder_that_makes_progress_is_a_long_hold_not_a_deadlock():
    sleep = {"kind": "sleep", "primitive": "msleep", "site": "foo_flush", "site_frame": 5,
             "site_source": "drv.c:105", "how": "a timed sleep: it wakes by itself", "verified": False}
    v = decide(chain_report(sleep, last_frames=frames("foo_flush")))
    assert v.category == "hung-task"
    assert v.function == "foo_flush"
    assert "making progress, a long hold and not a deadlock" in " ".join(e.text for e in v.evidence)


def test_a_holder_asleep_without_a_lock_wait_is_blamed_for_its_own_code():
    reader = [dataclasses.asdict(Frame(index=i, function=n, offset=0, module="drv" if n.startswith("foo") else None))
              for i, n in enumerate(["__schedule", "schedule", "schedule_timeout", "foo_read_cfg", "kthread"])]
    v = decide(chain_report(None, last_state="S", last_frames=reader))
    assert v.function == "foo_read_cfg"
    assert "is not waiting for a lock (state S)" in " ".join(e.text for e in v.evidence)


def test_an_unknown_holder_is_said_with_its_reason_and_never_named():
    r = chain_report(wait("completion", "&dev->reset_done", "foo_reset"))
    r.blocked_tasks["wait_for"]["links"][0]["holder"] = {
        "how": "mutex.owner, flag bits 0x7 stripped", "sure": "unknown",
        "reason": "owner 0xff11 unreadable: its page was excluded from the dump by makedumpfile's filtering"}
    r.blocked_tasks["wait_for"]["chains"] = [[102]]
    v = decide(r)
    text = " ".join(e.text for e in v.evidence)
    assert "unknown holder: owner 0xff11 unreadable: its page was excluded" in text
    assert "foo-reset" not in text
    assert v.function == "foo_configure"  # the chain ends at the waiter itself


def test_without_wait_for_facts_the_blocked_tasks_own_stack_still_gives_the_verdict():
    r = chain_report(None)
    r.blocked_tasks.pop("wait_for")
    v = decide(r)
    assert (v.category, v.function) == ("hung-task", "foo_configure")


def test_thread_names_lose_their_per_cpu_suffix_for_stable_titles():
    assert thread_name("kworker/1:2") == "kworker"
    assert thread_name("kworker/u4:0") == "kworker"
    assert thread_name("foo-svc") == "foo-svc"


def test_reports_show_the_cycle_each_wait_object_holder_and_stack():
    r = abba(51)
    r.verdict = decide(r)
    d = r.to_dict()
    assert hang_heading(d) == "DEADLOCK  cycle: kworker/1:2[51] → foo-svc[106] → kworker/1:2[51]"
    lines = "\n".join(hang_lines(d))
    assert "waits for &dev->state_mutex: mutex at 0x1000 in struct foo_dev at 0xf00" in lines
    assert "held by foo-svc[106], state D (mutex.owner, flag bits 0x7 stripped)" in lines
    assert "stack of foo-svc[106]:" in lines and "foo_sync_state" in lines
    assert "DEADLOCK  cycle:" in render_text(d)
    assert "### DEADLOCK  cycle:" in render_markdown(d)


def test_reports_without_wait_for_facts_have_no_hang_section():
    r = chain_report(None)
    r.blocked_tasks.pop("wait_for")
    r.verdict = decide(r)
    d = r.to_dict()
    assert hang_heading(d) is None and hang_lines(d) == []


# ----------------------------------------------------------------- the graph's cycle search

class _Task:
    """Stands in for a ``struct task_struct *`` Object: the graph only asks for its address."""

    def __init__(self, addr):
        self.addr = addr

    def value_(self):
        return self.addr


def _graph(edges, sure="certain"):
    from kpostmortem.helpers.locks import Holder, WaitForGraph, WaitLink

    g = WaitForGraph()
    nodes = set(edges) | {v for v in edges.values() if v is not None}
    for n in sorted(nodes):
        h = None if edges.get(n) is None else Holder(_Task(edges[n]), edges[n], f"t{edges[n]}", sure=sure)
        g.links[n] = WaitLink(_Task(n), n, f"t{n}", "D", None, h)
    return g


def test_cycles_are_found_once_each_whatever_the_walk_starts_from():
    from kpostmortem.helpers.locks import _cycles

    # 1→2→3→1 with 4→5→2 leading into it, and a separate 6⇄7, and 8 waiting on nobody.
    g = _graph({1: 2, 2: 3, 3: 1, 4: 5, 5: 2, 6: 7, 7: 6, 8: None})
    cycles = sorted(sorted(c) for c in _cycles(g))
    assert cycles == [[1, 2, 3], [6, 7]]
    assert [link.pid for link in g.chain(4)] == [4, 5, 2, 3, 1]


def test_hints_do_not_make_a_cycle():
    from kpostmortem.helpers.locks import _cycles

    assert _cycles(_graph({1: 2, 2: 1}, sure="hint")) == []


def test_a_long_chain_is_walked_in_one_pass():
    from kpostmortem.helpers.locks import _cycles

    n = 20000
    g = _graph({i: i + 1 for i in range(n)} | {n: 0})
    assert [len(c) for c in _cycles(g)] == [n + 1]


def test_user_processes_of_the_wait_for_graph_are_redacted_with_comms():
    import json

    from kpostmortem.render.redact import redact_report

    r = abba(51)
    r.verdict = decide(r)
    d = r.to_dict()
    links = d["blocked_tasks"]["wait_for"]["links"]
    links[0]["kernel_thread"] = True                       # kworker/1:2
    links[1]["comm"], links[1]["kernel_thread"] = "payroll-sync", False
    links[0]["holder"]["comm"] = "payroll-sync"
    out = json.dumps(redact_report(d, comms=True))
    assert "payroll-sync" not in out
    assert "kworker/1:2" in out


def test_an_rcu_stall_blames_the_cpu_that_holds_the_grace_period_up_not_the_one_that_noticed():
    r = Report()
    r.log = {"records": [{"index": 0, "kind": "rcu-stall", "headline": "rcu: INFO: rcu_preempt detected stalls",
                          "pid": None, "rip": None, "call_trace": [], "panic_message": None, "escalates": None}]}
    # The CPU that noticed was idle; the one that holds the grace period up polls in a module.
    r.frames = [Frame(index=0, function="panic"), Frame(index=1, function="rcu_sched_clock_irq"),
                Frame(index=2, function="default_idle", interrupted=True), Frame(index=3, function="do_idle")]
    r.summary = {"how": {"mode": "watchdog", "description": "RCU stall"}}
    r.crashed_task = {"pid": 0}
    holder = [Frame(index=0, function="nmi_handle"), Frame(index=1, function="delay_tsc", interrupted=True),
              Frame(index=2, function="foo_poll", module="drv", source="drv.c:42"),
              Frame(index=3, function="kthread")]
    r.blocked_tasks = {"count": 0, "tasks": [], "wait_for": {"links": [], "chains": [], "cycles": [], "rcu": {
        "holders": [{"cpu": 1, "pid": 77, "comm": "foo-poll", "state": "R",
                     "how": "rcu_node 0 qsmask: CPU 1 has not reported a quiescent state",
                     "frames": [dataclasses.asdict(f) for f in holder]}]}}}
    v = decide(r)
    assert (v.category, v.function, v.module, v.source) == ("rcu-stall", "foo_poll", "drv", "drv.c:42")
    assert "foo-poll on CPU 1" in v.explanation
    assert hang_heading(r.to_dict()) == "RCU STALL  grace period held up by foo-poll[77] on CPU 1"
