"""Debug info for a text log: a vmlinux (and module files) loaded into drgn without a dump.

drgn symbolizes from DWARF alone: the kernel image is loaded as a module at its link address
(no KASLR: a log names code as ``symbol+offset``, never as an address), each module's ``.ko``
as a relocatable module with its sections at made-up addresses. Then a trace entry
``func+0x19/0x30 [mod]`` becomes an address, and the address a ``file:line`` with its inlined
callers (what the kernel's decode_stacktrace.sh prints), and the faulting function's bytes are
read from the file itself to check the log's ``Code:`` line against.
"""

from __future__ import annotations

import mmap
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import drgn

from kpostmortem.errors import DebugInfoError
from kpostmortem.helpers.source import normalize_source_path
from kpostmortem.inputs.dump import MODULE_SUFFIXES, find_vmlinux, normalize_module_name
from kpostmortem.inputs.elfinfo import _elftools

__all__ = ["LogDebugInfo", "open_log_debug_info", "vmlinux_release"]

_BANNER = re.compile(rb"Linux version (\d[^\s%()]*) \(")
# Modules get their sections at made-up addresses in the module area, far apart.
_MODULE_BASE = 0xFFFFFFFFC0000000
_MODULE_SPAN = 0x1000000


def vmlinux_release(path: str) -> str | None:
    """The release in a vmlinux's ``linux_banner`` ("Linux version 6.1.0-57-cloud-amd64 (…"),
    found by scanning the file (no symbol table walk), or None."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            match = _BANNER.search(m)
            return match.group(1).decode(errors="replace") if match else None
    except (OSError, ValueError):
        return None


def _load_segments(path: str) -> tuple[int, int, str] | None:
    """[lowest, highest) virtual address of the file's loadable segments, and its e_machine."""
    ELFFile = _elftools()[1]
    with open(path, "rb") as f:
        elf = ELFFile(f)
        spans = [(s["p_vaddr"], s["p_vaddr"] + s["p_memsz"]) for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        machine = elf["e_machine"]
    if not spans:
        return None
    return min(a for a, _ in spans), max(b for _, b in spans), machine


def _alloc_sections(path: str) -> list[tuple[str, int]]:
    """(name, size) of a module file's SHF_ALLOC sections (the ones the kernel lays out)."""
    ELFFile = _elftools()[1]
    with open(path, "rb") as f:
        elf = ELFFile(f)
        return [(s.name, s["sh_size"]) for s in elf.iter_sections() if s["sh_flags"] & 0x2 and s.name]


@dataclass
class LogDebugInfo:
    """A drgn Program holding a kernel's (and some modules') DWARF, for symbolizing a log."""

    prog: drgn.Program
    vmlinux: str
    release: str | None
    modules: dict[str, str] = field(default_factory=dict)
    """Module name → the debug file loaded for it."""
    modules_missing: list[str] = field(default_factory=list)
    searched: list[str] = field(default_factory=list)
    seconds: float = 0.0
    _module_ranges: dict[str, tuple[int, int]] = field(default_factory=dict)
    _placed: dict[str, dict[str, int]] = field(default_factory=dict)
    _code_sections: list[tuple[str, int, int, int]] = field(default_factory=list)

    def address_of(self, function: str, offset: int | None, module: str | None) -> int | None:
        """The address of ``function+offset`` in ``module`` (None: core kernel), or None."""
        try:
            symbols = self.prog.symbols(function)
        except LookupError:
            return None
        span = self._module_ranges.get(normalize_module_name(module)) if module else None
        for sym in symbols:
            inside = span[0] <= sym.address < span[1] if span else sym.address < _MODULE_BASE
            if inside:
                return sym.address + (offset or 0)
        return None

    def locations(self, address: int) -> list[tuple[str, str | None]]:
        """(function, "file:line") of the address, innermost (inlined) first."""
        try:
            locs = self.prog.source_location(address)
        except (LookupError, ValueError):
            return []
        return [(loc.name(), f"{normalize_source_path(loc.filename)}:{loc.line}" if loc.filename else None)
                for loc in locs]

    def read(self, address: int, size: int) -> bytes | None:
        """Bytes of the code at ``address`` from the binary itself (its file, not memory)."""
        if not self._code_sections:
            self._code_sections = _code_sections(self.vmlinux, None)
            for name, path in self.modules.items():
                self._code_sections += _code_sections(path, self._placed.get(name, {}))
        for path, start, end, offset in self._code_sections:
            if start <= address and address + size <= end:
                with open(path, "rb") as f:
                    f.seek(offset + address - start)
                    return f.read(size)
        return None


def _code_sections(path: str, placed: dict[str, int] | None) -> list[tuple[str, int, int, int]]:
    """(path, start, end, file offset) of a file's executable sections; a module's at the
    addresses ``placed`` gave them (None: the file's own addresses, for vmlinux)."""
    ELFFile = _elftools()[1]
    out = []
    with open(path, "rb") as f:
        for sec in ELFFile(f).iter_sections():
            if not (sec["sh_flags"] & 0x4 and sec["sh_type"] == "SHT_PROGBITS"):
                continue
            start = sec["sh_addr"] if placed is None else placed.get(sec.name)
            if start is not None:
                out.append((path, start, start + sec["sh_size"], sec["sh_offset"]))
    return out


def _module_files(name: str, dirs: Sequence[str], release: str | None) -> list[str]:
    """Candidate files for module ``name`` under ``dirs`` and /lib/modules/RELEASE, likeliest first."""
    roots = list(dirs)
    if release:
        roots += [f"/usr/lib/debug/lib/modules/{release}", f"/lib/modules/{release}"]
    stems = dict.fromkeys((name, name.replace("_", "-")))
    out = []
    for root in roots:
        if not os.path.isdir(root):
            continue
        top = (os.path.join(root, s + x) for s in stems for x in MODULE_SUFFIXES)
        out += [path for path in top if os.path.isfile(path)]
    for root in roots:
        if not os.path.isdir(root):
            continue
        for dirpath, _dirs, files in os.walk(root):
            out += [os.path.join(dirpath, f) for f in files for s in stems for x in MODULE_SUFFIXES if f == s + x]
    return [p for p in dict.fromkeys(out) if not p.endswith((".xz", ".zst", ".gz"))]


def open_log_debug_info(
    release: str | None,
    vmlinux: str | None,
    debuginfo: Sequence[str],
    modules: Iterable[str],
) -> LogDebugInfo | None:
    """Load the kernel's DWARF for a log of kernel ``release``: ``vmlinux`` when given (refused,
    naming both releases, when it is another kernel's), else one found by release the way dumps
    find theirs; and the debug files of ``modules``. None when no vmlinux was given or found.

    :raises DebugInfoError: the given vmlinux is missing, not an ELF file, or of another release
    """
    start = time.perf_counter()
    if vmlinux is not None:
        if not os.path.isfile(vmlinux):
            raise DebugInfoError(f"{vmlinux}: no such vmlinux file")
        chosen = vmlinux
    else:
        chosen, _rejected = find_vmlinux(release, debuginfo, None)
        if chosen is None:
            return None
    file_release = vmlinux_release(chosen)
    if release and file_release and file_release != release:
        raise DebugInfoError(
            f"{chosen} is kernel {file_release}, the log's kernel is {release}",
            hint=f"give the vmlinux of kernel {release} (its -dbg/-debuginfo package)",
        )
    try:
        span = _load_segments(chosen)
    except Exception as e:  # noqa: BLE001 - pyelftools raises its own errors on a damaged file
        raise DebugInfoError(f"{chosen}: not a readable ELF file ({type(e).__name__}: {e})") from None
    if span is None:
        raise DebugInfoError(f"{chosen}: not a vmlinux (no loadable segments)")
    # the vmlinux's own instruction set (an arm64 log's vmlinux is an AArch64 file)
    arch = drgn.Architecture.AARCH64 if span[2] == "EM_AARCH64" else drgn.Architecture.X86_64
    prog = drgn.Program(drgn.Platform(arch, drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN))
    kernel = prog.extra_module("kernel", 0, create=True)
    kernel.address_range = span[:2]
    kernel.try_file(chosen, force=True)
    if kernel.debug_file_status != drgn.ModuleFileStatus.HAVE:
        raise DebugInfoError(f"{chosen}: drgn could not load kernel debug info from it (no DWARF?)")
    info = LogDebugInfo(prog, chosen, file_release or release, searched=list(debuginfo))
    placed_all: dict[str, dict[str, int]] = {}
    for n, name in enumerate(sorted({normalize_module_name(m) for m in modules if m})):
        base = _MODULE_BASE + n * _MODULE_SPAN
        for path in _module_files(name, debuginfo, release):
            try:
                sections = _alloc_sections(path)
            except Exception:  # noqa: BLE001 - not an ELF file: try the next one
                continue
            module = prog.relocatable_module(name, base, create=True)
            module.address_range = (base, base + _MODULE_SPAN)
            addr, placed = base, {}
            for sec, size in sections:
                module.section_addresses[sec] = addr
                placed[sec] = addr
                addr += (size + 0xFFF) & ~0xFFF
            module.try_file(path, force=True)
            if module.debug_file_status == drgn.ModuleFileStatus.HAVE:
                info.modules[name] = path
                info._module_ranges[name] = (base, base + _MODULE_SPAN)
                placed_all[name] = placed
                break
        else:
            info.modules_missing.append(name)
    info._placed = placed_all
    info.seconds = time.perf_counter() - start
    return info
