"""A tiny writer for the cpio "newc" format the kernel unpacks as an initramfs.

Written here (stdlib only) so the initramfs is built the same way on every
machine, without depending on the host's cpio or on a root-owned /dev.
Archives can be concatenated: the kernel unpacks them one after the other,
which is how a per-scenario /etc/kpm.env is laid over a per-kernel base.
"""

from __future__ import annotations

import stat
from pathlib import Path

_ALIGN = 4


def _pad(n: int) -> bytes:
    return b"\0" * ((-n) % _ALIGN)


class CpioWriter:
    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._ino = 1
        self._dirs: set[str] = set()
        self._names: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0),
               nlink: int = 1) -> None:
        name = name.lstrip("/")
        bname = name.encode() + b"\0"
        fields = [
            self._ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(bname), 0,
        ]
        self._ino += 1
        hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._chunks.append(hdr + bname + _pad(len(hdr) + len(bname)))
        if data:
            self._chunks.append(data + _pad(len(data)))

    def _parents(self, name: str) -> None:
        parts = name.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.mkdir("/".join(parts[:i]))

    def mkdir(self, name: str, mode: int = 0o755) -> None:
        name = name.strip("/")
        if not name or name in self._dirs:
            return
        self._parents(name)
        self._dirs.add(name)
        self._entry(name, stat.S_IFDIR | mode, nlink=2)

    def add_bytes(self, name: str, data: bytes, mode: int = 0o644) -> None:
        name = name.strip("/")
        if name in self._names:
            return
        self._parents(name)
        self._names.add(name)
        self._entry(name, stat.S_IFREG | mode, data)

    def add_file(self, name: str, src: Path | str, mode: int | None = None) -> None:
        src = Path(src)
        if mode is None:
            mode = 0o755 if src.stat().st_mode & 0o111 else 0o644
        self.add_bytes(name, src.read_bytes(), mode)

    def symlink(self, name: str, target: str) -> None:
        name = name.strip("/")
        if name in self._names:
            return
        self._parents(name)
        self._names.add(name)
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._parents(name)
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def getvalue(self) -> bytes:
        trailer = CpioWriter()
        trailer._entry("TRAILER!!!", 0)
        return b"".join(self._chunks) + b"".join(trailer._chunks)
