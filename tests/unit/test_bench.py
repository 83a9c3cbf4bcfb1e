"""The pure parts of scripts/bench: medians, ratios, output checks, the table, the doc markers."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench"


def _load():
    loader = importlib.machinery.SourceFileLoader("kpm_bench", str(BENCH))
    spec = importlib.util.spec_from_loader("kpm_bench", loader)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["kpm_bench"] = mod  # dataclasses look their module up here
    loader.exec_module(mod)
    return mod


bench = _load()
Run, DumpResult = bench.Run, bench.DumpResult

CRASH_OK = """\
WARNING: active task ff1c018c828ec180 on cpu 0 not found in PID hash

PID: 99       TASK: ff1c018c828ec180  CPU: 0    COMMAND: "sh"
 #0 [ff2c2fdd803fba18] machine_kexec at ffffffffb386c62f
 #1 [ff2c2fdd803fba70] __crash_kexec at ffffffffb39646b7
[    4.356675] CR2: 0000000000000018
     MODULE       NAME            BASE         SIZE  OBJECT FILE
ffffffffc0403040  crashpoc  ffffffffc0401000  16384  (not loaded)  [CONFIG_KALLSYMS]
      KERNEL: /x/vmlinux-6.1.0-56-cloud-amd64  [TAINTED]
       TASKS: 3
       PANIC: "Oops: 0002 [#1] PREEMPT SMP NOPTI" (check log for details)
"""


def run(tool, seconds, rss=100 * 1024, ok=True, note="", rnd=0):
    return Run(tool=tool, round=rnd, seconds=seconds, maxrss_kib=rss, cpu_seconds=seconds,
               rc=0 if ok else 1, ok=ok, note=note)


def result(name, a, b, c, a_ok=True):
    r = DumpResult(name=name, size=17 * 2**20, format="kdump", dump_level=31)
    for i, (x, y, z) in enumerate(zip(a, b, c, strict=True)):
        r.runs += [run("crash", x, ok=a_ok, note="" if a_ok else "crash: no match", rnd=i),
                   run("drgn", y, rnd=i), run("kpm", z, rnd=i)]
    return r


def test_median_and_ratio():
    assert bench.median([3.0, 1.0, 2.0]) == 2.0
    assert bench.median([1.0, 2.0, 3.0, 4.0]) == 2.5
    assert bench.median([]) is None
    assert bench.ratio(1.0, 4.0) == 0.25
    assert bench.ratio(None, 4.0) is None
    assert bench.ratio(1.0, 0.0) is None
    assert bench.ratio(1.0, None) is None


def test_formatting():
    assert bench.fmt_seconds(1.234) == "1.23 s"
    assert bench.fmt_seconds(None) == "–"
    assert bench.fmt_mib(2048) == "2 MiB"
    assert bench.fmt_ratio(0.0567) == "0.057"
    assert bench.fmt_ratio(1.337) == "1.34"
    assert bench.fmt_ratio(None) == "–"
    assert bench.fmt_bytes(17 * 2**20) == "17 MB"


def test_check_crash_accepts_bt_and_panic_and_notes_quirks():
    ok, note = bench.check_crash(0, CRASH_OK, "")
    assert ok
    assert "TASKS: 3" in note and "PID hash" in note
    empty = CRASH_OK.replace('"Oops: 0002 [#1] PREEMPT SMP NOPTI" (check log for details)', '""')
    ok, note = bench.check_crash(0, empty, "")
    assert ok and "PANIC line empty" in note


def test_check_crash_reports_failures():
    ok, note = bench.check_crash(1, "", "crash: /a/vmlinux and /b/vmcore do not match!\n\nUsage:\n")
    assert not ok and note == "crash: /a/vmlinux and /b/vmcore do not match!"
    ok, note = bench.check_crash(0, "   PANIC: x\n", "")
    assert not ok and "no bt" in note
    assert bench.check_crash(None, "", "") == (False, "timed out")


def test_check_drgn():
    out = "#0  crashpoc_null_write (crashpoc.c:143:13)\n#1  0xffffffffc0401739\n#2  0x47b7a0\n"
    ok, note = bench.check_drgn(0, out, "")
    assert ok and note == "3 frames, 1 kernel frames unsymbolised"
    assert bench.check_drgn(0, "", "") == (False, "no stack printed")
    ok, note = bench.check_drgn(1, "", "Traceback\nValueError: boom\n")
    assert not ok and note == "ValueError: boom"


def test_check_kpm():
    assert bench.check_kpm(0, '{"verdict": {"category": "oops"}}', "") == (True, "verdict oops")
    ok, note = bench.check_kpm(1, '{"verdict": {"category": "unknown"}}', "")
    assert ok and "not confident" in note
    ok, note = bench.check_kpm(4, "", "kpostmortem: error: no vmlinux\n")
    assert not ok and note.startswith("exit 4")
    assert bench.check_kpm(0, "not json", "") == (False, "output is not JSON")


def test_dump_result_medians_and_ratios():
    r = result("d", a=[7.0, 8.0, 9.0], b=[0.4, 0.5, 0.6], c=[0.6, 0.7, 0.5])
    assert r.median_seconds("kpm") == 0.6
    assert r.c_over("drgn") == pytest.approx(0.6 / 0.5)
    assert r.c_over("crash") == pytest.approx(0.6 / 8.0)


def test_failed_tool_gives_no_ratio_and_a_note():
    r = result("d612", a=[5.0], b=[0.5], c=[0.6], a_ok=False)
    assert r.c_over("crash") is None
    assert r.c_over("drgn") == pytest.approx(1.2)
    assert "**crash failed 1/1**: crash: no match" in r.notes()
    assert bench.cell_time(r, "crash") == "5.00 s ✗"


def test_summary_is_median_over_dumps_of_successful_tools():
    rs = [result("x", [8.0], [0.5], [0.5]),
          result("y", [9.0], [1.0], [2.0]),
          result("z", [7.0], [0.4], [0.8], a_ok=False)]
    s = bench.summary(rs)
    assert s["crash_ok"] == 2 and s["crash_seconds"] == 8.5
    assert s["kpm_seconds"] == 0.8
    assert s["c_over_b"] == 2.0  # median of 1.0, 2.0, 2.0
    assert s["c_over_b_dumps"] == 3
    assert s["c_over_a_dumps"] == 2
    assert s["c_over_a"] == pytest.approx((0.5 / 8 + 2.0 / 9) / 2)
    lines = bench.verdict_lines(s)
    assert lines[0].startswith("- c ≤ 1.3 × b: **missed**")
    assert "**missed**" in lines[1]


def test_render_table_rows_and_median_row():
    rs = [result("null-write", [8.0], [0.5], [0.6]), result("sysrq-c", [9.0], [0.6], [0.6])]
    table = bench.render_table(rs)
    lines = table.splitlines()
    assert lines[0].startswith("| dump | size | a: crash")
    assert len(lines) == 2 + 2 + 1
    assert all(ln.count("|") == lines[0].count("|") for ln in lines[2:])
    assert lines[2].startswith("| null-write | 17 MB kdump -d 31 | 8.00 s | 0.50 s | 0.60 s | 0.075 | 1.20 |")
    assert lines[-1].startswith("| **median of 2 dumps** |")


def test_notes_escape_pipes():
    r = result("d", [1.0], [1.0], [1.0], a_ok=False)
    r.runs[0].note = "a | b"
    assert "a \\| b" in r.notes()


def test_replace_block_between_markers():
    doc = f"# Bench\n\nintro\n\n{bench.BEGIN}\nold\n{bench.END}\n\n## Profile\ntext\n"
    new = bench.replace_block(doc, "new table\n")
    assert new == f"# Bench\n\nintro\n\n{bench.BEGIN}\nnew table\n{bench.END}\n\n## Profile\ntext\n"
    assert bench.replace_block(new, "new table") == new


def test_replace_block_appends_markers_when_missing():
    new = bench.replace_block("# Bench\n", "t")
    assert new == f"# Bench\n\n{bench.BEGIN}\nt\n{bench.END}\n"


def test_machine_parsing():
    cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD  EPYC 7B13\n"
    assert bench.cpu_model(cpuinfo) == "AMD EPYC 7B13"
    assert bench.cpu_model("") == "unknown CPU"
    assert bench.mem_total("MemTotal:       24641536 kB\n") == "23.5 GiB"


def test_bare_drgn_runs_without_kpostmortems_plugin():
    assert bench.tool_env("drgn", {"A": "1"}) == {"A": "1", "DRGN_DISABLE_PLUGINS": "kpostmortem"}
    assert bench.tool_env("drgn", {"DRGN_DISABLE_PLUGINS": "x"})["DRGN_DISABLE_PLUGINS"] == "x,kpostmortem"
    assert bench.tool_env("drgn", {"DRGN_DISABLE_PLUGINS": "*"})["DRGN_DISABLE_PLUGINS"] == "*"
    assert "DRGN_DISABLE_PLUGINS" not in bench.tool_env("kpm", {})


def test_idle_text():
    assert bench.idle_text([0, 0, 0], 0.2, 1.9).startswith("yes — no qemu-system process at any of 3")
    assert bench.idle_text([0, 2, 0], 0.2, 1.9).startswith("**no** — qemu-system (corpus generation) "
                                                          "was running at 1 of 3")
    assert bench.idle_text([0, 0], 2.5, 1.9).startswith("**no** — other processes")


def test_cpu_table_and_ratios():
    rs = [result("a", [8.0], [0.5], [0.6]), result("b", [9.0], [1.0], [1.5], a_ok=False)]
    # result() sets cpu_seconds = seconds
    assert rs[0].c_over("drgn", cpu=True) == pytest.approx(1.2)
    lines = bench.render_cpu_table(rs).splitlines()
    assert lines[2] == "| a | 8.00 s | 0.50 s | 0.60 s | 0.075 | 1.20 |"
    assert lines[3] == "| b | 9.00 s ✗ | 1.00 s | 1.50 s | – | 1.50 |"
    assert lines[4] == "| **median of 2 dumps** | 8.00 s | 0.75 s | 1.05 s | **0.075** | **1.35** |"


def test_stale_module_detection(tmp_path):
    import hashlib

    ko = tmp_path / "crashpoc.ko"
    ko.write_bytes(b"module")
    good = hashlib.sha256(b"module").hexdigest()
    assert bench.stale_module({"module_ko": str(ko), "crashpoc_sha256": good}) == ""
    assert "rebuilt" in bench.stale_module({"module_ko": str(ko), "crashpoc_sha256": "0" * 64})
    assert bench.stale_module({"module_ko": None, "crashpoc_sha256": good}) == ""
    r = result("d", [1.0], [1.0], [1.0])
    r.stale = "stale: crashpoc.ko was rebuilt after this dump was made"
    assert r.notes().startswith("**stale: crashpoc.ko")


BATCH_OUT = """\
{"kind": "dump", "path": "/d/a/vmcore", "ok": true}
{"kind": "dump", "path": "/d/b/vmcore", "ok": true}
{"kind": "summary", "dumps": 2, "analysed": 2, "confident": 2, "failed": 0, "signatures": 2, "jobs": 2}
"""


def test_check_batch():
    assert bench.check_batch(0, BATCH_OUT, "", dumps=2) == (True, "2 analysed, 2 confident, 2 signatures")
    ok, note = bench.check_batch(0, BATCH_OUT, "", dumps=3)
    assert not ok and "expected 3" in note
    ok, note = bench.check_batch(3, BATCH_OUT.replace('"failed": 0', '"failed": 1'), "", dumps=2)
    assert not ok and note == "exit 3: 1 dumps failed"
    ok, note = bench.check_batch(2, "", "kpostmortem: error: no dump found\n", dumps=2)
    assert not ok and note.startswith("exit 2: no summary line")
    assert bench.check_batch(None, "", "", dumps=2) == (False, "timed out")


def test_batch_table():
    batch = {1: [run("batch-j1", 20.0, rss=300 * 1024), run("batch-j1", 22.0)],
             2: [run("batch-j2", 16.0), run("batch-j2", 18.0)]}
    lines = bench.render_batch_table(batch, dumps=30, sequential=42.0).splitlines()
    assert lines[0].startswith("| `--jobs` | wall | dumps/s |")
    assert lines[2] == "| 1 | 21.00 s | 1.43 | 21.00 s | 200 MiB | 1.00× | 2.00× |"
    assert lines[3] == "| 2 | 17.00 s | 1.76 | 17.00 s | 100 MiB | 1.24× | 2.47× |"
    batch[2][1] = run("batch-j2", 5.0, ok=False, note="exit 3: 1 dumps failed")
    lines = bench.render_batch_table(batch, dumps=30, sequential=None).splitlines()
    assert lines[3] == "| 2 | 10.50 s ✗ exit 3: 1 dumps failed | – | 10.50 s | 100 MiB | – | – |"


def test_batch_block_has_its_own_markers():
    doc = f"# B\n\n{bench.BEGIN}\ntools\n{bench.END}\n"
    doc = bench.replace_block(doc, "batch", bench.BATCH_BEGIN, bench.BATCH_END)
    assert doc == f"# B\n\n{bench.BEGIN}\ntools\n{bench.END}\n\n{bench.BATCH_BEGIN}\nbatch\n{bench.BATCH_END}\n"
    doc = bench.replace_block(doc, "tools 2")
    assert f"{bench.BEGIN}\ntools 2\n{bench.END}" in doc and "batch" in doc


def test_parse_proc_stat():
    line = ("1234 (python3 (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 "
            "100 1000000 4096 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0")
    assert bench.parse_proc_stat(line) == (1234, 300, 4096)


def test_tree_sampler_sees_its_own_session():
    sampler = bench.TreeSampler(os.getsid(0), interval=0.01)
    sampler._sample()
    assert sampler.peak_pss_kib > 0
    assert os.getpid() in sampler.cpu_ticks


def test_crash_failing_silently_is_named():
    assert bench.check_crash(1, "", "") == (False, "exit 1 without a word")


def test_saved_json_round_trip():
    import dataclasses
    import json

    rs = [result("a", [8.0, 9.0], [0.5, 0.6], [0.6, 0.7]), result("b", [5.0], [0.5], [0.6], a_ok=False)]
    rs[1].stale = "stale: x"
    batch = {1: [run("batch-j1", 20.0)], 2: [run("batch-j2", 15.0)]}
    data = json.loads(json.dumps({
        "dumps": [{**dataclasses.asdict(r), "notes": r.notes()} for r in rs],
        "batch": {str(j): [dataclasses.asdict(x) for x in runs] for j, runs in batch.items()},
    }))
    back, back_batch = bench.load_saved(data)
    assert back == rs
    assert back_batch == batch
    assert bench.render_table(back) == bench.render_table(rs)
    assert bench.sequential_seconds(back, 2) == pytest.approx(0.65 + 0.6)  # sum of kpm medians
    assert bench.sequential_seconds(back, 3) is None  # the batch covered dumps not timed alone


def test_python_tools_get_a_bytecode_cache():
    env = bench.tool_env("kpm", {"PYTHONDONTWRITEBYTECODE": "1"}, "/c")
    assert env == {"PYTHONPYCACHEPREFIX": "/c"}
    assert bench.tool_env("kpm", {"PYTHONDONTWRITEBYTECODE": "1"}) == {"PYTHONDONTWRITEBYTECODE": "1"}
    assert bench.tool_env("crash", {"PYTHONDONTWRITEBYTECODE": "1"}, "/c") == {"PYTHONDONTWRITEBYTECODE": "1"}
    assert bench.tool_env("drgn", {"PYTHONPYCACHEPREFIX": "/mine"}, "/c")["PYTHONPYCACHEPREFIX"] == "/mine"


def test_default_corpus_leaves_out_the_scale_group(tmp_path, monkeypatch):
    root = tmp_path / "vmcores"
    for name in ("null-write", "null-write-4g", "gone-from-manifest"):
        (root / name).mkdir(parents=True)
        (root / name / "vmcore").write_bytes(b"KDUMP   ")
        (root / name / "meta.json").write_text("{}")
    monkeypatch.setenv("KPM_CACHE", str(tmp_path))
    groups = {"null-write": "corpus", "null-write-4g": "scale"}
    found, missing = bench.corpus([], groups)
    assert [name for name, _d, _m in found] == ["null-write"] and missing == []
    found, _ = bench.corpus(["null-write-4g"], groups)  # named: taken whatever its group
    assert [name for name, _d, _m in found] == ["null-write-4g"]


def test_group_option_picks_another_groups_dumps(tmp_path, monkeypatch):
    root = tmp_path / "vmcores"
    for name in ("null-write", "arm64-null-write"):
        (root / name).mkdir(parents=True)
        (root / name / "vmcore").write_bytes(b"KDUMP   ")
        (root / name / "meta.json").write_text("{}")
    monkeypatch.setenv("KPM_CACHE", str(tmp_path))
    groups = {"null-write": "corpus", "arm64-null-write": "arm64"}
    found, _ = bench.corpus([], groups, group="arm64")
    assert [name for name, _d, _m in found] == ["arm64-null-write"]


def test_manifest_groups_read_the_real_manifest():
    groups = bench.manifest_groups()
    assert groups["null-write"] == "corpus"
    sys.path.insert(0, str(BENCH.parent))
    from lib_vmcores.main import GROUPS

    assert set(groups.values()) <= set(GROUPS)


def test_scale_table_has_ram_tasks_and_ratios():
    r = result("threads-2k", [6.0], [0.4], [0.5])
    r.memory_mib, r.tasks = 4096, 2061
    table = bench.render_scale_table([r])
    row = table.splitlines()[2]
    assert row.startswith("| threads-2k | 4 GiB | 2061 |")
    assert "| 1.25 |" in row  # c/b


def test_tasks_checked_reads_the_canary_sweep():
    assert bench.tasks_checked('{"stack_checks": {"canaries_checked": 61}}') == 61
    assert bench.tasks_checked("not json") is None
