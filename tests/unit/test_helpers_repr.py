"""Results read well in a REPL and the drgn plugin never breaks drgn — without a dump."""

from __future__ import annotations

import dataclasses

import drgn
import drgn.cli
import pytest

from kpostmortem import helpers
from kpostmortem.frontends import drgn_plugin
from kpostmortem.frontends.shell import _summary
from kpostmortem.helpers import CanaryState, FaultExplanation, Suspect
from kpostmortem.report import Evidence, Outcome, Report, Verdict
from kpostmortem.session import format_fault_explanation, format_stack_checks


def _verdict() -> Verdict:
    return Verdict(
        category="null-pointer-dereference",
        title="BUG: kernel NULL pointer dereference in foo_probe [foo]",
        function="foo_probe",
        module="foo",
        source="drivers/foo.c:123",
        confidence=0.9,
        signature="abc123",
        explanation="foo_probe() read address 0x18 through `dev` == NULL.",
        evidence=[Evidence("log", "BUG: kernel NULL pointer dereference", "printk log"),
                  Evidence("memory", "address class: kernel address", agrees=False)],
        missing=["modules: FaultError"],
    )


def test_verdict_str_is_the_verdict_block():
    text = str(_verdict())
    assert text.splitlines() == [
        "BUG: kernel NULL pointer dereference in foo_probe [foo]",
        "  category null-pointer-dereference · confidence 0.9 · signature abc123",
        "  drivers/foo.c:123 — in foo_probe() [foo]",
        "  foo_probe() read address 0x18 through `dev` == NULL.",
        "  ✔ BUG: kernel NULL pointer dereference   (printk log)",
        "  ✘ address class: kernel address",
        "  ? could not check: modules: FaultError",
    ]


def test_unknown_verdict_str_says_so():
    assert str(Verdict()).splitlines()[:3] == [
        "unknown crash", "  category unknown · confidence 0.0", "  source unknown"]


def test_verdict_and_report_stay_plain_data():
    v = _verdict()
    assert dataclasses.asdict(v)["evidence"][1]["agrees"] is False
    assert repr(v).startswith("Verdict(category='null-pointer-dereference'")
    r = Report(verdict=v, outcomes=[Outcome("log", "ok"), Outcome("fault", "failed", "FaultError")])
    assert r.to_dict()["verdict"]["title"] == v.title


def test_report_str_is_a_summary():
    r = Report(dump={"file": "vmcore", "release": "6.1.0", "arch": "x86_64"}, verdict=_verdict(),
               outcomes=[Outcome("log", "ok"), Outcome("fault", "failed", "FaultError")])
    lines = str(r).splitlines()
    assert lines[0] == "Report on vmcore (6.1.0 x86_64)"
    assert lines[1] == ("  verdict: BUG: kernel NULL pointer dereference in foo_probe [foo] "
                        "(null-pointer-dereference, confidence 0.9)")
    assert lines[2] == "  analyzers: 1/2 ok (fault failed)"
    assert ".to_dict()" in lines[3]


def test_ipython_pretty_printing_uses_str():
    class Printer:
        def text(self, s):
            self.out = s

    p = Printer()
    _verdict()._repr_pretty_(p, False)
    assert p.out == str(_verdict())


def test_drgn_repl_displays_results_with_str():
    for cls in (Verdict, Report, FaultExplanation, CanaryState):
        assert cls in drgn.cli._DISPLAY_STR_TYPES, cls


def _fault() -> FaultExplanation:
    return FaultExplanation(
        frame_index=0, pc=0xFFFFFFFFC000101E, function="foo_probe", source="foo.c:12",
        registers={"rax": 0, "rbx": 0xFFFF888000001000},
        instructions=[
            {"address": 0xFFFFFFFFC000100E, "symbol": "foo_probe+0xe", "text": "mov rax, qword ptr [rbx + 8]",
             "trap": False},
            {"address": 0xFFFFFFFFC000101E, "symbol": "foo_probe+0x1e", "text": "mov qword ptr [rax + 0x18], 0x2a",
             "trap": True},
        ],
        trap_index=1, trapping_instruction="mov qword ptr [rax + 0x18], 0x2a", access="write",
        operand="qword ptr [rax + 0x18]", base_register="rax", displacement=0x18, effective_address=0x18,
        fault_address=0x18, address_matches=True, address_class={"description": "NULL + 0x18"},
        bad_register="rax", bad_register_value=0,
        error_code={"text": "write, kernel mode, page not present"},
        suspects=[Suspect("cfg", "struct foo_cfg *", "foo_probe", "limit", "struct foo_cfg")],
    )


def test_fault_explanation_text():
    lines = format_fault_explanation(_fault()).splitlines()
    assert lines[0] == "faulting instruction in foo_probe (foo.c:12)"
    assert lines[1].startswith("    foo_probe+0xe") and lines[1].endswith("mov rax, qword ptr [rbx + 8]")
    assert lines[2].startswith("  → foo_probe+0x1e") and lines[2].endswith("; rax = 0x0")
    assert "  write of qword ptr [rax + 0x18]" in lines
    assert "  rax = 0x0" in lines
    assert "  effective address 0x18 · fault address 0x18 (they match)" in lines
    assert "  page-fault error code: write, kernel mode, page not present" in lines
    assert lines[-1] == ("  rax holds `cfg` (struct foo_cfg *) in foo_probe(), "
                         "accessed `cfg->limit` (struct foo_cfg)")


def test_fault_explanation_text_without_variable_says_why():
    ex = dataclasses.replace(_fault(), suspects=[], fault_address=None, address_matches=None)
    text = format_fault_explanation(ex)
    assert "effective address 0x18 · fault address ?" in text
    assert "no variable found holding rax (module or kernel DWARF missing?)" in text


def test_fault_explanation_round_trips_through_its_dict():
    from kpostmortem.session import _fault_from_dict

    ex = _fault()
    assert _fault_from_dict(ex.to_dict()) == ex


def test_stack_checks_text():
    report = Report(crashed_task={"pid": 99, "comm": "sh"}, stack_checks={
        "canaries_checked": 57, "canaries_unreadable": 1,
        "canaries_damaged": [{"pid": 99, "comm": "sh", "address": 0x1000, "value": 0x4141414141414141,
                              "intact": False, "overwritten_bytes": 64}],
        "crashed_task_canary_damaged": True, "thread_size": 16384, "guard_page_hits": 0})
    lines = format_stack_checks(report).splitlines()
    assert lines[0].endswith("57 tasks checked, 1 unreadable")
    assert lines[1] == ("  OVERWRITTEN: sh[99] at 0x1000: 0x4141414141414141, "
                        "~64 bytes above it differ from zero")
    assert lines[2] == "  crashed task sh[99]: canary OVERWRITTEN"
    assert lines[3] == "thread stack size (THREAD_SIZE): 16384 bytes"
    assert lines[4] == "guard page hits: 0"  # checks added later show up as they are


def test_stack_checks_text_when_the_analyzer_failed():
    report = Report(outcomes=[Outcome("stack-checks", "failed", "FaultError: at 0x10")])
    assert format_stack_checks(report) == "stack checks: none (failed: FaultError: at 0x10)"


def test_helpers_all_is_complete_and_importable():
    scope: dict = {}
    exec("from kpostmortem.helpers import *", scope)
    assert set(helpers.__all__) <= scope.keys()
    for name in ("crash_verdict", "fault_explanation", "print_fault", "print_verdict",
                 "stack_end_canary", "damaged_canaries"):
        assert name in helpers.__all__


def test_analysis_helpers_refuse_a_program_that_is_not_a_kernel():
    with pytest.raises(ValueError, match="not a kernel"):
        helpers.crash_verdict(drgn.Program())


def test_help_summary_is_the_first_sentence_without_markup():
    assert _summary(helpers.crash_report) == "The full report of the crash (see crash_analysis); .to_dict() for JSON"

    def documented():
        """Return the thing of a task (``struct task_struct *``). More text that is not shown."""

    assert _summary(documented) == "Return the thing of a task (struct task_struct *)"


def test_plugin_hook_ignores_programs_that_are_not_kernels(monkeypatch):
    calls = []
    monkeypatch.setattr(drgn_plugin, "register_commands", lambda: calls.append(1))
    drgn_plugin.drgn_prog_set(drgn.Program())
    assert calls == []


class FakeKernel:
    flags = drgn.ProgramFlags.IS_LINUX_KERNEL


def test_plugin_hook_never_raises(monkeypatch):
    def broken() -> None:
        raise RuntimeError("drgn changed its command API")

    monkeypatch.setattr(drgn_plugin, "register_commands", broken)
    drgn_plugin.drgn_prog_set(FakeKernel())  # logged at debug level, not raised


def test_plugin_registers_each_command_with_help():
    from drgn.commands import DEFAULT_COMMAND_NAMESPACE

    drgn_plugin.register_commands()
    for name in drgn_plugin.COMMANDS:
        command = DEFAULT_COMMAND_NAMESPACE.lookup(FakeKernel(), name)
        assert "-h, --help" in command.format_help()
        assert not command.enabled(drgn.Program())  # Linux kernels only
