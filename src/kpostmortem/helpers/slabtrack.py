"""Who allocated and who freed a slab object: SLUB's alloc/free tracks (``slub_debug=U``).

With ``SLAB_STORE_USER`` a cache keeps, after each object's data, two ``struct track``: the
last allocation and the last free (the code address, CPU, pid, jiffies, and — with
CONFIG_STACKDEPOT — a stack-depot handle of the whole stack). For a use-after-free that is
the answer to "who freed it, and who allocated it", read from the dump.
"""

from __future__ import annotations

import re

import drgn
from drgn.helpers.linux.slab import slab_object_info

__all__ = ["object_tracks", "SLAB_STORE_USER"]

SLAB_STORE_USER = 0x00010000  # include/linux/slab.h
TRACK_ITEMS = ("alloc", "free")  # enum track_item (mm/slub.c)

# The allocator's own frames at the top of a track's stack: the caller below them is the user.
ALLOCATOR = re.compile(
    r"^(_{0,3}(kmalloc|kmem_cache|kfree|kvfree|kvmalloc|kzalloc|krealloc|kmemdup|kstrdup|slab|do_slab|"
    r"set_track|init_object|free_debug|alloc_debug|free_to_partial|do_kmalloc|kmalloc_trace)\w*)$")


def _name(prog: drgn.Program, pc: int) -> str | None:
    try:
        return prog.symbol(pc).name
    except LookupError:
        return None


def _info_end(cache: drgn.Object) -> int:
    """mm/slub.c get_info_end(): where the debug metadata starts after an object."""
    inuse, offset = int(cache.inuse), int(cache.offset)
    word = drgn.sizeof(cache.prog_.type("void *"))
    return inuse + word if offset >= inuse else inuse


def _track(prog: drgn.Program, track: drgn.Object) -> dict:
    out: dict = {"address": track.address_, "addr": int(track.addr), "function": _name(prog, int(track.addr)),
                 "cpu": int(track.cpu), "pid": int(track.pid), "when": int(track.when), "stack": []}
    pcs: list[int] = []
    try:
        from drgn.helpers.linux.stackdepot import stack_depot_fetch

        trace = stack_depot_fetch(track.handle)  # CONFIG_STACKDEPOT (5.17+ for SLUB)
        pcs = [f.pc for f in trace] if trace is not None else []
    except AttributeError:
        # Before the stack depot: unsigned long addrs[TRACK_ADDRS_COUNT], zero-terminated.
        try:
            pcs = [int(a) for a in track.addrs if int(a)]
        except AttributeError:
            pcs = []
    except (LookupError, ValueError, drgn.FaultError):
        pcs = []
    out["stack"] = [_name(prog, pc) or f"{pc:#x}" for pc in pcs]
    out["by"] = next((n for n in out["stack"] if not ALLOCATOR.match(n.split(".")[0])), out["function"])
    return out


def object_tracks(prog: drgn.Program, addr: int) -> dict | None:
    """The slab object holding ``addr`` and its alloc/free tracks.

    :return: None when ``addr`` is in no slab object; else {"cache", "object", "offset",
        "allocated", "store_user", "alloc", "free"} where each track has "function" (the
        allocator's caller address as a symbol), "by" (the first frame outside the allocator),
        "stack", "pid", "cpu", "when" (jiffies), "address" (of the struct track)
    """
    try:
        info = slab_object_info(prog, addr)
    except (drgn.FaultError, LookupError, ValueError, NotImplementedError):
        return None
    if info is None or not info.slab_cache:
        return None
    cache = info.slab_cache
    out: dict = {"cache": cache.name.string_().decode(errors="replace"), "object": info.address,
                 "offset": addr - info.address, "allocated": info.allocated,
                 "store_user": bool(int(cache.flags) & SLAB_STORE_USER)}
    if not out["store_user"]:
        return out
    try:
        track_type = prog.type("struct track")
        base = info.address + _info_end(cache)
        for i, item in enumerate(TRACK_ITEMS):
            track = drgn.Object(prog, track_type, address=base + i * drgn.sizeof(track_type))
            out[item] = _track(prog, track)
    except (LookupError, drgn.FaultError, ValueError) as e:
        out["problem"] = f"tracks not readable: {e}"
    return out
