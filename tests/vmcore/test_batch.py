"""`kpostmortem batch` on real dumps: discovery with per-dump sidecars, one JSON line per dump, the
summary by signature, failures as data, a worker that dies, and the same batch on a Dask cluster
on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kpostmortem.frontends import batch
from kpostmortem.frontends.batch import FleetError, Job, find_dumps, is_dump_file, read_sidecar, run_dask, run_local

from .corpus import dump_dir, dump_meta, names

pytestmark = pytest.mark.vmcore

SAME = ["null-write", "null-write-2"]      # one bug, two boots
OTHER = "gpf"


def _batch(*args: str, timeout: int = 600) -> tuple[int, list[dict], str]:
    run = subprocess.run([sys.executable, "-m", "kpostmortem.frontends.cli", "batch", *args],
                         capture_output=True, text=True, timeout=timeout)
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    return run.returncode, lines, run.stdout + run.stderr


@pytest.fixture(scope="module")
def not_a_dump(tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("junk") / "vmcore"
    p.write_bytes(b"this is not a crash dump\n" * 10)
    return str(p)


# --------------------------------------------------------------------------- discovery

def test_finds_every_corpus_dump_with_its_sidecar():
    for name in names():
        dump_meta(name)  # fails the test, naming the build command, if a dump is missing
    jobs = find_dumps([str(dump_dir("null-write").parent)])
    found = {Path(j.path).parent.name: j for j in jobs}
    # Dumps of other groups (benchmark inputs, series being brought up) may be there too, or
    # not: every corpus dump is found, once, and nothing but dumps is.
    assert len(found) == len(jobs), "one job per dump directory"
    assert set(names()) <= set(found), "every corpus dump is found"
    assert {Path(j.path).name for j in jobs} == {"vmcore"}, "no console.log, meta.json or .work files"
    for name in names():
        job, meta = found[name], dump_meta(name)
        assert Path(job.path).name == "vmcore"
        assert job.debug_from == "sidecar"
        assert (job.vmlinux, job.debuginfo) == (meta["vmlinux"], tuple(meta["debuginfo"]))


def test_dump_magic():
    assert is_dump_file(dump_meta("null-write")["path"])          # kdump-compressed
    assert is_dump_file(dump_meta("null-write-elf")["path"])      # ELF core
    assert not is_dump_file(dump_meta("null-write")["vmlinux"])   # ELF, but an executable
    assert not is_dump_file(dump_meta("null-write")["console_log"])


def test_sidecar_beside_the_dump_wins_and_relative_paths_are_its_own(tmp_path):
    dump = tmp_path / "host1.vmcore"
    dump.write_bytes(b"KDUMP   ")
    (tmp_path / "meta.json").write_text(json.dumps({"vmlinux": "dbg/vmlinux", "debuginfo": "dbg/modules"}))
    side = read_sidecar(str(dump))
    assert side["vmlinux"] == str(tmp_path / "dbg/vmlinux")
    assert side["debuginfo"] == (str(tmp_path / "dbg/modules"),)
    (tmp_path / "host1.vmcore.meta.json").write_text(json.dumps({"vmlinux": "/abs/vmlinux"}))
    assert read_sidecar(str(dump))["vmlinux"] == "/abs/vmlinux"
    other = tmp_path / "sub" / "vmcore"
    other.parent.mkdir()
    other.write_bytes(b"KDUMP   ")
    jobs = {Path(j.path).name: j for j in find_dumps([str(tmp_path)], vmlinux="/opt/vmlinux")}
    assert jobs["host1.vmcore"].debug_from == "sidecar"
    assert (jobs["vmcore"].debug_from, jobs["vmcore"].vmlinux) == ("options", "/opt/vmlinux")
    assert find_dumps([str(other)])[0].debug_from == "auto"
    assert len(find_dumps([str(other), str(tmp_path / "sub" / ".." / "sub" / "vmcore")])) == 1


# --------------------------------------------------------------------------- the command

def test_json_lines_and_summary(not_a_dump):
    paths = [str(dump_dir(n)) for n in SAME] + [dump_meta(OTHER)["path"], not_a_dump]
    rc, lines, out = _batch("--jobs", "2", *paths)
    dumps, summary = lines[:-1], lines[-1]
    assert [d["kind"] for d in dumps] == ["dump"] * 4 and summary["kind"] == "summary", out
    by_path = {d["path"]: d for d in dumps}
    bad = by_path[not_a_dump]
    assert (bad["ok"], bad["exit_code"]) == (False, 3) and "not a kernel crash dump" in bad["error"]
    assert rc == 3, "the batch exits with the worst dump's code"
    good = [d for d in dumps if d["ok"]]
    assert all(d["exit_code"] == 0 and d["debug_info_from"] == "sidecar" for d in good)
    assert summary["dumps"] == 4 and summary["analysed"] == 3 and summary["failed"] == 1
    assert summary["jobs"] == 2 and summary["dumps_per_second"] > 0
    groups = {g["signature"]: g for g in summary["groups"]}
    assert len(groups) == 2
    top = summary["groups"][0]
    same = [d for d in good if Path(d["path"]).parent.name in SAME]
    assert top["count"] == 2 and top["signature"] == same[0]["signature"] == same[1]["signature"]
    assert top["first_seen"] == min(d["crash_time"] for d in same)
    assert top["last_seen"] == max(d["crash_time"] for d in same)
    assert top["example"] in {d["path"] for d in same}
    assert top["title"] == "BUG: kernel NULL pointer dereference in crashpoc_null_write [crashpoc]"
    assert summary["failures"] == [{"exit_code": 3, "count": 1, "example": not_a_dump, "error": bad["error"]}]


def test_text_format_and_redaction():
    meta = dump_meta("secrets")
    rc, _, out = _batch("--jobs", "1", "--format", "text", "--redact", meta["path"])
    assert rc == 0
    assert "SUMMARY  1 dumps" in out and "crashpoc_null_write" in out
    rc, lines, out = _batch("--jobs", "1", "--redact", meta["path"])
    assert lines[0]["host"] is None and lines[1]["groups"][0]["hosts"] is None
    assert "pay-db-07" not in out


def test_options_give_debug_info_to_dumps_without_a_sidecar(tmp_path):
    meta = dump_meta("null-write")
    lone = tmp_path / "vmcore"
    os.symlink(meta["path"], lone)
    args = ["--vmlinux", meta["vmlinux"], *sum((["--debuginfo", d] for d in meta["debuginfo"]), [])]
    rc, lines, out = _batch("--jobs", "1", *args, str(tmp_path))
    assert rc == 0, out
    assert lines[0]["debug_info_from"] == "options" and lines[0]["function"] == "crashpoc_null_write"


def test_nothing_to_do_is_a_usage_error(tmp_path):
    rc, _, out = _batch(str(tmp_path))
    assert rc == 2 and "no crash dump found" in out


def die_on_gpf(job: Job) -> dict:
    """A worker that crashes hard on one dump, as a native library might on a damaged one."""
    if "/gpf/" in job.path:
        os._exit(9)
    return batch.analyze_one(job)


def test_a_dying_worker_fails_only_its_dump():
    jobs = find_dumps([dump_meta(n)["path"] for n in [*SAME, OTHER]])
    records = {Path(r["path"]).parent.name: r for r in run_local(jobs, 2, analyze=die_on_gpf)}
    assert set(records) == {*SAME, OTHER}
    assert records[OTHER]["ok"] is False and records[OTHER]["error_type"] == "WorkerDied"
    assert all(records[n]["ok"] for n in SAME)


# --------------------------------------------------------------------------- Dask on loopback

@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("dask.distributed", reason="the fleet extra: pip install 'kpostmortem[fleet]'")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as c:
        yield c


def test_same_batch_on_a_dask_cluster(cluster, not_a_dump):
    paths = [str(dump_dir(n)) for n in SAME] + [dump_meta(OTHER)["path"], not_a_dump]
    rc, lines, out = _batch("--scheduler", cluster.scheduler_address, *paths)
    dumps, summary = lines[:-1], lines[-1]
    assert rc == 3 and len(dumps) == 4, out
    assert summary["scheduler"] == cluster.scheduler_address and summary["jobs"] is None
    assert [g["count"] for g in summary["groups"]] == [2, 1]
    local = {d["path"]: d["signature"] for d in dumps if d["ok"]}
    assert local[os.path.join(str(dump_dir("null-write")), "vmcore")] == summary["groups"][0]["signature"]


def test_unreachable_scheduler_and_missing_dask(monkeypatch):
    job = Job(dump_meta("null-write")["path"])
    with pytest.raises(FleetError, match="cannot reach the Dask scheduler"):
        list(run_dask([job], "tcp://127.0.0.1:9", timeout=1))
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    with pytest.raises(FleetError, match=r"pip install 'kpostmortem\[fleet\]'"):
        list(run_dask([job], "tcp://127.0.0.1:9"))
