"""What differs by CPU architecture, one module each: x86_64.py, aarch64.py.

Pure (no drgn): instruction decoding, fault syndromes, the exception plumbing's function
names, pointer authentication.  Everything else in kpostmortem is generic and asks this
package for the architecture's part, by the name ``Dump.arch`` / ``DumpHeader.machine`` gives.
"""

from __future__ import annotations

from types import ModuleType

__all__ = ["SUPPORTED", "UnsupportedArchitecture", "get", "canonical_name", "supported"]

SUPPORTED = ("x86_64", "aarch64")
"""Architectures kpostmortem analyses (docs/architectures.md)."""

# ELF e_machine names (pyelftools) and utsname machines → one name per architecture.
_ALIASES = {
    "em_x86_64": "x86_64", "amd64": "x86_64", "x86-64": "x86_64",
    "em_aarch64": "aarch64", "arm64": "aarch64",
    "em_ppc64": "ppc64", "ppc64le": "ppc64le", "em_s390": "s390x", "s390": "s390x",
    "em_riscv": "riscv64", "em_386": "i386", "i686": "i386", "em_arm": "arm", "armv7l": "arm",
}


class UnsupportedArchitecture(LookupError):
    """A dump of an architecture kpostmortem does not analyse yet."""


def canonical_name(machine: str | None) -> str | None:
    """"EM_AARCH64", "arm64", "aarch64" → "aarch64"; "EM_S390" → "s390x"; None stays None."""
    if not machine:
        return None
    key = str(machine).strip().lower()
    return _ALIASES.get(key, key)


# Other architectures Linux runs on: a dump that names one of these is refused plainly. A
# machine field that names none of them is damage, not an architecture (left to the reader).
KNOWN = frozenset({*SUPPORTED, *_ALIASES.values(), "ppc", "ppc64", "ppc64le", "s390x", "riscv32",
                   "riscv64", "i386", "arm", "mips", "mips64", "loongarch64", "sparc64", "parisc64",
                   "alpha", "ia64", "m68k", "sh", "arc", "csky", "xtensa", "microblaze", "openrisc"})


def supported(machine: str | None) -> bool:
    """False only for a dump that names another architecture Linux runs on; True when
    ``machine`` is analysed, unknown, or not an architecture's name at all (damage)."""
    name = canonical_name(machine)
    return name is None or name in SUPPORTED or name not in KNOWN


def get(machine: str | None) -> ModuleType:
    """The module of an architecture (x86-64 when unknown); UnsupportedArchitecture else."""
    name = canonical_name(machine) or "x86_64"
    if name == "aarch64":
        from kpostmortem.arch import aarch64

        return aarch64
    if name == "x86_64":
        from kpostmortem.arch import x86_64

        return x86_64
    raise UnsupportedArchitecture(f"architecture not supported yet: {name} "
                                  f"(kpostmortem analyses {' and '.join(SUPPORTED)})")
