"""The fault explanation on real dumps, checked against what crashpoc.c does at each trigger.

Expected values come from the module's source (fixtures/vmcores/crashpoc/crashpoc.c): the
struct member each trigger touches, its offset, the variable holding the bad pointer.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .analysis import report_of
from .corpus import load_manifest

SOURCE = (Path(__file__).parents[2] / "fixtures/vmcores/crashpoc/crashpoc.c").read_text().splitlines()
NAMES = {s["name"] for s in load_manifest()}


def source_line(pattern: str) -> int:
    """1-based line of the first code (not comment) line matching pattern."""
    return next(
        i for i, line in enumerate(SOURCE, 1)
        if re.search(pattern, line) and not line.strip().startswith(("/*", "*", "//"))
    )


# scenario -> (access, effective address, address class kind, variable, member, struct)
MEMBER_FAULTS = {
    "null-write": ("write", 0x18, "near-null", "cfg", "limit", "struct crashpoc_cfg"),
    "null-read": ("read", 0x14, "near-null", "cfg", "threshold", "struct crashpoc_cfg"),
    "timer-oops": ("read-write", 0x20, "near-null", "cfg", "interval_ms", "struct crashpoc_cfg"),
    "gpf": ("read", 0xDEAD000000000110, "poison", "next", "cookie", "struct crashpoc_req"),
    "null-write-612": ("write", 0x18, "near-null", "cfg", "limit", "struct crashpoc_cfg"),
}


@pytest.mark.parametrize("name", sorted(MEMBER_FAULTS))
def test_member_fault_names_instruction_register_variable_and_member(name):
    access, ea, kind, var, member, struct = MEMBER_FAULTS[name]
    f = report_of(name)["fault"]
    assert f["access"] == access
    assert f["effective_address"] == ea
    assert f["address_matches"] is True, "decoded effective address must equal the oops's CR2"
    assert f["address_class"]["kind"] == kind
    reg = f["bad_register"]
    assert reg and f"[{reg}" in f["operand"].replace("[r", "[r"), f["operand"]
    assert f["registers"][reg] == ea - f["displacement"]
    suspects = {(s["name"], s["member"], s["struct"]) for s in f["suspects"]}
    assert (var, member, struct) in suspects, suspects
    line = source_line(rf"{var}->{member}\b")
    assert f["source"].endswith(f"crashpoc.c:{line}"), (f["source"], line)


def test_null_pointer_origin_is_the_detached_member():
    """rax was loaded from dev->cfg, the member crashpoc_detach_cfg() cleared."""
    origin = report_of("null-write")["fault"]["origin"]
    assert (origin["variable"], origin["member"], origin["struct"]) == ("dev", "cfg", "struct crashpoc_dev")


def test_gpf_names_the_list_poison_and_does_not_misattribute_origin():
    f = report_of("gpf")["fault"]
    assert f["poison"].startswith("LIST_POISON1")
    # rax = *rax: the base was overwritten by the load, so no variable may be claimed for it.
    assert "variable" not in (f["origin"] or {})


@pytest.mark.parametrize("name", ["bad-page-fault", "bad-page-fault-612"])
def test_bad_page_fault_is_the_vmalloc_guard_page(name):
    f = report_of(name)["fault"]
    assert f["address_class"]["kind"] == "kernel"
    assert f["mapping"] == "not mapped"
    assert "guard page" in f["identity"] and "0x40 bytes past its end" in f["identity"]
    assert f["error_code"]["write"] is False and f["error_code"]["present"] is False


@pytest.mark.parametrize("name,warning,pattern", [
    ("bug-on", False, r"\bBUG_ON\("),
    ("bug-on-612", False, r"\bBUG_ON\("),
    ("warn-panic", True, r"\bWARN\("),
])
def test_bug_table_entry_read_from_the_dump(name, warning, pattern):
    f = report_of(name)["fault"]
    assert f["is_ud2"]
    assert f["bug"]["file"] == "crashpoc.c"
    assert f["bug"]["line"] == source_line(pattern)
    assert f["bug"]["warning"] is warning


def test_panic_has_no_exception_frame_to_decode():
    assert report_of("module-panic")["fault"] == {}
    assert any(o["name"] == "fault" and o["status"] == "skipped" for o in report_of("module-panic")["analyzers"])
