"""Restore: bring a copy back into the Supervisor and have it restored, proving the key first.

A copy is streamed down once, its age envelope removed, and the plain archive fed at the same
time to the Supervisor's upload and to the archive walker, which opens every part with the
backup key. Only when the walk proves the key opens the whole archive does the restore start;
otherwise the uploaded backup is removed again. Memory stays constant and nothing touches
the add-on's disk.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final
from uuid import UUID

from aiohasupervisor import models

from .crypto.age import (
    AgeError,
    AgeHeaderError,
    AgePayloadError,
    Identity,
    NoMatchingIdentity,
    decrypt_stream,
)
from .errors import AddonError, BackupJobFailed, SourceError
from .fanout import FanoutResult, Writer, fan_out, rechunk
from .locations import Location
from .recovery import parse_copy_key
from .supervisor import REFUSED_KEY_PREFIX, BackupPasswordRejected, SupervisorGateway
from .verify import NO_KEY, WRONG_KEY, ArchiveReport, walk_archive

_LOGGER = logging.getLogger(__name__)

# Stages reported to `on_progress`, with the bytes of the plain archive handled so far.
STAGE_UPLOADING: Final = "uploading"  # streaming the copy into the Supervisor, checking it on the way
STAGE_CHECKING: Final = "checking"  # the Supervisor already has the backup: only the copy is checked
STAGE_STARTING: Final = "starting"  # asking the Supervisor to restore
STAGE_RESTORING: Final = "restoring"  # prefix: "restoring:<the Supervisor's job stage>"
STAGE_DONE: Final = "done"

FOLDERS: Final = frozenset(str(f) for f in models.Folder)
# The copy's file name in the Supervisor's backup folder, so users recognise it there.
UPLOAD_PREFIX: Final = "backup_321_restore_"

type Progress = Callable[[str, int], None]


class WrongKey(AddonError):
    """The key at hand does not open the backup."""


class RestoreFailed(AddonError):
    """The restore could not be done; nothing was restored."""


@dataclass(frozen=True, slots=True)
class RestoreSelection:
    """What a partial restore brings back; a restore without one is full."""

    homeassistant: bool = False
    addons: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not (self.homeassistant or self.addons or self.folders):
            raise ValueError("choose at least one thing to restore: Home Assistant, an add-on or a folder")
        unknown = sorted(set(self.folders) - FOLDERS)
        if unknown:
            raise ValueError(
                f"unknown folder(s) {', '.join(unknown)}; choose from {', '.join(sorted(FOLDERS))}"
            )


@dataclass(frozen=True, slots=True)
class RestoreOutcome:
    """A restore that the Supervisor finished."""

    slug: str
    name: str
    full: bool
    job_id: UUID
    uploaded: bool  # False when the Supervisor already had the backup and restored its own
    size: int | None = None  # bytes of the plain archive streamed from the copy
    sha256: str | None = None
    warnings: list[str] = field(default_factory=list)


def decrypted_stream(
    location: Location, key: str, *, identities: Sequence[Identity], enveloped: bool
) -> AsyncIterator[bytes]:
    """The plain archive of a copy, streamed; raises WrongKey or RestoreFailed on a bad envelope."""
    return _decrypted(location, key, identities, enveloped)


async def _decrypted(
    location: Location, key: str, identities: Sequence[Identity], enveloped: bool
) -> AsyncIterator[bytes]:
    chunks = rechunk(location.open(key))
    if enveloped:
        chunks = decrypt_stream(chunks, identities, offload=True)
    try:
        async for chunk in chunks:
            yield chunk
    except AgeError as err:
        raise _envelope_error(err, location.name) from err


def _envelope_error(err: AgeError, where: str) -> AddonError:
    if isinstance(err, NoMatchingIdentity):
        return WrongKey(
            f"The copy in {where} was encrypted with a different backup key. Enter the key from the "
            "emergency kit that was current when the backup was made, then try again."
        )
    if isinstance(err, AgePayloadError):
        return RestoreFailed(
            f"The copy in {where} is damaged or incomplete ({err}). Restore from another copy of this backup."
        )
    if isinstance(err, AgeHeaderError):
        return RestoreFailed(
            f"The copy in {where} is not an encrypted copy the add-on can open ({err}). "
            "Restore from another copy of this backup."
        )
    return RestoreFailed(f"The copy in {where} cannot be decrypted ({err}). Restore from another copy.")


class _WalkFailed(Exception):
    """Stops the stream once the walk has failed, so the upload is abandoned early."""


class _Walker:
    """Runs the archive walk on one branch of the stream and remembers why it failed."""

    def __init__(self, password: str | None) -> None:
        self.password = password
        self.failure: ArchiveReport | BaseException | None = None

    async def walk(self, chunks: AsyncIterator[bytes]) -> ArchiveReport:
        try:
            report = await walk_archive(chunks, self.password)
        except SourceError:
            raise  # the stream itself failed: that is the source's error, not the archive's
        except Exception as err:
            self.failure = err
            raise
        if not report.ok:
            self.failure = report
        # The walker may stop at the tar's end marker; the other branch needs the rest.
        async for _ in chunks:
            pass
        return report

    async def guard(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            if self.failure is not None:
                raise _WalkFailed("the archive check failed")
            yield chunk


def _walk_failure(failure: ArchiveReport | BaseException, where: str) -> AddonError:
    if isinstance(failure, WrongKey | RestoreFailed):
        return failure
    if isinstance(failure, BaseException):
        return RestoreFailed(f"The backup in {where} could not be checked ({failure}). Nothing was restored.")
    problems = "; ".join(failure.problems) or "no reason given"
    if WRONG_KEY in failure.problems or NO_KEY in failure.problems:
        return WrongKey(
            f"The backup key does not open the backup in {where}: it was made with another key. Enter the "
            "key from the emergency kit that was current when the backup was made, then try again. "
            "Nothing was restored."
        )
    return RestoreFailed(
        f"The copy in {where} cannot be restored: {problems}. Nothing was restored; restore from another copy."
    )


async def restore_copy(
    location: Location,
    key: str,
    *,
    gateway: SupervisorGateway,
    identities: Sequence[Identity],
    password: str | None,
    enveloped: bool,
    selection: RestoreSelection | None,
    on_progress: Progress | None = None,
    expected_sha256: str | None = None,
) -> RestoreOutcome:
    """Restore the backup held by one copy, after proving the key opens all of it.

    The copy is uploaded to the Supervisor while the walker opens every part; the restore
    starts only if both succeed (and the archive's sha256 is `expected_sha256`, when given).
    When the Supervisor already lists the backup, the copy is only checked and the
    Supervisor's own archive is restored, so an existing backup is never overwritten.
    """
    where = location.name

    def progress(stage: str, done: int) -> None:
        if on_progress is not None:
            on_progress(stage, done)

    named = parse_copy_key(key)
    held = {b.slug for b in await gateway.list_backups()}
    uploading = named is None or named.slug not in held
    stage = STAGE_UPLOADING if uploading else STAGE_CHECKING
    progress(stage, 0)

    async def counted(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        done = 0
        async for chunk in chunks:
            done += len(chunk)
            progress(stage, done)
            yield chunk

    # A name of its own, so the upload can never replace a file the Supervisor already has.
    filename = f"{UPLOAD_PREFIX}{named.slug if named is not None else secrets.token_hex(4)}.tar"

    async def upload(chunks: AsyncIterator[bytes]) -> str:
        return await gateway.upload_backup(chunks, filename=filename)

    walker = _Walker(password)
    writers: dict[str, Writer] = {"walk": walker.walk}
    if uploading:
        writers["upload"] = upload
    source = walker.guard(
        counted(decrypted_stream(location, key, identities=identities, enveloped=enveloped))
    )
    try:
        result = await fan_out(source, writers)
    except SourceError as err:
        if walker.failure is not None:
            # The walk failed part way: the upload was abandoned, so nothing reached the Supervisor.
            raise _walk_failure(walker.failure, where) from err
        cause = err.__cause__
        # The copy's own errors (wrong key, damage, a location that cannot be read) say it best.
        if isinstance(cause, AddonError) and not isinstance(cause, SourceError):
            raise cause from cause.__cause__
        raise RestoreFailed(
            f"Reading the copy in {where} failed: {cause or err}. Nothing was restored."
        ) from err

    slug = _uploaded_slug(result) if uploading else (named.slug if named is not None else None)
    try:
        _check(result, where, expected_sha256)
    except AddonError:
        if uploading and slug is not None and slug not in held:
            await _remove_quietly(gateway, slug)
        raise
    assert slug is not None  # _check raised if the upload gave no slug
    outcome = await _restore(gateway, slug, password=password, selection=selection, progress=progress)
    return RestoreOutcome(
        slug=slug,
        name=outcome.name,
        full=outcome.full,
        job_id=outcome.job_id,
        uploaded=uploading,
        size=result.size,
        sha256=result.sha256,
        warnings=outcome.warnings,
    )


def _uploaded_slug(result: FanoutResult) -> str | None:
    sink = result.sinks.get("upload")
    if sink is not None and sink.ok and isinstance(sink.value, str):
        return sink.value
    return None


def _check(result: FanoutResult, where: str, expected_sha256: str | None) -> None:
    """Raise the first problem of the walk, the hash and the upload, in that order."""
    walked = result.sinks["walk"]
    if not walked.ok:
        raise _walk_failure(walked.error or RuntimeError("the walk stopped"), where)
    if isinstance(walked.value, ArchiveReport) and not walked.value.ok:
        raise _walk_failure(walked.value, where)
    if expected_sha256 is not None and result.sha256 != expected_sha256:
        raise RestoreFailed(
            f"The backup in {where} is not the one that was copied there (its checksum differs). "
            "Nothing was restored; restore from another copy."
        )
    uploaded = result.sinks.get("upload")
    if uploaded is not None and not uploaded.ok:
        raise RestoreFailed(f"The Supervisor did not take the backup from {where}: {uploaded.error}")


async def _remove_quietly(gateway: SupervisorGateway, slug: str) -> None:
    try:
        await gateway.remove_backup(slug)
    except AddonError as err:
        _LOGGER.error("Could not remove the uploaded backup %s again: %s", slug, err)


@dataclass(frozen=True, slots=True)
class _Restored:
    name: str
    full: bool
    job_id: UUID
    warnings: list[str]


async def _restore(
    gateway: SupervisorGateway,
    slug: str,
    *,
    password: str | None,
    selection: RestoreSelection | None,
    progress: Callable[[str, int], None],
    location: str | None = None,
) -> _Restored:
    info = await gateway.backup_info(slug)
    full = selection is None and info.type == models.BackupType.FULL
    if selection is None and not full:
        # A partial backup cannot be restored "fully": restore everything it holds.
        selection = RestoreSelection(
            homeassistant=info.homeassistant is not None,
            addons=[a.slug for a in info.addons],
            folders=[str(f) for f in info.folders],
        )
    progress(STAGE_STARTING, 0)
    try:
        if selection is None:
            job_id = await gateway.restore(slug, password=password, location=location)
        else:
            job_id = await gateway.restore(
                slug,
                password=password,
                homeassistant=selection.homeassistant,
                addons=list(selection.addons),
                folders=list(selection.folders),
                location=location,
            )
    except BackupPasswordRejected as err:
        raise WrongKey(
            f"The backup key does not open the backup '{info.name}'. Enter the key from the emergency kit "
            "that was current when the backup was made, then try again. Nothing was restored."
        ) from err

    def on_stage(stage: str) -> None:
        progress(f"{STAGE_RESTORING}:{stage}", 0)

    try:
        outcome = await gateway.wait_for_job(job_id, on_stage)
    except BackupJobFailed as err:
        raise await _job_failure(gateway, job_id, info.name, err) from err
    progress(STAGE_DONE, 0)
    return _Restored(name=info.name, full=full, job_id=job_id, warnings=outcome.warnings)


async def _job_failure(
    gateway: SupervisorGateway, job_id: UUID, name: str, err: BackupJobFailed
) -> AddonError:
    """The restore job's own errors, worded for the user."""
    try:
        job = await gateway.find_job(job_id)
    except AddonError:
        job = None
    if job is None or not job.errors:
        return RestoreFailed(f"The restore of '{name}' did not finish: {err}")
    reasons = "; ".join(e.message for e in job.errors)
    if any(e.message.startswith(REFUSED_KEY_PREFIX) for e in job.errors):
        return WrongKey(
            f"The backup key does not open the backup '{name}'. Enter the key from the emergency kit that "
            "was current when the backup was made, then try again."
        )
    return RestoreFailed(
        f"Home Assistant could not restore '{name}': {reasons}. Check the Supervisor logs "
        "(Settings > System > Logs > Supervisor)."
    )


async def restore_supervisor_backup(
    slug: str,
    *,
    gateway: SupervisorGateway,
    password: str | None,
    selection: RestoreSelection | None,
    on_progress: Progress | None = None,
    location: str | None = None,
) -> RestoreOutcome:
    """Restore a backup the Supervisor holds, from `location` (".local" or a network storage) if given."""

    def progress(stage: str, done: int) -> None:
        if on_progress is not None:
            on_progress(stage, done)

    outcome = await _restore(
        gateway, slug, password=password, selection=selection, progress=progress, location=location
    )
    return RestoreOutcome(
        slug=slug,
        name=outcome.name,
        full=outcome.full,
        job_id=outcome.job_id,
        uploaded=False,
        warnings=outcome.warnings,
    )
