"""The report: plain data that every front end and renderer works from.

Analyzers fill its sections, the verdict engine reads them, renderers read ``to_dict()``.
No drgn objects live here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1


@dataclass
class Frame:
    """One frame of a stack trace, as data."""

    index: int
    """Position in the trace, 0 = innermost."""
    function: str | None
    """Function name (inline frames name the inlined function), None if unknown."""
    offset: int | None = None
    """PC offset from the function's symbol start."""
    size: int | None = None
    """Size of the function's symbol."""
    pc: int | None = None
    """Program counter (not stable across boots: KASLR)."""
    sp: int | None = None
    """Stack pointer of the frame."""
    source: str | None = None
    """``file:line`` where debug info has it."""
    module: str | None = None
    """Loadable module owning the PC, None for core kernel."""
    inline: bool = False
    """True for an inlined call (shares the PC of the frame after it)."""
    interrupted: bool = False
    """True when this frame's registers come from an exception or interrupt (pt_regs)."""
    segment: str | None = None
    """Stack kind the frame runs on: TASK, IRQ, SOFTIRQ, NMI, EXCEPTION, UNKNOWN."""
    event: dict[str, Any] | None = None
    """For a pt_regs frame: what happened to the CPU there (decode/cpuevent.CpuEvent.to_dict():
    kind "exception"/"interrupt"/"nmi", vector, name, source, instruction_words, frame_words)."""

    @property
    def symbol(self) -> str:
        if self.function is None:
            return f"0x{self.pc:x}" if self.pc is not None else "??"
        return self.function + (f"+0x{self.offset:x}" if self.offset is not None else "")


@dataclass
class Evidence:
    """One fact supporting the verdict, tied to where it was read."""

    kind: str
    """"log", "register", "instruction", "memory", "stack", "module", "state", "debuginfo"."""
    text: str
    """The fact, in one line."""
    source: str | None = None
    """Where it was read (log line, pt_regs, DWARF…)."""
    agrees: bool = True
    """False for a fact that weakens or contradicts the verdict."""
    facts: list[dict[str, Any]] = field(default_factory=list)
    """What the sentence rests on, in machine form, each re-checkable against the dump (see
    docs/verdicts.md "Evidence facts"): {"type": "register", "frame", "register", "value"},
    {"type": "memory", "address", "size", "value"}, {"type": "instruction", "address", "bytes",
    "text"}, {"type": "log", "line", "text"}, {"type": "variable", "frame", "name", "value"},
    {"type": "frame", "index", "function"}, {"type": "module", "name", "taints"}…"""


@dataclass
class Verdict:
    """The root-cause verdict (see VERDICTS.md)."""

    category: str = "unknown"
    title: str = "unknown crash"
    function: str | None = None
    module: str | None = None
    source: str | None = None
    confidence: float = 0.0
    signature: str = ""
    evidence: list[Evidence] = field(default_factory=list)
    explanation: str | None = None
    """One or two sentences saying what happened, in words."""
    culprit: dict[str, Any] | None = None
    """Culprit module details (taints, out-of-tree…), when the guilty code is in a module."""
    guilty_frame: int | None = None
    """Index of the guilty frame in the crashed task's trace."""
    degraded: bool = False
    """True when made without the kernel's DWARF."""
    missing: list[str] = field(default_factory=list)
    """What the verdict could not see (failed analyzers, unread memory)."""

    def __str__(self) -> str:
        """The verdict as a terminal block: title, category and confidence, where, evidence."""
        where = self.source or "source unknown"
        if self.function:
            where += f" — in {self.function}()"
        if self.module:
            where += f" [{self.module}]"
        lines = [
            self.title,
            f"  category {self.category} · confidence {self.confidence}"
            + (f" · signature {self.signature}" if self.signature else "")
            + (" · DEGRADED (no kernel DWARF)" if self.degraded else ""),
            f"  {where}",
        ]
        if self.explanation:
            lines.append(f"  {self.explanation}")
        for e in self.evidence:
            src = f"   ({e.source})" if e.source else ""
            lines.append(f"  {'✔' if e.agrees else '✘'} {e.text}{src}")
        lines.extend(f"  ? could not check: {m}" for m in self.missing)
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        """IPython shows the verdict as text too."""
        p.text(str(self))


@dataclass
class Outcome:
    """How one analyzer ended: ok, skipped (why) or failed (the error)."""

    name: str
    status: str
    detail: str | None = None
    seconds: float = 0.0


@dataclass
class Report:
    """Everything kpostmortem found in one dump."""

    tool: dict[str, Any] = field(default_factory=dict)
    dump: dict[str, Any] = field(default_factory=dict)
    debug_info: dict[str, Any] = field(default_factory=dict)
    verdict: Verdict = field(default_factory=Verdict)
    summary: dict[str, Any] = field(default_factory=dict)
    crashed_task: dict[str, Any] = field(default_factory=dict)
    stack: dict[str, Any] = field(default_factory=dict)
    frames: list[Frame] = field(default_factory=list)
    fault: dict[str, Any] = field(default_factory=dict)
    interrupted: dict[str, Any] = field(default_factory=dict)
    """When an interrupt or NMI stopped the crashed CPU: the interrupted instruction and the loop
    around it (analyzers/interrupted.py); empty otherwise."""
    stack_checks: dict[str, Any] = field(default_factory=dict)
    modules: dict[str, Any] = field(default_factory=dict)
    blocked_tasks: dict[str, Any] = field(default_factory=dict)
    log: dict[str, Any] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    known_bugs: list[dict[str, Any]] | None = None
    """Entries of the known-bugs file that match this crash (verdict/known.py); None when no file
    was used, so the ``known_bugs`` key is only in reports made with one."""

    def __str__(self) -> str:
        """A short summary: the dump, the verdict title, how the analyzers went, the sections."""
        ok = sum(o.status == "ok" for o in self.outcomes)
        not_ok = [f"{o.name} {o.status}" for o in self.outcomes if o.status != "ok"]
        dump = self.dump.get("file") or self.dump.get("path") or "?"
        lines = [
            f"Report on {dump} ({self.dump.get('release') or '?'} {self.dump.get('arch') or ''})".rstrip(),
            f"  verdict: {self.verdict.title} ({self.verdict.category}, "
            f"confidence {self.verdict.confidence})",
            f"  analyzers: {ok}/{len(self.outcomes)} ok" + (f" ({', '.join(not_ok)})" if not_ok else ""),
            f"  {len(self.frames)} frames on the crashed stack; sections: .verdict .summary "
            ".crashed_task .frames .fault .stack_checks .modules .log; .to_dict() for all",
        ]
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        """IPython shows the summary too."""
        p.text(str(self))

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract: ``schema_version`` first, the verdict next, then the sections."""
        stack = dict(self.stack)
        stack["frames"] = [_frame_dict(f) for f in self.frames]
        known = {} if self.known_bugs is None else {"known_bugs": self.known_bugs}
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": self.tool,
            "verdict": dataclasses.asdict(self.verdict),
            **known,
            "dump": self.dump,
            "debug_info": self.debug_info,
            "summary": self.summary,
            "crashed_task": self.crashed_task,
            "fault": self.fault,
            "interrupted": self.interrupted,
            "stack": stack,
            "stack_checks": self.stack_checks,
            "modules": self.modules,
            "blocked_tasks": self.blocked_tasks,
            "log": self.log,
            "analyzers": [dataclasses.asdict(o) for o in self.outcomes],
        }


def _frame_dict(frame: Frame) -> dict[str, Any]:
    d = dataclasses.asdict(frame)
    if d["event"] is None:
        del d["event"]  # only pt_regs frames carry one
    d["symbol"] = frame.symbol
    return d
