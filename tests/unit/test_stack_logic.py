"""The pure parts of the stack checks, on literal bytes, names and SPs (no dump needed)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kpostmortem.helpers.stack import (
    STACK_END_MAGIC,
    CanaryState,
    FrameUse,
    Recursion,
    StackBounds,
    StackRange,
    StackScan,
    StackUsage,
    TextAddress,
    _canary_damage,
    _find_cycles,
    _follows_call,
    _frame_sizes,
    _FrameFact,
    _leading_zero_bytes,
    _protector_victim,
    _trace_problems,
)

MAGIC = STACK_END_MAGIC.to_bytes(8, "little")
W = 8


def stack(canary: bytes, *words: int, zeros: int = 64) -> bytes:
    """A stack from the canary up: the canary word, the given words, then zero words."""
    return canary + b"".join(w.to_bytes(8, "little") for w in words) + bytes(8 * zeros)


# ------------------------------------------------------------------ stack-end canary


def test_intact_canary_reports_the_unused_bytes_like_the_kernel():
    changed, overwritten, not_used = _canary_damage(stack(MAGIC, zeros=10) + (1).to_bytes(8, "little"))
    assert (changed, overwritten) == (0, 0)
    # stack_not_used() counts from the canary word to the first non-zero word.
    assert not_used == 8 + 10 * 8


def test_zeroed_canary_under_unused_stack_is_a_stray_write_of_four_bytes():
    changed, overwritten, not_used = _canary_damage(stack(bytes(8), zeros=100) + b"\x01" * 8)
    assert changed == 4  # 0x57ac6e9d: the upper four bytes were zero already
    assert overwritten == 4
    assert not_used == 8 + 100 * 8
    state = CanaryState(99, "sh", 0x1000, 0x2000, 0, False, changed, overwritten, not_used)
    assert state.cause == "stray write"


def test_canary_reached_by_the_stack_itself_is_an_overflow():
    data = stack((0xFFFFFFFF81000000).to_bytes(8, "little"), 0x1234, 0x5678, zeros=4)
    changed, overwritten, not_used = _canary_damage(data)
    assert changed == 8
    assert not_used == 8  # the word above the canary is in use
    assert overwritten == 3 * 8  # canary + two non-zero words up to the first zero word
    state = CanaryState(1, "init", 0x1000, 0x2000, 0xFFFFFFFF81000000, False, changed, overwritten, not_used)
    assert state.cause == "overflow"


def test_one_byte_scribble_counts_one_changed_byte():
    canary = bytearray(MAGIC)
    canary[0] = 0x00
    changed, overwritten, _ = _canary_damage(stack(bytes(canary)))
    assert (changed, overwritten) == (1, 1)


def test_big_endian_canary():
    magic = STACK_END_MAGIC.to_bytes(8, "big")
    assert _canary_damage(magic + bytes(64), byteorder="big")[0] == 0
    changed, overwritten, _ = _canary_damage(bytes(8) + bytes(64), byteorder="big")
    # On big-endian the magic's bytes are the last four of the word.
    assert (changed, overwritten) == (4, 4)


def test_canary_state_text_and_dict():
    ok = CanaryState(1, "init", 0x1000, 0xFFFF0000, STACK_END_MAGIC, True, stack_not_used=4096,
                     headroom_exact=False)
    assert "intact" in str(ok) and "at least 4096" in str(ok)
    assert ok.cause is None
    bad = CanaryState(99, "sh", 0x1000, 0xFFFF0000, 0, False, 4, 4, 12776)
    d = bad.to_dict()
    assert d["cause"] == "stray write" and d["value"] == 0
    assert "OVERWRITTEN" in str(bad) and "0x57ac6e9d" in str(bad)
    gone = CanaryState(7, "zombie", 0x1000, 0, None, None, no_stack=True)
    assert "exited" in str(gone)


# ------------------------------------------------------------------ frame sizes and recursion


def test_frame_sizes_from_successive_sps():
    assert _frame_sizes([0x1000, 0x1218, 0x1430, None, 0x2000]) == [0x218, 0x218, None, None, None]
    assert _frame_sizes([]) == []


def test_plain_recursion_is_one_run():
    names = ["f"] * 29 + ["caller", "entry"]
    assert _find_cycles(names) == [(0, 1, 29)]


def test_mutual_recursion_is_a_cycle_of_two():
    names = ["leaf"] + ["a", "b"] * 5 + ["top"]
    assert _find_cycles(names) == [(1, 2, 5)]


def test_too_few_repeats_are_not_recursion():
    assert _find_cycles(["f", "f", "g"]) == []
    assert _find_cycles(["a", "b", "a", "b", "c"]) == []


def test_a_name_repeated_is_period_one_not_a_longer_cycle():
    assert _find_cycles(["f"] * 8) == [(0, 1, 8)]


def test_unknown_frames_never_form_a_cycle():
    assert _find_cycles([None] * 6 + ["g"]) == []


def test_two_separate_runs():
    names = ["x"] * 3 + ["y"] + ["z"] * 4
    assert _find_cycles(names) == [(0, 1, 3), (4, 1, 4)]


def test_recursion_summary_reads_like_a_person_wrote_it():
    r = Recursion(("crashpoc_recurse",), 29, 0, 28, 536, 15544)
    assert r.summary == "crashpoc_recurse × 29, 536 bytes per frame (15544 bytes in all)"
    assert r.to_dict()["functions"] == ["crashpoc_recurse"]
    cycle = Recursion(("a", "b"), 5, 1, 10, 320, 1600)
    assert cycle.summary.startswith("a → b × 5, 320 bytes per cycle")


# ------------------------------------------------------------------ stack-protector


def test_protector_victim_is_the_real_frame_after_stack_chk_fail():
    names = ["crash_setup_regs", "__crash_kexec", "panic", "__stack_chk_fail", "victim", "caller"]
    inline = [True, False, False, False, False, False]
    assert _protector_victim(names, inline) == (3, 4)


def test_protector_victim_skips_inlined_callees_to_the_frame_owning_the_canary():
    names = ["panic", "__stack_chk_fail", "inlined_helper", "victim", "caller"]
    assert _protector_victim(names, [False, False, True, False, False]) == (1, 3)


def test_no_stack_chk_fail_no_victim():
    assert _protector_victim(["panic", "f"], [False, False]) is None
    assert _protector_victim(["panic", "__stack_chk_fail"], [False, False]) == (1, None)


# ------------------------------------------------------------------ return addresses


@pytest.mark.parametrize("before, expect", [
    (b"\x90\x90" + b"\xe8\x10\x20\x30\x40", True),           # call rel32
    (b"\x90" * 5 + b"\xff\xd0", True),                      # call rax
    (b"\x90" * 4 + b"\x41\xff\xd3", True),                  # call r11
    (b"\x90" + b"\xff\x15\x00\x10\x00\x00", True),          # call [rip + disp32]
    (b"\x90" * 3 + b"\xff\x54\x24\x08", True),              # call [rsp + 8]
    (b"\x90" * 6 + b"\xc3", False),                         # ret
    (b"\x48\x89\xc7\x48\x89\xde\x90", False),               # mov; mov; nop
])
def test_follows_call(before, expect):
    assert _follows_call(before) is expect


def test_stack_scan_is_labelled_a_guess_and_merges_repeats():
    scan = StackScan(0x1000, 0x2000, [
        TextAddress(0x1008, 0xFFFFFFFF81000010, "f+0x10", "f", None, True),
        TextAddress(0x1010, 0xFFFFFFFF81000010, "f+0x10", "f", None, True),
        TextAddress(0x1018, 0xFFFFFFFF81000100, "stale+0x5", "stale", None, False),
        TextAddress(0x1020, 0xFFFFFFFF81000200, "g+0x20", "g", "mod", True, in_trace=True),
    ])
    assert scan.functions() == ["f", "g"]
    d = scan.to_dict()
    assert d["guess"] is True and "guess" in d["label"]
    assert str(scan).startswith("GUESS")


# ------------------------------------------------------------------ trust in a trace

TASK = StackRange("task", "task", 0x10000, 0x14000)
GUARD = StackRange("task", "task", 0xF000, 0x10000, guard=True, mapped=False)
IRQ = StackRange("irq", "IRQ", 0x20000, 0x24000, cpu=0)
USER = StackRange("user", "user", 0x1000, 1 << 63)
K = 0xFFFFFFFF81000000


def fact(i, name, sp, stack=TASK, in_text=True, interrupted=False, user=False, pc=None):
    return _FrameFact(i, name, pc if pc is not None else K + i, sp, in_text, stack, interrupted, user)


def clean_trace():
    return [fact(0, "f", 0x13000), fact(1, "g", 0x13100), fact(2, "entry_SYSCALL_64", 0x14000 - 168),
            fact(3, None, 0x7FFC0000, USER, None, True, True, pc=0x401000)]


def test_a_clean_trace_has_no_problems():
    assert _trace_problems(clean_trace(), 168) == ([], [])


def test_kernel_thread_trace_ending_at_the_stack_top_is_complete():
    facts = [fact(0, "schedule", 0x13F00), fact(1, "ret_from_fork", 0x14000 - 168)]
    assert _trace_problems(facts, 168) == ([], [])


def test_return_address_outside_text_is_a_problem():
    facts = clean_trace()
    facts[1] = fact(1, None, 0x13100, in_text=False)
    problems, _ = _trace_problems(facts, 168)
    assert any("outside kernel text" in p for p in problems)


def test_bad_pc_of_an_exception_frame_with_a_sound_caller_is_a_call_through_a_bad_pointer():
    facts = clean_trace()
    facts[0] = fact(0, None, 0x13000, in_text=False, interrupted=True, pc=0)
    assert _trace_problems(facts, 168)[0] == []


def test_sp_off_every_stack_is_a_problem():
    facts = clean_trace()
    facts[1] = fact(1, "g", 0xDEAD0000, stack=None)
    assert any("outside every stack" in p for p in _trace_problems(facts, 168)[0])


def test_sps_going_down_outwards_are_a_problem():
    facts = clean_trace()
    facts[1] = fact(1, "g", 0x12000)
    assert any("below its callee" in p for p in _trace_problems(facts, 168)[0])


def test_a_trace_that_stops_mid_stack_stopped_early():
    facts = [fact(0, "f", 0x13000), fact(1, "g", 0x13100)]
    problems, _ = _trace_problems(facts, 168)
    assert problems == [f"unwinder stopped early at #1 g ({0x14000 - 0x13100} bytes below the top of the task stack)"]


def test_a_trace_that_ends_on_an_irq_stack_stopped_early():
    facts = [fact(0, "f", 0x23000, IRQ), fact(1, "g", 0x23100, IRQ)]
    assert "CPU 0's IRQ stack" in _trace_problems(facts, 168)[0][0]


def test_sp_in_the_guard_page_is_the_overflow_not_a_bad_unwind():
    facts = [fact(0, "recurse", 0xFF70, GUARD, interrupted=True), *[fact(i, "recurse", 0x10000 + i * 0x218)
                                                                      for i in range(1, 4)],
             fact(4, "ret_from_fork", 0x14000 - 168)]
    problems, explained = _trace_problems(facts, 168)
    assert problems == []
    assert explained == ["#0 recurse: SP 0xff70 is in the guard page below the task stack: that stack overflowed"]


def test_no_kernel_frame_at_all():
    assert _trace_problems([fact(0, None, 0x7FFC0000, USER, None, True, True, pc=0x401000)], 168)[0] == \
        ["no kernel frame"]


# ------------------------------------------------------------------ data classes


def test_stack_range_descriptions():
    assert GUARD.description == "guard page below the task stack"
    assert StackRange("task", "task", 0xF000, 0x10000, guard=True, mapped=True).description == \
        "page below the task stack (mapped: no guard page)"
    assert StackRange("exception", "DF", 0, 0x2000, cpu=1).description == "CPU 1's double-fault stack (DF)"
    assert 0x10000 in TASK and 0x14000 not in TASK


def test_stack_bounds_guard_page():
    b = StackBounds(98, "sh", 0x10000, 0x14000, True, 0xF000, False)
    assert b.size == 0x4000 and b.has_guard_page
    assert b.in_guard(0xFF70) and not b.in_guard(0x10000) and 0x10000 in b
    assert "guard page below" in str(b)
    unknown = StackBounds(98, "sh", 0x10000, 0x14000, True, 0xF000, None)
    assert unknown.has_guard_page  # vmalloc'd stacks come with one
    assert not StackBounds(1, "x", 0x10000, 0x14000, False, 0xF000, True).has_guard_page


def test_stack_usage_depth_past_end_largest_and_deepest():
    bounds = StackBounds(98, "sh", 0x10000, 0x14000, True, 0xF000, False)
    frames = (
        FrameUse(0, "recurse", 0xFF70, 0x218, "guard page below the task stack", 0x14000 - 0xFF70),
        FrameUse(1, "recurse", 0x10188, 0x218, "the task stack", 0x14000 - 0x10188),
        FrameUse(2, "big", 0x103A0, 0x300, "the task stack", 0x14000 - 0x103A0),
        FrameUse(3, "irq_fn", 0x20000, 0x40, "CPU 0's IRQ stack", None),
    )
    u = StackUsage(bounds, frames, 0x4000, 0x14000 - 0xFF70, 0)
    assert u.past_end == 0x90 and u.percent == 100.9
    assert [f.function for f in u.largest()] == ["big", "recurse", "irq_fn"]
    assert [f.index for f in u.deepest(2)] == [0, 1]
    assert "144 bytes past the end" in str(u)
    assert u.to_dict()["past_end"] == 144


@given(st.binary(max_size=600))
def test_leading_zero_bytes_is_what_lstrip_says(data):
    assert _leading_zero_bytes(data) == len(data) - len(data.lstrip(b"\0"))
