"""What happened to the CPU, in the right words, and what a stuck CPU was doing — on real dumps.

- No report of a crash without an exception on the crashed CPU (a lockup or stall the watchdog
  interrupted, a panic() call) calls any instruction "faulting" or "trapping", in any format.
- The loop of a stuck CPU (manifest ``expect.polls``): the polled member named, its address
  and value re-read with drgn from the frame's own variable, the closing branch re-decoded.
- A call through a NULL function pointer (``expect.call_target``) names the member.
"""

from __future__ import annotations

import re

import pytest

from kpostmortem.render import render

from .analysis import report_of
from .corpus import load_manifest, open_program

SCENARIOS = [s for s in load_manifest() if not s["expect"].get("damaged")]
FORMATS = ("text", "markdown", "json")
FAULT_WORDS = re.compile(r"\b(trapping|faulting)\b", re.I)


def _no_exception_on_the_crashed_cpu(report: dict) -> bool:
    events = [f.get("event") for f in report["stack"]["frames"] if f.get("event")]
    return not report["fault"] and not any(e["kind"] == "exception" for e in events)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s["name"])
def test_interrupted_or_panicking_cpu_is_never_said_to_fault(scenario):
    report = report_of(scenario["name"])
    if not _no_exception_on_the_crashed_cpu(report):
        assert report["fault"].get("cpu_event"), "an exception frame without its CPU event"
        return
    for fmt in FORMATS:
        out = render(report, fmt)
        bad = [line for line in out.splitlines() if FAULT_WORDS.search(line)]
        assert not bad, f"{scenario['name']} ({fmt}): {bad[:3]}"
    if report["interrupted"]:
        assert "INTERRUPTED INSTRUCTION" in render(report, "text")
        assert "### Interrupted instruction" in render(report, "markdown")
        assert any(e["text"].startswith("interrupted instruction:") for e in report["verdict"]["evidence"])


def test_every_corpus_category_of_a_watchdog_reaches_the_interrupted_section():
    """The words are not vacuous: the corpus has interrupted CPUs, and their frames say so."""
    stuck = [s["name"] for s in SCENARIOS if s["expect"]["category"] in ("soft-lockup", "rcu-stall", "hard-lockup")]
    assert stuck
    for name in stuck:
        it = report_of(name)["interrupted"]
        assert it and it["event"]["kind"] in ("interrupt", "nmi"), name
        held = it.get("stalled_cpu")
        if held:
            # An RCU stall another CPU noticed: the section is the stalled CPU's, checked
            # against drgn's own unwind of the task on it.
            from drgn.helpers.linux.pid import find_task
            from drgn.helpers.linux.sched import task_cpu

            prog = open_program(name)
            task = find_task(prog, held["pid"])
            assert task and task_cpu(task) == held["cpu"], name
            assert prog.stack_trace(task)[it["frame_index"]].interrupted, name
            continue
        frame = report_of(name)["stack"]["frames"][it["frame_index"]]
        assert frame["interrupted"] and frame["event"] == it["event"]


POLLS = [s for s in SCENARIOS if s["expect"].get("polls")]


@pytest.mark.parametrize("scenario", POLLS, ids=lambda s: s["name"])
def test_stuck_loop_polls_the_expected_member_checked_against_the_dump(scenario):
    import capstone
    import drgn

    report = report_of(scenario["name"])
    loop = report["interrupted"]["loop"]
    assert loop and loop["busy_wait"], loop
    poll = next(p for p in loop["polls"] if p.get("name"))
    assert poll["name"] == scenario["expect"]["polls"]
    assert any(scenario["expect"]["polls"] in (e.get("text") or "") for e in loop["exits"])

    prog = open_program(scenario["name"])
    held = report["interrupted"].get("stalled_cpu")
    if held:  # the stalled CPU's task, not the CPU that noticed the stall
        from drgn.helpers.linux.pid import find_task

        trace = prog.stack_trace(find_task(prog, held["pid"]))
    else:
        trace = prog.crashed_thread().stack_trace()
    fn = report["interrupted"]["function"]
    # the frame whose variable names the polled word (an inline chain at the PC: arm64's
    # cpu_relax() is inlined into the spinning function, whose frame holds `dev`)
    frame = trace[poll["dwarf_frame"]] if poll.get("dwarf_frame") is not None else \
        next(f for f in trace if f.function_name == fn or (f.name or "").split(".")[0] == fn)
    # The variable, read by drgn from the frame, points at the polled member.
    var, member = poll["dwarf_variable"], poll["dwarf_member"]
    obj = frame[var]
    assert obj.value_() == poll["base_value"]
    assert obj.member_(member).address_ == poll["address"]
    # The value in the dump, read independently, keeps the loop going.
    assert prog.read(poll["address"], poll["size"]) == poll["value"].to_bytes(poll["size"], "little")
    assert obj.member_(member).value_() == poll["value"]
    # The closing branch, decoded again from the dump, jumps back over the interrupted PC.
    if prog.platform.arch == drgn.Architecture.AARCH64:
        md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
        branches = ("b", "b.", "cbz", "cbnz", "tbz", "tbnz")
    else:
        md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        branches = ("j",)
    insn = next(md.disasm(prog.read(loop["closing_branch"], 16), loop["closing_branch"]))
    assert insn.mnemonic.startswith(branches), insn.mnemonic
    target = int(insn.op_str.split(",")[-1].strip().lstrip("#"), 16)
    assert target == loop["head"] <= report["interrupted"]["pc"] <= loop["closing_branch"]
    assert isinstance(frame.pc, int) and frame.pc == report["interrupted"]["pc"]
    assert drgn.FaultError  # the reads above did not fault


CALLS = [s for s in SCENARIOS if s["expect"].get("call_target")]


@pytest.mark.parametrize("scenario", CALLS, ids=lambda s: s["name"])
def test_null_function_pointer_member_is_named_and_was_null_in_the_dump(scenario):
    report = report_of(scenario["name"])
    target = report["fault"]["call_target"]
    assert target["expression"] == scenario["expect"]["call_target"]
    assert target["value"] == 0 == report["fault"]["pc"]
    assert target["member"] == target["expression"].rsplit("->", 1)[1]
    assert f"`{target['expression']}` was NULL" in report["verdict"]["explanation"]
    prog = open_program(scenario["name"])
    assert prog.read_u64(target["address"]) == 0
    # The first step's variable, read by drgn in the caller's frame, starts the chain.
    first = target["steps"][0]
    trace = prog.crashed_thread().stack_trace()
    caller = report["fault"]["caller"]["function"]
    frame = next(f for f in trace if (f.name or "").split(".")[0] == caller)
    assert frame[first["variable"]].value_() == first["value"]


TRACKED = [s for s in SCENARIOS if s["expect"].get("slab_tracks")]


@pytest.mark.parametrize("scenario", TRACKED, ids=lambda s: s["name"])
def test_use_after_free_names_last_free_and_allocation_with_stacks(scenario):
    """slub_debug=U: the freed object's tracks, read from the dump (the re-check test reads them
    again); who they name is timing (another task may reuse the object), so only their presence
    and shape are expected."""
    report = report_of(scenario["name"])
    obj = report["fault"]["slab_object"]
    assert obj["store_user"] and not obj["allocated"]
    for item, verb in (("free", "last freed by"), ("alloc", "last allocated by")):
        track = obj[item]
        assert track["stack"] and track["by"] and track["pid"] >= 0
        ev = [e for e in report["verdict"]["evidence"] if e["text"].startswith(f"{verb} {track['by']}()")]
        assert ev and ev[0]["facts"], verb
    assert f"last freed by {obj['free']['by']}()" in report["verdict"]["explanation"]
