"""A small TCP proxy that misbehaves on purpose, placed between the add-on and a real server.

Faults, each switchable at any time while connections are open:

- ``reset_after(n, direction)``: once ``n`` more bytes went through in ``direction`` (counted over
  every connection since the fault was armed), forward what fits and reset every open connection
  (TCP RST). Fires once.
- ``stall_after(n, direction, seconds)``: once ``n`` more bytes went through, stop forwarding (and
  reading) in ``direction`` for ``seconds``, or until ``heal()`` when ``seconds`` is None.
- ``latency``: seconds added before every forwarded chunk.
- ``drop_connection(n)``: the ``n``-th accepted connection (1-based, since start) is reset at once,
  before it reaches the server.
- ``bandwidth``: bytes per second in each direction, shared by all connections; None is unlimited.
- ``heal()``: every fault off, stalled traffic flows again.

Directions: ``"up"`` is client to server, ``"down"`` server to client, ``"both"`` either.

Use it in the test's event loop (``async with FaultProxy(("127.0.0.1", port)) as proxy``) or, for
tests that block (a service in a subprocess), in a thread of its own with
``FaultProxy.in_thread(target)``; its methods may then be called from any thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["up", "down", "both"]
UP: Literal["up"] = "up"
DOWN: Literal["down"] = "down"
READ_SIZE = 64 * 1024


@dataclass(slots=True)
class _Trigger:
    after: int
    direction: Direction
    seconds: float | None = None
    seen: int = 0

    def watches(self, direction: str) -> bool:
        return self.direction in (direction, "both")

    def room(self) -> int:
        return max(self.after - self.seen, 0)


@dataclass(slots=True, eq=False)
class _Connection:
    number: int
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def reset(self) -> None:
        for writer in (self.client, self.server):
            if writer is not None:
                _rst(writer)


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset, not a polite FIN: what a crashed middlebox or server does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """Forwards TCP connections from a loopback port to ``target``, with faults on demand."""

    def __init__(self, target: tuple[str, int], *, host: str = "127.0.0.1") -> None:
        self.target = target
        self.host = host
        self.port = 0
        self.latency = 0.0
        self.bandwidth: int | None = None
        # What went through, for tests to assert on.
        self.accepted = 0
        self.dropped = 0
        self.resets = 0
        self.stalls = 0
        self.bytes = {UP: 0, DOWN: 0}
        self._reset: _Trigger | None = None
        self._stall: _Trigger | None = None
        self._drop: set[int] = set()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._flowing: dict[str, asyncio.Event] = {}
        self._next_free = {UP: 0.0, DOWN: 0.0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._resume: asyncio.TimerHandle | None = None

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> FaultProxy:
        self._loop = asyncio.get_running_loop()
        self._flowing = {UP: asyncio.Event(), DOWN: asyncio.Event()}
        for event in self._flowing.values():
            event.set()
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for event in self._flowing.values():
            event.set()
        tasks = [t for c in list(self._connections) for t in c.tasks]
        for connection in list(self._connections):
            connection.reset()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @classmethod
    @contextlib.contextmanager
    def in_thread(cls, target: tuple[str, int], *, host: str = "127.0.0.1") -> Iterator[FaultProxy]:
        """A proxy running on an event loop in a thread of its own, for tests that block."""
        proxy = cls(target, host=host)
        loop = asyncio.new_event_loop()
        started: concurrent.futures.Future[None] = concurrent.futures.Future()

        def main() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(proxy.start())
            except BaseException as err:
                started.set_exception(err)
                loop.close()
                return
            started.set_result(None)
            loop.run_forever()
            loop.run_until_complete(proxy.close())
            loop.close()

        thread = threading.Thread(target=main, name=f"fault proxy to {target[1]}", daemon=True)
        proxy._thread = thread
        thread.start()
        started.result(timeout=10)
        try:
            yield proxy
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=15)

    # --- what tests switch --------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://{self.address}"

    def reset_after(self, nbytes: int, direction: Direction = UP) -> None:
        """Reset every connection once ``nbytes`` more bytes went through in ``direction``."""
        self._apply(lambda: setattr(self, "_reset", _Trigger(nbytes, direction)))

    def stall_after(self, nbytes: int, direction: Direction = "both", seconds: float | None = None) -> None:
        """Stop forwarding once ``nbytes`` more bytes went through; for ``seconds`` or until heal()."""
        self._apply(lambda: setattr(self, "_stall", _Trigger(nbytes, direction, seconds)))

    def stall_now(self, direction: Direction = "both", seconds: float | None = None) -> None:
        self.stall_after(0, direction, seconds)
        self._apply(lambda: self._fire_stall_if_due())

    def drop_connection(self, number: int) -> None:
        """Reset the ``number``-th accepted connection (1-based, counted since start) at once."""
        self._apply(lambda: self._drop.add(number))

    def set_latency(self, seconds: float) -> None:
        self._apply(lambda: setattr(self, "latency", seconds))

    def set_bandwidth(self, bytes_per_second: int | None) -> None:
        self._apply(lambda: setattr(self, "bandwidth", bytes_per_second))

    def heal(self) -> None:
        """Every fault off; stalled traffic flows again."""
        self._apply(self._heal)

    def reset_all(self) -> None:
        """Reset every open connection now."""
        self._apply(self._reset_all)

    # --- internals ----------------------------------------------------------------------------

    def _apply(self, change: Callable[[], object]) -> None:
        loop = self._loop
        if loop is None or self._thread is None or threading.current_thread() is self._thread:
            change()
            return
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            try:
                change()
            except BaseException as err:
                done.set_exception(err)
            else:
                done.set_result(None)

        loop.call_soon_threadsafe(run)
        done.result(timeout=10)

    def _heal(self) -> None:
        self._reset = self._stall = None
        self._drop.clear()
        self.latency = 0.0
        self.bandwidth = None
        self._unstall()

    def _unstall(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        for event in self._flowing.values():
            event.set()

    def _reset_all(self) -> None:
        self.resets += 1
        for connection in list(self._connections):
            connection.reset()

    def _fire_stall_if_due(self) -> None:
        stall = self._stall
        if stall is None or stall.room() > 0:
            return
        self._stall = None
        self.stalls += 1
        for direction in (UP, DOWN):
            if stall.watches(direction):
                self._flowing[direction].clear()
        if stall.seconds is not None:
            assert self._loop is not None
            self._resume = self._loop.call_later(stall.seconds, self._unstall)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        number = self.accepted
        if number in self._drop:
            self._drop.discard(number)
            self.dropped += 1
            _rst(writer)
            return
        connection = _Connection(number, writer)
        current = asyncio.current_task()
        if current is not None:
            connection.tasks.append(current)
        self._connections.add(connection)
        try:
            try:
                server_reader, server_writer = await asyncio.open_connection(*self.target)
            except OSError:
                _rst(writer)
                return
            connection.server = server_writer
            await asyncio.gather(
                self._pump(connection, UP, reader, server_writer),
                self._pump(connection, DOWN, server_reader, writer),
            )
        except Exception:  # the proxy never crashes a test; the peers see a reset
            connection.reset()
        finally:
            self._connections.discard(connection)
            for side in (connection.client, connection.server):
                if side is not None:
                    side.transport.abort()

    async def _pump(
        self, connection: _Connection, direction: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        flowing = self._flowing[direction]
        try:
            while True:
                await flowing.wait()
                limit = READ_SIZE if self.bandwidth is None else max(1, min(READ_SIZE, self.bandwidth // 20))
                data = await reader.read(limit)
                if not data:
                    if writer.can_write_eof() and not writer.transport.is_closing():
                        writer.write_eof()
                    return
                while data:
                    await flowing.wait()
                    take, event = len(data), None
                    for kind, trigger in (("reset", self._reset), ("stall", self._stall)):
                        if trigger is not None and trigger.watches(direction) and trigger.room() < take:
                            take, event = trigger.room(), kind
                    piece, data = data[:take], data[take:]
                    if piece:
                        if self.latency:
                            await asyncio.sleep(self.latency)
                        await self._pace(direction, len(piece))
                        writer.write(piece)
                        await writer.drain()
                        self.bytes[direction] += len(piece)
                        for trigger in (self._reset, self._stall):
                            if trigger is not None and trigger.watches(direction):
                                trigger.seen += len(piece)
                    if event == "reset":
                        self._reset = None
                        self._reset_all()
                        return
                    if event == "stall":
                        self._fire_stall_if_due()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            connection.reset()

    async def _pace(self, direction: str, size: int) -> None:
        rate = self.bandwidth
        if rate is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now, self._next_free[direction])
        self._next_free[direction] = start + size / rate
        wait = self._next_free[direction] - now
        if wait > 0:
            await asyncio.sleep(wait)
