"""Titles, signatures, the guilty-frame skip lists (and their documentation), and `explain`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from kpostmortem.frontends.cli import main
from kpostmortem.report import Frame
from kpostmortem.verdict import frames as skip
from kpostmortem.verdict.categories import ALIASES, CATEGORIES, lookup
from kpostmortem.verdict.frames import base_name, choose_guilty
from kpostmortem.verdict.titles import _TITLE, make_signature, make_title, signature_name

DOCS = Path(__file__).resolve().parents[2] / "docs" / "verdicts.md"
CODES = sorted({key.split("/")[0] for key in _TITLE})


def trace(*names: str | None) -> list[Frame]:
    return [Frame(index=i, function=n) for i, n in enumerate(names)]


# --------------------------------------------------------------------------- titles

@pytest.mark.parametrize("category", CODES)
def test_every_category_has_a_title_without_boot_dependent_numbers(category):
    title = make_title(category, "ext4_do_update_inode", "ext4",
                       "bad state 3 at ffffffffc0a01234, pid 4242, cpu 1 (0xdeadbeefcafe)")
    assert title.endswith(" [ext4]")
    assert not re.search(r"\b(0x)?[0-9a-f]{8,}\b|\b\d+\b", title), title
    if "{f}" in _TITLE[category]:
        assert "ext4_do_update_inode" in title


def test_title_words_follow_the_kernels_own():
    assert make_title("null-pointer-dereference", "crashpoc_null_write", "crashpoc", None) == \
        "BUG: kernel NULL pointer dereference in crashpoc_null_write [crashpoc]"
    assert make_title("soft-lockup", "spin", None, None) == "BUG: soft lockup in spin"
    assert make_title("explicit-panic", "crashpoc_panic", "crashpoc",
                      "crashpoc: device crashpoc0 lost its configuration (state 3, pending 1)") == (
        "kernel panic in crashpoc_panic: crashpoc: device crashpoc0 lost its configuration (state N, pending N)"
        " [crashpoc]")


def test_title_variants_refine_the_wording_only():
    assert make_title("memory-corruption", "f", None, None, "use-after-free") == "BUG: use-after-free in f"
    assert make_title("memory-corruption", "f", None, None, "no-such-variant") == "memory corruption in f"


def test_docs_show_every_title():
    docs = DOCS.read_text()
    for key, template in _TITLE.items():
        shown = template.replace("{f}", "FUNC").replace("{msg}", "MESSAGE").replace("{v}", "PHRASE")
        assert f"| {shown} |" in docs, f"docs/verdicts.md lacks the title of {key}: {shown}"


def test_debug_reports_are_titled_in_their_own_words():
    assert make_title("locking-violation", "f", None, None, None, "possible deadlock") == "possible deadlock in f"
    assert make_title("memory-leak", "f", "m", None) == "memory leak in f [m]"
    # without the report's phrase, the category's own words
    assert make_title("data-race", "f", None, None) == "data race in f"
    assert make_title("memory-corruption", "f", None, None, "bad-page", "BUG: Bad page state") == \
        "BUG: Bad page state in f"


def test_long_messages_are_cut_and_unknowns_named():
    title = make_title("explicit-panic", "f", None, "x" * 300)
    assert len(title) < 120 and title.endswith("...")
    assert make_title("unknown", None, None, None) == "unknown crash in unknown function"
    assert make_title("no-such-category", "f", None, None) == "unknown crash in f"


# --------------------------------------------------------------------------- signatures

SIG = ("null-pointer-dereference", "crashpoc_null_write", "crashpoc")
CONTEXT = ["crashpoc_trigger_write", "full_proxy_write", "vfs_write", "ksys_write"]


def test_signature_is_twelve_hex_digits_and_uses_three_frames():
    sig = make_signature(*SIG, CONTEXT)
    assert re.fullmatch(r"[0-9a-f]{12}", sig)
    assert make_signature(*SIG, [*CONTEXT[:3], "something_else"]) == sig


@pytest.mark.parametrize("context", [
    ["crashpoc_trigger_write.cold", "full_proxy_write", "vfs_write"],
    ["crashpoc_trigger_write.cold+0x28/0x30 [crashpoc]", "full_proxy_write+0x53/0x80", "vfs_write+0xc7/0x3f0"],
    ["? crashpoc_trigger_write+0x28", "full_proxy_write.isra.0", "vfs_write.constprop.0"],
    ["crashpoc_trigger_write", "crashpoc_trigger_write", "full_proxy_write", "full_proxy_write", "vfs_write"],
], ids=["cold-clone", "offsets-and-modules", "unreliable-and-clones", "repeated"])
def test_signature_ignores_what_changes_between_builds_and_boots(context):
    assert make_signature(*SIG, context) == make_signature(*SIG, CONTEXT)
    assert make_signature(SIG[0], "crashpoc_null_write.cold", SIG[2], context) == make_signature(*SIG, CONTEXT)


@pytest.mark.parametrize("change", [
    ("general-protection-fault", SIG[1], SIG[2], CONTEXT),
    (SIG[0], "crashpoc_null_read", SIG[2], CONTEXT),
    (SIG[0], SIG[1], None, CONTEXT),
    (SIG[0], SIG[1], SIG[2], ["crashpoc_timer_fn", *CONTEXT[1:]]),
    (SIG[0], SIG[1], SIG[2], []),
], ids=["category", "function", "module", "caller", "no-context"])
def test_signature_differs_for_a_different_bug(change):
    assert make_signature(*change) != make_signature(*SIG, CONTEXT)


@pytest.mark.parametrize("frame, name", [
    ("foo", "foo"), ("foo.cold", "foo"), ("foo.constprop.0.isra.0", "foo"), ("? foo+0x1/0x2", "foo"),
    ("foo+0x28/0x30 [mod]", "foo"), ("  foo  ", "foo"), ("", None), (None, None),
])
def test_signature_name(frame, name):
    assert signature_name(frame) == name


# --------------------------------------------------------------------------- the guilty frame

def test_plumbing_is_skipped():
    t = trace("crash_setup_regs", "__crash_kexec", "panic", "oops_end", "page_fault_oops",
              "exc_page_fault", "asm_exc_page_fault", "crashpoc_null_write", "vfs_write")
    assert choose_guilty(t).function == "crashpoc_null_write"


@pytest.mark.parametrize("reporter", [
    "kasan_report", "__asan_store8", "__kasan_check_write", "kmsan_report", "__ubsan_handle_out_of_bounds",
    "kfence_report_error", "fortify_panic", "__fortify_report", "usercopy_abort", "__check_object_size",
    "refcount_warn_saturate", "__stack_chk_fail", "report_bug", "__warn",
])
def test_sanitizer_and_hardening_reports_are_skipped(reporter):
    assert choose_guilty(trace(reporter, "mydrv_ioctl", "vfs_ioctl")).function == "mydrv_ioctl"


@pytest.mark.parametrize("helper", [
    "memcpy", "strscpy", "strlen", "__list_add_valid_or_report", "kfree", "kmem_cache_alloc_noprof",
    "__kmalloc", "refcount_dec_and_test", "__refcount_sub_and_test", "atomic_inc", "copy_to_user",
    "hlist_del", "kstrdup",
])
def test_a_fault_in_a_generic_helper_blames_its_caller(helper):
    assert choose_guilty(trace(helper, "mydrv_release", "__fput")).function == "mydrv_release"
    assert choose_guilty(trace(helper, "mydrv_release"), skip_helpers=False).function == helper


def test_only_helpers_gives_the_innermost_helper():
    assert choose_guilty(trace("panic", "memcpy", "kfree")).function == "memcpy"


def test_an_invalid_pc_blames_the_caller():
    assert choose_guilty(trace(None, "mydrv_call_ops", "vfs_read")).function == "mydrv_call_ops"


@pytest.mark.parametrize("primitive", [
    "__schedule", "schedule", "schedule_timeout", "msleep", "mutex_lock", "__mutex_lock.constprop.0",
    "rwsem_down_write_slowpath", "_raw_spin_lock_irqsave", "_raw_read_lock", "queued_write_lock_slowpath",
    "rt_mutex_slowlock", "percpu_down_write", "bit_wait_io", "out_of_line_wait_on_bit", "folio_wait_bit_common",
    "__folio_lock", "wait_for_completion_killable", "io_schedule",
])
def test_scheduler_and_lock_primitives_are_skipped_only_when_asked(primitive):
    t = trace(primitive, "mydrv_wait_ready", "mydrv_probe")
    assert choose_guilty(t, skip_scheduler=True).function == "mydrv_wait_ready"
    assert choose_guilty(t).function == primitive


def test_interrupt_plumbing_is_skipped_for_lockups():
    t = trace("watchdog_timer_fn", "__hrtimer_run_queues", "hrtimer_interrupt", "__sysvec_apic_timer_interrupt",
              "sysvec_apic_timer_interrupt", "asm_sysvec_apic_timer_interrupt", "crashpoc_soft_lockup")
    assert choose_guilty(t, skip_interrupt=True).function == "crashpoc_soft_lockup"
    assert choose_guilty(t).function == "watchdog_timer_fn"


def test_any_system_vector_entry_is_interrupt_plumbing():
    """The crash NMI caught the stalled CPU inside an interrupt: its entry wrappers, inlined
    ones included (instr_sysvec_*), stand for no code of the interrupted task."""
    t = trace("local_apic_timer_interrupt", "__sysvec_apic_timer_interrupt", "instr_sysvec_apic_timer_interrupt",
              "sysvec_apic_timer_interrupt", "asm_sysvec_apic_timer_interrupt", "mydrv_poll_ready")
    assert choose_guilty(t, skip_interrupt=True).function == "mydrv_poll_ready"
    t = trace("__sysvec_call_function_single", "sysvec_call_function_single", "mydrv_poll_ready")
    assert choose_guilty(t, skip_interrupt=True).function == "mydrv_poll_ready"


def test_split_and_cloned_symbols_name_their_function():
    assert base_name("crashpoc_recurse.constprop.0") == "crashpoc_recurse"
    assert base_name("foo.cold") == "foo" and base_name("foo.isra.0.cold") == "foo"
    assert base_name("foo.part.0") == "foo" and base_name("foo.llvm.123456") == "foo"
    assert choose_guilty(trace("panic.cold", "crashpoc_panic.isra.0")).function == "crashpoc_panic.isra.0"


SKIP_LISTS = {
    "PLUMBING": skip.PLUMBING, "PLUMBING_PREFIXES": skip.PLUMBING_PREFIXES,
    "INTERRUPT_PLUMBING": skip.INTERRUPT_PLUMBING, "INTERRUPT_PLUMBING_PREFIXES": skip.INTERRUPT_PLUMBING_PREFIXES,
    "SCHEDULER": skip.SCHEDULER,
    "SCHEDULER_PREFIXES": skip.SCHEDULER_PREFIXES, "SPIN_PREFIXES": skip.SPIN_PREFIXES, "HELPERS": skip.HELPERS,
    "HELPER_PREFIXES": skip.HELPER_PREFIXES, "ALLOCATOR_PREFIXES": skip.ALLOCATOR_PREFIXES,
}


@pytest.mark.parametrize("list_name", sorted(SKIP_LISTS))
def test_docs_list_every_skipped_frame(list_name):
    """docs/verdicts.md names every entry of every skip list (`name` or `prefix*`)."""
    docs = DOCS.read_text()
    prefix = list_name.endswith("_PREFIXES")
    missing = [e for e in sorted(SKIP_LISTS[list_name]) if f"`{e}{'*' if prefix else ''}`" not in docs]
    assert not missing, f"docs/verdicts.md lacks {list_name} entries: {missing}"


# --------------------------------------------------------------------------- explain

def test_every_category_is_explained():
    assert set(CATEGORIES) == set(CODES)
    for cat in CATEGORIES.values():
        assert cat.summary and cat.meaning and cat.evidence and cat.next_steps, cat.code
    assert all(target in CATEGORIES for target in ALIASES.values())


def test_docs_explain_every_category():
    docs = DOCS.read_text()
    assert [c for c in CATEGORIES if f"`{c}`" not in docs] == []


def test_explain_a_code_and_an_alias():
    run = CliRunner().invoke(main, ["explain", "general-protection-fault"])
    assert run.exit_code == 0
    assert run.output.startswith("general-protection-fault: ")
    assert "Evidence that supports it:" in run.output and "What to look at next:" in run.output
    assert CliRunner().invoke(main, ["explain", "GPF"]).output == run.output
    assert lookup("stack_overflow") is CATEGORIES["stack-overflow"]


def test_explain_list_and_json():
    run = CliRunner().invoke(main, ["explain", "--list"])
    assert run.exit_code == 0
    assert [line.split()[0] for line in run.output.splitlines()] == list(CATEGORIES)
    data = json.loads(CliRunner().invoke(main, ["explain", "hung-task", "--format", "json"]).output)
    assert data["code"] == "hung-task" and isinstance(data["next_steps"], list)


def test_explain_unknown_code_suggests():
    run = CliRunner().invoke(main, ["explain", "null-pointer"])
    assert run.exit_code == 2
    assert "did you mean null-pointer-dereference" in run.output
    run = CliRunner().invoke(main, ["explain", "zzz"])
    assert run.exit_code == 2 and "--list" in run.output


def test_entry_frames_renamed_between_generations_do_not_split_a_bug():
    # a driver kthread's BUG_ON: 6.1 ends in ret_from_fork, 6.7+ adds ret_from_fork_asm
    old = make_signature("bug-assertion", "drv_poll", "drv", ["drv_thread", "kthread", "ret_from_fork"])
    new = make_signature("bug-assertion", "drv_poll", "drv",
                         ["drv_thread", "kthread", "ret_from_fork", "ret_from_fork_asm"])
    assert old == new
    # a syscall path: 6.9+ dispatches through x64_sys_call
    a = make_signature("null-pointer-dereference", "drv_ioctl", "drv",
                       ["__x64_sys_ioctl", "do_syscall_64", "entry_SYSCALL_64_after_hwframe"])
    b = make_signature("null-pointer-dereference", "drv_ioctl", "drv",
                       ["__x64_sys_ioctl", "x64_sys_call", "do_syscall_64", "entry_SYSCALL_64"])
    assert a == b
    assert a != make_signature("null-pointer-dereference", "drv_ioctl", "drv", ["__x64_sys_read"])
