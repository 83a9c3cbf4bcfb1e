"""ELF and dump-header facts read without drgn: build IDs, module .modinfo, vmcore headers.

Used to find and check debug files, and to take a quick look at a dump before drgn opens it.
"""

from __future__ import annotations

import io
import lzma
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

__all__ = [
    "DumpHeader",
    "build_id",
    "modinfo",
    "open_elf_bytes",
    "read_dump_header",
    "parse_vmcoreinfo",
]

KDUMP_SIGNATURE = b"KDUMP   "
DISKDUMP_SIGNATURE = b"DISKDUMP"
FLATTENED_SIGNATURE = b"makedumpfile"
ELF_MAGIC = b"\x7fELF"


def open_elf_bytes(path: str | os.PathLike[str]) -> io.BytesIO | io.BufferedReader:
    """Open an ELF file for pyelftools, transparently decompressing ``.xz`` modules."""
    path = Path(path)
    if path.suffix == ".xz":
        return io.BytesIO(lzma.decompress(path.read_bytes()))
    return open(path, "rb")  # noqa: SIM115 - caller closes


def build_id(path: str | os.PathLike[str]) -> str | None:
    """The GNU build ID of an ELF file as lowercase hex, or None if it has none or is not ELF."""
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
        if sep and key:
            info[key.strip()] = value.strip()
    return info


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


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def _kdump_header(f: io.BufferedReader, size: int) -> DumpHeader:
    head = f.read(464)
    problems: list[str] = []
    if len(head) < 464:
        return DumpHeader("kdump", size, problems=("kdump header is truncated",))
    uts = [_cstr(head[12 + 65 * i : 12 + 65 * (i + 1)]) for i in range(6)]
    (tv_sec,) = struct.unpack_from("<q", head, 408)
    status, block_size, sub_hdr_size, bitmap_blocks, max_mapnr = struct.unpack_from("<IiiII", head, 424)
    (nr_cpus,) = struct.unpack_from("<i", head, 460)
    compression = {1: "zlib", 2: "lzo", 4: "snappy", 8: "zstd"}.get(status & 0xF)
    dump_level = None
    vmcoreinfo: dict[str, str] = {}
    if block_size <= 0 or block_size > (1 << 20):
        problems.append(f"kdump header has an impossible block size {block_size}")
    else:
        f.seek(block_size)
        sub = f.read(48)
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
        expected_min = block_size * (2 + max(bitmap_blocks, 0))
        if size < expected_min:
            problems.append(
                f"file is {size} bytes, shorter than its own bitmaps ({expected_min} bytes): truncated"
            )
    return DumpHeader(
        "kdump",
        size,
        release=vmcoreinfo.get("OSRELEASE") or uts[2] or None,
        hostname=uts[1] or None,
        machine=uts[4] or None,
        dump_level=dump_level,
        build_id=(vmcoreinfo.get("BUILD-ID") or None),
        crash_time=int(vmcoreinfo["CRASHTIME"]) if vmcoreinfo.get("CRASHTIME", "").isdigit() else tv_sec,
        nr_cpus=nr_cpus if nr_cpus > 0 else None,
        compression=compression,
        vmcoreinfo=vmcoreinfo,
        problems=tuple(problems),
    )


def _elf_header(f: io.BufferedReader, size: int) -> DumpHeader:
    problems: list[str] = []
    vmcoreinfo: dict[str, str] = {}
    nr_prstatus = 0
    try:
        elf = ELFFile(f)
        if elf.header.e_type != "ET_CORE":
            return DumpHeader("elf", size, problems=(f"ELF file of type {elf.header.e_type}, not a core dump",))
        machine = elf.header.e_machine
        for segment in elf.iter_segments():
            if segment.header.p_type == "PT_NOTE":
                for note in segment.iter_notes():
                    if note["n_name"] == "VMCOREINFO":
                        desc = note["n_desc"]
                        vmcoreinfo = parse_vmcoreinfo(desc if isinstance(desc, bytes | str) else b"")
                    elif note["n_type"] == "NT_PRSTATUS":
                        nr_prstatus += 1
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
        machine={"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64"}.get(machine, machine),
        build_id=vmcoreinfo.get("BUILD-ID") or None,
        crash_time=int(vmcoreinfo["CRASHTIME"]) if vmcoreinfo.get("CRASHTIME", "").isdigit() else None,
        nr_cpus=nr_prstatus or None,
        vmcoreinfo=vmcoreinfo,
        problems=tuple(problems),
    )


def read_dump_header(path: str | os.PathLike[str]) -> DumpHeader:
    """Identify a dump file's format and read what its header says. Never raises on content.

    :raises OSError: if the file cannot be opened or read at all
    """
    size = os.stat(path).st_size
    with open(path, "rb") as f:
        magic = f.read(16)
        f.seek(0)
        if magic.startswith(KDUMP_SIGNATURE):
            return _kdump_header(f, size)
        if magic.startswith(ELF_MAGIC):
            return _elf_header(f, size)
        if magic.startswith(FLATTENED_SIGNATURE):
            return DumpHeader("flattened", size)
        if magic.startswith(DISKDUMP_SIGNATURE):
            return DumpHeader("diskdump", size)
    return DumpHeader("unknown", size)
