"""Supervisor backup archives: written part by part like the Supervisor, read for backup.json.

Everything here blocks; callers run it in a worker thread.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import time
from pathlib import Path, PurePath
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from securetar import SecureTarArchive, atomic_contents_add

# Version the Supervisor writes when Home Assistant Core is 2026.3.0 or newer.
SECURETAR_VERSION = 3
COPY_CHUNK = 1 << 20
PAYLOAD_NAME = "./sim-payload.bin"

# Supervisor's HOMEASSISTANT_BACKUP_EXCLUDE and _DATABASE (matched from the right).
HOMEASSISTANT_EXCLUDE = (
    "**/__pycache__/*",
    "**/.DS_Store",
    "*.db-shm",
    "*.log.*",
    "*.log",
    "backups/*.tar",
    "tmp_backups/*.tar",
    "tts/*",
    ".cache/*",
)
HOMEASSISTANT_EXCLUDE_DATABASE = ("home-assistant_v?.db", "home-assistant_v?.db-wal")


class ArchiveError(Exception):
    """An archive is unreadable or lacks its metadata."""


class ArchiveCancelled(Exception):
    """Writing stopped because the simulator is shutting down."""


class RandomPayload(io.RawIOBase):
    """``size`` incompressible bytes from an AES-CTR keystream (GB/s, constant memory)."""

    def __init__(self, size: int, seed: bytes = b"", cancel: threading.Event | None = None) -> None:
        """Prepare a keystream of ``size`` bytes; equal seeds give equal bytes."""
        super().__init__()
        self._left = size
        self._cancel = cancel
        key = hashlib.sha256(b"supervisor-sim payload " + seed).digest()
        self._encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
        self._zeros = bytes(COPY_CHUNK)

    def readable(self) -> bool:
        """It is."""
        return True

    def read(self, size: int = -1) -> bytes:
        """Next bytes of the keystream, at most one chunk at a time."""
        if size < 0 or size > COPY_CHUNK:
            size = COPY_CHUNK
        size = min(size, self._left)
        if size <= 0:
            return b""
        if self._cancel is not None and self._cancel.is_set():
            raise ArchiveCancelled("archive writing cancelled")
        self._left -= size
        return self._encryptor.update(self._zeros[:size])


def part_name(base: str, *, compressed: bool) -> str:
    """Inner tar name: ``share.tar.gz`` or ``share.tar``; folders use ``/`` -> ``_``."""
    return f"{base.replace('/', '_')}.tar{'.gz' if compressed else ''}"


def _homeassistant_filter(exclude_database: bool) -> Any:
    patterns = HOMEASSISTANT_EXCLUDE + (HOMEASSISTANT_EXCLUDE_DATABASE if exclude_database else ())

    def excluded(path: PurePath) -> bool:
        relative = PurePath(*path.parts[1:]) if len(path.parts) > 1 else None
        return relative is not None and any(relative.match(p) for p in patterns)

    return excluded


def _nothing_excluded(_path: PurePath) -> bool:
    return False


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_dot_dir(tar: tarfile.TarFile) -> None:
    info = tarfile.TarInfo(".")
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = int(time.time())
    tar.addfile(info)


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


class ArchiveWriter:
    """One outer tar being written; inner tars are SecureTar v3 when a password is set."""

    def __init__(
        self,
        path: Path,
        *,
        password: str | None,
        compressed: bool,
        cancel: threading.Event | None = None,
    ) -> None:
        """Create the file exclusively (an existing file is an error, as in the Supervisor)."""
        self.path = path
        self.compressed = compressed
        self._cancel = cancel
        # "x": an existing file is an error, never overwritten.
        self._file = path.open("xb")
        try:
            self._archive = SecureTarArchive(
                mode="w",
                fileobj=self._file,
                password=password or None,
                create_version=SECURETAR_VERSION,
                bufsize=COPY_CHUNK,
            )
            self._archive.open()
        except BaseException:
            self._file.close()
            path.unlink(missing_ok=True)
            raise

    def add_homeassistant(
        self, config_dir: Path, metadata: dict[str, Any], *, exclude_database: bool
    ) -> None:
        """``homeassistant.tar.gz``: ``./homeassistant.json`` then the config dir as ``data``."""
        with self._inner("homeassistant") as tar:
            _add_dot_dir(tar)
            _add_bytes(tar, "./homeassistant.json", _json_bytes(metadata))
            atomic_contents_add(tar, config_dir, _homeassistant_filter(exclude_database), "data")

    def add_addon(self, slug: str, addon_json: dict[str, Any], data_dir: Path) -> None:
        """``<slug>.tar.gz``: ``./addon.json`` then the add-on's /data as ``data``."""
        with self._inner(slug) as tar:
            _add_dot_dir(tar)
            _add_bytes(tar, "./addon.json", _json_bytes(addon_json))
            if data_dir.is_dir():
                atomic_contents_add(tar, data_dir, _nothing_excluded, "data")

    def add_folder(
        self, folder: str, source: Path, *, payload_bytes: int = 0, payload_seed: bytes = b""
    ) -> None:
        """``share.tar.gz`` etc.: the folder as ``.``, plus the benchmark payload if asked."""
        with self._inner(folder) as tar:
            if source.is_dir():
                atomic_contents_add(tar, source, _nothing_excluded, ".")
            else:
                _add_dot_dir(tar)
            if payload_bytes:
                info = tarfile.TarInfo(PAYLOAD_NAME)
                info.size = payload_bytes
                info.mtime = int(time.time())
                info.mode = 0o644
                tar.addfile(info, RandomPayload(payload_bytes, payload_seed, self._cancel))

    def add_supervisor_config(self, mounts: dict[str, Any], docker: dict[str, Any]) -> None:
        """``supervisor.tar.gz`` with ``mounts.json`` and ``docker.json``."""
        with self._inner("supervisor") as tar:
            _add_bytes(tar, "mounts.json", _json_bytes(mounts))
            _add_bytes(tar, "docker.json", _json_bytes(docker))

    def finish(self, backup_json: dict[str, Any]) -> int:
        """Append ``./backup.json`` last, close, and return the archive size."""
        _add_bytes(self._archive.tar, "./backup.json", _json_bytes(backup_json))
        self._archive.close()
        self._file.close()
        return self.path.stat().st_size

    def abort(self) -> None:
        """Close and remove the partial file."""
        try:
            self._archive.close()
        finally:
            self._file.close()
            self.path.unlink(missing_ok=True)

    def _inner(self, base: str) -> _InnerTar:
        return _InnerTar(self._archive, part_name(base, compressed=self.compressed), self.compressed)


class _InnerTar:
    """Context manager around securetar's inner tar that copies in 1 MiB blocks."""

    def __init__(self, archive: SecureTarArchive, name: str, gzip: bool) -> None:
        self._inner = archive.create_tar(name, gzip=gzip)

    def __enter__(self) -> tarfile.TarFile:
        tar = self._inner.__enter__()
        # tarfile copies member data in 16 KiB blocks by default; big payloads need bigger.
        tar.copybufsize = COPY_CHUNK  # type: ignore[attr-defined]
        return tar

    def __exit__(self, *exc: object) -> None:
        self._inner.__exit__(*exc)  # type: ignore[arg-type]


def read_backup_json(path: Path) -> dict[str, Any]:
    """The archive's own metadata (``./backup.json``, or ``./snapshot.json`` of old backups)."""
    try:
        with tarfile.open(path, "r:") as tar:
            names = tar.getnames()
            member = "./snapshot.json" if "./snapshot.json" in names else "./backup.json"
            fileobj = tar.extractfile(member)
            if fileobj is None:
                raise ArchiveError(f"{path.name}: {member} is not a file")
            data = json.loads(fileobj.read())
    except (tarfile.TarError, KeyError, OSError, json.JSONDecodeError) as err:
        raise ArchiveError(f"Can't read backup tarfile {path}: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("slug"), str):
        raise ArchiveError(f"{path.name}: backup.json has no slug")
    return data
