"""make-vmcores: build the real vmcore corpus described by fixtures/vmcores/manifest.toml."""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
import tomllib
from pathlib import Path

from . import guest, kernels, log

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "fixtures" / "vmcores" / "manifest.toml"
CRASHPOC_SRC = REPO / "fixtures" / "vmcores" / "crashpoc"

DEFAULTS = {
    "format": "kdump", "dump_level": 31, "boot_args": "", "sysctls": {},
    "load_module": True, "console": [], "dmesg": [], "followup": "", "preload": [],
    "panic_on_oops": True, "hostname": "", "trigger_comm": "",
    "memory": 1024, "threads": 0, "group": "corpus", "params": {},
}
# Keys that change what the guest does; a change in any of them redoes the dump.
CAPTURE_KEYS = ("kernel", "trigger", "followup", "format", "dump_level", "boot_args",
                "sysctls", "load_module", "preload", "panic_on_oops", "hostname", "trigger_comm",
                "memory", "threads", "params")
# "corpus": the dumps the test suite needs, made by default (CI makes them all): every
# kernel generation (5.10, 6.1, 6.12, 7.2) and the hangs.
# "scale": big inputs of the scaling benchmark only, made on request (--group scale
# or --only NAME); no test reads them.
# "arm64": the arm64 series while it is brought up, made on request (--group arm64).
GROUPS = ("corpus", "scale", "arm64")
DEFAULT_GROUP = "corpus"
MIN_MEMORY = 768    # MiB: crashkernel=256M comes out of it, and the first kernel needs the rest
MAX_MEMORY = 16384


def cache_root() -> Path:
    if os.environ.get("KPM_CACHE"):
        return Path(os.environ["KPM_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "kpostmortem"


def load_manifest(path: Path = MANIFEST) -> list[dict]:
    with open(path, "rb") as f:
        data = tomllib.load(f)
    out, seen = [], set()
    for raw in data.get("scenario", []):
        sc = {**DEFAULTS, **raw}
        for key in ("name", "kernel", "trigger", "description", "expect"):
            if key not in sc:
                raise SystemExit(f"{path}: a scenario lacks '{key}': {raw}")
        if sc["name"] in seen:
            raise SystemExit(f"{path}: duplicate scenario {sc['name']}")
        if sc["kernel"] not in kernels.SERIES:
            raise SystemExit(f"{path}: {sc['name']}: unknown kernel series {sc['kernel']}")
        if sc["format"] not in ("kdump", "elf"):
            raise SystemExit(f"{path}: {sc['name']}: format must be kdump or elf")
        if kernels.SERIES[sc["kernel"]].get("capture") == "copy" and (sc["format"], sc["dump_level"]) != ("elf", 0):
            # the series' capture kernel copies /proc/vmcore as is: an ELF dump of every page
            raise SystemExit(f"{path}: {sc['name']}: series {sc['kernel']} copies /proc/vmcore: "
                             "format must be elf and dump_level 0")
        # Both end up in /init's shell words: keep them to plain name characters.
        if not re.fullmatch(r"[A-Za-z0-9.-]{0,64}", sc["hostname"]):
            raise SystemExit(f"{path}: {sc['name']}: hostname must be [A-Za-z0-9.-], at most 64")
        if not re.fullmatch(r"[A-Za-z0-9._-]{0,15}", sc["trigger_comm"]):
            raise SystemExit(f"{path}: {sc['name']}: trigger_comm must be [A-Za-z0-9._-], at most 15")
        if sc["group"] not in GROUPS:
            raise SystemExit(f"{path}: {sc['name']}: group must be one of {', '.join(GROUPS)}")
        mem = sc["memory"]
        if type(mem) is not int or not MIN_MEMORY <= mem <= MAX_MEMORY:
            raise SystemExit(f"{path}: {sc['name']}: memory must be MiB, {MIN_MEMORY}..{MAX_MEMORY}")
        if type(sc["threads"]) is not int or sc["threads"] < 0:
            raise SystemExit(f"{path}: {sc['name']}: threads must be a count >= 0")
        if sc["threads"] and not sc["load_module"]:
            raise SystemExit(f"{path}: {sc['name']}: threads needs load_module (crashpoc starts them)")
        params = sc["params"]
        if not isinstance(params, dict) or not all(
                re.fullmatch(r"[a-z_][a-z0-9_]{0,31}", k) and re.fullmatch(r"[A-Za-z0-9_,.-]{1,64}", str(v))
                for k, v in params.items()):
            raise SystemExit(f"{path}: {sc['name']}: params must map crashpoc parameter names to plain values")
        if params and not sc["load_module"]:
            raise SystemExit(f"{path}: {sc['name']}: params needs load_module (crashpoc's parameters)")
        seen.add(sc["name"])
        out.append(sc)
    return out


def scenario_groups(path: Path = MANIFEST) -> dict[str, str]:
    """{scenario name: group} for every manifest entry ("corpus" or "scale")."""
    return {sc["name"]: sc["group"] for sc in load_manifest(path)}


def inputs_hash(sc: dict, crashpoc_hash: str | None = None) -> str:
    """Hash of what a dump depends on: the scenario's capture keys, the guest's
    /init, and the crashpoc sources (by default the repo's; when writing a
    dump's meta, the hash of the sources its module was actually built from)."""
    blob = json.dumps({k: sc.get(k) for k in CAPTURE_KEYS}, sort_keys=True)
    init = (Path(guest.__file__).parent / "init.sh").read_bytes()
    h = hashlib.sha256(blob.encode() + b"\0" + init)
    h.update((crashpoc_hash or kernels.crashpoc_source_hash(CRASHPOC_SRC)).encode())
    return h.hexdigest()[:16]


def dump_state(sc: dict, cache: Path, releases: dict[str, str]) -> str:
    """'done' when the cached dump matches the manifest entry, else why not."""
    d = cache / "vmcores" / sc["name"]
    if not (d / "vmcore").exists() or not (d / "meta.json").exists():
        return "missing"
    try:
        meta = json.loads((d / "meta.json").read_text())
    except ValueError:
        return "bad meta.json"
    if meta.get("format") != sc["format"] or meta.get("dump_level") != sc["dump_level"]:
        return "format/dump level changed"
    if meta.get("release") != releases[sc["kernel"]]:
        return f"kernel {meta.get('release')} -> {releases[sc['kernel']]}"
    if meta.get("inputs") != inputs_hash(sc):
        return "scenario or crashpoc changed"
    if not Path(meta.get("vmlinux", "")).exists():
        return "debug info missing"
    return "done"


def _prewarm(series: str, cache: Path) -> None:
    try:
        kernels.prepare(series, cache, CRASHPOC_SRC)
    except Exception:  # noqa: BLE001, S110 - build_one prepares again and reports it
        pass


ATTEMPTS = 2  # TCG guests on a loaded host occasionally fail to boot; retry once


def build_one(sc: dict, cache: Path) -> dict:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return _build_one(sc, cache)
        except guest.GuestError as e:
            if attempt == ATTEMPTS:
                raise
            log(f"{sc['name']}: attempt {attempt} failed ({e}); retrying")
    raise AssertionError("unreachable")


def _build_one(sc: dict, cache: Path) -> dict:
    name = sc["name"]
    k = kernels.prepare(sc["kernel"], cache, CRASHPOC_SRC)
    main_base, probe = guest.build_initrds(k, k.root / "initrd")
    accel = guest.probe_accel(k, probe, cache)
    out = cache / "vmcores" / name
    out.mkdir(parents=True, exist_ok=True)
    failed_log = out / "console-failed.log"
    failed_log.unlink(missing_ok=True)
    work = guest.tempdir(cache / "vmcores" / ".work")
    console = work / "console.log"
    try:
        initrd = guest.scenario_initrd(main_base, sc, work / "initrd.cpio")
        try:
            disk, seconds = guest.boot_and_capture(k, sc, initrd, accel, work, console)
            tmp = out / f".vmcore.tmp{os.getpid()}"
            tmp.unlink(missing_ok=True)
            guest.reassemble(disk, tmp)
        except guest.GuestError as e:
            shutil.copy2(console, failed_log) if console.exists() else None
            raise guest.GuestError(f"{name}: {e}; console log: {failed_log}") from None
        disk.unlink()
        missing = [s for s in sc["console"]
                   if s not in console.read_text(errors="replace")]
        (out / "meta.json").unlink(missing_ok=True)
        tmp.replace(out / "vmcore")
        shutil.copy2(console, out / "console.log")
        k.wait_dbg()
        # The module files travel with the dump: a later crashpoc rebuild (another scenario,
        # an edited crashpoc.c) must not leave this dump pointing at a .ko of other code.
        mods = out / "modules"
        shutil.rmtree(mods, ignore_errors=True)
        mods.mkdir()
        for ko in (k.crashpoc_ko, k.badsym_ko):
            if ko.exists():
                shutil.copy2(ko, mods / ko.name)
        meta = {
            "scenario": name,
            "series": k.series,
            "release": k.release,
            "package_version": k.package_version,
            "vmlinux": str(k.vmlinux),
            "debuginfo": [str(k.module_debug_dir), str(mods)],
            "module_ko": str(mods / k.crashpoc_ko.name) if sc["load_module"] else None,
            "format": sc["format"],
            "dump_level": sc["dump_level"],
            "memory": sc["memory"],
            "threads": sc["threads"],
            "accel": accel,
            "seconds": round(seconds, 1),
            "bytes": (out / "vmcore").stat().st_size,
            "makedumpfile_version": guest.makedumpfile_version(k),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "inputs": inputs_hash(sc, k.crashpoc_hash),
            "crashpoc_sha256": kernels.file_sha256(k.crashpoc_ko),
            "console_missing": missing,
        }
        mtmp = out / ".meta.json.tmp"
        mtmp.write_text(json.dumps(meta, indent=2) + "\n")
        mtmp.replace(out / "meta.json")
        return meta
    finally:
        shutil.rmtree(work, ignore_errors=True)


def select(scenarios: list[dict], only: list[str], group: str | None = None,
           kernel: str | list[str] | None = None, listing: bool = False) -> list[dict]:
    """The scenarios a run works on. Without --only or --group, making dumps means the
    corpus group (the scale group's big guests are made only on request); --list shows all."""
    if group is None:
        group = "all" if only or listing else DEFAULT_GROUP
    series = [kernel] if isinstance(kernel, str) else list(kernel or [])
    return [s for s in scenarios
            if (not only or s["name"] in only)
            and (group == "all" or s["group"] == group)
            and (not series or s["kernel"] in series)]


def human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="make-vmcores",
        description="Make the real vmcore corpus (fixtures/vmcores/manifest.toml) in "
                    "$KPM_CACHE or ${XDG_CACHE_HOME:-~/.cache}/kpostmortem.")
    ap.add_argument("--list", action="store_true", help="list the scenarios and their state")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="only this scenario, of any group (repeatable)")
    ap.add_argument("--group", choices=[*GROUPS, "all"],
                    help=f"only this group of scenarios (default: {DEFAULT_GROUP} when making "
                         "dumps without --only, all with --list)")
    ap.add_argument("--kernel", choices=sorted(kernels.SERIES), action="append", default=[],
                    help="only this series (repeatable)")
    ap.add_argument("--kernel-version", action="append", default=[], metavar="SERIES=VERSION",
                    help="build SERIES on this kernel instead of kernels.toml's preference: an ABI "
                         "release (6.1=6.1.0-56) or a package version (6.1=6.1.192-2); repeatable")
    ap.add_argument("--jobs", type=int, default=2, help="parallel QEMU guests (default 2)")
    ap.add_argument("--force", action="store_true", help="rebuild the selected dumps")
    args = ap.parse_args(argv)

    scenarios = load_manifest()
    names = {s["name"] for s in scenarios}
    unknown = [n for n in args.only if n not in names]
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(unknown)}; see --list")
    sel = select(scenarios, args.only, args.group, args.kernel, listing=args.list)
    cache = cache_root()
    try:
        kernels.set_kernel_versions(args.kernel_version)
    except kernels.KernelError as e:
        ap.error(str(e))
    releases = {series: kernels.resolve(series).release
                for series in sorted({s["kernel"] for s in sel})}

    if args.list:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `--list | head` is fine
        for s in sel:
            state = dump_state(s, cache, releases)
            fmt = f"{s['format']} -d {s['dump_level']}"
            print(f"{s['name']:<20} {s['group']:<6} {s['kernel']:<5} {s['trigger']:<15} "
                  f"{fmt:<12} {s['memory']:>5}M {state:<10} {s['description']}")
        return 0

    todo = []
    for s in sel:
        state = "forced" if args.force else dump_state(s, cache, releases)
        if state == "done":
            meta = json.loads((cache / "vmcores" / s["name"] / "meta.json").read_text())
            print(f"{s['name']:<20} {s['kernel']:<5} {meta['accel']:<4} "
                  f"{'-':>7} {human(meta['bytes']):>9}  cached", flush=True)
        else:
            todo.append(s)
    if not todo:
        return 0
    def interrupted(signum, frame):
        guest.kill_guests()
        log(f"interrupted (signal {signum}): guests killed")
        os._exit(130)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    log(f"{len(todo)} dump(s) to make with {args.jobs} job(s) in {cache}")
    t0 = time.monotonic()
    # Every series' kernel is prepared from the start, side by side: a cold cache downloads
    # and unpacks each series (and debootstraps another release's chroot, minutes of mostly
    # network and disk) while the first guests of another series already run, instead of
    # when a job first reaches that series. Failures surface in build_one, which prepares again.
    for series in dict.fromkeys(s["kernel"] for s in todo):
        threading.Thread(target=_prewarm, args=(series, cache), daemon=True).start()
    failures = []
    with cf.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futs = {pool.submit(build_one, s, cache): s for s in todo}
        for fut in cf.as_completed(futs):
            s = futs[fut]
            try:
                meta = fut.result()
            except Exception as e:  # noqa: BLE001 - reported per scenario
                failures.append((s["name"], str(e)))
                print(f"{s['name']:<20} {s['kernel']:<5} FAILED: {e}", flush=True)
                continue
            warn = f"  (console lacks {meta['console_missing']})" if meta["console_missing"] \
                else ""
            print(f"{s['name']:<20} {s['kernel']:<5} {meta['accel']:<4} "
                  f"{meta['seconds']:6.1f}s {human(meta['bytes']):>9}  ok{warn}", flush=True)
    log(f"done in {time.monotonic() - t0:.0f}s: {len(todo) - len(failures)} ok, "
        f"{len(failures)} failed")
    for name, err in failures:
        print(f"make-vmcores: FAILED {name}: {err}", file=sys.stderr)
    return 1 if failures else 0
