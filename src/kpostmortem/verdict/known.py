"""Known bugs: a TOML file kept by the user, each entry a rule over a crash's verdict and kernel,
matched against reports (``analyze``, ``batch``, the drgn session) and written by ``known add``.

Pure: a file's text and report dicts in, dataclasses and dicts out. The file format, the search
order of the file and the ``known_bugs`` JSON key are documented in docs/triage.md.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kpostmortem.decode.versions import SCHEMES, KernelVersions, VersionError, VersionRange, compare, kernel_versions
from kpostmortem.errors import ExitCode, KpmError
from kpostmortem.verdict.categories import CATEGORIES, lookup
from kpostmortem.verdict.frames import base_name

__all__ = [
    "ENV_VAR",
    "BUG_KEYS",
    "MATCH_KEYS",
    "CrashFacts",
    "KnownBug",
    "KnownBugs",
    "KnownBugsError",
    "Rule",
    "append_entry",
    "default_path",
    "entry_text",
    "find_known_bugs",
    "load_known_bugs",
    "parse_known_bugs",
]

ENV_VAR = "KPOSTMORTEM_KNOWN_BUGS"
"""Environment variable naming the known-bugs file (after ``--known-bugs``, before the XDG default)."""

BUG_KEYS = ("id", "url", "note", "fixed_in", "workaround", "match")
MATCH_KEYS = ("signature", "category", "function", "module", "title", "kernel")
TOP_KEYS = ("bug", "version_scheme")


class KnownBugsError(KpmError):
    """The known-bugs file cannot be read or is malformed; the message names the file and line."""

    exit_code = ExitCode.USAGE


def default_path(env: Mapping[str, str] | None = None) -> str:
    """``$XDG_CONFIG_HOME/kpostmortem/known-bugs.toml`` (``~/.config`` when XDG_CONFIG_HOME is unset)."""
    env = os.environ if env is None else env
    config = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(config, "kpostmortem", "known-bugs.toml")


def find_known_bugs(option: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    """The known-bugs file to use: ``option`` (``--known-bugs``), else ``$KPOSTMORTEM_KNOWN_BUGS``,
    else the XDG default if it exists, else None. A file named by the option or the variable must
    exist (the caller's load fails otherwise); the default is only used when present."""
    env = os.environ if env is None else env
    if option:
        return option
    if env.get(ENV_VAR):
        return env[ENV_VAR]
    path = default_path(env)
    return path if os.path.isfile(path) else None


# --------------------------------------------------------------------------- the file


@dataclass(frozen=True)
class Rule:
    """A ``[bug.match]`` table: every key given must match the crash."""

    signature: str | None = None
    category: str | None = None
    function: str | None = None
    module: str | None = None
    title: re.Pattern[str] | _Literal | None = None
    """A regular expression searched for in the verdict's title."""
    kernel: VersionRange | None = None
    """Kernel release range the crashed kernel must be in."""


@dataclass(frozen=True)
class KnownBug:
    """One ``[[bug]]`` entry."""

    id: str
    match: Rule
    url: str | None = None
    note: str | None = None
    fixed_in: str | None = None
    """Kernel release or package version that fixes the bug."""
    workaround: str | None = None
    line: int = 0
    """Line of its ``[[bug]]`` header in the file."""


@dataclass(frozen=True)
class CrashFacts:
    """What a rule is matched against: the verdict's keys and the crashed kernel."""

    signature: str | None = None
    category: str | None = None
    function: str | None = None
    module: str | None = None
    title: str | None = None
    release: str | None = None
    """``uname -r`` of the crashed kernel."""
    uname_version: str | None = None
    """``uname -v`` (Debian's names the package version)."""

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> CrashFacts:
        """From a report dict (``verdict``, ``dump``, ``summary``) or a ``batch`` record (flat keys)."""
        if "verdict" in data:
            v = data.get("verdict") or {}
            s = data.get("summary") or {}
            release = (data.get("dump") or {}).get("release") or s.get("release")
            return cls(v.get("signature"), v.get("category"), v.get("function"), v.get("module"),
                       v.get("title"), release, s.get("version"))
        return cls(data.get("signature"), data.get("category"), data.get("function"), data.get("module"),
                   data.get("title"), data.get("release"), data.get("version"))


@dataclass
class KnownBugs:
    """A loaded known-bugs file, indexed for matching."""

    path: str
    bugs: list[KnownBug]
    version_scheme: str | None = None
    """``deb`` or ``rpm`` when the file says so, else chosen from the crashed kernel's release."""
    _by_signature: dict[str, list[KnownBug]] = field(default_factory=dict, repr=False)
    _by_function: dict[str, list[KnownBug]] = field(default_factory=dict, repr=False)
    _by_category: dict[str, list[KnownBug]] = field(default_factory=dict, repr=False)
    _other: list[KnownBug] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        # Each rule is filed under its most selective exact key, so that a crash is only checked
        # against the rules that can match it (and the few with none of these keys).
        sig, fun, cat = defaultdict(list), defaultdict(list), defaultdict(list)
        for bug in self.bugs:
            if bug.match.signature:
                sig[bug.match.signature].append(bug)
            elif bug.match.function:
                fun[bug.match.function].append(bug)
            elif bug.match.category:
                cat[bug.match.category].append(bug)
            else:
                self._other.append(bug)
        self._by_signature, self._by_function, self._by_category = dict(sig), dict(fun), dict(cat)

    def __len__(self) -> int:
        return len(self.bugs)

    def match(self, report_or_record: Mapping[str, Any] | CrashFacts) -> list[dict[str, Any]]:
        """The entries that match a crash, in file order, each as the ``known_bugs`` JSON item."""
        facts = report_or_record if isinstance(report_or_record, CrashFacts) else CrashFacts.of(report_or_record)
        candidates = (self._by_signature.get((facts.signature or "").lower(), [])
                      + self._by_function.get(base_name(facts.function) or "", [])
                      + self._by_category.get(facts.category or "", []) + self._other)
        kv = kernel_versions(facts.release, facts.uname_version) if facts.release else None
        scheme = self.version_scheme or (kv.scheme if kv else "deb")
        out = []
        for bug in sorted(candidates, key=lambda b: b.line):
            why = _why(bug.match, facts, kv, scheme)
            if why is not None:
                out.append(_result(bug, why, kv, scheme, self.path))
        return out


def _why(rule: Rule, f: CrashFacts, kv: KernelVersions | None, scheme: str) -> list[dict[str, str]] | None:
    """What matched, key by key; None as soon as one given key does not."""
    why: list[dict[str, str]] = []
    for key in ("signature", "category", "function", "module"):
        want = getattr(rule, key)
        if want is None:
            continue
        have = getattr(f, key)
        if key == "function":
            have = base_name(have)
        if key == "signature":
            have = (have or "").lower()
        if have is None or have != want:
            return None
        why.append({"key": key, "rule": want, "crash": have})
    if rule.title is not None:
        if not f.title or not rule.title.search(f.title):
            return None
        why.append({"key": "title", "rule": rule.title.pattern, "crash": f.title})
    if rule.kernel is not None:
        if kv is None:
            return None
        try:
            inside = rule.kernel.contains(kv, scheme)
        except VersionError:
            return None
        if not inside:
            return None
        used = sorted({kv.for_bound(b) for _op, b in rule.kernel.constraints})
        why.append({"key": "kernel", "rule": rule.kernel.text, "crash": " / ".join(used)})
    return why


def _result(bug: KnownBug, why: list[dict[str, str]], kv: KernelVersions | None, scheme: str,
            path: str) -> dict[str, Any]:
    status, running, compared = "known", None, None
    if bug.fixed_in and kv is not None:
        used = kv.for_bound(bug.fixed_in)
        try:
            compared = compare(used, bug.fixed_in, scheme)
        except VersionError:
            compared = None
        if compared is not None:
            running = used
            status = "regression" if compared >= 0 else "known"
    what = f": {bug.note}" if bug.note else ""
    runs = kv.describe(running) if (kv and running) else (kv.uname_release if kv else None)
    if status == "regression":
        message = (f"matches {bug.id}, which was supposed to be fixed in {bug.fixed_in}: a regression or a "
                   f"different bug (this machine runs {runs})")
    elif bug.fixed_in:
        message = f"known bug {bug.id}{what} (fixed in {bug.fixed_in}; this machine runs {runs or 'an unknown kernel'})"
    else:
        message = f"known bug {bug.id}{what} (no fix recorded)"
    return {
        "id": bug.id,
        "status": status,
        "message": message,
        "url": bug.url,
        "note": bug.note,
        "fixed_in": bug.fixed_in,
        "running": running,
        "version_scheme": scheme if bug.fixed_in or any(w["key"] == "kernel" for w in why) else None,
        "workaround": bug.workaround,
        "why": why,
        "file": path,
        "line": bug.line,
    }


# --------------------------------------------------------------------------- loading

_HEADER_BUG = re.compile(r"\s*\[\[\s*bug\s*\]\]\s*(#.*)?$")
_HEADER_MATCH = re.compile(r"\s*\[\s*bug\s*\.\s*match\s*\]\s*(#.*)?$")
_HEADER_OTHER = re.compile(r"\s*\[")
_KEY = re.compile(r"""\s*(?:"([^"]+)"|([A-Za-z0-9_.-]+))\s*=""")


class _Lines:
    """Where things are in the file: each ``[[bug]]`` header and the keys under it (line numbers)."""

    def __init__(self, text: str) -> None:
        self.bugs: list[int] = []
        self.keys: dict[tuple[int, str], int] = {}
        self.top: dict[str, int] = {}
        table = "top"
        for n, line in enumerate(text.splitlines(), 1):
            if _HEADER_BUG.match(line):
                self.bugs.append(n)
                table = "bug"
            elif _HEADER_MATCH.match(line):
                table = "match"
                if self.bugs:
                    self.keys.setdefault((len(self.bugs) - 1, "match"), n)
            elif _HEADER_OTHER.match(line):
                table = "other"
            else:
                m = _KEY.match(line)
                if not m:
                    continue
                key = m.group(1) or m.group(2)
                if table == "top":
                    self.top.setdefault(key, n)
                elif self.bugs and table in ("bug", "match"):
                    name = f"match.{key}" if table == "match" else key
                    self.keys.setdefault((len(self.bugs) - 1, name), n)

    def of(self, index: int, key: str | None = None) -> int:
        if key is not None:
            for k in (key, key.split(".", 1)[0]):
                if (index, k) in self.keys:
                    return self.keys[(index, k)]
        return self.bugs[index] if index < len(self.bugs) else 0


def load_known_bugs(path: str) -> KnownBugs:
    """Read and validate a known-bugs file.

    :raises KnownBugsError: unreadable or malformed, with ``FILE:LINE: what`` as its message
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise KnownBugsError(f"{path}: cannot read the known-bugs file: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise KnownBugsError(f"{path}:{line}: not UTF-8 text") from None
    return parse_known_bugs(text, path)


_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def parse_known_bugs(text: str, path: str = "<known-bugs>") -> KnownBugs:
    """Parse and validate the text of a known-bugs file (see :func:`load_known_bugs`)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = _TOML_POS.search(msg)
        if m:
            raise KnownBugsError(f"{path}:{m.group(1)}: invalid TOML: {msg[: m.start()]} "
                                 f"(column {m.group(2)})") from None
        line = text.count("\n") + 1
        raise KnownBugsError(f"{path}:{line}: invalid TOML: {msg}") from None
    where = _Lines(text)

    def fail(line: int, message: str) -> KnownBugsError:
        return KnownBugsError(f"{path}:{line}: {message}")

    for key in data:
        if key not in TOP_KEYS:
            raise fail(where.top.get(key, 1), f"unknown top-level key {key!r} (expected [[bug]] tables"
                                              " and optionally version_scheme)")
    scheme = data.get("version_scheme")
    if scheme is not None and scheme not in SCHEMES:
        raise fail(where.top.get("version_scheme", 1), f"version_scheme must be one of {', '.join(SCHEMES)}, "
                                                         f"not {scheme!r}")
    raw = data.get("bug", [])
    if not isinstance(raw, list) or not all(isinstance(b, dict) for b in raw):
        raise fail(where.top.get("bug", 1), "bug must be an array of tables: write each entry under [[bug]]")
    bugs: list[KnownBug] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(raw):
        bugs.append(_bug(entry, i, where, scheme or "deb", fail))
        if bugs[-1].id in seen:
            raise fail(where.of(i, "id"), f"duplicate id {bugs[-1].id!r} (first at line {seen[bugs[-1].id]})")
        seen[bugs[-1].id] = where.of(i, "id")
    return KnownBugs(path, bugs, scheme)


def _bug(entry: dict[str, Any], i: int, where: _Lines, scheme: str, fail) -> KnownBug:
    name = f"bug {entry['id']!r}" if isinstance(entry.get("id"), str) and entry["id"] else f"bug #{i + 1}"
    for key in entry:
        if key not in BUG_KEYS:
            raise fail(where.of(i, key), f"{name}: unknown key {key!r} (expected {', '.join(BUG_KEYS)})")
    for key in BUG_KEYS[:-1]:
        if key in entry and not isinstance(entry[key], str):
            raise fail(where.of(i, key), f"{name}: {key} must be a string, not {type(entry[key]).__name__}")
    if not entry.get("id", "").strip():
        raise fail(where.of(i, "id"), f"{name}: id is required (a non-empty string)")
    fixed_in = entry.get("fixed_in")
    if fixed_in is not None:
        try:
            compare(fixed_in, fixed_in, scheme)
        except VersionError as e:
            raise fail(where.of(i, "fixed_in"), f"{name}: fixed_in: {e}") from None
    match = entry.get("match")
    if not isinstance(match, dict) or not match:
        raise fail(where.of(i, "match"), f"{name}: a [bug.match] table with at least one of "
                                         f"{', '.join(MATCH_KEYS)} is required")
    values: dict[str, Any] = {}
    for key, value in match.items():
        line = where.of(i, f"match.{key}")
        if key not in MATCH_KEYS:
            raise fail(line, f"{name}: unknown match key {key!r} (expected {', '.join(MATCH_KEYS)})")
        if not isinstance(value, str) or not value.strip():
            raise fail(line, f"{name}: match.{key} must be a non-empty string")
        values[key] = _match_value(key, value.strip(), name, line, fail)
    return KnownBug(entry["id"].strip(), Rule(**values), entry.get("url"), entry.get("note"), fixed_in,
                    entry.get("workaround"), where.of(i))


_REGEX_SYNTAX = re.compile(r"[\\.^$*+?{}\[\]|()]")


@dataclass(frozen=True)
class _Literal:
    """A title pattern without regular-expression syntax: searched for as plain text."""

    pattern: str

    def search(self, text: str) -> bool:
        return self.pattern in text


def _match_value(key: str, value: str, name: str, line: int, fail) -> Any:
    if key == "signature":
        if not re.fullmatch(r"[0-9a-fA-F]{4,64}", value):
            raise fail(line, f"{name}: match.signature {value!r} is not a hex signature (12 hex digits)")
        return value.lower()
    if key == "category":
        if value not in CATEGORIES:
            known = lookup(value)
            hint = f"; did you mean {known.code!r}?" if known else "; kpostmortem explain --list shows them"
            raise fail(line, f"{name}: match.category {value!r} is not a category code{hint}")
        return value
    if key == "function":
        return base_name(value)
    if key == "title":
        if not _REGEX_SYNTAX.search(value):
            return _Literal(value)  # most titles are plain text: no need to compile them
        try:
            return re.compile(value)
        except re.error as e:
            raise fail(line, f"{name}: match.title is not a valid regular expression: {e}") from None
    if key == "kernel":
        try:
            return VersionRange.parse(value)
        except VersionError as e:
            raise fail(line, f"{name}: match.kernel: {e}") from None
    return value


# --------------------------------------------------------------------------- writing


def _toml_str(s: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, and DEL must be escaped too."""
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def _comment(s: str) -> str:
    """Text for a TOML comment: control characters (newlines, DEL) are not allowed there."""
    return re.sub(r"[\x00-\x1f\x7f]", "?", s)


def entry_text(report: Mapping[str, Any], bug_id: str, url: str | None = None, note: str | None = None,
               fixed_in: str | None = None, workaround: str | None = None, by: str = "signature",
               kernel: str | None = None) -> str:
    """A ``[[bug]]`` entry for the crash of ``report`` (a report dict), as TOML text.

    ``by="signature"``: the rule is the verdict's signature, with its category, function and module
    written out too so that a person can read it (they agree with the signature, so the rule matches
    exactly the dumps the signature does). ``by="function"``: category, function and module only,
    a rule that also holds on other kernels and call paths. ``kernel``: a release range added to
    the rule (``>=6.1, <6.13``).
    """
    v = report.get("verdict") or {}
    if not v.get("signature"):
        raise KnownBugsError("the report has no verdict signature to write a rule from")
    release = (report.get("dump") or {}).get("release") or (report.get("summary") or {}).get("release")
    lines = [
        "",
        _comment(f"# {v.get('title') or '?'}"),
        _comment(f"# from a crash of {release or 'an unknown kernel'}"
                 + (f", {v['source']}" if v.get("source") else "")),
        "[[bug]]",
        f"id = {_toml_str(bug_id)}",
    ]
    for key, value in (("url", url), ("note", note or v.get("title")), ("fixed_in", fixed_in),
                       ("workaround", workaround)):
        if value:
            lines.append(f"{key} = {_toml_str(value)}")
    lines.append("[bug.match]")
    if by == "signature":
        lines.append(f"signature = {_toml_str(v['signature'])}")
    elif by != "function":
        raise KnownBugsError(f"unknown rule kind {by!r} (signature or function)")
    for key in ("category", "function", "module"):
        if v.get(key):
            lines.append(f"{key} = {_toml_str(v[key])}")
    if kernel:
        lines.append(f"kernel = {_toml_str(kernel)}")
    if by == "function" and not v.get("function"):
        raise KnownBugsError("the report's verdict names no function to write a rule from")
    return "\n".join(lines) + "\n"


def append_entry(path: str, entry: str) -> KnownBugs:
    """Append ``entry`` to the known-bugs file at ``path`` (created if missing), leaving the rest of
    the file as it is; the file with the entry is validated first, and nothing is written if it fails."""
    try:
        with open(path, "rb") as f:
            old = f.read().decode("utf-8")
    except FileNotFoundError:
        old = ""
    except (OSError, UnicodeDecodeError) as e:
        raise KnownBugsError(f"{path}: cannot read the known-bugs file: {getattr(e, 'strerror', None) or e}") from None
    sep = "" if not old or old.endswith("\n") else "\n"
    loaded = parse_known_bugs(old + sep + entry, path)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(sep + entry)
    except OSError as e:
        raise KnownBugsError(f"{path}: cannot write the known-bugs file: {e.strerror or e}") from None
    return loaded

