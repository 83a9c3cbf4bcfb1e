"""Degraded mode: every corpus dump analysed without any debug info (no vmlinux, no module
files) against the same dump analysed with it. Symbols come from the dump's kallsyms, the
stack from the kernel's built-in ORC, the log through VMCOREINFO, module frames from the
oops log. Plus the failure paths: reads that fail inside an analyzer, cyclic kernel lists.
"""

from __future__ import annotations

import struct

import drgn
import pytest

from kpostmortem.analyzers import Analyzer, run_analyzers
from kpostmortem.context import Context
from kpostmortem.inputs.dump import open_dump
from kpostmortem.inputs.nodwarf import module_names
from kpostmortem.pipeline import analyze_dump
from kpostmortem.report import Report
from kpostmortem.verdict.engine import DEGRADED_PENALTY

from .analysis import degraded_report, report_of
from .corpus import dump_meta, load_manifest

pytestmark = pytest.mark.vmcore

SCENARIOS = load_manifest()

# A scenario whose degraded verdict differs from the full one says so in the manifest: its
# [scenario.expect.text] (a hang whose holder is read from typed memory: without DWARF, as in a
# log, only the waiter is known). Asserted both ways: one that starts agreeing must drop it.


def verdict_key(v: dict) -> tuple:
    return v["category"], v["function"], v["module"] or ""


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s["name"])
def test_degraded_verdict_matches_the_full_one(scenario):
    name = scenario["name"]
    full = report_of(name)["verdict"]
    deg = degraded_report(name)["verdict"]
    assert deg["degraded"] is True and full["degraded"] is False
    assert any("kernel DWARF" in m for m in deg["missing"]), deg["missing"]
    text = scenario["expect"].get("text")
    if text:
        assert verdict_key(deg) != verdict_key(full), f"{name} agrees now: drop its expect.text"
        want = (text["category"], text["function"], text.get("module", scenario["expect"]["module"]))
        assert verdict_key(deg) == want, (name, text["why"])
        assert deg["confidence"] < full["confidence"]
        return
    assert verdict_key(deg) == verdict_key(full), f"{name}: degraded {verdict_key(deg)}, full {verdict_key(full)}"
    # Degraded mode costs confidence (the full analysis may lose more, e.g. to excluded pages).
    assert deg["confidence"] <= 0.99 - DEGRADED_PENALTY


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s["name"])
def test_degraded_report_says_what_it_skipped(scenario):
    rep = degraded_report(scenario["name"])
    by_name = {o["name"]: o for o in rep["analyzers"]}
    assert by_name["degraded"]["status"] == "ok", by_name["degraded"]
    assert by_name["log"]["status"] == "ok" and by_name["stack"]["status"] == "ok"
    for name in ("task", "summary", "modules", "stack-checks"):
        assert by_name[name]["status"] == "skipped" and "DWARF" in by_name[name]["detail"]
    assert rep["debug_info"]["degraded"] and rep["debug_info"]["vmlinux"] is None
    # The module list without DWARF: names from the raw list, taints from the oops log.
    full = report_of(scenario["name"])["modules"]
    if full:
        assert {m["name"] for m in rep["modules"]["loaded"]} == {m["name"] for m in full["loaded"]}


def test_log_through_vmcoreinfo_equals_drgns_log():
    """The DWARF-free ring buffer reader gives the same lines as drgn's typed helper."""
    meta = dump_meta("null-write")
    full = Context(open_dump(meta["path"], meta["vmlinux"], meta["debuginfo"]))
    deg = Context(open_dump(meta["path"], None, [], allow_no_debug_info=True))
    a = [(ln.text, round(ln.timestamp, 6)) for ln in full.log_lines]
    b = [(ln.text, round(ln.timestamp, 6)) for ln in deg.log_lines]
    assert len(a) > 100 and a == b


def test_degraded_stack_and_task_agree_with_dwarf():
    meta = dump_meta("sysrq-c")
    full = report_of("sysrq-c")
    deg = degraded_report("sysrq-c")
    assert deg["crashed_task"]["pid"] == full["crashed_task"]["pid"]
    assert deg["crashed_task"]["cpu"] == full["crashed_task"]["cpu"]
    names = [f["function"] for f in deg["stack"]["frames"]]
    # ORC from kernel memory unwinds through the whole kernel part of the stack.
    for fn in ("sysrq_handle_crash", "write_sysrq_trigger", "vfs_write", "ksys_write"):
        assert any((n or "").startswith(fn) for n in names), (fn, names)
    assert meta["release"] == deg["dump"]["release"]


# ------------------------------------------------------------- failures stay in analyzers


def test_a_failed_read_ends_only_that_analyzer_and_names_the_address():
    meta = dump_meta("null-write")
    dump = open_dump(meta["path"], meta["vmlinux"], meta["debuginfo"])
    ctx = Context(dump)
    report = Report()
    report.dump = {"header_problems": []}
    ran = []

    def reads_nowhere(c, r):
        c.prog.read(0xDEAD000, 8)

    def fine(c, r):
        ran.append("fine")

    run_analyzers(ctx, report, [Analyzer("bad", reads_nowhere), Analyzer("fine", fine)])
    outcomes = {o.name: o for o in report.outcomes}
    assert outcomes["bad"].status == "failed" and "0xdead000" in outcomes["bad"].detail
    assert outcomes["fine"].status == "ok" and ran == ["fine"]


def _fake_kernel(memory: dict[int, bytes], symbols: dict[str, int]) -> drgn.Program:
    """A drgn Program over a few hand-made pages, with symbols, and no debug info."""
    prog = drgn.Program(drgn.Platform(drgn.Architecture.X86_64, drgn.PlatformFlags.IS_64_BIT
                                      | drgn.PlatformFlags.IS_LITTLE_ENDIAN))
    for base, data in memory.items():
        prog.add_memory_segment(base, len(data), lambda addr, count, offset, physical, d=data: d[offset:offset + count])

    def finder(_prog, name, address, one):
        return [drgn.Symbol(n, a, 8, drgn.SymbolBinding.GLOBAL, drgn.SymbolKind.OBJECT)
                for n, a in symbols.items() if (name is None or n == name) and (address is None or a == address)]

    prog.register_symbol_finder("fake", finder, enable_index=0)
    return prog


def _module_page(base: int, nodes: list[tuple[int, int, str]], head: int, first: int) -> bytes:
    page = bytearray(4096)
    struct.pack_into("<Q", page, head - base, first)
    for node, nxt, name in nodes:
        struct.pack_into("<Q", page, node - base, nxt)              # list.next
        page[node - base + 16 : node - base + 16 + len(name)] = name.encode()  # name at module+24
    return bytes(page)


def test_module_list_walk_stops_on_a_cycle():
    base, head = 0xFFFF_8880_0000_0000, 0xFFFF_8880_0000_0000
    a, b = base + 0x100 + 8, base + 0x400 + 8  # list_head at struct module + 8
    page = _module_page(base, [(a, b, "alpha"), (b, a, "beta")], head, a)  # beta points back at alpha
    names, problem = module_names(_fake_kernel({base: page}, {"modules": head}))
    assert names == ["alpha", "beta"]
    assert problem and "loops back" in problem


def test_module_list_walk_is_bounded_and_survives_garbage():
    base, head = 0xFFFF_8880_0000_0000, 0xFFFF_8880_0000_0000
    nodes = [(base + 0x100 + 0x80 * i + 8, base + 0x100 + 0x80 * (i + 1) + 8, f"m{i}") for i in range(20)]
    page = _module_page(base, nodes, head, nodes[0][0])
    names, problem = module_names(_fake_kernel({base: page}, {"modules": head}), limit=5)
    assert names == ["m0", "m1", "m2", "m3", "m4"] and "more than 5" in problem
    # The chain runs into unmapped memory: the names so far, and the address that failed.
    names, problem = module_names(_fake_kernel({base: page}, {"modules": head}))
    assert names[:20] == [f"m{i}" for i in range(20)]
    assert problem and "0x" in problem


# ------------------------------------------------------ corrupted lists in a real dump


def _overlay_pointer(prog: drgn.Program, where: int, value: int) -> None:
    """Make the 8 bytes at ``where`` read as ``value``: drgn gives a later memory segment
    precedence over the dump's own."""
    data = value.to_bytes(8, "little")
    prog.add_memory_segment(where, 8, lambda addr, count, offset, physical: data[offset:offset + count])


@pytest.fixture
def no_hang():
    """Fail, instead of hanging the suite, if an analysis loops."""
    import signal

    def expire(signum, frame):
        raise AssertionError("the analysis did not finish: an unbounded loop over a corrupted list?")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(240)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_cyclic_module_list_does_not_hang(no_hang):
    """The crashed module's list.next points back at itself, never at the list head."""
    from kpostmortem.helpers.modules import loaded_modules

    meta = dump_meta("null-write")
    dump = open_dump(meta["path"], meta["vmlinux"], meta["debuginfo"])
    mod = loaded_modules(dump.prog)[0]
    _overlay_pointer(dump.prog, mod.list.next.address_of_().value_(), mod.list.address_of_().value_())
    assert mod.list.next.value_() == mod.list.address_of_().value_()
    assert len(loaded_modules(dump.prog)) == 1
    report, _ctx = analyze_dump(dump, [])
    assert report.modules["count"] == 1
    assert verdict_key(dataclass_dict(report.verdict)) == verdict_key(report_of("null-write")["verdict"])


def test_cyclic_task_list_does_not_hang(no_hang):
    """The task after init_task in the task list points back at itself. (drgn's for_each_task
    walks the PID table, so this reaches the code that falls back on the task list.)"""
    meta = dump_meta("null-write")
    dump = open_dump(meta["path"], meta["vmlinux"], meta["debuginfo"])
    second = dump.prog["init_task"].tasks.next  # &second_task->tasks; its .next is its first word
    _overlay_pointer(dump.prog, second.value_(), second.value_())
    assert dump.prog["init_task"].tasks.next.next.value_() == second.value_()
    report, _ctx = analyze_dump(dump, [])
    assert verdict_key(dataclass_dict(report.verdict)) == verdict_key(report_of("null-write")["verdict"])


def dataclass_dict(obj) -> dict:
    import dataclasses

    return dataclasses.asdict(obj)


def test_what_degraded_mode_cannot_set_up_is_reported():
    """Before Linux 6.0, VMCOREINFO does not name the kallsyms tables: no symbols, said so."""
    from kpostmortem.inputs.elfinfo import DumpHeader
    from kpostmortem.inputs.nodwarf import enable_degraded

    bare = drgn.Program(drgn.Platform(drgn.Architecture.X86_64,
                                      drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN))
    state = enable_degraded(bare, DumpHeader("kdump", 1))
    assert not state.kallsyms and state.kernel_range is None
    assert "Linux 6.0" in state.problems[0]

    meta = dump_meta("null-write")
    dump = open_dump(meta["path"], None, [], allow_no_debug_info=True)
    dump.degraded.problems.append(state.problems[0])
    report, _ctx = analyze_dump(dump, [])
    assert [p["kind"] for p in report.dump["problems"]] == ["degraded"]
    assert any("no kernel symbols" in m and "--vmlinux" in m for m in report.verdict.missing)
