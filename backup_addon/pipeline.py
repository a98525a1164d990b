"""One backup run: ask the Supervisor for a backup, stream it once, fan it out, record it all.

The pipeline wires the Supervisor gateway, the locations and the catalog together; protocol
details live in those modules, not here.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from uuid import UUID

from aiohasupervisor import models

from . import __version__
from .catalog import Catalog, CopyState, Origin, ProofLevel, RunState
from .errors import AddonError, LocationError, LocationFull, MountUnavailable, SourceError
from .fanout import CHUNK_SIZE, FanoutResult, SinkResult, Writer, fan_out, rechunk
from .locations import Location, StoredObject
from .options import AddonOptions, BackupType
from .supervisor import LOCAL, BackupRequest, SupervisorGateway

_LOGGER = logging.getLogger(__name__)

CREATED_BY = "backup_321"
KEY_PREFIX = "backup_321"

ENVELOPE_SUFFIX = ".age"
SEALED = "\0sealed"  # the fan-out branch that encrypts once for every enveloped location

type Envelope = Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]]


@dataclass(frozen=True, slots=True)
class Encryption:
    """How backups are protected: the Supervisor password and the age envelope of copies."""

    password: str
    key_id: str
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class CopyResult:
    location: str
    kind: str
    ok: bool
    key: str | None = None
    size: int | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: int
    state: RunState
    slug: str | None = None
    sha256: str | None = None
    size: int | None = None
    copies: list[CopyResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


class RunInProgress(AddonError):
    """A backup run is already going on."""


@dataclass(frozen=True, slots=True)
class ManualBackup:
    """What one backup holds: everything (full) or a choice (partial)."""

    type: BackupType = BackupType.FULL
    name: str | None = None
    homeassistant: bool = True
    addons: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    exclude_database: bool = False


@dataclass(slots=True)
class RunProgress:
    """What the run in progress is doing, for the panel."""

    run_id: int
    kind: str
    stage: str
    started_at: datetime
    slug: str | None = None
    bytes_by_location: dict[str, int] = field(default_factory=dict)
    expected_bytes: int | None = None


type ProgressListener = Callable[[RunProgress | None], None]


def object_key(instance_id: str, created: datetime, slug: str, suffix: str = ".tar") -> str:
    """Where a copy lives inside an add-on-managed location."""
    stamp = created.astimezone(UTC).strftime("%Y-%m-%d_%H%M%S")
    return f"{KEY_PREFIX}/{instance_id}/{stamp}_{slug}{suffix}"


class BackupRunner:
    """Runs backups one at a time."""

    def __init__(
        self,
        *,
        gateway: SupervisorGateway,
        catalog: Catalog,
        locations: list[Location],
        options: AddonOptions,
        backup_dir: Path,
        encryption: Encryption | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self.gateway = gateway
        self.catalog = catalog
        self.locations = locations
        self.options = options
        self.backup_dir = backup_dir
        self.encryption = encryption
        self.plain_locations = frozenset(loc.name for loc in options.locations if not loc.envelope)
        self.chunk_size = chunk_size
        self.tz: tzinfo | None = None
        self.progress: RunProgress | None = None
        self.listeners: list[ProgressListener] = []
        self.after_commit: list[Callable[[str, Location, str], Awaitable[None]]] = []
        self.on_start: list[Callable[[int, str, ManualBackup | None], Awaitable[None]]] = []
        self._lock = asyncio.Lock()
        self._stages: list[tuple[str, float]] = []
        self.own_jobs: set[UUID] = set()  # Supervisor jobs this runner started, to tell them from others'

    def _progress(self, **changes: object) -> None:
        if self.progress is None:
            return
        for name, value in changes.items():
            setattr(self.progress, name, value)
        self._notify()

    def _notify(self) -> None:
        for listener in self.listeners:
            listener(self.progress)

    def _count(self, name: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async def counted() -> AsyncIterator[bytes]:
            sent = 0
            async for chunk in chunks:
                sent += len(chunk)
                if self.progress is not None:
                    self.progress.bytes_by_location[name] = sent
                yield chunk

        return counted()

    @property
    def running(self) -> bool:
        return self._lock.locked()

    def default_backup(self, type: BackupType = BackupType.FULL) -> ManualBackup:
        """A backup of the given type with the partial choices from the options."""
        opts = self.options
        return ManualBackup(
            type=type,
            homeassistant=opts.include_homeassistant,
            addons=list(opts.include_addons),
            folders=[str(f) for f in opts.include_folders],
            exclude_database=opts.exclude_database,
        )

    def _request(self, now: datetime, what: ManualBackup) -> BackupRequest:
        opts = self.options
        local_now = now.astimezone(self.tz)
        stamp = now.astimezone(UTC).strftime("%Y%m%d_%H%M%S")
        kind = "" if what.type is BackupType.FULL else " (partial)"
        return BackupRequest(
            name=what.name or f"3-2-1 Backup {local_now:%Y-%m-%d %H:%M}{kind}",
            full=what.type is BackupType.FULL,
            filename=f"backup_321_{stamp}_{secrets.token_hex(3)}.tar",
            locations=[LOCAL, *opts.supervisor_locations],
            homeassistant=what.homeassistant,
            addons=list(what.addons),
            folders=list(what.folders),
            exclude_database=what.exclude_database,
            password=self.encryption.password if self.encryption else None,
            extra={"created_by": CREATED_BY, "addon_version": __version__},
        )

    async def run(
        self,
        trigger: str,
        what: ManualBackup | None = None,
        *,
        mirror: str | None = None,
        targets: Collection[str] | None = None,
    ) -> RunResult:
        """Make a backup (or, with `mirror`, copy an existing one) and copy it everywhere.

        With `targets`, a mirror writes only to the locations of those names (a copy written later).
        """
        if self._lock.locked():
            raise RunInProgress("A backup is already running; wait for it to finish.")
        async with self._lock:
            kind = "backup" if mirror is None else "mirror"
            run_id = self.catalog.start_run(trigger, kind)
            self.progress = RunProgress(
                run_id=run_id, kind=kind, stage="starting", started_at=datetime.now(UTC)
            )
            self._notify()
            _LOGGER.info("Backup run %d started (%s)", run_id, trigger)
            for hook in self.on_start:
                await hook(run_id, trigger, what)
            try:
                if mirror is None:
                    result = await self._run(run_id, what or self.default_backup())
                else:
                    result = await self._mirror(run_id, mirror, targets)
            except asyncio.CancelledError:
                reason = "stopped: the add-on was shut down during the run"
                self.catalog.fail_unfinished_copies(reason)
                self.catalog.finish_run(run_id, RunState.FAILED, reason)
                raise
            except AddonError as err:
                self.catalog.finish_run(run_id, RunState.FAILED, str(err))
                _LOGGER.error("Backup run %d failed: %s", run_id, err)
                return RunResult(run_id=run_id, state=RunState.FAILED, error=str(err))
            except Exception as err:
                self.catalog.finish_run(run_id, RunState.FAILED, f"unexpected error: {err!r}")
                _LOGGER.exception("Backup run %d failed unexpectedly", run_id)
                return RunResult(run_id=run_id, state=RunState.FAILED, error=f"unexpected error: {err!r}")
            finally:
                sent = dict(self.progress.bytes_by_location) if self.progress else {}
                self.progress = None
                self._notify()
            self.catalog.set_run_details(run_id, self._details(result, sent))
            self.catalog.finish_run(run_id, result.state, result.error)
            _LOGGER.info(
                "Backup run %d %s: %s",
                run_id,
                result.state,
                ", ".join(f"{c.location} {'ok' if c.ok else 'FAILED'}" for c in result.copies),
            )
            return result

    def _stage(self, run_id: int, stage: str, *, slug: str | None = None) -> None:
        self.catalog.set_stage(run_id, stage, slug=slug)
        self._stages.append((stage, time.monotonic()))
        self._progress(stage=stage, **({"slug": slug} if slug else {}))

    def _details(self, result: RunResult, sent: dict[str, int]) -> dict[str, Any]:
        """What the panel's activity page shows of a run: stage durations, sizes, speeds."""
        marks = [*self._stages, ("end", time.monotonic())]
        durations: dict[str, float] = {}
        for (stage, began), (_, ended) in itertools.pairwise(marks):
            name = "supervisor backup" if stage.startswith("supervisor") else stage
            durations[name] = durations.get(name, 0.0) + ended - began
        copying = durations.get("copying", 0.0)
        return {
            "durations": {name: round(seconds, 3) for name, seconds in durations.items()},
            "size_bytes": result.size,
            "throughput": {name: round(done / copying) for name, done in sent.items() if copying > 0},
            "warnings": result.warnings,
        }

    async def _run(self, run_id: int, what: ManualBackup) -> RunResult:
        now = datetime.now(UTC)
        request = self._request(now, what)

        self._stage(run_id, "requesting")
        unavailable: dict[str, str] = {}
        while True:
            try:
                job_id = await self.gateway.start_backup(request)
                self.own_jobs.add(job_id)
                break
            except MountUnavailable as err:
                # One network storage being down must not cost the backup everywhere else.
                _LOGGER.error("%s", err)
                unavailable[err.mount] = str(err)
                request = replace(request, locations=[loc for loc in request.locations if loc != err.mount])
        self._stage(run_id, "supervisor_backup")

        def on_stage(stage: str) -> None:
            self._stage(run_id, f"supervisor:{stage}")

        outcome = await self.gateway.wait_for_job(job_id, on_stage)
        slug = outcome.slug
        for warning in outcome.warnings:
            _LOGGER.warning("Backup %s: %s", slug, warning)
        info = await self.gateway.backup_info(slug)
        self._stage(run_id, "recording", slug=slug)
        key_id = self.encryption.key_id if self.encryption else None
        self._record(info, run_id=run_id, details={"warnings": outcome.warnings, "key_id": key_id})
        copies = self._supervisor_copies(slug, request.locations, info.location_attributes, outcome.warnings)
        for mount, problem in unavailable.items():
            self.catalog.copy_started(slug, mount, "supervisor", None)
            self.catalog.copy_failed(slug, mount, problem)
            copies.append(CopyResult(mount, "supervisor", False, error=problem))

        sha256 = size = None
        if self.locations:
            streamed = await self._copy_everywhere(
                run_id, slug, info.date, self._size(info), request.filename
            )
            copies.extend(streamed[0])
            sha256, size = streamed[1], streamed[2]

        failed = [c for c in copies if not c.ok]
        state = RunState.SUCCEEDED if not failed else RunState.PARTIAL
        error = "; ".join(f"{c.location}: {c.error}" for c in failed) or None
        return RunResult(
            run_id=run_id,
            state=state,
            slug=slug,
            sha256=sha256,
            size=size,
            copies=copies,
            warnings=outcome.warnings,
            error=error,
        )

    async def _mirror(self, run_id: int, slug: str, targets: Collection[str] | None) -> RunResult:
        """Copy a backup the Supervisor already holds: one the add-on did not make, or a late copy."""
        info = await self.gateway.backup_info(slug)
        self._stage(run_id, "recording", slug=slug)
        known = self.catalog.backup(slug)
        if known is None or known.origin is not Origin.ADDON:
            self._record(
                info,
                run_id=None if known is None else known.run_id,
                details={"extra": dict(info.extra or {})},
                origin=origin_of(info.extra),
            )
        chosen = [loc for loc in self.locations if targets is None or loc.name in targets]
        copies, sha256, size = await self._copy_everywhere(
            run_id, slug, info.date, self._size(info), "", chosen
        )
        failed = [c for c in copies if not c.ok]
        return RunResult(
            run_id=run_id,
            state=RunState.SUCCEEDED if not failed else RunState.PARTIAL,
            slug=slug,
            sha256=sha256,
            size=size,
            copies=copies,
            error="; ".join(f"{c.location}: {c.error}" for c in failed) or None,
        )

    def _record(
        self,
        info: models.BackupComplete,
        *,
        run_id: int | None,
        details: dict[str, Any],
        origin: Origin = Origin.ADDON,
    ) -> None:
        """Put a backup the Supervisor describes into the catalog."""
        self.catalog.record_backup(
            slug=info.slug,
            run_id=run_id,
            name=info.name,
            type=str(info.type),
            created_at=info.date,
            size_bytes=self._size(info),
            details={
                "locations": sorted(info.location_attributes),
                "protected": any(a.protected for a in info.location_attributes.values()),
                **details,
            },
            origin=origin,
        )

    async def _copy_everywhere(
        self,
        run_id: int,
        slug: str,
        created: datetime,
        expected_size: int | None,
        filename: str,
        locations: list[Location] | None = None,
    ) -> tuple[list[CopyResult], str | None, int | None]:
        """Stream the copies, check each one, and write once more where a check failed."""
        targets = self.locations if locations is None else locations
        self._stage(run_id, "copying", slug=slug)
        self._progress(expected_bytes=expected_size, bytes_by_location={})
        results, sha256, size = await self._stream_copies(slug, created, expected_size, filename, targets)
        self._stage(run_id, "checking", slug=slug)
        by_name = {loc.name: loc for loc in targets}
        for index, result in enumerate(results):
            if not result.ok or result.key is None:
                continue
            location = by_name[result.location]
            problem = await self._check_copy(location, result.key, result.size)
            if problem is None:
                self.catalog.copy_checked(slug, location.name, ProofLevel.CHECKED)
                await self._after_commit(slug, location, result.key)
                continue
            _LOGGER.warning(
                "Copy of %s to %s failed its check (%s); writing it again", slug, location.name, problem
            )
            self.catalog.copy_bad(slug, location.name, problem)
            self._stage(run_id, "copying again", slug=slug)
            again, _, _ = await self._stream_copies(slug, created, expected_size, filename, [location])
            retry = again[0]
            if retry.ok and retry.key is not None:
                problem = await self._check_copy(location, retry.key, retry.size)
                if problem is None:
                    self.catalog.copy_checked(slug, location.name, ProofLevel.CHECKED)
                    await self._after_commit(slug, location, retry.key)
                    results[index] = retry
                    continue
                self.catalog.copy_bad(slug, location.name, problem)
                retry = replace(retry, ok=False, error=problem)
            results[index] = retry
        return results, sha256, size

    async def _after_commit(self, slug: str, location: Location, key: str) -> None:
        for hook in self.after_commit:
            try:
                await hook(slug, location, key)
            except Exception as err:  # a missing sidecar must not fail the copy itself
                _LOGGER.warning("After copying %s to %s: %s", slug, location.name, _error_text(err))

    @staticmethod
    async def _check_copy(location: Location, key: str, size: int | None) -> str | None:
        """Level 1: the location reports the object complete, with the size that was sent."""
        try:
            stored = await location.stat(key)
        except LocationError as err:
            return f"could not check the copy: {_error_text(err)}"
        if stored is None:
            return "the copy is missing right after it was written"
        if size is not None and stored.size != size:
            return f"the location holds {stored.size} bytes but {size} were sent: the copy is incomplete"
        return None

    @staticmethod
    def _size(info: models.BackupComplete) -> int | None:
        attributes = info.location_attributes
        local = attributes.get(LOCAL) or next(iter(attributes.values()), None)
        return None if local is None else sane_size(local.size_bytes)

    def _supervisor_copies(
        self,
        slug: str,
        wanted: list[str],
        attributes: dict[str, models.BackupLocationAttributes],
        warnings: list[str],
    ) -> list[CopyResult]:
        results = []
        for name in wanted:
            self.catalog.copy_started(slug, name, "supervisor", None)
            present = attributes.get(name)
            if present is not None:
                self.catalog.copy_committed(slug, name, sane_size(present.size_bytes), None)
                # The Supervisor wrote and listed it: as strong as a location's own size check.
                self.catalog.copy_checked(slug, name, ProofLevel.CHECKED)
                results.append(CopyResult(name, "supervisor", True))
                continue
            related = [w for w in warnings if name in w]
            error = related[0] if related else "the Supervisor did not store a copy here"
            self.catalog.copy_failed(slug, name, error)
            results.append(CopyResult(name, "supervisor", False, error=error))
        return results

    def _source(self, slug: str, filename: str) -> AsyncIterator[bytes]:
        local_file = self.backup_dir / filename
        if filename and local_file.is_file():
            return _read_file(local_file, self.chunk_size)
        return rechunk(self.gateway.download(slug), self.chunk_size)

    def _sealed(self, location: Location) -> bool:
        return self.encryption is not None and location.name not in self.plain_locations

    async def _stream_copies(
        self, slug: str, created: datetime, expected_size: int | None, filename: str, targets: list[Location]
    ) -> tuple[list[CopyResult], str | None, int | None]:
        """Read the archive once; write it plain or enveloped to every target location."""
        base_key = object_key(self.catalog.instance_id(), created, slug)
        keys = {loc.name: base_key + (ENVELOPE_SUFFIX if self._sealed(loc) else "") for loc in targets}
        kinds = {loc.name: loc.kind for loc in targets}
        results: dict[str, CopyResult] = {}
        plain: dict[str, Writer] = {}
        sealed: dict[str, Writer] = {}
        for location in targets:
            name = location.name
            self.catalog.copy_started(slug, name, location.kind, keys[name])
            problem = await self._preflight(location, expected_size)
            if problem is not None:
                self._copy_failed(results, slug, name, kinds[name], keys[name], problem)
                continue
            (sealed if self._sealed(location) else plain)[name] = self._writer(location, keys[name])

        writers = dict(plain)
        if sealed:
            assert self.encryption is not None
            envelope = self.encryption.envelope

            async def seal(chunks: AsyncIterator[bytes]) -> FanoutResult:
                # The plaintext's hash is what proves a copy; hashing the ciphertext too would
                # cost more than the encryption itself.
                return await fan_out(envelope(chunks), sealed, digest=False)

            writers[SEALED] = seal

        if writers:
            source = _measured(self._source(slug, filename), expected_size)
            try:
                outcome = await fan_out(source, writers)
            except AddonError as err:
                for name in writers.keys() - {SEALED} | sealed.keys():
                    self._copy_failed(results, slug, name, kinds[name], keys[name], str(err))
                return [results[loc.name] for loc in targets], None, None
            assert outcome.sha256 is not None  # the outer fan-out always hashes the archive
            self.catalog.set_backup_hash(slug, outcome.size, outcome.sha256)

            stored: dict[str, tuple[SinkResult, str | None]] = {
                n: (outcome.sinks[n], outcome.sha256) for n in plain
            }
            if sealed:
                branch = outcome.sinks[SEALED]
                for name in sealed:
                    if branch.ok and isinstance(branch.value, FanoutResult):
                        stored[name] = (branch.value.sinks[name], None)
                    else:
                        stored[name] = (SinkResult(name, error=branch.error), None)
            for name, (sink, sha256) in stored.items():
                if sink.ok and isinstance(sink.value, StoredObject):
                    self.catalog.copy_committed(slug, name, sink.value.size, sha256)
                    results[name] = CopyResult(name, kinds[name], True, keys[name], size=sink.value.size)
                else:
                    error = _error_text(sink.error) if sink.error else "the location stored nothing"
                    self._copy_failed(results, slug, name, kinds[name], keys[name], error)
            return [results[loc.name] for loc in targets], outcome.sha256, outcome.size
        return [results[loc.name] for loc in targets], None, None

    def _writer(self, location: Location, key: str) -> Writer:
        async def write(chunks: AsyncIterator[bytes]) -> StoredObject:
            return await location.put(key, self._count(location.name, chunks))

        return write

    def _copy_failed(
        self, results: dict[str, CopyResult], slug: str, name: str, kind: str, key: str, error: str
    ) -> None:
        self.catalog.copy_failed(slug, name, error)
        results[name] = CopyResult(name, kind, False, key, error=error)
        _LOGGER.error("Copy of %s to %s failed: %s", slug, name, error)

    @staticmethod
    async def _preflight(location: Location, expected_size: int | None) -> str | None:
        """Catch a missing or full location before streaming starts."""
        try:
            usage = await location.usage()
        except LocationError as err:
            return _error_text(err)
        if usage is not None and expected_size is not None and usage.free_bytes < expected_size:
            need = expected_size / 2**20
            free = usage.free_bytes / 2**20
            return _error_text(
                LocationFull(location.name, f"needs {need:.0f} MiB but only {free:.0f} MiB are free")
            )
        return None


def _error_text(err: BaseException) -> str:
    if isinstance(err, LocationError):
        return str(err).removeprefix(f"{err.location}: ")
    if isinstance(err, AddonError):
        return str(err)
    return f"unexpected error: {err!r}"


def sane_size(value: object) -> int | None:
    """A size from the Supervisor, or None when it is garbled or too large for anyone to store."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63 else None


def origin_of(extra: Mapping[str, Any] | None) -> Origin:
    """Who made a backup, from the `extra` the maker stored in it."""
    extra = extra or {}
    if extra.get("created_by") == CREATED_BY:
        return Origin.ADDON
    # Home Assistant's backup integration stores its instance id (and, for automatic backups,
    # with_automatic_settings) in every backup it makes, including pre-update ones.
    if (
        "instance_id" in extra
        or "with_automatic_settings" in extra
        or "supervisor.backup_request_date" in extra
    ):
        return Origin.HOMEASSISTANT
    return Origin.OTHER


async def _measured(source: AsyncIterator[bytes], expected_size: int | None) -> AsyncIterator[bytes]:
    """Pass the archive through and fail if it ends short of the size the Supervisor reported."""
    size = 0
    async for chunk in source:
        size += len(chunk)
        yield chunk
    if expected_size is not None and size != expected_size:
        raise SourceError(
            f"The backup archive ended after {size} bytes, but the Supervisor reported "
            f"{expected_size} bytes; it is incomplete."
        )


async def _read_file(path: Path, chunk_size: int) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, chunk_size):
            yield chunk


__all__ = [
    "BackupRunner",
    "CopyResult",
    "CopyState",
    "ManualBackup",
    "RunInProgress",
    "RunProgress",
    "RunResult",
    "object_key",
    "origin_of",
]
