"""Version ordering as package managers do it: Debian's dpkg and RPM's rpmvercmp, release ranges
(``>=6.1, <6.13``), and the comparable versions of a running kernel (``uname -r`` and ``-v``).

Pure: strings in, ints and dataclasses out. Used by the known-bugs matcher (``verdict/known.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "SCHEMES",
    "KernelVersions",
    "VersionError",
    "VersionRange",
    "compare",
    "deb_compare",
    "kernel_versions",
    "rpm_compare",
    "rpmvercmp",
]

SCHEMES = ("deb", "rpm")


class VersionError(ValueError):
    """A version or range string that cannot be parsed; the message says what is wrong."""


# --------------------------------------------------------------------------- dpkg

_DEB_CHARS = re.compile(r"[A-Za-z0-9.+~-]+")


def _deb_order(c: str) -> int:
    """dpkg's character weight: ``~`` sorts before everything (even the end), letters before
    the other symbols, the end of a part as 0."""
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _deb_part_cmp(a: str, b: str) -> int:
    """dpkg's ``verrevcmp``: alternate non-digit runs (by character weight) and digit runs (by value)."""
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _deb_order(a[i]) if i < len(a) else 0
            bc = _deb_order(b[j]) if j < len(b) else 0
            if ac != bc:
                return -1 if ac < bc else 1
            i += 1
            j += 1
        si, sj = i, j
        while i < len(a) and a[i].isdigit():
            i += 1
        while j < len(b) and b[j].isdigit():
            j += 1
        na, nb = int(a[si:i] or 0), int(b[sj:j] or 0)
        if na != nb:
            return -1 if na < nb else 1
    return 0


def _deb_split(v: str) -> tuple[int, str, str]:
    """``[epoch:]upstream[-revision]`` → (epoch, upstream, revision); the revision is after the last ``-``."""
    v = v.strip()
    epoch = 0
    if ":" in v:
        e, v = v.split(":", 1)
        if not e.isdigit():
            raise VersionError(f"epoch {e!r} is not a number")
        epoch = int(e)
    if not v or not _DEB_CHARS.fullmatch(v):
        raise VersionError(f"{v!r} is not a Debian version (digits, letters and . + ~ - only)")
    upstream, _, revision = v.rpartition("-") if "-" in v else (v, "", "")
    if "-" in v and not revision:
        raise VersionError(f"{v!r}: the revision after the last '-' is empty")
    if not upstream or not upstream[0].isdigit():
        raise VersionError(f"{v!r}: a version starts with a digit")
    return epoch, upstream, revision


def deb_compare(a: str, b: str) -> int:
    """Compare two Debian versions as ``dpkg --compare-versions`` does: -1, 0 or 1.

    ``6.1.0-57 < 6.1.0-60``, ``6.1~rc3 < 6.1``, ``6.1.192-3 < 6.1.192-3+deb12u1``, ``1:5.0 > 6.1``.
    """
    ea, ua, ra = _deb_split(a)
    eb, ub, rb = _deb_split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _deb_part_cmp(ua, ub) or _deb_part_cmp(ra, rb)


# --------------------------------------------------------------------------- RPM


_RPM_SEP = re.compile(r"^[^A-Za-z0-9~^]+")
_RPM_DIGITS = re.compile(r"[0-9]+")
_RPM_ALPHA = re.compile(r"[A-Za-z]+")


def rpmvercmp(a: str, b: str) -> int:
    """RPM's ``rpmvercmp`` on one version or release field: -1, 0 or 1.

    Runs of digits compare as numbers and beat runs of letters; other characters only separate;
    ``~`` sorts before anything (pre-releases), ``^`` after the end but before more text (snapshots).
    """
    if a == b:
        return 0
    one, two = a, b
    while one or two:
        one, two = _RPM_SEP.sub("", one, count=1), _RPM_SEP.sub("", two, count=1)
        if one.startswith("~") or two.startswith("~"):
            if not one.startswith("~"):
                return 1
            if not two.startswith("~"):
                return -1
            one, two = one[1:], two[1:]
            continue
        if one.startswith("^") or two.startswith("^"):
            if not one:
                return -1
            if not two:
                return 1
            if not one.startswith("^"):
                return 1
            if not two.startswith("^"):
                return -1
            one, two = one[1:], two[1:]
            continue
        if not (one and two):
            break
        isnum = one[0] in "0123456789"
        run = _RPM_DIGITS if isnum else _RPM_ALPHA
        m1, m2 = run.match(one), run.match(two)
        seg1 = m1.group() if m1 else ""
        seg2 = m2.group() if m2 else ""
        if not seg1:  # cannot happen: one[0] is alphanumeric
            return -1
        if not seg2:
            return 1 if isnum else -1
        one, two = one[len(seg1):], two[len(seg2):]
        if isnum:
            seg1, seg2 = seg1.lstrip("0"), seg2.lstrip("0")
            if len(seg1) != len(seg2):
                return -1 if len(seg1) < len(seg2) else 1
        if seg1 != seg2:
            return -1 if seg1 < seg2 else 1
    if not one and not two:
        return 0
    return 1 if one else -1


def _rpm_split(v: str) -> tuple[int, str, str | None]:
    v = v.strip()
    if not v or any(c.isspace() for c in v):
        raise VersionError(f"{v!r} is not an RPM version")
    epoch = 0
    m = re.match(r"(\d+):(.*)", v)
    if m:
        epoch, v = int(m.group(1)), m.group(2)
    version, sep, release = v.rpartition("-")
    if not sep:
        return epoch, v, None
    if not version:
        raise VersionError(f"{v!r} is not an RPM version")
    return epoch, version, release


def rpm_compare(a: str, b: str) -> int:
    """Compare two RPM ``[epoch:]version[-release]`` strings as rpm does: -1, 0 or 1.

    A release present on one side only is not compared (``5.14.0`` matches any ``5.14.0-…``).
    """
    ea, va, ra = _rpm_split(a)
    eb, vb, rb = _rpm_split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    c = rpmvercmp(va, vb)
    if c or ra is None or rb is None:
        return c
    return rpmvercmp(ra, rb)


def compare(a: str, b: str, scheme: str = "deb") -> int:
    """Compare ``a`` and ``b`` with the ordering of ``scheme`` (``deb`` or ``rpm``): -1, 0 or 1."""
    if scheme == "rpm":
        return rpm_compare(a, b)
    if scheme == "deb":
        return deb_compare(a, b)
    raise VersionError(f"unknown version scheme {scheme!r} (deb or rpm)")


# --------------------------------------------------------------------------- ranges

_OPS = {
    ">=": lambda c: c >= 0,
    "<=": lambda c: c <= 0,
    ">": lambda c: c > 0,
    "<": lambda c: c < 0,
    "==": lambda c: c == 0,
    "=": lambda c: c == 0,
    "!=": lambda c: c != 0,
}
_CONSTRAINT = re.compile(r"\s*(>=|<=|==|!=|>|<|=)?\s*([^\s,<>=!]+)\s*")


@dataclass(frozen=True)
class VersionRange:
    """A comma-separated list of constraints, all of which must hold: ``>=6.1, <6.13``.

    Operators ``>= <= > < == = !=``; a bare version ``6.1`` means that series: ``6.1`` itself and
    every version that continues it after ``.``, ``-``, ``+`` or ``~`` (``6.1.0-57``, not ``6.12``).
    """

    text: str
    constraints: tuple[tuple[str, str], ...]
    """(operator, version) pairs; the operator ``series`` for a bare version."""

    @classmethod
    def parse(cls, text: str) -> VersionRange:
        parts = [p for p in text.split(",")]
        if not text.strip() or any(not p.strip() for p in parts):
            raise VersionError(f"empty constraint in range {text!r}")
        out = []
        for p in parts:
            m = _CONSTRAINT.fullmatch(p)
            if not m:
                raise VersionError(f"cannot read {p.strip()!r} in range {text!r} (e.g. \">=6.1, <6.13\")")
            op, version = m.group(1) or "series", m.group(2)
            if not version[0].isdigit():
                raise VersionError(f"{version!r} in range {text!r}: a version starts with a digit")
            out.append((op, version))
        return cls(text.strip(), tuple(out))

    def contains(self, version: str | KernelVersions, scheme: str = "deb") -> bool:
        """Whether ``version`` (a version string, or a running kernel's versions) satisfies every constraint."""
        for op, bound in self.constraints:
            v = version.for_bound(bound) if isinstance(version, KernelVersions) else version
            if op == "series":
                if not (v == bound or (v.startswith(bound) and v[len(bound)] in ".-+~")):
                    return False
            elif not _OPS[op](compare(v, bound, scheme)):
                return False
        return True


# --------------------------------------------------------------------------- running kernels

_ARCH_SUFFIX = re.compile(r"\.(x86_64|aarch64|ppc64le|ppc64|s390x|i686|armv7hl|noarch|riscv64)(\+\w+)?$")
_RPM_DISTS = re.compile(r"\.(el|fc|amzn|oe|an|ol|mga)\d")


@dataclass(frozen=True)
class KernelVersions:
    """What a running kernel's version can be compared as.

    ``release``: ``uname -r`` without its flavour and architecture (``6.1.0-57-cloud-amd64`` →
    ``6.1.0-57``, ``5.14.0-427.13.1.el9_4.x86_64`` → ``5.14.0-427.13.1.el9_4``); ``package``: the
    kernel package's version when ``uname -v`` says it (Debian's ``… Debian 6.1.192-3 (…)``, Ubuntu's
    ``#101-Ubuntu`` → ``5.15.0-91.101``); ``scheme``: ``rpm`` for Red Hat-style releases, else ``deb``.
    """

    uname_release: str
    release: str
    package: str | None
    scheme: str

    def upstream(self) -> str:
        return _upstream(self.release)

    def for_bound(self, bound: str) -> str:
        """The version to compare with ``bound``: the release when ``bound`` is written like one
        (same upstream part: ``6.1.0-60`` against ``6.1.0-57``) or no package version is known,
        else the package version (``6.1.190-1`` or ``6.13`` against ``6.1.192-3``)."""
        if self.package and _upstream(bound) != self.upstream():
            return self.package
        return self.release

    def describe(self, used: str) -> str:
        """``6.1.0-57`` or ``6.1.192-3 (6.1.0-57-cloud-amd64)``: what the machine runs, as compared."""
        return used if used == self.release else f"{used} ({self.uname_release})"


def _upstream(v: str) -> str:
    v = v.split(":", 1)[1] if re.match(r"\d+:", v) else v
    return v.split("-", 1)[0]


def kernel_versions(release: str, uname_version: str | None = None) -> KernelVersions:
    """The comparable versions of a kernel from its ``uname -r`` and ``uname -v`` strings."""
    rel = release.strip()
    arch = _ARCH_SUFFIX.search(rel)
    if arch:
        rel = rel[: arch.start()]
    parts = rel.split("-")
    kept = [parts[0]]
    for p in parts[1:]:
        # A flavour (-cloud-amd64, -generic, -default) starts with a letter; -rc3 is a version.
        if p[:1].isalpha() and not re.fullmatch(r"rc\d+", p):
            break
        kept.append(p)
    rel = "-".join(kept)
    package = None
    uv = uname_version or ""
    m = re.search(r"\bDebian (\d\S*)", uv)
    if m:
        package = m.group(1)
    else:
        m = re.match(r"#(\d+)(?:~\S+)?-Ubuntu\b", uv)
        if m:
            package = f"{rel}.{m.group(1)}"
    scheme = "rpm" if _RPM_DISTS.search(release) else "deb"
    return KernelVersions(release.strip(), rel, package, scheme)
