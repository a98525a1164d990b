"""Behaviour every location kind gets the same way: retries, bandwidth limits, concurrency.

Each wrapper is itself a Location around another one (like restic's RetryBackend), so the
kinds stay free of it.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from datetime import time as dt_time
from typing import TypeVar

from ..errors import LocationError, LocationTimeout, LocationUnreachable
from .base import Location, StoredObject, Usage

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

# Only these are worth another try; wrong credentials, a full disk or a bad key never heal.
TRANSIENT = (LocationUnreachable, LocationTimeout)


class _Wrapper:
    def __init__(self, inner: Location) -> None:
        self.inner = inner
        self.name = inner.name
        self.kind = inner.kind
        self.offsite = inner.offsite

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> StoredObject:
        return await self.inner.put(key, chunks)

    def open(self, key: str) -> AsyncIterator[bytes]:
        return self.inner.open(key)

    async def stat(self, key: str) -> StoredObject | None:
        return await self.inner.stat(key)

    async def list(self) -> builtins.list[StoredObject]:
        return await self.inner.list()

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def usage(self) -> Usage | None:
        return await self.inner.usage()

    async def cleanup_incomplete(self) -> int:
        return await self.inner.cleanup_incomplete()


class RetryingLocation(_Wrapper):
    """Retries transient failures with exponential backoff and full jitter.

    A put is retried only while none of its chunks was taken from the stream (a connection
    that fails at the start); once bytes flowed, they cannot be replayed from a single pass.
    """

    def __init__(
        self,
        inner: Location,
        *,
        attempts: int = 4,
        base_delay: float = 2.0,
        max_delay: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(inner)
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep

    def _delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))

    async def _retry(self, what: str, call: Callable[[], Awaitable[T]], *, retry_if: Callable[[], bool] | None = None) -> T:
        for attempt in range(self.attempts):
            try:
                return await call()
            except TRANSIENT as err:
                last = attempt == self.attempts - 1
                if last or (retry_if is not None and not retry_if()):
                    if attempt:
                        raise type(err)(self.name, f"{_detail(err)} (gave up after {attempt + 1} attempts)") from err
                    raise
                delay = self._delay(attempt)
                _LOGGER.warning("%s failed (%s); trying again in %.0f s", what, err, delay)
                await self._sleep(delay)
        raise AssertionError("unreachable")

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> StoredObject:
        taken = False

        async def watched() -> AsyncIterator[bytes]:
            nonlocal taken
            async for chunk in chunks:
                taken = True
                yield chunk

        return await self._retry(f"Writing {key} to {self.name}", lambda: self.inner.put(key, watched()),
                                 retry_if=lambda: not taken)

    async def open(self, key: str) -> AsyncIterator[bytes]:
        for attempt in range(self.attempts):
            started = False
            try:
                async for chunk in self.inner.open(key):
                    started = True
                    yield chunk
                return
            except TRANSIENT:
                if started or attempt == self.attempts - 1:
                    raise
                await self._sleep(self._delay(attempt))

    async def stat(self, key: str) -> StoredObject | None:
        return await self._retry(f"Checking {key} on {self.name}", lambda: self.inner.stat(key))

    async def list(self) -> builtins.list[StoredObject]:
        return await self._retry(f"Listing {self.name}", self.inner.list)

    async def delete(self, key: str) -> None:
        await self._retry(f"Deleting {key} from {self.name}", lambda: self.inner.delete(key))

    async def usage(self) -> Usage | None:
        return await self._retry(f"Reading the free space of {self.name}", self.inner.usage)

    async def cleanup_incomplete(self) -> int:
        return await self._retry(f"Tidying {self.name}", self.inner.cleanup_incomplete)


async def paced(chunks: AsyncIterator[bytes], rate: int) -> AsyncIterator[bytes]:
    """Pass chunks through at no more than `rate` bytes per second."""
    started = time.monotonic()
    sent = 0
    async for chunk in chunks:
        # Slices keep each wait short, so a big chunk does not burst at full speed.
        step = max(1, rate // 10)
        for offset in range(0, len(chunk), step):
            piece = chunk[offset : offset + step]
            sent += len(piece)
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
            yield piece


class ThrottledLocation(_Wrapper):
    """Keeps uploads and downloads under a bandwidth limit (bytes per second)."""

    def __init__(self, inner: Location, bytes_per_second: int) -> None:
        super().__init__(inner)
        if bytes_per_second <= 0:
            raise ValueError("the bandwidth limit must be positive")
        self.rate = bytes_per_second

    def _paced(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        return paced(chunks, self.rate)

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> StoredObject:
        return await self.inner.put(key, self._paced(chunks))

    def open(self, key: str) -> AsyncIterator[bytes]:
        return self._paced(self.inner.open(key))


class LimitedLocation(_Wrapper):
    """At most `limit` transfers at once on this location."""

    def __init__(self, inner: Location, limit: int) -> None:
        super().__init__(inner)
        self._semaphore = asyncio.Semaphore(limit)

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> StoredObject:
        async with self._semaphore:
            return await self.inner.put(key, chunks)

    async def open(self, key: str) -> AsyncIterator[bytes]:
        async with self._semaphore:
            async for chunk in self.inner.open(key):
                yield chunk


def _detail(err: LocationError) -> str:
    return str(err).removeprefix(f"{err.location}: ")


class WindowedLocation(_Wrapper):
    """Writes only inside a daily time window (e.g. 22:00-06:00, when nobody streams video).

    A copy due outside the window fails at once with a clear reason instead of waiting: the
    backup run streams every location from one read and must not stall the others.
    """

    def __init__(self, inner: Location, window: str, clock: Callable[[], datetime] = datetime.now) -> None:
        super().__init__(inner)
        start, end = window.split("-")
        self.window = window
        self._start = dt_time.fromisoformat(start)
        self._end = dt_time.fromisoformat(end)
        self._clock = clock

    def is_open(self) -> bool:
        now = self._clock().time()
        if self._start < self._end:
            return self._start <= now < self._end
        return now >= self._start or now < self._end

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> StoredObject:
        if not self.is_open():
            raise LocationError(
                self.name,
                f"not written: outside its upload window {self.window}; make backups inside the window "
                "or widen it",
            )
        return await self.inner.put(key, chunks)


def accepts_uploads_now(location: Location) -> bool:
    """False while a location's upload window is closed; True when it has none."""
    layer: object = location
    while layer is not None:
        if isinstance(layer, WindowedLocation):
            return layer.is_open()
        layer = getattr(layer, "inner", None)
    return True
