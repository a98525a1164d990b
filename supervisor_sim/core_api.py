"""Home Assistant Core REST API behind the Supervisor proxy, recorded for tests and the demo."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from aiohttp import web

from .jobs import utcnow_iso

CORE_PREFIXES = ("/core/api", "/homeassistant/api")
RE_ENTITY_ID = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$")


@dataclass(frozen=True, slots=True)
class CoreCall:
    """One request the add-on made to ``/core/api/*``."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    at: float

    def as_dict(self) -> dict[str, Any]:
        """JSON shape for ``GET /_sim/calls``."""
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "body": self.body,
            "at": self.at,
        }


@dataclass(slots=True)
class CoreState:
    """What Home Assistant would now show: recorded calls, states and notifications."""

    calls: list[CoreCall] = field(default_factory=list)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    notifications: dict[str, dict[str, Any]] = field(default_factory=dict)


def _core_json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _message(text: str, status: int) -> web.Response:
    return _core_json({"message": text}, status)


def _state_object(
    entity_id: str, state: str, attributes: dict[str, Any], previous: dict[str, Any] | None
) -> dict[str, Any]:
    now = utcnow_iso()
    unchanged = previous is not None and previous["state"] == state
    return {
        "entity_id": entity_id,
        "state": state,
        "attributes": attributes,
        "last_changed": previous["last_changed"] if unchanged and previous else now,
        "last_reported": now,
        "last_updated": now,
        "context": {"id": uuid4().hex.upper()[:26], "parent_id": None, "user_id": None},
    }


class CoreApi:
    """Handlers for the few Core endpoints the add-on uses."""

    def __init__(self, state: CoreState) -> None:
        """Record into ``state``."""
        self.state = state

    def routes(self) -> list[web.RouteDef]:
        """Routes under both proxy prefixes."""
        routes: list[web.RouteDef] = []
        for prefix in CORE_PREFIXES:
            routes += [
                web.get(f"{prefix}/", self.api_running),
                web.get(f"{prefix}/states", self.all_states),
                web.get(f"{prefix}/states/{{entity_id}}", self.get_state),
                web.post(f"{prefix}/states/{{entity_id}}", self.set_state),
                web.post(f"{prefix}/events/{{event_type}}", self.fire_event),
                web.post(f"{prefix}/services/{{domain}}/{{service}}", self.call_service),
            ]
        return routes

    async def _record(self, request: web.Request) -> tuple[Any, bool]:
        raw = await request.text()
        try:
            body = json.loads(raw) if raw else None
            valid = True
        except json.JSONDecodeError:
            body, valid = raw, False
        self.state.calls.append(
            CoreCall(request.method, request.path, dict(request.query), body, time.time())
        )
        return body, valid

    async def api_running(self, request: web.Request) -> web.Response:
        """``GET /api/``."""
        await self._record(request)
        return _message("API running.", 200)

    async def all_states(self, request: web.Request) -> web.Response:
        """``GET /api/states``."""
        await self._record(request)
        return _core_json(list(self.state.states.values()))

    async def get_state(self, request: web.Request) -> web.Response:
        """``GET /api/states/<entity_id>``."""
        await self._record(request)
        state = self.state.states.get(request.match_info["entity_id"])
        if state is None:
            return _message("Entity not found.", 404)
        return _core_json(state)

    async def set_state(self, request: web.Request) -> web.Response:
        """``POST /api/states/<entity_id>``: 201 when new, 200 when updated."""
        body, valid = await self._record(request)
        entity_id = request.match_info["entity_id"]
        if not RE_ENTITY_ID.match(entity_id):
            return _message("Invalid entity ID specified.", 400)
        if not valid or not isinstance(body, dict):
            return _message("Invalid JSON specified.", 400)
        if "state" not in body:
            return _message("No state specified.", 400)
        attributes = body.get("attributes") or {}
        if not isinstance(attributes, dict):
            return _message("State attributes need to be a dictionary.", 400)
        previous = self.state.states.get(entity_id)
        new = _state_object(entity_id, str(body["state"]), attributes, previous)
        self.state.states[entity_id] = new
        response = _core_json(new, 200 if previous is not None else 201)
        response.headers["Location"] = f"/api/states/{entity_id}"
        return response

    async def fire_event(self, request: web.Request) -> web.Response:
        """``POST /api/events/<event_type>``."""
        body, valid = await self._record(request)
        if not valid or (body is not None and not isinstance(body, dict)):
            return _message("Event data should be a JSON object", 400)
        return _message(f"Event {request.match_info['event_type']} fired.", 200)

    async def call_service(self, request: web.Request) -> web.Response:
        """``POST /api/services/<domain>/<service>``; persistent notifications are tracked."""
        body, valid = await self._record(request)
        if not valid or (body is not None and not isinstance(body, dict)):
            return _message("Data should be valid JSON.", 400)
        data: dict[str, Any] = body or {}
        domain, service = request.match_info["domain"], request.match_info["service"]
        if domain == "persistent_notification":
            notification_id = str(data.get("notification_id") or uuid4().hex)
            if service == "create":
                self.state.notifications[notification_id] = {
                    "notification_id": notification_id,
                    "title": data.get("title"),
                    "message": data.get("message"),
                    "created_at": utcnow_iso(),
                }
            elif service == "dismiss":
                self.state.notifications.pop(notification_id, None)
        return _core_json([])
