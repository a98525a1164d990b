"""The sidecar: a small encrypted description stored next to every copy the add-on writes.

With only the backup key, a fresh installation lists a location, opens the sidecars and knows
every backup there: its name, date, size, hash and contents. A sidecar is an age file (the
same key opens it as the copies) holding one JSON object.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Final

from aiohasupervisor import models

from .crypto.age import AgeError, Identity, Recipient, decrypt_bytes, encrypt_bytes
from .errors import AddonError
from .locations import Location

SIDECAR_SUFFIX: Final = ".meta.age"
FORMAT: Final = "backup_321/sidecar"
VERSION: Final = 1
# Far above any real sidecar (a few hundred bytes); stops a stray huge object being read whole.
MAX_SIDECAR_BYTES: Final = 256 * 1024


class SidecarUnreadable(AddonError):
    """A sidecar could not be opened or does not hold a backup description."""


@dataclass(frozen=True, slots=True)
class BackupMeta:
    """What a sidecar says about one backup (the plain Supervisor archive) and its copy."""

    slug: str
    name: str
    type: str  # "full" or "partial"
    created_at: datetime
    size: int | None  # bytes of the plain archive
    sha256: str | None  # of the plain archive
    key_id: str | None  # public id (age recipient) of the key that protects the backup
    enveloped: bool  # the copy is an age file
    instance_id: str  # the installation that made the copy
    addon_version: str
    homeassistant: str | None  # Home Assistant's version in the backup; None if not included
    addons: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackupMeta:
        """Parse a description; raises ValueError naming the first bad field."""
        try:
            created_at = datetime.fromisoformat(_text(data, "created_at"))
        except ValueError as err:
            raise ValueError(f"created_at: {err}") from None
        if created_at.tzinfo is None:
            raise ValueError("created_at: the time zone is missing")
        return cls(
            slug=_text(data, "slug"),
            name=_text(data, "name"),
            type=_text(data, "type"),
            created_at=created_at,
            size=_optional(data, "size", int),
            sha256=_optional(data, "sha256", str),
            key_id=_optional(data, "key_id", str),
            enveloped=_typed(data, "enveloped", bool),
            instance_id=_text(data, "instance_id"),
            addon_version=_typed(data, "addon_version", str),
            homeassistant=_optional(data, "homeassistant", str),
            addons=_strings(data, "addons"),
            folders=_strings(data, "folders"),
        )


def _typed[T](data: dict[str, Any], name: str, kind: type[T]) -> T:
    value = data.get(name)
    # bool is an int: a size of True must not pass.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{name}: expected {kind.__name__}")
    return value


def _text(data: dict[str, Any], name: str) -> str:
    value = _typed(data, name, str)
    if not value:
        raise ValueError(f"{name}: must not be empty")
    return value


def _optional[T](data: dict[str, Any], name: str, kind: type[T]) -> T | None:
    return None if data.get(name) is None else _typed(data, name, kind)


def _strings(data: dict[str, Any], name: str) -> list[str]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name}: expected a list of strings")
    return list(value)


def meta_from_info(
    info: models.BackupComplete,
    *,
    size: int | None,
    sha256: str | None,
    key_id: str | None,
    enveloped: bool,
    instance_id: str,
    addon_version: str,
) -> BackupMeta:
    """Describe a backup from the Supervisor's `GET /backups/<slug>/info` and what the copy knows."""
    return BackupMeta(
        slug=info.slug,
        name=info.name,
        type=str(info.type),
        created_at=info.date,
        size=size,
        sha256=sha256,
        key_id=key_id,
        enveloped=enveloped,
        instance_id=instance_id,
        addon_version=addon_version,
        homeassistant=info.homeassistant,
        addons=[a.slug for a in info.addons],
        folders=[str(f) for f in info.folders],
    )


def sidecar_key(copy_key: str) -> str:
    """Where the sidecar of a copy lives: next to it, under a name no copy can have."""
    if is_sidecar_key(copy_key):
        raise ValueError(f"{copy_key!r} is a sidecar, not a copy")
    return copy_key + SIDECAR_SUFFIX


def is_sidecar_key(key: str) -> bool:
    """Whether a listed object is a sidecar (copies end in .tar or .tar.age)."""
    return key.endswith(SIDECAR_SUFFIX)


def copy_key_of(key: str) -> str:
    """The copy a sidecar describes."""
    if not is_sidecar_key(key):
        raise ValueError(f"{key!r} is not a sidecar")
    return key.removesuffix(SIDECAR_SUFFIX)


def render_sidecar(meta: BackupMeta, recipients: Sequence[Recipient]) -> bytes:
    """The sidecar file: the description as JSON, encrypted to `recipients`."""
    document = {"format": FORMAT, "version": VERSION, **meta.to_dict()}
    return encrypt_bytes(json.dumps(document, sort_keys=True).encode(), recipients)


def read_sidecar(data: bytes, identities: Sequence[Identity]) -> BackupMeta:
    """Open a sidecar; raises SidecarUnreadable with a reason the user can act on."""
    if len(data) > MAX_SIDECAR_BYTES:
        raise SidecarUnreadable("the backup description is far too large to be one of the add-on's")
    try:
        plain = decrypt_bytes(data, identities)
    except AgeError as err:
        raise SidecarUnreadable(f"the backup description cannot be opened: {err}") from err
    try:
        document = json.loads(plain)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SidecarUnreadable("the backup description is not valid JSON") from err
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise SidecarUnreadable("the file is not a backup description of this add-on")
    if document.get("version") != VERSION:
        raise SidecarUnreadable(
            f"the backup description has version {document.get('version')!r}; update the add-on to read it"
        )
    try:
        return BackupMeta.from_dict(document)
    except ValueError as err:
        raise SidecarUnreadable(f"the backup description is incomplete ({err})") from err


async def write_sidecar(
    location: Location, copy_key: str, meta: BackupMeta, recipients: Sequence[Recipient]
) -> None:
    """Store the sidecar of the copy at `copy_key` in `location` (atomically, like any object)."""
    await location.put(sidecar_key(copy_key), _one(render_sidecar(meta, recipients)))


async def load_sidecar(location: Location, copy_key: str, identities: Sequence[Identity]) -> BackupMeta:
    """Read and open the sidecar of a copy; raises SidecarUnreadable or LocationError."""
    return read_sidecar(await _read_small(location, sidecar_key(copy_key)), identities)


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _read_small(location: Location, key: str) -> bytes:
    pieces: list[bytes] = []
    held = 0
    stream = location.open(key)
    try:
        async for piece in stream:
            pieces.append(piece)
            held += len(piece)
            if held > MAX_SIDECAR_BYTES:
                raise SidecarUnreadable("the backup description is far too large to be one of the add-on's")
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()
    return b"".join(pieces)
