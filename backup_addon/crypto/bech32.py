"""Bech32 (BIP-173) as age uses it: no bech32m, and no limit on the length of the string.

A string is either all lowercase or all uppercase; the checksum is always computed over the
lowercase form, and `decode` returns the human-readable part in the case it was written in,
so callers can insist on one (age keys: `age1...` lowercase, `AGE-SECRET-KEY-1...` uppercase).

Error messages describe what is wrong without quoting the input, because the input may be
a secret key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

CHARSET: Final = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHARSET_INDEX: Final = {c: i for i, c in enumerate(CHARSET)}
_GENERATOR: Final = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_CHECKSUM_LEN: Final = 6


class Bech32Error(ValueError):
    """The string is not valid Bech32 (the message never repeats the string)."""


def _polymod(values: Iterable[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = ((chk & 0x1FFFFFF) << 5) ^ value
        for i, gen in enumerate(_GENERATOR):
            if (top >> i) & 1:
                chk ^= gen
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: Sequence[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    acc = 0
    bits = 0
    out: list[int] = []
    max_value = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & max_value)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & max_value)
    elif bits >= from_bits or (acc << (to_bits - bits)) & max_value:
        raise Bech32Error("invalid padding in the data part")
    return out


def _check_hrp(hrp: str) -> None:
    if not hrp:
        raise Bech32Error("the human-readable part is empty")
    if any(not 33 <= ord(c) <= 126 for c in hrp):
        raise Bech32Error("invalid character in the human-readable part")
    if hrp.lower() != hrp and hrp.upper() != hrp:
        raise Bech32Error("mixed case")


def encode(hrp: str, data: bytes) -> str:
    """Encode `data` under `hrp`; the result is uppercase if `hrp` is uppercase."""
    _check_hrp(hrp)
    lower = hrp.lower()
    values = _convert_bits(data, 8, 5, pad=True)
    polymod = _polymod([*_hrp_expand(lower), *values, *([0] * _CHECKSUM_LEN)]) ^ 1
    checksum = [(polymod >> (5 * (_CHECKSUM_LEN - 1 - i))) & 31 for i in range(_CHECKSUM_LEN)]
    text = lower + "1" + "".join(CHARSET[v] for v in values + checksum)
    return text if hrp == lower else text.upper()


def decode(text: str) -> tuple[str, bytes]:
    """Decode a Bech32 string into (human-readable part as written, data bytes)."""
    if any(not 33 <= ord(c) <= 126 for c in text):
        raise Bech32Error("invalid character (only printable ASCII is allowed)")
    lower = text.lower()
    if lower != text and text.upper() != text:
        raise Bech32Error("mixed case")
    pos = text.rfind("1")
    if pos < 1:
        raise Bech32Error("missing separator or empty human-readable part")
    if pos + 1 + _CHECKSUM_LEN > len(text):
        raise Bech32Error("too short for a checksum")
    hrp = text[:pos]
    try:
        values = [_CHARSET_INDEX[c] for c in lower[pos + 1 :]]
    except KeyError:
        raise Bech32Error("invalid character in the data part") from None
    if _polymod([*_hrp_expand(lower[:pos]), *values]) != 1:
        raise Bech32Error("checksum mismatch (a character is wrong or missing)")
    data = _convert_bits(values[:-_CHECKSUM_LEN], 5, 8, pad=False)
    return hrp, bytes(data)
