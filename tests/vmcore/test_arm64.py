"""arm64 dumps (QEMU TCG guests, in-guest kdump) read as well as x86-64 ones.

What differs is checked against the dump and the module's source: the A64 instruction at the
PC and its operand, ESR_EL1 and FAR, `brk #0x800` resolved through __bug_table, lr (not [sp])
for a call through a NULL pointer, the overflow stack's report; and the same bug gets the same
title and signature as on x86-64.  Parametrised over the arm64 scenarios of the corpus group
(CI builds them like the x86-64 ones).
"""

from __future__ import annotations

import pytest

from kpostmortem.arch import aarch64

from .analysis import report_of
from .corpus import load_manifest, open_program
from .test_fault import source_line

pytestmark = pytest.mark.vmcore

CORPUS = {s["name"]: s for s in load_manifest()}
ARM64 = sorted(s["name"] for s in load_manifest() if s["kernel"].startswith("arm64-"))
__test__ = bool(ARM64)  # `make test-quick` without arm64: nothing collected, rather than skips


def arm64(*names: str) -> list[str]:
    """Those of ``names`` that are arm64 scenarios in the corpus group."""
    return [n for n in names if n in ARM64]


# scenario -> (access, effective address, variable, member, struct)
MEMBER_FAULTS = {
    "arm64-null-write": ("write", 0x18, "cfg", "limit", "struct crashpoc_cfg"),
    "arm64-null-read": ("read", 0x14, "cfg", "threshold", "struct crashpoc_cfg"),
    "arm64-null-write-elf": ("write", 0x18, "cfg", "limit", "struct crashpoc_cfg"),
}


@pytest.mark.parametrize("name", arm64(*MEMBER_FAULTS))
def test_member_fault_decoded_as_a64(name):
    access, ea, var, member, struct = MEMBER_FAULTS[name]
    f = report_of(name)["fault"]
    assert f["trapping_instruction"].split()[0].startswith(("ldr", "str")), f["trapping_instruction"]
    assert f["access"] == access
    assert f["effective_address"] == ea == f["fault_address"]
    assert f["address_matches"] is True
    reg = f["bad_register"]
    assert reg.startswith("x") and f["registers"][reg] == ea - f["displacement"]
    assert (var, member, struct) in {(s["name"], s["member"], s["struct"]) for s in f["suspects"]}
    line = source_line(rf"{var}->{member}\b")
    assert f["source"].endswith(f"crashpoc.c:{line}"), (f["source"], line)
    # ESR_EL1 from the oops, decoded: a data abort at EL1, WnR as the instruction says
    esr = f["error_code"]
    assert esr["name"] == "ESR_EL1" and esr["ec"] == 0x25
    assert esr["write"] is (access == "write")
    assert esr["fault_kind"] == "translation fault"


@pytest.mark.parametrize("name", arm64("arm64-null-write"))
def test_pointer_origin_is_the_detached_member(name):
    origin = report_of(name)["fault"]["origin"]
    assert origin["instruction"].startswith("ldr")
    assert (origin["variable"], origin["member"], origin["struct"]) == ("dev", "cfg", "struct crashpoc_dev")


@pytest.mark.parametrize("name", arm64("arm64-null-call"))
def test_null_call_caller_from_the_link_register(name):
    f = report_of(name)["fault"]
    assert f["invalid_pc"] and f["pc"] == 0
    assert f["error_code"]["instruction_fetch"] is True
    caller = f["caller"]
    assert caller["function"] == "crashpoc_start_dev"
    assert caller["return_address"] == f["registers"]["x30"]


@pytest.mark.parametrize("name", arm64("arm64-bad-page-fault"))
def test_bad_page_fault_is_the_vmalloc_guard_page(name):
    f = report_of(name)["fault"]
    assert f["address_class"]["kind"] == "kernel"
    assert f["mapping"] == "not mapped"
    assert "guard page" in f["identity"]
    assert f["error_code"]["write"] is False and f["error_code"]["fault_kind"] == "translation fault"


@pytest.mark.parametrize("name", arm64("arm64-rodata-write"))
def test_write_to_rodata_is_a_permission_fault_on_a_mapped_page(name):
    report = report_of(name)
    f = report["fault"]
    assert f["access"] == "write" and f["address_matches"] is True
    assert f["error_code"]["fault_kind"] == "permission fault" and f["error_code"]["write"] is True
    assert f["mapping"] == "mapped"
    assert ("lim", "timeout_ms", "struct crashpoc_limits") in \
        {(s["name"], s["member"], s["struct"]) for s in f["suspects"]}
    assert "mapped read-only" in report["verdict"]["explanation"]


@pytest.mark.parametrize("name,warning,pattern", [
    (n, w, p) for n, w, p in (("arm64-bug-on", False, r"\bBUG_ON\("), ("arm64-warn-panic", True, r"\bWARN\("))
    if n in ARM64
])
def test_brk_resolved_through_the_bug_table(name, warning, pattern):
    f = report_of(name)["fault"]
    assert f["trapping_instruction"] == "brk #0x800" and f["is_ud2"]
    assert f["bug"]["file"] == "crashpoc.c"
    assert f["bug"]["line"] == source_line(pattern)
    assert f["bug"]["warning"] is warning


@pytest.mark.parametrize("name", arm64("arm64-stack-overflow"))
def test_overflow_stack_report_matches_the_dump(name):
    """The kernel's "Task stack: [...]" is the crashed task's stack in the dump, and the
    faulting SP (FAR) lies just below it: the recursion ran off its end."""
    from drgn.helpers.linux.printk import get_dmesg

    prog = open_program(name)
    lines = [line.split("] ", 1)[-1] for line in get_dmesg(prog).decode(errors="replace").splitlines()]
    r = aarch64.parse_stack_overflow(lines)
    assert r is not None and {"task", "overflow"} <= set(r.stacks)
    task = prog.crashed_thread().object
    lo, hi = r.stacks["task"]
    assert int(task.stack) == lo and hi - lo in (16384, 32768)
    assert lo - 4096 <= r.far < lo
    assert report_of(name)["verdict"]["category"] == "stack-overflow"


# the same crashpoc bug on both architectures
PAIRS = [("arm64-null-write", "null-write"), ("arm64-null-read", "null-read"), ("arm64-bug-on", "bug-on"),
         ("arm64-warn-panic", "warn-panic"), ("arm64-stack-overflow", "stack-overflow"),
         ("arm64-module-panic", "module-panic"), ("arm64-null-call", "null-call"),
         ("arm64-bad-page-fault", "bad-page-fault"), ("arm64-stack-protector", "stack-protector"),
         ("arm64-stack-canary", "stack-canary"), ("arm64-hung-task", "hung-task"),
         ("arm64-soft-lockup", "soft-lockup")]


@pytest.mark.parametrize("arm,x86", [p for p in PAIRS if p[0] in ARM64 and p[1] in CORPUS])
def test_same_bug_same_title_and_signature_as_x86(arm, x86):
    """The signature leaves the architecture out (docs/verdicts.md): one bug, one signature.
    Except a stack overflow's: drgn's unwind on arm64 never leaves the recursion (its callers,
    part of the signature, are cut at the frame limit) while x86's ORC unwind does."""
    a, b = report_of(arm)["verdict"], report_of(x86)["verdict"]
    assert (a["category"], a["function"], a["module"]) == (b["category"], b["function"], b["module"])
    assert a["title"] == b["title"]
    if a["category"] != "stack-overflow":
        assert a["signature"] == b["signature"]
