"""ELF and dump-header facts read without drgn: build IDs, module .modinfo, vmcore headers.

Used to find and check debug files, and to take a quick look at a dump before drgn opens it.
"""

from __future__ import annotations

import io
import lzma
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kpostmortem import arch as arches
from kpostmortem.arch import x86_64

__all__ = [
    "DumpHeader",
    "PrStatus",
    "build_id",
    "modinfo",
    "open_elf_bytes",
    "read_dump_header",
    "vmlinux_candidates",
    "parse_elf_notes",
    "parse_prstatus",
    "parse_vmcoreinfo",
]

KDUMP_SIGNATURE = b"KDUMP   "
DISKDUMP_SIGNATURE = b"DISKDUMP"
FLATTENED_SIGNATURE = b"makedumpfile"
ELF_MAGIC = b"\x7fELF"


def _elftools():
    """pyelftools' ELFError and ELFFile, imported on first use: a kdump-format dump whose
    vmlinux drgn accepts never needs them (~20 ms of imports)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    return ELFError, ELFFile


def open_elf_bytes(path: str | os.PathLike[str]) -> io.BytesIO | io.BufferedReader:
    """Open an ELF file for pyelftools, transparently decompressing ``.xz`` modules."""
    path = Path(path)
    if path.suffix == ".xz":
        return io.BytesIO(lzma.decompress(path.read_bytes()))
    return open(path, "rb")  # noqa: SIM115 - caller closes


def build_id(path: str | os.PathLike[str]) -> str | None:
    """The GNU build ID of an ELF file as lowercase hex, or None if it has none or is not ELF."""
    ELFError, ELFFile = _elftools()
    try:
        with open_elf_bytes(path) as f:
            elf = ELFFile(f)
            for section in elf.iter_sections():
                if section.header.sh_type != "SHT_NOTE":
                    continue
                for note in section.iter_notes():
                    # Match the owner too: the kernel's .notes also holds Xen notes of type 3.
                    if note["n_type"] == "NT_GNU_BUILD_ID" and note["n_name"] == "GNU":
                        desc = note["n_desc"]
                        return desc.hex() if isinstance(desc, bytes) else str(desc)
    except (OSError, ELFError, lzma.LZMAError, ValueError, struct.error):
        return None
    return None


def modinfo(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``.modinfo`` section of a kernel module file as a dict (name, vermagic, srcversion, …).

    Repeated keys (``alias``, ``depends``…) keep their last value, except ``depends`` which is
    comma-joined by the kernel already. Returns {} for a file that is not a module.
    """
    ELFError, ELFFile = _elftools()
    try:
        with open_elf_bytes(path) as f:
            elf = ELFFile(f)
            section = elf.get_section_by_name(".modinfo")
            if section is None:
                return {}
            data = section.data()
    except (OSError, ELFError, lzma.LZMAError, ValueError, struct.error):
        return {}
    info: dict[str, str] = {}
    for item in data.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            info[key.decode(errors="replace")] = value.decode(errors="replace")
    return info


def parse_vmcoreinfo(text: bytes | str) -> dict[str, str]:
    """Parse VMCOREINFO ``KEY=value`` lines (``SYMBOL(x)=…``, ``OSRELEASE=…``, ``BUILD-ID=…``)."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        key = key.strip()
        if sep and key:  # " =…" has no key (found by fuzzing: it gave the key "")
            info[key] = value.strip()
    return info


# Kernel ELF notes: NT_PRSTATUS holds one CPU's registers at crash time.
NT_PRSTATUS = 1
MAX_NOTES_BYTES = 1 << 24
"""Notes larger than this are not read (a damaged size field must not exhaust memory)."""

# x86-64 struct elf_prstatus: pr_pid at 32, pr_reg (struct user_regs_struct) at 112.
_PRSTATUS_PID_OFFSET = 32
_PRSTATUS_REG_OFFSET = 112
X86_64_PRSTATUS_REGS = x86_64.PRSTATUS_REGS   # user_regs_struct, under drgn's register names


@dataclass(frozen=True)
class PrStatus:
    """One CPU's NT_PRSTATUS note: the pid running there and its registers at crash time."""

    cpu: int
    """Position of the note among the PRSTATUS notes (the kernel writes them in CPU order)."""
    pid: int
    """pr_pid: the pid of the task that was current on that CPU (0 for idle)."""
    registers: dict[str, int]
    """Register name (drgn's: rip, rsp, rbp… on x86-64; x0–x30, sp, pc, pstate on arm64) → value."""


def parse_elf_notes(data: bytes, limit: int = 4096) -> list[tuple[str, int, bytes]]:
    """Split an ELF note area into (name, type, desc) triples; stops at the first damaged note.

    Pure: never raises on content, reads at most ``limit`` notes.
    """
    out: list[tuple[str, int, bytes]] = []
    off = 0
    n = len(data)
    while off + 12 <= n and len(out) < limit:
        namesz, descsz, ntype = struct.unpack_from("<III", data, off)
        off += 12
        name_end = off + namesz
        desc_start = off + ((namesz + 3) & ~3)
        desc_end = desc_start + descsz
        if name_end > n or desc_end > n:
            break
        name = data[off:name_end].split(b"\0", 1)[0].decode("ascii", errors="replace")
        out.append((name, ntype, bytes(data[desc_start:desc_end])))
        off = desc_start + ((descsz + 3) & ~3)
    return out


def parse_prstatus(desc: bytes, cpu: int = 0, machine: str | None = "x86_64") -> PrStatus | None:
    """Decode an NT_PRSTATUS descriptor of x86-64 or arm64 (pr_pid and pr_reg sit at the same
    offsets in both), or None if it is too short or of another architecture."""
    name = arches.canonical_name(machine)
    if name is not None and name not in arches.SUPPORTED:
        return None  # another architecture, or a damaged machine field
    names = arches.get(name).PRSTATUS_REGS
    need = _PRSTATUS_REG_OFFSET + 8 * len(names)
    if len(desc) < need:
        return None
    (pid,) = struct.unpack_from("<i", desc, _PRSTATUS_PID_OFFSET)
    values = struct.unpack_from(f"<{len(names)}Q", desc, _PRSTATUS_REG_OFFSET)
    return PrStatus(cpu, pid, dict(zip(names, values, strict=True)))


def _prstatus_notes(data: bytes, machine: str | None) -> tuple[PrStatus, ...]:
    out = []
    for name, ntype, desc in parse_elf_notes(data):
        if ntype == NT_PRSTATUS and name == "CORE":
            pr = parse_prstatus(desc, len(out), machine)
            if pr is not None:
                out.append(pr)
    return tuple(out)


@dataclass(frozen=True)
class DumpHeader:
    """What a dump file says about itself before any kernel memory is read."""

    format: str
    """"kdump" (makedumpfile compressed), "elf", "flattened", "diskdump" or "unknown"."""
    size: int
    """File size in bytes."""
    release: str | None = None
    """Kernel release (``uname -r``) from the header or VMCOREINFO."""
    hostname: str | None = None
    """Node name from the kdump header's utsname (ELF dumps have none)."""
    machine: str | None = None
    """Machine (architecture) from the header."""
    dump_level: int | None = None
    """makedumpfile's dump level (-d), kdump format only."""
    build_id: str | None = None
    """Kernel build ID from VMCOREINFO."""
    crash_time: int | None = None
    """Unix time the dump was written (kdump header) or of the crash (VMCOREINFO CRASHTIME)."""
    nr_cpus: int | None = None
    """Number of CPUs in the kdump header, or PRSTATUS notes in an ELF dump."""
    compression: str | None = None
    """Compression of kdump pages: "zlib", "lzo", "snappy", "zstd" or None."""
    vmcoreinfo: dict[str, str] = field(default_factory=dict, repr=False)
    """Parsed VMCOREINFO, when the header carries it."""
    problems: tuple[str, ...] = ()
    """What looked wrong while reading the header (truncation, bad offsets)."""
    prstatus: tuple[PrStatus, ...] = ()
    """The CPUs' register notes (NT_PRSTATUS), in CPU order, when the dump carries them."""
    header_version: int | None = None
    """makedumpfile's kdump header version (kdump format only; 6 for makedumpfile 1.6-1.7)."""


def _int_or(text: str | None, default: int | None) -> int | None:
    """A decimal number from header text; ``default`` for anything else ("²".isdigit() is True)."""
    if text and text.isascii() and text.isdigit():
        return int(text)
    return default


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


KDUMP_PAGE_DESC_SIZE = 24  # struct page_desc: offset, size, flags, page_flags
MAX_BITMAP_BYTES = 1 << 28


def _kdump_data_end(f: io.BufferedReader, block_size: int, sub_hdr_size: int, bitmap_blocks: int) -> int | None:
    """Where a kdump file's page data ends, from its last page descriptor; None if unknown.

    Layout: header block, sub-header blocks, two bitmaps (``bitmap_blocks`` blocks in all; the
    second marks the pages dumped), then one descriptor per dumped page, then the data.
    """
    if sub_hdr_size < 0 or bitmap_blocks <= 0 or bitmap_blocks % 2:
        return None
    half = block_size * bitmap_blocks // 2
    if half > MAX_BITMAP_BYTES:
        return None
    f.seek(block_size * (1 + sub_hdr_size) + half)
    bitmap2 = f.read(half)
    if len(bitmap2) < half:
        return None
    dumped = int.from_bytes(bitmap2, "little").bit_count()
    if dumped == 0:
        return None
    table = block_size * (1 + sub_hdr_size + bitmap_blocks)
    last = table + (dumped - 1) * KDUMP_PAGE_DESC_SIZE
    f.seek(last)
    desc = f.read(KDUMP_PAGE_DESC_SIZE)
    if len(desc) < KDUMP_PAGE_DESC_SIZE:
        return last + KDUMP_PAGE_DESC_SIZE  # the descriptor table itself is cut
    offset, length = struct.unpack_from("<qI", desc)
    if offset <= 0 or length > (1 << 20):
        return None
    return offset + length


def kdump_page_extents(path: str | os.PathLike[str], pfns: Iterable[int]) -> dict[int, tuple[int, int]]:
    """Where each given page frame's data lies in a kdump-compressed file: {pfn: (offset,
    length)} for the pfns that were dumped (filtered-out ones are absent).

    makedumpfile writes pages in pfn order, one descriptor per dumped page (the second
    bitmap's set bits, in order): a page's descriptor index is the count of dumped pages
    below it. What a truncated file still holds follows from this.
    """
    wanted = sorted(set(pfns))
    out: dict[int, tuple[int, int]] = {}
    with open(path, "rb") as f:
        head = f.read(464)
        if len(head) < 464 or head[:8] != b"KDUMP   ":
            raise ValueError(f"{path}: not a kdump-compressed file")
        block_size, sub_hdr_size, bitmap_blocks = struct.unpack_from("<iii", head, 428)
        half = block_size * bitmap_blocks // 2
        f.seek(block_size * (1 + sub_hdr_size) + half)
        bitmap2 = int.from_bytes(f.read(half), "little")
        table = block_size * (1 + sub_hdr_size + bitmap_blocks)
        for pfn in wanted:
            if not bitmap2 >> pfn & 1:
                continue
            index = (bitmap2 & ((1 << pfn) - 1)).bit_count()
            f.seek(table + index * KDUMP_PAGE_DESC_SIZE)
            desc = f.read(KDUMP_PAGE_DESC_SIZE)
            if len(desc) == KDUMP_PAGE_DESC_SIZE:
                offset, length = struct.unpack_from("<qI", desc)
                out[pfn] = (offset, length)
    return out


def _kdump_header(f: io.BufferedReader, size: int) -> DumpHeader:
    head = f.read(464)
    problems: list[str] = []
    if len(head) < 464:
        return DumpHeader("kdump", size, problems=("kdump header is truncated",))
    (header_version,) = struct.unpack_from("<i", head, 8)
    if not 1 <= header_version <= 16:
        problems.append(f"kdump header version {header_version} is not one makedumpfile writes")
    uts = [_cstr(head[12 + 65 * i : 12 + 65 * (i + 1)]) for i in range(6)]
    (tv_sec,) = struct.unpack_from("<q", head, 408)
    status, block_size, sub_hdr_size, bitmap_blocks, max_mapnr = struct.unpack_from("<IiiII", head, 424)
    (nr_cpus,) = struct.unpack_from("<i", head, 460)
    compression = {1: "zlib", 2: "lzo", 4: "snappy", 8: "zstd"}.get(status & 0xF)
    dump_level = None
    vmcoreinfo: dict[str, str] = {}
    prstatus: tuple[PrStatus, ...] = ()
    machine = uts[4] or None
    if block_size <= 0 or block_size > (1 << 20):
        problems.append(f"kdump header has an impossible block size {block_size}")
    else:
        f.seek(block_size)
        sub = f.read(64)
        if len(sub) < 48:
            problems.append("kdump sub-header is truncated")
        else:
            (dump_level,) = struct.unpack_from("<i", sub, 8)
            off_vmci, size_vmci = struct.unpack_from("<qQ", sub, 32)
            if 0 < off_vmci < size and 0 < size_vmci < (1 << 20):
                f.seek(off_vmci)
                vmcoreinfo = parse_vmcoreinfo(f.read(size_vmci))
            elif size_vmci:
                problems.append("VMCOREINFO lies outside the file")
            # Header version 4+ (makedumpfile 1.3.x on) records the ELF notes too.
            if len(sub) >= 64 and header_version >= 4:
                off_note, size_note = struct.unpack_from("<qQ", sub, 48)
                if 0 < off_note < size and 0 < size_note <= MAX_NOTES_BYTES:
                    f.seek(off_note)
                    prstatus = _prstatus_notes(f.read(size_note), machine)
        expected_min = block_size * (2 + max(bitmap_blocks, 0))
        if size < expected_min:
            problems.append(
                f"file is {size} bytes, shorter than its own bitmaps ({expected_min} bytes): truncated"
            )
        else:
            end = _kdump_data_end(f, block_size, sub_hdr_size, bitmap_blocks)
            if end is not None and end > size:
                problems.append(
                    f"file is {size} bytes but its page data runs to {end}: truncated "
                    f"({100 * (end - size) // end}% missing)"
                )
    return DumpHeader(
        "kdump",
        size,
        release=vmcoreinfo.get("OSRELEASE") or uts[2] or None,
        hostname=uts[1] or None,
        machine=machine,
        dump_level=dump_level,
        build_id=(vmcoreinfo.get("BUILD-ID") or None),
        crash_time=_int_or(vmcoreinfo.get("CRASHTIME"), tv_sec),
        nr_cpus=nr_cpus if nr_cpus > 0 else None,
        compression=compression,
        vmcoreinfo=vmcoreinfo,
        problems=tuple(problems),
        prstatus=prstatus,
        header_version=header_version,
    )


def _elf_header(f: io.BufferedReader, size: int) -> DumpHeader:
    problems: list[str] = []
    vmcoreinfo: dict[str, str] = {}
    nr_prstatus = 0
    prstatus: list[PrStatus] = []
    ELFError, ELFFile = _elftools()
    try:
        elf = ELFFile(f)
        if elf.header.e_type != "ET_CORE":
            return DumpHeader("elf", size, problems=(f"ELF file of type {elf.header.e_type}, not a core dump",))
        machine = elf.header.e_machine
        if not isinstance(machine, str):  # pyelftools names the machines it knows, else the number
            machine = f"EM_{machine}"
        arch = {"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64"}.get(machine, machine)
        for segment in elf.iter_segments():
            if segment.header.p_type == "PT_NOTE":
                if not 0 <= segment.header.p_filesz <= MAX_NOTES_BYTES:
                    problems.append(f"note segment of impossible size {segment.header.p_filesz}")
                    continue
                f.seek(segment.header.p_offset)
                for name, ntype, desc in parse_elf_notes(f.read(segment.header.p_filesz)):
                    if name == "VMCOREINFO":
                        vmcoreinfo = parse_vmcoreinfo(desc)
                    elif ntype == NT_PRSTATUS and name == "CORE":
                        nr_prstatus += 1
                        pr = parse_prstatus(desc, len(prstatus), arch)
                        if pr is not None:
                            prstatus.append(pr)
            elif segment.header.p_type == "PT_LOAD":
                end = segment.header.p_offset + segment.header.p_filesz
                if end > size and not problems:
                    problems.append(f"file is {size} bytes but its segments reach {end}: truncated")
    except (ELFError, struct.error, ValueError, OSError) as e:
        return DumpHeader("elf", size, problems=(f"damaged ELF headers: {e}",))
    return DumpHeader(
        "elf",
        size,
        release=vmcoreinfo.get("OSRELEASE"),
        machine=arch,
        build_id=vmcoreinfo.get("BUILD-ID") or None,
        crash_time=_int_or(vmcoreinfo.get("CRASHTIME"), None),
        nr_cpus=nr_prstatus or None,
        vmcoreinfo=vmcoreinfo,
        problems=tuple(problems),
        prstatus=tuple(prstatus),
    )


def dump_format_of(head: bytes) -> str | None:
    """The dump format a file's first bytes announce ("kdump", "elf", "flattened",
    "diskdump"), or None."""
    for magic, kind in ((KDUMP_SIGNATURE, "kdump"), (ELF_MAGIC, "elf"), (FLATTENED_SIGNATURE, "flattened"),
                        (DISKDUMP_SIGNATURE, "diskdump")):
        if head.startswith(magic):
            return kind
    return None


def read_dump_header(path: str | os.PathLike[str]) -> DumpHeader:
    """Identify a dump file's format and read what its header says. Never raises on content.

    :raises OSError: if the file cannot be opened or read at all
    """
    size = os.stat(path).st_size
    with open(path, "rb") as f:
        kind = dump_format_of(f.read(16))
        f.seek(0)
        if kind == "kdump":
            return _kdump_header(f, size)
        if kind == "elf":
            return _elf_header(f, size)
    return DumpHeader(kind or "unknown", size)


def vmlinux_candidates(release: str | None, dirs: list[str] | tuple[str, ...],
                       dump_build_id: str | None) -> list[str]:
    """Existing files that may be the vmlinux of kernel ``release``, likeliest first: each of
    ``dirs`` (a file itself, or a root holding the distributions' debug paths) and ``/``
    (``usr/lib/debug/boot/vmlinux-REL``, ``boot/vmlinux-REL``, ``.build-id`` links…)."""
    roots = [*dirs, "/"]
    rel = release or ""
    out: list[str] = []
    for root in roots:
        r = Path(root)
        if r.is_file():
            out.append(str(r))
            continue
        names = [
            f"usr/lib/debug/boot/vmlinux-{rel}",
            f"usr/lib/debug/lib/modules/{rel}/vmlinux",
            f"boot/vmlinux-{rel}",
            f"lib/modules/{rel}/build/vmlinux",
            f"vmlinux-{rel}",
            "vmlinux",
        ]
        if dump_build_id:
            bid = f".build-id/{dump_build_id[:2]}/{dump_build_id[2:]}"
            names += [f"usr/lib/debug/{bid}.debug", f"{bid}.debug", f"{bid}"]
        out.extend(str(r / n) for n in names if release or not n.endswith("-"))
    return [p for p in dict.fromkeys(out) if os.path.isfile(p)]
