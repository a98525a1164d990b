"""``/_sim/*``: control endpoints for tests and the demo. NOT part of the Supervisor API."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .faults import Faults

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
