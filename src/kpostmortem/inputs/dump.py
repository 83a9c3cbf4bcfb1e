"""Open a vmcore with drgn and load the debug info it needs, checked by build ID.

``open_dump`` is the only place a drgn Program is created for analysis.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field

import drgn

from kpostmortem import arch as arches
from kpostmortem.errors import DebugInfoError, DumpError
from kpostmortem.inputs.elfinfo import ELF_MAGIC, DumpHeader, build_id, read_dump_header, vmlinux_candidates
from kpostmortem.inputs.nodwarf import DegradedState, enable_degraded

__all__ = ["DebugInfoStatus", "Dump", "open_dump", "find_vmlinux", "normalize_module_name"]

MODULE_SUFFIXES = (".ko.debug", ".ko", ".ko.xz", ".ko.zst", ".ko.gz")


def normalize_module_name(name: str) -> str:
    """Kernel module names treat ``-`` and ``_`` alike; the kernel stores ``_``."""
    return name.replace("-", "_")


def _module_file_name(path: str) -> str | None:
    base = os.path.basename(path)
    for suffix in MODULE_SUFFIXES:
        if base.endswith(suffix):
            return normalize_module_name(base[: -len(suffix)])
    return None


@dataclass
class DebugInfoStatus:
    """What debug info was found and loaded for a dump."""

    vmlinux: str | None = None
    """Path of the vmlinux whose DWARF is loaded, or None (degraded mode)."""
    vmlinux_build_id: str | None = None
    """Its build ID, checked against the dump's."""
    dump_build_id: str | None = None
    """The kernel build ID the dump records (VMCOREINFO), if any."""
    modules: dict[str, str] = field(default_factory=dict)
    """Module name → debug file loaded for it."""
    modules_missing: list[str] = field(default_factory=list)
    """Modules that mattered to the analysis but had no debug file."""
    mismatched: dict[str, str] = field(default_factory=dict)
    """Module name → why the debug files found for it were refused (build ID differs…)."""
    searched: list[str] = field(default_factory=list)
    """Directories searched for debug files."""
    module_symbols: str | None = None
    """Where the symbols of modules without debug files came from, if looked for."""
    seconds: float = 0.0
    """Time spent loading debug info."""

    @property
    def degraded(self) -> bool:
        """True when the kernel's own DWARF is missing."""
        return self.vmlinux is None

    def to_dict(self) -> dict:
        return {
            "vmlinux": self.vmlinux,
            "vmlinux_build_id": self.vmlinux_build_id,
            "dump_build_id": self.dump_build_id,
            "modules": dict(sorted(self.modules.items())),
            "modules_missing": sorted(self.modules_missing),
            "mismatched": dict(sorted(self.mismatched.items())),
            "module_symbols": self.module_symbols,
            "degraded": self.degraded,
        }


def find_vmlinux(release: str | None, dirs: Sequence[str], dump_build_id: str | None) -> tuple[str | None, list[str]]:
    """Find a vmlinux with DWARF for this dump in the given dirs and the standard places.

    Returns (path or None, [paths rejected because their build ID differs]).
    """
    rejected = []
    for path in vmlinux_candidates(release, dirs, dump_build_id):
        bid = build_id(path)
        if dump_build_id and bid and bid != dump_build_id:
            rejected.append(path)
            continue
        return path, rejected
    return None, rejected


class Dump:
    """An opened vmcore: the drgn Program, the header, and the state of its debug info."""

    def __init__(self, path: str, header: DumpHeader, prog: drgn.Program, debug: DebugInfoStatus,
                 debuginfo_dirs: Sequence[str], degraded: DegradedState | None = None) -> None:
        self.path = path
        self.header = header
        self.prog = prog
        self.debug = debug
        self.degraded = degraded
        """Set in degraded mode (no kernel DWARF): what kallsyms/ORC could be set up."""
        self._debuginfo_dirs = list(debuginfo_dirs)
        self._module_index: dict[str, list[str]] | None = None
        self._module_kallsyms: bool | None = None

    @property
    def release(self) -> str | None:
        try:
            return self.prog["UTS_RELEASE"].string_().decode()
        except (LookupError, drgn.FaultError):
            return self.header.release

    @property
    def arch(self) -> str:
        platform = self.prog.platform
        if platform is None:
            return self.header.machine or "unknown"
        return {drgn.Architecture.X86_64: "x86_64", drgn.Architecture.AARCH64: "aarch64"}.get(
            platform.arch, platform.arch.name.lower()
        )

    def _module_dirs(self) -> list[str]:
        rel = self.release or ""
        dirs = list(self._debuginfo_dirs)
        if rel:
            dirs += [f"/usr/lib/debug/lib/modules/{rel}", f"/lib/modules/{rel}"]
        return [d for d in dirs if os.path.isdir(d)]

    def _index_modules(self) -> dict[str, list[str]]:
        if self._module_index is None:
            index: dict[str, list[str]] = {}
            for root in self._module_dirs():
                if root not in self.debug.searched:
                    self.debug.searched.append(root)
                for dirpath, _dirs, files in os.walk(root):
                    for name in files:
                        mod = _module_file_name(name)
                        if mod:
                            index.setdefault(mod, []).append(os.path.join(dirpath, name))
            # Prefer separate debug files, then plain .ko, then compressed ones.
            for paths in index.values():
                paths.sort(key=lambda p: next(i for i, s in enumerate(MODULE_SUFFIXES) if p.endswith(s)))
            self._module_index = index
        return self._module_index

    def _module_candidates(self, name: str) -> Iterator[str]:
        """Files that may hold module ``name``'s debug info, likeliest first.

        First ``NAME.ko*`` at the top of each directory (a build tree, a folder of debug
        files: one stat each), then every match of a recursive walk of the directories (a
        distribution's ``lib/modules/RELEASE`` tree: ~1,100 files on Debian). drgn checks each
        file's build ID against the loaded module, so the order only decides how soon one fits.
        """
        tried = set()
        for root in self._module_dirs():
            if root not in self.debug.searched:
                self.debug.searched.append(root)
            for stem in dict.fromkeys((name, name.replace("_", "-"))):
                for suffix in MODULE_SUFFIXES:
                    path = os.path.join(root, stem + suffix)
                    if os.path.isfile(path):
                        tried.add(path)
                        yield path
        for path in self._index_modules().get(name, []):
            if path not in tried:
                yield path

    def use_module_kallsyms(self) -> bool:
        """Name the frames of modules without debug files from the modules' own symbol tables
        (``mod->kallsyms``; needs the kernel's DWARF). Once; True when newly enabled."""
        if self._module_kallsyms is not None:
            return False
        self._module_kallsyms = False
        try:
            from drgn.helpers.linux.kallsyms import load_module_kallsyms

            index = load_module_kallsyms(self.prog)
            self.prog.register_symbol_finder("module-kallsyms", index, enable_index=-1)
        except (LookupError, ValueError, drgn.FaultError, NotImplementedError) as e:
            self.debug.module_symbols = f"unavailable: {e}"
            return False
        self._module_kallsyms = True
        self.debug.module_symbols = "kallsyms (no debug file)"
        return True

    def load_module_debug_info(self, names: Iterable[str]) -> list[str]:
        """Load DWARF for the named loaded modules, if not loaded yet. Returns the newly loaded."""
        wanted = {normalize_module_name(n) for n in names} - set(self.debug.modules)
        if not wanted:
            return []
        start = time.perf_counter()
        by_name: dict[str, drgn.Module] = {}
        for module, _new in self.prog.loaded_modules():
            if isinstance(module, drgn.RelocatableModule) and normalize_module_name(module.name) in wanted:
                by_name[normalize_module_name(module.name)] = module
        loaded = []
        for name in sorted(wanted):
            module = by_name.get(name)
            if module is None or module.debug_file_status == drgn.ModuleFileStatus.HAVE:
                if module is not None and module.debug_file_path:
                    self.debug.modules[name] = module.debug_file_path
                continue
            for candidate in self._module_candidates(name):
                try:
                    module.try_file(candidate)
                except (drgn.MissingDebugInfoError, OSError, ValueError):
                    continue
                if module.debug_file_status == drgn.ModuleFileStatus.HAVE:
                    break
            if module.debug_file_status != drgn.ModuleFileStatus.HAVE:
                # Let drgn's standard finders try too (build-id links under --debuginfo dirs).
                try:
                    self.prog.load_module_debug_info(module)
                except drgn.MissingDebugInfoError:
                    pass
            if module.debug_file_status == drgn.ModuleFileStatus.HAVE:
                self.debug.modules[name] = module.debug_file_path or "?"
                loaded.append(name)
            elif name not in self.debug.modules_missing:
                self.debug.modules_missing.append(name)
                want = module.build_id.hex() if module.build_id else None
                refused = [(p, build_id(p)) for p in self._index_modules().get(name, [])]
                refused = [(p, b) for p, b in refused if want and b and b != want]
                if refused:
                    self.debug.mismatched[name] = (
                        f"{refused[0][0]} has build ID {refused[0][1]}, the loaded module {want}"
                    )
        self.debug.seconds += time.perf_counter() - start
        return loaded


SESSION_PLUGINS = ("builtin_commands", "crash_commands", "kpostmortem")
"""drgn plugins that only register commands for an interactive session (drgn's own and ours)."""


def skip_session_plugins(environ: MutableMapping[str, str] = os.environ) -> None:
    """Keep drgn from loading its command plugins in this process and the ones it starts.

    drgn loads every ``drgn.plugins`` entry point when the first program is set up; its command
    plugins build ~60 argparse parsers (~33 ms) that a non-interactive analysis never uses.
    Other plugins (a site's debug-info finders) still load; ``DRGN_DISABLE_PLUGINS`` already
    set by the user is extended, not replaced. Call it before the first ``set_core_dump``.
    """
    current = environ.get("DRGN_DISABLE_PLUGINS", "")
    if current == "*":
        return
    names = [n for n in current.split(",") if n]
    names += [p for p in SESSION_PLUGINS if p not in names]
    environ["DRGN_DISABLE_PLUGINS"] = ",".join(names)


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(ELF_MAGIC)) == ELF_MAGIC
    except OSError:
        return False


def _check_vmlinux_matches(vmlinux: str, dump_build_id: str | None, release: str | None) -> None:
    """Raise the DebugInfoError that says why ``vmlinux`` is not the dump's kernel, if it is not."""
    file_bid = build_id(vmlinux)
    if file_bid is None:
        raise DebugInfoError(f"{vmlinux}: not an ELF file with a build ID")
    if dump_build_id and file_bid != dump_build_id:
        raise DebugInfoError(
            f"{vmlinux} does not match the dump: its build ID is {file_bid}, "
            f"the dump's kernel is {dump_build_id}",
            hint=f"give the vmlinux of kernel {release or '?'} (its -dbg/-debuginfo package)",
        )


def open_dump(
    path: str,
    vmlinux: str | None = None,
    debuginfo: Sequence[str] = (),
    *,
    allow_no_debug_info: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Dump:
    """Open ``path`` as a kernel crash dump and load the kernel's debug info.

    :raises DumpError: the file is not a readable kernel crash dump
    :raises DebugInfoError: the vmlinux does not match, or none was found and
        ``allow_no_debug_info`` is false
    """
    say = progress or (lambda _msg: None)
    if os.path.isdir(path):
        inside = os.path.join(path, "vmcore")
        raise DumpError(
            f"{path}: is a directory, not a dump file",
            hint=f"did you mean {inside}?" if os.path.isfile(inside) else "give the vmcore file kdump saved in it",
        )
    try:
        header = read_dump_header(path)
    except FileNotFoundError:
        raise DumpError(f"{path}: no such file") from None
    except PermissionError:
        raise DumpError(f"{path}: permission denied", hint="run as a user who can read the dump, often root") from None
    except OSError as e:
        raise DumpError(f"{path}: cannot read: {e.strerror or e}") from None
    if header.size == 0:
        raise DumpError(f"{path}: empty file, not a dump",
                        hint="the capture or the copy did not finish: take the dump again or copy it again")
    if header.format == "unknown":
        raise DumpError(f"{path}: not a kernel crash dump (neither ELF nor makedumpfile's kdump format)",
                        hint="give the vmcore that kdump saved, e.g. /var/crash/*/vmcore")
    if header.format == "flattened":
        raise DumpError(
            f"{path}: makedumpfile flattened stream",
            hint=f"convert it first: makedumpfile -R {path}.kdump < {path}",
        )
    if header.format == "diskdump":
        raise DumpError(f"{path}: a diskdump/netdump file, which drgn cannot read",
                        hint="capture with kdump + makedumpfile (kdump-compressed or ELF)")
    if header.format == "elf" and header.problems and "not a core dump" in header.problems[0]:
        raise DumpError(f"{path}: {header.problems[0]}",
                        hint="give the vmcore that kdump saved; a vmlinux goes with --vmlinux")
    if header.format == "elf" and header.problems and header.problems[0].startswith("damaged ELF headers"):
        raise DumpError(f"{path}: {header.problems[0]}", hint="the file is not a readable ELF dump: copy it again")
    if header.format == "kdump" and not header.vmcoreinfo and header.problems:
        raise DumpError(f"{path}: damaged kdump header: {'; '.join(header.problems)}",
                        hint="copy the dump again; if the copy is good, the capture failed")

    if not arches.supported(header.machine):
        # Say it plainly rather than guess: our fault decoding, frames and stacks are per
        # architecture (arch/). What the header tells is still shown.
        known = f"{arches.canonical_name(header.machine)} kernel dump" + \
            (f" of {header.release}" if header.release else "")
        raise DumpError(f"{path}: {known}: architecture not supported yet",
                        hint=f"kpostmortem analyses {' and '.join(arches.SUPPORTED)}; drgn can still "
                             f"open it: drgn -c {path} -s VMLINUX")
    prog = drgn.Program()
    try:
        prog.set_core_dump(path)
    except Exception as e:  # noqa: BLE001 - libkdumpfile's errors reach Python as plain Exception
        what = "; ".join(header.problems) or str(e).splitlines()[0]
        raise DumpError(f"{path}: cannot open it as a kernel dump: {what}",
                        hint="the file is damaged or cut short: copy it again") from None
    if not (prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL):
        raise DumpError(f"{path}: a core dump, but of a user-space process, not of a Linux kernel",
                        hint="kpostmortem reads kernel crash dumps (the vmcore kdump saves); use gdb for this one")

    debug = DebugInfoStatus(dump_build_id=header.build_id)
    try:
        main = prog.main_module()
        if main.build_id:
            debug.dump_build_id = main.build_id.hex()
    except LookupError:
        main = None

    start = time.perf_counter()
    if vmlinux is not None:
        if not os.path.isfile(vmlinux):
            raise DebugInfoError(f"{vmlinux}: no such vmlinux file")
        # drgn itself refuses a file whose build ID differs from the dump's kernel; the file's
        # own build ID is read (pyelftools) only to say why, when drgn did not take it.
        if not _is_elf(vmlinux):
            raise DebugInfoError(f"{vmlinux}: not an ELF file with a build ID")
        chosen = vmlinux
    else:
        chosen, rejected = find_vmlinux(header.release, debuginfo, debug.dump_build_id)
        if chosen is None and rejected:
            raise DebugInfoError(
                f"found only vmlinux files of other kernels ({', '.join(rejected[:3])}); "
                f"the dump's kernel build ID is {debug.dump_build_id}",
                hint=f"install the debug package of kernel {header.release or '?'} or pass --vmlinux FILE",
            )
    if chosen is not None:
        say(f"loading kernel debug info from {chosen}")
        # A file drgn refuses ("did not match any loaded modules") is reported below, in one line.
        drgn_log = logging.getLogger("drgn")
        level = drgn_log.level
        drgn_log.setLevel(max(level, logging.ERROR))
        try:
            prog.load_debug_info([chosen])
        except drgn.MissingDebugInfoError:
            pass
        finally:
            drgn_log.setLevel(level)
        try:
            main = prog.main_module()
        except LookupError:
            main = None
        if main is not None and main.debug_file_status == drgn.ModuleFileStatus.HAVE:
            debug.vmlinux = main.debug_file_path or chosen
            debug.vmlinux_build_id = main.build_id.hex() if main.build_id else build_id(chosen)
        else:
            if vmlinux is not None:
                _check_vmlinux_matches(vmlinux, debug.dump_build_id, header.release)
            raise DebugInfoError(f"{chosen}: drgn could not load kernel debug info from it (no DWARF?)")
    elif not allow_no_debug_info:
        raise DebugInfoError(
            f"no vmlinux with debug info found for kernel {header.release or '?'}",
            hint="pass --vmlinux FILE from the kernel's -dbg/-debuginfo package",
        )
    degraded = None
    if debug.degraded:
        say("no kernel debug info: degraded mode (kallsyms, ORC, VMCOREINFO)")
        degraded = enable_degraded(prog, header)
    debug.seconds = time.perf_counter() - start
    return Dump(path, header, prog, debug, debuginfo, degraded)
