"""The corpus is real: every dump opens in drgn with its debug info, the
crashed thread's stack holds the scenario's functions, and the console log
shows the kernel's own words.  A missing dump FAILS (never skips): build it
with scripts/make-vmcores.  Only the "corpus" group is checked here: the
"scale" group's dumps are benchmark inputs, made on request, never needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from . import corpus

pytestmark = pytest.mark.vmcore

SCENARIOS = corpus.load_manifest()          # the corpus group only
EVERY_GROUP = corpus.load_manifest(group=None)
BY_NAME = {s["name"]: s for s in SCENARIOS}
NAMES = [s["name"] for s in SCENARIOS]
DAMAGED = [s["name"] for s in SCENARIOS if s["expect"].get("damaged")]
INTACT = [n for n in NAMES if n not in DAMAGED]

CATEGORIES = {
    "null-pointer-dereference", "bad-page-fault", "general-protection-fault",
    "bug-assertion", "warning-escalated", "stack-overflow", "stack-corruption",
    "explicit-panic", "deliberate-crash", "soft-lockup", "hard-lockup", "hung-task",
    "rcu-stall", "out-of-memory", "memory-corruption", "invalid-opcode", "divide-error",
    "hardware-error", "deadlock", "unknown",
}
META_KEYS = {
    "scenario", "series", "release", "package_version", "vmlinux", "debuginfo",
    "module_ko", "format", "dump_level", "accel", "seconds", "bytes",
    "makedumpfile_version", "created",
}


@pytest.fixture(scope="module")
def programs():
    """One drgn Program per dump for the whole module (opening is the slow part)."""
    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = corpus.open_program(name, debug_info=name not in DAMAGED)
        return cache[name]

    return get


def test_manifest_is_well_formed():
    every = [s["name"] for s in EVERY_GROUP]
    assert len(every) == len(set(every)), "scenario names must be unique"
    for sc in EVERY_GROUP:  # the scale group too: its entries need no dump to be checked
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", sc["name"]), sc["name"]
        assert sc["kernel"] in corpus.kernel_series(), sc["name"]
        assert sc["format"] in ("kdump", "elf")
        assert sc["group"] in corpus.GROUPS, sc["name"]
        assert type(sc["memory"]) is int and 768 <= sc["memory"] <= 16384, sc["name"]
        assert type(sc["threads"]) is int and sc["threads"] >= 0, sc["name"]
        assert sc["load_module"] or not sc["threads"], sc["name"]
        assert sc["expect"]["category"] in CATEGORIES, sc["name"]
        assert sc["expect"]["function"], sc["name"]
        assert isinstance(sc["console"], list)
    # Every series of kernels.toml has corpus scenarios.
    kernels = {s["kernel"] for s in SCENARIOS}
    assert kernels == (corpus.quick_kernels() or set(corpus.kernel_series()))
    for sc in EVERY_GROUP:
        text = sc["expect"].get("text")
        if text:  # what the text alone tells: a verdict of its own, and why it differs
            assert text["category"] in CATEGORIES and text["function"] and text["why"], sc["name"]
    assert NAMES == corpus.names() and set(NAMES) < set(every)
    assert {s["name"] for s in EVERY_GROUP if s["group"] == corpus.CORPUS
            and s["kernel"] in (corpus.quick_kernels() or {s["kernel"]})} == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_dump_exists_and_matches_manifest(name):
    sc = BY_NAME[name]
    meta = corpus.dump_meta(name)
    missing = META_KEYS - meta.keys()
    assert not missing, f"meta.json lacks {missing}"
    assert meta["scenario"] == name
    assert meta["series"] == sc["kernel"]
    assert meta["format"] == sc["format"]
    assert meta["dump_level"] == sc["dump_level"]
    assert meta.get("memory", 1024) == sc["memory"]
    assert meta.get("threads", 0) == sc["threads"]
    assert meta["accel"] in ("kvm", "tcg")
    assert Path(meta["path"]).stat().st_size == meta["bytes"] > 0
    assert Path(meta["vmlinux"]).is_file()
    assert all(Path(d).is_dir() for d in meta["debuginfo"])
    if sc["load_module"]:
        assert Path(meta["module_ko"]).is_file()
    else:
        assert meta["module_ko"] is None
    head = Path(meta["path"]).read_bytes()[:8]
    if sc["format"] == "elf":
        assert head[:4] == b"\x7fELF"
    else:
        assert head == b"KDUMP   "


@pytest.mark.parametrize("name", NAMES)
def test_console_shows_the_kernels_words(name):
    log = corpus.console_log(name)
    for text in BY_NAME[name]["console"]:
        assert text in log, f"{name}: console.log lacks {text!r} ({corpus.dump_meta(name)['console_log']})"
    # both kernels are in the log: the crashed one and the capture kernel
    # (their banners are printk's; /init's own echo lines can be lost in the
    # tty buffer when the kernel dies or powers off right after them)
    assert log.count("Linux version ") >= 2, f"{name}: the capture kernel's boot is not in the log"


def _stack_names(prog) -> list[str]:
    out = []
    for frame in prog.crashed_thread().stack_trace():
        name = frame.name
        if name is None:
            try:
                name = frame.symbol().name
            except LookupError:
                name = None
        out.append(corpus.base_function_name(name) or hex(frame.pc))
    return out


@pytest.mark.parametrize("name", INTACT)
def test_crashed_thread_stack(name, programs):
    prog = programs(name)
    stack = _stack_names(prog)
    for fn in BY_NAME[name]["expect"]["stack"]:
        assert fn in stack, f"{name}: {fn} not in the crashed thread's stack {stack}"


@pytest.mark.parametrize("name", [n for n in INTACT if BY_NAME[n]["dmesg"]])
def test_dump_log_shows_the_kernels_words(name, programs):
    from drgn.helpers.linux.printk import get_dmesg

    log = get_dmesg(programs(name)).decode(errors="replace")
    for text in BY_NAME[name]["dmesg"]:
        assert text in log, f"{name}: the dump's printk log lacks {text!r}"


@pytest.mark.parametrize("name", [n for n in INTACT if BY_NAME[n]["load_module"]])
def test_module_is_loaded_with_debug_info(name, programs):
    prog = programs(name)
    mod = prog.module("crashpoc")
    assert mod.debug_file_path == corpus.dump_meta(name)["module_ko"]
    addr = prog.symbol("crashpoc_trigger_write").address
    assert any(start <= addr < end for start, end in mod.address_ranges)
    assert prog.type("struct crashpoc_dev").size > 0  # the .ko's DWARF


@pytest.mark.parametrize("name", [n for n in INTACT if BY_NAME[n]["threads"]])
def test_dump_holds_the_sleeping_kthreads(name, programs):
    """crashpoc started `threads` kernel threads (crashpoc/N) sleeping in state S: all are in the
    dump's task list, none in D (they must not look like hung tasks)."""
    from drgn.helpers.linux.pid import for_each_task
    from drgn.helpers.linux.sched import task_state_to_char

    want = BY_NAME[name]["threads"]
    prog = programs(name)
    states: dict[str, int] = {}
    total = 0
    for task in for_each_task(prog):
        total += 1
        if re.fullmatch(rb"crashpoc/\d+", task.comm.string_()):
            state = task_state_to_char(task)
            states[state] = states.get(state, 0) + 1
    assert states == {"S": want}, f"{name}: crashpoc/N threads by state: {states}"
    assert total > want


@pytest.mark.parametrize("name", [n for n in INTACT if BY_NAME[n]["params"].get("park_d")])
def test_dump_holds_the_parked_kthreads(name, programs):
    """crashpoc parked `park_d` kernel threads (crashpoc-park/N) in D state before the trigger:
    all are in the dump's task list, in D, whatever else the guest was doing."""
    from drgn.helpers.linux.pid import for_each_task
    from drgn.helpers.linux.sched import task_state_to_char

    parked = [task_state_to_char(t) for t in for_each_task(programs(name))
              if re.fullmatch(rb"crashpoc-park/\d+", t.comm.string_())]
    assert parked == ["D"] * BY_NAME[name]["params"]["park_d"], f"{name}: {parked}"


@pytest.mark.parametrize("name", DAMAGED)
def test_damaged_dump_is_really_damaged(name, programs):
    import drgn
    from drgn.helpers.linux.pid import for_each_task

    assert BY_NAME[name]["expect"]["damaged"] == "excluded-pages"
    prog = programs(name)
    prog.load_debug_info([corpus.dump_meta(name)["vmlinux"]])
    assert prog["init_task"].comm.string_() == b"swapper/0"  # the dump does open
    with pytest.raises(drgn.FaultError, match="(?i)excluded"):
        prog.crashed_thread().stack_trace()
        [t.comm.string_() for t in for_each_task(prog)]
