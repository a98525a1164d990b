"""The aiohttp application served on the ingress port: the panel's pages, its JSON API and live events.

Home Assistant's ingress proxy is the only client in production: requests from any address
but the Supervisor's are refused. The health check answers loopback only, for the container's
HEALTHCHECK. Every URL the page uses is relative, so the panel works under ingress's path
prefix (`X-Ingress-Path`) without knowing it.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from ..errors import AddonError, InvalidOptions
from ..pipeline import RunInProgress
from . import backups, events, locations, memo, status, wizard
from .common import ADDON_KEY, UserError, addon_of, json_response

if TYPE_CHECKING:
    from ..service import Addon

__all__ = ["ADDON_KEY", "LOOPBACK", "SUPERVISOR_ADDRESS", "create_app"]

_LOGGER = logging.getLogger(__name__)

SUPERVISOR_ADDRESS = "172.30.32.2"
LOOPBACK = ("127.0.0.1", "::1")
ALLOWED_KEY: web.AppKey[frozenset[str]] = web.AppKey("allowed")
STATIC_DIR = Path(__file__).parent / "static"

# Cross-site pages cannot send a custom header without a CORS preflight, which this server never
# grants: requiring it on every state-changing request stops forged form posts and fetches.
FORGERY_HEADER = "X-Requested-With"
FORGERY_VALUE = "backup_321"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)

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


@web.middleware
async def only_from_the_panel(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in SAFE_METHODS and request.headers.get(FORGERY_HEADER) != FORGERY_VALUE:
        _LOGGER.warning(
            "Refused a %s %s that did not come from the add-on's page", request.method, request.path
        )
        return json_response(
            {"error": "This request did not come from the add-on's page. Open the add-on from the sidebar."},
            status=403,
        )
    return await handler(request)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn failures of API calls into JSON the page shows; the log keeps the details."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except UserError as err:
        return json_response({"error": err.message, **err.extra}, status=err.status)
    except InvalidOptions as err:
        return json_response({"error": "The settings were not saved.", "problems": err.problems}, status=400)
    except RunInProgress:
        return json_response({"error": "A backup is already running; wait for it to finish."}, status=409)
    except AddonError as err:
        return json_response({"error": str(err)}, status=400)
    except NotImplementedError:
        return json_response({"error": "This add-on version cannot do that yet."}, status=501)
    except Exception:
        _LOGGER.exception("The panel's request %s %s failed", request.method, request.path)
        return json_response(
            {"error": "Something unexpected went wrong; the add-on's log (Log tab) has the details."},
            status=500,
        )


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path == "/" or request.path.startswith("/static/"):
        # Revalidated on every open, so an updated add-on never runs with yesterday's scripts.
        response.headers.setdefault("Cache-Control", "no-cache")


async def health(request: web.Request) -> web.Response:
    if not addon_of(request).alive():
        return json_response({"status": "unhealthy"}, status=503)
    return json_response({"status": "ok"})


async def index(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


def create_app(addon: Addon, allowed_clients: Collection[str]) -> web.Application:
    app = web.Application(middlewares=[only_allowed_clients, only_from_the_panel, errors_as_json])
    app[ADDON_KEY] = addon
    app[ALLOWED_KEY] = frozenset(allowed_clients)
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/", index)
    app.router.add_get("/health", health)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
    for module in (status, backups, locations, wizard, events):
        app.router.add_routes(module.routes())
    events.install(app)
    memo.install(app)
    wizard.install(app)
    return app
