"""The guest userland of a foreign architecture, from Debian's packages of that architecture.

An arm64 guest cannot run the host's busybox, kexec and makedumpfile.  Their arm64
packages, and the library packages in their Depends closure, are `apt-get download`ed
as NAME:ARCH (after `dpkg --add-architecture ARCH`) and unpacked into the cache with
`dpkg-deb -x`: never installed.  `binary_files` gives a program with the shared
libraries its ELF header asks for (DT_NEEDED, recursively) and its program interpreter,
read with pyelftools: no `ldd`, which cannot run a foreign binary.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from . import log, releases
from .kernels import KernelError, _apt_options, _depends, _field, _flock, apt_show, run

GUEST_TOOLS = ("busybox-static", "kexec-tools", "makedumpfile")
# multiarch library directories, by Debian architecture
LIB_DIRS = {"arm64": ("lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu", "lib", "usr/lib")}


def _ensure_arch(arch: str) -> None:
    """`dpkg --add-architecture ARCH` and `apt-get update`, once, when apt knows no ARCH."""
    foreign = run(["dpkg", "--print-foreign-architectures"]).stdout.split()
    if arch in foreign:
        return
    log(f"dpkg --add-architecture {arch}; apt-get update")
    run(["dpkg", "--add-architecture", arch])
    run(["apt-get", "update", "-q"], stdout=subprocess.DEVNULL)


def _closure(arch: str) -> list[str]:
    """NAME:ARCH=VERSION of the guest tools and every library package they depend on."""
    todo, seen, out = list(GUEST_TOOLS), set(), []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        stanza = apt_show(f"{name}:{arch}")
        out.append(f"{name}:{arch}={_field(stanza, 'Version')}")
        for key in ("Pre-Depends", "Depends"):     # both are needed at run time
            for dep, _, _ in _depends("Depends: " + _field(stanza, key)):
                dep = dep.split(":")[0]
                if dep.startswith(("lib", "zlib")) or dep in GUEST_TOOLS:   # not perl, debconf
                    todo.append(dep)
    return sorted(out)


def sysroot(arch: str, cache: Path, release: str | None = None) -> Path:
    """A folder holding the guest tools of ARCH and their libraries, made once per cache:
    the host's Debian release's packages, or RELEASE's (kernels.toml `userland`) through the
    project's own apt configuration of that release and architecture (releases.py)."""
    name = arch if release is None else f"{arch}-{release}"
    root = cache / "userland" / name
    with _flock(cache / "userland" / f".{name}.lock"):
        stamp = root / "packages.json"
        if stamp.exists():
            return root / "sysroot"
        token = None
        if release is None:
            _ensure_arch(arch)
        else:
            token = _apt_options.set(tuple(releases.apt_options(cache, release, arch)))
        try:
            return _fetch(arch, root, stamp)
        finally:
            if token is not None:
                _apt_options.reset(token)


def _fetch(arch: str, root: Path, stamp: Path) -> Path:
    """Download the guest tools' closure with the apt configuration in force, and unpack it."""
    pkgs = _closure(arch)
    debs = root / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    log(f"[{root.name}] downloading the guest userland: {len(pkgs)} packages")
    r = run(["apt-get", "download", "-q", *pkgs], cwd=debs, check=False)
    if r.returncode != 0:
        raise KernelError(f"apt-get download failed:\n{r.stdout}\n{r.stderr}")
    for deb in sorted(debs.glob("*.deb")):
        run(["dpkg-deb", "-x", str(deb), str(root / "sysroot")])
    stamp.write_text(json.dumps(pkgs, indent=2) + "\n")
    return root / "sysroot"


_MERGED_USR = ("bin/", "sbin/", "lib/")


def _inside(root: Path, path: str) -> Path:
    """PATH (absolute, as the guest sees it) inside ROOT, symlinks resolved within ROOT.
    A merged-/usr release (trixie) ships /lib, /bin and /sbin files under /usr only: the
    /lib -> usr/lib links come from packages that are not unpacked here."""
    rel = path.lstrip("/")
    if rel.startswith(_MERGED_USR) and not os.path.lexists(root / rel) and os.path.lexists(root / "usr" / rel):
        rel = "usr/" + rel
    p = root / rel
    for _ in range(40):
        if not p.is_symlink():
            return p
        target = os.readlink(p)
        p = root / target.lstrip("/") if target.startswith("/") else p.parent / target
        p = Path(os.path.normpath(p))
    raise KernelError(f"symlink loop at {path} in {root}")


def _elf_needs(path: Path) -> tuple[list[str], str]:
    """(DT_NEEDED names, PT_INTERP) of an ELF file."""
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        elf = ELFFile(f)
        interp = next((seg.get_interp_name() for seg in elf.iter_segments()
                       if seg["p_type"] == "PT_INTERP"), "")
        needed = [tag.needed for sec in elf.iter_sections() if isinstance(sec, DynamicSection)
                  for tag in sec.iter_tags() if tag.entry.d_tag == "DT_NEEDED"]
    return needed, interp


def tool_file(root: Path, name: str) -> Path:
    """A guest tool of the sysroot (busybox, kexec, makedumpfile) where its release put it."""
    for d in ("sbin", "usr/sbin", "bin", "usr/bin"):
        if (root / d / name).is_file():
            return root / d / name
    raise KernelError(f"{name} is not in the guest userland {root}")


def binary_files(root: Path, arch: str, program: str) -> list[tuple[str, Path]]:
    """[(path in the guest, file here)] for PROGRAM (a path such as /sbin/kexec) and the
    libraries and loader it needs, found in the sysroot ROOT."""
    out: list[tuple[str, Path]] = []
    seen: set[str] = set()
    todo = [program.lstrip("/")]
    while todo:
        guest_path = todo.pop()
        if guest_path in seen:
            continue
        seen.add(guest_path)
        host = _inside(root, guest_path)
        if not host.is_file():
            raise KernelError(f"{guest_path} is not in the {arch} userland ({root})")
        out.append((guest_path, host))
        needed, interp = _elf_needs(host)
        if interp:
            todo.append(interp.lstrip("/"))
        for lib in needed:
            hit = next((f"{d}/{lib}" for d in LIB_DIRS[arch] if _inside(root, f"{d}/{lib}").is_file()),
                       None)
            if not hit:
                raise KernelError(f"{program} needs {lib}, in no {arch} package fetched")
            todo.append(hit)
    return out
