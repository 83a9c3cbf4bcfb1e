"""Hangs: the wait-for chain and cycle behind a hung task or a soft lockup, as verdict rules.

Pure rules over the blocked-tasks section (``blocked_tasks.wait_for``, filled by the
blocked-tasks analyzer from the dump): who waits for what, who holds it, the chains and the
cycles. They decide

- a cycle is a deadlock (category ``deadlock``, variant ``abba`` for two tasks);
- the guilty frame of a hang is the code at the end of the chain, the holder that does not let
  go: the task's own wait site when nobody holds what it waits for (a completion nobody
  completes), the holder's wait site when it sleeps on something nobody will give it, the
  holder's own code when it sleeps or runs with the lock held;
- for a deadlock, every task of the cycle is equally guilty: the guilty frame is the acquisition
  site whose function name sorts first, so that every dump of the same deadlock gets the same
  signature, whichever task the detector happened to name first;
- a soft lockup spinning on a lock held by a task on another CPU: the holder's code.
"""

from __future__ import annotations

import re
from typing import Any

from kpostmortem.report import Frame, Report
from kpostmortem.verdict.frames import base_name, choose_guilty

__all__ = ["hang_explanation", "hang_guilty", "rcu_holder_guilty", "spin_holder_guilty", "thread_name"]

# Delay loops and preemption bookkeeping a busy-waiting holder is found in: its caller polls.
BUSY_WAIT_HELPERS = frozenset({
    "delay_tsc", "delay_loop", "delay_halt", "delay_halt_mwaitx", "delay_halt_tpause", "__delay", "__const_udelay",
    "__udelay", "__ndelay", "udelay", "ndelay", "mdelay", "__preempt_count_add", "__preempt_count_sub",
    "preempt_count_add", "preempt_count_sub", "__preempt_count_dec_and_test", "preempt_count_dec_and_test",
    "should_resched", "touch_nmi_watchdog", "touch_softlockup_watchdog", "cpu_relax",
    "rep_nop", "native_read_tsc", "rdtsc", "rdtsc_ordered",
})
# The NMI that stopped another CPU for the dump: not what that CPU was doing.
STOP_PLUMBING = frozenset({
    "crash_nmi_callback", "nmi_handle", "default_do_nmi", "exc_nmi", "asm_exc_nmi", "nmi_cpu_backtrace",
    "nmi_cpu_backtrace_handler", "nmi_raise_cpu_backtrace", "crash_save_cpu", "native_stop_other_cpus",
    "smp_stop_nmi_callback", "stop_this_cpu", "native_safe_halt", "arch_cpu_idle",
})

_PER_CPU_SUFFIX = re.compile(r"/[\w:.+-]*$")


def thread_name(comm: str | None) -> str:
    """A task name without the per-CPU or per-pool suffix of kernel threads (``kworker/1:2`` →
    ``kworker``), so that titles stay the same between boots."""
    if not comm:
        return "?"
    return _PER_CPU_SUFFIX.sub("", comm) or comm


def _wait_for(report: Report) -> dict[str, Any]:
    return (report.blocked_tasks or {}).get("wait_for") or {}


def _links(report: Report) -> dict[int, dict]:
    return {link["pid"]: link for link in _wait_for(report).get("links") or []}


def _frames_of(report: Report, pid: int) -> list[Frame]:
    for t in (report.blocked_tasks or {}).get("tasks") or []:
        if t.get("pid") == pid and t.get("frames"):
            return [Frame(**f) for f in t["frames"]]
    link = _links(report).get(pid) or {}
    return [Frame(**f) for f in link.get("frames") or []]


def _who(link: dict) -> str:
    return f"{link.get('comm')}[{link.get('pid')}]"


def _obj(wait: dict | None) -> str:
    if not wait:
        return "nothing found"
    name = wait.get("name")
    kind = wait.get("kind", "?").replace("rwsem-write", "rw_semaphore, write side").replace(
        "rwsem-read", "rw_semaphore, read side")
    addr = f" 0x{wait['address']:x}" if wait.get("address") else ""
    container = f" in {wait['container']}" if wait.get("container") and name and name.startswith("&") else ""
    return f"{name} ({kind}{addr}{container})" if name else f"{kind}{addr}"


def _short(wait: dict | None) -> str:
    """``hub->conf_mutex``: the object's name for a title."""
    name = (wait or {}).get("name") or (wait or {}).get("kind") or "?"
    return name.removeprefix("&")


def _site(wait: dict | None) -> str:
    if not wait or not wait.get("site"):
        return ""
    src = f" ({wait['site_source']})" if wait.get("site_source") else ""
    return f" in {wait['site']}(){src}"


def _holder_text(h: dict | None) -> str:
    if not h:
        return "no holder"
    if h.get("pid") is not None:
        sure = "" if h.get("sure") == "certain" else f", {h.get('sure')}"
        return f"held by {h.get('comm')}[{h['pid']}] ({h.get('how')}{sure})"
    return f"unknown holder: {h.get('reason') or h.get('how')}"


def _set_guilty(d: Any, frames: list[Frame], frame_index: int | None, skip_busy: bool = False) -> bool:
    """Make ``frames[frame_index]`` (or the first non-primitive frame) the guilty one."""
    g = None
    if frame_index is not None and 0 <= frame_index < len(frames):
        g = frames[frame_index]
    else:
        start = 0
        if skip_busy:
            # The holder's own frames start at the kernel PC the NMI that stopped its CPU for the
            # dump interrupted (frame 0 when the trace starts from the saved registers; the
            # last frame, user space's registers at the syscall, is not one).
            start = next((i for i, f in enumerate(frames)
                          if f.interrupted and f.pc is not None and f.pc >= 1 << 63), 0)
            while start < len(frames) and (base_name(frames[start].function) in BUSY_WAIT_HELPERS
                                           or base_name(frames[start].function) in STOP_PLUMBING):
                start += 1
        g = choose_guilty(frames[start:], skip_scheduler=True, skip_interrupt=True)
    if g is None:
        return False
    d.guilty = None
    d.function, d.module, d.source = base_name(g.function), g.module, g.source
    d.callers = [base_name(f.function) or "" for f in frames[g.index + 1:] if not f.inline]
    return True


def hang_guilty(d: Any, report: Report, rec: dict | None) -> bool:
    """Hung task: follow the wait-for chain from the task the log names; a cycle is a deadlock.

    Sets the decision's category (``deadlock`` for a cycle), guilty function, callers, title
    message and evidence. False when the dump gave no wait-for facts (the caller falls back on
    the blocked task's own stack).
    """
    wf = _wait_for(report)
    links = _links(report)
    if not links:
        return False
    pid = (rec or {}).get("pid")
    tasks = (report.blocked_tasks or {}).get("tasks") or []
    if pid not in links:
        pid = next((t["pid"] for t in tasks if t.get("pid") in links), next(iter(links)))
    cycles = wf.get("cycles") or []
    cycle = next((c for c in cycles if pid in c), cycles[0] if cycles else None)
    if cycle:
        return _deadlock(d, report, [links[p] for p in cycle if p in links])
    chain = next((c for c in wf.get("chains") or [] if c and c[0] == pid), [pid])
    chain_links = [links[p] for p in chain if p in links]
    if not chain_links:
        return False
    last = chain_links[-1]
    wait = last.get("wait") or {}
    frames = _frames_of(report, last["pid"])
    if not frames:
        return False
    if len(chain_links) == 1:
        if not _set_guilty(d, frames, wait.get("site_frame")):
            return False
        secs = next((t.get("blocked_seconds") for t in tasks if t.get("pid") == last["pid"]), None)
        for_secs = f" for {secs} s" if secs is not None else ""
        d.add("state", f"task {_who(last)} is in D state{for_secs}, waiting in {d.function}() for {_obj(wait)}; "
              f"{_holder_text(last.get('holder'))}", wait.get("how") or "the blocked task's own stack in the dump",
              0.25 if wait.get("verified") else 0.2)
        return True
    for link in chain_links:
        w = link.get("wait")
        if not w:
            doing = f"is not waiting for a lock (state {link.get('state')})"
        elif w.get("kind") == "sleep":
            doing = f"is in a timed sleep ({w.get('primitive')}){_site(w)}: it wakes by itself"
        else:
            doing = f"waits for {_obj(w)}{_site(w)}, {_holder_text(link.get('holder'))}"
        d.add("state", f"{_who(link)} ({link.get('state')}) {doing}", (w or {}).get("how") or "its stack", 0.05)
    holds = _short(chain_links[-2].get("wait"))
    if not wait or wait.get("kind") in (None, "unknown"):
        why = (f"the end of the chain: {_who(last)} holds {holds} and is not waiting for a lock "
               f"(state {last.get('state')}): its own code keeps the lock")
        ok = _set_guilty(d, frames, None)
    elif wait.get("kind") == "sleep":
        why = (f"the end of the chain: {_who(last)} holds {holds} through a timed sleep in "
               f"{wait.get('site')}(): it is making progress, a long hold and not a deadlock")
        ok = _set_guilty(d, frames, wait.get("site_frame"))
    else:
        why = (f"the end of the chain: {_who(last)} holds {holds} while it waits for {_obj(wait)}, "
               f"{_holder_text(last.get('holder'))}")
        ok = _set_guilty(d, frames, wait.get("site_frame"))
    if ok:
        d.add("stack", f"guilty frame: {d.function}() of {_who(last)}, {why}; the waiters only wait",
              "wait-for chain over the dump's lock owners", 0.2)
        d.message = " → ".join(thread_name(link.get("comm")) for link in chain_links)
    return ok


def _deadlock(d: Any, report: Report, cycle: list[dict]) -> bool:
    if not cycle:
        return False
    d.category = "deadlock"
    d.variant = "abba" if len(cycle) == 2 else None
    names = [thread_name(link.get("comm")) for link in cycle]
    objs = [_short(link.get("wait")) for link in cycle]
    # Stable names order: the title and signature must not depend on which task the detector saw first.
    pairs = sorted(zip(names, objs, strict=True))
    who = " and ".join(p[0] for p in pairs) if len(cycle) == 2 else ", ".join(p[0] for p in pairs)
    what = " and ".join(sorted(objs)) if len(cycle) == 2 else ", ".join(sorted(objs))
    d.message = f"{who} on {what}"
    for i, link in enumerate(cycle):
        nxt = cycle[(i + 1) % len(cycle)]
        d.add("memory", f"{_who(link)} waits for {_obj(link.get('wait'))}{_site(link.get('wait'))}, held by "
              f"{_who(nxt)} ({(link.get('holder') or {}).get('how')})",
              (link.get("wait") or {}).get("how") or "its stack", 0.1)
    loop = " → ".join(_who(link) for link in cycle + cycle[:1])
    d.add("state", f"wait-for cycle: {loop}: none of them can ever run again", "wait-for graph of the blocked tasks",
          0.2)
    guilty_link = min(cycle, key=lambda link: ((link.get("wait") or {}).get("site") or "~", link.get("pid") or 0))
    frames = _frames_of(report, guilty_link["pid"])
    if not _set_guilty(d, frames, (guilty_link.get("wait") or {}).get("site_frame")):
        return False
    sites = "; ".join(f"{_who(link)} at {(link.get('wait') or {}).get('site_source') or '?'}" for link in cycle)
    d.add("stack", f"acquisition sites: {sites}. Each task takes the locks in the other's reverse order; the "
          f"guilty frame is the site that sorts first ({d.function}), so that every dump of this deadlock "
          "shares a signature", "wait sites on the tasks' own stacks")
    return True


def spin_holder_guilty(d: Any, report: Report) -> bool:
    """Soft lockup on a spinlock: the holder's code, found on another CPU, is the suspect."""
    spin = _wait_for(report).get("spinlock")
    if not spin:
        return False
    holder, wait = spin.get("holder") or {}, spin.get("wait") or {}
    d.add("memory", f"{spin.get('comm')}[{spin.get('pid')}] spins in {wait.get('primitive')}() on "
          f"{_obj(wait)}{_site(wait)}", wait.get("how") or "its stack", 0.05)
    if holder.get("pid") is None:
        d.add("memory", f"holder of {_short(wait)}: {_holder_text(holder)}", "frames of the other CPUs", 0.0)
        return False
    frames = [Frame(**f) for f in spin.get("holder_frames") or []]
    if not frames or not _set_guilty(d, frames, None, skip_busy=True):
        return False
    d.add("memory", f"{_short(wait)} is held by {holder.get('comm')}[{holder['pid']}] on CPU {holder.get('cpu')} "
          f"({holder.get('sure')}): {holder.get('reason')}", "DWARF variables of the other CPUs' frames",
          0.1 if holder.get("sure") == "likely" else 0.0)
    d.add("stack", f"guilty frame: {d.function}() of {holder.get('comm')}[{holder['pid']}], which holds the lock "
          f"the stuck CPU spins on; the spinning task ({spin.get('comm')}) only waits",
          "the holder's stack on its CPU")
    return True


def rcu_holder_guilty(d: Any, report: Report) -> bool:
    """RCU stall: the code of the CPU or task that holds the grace period up, read from the
    rcu_node tree, is the suspect, whichever CPU noticed the stall and panicked."""
    holders = (_wait_for(report).get("rcu") or {}).get("holders") or []
    for h in holders:
        cpu = f"CPU {h['cpu']}, running " if h.get("cpu") is not None else ""
        d.add("state", f"grace period held up by {cpu}{h.get('comm')}[{h.get('pid')}] (state {h.get('state')}): "
              f"{h.get('how')}", "rcu_state's rcu_node tree", 0.05)
    h = next((h for h in holders if h.get("frames")), None)
    if h is None:
        return False
    frames = [Frame(**f) for f in h["frames"]]
    if not _set_guilty(d, frames, None, skip_busy=True):
        return False
    facts = [{"type": "task", "pid": h["pid"], "state": h.get("state"), "function": d.function}] \
        if h.get("pid") is not None and h.get("state") else []
    d.add("stack", f"guilty frame: {d.function}() of {h.get('comm')}[{h.get('pid')}], which holds the grace period up; "
          "the CPU that reported the stall only noticed it", "the holder's own stack", facts=facts)
    return True


def hang_explanation(d: Any, report: Report) -> str | None:
    """The verdict's sentence for a deadlock, a wait-for chain or a lock-holding soft lockup."""
    wf = _wait_for(report)
    if d.category == "deadlock":
        return (f"deadlock: {d.message}; each task holds the lock the next one waits for, so none can go on. "
                "khungtaskd panicked (hung_task_panic).")
    if d.category == "hung-task" and d.message and "→" in d.message:
        return (f"wait-for chain {d.message}: the first task waits for a lock held by the next; "
                f"{d.function}() at the end of the chain does not let go. khungtaskd panicked (hung_task_panic).")
    rcu = next((h for h in (wf.get("rcu") or {}).get("holders") or [] if h.get("frames")), None)
    if d.category == "rcu-stall" and rcu:
        where = f" on CPU {rcu['cpu']}" if rcu.get("cpu") is not None else ""
        return (f"{rcu.get('comm')}{where} stayed inside an RCU read-side critical section (or kept its CPU from "
                f"a quiescent state) in {d.function}(), so the grace period could not end; RCU's stall detector "
                "panicked (panic_on_rcu_stall).")
    spin = wf.get("spinlock") or {}
    if d.category == "soft-lockup" and (spin.get("holder") or {}).get("pid") is not None:
        h = spin["holder"]
        return (f"{spin.get('comm')} spun on {_short(spin.get('wait'))} with preemption off until the soft-lockup "
                f"watchdog fired; {h.get('comm')} on CPU {h.get('cpu')} holds it in {d.function}().")
    return None
