"""The canary sweep reads each task's fields in one block; it must agree with drgn's own reads."""

from __future__ import annotations

from drgn.helpers.linux.pid import for_each_task

from kpostmortem.helpers.stack import _CanaryReader
from kpostmortem.inputs.dump import open_dump

from .corpus import dump_meta


def test_block_read_of_task_fields_matches_drgn_field_by_field():
    for name in ("null-write", "null-write-612", "threads-2k"):
        meta = dump_meta(name)
        prog = open_dump(meta["path"], meta["vmlinux"], meta["debuginfo"]).prog
        reader = _CanaryReader(prog)
        assert reader.block is not None, name  # the one-read path is the one taken
        n = 0
        for task in for_each_task(prog):
            expected = (int(task.pid), task.comm.string_().decode(errors="replace"), int(task.stack),
                        int(task.__state))
            assert reader._task_fields(task) == expected, (name, expected)
            n += 1
        assert n > 50, name
