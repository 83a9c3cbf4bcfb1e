"""Debian releases other than the host's: an apt configuration and a build chroot of each.

A series whose kernel comes from another Debian release (bullseye's 5.10,
forky's 7.2) is resolved and downloaded through an apt configuration of the
project's own in the cache (`<cache>/apt/<release>/`: its sources.list, lists,
archives and an empty dpkg status), never the host's sources.  Its crashpoc is
built with that release's compiler and kbuild, and its guests run that
release's makedumpfile and kexec: both come from a `debootstrap --variant=minbase`
chroot of the release in the cache (`<cache>/chroots/<release>/`), as a kernel
developer would build for it.  Nothing is installed on the host.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import flock, ldd_paths, log

MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# debootstrap knows a release by a script of its name; one newer than the host's
# debootstrap (forky on bookworm) is bootstrapped with the script of `sid`, as
# debootstrap's own scripts do for testing releases.
DEBOOTSTRAP_SCRIPTS = Path("/usr/share/debootstrap/scripts")


class ReleaseError(RuntimeError):
    pass


@dataclass(frozen=True)
class Release:
    """A Debian release a kernel series comes from."""

    name: str                      # "bullseye", "forky"
    security: bool = False         # also read <name>-security (bullseye's kernels are there)
    # packages of the build chroot: the compiler the release builds its kernel
    # with, kbuild's needs, and the guest tools of the release
    chroot_packages: tuple[str, ...] = ()

    def sources(self, arch: str = "amd64") -> str:
        # one architecture only: the host may know foreign architectures (arm64 guests), and
        # every list apt-cache reads slows the resolution down
        opts = f"[arch={arch} signed-by={KEYRING}]"
        lines = [f"deb {opts} {MIRROR} {self.name} main"]
        if self.security:
            lines.append(f"deb {opts} {SECURITY_MIRROR} {self.name}-security main")
        return "\n".join(lines) + "\n"


_COMMON = ("make", "libc6-dev", "libelf-dev", "bc", "flex", "bison", "dwarves",
           "makedumpfile", "kexec-tools", "xz-utils", "zstd", "kmod")
RELEASES = {
    # bullseye-security lists newer 5.10 kernels (5.10.262), but the mirror serves only their
    # headers (the image and -dbg are 404 there): the release's own suite is what works
    "bullseye": Release("bullseye", chroot_packages=("gcc-10", *_COMMON)),
    "forky": Release("forky", chroot_packages=("gcc", *_COMMON, "crash")),
    # arm64 guest tools only (kernels.toml `userland`): trixie's makedumpfile 1.7.6 filters the
    # 52-bit-VA (LPA2) arm64 6.12 kernel, which bookworm's 1.7.2 refuses
    "trixie": Release("trixie"),
}


# ------------------------------------------------------------------ apt

def apt_dir(cache: Path, release: str, arch: str = "amd64") -> Path:
    return cache / "apt" / (release if arch == "amd64" else f"{release}-{arch}")


def apt_options(cache: Path, release: str, arch: str = "amd64") -> list[str]:
    """`-o` options that point apt-get/apt-cache at the release's own configuration (of
    packages of ARCH: a foreign one is made apt's native architecture for these calls)."""
    d = apt_dir(cache, release, arch)
    sources = RELEASES[release].sources(arch)
    if not (d / "sources.list").exists() or (d / "sources.list").read_text() != sources:
        for sub in ("lists/partial", "archives/partial"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "status").touch()
        tmp = d / f".sources.list.{os.getpid()}"
        tmp.write_text(sources)
        tmp.replace(d / "sources.list")    # the next apt-cache miss runs apt-get update
    return [
        "-o", f"Dir::Etc::sourcelist={d / 'sources.list'}",
        "-o", "Dir::Etc::sourceparts=-",
        "-o", f"Dir::State::Lists={d / 'lists'}",
        "-o", f"Dir::State::status={d / 'status'}",
        "-o", f"Dir::Cache={d}",
        "-o", f"Dir::Cache::archives={d / 'archives'}",
        *(["-o", f"APT::Architecture={arch}", "-o", f"APT::Architectures::={arch}"] if arch != "amd64" else []),
    ]


# ------------------------------------------------------------------ chroot

def chroot_dir(cache: Path, release: str) -> Path:
    return cache / "chroots" / release


def _chroot_stamp(release: Release) -> str:
    return hashlib.sha256(" ".join(release.chroot_packages).encode()).hexdigest()[:16]


def ensure_chroot(cache: Path, release: str) -> Path:
    """The release's minbase chroot with its build and guest tools; made once."""
    rel = RELEASES[release]
    root = chroot_dir(cache, release)
    stamp = root / ".kpm-chroot"
    want = _chroot_stamp(rel)
    with flock(cache / "chroots" / f".{release}.lock"):
        if stamp.exists() and stamp.read_text().strip() == want:
            return root
        if not shutil.which("debootstrap"):
            raise ReleaseError("debootstrap not found (run scripts/install-deps)")
        if root.exists():
            shutil.rmtree(root)
        script = DEBOOTSTRAP_SCRIPTS / release
        if not script.exists():
            script = DEBOOTSTRAP_SCRIPTS / "sid"
        log(f"[{release}] debootstrap --variant=minbase into {root} (once per cache)")
        cmd = ["debootstrap", "--variant=minbase", "--arch=amd64", f"--keyring={KEYRING}",
               "--include=" + ",".join(rel.chroot_packages), release, str(root), MIRROR,
               str(script)]
        r = subprocess.run(cmd, text=True, capture_output=True,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if r.returncode != 0:
            tail = (r.stdout + r.stderr)[-3000:]
            raise ReleaseError(f"debootstrap {release} failed ({r.returncode}):\n{tail}")
        (root / "var/cache/apt/archives").mkdir(parents=True, exist_ok=True)
        for deb in (root / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()  # the .debs stay out of the cache's size
        stamp.write_text(want + "\n")
        return root


def chroot_run(root: Path, cmd: list[str], binds: list[Path] = (), cwd: Path | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run cmd inside the chroot, with each of `binds` (host directories) mounted at
    the same path inside it and /proc, in a private mount namespace (nothing left mounted)."""
    script = []
    for b in binds:
        inside = root / str(b).lstrip("/")
        inside.mkdir(parents=True, exist_ok=True)
        script.append(f"mount --bind {shlex.quote(str(b))} {shlex.quote(str(inside))}")
    # objtool (7.x) reads its stack limit from /proc
    script.append(f"mount -t proc proc {shlex.quote(str(root / 'proc'))}")
    inner = shlex.join(cmd)
    if cwd:
        inner = f"cd {shlex.quote(str(cwd))} && {inner}"
    script.append(f"exec chroot {shlex.quote(str(root))} /bin/sh -c {shlex.quote(inner)}")
    base_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "HOME": "/root"}
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           " && ".join(script)],
                          text=True, capture_output=True, env={**base_env, **(env or {})})


def chroot_libs(root: Path, binary: str) -> list[str]:
    """Paths (inside the chroot) of the libraries `binary` needs, and the loader."""
    r = chroot_run(root, ["ldd", binary])
    if r.returncode != 0:
        raise ReleaseError(f"ldd {binary} in {root} failed: {r.stderr.strip()}")
    return ldd_paths(r.stdout)


def chroot_tool(root: Path, name: str) -> str:
    """Path inside the chroot of one of its tools (makedumpfile, kexec, crash)."""
    for d in ("usr/sbin", "sbin", "usr/bin", "bin"):
        if (root / d / name).exists():
            return f"/{d}/{name}"
    raise ReleaseError(f"{name} not in the chroot {root}")


def host_path(root: Path, inside: str) -> Path:
    """The host path of a file inside the chroot, symlinks resolved within the chroot."""
    p = Path(inside)
    for _ in range(40):
        host = root / str(p).lstrip("/")
        if not host.is_symlink():
            return host
        target = Path(os.readlink(host))
        p = target if target.is_absolute() else (p.parent / target)
        p = Path(os.path.normpath(p))
    raise ReleaseError(f"symlink loop at {inside} in {root}")
