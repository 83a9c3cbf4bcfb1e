"""Kernel taint flags: the kernel's table, and decoders for masks and "Tainted:" strings.

Mirrors ``taint_flags[]`` in kernel/panic.c and the TAINT_* bits in include/linux/panic.h.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "MODULE_TAINT_WORDS",
    "TAINT_FLAGS",
    "TaintFlag",
    "decode_taint_letters",
    "decode_taint_mask",
    "format_taint",
    "module_taint_letters",
    "taint_mask_from_letters",
]


@dataclass(frozen=True)
class TaintFlag:
    """One kernel taint flag (``struct taint_flag`` plus its bit number)."""

    bit: int
    """Bit number in ``tainted_mask`` and ``module->taints`` (``TAINT_*``)."""
    letter: str
    """Character printed when the flag is set (``c_true``)."""
    name: str
    """Kernel name without the ``TAINT_`` prefix, as in "[O]=OOT_MODULE"."""
    description: str
    """What the flag means, after Documentation/admin-guide/tainted-kernels.rst."""
    module: bool = False
    """True when the flag can also be a per-module taint (``taint_flag.module``)."""


TAINT_FLAGS: tuple[TaintFlag, ...] = (
    TaintFlag(0, "P", "PROPRIETARY_MODULE", "proprietary module was loaded", True),
    TaintFlag(1, "F", "FORCED_MODULE", "module was force loaded", True),
    TaintFlag(2, "S", "CPU_OUT_OF_SPEC", "kernel running on an out of specification system"),
    TaintFlag(3, "R", "FORCED_RMMOD", "module was force unloaded"),
    TaintFlag(4, "M", "MACHINE_CHECK", "processor reported a Machine Check Exception (MCE)"),
    TaintFlag(5, "B", "BAD_PAGE", "bad page referenced or some unexpected page flags"),
    TaintFlag(6, "U", "USER", "taint requested by userspace application"),
    TaintFlag(7, "D", "DIE", "kernel died recently, i.e. there was an OOPS or BUG"),
    TaintFlag(8, "A", "OVERRIDDEN_ACPI_TABLE", "an ACPI table was overridden by user"),
    TaintFlag(9, "W", "WARN", "kernel issued warning"),
    TaintFlag(10, "C", "CRAP", "staging driver was loaded", True),
    TaintFlag(11, "I", "FIRMWARE_WORKAROUND", "workaround for bug in platform firmware applied"),
    TaintFlag(12, "O", "OOT_MODULE", "externally-built (out-of-tree) module was loaded", True),
    TaintFlag(13, "E", "UNSIGNED_MODULE", "unsigned module was loaded", True),
    TaintFlag(14, "L", "SOFTLOCKUP", "soft lockup occurred"),
    TaintFlag(15, "K", "LIVEPATCH", "kernel has been live patched", True),
    TaintFlag(16, "X", "AUX", "auxiliary taint, defined for and used by distros", True),
    TaintFlag(17, "T", "RANDSTRUCT", "kernel was built with the struct randomization plugin", True),
    TaintFlag(18, "N", "TEST", "an in-kernel test has been run", True),
    TaintFlag(19, "J", "FWCTL", "userspace used a mutating debug operation in fwctl", True),
)
"""The kernel's taint table, in bit order (bit 19 ``J`` exists since Linux 6.15)."""

MODULE_TAINT_WORDS = {"O": "out-of-tree", "E": "unsigned", "P": "proprietary", "F": "force-loaded",
                      "C": "staging", "X": "auxiliary", "K": "livepatch", "T": "randstruct", "N": "test"}
"""Module taint letters in the words a report uses."""

_BY_LETTER = {flag.letter: flag for flag in TAINT_FLAGS}
_BY_NAME = {flag.name: flag for flag in TAINT_FLAGS}
_VERBOSE_ITEM = re.compile(r"\[([A-Z])\]=([A-Z_]+)")


def decode_taint_mask(mask: int) -> list[TaintFlag]:
    """Return the flags set in a ``tainted_mask`` value, in bit order.

    Bits the table does not know are ignored; a negative mask is read as unsigned 64-bit.
    """
    mask &= (1 << 64) - 1
    return [flag for flag in TAINT_FLAGS if mask >> flag.bit & 1]


def decode_taint_letters(s: str) -> list[TaintFlag]:
    """Return the flags named by a taint string, in bit order.

    Accepts the ``print_tainted()`` form ("Tainted: G      D    O E", with or without the
    "Tainted:" prefix), "Not tainted", drgn's letters ("POE"), and the verbose form
    ("[O]=OOT_MODULE, [E]=UNSIGNED_MODULE"). ``G`` and spaces mark unset positions; unknown
    characters are ignored.
    """
    text = s.strip()
    if text.lower().startswith("not tainted"):
        return []
    verbose = _VERBOSE_ITEM.findall(text)
    if verbose:
        found = {_BY_LETTER.get(letter) or _BY_NAME.get(name) for letter, name in verbose}
        return [flag for flag in TAINT_FLAGS if flag in found]
    if text.startswith("Tainted:"):
        text = text[len("Tainted:") :]
    letters = set(text)
    return [flag for flag in TAINT_FLAGS if flag.letter in letters]


def taint_mask_from_letters(s: str) -> int:
    """Return the ``tainted_mask`` value a taint string stands for (see decode_taint_letters)."""
    mask = 0
    for flag in decode_taint_letters(s):
        mask |= 1 << flag.bit
    return mask


def format_taint(mask: int, flags_count: int = len(TAINT_FLAGS)) -> str:
    """Format a mask the way ``print_tainted()`` does: "Not tainted" or "Tainted: G  ...".

    ``flags_count`` is the kernel's TAINT_FLAGS_COUNT (19 before 6.15, 20 since).
    """
    mask &= (1 << 64) - 1
    if not mask:
        return "Not tainted"
    chars = []
    for flag in TAINT_FLAGS[:flags_count]:
        if mask >> flag.bit & 1:
            chars.append(flag.letter)
        else:
            chars.append("G" if flag.letter == "P" else " ")
    return "Tainted: " + "".join(chars)


def module_taint_letters(mask: int) -> str:
    """Return the letters for a ``module->taints`` mask, like "OE" (``module_flags_taint()``).

    Only flags that can be per-module taints are shown, in bit order, as the kernel does.
    """
    return "".join(flag.letter for flag in decode_taint_mask(mask) if flag.module)
