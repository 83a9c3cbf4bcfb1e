"""Sniff an input file (dump or text log) and read a kernel text log as people have it.

Console and netconsole captures, ``journalctl -k``, ``/var/log/kern.log``, kdump's own
``dmesg.<timestamp>`` / ``vmcore-dmesg.txt`` and pstore records (``dmesg-ramoops-N``,
``dmesg-efi-N``: parts in reverse order, each opened by an "Oops#1 Part1" header). Big files
are streamed: only the parser's state and the lines of its crash records are kept.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from kpostmortem.decode.oopslog import LogAnalysis, LogLine, parse_log, split_log_line
from kpostmortem.errors import DumpError
from kpostmortem.inputs.elfinfo import dump_format_of

__all__ = ["INPUT_KINDS", "LOG_KINDS", "LogSource", "open_log", "read_log", "sniff_input"]

INPUT_KINDS = ("elf", "kdump", "flattened", "diskdump", "text", "gzip-text", "pstore-dir", "empty", "binary")
"""What sniff_input can answer."""
LOG_KINDS = frozenset({"text", "gzip-text", "pstore-dir"})
"""The answers of sniff_input that open_log reads."""

SNIFF_BYTES = 64 * 1024
MAX_LINE = 64 * 1024
"""Longest line read at once; a longer run without a newline is cut into pieces."""
KEEP_LINES = 600
"""Lines kept per crash record for the report (a report is rarely longer than 200)."""
PSTORE_MAX = 64 * 1024 * 1024
"""pstore records are read whole to put their parts in order; they are kilobytes in practice."""

_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_SUFFIX = re.compile(r"\.gz$")
# kmsg_dump's header of each pstore part: "Oops#1 Part1", "Panic#2 Part3" (why, count, part).
_PSTORE_HEADER = re.compile(r"^(?P<why>[A-Z][a-z]+)#(?P<count>\d{1,9}) Part(?P<part>\d{1,9})\s*$")
_PSTORE_NAME = re.compile(r"^(?:dmesg|console)-[a-z]+-\d+(?:\.enc\.z)?$")
_TEXT_BYTES = bytes(range(0x20, 0x7F)) + b"\t\n\r\x1b"


def _looks_like_text(sample: bytes) -> bool:
    """Text as a serial console leaves it: printable ASCII or UTF-8, a little line noise allowed."""
    if not sample:
        return False
    if b"\x00" in sample[:4096] and sample.count(b"\x00") > len(sample) // 100:
        return False
    odd = len(sample.translate(None, _TEXT_BYTES))
    if odd * 20 <= len(sample):  # at most 5 % outside printable ASCII: UTF-8 text, line noise
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(sample) - 4:  # not just a character cut by the sample's end
            return False
    return True


def sniff_input(path: str) -> str:
    """What ``path`` is: a dump format ("elf", "kdump", "flattened", "diskdump"), a text log
    ("text", "gzip-text"), a pstore directory ("pstore-dir"), "empty" or "binary".

    :raises OSError: the file cannot be opened or read
    """
    if os.path.isdir(path):
        names = os.listdir(path)
        if any(_PSTORE_NAME.match(n) for n in names):
            return "pstore-dir"
        raise IsADirectoryError(21, "is a directory", path)
    with open(path, "rb") as f:
        sample = f.read(SNIFF_BYTES)
    if not sample:
        return "empty"
    kind = dump_format_of(sample)
    if kind is not None:
        return kind
    if sample.startswith(_GZIP_MAGIC):
        try:
            with gzip.open(path, "rb") as g:
                inner = g.read(SNIFF_BYTES)
        except (OSError, EOFError):
            return "binary"
        return "gzip-text" if _looks_like_text(inner) else "binary"
    return "text" if _looks_like_text(sample) else "binary"


@dataclass
class LogSource:
    """A text log opened for analysis: where it came from and its parsed crash records."""

    path: str
    kind: str
    """"console" (timestamps, maybe a capture kernel after it), "journal"/"syslog" (prefixed
    lines), "kmsg" (/dev/kmsg records), "pstore" (reassembled parts), "plain" (no timestamps)."""
    size: int
    """Bytes read (uncompressed)."""
    analysis: LogAnalysis
    tail: list[LogLine] = field(default_factory=list)
    """The last lines of the log."""
    problems: list[str] = field(default_factory=list)
    """What was odd about the input: pstore parts missing, lines cut…"""
    pstore_parts: int = 0
    """How many pstore parts were put together (0: not pstore)."""
    hostname: str | None = None
    """The host name of syslog/journal prefixes, when the log has them."""
    cmdline: str | None = None
    """The kernel command line the log printed at boot (the first boot's in the file)."""

    @property
    def no_report_hint(self) -> str:
        """Why a log may hold no crash report, in words to append to "no kernel crash report
        found": its size, and a reboot with no report before it."""
        a = self.analysis
        text = f" ({a.lines_total} lines read"
        if a.boots:
            text += (f"; a new kernel boots at line {a.boots[0] + 1} with no report before it: a crash "
                     "whose report never reached this log (a double fault, a hang) — kdump's dmesg file "
                     "or the vmcore may hold it")
        return text + ")"

    @property
    def describe(self) -> str:
        """One line: which input kind was taken, for the user."""
        what = {
            "pstore": f"pstore record ({self.pstore_parts} part{'s' if self.pstore_parts != 1 else ''})",
            "journal": "journal/syslog kernel lines",
            "syslog": "journal/syslog kernel lines",
            "kmsg": "/dev/kmsg records",
            "console": "kernel log text (console, dmesg)",
            "plain": "kernel log text without timestamps",
        }.get(self.kind, self.kind)
        return f"text log: {what}, {self.analysis.lines_total} lines, {len(self.analysis.records)} crash records"


class _Stats:
    """Counts taken while streaming, to name the log's kind afterwards."""

    def __init__(self) -> None:
        self.raw = self.syslog = self.kmsg = self.stamped = self.cut = 0
        self.size = 0
        self.hostname: str | None = None
        self.cmdline: str | None = None


_SYSLOG_HINT = re.compile(
    r"^(?:<\d{1,3}>\d? ?)?(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)?|"
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d\S*) (?P<host>\S+) kernel(?:\[\d+\])?:"
)
_CMDLINE = re.compile(r"^(?:Kernel )?[Cc]ommand line: (.*)$")
_KMSG_HINT = re.compile(r"^\d{1,4},\d+,\d+,")


def _raw_lines(f, stats: _Stats) -> Iterator[str]:
    """Decoded lines of a binary file object, each at most MAX_LINE bytes."""
    while True:
        chunk = f.readline(MAX_LINE)
        if not chunk:
            return
        stats.size += len(chunk)
        if not chunk.endswith(b"\n") and len(chunk) == MAX_LINE:
            stats.cut += 1
        yield chunk.rstrip(b"\n").decode("utf-8", errors="replace")


def _log_lines(raw: Iterator[str], stats: _Stats) -> Iterator[LogLine]:
    for text in raw:
        stats.raw += 1
        if stats.raw <= 2000:
            m = _SYSLOG_HINT.match(text)
            if m is not None:
                stats.syslog += 1
                stats.hostname = stats.hostname or m.group("host")
            elif _KMSG_HINT.match(text):
                stats.kmsg += 1
        for line in split_log_line(text):
            if line.timestamp is not None and stats.raw <= 2000:
                stats.stamped += 1
            if "ommand line: " in line.text:
                m = _CMDLINE.match(line.text)
                if m is not None and stats.cmdline is None:
                    stats.cmdline = m.group(1).strip()
            yield line


def _pstore_order(text_lines: list[str]) -> tuple[list[str], int, list[str]]:
    """Put pstore parts in log order: by record (Oops#N) ascending, then by part descending
    (Part1 is the end of the log). Returns (lines, parts, problems); parts = 0 when the text
    holds no part header."""
    parts: dict[tuple[int, int], list[str]] = {}
    key: tuple[int, int] | None = None
    before: list[str] = []
    for line in text_lines:
        m = _PSTORE_HEADER.match(line.strip())
        if m is not None:
            key = (int(m.group("count")), int(m.group("part")))
            parts.setdefault(key, [])
            continue
        (parts[key] if key is not None else before).append(line)
    if not parts:
        return text_lines, 0, []
    problems = []
    out = list(before)
    for count in sorted({c for c, _ in parts}):
        numbers = sorted((p for c, p in parts if c == count), reverse=True)
        missing = sorted(set(range(1, numbers[0] + 1)) - set(numbers))
        if missing:
            problems.append(f"pstore record #{count}: part(s) {', '.join(map(str, missing))} missing; "
                            "the text between the parts present is lost")
        for p in numbers:
            out.extend(parts[(count, p)])
    return out, len(parts), problems


def _read_text(path: str, limit: int) -> str:
    with open(path, "rb") as f:
        data = f.read(limit)
    return data.decode("utf-8", errors="replace")


def _pstore_files(path: str) -> list[str]:
    """The pstore part files of a directory (dmesg-* first; console-* when there is no dmesg)."""
    names = sorted(n for n in os.listdir(path) if _PSTORE_NAME.match(n) and not n.endswith(".enc.z"))
    dmesg = [n for n in names if n.startswith("dmesg-")]
    return [os.path.join(path, n) for n in (dmesg or names)]


def open_log(path: str, kind: str | None = None, keep_lines: int = KEEP_LINES) -> LogSource:
    """Read and parse a text log (``kind`` as sniff_input answered, sniffed when None).

    :raises DumpError: the file cannot be read, or it is empty, binary, or text that is not a
        kernel log (no kernel timestamps, no "kernel:" lines and no crash report)
    """
    try:
        kind = kind or sniff_input(path)
    except FileNotFoundError:
        raise DumpError(f"{path}: no such file") from None
    except PermissionError:
        raise DumpError(f"{path}: permission denied", hint="run as a user who can read it, often root") from None
    except IsADirectoryError:
        raise DumpError(f"{path}: is a directory, not a dump or log file",
                        hint="give the vmcore, the dmesg file or a pstore directory") from None
    except OSError as e:
        raise DumpError(f"{path}: cannot read: {e.strerror or e}") from None
    if kind == "empty":
        raise DumpError(f"{path}: empty file, neither a dump nor a log",
                        hint="the capture or the copy did not finish")
    if kind not in ("text", "gzip-text", "pstore-dir"):
        raise DumpError(f"{path}: neither a kernel crash dump nor a text log",
                        hint="give a vmcore (ELF or kdump-compressed) or the kernel's log text")
    stats = _Stats()
    try:
        return _read(path, kind, keep_lines, stats)
    except OSError as e:
        raise DumpError(f"{path}: cannot read: {e.strerror or e}") from None


def _read(path: str, kind: str, keep_lines: int, stats: _Stats) -> LogSource:
    from collections import deque

    tail: deque[LogLine] = deque(maxlen=40)

    def tee(lines: Iterator[LogLine]) -> Iterator[LogLine]:
        for line in lines:
            tail.append(line)
            yield line

    problems: list[str] = []
    parts = 0
    if kind == "pstore-dir":
        text_lines: list[str] = []
        for name in _pstore_files(path):
            text_lines.extend(_read_text(name, PSTORE_MAX).split("\n"))
        ordered, parts, problems = _pstore_order(text_lines)
        stats.size = sum(len(t) + 1 for t in ordered)
        analysis = parse_log(tee(_log_lines(iter(ordered), stats)), keep_lines=keep_lines)
    else:
        opener = gzip.open if kind == "gzip-text" else open
        with opener(path, "rb") as f:
            head = f.read(256)
            f.seek(0)
            first = head.decode("utf-8", errors="replace").lstrip("\ufeff").split("\n", 1)[0].strip()
            if _PSTORE_HEADER.match(first) and os.path.getsize(path) <= PSTORE_MAX:
                text_lines = f.read(PSTORE_MAX).decode("utf-8", errors="replace").split("\n")
                ordered, parts, problems = _pstore_order(text_lines)
                stats.size = sum(len(t) + 1 for t in ordered)
                analysis = parse_log(tee(_log_lines(iter(ordered), stats)), keep_lines=keep_lines)
            else:
                analysis = parse_log(tee(_log_lines(_raw_lines(f, stats), stats)), keep_lines=keep_lines)
    if not analysis.records and not (parts or stats.kmsg or stats.syslog or stats.stamped):
        # Text, but nothing in it says kernel: no timestamps, no "kernel:" lines, no report.
        raise DumpError(f"{path}: not a kernel crash dump, nor a kernel log (text without kernel "
                        "timestamps, \"kernel:\" lines or a crash report)",
                        hint="give a vmcore, or the kernel's log text (dmesg, console, journal)")
    if stats.cut:
        problems.append(f"{stats.cut} line(s) longer than {MAX_LINE} bytes were cut")
    sampled = min(stats.raw, 2000) or 1
    if parts:
        name = "pstore"
    elif stats.kmsg * 2 > sampled:
        name = "kmsg"
    elif stats.syslog * 2 > sampled:
        name = "journal"
    elif stats.stamped:
        name = "console"
    else:
        name = "plain"
    return LogSource(path, name, stats.size, analysis, list(tail), problems, parts, stats.hostname, stats.cmdline)


def read_log(path: str) -> LogSource:
    """open_log with the kind sniffed: the one-call form for scripts."""
    return open_log(path)
