"""Home Assistant Core REST API behind the Supervisor proxy, recorded for tests and the demo."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from aiohttp import web

from .config import DEFAULT_TIME_ZONE, HOMEASSISTANT_VERSION, LOCAL_LOCATION, AddonSpec
from .jobs import utcnow_iso

CORE_PREFIXES = ("/core/api", "/homeassistant/api")
RE_ENTITY_ID = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$")

# Home Assistant's own backups (made by its backup integration through the Supervisor).
HA_BACKUP_KINDS = ("automatic", "manual", "pre_update")
HA_INSTANCE_ID = "8b2f4c1d9e7a4f3ba6c5d0e1f2a3b4c5"
# Shaped like the encryption key Home Assistant generates for its automatic backups.
HA_ENCRYPTION_KEY = "K7QD-3MZP-8WXR-2HNV-5TJC-9BFL-4GYS"


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
    time_zone: str = DEFAULT_TIME_ZONE
    version: str = HOMEASSISTANT_VERSION
    restarts: int = 0

    def restart(self) -> None:
        """Home Assistant restarted: posted states and persistent notifications live only in its
        memory, so both are gone. The recorded calls stay (the proxy saw them)."""
        self.states.clear()
        self.notifications.clear()
        self.restarts += 1

    def config(self) -> dict[str, Any]:
        """``GET /api/config`` as Home Assistant's ``Config.as_dict`` answers it."""
        return {
            "latitude": 52.3731,
            "longitude": 4.8922,
            "elevation": 0,
            "unit_system": {
                "length": "km",
                "accumulated_precipitation": "mm",
                "area": "m²",
                "mass": "g",
                "pressure": "Pa",
                "temperature": "°C",
                "volume": "L",
                "wind_speed": "m/s",
            },
            "location_name": "Home",
            "time_zone": self.time_zone,
            "components": ["backup", "hassio", "http", "persistent_notification", "sensor"],
            "config_dir": "/config",
            "whitelist_external_dirs": ["/media", "/config/www"],
            "allowlist_external_dirs": ["/media", "/config/www"],
            "allowlist_external_urls": [],
            "version": self.version,
            "config_source": "storage",
            "recovery_mode": False,
            "state": "RUNNING",
            "external_url": None,
            "internal_url": None,
            "currency": "EUR",
            "country": "NL",
            "language": "en",
            "safe_mode": False,
        }


def home_assistant_backup_body(
    kind: str, *, version: str, addon: AddonSpec | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Body of ``POST /backups/new/partial`` as Home Assistant's backup integration sends it.

    ``automatic``: its scheduled backup (automatic settings, encrypted with its key);
    ``manual``: one started in its backup page; ``pre_update``: the backup it makes before
    updating ``addon``. Raises ValueError for another kind or a pre_update without an add-on.
    """
    now = now or datetime.now(UTC)
    extra: dict[str, Any] = {
        "instance_id": HA_INSTANCE_ID,
        "with_automatic_settings": kind == "automatic",
        "supervisor.backup_request_date": now.isoformat(),
    }
    body: dict[str, Any] = {
        "compressed": True,
        "location": [LOCAL_LOCATION],
        "background": True,
        "homeassistant": True,
        "homeassistant_exclude_database": False,
        "folders": ["ssl"],
    }
    if kind == "automatic":
        body.update(name=f"Automatic backup {version}", addons="ALL", folders=["share", "ssl"])
        body["password"] = HA_ENCRYPTION_KEY
    elif kind == "manual":
        body["name"] = f"Custom backup {version}"
    elif kind == "pre_update":
        if addon is None:
            raise ValueError("a pre_update backup needs the add-on being updated")
        body.update(
            name=f"{addon.name} {addon.version}",
            addons=[addon.slug],
            folders=[],
            homeassistant=False,
            homeassistant_exclude_database=True,
            password=HA_ENCRYPTION_KEY,
        )
        extra["supervisor.addon_update"] = addon.slug
    else:
        raise ValueError(f"kind must be one of {', '.join(HA_BACKUP_KINDS)}")
    body["extra"] = extra
    stem = re.sub(r"[^A-Za-z0-9.]+", "_", body["name"]).strip("_")
    body["filename"] = f"{stem}_{now:%Y-%m-%d_%H.%M_%S%f}.tar"
    return body


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
                web.get(f"{prefix}/config", self.get_config),
                web.get(f"{prefix}/states", self.all_states),
                web.get(f"{prefix}/states/{{entity_id}}", self.get_state),
                web.post(f"{prefix}/states/{{entity_id}}", self.set_state),
                web.delete(f"{prefix}/states/{{entity_id}}", self.remove_state),
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

    async def get_config(self, request: web.Request) -> web.Response:
        """``GET /api/config``."""
        await self._record(request)
        return _core_json(self.state.config())

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

    async def remove_state(self, request: web.Request) -> web.Response:
        """``DELETE /api/states/<entity_id>``: 200 when it existed, 404 otherwise."""
        await self._record(request)
        if self.state.states.pop(request.match_info["entity_id"], None) is None:
            return _message("Entity not found.", 404)
        return _message("Entity removed.", 200)

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
