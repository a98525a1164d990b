"""The Supervisor's request gate: fault injection, core state, token and ``backup`` role rules."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Final

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from .envelope import ApiError, api_error, forced_error, plain_error
from .faults import Faults

CONTROL_PREFIX: Final = "/_sim/"

# Refused for everybody (v1 patterns of supervisor/api/middleware/security.py).
BLACKLIST: Final = re.compile(r"^(?:/homeassistant/api/hassio(?:/|_).*|/core/api/hassio(?:/|_).*)$")

# Reach their handler without the Supervisor token check; the Core proxy checks on its own.
NO_SECURITY_CHECK: Final = re.compile(
    r"^(?:/homeassistant/api/.*|/homeassistant/websocket|/core/api/.*|/core/websocket"
    r"|/supervisor/ping|/ingress/[-_A-Za-z0-9]+/.*)$"
)
CORE_PROXY: Final = re.compile(r"^/(?:core|homeassistant)/(?:api/.*|websocket)$")

# An add-on token reaches these whatever its role or hassio_api.
API_BYPASS: Final = re.compile(
    r"^(?:|/addons/self/(?!security|update)[^/]+|/addons/self/options/config|/info"
    r"|/services.*|/discovery.*|/auth)$"
)

# hassio_role: backup
ROLE_BACKUP: Final = re.compile(r"^(?:|/.+/info|/backups.*)$")

VALID_API_STATES: Final = frozenset({"startup", "running", "freeze"})

POLL_INTERVAL = 0.05


def extract_supervisor_token(request: web.Request) -> str | None:
    """Token in the Supervisor's order: X-Supervisor-Token, X-Hassio-Key, Authorization."""
    for header in ("X-Supervisor-Token", "X-Hassio-Key"):
        if value := request.headers.get(header):
            return value
    if value := request.headers.get(hdrs.AUTHORIZATION):
        return value.split(" ")[-1]
    return None


def extract_core_token(request: web.Request) -> str:
    """Token as the Core proxy reads it: Authorization bearer, else X-Ha-Access."""
    if hdrs.AUTHORIZATION in request.headers:
        return request.headers[hdrs.AUTHORIZATION].split(" ")[-1]
    return request.headers.get("X-Ha-Access", "")


def access_status(request: web.Request, token: str) -> int | None:
    """HTTP status the middleware rejects with (401/403), or None when the add-on may pass."""
    path = request.path
    if BLACKLIST.match(path):
        return 403
    if NO_SECURITY_CHECK.match(path):
        # The Core proxy answers 401 for an unknown token (or no homeassistant_api).
        if CORE_PROXY.match(path) and extract_core_token(request) != token:
            return 401
        return None
    supplied = extract_supervisor_token(request)
    if not supplied:
        return 401
    if supplied != token:
        # A token the Supervisor does not know is "Invalid token for access": 403.
        return 403
    if API_BYPASS.match(path) or ROLE_BACKUP.match(path):
        return None
    return 403


async def wait_until_released(request: web.Request, stopping: asyncio.Event) -> None:
    """Never answer: return once the client has gone or the simulator shuts down."""
    while not stopping.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        try:
            await asyncio.wait_for(stopping.wait(), POLL_INTERVAL)
        except TimeoutError:
            continue


def build_middleware(faults: Callable[[], Faults], token: str, stopping: asyncio.Event) -> Middleware:
    """Middleware applying fault knobs, the not-ready state and the access rules in order."""

    @web.middleware
    async def supervisor_gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return await handler(request)
        current = faults()
        if current.not_ready_state is not None and current.not_ready_state not in VALID_API_STATES:
            return api_error(ApiError(f"System is not ready with state: {current.not_ready_state}"))
        if (status := current.status_for(request.path)) is not None:
            return forced_error(status)
        if current.hangs(request.path):
            await wait_until_released(request, stopping)
            # Still no answer: the connection just ends, as when the Supervisor goes away.
            if request.transport is not None:
                request.transport.close()
            return plain_error(503)
        if (status := access_status(request, token)) is not None:
            return plain_error(status)
        try:
            return await handler(request)
        except ApiError as err:
            return api_error(err)

    return supervisor_gate
