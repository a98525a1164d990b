"""The simulator object: state, managers and the aiohttp application that serves them."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from aiohttp import web

from . import sample_data
from .addon_self import install as install_addon_self
from .api import SupervisorApi
from .backup_run import BackupRun, RunSignals
from .backups import BackupManager, SimBackup
from .config import SimConfig
from .control import SimControl
from .core_api import CoreApi, CoreCall, CoreState
from .envelope import ApiError
from .faults import Faults
from .jobs import JobRegistry
from .restore import install as install_restores
from .security import build_middleware
from .validation import BackupRequest, validate_new_backup


class SupervisorSim:
    """A simulated Home Assistant Supervisor serving the v1 API subset the add-on uses."""

    def __init__(self, config: SimConfig) -> None:
        """Seed ``config.root`` with sample data and load the backups already there."""
        config.faults.validate()
        self.config = config
        self._faults = config.faults
        self.jobs = JobRegistry()
        self.manager = BackupManager(config, lambda: self._faults, self.jobs)
        self.core = CoreState(time_zone=config.time_zone, version=config.homeassistant_version)
        self.stopping = asyncio.Event()
        self._cancel_writes = threading.Event()
        self._tasks: set[asyncio.Task[SimBackup | None]] = set()
        self._current: asyncio.Task[SimBackup | None] | None = None
        sample_data.seed(config)
        self.manager.reload()
        self._app = self._build_app()

    # -- public API --------------------------------------------------------------------------

    @property
    def app(self) -> web.Application:
        """The aiohttp application (one per simulator)."""
        return self._app

    @property
    def faults(self) -> Faults:
        """Current fault knobs."""
        return self._faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        value.validate()
        self._faults = value

    @property
    def state(self) -> str:
        """Supervisor core state: ``running``, or ``freeze`` while a backup runs."""
        return self.manager.state

    @property
    def backups(self) -> dict[str, SimBackup]:
        """Backups the Supervisor lists, by slug (a snapshot)."""
        return dict(self.manager.backups)

    def archive_path(self, slug: str, location: str | None = None) -> Path:
        """File of backup ``slug`` in ``location`` (None = local); KeyError if absent."""
        return self.manager.backups[slug].files[location]

    @property
    def core_calls(self) -> list[CoreCall]:
        """Recorded ``/core/api/*`` calls, oldest first (the live list)."""
        return self.core.calls

    def reload(self) -> None:
        """Rescan the backup folders, like ``POST /backups/reload`` (blocking)."""
        self.manager.reload()

    async def wait_idle(self) -> None:
        """Wait until no backup job is running."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def create_backup(
        self, body: dict[str, Any] | None = None, *, full: bool = False
    ) -> SimBackup | None:
        """Run a backup as ``POST /backups/new/full|partial`` with ``body`` would; None if it failed.

        Invalid bodies, unknown mounts and a running backup raise ApiError like the endpoint.
        """
        _run, task = self.start_backup(validate_new_backup(body or {}, full=full))
        return await asyncio.shield(task)

    def start_backup(self, request: BackupRequest) -> tuple[BackupRun, asyncio.Task[SimBackup | None]]:
        """Check locations and the running state, then start the job; raises ApiError."""
        manager = self.manager
        if request.locations is None:
            locations = [manager.default_location()]
        else:
            locations = [manager.resolve_location(name) for name in request.locations]
        manager.require_mount_up(locations[0])
        if self._current is not None and not self._current.done():
            kind = "full" if request.full else "partial"
            raise ApiError(
                f"'BackupManager.do_backup_{kind}' blocked from execution, "
                f"system is not running - {manager.state}"
            )
        run = BackupRun(
            manager, request, locations, lambda: self._faults, RunSignals(self.stopping, self._cancel_writes)
        )
        self.jobs.add(run.job)
        task = asyncio.create_task(run.run(), name=f"backup {run.job.uuid}")
        self._current = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run, task

    # -- wiring ------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[build_middleware(lambda: self._faults, self.config.token, self.stopping)]
        )
        app.add_routes(SupervisorApi(self).routes())
        app.add_routes(CoreApi(self.core).routes())
        app.add_routes(SimControl(self).routes())
        install_restores(app, self)
        install_addon_self(app, self)
        app[SIM_KEY] = self
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_shutdown(self, _app: web.Application) -> None:
        # Releases hanging requests and stalled downloads, stops archive writing.
        self.stopping.set()
        self._cancel_writes.set()

    async def _on_cleanup(self, _app: web.Application) -> None:
        await self.wait_idle()


SIM_KEY = web.AppKey("supervisor_sim", SupervisorSim)


def create_app(config: SimConfig) -> web.Application:
    """A ready aiohttp application for ``config`` (the simulator is ``app[SIM_KEY]``)."""
    return SupervisorSim(config).app
