"""Retries, bandwidth limits, concurrency limits and the connection test, around any location."""

import asyncio
import time

import pytest

from backup_addon.errors import LocationAuthFailed, LocationUnreachable
from backup_addon.locations import FolderLocation
from backup_addon.locations.probe import probe
from backup_addon.locations.wrappers import (
    LimitedLocation,
    RetryingLocation,
    ThrottledLocation,
    WindowedLocation,
)


async def chunks(*parts):
    for part in parts:
        yield part


class Flaky:
    """A location whose calls fail with `error` the first `failures` times."""

    kind = "test"
    offsite = False

    def __init__(self, inner, failures, error=LocationUnreachable):
        self.inner, self.name = inner, inner.name
        self.failures, self.error, self.calls = failures, error, 0

    def _maybe_fail(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(self.name, "server went away")

    async def put(self, key, source):
        self._maybe_fail()
        return await self.inner.put(key, source)

    async def stat(self, key):
        self._maybe_fail()
        return await self.inner.stat(key)

    async def list(self):
        self._maybe_fail()
        return await self.inner.list()


async def no_sleep(_):
    await asyncio.sleep(0)


@pytest.fixture
def folder(tmp_path):
    return FolderLocation("USB", tmp_path)


async def test_transient_failures_are_retried_until_success(folder):
    flaky = Flaky(folder, failures=2)
    location = RetryingLocation(flaky, attempts=4, sleep=no_sleep)
    stored = await location.put("a/b.tar", chunks(b"x" * 10))
    assert stored.size == 10
    assert flaky.calls == 3


async def test_retries_give_up_with_a_clear_message(folder):
    location = RetryingLocation(Flaky(folder, failures=10), attempts=3, sleep=no_sleep)
    with pytest.raises(LocationUnreachable, match=r"USB: server went away \(gave up after 3 attempts\)"):
        await location.list()


async def test_wrong_credentials_are_never_retried(folder):
    flaky = Flaky(folder, failures=5, error=LocationAuthFailed)
    with pytest.raises(LocationAuthFailed):
        await RetryingLocation(flaky, attempts=4, sleep=no_sleep).stat("a.tar")
    assert flaky.calls == 1


async def test_a_put_that_already_consumed_bytes_is_not_retried(folder):
    class FailsMidStream(Flaky):
        async def put(self, key, source):
            self.calls += 1
            async for _ in source:
                raise LocationUnreachable(self.name, "connection reset")

    flaky = FailsMidStream(folder, failures=0)
    with pytest.raises(LocationUnreachable, match="connection reset"):
        await RetryingLocation(flaky, attempts=4, sleep=no_sleep).put("a.tar", chunks(b"1", b"2"))
    assert flaky.calls == 1


async def test_bandwidth_limit_paces_uploads(folder):
    location = ThrottledLocation(folder, bytes_per_second=200_000)
    started = time.monotonic()
    await location.put("slow.tar", chunks(b"z" * 100_000, b"z" * 100_000))
    elapsed = time.monotonic() - started
    assert 0.8 <= elapsed < 3
    assert (folder.root / "slow.tar").stat().st_size == 200_000


async def test_concurrency_limit_serialises_transfers(folder):
    active = peak = 0

    async def tracked(n):
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        yield b"x" * n
        active -= 1

    location = LimitedLocation(folder, limit=1)
    await asyncio.gather(*(location.put(f"{i}.tar", tracked(10)) for i in range(3)))
    assert peak == 1


async def test_connection_test_reports_every_step_and_free_space(folder):
    report = await probe(folder)
    assert report.ok
    assert report.steps == ["connected and signed in", "wrote a test file", "read it back intact", "deleted it"]
    assert report.usage is not None and report.usage.free_bytes > 0
    assert await folder.list() == []


async def test_connection_test_names_the_problem(tmp_path):
    report = await probe(FolderLocation("NAS", tmp_path / "unplugged"))
    assert not report.ok
    assert report.steps == []
    assert "does not exist" in report.error


@pytest.mark.parametrize(
    ("window", "now", "open_"),
    [
        ("01:00-06:00", "03:00", True),
        ("01:00-06:00", "06:00", False),
        ("01:00-06:00", "12:00", False),
        ("22:00-06:00", "23:30", True),
        ("22:00-06:00", "05:59", True),
        ("22:00-06:00", "21:59", False),
    ],
)
def test_upload_window_opens_and_closes(folder, window, now, open_):
    from datetime import datetime

    clock = lambda: datetime.fromisoformat(f"2026-11-26T{now}")  # noqa: E731
    assert WindowedLocation(folder, window, clock).is_open() is open_


async def test_put_outside_the_window_is_refused_clearly(folder):
    from datetime import datetime

    location = WindowedLocation(folder, "01:00-02:00", lambda: datetime.fromisoformat("2026-11-26T12:00"))
    with pytest.raises(Exception, match="outside its upload window 01:00-02:00"):
        await location.put("a.tar", chunks(b"x"))
    assert await folder.list() == []
