"""The long-running service: options, catalog, locations, schedule and web server together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from .catalog import Catalog
from .crypto.age import Recipient, encrypt_stream
from .crypto.keys import KeyStore
from .crypto.kit import render_kit
from .errors import InvalidOptions
from .locations import Location
from .locations.registry import build_location
from .options import AddonOptions, LogLevel, load_options
from .pipeline import BackupRunner, Encryption, RunResult
from .schedule import due_slot, next_slot
from .supervisor import SupervisorGateway
from .web.app import SUPERVISOR_ADDRESS, create_app

_LOGGER = logging.getLogger(__name__)

LOG_LEVELS = {
    LogLevel.TRACE: logging.DEBUG,
    LogLevel.DEBUG: logging.DEBUG,
    LogLevel.INFO: logging.INFO,
    LogLevel.NOTICE: logging.INFO,
    LogLevel.WARNING: logging.WARNING,
    LogLevel.ERROR: logging.ERROR,
    LogLevel.FATAL: logging.CRITICAL,
}
SLOT_KEY = "last_scheduled_slot"
SCHEDULER_TICK = 30.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Where things are: fixed in the container, overridable for the demo and tests."""

    supervisor_url: str
    token: str
    data_dir: Path
    backup_dir: Path
    web_host: str = "0.0.0.0"  # noqa: S104 - ingress reaches the add-on on its container address
    web_port: int = 8099
    allowed_clients: Collection[str] = (SUPERVISOR_ADDRESS,)
    poll_interval: float = 1.0

    @classmethod
    def from_environment(cls) -> Settings:
        token = os.environ.get("SUPERVISOR_TOKEN") or os.environ.get("HASSIO_TOKEN")
        if not token:
            raise InvalidOptions(
                ["SUPERVISOR_TOKEN is not set; this add-on must be started by the Home Assistant Supervisor"]
            )
        return cls(
            supervisor_url=os.environ.get("SUPERVISOR_API", "http://supervisor"),
            token=token,
            data_dir=Path(os.environ.get("BACKUP_321_DATA_DIR", "/data")),
            backup_dir=Path(os.environ.get("BACKUP_321_BACKUP_DIR", "/backup")),
            web_port=int(os.environ.get("BACKUP_321_WEB_PORT", "8099")),
        )


def configure_logging(level: LogLevel = LogLevel.INFO) -> None:
    logging.basicConfig(
        level=LOG_LEVELS[level],
        format="%(asctime)s %(levelname)s (%(name)s) %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        force=True,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class Addon:
    """Everything the running add-on holds."""

    def __init__(self, settings: Settings, options: AddonOptions) -> None:
        self.settings = settings
        self.options = options
        self.catalog = Catalog(settings.data_dir / "catalog.sqlite3")
        self.gateway = SupervisorGateway(
            settings.supervisor_url, settings.token, poll_interval=settings.poll_interval
        )
        self.keys = KeyStore.open(settings.data_dir, options.encryption_key)
        self.locations: list[Location] = [build_location(loc, self.catalog) for loc in options.locations]
        self.runner = BackupRunner(
            gateway=self.gateway,
            catalog=self.catalog,
            locations=self.locations,
            options=options,
            backup_dir=settings.backup_dir,
            encryption=self._encryption(),
        )
        self.next_backup: datetime | None = None
        self._background: set[asyncio.Task[RunResult]] = set()
        self._scheduler: asyncio.Task[None] | None = None
        self._web: web.AppRunner | None = None

    def _encryption(self) -> Encryption:
        recipients = [self.keys.recipient(), *(Recipient.parse(r) for r in self.options.age_recipients)]

        def envelope(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
            return encrypt_stream(chunks, recipients)

        return Encryption(password=self.keys.current, key_id=self.keys.current_id, envelope=envelope)

    def kit(self) -> str:
        return render_kit(self.keys, instance=self.catalog.instance_id(), now=datetime.now(UTC).astimezone())

    def alive(self) -> bool:
        return self._scheduler is not None and not self._scheduler.done()

    async def start(self, *, schedule: bool = True, web_server: bool = True) -> None:
        report = self.catalog.repair()
        for run_id in report.interrupted_runs:
            _LOGGER.warning("Backup run %d was interrupted when the add-on stopped; marked as failed", run_id)
        for location in self.locations:
            try:
                removed = await location.cleanup_incomplete()
            except Exception as err:  # a location that is down must not stop the add-on
                _LOGGER.warning("Could not tidy %s: %s", location.name, err)
                continue
            if removed:
                _LOGGER.info("Removed %d incomplete copies from %s", removed, location.name)
        if web_server:
            self._web = web.AppRunner(create_app(self, self.settings.allowed_clients), access_log=None)
            await self._web.setup()
            await web.TCPSite(self._web, self.settings.web_host, self.settings.web_port).start()
            _LOGGER.info("Web interface listening on port %d", self.settings.web_port)
        if schedule:
            self.start_scheduler()

    def start_scheduler(self) -> None:
        self._scheduler = asyncio.create_task(self._schedule_loop(), name="scheduler")

    async def stop_scheduler(self) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler
            self._scheduler = None

    async def stop(self) -> None:
        tasks = [t for t in (self._scheduler, *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._web is not None:
            await self._web.cleanup()
        await self.gateway.close()
        self.catalog.close()

    def start_background_run(self, trigger: str) -> asyncio.Task[RunResult]:
        task = asyncio.create_task(self.runner.run(trigger), name=f"backup ({trigger})")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _schedule_loop(self) -> None:
        at = self.options.backup_time
        while True:
            now = datetime.now(UTC).astimezone()
            stored = self.catalog.get_meta(SLOT_KEY)
            if stored is None:
                # First start: the schedule begins with the next slot.
                self.catalog.set_meta(SLOT_KEY, now.isoformat())
                stored = now.isoformat()
            slot = due_slot(now, at, datetime.fromisoformat(stored))
            if slot is not None:
                # Stored before the run starts, so a crash mid-run does not repeat it forever.
                self.catalog.set_meta(SLOT_KEY, slot.isoformat())
                trigger = "schedule" if (now - slot).total_seconds() < 300 else "catch-up"
                if not self.runner.running:
                    await self.runner.run(trigger)
                continue
            self.next_backup = next_slot(now, at)
            wait = (self.next_backup - now).total_seconds()
            await asyncio.sleep(max(1.0, min(wait, SCHEDULER_TICK)))


async def run_service(settings: Settings | None = None) -> int:
    """The add-on's main loop; returns the process exit code."""
    configure_logging()
    try:
        settings = settings or Settings.from_environment()
        options = load_options(settings.data_dir / "options.json")
    except InvalidOptions as err:
        for problem in err.problems:
            _LOGGER.error("Invalid option: %s", problem)
        _LOGGER.error("Nothing was backed up or changed. Correct the options and start the add-on again.")
        return 2
    configure_logging(options.log_level)
    addon = Addon(settings, options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await addon.start()
    _LOGGER.info(
        "3-2-1 Backup started: daily backup at %s, %d folder location(s)", options.backup_time, len(addon.locations)
    )
    if not addon.keys.kit_confirmed:
        _LOGGER.warning(
            "Save the emergency kit (open the add-on's page, or run 'python3 -m backup_addon kit' in the "
            "add-on's container): without the key your backups cannot be restored."
        )
    try:
        await stop.wait()
    finally:
        _LOGGER.info("Stopping")
        await addon.stop()
    return 0
