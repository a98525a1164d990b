"""Backups the simulator knows: where their files are and how the API lists them."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .archive import ArchiveError, read_backup_json
from .config import CLOUD_LOCATION, LOCAL_LOCATION, SimConfig
from .envelope import ApiError
from .faults import Faults
from .jobs import JOB_IMPORT_BACKUP, JobRegistry, SimJob

_LOGGER = logging.getLogger(__name__)

MIB = 1_048_576


def create_slug(name: str, date_str: str) -> str:
    """Backup slug exactly as the Supervisor derives it."""
    key = f"{date_str} - {name}".lower().encode()
    return hashlib.sha1(key, usedforsecurity=False).hexdigest()[:8]


def location_key(location: str | None) -> str:
    """Key of ``location_attributes``: ``.local`` for the local folder."""
    return LOCAL_LOCATION if location is None else location


@dataclass(slots=True)
class SimBackup:
    """One backup (same slug) and the file it has in each location (None = local)."""

    slug: str
    data: dict[str, Any]
    files: dict[str | None, Path] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Backup name."""
        return str(self.data.get("name", ""))

    @property
    def protected(self) -> bool:
        """Whether inner tars are encrypted."""
        return bool(self.data.get("protected", False))

    @property
    def locations(self) -> list[str | None]:
        """Locations, local (None) first, then mounts alphabetically."""
        return sorted(self.files, key=lambda loc: loc or "")

    @property
    def location(self) -> str | None:
        """Primary location: the first of ``locations``."""
        return self.locations[0]

    @property
    def path(self) -> Path:
        """File in the primary location."""
        return self.files[self.location]

    def size_bytes(self) -> int:
        """Size of the primary file, 0 if it vanished."""
        return _file_size(self.path)

    def location_attributes(self) -> dict[str, dict[str, Any]]:
        """``location_attributes``: per location ``protected`` and ``size_bytes``."""
        return {
            location_key(loc): {"protected": self.protected, "size_bytes": _file_size(self.files[loc])}
            for loc in self.locations
        }

    def list_entry(self) -> dict[str, Any]:
        """Element of ``GET /backups``."""
        size = self.size_bytes()
        return {
            "slug": self.slug,
            "name": self.name,
            "date": self.data.get("date"),
            "type": self.data.get("type"),
            "size": round(size / MIB, 2),
            "size_bytes": size,
            "location": self.location,
            "locations": self.locations,
            "protected": self.protected,
            "location_attributes": self.location_attributes(),
            "compressed": bool(self.data.get("compressed", True)),
            "content": {
                "homeassistant": self.data.get("homeassistant") is not None,
                "addons": [a["slug"] for a in self.data.get("addons", [])],
                "folders": list(self.data.get("folders", [])),
            },
        }

    def info(self) -> dict[str, Any]:
        """``GET /backups/<slug>/info``."""
        size = self.size_bytes()
        homeassistant = self.data.get("homeassistant")
        return {
            "slug": self.slug,
            "type": self.data.get("type"),
            "name": self.name,
            "date": self.data.get("date"),
            "size": round(size / MIB, 2),
            "size_bytes": size,
            "compressed": bool(self.data.get("compressed", True)),
            "protected": self.protected,
            "location_attributes": self.location_attributes(),
            "supervisor_version": self.data.get("supervisor_version", "2022.08.3"),
            "homeassistant": homeassistant["version"] if homeassistant else None,
            "location": self.location,
            "locations": self.locations,
            "addons": [
                {"slug": a["slug"], "name": a["name"], "version": a["version"], "size": a["size"]}
                for a in self.data.get("addons", [])
            ],
            "repositories": list(self.data.get("repositories", [])),
            "folders": list(self.data.get("folders", [])),
            "homeassistant_exclude_database": (
                homeassistant.get("exclude_database") if homeassistant else None
            ),
            "extra": self.data.get("extra"),
        }


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _same_backup(first: dict[str, Any], second: dict[str, Any]) -> bool:
    ignored = {"protected", "docker", "crypto"}
    return {k: v for k, v in first.items() if k not in ignored} == {
        k: v for k, v in second.items() if k not in ignored
    }


class BackupManager:
    """Backups on disk, the Supervisor core state and the jobs that change them."""

    def __init__(self, config: SimConfig, faults: Callable[[], Faults], jobs: JobRegistry) -> None:
        """Start with what is on disk."""
        self.config = config
        self._faults = faults
        self.jobs = jobs
        self.backups: dict[str, SimBackup] = {}
        self.state = "running"
        self.days_until_stale = config.days_until_stale

    # -- locations ---------------------------------------------------------------------------

    def location_dir(self, location: str | None) -> Path:
        """Directory of a location (None = local backup folder)."""
        return self.config.backup_dir if location is None else self.config.mount_dir(location)

    def resolve_location(self, name: str | None) -> str | None:
        """API location name to a location (None = local); unknown mounts are 404."""
        if name in (None, "", LOCAL_LOCATION):
            return None
        if name == CLOUD_LOCATION:
            raise ApiError(f"Location {CLOUD_LOCATION} is only available for Home Assistant", status=403)
        assert name is not None
        if name not in self.config.mounts:
            raise ApiError(
                f"No mount exists with name {name}",
                status=404,
                error_key="mount_not_found_error",
                extra_fields={"mount": name},
            )
        return name

    def require_mount_up(self, location: str | None) -> None:
        """400 backup_mount_down for a mount marked down."""
        if location is not None and location in self._faults().mounts_down:
            raise ApiError(
                f"Backup mount '{location}' is down",
                error_key="backup_mount_down",
                extra_fields={"mount": location},
            )

    def default_location(self) -> str | None:
        """Where a backup without ``location`` goes: the default backup mount, else local."""
        return self.config.default_backup_mount

    # -- listing -----------------------------------------------------------------------------

    def get(self, slug: str) -> SimBackup:
        """Backup by slug or 404 like the Supervisor."""
        backup = self.backups.get(slug)
        if backup is None:
            raise ApiError("Backup does not exist", status=404)
        return backup

    def list_entries(self) -> list[dict[str, Any]]:
        """``backups`` list of ``GET /backups``."""
        return [b.list_entry() for b in self.backups.values()]

    def reload(self) -> None:
        """Rescan every location that is up (blocking)."""
        found: dict[str, SimBackup] = {}
        locations: list[str | None] = [None, *self.config.mounts]
        down = set(self._faults().mounts_down)
        for location in locations:
            if location in down:
                continue
            directory = self.location_dir(location)
            if not directory.is_dir():
                continue
            for path in sorted(directory.glob("*.tar")):
                try:
                    data = read_backup_json(path)
                except ArchiveError as err:
                    _LOGGER.debug("skipping %s: %s", path, err)
                    continue
                slug = data["slug"]
                if slug not in found:
                    found[slug] = SimBackup(slug=slug, data=data, files={location: path})
                elif _same_backup(found[slug].data, data):
                    found[slug].files[location] = path
                else:
                    _LOGGER.warning("ignoring %s: slug %s differs from an existing backup", path, slug)
        self.backups = found

    def register(self, backup: SimBackup) -> None:
        """Add a freshly written backup."""
        self.backups[backup.slug] = backup

    # -- removal -----------------------------------------------------------------------------

    def remove(self, backup: SimBackup, locations: list[str | None] | None) -> None:
        """Delete the named copies (all when None); forget the backup when none is left."""
        targets = [loc for loc in locations if loc in backup.files] if locations else list(backup.files)
        for location in targets:
            path = backup.files[location]
            try:
                path.unlink()
            except FileNotFoundError as err:
                raise ApiError(f"Cannot delete backup at {path.as_posix()}, file does not exist!") from err
            except OSError as err:
                raise ApiError(f"Could delete backup at {path.as_posix()}: {err!s}") from err
            del backup.files[location]
        if not backup.files:
            self.backups.pop(backup.slug, None)

    # -- import ------------------------------------------------------------------------------

    async def import_backup(
        self, uploaded: Path, filename: str | None, locations: list[str | None]
    ) -> SimBackup | None:
        """Move an uploaded archive into place under the slug of its own backup.json."""
        job = self.jobs.add(SimJob(name=JOB_IMPORT_BACKUP))
        job.start()
        try:
            return await self._import(uploaded, filename, locations, job)
        finally:
            job.finish()

    async def _import(
        self, uploaded: Path, filename: str | None, locations: list[str | None], job: SimJob
    ) -> SimBackup | None:
        try:
            data = await asyncio.to_thread(read_backup_json, uploaded)
        except ArchiveError as err:
            _LOGGER.error("%s", err)
            return None
        slug = data["slug"]
        job.reference = slug
        primary, *additional = locations or [None]
        target = self.location_dir(primary) / (Path(filename).name if filename else f"{slug}.tar")
        await asyncio.to_thread(uploaded.replace, target)
        existing = self.backups.get(slug)
        if existing is not None and existing.files.get(primary) != target:
            if not _same_backup(existing.data, data):
                target.unlink(missing_ok=True)
                where = location_key(primary)
                raise ApiError(
                    f"Cannot import backup {slug} due to: Backup in {where} and "
                    f"{location_key(existing.location)} both have slug {slug} but are not the same!"
                )
            existing.files[primary] = target
            backup = existing
        else:
            backup = SimBackup(slug=slug, data=data, files={primary: target})
            self.backups[slug] = backup
        for location in additional:
            copied = await asyncio.to_thread(shutil.copy, target, self.location_dir(location))
            backup.files[location] = Path(copied)
        return backup
