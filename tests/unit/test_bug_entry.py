"""Which string a relative bug_entry's file_disp means, on both of x86-64's layouts."""

from __future__ import annotations

import drgn
import pytest

from kpostmortem.helpers.fault import _bug_file

BASE = 0x1000


class _Memory:
    """Just enough of a drgn.Program: bytes at BASE, faults elsewhere."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, address: int, size: int) -> bytes:
        off = address - BASE
        if off < 0 or off + size > len(self.data):
            raise drgn.FaultError("out of range", address)
        return self.data[off : off + size]

    def read_c_string(self, address: int, max_size: int = 4096) -> bytes:
        off = address - BASE
        if off < 0 or off >= len(self.data):
            raise drgn.FaultError("out of range", address)
        return self.data[off:].split(b"\0", 1)[0][:max_size]


# a string table as a module's .rodata has it: the file name after another string
STRINGS = b"\0other string\0/root/.cache/kpm/crashpoc/crashpoc.c\0next\0"
PATH_AT = BASE + STRINGS.index(b"/root")
ENTRY = BASE + 0x800          # where the __bug_table entry sits; file_disp is its second int
FIELD = 4


@pytest.mark.parametrize("disp_from", ["field (newer kernels: .long val - .)", "entry start (5.10: .long val - 2b)"])
def test_the_file_name_is_read_whole_on_either_layout(disp_from):
    disp = PATH_AT - (ENTRY + FIELD) if disp_from.startswith("field") else PATH_AT - ENTRY
    mem = _Memory(STRINGS + b"\0" * 0x900)
    assert _bug_file(mem, ENTRY, FIELD, disp) == "/root/.cache/kpm/crashpoc/crashpoc.c"
