"""Debug-kernel reports that are not CPU exceptions, and where each one names its suspect.

lockdep, kmemleak, the atomic-context checks (might_sleep, scheduling while atomic,
smp_processor_id in preemptible code), the sanitizers that have no category of a CPU
exception (KMSAN, KCSAN, UBSAN) and the page allocator's bad-page check all print a report
of their own shape. The function to blame is rarely the first frame of the stack that
follows: lockdep names the acquisition it objects to on an ``at:`` line before any stack,
kmemleak prints the allocation's stack under ``backtrace:``, a bad page's culprit is in the
page-owner stack of its last allocation. Each kind says where to look, in order of
preference (``steps``; the record's own call trace always comes after them), and which
frames of that report are its own machinery (``skip``: regular expressions searched in the
function name, on top of docs/verdicts.md's skip lists).

None of these stops the machine on its own (``panic_on_warn`` and friends can): a log that
holds only such a report gets a verdict that says the machine survived it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["ReportKind", "Step", "REPORT_KINDS", "report_kind", "report_kind_named", "SiteScanner"]


@dataclass(frozen=True)
class Step:
    """One place a report names its suspect.

    ``take``: ``"at"`` — the symbol of the first ``at: f+0x1/0x2`` on or after the armed
    line; ``"stack"`` — the stack printed on the lines after the armed line (it ends at the
    first line that is not a frame); ``"entry"`` — the first line after the armed one that is
    a frame; ``"named"`` — group 1 of ``pattern`` (a bare function name).
    ``after``: the line that arms the step (searched); None arms it at once.
    """

    take: str
    after: re.Pattern[str] | None = None
    pattern: re.Pattern[str] | None = None


@dataclass(frozen=True)
class ReportKind:
    name: str
    headline: re.Pattern[str]
    """Searched in the headline line."""
    category: str
    phrase: str
    """The title's words before " in FUNC"; ``{1}``, ``{2}`` are the headline's groups."""
    steps: tuple[Step, ...] = ()
    skip: re.Pattern[str] | None = None
    """Functions that are this report's own machinery (searched in the name)."""
    trace_first: bool = False
    """Prefer the record's own call trace to the steps' sites."""
    merges: bool = False
    """A second headline of this kind before any site continues the record (syzkaller's
    ``BUG: memory leak`` line, then kmemleak's ``unreferenced object``)."""
    variant: str | None = None
    """Title wording within the category (titles.py), when the phrase is not the title."""

    def title_phrase(self, headline: str) -> str:
        m = self.headline.search(headline)
        groups = m.groups() if m is not None else ()
        return self.phrase.format(None, *[g or "" for g in groups])


def _c(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


# lockdep's workqueue annotations: the work item's pseudo-lock is taken in the workqueue code
# itself, which is never the suspect of a lock-order report about it.
_WORKQUEUE_LOCKS = _c(r"^(?:process_one_work|(?:__)?flush_workqueue|drain_workqueue|destroy_workqueue|"
                      r"__flush_work|flush_work|start_flush_work|worker_thread)$")
_ALLOCATION = _c(r"kmemleak|alloc|kmem_|slab|kstrn?dup|memdup|kasprintf|idr_get|list_lru_init|pcpu_|"
                 r"create_object|kvasprintf")

REPORT_KINDS: tuple[ReportKind, ...] = (
    # lockdep: lock-order reports name the acquisition on an "at:" line before any stack
    ReportKind("circular-locking", _c(r"possible circular locking dependency detected"), "locking-violation",
               "possible deadlock",
               (Step("at", _c(r"is trying to acquire")), Step("at", _c(r"already holding"))),
               skip=_WORKQUEUE_LOCKS),
    ReportKind("irq-inversion", _c(r"possible irq lock inversion dependency detected"), "locking-violation",
               "possible deadlock", (Step("at", _c(r"just changed the state of lock")),), skip=_WORKQUEUE_LOCKS),
    ReportKind("safe-unsafe", _c(r"(?:HARD|SOFT)IRQ-safe -> (?:HARD|SOFT)IRQ-unsafe lock order detected"),
               "locking-violation", "possible deadlock",
               (Step("stack", _c(r"which became \S+ at:")), Step("at", _c(r"is trying to acquire")))),
    ReportKind("recursive-locking", _c(r"possible recursive locking detected"), "locking-violation",
               "possible deadlock", (Step("at", _c(r"is trying to acquire")),), skip=_WORKQUEUE_LOCKS),
    ReportKind("inconsistent-lock-state", _c(r"inconsistent lock state"), "locking-violation",
               "inconsistent lock state", (Step("at", _c(r"\btakes")),), trace_first=True),
    ReportKind("bad-unlock-balance", _c(r"bad unlock balance detected"), "locking-violation",
               "BUG: bad unlock balance", (Step("entry", _c(r"is trying to release lock")),)),
    ReportKind("held-lock-freed", _c(r"held lock freed"), "locking-violation", "BUG: held lock freed",
               (Step("at", _c(r"is freeing memory")),)),
    ReportKind("locks-held-returning", _c(r"lock held when returning to user space"), "locking-violation",
               "BUG: lock held when returning to user space",
               (Step("at", _c(r"leaving the kernel with locks still held")),)),
    ReportKind("locks-held-exiting", _c(r"still has locks held"), "locking-violation",
               "BUG: still has locks held", (Step("at", _c(r"lock(?:s)? held by")),)),
    ReportKind("workqueue-leaked-lock", _c(r"BUG: workqueue leaked lock or atomic"), "locking-violation",
               "BUG: workqueue leaked lock or atomic",
               (Step("named", pattern=_c(r"last function: ([A-Za-z0-9_.]+)")),)),
    ReportKind("suspicious-rcu", _c(r"suspicious RCU usage"), "locking-violation",
               "WARNING: suspicious RCU usage", skip=_c(r"rcu|kmem|slab|lockdep")),
    ReportKind("non-static-key", _c(r"trying to register non-static key"), "locking-violation",
               "INFO: trying to register non-static key"),
    ReportKind("invalid-wait-context", _c(r"Invalid wait context"), "locking-violation",
               "BUG: invalid wait context"),
    ReportKind("nested-lock", _c(r"Nested lock was not taken"), "locking-violation",
               "WARNING: nested lock was not taken"),
    ReportKind("spinlock-debug", _c(r"BUG: (spinlock|rwlock) ([a-z][a-z ]*?) on CPU"), "locking-violation",
               "BUG: {1} {2}", skip=_c(r"spin_|_lock|_unlock|spin_bug|rwlock_bug")),
    # kmemleak: the object's allocation stack, under "backtrace:"
    ReportKind("memory-leak", _c(r"^unreferenced object 0x[0-9a-fA-F]+ \(size \d+\)|BUG: memory leak"),
               "memory-leak", "memory leak", (Step("stack", _c(r"^\s*backtrace(?: \(crc [0-9a-f]+\))?:")),),
               skip=_ALLOCATION, merges=True),
    # the atomic-context checks: the code that slept or used per-CPU data where it must not
    ReportKind("sleep-in-atomic", _c(r"BUG: sleeping function called from invalid context"), "invalid-context",
               "BUG: sleeping function called from invalid context", skip=_c(r"might_sleep|might_resched|might_fault")),
    ReportKind("schedule-in-atomic", _c(r"BUG: scheduling while atomic"), "invalid-context",
               "BUG: scheduling while atomic"),
    ReportKind("preemptible-cpu-access", _c(r"BUG: using ([a-z_]+)\(\) in preemptible"), "invalid-context",
               "BUG: using {1}() in preemptible code",
               skip=_c(r"dump_stack|preempt|debug_smp|processor_id|this_cpu")),
    # sanitizers without a CPU exception's category (KASAN and KFENCE are memory-corruption)
    # (the sanitizers name their function on the headline: "KMSAN: uninit-value in f+0x1/0x2")
    ReportKind("kmsan", _c(r"KMSAN: ([a-z-]+)"), "uninitialized-memory", "KMSAN: {1}",
               skip=_c(r"^(?:kmsan|__msan)")),
    ReportKind("kcsan", _c(r"KCSAN: ([a-z-]+)"), "data-race", "KCSAN: {1}"),
    ReportKind("ubsan", _c(r"UBSAN: ([A-Za-z-]+(?: behaviou?r)?)"), "undefined-behavior", "UBSAN: {1}",
               trace_first=True),
    # the page allocator's check of a page it frees or hands out: the culprit is the page's
    # last owner, which page_owner prints
    ReportKind("bad-page", _c(r"BUG: Bad page (state|cache)"), "memory-corruption", "BUG: Bad page {1}",
               (Step("stack", _c(r"page last allocated")),),
               skip=_c(r"(?:free|put|get|update|release)_page|free_unref|^_*folio|truncate_inode_pages|"
                       r"page_frag_free|alloc|vmap|page_owner|prep_new_page|bad_page|free_pages|"
                       r"release_pages|__page_cache_release|skb_release|filemap_get_folio|"
                       r"pagecache_get_page|find_or_create_page|grab_cache_page"),
               variant="bad-page"),
)

_BY_NAME = {k.name: k for k in REPORT_KINDS}


def report_kind(headline: str) -> ReportKind | None:
    """The kind of debug report a headline opens, or None."""
    for kind in REPORT_KINDS:
        if kind.headline.search(headline):
            return kind
    return None


def report_kind_named(name: str | None) -> ReportKind | None:
    return _BY_NAME.get(name or "")


# lockdep's "..., at: f+0x1/0x2 [mod]" (4.x: "at: [<ffffffff81234567>] f+0x1/0x2")
_AT_SYMBOL = _c(r"\bat: (?:\[<[0-9a-fA-F]{1,16}>\]\s*)?"
                r"(\S+\+0x[0-9a-fA-F]{1,16}/0x[0-9a-fA-F]{1,16}(?:\s+\[[^\]\s]+\])?)")


class SiteScanner:
    """Reads a report's lines in order and collects the frames its kind's steps name.

    ``entry`` parses one line as a call-trace entry (oopslog.parse_trace_entry), ``symbol``
    one ``f+0x1/0x2 [mod]`` text (both return None for anything else), ``named`` makes the
    frame of a bare function name.
    """

    def __init__(self, kind: ReportKind, entry: Callable[[str], Any], symbol: Callable[[str], Any],
                 named: Callable[[str], Any]) -> None:
        self.kind = kind
        self._entry = entry
        self._symbol = symbol
        self._named = named
        self._step = -1
        self._armed = self._in_stack = False
        self.sites: list = []
        self._next()

    @property
    def done(self) -> bool:
        return self._step >= len(self.kind.steps)

    def _next(self) -> None:
        self._step += 1
        self._in_stack = False
        self._armed = not self.done and self.kind.steps[self._step].after is None

    def feed(self, text: str) -> bool:
        """Read one line of the record; True when it named a site or armed a step."""
        body = text.strip()
        used = False
        while not self.done:
            step = self.kind.steps[self._step]
            if self._in_stack:
                entry = self._entry(text) if body else None
                if entry is not None:
                    if entry.reliable:
                        self.sites.append(entry)
                    return True
                self._next()
                continue  # the stack ended: this line may arm or fill the next step
            if not self._armed:
                if step.after is None or not step.after.search(body):
                    return used
                self._armed = used = True
                if step.take != "at":
                    # a stack or a frame follows on the next lines; an "at:" may be on this one
                    self._in_stack = step.take == "stack"
                    return True
            if step.take == "stack":
                self._in_stack = True
                continue
            found, site = self._site(step, text, body)
            if not found:
                return used
            if site is not None:
                self.sites.append(site)
            self._next()
            return True
        return used

    def _site(self, step: Step, text: str, body: str) -> tuple[bool, Any]:
        """(whether this line is the one the step waits for, the frame it names or None)."""
        if step.take == "at":
            at = _AT_SYMBOL.search(body)
            return (False, None) if at is None else (True, self._symbol(at.group(1)))
        if step.take == "entry":
            entry = self._entry(text) if body else None
            return entry is not None, entry
        m = step.pattern.search(body) if step.pattern is not None else None  # "named"
        return (False, None) if m is None else (True, self._named(m.group(1)))
