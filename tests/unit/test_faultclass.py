"""Tests for kpostmortem.decode.faultclass: #PF error codes, address classes, poison values."""

from hypothesis import given
from hypothesis import strategies as st

from kpostmortem.decode.faultclass import (
    classify_address,
    decode_pf_error_code,
    errno_name,
    is_canonical,
    recognize_poison,
)


def test_pf_write_kernel_not_present():
    code = decode_pf_error_code(0x0002)
    assert (code.present, code.write, code.user, code.instruction_fetch) == (
        False,
        True,
        False,
        False,
    )
    assert code.describe() == "write, kernel mode, page not present"


def test_pf_read_not_present():
    assert decode_pf_error_code(0).describe() == "read, kernel mode, page not present"


def test_pf_instruction_fetch_protection():
    # NX violation: present | instruction fetch
    code = decode_pf_error_code(0x11)
    assert code.present and code.instruction_fetch
    assert code.describe() == "instruction fetch, kernel mode, permissions violation"


def test_pf_reserved_pk_shadow_stack_sgx_bits():
    code = decode_pf_error_code(0x1 | 0x8 | 0x20 | 0x40 | 0x8000 | 0x4)
    assert code.reserved and code.protection_key and code.shadow_stack and code.sgx
    assert code.user
    assert code.describe().startswith("read, user mode, reserved bit violation")
    assert "shadow stack" in code.describe() and "SGX" in code.describe()


def test_pf_protection_keys_cause():
    assert decode_pf_error_code(0x21).cause == "protection keys violation"


def test_is_canonical_48_and_57():
    assert is_canonical(0x00007FFFFFFFFFFF)
    assert is_canonical(0xFFFF800000000000)
    assert not is_canonical(0x0000800000000000)
    assert not is_canonical(0xDEAD000000000100)
    assert is_canonical(0x00FF000000000000, va_bits=57)
    assert not is_canonical(0x00FF000000000000, va_bits=48)
    assert is_canonical(-1)


def test_classify_null_and_near_null():
    assert classify_address(0).kind == "null"
    near = classify_address(0x18)
    assert near.kind == "near-null" and "0x18" in near.description
    assert classify_address(0xFFF8).kind == "near-null"
    assert "ZERO_SIZE_PTR" in classify_address(0x10).description


def test_classify_user_kernel_and_regions():
    assert classify_address(0x7F4A1D6D9A37).kind == "user"
    kernel = classify_address(0xFFFFFFFFC0A2B000)
    assert kernel.kind == "kernel" and kernel.region == "module space"
    # KASLR moves the direct map, vmalloc and vmemmap bases: one area for all three.
    assert classify_address(0xFFFF8F3B42C1E000).region == "direct map, vmalloc or vmemmap"
    assert classify_address(0xFFFFB1C2C01D7E20).region == "direct map, vmalloc or vmemmap"
    assert classify_address(0xFFFFFFFF8E6A4EC4).region == "kernel image"


def test_classify_non_canonical_and_la57_note():
    addr = classify_address(0x00FF000000001234)
    assert addr.kind == "non-canonical" and "LA57" in addr.description
    assert classify_address(0x00FF000000001234, va_bits=57).kind == "user"


def test_classify_poison_before_non_canonical():
    addr = classify_address(0xDEAD000000000122)
    assert addr.kind == "poison" and addr.poison.startswith("LIST_POISON2")


def test_classify_err_ptr():
    addr = classify_address(-12)
    assert addr.kind == "err-ptr" and "ENOMEM" in addr.description
    assert classify_address(0xFFFFFFFFFFFFFDFB).kind == "err-ptr"  # -517 EPROBE_DEFER
    assert errno_name(-517) == "EPROBE_DEFER"


def test_list_poison_exact_and_offsets():
    assert recognize_poison(0xDEAD000000000100) == "LIST_POISON1 (list_del'd entry)"
    assert recognize_poison(0xDEAD000000000122) == "LIST_POISON2 (list_del'd entry)"
    assert recognize_poison(0xDEAD000000000108) == "LIST_POISON1+0x8 (list_del'd entry)"
    assert recognize_poison(0xDEAD0000000000F8) == "LIST_POISON1-0x8 (list_del'd entry)"
    assert recognize_poison(0xDEAD000000000300).startswith("TIMER_ENTRY_STATIC")


def test_slab_and_page_poison():
    assert recognize_poison(0x6B6B6B6B6B6B6B6B) == "slab free poison (use-after-free)"
    assert recognize_poison(0x6B6B6B6B6B6B6B73) == "slab free poison (use-after-free)"
    assert recognize_poison(0x6B6B6B6B) == "slab free poison (use-after-free)"
    assert recognize_poison(0x5A5A5A5A5A5A5A5A).startswith("slab POISON_INUSE")
    assert recognize_poison(0x6B6B6B6B6B6B6BA5) == "slab free poison (use-after-free)"
    assert recognize_poison(0xA5A5A5A5A5A5A5A5).startswith("slab POISON_END")
    assert recognize_poison(0xAAAAAAAAAAAAAAAA).startswith("PAGE_POISON")
    assert recognize_poison(0xCCCCCCCCCCCCCCCC).startswith("SLUB red zone")


def test_magic_values():
    assert recognize_poison(0xDEADBEEF) == "0xdeadbeef debug fill"
    assert recognize_poison(0xDEAD4EAD).startswith("SPINLOCK_MAGIC")
    assert recognize_poison(0x57AC6E9D).startswith("STACK_END_MAGIC")


def test_kasan_shadow_of_null():
    assert recognize_poison(0xDFFFFC0000000003) == (
        "KASAN shadow of NULL+0x18 (null-ptr-deref under KASAN)"
    )


def test_ordinary_values_are_not_poison():
    for value in (0, 0x18, 0xFFFFFFFFC0A2B000, 0xFFFF8F3B42C1E000, 0x7F4A1D6D9A37, 0x6B):
        assert recognize_poison(value) is None


@given(st.integers(min_value=-(1 << 70), max_value=1 << 70))
def test_classify_never_raises(value):
    result = classify_address(value)
    assert result.kind in {"null", "near-null", "err-ptr", "poison", "non-canonical", "user",
                           "kernel"}  # fmt: skip
    assert result.description


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_pf_describe_never_raises(value):
    assert decode_pf_error_code(value).describe()
