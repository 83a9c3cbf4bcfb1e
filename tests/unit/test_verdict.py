"""Rules of the verdict engine, each on the smallest report that exercises it (pure data)."""

from __future__ import annotations

from kpostmortem.report import Frame, Outcome, Report
from kpostmortem.verdict import decide
from kpostmortem.verdict.engine import category_of_record
from kpostmortem.verdict.frames import base_name, choose_guilty
from kpostmortem.verdict.titles import make_signature, make_title, stable_text


def F(i, name, module=None, interrupted=False, source=None, segment="TASK"):
    return Frame(index=i, function=name, offset=0x10, module=module, interrupted=interrupted,
                 source=source, segment=segment)


def rec(kind, headline, index=0, **kw):
    d = {"index": index, "kind": kind, "headline": headline, "pid": 99, "rip": None,
         "fault_address": None, "panic_message": None, "escalates": None, "call_trace": [],
         "bug_file": None, "bug_line": None}
    d.update(kw)
    return d


def report(records, frames, how="oops", fault=None, **extra):
    r = Report()
    r.log = {"records": records}
    r.frames = frames
    r.summary = {"how": {"mode": how, "description": how}}
    r.crashed_task = {"pid": 99}
    r.fault = fault or {}
    for k, v in extra.items():
        setattr(r, k, v)
    return r


def test_base_name_strips_gcc_clone_suffixes():
    assert base_name("foo.cold") == "foo"
    assert base_name("foo.constprop.0.isra.0") == "foo"
    assert base_name("foo.part.3") == "foo"
    assert base_name("foo_cold") == "foo_cold"


def test_guilty_skips_panic_plumbing():
    frames = [F(0, "crash_setup_regs"), F(1, "__crash_kexec"), F(2, "panic"), F(3, "mydrv_fail", "mydrv")]
    assert choose_guilty(frames).function == "mydrv_fail"


def test_guilty_skips_exception_entry_prefixes():
    frames = [F(0, "asm_exc_invalid_op"), F(1, "exc_invalid_op"), F(2, "handle_bug"), F(3, "real_fn")]
    assert choose_guilty(frames).function == "real_fn"


def test_guilty_skips_helpers_but_falls_back_to_them():
    assert choose_guilty([F(0, "memcpy_orig"), F(1, "caller")]).function == "caller"
    assert choose_guilty([F(0, "panic"), F(1, "memset")]).function == "memset"


def test_guilty_with_invalid_pc_is_the_caller():
    assert choose_guilty([F(0, None, interrupted=True), F(1, "calls_fn_ptr")]).function == "calls_fn_ptr"


def test_guilty_for_scheduler_check_skips_sleep_primitives():
    frames = [F(0, "panic"), F(1, "__schedule_bug"), F(2, "__schedule"), F(3, "schedule"),
              F(4, "schedule_timeout"), F(5, "msleep"), F(6, "drv_sleeper", "drv")]
    assert choose_guilty(frames).function == "__schedule_bug"
    assert choose_guilty(frames, skip_scheduler=True).function == "drv_sleeper"


def test_guilty_for_lockup_skips_watchdog_interrupt():
    frames = [F(0, "panic"), F(1, "watchdog_timer_fn", segment="IRQ"), F(2, "__hrtimer_run_queues", segment="IRQ"),
              F(3, "hrtimer_interrupt", segment="IRQ"), F(4, "asm_sysvec_apic_timer_interrupt"),
              F(5, "spinner", "drv", interrupted=True)]
    assert choose_guilty(frames, skip_interrupt=True).function == "spinner"


def test_page_fault_near_null_is_null_dereference():
    assert category_of_record(rec("page-fault", "BUG: unable to handle page fault", fault_address=0x18)) == \
        "null-pointer-dereference"
    assert category_of_record(rec("page-fault", "BUG: unable to handle page fault",
                                  fault_address=0xffffc90000123000)) == "bad-page-fault"


def test_panic_messages_name_their_cause():
    cases = {
        "sysrq triggered crash": "deliberate-crash",
        "corrupted stack end detected inside scheduler": "stack-corruption",
        "softlockup: hung tasks": "soft-lockup",
        "hung_task: blocked tasks": "hung-task",
        "Out of memory and no killable processes...": "out-of-memory",
        "kernel: panic_on_warn set ...": "warning-escalated",
        "mydrv: firmware went away": "explicit-panic",
    }
    for msg, cat in cases.items():
        assert category_of_record(rec("panic", "Kernel panic - not syncing: " + msg, panic_message=msg)) == cat, msg


def test_fatal_exception_panic_is_an_escalation_not_a_cause():
    assert category_of_record(rec("panic", "Kernel panic", panic_message="Fatal exception")) is None
    assert category_of_record(rec("panic", "Kernel panic", panic_message="x", escalates=0)) is None


def test_null_deref_verdict_from_log_and_trace():
    r = report(
        [rec("null-deref", "BUG: kernel NULL pointer dereference, address: 0000000000000018",
             rip={"function": "drv_write", "offset": 0x19, "module": "drv"}, fault_address=0x18)],
        [F(0, "drv_write", "drv", interrupted=True, source="drv.c:35"), F(1, "vfs_write")],
        fault={"trapping_instruction": "mov dword ptr [rbx + 0x18], 0x2a", "effective_address": 0x18,
               "fault_address": 0x18, "bad_register": "rbx", "registers": {"rbx": 0},
               "address_class": {"kind": "near-null", "description": "NULL + 0x18"}, "suspects": []},
    )
    v = decide(r)
    assert (v.category, v.function, v.module, v.source) == ("null-pointer-dereference", "drv_write", "drv", "drv.c:35")
    assert v.title == "BUG: kernel NULL pointer dereference in drv_write [drv]"
    assert v.confidence >= 0.9
    assert any("effective address 0x18 = reported" in e.text for e in v.evidence)


def test_confidence_drops_when_instruction_disagrees():
    base = dict(trapping_instruction="mov", bad_register="rbx", registers={"rbx": 0},
                address_class={"kind": "near-null", "description": "x"}, suspects=[])
    recs = [rec("null-deref", "BUG: kernel NULL pointer dereference", rip={"function": "f", "module": None})]
    frames = [F(0, "f", interrupted=True)]
    agree = decide(report(recs, frames, fault=dict(base, effective_address=0x18, fault_address=0x18)))
    disagree = decide(report(recs, frames, fault=dict(base, effective_address=0x20, fault_address=0x18)))
    assert disagree.confidence < agree.confidence


def test_first_oops_is_the_root_when_a_later_panic_took_the_dump():
    records = [
        rec("null-deref", "BUG: kernel NULL pointer dereference", index=0, pid=50,
            rip={"function": "first_bug.cold", "module": "drv"}),
        rec("panic", "Kernel panic - not syncing: later", index=1, pid=99, panic_message="later"),
    ]
    v = decide(report(records, [F(0, "panic"), F(1, "other_fn")], how="explicit-panic"))
    assert (v.category, v.function, v.module) == ("null-pointer-dereference", "first_bug", "drv")
    assert any("later crash" in e.text for e in v.evidence)


def test_unescalated_warning_is_not_the_cause():
    records = [rec("warning", "WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2", index=0),
               rec("gpf", "general protection fault, probably for non-canonical address", index=1,
                   rip={"function": "g", "module": None})]
    v = decide(report(records, [F(0, "g", interrupted=True)]))
    assert v.category == "general-protection-fault"


def test_escalated_warning_is_the_cause():
    records = [rec("warning", "WARNING: CPU: 0 PID: 99 at x.c:1 f+0x1/0x2", index=0,
                   rip={"function": "warner", "module": "drv"}, bug_file="x.c", bug_line=1),
               rec("panic", "Kernel panic - not syncing: kernel: panic_on_warn set ...", index=1,
                   panic_message="kernel: panic_on_warn set ...", escalates=0)]
    frames = [F(0, "panic"), F(1, "check_panic_on_warn"), F(2, "__warn"), F(3, "warner", "drv", interrupted=True)]
    v = decide(report(records, frames, how="warn-escalated"))
    assert (v.category, v.function) == ("warning-escalated", "warner")


def test_dump_state_alone_gives_a_verdict_without_log():
    frames = [F(0, "crash_setup_regs"), F(1, "__crash_kexec"), F(2, "panic"), F(3, "sysrq_handle_crash"),
              F(4, "__handle_sysrq")]
    v = decide(report([], frames, how="sysrq"))
    assert (v.category, v.function) == ("deliberate-crash", "sysrq_handle_crash")


def test_stack_canary_damage_in_dump_names_the_sleeper():
    records = [rec("panic", "Kernel panic - not syncing: corrupted stack end detected inside scheduler",
                   panic_message="corrupted stack end detected inside scheduler")]
    frames = [F(0, "crash_setup_regs"), F(1, "panic"), F(2, "__schedule_bug"), F(3, "__schedule"),
              F(4, "schedule"), F(5, "schedule_timeout"), F(6, "msleep"), F(7, "drv_smash", "drv")]
    r = report(records, frames, how="stack-end-check",
               stack_checks={"canaries_damaged": [{"comm": "sh", "pid": 99}], "crashed_task_canary_damaged": True})
    v = decide(r)
    assert (v.category, v.function) == ("stack-corruption", "drv_smash")
    assert any("STACK_END_MAGIC" in e.text for e in v.evidence)


def test_no_evidence_is_unknown_and_not_confident():
    v = decide(report([], [], how="unknown"))
    assert v.category == "unknown" and v.confidence < 0.5


def test_failed_stack_analyzer_lowers_confidence():
    recs = [rec("bug", "kernel BUG at drv.c:10!", rip={"function": "f", "module": None})]
    ok = decide(report(recs, [F(0, "f", interrupted=True)]))
    r = report(recs, [F(0, "f", interrupted=True)])
    r.outcomes = [Outcome("stack", "failed", "FaultError")]
    assert decide(r).confidence < ok.confidence
    assert decide(r).missing == ["stack: FaultError"]


def test_titles_have_no_boot_specific_numbers():
    t = make_title("explicit-panic", "drv_fail", "drv", "drv: bad state 0xffff888003c4d000 after 12 tries")
    assert t == "kernel panic in drv_fail: drv: bad state ADDR after N tries [drv]"
    assert stable_text("at 0xffffffffc0545228") == "at ADDR"


def test_signature_is_stable_and_discriminating():
    a = make_signature("null-pointer-dereference", "f", "m", ["g", "h"])
    assert a == make_signature("null-pointer-dereference", "f", "m", ["g", "h"])
    assert a != make_signature("null-pointer-dereference", "f", "m", ["g", "x"])
    assert a != make_signature("bad-page-fault", "f", "m", ["g", "h"])
    assert len(a) == 12


# Stack checks (report.stack_checks, filled by the stack-checks analyzer).

def _overflow_checks(first=1, last=5, **extra):
    sc = {
        "canaries_damaged": [],
        "crashed_task_canary_damaged": False,
        "stack_bounds": {"start": 0x10000, "end": 0x14000, "size": 0x4000, "has_guard_page": True},
        "guard_page_hit": {"frame": 0, "function": "leaf", "sp": 0xFF70, "below_by": 144,
                           "unmapped_guard": True},
        "usage": {"depth": 16528, "thread_size": 16384, "past_end": 144, "largest": []},
        "recursion": [{"functions": ["recurse"], "repeats": last - first + 1, "first": first, "last": last,
                       "bytes_per_cycle": 536, "bytes": 536 * (last - first + 1),
                       "summary": f"recurse × {last - first + 1}, 536 bytes per frame"}],
        "double_fault": {"cpu": 0, "stack": "CPU 0's double-fault stack (DF)",
                         "functions": ["exc_double_fault", "handle_stack_overflow", "oops_end"]},
        "trace_trustworthy": True,
    }
    sc.update(extra)
    return sc


def _overflow_frames():
    return [F(0, "leaf", interrupted=True), *[F(i, "recurse.constprop.0") for i in range(1, 6)], F(6, "caller")]


def test_stack_overflow_guilty_is_the_recursing_function_with_guard_page_evidence():
    records = [rec("stack-guard", "BUG: TASK stack guard page was hit at 00000000deadbeef")]
    v = decide(report(records, _overflow_frames(), how="double-fault", stack_checks=_overflow_checks()))
    assert (v.category, v.function, v.guilty_frame) == ("stack-overflow", "recurse", 1)
    texts = " | ".join(e.text for e in v.evidence)
    assert "144 bytes below the task stack" in texts and "guard page" in texts
    assert "recurse × 5, 536 bytes per frame" in texts
    assert "exc_double_fault → handle_stack_overflow" in texts
    assert "recursed 5 times (536 bytes per frame)" in v.explanation


def test_stack_overflow_read_from_the_dump_state_without_any_log():
    v = decide(report([], _overflow_frames(), how="unknown", stack_checks=_overflow_checks()))
    assert (v.category, v.function) == ("stack-overflow", "recurse")
    assert v.confidence >= 0.5


def test_stack_overflow_without_recursion_keeps_the_frame_that_ran_out():
    records = [rec("stack-guard", "BUG: TASK stack guard page was hit at 00000000deadbeef")]
    checks = _overflow_checks(recursion=[], usage={"depth": 16400, "thread_size": 16384, "past_end": 16,
                                                   "largest": [{"function": "leaf", "bytes": 9000}]})
    v = decide(report(records, _overflow_frames(), how="double-fault", stack_checks=checks))
    assert (v.category, v.function) == ("stack-overflow", "leaf")
    assert any("largest frames: leaf 9000 bytes" in e.text for e in v.evidence)


def test_stack_protector_failure_names_the_frame_whose_canary_failed():
    records = [rec("panic", "Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: victim+0x4f",
                   panic_message="stack-protector: Kernel stack is corrupted in: victim+0x4f")]
    frames = [F(0, "crash_setup_regs"), F(1, "__crash_kexec"), F(2, "panic"), F(3, "__stack_chk_fail"),
              F(4, "victim", "drv"), F(5, "caller", "drv")]
    checks = {"canaries_damaged": [], "stack_protector": {"check_frame": 3, "index": 4, "function": "victim"},
              "trace_trustworthy": True}
    v = decide(report(records, frames, how="explicit-panic", stack_checks=checks))
    assert (v.category, v.function, v.module, v.guilty_frame) == ("stack-corruption", "victim", "drv", 4)
    assert any("__stack_chk_fail called from victim" in e.text for e in v.evidence)
    assert "stack-protector canary of victim()" in v.explanation


def test_canary_evidence_tells_a_stray_write_from_an_overflow():
    records = [rec("panic", "Kernel panic - not syncing: corrupted stack end detected inside scheduler",
                   panic_message="corrupted stack end detected inside scheduler")]
    frames = [F(0, "panic"), F(1, "__schedule"), F(2, "schedule"), F(3, "msleep"), F(4, "drv_smash", "drv")]
    damaged = [{"comm": "sh", "pid": 99, "value": 0, "cause": "stray write", "stack_not_used": 12776}]
    checks = {"canaries_damaged": damaged, "crashed_task_canary_damaged": True}
    v = decide(report(records, frames, how="stack-end-check", stack_checks=checks))
    assert (v.category, v.function) == ("stack-corruption", "drv_smash")
    assert any("0x0 instead of 0x57ac6e9d" in e.text and "stray write" in e.text for e in v.evidence)


def test_untrustworthy_trace_brings_the_stack_scan_as_a_labelled_guess():
    recs = [rec("bug", "kernel BUG at drv.c:10!", rip={"function": "f", "module": None})]
    frames = [F(0, "f", interrupted=True), F(1, "g")]
    scan = {"guess": True, "functions": ["f", "g", "h"]}
    trusted = decide(report(recs, frames, stack_checks={"trace_trustworthy": True, "scan": None}))
    doubtful = decide(report(recs, frames, stack_checks={
        "trace_trustworthy": False, "trace_problems": ["unwinder stopped early at #1 g"], "scan": scan}))
    assert doubtful.confidence < trusted.confidence
    wrong = [e for e in doubtful.evidence if "may be wrong" in e.text]
    assert wrong and not wrong[0].agrees
    # A guess has no re-checkable fact behind it: marked "?" (docs/verdicts.md, evidence facts).
    guess = [e for e in doubtful.evidence if e.text.startswith("? GUESS")]
    assert guess and "f ← g ← h" in guess[0].text
    assert not any("GUESS" in e.text for e in trusted.evidence)


def test_hung_task_suspect_is_where_the_blocked_task_waits():
    records = [rec("hung-task", "INFO: task sh:120 blocked for more than 2 seconds.", index=0, pid=120),
               rec("panic", "Kernel panic - not syncing: hung_task: blocked tasks", index=1, pid=30,
                   panic_message="hung_task: blocked tasks", escalates=0)]
    khungtaskd = [F(0, "panic"), F(1, "watchdog"), F(2, "kthread")]
    blocked = {"tasks": [{"pid": 120, "comm": "sh", "blocked_seconds": 3.0, "frames": [
        {"index": i, "function": n, "module": m} for i, (n, m) in enumerate(
            [("__schedule", None), ("schedule", None), ("schedule_timeout", None),
             ("wait_for_completion", None), ("drv_wait_for_fw", "drv"), ("drv_probe", "drv")])]}]}
    v = decide(report(records, khungtaskd, how="watchdog", blocked_tasks=blocked))
    assert (v.category, v.function, v.module) == ("hung-task", "drv_wait_for_fw", "drv")
    assert v.title == "INFO: task hung in drv_wait_for_fw [drv]"


def test_list_debug_bug_is_memory_corruption_blaming_the_caller():
    records = [rec("list-corruption", "list_add corruption. next->prev should be prev (ADDR), but was ADDR",
                   index=0, rip={"function": "__list_add_valid", "module": None}, bug_file="lib/list_debug.c")]
    frames = [F(0, "__list_add_valid", interrupted=True), F(1, "drv_queue", "drv"), F(2, "drv_write", "drv")]
    v = decide(report(records, frames))
    assert (v.category, v.function) == ("memory-corruption", "drv_queue")
    assert v.title.startswith("list corruption in drv_queue")


def test_slab_free_poison_in_the_bad_pointer_is_use_after_free():
    records = [rec("gpf", "general protection fault, probably for non-canonical address 0x6b6b6b6b6b6b6b83",
                   rip={"function": "drv_use", "module": "drv"})]
    fault = {"poison": "slab free poison (use-after-free)", "bad_register": "rax", "registers": {"rax": 0},
             "address_class": {"kind": "poison", "description": "poison"}, "suspects": []}
    v = decide(report(records, [F(0, "drv_use", "drv", interrupted=True)], fault=fault))
    assert (v.category, v.function) == ("memory-corruption", "drv_use")
    assert v.title == "BUG: use-after-free in drv_use [drv]"


def test_oom_panic_blames_the_allocating_caller_not_the_allocator():
    records = [rec("oom", "sh invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=3", index=0),
               rec("panic", "Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled",
                   index=1, panic_message="Out of memory: system-wide panic_on_oom is enabled", escalates=0)]
    frames = [F(0, "panic"), F(1, "out_of_memory"), F(2, "__alloc_pages_slowpath.constprop.0"),
              F(3, "__alloc_pages"), F(4, "drv_hog", "drv")]
    v = decide(report(records, frames, how="oom"))
    assert (v.category, v.function) == ("out-of-memory", "drv_hog")


def test_mutual_recursion_blames_one_member_whatever_frame_hit_the_guard_page():
    """A cycle a → b → c: which member ran out of stack moves with the kernel build; the title
    and signature must not (the member that sorts first, at its innermost frame)."""
    records = [rec("stack-guard", "BUG: TASK stack guard page was hit at 00000000deadbeef")]
    cycle = ["parse_node", "parse_attr", "parse_list"]
    seen = set()
    for shift in range(3):
        names = [cycle[(k + shift) % 3] for k in range(9)]
        frames = [F(0, "memset", interrupted=True), *[F(i + 1, n, module="foo") for i, n in enumerate(names)],
                  F(10, "foo_ioctl", module="foo")]
        checks = _overflow_checks(recursion=[{
            "functions": names[:3], "repeats": 3, "first": 1, "last": 9, "bytes_per_cycle": 3000,
            "bytes": 9000, "summary": " → ".join(names[:3]) + " × 3, 3000 bytes per cycle"}])
        v = decide(report(records, frames, how="double-fault", stack_checks=checks))
        assert v.function == "parse_attr" and v.module == "foo"
        assert frames[v.guilty_frame].function == "parse_attr"
        seen.add((v.title, v.signature))
    assert len(seen) == 1, seen


def test_chain_of_big_frames_blames_the_biggest_whatever_frame_hit_the_guard_page():
    """No recursion: a chain of big frames. One kernel build runs out one frame deeper than
    another; the biggest frame on the task stack is the suspect either way."""
    records = [rec("stack-guard", "BUG: TASK stack guard page was hit at 00000000deadbeef")]
    chain = ["foo_parse_tlv", "foo_parse_attr", "foo_parse_msg", "foo_rx", "foo_ioctl"]
    sizes = {"foo_parse_tlv": 3000, "foo_parse_attr": 5200, "foo_parse_msg": 3000, "foo_rx": 3000,
             "foo_ioctl": 1500}
    seen = set()
    for deeper in (0, 1):
        names = (["memcpy_orig", "foo_fill"] if deeper else ["memcpy_orig"]) + chain
        frames = [F(0, names[0], interrupted=True)] + [F(i, n, module="foo") for i, n in enumerate(names) if i]
        depth, uses = 16384 + 64, []
        for i, n in enumerate(names):
            size = sizes.get(n, 200)
            uses.append({"index": i, "function": n, "sp": 0x10000 + 16384 - depth, "bytes": size,
                         "stack": "the task stack", "depth": depth})
            depth -= size
        largest = sorted(uses, key=lambda u: -u["bytes"])[:5]
        checks = _overflow_checks(recursion=[], usage={"depth": 16448, "thread_size": 16384, "past_end": 64,
                                                       "frames": uses, "largest": largest})
        v = decide(report(records, frames, how="double-fault", stack_checks=checks))
        assert (v.category, v.function, v.module) == ("stack-overflow", "foo_parse_attr", "foo")
        assert any("biggest frame on the task stack is foo_parse_attr" in e.text for e in v.evidence)
        seen.add((v.title, v.signature))
    assert len(seen) == 1, seen
