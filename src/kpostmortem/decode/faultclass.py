"""Classify x86-64 faults: page-fault error codes, fault addresses and poison values.

Pure functions on integers, after arch/x86/include/asm/trap_pf.h and include/linux/poison.h.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AddressClass",
    "PageFaultErrorCode",
    "classify_address",
    "decode_pf_error_code",
    "errno_name",
    "is_canonical",
    "recognize_poison",
]

_U64 = (1 << 64) - 1

# enum x86_pf_error_code (arch/x86/include/asm/trap_pf.h)
_PF_PROT = 1 << 0
_PF_WRITE = 1 << 1
_PF_USER = 1 << 2
_PF_RSVD = 1 << 3
_PF_INSTR = 1 << 4
_PF_PK = 1 << 5
_PF_SHSTK = 1 << 6
_PF_SGX = 1 << 15
_PF_RMP = 1 << 31


@dataclass(frozen=True)
class PageFaultErrorCode:
    """The bits of an x86 #PF error code (``enum x86_pf_error_code``)."""

    raw: int
    """The error code as the CPU pushed it."""
    present: bool
    """X86_PF_PROT: the page was present (a protection violation), else not present."""
    write: bool
    """X86_PF_WRITE: the access was a write."""
    user: bool
    """X86_PF_USER: the access came from user mode."""
    reserved: bool
    """X86_PF_RSVD: a reserved bit was set in a paging-structure entry."""
    instruction_fetch: bool
    """X86_PF_INSTR: the access was an instruction fetch."""
    protection_key: bool
    """X86_PF_PK: a protection-keys violation."""
    shadow_stack: bool
    """X86_PF_SHSTK: a shadow-stack access."""
    sgx: bool
    """X86_PF_SGX: an SGX-specific violation."""
    rmp: bool = False
    """X86_PF_RMP: an SEV-SNP RMP violation."""

    @property
    def access(self) -> str:
        """ "instruction fetch", "write" or "read", in the kernel's order of precedence."""
        if self.instruction_fetch:
            return "instruction fetch"
        return "write" if self.write else "read"

    @property
    def cause(self) -> str:
        """Why the access faulted, worded as the kernel's "#PF: error_code(...) - ..." line."""
        if not self.present:
            return "not-present page"
        if self.reserved:
            return "reserved bit violation"
        if self.protection_key:
            return "protection keys violation"
        return "permissions violation"

    def describe(self) -> str:
        """Short description, e.g. "write, kernel mode, page not present"."""
        parts = [self.access, "user mode" if self.user else "kernel mode"]
        parts.append("page not present" if not self.present else self.cause)
        if self.shadow_stack:
            parts.append("shadow stack access")
        if self.sgx:
            parts.append("SGX violation")
        if self.rmp:
            parts.append("RMP violation")
        return ", ".join(parts)


def decode_pf_error_code(code: int) -> PageFaultErrorCode:
    """Decode a #PF error code such as the 0x0002 of "#PF: error_code(0x0002)"."""
    code &= _U64
    return PageFaultErrorCode(
        raw=code,
        present=bool(code & _PF_PROT),
        write=bool(code & _PF_WRITE),
        user=bool(code & _PF_USER),
        reserved=bool(code & _PF_RSVD),
        instruction_fetch=bool(code & _PF_INSTR),
        protection_key=bool(code & _PF_PK),
        shadow_stack=bool(code & _PF_SHSTK),
        sgx=bool(code & _PF_SGX),
        rmp=bool(code & _PF_RMP),
    )


def is_canonical(addr: int, va_bits: int = 48) -> bool:
    """True when ``addr`` is canonical for ``va_bits`` virtual-address bits.

    48 for 4-level paging, 57 for 5-level paging (LA57): bits 63..va_bits-1 must all be
    equal. Negative ints are read as unsigned 64-bit.
    """
    if not 1 <= va_bits <= 64:
        return False
    addr &= _U64
    top = addr >> (va_bits - 1)
    return top == 0 or top == (1 << (65 - va_bits)) - 1


@dataclass(frozen=True)
class AddressClass:
    """What kind of address a fault address or pointer value is."""

    kind: str
    """One of "null", "near-null", "err-ptr", "poison", "non-canonical", "user", "kernel"."""
    description: str
    """One sentence for a human reader."""
    poison: str | None
    """The recognised poison pattern (see recognize_poison), or None."""
    region: str | None = None
    """For kernel addresses, the x86-64 4-level layout region ("module space", ...)."""


# Linux errno names for ERR_PTR values (include/uapi/asm-generic/errno*.h, linux/errno.h).
# fmt: off
_ERRNO_NAMES = {
    1: "EPERM", 2: "ENOENT", 3: "ESRCH", 4: "EINTR", 5: "EIO", 6: "ENXIO", 7: "E2BIG",
    8: "ENOEXEC", 9: "EBADF", 10: "ECHILD", 11: "EAGAIN", 12: "ENOMEM", 13: "EACCES",
    14: "EFAULT", 15: "ENOTBLK", 16: "EBUSY", 17: "EEXIST", 18: "EXDEV", 19: "ENODEV",
    20: "ENOTDIR", 21: "EISDIR", 22: "EINVAL", 23: "ENFILE", 24: "EMFILE", 25: "ENOTTY",
    26: "ETXTBSY", 27: "EFBIG", 28: "ENOSPC", 29: "ESPIPE", 30: "EROFS", 31: "EMLINK",
    32: "EPIPE", 33: "EDOM", 34: "ERANGE", 35: "EDEADLK", 36: "ENAMETOOLONG", 37: "ENOLCK",
    38: "ENOSYS", 39: "ENOTEMPTY", 40: "ELOOP", 42: "ENOMSG", 43: "EIDRM", 61: "ENODATA",
    62: "ETIME", 71: "EPROTO", 74: "EBADMSG", 75: "EOVERFLOW", 84: "EILSEQ",
    90: "EMSGSIZE", 95: "EOPNOTSUPP", 98: "EADDRINUSE", 99: "EADDRNOTAVAIL",
    100: "ENETDOWN", 101: "ENETUNREACH", 103: "ECONNABORTED", 104: "ECONNRESET",
    105: "ENOBUFS", 107: "ENOTCONN", 110: "ETIMEDOUT", 111: "ECONNREFUSED",
    113: "EHOSTUNREACH", 114: "EALREADY", 115: "EINPROGRESS", 116: "ESTALE",
    121: "EREMOTEIO", 122: "EDQUOT", 125: "ECANCELED", 126: "ENOKEY", 129: "EKEYREJECTED",
    512: "ERESTARTSYS", 513: "ERESTARTNOINTR", 514: "ERESTARTNOHAND", 515: "ENOIOCTLCMD",
    516: "ERESTART_RESTARTBLOCK", 517: "EPROBE_DEFER", 518: "EOPENSTALE",
    519: "ENOPARAM", 521: "EBADHANDLE", 524: "ENOTSUPP", 526: "ESERVERFAULT",
    528: "EJUKEBOX", 529: "EIOCBQUEUED", 530: "ERECALLCONFLICT",
}
# fmt: on

MAX_ERRNO = 4095
"""Largest errno an ERR_PTR can carry (include/linux/err.h)."""


def errno_name(err: int) -> str | None:
    """The symbolic name of a (positive or negative) Linux errno, or None if not known."""
    return _ERRNO_NAMES.get(abs(err))


# x86-64 4-level layout (Documentation/arch/x86/x86_64/mm.rst). With KASLR
# (CONFIG_RANDOMIZE_MEMORY) the direct map, vmalloc and vmemmap bases move around inside
# one area, so that area is named as a whole.
_KERNEL_REGIONS: tuple[tuple[int, int, str], ...] = (
    (0xFFFF800000000000, 0xFFFF887FFFFFFFFF, "guard hole / LDT remap"),
    (0xFFFF888000000000, 0xFFFFFDFFFFFFFFFF, "direct map, vmalloc or vmemmap"),
    (0xFFFFFE0000000000, 0xFFFFFE7FFFFFFFFF, "cpu_entry_area"),
    (0xFFFFFF0000000000, 0xFFFFFF7FFFFFFFFF, "%esp fixup stacks"),
    (0xFFFFFFEF00000000, 0xFFFFFFFEFFFFFFFF, "EFI runtime mappings"),
    (0xFFFFFFFF80000000, 0xFFFFFFFF9FFFFFFF, "kernel image"),
    (0xFFFFFFFFA0000000, 0xFFFFFFFFBFFFFFFF, "kernel image or modules"),
    (0xFFFFFFFFC0000000, 0xFFFFFFFFFEFFFFFF, "module space"),
    (0xFFFFFFFFFF000000, 0xFFFFFFFFFF5FFFFF, "fixmap"),
    (0xFFFFFFFFFF600000, 0xFFFFFFFFFF600FFF, "legacy vsyscall page"),
)


def _kernel_region(addr: int) -> str | None:
    for start, end, name in _KERNEL_REGIONS:
        if start <= addr <= end:
            return name
    return None


def classify_address(
    addr: int, *, page_size: int = 4096, null_window: int = 0x10000, va_bits: int = 48
) -> AddressClass:
    """Classify an address seen in a fault (CR2, an effective address, a register).

    ``null_window`` is how far above 0 an address still counts as "NULL plus a member
    offset" (x86's default mmap_min_addr is 64 KiB); ``va_bits`` is 48, or 57 with LA57.
    Negative ints are read as unsigned 64-bit.
    """
    addr &= _U64
    if addr == 0:
        return AddressClass("null", "NULL pointer", None)
    if addr < null_window:
        where = "first page" if addr < page_size else f"first {null_window:#x} bytes"
        text = f"NULL + {addr:#x} (a member of a struct reached through a NULL pointer, {where})"
        if addr == 0x10:
            text += "; also ZERO_SIZE_PTR, what kmalloc(0) returns"
        return AddressClass("near-null", text, None)
    if addr >= (1 << 64) - MAX_ERRNO:
        err = (1 << 64) - addr
        name = errno_name(err)
        shown = f"-{name}" if name else f"-{err}"
        return AddressClass("err-ptr", f"ERR_PTR({shown}): an error code used as a pointer", None)
    poison = recognize_poison(addr)
    canonical = is_canonical(addr, va_bits)
    if poison is not None:
        note = "" if canonical else ", non-canonical"
        return AddressClass("poison", f"poison value {poison}{note}", poison)
    if not canonical:
        text = f"non-canonical address for {va_bits}-bit virtual addresses (access raises #GP)"
        if va_bits < 57 and is_canonical(addr, 57):
            text += "; canonical only with 5-level paging (LA57)"
        return AddressClass("non-canonical", text, None)
    if addr >> 63 == 0:
        return AddressClass("user", "user-space address", None)
    region = _kernel_region(addr) if va_bits == 48 else None
    text = "kernel address" + (f" ({region})" if region else "")
    return AddressClass("kernel", text, None, region)


_POISON_DELTA = 0xDEAD000000000000
_DELTA_POISONS = {
    0x100: "LIST_POISON1 (list_del'd entry)",
    0x122: "LIST_POISON2 (list_del'd entry)",
    0x300: "TIMER_ENTRY_STATIC (static timer entry)",
    0x400: "TAIL_MAPPING (compound tail page mapping)",
    0x500: "MUTEX_POISON_WW_CTX (ww_mutex context poison)",
    0x40: "PP_SIGNATURE (page_pool page)",
    0x800: "SKB_LIST_POISON_NEXT (skb list poison)",
    0x801: "NET_PTR_POISON (net pointer poison)",
    0xEB9F: "BPF_PTR_POISON (bpf pointer poison)",
    0xF5: "VFS_PTR_POISON (vfs pointer poison)",
    0xD390: "STACK_DEPOT_POISON (stack depot poison)",
}
_BYTE_POISONS = {
    0x6B: "slab free poison (use-after-free)",
    0x5A: "slab POISON_INUSE (uninitialised slab object)",
    0xA5: "slab POISON_END (end of a poisoned object)",
    0xCC: "SLUB red zone of an active object / POISON_FREE_INITMEM",
    0xBB: "SLUB red zone of an inactive object",
    0xAA: "PAGE_POISON (freed page) or pattern-initialised stack variable",
    0x5B: "JBD_POISON_FREE (freed journal buffer)",
    0x5C: "JBD2_POISON_FREE (freed journal buffer)",
    0xA7: "POOL_POISON_FREED (freed dma pool block)",
    0xA9: "POOL_POISON_ALLOCATED (uninitialised dma pool block)",
    0xBD: "KEY_DESTROY (destroyed key)",
}
_EXACT_POISONS = {
    0xDEADBEEF: "0xdeadbeef debug fill",
    0xDEADBEEFDEADBEEF: "0xdeadbeef debug fill",
    0xFFFFFFFFDEADBEEF: "0xdeadbeef debug fill (sign-extended)",
    0xDEAD4EAD: "SPINLOCK_MAGIC (debug spinlock magic)",
    0xDEAF1EED: "RWLOCK_MAGIC (debug rwlock magic)",
    0x57AC6E9D: "STACK_END_MAGIC (stack end canary)",
    0x09F911029D74E35B: "SLAB RED_INACTIVE red zone",
    0xD84156C5635688C0: "SLAB RED_ACTIVE red zone",
}
_KASAN_SHADOW_OFFSET = 0xDFFFFC0000000000
_KASAN_USER_SHADOW_END = _KASAN_SHADOW_OFFSET + (0x0000800000000000 >> 3)


def _repeat(byte: int, count: int) -> int:
    return int.from_bytes(bytes([byte]) * count, "little")


def recognize_poison(value: int) -> str | None:
    """Name a well-known poison or magic pattern in a 64-bit value, or None.

    Recognises the POISON_POINTER_DELTA family (LIST_POISON1/2 and friends, also a little
    below or above them, as a container_of() or member offset leaves them), slab and page
    poison bytes repeated over 4 or 8 bytes (the low 16 bits may differ: a member offset
    added to a poisoned pointer), debug magics, and KASAN shadow addresses of user/NULL
    pointers (0xdffffc...).
    """
    value &= _U64
    exact = _EXACT_POISONS.get(value)
    if exact is not None:
        return exact
    if _POISON_DELTA <= value < _POISON_DELTA + 0x10000:
        off = value - _POISON_DELTA
        if off in _DELTA_POISONS:
            return _DELTA_POISONS[off]
        for base in (0x100, 0x122):
            if abs(off - base) <= 0x100:
                label, _, meaning = _DELTA_POISONS[base].partition(" ")
                sign = "+" if off > base else "-"
                return f"{label}{sign}{abs(off - base):#x} {meaning}"
        return f"POISON_POINTER_DELTA+{off:#x} (poisoned pointer)"
    if _KASAN_SHADOW_OFFSET <= value < _KASAN_USER_SHADOW_END:
        shadowed = (value - _KASAN_SHADOW_OFFSET) << 3
        if shadowed < 0x10000:
            return f"KASAN shadow of NULL+{shadowed:#x} (null-ptr-deref under KASAN)"
        return f"KASAN shadow of user address {shadowed:#x}"
    for byte, name in _BYTE_POISONS.items():
        if value >> 16 == _repeat(byte, 6) or value == _repeat(byte, 4):
            return name
    return None
