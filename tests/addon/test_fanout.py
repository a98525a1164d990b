"""Fan-out: one read, every writer fed, failures isolated, memory bounded."""

import asyncio
import hashlib

import pytest

from backup_addon.errors import SourceError
from backup_addon.fanout import fan_out, rechunk


async def source(n, size=1000, fail_at=None):
    for i in range(n):
        if i == fail_at:
            raise SourceError("cut off")
        await asyncio.sleep(0)
        yield bytes([i % 256]) * size


def collector(store, name, *, fail_after=None, delay=0.0):
    async def write(chunks):
        got = bytearray()
        count = 0
        async for chunk in chunks:
            count += 1
            if fail_after is not None and count > fail_after:
                raise OSError("disk on fire")
            if delay:
                await asyncio.sleep(delay)
            got += chunk
        store[name] = bytes(got)
        return len(got)

    return write


async def test_every_writer_gets_every_byte_and_the_hash_is_of_the_source():
    store = {}
    result = await fan_out(source(20), {"a": collector(store, "a"), "b": collector(store, "b")})
    expected = b"".join([bytes([i]) * 1000 for i in range(20)])
    assert store["a"] == store["b"] == expected
    assert result.sha256 == hashlib.sha256(expected).hexdigest()
    assert result.size == len(expected)
    assert all(s.ok for s in result.sinks.values())


async def test_a_failing_writer_drops_out_and_the_other_finishes():
    store = {}
    result = await fan_out(source(50), {"bad": collector(store, "bad", fail_after=3), "good": collector(store, "good")})
    assert not result.sinks["bad"].ok
    assert "disk on fire" in str(result.sinks["bad"].error)
    assert result.sinks["good"].ok
    assert len(store["good"]) == 50 * 1000


async def test_a_writer_failing_after_the_last_chunk_does_not_hang():
    async def fails_at_commit(chunks):
        async for _ in chunks:
            pass
        raise OSError("fsync failed")

    result = await asyncio.wait_for(fan_out(source(5), {"x": fails_at_commit}), 5)
    assert "fsync failed" in str(result.sinks["x"].error)


async def test_source_failure_aborts_every_writer():
    seen = {}

    async def writer(chunks):
        try:
            async for _ in chunks:
                pass
        except SourceError as err:
            seen["error"] = err
            raise
        seen["committed"] = True

    with pytest.raises(SourceError, match="cut off"):
        await fan_out(source(10, fail_at=4), {"a": writer})
    assert "committed" not in seen
    assert "cut off" in str(seen["error"])


async def test_slow_writer_sets_the_pace_and_memory_stays_bounded():
    produced = 0
    max_ahead = 0
    consumed = {"slow": 0}

    async def counted():
        nonlocal produced, max_ahead
        for _ in range(40):
            produced += 1
            max_ahead = max(max_ahead, produced - consumed["slow"])
            yield b"x" * 100

    async def slow(chunks):
        async for _ in chunks:
            consumed["slow"] += 1
            await asyncio.sleep(0.001)

    await fan_out(counted(), {"slow": slow, "fast": collector({}, "fast")}, depth=3)
    # queue depth plus the chunk in the writer's hands plus the one being produced
    assert max_ahead <= 3 + 2


async def test_rechunk_groups_small_reads():
    async def tiny():
        for _ in range(100):
            yield b"ab"

    sizes = [len(c) async for c in rechunk(tiny(), size=64)]
    assert sum(sizes) == 200
    assert all(s >= 64 for s in sizes[:-1])
