"""Looking after the copies between backups: proofs, retention, other backups and disk space.

Each function here is one job the service runs when no backup is going on; the decisions are
made by the pure modules (retention, verdict), the I/O by the locations and the Supervisor.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path

from .catalog import BackupRecord, Catalog, Copy, CopyState, Origin, ProofLevel
from .crypto.age import Identity
from .errors import AddonError, LocationError
from .locations import Location, Usage
from .locations.wrappers import paced
from .options import AddonOptions, RetentionOptions
from .pipeline import ENVELOPE_SUFFIX
from .retention import CopyFacts, RetentionPlan, RetentionPolicy, plan_retention
from .sidecar import sidecar_key
from .supervisor import LOCAL, SupervisorGateway
from .verdict import CopyProof, Verdict, evaluate_321
from .verify import NO_KEY, WRONG_KEY, Proof, prove_copy

_LOGGER = logging.getLogger(__name__)

THIS_DEVICE = "this device"


@dataclass(frozen=True, slots=True)
class Place:
    """Where copies can be: an add-on location or one of the Supervisor's."""

    name: str
    kind: str
    offsite: bool
    media: str
    location: Location | None  # None for the Supervisor's own locations


def places(options: AddonOptions, locations: Sequence[Location], backup_dir: Path) -> dict[str, Place]:
    """Every place a copy can be, with the medium it is on."""
    found = {LOCAL: Place(LOCAL, "supervisor", False, THIS_DEVICE, None)}
    for mount in options.supervisor_locations:
        found[mount] = Place(mount, "supervisor", False, f"network storage {mount}", None)
    configured = {loc.name: loc for loc in options.locations}
    for location in locations:
        found[location.name] = Place(
            location.name,
            location.kind,
            location.offsite,
            _media(configured.get(location.name), backup_dir),
            location,
        )
    return found


def _media(options: object, backup_dir: Path) -> str:
    path = getattr(options, "path", None)
    if isinstance(path, str):
        # A folder on the same filesystem as /backup shares its fate: one disk, one medium.
        try:
            same = Path(path).stat().st_dev == backup_dir.stat().st_dev
        except OSError:
            same = False
        return THIS_DEVICE if same else f"disk {path}"
    for field in ("endpoint", "host", "server", "url"):
        value = getattr(options, field, None)
        if isinstance(value, str) and value:
            bucket = getattr(options, "bucket", None) or getattr(options, "share", None) or ""
            return f"{getattr(options, 'kind', 'remote')}:{value}/{bucket}".rstrip("/")
    return f"location {getattr(options, 'name', '?')}"


# --- the 3-2-1 verdict ------------------------------------------------------------------------


def stale_limit(intervals: Sequence[timedelta]) -> timedelta | None:
    """How old the newest proven backup may be before it counts as stale."""
    if not intervals:
        return None
    # A missed night is not yet an emergency; two are.
    return min(intervals) * 2 + timedelta(hours=1)


def verdict(catalog: Catalog, where: dict[str, Place], *, now: datetime, limit: timedelta | None) -> Verdict:
    """The 3-2-1 verdict over what the catalog knows."""
    facts: list[tuple[str, str, datetime, list[CopyProof]]] = []
    for slug, name, created_at, location, state, level, verified_at in catalog.proof_rows():
        if not facts or facts[-1][0] != slug:
            facts.append((slug, name, created_at, []))
        place = where.get(location) if location is not None else None
        if place is None:
            continue
        facts[-1][3].append(
            CopyProof(
                location=location,
                media=place.media,
                offsite=place.offsite,
                good=state == CopyState.COMMITTED,
                level=level,
                proven_at=verified_at,
            )
        )
    return evaluate_321(facts, now=now, max_age=limit)


# --- retention --------------------------------------------------------------------------------


def policies(options: AddonOptions, where: dict[str, Place]) -> dict[str, RetentionPolicy]:
    """Each place's retention: its own rules where set, the add-on's otherwise."""
    default = options.retention()
    configured = {loc.name: loc for loc in options.locations}
    result = {}
    for name in where:
        own = configured.get(name)
        rules = default
        if own is not None:
            rules = RetentionOptions(
                **{
                    field: getattr(own, field) if getattr(own, field) is not None else getattr(default, field)
                    for field in RetentionOptions.model_fields
                }
            )
        result[name] = RetentionPolicy(**rules.model_dump(), include_others=options.prune_other_backups)
    return result


def copy_facts(catalog: Catalog, where: dict[str, Place]) -> list[CopyFacts]:
    """What retention needs to know of every good copy in a known place."""
    return [
        CopyFacts(
            slug=slug,
            location=location,
            created_at=created_at,
            verified=level >= ProofLevel.CHECKED,
            pinned=pinned,
            ours=origin is Origin.ADDON,
        )
        for slug, location, created_at, level, pinned, origin in catalog.good_copy_rows()
        if location in where
    ]


def plan(
    catalog: Catalog,
    options: AddonOptions,
    where: dict[str, Place],
    *,
    now: datetime,
    last_run_succeeded: bool,
    previous_now: datetime | None,
    tz: tzinfo = UTC,
) -> RetentionPlan:
    return plan_retention(
        copy_facts(catalog, where),
        policies(options, where),
        now=now,
        last_run_succeeded=last_run_succeeded,
        previous_now=previous_now,
        max_deletions=options.max_deletions_per_run,
        tz=tz,
    )


async def delete_copy(catalog: Catalog, gateway: SupervisorGateway, place: Place, slug: str) -> None:
    """Remove one copy from where it is, and record it (marked first, so a crash cannot hide it)."""
    copy = catalog.copy(slug, place.name)
    catalog.copy_deleting(slug, place.name)
    if place.location is None:
        await gateway.remove_backup(slug, place.name)
    elif copy is not None and copy.key:
        await place.location.delete(copy.key)
        await place.location.delete(sidecar_key(copy.key))
    catalog.copy_deleted(slug, place.name)


# --- proofs -----------------------------------------------------------------------------------


def copies_due_for_scrub(
    catalog: Catalog, where: dict[str, Place], *, now: datetime, period_days: int
) -> list[Copy]:
    """Copies not read back within the period, longest-unchecked first."""
    if period_days <= 0:
        return []
    horizon = now - timedelta(days=period_days)
    due = []
    for copy in catalog.copies():
        place = where.get(copy.location)
        if place is None or place.location is None or copy.state is not CopyState.COMMITTED:
            continue
        if copy.level < ProofLevel.SCRUBBED or copy.checked_at is None or copy.checked_at < horizon:
            due.append(copy)
    return sorted(
        due, key=lambda c: (c.level >= ProofLevel.SCRUBBED, c.checked_at or datetime.min.replace(tzinfo=UTC))
    )


def copies_due_for_drill(
    catalog: Catalog, where: dict[str, Place], *, now: datetime, every_days: int
) -> list[Copy]:
    """The newest good copy of each location, when its last drill is older than the interval."""
    if every_days <= 0:
        return []
    horizon = now - timedelta(days=every_days)
    # Home Assistant's own backups are locked with its key, which the add-on may not have.
    created = {b.slug: b.created_at for b in catalog.backups() if drillable(b)}
    newest: dict[str, Copy] = {}
    for copy in catalog.copies():
        if copy.state is not CopyState.COMMITTED or copy.location not in where or copy.slug not in created:
            continue
        if where[copy.location].location is None and copy.location != LOCAL:
            continue  # network storage of the Supervisor cannot be read by add-ons
        best = newest.get(copy.location)
        if best is None or created[copy.slug] > created[best.slug]:
            newest[copy.location] = copy
    return [c for c in newest.values() if c.drilled_at is None or c.drilled_at < horizon]


def drillable(backup: BackupRecord) -> bool:
    """Whether the add-on holds the key to open every part: its own backups, or unprotected ones."""
    return backup.origin is Origin.ADDON or not backup.details.get("protected", True)


def copy_stream(
    gateway: SupervisorGateway, place: Place, copy: Copy, *, limit: int | None = None
) -> AsyncIterator[bytes]:
    """A copy's bytes, read back from where it is (at most `limit` bytes per second)."""
    if place.location is None:
        stream = gateway.download(copy.slug, None if place.name == LOCAL else place.name)
    else:
        assert copy.key is not None
        stream = place.location.open(copy.key)
    return stream if limit is None else paced(stream, limit)


async def prove(
    catalog: Catalog,
    gateway: SupervisorGateway,
    place: Place,
    copy: Copy,
    backup: BackupRecord,
    *,
    identities: Sequence[Identity],
    password: str | None,
    drill: bool,
    limit: int | None = None,
) -> Proof:
    """Read a copy back (and with `drill`, open every part of it); record what was found."""
    enveloped = bool(copy.key and copy.key.endswith(ENVELOPE_SUFFIX))
    expected = backup.sha256 if place.location is not None else None
    try:
        proof = await prove_copy(
            copy_stream(gateway, place, copy, limit=limit),
            identities=identities,
            enveloped=enveloped,
            expected_sha256=expected,
            expected_size=backup.size_bytes if not enveloped and place.location is not None else None,
            password=password,
            drill=drill,
        )
    except LocationError as err:
        # Unreachable is not damaged: the copy keeps its state and is tried again later.
        raise AddonError(f"{place.name} could not be read: {err}") from err
    if proof.ok:
        catalog.copy_checked(copy.slug, copy.location, proof.level)
    elif not drillable(backup) and proof.error in (WRONG_KEY, NO_KEY):
        # Not damage: Home Assistant locked it with a key the add-on does not hold.
        if proof.reached is not None:
            catalog.copy_checked(copy.slug, copy.location, proof.reached)
        return replace(
            proof,
            error="Home Assistant locked this backup with its own key, which the add-on does not have; set "
            "encryption_key to Home Assistant's backup key to test restoring it",
        )
    else:
        catalog.copy_bad(copy.slug, copy.location, proof.error or "the check failed")
    return proof


# --- other backups and local disk space ---------------------------------------------------------


def disk_usage(path: Path) -> Usage | None:
    """Free and total space of the filesystem holding path, or None when it cannot be read."""
    try:
        stats = os.statvfs(path)
    except OSError:
        return None
    return Usage(free_bytes=stats.f_bavail * stats.f_frsize, total_bytes=stats.f_blocks * stats.f_frsize)


def safe_elsewhere(catalog: Catalog, slug: str, *, locations: set[str]) -> bool:
    """A backup has a checked copy in one of the named add-on locations."""
    return any(
        c.state is CopyState.COMMITTED and c.level >= ProofLevel.CHECKED and c.location in locations
        for c in catalog.copies(slug)
    )
