"""Supervisor v1 endpoints: translate requests into calls on the simulator's managers."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from . import info, restore, transfer
from .envelope import ApiError, api_ok
from .validation import OPTIONS_SCHEMA, REMOVE_SCHEMA, parse_json_body, validate, validate_new_backup

if TYPE_CHECKING:
    from .app import SupervisorSim


class SupervisorApi:
    """Handlers bound to one simulator."""

    def __init__(self, sim: SupervisorSim) -> None:
        """Serve ``sim``."""
        self._sim = sim

    def routes(self) -> list[web.RouteDef]:
        """The v1 routes the simulator implements."""
        return [
            web.get("/info", self.root_info),
            web.get("/supervisor/info", self.supervisor_info),
            web.get("/supervisor/ping", self.ping),
            web.get("/core/info", self.core_info),
            web.get("/homeassistant/info", self.core_info),
            web.get("/os/info", self.os_info),
            web.get("/addons/{slug}/info", self.addon_info),
            web.get("/addons/self/options/config", self.addon_options),
            web.get("/jobs/info", self.jobs_info),
            web.get("/backups", self.backups_list),
            web.get("/backups/info", self.backups_info),
            web.post("/backups/options", self.backups_options),
            web.post("/backups/reload", self.backups_reload),
            web.post("/backups/new/full", self.backup_full),
            web.post("/backups/new/partial", self.backup_partial),
            web.post("/backups/new/upload", self.backup_upload),
            web.get("/backups/{slug}/info", self.backup_info),
            web.get("/backups/{slug}/download", self.backup_download),
            web.delete("/backups/{slug}", self.backup_remove),
            web.post("/backups/{slug}/restore/full", self.restore_full),
            web.post("/backups/{slug}/restore/partial", self.restore_partial),
        ]

    # -- info --------------------------------------------------------------------------------

    async def root_info(self, _request: web.Request) -> web.Response:
        """``GET /info``."""
        return api_ok(info.root_info(self._sim.config, self._sim.state))

    async def supervisor_info(self, _request: web.Request) -> web.Response:
        """``GET /supervisor/info``."""
        return api_ok(info.supervisor_info(self._sim.config))

    async def ping(self, _request: web.Request) -> web.Response:
        """``GET /supervisor/ping``."""
        return api_ok()

    async def core_info(self, _request: web.Request) -> web.Response:
        """``GET /core/info``."""
        return api_ok(info.core_info(self._sim.config))

    async def os_info(self, _request: web.Request) -> web.Response:
        """``GET /os/info``."""
        return api_ok(info.os_info())

    async def addon_info(self, request: web.Request) -> web.Response:
        """``GET /addons/<slug|self>/info``."""
        config = self._sim.config
        addon = config.addon(request.match_info["slug"])
        if addon is None:
            raise ApiError("Addon does not exist", status=404)
        index = config.installed_addons().index(addon) + 2
        return api_ok(info.addon_info(addon, index))

    async def addon_options(self, _request: web.Request) -> web.Response:
        """``GET /addons/self/options/config``."""
        addon = self._sim.config.addon("self")
        return api_ok(dict(addon.options) if addon else {})

    async def jobs_info(self, _request: web.Request) -> web.Response:
        """``GET /jobs/info``."""
        return api_ok(self._sim.jobs.info())

    # -- backups -----------------------------------------------------------------------------

    async def backups_list(self, _request: web.Request) -> web.Response:
        """``GET /backups``."""
        return api_ok({"backups": self._sim.manager.list_entries()})

    async def backups_info(self, _request: web.Request) -> web.Response:
        """``GET /backups/info``."""
        manager = self._sim.manager
        return api_ok({"backups": manager.list_entries(), "days_until_stale": manager.days_until_stale})

    async def backups_options(self, request: web.Request) -> web.Response:
        """``POST /backups/options``."""
        body = validate(OPTIONS_SCHEMA, parse_json_body(await request.text()))
        if "days_until_stale" in body:
            self._sim.manager.days_until_stale = body["days_until_stale"]
        return api_ok()

    async def backups_reload(self, _request: web.Request) -> web.Response:
        """``POST /backups/reload``."""
        await asyncio.to_thread(self._sim.manager.reload)
        return api_ok()

    async def backup_info(self, request: web.Request) -> web.Response:
        """``GET /backups/<slug>/info``."""
        return api_ok(self._sim.manager.get(request.match_info["slug"]).info())

    async def backup_full(self, request: web.Request) -> web.Response:
        """``POST /backups/new/full``."""
        return await self._new_backup(request, full=True)

    async def backup_partial(self, request: web.Request) -> web.Response:
        """``POST /backups/new/partial``."""
        return await self._new_backup(request, full=False)

    async def _new_backup(self, request: web.Request, *, full: bool) -> web.Response:
        backup_request = validate_new_backup(parse_json_body(await request.text()), full=full)
        run, task = self._sim.start_backup(backup_request)
        job_id = run.job.uuid
        await run.validated.wait()
        if backup_request.background and not task.done():
            return api_ok({"job_id": job_id})
        # Shielded: a client that gives up must not cancel the backup itself.
        backup = await asyncio.shield(task)
        if backup is not None:
            return api_ok({"job_id": job_id, "slug": backup.slug})
        raise ApiError(
            f"An error occurred while making backup, check job '{job_id}' or supervisor logs for details",
            job_id=job_id,
        )

    async def backup_download(self, request: web.Request) -> web.StreamResponse:
        """``GET /backups/<slug>/download``."""
        sim = self._sim
        return await transfer.download(request, sim.manager, sim.faults, sim.stopping)

    async def backup_upload(self, request: web.Request) -> web.Response:
        """``POST /backups/new/upload``."""
        return await transfer.upload(request, self._sim.manager, self._sim.config)

    async def backup_remove(self, request: web.Request) -> web.Response:
        """``DELETE /backups/<slug>`` with an optional ``{"location": [...]}`` body."""
        manager = self._sim.manager
        backup = manager.get(request.match_info["slug"])
        body = validate(REMOVE_SCHEMA, parse_json_body(await request.text()))
        locations = None
        if "location" in body:
            locations = [manager.resolve_location(name) for name in body["location"]]
        manager.remove(backup, locations)
        return api_ok()

    async def restore_full(self, request: web.Request) -> web.Response:
        """``POST /backups/<slug>/restore/full``."""
        return await restore.restores(self._sim).handle(request, full=True)

    async def restore_partial(self, request: web.Request) -> web.Response:
        """``POST /backups/<slug>/restore/partial``."""
        return await restore.restores(self._sim).handle(request, full=False)
