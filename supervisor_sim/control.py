"""``/_sim/*``: control endpoints for tests and the demo. NOT part of the Supervisor API."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .core_api import HA_BACKUP_KINDS, home_assistant_backup_body
from .envelope import ApiError
from .faults import Faults
from .validation import validate_new_backup

if TYPE_CHECKING:
    from .app import SupervisorSim


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


class SimControl:
    """Read and turn the fault knobs, inspect what the add-on did."""

    def __init__(self, sim: SupervisorSim) -> None:
        """Control ``sim``."""
        self._sim = sim

    def routes(self) -> list[web.RouteDef]:
        """Routes under ``/_sim/`` (no token needed)."""
        return [
            web.get("/_sim/faults", self.get_faults),
            web.post("/_sim/faults", self.set_faults),
            web.delete("/_sim/faults", self.reset_faults),
            web.get("/_sim/calls", self.get_calls),
            web.delete("/_sim/calls", self.clear_calls),
            web.get("/_sim/state", self.get_state),
            web.post("/_sim/core/restart", self.restart_core),
            web.post("/_sim/others/backup", self.others_backup),
        ]

    async def get_faults(self, _request: web.Request) -> web.Response:
        """Current knobs."""
        return web.json_response(self._sim.faults.to_dict())

    async def set_faults(self, request: web.Request) -> web.Response:
        """Change the knobs named in the JSON body; the others keep their values."""
        try:
            changes: Any = json.loads(await request.text() or "{}")
        except json.JSONDecodeError:
            return _bad_request("body must be JSON")
        if not isinstance(changes, dict):
            return _bad_request("body must be a JSON object")
        try:
            self._sim.faults = self._sim.faults.updated(changes)
        except (TypeError, ValueError) as err:
            return _bad_request(str(err))
        return web.json_response(self._sim.faults.to_dict())

    async def reset_faults(self, _request: web.Request) -> web.Response:
        """All knobs back to their defaults."""
        self._sim.faults = Faults()
        return web.json_response(self._sim.faults.to_dict())

    async def get_calls(self, _request: web.Request) -> web.Response:
        """Recorded ``/core/api/*`` calls, oldest first."""
        return web.json_response([call.as_dict() for call in self._sim.core_calls])

    async def clear_calls(self, _request: web.Request) -> web.Response:
        """Forget recorded calls."""
        self._sim.core.calls.clear()
        return web.json_response([])

    async def get_state(self, _request: web.Request) -> web.Response:
        """Core state, backups, Home Assistant states and notifications at a glance."""
        sim = self._sim
        return web.json_response(
            {
                "state": sim.state,
                "backups": sorted(sim.backups),
                "states": sim.core.states,
                "notifications": sim.core.notifications,
            }
        )

    async def restart_core(self, _request: web.Request) -> web.Response:
        """Home Assistant restarts: its states and persistent notifications are gone."""
        self._sim.core.restart()
        return web.json_response({"restarts": self._sim.core.restarts})

    async def others_backup(self, request: web.Request) -> web.Response:
        """Start a backup made by Home Assistant itself: ``{"kind": "automatic" | "manual" | "pre_update",
        "addon"?: slug}``; answers once the job is validated, like a background request."""
        try:
            body: Any = json.loads(await request.text() or "{}")
        except json.JSONDecodeError:
            return _bad_request("body must be JSON")
        if not isinstance(body, dict) or set(body) - {"kind", "addon"}:
            return _bad_request('body must be {"kind": ..., "addon"?: ...}')
        kind = body.get("kind")
        if kind not in HA_BACKUP_KINDS:
            return _bad_request(f"kind must be one of {', '.join(HA_BACKUP_KINDS)}")
        config = self._sim.config
        addon = config.addon(str(body.get("addon", "core_mosquitto"))) if kind == "pre_update" else None
        if kind == "pre_update" and addon is None:
            return _bad_request("addon must be the slug of an installed add-on")
        payload = home_assistant_backup_body(kind, version=config.homeassistant_version, addon=addon)
        try:
            run, _task = self._sim.start_backup(validate_new_backup(payload, full=False))
        except ApiError as err:
            return web.json_response({"error": err.message}, status=err.status)
        await run.validated.wait()
        return web.json_response({"job_id": run.job.uuid, "name": payload["name"], "extra": payload["extra"]})
