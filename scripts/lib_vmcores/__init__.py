"""Helpers of scripts/make-vmcores: the real vmcore corpus generator."""

import contextlib
import fcntl
import sys
import threading
import time
from pathlib import Path

_log_lock = threading.Lock()
_t0 = time.monotonic()


def log(msg: str) -> None:
    with _log_lock:
        print(f"[{time.monotonic() - _t0:6.1f}s] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def flock(path: Path):
    """Hold an exclusive lock on ``path`` (created with its directory): make-vmcores runs may
    share a cache, and one prepares a kernel, chroot or userland at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ldd_paths(ldd_output: str) -> list[str]:
    """The absolute paths of the libraries and the dynamic loader that ``ldd`` printed."""
    libs = []
    for line in ldd_output.splitlines():
        parts = line.split()
        if "=>" in parts:
            p = parts[parts.index("=>") + 1]
            if p.startswith("/"):
                libs.append(p)
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])  # the dynamic loader
    return libs
