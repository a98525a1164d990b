"""The aiohttp application served on the ingress port.

Home Assistant's ingress proxy is the only client in production: requests from any address
but the Supervisor's are refused. The health check answers loopback only, for the container's
HEALTHCHECK.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import asdict
from functools import partial
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..crypto.kit import KIT_FILENAME
from ..locations.probe import probe

if TYPE_CHECKING:
    from ..service import Addon

_LOGGER = logging.getLogger(__name__)

SUPERVISOR_ADDRESS = "172.30.32.2"
LOOPBACK = ("127.0.0.1", "::1")
ADDON_KEY: web.AppKey[Addon] = web.AppKey("addon")
ALLOWED_KEY: web.AppKey[frozenset[str]] = web.AppKey("allowed")

type Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _peer(request: web.Request) -> str | None:
    if request.transport is None:
        return None
    peer = request.transport.get_extra_info("peername")
    if not peer:
        return None
    address = ipaddress.ip_address(peer[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


@web.middleware
async def only_allowed_clients(request: web.Request, handler: Handler) -> web.StreamResponse:
    peer = _peer(request)
    if request.path == "/health" and peer in LOOPBACK:
        return await handler(request)
    if peer not in request.app[ALLOWED_KEY]:
        _LOGGER.warning("Refused a request from %s: only Home Assistant's ingress may connect", peer)
        raise web.HTTPForbidden(text="Open this add-on from Home Assistant's sidebar.\n")
    return await handler(request)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=partial(json.dumps, default=str))


async def health(request: web.Request) -> web.Response:
    addon = request.app[ADDON_KEY]
    if not addon.alive():
        return _json({"status": "unhealthy"}, status=503)
    return _json({"status": "ok"})


async def status(request: web.Request) -> web.Response:
    addon = request.app[ADDON_KEY]
    catalog = addon.catalog
    return _json(
        {
            "running": addon.runner.running,
            "kit_confirmed": addon.keys.kit_confirmed,
            "key_id": addon.keys.current_id,
            "next_backup": addon.next_backup.isoformat() if addon.next_backup else None,
            "locations": [
                {"name": loc.name, "kind": loc.kind, "offsite": loc.offsite} for loc in addon.runner.locations
            ],
            "supervisor_locations": [".local", *addon.options.supervisor_locations],
            "runs": [asdict(r) for r in catalog.recent_runs(20)],
            "backups": [
                {**asdict(b), "copies": [asdict(c) for c in catalog.copies(b.slug)]} for b in catalog.backups()[:50]
            ],
        }
    )


async def backup_now(request: web.Request) -> web.Response:
    addon = request.app[ADDON_KEY]
    if addon.runner.running:
        return _json({"error": "A backup is already running; wait for it to finish."}, status=409)
    addon.start_background_run("panel")
    await asyncio.sleep(0)
    return _json({"started": True}, status=202)


async def test_location(request: web.Request) -> web.Response:
    addon = request.app[ADDON_KEY]
    name = request.match_info["name"]
    location = next((loc for loc in addon.locations if loc.name == name), None)
    if location is None:
        return _json({"error": f"no location is named {name!r}"}, status=404)
    report = await probe(location)
    return _json(asdict(report))


async def kit(request: web.Request) -> web.Response:
    addon = request.app[ADDON_KEY]
    return web.Response(
        text=addon.kit(),
        content_type="text/plain",
        headers={
            "Content-Disposition": f'attachment; filename="{KIT_FILENAME}"',
            "Cache-Control": "no-store",
        },
    )


async def confirm_kit(request: web.Request) -> web.Response:
    request.app[ADDON_KEY].keys.confirm_kit()
    return _json({"kit_confirmed": True})


async def index(request: web.Request) -> web.Response:
    page = resources.files(__package__).joinpath("static/index.html").read_text(encoding="utf-8")
    return web.Response(text=page, content_type="text/html")


def create_app(addon: Addon, allowed_clients: Collection[str]) -> web.Application:
    app = web.Application(middlewares=[only_allowed_clients])
    app[ADDON_KEY] = addon
    app[ALLOWED_KEY] = frozenset(allowed_clients)
    app.router.add_get("/", index)
    app.router.add_get("/health", health)
    app.router.add_get("/api/status", status)
    app.router.add_post("/api/backup", backup_now)
    app.router.add_post("/api/locations/{name}/test", test_location)
    app.router.add_get("/api/kit", kit)
    app.router.add_post("/api/kit/confirm", confirm_kit)
    return app
