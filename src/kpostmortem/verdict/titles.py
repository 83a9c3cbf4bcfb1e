"""Titles people paste into tickets, and signatures that collide only for the same bug."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from kpostmortem.verdict.frames import base_name

_TITLE = {
    "null-pointer-dereference": "BUG: kernel NULL pointer dereference in {f}",
    "bad-page-fault": "BUG: unable to handle kernel paging request in {f}",
    "general-protection-fault": "general protection fault in {f}",
    "bug-assertion": "kernel BUG in {f}",
    "warning-escalated": "WARNING in {f} (panic_on_warn)",
    "warning": "WARNING in {f}",
    "stack-overflow": "kernel stack overflow in {f}",
    "stack-corruption": "kernel stack corruption in {f}",
    "explicit-panic": "kernel panic in {f}: {msg}",
    "deliberate-crash": "forced crash: {msg}",
    "soft-lockup": "BUG: soft lockup in {f}",
    "hard-lockup": "BUG: hard lockup in {f}",
    "hung-task": "INFO: task hung in {f}",
    "deadlock": "deadlock of {msg}",
    "deadlock/abba": "ABBA deadlock between {msg}",
    "rcu-stall": "INFO: rcu detected stall in {f}",
    "out-of-memory": "Kernel panic: out of memory, allocating in {f}",
    "memory-corruption": "memory corruption in {f}",
    "memory-corruption/use-after-free": "BUG: use-after-free in {f}",
    "memory-corruption/list": "list corruption in {f}",
    "memory-corruption/bad-page": "{v} in {f}",
    # debug-kernel reports (decode/reportkinds.py): their own words, as the kernel community's
    # trackers title them ("possible deadlock in f", "KMSAN: uninit-value in f")
    "locking-violation": "{v} in {f}",
    "invalid-context": "{v} in {f}",
    "memory-leak": "memory leak in {f}",
    "uninitialized-memory": "{v} in {f}",
    "data-race": "{v} in {f}",
    "undefined-behavior": "{v} in {f}",
    "invalid-opcode": "invalid opcode in {f}",
    "divide-error": "divide error in {f}",
    "hardware-error": "hardware error: {msg}",
    "unknown": "unknown crash in {f}",
}

# A debug report's words ({v}) when the report did not say them.
_PHRASE = {
    "locking-violation": "lock debugging report", "invalid-context": "atomic-context report",
    "uninitialized-memory": "use of uninitialized memory", "data-race": "data race",
    "undefined-behavior": "undefined behavior", "memory-corruption": "memory corruption",
}

_ADDR = re.compile(r"\b(0x)?[0-9a-f]{8,16}\b", re.I)
_FRAME_DECORATION = re.compile(r"\s*\[[^\]]*\]\s*$")
_NUM = re.compile(r"\b\d+\b")


def stable_text(text: str) -> str:
    """Replace addresses and numbers (which change between boots) with placeholders."""
    return _NUM.sub("N", _ADDR.sub("ADDR", text)).strip()


def make_title(category: str, function: str | None, module: str | None, message: str | None,
               variant: str | None = None, phrase: str | None = None) -> str:
    """The one-line title: category wording, the guilty function, ``[module]`` if not core.

    ``variant`` refines the wording within a category (``use-after-free`` or ``list`` for
    memory-corruption) without changing the category code; ``phrase`` is a debug report's own
    words ("possible deadlock", "KMSAN: uninit-value").
    """
    template = _TITLE.get(f"{category}/{variant}") or _TITLE.get(category, _TITLE["unknown"])
    msg = stable_text(message or "") or "no message"
    if len(msg) > 80:
        msg = msg[:77] + "..."
    title = template.format(f=function or "unknown function", msg=msg,
                            v=phrase or _PHRASE.get(category, category))
    if module:
        title += f" [{module}]"
    return title


def signature_name(frame: str | None) -> str | None:
    """A frame as the signature sees it: ``? foo.cold+0x28/0x30 [mod]`` → ``foo``.

    Offsets move with every build, gcc's clones (.cold, .constprop.N, .isra.N) with every
    compiler, and ``?`` marks only the unwinder's confidence.
    """
    if frame is None:
        return None
    name = _FRAME_DECORATION.sub("", frame.strip().removeprefix("? ")).split("+", 1)[0].strip()
    return base_name(name) or None


# Where every kernel stack starts (task entry, system-call dispatch, the idle loop's boot path):
# kernels rename and re-layer these (ret_from_fork_asm beside ret_from_fork since 6.7,
# x64_sys_call between do_syscall_64 and the syscall since 6.9, el0t_64_sync on arm64), so a
# signature that counted them would split one bug across a fleet's kernel generations.
ENTRY_FRAMES = frozenset({
    "ret_from_fork", "ret_from_fork_asm", "entry_SYSCALL_64", "entry_SYSCALL_64_after_hwframe",
    "entry_SYSCALL_64_safe_stack", "do_syscall_64", "x64_sys_call", "do_int80_syscall_32",
    "do_fast_syscall_32", "entry_SYSENTER_compat_after_hwframe", "entry_INT80_compat",
    "entry_SYSCALL_compat_after_hwframe", "el0t_64_sync", "el0t_64_sync_handler", "el0_svc",
    "do_el0_svc", "el0_svc_common", "invoke_syscall",
    "start_kernel", "rest_init", "arch_call_rest_init", "start_secondary", "secondary_startup_64",
    "secondary_startup_64_no_verify", "common_startup_64", "x86_64_start_kernel",
    "x86_64_start_reservations", "cpu_startup_entry", "do_idle", "secondary_start_kernel",
})


def make_signature(category: str, function: str | None, module: str | None,
                   context_frames: Sequence[str]) -> str:
    """A 12-hex-digit hash of category, guilty function, module and the next three distinct frames.

    Uses names only — no addresses, offsets, pids or times — so KASLR and reboots don't change it;
    frames are normalised by ``signature_name``, repeated ones (recursion) count once, and the
    stacks' entry frames (``ENTRY_FRAMES``) not at all, so kernel generations sign alike.
    """
    context: list[str] = []
    for frame in context_frames:
        name = signature_name(frame)
        if name and name not in context and name not in ENTRY_FRAMES:
            context.append(name)
    key = "|".join([category, signature_name(function) or "", module or "", *context[:3]])
    return hashlib.sha256(key.encode()).hexdigest()[:12]
