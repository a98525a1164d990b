"""One pass over a stream, many writers: bounded queues, back-pressure, failures isolated.

Each writer gets its own bounded queue. The producer puts every chunk into every healthy
queue, so the slowest healthy writer sets the pace and memory stays at
chunk size x queue depth x writers, whatever the size of the stream. A writer that fails
drops out: its queue is drained and discarded, and the others go on.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from .errors import SourceError

CHUNK_SIZE: Final = 1 << 20
QUEUE_DEPTH: Final = 4


class _End:
    """Marks the end of the stream in a queue."""


class _Abort:
    """Tells a writer that the source failed; its put must not commit."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


type _Item = bytes | _End | _Abort

Writer = Callable[[AsyncIterator[bytes]], Awaitable[object]]


@dataclass(slots=True)
class SinkResult:
    """How one writer ended: its return value, or the error that stopped it."""

    name: str
    value: object = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class FanoutResult:
    size: int
    sha256: str | None
    sinks: dict[str, SinkResult]


class _Sink:
    def __init__(self, name: str, writer: Writer, depth: int) -> None:
        self.name = name
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=depth)
        self.result = SinkResult(name)
        self.failed = False
        self.input_done = False
        self.task = asyncio.create_task(self._run(writer), name=f"write {name}")

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            item = await self.queue.get()
            if isinstance(item, _End):
                self.input_done = True
                return
            if isinstance(item, _Abort):
                self.input_done = True
                raise item.error
            yield item

    async def _run(self, writer: Writer) -> None:
        try:
            self.result.value = await writer(self._chunks())
            if not self.input_done:
                raise RuntimeError(f"{self.name} stopped reading before the end of the backup")
        except Exception as err:
            self.result.error = err
            self.failed = True
            # Keep taking chunks so the producer never waits on a writer that is gone.
            while not self.input_done:
                self.input_done = isinstance(await self.queue.get(), _End | _Abort)


async def rechunk(source: AsyncIterator[bytes], size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
    """Group small network reads into chunks of about `size` bytes."""
    pieces: list[bytes] = []
    held = 0
    async for piece in source:
        pieces.append(piece)
        held += len(piece)
        if held >= size:
            yield b"".join(pieces)
            pieces.clear()
            held = 0
    if pieces:
        yield b"".join(pieces)


async def fan_out(
    source: AsyncIterator[bytes],
    writers: dict[str, Writer],
    *,
    depth: int = QUEUE_DEPTH,
    digest: bool = True,
) -> FanoutResult:
    """Read `source` once, hash it (unless `digest` is False), and feed every writer.

    Never raises for a writer's failure: each one's outcome is in the result.

    If the source fails, every writer is aborted so no location commits a partial copy, and
    SourceError is raised.
    """
    sinks = [_Sink(name, writer, depth) for name, writer in writers.items()]
    hasher = hashlib.sha256() if digest else None
    size = 0
    try:
        async for chunk in source:
            if hasher is not None:
                hasher.update(chunk)
            size += len(chunk)
            for sink in sinks:
                if not sink.failed:
                    await sink.queue.put(chunk)
    except BaseException as err:
        abort = _Abort(err if isinstance(err, SourceError) else SourceError(f"Reading the backup failed: {err}"))
        for sink in sinks:
            await sink.queue.put(abort)
        await asyncio.gather(*(s.task for s in sinks), return_exceptions=True)
        if isinstance(err, SourceError):
            raise
        if isinstance(err, Exception):
            raise abort.error from err
        raise
    for sink in sinks:
        await sink.queue.put(_End())
    await asyncio.gather(*(s.task for s in sinks))
    sha256 = hasher.hexdigest() if hasher is not None else None
    return FanoutResult(size=size, sha256=sha256, sinks={s.name: s.result for s in sinks})
