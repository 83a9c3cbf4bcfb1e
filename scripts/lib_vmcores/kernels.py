"""Kernels for the corpus: Debian bookworm cloud kernels, fetched as packages.

Nothing is installed on the host: the packages are `apt-get download`ed into
the cache and unpacked there with `dpkg-deb -x`.  Which kernel a series gets is
written in fixtures/vmcores/kernels.toml (a preferred release and package
version); old versions leave the archive, so when the preferred one is gone the
newest one the metapackage depends on is used instead, and the log says so.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import json
import lzma
import re
import shutil
import subprocess
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from . import flock as _flock
from . import log, releases

KERNELS_TOML = Path(__file__).resolve().parents[2] / "fixtures" / "vmcores" / "kernels.toml"


def load_series(path: Path = KERNELS_TOML) -> dict[str, dict]:
    """{series: {metapackage, flavour, release, version}} from kernels.toml."""
    with open(path, "rb") as f:
        data = tomllib.load(f).get("series", {})
    for name, spec in data.items():
        for key in ("metapackage", "flavour"):
            if not isinstance(spec.get(key), str) or not spec[key]:
                raise SystemExit(f"{path}: series {name} lacks '{key}'")
        if bool(spec.get("release")) != bool(spec.get("version")):
            raise SystemExit(f"{path}: series {name}: give both release and version, or neither")
    return data


SERIES = load_series()
METAPACKAGES = {name: spec["metapackage"] for name, spec in SERIES.items()}
# A series' `arch` (Debian's name; default the host's, amd64): a foreign architecture's
# packages are fetched as NAME:ARCH (after `dpkg --add-architecture`), crashpoc is
# cross-built, and its guests run under QEMU TCG (guest.py).
HOST_ARCH = "amd64"
CROSS_PREFIX = {"arm64": "aarch64-linux-gnu-"}


def series_arch(series: str) -> str:
    return SERIES[series].get("arch", HOST_ARCH)

# --kernel-version SERIES=WANT for this run (set_kernel_versions), over kernels.toml.
_overrides: dict[str, str] = {}

CRASHPOC_SOURCES = ("crashpoc.c", "crashpoc_badsym.c", "compat.h", "Kbuild")
# the capture kernel's disk: virtio-pci on x86's q35/pc, virtio-mmio on arm64's virt
CAPTURE_MODULES = {"amd64": ("virtio_blk", "virtio_pci"), "arm64": ("virtio_blk", "virtio_mmio")}


class KernelError(RuntimeError):
    pass


# `-o` options of the Debian release whose apt configuration apt-get/apt-cache use in
# this context (a series from another release than the host's: releases.py); empty: the host's
_apt_options: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "apt_options", default=())


@contextlib.contextmanager
def apt_for(series: str):
    """apt-get/apt-cache (through run()) use the series' Debian release's own apt
    configuration in the cache, when kernels.toml names one (`debian`)."""
    release = SERIES[series].get("debian")
    if not release:
        yield
        return
    from .main import cache_root
    token = _apt_options.set(tuple(releases.apt_options(cache_root(), release)))
    try:
        yield
    finally:
        _apt_options.reset(token)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    if cmd and cmd[0] in ("apt-get", "apt-cache") and _apt_options.get():
        cmd = [cmd[0], *_apt_options.get(), *cmd[1:]]
    kw.setdefault("check", True)
    kw.setdefault("text", True)
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    try:
        return subprocess.run(cmd, **kw)
    except subprocess.CalledProcessError as e:
        raise KernelError(f"{' '.join(cmd)} failed ({e.returncode}):\n{e.stdout}\n{e.stderr}") \
            from None


_apt_updated: set[tuple[str, ...]] = set()    # the apt configurations updated in this run
_apt_lock = threading.Lock()


def _apt_show(pkg: str) -> str:
    r = run(["apt-cache", "show", "--no-all-versions", pkg], check=False)
    return r.stdout if r.returncode == 0 else ""


def _update_once(why: str) -> None:
    config = _apt_options.get()
    with _apt_lock:
        if config not in _apt_updated:
            log(f"{why}: running apt-get update")
            run(["apt-get", "update", "-q"], stdout=subprocess.DEVNULL)
            _apt_updated.add(config)


def apt_show(pkg: str) -> str:
    """`apt-cache show` of the candidate; runs `apt-get update` once if needed."""
    out = _apt_show(pkg)
    if out.strip():
        return out
    _update_once(f"apt-cache cannot resolve {pkg}")
    out = _apt_show(pkg)
    if not out.strip():
        raise KernelError(f"no Debian package {pkg} (check the apt sources)")
    return out


def _field(stanza: str, name: str) -> str:
    m = re.search(rf"^{name}: (.*)$", stanza, re.M)
    return m.group(1).strip() if m else ""


def _depends(stanza: str) -> list[tuple[str, str, str]]:
    """[(name, op, version)] of the first alternative of each Depends entry."""
    out = []
    for item in _field(stanza, "Depends").split(","):
        alt = item.split("|")[0].strip()
        m = re.match(r"([^\s(]+)\s*(?:\(\s*([<>=]+)\s*([^)\s]+)\s*\))?", alt)
        if m:
            out.append((m.group(1), m.group(2) or "", m.group(3) or ""))
    return out


@dataclass
class KernelPlan:
    series: str
    release: str
    package_version: str
    packages: list[str] = field(default_factory=list)  # "name=version"


def set_kernel_versions(pairs: list[str]) -> None:
    """Take `SERIES=RELEASE` or `SERIES=PACKAGE_VERSION` words (--kernel-version)."""
    for pair in pairs:
        series, sep, want = pair.partition("=")
        if not sep or not want:
            raise KernelError(f"--kernel-version {pair}: expected SERIES=VERSION, e.g. 6.1=6.1.0-56")
        if series not in SERIES:
            raise KernelError(f"--kernel-version {pair}: unknown series {series} "
                              f"(kernels.toml has {', '.join(SERIES)})")
        _overrides[series] = want
    resolve.cache_clear()


def _versions(pkg: str) -> list[str]:
    """The versions of PKG the archive offers (`apt-cache madison`), newest first."""
    def madison() -> list[str]:
        r = run(["apt-cache", "madison", pkg], check=False)
        return [line.split("|")[1].strip() for line in r.stdout.splitlines() if line.count("|") >= 2]
    return madison() or (_update_once(f"apt-cache knows no {pkg}") or madison())


def _image_package(release: str) -> str:
    """The kernel image's package: `-unsigned` where the archive also has a signed one
    (bullseye, bookworm); forky's archive has only linux-image-REL itself, unsigned."""
    unsigned = f"linux-image-{release}-unsigned"
    known = run(["apt-cache", "madison", unsigned], check=False).stdout.strip()
    return unsigned if known else f"linux-image-{release}"


def _available(release: str, version: str) -> bool:
    """Image, headers and -dbg of this exact kernel are all in the archive."""
    return all(version in _versions(pkg) for pkg in (
        _image_package(release), f"linux-headers-{release}", f"linux-image-{release}-dbg"))


def _newest(series: str) -> tuple[str, str]:
    """(release, version) of the kernel the series' metapackage depends on today."""
    meta_pkg = METAPACKAGES[series]
    image = next((d for d in _depends(apt_show(meta_pkg)) if d[0].startswith("linux-image-")), None)
    if not image:
        raise KernelError(f"{meta_pkg} depends on no linux-image package")
    name, _, version = image
    return name[len("linux-image-"):], version or _field(apt_show(name), "Version")


def _wanted(series: str, want: str) -> tuple[str, str]:
    """(release, version) for --kernel-version: an ABI release (6.1.0-56, with or without
    its flavour) or a package version of the series' metapackage (6.1.192-2)."""
    spec = SERIES[series]
    release = want if want.endswith("-" + spec["flavour"]) else f"{want}-{spec['flavour']}"
    for version in _versions(_image_package(release)):
        if _available(release, version):
            return release, version
    if want in _versions(spec["metapackage"]):
        for name, _, version in _depends(apt_show(f"{spec['metapackage']}={want}")):
            if name.startswith("linux-image-") and _available(name[len("linux-image-"):], version):
                return name[len("linux-image-"):], version
    raise KernelError(f"--kernel-version {series}={want}: no such kernel (image, headers and -dbg) "
                      f"in the archive; the newest is {' '.join(_newest(series))}")


@functools.cache
def resolve(series: str) -> KernelPlan:
    with apt_for(series):
        return _resolve(series)


def _resolve(series: str) -> KernelPlan:
    spec = SERIES[series]
    if series in _overrides:
        release, version = _wanted(series, _overrides[series])
        log(f"[{series}] --kernel-version: using {release} ({version})")
    elif spec.get("release") and _available(spec["release"], spec["version"]):
        release, version = spec["release"], spec["version"]
    else:
        release, version = _newest(series)
        if spec.get("release"):
            log(f"[{series}] {spec['release']} ({spec['version']}) is gone from the archive; "
                f"using {release} ({version}): update fixtures/vmcores/kernels.toml")
    plan = KernelPlan(series, release, version)
    arch = series_arch(series)
    q = f":{arch}" if arch != HOST_ARCH else ""
    headers = f"linux-headers-{release}"
    plan.packages = [
        f"{_image_package(release)}{q}={version}",
        f"{headers}{q}={version}",
        f"linux-image-{release}-dbg{q}={version}",
    ]
    # linux-headers-*-common is Architecture: all, and linux-kbuild (fixdep, modpost) must
    # be the host's even when crashpoc is cross-built: both without a qualifier
    for dep, op, dver in _depends(apt_show(f"{headers}={version}")):
        if dep.startswith(("linux-headers-", "linux-kbuild-")):
            if op == "=":
                plan.packages.append(f"{dep}={dver}")
            else:
                # linux-kbuild-6.1 (>= V): take V itself when the archive has it
                has_v = version in _versions(dep)
                plan.packages.append(f"{dep}={version}" if has_v else dep)
    # forky splits the image: linux-image-REL only depends on linux-binary-REL (vmlinuz)
    # and linux-modules-REL (lib/modules), both of the same version
    image = _image_package(release)
    if not image.endswith("-unsigned"):
        for dep, op, dver in _depends(apt_show(f"{image}={version}")):
            if dep.startswith(("linux-binary-", "linux-modules-")) and op == "=":
                plan.packages.append(f"{dep}{q}={dver}")
    return plan


def crashpoc_source_hash(src_dir: Path) -> str:
    h = hashlib.sha256()
    for name in CRASHPOC_SOURCES:
        h.update(name.encode() + b"\0" + (src_dir / name).read_bytes())
    return h.hexdigest()[:16]


@dataclass
class Kernel:
    series: str
    root: Path
    release: str
    package_version: str
    gcc: str = "gcc-12"
    arch: str = HOST_ARCH
    toolroot: Path | None = None    # chroot of the series' Debian release, if not the host's
    dbg_done: threading.Event = field(default_factory=threading.Event)
    dbg_error: str = ""

    @property
    def vmlinuz(self) -> Path:
        boot = self.root / "boot" / f"vmlinuz-{self.release}"
        # forky's linux-binary-REL puts it beside the modules instead of in /boot
        moved = self.root / "usr/lib/modules" / self.release / "vmlinuz"
        return moved if not boot.exists() and moved.exists() else boot

    @property
    def vmlinux(self) -> Path:
        return self.root / "usr/lib/debug/boot" / f"vmlinux-{self.release}"

    @property
    def module_debug_dir(self) -> Path:
        return self.root / "usr/lib/debug/lib/modules" / self.release

    @property
    def headers(self) -> Path:
        return self.root / "usr/src" / f"linux-headers-{self.release}"

    @property
    def modules_dir(self) -> Path:
        for base in ("lib/modules", "usr/lib/modules"):
            d = self.root / base / self.release
            if d.is_dir():
                return d
        raise KernelError(f"no lib/modules/{self.release} in {self.root}")

    @property
    def crashpoc_dir(self) -> Path:
        return self.root / "crashpoc"

    @property
    def crashpoc_hash(self) -> str:
        """Hash of the sources the built module came from."""
        return (self.crashpoc_dir / ".source-hash").read_text().strip()

    @property
    def crashpoc_ko(self) -> Path:
        return self.crashpoc_dir / "crashpoc.ko"

    @property
    def badsym_ko(self) -> Path:
        return self.crashpoc_dir / "crashpoc_badsym.ko"

    def wait_dbg(self) -> None:
        self.dbg_done.wait()
        if self.dbg_error:
            raise KernelError(self.dbg_error)

    # ---------------------------------------------------------- modules
    def module_index(self) -> dict[str, Path]:
        idx = {}
        for p in (self.modules_dir / "kernel").rglob("*.ko*"):
            name = p.name.split(".ko")[0].replace("-", "_")
            idx[name] = p
        return idx

    def builtin_modules(self) -> set[str]:
        f = self.modules_dir / "modules.builtin"
        if not f.exists():
            # forky's modules package ships no modules.builtin: the config says what is
            # built in (CONFIG_<NAME>=y holds for the virtio drivers the capture needs)
            cfg = (self.headers / ".config").read_text()
            return {m.lower() for m in re.findall(r"^CONFIG_(\w+)=y$", cfg, re.M)}
        return {Path(line).name.split(".ko")[0].replace("-", "_")
                for line in f.read_text().split()}

    def capture_modules(self) -> list[tuple[str, bytes]]:
        """The virtio modules the capture kernel needs, dependencies first."""
        idx, builtin = self.module_index(), self.builtin_modules()
        order: list[tuple[str, bytes]] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen or name in builtin:
                return
            seen.add(name)
            if name not in idx:
                raise KernelError(f"module {name} is neither built in nor in the image")
            data = read_ko(idx[name])
            for dep in modinfo(data, "depends").split(","):
                if dep:
                    visit(dep.replace("-", "_"))
            order.append((name, data))

        for m in CAPTURE_MODULES[self.arch]:
            visit(m)
        return order


def read_ko(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".zst"):
        return run(["zstd", "-dc", str(path)], text=False).stdout
    if path.name.endswith(".gz"):
        import gzip
        return gzip.decompress(data)
    return data


def modinfo(ko: bytes, key: str) -> str:
    m = re.search(rb"(?:^|\0)" + key.encode() + rb"=([^\0]*)\0", ko)
    return m.group(1).decode() if m else ""


# ------------------------------------------------------------------ preparing

_series_locks = {s: threading.Lock() for s in METAPACKAGES}
_prepared: dict[str, Kernel] = {}


def prepare(series: str, cache: Path, src_dir: Path) -> Kernel:
    """Download, unpack and build what a series needs; once per series per run.

    Returns as soon as the guest can boot; the -dbg package is unpacked in a
    background thread (Kernel.wait_dbg()).
    """
    with _series_locks[series]:
        if series in _prepared:
            return _prepared[series]
        # other make-vmcores runs may share the cache: one prepares at a time
        with _flock(cache / "kernels" / f".{series}.lock"):
            k = _prepare(series, cache, src_dir)
        _prepared[series] = k
        return k


def _prepare(series: str, cache: Path, src_dir: Path) -> Kernel:
    root = cache / "kernels" / series
    plan = resolve(series)
    meta_f = root / "meta.json"
    if meta_f.exists():
        old = json.loads(meta_f.read_text())
        if (old.get("release"), old.get("package_version")) != (plan.release,
                                                                plan.package_version):
            log(f"[{series}] {old.get('release')} {old.get('package_version')} -> "
                f"{plan.release} {plan.package_version}: replacing the cached kernel")
            shutil.rmtree(root)
    debs = root / "debs"
    stamps = root / ".extracted"
    debs.mkdir(parents=True, exist_ok=True)
    stamps.mkdir(exist_ok=True)

    missing = [p for p in plan.packages if not _deb_for(debs, p)]
    if missing:
        log(f"[{series}] downloading {' '.join(missing)}")
        with apt_for(series):
            r = run(["apt-get", "download", "-q", *missing], cwd=debs, check=False)
        if r.returncode != 0:
            raise KernelError(f"apt-get download failed:\n{r.stdout}\n{r.stderr}")
    files = []
    for p in plan.packages:
        f = _deb_for(debs, p)
        if not f:
            raise KernelError(f"apt-get download did not produce {p}")
        files.append(f)

    k = Kernel(series, root, plan.release, plan.package_version, arch=series_arch(series))
    if SERIES[series].get("debian"):
        # another Debian release than the host's: its compiler, kbuild and guest tools
        # run from a chroot of that release (releases.py)
        k.toolroot = releases.ensure_chroot(cache, SERIES[series]["debian"])
    dbg = [f for f in files if "-dbg_" in f.name]
    for f in files:
        if f in dbg or (stamps / f.name).exists():
            continue
        log(f"[{series}] unpacking {f.name}")
        run(["dpkg-deb", "-x", str(f), str(root)])
        (stamps / f.name).touch()

    def unpack_dbg() -> None:
        try:
            with _flock(root.parent / f".{series}.dbg.lock"):
                _unpack_dbg()
        except Exception as e:  # noqa: BLE001 - reported by wait_dbg()
            k.dbg_error = str(e)
        finally:
            k.dbg_done.set()

    def _unpack_dbg() -> None:
        for f in dbg:
            if not (stamps / f.name).exists():
                log(f"[{series}] unpacking {f.name} (background)")
                run(["dpkg-deb", "-x", str(f), str(root)])
                (stamps / f.name).touch()
        if not k.vmlinux.exists():
            raise KernelError(f"{k.vmlinux} missing after unpacking the -dbg package")

    threading.Thread(target=unpack_dbg, daemon=True).start()

    _fix_headers(k)
    cfg = (k.headers / ".config").read_text()
    m = re.search(r'^CONFIG_CC_VERSION_TEXT="(\S+)', cfg, re.M)
    if m and k.arch != HOST_ARCH:
        # the config names the compiler the kernel was built with: the arm64 buildd's native
        # gcc-12 (6.1) or already the cross one (6.12); cross-build with Debian's
        # gcc-12-aarch64-linux-gnu (same version)
        k.gcc = m.group(1) if m.group(1).startswith(CROSS_PREFIX[k.arch]) \
            else CROSS_PREFIX[k.arch] + m.group(1)
    elif m and k.toolroot:
        k.gcc = m.group(1)    # the release's own compiler, in its chroot
    elif m and shutil.which(m.group(1)):
        k.gcc = m.group(1)
    build_crashpoc(k, src_dir)
    meta_f.write_text(json.dumps({
        "series": series, "release": plan.release, "package_version": plan.package_version,
        "packages": plan.packages, "gcc": k.gcc,
    }, indent=2) + "\n")
    return k


def _deb_for(debs: Path, spec: str) -> Path | None:
    name, _, version = spec.partition("=")
    name = name.split(":")[0]     # NAME:ARCH
    # apt-get download escapes ':' in versions as %3a
    pat = f"{name}_{version.replace(':', '%3a')}_*.deb" if version else f"{name}_*.deb"
    found = sorted(debs.glob(pat))
    return found[-1] if found else None


def _fix_headers(k: Kernel) -> None:
    """The headers' Makefiles include /usr/src/... absolutely; point them here."""
    usr_src = k.root / "usr/src"
    for mk in usr_src.glob("linux-headers-*/Makefile"):
        text = mk.read_text()
        fixed = re.sub(r"^include /usr/src/", f"include {usr_src}/", text, flags=re.M)
        # 7.x's headers also name their own folder as the build output directory
        fixed = re.sub(r"^KBUILD_OUTPUT=/usr/src/", f"KBUILD_OUTPUT={usr_src}/", fixed, flags=re.M)
        if fixed != text:
            mk.write_text(fixed)
    for mk in usr_src.glob("linux-headers-*/arch/*/Makefile"):
        text = mk.read_text()
        fixed = text.replace(" /usr/src/", f" {usr_src}/")
        if fixed != text:
            mk.write_text(fixed)


def build_crashpoc(k: Kernel, src_dir: Path) -> None:
    want = crashpoc_source_hash(src_dir)
    stamp = k.crashpoc_dir / ".source-hash"
    if (k.crashpoc_ko.exists() and k.badsym_ko.exists() and stamp.exists()
            and stamp.read_text().strip() == want):
        return
    log(f"[{k.series}] building crashpoc against {k.headers.name} with {k.gcc}")
    if k.crashpoc_dir.exists():
        shutil.rmtree(k.crashpoc_dir)
    k.crashpoc_dir.mkdir(parents=True)
    for name in CRASHPOC_SOURCES:
        shutil.copy2(src_dir / name, k.crashpoc_dir / name)
    cross = [f"ARCH={k.arch}", f"CROSS_COMPILE={CROSS_PREFIX[k.arch]}"] \
        if k.arch != HOST_ARCH else []
    make = ["make", "-C", str(k.headers), f"M={k.crashpoc_dir}", f"CC={k.gcc}", *cross,
            "KBUILD_MODPOST_WARN=1", "modules"]
    if k.toolroot:
        # the release's gcc and kbuild in its chroot, the kernel tree mounted at its own path
        r = releases.chroot_run(k.toolroot, make, binds=[k.root])
    else:
        r = run(make, check=False)
    if r.returncode != 0 or not k.crashpoc_ko.exists():
        raise KernelError(f"building crashpoc failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    (k.crashpoc_dir / "build.log").write_text(r.stdout + r.stderr)
    if b".debug_info" not in k.crashpoc_ko.read_bytes():
        raise KernelError(f"{k.crashpoc_ko} has no DWARF (.debug_info)")
    stamp.write_text(want + "\n")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
