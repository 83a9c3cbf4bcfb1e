"""Initramfs and QEMU: boot, crash, capture with kdump, hand the dump out.

The first kernel boots with a crashkernel= reservation; its /init (init.sh)
arms the capture kernel with `kexec -p`, fires the scenario's trigger, and the
capture kernel writes makedumpfile's flattened stream onto a raw virtio disk.
The host turns the disk back into a dump file with `makedumpfile -R`.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from . import ldd_paths, log, releases, userland
from .cpio import CpioWriter
from .kernels import CROSS_PREFIX, HOST_ARCH, SERIES, Kernel, KernelError, read_ko, run

HERE = Path(__file__).resolve().parent
GUEST_MEM = 1024              # MiB, unless the scenario's `memory` says otherwise
GUEST_CPUS = "2"
MIN_DISK_BYTES = 2 << 30      # sparse; must hold an ELF -d 0 dump of the whole guest
TIMEOUT_TCG = 480           # per GiB of guest: a 1 GiB -d 0 guest took 120 s on a host with load 9
TIMEOUT_KVM = 180
PROBE_TIMEOUT = 15
NO_CRASH_WAIT = 120           # seconds /init waits for the crash before giving up


class GuestError(RuntimeError):
    pass


def _ldd_libs(binary: str) -> list[str]:
    return ldd_paths(subprocess.run(["ldd", binary], text=True, capture_output=True, check=True).stdout)


def _tool(name: str) -> str:
    for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        p = Path(d) / name
        if p.exists():
            return str(p)
    p = shutil.which(name)
    if not p:
        raise GuestError(f"{name} not found on the host (run scripts/install-deps)")
    return p


def _busybox() -> str:
    for p in ("/bin/busybox", "/usr/bin/busybox"):
        if Path(p).exists():
            out = subprocess.run(["file", "-L", p], text=True, capture_output=True).stdout \
                if shutil.which("file") else "statically linked"
            if "statically linked" in out or "static-pie" in out:
                return p
    raise GuestError("a static busybox is needed (apt-get install busybox-static)")


def _add_binaries(w: CpioWriter, binaries: list[str]) -> None:
    for b in binaries:
        w.add_file("bin/" + Path(b).name, b, 0o755)
        for lib in _ldd_libs(b):
            w.add_file(lib, os.path.realpath(lib), 0o755)


def _userland_release(k: Kernel) -> str | None:
    """The Debian release of a foreign-architecture series' guest tools (kernels.toml
    `userland`), None for the host's."""
    return SERIES[k.series].get("userland")


def _add_tools(w: CpioWriter, k: Kernel, names: list[str]) -> None:
    """The guest tools: the host's, or those of the series' own Debian release (its
    chroot) so that the capture kernel runs the makedumpfile of the kernel's release;
    for a foreign architecture, those of its Debian packages (userland.py)."""
    if k.arch != HOST_ARCH:
        root = userland.sysroot(k.arch, k.root.parents[1], _userland_release(k))
        for name in names:
            prog = next((f"{d}/{name}" for d in ("sbin", "usr/sbin", "bin", "usr/bin")
                         if (root / d / name).is_file()), name)
            for i, (inside, host) in enumerate(userland.binary_files(root, k.arch, prog)):
                w.add_file("bin/" + name if i == 0 else inside, host, 0o755)
        return
    if not k.toolroot:
        _add_binaries(w, [_tool(n) for n in names])
        return
    for name in names:
        inside = releases.chroot_tool(k.toolroot, name)
        w.add_file("bin/" + name, releases.host_path(k.toolroot, inside), 0o755)
        for lib in releases.chroot_libs(k.toolroot, inside):
            w.add_file(lib, releases.host_path(k.toolroot, lib), 0o755)


def _base(w: CpioWriter, k: Kernel | None = None) -> None:
    for d in ("bin", "dev", "proc", "sys", "tmp", "etc", "root", "boot"):
        w.mkdir(d)
    w.chardev("dev/console", 5, 1)
    w.chardev("dev/null", 1, 3, 0o666)
    if k is not None and k.arch != HOST_ARCH:
        root = userland.sysroot(k.arch, k.root.parents[1], _userland_release(k))
        w.add_file("bin/busybox", userland.tool_file(root, "busybox"), 0o755)
    else:
        w.add_file("bin/busybox", _busybox(), 0o755)
    w.add_file("init", HERE / "init.sh", 0o755)


_initrd_lock = threading.Lock()


def _arch_env(k: Kernel) -> str:
    """/etc/kpm-arch.env: what the first kernel's /init does differently on a foreign
    architecture.  arm64: `kexec -p -i` (no purgatory SHA-256 check of the capture
    kernel: ~13 s under TCG), and KPM_TEXT_OFFSET = _stext - _text, because bookworm's
    arm64 kexec-tools 2.0.25 places the kernel by `_text` in /proc/kallsyms and Debian's
    arm64 kernels list none there (init.sh adds the line)."""
    if k.arch == HOST_ARCH:
        return ""
    f = k.root / "text-offset"
    if not f.exists():
        k.wait_dbg()
        syms = {}
        for line in run([CROSS_PREFIX[k.arch] + "nm", str(k.vmlinux)]).stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[2] in ("_text", "_stext"):
                syms[parts[2]] = int(parts[0], 16)
        if len(syms) != 2:
            raise KernelError(f"no _text/_stext in {k.vmlinux}")
        f.write_text(f"{syms['_stext'] - syms['_text']}\n")
    return f"KPM_KEXEC_FLAGS=-i\nKPM_TEXT_OFFSET={int(f.read_text())}\n"


def build_initrds(k: Kernel, out_dir: Path) -> tuple[Path, Path]:
    """(main initrd base, probe initrd) for a kernel; built once per run."""
    arch_env = _arch_env(k)
    with _initrd_lock:
        main, probe = out_dir / "main-base.cpio", out_dir / "probe.cpio"
        if getattr(k, "_initrds_built", False):
            return main, probe
        out_dir.mkdir(parents=True, exist_ok=True)
        cap = CpioWriter()
        _base(cap, k)
        _add_tools(cap, k, ["makedumpfile"])
        mods = k.capture_modules()
        for name, data in mods:
            cap.add_bytes(f"lib/capture-modules/{name}.ko", data)
        cap.add_bytes("lib/capture-modules/order", ("\n".join(n for n, _ in mods) + "\n").encode())
        capture_bytes = cap.getvalue()

        w = CpioWriter()
        _base(w, k)
        if arch_env:
            w.add_bytes("etc/kpm-arch.env", arch_env.encode())
        _add_tools(w, k, ["makedumpfile", "kexec"])
        w.add_file("boot/vmlinuz", k.vmlinuz, 0o644)
        w.add_bytes("boot/capture.cpio", capture_bytes)
        w.add_bytes("lib/crashpoc/crashpoc.ko", read_ko(k.crashpoc_ko))
        w.add_bytes("lib/crashpoc/crashpoc_badsym.ko", read_ko(k.badsym_ko))
        _atomic_write(main, w.getvalue())

        p = CpioWriter()
        _base(p, k)
        _atomic_write(probe, p.getvalue())
        k._initrds_built = True  # type: ignore[attr-defined]
        return main, probe


def scenario_initrd(base: Path, sc: dict, out: Path) -> Path:
    # kernels.toml `capture = "copy"`: no makedumpfile can filter the series' kernel, the
    # capture kernel copies /proc/vmcore (an ELF core of every page) onto the disk as is
    copy = SERIES[sc["kernel"]].get("capture") == "copy"
    env = {
        "KPM_SCENARIO": sc["name"],
        "KPM_TRIGGER": sc["trigger"],
        "KPM_FOLLOWUP": sc.get("followup", ""),
        "KPM_SYSCTLS": " ".join(f"{k}={v}" for k, v in sc.get("sysctls", {}).items()),
        "KPM_PRELOAD": " ".join(sc.get("preload", [])),
        "KPM_LOAD_MODULE": "1" if sc.get("load_module", True) else "0",
        "KPM_FORMAT": "copy" if copy else sc.get("format", "kdump"),
        "KPM_LEVEL": str(sc.get("dump_level", 31)),
        "KPM_WAIT": str(NO_CRASH_WAIT),
        "KPM_HOSTNAME": sc.get("hostname", ""),
        "KPM_TRIGGER_COMM": sc.get("trigger_comm", ""),
        "KPM_THREADS": str(sc.get("threads", 0)),
        "KPM_PARAMS": " ".join(f"{k}={v}" for k, v in sc.get("params", {}).items()),
    }
    w = CpioWriter()
    w.add_bytes("etc/kpm.env", "".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()).encode())
    data = base.read_bytes()
    data += b"\0" * ((-len(data)) % 4) + w.getvalue()
    _atomic_write(out, data)
    return out


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.{threading.get_ident()}")
    tmp.write_bytes(data)
    tmp.replace(path)


# ----------------------------------------------------------------- accel

# How a guest of each Debian architecture boots: QEMU binary, machine and CPU under
# TCG, serial console, and the capture disk's device.  arm64: `-M virt`, and
# pauth-impdef=on (a cheap pointer-authentication algorithm instead of QARMA5: same
# signed pointers for the kernel, a far faster guest under TCG).
QEMU = {"amd64": "qemu-system-x86_64", "arm64": "qemu-system-aarch64"}
CONSOLE = {"amd64": "ttyS0", "arm64": "ttyAMA0"}


def _qemu(arch: str = HOST_ARCH) -> str:
    q = shutil.which(QEMU[arch])
    if not q:
        raise GuestError(f"{QEMU[arch]} not found (run scripts/install-deps)")
    return q


def _machine_args(k: Kernel, accel: str, disk: Path) -> list[str]:
    if k.arch == "arm64":
        return ["-M", "virt", "-accel", "tcg", "-cpu", "max,pauth-impdef=on",
                "-drive", f"file={disk},format=raw,if=none,id=dump,cache=unsafe",
                "-device", "virtio-blk-device,drive=dump"]
    return [*accel_args(accel), "-drive", f"file={disk},format=raw,if=virtio,cache=unsafe"]


def accel_args(accel: str) -> list[str]:
    if accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg", "-cpu", "max"]


_accel: str | None = None
_accel_lock = threading.Lock()


def probe_accel(k: Kernel, probe_initrd: Path, cache: Path) -> str:
    """'kvm' if a KVM guest reaches userspace within PROBE_TIMEOUT s, else 'tcg'.

    KPM_ACCEL=tcg|kvm forces the choice.  The answer is remembered in the
    cache for this host kernel and QEMU version.
    """
    global _accel
    if k.arch != HOST_ARCH:
        return "tcg"        # another architecture's guest: no KVM
    with _accel_lock:
        if _accel:
            return _accel
        forced = os.environ.get("KPM_ACCEL")
        if forced in ("kvm", "tcg"):
            _accel = forced
            return forced
        qver = subprocess.run([_qemu(), "--version"], text=True, capture_output=True).stdout
        key = f"{os.uname().release} {qver.splitlines()[0] if qver else ''} {k.release}"
        memo = cache / "accel-probe.json"
        try:
            saved = json.loads(memo.read_text())
            if saved.get("key") == key:
                _accel = saved["accel"]
                log(f"accel: {_accel} (probed before on this host)")
                return _accel
        except (OSError, ValueError, KeyError):
            pass
        _accel = "tcg"
        why = "no usable /dev/kvm"
        if os.access("/dev/kvm", os.R_OK | os.W_OK):
            t0 = time.monotonic()
            try:
                r = subprocess.run(
                    [_qemu(), *accel_args("kvm"), "-m", "256", "-smp", "1", "-nographic",
                     "-no-reboot", "-kernel", str(k.vmlinuz), "-initrd", str(probe_initrd),
                     "-append", "console=ttyS0 panic=-1 kpm.probe"],
                    stdin=subprocess.DEVNULL, capture_output=True, timeout=PROBE_TIMEOUT)
                if b"kpm-probe: userspace reached" in r.stdout:
                    _accel, why = "kvm", "KVM guest reached userspace"
                else:
                    tail = (r.stdout + r.stderr).decode(errors="replace").strip()
                    why = f"KVM guest failed: {tail.splitlines()[-1] if tail else r.returncode}"
            except subprocess.TimeoutExpired:
                why = f"KVM guest not in userspace after {PROBE_TIMEOUT}s"
            why += f" ({time.monotonic() - t0:.0f}s)"
        log(f"accel: {_accel} ({why})")
        memo.write_text(json.dumps({"key": key, "accel": _accel, "why": why}) + "\n")
        return _accel


# ------------------------------------------------------------------ run

def guest_memory(sc: dict) -> int:
    """The guest's RAM in MiB."""
    return int(sc.get("memory", GUEST_MEM))


def disk_bytes(sc: dict) -> int:
    """Size of the sparse capture disk: the whole guest's RAM plus room for headers
    (an unfiltered ELF dump is about as big as RAM; a compressed one far smaller)."""
    return max(MIN_DISK_BYTES, (guest_memory(sc) + 256) << 20)


def guest_timeout(sc: dict, accel: str) -> int:
    """Seconds a guest may take: capture time grows with RAM (makedumpfile reads
    every page), so the bound is per GiB of guest, never below the 1 GiB one."""
    base = TIMEOUT_KVM if accel == "kvm" else TIMEOUT_TCG
    return int(base * max(1.0, guest_memory(sc) / 1024))


def boot_and_capture(k: Kernel, sc: dict, initrd: Path, accel: str, work: Path,
                     console: Path) -> tuple[Path, float]:
    """Boot the scenario; returns (flattened disk image, seconds)."""
    disk = work / "disk.raw"
    with open(disk, "wb") as f:
        f.truncate(disk_bytes(sc))
    # no_timer_check: under TCG on a busy host the IO-APIC timer check can
    # fail ("IO-APIC + timer doesn't work!") and panic the boot.
    append = " ".join(filter(None, [
        f"console={CONSOLE[k.arch]}", "crashkernel=256M",
        "no_timer_check" if k.arch == "amd64" else "",
        "" if sc.get("panic_on_oops") is False else "oops=panic",
        "panic=-1", sc.get("boot_args", ""),
    ]))
    cmd = [_qemu(k.arch), *_machine_args(k, accel, disk), "-m", str(guest_memory(sc)),
           "-smp", GUEST_CPUS, "-nographic", "-no-reboot", "-kernel", str(k.vmlinuz),
           "-initrd", str(initrd), "-append", append, "-nic", "none"]
    (work / "qemu.cmd").write_text(shlex.join(cmd) + "\n")
    timeout = guest_timeout(sc, accel)
    t0 = time.monotonic()
    with open(console, "wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        with _running_lock:
            _running.add(proc)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise GuestError(f"guest did not finish within {timeout}s") from None
        finally:
            with _running_lock:
                _running.discard(proc)
    return disk, time.monotonic() - t0


_running: set[subprocess.Popen] = set()
_running_lock = threading.Lock()


def kill_guests() -> None:
    """Kill the QEMU guests this process started (on interrupt)."""
    with _running_lock:
        for proc in list(_running):
            if proc.poll() is None:
                proc.kill()


def _copy_elf_core(disk: Path, out: Path) -> None:
    """The ELF core the capture kernel copied from /proc/vmcore onto the disk: its length is
    where its last program header's data ends."""
    from elftools.elf.elffile import ELFFile

    with open(disk, "rb") as f:
        elf = ELFFile(f)
        end = max([elf["e_phoff"] + elf["e_phentsize"] * elf["e_phnum"]]
                  + [seg["p_offset"] + seg["p_filesz"] for seg in elf.iter_segments()])
        if end > disk.stat().st_size:
            raise GuestError(f"the copied /proc/vmcore is cut short ({disk.stat().st_size} of {end} bytes)")
        f.seek(0)
        with open(out, "wb") as o:
            left = end
            while left:
                chunk = f.read(min(left, 8 << 20))
                if not chunk:
                    break
                o.write(chunk)
                left -= len(chunk)


def reassemble(disk: Path, out: Path) -> None:
    with open(disk, "rb") as f:
        head = f.read(16)
    if head.startswith(b"\x7fELF\x02\x01"):
        _copy_elf_core(disk, out)   # kernels.toml `capture = "copy"`
        return
    if not head.startswith(b"makedumpfile"):
        raise GuestError("the capture disk holds no makedumpfile stream (no dump written)")
    with open(disk, "rb") as f:
        r = subprocess.run([_tool("makedumpfile"), "-R", str(out)], stdin=f,
                           capture_output=True, text=True)
    if r.returncode != 0 or not out.exists() or out.stat().st_size == 0:
        raise GuestError(f"makedumpfile -R failed ({r.returncode}): {r.stderr.strip()[-500:]}")


def makedumpfile_version(k: Kernel | None = None) -> str:
    """The version of the makedumpfile the capture kernel of k's guests runs."""
    if k is not None and SERIES[k.series].get("capture") == "copy":
        return "none: /proc/vmcore copied as is"
    if k is not None and k.arch != HOST_ARCH:
        stamp = userland.sysroot(k.arch, k.root.parents[1], _userland_release(k)).parent / "packages.json"
        pkgs = json.loads(stamp.read_text())
        return next((p.split("=", 1)[1] for p in pkgs if p.startswith("makedumpfile:")), "")
    if k is not None and k.toolroot:
        r = releases.chroot_run(k.toolroot, ["makedumpfile", "-v"])
    else:
        r = subprocess.run([_tool("makedumpfile"), "-v"], capture_output=True, text=True)
    first = (r.stdout + r.stderr).strip().splitlines()
    return first[0].replace("makedumpfile: version ", "").strip() if first else ""


def tempdir(parent: Path) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".work-", dir=parent))
