"""Batch triage: analyse many dumps in parallel processes, or on a Dask cluster, and group them by signature.

``find_dumps`` turns DIR|FILES into jobs (each with its own debug info), ``analyze_one`` turns one
job into a plain result record (failures included), ``run_local``/``run_dask`` run the jobs and
``summarize`` groups the records by signature.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import json
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from kpostmortem.errors import ExitCode, KpmError, NoCrashReport

__all__ = [
    "Job", "find_dumps", "is_dump_file", "is_log_file", "read_sidecar", "analyze_one", "run_local", "run_dask",
    "summarize", "text_line", "text_summary", "batch_exit_code", "FleetError",
]

SIDECAR = "meta.json"
"""Name of the per-directory sidecar that names a dump's debug info (keys vmlinux, debuginfo)."""

# First bytes of the dump formats drgn opens: kdump-compressed, ELF (checked for ET_CORE),
# makedumpfile's flattened stream, and the older diskdump.
_MAGICS = (b"KDUMP   ", b"DISKDUMP", b"makedumpfile")


class FleetError(Exception):
    """The distributed engine cannot be used (not installed, or the scheduler is unreachable)."""


@dataclass(frozen=True)
class Job:
    """One dump to analyse and where its debug info comes from."""

    path: str
    vmlinux: str | None = None
    debuginfo: tuple[str, ...] = ()
    debug_from: str = "auto"
    """``sidecar`` (meta.json next to the dump), ``options`` (--vmlinux/--debuginfo) or ``auto``."""
    redact: bool = False
    redact_comm: bool = False


def is_dump_file(path: str) -> bool:
    """Whether ``path`` starts like a kernel crash dump (kdump-compressed, ELF core, flattened, diskdump)."""
    try:
        with open(path, "rb") as f:
            head = f.read(18)
    except OSError:
        return False
    if head.startswith(_MAGICS):
        return True
    # ELF: e_type (offset 16, 2 bytes, in the file's byte order) must be ET_CORE (4).
    if head[:4] == b"\x7fELF" and len(head) >= 18:
        order = "little" if head[5] == 1 else "big"
        return int.from_bytes(head[16:18], order) == 4
    return False


# Names of kernel text logs as people keep them: console captures, kdump's dmesg files, syslog,
# pstore records (systemd-pstore's copies too). Only these are taken from directories (--logs).
_LOG_NAME = re.compile(
    r"(\.log(\.\d+)?(\.gz)?$|^dmesg|vmcore-dmesg|^kern\.log|^messages|^syslog|^console|\.dmesg$)")


def is_log_file(path: str) -> bool:
    """Whether ``path`` is named like a kernel text log and holds text (see inputs.log.sniff_input)."""
    from kpostmortem.inputs.log import LOG_KINDS, sniff_input

    if not _LOG_NAME.search(os.path.basename(path)):
        return False
    try:
        return sniff_input(path) in LOG_KINDS
    except OSError:
        return False


def read_sidecar(dump: str) -> dict[str, Any] | None:
    """Debug info named by ``<dump>.meta.json`` or ``meta.json`` beside the dump, paths made absolute.

    Only the ``vmlinux`` and ``debuginfo`` keys are used (``debuginfo``: a directory or a list);
    relative paths are relative to the sidecar's directory. None when there is no usable sidecar.
    """
    folder = os.path.dirname(os.path.abspath(dump))
    for name in (os.path.basename(dump) + ".meta.json", SIDECAR):
        path = os.path.join(folder, name)
        try:
            with open(path) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            continue
        if not isinstance(meta, dict) or not (meta.get("vmlinux") or meta.get("debuginfo")):
            continue
        dirs = meta.get("debuginfo") or []
        dirs = [dirs] if isinstance(dirs, str) else list(dirs)
        vmlinux = meta.get("vmlinux")
        return {
            "vmlinux": os.path.join(folder, vmlinux) if vmlinux else None,
            "debuginfo": tuple(os.path.join(folder, d) for d in dirs),
            "sidecar": path,
        }
    return None


def find_dumps(
    paths: Iterable[str],
    vmlinux: str | None = None,
    debuginfo: Sequence[str] = (),
    redact: bool = False,
    redact_comm: bool = False,
    logs: bool = False,
) -> list[Job]:
    """Jobs for the dumps named or found under ``paths``, in path order, each dump once.

    A directory is searched recursively (hidden directories skipped) for files that start like
    a crash dump, and with ``logs`` for kernel text logs (see is_log_file); a file named
    explicitly is always taken (if it is neither, its record says so). Debug info: the dump's
    sidecar meta.json, else the options, else auto-discovery.
    """
    found: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(os.path.join(root, f) for f in sorted(files)
                             if not f.startswith(".") and (is_dump_file(os.path.join(root, f))
                                                           or (logs and is_log_file(os.path.join(root, f)))))
        else:
            found.append(p)
    jobs, seen = [], set()
    for path in found:
        key = os.path.realpath(path)
        if key in seen:
            continue
        seen.add(key)
        side = read_sidecar(path)
        if side is not None:
            job = Job(path, side["vmlinux"], side["debuginfo"], "sidecar", redact, redact_comm)
        elif vmlinux or debuginfo:
            job = Job(path, vmlinux, tuple(debuginfo), "options", redact, redact_comm)
        else:
            job = Job(path, None, (), "auto", redact, redact_comm)
        jobs.append(job)
    return jobs


def _iso(epoch: int | float | None) -> str | None:
    if not epoch:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def analyze_one(job: Job) -> dict[str, Any]:
    """Analyse one dump into a result record; never raises (a failure is a record with its error)."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    record: dict[str, Any] = {"kind": "dump", "path": job.path, "debug_info_from": job.debug_from}
    try:
        if is_dump_file(job.path):
            from kpostmortem.pipeline import analyze

            report = analyze(job.path, job.vmlinux, job.debuginfo, command=None).to_dict()
        else:
            report = _log_report(job)
        if job.redact:
            from kpostmortem.render.redact import redact_report

            report = redact_report(report, comms=job.redact_comm)
    except KpmError as e:
        record.update(ok=False, exit_code=int(e.exit_code), error=e.one_line(), error_type=type(e).__name__)
    except Exception as e:  # noqa: BLE001 - one bad dump never stops the batch
        record.update(ok=False, exit_code=int(ExitCode.INTERNAL), error_type=type(e).__name__,
                      error=f"internal error: {type(e).__name__}: {e}")
    else:
        v = report["verdict"]
        s = report.get("summary") or {}
        confident = v["category"] != "unknown" and v["confidence"] >= 0.5
        record.update(
            ok=True,
            exit_code=int(ExitCode.VERDICT if confident else ExitCode.NO_VERDICT),
            signature=v["signature"],
            category=v["category"],
            title=v["title"],
            function=v["function"],
            module=v["module"],
            confidence=v["confidence"],
            crash_time=_iso(s.get("crash_time")),
            release=(report.get("dump") or {}).get("release"),
            version=s.get("version"),  # uname -v: Debian's names the package (known-bug matching)
            # Redacted: every dump's host would read <host-1>, which counts nothing; say nothing.
            host=None if job.redact else s.get("hostname"),
        )
    record["seconds"] = round(time.perf_counter() - t0, 3)
    record["cpu_seconds"] = round(time.process_time() - cpu0, 3)
    return record


def _log_report(job: Job) -> dict[str, Any]:
    """The report of a file that is not a dump: a text log, or a DumpError saying what it is."""
    from kpostmortem.inputs.dump import open_dump
    from kpostmortem.inputs.log import LOG_KINDS, open_log, sniff_input
    from kpostmortem.logpipeline import analyze_log_source

    try:
        kind = sniff_input(job.path)
    except OSError:
        kind = None
    if kind not in LOG_KINDS:
        open_dump(job.path)  # raises the DumpError that says what the file is
    source = open_log(job.path, kind)
    if not source.analysis.records:
        raise NoCrashReport(f"{job.path}: no kernel crash report found{source.no_report_hint}")
    return analyze_log_source(source, job.vmlinux, job.debuginfo).to_dict()


def _failed(job: Job, error: str) -> dict[str, Any]:
    return {"kind": "dump", "path": job.path, "debug_info_from": job.debug_from, "ok": False,
            "exit_code": int(ExitCode.INTERNAL), "error": error, "error_type": "WorkerDied", "seconds": 0.0}


def run_local(jobs: Sequence[Job], workers: int,
              analyze: Callable[[Job], dict[str, Any]] = analyze_one) -> Iterator[dict[str, Any]]:
    """Analyse ``jobs`` in ``workers`` processes; records come in completion order.

    A worker that dies (a crash inside a native library on a damaged dump) breaks the pool; the
    unfinished jobs are then run again one process each, so only the guilty dump is reported as
    failed. ``analyze`` must be a module-level function (it is pickled to the workers).

    drgn indexes DWARF with OpenMP threads; each worker gets its share of the CPUs
    (``OMP_NUM_THREADS``, unless already set) so that N workers do not run N x CPUs threads.
    """
    ctx = multiprocessing.get_context("forkserver")
    # Not the pipeline: drgn's OpenMP runtime reads OMP_NUM_THREADS when it is loaded, which
    # must happen in the worker, after _worker_init.
    ctx.set_forkserver_preload(["kpostmortem.frontends.batch"])
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    left = list(jobs)
    with cf.ProcessPoolExecutor(max_workers=max(1, workers), mp_context=ctx,
                                initializer=_worker_init, initargs=(threads,)) as pool:
        futures = {pool.submit(analyze, j): j for j in left}
        try:
            for fut in cf.as_completed(futures):
                rec = fut.result()
                left.remove(futures[fut])
                yield rec
        except BrokenProcessPool:
            pass
    if left:
        yield from _isolated(left, workers, ctx, analyze)


def _worker_init(threads: int) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def _isolated(jobs: Sequence[Job], workers: int, ctx: Any,
              analyze: Callable[[Job], dict[str, Any]]) -> Iterator[dict[str, Any]]:
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))

    def one(job: Job) -> dict[str, Any]:
        with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_worker_init,
                                    initargs=(threads,)) as pool:
            try:
                return pool.submit(analyze, job).result()
            except BrokenProcessPool:
                return _failed(job, "the analysing process died (a crash in a native library?)")

    with cf.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        yield from (f.result() for f in cf.as_completed([pool.submit(one, j) for j in jobs]))


def run_dask(jobs: Sequence[Job], scheduler: str, timeout: float = 10.0) -> Iterator[dict[str, Any]]:
    """Analyse ``jobs`` on the Dask distributed cluster at ``scheduler`` (``tcp://host:port``).

    The workers need kpostmortem installed and the dumps and debug info at the same paths.
    """
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise FleetError("--scheduler needs Dask distributed: pip install 'kpostmortem[fleet]'") from None
    try:
        client = Client(scheduler, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise FleetError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
    try:
        futures = client.map(analyze_one, list(jobs), pure=False)
        by_key = {f.key: j for f, j in zip(futures, jobs, strict=True)}
        for fut in as_completed(futures, loop=client.loop):
            try:
                yield fut.result()
            except Exception as e:  # noqa: BLE001 - a lost worker fails its dump, not the batch
                yield _failed(by_key[fut.key], f"the Dask task failed: {type(e).__name__}: {e}")
    finally:
        client.close()


def summarize(records: Sequence[dict[str, Any]], seconds: float, jobs: int | None = None,
              scheduler: str | None = None) -> dict[str, Any]:
    """Group records by signature: count, first/last seen (crash time), an example each; failures apart."""
    groups: dict[str, dict[str, Any]] = {}
    failures: dict[int, dict[str, Any]] = {}
    for rec in sorted(records, key=lambda r: (r.get("crash_time") or "", r["path"])):
        if not rec["ok"]:
            f = failures.setdefault(rec["exit_code"], {"exit_code": rec["exit_code"], "count": 0,
                                                       "example": rec["path"], "error": rec["error"]})
            f["count"] += 1
            continue
        g = groups.get(rec["signature"])
        if g is None:
            g = groups[rec["signature"]] = {
                "signature": rec["signature"], "count": 0, "category": rec["category"], "title": rec["title"],
                "function": rec["function"], "module": rec["module"], "first_seen": rec.get("crash_time"),
                "last_seen": rec.get("crash_time"), "example": rec["path"], "releases": [], "hosts": 0,
                "_hosts": set(),
            }
            if "known_bugs" in rec:
                g["known_bugs"] = []
        for m in rec.get("known_bugs") or []:
            if m["id"] not in g["known_bugs"]:
                g["known_bugs"].append(m["id"])
        g["count"] += 1
        if rec.get("crash_time"):
            g["first_seen"] = min(filter(None, [g["first_seen"], rec["crash_time"]]))
            g["last_seen"] = max(filter(None, [g["last_seen"], rec["crash_time"]]))
        if rec.get("release") and rec["release"] not in g["releases"]:
            g["releases"].append(rec["release"])
        if rec.get("host"):
            g["_hosts"].add(rec["host"])
    for g in groups.values():
        hosts = g.pop("_hosts")
        g["hosts"] = len(hosts) if hosts else None
    ordered = sorted(groups.values(), key=lambda g: (-g["count"], g["first_seen"] or "", g["signature"]))
    ok = sum(1 for r in records if r["ok"])
    known = {}
    if any("known_bugs" in r for r in records):
        # Matched against a known-bugs file: known signatures first, then the new ones.
        ordered.sort(key=lambda g: not g.get("known_bugs"))
        known = {"known_signatures": sum(1 for g in ordered if g.get("known_bugs")),
                 "new_signatures": sum(1 for g in ordered if not g.get("known_bugs"))}
    return {
        "kind": "summary",
        "dumps": len(records),
        "analysed": ok,
        "confident": sum(1 for r in records if r["ok"] and r["exit_code"] == ExitCode.VERDICT),
        "failed": len(records) - ok,
        "signatures": len(ordered),
        **known,
        "jobs": jobs,
        "scheduler": scheduler,
        "seconds": round(seconds, 2),
        "dumps_per_second": round(len(records) / seconds, 3) if seconds > 0 else None,
        "analysis_seconds": round(sum(r.get("seconds") or 0 for r in records), 2),
        "analysis_cpu_seconds": round(sum(r.get("cpu_seconds") or 0 for r in records), 2),
        "groups": ordered,
        "failures": [failures[k] for k in sorted(failures)],
    }


def batch_exit_code(records: Sequence[dict[str, Any]]) -> int:
    """The worst per-dump exit code (0 verdict < 1 no verdict < 3 dump < 4 debug info < 5 internal)."""
    return max((r["exit_code"] for r in records), default=int(ExitCode.VERDICT))


def text_line(rec: dict[str, Any]) -> str:
    """One dump as one readable line."""
    if rec["ok"]:
        mark = "✔" if rec["exit_code"] == ExitCode.VERDICT else "?"
        known = ""
        if "known_bugs" in rec:  # matched against a known-bugs file
            ids = [m["id"] + (" REGRESSION" if m.get("status") == "regression" else "") for m in rec["known_bugs"]]
            known = f"  [known bug {', '.join(ids)}]" if ids else "  [new]"
        return f"{mark} {rec['signature']}  {rec['title']}{known}  ({rec['seconds']:.1f} s)  {rec['path']}"
    return f"✘ exit {rec['exit_code']}  {rec['error']}  {rec['path']}"


def text_summary(summary: dict[str, Any]) -> str:
    """The summary as a table: one row per signature, most frequent first, then the failures."""
    how = f"on {summary['scheduler']}" if summary.get("scheduler") else f"with {summary['jobs']} job(s)"
    rate = f"{summary['dumps_per_second']} dumps/s" if summary.get("dumps_per_second") else "-"
    out = [
        "",
        f"SUMMARY  {summary['dumps']} dumps in {summary['seconds']} s {how} ({rate}): "
        f"{summary['analysed']} analysed ({summary['confident']} with a confident verdict), "
        f"{summary['failed']} failed, {summary['signatures']} signatures",
    ]
    if "known_signatures" in summary:
        parts = [("KNOWN", [g for g in summary["groups"] if g.get("known_bugs")]),
                 ("NEW", [g for g in summary["groups"] if not g.get("known_bugs")])]
    else:
        parts = [("", summary["groups"])]
    for head, groups in parts:
        if head:
            out.append(f"{head}  {len(groups)} signature(s)"
                       + (" matched by the known-bugs file" if head == "KNOWN" else " in no known-bugs entry"))
        if groups:
            out.append(f"  {'count':>5}  {'signature':<12}  {'first seen':<20}  {'last seen':<20}  title")
        for g in groups:
            out.append(f"  {g['count']:>5}  {g['signature']:<12}  {g['first_seen'] or '?':<20}  "
                       f"{g['last_seen'] or '?':<20}  {g['title']}")
            if g.get("known_bugs"):
                out.append(f"  {'':>5}  {'':<12}  {'':<20}  {'':<20}  known bug {', '.join(g['known_bugs'])}")
            out.append(f"  {'':>5}  {'':<12}  {'':<20}  {'':<20}  e.g. {g['example']}")
    for f in summary["failures"]:
        example = f['error'] if f['example'] in f['error'] else f"{f['example']}: {f['error']}"
        out.append(f"  {f['count']:>5}  failed with exit {f['exit_code']}, e.g. {example}")
    return "\n".join(out)


def run_batch(jobs: Sequence[Job], workers: int, scheduler: str | None,
              emit: Callable[[dict[str, Any]], None]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run every job, ``emit`` each record as it completes; returns the records and the summary."""
    t0 = time.perf_counter()
    records = []
    stream = run_dask(jobs, scheduler) if scheduler else run_local(jobs, workers)
    for rec in stream:
        records.append(rec)
        emit(rec)
    summary = summarize(records, time.perf_counter() - t0, None if scheduler else workers, scheduler)
    return records, summary
