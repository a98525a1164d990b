"""One backup job: stages, child jobs and the archive, in the Supervisor's order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from .archive import ArchiveCancelled, ArchiveWriter
from .backups import BackupManager, SimBackup, create_slug, location_key
from .config import ALL_FOLDERS, REPOSITORIES, AddonSpec
from .faults import Faults
from .info import core_info
from .jobs import (
    JOB_FULL_BACKUP,
    JOB_PARTIAL_BACKUP,
    STAGE_ADDON_REPOSITORIES,
    STAGE_ADDONS,
    STAGE_AWAIT_ADDON_RESTARTS,
    STAGE_COPY_ADDITIONAL_LOCATIONS,
    STAGE_FINISHING_FILE,
    STAGE_FOLDERS,
    STAGE_HOME_ASSISTANT,
    STAGE_SUPERVISOR_CONFIG,
    SimJob,
)
from .validation import BackupRequest

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")

ENOSPC_TEXT = "[Errno 28] No space left on device"


class BackupFailure(Exception):
    """A fatal error that ends the job with an entry in the root job's ``errors``."""

    def __init__(self, err_type: str, message: str) -> None:
        """Keep the type name and message the job error shows."""
        super().__init__(message)
        self.err_type = err_type
        self.message = message


@dataclass(slots=True)
class RunSignals:
    """Shared stop signals: the loop-side event and the worker-thread-side flag."""

    stopping: asyncio.Event
    cancel: threading.Event


class BackupRun:
    """Runs one validated backup request as a Supervisor backup job."""

    def __init__(
        self,
        manager: BackupManager,
        request: BackupRequest,
        locations: list[str | None],
        faults: Callable[[], Faults],
        signals: RunSignals,
    ) -> None:
        """Prepare the root job; ``locations`` are resolved, primary first."""
        self._manager = manager
        self._config = manager.config
        self._request = request
        self._primary, *self._additional = locations
        self._faults = faults
        self._signals = signals
        self.job = SimJob(name=JOB_FULL_BACKUP if request.full else JOB_PARTIAL_BACKUP)
        # Set once the system is frozen: a background request answers from here on.
        self.validated = asyncio.Event()
        self._fault_checked = False
        self._slug = ""

    async def run(self) -> SimBackup | None:
        """Make the backup; failures end up in the job, never as exceptions."""
        job = self.job
        job.start()
        try:
            return await self._run()
        except BackupFailure as failure:
            job.capture_error(failure.err_type, failure.message)
            return None
        except Exception:
            _LOGGER.exception("Backup %s error", self._slug)
            job.capture_error("BackupError", f"Backup {self._slug} error, see supervisor logs")
            return None
        finally:
            job.finish()
            self._manager.state = "running"
            self.validated.set()

    async def _run(self) -> SimBackup | None:
        request = self._request
        date = (datetime.now(UTC) + timedelta(seconds=self._faults().clock_offset)).isoformat()
        self._slug = slug = create_slug(request.name, date)
        directory = self._manager.location_dir(self._primary)
        path = directory / (Path(request.filename).name if request.filename else f"{slug}.tar")
        data = self._new_backup_json(date)
        self.job.reference = slug
        self._stage(STAGE_ADDON_REPOSITORIES)
        self._manager.state = "freeze"
        self.validated.set()
        await self._pause()

        if path.exists():
            raise BackupFailure(
                "BackupError", f"Cannot make new backup at {path.as_posix()}, file already exists!"
            )
        writer = await asyncio.to_thread(
            ArchiveWriter,
            path,
            password=request.password,
            compressed=request.compressed,
            cancel=self._signals.cancel,
        )
        try:
            stored_addons = await self._write_parts(writer, data)
            self._stage(STAGE_FINISHING_FILE)
            await self._pause()
            await asyncio.to_thread(writer.finish, data)
        except BaseException:
            await asyncio.to_thread(writer.abort)
            raise

        backup = SimBackup(slug=slug, data=data, files={self._primary: path})
        self._manager.register(backup)
        if self._additional:
            await self._copy_to_additional_locations(backup)
        if stored_addons:
            self._stage(STAGE_AWAIT_ADDON_RESTARTS)
            await self._pause()
        return backup

    async def _write_parts(self, writer: ArchiveWriter, data: dict[str, Any]) -> bool:
        request = self._request
        if request.homeassistant or request.full:
            await self._store_homeassistant(writer, data)
        addons = self._selected_addons()
        if addons:
            await self._store_addons(writer, data, addons)
        folders = list(ALL_FOLDERS) if request.full else list(request.folders)
        if folders:
            await self._store_folders(writer, data, folders)
        if request.full:
            await self._store_supervisor_config(writer)
        return bool(data["addons"])

    async def _store_homeassistant(self, writer: ArchiveWriter, data: dict[str, Any]) -> None:
        exclude = self._request.homeassistant_exclude_database
        if exclude is None:
            exclude = self._config.backups_exclude_database
        self._stage(STAGE_HOME_ASSISTANT)
        child = self.job.child("backup_store_homeassistant", self._slug)
        await self._pause()
        data["homeassistant"] = {
            "version": self._config.homeassistant_version,
            "exclude_database": exclude,
            "size": 0.0,
        }
        await self._fault_point(
            [child],
            "HomeAssistantBackupError",
            f"Can't backup Home Assistant Core config folder: {ENOSPC_TEXT}",
        )
        await self._in_thread(
            child,
            writer.add_homeassistant,
            self._config.homeassistant_dir,
            _homeassistant_metadata(core_info(self._config)),
            exclude_database=exclude,
        )
        child.finish()

    async def _store_addons(
        self, writer: ArchiveWriter, data: dict[str, Any], addons: list[AddonSpec]
    ) -> None:
        self._stage(STAGE_ADDONS)
        child = self.job.child("backup_store_addons", self._slug)
        await self._pause()
        for index, addon in enumerate(addons):
            save = child.child("backup_addon_save", addon.slug)
            if index == 0 and self._faults().child_job_error:
                # An add-on that fails to save is left out; the backup goes on.
                save.capture_error("BackupError", f"Can't create backup for {addon.slug}")
                save.finish()
                continue
            await self._fault_point(
                [child, save], "BackupError", f"Can't create backup for {addon.slug}: {ENOSPC_TEXT}"
            )
            await self._in_thread(
                save,
                writer.add_addon,
                addon.slug,
                _addon_json(addon),
                self._config.addon_data_dir(addon.slug),
            )
            data["addons"].append(
                {"slug": addon.slug, "name": addon.name, "version": addon.version, "size": 0.0}
            )
            save.finish()
        child.finish()

    async def _store_folders(self, writer: ArchiveWriter, data: dict[str, Any], folders: list[str]) -> None:
        self._stage(STAGE_FOLDERS)
        child = self.job.child("backup_store_folders", self._slug)
        await self._pause()
        for folder in folders:
            save = child.child("backup_folder_save", folder)
            await self._fault_point(
                [child, save], "BackupError", f"Can't backup folder {folder}: {ENOSPC_TEXT}"
            )
            payload = self._config.payload_bytes if folder == "share" else 0
            await self._in_thread(
                save,
                writer.add_folder,
                folder,
                self._config.folder_dir(folder),
                payload_bytes=payload,
                payload_seed=self._slug.encode(),
            )
            data["folders"].append(folder)
            save.finish()
        child.finish()

    async def _store_supervisor_config(self, writer: ArchiveWriter) -> None:
        self._stage(STAGE_SUPERVISOR_CONFIG)
        child = self.job.child("backup_store_supervisor_config", self._slug)
        await self._pause()
        # Like the Supervisor, supervisor.tar.gz is only written when there are mounts.
        if self._config.mounts:
            await self._in_thread(
                child, writer.add_supervisor_config, self._mounts_json(), {"registries": {}}
            )
        child.finish()

    async def _copy_to_additional_locations(self, backup: SimBackup) -> None:
        self._stage(STAGE_COPY_ADDITIONAL_LOCATIONS)
        child = self.job.child("backup_copy_to_additional_locations", self._slug)
        await self._pause()
        for location in self._additional:
            copy_job = child.child("backup_copy_to_location", location_key(location))
            target_dir = self._manager.location_dir(location)
            try:
                if location in self._faults().mounts_down:
                    raise OSError(f"{location} is down")
                copied = await asyncio.to_thread(shutil.copy, backup.path, target_dir)
            except OSError as err:
                copy_job.capture_error(
                    "BackupError", f"Could not copy backup to {location_key(location)} due to: {err!s}"
                )
            else:
                backup.files[location] = Path(copied)
            copy_job.finish()
        child.finish()

    # -- helpers -----------------------------------------------------------------------------

    def _selected_addons(self) -> list[AddonSpec]:
        request = self._request
        installed = list(self._config.installed_addons())
        if request.full or request.all_addons:
            return installed
        selected = []
        for slug in request.addons or []:
            addon = self._config.addon(slug)
            if addon is None:
                _LOGGER.warning("Add-on %s not found/installed", slug)
                continue
            selected.append(addon)
        return selected

    def _new_backup_json(self, date: str) -> dict[str, Any]:
        request = self._request
        return {
            "slug": self._slug,
            "version": 2,
            "name": request.name,
            "date": date,
            "type": "full" if request.full else "partial",
            "supervisor_version": self._config.supervisor_version,
            "extra": request.extra or {},
            "folders": [],
            "homeassistant": None,
            "compressed": request.compressed,
            "addons": [],
            "repositories": list(REPOSITORIES),
            "protected": request.password is not None,
        }

    def _mounts_json(self) -> dict[str, Any]:
        return {
            "default_backup_mount": self._config.default_backup_mount,
            "mounts": [
                {
                    "name": name,
                    "usage": "backup",
                    "type": "cifs",
                    "server": "nas.local",
                    "share": "backups",
                    "username": "homeassistant",
                    "password": "sim-nas-password",
                    "read_only": False,
                }
                for name in self._config.mounts
            ],
        }

    def _stage(self, stage: str) -> None:
        self.job.stage = stage
        _LOGGER.info("Backup %s starting stage %s", self._slug, stage)

    async def _pause(self) -> None:
        delay = self._faults().stage_delay
        if delay <= 0:
            await asyncio.sleep(0)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._signals.stopping.wait(), delay)
        if self._signals.stopping.is_set():
            raise BackupFailure("BackupError", f"Backup {self._slug} error, Supervisor is shutting down")

    async def _fault_point(self, children: list[SimJob], err_type: str, enospc_message: str) -> None:
        """The first part written is where injected job failures strike."""
        if self._fault_checked:
            return
        self._fault_checked = True
        faults = self._faults()
        if faults.disk_full:
            for child in children:
                child.capture_error(err_type, enospc_message)
                child.finish()
            raise BackupFailure(err_type, enospc_message)
        if faults.fail_job:
            raise BackupFailure("BackupError", f"Backup {self._slug} error, see supervisor logs")

    async def _in_thread(self, job: SimJob, func: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        try:
            return await asyncio.to_thread(func, *args, **kwargs)
        except ArchiveCancelled as err:
            job.capture_error("BackupError", str(err))
            job.finish()
            raise BackupFailure(
                "BackupError", f"Backup {self._slug} error, Supervisor is shutting down"
            ) from err


def _homeassistant_metadata(info: dict[str, Any]) -> dict[str, Any]:
    keys = ("version", "boot", "image", "port", "ssl", "watchdog", "audio_input", "audio_output")
    return {key: info[key] for key in keys}


def _addon_json(addon: AddonSpec) -> dict[str, Any]:
    return {
        "user": {"options": dict(addon.options), "boot": "auto", "auto_update": False},
        "system": {
            "name": addon.name,
            "slug": addon.slug,
            "version": addon.version,
            "description": addon.description,
            "arch": ["aarch64", "amd64"],
            "hassio_api": addon.hassio_api,
            "hassio_role": addon.hassio_role,
            "homeassistant_api": addon.homeassistant_api,
            "ingress": addon.ingress,
            "backup": "hot",
        },
        "version": addon.version,
        "state": "started",
    }
