"""Streaming 256 MiB through encryption and decryption keeps memory bounded."""

import hashlib
import os
import tracemalloc

from backup_addon.crypto.age import Identity, decrypt_stream, encrypt_stream

TOTAL = 256 << 20
LIMIT = 32 << 20


async def test_256_mib_round_trip_in_bounded_memory():
    identity = Identity.generate()
    seed = os.urandom(4 << 20)
    sent = hashlib.sha256()
    received = hashlib.sha256()

    async def source():
        # Pieces of varied sizes, each a fresh object (as a network stream would give).
        sizes = [1 << 20, 100_000, 3 << 20, 65_536, 7, 250_000]
        done = 0
        index = 0
        while done < TOTAL:
            size = min(sizes[index % len(sizes)], TOTAL - done)
            start = (index * 4099) % (1 << 20)
            piece = seed[start : start + size]
            sent.update(piece)
            done += size
            index += 1
            yield piece

    tracemalloc.start()
    try:
        total = 0
        async for block in decrypt_stream(encrypt_stream(source(), [identity.recipient()]), [identity]):
            received.update(block)
            total += len(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == TOTAL
    assert received.digest() == sent.digest()
    assert peak < LIMIT, f"peak traced memory {peak / 2**20:.1f} MiB"


async def test_one_huge_input_piece_is_processed_in_place():
    identity = Identity.generate()
    plaintext = os.urandom(64 << 20)
    encrypted = b"".join([b async for b in encrypt_stream(one_piece(plaintext), [identity.recipient()])])
    expected = hashlib.sha256(plaintext).digest()

    tracemalloc.start()
    try:
        received = hashlib.sha256()
        async for block in decrypt_stream(one_piece(encrypted), [identity]):
            received.update(block)
        async for _ in encrypt_stream(one_piece(plaintext), [identity.recipient()]):
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received.digest() == expected
    assert peak < 8 << 20, f"peak traced memory {peak / 2**20:.1f} MiB"


async def one_piece(data: bytes):
    yield data
