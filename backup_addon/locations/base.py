"""The interface every add-on-managed location implements, and the values it returns."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable


def split_key(key: str, *, hidden: bool = False) -> list[str]:
    """Check an object key's common rules and return its parts.

    Keys are relative, '/'-separated, without empty, '.' or '..' parts, control characters or
    backslashes. Parts starting with '.' are refused unless `hidden`: most kinds keep their
    temporary objects under such names.
    """
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid object key {key!r}: no empty parts, '.', '..' or leading '/'")
    if any(ch < " " or ch in "\x7f\\" for ch in key):
        raise ValueError(f"invalid object key {key!r}: no control characters or backslashes")
    if not hidden and any(p.startswith(".") for p in parts):
        raise ValueError(f"object key {key!r} must not have hidden parts")
    return parts


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One complete object in a location."""

    key: str
    size: int
    modified: datetime


@dataclass(frozen=True, slots=True)
class Usage:
    """Space on a location, where its protocol tells."""

    free_bytes: int
    total_bytes: int


@runtime_checkable
class Location(Protocol):
    """Storage the add-on writes copies into itself.

    Keys are relative, '/'-separated paths chosen by the add-on. `put` makes an object visible
    only once every byte is stored; an interrupted put leaves nothing under the key.
    """

    name: str
    kind: str
    offsite: bool

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> StoredObject:
        """Store the chunks under key, atomically."""
        ...

    def open(self, key: str) -> AsyncIterator[bytes]:
        """Stream the object's bytes."""
        ...

    async def stat(self, key: str) -> StoredObject | None:
        """Describe the object, or None when it does not exist."""
        ...

    async def list(self) -> list[StoredObject]:
        """Every complete object, in key order."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""
        ...

    async def usage(self) -> Usage | None:
        """Free and total space, or None when unknown."""
        ...

    async def cleanup_incomplete(self) -> int:
        """Remove leftovers of interrupted puts; return how many were removed."""
        ...
