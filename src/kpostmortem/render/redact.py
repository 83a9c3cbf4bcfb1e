"""Redaction of a report before it is shared: host names, addresses, users, secrets, process names.

Pure functions over the report dict (``redact_report``), applied before any renderer runs, so
every format is redacted the same way. Placeholders are stable within a report (`<host-1>`,
`<ip-2>`…) and the report gains a ``redaction`` section counting what was replaced.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KINDS", "Redactor", "redact_report", "redaction_note"]

KINDS = ("host", "ip", "mac", "user", "secret", "comm")
"""Kinds of redacted values, in the order the summary lists them."""

_KIND_WORDS = {
    "host": ("host name", "host names"),
    "ip": ("IP address", "IP addresses"),
    "mac": ("MAC address", "MAC addresses"),
    "user": ("user name", "user names"),
    "secret": ("secret", "secrets"),
    "comm": ("process name", "process names"),
}

_PLACEHOLDER = re.compile(r"(<(?:" + "|".join(KINDS) + r")-\d+>)")

# Host names that identify nothing: the kernel's default and the usual loopback names.
_ANONYMOUS_HOSTS = frozenset({"", "(none)", "localhost", "localhost.localdomain", "localhost6"})

# `key=value` pairs whose value is a secret: the key, split at . _ -, holds one of these words
# (`password=`, `db_pass=`, `api_token=`, `aws.secret_key=`), or contains one of the long ones.
_SECRET_WORDS = frozenset({
    "password", "passwd", "pass", "pwd", "pw", "passphrase", "token", "secret", "key", "apikey",
    "auth", "authtoken", "credential", "credentials", "creds", "cookie", "session", "sessionid",
    "bearer", "privkey", "psk",
})
_SECRET_PARTS = ("password", "passwd", "secret", "token", "apikey", "credential", "passphrase")
# Values that are settings, not secrets (`auth=1`, `token=off`).
_NOT_SECRETS = frozenset({"", "0", "1", "y", "n", "on", "off", "yes", "no", "true", "false", "none", "null"})
# Keys whose value is a user name.
_USER_KEYS = frozenset({"user", "username", "login", "owner", "uname", "logname"})
# User names that identify nobody and appear as ordinary words.
_ANONYMOUS_USERS = frozenset({"root", "nobody", "user", "admin", "guest"})

_KEY_VALUE = re.compile(r"(?<![\w.-])([A-Za-z_][\w.-]*)(=)(\"[^\"]*\"|'[^']*'|[^\s\"',;&)]+)")
_BEARER = re.compile(r"(?i)\b(bearer\s+)([A-Za-z0-9._~+/=-]{8,})")
_URL_CREDENTIALS = re.compile(r"([a-z][a-z0-9+.-]*://)([^:/\s@]+):([^@/\s]+)@", re.I)
_HOME = re.compile(r"(?<![\w.-])(/(?:home|Users|var/home|export/home)/)([^/\s\"'<>:;,]+)")
_MAC = re.compile(r"(?<![\w:.-])((?:[0-9a-f]{2}[:-]){5}[0-9a-f]{2})(?![\w:-])", re.I)
_IPV4 = re.compile(r"(?<![\w.])((?:\d{1,3}\.){3}\d{1,3})(?!\.?\d)")
_IPV6 = re.compile(r"(?<![\w:.])((?:[0-9a-f]{0,4}:){2,7}(?:[0-9a-f]{0,4}|(?:\d{1,3}\.){3}\d{1,3}))(?![\w:])", re.I)

# Kernel threads keep their names under --redact-comm: they are the kernel's, not the user's.
_KERNEL_THREAD = re.compile(
    r"^(swapper|kworker|ksoftirqd|migration|cpuhp|idle_inject|rcu_|rcuo|rcub|kthreadd|kswapd|khungtaskd|"
    r"kcompactd|khugepaged|ksmd|oom_reaper|kauditd|kdevtmpfs|kblockd|writeback|jbd2|watchdog|irq/|scsi_|"
    r"kintegrityd|kthrotld|cryptd|ext4-|xfs|nvme|loop\d|mm_percpu_wq|netns|kstrp|pool_workqueue|"
    r"kpsmoused|hwrng|zswap|ipv6_addrconf|inet_frag|edac-|devfreq|card\d|ttm|napi/|kcryptd|dm[-_]|md\d|"
    r"blkcg_punt|tpm_dev_wq|acpi_thermal|charger_manager|kmpath|ata_sff|usb-storage|khubd|kstop)"
)


@dataclass
class Redactor:
    """Stable placeholders for one report: the same value always gets the same placeholder."""

    comms: bool = False
    """Also redact the names (comm) of user processes."""
    _maps: dict[str, dict[str, str]] = field(default_factory=lambda: {k: {} for k in KINDS})
    _aliases: dict[str, dict[str, str]] = field(default_factory=lambda: {k: {} for k in KINDS})
    _counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    _terms: list[tuple[str, str, str]] = field(default_factory=list)
    _combined: re.Pattern[str] | None = None

    def placeholder(self, kind: str, value: str) -> str:
        """The placeholder of ``value`` (case-insensitive for hosts and addresses), counted once per use."""
        key = _key(kind, value)
        key = self._aliases[kind].get(key, key)
        table = self._maps[kind]
        if key not in table:
            table[key] = f"<{kind}-{len(table) + 1}>"
        self._counts[kind] += 1
        return table[key]

    def learn(self, kind: str, value: str | None, alias_of: str | None = None) -> None:
        """Redact every occurrence of ``value`` from now on (a host name, a user, a comm, a secret).

        ``alias_of`` shares a placeholder: a host's short name reads as its full name.
        """
        if not value or any(kind == k and _key(k, value) == _key(k, v) for k, v, _ in self._terms):
            return
        if alias_of is not None:
            self._aliases[kind][_key(kind, value)] = _key(kind, alias_of)
        self._terms.append((kind, value, _term_pattern(kind, value)))
        # Longest first, so a full host name goes before its short name.
        self._terms.sort(key=lambda t: -len(t[1]))
        self._combined = None

    def learn_from(self, other: Redactor) -> None:
        """Take the values another redactor learned (a first pass over the whole report)."""
        for kind, value, _ in other._terms:
            self.learn(kind, value, alias_of=other._aliases[kind].get(_key(kind, value)))

    def text(self, s: str) -> str:
        """Redact one string."""
        if not s:
            return s
        s = self._learned_terms(s)
        s = _outside_placeholders(s, self._home_paths)
        s = _outside_placeholders(s, self._url_credentials)
        s = _outside_placeholders(s, self._key_values)
        s = _outside_placeholders(s, self._bearer)
        s = _outside_placeholders(s, self._macs)
        s = _outside_placeholders(s, self._ipv4)
        return _outside_placeholders(s, self._ipv6)

    def value(self, v: Any) -> Any:
        """Redact every string in a JSON-like value (dict keys are field names and stay)."""
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, dict):
            return {k: self.value(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [self.value(x) for x in v]
        return v

    def summary(self) -> dict[str, Any]:
        """What was redacted: per kind, how many distinct values and how many occurrences."""
        return {
            "comm": self.comms,
            "kinds": {
                k: {"distinct": len(set(self._maps[k].values())), "occurrences": self._counts[k]} for k in KINDS
            },
        }

    # -- passes over one string ------------------------------------------------------------

    def _learned_terms(self, s: str) -> str:
        if not self._terms:
            return s
        if self._combined is None:
            # One alternation, longest value first, so placeholders number in reading order.
            self._combined = re.compile("|".join(f"(?P<t{i}>{p})" for i, (_, _, p) in enumerate(self._terms)))

        def sub(m: re.Match[str]) -> str:
            kind = self._terms[int(m.lastgroup[1:])][0]
            return self.placeholder(kind, m.group(0))

        return _outside_placeholders(s, lambda t: self._combined.sub(sub, t))

    def _home_paths(self, s: str) -> str:
        def sub(m: re.Match[str]) -> str:
            name = m.group(2)
            if name in _ANONYMOUS_USERS:
                return m.group(0)
            self.learn("user", name)
            return m.group(1) + self.placeholder("user", name)

        return _HOME.sub(sub, s)

    def _url_credentials(self, s: str) -> str:
        def sub(m: re.Match[str]) -> str:
            self.learn("user", m.group(2))
            return f"{m.group(1)}{self.placeholder('user', m.group(2))}:{self.placeholder('secret', m.group(3))}@"

        return _URL_CREDENTIALS.sub(sub, s)

    def _key_values(self, s: str) -> str:
        def sub(m: re.Match[str]) -> str:
            key, eq, val = m.groups()
            bare = val.strip("\"'")
            if bare.lower() in _NOT_SECRETS or _PLACEHOLDER.fullmatch(bare):
                return m.group(0)
            quote = val[0] if val[:1] in "\"'" and len(val) > 1 else ""
            if _is_secret_key(key):
                if len(bare) >= 6:
                    self.learn("secret", bare)
                return f"{key}{eq}{quote}{self.placeholder('secret', bare)}{quote}"
            if key.lower() in _USER_KEYS and bare not in _ANONYMOUS_USERS and not bare.isdigit():
                self.learn("user", bare)
                return f"{key}{eq}{quote}{self.placeholder('user', bare)}{quote}"
            return m.group(0)

        return _KEY_VALUE.sub(sub, s)

    def _bearer(self, s: str) -> str:
        return _BEARER.sub(lambda m: m.group(1) + self.placeholder("secret", m.group(2)), s)

    def _macs(self, s: str) -> str:
        def sub(m: re.Match[str]) -> str:
            mac = m.group(1).replace("-", ":")
            if mac.lower() in ("00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"):
                return m.group(0)
            return self.placeholder("mac", mac)

        return _MAC.sub(sub, s)

    def _ipv4(self, s: str) -> str:
        def sub(m: re.Match[str]) -> str:
            try:
                ip = ipaddress.IPv4Address(m.group(1))
            except ValueError:
                return m.group(0)
            if ip.is_loopback or ip.is_unspecified or str(ip) == "255.255.255.255":
                return m.group(0)
            return self.placeholder("ip", str(ip))

        return _IPV4.sub(sub, s)

    def _ipv6(self, s: str) -> str:
        def sub(m: re.Match[str]) -> str:
            text = m.group(1)
            if text.count(":") < 2 or not re.search(r"[0-9a-f]", text, re.I):
                return text
            try:
                ip = ipaddress.IPv6Address(text)
            except ValueError:
                return text
            if ip.is_loopback or ip.is_unspecified:
                return text
            return self.placeholder("ip", str(ip))

        return _IPV6.sub(sub, s)


def _key(kind: str, value: str) -> str:
    return value.lower() if kind in ("host", "ip", "mac") else value


def _is_secret_key(key: str) -> bool:
    low = key.lower()
    words = set(re.split(r"[._-]+", low))
    return bool(words & _SECRET_WORDS) or any(p in low for p in _SECRET_PARTS)


def _term_pattern(kind: str, value: str) -> str:
    """Where a learned value counts as an occurrence (a regular expression).

    Host names match anywhere they stand as a name (paths included: /var/crash/HOST/), in any
    case; users and process names only as words outside paths and symbols, so `/usr/lib/debug`
    survives a user called `debug` and `vfs_write` survives a process called `vfs`.
    """
    v = re.escape(value)
    if kind == "host":
        return rf"(?i:(?<![\w.-]){v}(?![\w-]))"
    if kind == "secret":
        return rf"(?<![\w]){v}(?![\w])"
    if kind == "comm":
        # "NAME/PID" (7.x's "CPU#0: NAME/PID") is a process, "NAME/dir" a path
        return rf"(?<![\w./+-]){v}(?![\w+-]|/(?!\d+\b))"
    return rf"(?<![\w./+-]){v}(?![\w/+-])"


def _outside_placeholders(s: str, fn) -> str:
    """Apply ``fn`` to the parts of ``s`` that are not placeholders already."""
    parts = _PLACEHOLDER.split(s)
    return "".join(p if i % 2 else (fn(p) if p else p) for i, p in enumerate(parts))


# Where the kernel's own words name a process, in every log format the parser knows: the
# oops's "Comm: NAME", 7.x's WARNING line ("…, CPU#0: NAME/PID"), the soft-lockup line
# ("stuck for 22s! [NAME:PID]"), the hung-task report ("task NAME:PID blocked"), the OOM
# report ("NAME invoked oom-killer", "Killed process PID (NAME)"). A comm found there is
# redacted wherever it occurs, even when no parsed field carries it.
_COMM_IN_TEXT = (
    re.compile(r"\bComm: (\S+)"),
    re.compile(r"\bCPU#\d+: (\S+)/\d+"),
    re.compile(r"\bstuck for \d+s! \[(\S+):\d+\]"),
    re.compile(r"\btask (\S+):\d+ blocked\b"),
    re.compile(r"(?:^|\s)(\S+) invoked oom-killer\b"),
    re.compile(r"\bKilled process \d+ \((\S+)\)"),
)


def _strings(v: Any) -> Iterable[str]:
    if isinstance(v, str):
        yield v
    elif isinstance(v, dict):
        for x in v.values():
            yield from _strings(x)
    elif isinstance(v, list | tuple):
        for x in v:
            yield from _strings(x)


def _comms_in_text(report: dict[str, Any]) -> Iterable[str]:
    """Process names the report's text gives in the kernel's words (``_COMM_IN_TEXT``)."""
    for s in _strings(report):
        for pattern in _COMM_IN_TEXT:
            for m in pattern.finditer(s):
                if not _KERNEL_THREAD.match(m.group(1)):
                    yield m.group(1)


def _user_comms(report: dict[str, Any]) -> Iterable[str]:
    """Names of user processes the report mentions: the crashed task and the log's crash records."""
    task = report.get("crashed_task") or {}
    if task.get("comm") and not task.get("kernel_thread"):
        yield task["comm"]
    summary = report.get("summary") or {}
    log = report.get("log") or {}
    sc = report.get("stack_checks") or {}
    records = [summary.get("first_oops") or {}, *log.get("records", []), *sc.get("canaries_damaged", [])]
    # The wait-for graph names waiters and holders the log may not: the user processes among them.
    links = ((report.get("blocked_tasks") or {}).get("wait_for") or {}).get("links") or []
    yield from (link["comm"] for link in links if link.get("comm") and link.get("kernel_thread") is False)
    for rec in records:
        comm = rec.get("comm")
        if comm and not _KERNEL_THREAD.match(comm) and not (
            comm == task.get("comm") and task.get("kernel_thread")
        ):
            yield comm


def redact_report(report: dict[str, Any], comms: bool = False) -> dict[str, Any]:
    """A redacted copy of a report dict, with a ``redaction`` section saying what was replaced.

    Replaced: the dump's host name wherever it occurs (and its short name), IPv4/IPv6 and MAC
    addresses, user names (home paths /home/NAME, ``user=NAME``, URL credentials), the values of
    secret-looking ``key=value`` pairs (password, passwd, token, secret, key, api_key, auth…)
    and bearer tokens, and with ``comms`` the names of user processes. Kernel symbols, hex
    addresses, numbers and source paths are left as they are.
    """
    r = Redactor(comms=comms)
    host = ((report.get("summary") or {}).get("hostname") or "").strip()
    if host.lower() not in _ANONYMOUS_HOSTS:
        r.learn("host", host)
        short = host.split(".", 1)[0]
        if short != host and len(short) >= 3:
            r.learn("host", short, alias_of=host)
    if comms:
        for comm in dict.fromkeys([*_user_comms(report), *_comms_in_text(report)]):
            r.learn("comm", comm)
    # A first pass learns the secrets and users that key=value pairs and paths reveal, so that
    # their other occurrences are redacted too, wherever they come in the report.
    first = Redactor(comms=comms)
    first.learn_from(r)
    first.value(report)
    r.learn_from(first)
    out = {k: (v if k == "schema_version" else r.value(v)) for k, v in report.items()}
    out["redaction"] = r.summary()
    return out


def redaction_note(summary: dict[str, Any]) -> str:
    """One line saying what a redaction replaced: ``redacted: 1 host name (4×), 2 secrets (3×)``."""
    parts = []
    for kind in KINDS:
        n = (summary.get("kinds") or {}).get(kind) or {}
        if n.get("occurrences"):
            one, many = _KIND_WORDS[kind]
            parts.append(f"{n['distinct']} {one if n['distinct'] == 1 else many} ({n['occurrences']}×)")
    extra = "" if summary.get("comm") else "; process names kept (--redact-comm to redact them)"
    return "redacted: " + (", ".join(parts) if parts else "nothing found to redact") + extra
