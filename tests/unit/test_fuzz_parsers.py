"""Hypothesis fuzzing of the pure parsers that read hostile input: kernel log text, instruction
bytes, dump headers, ELF notes and VMCOREINFO.

Each target is a ``check_*`` function that runs one parser on one input and asserts the
parser's contract (never raises on content, results stay in range). The ``@given`` tests run
them on generated inputs for a few seconds in the normal suite; ``scripts/fuzz-parsers`` runs
the same targets for minutes. Inputs that ever broke a parser are kept as JSON files in
tests/unit/data/fuzz-regressions/ and replayed by ``test_regression``.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpostmortem.decode import disasm, oopslog
from kpostmortem.inputs import elfinfo

DATA = Path(__file__).parent / "data"
REGRESSIONS = DATA / "fuzz-regressions"
U64 = (1 << 64) - 1

# --------------------------------------------------------------------------------- corpus

def _sample_lines() -> list[str]:
    """Real kernel log lines (console logs of the corpus and hand-written crash logs)."""
    lines: list[str] = []
    for path in sorted(DATA.glob("*.log")) + sorted((DATA / "real").glob("*.log")):
        lines.extend(path.read_text(errors="replace").splitlines())
    return lines or ["[    1.000000] BUG: kernel NULL pointer dereference, address: 0000000000000018"]


SAMPLE_LINES = _sample_lines()

# ----------------------------------------------------------------------------- strategies

_line = st.sampled_from(SAMPLE_LINES)


@st.composite
def mutated_line(draw) -> str:
    """A real log line, cut, spliced with noise, or with digits and hex changed."""
    line = draw(_line)
    how = draw(st.integers(0, 6))
    if how == 0:
        return line
    if how == 1:
        return line[: draw(st.integers(0, len(line)))]
    if how == 2:
        at = draw(st.integers(0, len(line)))
        return line[:at] + draw(st.text(max_size=20)) + line[at:]
    if how == 3:
        return "".join(
            draw(st.sampled_from("0123456789abcdefxX-+:[]<>/ ")) if ch.isalnum() and draw(st.booleans()) else ch
            for ch in line[:200]
        )
    if how == 4:
        return line + draw(_line)
    if how == 5:
        return draw(st.sampled_from(["", " ", "\r", "\x1b[0m", "<4>", "6,123,456789,-;", "\x00"])) + line
    return draw(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))


log_text = st.one_of(
    st.lists(mutated_line(), max_size=60).map("\n".join),
    st.text(max_size=400),
    st.binary(max_size=400).map(lambda b: b.decode("latin-1")),
)

_float = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1e6))
log_lines = st.lists(
    st.one_of(
        mutated_line().map(lambda t: oopslog.LogLine(t, 1.0)),
        st.builds(
            oopslog.LogLine,
            mutated_line(),
            _float,
            st.one_of(st.none(), st.sampled_from(["T1", "C0", "T99", "C1", "", "Tx"])),
            st.one_of(st.none(), st.integers(-10, 20)),
        ),
    ),
    max_size=80,
)

_u64 = st.integers(0, U64)
# Real x86-64 instruction bytes (push rbp; mov rbp,rsp; movl [rbx+0x18],0x2a; ud2; call; ret …)
_code_pieces = st.sampled_from([
    b"\x55", b"\x48\x89\xe5", b"\xc7\x43\x18\x2a\x00\x00\x00", b"\x0f\x0b", b"\xe8\x42\x0c\x45\xc1",
    b"\xc3", b"\xcc", b"\x90", b"\x66\x90", b"\xf3\x0f\x1e\xfa", b"\x0f\x1f\x44\x00\x00",
    b"\x65\x48\x8b\x04\x25\x28\x00\x00\x00", b"\x48\x8b\x47\x08", b"\xf3\xa4", b"\xff\xd0",
])
code_bytes = st.one_of(st.binary(max_size=64), st.lists(_code_pieces, max_size=24).map(b"".join))


@st.composite
def window_args(draw) -> tuple[bytes, int, int, int, int]:
    code = draw(st.one_of(st.binary(max_size=96), st.lists(_code_pieces, max_size=30).map(b"".join)))
    start = draw(_u64)
    pc = (start + draw(st.integers(-8, len(code) + 8))) & U64
    return code, start, pc, draw(st.integers(0, 8)), draw(st.integers(0, 6))


# ---- dump headers: random bytes, and kdump / ELF headers built field by field then damaged


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    name0 = name + b"\0"
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(name0), len(desc), ntype) + pad(name0) + pad(desc)


_vmcoreinfo_text = st.one_of(
    st.just(b"OSRELEASE=6.1.0-56-cloud-amd64\nBUILD-ID=3b43fad5034874490492495d552c0af6a5fab235\n"
            b"PAGESIZE=4096\nCRASHTIME=1795629941\nSYMBOL(_stext)=ffffffffb3800000\n"),
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


@st.composite
def notes_blob(draw) -> bytes:
    notes = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 2))
        if kind == 0:
            desc = draw(st.one_of(st.binary(min_size=336, max_size=336), st.binary(max_size=400)))
            notes.append(_note(b"CORE", 1, desc))
        elif kind == 1:
            notes.append(_note(b"VMCOREINFO", 0, draw(_vmcoreinfo_text)))
        else:
            notes.append(_note(draw(st.binary(max_size=12)), draw(st.integers(0, 2**32 - 1)),
                               draw(st.binary(max_size=40))))
    blob = b"".join(notes)
    return _damage(draw, blob)


def _damage(draw, blob: bytes) -> bytes:
    """Flip some bytes, cut the end, or overwrite 4-byte fields with extreme values."""
    data = bytearray(blob)
    for _ in range(draw(st.integers(0, 3))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        how = draw(st.integers(0, 2))
        if how == 0:
            data[at] = draw(st.integers(0, 255))
        elif how == 1:
            data[at : at + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x80", b"\0\0\0\0"]))
        else:
            del data[at:]
    return bytes(data)


@st.composite
def kdump_file(draw) -> bytes:
    """makedumpfile's kdump-compressed header + sub-header + VMCOREINFO + notes, then damaged."""
    block = draw(st.sampled_from([4096, 4096, 512, 0, -1, 1 << 21]))
    uts = b"".join(draw(st.binary(max_size=64)).ljust(65, b"\0") for _ in range(6))
    head = bytearray(b"KDUMP   " + struct.pack("<i", draw(st.integers(-1, 8))) + uts)
    head += b"\0" * (408 - len(head))
    head += struct.pack("<qq", draw(st.integers(-(2**63), 2**63 - 1)), 0)
    head += struct.pack("<IiiIIIIIii", draw(st.integers(0, 2**32 - 1)), block, 1,
                        draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1)), 0, 0, 0, 0,
                        draw(st.integers(-(2**31), 2**31 - 1)))
    info = draw(_vmcoreinfo_text)
    notes = draw(notes_blob())
    bs = block if 0 < block <= 8192 else 4096
    body_at = bs + 96
    sub = struct.pack("<Qii QQ qQ qQ", 0, draw(st.integers(-1, 31)), 0, 0, 0,
                      draw(st.sampled_from([body_at, 0, -5, 2**62])), len(info),
                      draw(st.sampled_from([body_at + len(info), 0, 2**40])),
                      draw(st.sampled_from([len(notes), 0, 2**63])))
    data = bytes(head).ljust(bs, b"\0") + sub.ljust(96, b"\0") + info + notes
    return _damage(draw, data)


@st.composite
def elf_core_file(draw) -> bytes:
    """A 64-bit little-endian ELF core with a PT_NOTE and PT_LOADs, then damaged."""
    notes = draw(notes_blob())
    nload = draw(st.integers(0, 3))
    phnum = 1 + nload
    data_off = 64 + 56 * phnum
    e_type = draw(st.sampled_from([4, 4, 4, 2, 3, 0, 0xFFFF]))
    e_machine = draw(st.sampled_from([62, 62, 183, 3, 0]))
    ehdr = (b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
            + struct.pack("<HHIQQQIHHHHHH", e_type, e_machine, 1, 0, 64, 0, 0, 64, 56,
                          draw(st.sampled_from([phnum, phnum, 0, 0xFFFF])), 64, 0, 0))
    phdrs = struct.pack("<IIQQQQQQ", 4, 0, data_off, 0, 0, len(notes), 0, 4)
    for _ in range(nload):
        phdrs += struct.pack("<IIQQQQQQ", 1, 7, draw(st.integers(0, 2**63)), draw(_u64), 0,
                             draw(st.integers(0, 2**40)), draw(st.integers(0, 2**40)), 4096)
    return _damage(draw, ehdr + phdrs + notes)


dump_file_bytes = st.one_of(
    st.binary(max_size=2048),
    st.binary(max_size=600).map(lambda b: b"KDUMP   " + b),
    st.binary(max_size=600).map(lambda b: b"\x7fELF" + b),
    st.binary(max_size=64).map(lambda b: b"makedumpfile" + b),
    kdump_file(),
    elf_core_file(),
)

# ---- the printk ring buffer as degraded mode reads it: VMCOREINFO layout + dump memory

RING_BASE = 0xFFFF_8880_0000_0000
# Linux 6.1's layout, as its VMCOREINFO gives it.
RING_LAYOUT = {
    "SIZE(printk_ringbuffer)": 88, "OFFSET(printk_ringbuffer.desc_ring)": 0,
    "OFFSET(printk_ringbuffer.text_data_ring)": 48, "SIZE(prb_desc_ring)": 48,
    "OFFSET(prb_desc_ring.count_bits)": 0, "OFFSET(prb_desc_ring.descs)": 8, "OFFSET(prb_desc_ring.infos)": 16,
    "OFFSET(prb_desc_ring.head_id)": 24, "OFFSET(prb_desc_ring.tail_id)": 32, "SIZE(prb_desc)": 24,
    "OFFSET(prb_desc.state_var)": 0, "OFFSET(prb_desc.text_blk_lpos)": 8, "OFFSET(prb_data_blk_lpos.begin)": 0,
    "OFFSET(prb_data_blk_lpos.next)": 8, "SIZE(printk_info)": 88, "OFFSET(printk_info.seq)": 0,
    "OFFSET(printk_info.ts_nsec)": 8, "OFFSET(printk_info.text_len)": 16, "OFFSET(printk_info.caller_id)": 20,
    "OFFSET(prb_data_ring.size_bits)": 0, "OFFSET(prb_data_ring.data)": 8,
}


def build_ring(texts: list[bytes], states: list[int], count_bits: int, size_bits: int, first: int,
               lpos: int, stamps: list[int] | None = None) -> bytes:
    """Memory holding a printk ring buffer (its prb pointer at RING_BASE), written record by
    record as the kernel does: an id-prefixed data block per record, wrapping to the ring's start."""
    n, dsize = 1 << count_bits, 1 << size_bits
    prb, descs, infos, data = 0x100, 0x200, 0x800, 0x1000
    mem = bytearray(data + dsize)
    put = lambda off, fmt, *v: struct.pack_into(fmt, mem, off, *v)  # noqa: E731
    put(0, "<Q", RING_BASE + prb)
    put(prb + 0, "<I", count_bits)
    put(prb + 8, "<QQ", RING_BASE + descs, RING_BASE + infos)
    put(prb + 48, "<I", size_bits)
    put(prb + 56, "<Q", RING_BASE + data)
    for i, (text, state) in enumerate(zip(texts, states, strict=True)):
        rid = first + i
        idx = rid & (n - 1)
        size = 8 + ((len(text) + 7) & ~7)
        begin = lpos
        if (begin & (dsize - 1)) + size > dsize:
            begin = (begin | (dsize - 1)) + 1
        nxt = begin + size
        off = begin & (dsize - 1)
        put(data + off, "<Q", rid)
        mem[data + off + 8 : data + off + 8 + len(text)] = text
        put(descs + 24 * idx, "<QQQ", (state << 62) | rid, begin, nxt)
        put(infos + 88 * idx, "<QQHxxI", i, (stamps or [0] * len(texts))[i], len(text), i + 1)
        lpos = nxt
    put(prb + 24, "<QQ", first + max(len(texts) - 1, 0), first)  # head_id, tail_id
    return bytes(mem)


def ring_vmcoreinfo() -> dict[str, str]:
    return {**{k: str(v) for k, v in RING_LAYOUT.items()}, "SYMBOL(prb)": f"{RING_BASE:x}"}


@st.composite
def printk_ring(draw) -> tuple[bytes, dict[str, str]]:
    """A ring buffer from build_ring, then damaged; its VMCOREINFO, sometimes wrong."""
    count_bits, size_bits = draw(st.integers(1, 4)), draw(st.integers(6, 10))
    nrec = draw(st.integers(0, 1 << count_bits))
    texts = [draw(st.one_of(_line.map(lambda t: t.encode()), st.binary(max_size=40)))[: (1 << size_bits) // 4]
             for _ in range(nrec)]
    states = [draw(st.sampled_from([1, 2, 2, 3, 0])) for _ in range(nrec)]
    mem = build_ring(texts, states, count_bits, size_bits, draw(st.integers(0, 2**62 - 1 - 64)),
                     draw(st.integers(0, 2**40)) & ~7, [draw(st.integers(0, 2**40)) for _ in range(nrec)])
    info = ring_vmcoreinfo()
    for key in draw(st.lists(st.sampled_from(sorted(info)), max_size=2)):
        info[key] = draw(st.sampled_from(["", "-1", "99999999", "0x10", "zz", str(draw(st.integers(0, 200)))]))
    return _damage(draw, mem), info


def _ring_program(mem: bytes):
    import drgn

    prog = drgn.Program(drgn.Platform(drgn.Architecture.X86_64,
                                      drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN))
    prog.add_memory_segment(RING_BASE, len(mem), lambda addr, count, offset, physical: mem[offset:offset + count])
    return prog


# -------------------------------------------------------------------------------- targets


def check_parse_dmesg_text(text: str) -> None:
    lines = oopslog.parse_dmesg_text(text)
    assert isinstance(lines, list)
    for ln in lines:
        assert isinstance(ln, oopslog.LogLine)
        assert "\n" not in ln.text and "\r" not in ln.text
        assert ln.timestamp is None or (math.isfinite(ln.timestamp) and ln.timestamp >= 0)
        assert ln.level is None or 0 <= ln.level <= 7


def check_parse_log(lines: list[oopslog.LogLine]) -> None:
    result = oopslog.parse_log(lines)
    assert isinstance(result, oopslog.LogAnalysis)
    for i, rec in enumerate(result.records):
        assert rec.kind in oopslog.KINDS, rec.kind
        assert 0 <= rec.first_line_index <= rec.last_line_index < len(lines), (i, rec)
        assert rec.escalates is None or 0 <= rec.escalates < len(result.records)
    # The accessors must hold on whatever was found.
    result.first_oops()
    result.panic()
    result.cause()


def check_decode(code: bytes, address: int) -> None:
    insns = disasm.decode(code, address)
    assert sum(i.size for i in insns) == len(code)
    at = address
    for insn in insns:
        assert insn.address == at & U64
        assert insn.size >= 1
        at += insn.size
    assert b"".join(i.bytes for i in insns) == code


def check_decode_window(code: bytes, start: int, pc: int, before: int, after: int) -> None:
    insns, trap = disasm.decode_window(code, start, pc, before=before, after=after)
    if trap is not None:
        assert insns[trap].address == pc
        assert trap <= before
        assert len(insns) - trap - 1 <= after
    if (pc - start) & U64 >= len(code):
        assert insns == [] and trap is None


def check_read_dump_header(data: bytes) -> None:
    fd, path = tempfile.mkstemp(prefix="kpm-fuzz-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        h = elfinfo.read_dump_header(path)
    finally:
        os.unlink(path)
    assert h.format in ("kdump", "elf", "flattened", "diskdump", "unknown")
    assert h.size == len(data)
    assert all(isinstance(p, str) for p in h.problems)
    for pr in h.prstatus:
        assert set(pr.registers) == set(elfinfo.X86_64_PRSTATUS_REGS)


def check_parse_vmcoreinfo(data: bytes) -> None:
    for arg in (data, data.decode("utf-8", errors="replace")):
        info = elfinfo.parse_vmcoreinfo(arg)
        assert all(isinstance(k, str) and isinstance(v, str) and k for k, v in info.items())


def check_parse_elf_notes(data: bytes) -> None:
    notes = elfinfo.parse_elf_notes(data)
    assert sum(len(d) for _n, _t, d in notes) <= len(data)
    for name, ntype, desc in notes:
        assert isinstance(name, str) and 0 <= ntype < 2**32
        pr = elfinfo.parse_prstatus(desc)
        assert pr is None or len(pr.registers) == len(elfinfo.X86_64_PRSTATUS_REGS)


def check_printk_ring(mem: bytes, info: dict[str, str]) -> None:
    import drgn

    from kpostmortem.inputs.nodwarf import printk_lines_from_vmcoreinfo

    try:
        lines = printk_lines_from_vmcoreinfo(_ring_program(mem), info)
    except (LookupError, ValueError, drgn.FaultError):
        return  # said why: the layout is incomplete, the header damaged, the memory missing
    assert isinstance(lines, list)
    for ln in lines:
        assert isinstance(ln, oopslog.LogLine) and "\n" not in ln.text


# --------------------------------------------------------------------- target registry

# name → (check function, strategy of its argument tuple, input → JSON, JSON → input)
def _hex(b: bytes) -> str:
    return b.hex()


def _lines_to_json(lines: list[oopslog.LogLine]) -> list:
    return [[ln.text, ln.timestamp if ln.timestamp is None or math.isfinite(ln.timestamp) else str(ln.timestamp),
             ln.caller, ln.level] for ln in lines]


def _lines_from_json(rows: list) -> list[oopslog.LogLine]:
    return [oopslog.LogLine(t, float(ts) if isinstance(ts, str) else ts, c, lv) for t, ts, c, lv in rows]


TARGETS: dict[str, tuple[Callable[..., None], Any, Callable[..., Any], Callable[[Any], tuple]]] = {
    "oopslog.parse_dmesg_text": (check_parse_dmesg_text, st.tuples(log_text),
                                 lambda t: t, lambda j: (j,)),
    "oopslog.parse_log": (check_parse_log, st.tuples(log_lines), _lines_to_json, lambda j: (_lines_from_json(j),)),
    "disasm.decode": (check_decode, st.tuples(code_bytes, _u64),
                      lambda c, a: {"code": _hex(c), "address": a},
                      lambda j: (bytes.fromhex(j["code"]), j["address"])),
    "disasm.decode_window": (check_decode_window, window_args(),
                             lambda c, s, p, b, a: {"code": _hex(c), "start": s, "pc": p, "before": b, "after": a},
                             lambda j: (bytes.fromhex(j["code"]), j["start"], j["pc"], j["before"], j["after"])),
    "elfinfo.read_dump_header": (check_read_dump_header, st.tuples(dump_file_bytes),
                                 lambda d: _hex(d), lambda j: (bytes.fromhex(j),)),
    "elfinfo.parse_vmcoreinfo": (check_parse_vmcoreinfo, st.tuples(_vmcoreinfo_text),
                                 lambda d: _hex(d), lambda j: (bytes.fromhex(j),)),
    "degraded.printk_lines_from_vmcoreinfo": (check_printk_ring, printk_ring(),
                                              lambda m, i: {"memory": _hex(m), "vmcoreinfo": i},
                                              lambda j: (bytes.fromhex(j["memory"]), j["vmcoreinfo"])),
    "elfinfo.parse_elf_notes": (check_parse_elf_notes, st.tuples(st.one_of(notes_blob(), st.binary(max_size=600))),
                                lambda d: _hex(d), lambda j: (bytes.fromhex(j),)),
}


def save_regression(target: str, args: tuple, error: BaseException, how: str) -> Path:
    """Keep an input that broke a parser, as tests/unit/data/fuzz-regressions/<target>-<hash>.json."""
    import hashlib

    _check, _strategy, to_json, _from_json = TARGETS[target]
    payload = to_json(*args)
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
    REGRESSIONS.mkdir(parents=True, exist_ok=True)
    path = REGRESSIONS / f"{target}-{digest}.json"
    path.write_text(json.dumps({
        "target": target,
        "input": payload,
        "error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300],
        "found_by": how,
    }, indent=1) + "\n")
    return path


# ---------------------------------------------------------------------------- the tests

FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@FAST
@given(log_text)
def test_fuzz_parse_dmesg_text(text):
    check_parse_dmesg_text(text)


@FAST
@given(log_lines)
def test_fuzz_parse_log(lines):
    check_parse_log(lines)


@FAST
@given(code_bytes, _u64)
def test_fuzz_decode(code, address):
    check_decode(code, address)


@settings(FAST, max_examples=60)
@given(window_args())
def test_fuzz_decode_window(args):
    check_decode_window(*args)


@FAST
@given(dump_file_bytes)
def test_fuzz_read_dump_header(data):
    check_read_dump_header(data)


def test_elf_core_of_a_machine_pyelftools_does_not_name():
    """Found by the fuzzer: e_machine 256 comes back from pyelftools as a number, not "EM_…"."""
    data = bytes.fromhex(
        "7f454c4602010000000000000000000004000001000000000000000000000000400000000000000000000000"
        "0000000000000000000000010001000000000000040000000000000078000000000000000000000000000000"
        "0000000000000000000000010000000000000000000000000000000000000000040000000000000001000000"
        "434f5245"
    )
    check_read_dump_header(data)


@FAST
@given(_vmcoreinfo_text)
def test_fuzz_parse_vmcoreinfo(data):
    check_parse_vmcoreinfo(data)


@FAST
@given(st.one_of(notes_blob(), st.binary(max_size=600)))
def test_fuzz_parse_elf_notes(data):
    check_parse_elf_notes(data)


@settings(FAST, max_examples=80)
@given(printk_ring())
def test_fuzz_printk_ring(args):
    check_printk_ring(*args)


def test_printk_ring_reader_reads_back_what_the_kernel_wrote():
    """The ring buffer reader on a ring written as the kernel writes it, wrapped around."""
    from kpostmortem.inputs.nodwarf import printk_lines_from_vmcoreinfo

    texts = [f"message {i}: {'x' * (i % 7)}".encode() for i in range(12)]
    states = [2] * 11 + [1]
    # A 512-byte data ring, written from 40 bytes before its end: the second block wraps.
    mem = build_ring(texts, states, count_bits=4, size_bits=9, first=1000, lpos=(1 << 9) * 3 - 40,
                     stamps=[i * 1_000_000 for i in range(12)])
    lines = printk_lines_from_vmcoreinfo(_ring_program(mem), ring_vmcoreinfo())
    assert [ln.text for ln in lines] == [t.decode() for t in texts]
    assert lines[-1].timestamp == 0.011 and lines[-1].caller == "T12"


def _regression_files() -> list[Path]:
    return sorted(REGRESSIONS.glob("*.json")) if REGRESSIONS.is_dir() else []


@pytest.mark.parametrize("path", _regression_files(), ids=lambda p: p.stem)
def test_regression(path):
    """Every input that once broke a parser is parsed cleanly now."""
    case = json.loads(path.read_text())
    check, _strategy, _to_json, from_json = TARGETS[case["target"]]
    check(*from_json(case["input"]))


def test_regression_files_name_known_targets():
    for path in _regression_files():
        case = json.loads(path.read_text())
        assert case["target"] in TARGETS, path.name
        assert path.name.startswith(case["target"] + "-"), path.name
