"""Live events for the page as Server-Sent Events: run progress, finished runs, catalog changes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from aiohttp import web

from .common import addon_of, as_dict, dumps

# A comment line this often keeps proxies from closing a quiet stream, and notices a closed page.
KEEPALIVE_SECONDS = 15.0
# Tells the browser how long to wait before reconnecting after the stream ends.
RETRY_MS = 2000

CLOSING_KEY: web.AppKey[asyncio.Event] = web.AppKey("events_closing", asyncio.Event)


def _frame(event: dict[str, Any]) -> bytes:
    return f"data: {dumps(event)}\n\n".encode()


async def _pump(source: AsyncIterator[dict[str, Any]], queue: asyncio.Queue[dict[str, Any]]) -> None:
    async for event in source:
        await queue.put(event)


async def stream(request: web.Request) -> web.StreamResponse:
    addon = addon_of(request)
    closing = request.app[CLOSING_KEY]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            # Ingress and other proxies must pass each event on at once.
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    await response.write(f"retry: {RETRY_MS}\n\n".encode())
    # Subscribed before the snapshot, so nothing that happens in between is lost.
    source = addon.subscribe()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=256)
    pump = asyncio.create_task(_pump(source, queue), name="panel events")
    progress = addon.progress
    snapshot = {"type": "progress", **as_dict(progress)} if progress is not None else {"type": "idle"}
    closed = asyncio.create_task(closing.wait())
    try:
        await response.write(_frame(snapshot))
        while not closing.is_set():
            getter = asyncio.create_task(queue.get())
            try:
                done, _ = await asyncio.wait(
                    {getter, closed, pump}, timeout=KEEPALIVE_SECONDS, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                if not getter.done():
                    getter.cancel()
            if getter in done:
                await response.write(_frame(getter.result()))
            elif pump in done:
                break  # the add-on sends no more events: the page reconnects later
            elif not done:
                await response.write(b": keep-alive\n\n")
    except ConnectionResetError:
        pass  # the page was closed
    finally:
        closed.cancel()
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump
        if isinstance(source, AsyncGenerator):
            with contextlib.suppress(Exception):
                await source.aclose()
    return response


async def _on_shutdown(app: web.Application) -> None:
    # Open streams would otherwise hold the server's shutdown until its timeout.
    app[CLOSING_KEY].set()


def install(app: web.Application) -> None:
    app[CLOSING_KEY] = asyncio.Event()
    app.on_shutdown.append(_on_shutdown)


def routes() -> list[web.RouteDef]:
    return [web.get("/api/events", stream)]
