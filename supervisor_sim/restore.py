"""Restores: ``POST /backups/<slug>/restore/full|partial`` as Supervisor jobs, and a record of each.

The simulator restores nothing on disk: it checks the request the way the Supervisor does
(backup type, location, password against the archive's SecureTar, Supervisor version), then
reads every selected part of the archive through securetar, decrypting and decompressing it to
the end, and records what it restored. Tests read the records from ``restores(sim)`` or
``GET /_sim/restores``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from aiohttp import web
from nacl.exceptions import CryptoError
from securetar import SecureTarArchive, SecureTarError

from .archive import part_name
from .backups import SimBackup, location_key
from .envelope import ApiError, api_ok
from .jobs import (
    STAGE_ADDON_REPOSITORIES,
    STAGE_ADDONS,
    STAGE_AWAIT_ADDON_RESTARTS,
    STAGE_FOLDERS,
    STAGE_HOME_ASSISTANT,
    SimJob,
    utcnow_iso,
)
from .validation import (
    LEGACY_FOLDER_HOMEASSISTANT,
    Validator,
    _boolean,
    _folders,
    _Invalid,
    _maybe_string,
    _string,
    _unique,
    parse_json_body,
    validate,
)

if TYPE_CHECKING:
    from .app import SupervisorSim

_LOGGER = logging.getLogger(__name__)

JOB_FULL_RESTORE = "backup_manager_full_restore"
JOB_PARTIAL_RESTORE = "backup_manager_partial_restore"
STAGE_REMOVE_DELTA_ADDONS = "remove_delta_addons"
STAGE_AWAIT_HOME_ASSISTANT_RESTART = "await_home_assistant_restart"

METADATA_MEMBERS = frozenset({"./backup.json", "./snapshot.json", "backup.json", "snapshot.json"})
READ_CHUNK = 1 << 20


def _addon_list(value: Any, path: tuple[str | int, ...]) -> list[str]:
    # Unlike a partial backup, a partial restore takes no "ALL".
    if not isinstance(value, list):
        raise _Invalid("expected list", path)
    result = [_string(item, (*path, i)) for i, item in enumerate(value)]
    _unique(result, path)
    return result


RESTORE_FULL_SCHEMA: dict[str, Validator] = {
    "password": _maybe_string,
    "background": _boolean,
    "location": _maybe_string,
}
RESTORE_PARTIAL_SCHEMA: dict[str, Validator] = {
    **RESTORE_FULL_SCHEMA,
    "homeassistant": _boolean,
    "addons": _addon_list,
    "folders": _folders,
}


class RestoreError(Exception):
    """Ends a restore job with an entry in its ``errors`` (and the API's error message)."""

    def __init__(self, err_type: str, message: str) -> None:
        """Keep the type name and message the job error shows."""
        super().__init__(message)
        self.err_type = err_type
        self.message = message


@dataclass(slots=True)
class RestoreRequest:
    """A validated restore body; ``location`` is resolved (None = local)."""

    full: bool
    password: str | None = None
    background: bool = False
    location: str | None = None
    location_given: bool = False
    homeassistant: bool = False
    addons: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RestoreRecord:
    """One restore job that got past validation: what it restored, from which archive."""

    job_id: str
    slug: str
    full: bool
    location: str | None
    homeassistant: bool
    addons: list[str]
    folders: list[str]
    archive_sha256: str
    archive_size: int
    ok: bool
    error: str | None
    finished: str

    def as_dict(self) -> dict[str, Any]:
        """JSON shape of ``GET /_sim/restores``."""
        return {
            "job_id": self.job_id,
            "slug": self.slug,
            "type": "full" if self.full else "partial",
            "location": location_key(self.location),
            "homeassistant": self.homeassistant,
            "addons": list(self.addons),
            "folders": list(self.folders),
            "archive_sha256": self.archive_sha256,
            "archive_size": self.archive_size,
            "ok": self.ok,
            "error": self.error,
            "finished": self.finished,
        }


@dataclass(slots=True)
class _Restored:
    homeassistant: bool = False
    addons: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)


def _version(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _inner_members(archive: SecureTarArchive) -> list[tarfile.TarInfo]:
    return [m for m in archive.tar.getmembers() if m.isfile() and m.name not in METADATA_MEMBERS]


def password_opens(path: Path, password: str | None) -> bool:
    """Whether ``password`` opens the archive's first encrypted part, as the Supervisor checks it."""
    try:
        with SecureTarArchive(path, "r", password=password or None) as archive:
            members = _inner_members(archive)
            if not members:
                return True
            if not password:
                return False
            return archive.extract_tar(members[0]).validate(basic_validation=True)
    except (tarfile.TarError, OSError, SecureTarError, ValueError):
        return False


def _drain(stream: IO[bytes]) -> None:
    while stream.read(READ_CHUNK):
        pass


def _read_inner_tar(stream: IO[bytes], gzip: bool) -> None:
    """Read an inner tar to its end, through gzip, member data included."""
    with tarfile.open(fileobj=stream, mode="r|gz" if gzip else "r|") as tar:
        for member in tar:
            if member.isfile():
                data = tar.extractfile(member)
                if data is not None:
                    _drain(data)
    _drain(stream)


def read_parts(path: Path, names: list[str], password: str | None, protected: bool) -> list[str]:
    """Decrypt and read the named parts to their end; return those present in the archive."""
    found: list[str] = []
    with SecureTarArchive(path, "r", password=password if protected else None) as archive:
        members = {m.name: m for m in _inner_members(archive)}
        for name in names:
            member = members.get(name)
            if member is None:
                _LOGGER.warning("%s is not in backup %s, skipping", name, path.name)
                continue
            gzip = name.endswith(".gz")
            if protected:
                with archive.extract_tar(member) as plaintext:
                    _read_inner_tar(plaintext, gzip)  # type: ignore[arg-type]
            else:
                raw = archive.tar.extractfile(member)
                if raw is None:
                    raise tarfile.ReadError(f"{name} is not a file")
                _read_inner_tar(raw, gzip)
            found.append(name)
    return found


def file_sha256(path: Path) -> tuple[str, int]:
    """The sha256 and size of a file."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(READ_CHUNK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


class RestoreRun:
    """One restore job, with the Supervisor's checks, stages and error texts."""

    def __init__(self, sim: SupervisorSim, backup: SimBackup, request: RestoreRequest) -> None:
        """Prepare the root job."""
        self._sim = sim
        self._backup = backup
        self._request = request
        self.job = SimJob(name=JOB_FULL_RESTORE if request.full else JOB_PARTIAL_RESTORE)
        # Set once the system is frozen: a background request answers from here on.
        self.validated = asyncio.Event()
        self.record: RestoreRecord | None = None
        self._frozen = False

    async def run(self) -> bool:
        """Restore; errors land in the job and are raised again, as the Supervisor's Job does."""
        job = self.job
        job.start()
        job.reference = self._backup.slug
        try:
            await self._validate()
            return await self._restore()
        except RestoreError as err:
            job.capture_error(err.err_type, err.message)
            raise
        except Exception as err:
            _LOGGER.exception("Restore %s error", self._backup.slug)
            message = f"Restore {self._backup.slug} error, see supervisor logs"
            job.capture_error("BackupError", message)
            raise RestoreError("BackupError", message) from err
        finally:
            job.finish()
            if self._frozen:
                self._sim.manager.state = "running"
            self.validated.set()

    async def _validate(self) -> None:
        backup, request = self._backup, self._request
        slug = backup.slug
        if request.full and backup.data.get("type") != "full":
            raise RestoreError("BackupInvalidError", f"{slug} is only a partial backup!")
        location = request.location if request.location_given else backup.location
        if location not in backup.files:
            raise RestoreError(
                "BackupInvalidError", f"Backup {slug} does not exist in {location_key(location)}"
            )
        if backup.protected and not await asyncio.to_thread(
            password_opens, backup.files[location], request.password
        ):
            raise RestoreError("BackupInvalidError", f"Invalid password for backup {slug}")
        if not request.full and request.homeassistant and backup.data.get("homeassistant") is None:
            raise RestoreError("BackupInvalidError", "No Home Assistant Core data inside the backup")
        made_on = str(backup.data.get("supervisor_version", "0"))
        running = self._sim.config.supervisor_version
        if _version(made_on) > _version(running):
            raise RestoreError(
                "BackupInvalidError",
                f"Backup was made on supervisor version {made_on}, can't restore on {running}. "
                "Must update supervisor first.",
            )

    async def _restore(self) -> bool:
        backup, request = self._backup, self._request
        location = request.location if request.location_given else backup.location
        path = backup.files[location]
        compressed = bool(backup.data.get("compressed", True))
        if request.full:
            homeassistant = backup.data.get("homeassistant") is not None
            addons = [a["slug"] for a in backup.data.get("addons", [])]
            folders = list(backup.data.get("folders", []))
        else:
            homeassistant, addons, folders = request.homeassistant, request.addons, request.folders
        self._sim.manager.state = "freeze"
        self._frozen = True
        self.validated.set()

        restored = _Restored()
        try:
            if folders:
                await self._stage(STAGE_FOLDERS)
                names = [part_name(f, compressed=compressed) for f in folders]
                found = await self._read(path, names)
                restored.folders = [f for f, n in zip(folders, names, strict=True) if n in found]
            if homeassistant:
                await self._stage(STAGE_HOME_ASSISTANT)
                found = await self._read(path, [part_name("homeassistant", compressed=compressed)])
                restored.homeassistant = bool(found)
            if request.full:
                await self._stage(STAGE_REMOVE_DELTA_ADDONS)
            if addons:
                await self._stage(STAGE_ADDON_REPOSITORIES)
                await self._stage(STAGE_ADDONS)
                names = [part_name(a, compressed=compressed) for a in addons]
                found = await self._read(path, names)
                restored.addons = [a for a, n in zip(addons, names, strict=True) if n in found]
                await self._stage(STAGE_AWAIT_ADDON_RESTARTS)
            if homeassistant:
                await self._stage(STAGE_AWAIT_HOME_ASSISTANT_RESTART)
        except RestoreError as err:
            await self._remember(path, location, restored, err.message)
            raise
        await self._remember(path, location, restored, None)
        return True

    async def _read(self, path: Path, names: list[str]) -> list[str]:
        backup = self._backup
        try:
            return await asyncio.to_thread(read_parts, path, names, self._request.password, backup.protected)
        except (tarfile.TarError, OSError, SecureTarError, CryptoError, ValueError, EOFError) as err:
            _LOGGER.error("Restore %s error: %s", backup.slug, err)
            raise RestoreError("BackupError", f"Restore {backup.slug} error, see supervisor logs") from err

    async def _stage(self, stage: str) -> None:
        self.job.stage = stage
        delay = self._sim.faults.stage_delay
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sim.stopping.wait(), delay)
        else:
            await asyncio.sleep(0)
        if self._sim.stopping.is_set():
            raise RestoreError(
                "BackupError", f"Restore {self._backup.slug} error, Supervisor is shutting down"
            )

    async def _remember(
        self, path: Path, location: str | None, restored: _Restored, error: str | None
    ) -> None:
        sha256, size = await asyncio.to_thread(file_sha256, path)
        self.record = RestoreRecord(
            job_id=self.job.uuid,
            slug=self._backup.slug,
            full=self._request.full,
            location=location,
            homeassistant=restored.homeassistant,
            addons=restored.addons,
            folders=restored.folders,
            archive_sha256=sha256,
            archive_size=size,
            ok=error is None,
            error=error,
            finished=utcnow_iso(),
        )


class RestoreBook:
    """The restore jobs of one simulator and the records of what they restored."""

    def __init__(self, sim: SupervisorSim) -> None:
        """Start empty."""
        self._sim = sim
        self.records: list[RestoreRecord] = []
        self._tasks: set[asyncio.Task[bool]] = set()
        self._running: RestoreRun | None = None

    def start(self, backup: SimBackup, request: RestoreRequest) -> tuple[RestoreRun, asyncio.Task[bool]]:
        """Check that nothing else runs, then start the restore job."""
        sim = self._sim
        kind = "full" if request.full else "partial"
        if sim.state != "running" or (self._running is not None and not self._running.job.done):
            raise ApiError(
                f"'BackupManager.do_restore_{kind}' blocked from execution, system is not running - {sim.state}"
            )
        run = RestoreRun(sim, backup, request)
        sim.jobs.add(run.job)
        self._running = run
        task = asyncio.create_task(run.run(), name=f"restore {run.job.uuid}")
        self._tasks.add(task)
        task.add_done_callback(self._finished(run))
        return run, task

    def _finished(self, run: RestoreRun) -> Callable[[asyncio.Task[bool]], None]:
        def done(task: asyncio.Task[bool]) -> None:
            self._tasks.discard(task)
            if run.record is not None:
                self.records.append(run.record)
            # A background restore's error is read from the job; mark it retrieved.
            if not task.cancelled():
                task.exception()

        return done

    async def wait_idle(self) -> None:
        """Wait until no restore job runs."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def handle(self, request: web.Request, *, full: bool) -> web.Response:
        """``POST /backups/<slug>/restore/full|partial``."""
        manager = self._sim.manager
        backup = manager.get(request.match_info["slug"])
        body = validate(
            RESTORE_FULL_SCHEMA if full else RESTORE_PARTIAL_SCHEMA, parse_json_body(await request.text())
        )
        restore = RestoreRequest(
            full=full, password=body.get("password"), background=bool(body.get("background"))
        )
        if "location" in body:
            restore.location = manager.resolve_location(body["location"])
            restore.location_given = True
        if not full:
            folders = list(body.get("folders", []))
            restore.homeassistant = bool(body.get("homeassistant", False))
            if LEGACY_FOLDER_HOMEASSISTANT in folders:
                folders.remove(LEGACY_FOLDER_HOMEASSISTANT)
                restore.homeassistant = True
            restore.folders = folders
            restore.addons = list(body.get("addons", []))
        run, task = self.start(backup, restore)
        job_id = run.job.uuid
        waiter = asyncio.create_task(run.validated.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if restore.background and not task.done():
            return api_ok({"job_id": job_id})
        try:
            # Shielded: a client that gives up must not cancel the restore itself.
            ok = await asyncio.shield(task)
        except RestoreError as err:
            raise ApiError(err.message) from err
        if ok:
            return api_ok({"job_id": job_id})
        raise ApiError(
            f"An error occurred during restore of {backup.slug}, check job '{job_id}' or supervisor logs "
            "for details",
            job_id=job_id,
        )

    async def list_records(self, _request: web.Request) -> web.Response:
        """``GET /_sim/restores``: every restore that ran, oldest first."""
        return web.json_response([r.as_dict() for r in self.records])

    async def on_cleanup(self, _app: web.Application) -> None:
        """Let running restores end before the application goes."""
        await self.wait_idle()


RESTORES_KEY = web.AppKey("supervisor_sim_restores", RestoreBook)


def install(app: web.Application, sim: SupervisorSim) -> None:
    """Keep a restore book on ``app`` and serve ``GET /_sim/restores``."""
    book = RestoreBook(sim)
    app[RESTORES_KEY] = book
    app.add_routes([web.get("/_sim/restores", book.list_records)])
    app.on_cleanup.append(book.on_cleanup)


def restores(sim: SupervisorSim) -> RestoreBook:
    """The restore book of ``sim``."""
    return sim.app[RESTORES_KEY]
