"""Source locations as people read them: paths relative to the kernel tree."""

from __future__ import annotations

import re

__all__ = ["normalize_source_path"]

_BUILD_ROOT = re.compile(r"^.*?/linux-[^/]*/")


def normalize_source_path(path: str) -> str:
    """Drop the build machine's prefix from a DWARF file name.

    ``/build/reproducible-path/linux-6.1.192/fs/read_write.c`` → ``fs/read_write.c``;
    an out-of-tree module's absolute path keeps its file name only.
    """
    m = _BUILD_ROOT.match(path)
    if m:
        return path[m.end() :]
    if path.startswith("./"):
        return path[2:]
    if path.startswith("/"):
        return path.rsplit("/", 1)[-1]
    return path
