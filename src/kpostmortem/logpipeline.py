"""The analysis of a text log: read it, build its report, add what debug info tells, decide.

Without debug info nothing here imports drgn (a log is judged in a fraction of a second). With a
vmlinux (given, or found by the log's release the way dumps find theirs) the call trace gets
file:line and inlined frames, and the faulting function is read from the binary to check the
log's "Code:" bytes against it.
"""

from __future__ import annotations

from collections.abc import Sequence

from kpostmortem.decode.disasm import decode_window
from kpostmortem.decode.oopscode import explain_code_bytes
from kpostmortem.inputs.elfinfo import vmlinux_candidates
from kpostmortem.inputs.log import LogSource, open_log
from kpostmortem.logreport import log_report
from kpostmortem.report import Frame, Report
from kpostmortem.verdict.engine import decide

__all__ = ["analyze_log", "analyze_log_source", "compare_code"]

# The Code: line holds 64 bytes, 42 before the trapping one; runtime patching (alternatives,
# static calls, jump labels, ftrace's nops) legitimately changes a few of them.
CODE_MATCH_FRACTION = 0.85


def analyze_log(
    path: str,
    vmlinux: str | None = None,
    debuginfo: Sequence[str] = (),
    command: Sequence[str] | None = None,
) -> Report:
    """Analyse a text log (console, journal, pstore, kdump's dmesg file): the same report
    contract as a dump's, with ``dump["source"] == "log"``. Raises KpmError subclasses for
    input that cannot be read and debug info that does not match the log's kernel."""
    return analyze_log_source(open_log(path), vmlinux, debuginfo, command)


def analyze_log_source(
    source: LogSource,
    vmlinux: str | None = None,
    debuginfo: Sequence[str] = (),
    command: Sequence[str] | None = None,
) -> Report:
    """The report of an opened text log (see analyze_log)."""
    report = log_report(source, command)
    release = report.dump.get("release")
    if vmlinux is None and not (release and vmlinux_candidates(release, list(debuginfo), None)):
        return report  # nothing to load: no drgn
    from kpostmortem.inputs.logdebug import open_log_debug_info

    modules = {f.module for f in report.frames if f.module}
    info = open_log_debug_info(release, vmlinux, debuginfo, modules)
    if info is None:
        return report
    report.frames = _symbolized(report.frames, info)
    _check_fault(report, info)
    report.debug_info = {
        "degraded": False, "vmlinux": info.vmlinux, "release": info.release,
        "modules": dict(sorted(info.modules.items())), "modules_missing": sorted(info.modules_missing),
        "searched": info.searched, "seconds": round(info.seconds, 3),
    }
    report.verdict = decide(report)
    return report


def _symbolized(frames: list[Frame], info) -> list[Frame]:
    """The frames with file:line and, before each, the functions inlined at its PC."""
    out: list[Frame] = []
    for frame in frames:
        address = info.address_of(frame.function, frame.offset, frame.module) if frame.function else None
        # A caller's PC is a return address: its call is the byte before it.
        locs = info.locations(address if frame.interrupted or address is None else address - 1) \
            if address is not None else []
        for name, source in locs[:-1]:
            out.append(Frame(index=len(out), function=name, source=source, module=frame.module,
                             inline=True, segment=frame.segment))
        frame.index = len(out)
        if locs:
            frame.source = locs[-1][1]
        out.append(frame)
    return out


def compare_code(logged: bytes, trap: int, binary: bytes, wildcard_zero: bool) -> tuple[int, int, bool]:
    """(bytes compared, bytes that differ, trapping byte's instruction start equal) of the log's
    "Code:" bytes against the binary's bytes at the same addresses. ``wildcard_zero``: a zero
    in the binary matches anything (a module file's relocations are not applied yet)."""
    n = min(len(logged), len(binary))
    differ = sum(1 for a, b in zip(logged[:n], binary[:n], strict=True)
                 if a != b and not (wildcard_zero and b == 0))
    same_trap = trap < n and (logged[trap] == binary[trap] or (wildcard_zero and binary[trap] == 0))
    return n, differ, same_trap


def _check_fault(report: Report, info) -> None:
    """The faulting function from the binary: its source line, the instruction window with
    lines, and the log's Code: bytes checked against it."""
    fault = report.fault
    frame = report.frames[next((i for i, f in enumerate(report.frames) if not f.inline), 0)] \
        if report.frames else None
    if not fault or frame is None or not frame.interrupted or frame.function is None:
        return
    address = info.address_of(frame.function, frame.offset, frame.module)
    if address is None:
        fault["problems"].append(f"{frame.function} is not in the debug info given: its code is not checked")
        return
    fault["source"] = frame.source
    code = fault.get("log_code") or {}
    logged = bytes.fromhex(code["bytes"]) if code.get("bytes") else None
    trap = code.get("trap_offset")
    where = "module file" if frame.module else "vmlinux"
    if logged is None or trap is None:
        # "Code: Unable to access opcode bytes": the binary has them.
        start = address - (frame.offset or 0)
        binary = info.read(start, (frame.offset or 0) + 32)
        if binary is None:
            fault["problems"].append("the faulting function's bytes are not in the binary's code sections")
            return
        redone = explain_code_bytes(
            binary, frame.offset or 0, function=frame.function, offset=frame.offset, size=frame.size,
            registers=report_registers(report), pc=fault.get("pc"), fault_address=fault.get("fault_address"),
            error_code=_error_code(report))
        fault.clear()
        fault.update(redone, source=frame.source, code_source=where)
        fault.pop("log_code", None)
        fault["problems"].append(f"the log has no Code: bytes; the instructions are the {where}'s")
        for insn in fault["instructions"]:
            locs = info.locations(start + _offset_of(insn["symbol"]))
            insn["source"] = locs[-1][1] if locs else None
        return
    start = address - trap
    binary = info.read(start, len(logged))
    if binary is None:
        fault["problems"].append("the faulting function's bytes are not in the binary's code sections")
        return
    fault["code_source"] = where
    if logged is not None and trap is not None:
        n, differ, same_trap = compare_code(logged, trap, binary, wildcard_zero=bool(frame.module))
        matches = same_trap and (n - differ) >= CODE_MATCH_FRACTION * n
        fault["code_check"] = {
            "compared": n, "differing": differ, "matches": matches,
            "text": (f"the log's Code: bytes match the {fault['code_source']} at {frame.function}+"
                     f"0x{frame.offset or 0:x} ({n - differ} of {n} bytes; runtime patching changes a few)"
                     if matches else
                     f"the log's Code: bytes differ from the {fault['code_source']} at {frame.function}+"
                     f"0x{frame.offset or 0:x} ({differ} of {n} bytes): the wrong vmlinux or module "
                     "file, or the kernel's text was corrupted in memory"),
        }
    insns, at = decode_window(binary, start, address, before=6, after=4)
    if at is not None and fault.get("instructions"):
        for mine, theirs in zip(fault["instructions"], _aligned(insns, at, fault), strict=False):
            if theirs is not None:
                locs = info.locations(theirs.address)
                mine["source"] = locs[-1][1] if locs else None


def _offset_of(symbol: str) -> int:
    """The offset of "func+0x1e" (negative for "func-0x8")."""
    sign = -1 if "-0x" in symbol else 1
    return sign * int(symbol.rsplit("0x", 1)[1], 16) if "0x" in symbol else 0


def report_registers(report: Report) -> dict[str, int]:
    """The register dump of the report's fault (lower-case names), as explain_code_bytes takes it."""
    return dict((report.fault or {}).get("registers") or {})


def _error_code(report: Report) -> int | None:
    return ((report.fault or {}).get("error_code") or {}).get("raw")


def _aligned(insns, at: int, fault: dict) -> list:
    """The binary's instructions in the order of the fault's window (both around the trap)."""
    trap = fault.get("trap_index")
    if trap is None:
        return []
    shift = at - trap
    return [insns[i + shift] if 0 <= i + shift < len(insns) else None for i in range(len(fault["instructions"]))]
