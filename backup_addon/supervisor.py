"""The add-on's side of the Supervisor API, built on aiohasupervisor.

aiohasupervisor speaks the endpoints; this module adds what a backup run needs on top:
following a background job through `GET /jobs/info` (the `backup` role may not read
`/jobs/{uuid}`), a download that notices a stalled or cut-off stream, and errors whose text
tells the user what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any
from uuid import UUID

import aiohasupervisor
import aiohttp
from aiohasupervisor import models
from aiohasupervisor.exceptions import (
    SupervisorAuthenticationError,
    SupervisorBadRequestError,
    SupervisorConnectionError,
    SupervisorForbiddenError,
    SupervisorNotFoundError,
    SupervisorServiceUnavailableError,
    SupervisorTimeoutError,
)
from aiohasupervisor.exceptions import SupervisorError as LibSupervisorError

from .errors import BackupJobFailed, MountUnavailable, SourceError, SupervisorError

_LOGGER = logging.getLogger(__name__)

LOCAL = ".local"
REFUSED_KEY_PREFIX = "Invalid password for backup"


class BackupPasswordRejected(SupervisorError):
    """The Supervisor refused the password (the backup key) of a protected backup."""


@dataclass(frozen=True, slots=True)
class BackupRequest:
    """What to ask the Supervisor to back up, and where it should store it."""

    name: str
    full: bool
    filename: str
    locations: list[str]
    password: str | None = None
    homeassistant: bool = True
    addons: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    exclude_database: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """A finished backup job: the slug and the problems that did not stop it."""

    slug: str
    warnings: list[str]


def _describe(err: LibSupervisorError, action: str) -> str:
    detail = str(err).strip()
    match err:
        case SupervisorAuthenticationError():
            return (
                f"The Supervisor rejected the add-on's token while {action} (401). "
                "Restart the add-on; if that does not help, reinstall it."
            )
        case SupervisorForbiddenError():
            return (
                f"The Supervisor denied the add-on access while {action} (403): it did not accept the "
                "add-on's token or permissions. Restart the add-on; if that does not help, reinstall it."
            )
        case SupervisorBadRequestError() | SupervisorNotFoundError():
            return f"The Supervisor refused {action}: {detail or 'no reason given'}"
        case SupervisorServiceUnavailableError():
            return f"The Supervisor is not ready ({detail or 'busy'}) while {action}; it will be tried again."
        case SupervisorTimeoutError():
            return f"The Supervisor did not answer in time while {action}."
        case SupervisorConnectionError():
            return f"Cannot reach the Supervisor while {action}; is it restarting?"
    return (
        f"The Supervisor failed while {action}: {detail or 'an internal error, see the Supervisor logs'}"
    )


@asynccontextmanager
async def _translated(action: str, seconds: float | None = None) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as err:
        raise SupervisorError(_describe(SupervisorTimeoutError(), action)) from err
    except LibSupervisorError as err:
        raise SupervisorError(_describe(err, action)) from err
    except (ValueError, TypeError, LookupError, ArithmeticError) as err:
        # An answer whose shape the client library could not read (a Supervisor bug or a proxy
        # in the way): a clear failure of this step, not an "unexpected error".
        raise SupervisorError(
            f"The Supervisor sent an answer the add-on cannot read while {action} "
            f"({type(err).__name__}); check that Home Assistant and the add-on are up to date."
        ) from err


BACKUP_JOB_NAMES = frozenset({"backup_manager_full_backup", "backup_manager_partial_backup"})
RESTORE_JOB_NAMES = frozenset({"backup_manager_full_restore", "backup_manager_partial_restore"})


def _find_job(jobs: list[models.Job], uuid: UUID) -> models.Job | None:
    for job in jobs:
        if job.uuid == uuid:
            return job
        found = _find_job(job.child_jobs, uuid)
        if found is not None:
            return found
    return None


def _child_errors(job: models.Job) -> list[str]:
    problems: list[str] = []
    for child in job.child_jobs:
        for error in child.errors:
            what = child.reference or child.name or "part"
            problems.append(f"{what}: {error.message}")
        problems.extend(_child_errors(child))
    return problems


class SupervisorGateway:
    """One connection to the Supervisor, shared by every part of the add-on."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        poll_interval: float = 1.0,
        job_timeout: float = 6 * 3600,
        stall_timeout: float = 120.0,
        unreachable_grace: float = 300.0,
        request_timeout: float = 30.0,
    ) -> None:
        self.url = url
        self._token = token
        self._client = aiohasupervisor.SupervisorClient(url, token)
        self.poll_interval = poll_interval
        self.job_timeout = job_timeout
        self.stall_timeout = stall_timeout
        self.unreachable_grace = unreachable_grace
        self.request_timeout = request_timeout

    async def close(self) -> None:
        await self._client.close()

    async def start_backup(self, request: BackupRequest) -> UUID:
        """Ask for a backup in the background; return the Supervisor's job id."""
        common: dict[str, Any] = {
            "name": request.name,
            "password": request.password,
            "compressed": True,
            "location": list(request.locations),
            "homeassistant_exclude_database": request.exclude_database,
            "background": True,
            "extra": request.extra,
            "filename": PurePath(request.filename),
        }
        try:
            return await self._start_backup(request, common)
        except SupervisorError as err:
            cause = err.__cause__
            mount = getattr(cause, "extra_fields", None) or {}
            if isinstance(cause, LibSupervisorError) and mount.get("mount") in request.locations:
                name = str(mount["mount"])
                raise MountUnavailable(
                    name,
                    f"The network storage '{name}' cannot take backups now ({cause}). Check it under "
                    "Settings > System > Storage: it must exist, be connected and have the usage 'Backup'.",
                ) from cause
            raise

    async def _start_backup(self, request: BackupRequest, common: dict[str, Any]) -> UUID:
        async with _translated("starting the backup", self.request_timeout):
            if request.full:
                new = await self._client.backups.full_backup(models.FullBackupOptions(**common))
            else:
                new = await self._client.backups.partial_backup(
                    models.PartialBackupOptions(
                        **common,
                        homeassistant=request.homeassistant,
                        addons=set(request.addons),
                        folders={models.Folder(f) for f in request.folders},
                    )
                )
        return new.job_id

    async def wait_for_job(self, job_id: UUID, on_stage: Callable[[str], None] | None = None) -> JobOutcome:
        """Follow a backup job until it ends; raise BackupJobFailed when it failed."""
        deadline = time.monotonic() + self.job_timeout
        unreachable_since: float | None = None
        stage: str | None = None
        while True:
            try:
                async with _translated("following the backup job", self.request_timeout):
                    info = await self._client.jobs.info()
                unreachable_since = None
            except SupervisorError as err:
                if not isinstance(err.__cause__, SupervisorConnectionError | SupervisorTimeoutError):
                    raise
                # The Supervisor may restart during a long backup; give it time to return.
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > self.unreachable_grace:
                    raise
                _LOGGER.warning("%s", err)
                info = None
            if info is not None:
                job = _find_job(info.jobs, job_id)
                if job is None:
                    raise BackupJobFailed(
                        "The Supervisor no longer knows the backup job; it may have restarted. "
                        "The backup will be tried again at the next run."
                    )
                if job.stage and job.stage != stage:
                    stage = job.stage
                    if on_stage is not None:
                        on_stage(stage)
                if job.done:
                    return self._outcome(job)
            if time.monotonic() > deadline:
                raise BackupJobFailed(
                    f"The backup job did not finish within {self.job_timeout / 3600:g} hours; "
                    "check the Supervisor logs."
                )
            await asyncio.sleep(self.poll_interval)

    @staticmethod
    def _outcome(job: models.Job) -> JobOutcome:
        if job.errors:
            reasons = "; ".join(e.message for e in job.errors)
            raise BackupJobFailed(f"The Supervisor could not make the backup: {reasons}")
        if not job.reference:
            raise BackupJobFailed("The backup job ended without creating a backup; see the Supervisor logs.")
        return JobOutcome(slug=job.reference, warnings=_child_errors(job))

    async def backup_info(self, slug: str) -> models.BackupComplete:
        async with _translated(f"reading backup {slug}", self.request_timeout):
            return await self._client.backups.backup_info(slug)

    async def download(self, slug: str, location: str | None = None) -> AsyncIterator[bytes]:
        """Stream a backup archive; a stalled or cut-off stream raises SourceError."""
        options = models.DownloadBackupOptions(location=location) if location else None
        async with _translated(f"downloading backup {slug}", self.request_timeout):
            stream = await self._client.backups.download_backup(slug, options)
        received = 0
        try:
            while True:
                try:
                    async with asyncio.timeout(self.stall_timeout):
                        chunk = await anext(stream)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise SourceError(
                        f"The download of backup {slug} stalled: no data for {self.stall_timeout:g} s "
                        f"after {received} bytes."
                    ) from None
                except LibSupervisorError as err:
                    raise SourceError(
                        f"The download of backup {slug} was cut off after {received} bytes: "
                        f"{_describe(err, 'downloading')}"
                    ) from err
                received += len(chunk)
                yield chunk
        finally:
            stream.close()

    # --- restore --------------------------------------------------------------------------

    async def list_backups(self) -> list[models.Backup]:
        """Every backup the Supervisor lists."""
        async with _translated("listing the backups", self.request_timeout):
            return await self._client.backups.list()

    async def upload_backup(
        self, chunks: AsyncIterator[bytes], *, filename: str | None = None, location: str | None = None
    ) -> str:
        """Stream an archive into the Supervisor's backups (local unless `location`); return its slug.

        The body is streamed as it is read from `chunks`. The upload fails with SupervisorError if
        the Supervisor takes no data, or gives no answer after the last byte, for `stall_timeout`.
        """
        options = None
        if filename is not None or location is not None:
            options = models.UploadBackupOptions(
                location={location} if location is not None else None,  # type: ignore[arg-type]
                filename=PurePath(filename) if filename is not None else None,
            )
        # Set while the Supervisor holds a chunk (or owes the answer); None while we read ours.
        waiting_since: list[float | None] = [None]

        async def fed() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                waiting_since[0] = time.monotonic()
                yield chunk
                waiting_since[0] = None
            waiting_since[0] = time.monotonic()

        upload = asyncio.ensure_future(self._client.backups.upload_backup(fed(), options))
        try:
            async with _translated("uploading the backup"):
                while True:
                    done, _ = await asyncio.wait({upload}, timeout=min(self.stall_timeout, 5.0))
                    if done:
                        return upload.result()
                    since = waiting_since[0]
                    if since is not None and time.monotonic() - since > self.stall_timeout:
                        raise SupervisorError(
                            f"The Supervisor stopped taking the uploaded backup for {self.stall_timeout:g} s; "
                            "check the Supervisor logs and free space on the device."
                        )
        finally:
            if not upload.done():
                upload.cancel()
                with contextlib.suppress(asyncio.CancelledError, LibSupervisorError):
                    await upload

    async def restore(
        self,
        slug: str,
        *,
        password: str | None,
        homeassistant: bool | None = None,
        addons: list[str] | None = None,
        folders: list[str] | None = None,
        location: str | None = None,
    ) -> UUID:
        """Start restoring a backup in the background; return the Supervisor's job id.

        Without a selection (homeassistant, addons, folders all None) the restore is full,
        otherwise partial. A refused password raises BackupPasswordRejected.
        """
        partial = homeassistant is not None or addons is not None or folders is not None
        where: dict[str, Any] = {"location": location} if location is not None else {}
        try:
            async with _translated(f"starting the restore of backup {slug}", self.request_timeout):
                if not partial:
                    job = await self._client.backups.full_restore(
                        slug, models.FullRestoreOptions(password=password, background=True, **where)
                    )
                else:
                    job = await self._client.backups.partial_restore(
                        slug,
                        models.PartialRestoreOptions(
                            password=password,
                            background=True,
                            homeassistant=homeassistant,
                            addons=set(addons) if addons else None,
                            folders={models.Folder(f) for f in folders} if folders else None,
                            **where,
                        ),
                    )
        except SupervisorError as err:
            cause = err.__cause__
            # The Supervisor has no error key for this; Home Assistant matches the same prefix.
            if isinstance(cause, SupervisorBadRequestError) and str(cause).startswith(REFUSED_KEY_PREFIX):
                raise BackupPasswordRejected(
                    f"The Supervisor did not accept the key for backup {slug}: it is not the key this "
                    "backup was made with."
                ) from cause
            raise
        return job.job_id

    async def find_job(self, job_id: UUID) -> models.Job | None:
        """The job (root or child) with this id as `GET /jobs/info` shows it, or None."""
        async with _translated("reading the Supervisor's jobs", self.request_timeout):
            info = await self._client.jobs.info()
        return _find_job(info.jobs, job_id)

    async def remove_backup(self, slug: str, location: str | None = None) -> None:
        """Delete a backup, or only its copy in `location`; a backup that is gone is no error."""
        options = models.RemoveBackupOptions(location={location}) if location is not None else None
        try:
            async with _translated(f"deleting backup {slug}", self.request_timeout):
                await self._client.backups.remove_backup(slug, options)
        except SupervisorError as err:
            if isinstance(err.__cause__, SupervisorNotFoundError):
                return
            raise

    async def set_own_options(self, options: dict[str, Any]) -> None:
        """Store new options for this add-on; the Supervisor checks them against its schema."""
        async with _translated("saving the add-on's options", self.request_timeout):
            await self._client.addons.set_addon_options("self", models.AddonsOptions(config=options))

    async def restart_self(self) -> None:
        """Ask the Supervisor to restart this add-on (to apply new options)."""
        async with _translated("restarting the add-on", self.request_timeout):
            await self._client.addons.restart_addon("self")

    async def backup_jobs(self, names: frozenset[str] = BACKUP_JOB_NAMES) -> list[models.Job]:
        """The Supervisor's backup (or restore) jobs, listed until it restarts, whoever started them."""
        async with _translated("reading the Supervisor's jobs", self.request_timeout):
            info = await self._client.jobs.info()
        return [job for job in info.jobs if job.name in names]

    async def installed_addons(self) -> list[tuple[str, str]]:
        """(slug, name) of every installed add-on, from `GET /supervisor/info`.

        The client library's model of that answer leaves the add-on list out, and `GET /addons`
        needs the manager role, so this one reads the JSON itself.
        """
        headers = {"Authorization": f"Bearer {self._token}"}
        timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(f"{self.url.rstrip('/')}/supervisor/info", headers=headers) as response,
            ):
                response.raise_for_status()
                body = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            raise SupervisorError(f"The Supervisor did not list the installed add-ons: {err}") from err
        listed = body.get("data", {}).get("addons", []) if isinstance(body, dict) else []
        found = []
        for entry in listed if isinstance(listed, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("slug"), str):
                found.append((entry["slug"], str(entry.get("name") or entry["slug"])))
        return found
