"""The long-running service: options, catalog, locations, schedule and web server together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from aiohasupervisor import models
from aiohttp import web

from . import __version__, upkeep
from .catalog import (
    BackupRecord,
    Catalog,
    CatalogUnavailable,
    CopyState,
    LocationSummary,
    Origin,
    Run,
    RunState,
)
from .commands import Command, InvalidCommand, read_commands
from .crypto.age import Recipient, encrypt_stream
from .crypto.keys import KeyStore
from .crypto.kit import render_kit
from .errors import AddonError, InvalidOptions, NotEnoughSpace
from .homeassistant import HomeAssistant
from .locations import Location, Usage
from .locations.probe import ProbeReport, probe
from .locations.registry import BYTES_PER_MEGABIT, build_location
from .locations.wrappers import accepts_uploads_now
from .options import AddonOptions, BackupType, LogLevel, OtherBackups, load_options, parse_options
from .pipeline import (
    ENVELOPE_SUFFIX,
    BackupRunner,
    Encryption,
    ManualBackup,
    RunInProgress,
    RunProgress,
    RunResult,
    origin_of,
    sane_size,
)
from .recovery import discover, rebuild_catalog
from .reporting import (
    EVENT_BACKUP_COMPLETED,
    EVENT_BACKUP_FAILED,
    EVENT_BACKUP_STARTED,
    EVENT_COPY_FAILED,
    EVENT_COPY_VERIFIED,
    EVENT_PRUNED,
    Reporter,
    RunFailure,
    StatusSnapshot,
    backup_completed_payload,
    backup_failed_payload,
    backup_started_payload,
    copy_failed_payload,
    copy_verified_payload,
    pruned_payload,
)
from .restore import RestoreSelection, decrypted_stream, restore_copy, restore_supervisor_backup
from .retention import RetentionPlan
from .schedule import due_run, jitter_for, next_run_after
from .sidecar import meta_from_info, write_sidecar
from .stdin_relay import COMMANDS_FIFO, open_keeper
from .supervisor import LOCAL, RESTORE_JOB_NAMES, SupervisorGateway
from .verdict import Verdict
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
PRUNED_AT_KEY = "last_pruned_at"
SCHEDULER_TICK = 30.0
UPKEEP_TICK = 60.0
OTHER_BACKUPS_POLL = 300.0
COMPLETION_RETRY = 3600.0  # how often a location that missed the newest backup is tried again


@dataclass(frozen=True, slots=True)
class LocationHealth:
    """How one place is doing, for the panel."""

    name: str
    kind: str
    offsite: bool
    media: str
    last_success_at: datetime | None
    last_proven_at: datetime | None
    last_error: str | None
    supervisor: bool
    last_restorable_at: datetime | None = None


def _log_failure(task: asyncio.Task[Any]) -> None:
    """Background work that failed says so in the log (nobody else awaits it)."""
    if task.cancelled() or task.exception() is None:
        return
    err = task.exception()
    if isinstance(err, AddonError):
        _LOGGER.error("%s failed: %s", task.get_name(), err)
    else:
        _LOGGER.error("%s failed unexpectedly", task.get_name(), exc_info=err)


def _bytes_per_second(megabit: float | None) -> int | None:
    return None if megabit is None else int(megabit * BYTES_PER_MEGABIT)


def _free(path: Path) -> int | None:
    usage = upkeep.disk_usage(path)
    return None if usage is None else usage.free_bytes


def _local_zone() -> tzinfo:
    zone = datetime.now().astimezone().tzinfo
    return zone if zone is not None else UTC



def _unreachable(error: str) -> bool:
    words = ("unreachable", "timed out", "cannot connect", "could not connect", "not reachable", "refused")
    return any(word in error.lower() for word in words)


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
    commands_fifo: Path | None = None

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
            commands_fifo=Path(os.environ.get("BACKUP_321_COMMANDS", str(COMMANDS_FIFO))),
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
    """Everything the running add-on holds, and what the panel and automations can ask of it."""

    def __init__(self, settings: Settings, options: AddonOptions) -> None:
        self.settings = settings
        self.options = options
        self.catalog = Catalog(settings.data_dir / "catalog.sqlite3")
        self.gateway = SupervisorGateway(
            settings.supervisor_url, settings.token, poll_interval=settings.poll_interval
        )
        self.keys = KeyStore.open(settings.data_dir, options.encryption_key)
        self.locations: list[Location] = [build_location(loc, self.catalog) for loc in options.locations]
        self.tz: tzinfo = _local_zone()
        self.runner = BackupRunner(
            gateway=self.gateway,
            catalog=self.catalog,
            locations=self.locations,
            options=options,
            backup_dir=settings.backup_dir,
            encryption=self._encryption(),
        )
        self.runner.listeners.append(self._on_progress)
        self.runner.after_commit.append(self._write_sidecar)
        self.runner.on_start.append(self._announce_start)
        self.places = upkeep.places(options, self.locations, settings.backup_dir)
        self.homeassistant = HomeAssistant(settings.supervisor_url, settings.token)
        self.reporter = Reporter(self.homeassistant, secrets=self._secrets())
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.next_backup: datetime | None = None
        self.unreachable_since: dict[str, datetime] = {}
        self.other_failures: dict[UUID, str] = {}
        self._completion_tries: dict[tuple[str, str], float] = {}
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._scheduler: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._busy = asyncio.Lock()  # proofs, pruning and restores, one at a time
        self._web: web.AppRunner | None = None

    def _secrets(self) -> list[str]:
        found = [self.keys.current, self.settings.token]
        for location in self.options.locations:
            for field in ("password", "secret_access_key", "private_key", "passphrase"):
                value = getattr(location, field, None)
                if isinstance(value, str) and value:
                    found.append(value)
        return found

    def _encryption(self) -> Encryption:
        recipients = self._recipients()

        def envelope(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
            return encrypt_stream(chunks, recipients)

        return Encryption(password=self.keys.current, key_id=self.keys.current_id, envelope=envelope)

    def _recipients(self) -> list[Recipient]:
        return [self.keys.recipient(), *(Recipient.parse(r) for r in self.options.age_recipients)]

    # --- status -----------------------------------------------------------------------------

    @property
    def progress(self) -> RunProgress | None:
        return self.runner.progress

    def _on_progress(self, progress: RunProgress | None) -> None:
        if progress is None:
            self._broadcast({"type": "changed"})
        else:
            self._broadcast({"type": "progress", **asdict(progress)})

    def _broadcast(self, event: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    async def subscribe(self) -> AsyncIterator[dict[str, Any]]:
        """Live events for the panel: progress of the current run, and "something changed"."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=100)
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)

    def stale_limit(self) -> timedelta | None:
        now = self.clock().astimezone(self.tz)
        gaps = []
        for index, entry in enumerate(self.options.schedules):
            schedule = entry.schedule()
            first = next_run_after(schedule, now, jitter=self._jitter(index))
            second = None if first is None else next_run_after(schedule, first, jitter=self._jitter(index))
            if first is not None and second is not None:
                gaps.append(second - first)
        return upkeep.stale_limit(gaps)

    def verdict(self) -> Verdict:
        return upkeep.verdict(self.catalog, self.places, now=self.clock(), limit=self.stale_limit())

    def location_health(self) -> list[LocationHealth]:
        summary = self.catalog.location_summary()
        empty = LocationSummary(None, None, None)
        return [
            LocationHealth(
                name=place.name,
                kind=place.kind,
                offsite=place.offsite,
                media=place.media,
                last_success_at=summary.get(place.name, empty).last_success_at,
                last_proven_at=summary.get(place.name, empty).last_proven_at,
                last_error=summary.get(place.name, empty).last_error,
                supervisor=place.location is None,
                last_restorable_at=summary.get(place.name, empty).last_drilled_at,
            )
            for place in self.places.values()
        ]

    async def location_usage(self, name: str) -> Usage | None:
        place = self._place(name)
        if place.location is None:
            if place.name != LOCAL:
                return None
            return upkeep.disk_usage(self.settings.backup_dir)
        return await place.location.usage()

    def snapshot(self) -> StatusSnapshot:
        """What Home Assistant's notifications and sensors show."""
        now = self.clock()
        result = self.verdict()
        backups = self.catalog.backups()
        copies = self.catalog.copies()
        stored = {c.slug for c in copies if c.state is CopyState.COMMITTED}
        last_good = next((b for b in backups if b.slug in stored), None)
        names = {b.slug: b.name for b in backups}
        failure = None
        runs = self.catalog.recent_runs(1, kind="backup")
        if runs and runs[0].state in (RunState.FAILED, RunState.PARTIAL):
            run = runs[0]
            failed = [c.location for c in copies if c.slug == run.slug and c.state is CopyState.FAILED]
            failure = RunFailure(run_id=run.id, stage=run.stage, error=run.error or "", locations=failed)
        bad = [(names.get(c.slug, c.slug), c.location, c.error or "") for c in copies if c.state is CopyState.BAD]
        health = self.location_health()
        disk = upkeep.disk_usage(self.settings.backup_dir)
        return StatusSnapshot(
            now=now,
            last_success_at=last_good.created_at if last_good else None,
            next_backup_at=self.next_backup,
            last_backup_size=last_good.size_bytes if last_good else None,
            last_backup_name=last_good.name if last_good else None,
            rule_met=None if result.newest_slug is None else result.met,
            copies=result.copies,
            media=result.media,
            offsite=result.offsite,
            missing=list(result.missing),
            stale=result.stale,
            stale_reason=result.summary if result.stale else None,
            last_failure=failure,
            unreachable=dict(self.unreachable_since),
            bad_copies=bad,
            kit_confirmed=self.keys.kit_confirmed,
            disk_free_bytes=disk.free_bytes if disk else None,
            disk_total_bytes=disk.total_bytes if disk else None,
            locations={h.name: (h.last_success_at, h.last_restorable_at) for h in health},
            last_backup_slug=last_good.slug if last_good else None,
            running=self.runner.running,
            other_failures=list(self.other_failures.values()),
        )

    def _backup_name(self, slug: str) -> str:
        record = self.catalog.backup(slug)
        return record.name if record else slug

    def _place(self, name: str) -> upkeep.Place:
        place = self.places.get(name)
        if place is None:
            raise AddonError(f"There is no location named {name!r}.")
        return place

    # --- actions ----------------------------------------------------------------------------

    def kit(self) -> str:
        return render_kit(
            self.keys, instance=self.catalog.instance_id(), now=datetime.now(UTC).astimezone(self.tz)
        )

    def confirm_kit(self) -> None:
        self.keys.confirm_kit()
        self._broadcast({"type": "changed"})

    def alive(self) -> bool:
        return self._scheduler is not None and not self._scheduler.done()

    def start_backup(
        self, request: ManualBackup | None = None, trigger: str = "panel"
    ) -> asyncio.Task[RunResult]:
        """Start a backup now; raises RunInProgress when one is going on."""
        if self.runner.running:
            raise RunInProgress("A backup is already running; wait for it to finish.")
        return self._spawn(self.backup(trigger, request), f"backup ({trigger})")

    def _spawn[T](self, work: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)
        return task

    async def backup(
        self,
        trigger: str,
        request: ManualBackup | None = None,
        *,
        mirror: str | None = None,
        targets: Collection[str] | None = None,
    ) -> RunResult:
        """One backup run with everything around it: space check, events, retention, status."""
        if mirror is None:
            await self._make_room()
        started = datetime.now(UTC)
        result = await self.runner.run(trigger, request, mirror=mirror, targets=targets)
        duration = datetime.now(UTC) - started
        failed = [c.location for c in result.copies if not c.ok]
        if result.state is RunState.FAILED:
            run = self.catalog.run(result.run_id)
            await self.reporter.event(
                EVENT_BACKUP_FAILED,
                backup_failed_payload(
                    run_id=result.run_id,
                    stage=run.stage,
                    error=result.error or "",
                    failed_locations=failed,
                    duration=duration,
                ),
            )
        else:
            assert result.slug is not None
            await self.reporter.event(
                EVENT_BACKUP_COMPLETED,
                backup_completed_payload(
                    run_id=result.run_id,
                    slug=result.slug,
                    name=self._backup_name(result.slug),
                    size_bytes=result.size,
                    duration=duration,
                    locations=[c.location for c in result.copies if c.ok],
                    failed_locations=failed,
                ),
            )
            for copy in result.copies:
                if not copy.ok:
                    await self.reporter.event(
                        EVENT_COPY_FAILED,
                        copy_failed_payload(
                            slug=result.slug,
                            name=self._backup_name(result.slug),
                            location=copy.location,
                            error=copy.error or "",
                        ),
                    )
        for copy in result.copies:
            if copy.ok:
                self.unreachable_since.pop(copy.location, None)
            elif copy.error and _unreachable(copy.error):
                self.unreachable_since.setdefault(copy.location, datetime.now(UTC))
        if result.state is not RunState.FAILED and mirror is None:
            await self.prune(last_run_succeeded=result.state is RunState.SUCCEEDED)
        await self.publish()
        return result

    async def _make_room(self) -> None:
        """Before a backup: make sure /backup can take it, pruning local copies that are safe elsewhere."""
        backups = self.catalog.backups()
        sizes = [b.size_bytes for b in backups if b.size_bytes]
        if not sizes:
            return
        needed = sizes[0] * 1.1
        free = _free(self.settings.backup_dir)
        if free is None or free >= needed:
            return
        elsewhere = {p.name for p in self.places.values() if p.location is not None}
        for backup in sorted(backups, key=lambda b: b.created_at):
            if free >= needed:
                break
            local = self.catalog.copy(backup.slug, LOCAL)
            if local is None or local.state is not CopyState.COMMITTED or backup.pinned:
                continue
            if backup.origin is not Origin.ADDON or not upkeep.safe_elsewhere(
                self.catalog, backup.slug, locations=elsewhere
            ):
                continue
            _LOGGER.warning(
                "Removing %s from /backup to make room: it is safe in another location", backup.name
            )
            await upkeep.delete_copy(self.catalog, self.gateway, self.places[LOCAL], backup.slug)
            free = _free(self.settings.backup_dir) or 0
        if free < needed:
            raise NotEnoughSpace(
                f"Home Assistant's backup folder has {free / 2**20:.0f} MiB free, but the last backup needed "
                f"{sizes[0] / 2**20:.0f} MiB. Delete old backups under Settings > System > Backups, or add a "
                "location so the add-on can move older backups off this disk."
            )

    def retention_dry_run(self) -> RetentionPlan:
        runs = self.catalog.recent_runs(1, kind="backup")
        previous = self.catalog.get_meta(PRUNED_AT_KEY)
        return upkeep.plan(
            self.catalog,
            self.options,
            self.places,
            now=self.clock(),
            last_run_succeeded=bool(runs) and runs[0].state is RunState.SUCCEEDED,
            previous_now=datetime.fromisoformat(previous) if previous else None,
            tz=self.tz,
        )

    async def prune(self, *, last_run_succeeded: bool) -> RetentionPlan:
        """Apply retention after a backup; deletes nothing when the plan is held."""
        async with self._busy:
            previous = self.catalog.get_meta(PRUNED_AT_KEY)
            now = self.clock()
            plan = upkeep.plan(
                self.catalog,
                self.options,
                self.places,
                now=now,
                last_run_succeeded=last_run_succeeded,
                previous_now=datetime.fromisoformat(previous) if previous else None,
                tz=self.tz,
            )
            self.catalog.set_meta(PRUNED_AT_KEY, now.isoformat())
            if plan.held:
                _LOGGER.warning("Nothing was deleted: %s", plan.held)
                return plan
            if not plan.deletions:
                return plan
            run_id = self.catalog.start_run("retention", "prune")
            deleted, errors = [], []
            for decision in plan.deletions:
                self.catalog.set_stage(run_id, "pruning", slug=decision.slug)
                try:
                    await upkeep.delete_copy(
                        self.catalog, self.gateway, self.places[decision.location], decision.slug
                    )
                except AddonError as err:
                    errors.append(f"{decision.location}: {err}")
                    continue
                deleted.append(
                    {
                        "slug": decision.slug,
                        "name": self._backup_name(decision.slug),
                        "location": decision.location,
                        "reason": "; ".join(decision.reasons),
                    }
                )
                _LOGGER.info(
                    "Deleted %s from %s (%s)", decision.slug, decision.location, "; ".join(decision.reasons)
                )
            self.catalog.set_run_details(run_id, {"deleted": deleted})
            self.catalog.finish_run(
                run_id, RunState.FAILED if errors else RunState.SUCCEEDED, "; ".join(errors) or None
            )
            for gone in deleted:
                await self.reporter.event(
                    EVENT_PRUNED,
                    pruned_payload(
                        slug=gone["slug"],
                        name=gone["name"],
                        locations=[gone["location"]],
                        reason=gone["reason"],
                    ),
                )
            self._broadcast({"type": "changed"})
            return plan

    async def verify_copy(self, slug: str, location: str, drill: bool = False) -> dict[str, Any]:
        """Read one copy back now (and open every part of it, with `drill`)."""
        place = self._place(location)
        copy = self.catalog.copy(slug, location)
        backup = self.catalog.backup(slug)
        if copy is None or backup is None or copy.state not in (CopyState.COMMITTED, CopyState.BAD):
            raise AddonError(f"There is no copy of this backup in {location}.")
        if place.location is None and location != LOCAL:
            raise AddonError(
                f"Copies on the network storage {location} can only be checked by the Supervisor."
            )
        started = datetime.now(UTC)
        async with self._busy:
            run_id = self.catalog.start_run("panel" if drill else "check", "drill" if drill else "verify")
            self.catalog.set_stage(run_id, "reading", slug=slug)
            try:
                proof = await upkeep.prove(
                    self.catalog,
                    self.gateway,
                    place,
                    copy,
                    backup,
                    identities=self.keys.identities(),
                    password=self._password_for(backup),
                    drill=drill,
                    limit=_bytes_per_second(self.options.verify_limit_mbit),
                )
            except AddonError as err:
                self.unreachable_since.setdefault(location, datetime.now(UTC))
                self.catalog.finish_run(run_id, RunState.FAILED, str(err))
                raise
            self.unreachable_since.pop(location, None)
            self.catalog.finish_run(run_id, RunState.SUCCEEDED if proof.ok else RunState.FAILED, proof.error)
        if proof.ok:
            await self.reporter.event(
                EVENT_COPY_VERIFIED,
                copy_verified_payload(
                    slug=slug,
                    name=backup.name,
                    location=location,
                    size_bytes=proof.size,
                    duration=datetime.now(UTC) - started,
                ),
            )
        else:
            await self.reporter.event(
                EVENT_COPY_FAILED,
                copy_failed_payload(slug=slug, name=backup.name, location=location, error=proof.error or ""),
            )
        self._broadcast({"type": "changed"})
        return {"ok": proof.ok, "level": int(proof.level), "error": proof.error}

    def _password_for(self, backup: BackupRecord) -> str | None:
        if not backup.details.get("protected", True):
            return None
        key_id = backup.details.get("key_id")
        return self.keys.password_for(key_id if isinstance(key_id, str) else None)

    async def restore(
        self, slug: str, location: str, selection: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Restore a backup from one of its copies; the key is proven before anything changes."""
        place = self._place(location)
        copy = self.catalog.copy(slug, location)
        backup = self.catalog.backup(slug)
        if copy is None or backup is None or copy.state is not CopyState.COMMITTED:
            raise AddonError(f"There is no good copy of this backup in {location}.")
        try:
            chosen = RestoreSelection(**selection) if selection else None
        except (TypeError, ValueError) as err:
            raise AddonError(f"Cannot restore that choice: {err}") from None
        if self.runner.running:
            raise RunInProgress("A backup is running; restore when it has finished.")
        async with self._busy:
            run_id = self.catalog.start_run("panel", "restore")
            self.catalog.set_stage(run_id, "restoring", slug=slug)
            last_stage = ["restoring"]

            def progress(stage: str, done: int) -> None:
                if stage != last_stage[0]:
                    last_stage[0] = stage
                    self.catalog.set_stage(run_id, stage, slug=slug)
                self._broadcast(
                    {"type": "restore", "run_id": run_id, "slug": slug, "stage": stage, "bytes": done}
                )

            try:
                if place.location is None:
                    outcome = await restore_supervisor_backup(
                        slug,
                        on_progress=progress,
                        gateway=self.gateway,
                        password=self._password_for(backup),
                        selection=chosen,
                        location=None if location == LOCAL else location,
                    )
                else:
                    assert copy.key is not None
                    outcome = await restore_copy(
                        place.location,
                        copy.key,
                        gateway=self.gateway,
                        identities=self.keys.identities(),
                        password=self._password_for(backup),
                        enveloped=copy.key.endswith(ENVELOPE_SUFFIX),
                        selection=chosen,
                        expected_sha256=backup.sha256,
                        on_progress=progress,
                    )
            except AddonError as err:
                self.catalog.finish_run(run_id, RunState.FAILED, str(err))
                raise
            self.catalog.finish_run(run_id, RunState.SUCCEEDED)
        self._broadcast({"type": "changed"})
        return {"ok": True, "slug": outcome.slug, "full": outcome.full, "uploaded": outcome.uploaded}

    def decrypted_download(self, slug: str, location: str) -> AsyncIterator[bytes]:
        """The plain Home Assistant archive of a copy, streamed."""
        place = self._place(location)
        copy = self.catalog.copy(slug, location)
        if copy is None or copy.state is not CopyState.COMMITTED:
            raise AddonError(f"There is no good copy of this backup in {location}.")
        if place.location is None:
            return self.gateway.download(slug, None if location == LOCAL else location)
        assert copy.key is not None
        return decrypted_stream(
            place.location,
            copy.key,
            identities=self.keys.identities(),
            enveloped=copy.key.endswith(ENVELOPE_SUFFIX),
        )

    async def _announce_start(self, run_id: int, trigger: str, what: ManualBackup | None) -> None:
        await self.reporter.event(
            EVENT_BACKUP_STARTED,
            backup_started_payload(
                run_id=run_id,
                trigger=trigger,
                backup_type=str(what.type) if what else "mirror",
                locations=list(self.places),
            ),
        )

    async def _write_sidecar(self, slug: str, location: Location, key: str) -> None:
        """Store the encrypted description next to a copy, so a new install can find it."""
        backup = self.catalog.backup(slug)
        if backup is None:
            return
        info = await self.gateway.backup_info(slug)
        key_id = backup.details.get("key_id")
        meta = meta_from_info(
            info,
            size=backup.size_bytes,
            sha256=backup.sha256,
            key_id=key_id if isinstance(key_id, str) else None,
            enveloped=key.endswith(ENVELOPE_SUFFIX),
            instance_id=self.catalog.instance_id(),
            addon_version=__version__,
        )
        await write_sidecar(location, key, meta, self._recipients())

    async def recover(self) -> int:
        """Find the backups in every location (from their sidecars) and add them to the catalog."""
        found = await discover(
            self.locations,
            self.keys.identities(),
            on_problem=lambda where, problem: _LOGGER.warning("While searching %s: %s", where, problem),
        )
        earlier = {copy.meta.instance_id for copy in found}
        if len(earlier) == 1 and not self.catalog.backups():
            # The same installation, reinstalled: keep writing into the folders it used.
            self.catalog.set_meta("instance_id", earlier.pop())
        added = rebuild_catalog(self.catalog, found)
        self._broadcast({"type": "changed"})
        return added

    async def _follow_restores(self, runs: list[Run]) -> None:
        """A full restore restarts this add-on too: find out from the Supervisor how each one ended."""
        try:
            jobs = await self.gateway.backup_jobs(RESTORE_JOB_NAMES)
        except AddonError as err:
            _LOGGER.warning("Could not ask the Supervisor how the last restore ended: %s", err)
            return
        for run in runs:
            job = next(
                (
                    j
                    for j in reversed(jobs)
                    if j.reference == run.slug and j.created and j.created >= run.started_at
                ),
                None,
            )
            if job is None:
                continue
            while not job.done:
                await asyncio.sleep(max(self.settings.poll_interval, 1.0))
                found = await self.gateway.find_job(job.uuid)
                if found is None:
                    return
                job = found
            if job.errors:
                reason = "; ".join(e.message for e in job.errors)
                self.catalog.finish_run(
                    run.id, RunState.FAILED, f"the Supervisor could not restore it: {reason}"
                )
            else:
                self.catalog.finish_run(run.id, RunState.SUCCEEDED)
                _LOGGER.info("The restore of %s started before the restart finished", run.slug)
        self._broadcast({"type": "changed"})

    async def _finish_deletions(self) -> None:
        """Deletions a crash interrupted: the copies were already out of every count; remove them."""
        for copy in self.catalog.unfinished_deletions():
            place = self.places.get(copy.location)
            if place is None:
                continue
            try:
                await upkeep.delete_copy(self.catalog, self.gateway, place, copy.slug)
            except Exception as err:  # a location that is down: the next start tries again
                _LOGGER.warning("Could not finish deleting %s from %s: %s", copy.slug, copy.location, err)

    async def _recover_quietly(self) -> None:
        try:
            added = await self.recover()
        except Exception:  # the add-on must start even if a location cannot be searched
            _LOGGER.exception("Could not search the locations for existing backups")
            return
        if added:
            _LOGGER.info("Found %d backups from an earlier installation in the locations", added)

    async def delete_copy(self, slug: str, location: str) -> None:
        place = self._place(location)
        if self.catalog.copy(slug, location) is None:
            raise AddonError(f"There is no copy of this backup in {location}.")
        async with self._busy:
            await upkeep.delete_copy(self.catalog, self.gateway, place, slug)
        self._broadcast({"type": "changed"})

    def set_pinned(self, slug: str, pinned: bool) -> None:
        if self.catalog.backup(slug) is None:
            raise AddonError("There is no such backup.")
        self.catalog.set_pinned(slug, pinned)
        self._broadcast({"type": "changed"})

    async def test_location(self, name: str) -> ProbeReport:
        place = self._place(name)
        configured = next((loc for loc in self.options.locations if loc.name == name), None)
        if place.location is None or configured is None:
            raise AddonError(
                f"{name} is managed by the Supervisor; check it under Settings > System > Storage."
            )
        # Without the retry wrapper: a connection test must answer now, not after backing off.
        return await probe(build_location(configured, self.catalog, retry=False))

    async def installed_addons(self) -> list[tuple[str, str]]:
        """(slug, name) of the installed add-ons, for choosing what a partial backup holds."""
        try:
            return await self.gateway.installed_addons()
        except AddonError as err:
            _LOGGER.warning("%s", err)
            return []

    async def save_options(self, options: dict[str, Any]) -> None:
        """Validate new options, store them through the Supervisor and restart the add-on."""
        parse_options(options)
        await self.gateway.set_own_options(options)
        await self.gateway.restart_self()

    # --- lifecycle --------------------------------------------------------------------------

    async def start(
        self, *, schedule: bool = True, web_server: bool = True, upkeep_loop: bool = True
    ) -> None:
        report = self.catalog.repair()
        for run_id in report.interrupted_runs:
            _LOGGER.warning("Run %d was interrupted when the add-on stopped; marked as failed", run_id)
        restores = [
            r for r in map(self.catalog.run, report.interrupted_runs) if r.kind == "restore" and r.slug
        ]
        if restores:
            self._spawn(self._follow_restores(restores), "restores begun before the restart")
        await self._load_time_zone()
        # An upload cut off by a stop is never resumed (the next backup has another name), so the
        # parts it stored are removed now instead of waiting in the bucket, billed, for a day.
        if self.catalog.forget_open_uploads():
            _LOGGER.info("Removing uploads that were cut off when the add-on stopped")
        for location in self.locations:
            try:
                removed = await location.cleanup_incomplete()
            except Exception as err:  # a location that is down must not stop the add-on
                _LOGGER.warning("Could not tidy %s: %s", location.name, err)
                continue
            if removed:
                _LOGGER.info("Removed %d incomplete copies from %s", removed, location.name)
        await self._finish_deletions()
        if self.locations and not self.catalog.backups():
            # A fresh install (or a lost catalog): find what the locations already hold.
            self._spawn(self._recover_quietly(), "recover")
        if web_server:
            self._web = web.AppRunner(create_app(self, self.settings.allowed_clients), access_log=None)
            await self._web.setup()
            await web.TCPSite(self._web, self.settings.web_host, self.settings.web_port).start()
            _LOGGER.info("Web interface listening on port %d", self.settings.web_port)
        if schedule:
            self.start_scheduler()
        if upkeep_loop:
            self._tasks.append(asyncio.create_task(self._upkeep_loop(), name="upkeep"))

    async def _load_time_zone(self) -> None:
        try:
            config = await self.homeassistant.config()
            self.tz = ZoneInfo(str(config["time_zone"]))
        except Exception as err:  # Home Assistant may still be starting: keep the container's zone
            _LOGGER.info("Using the container's time zone; Home Assistant's is not available (%s)", err)
        self.runner.tz = self.tz

    def start_scheduler(self) -> None:
        self._scheduler = asyncio.create_task(self._schedule_loop(), name="scheduler")

    async def stop_scheduler(self) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler
            self._scheduler = None

    def start_commands(self, path: Path) -> None:
        self._tasks.append(asyncio.create_task(self._command_loop(path), name="commands"))

    async def stop(self) -> None:
        tasks = [t for t in (self._scheduler, *self._tasks, *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._web is not None:
            await self._web.cleanup()
        await self.homeassistant.close()
        await self.gateway.close()
        self.catalog.close()

    # --- loops ------------------------------------------------------------------------------

    def _jitter(self, index: int) -> timedelta:
        return jitter_for(f"{self.catalog.instance_id()}:{index}")

    async def _schedule_loop(self) -> None:
        while True:
            try:
                wait = await self._schedule_tick()
            except AddonError as err:
                # The catalog's disk may be full for a while: keep the schedule alive, try again.
                _LOGGER.error("The schedule could not be checked: %s", err)
                wait = SCHEDULER_TICK
            await asyncio.sleep(max(1.0, min(wait, SCHEDULER_TICK)))

    async def _schedule_tick(self) -> float:
        """Run what is due; return the seconds until the next scheduled backup."""
        now = self.clock().astimezone(self.tz)
        upcoming: list[datetime] = []
        for index, entry in enumerate(self.options.schedules):
            schedule = entry.schedule()
            key = f"{SLOT_KEY}.{index}" if index else SLOT_KEY
            stored = self.catalog.get_meta(key)
            if stored is None:
                # First start: the schedule begins with the next slot.
                self.catalog.set_meta(key, now.isoformat())
                stored = now.isoformat()
            slot = due_run(schedule, now, datetime.fromisoformat(stored), jitter=self._jitter(index))
            if slot is not None and not self.runner.running:
                # Stored before the run starts, so a crash mid-run does not repeat it forever.
                self.catalog.set_meta(key, slot.isoformat())
                late = now.astimezone(UTC) - slot.astimezone(UTC)
                trigger = "schedule" if late.total_seconds() < 300 else "catch-up"
                try:
                    await self.backup(trigger, self.runner.default_backup(BackupType(schedule.type)))
                except AddonError as err:
                    _LOGGER.error("Scheduled backup skipped: %s", err)
                    await self._record_skipped(trigger, str(err))
                now = self.clock().astimezone(self.tz)
            upcoming_slot = next_run_after(schedule, now, jitter=self._jitter(index))
            if upcoming_slot is not None:
                upcoming.append(upcoming_slot)
        self.next_backup = min(upcoming, key=lambda moment: moment.astimezone(UTC)) if upcoming else None
        if self.next_backup is None:
            return SCHEDULER_TICK
        return (self.next_backup.astimezone(UTC) - now.astimezone(UTC)).total_seconds()

    async def _record_skipped(self, trigger: str, reason: str) -> None:
        try:
            run_id = self.catalog.start_run(trigger)
            self.catalog.finish_run(run_id, RunState.FAILED, reason)
        except CatalogUnavailable as err:
            _LOGGER.error("%s", err)
            return
        await self.reporter.event(
            EVENT_BACKUP_FAILED,
            backup_failed_payload(run_id=run_id, stage="checking free space", error=reason),
        )
        await self.publish()

    async def publish(self) -> None:
        if not self.options.notify:
            return
        try:
            await self.reporter.publish(self.snapshot())
        except Exception:  # reporting must never stop backups
            _LOGGER.exception("Could not update Home Assistant")

    async def _upkeep_loop(self) -> None:
        last_poll = 0.0
        while True:
            try:
                await self.publish()
                if not self.runner.running and not self._busy.locked():
                    await self.complete_copies()
                    await self.check_copies()
                    if time.monotonic() - last_poll > OTHER_BACKUPS_POLL:
                        last_poll = time.monotonic()
                        await self.sync_other_backups()
            except AddonError as err:
                # One failed round (a full disk, the Supervisor restarting) must not end the checks.
                _LOGGER.error("Checking the copies failed this time: %s", err)
            except Exception:
                _LOGGER.exception("Checking the copies failed unexpectedly")
            await asyncio.sleep(UPKEEP_TICK)

    async def complete_copies(self) -> list[str]:
        """Write the newest backup to locations that missed it (down, full, outside upload hours, damaged).

        Each location is tried at most once an hour; returns the locations that were tried.
        """
        newest = next((b for b in self.catalog.backups() if b.origin is Origin.ADDON), None)
        if newest is None or self.runner.running:
            return []
        local = self.catalog.copy(newest.slug, LOCAL)
        if local is None or local.state is not CopyState.COMMITTED:
            return []  # the Supervisor no longer has it to copy from
        now = time.monotonic()
        copies = {c.location: c for c in self.catalog.copies(newest.slug)}
        wanted = []
        for location in self.locations:
            copy = copies.get(location.name)
            if copy is not None and copy.state not in (CopyState.FAILED, CopyState.BAD):
                continue
            if not accepts_uploads_now(location):
                continue
            if (
                now - self._completion_tries.get((newest.slug, location.name), -COMPLETION_RETRY)
                < COMPLETION_RETRY
            ):
                continue
            self._completion_tries[(newest.slug, location.name)] = now
            wanted.append(location.name)
        if wanted:
            _LOGGER.info("Writing the copies of %s that are missing in %s", newest.name, ", ".join(wanted))
            await self.backup("late copy", mirror=newest.slug, targets=wanted)
        return wanted

    async def check_copies(self, *, limit: int = 1) -> int:
        """Run the proofs that are due: drills first (weekly), then scrubs (sampled)."""
        now = self.clock()
        done = 0
        due = [
            (copy, True)
            for copy in upkeep.copies_due_for_drill(
                self.catalog, self.places, now=now, every_days=self.options.drill_days
            )
        ]
        drilled = {(c.slug, c.location) for c, _ in due}
        due += [
            (copy, False)
            for copy in upkeep.copies_due_for_scrub(
                self.catalog, self.places, now=now, period_days=self.options.scrub_days
            )
            if (copy.slug, copy.location) not in drilled
        ]
        for copy, drill in due[:limit]:
            if self.runner.running:
                break
            try:
                await self.verify_copy(copy.slug, copy.location, drill=drill)
            except AddonError as err:
                _LOGGER.warning("Could not check %s in %s: %s", copy.slug, copy.location, err)
            done += 1
        return done

    async def watch_other_jobs(self) -> None:
        """Follow backups others started (Home Assistant's own): remember their failures until one works."""
        jobs = await self.gateway.backup_jobs()
        others = sorted(
            (job for job in jobs if job.done and job.uuid not in self.runner.own_jobs),
            key=lambda job: job.created or datetime.min.replace(tzinfo=UTC),
        )
        for job in others:
            if job.errors:
                if job.uuid not in self.other_failures:
                    reason = "; ".join(e.message for e in job.errors)
                    _LOGGER.warning("A backup Home Assistant started itself failed: %s", reason)
                    self.other_failures[job.uuid] = reason
            elif job.reference:
                # A later backup of theirs worked: earlier failures are resolved.
                self.other_failures.clear()

    async def sync_other_backups(self) -> int:
        """Notice backups made by others (Home Assistant's own); mirror them if the user asked."""
        try:
            await self.watch_other_jobs()
        except AddonError as err:
            _LOGGER.warning("Could not read the Supervisor's jobs: %s", err)
        try:
            listed = await self.gateway.list_backups()
        except AddonError as err:
            _LOGGER.warning("Could not list the Supervisor's backups: %s", err)
            return 0
        mirrored = 0
        known = {b.slug: b for b in self.catalog.backups()}
        for backup in listed:
            record = known.get(backup.slug)
            if record is not None:
                if record.origin is Origin.ADDON or not self._mirror_unfinished(backup.slug):
                    continue
            else:
                await self._record_other(backup)
                record = self.catalog.backup(backup.slug)
                if record is None or record.origin is Origin.ADDON:
                    continue  # made by this add-on before its catalog was lost: known again, nothing to copy
            if self.options.other_backups is OtherBackups.IGNORE or not self.locations:
                continue
            if self.runner.running:
                break
            result = await self.backup("other backup", mirror=backup.slug)
            mirrored += 1
            if (
                self.options.other_backups is OtherBackups.MIRROR_AND_REMOVE_LOCAL
                and result.state is RunState.SUCCEEDED
                and any(c.ok for c in result.copies)
            ):
                await self._remove_local_after_proof(backup.slug)
        return mirrored

    def _mirror_unfinished(self, slug: str) -> bool:
        """A location lacks a copy of this backup, or its copy was cut off by a stop or crash."""
        copies = {c.location: c for c in self.catalog.copies(slug)}
        for location in self.locations:
            copy = copies.get(location.name)
            if copy is None:
                return True
            if copy.state is CopyState.FAILED and (copy.error or "").startswith(("interrupted", "stopped")):
                return True
        return False

    async def _record_other(self, backup: models.Backup) -> None:
        """Put a backup the add-on did not make (or no longer remembers) into the catalog."""
        info = await self.gateway.backup_info(backup.slug)
        origin = origin_of(info.extra)
        self.catalog.record_backup(
            slug=backup.slug,
            run_id=None,
            name=info.name,
            type=str(info.type),
            created_at=info.date,
            size_bytes=sane_size(getattr(backup, "size_bytes", None)),
            details={
                "locations": sorted(info.location_attributes),
                "protected": any(a.protected for a in info.location_attributes.values()),
                "extra": dict(info.extra or {}),
            },
            origin=origin,
        )
        for name, attributes in info.location_attributes.items():
            place_name = LOCAL if name in (None, LOCAL) else name
            self.catalog.copy_started(backup.slug, place_name, "supervisor", None)
            self.catalog.copy_committed(backup.slug, place_name, sane_size(attributes.size_bytes), None)

    async def _remove_local_after_proof(self, slug: str) -> None:
        """Delete Home Assistant's local copy once an off-site copy is read back and proven."""
        backup = self.catalog.backup(slug)
        if backup is None:
            return
        for copy in self.catalog.copies(slug):
            place = self.places.get(copy.location)
            if (
                place is None
                or not place.offsite
                or place.location is None
                or copy.state is not CopyState.COMMITTED
            ):
                continue
            result = await self.verify_copy(slug, copy.location, drill=False)
            if result["ok"]:
                await self.delete_copy(slug, LOCAL)
                _LOGGER.info("Removed %s from /backup: a proven copy is in %s", backup.name, copy.location)
                return
        _LOGGER.warning("Kept %s in /backup: no off-site copy could be proven", backup.name)

    async def _command_loop(self, path: Path) -> None:
        try:
            keeper = open_keeper(path)
        except OSError as err:
            _LOGGER.warning("Commands from automations are not available: %s", err)
            return
        try:
            async for command in read_commands(path):
                if isinstance(command, InvalidCommand):
                    _LOGGER.error("%s", command)
                    continue
                try:
                    await self.run_command(command)
                except AddonError as err:
                    _LOGGER.error("The %s command from an automation failed: %s", command.action, err)
        finally:
            os.close(keeper)

    async def run_command(self, command: Command) -> None:
        _LOGGER.info("Command from an automation: %s", command.action)
        if command.action == "backup":
            base = self.runner.default_backup(
                BackupType(command.type) if command.type else BackupType(self._default_type())
            )
            request = replace(
                base,
                name=command.name,
                exclude_database=base.exclude_database
                if command.exclude_database is None
                else command.exclude_database,
            )
            if command.type == "partial":
                request = replace(
                    request,
                    homeassistant=command.homeassistant,
                    addons=list(command.addons),
                    folders=list(command.folders),
                )
            await self.start_backup(request, trigger="automation")
            return
        drill = command.action == "drill"
        for slug, location in self._command_targets(command.location, command.slug):
            await self.verify_copy(slug, location, drill=drill)

    def _default_type(self) -> str:
        return str(self.options.schedules[0].type) if self.options.schedules else "full"

    def _command_targets(self, location: str | None, slug: str | None) -> list[tuple[str, str]]:
        backups = self.catalog.backups()
        chosen = slug or next((b.slug for b in backups), None)
        if chosen is None:
            raise AddonError("There is no backup to check yet.")
        readable = [
            c.location
            for c in self.catalog.copies(chosen)
            if c.state is CopyState.COMMITTED
            and (self.places.get(c.location) is not None)
            and (self.places[c.location].location is not None or c.location == LOCAL)
        ]
        if location is not None:
            if location not in readable:
                raise AddonError(f"There is no readable copy of that backup in {location}.")
            return [(chosen, location)]
        return [(chosen, name) for name in readable]


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
    if settings.commands_fifo is not None:
        addon.start_commands(settings.commands_fifo)
    _LOGGER.info(
        "3-2-1 Backup started: %d schedule(s), %d location(s), next backup %s",
        len(options.schedules),
        len(addon.locations),
        addon.next_backup.isoformat(timespec="minutes") if addon.next_backup else "not scheduled",
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
