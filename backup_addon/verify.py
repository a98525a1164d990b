"""Proof that a copy can be restored: scrub it (hash) and drill it (open every part with the key).

`walk_archive` reads a Supervisor backup archive as a stream, once, without writing anything to
disk: it parses ``backup.json``, decrypts every inner archive with the backup password
(SecureTar v1, v2 and v3, through ``securetar``), reads its gzip to the end and lists its files.
Memory stays flat: the blocking work runs in one worker thread, fed through a bounded pipe, and
nothing is kept per file but counters. Hostile input is bounded (files per part, header sizes,
how far a part may unpack), and entries a restore would place outside their folder are
reported.

`prove_copy` streams a stored copy once: it opens the age envelope (which authenticates every
chunk and notices truncation), hashes the plaintext and, for a drill, walks it at the same time.

Neither raises for bad data: every finding is a sentence a person can act on, and none of them
holds a key or password. Errors of the chunk source itself (a location that cannot be read)
propagate, so the caller can tell "the copy is bad" from "the copy could not be read".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import posixpath
import re
import struct
import sys
import tarfile
import threading
import zlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final, Protocol, TextIO, cast

from nacl.exceptions import CryptoError
from securetar import (
    InvalidPasswordError,
    SecureTarDecryptStream,
    SecureTarError,
    SecureTarReadError,
    SecureTarRootKeyContext,
)

from .catalog import ProofLevel
from .crypto.age import (
    AgeError,
    AgeHeaderMacError,
    AgePayloadError,
    Identity,
    NoMatchingIdentity,
    decrypt_stream,
)
from .crypto.keys import KEY_PATTERN, InvalidKey, check_key, identity_for
from .crypto.kit import identities_from_kit

__all__ = [
    "BAD_METADATA",
    "COPY_DAMAGED",
    "COPY_DIFFERS",
    "COPY_SHORT",
    "COPY_TRUNCATED",
    "COPY_WRONG_KEY",
    "DEFAULT_LIMITS",
    "NOT_A_TAR",
    "NO_KEY",
    "NO_METADATA",
    "TRUNCATED",
    "WRONG_KEY",
    "ArchiveReport",
    "BackupMetadata",
    "Limits",
    "PartReport",
    "Proof",
    "prove_copy",
    "run_verify_command",
    "walk_archive",
]

_LOGGER = logging.getLogger(__name__)

# --- what the user reads ----------------------------------------------------------------------

WRONG_KEY: Final = "the encryption key does not open this backup; it was made with another key"
NO_KEY: Final = "this backup is protected with an encryption key, but no key was given to open it"
TRUNCATED: Final = "the backup file is incomplete: it ends too early, so the copy was cut short"
NOT_A_TAR: Final = "this file is not a Home Assistant backup: it is not a backup archive at all"
NO_METADATA: Final = "this file is not a Home Assistant backup: it has no backup.json"
BAD_METADATA: Final = "this file is not a Home Assistant backup: its backup.json is unreadable"
DAMAGED_ARCHIVE: Final = "the backup file is damaged: its list of parts is corrupt"
COPY_DIFFERS: Final = "the copy differs from the backup that was made: it is damaged"
COPY_SHORT: Final = "the copy is incomplete: it is shorter than the backup that was made"
COPY_WRONG_KEY: Final = "the encryption key does not open this copy; it was sealed with another key"
COPY_NOT_SEALED: Final = "this copy is not sealed with age, or its beginning is damaged"
COPY_HEADER_DAMAGED: Final = "the copy is damaged: its header was changed after it was written"
COPY_DAMAGED: Final = "the copy is damaged: part of it was changed after it was written"
COPY_TRUNCATED: Final = "the copy is incomplete: it ends too early, so it was cut short"
COPY_DAMAGED_OR_SHORT: Final = "the end of the copy is damaged or missing: it differs from the backup that was made"
COPY_TRAILING: Final = "the copy is damaged: it has extra data after its end"
UNEXPECTED: Final = "the check stopped on an unexpected error; see the add-on log"

PROTECTED_MAGIC: Final = b"SecureTar"
GZIP_MAGIC: Final = b"\x1f\x8b\x08"
TAR_MAGIC: Final = b"ustar"
TAR_MAGIC_OFFSET: Final = 257
BLOCK: Final = tarfile.BLOCKSIZE
METADATA_NAMES: Final = ("backup.json", "snapshot.json")
FOLDER_NAMES: Final = {"share": "share", "addons/local": "local add-ons", "ssl": "ssl", "media": "media"}

# Pieces between the event loop and the worker thread (about 1 MiB each).
PIPE_DEPTH: Final = 4
# Ciphertext is read in securetar v3's message size (1 MiB) plus its 17-byte tag.
READ_SIZE: Final = (1 << 20) + 17
# Compressed input is fed to zlib in small slices so an unconsumed tail is never a big copy.
INFLATE_FEED: Final = 64 * 1024
INFLATE_OUT: Final = 256 * 1024
# Plaintext is read in securetar v3's message size, so its reader never re-slices a buffer.
PLAIN_READ: Final = 1 << 20
MAX_GZIP_HEADER: Final = 1 << 20
# Consecutive PAX or GNU headers before one entry; real archives use one or two.
MAX_META_HEADERS: Final = 8
# Offending names quoted in one sentence, each cut to this many characters.
QUOTED_NAMES: Final = 3
QUOTED_CHARS: Final = 80


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds for hostile input; generous enough that no real backup reaches them.

    The parts of one archive may unpack to `unpack_ratio` times the bytes they are stored in,
    and always to `unpack_floor` bytes (zero-filled database files compress extremely well).
    """

    max_parts: int = 10_000
    max_members: int = 2_000_000
    max_header_bytes: int = 1 << 20
    max_metadata_bytes: int = 16 << 20
    unpack_ratio: int = 200
    unpack_floor: int = 1 << 30

    def unpack_limit(self, stored: int) -> int:
        """How many bytes parts stored in `stored` bytes may unpack to, together."""
        return max(self.unpack_floor, self.unpack_ratio * stored)


DEFAULT_LIMITS: Final = Limits()


# --- results ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartReport:
    """One inner archive: its files, their total size, and what was wrong with it."""

    name: str
    ok: bool
    members: int = 0
    bytes: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class BackupMetadata:
    """What ``backup.json`` says the backup holds."""

    slug: str
    name: str
    type: str
    date: str
    protected: bool
    compressed: bool
    homeassistant: str | None  # Home Assistant's version, None when it is not in the backup
    addons: tuple[tuple[str, str], ...]  # (slug, name)
    folders: tuple[str, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    def part_name(self, base: str) -> str:
        """The inner archive's file name for an add-on slug, a folder or ``homeassistant``."""
        return f"{base.replace('/', '_')}.tar{'.gz' if self.compressed else ''}"


@dataclass(frozen=True, slots=True)
class ArchiveReport:
    """The walk of one backup archive. `ok` means every promised part is there and complete."""

    ok: bool
    name: str | None
    slug: str | None
    parts: list[PartReport]
    problems: list[str]
    metadata: BackupMetadata | None = None
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class Proof:
    """The outcome of one scrub or drill of a copy.

    `level` is the level that was asked for (SCRUBBED, or DRILLED with `drill`); `ok` says it
    was reached. `reached` is the strongest level actually proven: SCRUBBED when the hash
    matched but the drill found a problem, None when even the scrub failed. Without an expected
    sha256, a scrub proves only that the copy reads back completely (and, sealed, authenticates).
    """

    ok: bool
    level: ProofLevel
    error: str | None
    sha256: str | None
    size: int | None
    report: ArchiveReport | None
    reached: ProofLevel | None = None


# --- the pipe from the event loop to the worker thread -----------------------------------------


class _Aborted(Exception):
    """The producer gave up (cancelled, or its source failed): the walk stops."""


class _Pipe:
    """Byte pieces from the event loop to one reader thread, at most `depth` in between."""

    def __init__(self, depth: int = PIPE_DEPTH) -> None:
        self._loop = asyncio.get_running_loop()
        self._depth = depth
        self._items: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._space = asyncio.Event()
        self._ended = False
        self._aborted = False
        self._closed = False
        self._piece = b""
        self._offset = 0

    # event loop side

    async def put(self, piece: bytes) -> bool:
        """Queue one piece; False once the reader has finished and wants no more."""
        while True:
            with self._cond:
                if self._closed:
                    return False
                if len(self._items) < self._depth:
                    self._items.append(piece)
                    self._cond.notify()
                    return True
                self._space.clear()
            await self._space.wait()

    def end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify()

    def abort(self) -> None:
        with self._cond:
            self._aborted = True
            self._items.clear()
            self._cond.notify()

    # reader thread side

    def read(self, size: int) -> bytes:
        """Up to `size` bytes; b"" only at the end of the stream."""
        if self._offset >= len(self._piece):
            piece = self._take()
            if piece is None:
                return b""
            self._piece, self._offset = piece, 0
        start = self._offset
        self._offset = min(len(self._piece), start + size)
        if start == 0 and self._offset == len(self._piece):
            return self._piece
        return self._piece[start : self._offset]

    def _take(self) -> bytes | None:
        with self._cond:
            while not self._items and not self._ended and not self._aborted:
                self._cond.wait()
            if self._aborted:
                raise _Aborted
            if not self._items:
                return None
            was_full = len(self._items) >= self._depth
            piece = self._items.popleft()
        if was_full:
            self._loop.call_soon_threadsafe(self._space.set)
        return piece

    def close(self) -> None:
        """The reader is done: drop what is queued and release a waiting producer."""
        with self._cond:
            self._closed = True
            self._items.clear()
        self._loop.call_soon_threadsafe(self._space.set)


# --- blocking stream helpers (worker thread) ------------------------------------------------


class _Source(Protocol):
    def read(self, size: int, /) -> bytes:
        """Up to `size` bytes; b"" only at the end."""
        ...


class _Truncated(Exception):
    """The outer stream ended inside an entry."""


class _PartDamage(Exception):
    """One inner archive is unusable; the message completes "<part> is ..."."""


class _TarDamage(Exception):
    """A tar stream is malformed."""


class _LimitReached(Exception):
    """Hostile input hit a bound; the message completes "<part> ..."."""


class _Cursor:
    """Buffered reads and skips over a source that may return short pieces."""

    def __init__(self, source: _Source, block: int = READ_SIZE) -> None:
        self._source = source
        self._block = block
        self._buf = b""
        self._off = 0

    def _refill(self) -> bool:
        self._buf = self._source.read(self._block)
        self._off = 0
        return bool(self._buf)

    def read(self, size: int) -> bytes:
        """Exactly `size` bytes, fewer only at the end."""
        available = len(self._buf) - self._off
        if size <= available:
            start = self._off
            self._off += size
            if start == 0 and size == len(self._buf):
                return self._buf
            return self._buf[start : self._off]
        pieces = [self._buf[self._off :]] if available else []
        need = size - available
        self._buf, self._off = b"", 0
        while need > 0 and self._refill():
            take = min(need, len(self._buf))
            pieces.append(self._buf if take == len(self._buf) else self._buf[:take])
            self._off = take
            need -= take
        return b"".join(pieces)

    def skip(self, size: int) -> int:
        """Skip `size` bytes; returns how many there were."""
        left = size
        while left > 0:
            available = len(self._buf) - self._off
            if available == 0:
                if not self._refill():
                    break
                continue
            take = min(left, available)
            self._off += take
            left -= take
        return size - left

    def rest_is_zero(self) -> bool:
        """Read to the end; True if nothing but zero bytes was left."""
        zero = True
        while True:
            data = self._buf[self._off :]
            if data.count(0) != len(data):
                zero = False
            if not self._refill():
                return zero


class _Slice:
    """One entry's bytes inside the outer archive; a short stream is a truncated archive."""

    def __init__(self, cursor: _Cursor, size: int) -> None:
        self._cursor = cursor
        self.left = size
        self._head = b""

    def peek(self, size: int) -> bytes:
        if len(self._head) < size:
            self._head += self._take(size - len(self._head))
        return self._head[:size]

    def read(self, size: int) -> bytes:
        if self._head:
            head, self._head = self._head[:size], self._head[size:]
            if len(head) == size:
                return head
            return head + self._take(size - len(head))
        return self._take(size)

    def _take(self, size: int) -> bytes:
        size = min(size, self.left)
        if size <= 0:
            return b""
        data = self._cursor.read(size)
        self.left -= len(data)
        if len(data) < size:
            raise _Truncated
        return data


class _Budget:
    """How far the parts of one archive may still unpack: a bound for compression bombs."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self.stored = 0
        self.unpacked = 0

    def spend(self, count: int) -> None:
        self.unpacked += count
        limit = self._limits.unpack_limit(self.stored)
        if self.unpacked > limit:
            raise _LimitReached(
                f"unpacks to more than {_human_size(limit)}, far more than its stored size "
                "suggests, so it was not checked further"
            )


class _Gunzip:
    """A gzip member, inflated with bounded output and checked to its trailer.

    The trailer check also accepts the layout of securetar v1, whose writer padded every short
    write to the AES block size: [padding] crc32, twelve 0x0c bytes, size.
    """

    def __init__(self, source: _Source, budget: _Budget) -> None:
        self._source = source
        self._budget = budget
        self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        self._block = memoryview(b"")
        self._pending = b""
        self._crc = 0
        self.total = 0
        self._done = False
        self._checked = False
        self._read_header()

    def _next_input(self) -> bytes | memoryview:
        if self._pending:
            pending, self._pending = self._pending, b""
            return pending
        if not self._block:
            self._block = memoryview(self._source.read(PLAIN_READ))
            if not self._block:
                return b""
        piece, self._block = self._block[:INFLATE_FEED], self._block[INFLATE_FEED:]
        return piece

    def _read_header(self) -> None:
        buf = bytearray()

        def need(end: int) -> None:
            while len(buf) < end:
                if len(buf) > MAX_GZIP_HEADER:
                    raise _PartDamage("damaged: its compressed data is corrupt")
                piece = self._next_input()
                if not piece:
                    raise _PartDamage("incomplete: its compressed data ends too early")
                buf.extend(piece)

        need(10)
        if buf[:3] != GZIP_MAGIC:
            raise _PartDamage("damaged: its compressed data is corrupt")
        flags, pos = buf[3], 10
        if flags & 0x04:  # FEXTRA: a length, then that many bytes
            need(pos + 2)
            pos += 2 + int.from_bytes(buf[pos : pos + 2], "little")
        for flag in (0x08, 0x10):  # FNAME, FCOMMENT: zero-terminated
            if flags & flag:
                need(pos + 1)
                while (end := buf.find(0, pos)) < 0:
                    need(len(buf) + 1)
                pos = end + 1
        if flags & 0x02:  # FHCRC
            pos += 2
        need(pos)
        self._pending = bytes(buf[pos:])

    def read(self, size: int) -> bytes:
        """Up to `size` inflated bytes; b"" at the end of the member, once its trailer checked out."""
        while not self._done:
            piece = self._next_input()
            try:
                out = self._inflate.decompress(piece, min(size, INFLATE_OUT))
            except zlib.error:
                raise _PartDamage("damaged: its compressed data is corrupt") from None
            self._pending = self._inflate.unconsumed_tail
            if self._inflate.eof:
                self._done = True
                self._pending = self._inflate.unused_data + self._pending
            if out:
                self.total += len(out)
                self._budget.spend(len(out))
                self._crc = zlib.crc32(out, self._crc)
                return out
            if not piece and not self._done:
                raise _PartDamage("incomplete: its compressed data ends too early")
        if not self._checked:
            self._check_trailer()
        return b""

    def _check_trailer(self) -> None:
        self._checked = True
        tail = bytearray()
        while len(tail) < 64 and (piece := self._next_input()):
            tail += piece
        want_crc = self._crc.to_bytes(4, "little")
        want_size = (self.total & 0xFFFFFFFF).to_bytes(4, "little")
        if tail[:8] == want_crc + want_size:
            return
        legacy = want_crc + b"\x0c" * 12 + want_size
        for pad in range(16):
            if tail[pad : pad + 20] == legacy and tail[:pad] == bytes([pad]) * pad:
                return
        if len(tail) < 8:
            raise _PartDamage("incomplete: its compressed data ends too early")
        raise _PartDamage("damaged: its compressed data does not match its checksum")

    def drain(self) -> None:
        """Inflate to the end of the member, which checks its trailer."""
        while self.read(INFLATE_OUT):
            pass


# --- tar streams ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    name: str
    type: bytes
    size: int
    linkname: str
    data_size: int  # bytes of data that follow the header in the stream


_DATA_TYPES: Final = frozenset({tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.GNUTYPE_SPARSE})
_NO_DATA_TYPES: Final = frozenset(
    {tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE}
)
_PAX_TYPES: Final = frozenset({tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE})
_GNU_NAME_TYPES: Final = frozenset({tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK})


class _TarStream:
    """Pull-parses a tar stream from a cursor: entries with their names, types and sizes.

    Unlike `tarfile` in stream mode, it tells a clean end (the zero block) from a cut-off or
    garbled stream, and bounds what it buffers for extended headers.
    """

    def __init__(self, cursor: _Cursor, limits: Limits, *, truncation: type[Exception]) -> None:
        self._cursor = cursor
        self._limits = limits
        self._truncation = truncation  # what a stream ending mid-entry raises
        self._pending = 0  # data (and padding) of the current entry not yet consumed
        self.entries = 0

    def _exact(self, size: int) -> bytes:
        data = self._cursor.read(size)
        if len(data) < size:
            raise self._truncation
        return data

    def finish_entry(self) -> None:
        if self._pending:
            if self._cursor.skip(self._pending) < self._pending:
                raise self._truncation
            self._pending = 0

    def data_read(self, size: int) -> None:
        """The caller consumed `size` bytes of the current entry's data through the cursor."""
        self._pending -= size

    def next(self) -> _Entry | None:
        """The next entry, or None at the end-of-archive marker."""
        self.finish_entry()
        overrides: dict[str, str] = {}
        for _ in range(MAX_META_HEADERS + 1):
            block = self._cursor.read(BLOCK)
            if not block and self.entries == 0 and not overrides:
                raise _TarDamage("empty")
            if len(block) < BLOCK:
                raise self._truncation
            if block.count(0) == BLOCK:
                return None
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError:
                raise _TarDamage("bad header") from None
            if info.type in _PAX_TYPES or info.type in _GNU_NAME_TYPES or info.type == tarfile.XGLTYPE:
                if info.size > self._limits.max_header_bytes:
                    raise _LimitReached(
                        "has a file entry with an oversized header; it was not checked further"
                    )
                data = self._exact(info.size)
                self._skip_padding(info.size)
                if info.type in _PAX_TYPES:
                    overrides.update(_pax_records(data))
                elif info.type == tarfile.GNUTYPE_LONGNAME:
                    overrides["path"] = _gnu_name(data)
                elif info.type == tarfile.GNUTYPE_LONGLINK:
                    overrides["linkpath"] = _gnu_name(data)
                continue
            self.entries += 1
            if self.entries > self._limits.max_members:
                raise _LimitReached(
                    f"holds more than {self._limits.max_members:,} files; it was not checked further"
                )
            size = info.size
            if "size" in overrides:
                try:
                    size = int(overrides["size"])
                except ValueError:
                    raise _TarDamage("bad size") from None
                if size < 0:
                    raise _TarDamage("bad size")
            # Like tarfile: links, directories and devices carry no data, unknown types do.
            data_size = 0 if info.type in _NO_DATA_TYPES else size
            self._pending = data_size + (-data_size % BLOCK)
            return _Entry(
                name=overrides.get("path", info.name),
                type=info.type,
                size=size,
                linkname=overrides.get("linkpath", info.linkname),
                data_size=data_size,
            )
        raise _TarDamage("too many extended headers")

    def _skip_padding(self, size: int) -> None:
        padding = -size % BLOCK
        if padding and self._cursor.skip(padding) < padding:
            raise self._truncation


def _pax_records(data: bytes) -> dict[str, str]:
    """The records of a PAX extended header (``"%d %s=%s\\n"``)."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            break  # some writers pad the header's data with zeros
        space = data.find(b" ", pos, pos + 20)
        digits = data[pos:space] if space > pos else b""
        if not digits.isdigit():
            raise _TarDamage("bad pax header")
        length = int(digits)
        end = pos + length
        if length <= len(digits) + 1 or end > len(data) or data[end - 1 : end] != b"\n":
            raise _TarDamage("bad pax header")
        key, sep, value = data[space + 1 : end - 1].partition(b"=")
        if not sep:
            raise _TarDamage("bad pax header")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos = end
    return records


def _gnu_name(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _escapes(path: str) -> bool:
    """True when `path` is absolute or its '..' parts climb above the root."""
    if path.startswith("/"):
        return True
    depth = 0
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        else:
            depth += 1
    return False


def _unsafe(entry: _Entry) -> bool:
    """Would a restore write this entry, or a link it makes, outside its folder?"""
    if _escapes(entry.name):
        return True
    if entry.type == tarfile.SYMTYPE:
        # A symbolic link's target is relative to the link's own folder.
        return _escapes(posixpath.join(posixpath.dirname(entry.name), entry.linkname))
    if entry.type == tarfile.LNKTYPE:
        return _escapes(entry.linkname)  # a hard link names another entry of the archive
    return False


def _quoted(name: str) -> str:
    """A name from the archive, safe to show: printable, short."""
    flat = "".join(ch if ch.isprintable() else "?" for ch in name)
    return flat if len(flat) <= QUOTED_CHARS else flat[: QUOTED_CHARS - 3] + "..."


def _human_size(count: int) -> str:
    size = float(count)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{count} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{count} bytes"  # pragma: no cover - the loop always returns


# --- the walk (worker thread) -----------------------------------------------------------------


@dataclass(slots=True)
class _PartResult:
    name: str
    members: int = 0
    bytes: int = 0
    error: str | None = None  # completes "<label> is ..." / "<label> ..."
    wrong_key: bool = False
    no_key: bool = False
    opened_encrypted: bool = False
    truncated: bool = False
    unsafe: list[str] = field(default_factory=list)
    unsafe_count: int = 0


class _Walk:
    """One archive walk; runs in the worker thread."""

    def __init__(self, password: str | None, limits: Limits) -> None:
        self._password = password
        self._limits = limits
        self._contexts: dict[tuple[int, bytes], SecureTarRootKeyContext] = {}
        self._refused: set[tuple[int, bytes]] = set()
        self._budget = _Budget(limits)
        self.parts: list[_PartResult] = []
        self.metadata: BackupMetadata | None = None
        self.metadata_bad = False
        self.truncated = False
        self.problems: list[str] = []
        self.unsafe_outer: list[str] = []

    def run(self, source: _Source) -> None:
        cursor = _Cursor(source)
        tar = _TarStream(cursor, self._limits, truncation=_Truncated)
        try:
            while (entry := tar.next()) is not None:
                name = entry.name.removeprefix("./")
                if _escapes(entry.name):
                    self.unsafe_outer.append(_quoted(entry.name))
                if name in METADATA_NAMES and entry.type in _DATA_TYPES:
                    self._read_metadata(cursor, tar, entry)
                elif name.endswith((".tar.gz", ".tar")) and entry.type in _DATA_TYPES:
                    if len(self.parts) >= self._limits.max_parts:
                        raise _LimitReached(f"holds more than {self._limits.max_parts:,} parts")
                    part = _Slice(cursor, entry.data_size)
                    result = self._walk_part(name, part, entry.data_size)
                    self.parts.append(result)
                    tar.data_read(entry.data_size - part.left)
        except _Truncated:
            self.truncated = True
        except _TarDamage as err:
            self.problems.append(
                NOT_A_TAR if tar.entries == 0 and str(err) in ("empty", "bad header") else DAMAGED_ARCHIVE
            )
        except _LimitReached as err:
            self.problems.append(f"the backup file {err}")

    def _read_metadata(self, cursor: _Cursor, tar: _TarStream, entry: _Entry) -> None:
        if entry.size > self._limits.max_metadata_bytes:
            self.metadata_bad = True
            return
        raw = cursor.read(entry.size)
        tar.data_read(len(raw))
        if len(raw) < entry.size:
            raise _Truncated
        if entry.name.removeprefix("./") == "snapshot.json" and self.metadata is not None:
            return
        try:
            self.metadata = _parse_metadata(json.loads(raw))
        except (ValueError, TypeError, KeyError):
            self.metadata_bad = True

    # one inner archive

    def _walk_part(self, name: str, data: _Slice, size: int) -> _PartResult:
        result = _PartResult(name)
        try:
            head = data.peek(BLOCK)
            if head.startswith(PROTECTED_MAGIC) or not _plain(head, name):
                self._walk_encrypted(result, data, size, head)
            else:
                self._walk_content(result, data, size, name.endswith(".gz"))
        except _Truncated:
            result.error = "is incomplete: the backup file ends inside it"
            result.truncated = True
            self.parts.append(result)
            raise
        except _PartDamage as err:
            result.error = f"is {err}"
        except _LimitReached as err:
            result.error = str(err)
        except _TarDamage:
            result.error = "is damaged: its list of files is corrupt"
        return result

    def _walk_encrypted(self, result: _PartResult, data: _Slice, size: int, head: bytes) -> None:
        if self._password is None:
            result.no_key = True
            return
        version = head[len(PROTECTED_MAGIC)] if head.startswith(PROTECTED_MAGIC) else 1
        salt = head[32:48] if version == 3 else b""
        key = (version, salt)
        if key in self._refused:
            result.wrong_key = True
            return
        context = self._contexts.get(key)
        if context is None:
            context = self._contexts[key] = SecureTarRootKeyContext(self._password)
        try:
            source = cast("IO[bytes]", data)  # securetar only calls read() on it
            with SecureTarDecryptStream(source, ciphertext_size=size, root_key_context=context) as plain:
                result.opened_encrypted = True
                self._walk_content(result, plain, size, result.name.endswith(".gz"))
        except InvalidPasswordError:
            self._refused.add(key)
            result.wrong_key = True
        except SecureTarReadError as err:
            if not result.opened_encrypted or "wrong key" in str(err):
                result.wrong_key = True  # v1/v2 check the first block only: "not gzip or tar"
            else:
                raise _PartDamage("damaged: its encrypted data does not check out") from None
        except CryptoError:
            raise _PartDamage("damaged: its encrypted data does not check out") from None
        except (ValueError, struct.error, SecureTarError):
            raise _PartDamage("damaged: its encryption header is unreadable") from None

    def _walk_content(self, result: _PartResult, source: _Source, stored: int, gzipped: bool) -> None:
        inner: _Source = source
        gunzip: _Gunzip | None = None
        if gzipped:
            self._budget.stored += stored
            gunzip = _Gunzip(source, self._budget)
            inner = gunzip
        cursor = _Cursor(inner, INFLATE_OUT if gzipped else PLAIN_READ)
        tar = _TarStream(cursor, self._limits, truncation=_PartDamage)
        try:
            while (entry := tar.next()) is not None:
                result.members += 1
                if entry.type in _DATA_TYPES:
                    result.bytes += entry.size
                if _unsafe(entry):
                    result.unsafe_count += 1
                    if len(result.unsafe) < QUOTED_NAMES:
                        result.unsafe.append(_quoted(entry.name))
            if not cursor.rest_is_zero():
                raise _PartDamage("damaged: its list of files stops in the middle")
        except _PartDamage as err:
            if not err.args:
                raise _PartDamage("incomplete: its list of files ends too early") from None
            raise
        if gunzip is not None:
            gunzip.drain()
        # Read the plaintext to its end: securetar v3 checks its final tag there.
        while source.read(PLAIN_READ):
            pass

    # the report

    def report(self) -> ArchiveReport:
        meta = self.metadata
        protected = meta is None or meta.protected
        # A key that opened one part is the right key: another part it cannot open is damaged.
        key_works = any(p.opened_encrypted and not p.wrong_key for p in self.parts)
        problems: list[str] = []
        parts: list[PartReport] = []
        wrong_key = no_key = False
        for part in self.parts:
            error = part.error
            if part.wrong_key or part.no_key:
                if key_works or not protected:
                    error = "is damaged: it is not a readable archive"
                elif part.wrong_key:
                    wrong_key = True
                    error = "cannot be opened with this encryption key"
                else:
                    no_key = True
                    error = "is encrypted, and no key was given"
                if error.startswith("is damaged"):
                    problems.append(f"{_part_label(part.name, meta)} {error}")
            elif error is not None and not part.truncated:
                problems.append(f"{_part_label(part.name, meta)} {error}")
            elif error is None and part.unsafe_count:
                more = part.unsafe_count - len(part.unsafe)
                names = ", ".join(part.unsafe) + (f" and {more} more" if more else "")
                problems.append(
                    f"{_part_label(part.name, meta)} holds entries that a restore would place outside "
                    f"their folder ({names})"
                )
                error = "holds entries that would land outside their folder"
            shown = None if error is None else error.removeprefix("is ")
            parts.append(PartReport(part.name, error is None, part.members, part.bytes, shown))
        if meta is not None:
            present = {p.name for p in self.parts}
            for base, label in _expected_parts(meta):
                file_name = meta.part_name(base)
                if file_name not in present and not self.truncated:
                    problems.append(
                        f"{label} is listed in this backup, but its archive ({file_name}) is missing"
                    )
                    parts.append(PartReport(file_name, False, error="missing from the backup file"))
        if self.unsafe_outer:
            problems.append(
                "the backup file holds entries that a restore would place outside its folder "
                f"({', '.join(self.unsafe_outer[:QUOTED_NAMES])})"
            )
        lead = [NO_KEY] if no_key else []
        lead += [WRONG_KEY] if wrong_key else []
        if self.truncated:
            lead.insert(0, TRUNCATED)
        elif meta is None and not self.problems:
            lead.append(BAD_METADATA if self.metadata_bad else NO_METADATA)
        problems = lead + self.problems + problems
        return ArchiveReport(
            ok=not problems,
            name=None if meta is None else meta.name,
            slug=None if meta is None else meta.slug,
            parts=parts,
            problems=problems,
            metadata=meta,
            truncated=self.truncated,
        )


def _plain(head: bytes, name: str) -> bool:
    """Does an inner archive start like gzip or tar (an empty tar is all zeros)?"""
    if name.endswith(".gz"):
        return head.startswith(GZIP_MAGIC)
    return head[TAR_MAGIC_OFFSET : TAR_MAGIC_OFFSET + len(TAR_MAGIC)] == TAR_MAGIC or head.count(0) == len(
        head
    )


def _parse_metadata(data: Any) -> BackupMetadata:
    if not isinstance(data, dict) or not isinstance(data.get("slug"), str):
        raise ValueError("no slug")
    homeassistant = data.get("homeassistant")
    addons = []
    for addon in data.get("addons") or []:
        if not isinstance(addon, dict) or not isinstance(addon.get("slug"), str):
            raise ValueError("bad add-on")
        addons.append((addon["slug"], str(addon.get("name") or addon["slug"])))
    folders = data.get("folders") or []
    if not isinstance(folders, list) or not all(isinstance(f, str) for f in folders):
        raise ValueError("bad folders")
    extra = data.get("extra")
    return BackupMetadata(
        slug=data["slug"],
        name=str(data.get("name") or ""),
        type=str(data.get("type") or ""),
        date=str(data.get("date") or ""),
        protected=bool(data.get("protected", False)),
        compressed=data.get("compressed", True) is not False,
        homeassistant=None
        if not isinstance(homeassistant, dict)
        else str(homeassistant.get("version") or "unknown"),
        addons=tuple(addons),
        folders=tuple(folders),
        extra=extra if isinstance(extra, dict) else {},
    )


def _expected_parts(meta: BackupMetadata) -> list[tuple[str, str]]:
    """(base name, label) of every part backup.json promises."""
    expected = []
    if meta.homeassistant is not None:
        expected.append(("homeassistant", "Home Assistant's configuration"))
    expected += [(slug, f"the add-on {name}") for slug, name in meta.addons]
    expected += [(folder, f"the folder {FOLDER_NAMES.get(folder, folder)}") for folder in meta.folders]
    return expected


def _part_label(file_name: str, meta: BackupMetadata | None) -> str:
    """How a part is named in a sentence: what it holds, then its file name."""
    base = file_name.removesuffix(".gz").removesuffix(".tar")
    if base == "homeassistant":
        what = "Home Assistant's configuration"
    elif base == "supervisor":
        what = "the Supervisor's settings"
    else:
        addons = dict(meta.addons) if meta is not None else {}
        folders = {f.replace("/", "_"): f for f in (meta.folders if meta is not None else FOLDER_NAMES)}
        if base in addons:
            what = f"the add-on {addons[base]}"
        elif base in folders:
            what = f"the folder {FOLDER_NAMES.get(folders[base], folders[base])}"
        else:
            return f"the part {file_name}"
    return f"{what} ({file_name})"


def _walk_blocking(pipe: _Pipe, password: str | None, limits: Limits) -> ArchiveReport:
    walk = _Walk(password, limits)
    try:
        walk.run(pipe)
    except _Aborted:
        walk.problems.append(UNEXPECTED)
    except Exception:
        _LOGGER.exception("The archive walk failed unexpectedly")
        walk.problems.append(UNEXPECTED)
    finally:
        pipe.close()
    return walk.report()


def _start_walk(pipe: _Pipe, password: str | None, limits: Limits) -> asyncio.Future[ArchiveReport]:
    """Run the walk in a thread of its own, whose result arrives as a future on this loop.

    Not in the default executor: a walk waits on its pipe, and the readers that fill the pipe
    may need that executor; a few drills at once could otherwise take every thread it has.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[ArchiveReport] = loop.create_future()

    def deliver(report: ArchiveReport) -> None:
        if not done.done():
            done.set_result(report)

    def work() -> None:
        loop.call_soon_threadsafe(deliver, _walk_blocking(pipe, password, limits))

    threading.Thread(target=work, name="archive walk", daemon=True).start()
    return done


# --- public API -------------------------------------------------------------------------------


async def walk_archive(
    chunks: AsyncIterator[bytes], password: str | None, *, limits: Limits = DEFAULT_LIMITS
) -> ArchiveReport:
    """Walk a Supervisor backup archive as it streams by; never extracts, never raises for bad data.

    The walk may finish before `chunks` does (a clean end of the archive, or a fatal problem);
    the rest is then left unread. Errors raised by `chunks` itself propagate.
    """
    pipe = _Pipe()
    worker = _start_walk(pipe, password, limits)
    try:
        async for chunk in chunks:
            if chunk and not await pipe.put(bytes(chunk)):
                break
        pipe.end()
        return await worker
    except BaseException:
        pipe.abort()  # the worker stops at its next read
        if not worker.done():
            await asyncio.wait([worker])
        raise


async def _drill(queue: asyncio.Queue[bytes | None], password: str | None, limits: Limits) -> ArchiveReport:
    """Walk what `prove_copy` puts in `queue`, then keep emptying it until the end marker."""
    ended = False

    async def chunks() -> AsyncGenerator[bytes]:
        nonlocal ended
        while (chunk := await queue.get()) is not None:
            yield chunk
        ended = True

    stream = chunks()
    try:
        report = await walk_archive(stream, password, limits=limits)
    except Exception:
        _LOGGER.exception("The restore drill failed unexpectedly")
        report = ArchiveReport(ok=False, name=None, slug=None, parts=[], problems=[UNEXPECTED])
    finally:
        await stream.aclose()
    # The walk may end before the copy does; keep taking pieces so the producer never waits.
    while not ended:
        ended = await queue.get() is None
    return report


async def prove_copy(
    chunks: AsyncIterator[bytes],
    *,
    identities: Sequence[Identity],
    enveloped: bool,
    expected_sha256: str | None,
    expected_size: int | None,
    password: str | None,
    drill: bool,
    limits: Limits = DEFAULT_LIMITS,
) -> Proof:
    """Stream a copy once: open its envelope, hash it, and with `drill` walk the archive too.

    Never raises for bad data; errors of `chunks` (such as a LocationError) propagate.
    """
    level = ProofLevel.DRILLED if drill else ProofLevel.SCRUBBED
    plaintext = decrypt_stream(chunks, identities) if enveloped else chunks
    hasher = hashlib.sha256()
    size = 0
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=PIPE_DEPTH)
    task = asyncio.create_task(_drill(queue, password, limits)) if drill else None
    try:
        async for piece in plaintext:
            hasher.update(piece)
            size += len(piece)
            if task is not None:
                await queue.put(piece)
    except AgeError as err:
        await _cancel(task)
        await _close(chunks)  # release the location's file or connection now, not at collection
        return Proof(ok=False, level=level, error=_age_sentence(err), sha256=None, size=None, report=None)
    except BaseException:
        await _cancel(task)
        raise
    report = None
    if task is not None:
        await queue.put(None)
        report = await task
    sha256 = hasher.hexdigest()
    error = None
    if expected_size is not None and size < expected_size:
        error = COPY_SHORT
    elif (expected_size is not None and size != expected_size) or (
        expected_sha256 is not None and sha256 != expected_sha256.lower()
    ):
        error = COPY_DIFFERS
    reached = None if error else ProofLevel.SCRUBBED
    if error is None and report is not None and not report.ok:
        error = "; ".join(report.problems)
    elif error is None and report is not None:
        reached = ProofLevel.DRILLED
    return Proof(
        ok=error is None,
        level=level,
        error=error,
        sha256=sha256,
        size=size,
        report=report,
        reached=reached,
    )


async def _cancel(task: asyncio.Task[ArchiveReport] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _close(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


def _age_sentence(err: AgeError) -> str:
    if isinstance(err, NoMatchingIdentity):
        return COPY_WRONG_KEY
    if isinstance(err, AgeHeaderMacError):
        return COPY_HEADER_DAMAGED
    if isinstance(err, AgePayloadError):
        if "ends before" in err.reason:
            return COPY_TRUNCATED
        if "damaged or cut short" in err.reason:
            # The last chunk cannot tell a flipped bit from a missing tail.
            return COPY_DAMAGED_OR_SHORT
        if "after the end" in err.reason:
            return COPY_TRAILING
        return COPY_DAMAGED
    return COPY_NOT_SEALED


# --- the verify command -----------------------------------------------------------------------

AGE_INTRO: Final = b"age-encryption.org/v1\n"
FILE_CHUNK: Final = 1 << 20


class _UsageError(Exception):
    """The command cannot start: a missing file or an unusable key."""


def _keys_from_kit(text: str) -> list[str]:
    """The backup keys a kit lists in its comments, current one first."""
    found: list[str] = []
    for line in text.splitlines():
        for word in re.findall(r"[A-Z0-9-]{34}", line):
            if KEY_PATTERN.match(word) and word not in found:
                found.append(word)
    return found


def _load_keys(kit: Path | None, key: str | None) -> tuple[list[str], list[Identity]]:
    if key is not None:
        try:
            checked = check_key(key)
        except InvalidKey as err:
            raise _UsageError(str(err)) from None
        return [checked], [identity_for(checked)]
    if kit is None:
        raise _UsageError("give --kit FILE (the emergency kit) or --key KEY")
    try:
        text = kit.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "it is not a text file"
        raise _UsageError(f"cannot read the kit {kit}: {reason}") from None
    try:
        identities = identities_from_kit(text)
    except ValueError as err:
        raise _UsageError(f"the kit {kit} cannot be used: {err}") from None
    return _keys_from_kit(text), identities


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while block := await asyncio.to_thread(handle.read, FILE_CHUNK):
            yield block


async def _opens(path: Path, key: str) -> bool:
    """Does this key's age identity open the copy's header?"""
    with path.open("rb") as handle:
        head = handle.read(FILE_CHUNK)

    async def one() -> AsyncIterator[bytes]:
        yield head

    try:
        async for _ in decrypt_stream(one(), [identity_for(key)]):
            pass
    except NoMatchingIdentity:
        return False
    except AgeError:
        return True
    return True


async def _verify(path: Path, keys: list[str], identities: list[Identity]) -> tuple[Proof, bool]:
    with path.open("rb") as handle:
        enveloped = handle.read(len(AGE_INTRO)) == AGE_INTRO
    candidates: list[str | None] = [*keys] if keys else [None]
    if enveloped and len(keys) > 1:
        matching = [k for k in keys if await _opens(path, k)]
        candidates = [*matching] if matching else candidates[:1]
    proof: Proof | None = None
    for password in candidates:
        proof = await prove_copy(
            _file_chunks(path),
            identities=identities,
            enveloped=enveloped,
            expected_sha256=None,
            expected_size=None,
            password=password,
            drill=True,
        )
        if proof.report is None or WRONG_KEY not in proof.report.problems:
            break
    assert proof is not None
    return proof, enveloped


def _readable_date(text: str) -> str:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return text or "at an unknown date"
    if when.tzinfo is None:
        return f"{when:%Y-%m-%d %H:%M}"
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _print_report(out: TextIO, path: Path, proof: Proof, enveloped: bool) -> None:
    write = out.write
    write(f"Checking {path}\n")
    if enveloped:
        opened = "opened with the key" if proof.sha256 else "did not open completely"
        write(f"  sealed copy (age): {opened}\n")
    else:
        write("  plain copy (not sealed with age)\n")
    report = proof.report
    meta = report.metadata if report is not None else None
    if meta is not None:
        protection = "protected with an encryption key" if meta.protected else "not protected by a key"
        made = _readable_date(meta.date)
        write(
            f"  backup: {meta.name!r} (slug {meta.slug}), {meta.type or 'unknown type'}, made {made}, {protection}\n"
        )
        if meta.homeassistant is not None:
            write(f"  Home Assistant {meta.homeassistant}\n")
    if proof.size is not None:
        write(f"  size: {_human_size(proof.size)} ({proof.size:,} bytes), sha256 {proof.sha256}\n")
    if report is not None and report.parts:
        width = max(len(p.name) for p in report.parts)
        write("\n")
        write(f"  {'part':<{width}}  {'files':>9}  {'size':>10}  result\n")
        for part in report.parts:
            files = f"{part.members:,}" if part.ok or part.members else "-"
            size = _human_size(part.bytes) if part.ok or part.bytes else "-"
            result = "ok" if part.ok else (part.error or "failed")
            write(f"  {part.name:<{width}}  {files:>9}  {size:>10}  {result}\n")
    write("\n")
    if proof.ok:
        write("RESTORABLE: every part opened with the key and was read to its end.\n")
        return
    write("NOT RESTORABLE:\n")
    problems = (
        report.problems if report is not None and report.problems and proof.sha256 else [proof.error or ""]
    )
    for problem in problems:
        write(f"  - {problem}\n")
    write("Use another copy of this backup, or make a new backup.\n")


def run_verify_command(
    file: str, *, kit: Path | None, key: str | None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """`python -m backup_addon verify`: 0 restorable, 1 not restorable, 2 usage error."""
    out = out or sys.stdout
    err = err or sys.stderr
    path = Path(file)
    try:
        keys, identities = _load_keys(kit, key)
        if not path.is_file():
            raise _UsageError(f"cannot read {file}: no such file")
        proof, enveloped = asyncio.run(_verify(path, keys, identities))
    except _UsageError as error:
        err.write(f"error: {error}\n")
        return 2
    except OSError as error:
        err.write(f"error: cannot read {file}: {error.strerror}\n")
        return 2
    _print_report(out, path, proof, enveloped)
    return 0 if proof.ok else 1
