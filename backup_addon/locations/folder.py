"""A folder the add-on sees: a Supervisor share/media mount, a USB disk, any directory."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal

from pydantic import field_validator

from ..errors import LocationError, LocationFull, LocationReadOnly, LocationUnreachable
from .base import StoredObject, Usage, split_key
from .options_base import LocationOptionsBase

PARTIAL_MARK = ".partial-"
# Written data is handed to the disk in windows of this size as the copy grows, instead of all
# at the final fsync: the disk works while the stream goes on, and a small device's page cache
# does not fill up with copies nobody reads.
WRITEBACK_WINDOW = 16 << 20
# Copies there would land inside the add-on's own backups, or in system folders.
FORBIDDEN_ROOTS = frozenset({"data", "proc", "sys", "dev", "run", "etc", "usr", "bin", "sbin", "lib"})


class FolderLocationOptions(LocationOptionsBase):
    """A folder the add-on writes copies into, e.g. /share/nas or /media/usb."""

    kind: Literal["folder"]
    path: str

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if any(ord(ch) < 32 or ch == "\x7f" for ch in value):
            raise ValueError(
                "must not contain control characters such as line breaks; type the path again, e.g. /media/usb"
            )
        path = Path(value)
        if not path.is_absolute():
            raise ValueError("must be an absolute path such as /share/backups or /media/usb")
        if ".." in path.parts:
            raise ValueError("must not contain '..'")
        if path.parts[1:2] and path.parts[1] in FORBIDDEN_ROOTS:
            raise ValueError(f"must not be under /{path.parts[1]}; use a disk or share under /media or /share")
        return str(path)
READ_CHUNK = 1 << 20


def _check_key(key: str) -> PurePosixPath:
    return PurePosixPath(*split_key(key))


class FolderLocation:
    """Copies as plain files under a root directory that must already exist.

    The root is never created: a missing root usually means a disconnected disk or share,
    and writing into the empty mount point would fill the add-on's own storage instead.
    """

    kind = "folder"

    def __init__(self, name: str, root: Path, *, offsite: bool = False) -> None:
        self.name = name
        self.root = root
        self.offsite = offsite

    def _error(self, err: OSError, action: str) -> LocationError:
        where = f"folder {self.root}"
        if err.errno == errno.ENOSPC or err.errno == errno.EDQUOT:
            return LocationFull(self.name, f"{where} is full while {action}; free some space")
        if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return LocationReadOnly(
                self.name, f"{where} cannot be written while {action}; check it is mounted read-write"
            )
        if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENODEV, errno.EIO, errno.ESTALE):
            return LocationUnreachable(
                self.name, f"{where} is not available while {action}: {err.strerror}"
            )
        return LocationError(self.name, f"{where}: {err.strerror or err} while {action}")

    def _require_root(self) -> None:
        if not self.root.is_dir():
            raise LocationUnreachable(
                self.name,
                f"folder {self.root} does not exist; connect the disk or network storage, "
                "or correct the path in the add-on's options",
            )

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> StoredObject:
        rel = _check_key(key)
        self._require_root()
        final = self.root.joinpath(*rel.parts)
        temp = final.with_name(f".{final.name}{PARTIAL_MARK}{uuid.uuid4().hex[:12]}")
        handle: BinaryIO | None = None
        size = 0
        try:
            try:
                await asyncio.to_thread(final.parent.mkdir, parents=True, exist_ok=True)
                handle = await asyncio.to_thread(temp.open, "xb")
                flushed = 0
                async for chunk in chunks:
                    await asyncio.to_thread(handle.write, chunk)
                    size += len(chunk)
                    if size - flushed >= 2 * WRITEBACK_WINDOW:
                        await asyncio.to_thread(_start_writeback, handle, flushed, WRITEBACK_WINDOW)
                        flushed += WRITEBACK_WINDOW
                await asyncio.to_thread(_finish, handle, temp, final)
            except OSError as err:
                raise self._error(err, f"writing {key}") from err
        except BaseException:
            if handle is not None:
                await asyncio.to_thread(_discard, handle, temp)
            raise
        return StoredObject(key=key, size=size, modified=datetime.now(UTC))

    async def open(self, key: str) -> AsyncIterator[bytes]:
        path = self.root.joinpath(*_check_key(key).parts)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except OSError as err:
            raise self._error(err, f"reading {key}") from err
        try:
            while chunk := await asyncio.to_thread(handle.read, READ_CHUNK):
                yield chunk
        except OSError as err:
            raise self._error(err, f"reading {key}") from err
        finally:
            handle.close()

    async def stat(self, key: str) -> StoredObject | None:
        path = self.root.joinpath(*_check_key(key).parts)
        try:
            st = await asyncio.to_thread(path.stat)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise self._error(err, f"checking {key}") from err
        return StoredObject(key=key, size=st.st_size, modified=datetime.fromtimestamp(st.st_mtime, UTC))

    async def list(self) -> list[StoredObject]:
        self._require_root()
        return await asyncio.to_thread(self._list_sync)

    def _list_sync(self) -> builtins.list[StoredObject]:
        found: builtins.list[StoredObject] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in filenames:
                if filename.startswith("."):
                    continue
                path = Path(dirpath, filename)
                st = path.stat()
                key = path.relative_to(self.root).as_posix()
                found.append(StoredObject(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))
        return sorted(found, key=lambda o: o.key)

    async def delete(self, key: str) -> None:
        path = self.root.joinpath(*_check_key(key).parts)
        try:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        except OSError as err:
            raise self._error(err, f"deleting {key}") from err

    async def usage(self) -> Usage | None:
        self._require_root()
        try:
            du = await asyncio.to_thread(shutil.disk_usage, self.root)
        except OSError as err:
            raise self._error(err, "reading free space") from err
        return Usage(free_bytes=du.free, total_bytes=du.total)

    async def cleanup_incomplete(self) -> int:
        if not self.root.is_dir():
            return 0
        return await asyncio.to_thread(self._cleanup_sync)

    def _cleanup_sync(self) -> int:
        removed = 0
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for filename in filenames:
                if filename.startswith(".") and PARTIAL_MARK in filename:
                    Path(dirpath, filename).unlink(missing_ok=True)
                    removed += 1
        return removed


def _start_writeback(handle: BinaryIO, offset: int, length: int) -> None:
    """Start writing a window out and let the kernel drop its pages once written."""
    handle.flush()
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(handle.fileno(), offset, length, os.POSIX_FADV_DONTNEED)


def _finish(handle: BinaryIO, temp: Path, final: Path) -> None:
    """Make the temp file durable, then give it its final name."""
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    temp.replace(final)
    dir_fd = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _discard(handle: BinaryIO, temp: Path) -> None:
    with contextlib.suppress(OSError):
        handle.close()
    temp.unlink(missing_ok=True)
