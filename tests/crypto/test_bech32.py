"""Bech32 as age uses it: BIP-173 checksums, one case per string, no length limit, no bech32m."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backup_addon.crypto import bech32
from backup_addon.crypto.bech32 import _hrp_expand, _polymod

SETTINGS = settings(database=None, deadline=None, max_examples=200)

# Valid strings from BIP-173's test vectors (checksums computed over the lowercase form).
VALID = [
    "A12UEL5L",
    "a12uel5l",
    "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    "11" + "q" * 82 + "c8247j",
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    "?1ezyfcl",
    # Over BIP-173's 90-character limit, which age does not apply.
    "an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pvx",
]

# Invalid strings from BIP-173, and bech32m (BIP-350), which age does not use.
INVALID = [
    "\x201nwldj5",  # HRP character out of range
    "\x7f1axkwrx",
    "\x801eym55h",
    "pzry9x0s0muk",  # no separator
    "1pzry9x0s0muk",  # empty HRP
    "x1b4n0q5v",  # invalid data character
    "li1dgmt3",  # too short checksum
    "de1lg7wt\xff",  # invalid character in checksum
    "A1G7SGD8",  # checksum calculated with uppercase HRP
    "10a06t8",  # empty HRP
    "1qzzfhee",  # empty HRP
    "a12UEL5L",  # mixed case
    "A12uEL5L",
    "a1lqfn3a",  # a valid bech32m string
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxx",  # last character changed
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lqqqxw",  # a character missing
]


@pytest.mark.parametrize("text", VALID)
def test_bip173_valid_strings_decode_and_reencode(text):
    hrp, data = bech32.decode(text)
    assert hrp == text[: text.rfind("1")]
    assert bech32.encode(hrp, data) == text


@pytest.mark.parametrize("text", INVALID)
def test_bip173_invalid_strings_are_rejected_without_echoing_them(text):
    with pytest.raises(bech32.Bech32Error) as info:
        bech32.decode(text)
    assert text not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_non_zero_padding_is_rejected():
    # 1 byte = 8 bits -> two 5-bit groups with 2 padding bits, which must be zero.
    good = bech32.encode("age", b"\xff")
    _hrp, data = bech32.decode(good)
    assert data == b"\xff"
    values = [31, 31]  # 10 bits: the last two padding bits are set
    polymod = _polymod([*_hrp_expand("age"), *values, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(polymod >> (5 * (5 - i))) & 31 for i in range(6)]
    bad = "age1" + "".join(bech32.CHARSET[v] for v in values + checksum)
    with pytest.raises(bech32.Bech32Error, match="padding"):
        bech32.decode(bad)


def test_uppercase_hrp_gives_uppercase_string():
    text = bech32.encode("AGE-SECRET-KEY-", bytes(range(32)))
    assert text == text.upper()
    assert text.startswith("AGE-SECRET-KEY-1")
    assert bech32.decode(text) == ("AGE-SECRET-KEY-", bytes(range(32)))
    assert bech32.decode(text.lower()) == ("age-secret-key-", bytes(range(32)))
    with pytest.raises(bech32.Bech32Error, match="mixed case"):
        bech32.encode("Age", b"")


@SETTINGS
@given(
    hrp=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40).map(str.lower),
    data=st.binary(max_size=2000),
)
def test_round_trip_any_length(hrp, data):
    text = bech32.encode(hrp, data)
    assert bech32.decode(text) == (hrp, data)
    assert bech32.decode(text.upper()) == (hrp.upper(), data)


@SETTINGS
@given(
    data=st.binary(min_size=1, max_size=64), position=st.integers(min_value=0), replacement=st.integers(0, 31)
)
def test_any_single_character_change_is_detected(data, position, replacement):
    text = bech32.encode("age", data)
    index = 4 + position % (len(text) - 4)
    new = bech32.CHARSET[replacement]
    if text[index] == new:
        return
    with pytest.raises(bech32.Bech32Error):
        bech32.decode(text[:index] + new + text[index + 1 :])
