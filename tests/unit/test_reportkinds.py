"""Debug-kernel reports (decode/reportkinds.py): each names its suspect where its kind says.

The logs are short hand-written reports in the kernel's own formats (lockdep, kmemleak,
page_owner, the atomic-context checks), with made-up function names where the shape is what
matters, so the rules are tested as mechanisms rather than against one corpus.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kpostmortem.decode.oopslog import parse_dmesg_text, parse_log
from kpostmortem.decode.reportkinds import REPORT_KINDS, report_kind
from kpostmortem.logpipeline import analyze_log
from kpostmortem.verdict.categories import CATEGORIES


def analysed(tmp_path: Path, text: str) -> dict:
    p = tmp_path / "console.log"
    p.write_text(text)
    return analyze_log(str(p), command=[]).to_dict()


CIRCULAR = """\
[   49.707025] ======================================================
[   49.713322] WARNING: possible circular locking dependency detected
[   49.719607] 6.1.0-test #1 Not tainted
[   49.723630] ------------------------------------------------------
[   49.729910] worker/4896 is trying to acquire lock:
[   49.735409] ffff888012345678 (&dev->cfg_lock){+.+.}-{3:3}, at: foo_reconfigure+0x58/0xab0 [foo]
[   49.743358]
[   49.743358] but task is already holding lock:
[   49.749293] ffff888087654321 (&dev->state_lock){+.+.}-{3:3}, at: foo_ioctl+0x25b/0x890 [foo]
[   49.757751]
[   49.757751] which lock already depends on the new lock.
[   49.766030]
[   49.766030] the existing dependency chain (in reverse order) is:
[   49.773612]
[   49.773612] -> #1 (&dev->state_lock){+.+.}-{3:3}:
[   49.778947]        lock_acquire+0x1d5/0x580
[   49.783234]        __mutex_lock+0x16f/0x1a80
[   49.787609]        foo_event+0x21b/0x450 [foo]
[   49.792155]        process_one_work+0x3db/0x5b0
[   49.797654]
[   49.797654] stack backtrace:
[   49.801594] CPU: 1 PID: 4896 Comm: worker Not tainted 6.1.0-test #1
[   49.805878] Call Trace:
[   49.809903]  <TASK>
[   49.815231]  dump_stack_lvl+0x44/0x5c
[   49.819516]  check_noncircular+0x110/0x170
[   49.823803]  __lock_acquire+0x1208/0x1fd0
[   49.828612]  lock_acquire+0xc2/0x2a0
[   49.833503]  __mutex_lock+0x16f/0x1a80
[   49.837503]  foo_reconfigure+0x58/0xab0 [foo]
[   49.841503]  foo_ioctl+0x2a1/0x890 [foo]
[   49.845503]  __x64_sys_ioctl+0x8d/0xc0
[   49.849503]  do_syscall_64+0x58/0xc0
[   49.853503]  </TASK>
[   49.857503] worker (4896) used greatest stack depth: 11000 bytes left
"""


def test_a_lockdep_report_blames_the_acquisition_and_says_the_machine_survived(tmp_path):
    d = analysed(tmp_path, CIRCULAR)
    v = d["verdict"]
    assert v["category"] == "locking-violation"
    assert (v["function"], v["module"]) == ("foo_reconfigure", "foo")
    assert v["title"] == "possible deadlock in foo_reconfigure [foo]"
    assert d["summary"]["how"]["fatal"] is False
    assert d["log"]["records"][0]["report_kind"] == "circular-locking"


def test_the_second_at_line_when_the_first_is_workqueue_machinery(tmp_path):
    text = CIRCULAR.replace("foo_reconfigure+0x58/0xab0 [foo]\n[   49.743358]",
                            "process_one_work+0x58/0xab0\n[   49.743358]", 1)
    assert analysed(tmp_path, text)["verdict"]["function"] == "foo_ioctl"


def test_an_oops_after_a_lockdep_report_is_the_verdict(tmp_path):
    oops = (Path(__file__).parent / "data" / "oops_null_6.1.log").read_text()
    v = analysed(tmp_path, CIRCULAR + oops)["verdict"]
    assert v["category"] == "null-pointer-dereference"


KMEMLEAK = """\
[  128.520000] kmemleak: 1 new suspected memory leaks (see /sys/kernel/debug/kmemleak)
unreferenced object 0xffff8882d78c9ea0 (size 96):
  comm "modprobe", pid 5988, jiffies 4294941388
  hex dump (first 32 bytes):
    df 82 95 86 ff ff ff ff a8 9e 8c d7 82 88 ff ff  ................
  backtrace (crc c9a1c131):
    kmemleak_alloc_recursive include/linux/kmemleak.h:44 [inline]
    slab_post_alloc_hook mm/slub.c:4951 [inline]
    __kmalloc_cache_noprof+0x42f/0x5e0 mm/slub.c:5719
    kzalloc_noprof include/linux/slab.h:1094 [inline]
    bar_add_port+0x57/0x110 drivers/misc/bar.c:774
    bar_probe+0x13c/0x1e0 drivers/misc/bar.c:46
    really_probe+0x148/0x280 drivers/base/dd.c:682
"""


def test_kmemleak_blames_the_first_frame_past_the_allocator(tmp_path):
    v = analysed(tmp_path, KMEMLEAK)["verdict"]
    assert (v["category"], v["function"]) == ("memory-leak", "bar_add_port")
    assert v["title"] == "memory leak in bar_add_port"


def test_kmemleak_with_raw_addresses_and_a_leading_marker_line(tmp_path):
    text = """\
BUG: memory leak
unreferenced object 0xffff88006b006340 (size 32):
  comm "swapper/0", pid 1, jiffies 4294937368 (age 128.520s)
  backtrace:
    [<000000005cb5aa0e>] kmem_cache_alloc_node_trace+0x1d3/0x3f0
    [<0000000074d33dbd>] __kmalloc_node+0x33/0x70
    [<0000000096a3fef4>] kstrdup+0x3e/0x160
    [<00000000d0b401b6>] baz_register+0x2c/0x40
    [<0000000041554630>] do_one_initcall+0x6b/0x2d0
"""
    recs = parse_log(parse_dmesg_text(text)).records
    assert len(recs) == 1 and recs[0].report_kind == "memory-leak"
    assert analysed(tmp_path, text)["verdict"]["function"] == "baz_register"


def test_a_bad_page_is_blamed_on_its_last_owner(tmp_path):
    text = """\
[  100.000001] BUG: Bad page state in process kworker/0:1  pfn:7deea
[  100.000002] page: refcount:0 mapcount:0 mapping:0000000000000000 index:0x0 pfn:0x7deea
[  100.000003] page dumped because: PAGE_FLAGS_CHECK_AT_FREE flag(s) set
[  100.000004] page_owner tracks the page as allocated
[  100.000005] page last allocated via order 0, migratetype Movable, gfp_mask 0x8c40(GFP_NOFS|__GFP_NOFAIL)
[  100.000006]  post_alloc_hook+0x1f3/0x230
[  100.000007]  get_page_from_freelist+0x2b1b/0x2c40
[  100.000008]  __alloc_pages_noprof+0x1c8/0x370
[  100.000009]  filemap_alloc_folio_noprof+0xdf/0x500
[  100.000010]  __filemap_get_folio+0x446/0xbd0
[  100.000011]  qux_read_meta+0x2c3/0xf40
[  100.000012]  qux_lookup+0x8e/0x170
[  100.000013] page last free pid 5201 tgid 5201 stack trace:
[  100.000014]  free_unref_folios+0xa8/0x1f0
[  100.000015] CPU: 0 PID: 12 Comm: kworker/0:1 Tainted: G    B   6.12.0 #1
[  100.000016] Call Trace:
[  100.000017]  <TASK>
[  100.000018]  dump_stack_lvl+0x241/0x360
[  100.000019]  bad_page+0x1ad/0x200
[  100.000020]  free_unref_folios+0xa8/0x1f0
[  100.000021]  folios_put_refs+0x76c/0x860
[  100.000022]  </TASK>
"""
    v = analysed(tmp_path, text)["verdict"]
    assert (v["category"], v["function"]) == ("memory-corruption", "qux_read_meta")
    assert v["title"] == "BUG: Bad page state in qux_read_meta"


def test_a_workqueue_leak_names_the_work_function(tmp_path):
    text = """\
[  300.000001] BUG: workqueue leaked lock or atomic: kworker/1:2/0x00000000/321
[  300.000002]      last function: quux_refresh_work
[  300.000003] 1 lock held by kworker/1:2/321:
[  300.000004]  #0: ffff88801ceeb110 (&q->lock){+.+.}-{3:3}, at: quux_refresh_work+0x1d3/0x760
[  300.000005] CPU: 1 PID: 321 Comm: kworker/1:2 Not tainted 6.1.0 #1
[  300.000006] Call Trace:
[  300.000007]  dump_stack_lvl+0x44/0x5c
[  300.000008]  process_one_work+0x9a8/0x1390
[  300.000009]  worker_thread+0x5a/0x3d0
"""
    v = analysed(tmp_path, text)["verdict"]
    assert (v["category"], v["function"]) == ("locking-violation", "quux_refresh_work")


def test_scheduling_while_atomic_escalated_by_its_own_panic(tmp_path):
    text = """\
[  315.100001] BUG: scheduling while atomic: app/5582/0x00000101
[  315.100002] Modules linked in: corge
[  315.100003] Kernel panic - not syncing: scheduling while atomic
[  315.100004] CPU: 1 PID: 5582 Comm: app Not tainted 6.1.0 #1
[  315.100005] Call Trace:
[  315.100006]  dump_stack_lvl+0x44/0x5c
[  315.100007]  panic+0x11c/0x360
[  315.100008]  __schedule_bug+0x9c/0xb0
[  315.100009]  __schedule+0x7e8/0xa2c
[  315.100010]  schedule+0x54/0xbc
[  315.100011]  rwsem_down_write_slowpath+0x2a4/0x608
[  315.100012]  down_write+0x4c/0x50
[  315.100013]  corge_remove+0x198/0x378 [corge]
[  315.100014]  platform_remove+0x40/0x54
"""
    d = analysed(tmp_path, text)
    v = d["verdict"]
    assert (v["category"], v["function"], v["module"]) == ("invalid-context", "corge_remove", "corge")
    assert v["title"] == "BUG: scheduling while atomic in corge_remove [corge]"
    assert d["summary"]["how"]["fatal"] is True


@pytest.mark.parametrize("headline, name", [
    ("WARNING: possible recursive locking detected", "recursive-locking"),
    ("[ INFO: possible circular locking dependency detected ]", "circular-locking"),
    ("WARNING: HARDIRQ-safe -> HARDIRQ-unsafe lock order detected", "safe-unsafe"),
    ("WARNING: inconsistent lock state", "inconsistent-lock-state"),
    ("BUG: sleeping function called from invalid context at mm/slab.h:742", "sleep-in-atomic"),
    ("BUG: using smp_processor_id() in preemptible [00000000] code: sh/1", "preemptible-cpu-access"),
    ("BUG: KMSAN: uninit-value in foo+0x1/0x2", "kmsan"),
    ("BUG: KCSAN: data-race in foo / bar", "kcsan"),
    ("UBSAN: shift-out-of-bounds in lib/foo.c:12:3", "ubsan"),
    ("UBSAN: Undefined behaviour in lib/foo.c:12:3", "ubsan"),
    ("unreferenced object 0xffff88810c1f3e00 (size 64):", "memory-leak"),
    ("BUG: spinlock bad magic on CPU#0, swapper/0/1", "spinlock-debug"),
])
def test_headlines_open_their_report_kind(headline, name):
    kind = report_kind(headline)
    assert kind is not None and kind.name == name


def test_every_report_kind_has_an_explained_category_and_a_unique_name():
    assert len({k.name for k in REPORT_KINDS}) == len(REPORT_KINDS)
    assert all(k.category in CATEGORIES for k in REPORT_KINDS)


POWERPC = """\
[  812.000001] BUG: Kernel NULL pointer dereference on read at 0x00000010
[  812.000002] Faulting instruction address: 0xc008000001a2b3c4
[  812.000003] Oops: Kernel access of bad area, sig: 11 [#1]
[  812.000004] LE PAGE_SIZE=64K MMU=Radix SMP NR_CPUS=2048 NUMA pSeries
[  812.000005] Modules linked in: grault(OE)
[  812.000006] CPU: 3 PID: 4321 Comm: graultd Tainted: G           OE      6.1.0-ppc #1
[  812.000007] NIP:  c008000001a2b3c4 LR: c008000001a2b390 CTR: 0000000000000000
[  812.000008] NIP [c008000001a2b3c4] grault_poll+0x44/0x120 [grault]
[  812.000009] LR [c008000001a2b390] grault_poll+0x10/0x120 [grault]
[  812.000010] Call Trace:
[  812.000011] [c00000000a3efa20] [c00000000030a060] show_stack+0x3c/0x70 (unreliable)
[  812.000012] [c00000000a3efb30] [c008000001a2c06c] grault_timer+0x26c/0x280 [grault]
[  812.000013] [c00000000a3efb90] [c0000000002e6fc0] call_timer_fn+0x50/0x1c0
"""


def test_a_powerpc_oops_gets_category_function_and_module(tmp_path):
    d = analysed(tmp_path, POWERPC)
    v = d["verdict"]
    assert (v["category"], v["function"], v["module"]) == ("null-pointer-dereference", "grault_poll", "grault")
    rec = d["log"]["records"][0]
    assert rec["oops_number"] == 1 and rec["fault_address"] == 0x10
    # "(unreliable)" entries are stack-scan guesses, as x86's "?" ones
    assert rec["call_trace"] == ["grault_timer", "call_timer_fn"]
