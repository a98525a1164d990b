"""The fault proxy itself, between a real client and a real TCP server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import pytest

from .faultproxy import FaultProxy

TOOL = "fault proxy (tooling)"
MiB = 1 << 20


class Sink:
    """A TCP server that counts what it receives and can answer with a stream of its own."""

    def __init__(self, answer: int = 0) -> None:
        self.answer = answer
        self.received = 0
        self.connections = 0
        self.closed = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Sink:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None
        return ("127.0.0.1", self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.answer:
                writer.write(bytes(self.answer))
                await writer.drain()
            while data := await reader.read(1 << 16):
                self.received += len(data)
                if data.startswith(b"echo:"):
                    writer.write(data)
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.transport.abort()
            self.closed.set()


async def _send(port: int, size: int) -> str:
    """Send `size` bytes and wait for the server's end; how the connection ended."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(bytes(size))
        await writer.drain()
        writer.write_eof()
        await reader.read()
        return "closed"
    except ConnectionError:
        return "reset"
    finally:
        writer.transport.abort()


async def _receive(port: int) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got = 0
    try:
        writer.write_eof()
        while data := await reader.read(1 << 16):
            got += len(data)
        return got, "closed"
    except ConnectionError:
        return got, "reset"
    finally:
        writer.transport.abort()


@pytest.mark.reliability(TOOL, "1 MiB up and 1 MiB down through a proxy without faults", "every byte arrives")
async def test_without_faults_every_byte_goes_through(row):
    async with Sink(answer=MiB) as sink, FaultProxy(sink.address) as proxy:
        got, _how = await asyncio.wait_for(_receive(proxy.port), 10)
        assert got == MiB
        assert await asyncio.wait_for(_send(proxy.port, MiB), 10) == "closed"
        await asyncio.wait_for(sink.closed.wait(), 5)
    assert sink.received == MiB
    row.happened = f"{got} bytes down, {sink.received} bytes up"


@pytest.mark.reliability(TOOL, "reset after 100000 bytes client-to-server", "the server gets exactly 100000 bytes, both ends see the reset")
async def test_reset_after_bytes_going_up(row):
    async with Sink() as sink, FaultProxy(sink.address) as proxy:
        proxy.reset_after(100_000, "up")
        how = await asyncio.wait_for(_send(proxy.port, MiB), 10)
        await asyncio.wait_for(sink.closed.wait(), 5)
    assert sink.received == 100_000
    assert how == "reset"
    assert proxy.resets == 1
    row.happened = f"server received {sink.received} bytes; client saw a {how}"


@pytest.mark.reliability(TOOL, "reset after 70000 bytes server-to-client", "the client gets exactly 70000 bytes, then a reset")
async def test_reset_after_bytes_going_down(row):
    async with Sink(answer=MiB) as sink, FaultProxy(sink.address) as proxy:
        proxy.reset_after(70_000, "down")
        got, how = await asyncio.wait_for(_receive(proxy.port), 10)
    assert (got, how) == (70_000, "reset")
    row.happened = f"client received {got} bytes, then a {how}"


@pytest.mark.reliability(TOOL, "stall for 0.6 s after 1000 bytes", "nothing moves for 0.6 s, then the rest arrives")
async def test_stall_for_some_seconds_then_flow_again(row):
    async with Sink(answer=200_000) as sink, FaultProxy(sink.address) as proxy:
        proxy.stall_after(1000, "down", seconds=0.6)
        started = time.monotonic()
        got, _how = await asyncio.wait_for(_receive_until(proxy.port, 200_000), 10)
        elapsed = time.monotonic() - started
    assert got == 200_000
    assert 0.55 <= elapsed < 5
    row.happened = f"all {got} bytes after {elapsed:.2f} s"


async def _receive_until(port: int, size: int) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        data = await reader.readexactly(size)
        return len(data), "ok"
    finally:
        writer.transport.abort()


@pytest.mark.reliability(TOOL, "stall forever after 5000 bytes, heal after 0.5 s", "no byte moves until heal(), then all arrive")
async def test_stall_forever_until_healed(row):
    async with Sink(answer=100_000) as sink, FaultProxy(sink.address) as proxy:
        proxy.stall_after(5000, "down")
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            first = await reader.readexactly(5000)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(1), 0.5)
            proxy.heal()
            rest = await asyncio.wait_for(reader.readexactly(95_000), 5)
        finally:
            writer.transport.abort()
    assert len(first) + len(rest) == 100_000
    row.happened = "stalled after 5000 bytes for 0.5 s, the other 95000 came after heal()"


@pytest.mark.reliability(TOOL, "0.05 s latency per chunk, 5 round trips", "each round trip takes at least 2 x 0.05 s")
async def test_latency_per_chunk(row):
    async with Sink() as sink, FaultProxy(sink.address) as proxy:
        proxy.set_latency(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        started = time.monotonic()
        try:
            for n in range(5):
                writer.write(f"echo:{n}".encode())
                await writer.drain()
                assert await asyncio.wait_for(reader.readexactly(6), 5) == f"echo:{n}".encode()
        finally:
            writer.transport.abort()
        elapsed = time.monotonic() - started
    assert elapsed >= 5 * 2 * 0.05
    row.happened = f"5 round trips in {elapsed:.2f} s"


@pytest.mark.reliability(TOOL, "drop the 2nd accepted connection", "connection 2 is reset before reaching the server; 1 and 3 work")
async def test_drop_the_nth_connection(row):
    async with Sink(answer=10) as sink, FaultProxy(sink.address) as proxy:
        proxy.drop_connection(2)
        results = [await asyncio.wait_for(_receive(proxy.port), 5) for _ in range(3)]
    assert results[0] == (10, "closed") and results[2] == (10, "closed")
    assert results[1][0] == 0
    assert sink.connections == 2
    assert proxy.dropped == 1
    row.happened = f"results {results}; the server saw {sink.connections} connections"


@pytest.mark.reliability(TOOL, "bandwidth limit 1 MiB/s, 512 KiB down", "takes about half a second")
async def test_bandwidth_limit(row):
    async with Sink(answer=512 * 1024) as sink, FaultProxy(sink.address) as proxy:
        proxy.set_bandwidth(MiB)
        started = time.monotonic()
        got, _ = await asyncio.wait_for(_receive(proxy.port), 10)
        elapsed = time.monotonic() - started
    assert got == 512 * 1024
    assert 0.4 <= elapsed < 3
    row.happened = f"{got} bytes in {elapsed:.2f} s"


@pytest.mark.reliability(TOOL, "arm a reset while a connection streams", "the open connection is reset right away")
async def test_faults_switch_at_runtime_on_open_connections(row):
    async with Sink() as sink, FaultProxy(sink.address) as proxy:
        _reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            writer.write(bytes(10_000))
            await writer.drain()
            await asyncio.sleep(0.1)
            proxy.reset_after(0, "up")
            with pytest.raises(ConnectionError):
                for _ in range(100):
                    writer.write(bytes(10_000))
                    await writer.drain()
                    await asyncio.sleep(0.01)
        finally:
            writer.transport.abort()
        await asyncio.wait_for(sink.closed.wait(), 5)
    assert sink.received == 10_000
    row.happened = f"the server got the {sink.received} bytes sent before the switch, then the reset"


@pytest.mark.reliability(TOOL, "proxy on a thread of its own, driven by a blocking client", "faults set from the test thread apply")
def test_proxy_in_a_thread_for_blocking_tests(row):
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(5)
        with FaultProxy.in_thread(server.getsockname()) as proxy:
            proxy.reset_after(3, "up")
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client:
                peer, _ = server.accept()
                with peer:
                    client.sendall(b"hello")
                    peer.settimeout(5)
                    got = b""
                    with contextlib.suppress(ConnectionError):
                        while chunk := peer.recv(100):
                            got += chunk
    assert got == b"hel"
    row.happened = f"the server got {got!r}, then the reset"
