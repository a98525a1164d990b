"""One backup run: ask the Supervisor for a backup, stream it once, fan it out, record it all.

The pipeline wires the Supervisor gateway, the locations and the catalog together; protocol
details live in those modules, not here.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from aiohasupervisor import models

from . import __version__
from .catalog import Catalog, CopyState, RunState
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
        self._lock = asyncio.Lock()

    @property
    def running(self) -> bool:
        return self._lock.locked()

    def _request(self, now: datetime) -> BackupRequest:
        opts = self.options
        local_now = now.astimezone()
        stamp = now.astimezone(UTC).strftime("%Y%m%d_%H%M%S")
        return BackupRequest(
            name=f"3-2-1 Backup {local_now:%Y-%m-%d %H:%M}",
            full=opts.backup_type is BackupType.FULL,
            filename=f"backup_321_{stamp}_{secrets.token_hex(3)}.tar",
            locations=[LOCAL, *opts.supervisor_locations],
            homeassistant=opts.include_homeassistant,
            addons=list(opts.include_addons),
            folders=[str(f) for f in opts.include_folders],
            exclude_database=opts.exclude_database,
            password=self.encryption.password if self.encryption else None,
            extra={"created_by": CREATED_BY, "addon_version": __version__},
        )

    async def run(self, trigger: str) -> RunResult:
        if self._lock.locked():
            raise RunInProgress("A backup is already running; wait for it to finish.")
        async with self._lock:
            run_id = self.catalog.start_run(trigger)
            _LOGGER.info("Backup run %d started (%s)", run_id, trigger)
            try:
                result = await self._run(run_id)
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
            self.catalog.finish_run(run_id, result.state, result.error)
            _LOGGER.info(
                "Backup run %d %s: %s",
                run_id,
                result.state,
                ", ".join(f"{c.location} {'ok' if c.ok else 'FAILED'}" for c in result.copies),
            )
            return result

    async def _run(self, run_id: int) -> RunResult:
        now = datetime.now(UTC)
        request = self._request(now)

        self.catalog.set_stage(run_id, "requesting")
        unavailable: dict[str, str] = {}
        while True:
            try:
                job_id = await self.gateway.start_backup(request)
                break
            except MountUnavailable as err:
                # One network storage being down must not cost the backup everywhere else.
                _LOGGER.error("%s", err)
                unavailable[err.mount] = str(err)
                request = replace(request, locations=[loc for loc in request.locations if loc != err.mount])
        self.catalog.set_stage(run_id, "supervisor_backup")

        def on_stage(stage: str) -> None:
            self.catalog.set_stage(run_id, f"supervisor:{stage}")

        outcome = await self.gateway.wait_for_job(job_id, on_stage)
        slug = outcome.slug
        for warning in outcome.warnings:
            _LOGGER.warning("Backup %s: %s", slug, warning)
        info = await self.gateway.backup_info(slug)
        self.catalog.set_stage(run_id, "recording", slug=slug)
        self.catalog.record_backup(
            slug=slug,
            run_id=run_id,
            name=info.name,
            type=str(info.type),
            created_at=info.date,
            size_bytes=self._size(info),
            details={
                "locations": sorted(info.location_attributes),
                "warnings": outcome.warnings,
                "protected": any(a.protected for a in info.location_attributes.values()),
                "key_id": self.encryption.key_id if self.encryption else None,
            },
        )
        copies = self._supervisor_copies(slug, request.locations, info.location_attributes, outcome.warnings)
        for mount, problem in unavailable.items():
            self.catalog.copy_started(slug, mount, "supervisor", None)
            self.catalog.copy_failed(slug, mount, problem)
            copies.append(CopyResult(mount, "supervisor", False, error=problem))

        sha256 = size = None
        if self.locations:
            self.catalog.set_stage(run_id, "copying", slug=slug)
            streamed = await self._stream_copies(slug, info.date, self._size(info), request.filename)
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

    @staticmethod
    def _size(info: models.BackupComplete) -> int | None:
        attributes = info.location_attributes
        local = attributes.get(LOCAL) or next(iter(attributes.values()), None)
        return None if local is None else local.size_bytes

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
                self.catalog.copy_committed(slug, name, present.size_bytes, None)
                results.append(CopyResult(name, "supervisor", True))
                continue
            related = [w for w in warnings if name in w]
            error = related[0] if related else "the Supervisor did not store a copy here"
            self.catalog.copy_failed(slug, name, error)
            results.append(CopyResult(name, "supervisor", False, error=error))
        return results

    def _source(self, slug: str, filename: str) -> AsyncIterator[bytes]:
        local_file = self.backup_dir / filename
        if local_file.is_file():
            return _read_file(local_file, self.chunk_size)
        return rechunk(self.gateway.download(slug), self.chunk_size)

    def _sealed(self, location: Location) -> bool:
        return self.encryption is not None and location.name not in self.plain_locations

    async def _stream_copies(
        self, slug: str, created: datetime, expected_size: int | None, filename: str
    ) -> tuple[list[CopyResult], str | None, int | None]:
        """Read the archive once; write it plain or enveloped to every location."""
        base_key = object_key(self.catalog.instance_id(), created, slug)
        keys = {loc.name: base_key + (ENVELOPE_SUFFIX if self._sealed(loc) else "") for loc in self.locations}
        kinds = {loc.name: loc.kind for loc in self.locations}
        results: dict[str, CopyResult] = {}
        plain: dict[str, Writer] = {}
        sealed: dict[str, Writer] = {}
        for location in self.locations:
            name = location.name
            self.catalog.copy_started(slug, name, location.kind, keys[name])
            problem = await self._preflight(location, expected_size)
            if problem is not None:
                self._copy_failed(results, slug, name, kinds[name], keys[name], problem)
                continue
            (sealed if self._sealed(location) else plain)[name] = _writer(location, keys[name])

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
                return [results[loc.name] for loc in self.locations], None, None
            assert outcome.sha256 is not None  # the outer fan-out always hashes the archive
            self.catalog.set_backup_hash(slug, outcome.size, outcome.sha256)

            stored: dict[str, tuple[SinkResult, str | None]] = {n: (outcome.sinks[n], outcome.sha256) for n in plain}
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
            return [results[loc.name] for loc in self.locations], outcome.sha256, outcome.size
        return [results[loc.name] for loc in self.locations], None, None

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


def _writer(location: Location, key: str) -> Writer:
    async def write(chunks: AsyncIterator[bytes]) -> StoredObject:
        return await location.put(key, chunks)

    return write


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


__all__ = ["BackupRunner", "CopyResult", "CopyState", "RunInProgress", "RunResult", "object_key"]
