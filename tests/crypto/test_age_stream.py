"""Streaming encryption and decryption: round trips for any size and any input chunking, and
tampering of every kind detected with the right error, never releasing unauthenticated bytes."""

import asyncio
import io
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backup_addon.crypto.age import (
    AgeHeaderError,
    AgePayloadError,
    Identity,
    NoMatchingIdentity,
    decrypt_bytes,
    decrypt_file,
    decrypt_file_blocks,
    decrypt_stream,
    encrypt_bytes,
    encrypt_file,
    encrypt_file_blocks,
    encrypt_stream,
)
from tests.crypto.helpers import (
    CHUNK,
    ENC_CHUNK,
    chunk_spans,
    encrypt_all,
    header_length,
    pieces,
    run_decrypt,
)

SETTINGS = settings(
    database=None, deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow]
)

IDENTITY = Identity.generate()
RECIPIENT = IDENTITY.recipient()
EDGE_SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK - 1, 2 * CHUNK, 2 * CHUNK + 1, 3 * CHUNK]

sizes = st.one_of(st.sampled_from(EDGE_SIZES), st.integers(0, 5 * CHUNK + 100))
chunkings = st.one_of(
    st.just([]),
    st.lists(st.integers(1, 3 * CHUNK), min_size=1, max_size=8),
    st.lists(
        st.sampled_from([1, 15, 16, 17, CHUNK - 1, CHUNK, CHUNK + 1, ENC_CHUNK, ENC_CHUNK + 1]), min_size=1
    ),
)


def plaintext_of(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


# Encrypted files reused by the tamper properties (encrypting is not what they test).
CACHE: dict[tuple[int, int], bytes] = {}


def sealed(size: int, seed: int) -> tuple[bytes, bytes]:
    plaintext = plaintext_of(size, seed)
    if (size, seed) not in CACHE:
        CACHE[size, seed] = encrypt_bytes(plaintext, [RECIPIENT])
    return plaintext, CACHE[size, seed]


def assert_released_prefix(released: bytes, plaintext: bytes, error: BaseException | None) -> None:
    """What was released is an authenticated prefix ending at a chunk boundary."""
    assert plaintext.startswith(released)
    assert len(released) % CHUNK == 0 or released == plaintext
    if isinstance(error, AgePayloadError):
        assert error.offset == len(released)


# --- round trips --------------------------------------------------------------------------------


@SETTINGS
@given(size=sizes, seed=st.integers(0, 3), enc_chunking=chunkings, dec_chunking=chunkings)
def test_round_trip_any_size_any_chunking(size, seed, enc_chunking, dec_chunking):
    plaintext = plaintext_of(size, seed)
    data = asyncio.run(encrypt_all(plaintext, [RECIPIENT], enc_chunking))
    assert len(data) == header_length(data) + 16 + size + 16 * max(1, -(-size // CHUNK))
    outcome = run_decrypt(data, [IDENTITY], dec_chunking)
    assert outcome.error is None
    assert outcome.released == plaintext


@pytest.mark.parametrize("size", EDGE_SIZES)
def test_sync_helpers_round_trip(size):
    plaintext = plaintext_of(size, 9)
    data = encrypt_bytes(plaintext, [RECIPIENT])
    assert decrypt_bytes(data, [IDENTITY]) == plaintext
    out = io.BytesIO()
    written = encrypt_file(io.BytesIO(plaintext), out, [RECIPIENT], read_size=CHUNK - 3)
    assert written == len(out.getvalue())
    back = io.BytesIO()
    assert decrypt_file(io.BytesIO(out.getvalue()), back, [IDENTITY], read_size=ENC_CHUNK + 5) == size
    assert back.getvalue() == plaintext
    blocks = list(encrypt_file_blocks(io.BytesIO(plaintext), [RECIPIENT]))
    assert b"".join(decrypt_file_blocks(io.BytesIO(b"".join(blocks)), [IDENTITY])) == plaintext


class ReadOnly:
    """A file object without readinto, like some wrappers."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)


def test_file_helpers_accept_objects_without_readinto():
    plaintext = plaintext_of(3 * CHUNK + 7, 1)
    data = b"".join(encrypt_file_blocks(ReadOnly(plaintext), [RECIPIENT], read_size=1000))
    assert b"".join(decrypt_file_blocks(ReadOnly(data), [IDENTITY], read_size=999)) == plaintext


async def test_offloaded_round_trip():
    plaintext = plaintext_of(5 * CHUNK + 3, 2)
    encrypted = b"".join([b async for b in encrypt_stream(pieces(plaintext), [RECIPIENT], offload=True)])
    released = [b async for b in decrypt_stream(pieces(encrypted, [100_000]), [IDENTITY], offload=True)]
    assert b"".join(released) == plaintext


async def test_output_comes_in_large_pieces():
    plaintext = plaintext_of(40 * CHUNK + 5, 3)
    encrypted = [b async for b in encrypt_stream(pieces(plaintext, [4096]), [RECIPIENT])]
    assert len(encrypted) <= 4
    assert all(len(piece) >= 16 * ENC_CHUNK for piece in encrypted[:-1])
    decrypted = [b async for b in decrypt_stream(pieces(b"".join(encrypted), [4096]), [IDENTITY])]
    assert b"".join(decrypted) == plaintext
    assert len(decrypted) <= 4
    assert all(len(piece) == 16 * CHUNK for piece in decrypted[:-1])


async def test_large_input_pieces_do_not_become_large_output_pieces():
    plaintext = plaintext_of(100 * CHUNK, 4)
    encrypted = [b async for b in encrypt_stream(pieces(plaintext, [len(plaintext)]), [RECIPIENT])]
    assert max(len(piece) for piece in encrypted) <= 16 * ENC_CHUNK + 200
    decrypted = [b async for b in decrypt_stream(pieces(b"".join(encrypted), [10 << 20]), [IDENTITY])]
    assert max(len(piece) for piece in decrypted) <= 16 * CHUNK
    assert b"".join(decrypted) == plaintext


async def test_streams_while_the_input_is_still_coming():
    """Output flows before the input ends: nothing waits for the whole file."""
    gate = asyncio.Event()
    plaintext = plaintext_of(40 * CHUNK, 5)
    encrypted = encrypt_bytes(plaintext, [RECIPIENT])

    async def first_part_then_wait(data: bytes):
        yield data[: len(data) // 2]
        await gate.wait()
        yield data[len(data) // 2 :]

    decrypting = decrypt_stream(first_part_then_wait(encrypted), [IDENTITY])
    first = await asyncio.wait_for(anext(decrypting), timeout=5)
    assert plaintext.startswith(first)
    encrypting = encrypt_stream(first_part_then_wait(plaintext), [RECIPIENT])
    assert (await asyncio.wait_for(anext(encrypting), timeout=5)).startswith(b"age-encryption.org/v1\n")
    gate.set()
    rest = [b async for b in decrypting]
    assert first + b"".join(rest) == plaintext
    await encrypting.aclose()


def test_recipients_and_identities_are_checked():
    with pytest.raises(ValueError, match="at least one recipient"):
        encrypt_bytes(b"x", [])
    with pytest.raises(ValueError, match="at least one recipient"):
        encrypt_bytes(b"x", RECIPIENT)
    with pytest.raises(TypeError, match=r"Recipient\.parse"):
        encrypt_bytes(b"x", [str(RECIPIENT)])
    with pytest.raises(ValueError, match="at least one identity"):
        decrypt_bytes(b"x", [])
    with pytest.raises(TypeError, match=r"Identity\.parse"):
        decrypt_bytes(b"x", [IDENTITY.to_string()])


def test_wrong_identity():
    outcome = run_decrypt(sealed(1000, 0)[1], [Identity.generate(), Identity.generate()])
    assert isinstance(outcome.error, NoMatchingIdentity)
    assert str(outcome.error) == (
        "this backup was encrypted for a different key; use the emergency kit that belongs to it"
    )
    assert outcome.released == b""


# --- tampering ------------------------------------------------------------------------------------

tamper_sizes = st.one_of(st.sampled_from(EDGE_SIZES), st.integers(0, 4 * CHUNK + 10))


@SETTINGS
@given(size=tamper_sizes, seed=st.integers(0, 1), cut=st.integers(0), chunking=chunkings)
def test_any_truncation_is_detected(size, seed, cut, chunking):
    plaintext, data = sealed(size, seed)
    cut %= len(data)
    outcome = run_decrypt(data[:cut], [IDENTITY], chunking)
    head = header_length(data)
    if cut < head:
        assert isinstance(outcome.error, AgeHeaderError)
        assert outcome.released == b""
        return
    assert isinstance(outcome.error, AgePayloadError)
    assert_released_prefix(outcome.released, plaintext, outcome.error)
    # Every chunk fully present before the cut is released; nothing else.
    assert len(outcome.released) == max(cut - head - 16, 0) // ENC_CHUNK * CHUNK


@SETTINGS
@given(size=tamper_sizes, seed=st.integers(0, 1), extra=st.binary(min_size=1, max_size=ENC_CHUNK + 40))
def test_appended_bytes_are_detected(size, seed, extra):
    plaintext, data = sealed(size, seed)
    outcome = run_decrypt(data + extra, [IDENTITY])
    assert isinstance(outcome.error, AgePayloadError)
    assert_released_prefix(outcome.released, plaintext, outcome.error)
    # Everything but the final chunk authenticated; the final chunk is never released.
    chunks = len(chunk_spans(data))
    assert len(outcome.released) == (chunks - 1) * CHUNK


@SETTINGS
@given(
    size=tamper_sizes,
    seed=st.integers(0, 1),
    position=st.integers(0),
    bit=st.integers(0, 7),
    chunking=chunkings,
)
def test_any_flipped_bit_is_detected(size, seed, position, bit, chunking):
    plaintext, data = sealed(size, seed)
    position %= len(data)
    flipped = bytearray(data)
    flipped[position] ^= 1 << bit
    outcome = run_decrypt(bytes(flipped), [IDENTITY], chunking)
    head = header_length(data)
    if position < head:
        assert isinstance(outcome.error, AgeHeaderError | NoMatchingIdentity), outcome.error
        assert outcome.released == b""
    elif position < head + 16:
        assert isinstance(outcome.error, AgePayloadError)
        assert outcome.released == b""
    else:
        assert isinstance(outcome.error, AgePayloadError)
        damaged = (position - head - 16) // ENC_CHUNK
        assert outcome.released == plaintext[: damaged * CHUNK]
        assert outcome.error.offset == damaged * CHUNK


@SETTINGS
@given(size=st.integers(2 * CHUNK + 1, 6 * CHUNK), seed=st.integers(0, 1), data=st.data())
def test_swapped_repeated_or_dropped_chunks_are_detected(size, seed, data):
    plaintext, sealed_data = sealed(size, seed)
    spans = chunk_spans(sealed_data)
    parts = [sealed_data[start:end] for start, end in spans]
    prefix = sealed_data[: spans[0][0]]
    last = len(parts) - 1
    kind = data.draw(st.sampled_from(["swap", "repeat", "drop", "repeat-final", "move-final"]))
    if kind == "swap":
        i = data.draw(st.integers(0, last - 2))
        j = data.draw(st.integers(i + 1, last - 1))
        parts[i], parts[j] = parts[j], parts[i]
        good = i
    elif kind == "repeat":
        i = data.draw(st.integers(0, last - 1))
        parts.insert(i + 1, parts[i])
        good = i + 1
    elif kind == "drop":
        i = data.draw(st.integers(0, last - 1))
        del parts[i]
        good = i
    elif kind == "repeat-final":
        parts.append(parts[last])
        good = last
    else:
        i = data.draw(st.integers(0, last - 1))
        parts.insert(i, parts.pop())
        good = i
    outcome = run_decrypt(prefix + b"".join(parts), [IDENTITY], data.draw(chunkings))
    assert isinstance(outcome.error, AgePayloadError)
    assert outcome.released == plaintext[: good * CHUNK]


def test_chunks_from_another_file_are_detected():
    plaintext, first = sealed(3 * CHUNK, 0)
    _, second = sealed(3 * CHUNK, 1)
    spans = chunk_spans(first)
    start, end = spans[1]
    mixed = first[:start] + second[start:end] + first[end:]
    outcome = run_decrypt(mixed, [IDENTITY])
    assert isinstance(outcome.error, AgePayloadError)
    assert outcome.released == plaintext[:CHUNK]


async def test_decrypt_error_after_yielded_blocks_in_async_for():
    plaintext, data = sealed(40 * CHUNK, 0)
    broken = bytearray(data)
    broken[chunk_spans(data)[20][0] + 5] ^= 1
    got = []
    with pytest.raises(AgePayloadError, match=f"after {20 * CHUNK} bytes: a chunk failed authentication"):
        async for block in decrypt_stream(pieces(bytes(broken), [CHUNK]), [IDENTITY]):
            got.append(block)
    assert b"".join(got) == plaintext[: 20 * CHUNK]
