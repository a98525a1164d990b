"""Disaster recovery: find every copy in the locations and rebuild the catalog from them.

A fresh installation that has only the backup key (from the emergency kit) and the locations'
settings lists each location, opens the sidecars next to the copies and learns what every
backup is. A copy whose sidecar is missing or unreadable is still found: its key name says
which backup it holds, when it was made and whether it is an age file.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from .catalog import Catalog, CopyState
from .crypto.age import Identity
from .errors import LocationError
from .locations import Location, StoredObject
from .pipeline import ENVELOPE_SUFFIX, KEY_PREFIX
from .sidecar import BackupMeta, SidecarUnreadable, copy_key_of, is_sidecar_key, load_sidecar

_LOGGER = logging.getLogger(__name__)

UNKNOWN_TYPE: Final = "unknown"
_COPY_KEY = re.compile(
    rf"^{re.escape(KEY_PREFIX)}/(?P<instance>[^/]+)/(?P<stamp>\d{{4}}-\d{{2}}-\d{{2}}_\d{{6}})_"
    rf"(?P<slug>[A-Za-z0-9]+)\.tar(?P<sealed>{re.escape(ENVELOPE_SUFFIX)})?$"
)


class MetaSource(StrEnum):
    SIDECAR = "sidecar"  # the copy's own encrypted description
    KEY_NAME = "key_name"  # only what the copy's name tells


@dataclass(frozen=True, slots=True)
class CopyName:
    """What the key of an add-on-managed copy says (see pipeline.object_key)."""

    instance_id: str
    created_at: datetime
    slug: str
    enveloped: bool


@dataclass(frozen=True, slots=True)
class FoundCopy:
    """One copy found in a location, and what is known about its backup."""

    location: str
    kind: str
    key: str
    size: int  # bytes stored: the age file's size when the copy is enveloped
    modified: datetime
    meta: BackupMeta
    source: MetaSource
    note: str | None = None  # why the sidecar was not used, when it was not

    @property
    def enveloped(self) -> bool:
        return self.key.endswith(ENVELOPE_SUFFIX)


def parse_copy_key(key: str) -> CopyName | None:
    """Read an add-on copy's key; None for any other object."""
    match = _COPY_KEY.match(key)
    if match is None:
        return None
    try:
        created = datetime.strptime(match["stamp"], "%Y-%m-%d_%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return CopyName(match["instance"], created, match["slug"], match["sealed"] is not None)


def meta_from_name(name: CopyName, stored: StoredObject) -> BackupMeta:
    """The little a copy's key and size tell about its backup."""
    return BackupMeta(
        slug=name.slug,
        name=f"Backup of {name.created_at:%Y-%m-%d %H:%M} UTC",
        type=UNKNOWN_TYPE,
        created_at=name.created_at,
        # A plain copy is the archive itself; an age file is larger than what it holds.
        size=None if name.enveloped else stored.size,
        sha256=None,
        key_id=None,
        enveloped=name.enveloped,
        instance_id=name.instance_id,
        addon_version="",
        homeassistant=None,
    )


async def discover(
    locations: Sequence[Location],
    identities: Sequence[Identity],
    *,
    on_problem: Callable[[str, str], None] | None = None,
) -> list[FoundCopy]:
    """Every add-on copy in `locations`, described by its sidecar where one can be read.

    A location that cannot be listed is skipped and reported through `on_problem`
    (location name, message), as are unreadable sidecars; the others are still searched.
    """

    def problem(location: str, message: str) -> None:
        _LOGGER.warning("%s: %s", location, message)
        if on_problem is not None:
            on_problem(location, message)

    found = await asyncio.gather(*(_discover_one(loc, identities, problem) for loc in locations))
    copies = [copy for per_location in found for copy in per_location]
    return sorted(copies, key=lambda c: (c.meta.created_at, c.meta.slug, c.location))


async def _discover_one(
    location: Location, identities: Sequence[Identity], problem: Callable[[str, str], None]
) -> list[FoundCopy]:
    try:
        objects = await location.list()
    except LocationError as err:
        problem(location.name, f"cannot be searched for backups: {err}")
        return []
    ours = [o for o in objects if o.key.startswith(KEY_PREFIX + "/")]
    sidecars = {copy_key_of(o.key) for o in ours if is_sidecar_key(o.key)}
    copies: list[FoundCopy] = []
    for stored in ours:
        if is_sidecar_key(stored.key):
            continue
        name = parse_copy_key(stored.key)
        if name is None:
            continue
        meta, note = None, "no description is stored next to it"
        if stored.key in sidecars:
            try:
                meta = await load_sidecar(location, stored.key, identities)
            except (SidecarUnreadable, LocationError) as err:
                note = str(err)
        if meta is None:
            problem(location.name, f"{stored.key}: {note}; described from its name only")
            copies.append(
                FoundCopy(
                    location.name,
                    location.kind,
                    stored.key,
                    stored.size,
                    stored.modified,
                    meta_from_name(name, stored),
                    MetaSource.KEY_NAME,
                    note,
                )
            )
            continue
        # The key says how the copy is stored, whatever the description claims.
        meta = replace(meta, enveloped=name.enveloped)
        copies.append(
            FoundCopy(
                location.name,
                location.kind,
                stored.key,
                stored.size,
                stored.modified,
                meta,
                MetaSource.SIDECAR,
            )
        )
    return copies


def _best_meta(copies: Iterable[FoundCopy]) -> BackupMeta:
    ordered = sorted(copies, key=lambda c: c.source is not MetaSource.SIDECAR)
    return ordered[0].meta


def rebuild_catalog(catalog: Catalog, found: Sequence[FoundCopy]) -> int:
    """Record the found backups and their copies as committed; return how many backups were new.

    Backups and committed copies the catalog already knows are left as they are, so running it
    twice changes nothing.
    """
    by_slug: dict[str, list[FoundCopy]] = {}
    for copy in found:
        by_slug.setdefault(copy.meta.slug, []).append(copy)
    added = 0
    for slug, copies in by_slug.items():
        meta = _best_meta(copies)
        if catalog.backup(slug) is None:
            catalog.record_backup(
                slug=slug,
                run_id=None,
                name=meta.name,
                type=meta.type,
                created_at=meta.created_at,
                size_bytes=meta.size,
                details={
                    "recovered_from": str(
                        MetaSource.SIDECAR
                        if any(c.source is MetaSource.SIDECAR for c in copies)
                        else MetaSource.KEY_NAME
                    ),
                    "key_id": meta.key_id,
                    "protected": meta.key_id is not None,
                    "instance_id": meta.instance_id,
                    "addon_version": meta.addon_version,
                    "homeassistant": meta.homeassistant,
                    "addons": meta.addons,
                    "folders": meta.folders,
                },
            )
            added += 1
            if meta.size is not None and meta.sha256 is not None:
                catalog.set_backup_hash(slug, meta.size, meta.sha256)
        recorded: set[str] = set()
        for copy in sorted(copies, key=lambda c: c.source is not MetaSource.SIDECAR):
            known = catalog.copy(slug, copy.location)
            if copy.location in recorded or (known is not None and known.state is CopyState.COMMITTED):
                continue
            recorded.add(copy.location)
            catalog.copy_started(slug, copy.location, copy.kind, copy.key)
            # Like the pipeline: a plain copy is the archive, so it carries the archive's hash.
            sha256 = None if copy.enveloped else meta.sha256
            catalog.copy_committed(slug, copy.location, copy.size, sha256)
    return added
