"""Helpers of scripts/make-vmcores: the real vmcore corpus generator."""

import sys
import threading
import time

_log_lock = threading.Lock()
_t0 = time.monotonic()


def log(msg: str) -> None:
    with _log_lock:
        print(f"[{time.monotonic() - _t0:6.1f}s] {msg}", file=sys.stderr, flush=True)
