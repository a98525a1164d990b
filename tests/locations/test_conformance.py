"""The contract every location kind keeps, checked against its real server."""

import asyncio
import hashlib
import os
import time
import tracemalloc

import pytest

from backup_addon.errors import LocationAuthFailed, LocationError, SourceError
from backup_addon.locations.wrappers import RetryingLocation


async def chunks_of(data: bytes, size: int = 64 * 1024, *, fail_at: int | None = None):
    for offset in range(0, len(data), size):
        if fail_at is not None and offset >= fail_at:
            raise SourceError("the source broke")
        await asyncio.sleep(0)
        yield data[offset : offset + size]


async def read_all(location, key: str) -> bytes:
    return b"".join([chunk async for chunk in location.open(key)])


async def test_put_open_stat_list_delete(location):
    data = os.urandom(300_000)
    stored = await location.put("backup_321/abc/2026-01-01_000000_deadbeef.tar.age", chunks_of(data))
    assert stored.size == len(data)
    assert await read_all(location, stored.key) == data
    described = await location.stat(stored.key)
    assert described is not None and described.size == len(data)
    assert [o.key for o in await location.list()] == [stored.key]
    await location.delete(stored.key)
    assert await location.stat(stored.key) is None
    assert await location.list() == []
    await location.delete(stored.key)  # deleting what is gone is not an error


async def test_missing_object(location):
    assert await location.stat("backup_321/none/missing.tar") is None
    with pytest.raises(LocationError):
        await read_all(location, "backup_321/none/missing.tar")


async def test_empty_object(location):
    stored = await location.put("backup_321/e/empty.tar", chunks_of(b""))
    assert stored.size == 0
    assert await read_all(location, "backup_321/e/empty.tar") == b""


async def test_overwrite_replaces_the_whole_object(location):
    await location.put("backup_321/o/x.tar", chunks_of(b"a" * 200_000))
    await location.put("backup_321/o/x.tar", chunks_of(b"b" * 1000))
    assert await read_all(location, "backup_321/o/x.tar") == b"b" * 1000


async def test_failed_put_leaves_nothing_under_the_final_name(location):
    with pytest.raises(SourceError):
        await location.put("backup_321/f/broken.tar", chunks_of(os.urandom(500_000), fail_at=300_000))
    assert await location.stat("backup_321/f/broken.tar") is None
    assert await location.list() == []


async def test_cancelled_put_leaves_nothing_under_the_final_name(location):
    started = asyncio.Event()

    async def endless():
        while True:
            started.set()
            await asyncio.sleep(0.01)
            yield os.urandom(64 * 1024)

    task = asyncio.create_task(location.put("backup_321/c/cancelled.tar", endless()))
    await started.wait()
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await location.stat("backup_321/c/cancelled.tar") is None
    await location.cleanup_incomplete()
    assert await location.list() == []


@pytest.mark.parametrize(
    "key",
    [
        "backup_321/ünïcödé/Sicherung über Nacht.tar.age",
        "backup_321/spaces and (brackets)/a b [c] {d}.tar",
        "backup_321/odd/semi;colon,comma+plus&amp%percent#hash'quote.tar",
        "backup_321/emoji/🏠 home.tar",
    ],
)
async def test_odd_and_unicode_names(location, key):
    await location.put(key, chunks_of(b"content"))
    assert await read_all(location, key) == b"content"
    assert [o.key for o in await location.list()] == [key]
    await location.delete(key)
    assert await location.list() == []


async def test_concurrent_puts_do_not_mix(location):
    blobs = {f"backup_321/p/{i}.tar": os.urandom(150_000 + i) for i in range(4)}
    # As the add-on uses it: rclone's S3 server sometimes answers a burst of parallel first
    # writes into a new folder with a transient 500, which the retry wrapper absorbs.
    retrying = RetryingLocation(location, base_delay=0.05)
    await asyncio.gather(*(retrying.put(k, chunks_of(v)) for k, v in blobs.items()))
    for key, value in blobs.items():
        assert await read_all(location, key) == value
    assert sorted(o.key for o in await location.list()) == sorted(blobs)


async def test_large_object_streams_with_bounded_memory(location):
    block = os.urandom(1 << 20)
    count = 256
    expected = hashlib.sha256()
    for _ in range(count):
        expected.update(block)

    async def source():
        for _ in range(count):
            yield block

    tracemalloc.start()
    try:
        stored = await location.put("backup_321/big/256MiB.tar", source())
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest = hashlib.sha256()
        async for chunk in location.open(stored.key):
            digest.update(chunk)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stored.size == count << 20
    assert digest.hexdigest() == expected.hexdigest()
    assert put_peak < 64 << 20, f"put held {put_peak >> 20} MiB"
    assert read_peak < 64 << 20, f"open held {read_peak >> 20} MiB"


async def test_usage_is_reported_or_unknown(location):
    usage = await location.usage()
    if usage is not None:
        assert 0 <= usage.free_bytes <= usage.total_bytes


async def test_wrong_credentials_fail_fast_without_retries(server_provider):
    location = server_provider.location_with_wrong_credentials("wrong credentials")
    started = time.monotonic()
    with pytest.raises(LocationAuthFailed):
        await location.put("backup_321/w/x.tar", chunks_of(b"x" * 1000))
    assert time.monotonic() - started < 10


async def test_server_stopped_mid_upload_gives_a_clear_failure(server_provider):
    location = server_provider.location("server stops")
    sent = 0

    async def source():
        nonlocal sent
        for _ in range(200):
            if sent == 2 << 20:
                server_provider.pause_server()
            sent += 64 * 1024
            yield os.urandom(64 * 1024)

    with pytest.raises(LocationError) as caught:
        await asyncio.wait_for(location.put("backup_321/s/stopped.tar", source()), 120)
    assert location.name in str(caught.value)
    server_provider.resume_server()
    assert await location.stat("backup_321/s/stopped.tar") is None
