"""Tests for kpostmortem.decode.taint: the taint table and its decoders."""

from hypothesis import given
from hypothesis import strategies as st

from kpostmortem.decode.taint import (
    TAINT_FLAGS,
    decode_taint_letters,
    decode_taint_mask,
    format_taint,
    module_taint_letters,
    taint_mask_from_letters,
)


def letters(flags):
    return "".join(f.letter for f in flags)


def test_table_matches_kernel_bit_order():
    assert letters(TAINT_FLAGS) == "PFSRMBUDAWCIOELKXTNJ"
    assert [f.bit for f in TAINT_FLAGS] == list(range(len(TAINT_FLAGS)))
    assert {f.letter: f.name for f in TAINT_FLAGS}["O"] == "OOT_MODULE"
    assert {f.letter: f.name for f in TAINT_FLAGS}["D"] == "DIE"


def test_per_module_flags_are_the_kernels():
    assert letters(f for f in TAINT_FLAGS if f.module) == "PFCOEKXTNJ"


def test_decode_mask_oot_unsigned_died():
    # D (7), O (12), E (13)
    assert letters(decode_taint_mask((1 << 7) | (1 << 12) | (1 << 13))) == "DOE"


def test_decode_mask_ignores_unknown_bits_and_negative():
    assert letters(decode_taint_mask(1 << 40)) == ""
    assert letters(decode_taint_mask(-1)) == letters(TAINT_FLAGS)


def test_decode_letters_from_oops_line():
    assert letters(decode_taint_letters("Tainted: G      D    O E")) == "DOE"
    assert letters(decode_taint_letters("G           OEL    ")) == "OEL"


def test_decode_letters_proprietary_and_not_tainted():
    assert letters(decode_taint_letters("P           O     ")) == "PO"
    assert decode_taint_letters("Not tainted") == []
    assert decode_taint_letters("") == []


def test_decode_verbose_form_of_6_12():
    flags = decode_taint_letters("Tainted: [W]=WARN, [O]=OOT_MODULE, [E]=UNSIGNED_MODULE")
    assert letters(flags) == "WOE"


def test_decode_drgn_letters():
    assert letters(decode_taint_letters("POE")) == "POE"


def test_format_taint_like_print_tainted():
    mask = taint_mask_from_letters("DOE")
    assert format_taint(mask, flags_count=19) == "Tainted: G      D    OE     "
    assert format_taint(0) == "Not tainted"
    assert format_taint(1) == "Tainted: P" + " " * 19


def test_module_taint_letters_shows_only_module_flags():
    assert module_taint_letters((1 << 12) | (1 << 13)) == "OE"
    assert module_taint_letters((1 << 7) | (1 << 0)) == "P"  # D is not a module taint


@given(st.integers(min_value=0, max_value=(1 << len(TAINT_FLAGS)) - 1))
def test_format_and_decode_round_trip(mask):
    assert taint_mask_from_letters(format_taint(mask)) == mask


@given(st.text())
def test_decode_letters_never_raises(text):
    for flag in decode_taint_letters(text):
        assert flag in TAINT_FLAGS
