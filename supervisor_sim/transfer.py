"""Backup download and upload, including the download fault knobs."""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path

from aiohttp import BodyPartReader, web

from .backups import BackupManager, SimBackup
from .config import LOCAL_LOCATION, SimConfig
from .envelope import UNKNOWN_ERROR, ApiError, api_ok, plain_error
from .faults import Faults
from .security import wait_until_released
from .validation import RE_BACKUP_FILENAME

CONTENT_TYPE_TAR = "application/tar"
RE_SLUGIFY_NAME = re.compile(r"[^A-Za-z0-9]+")
CHUNK = 256 * 1024
UPLOAD_CHUNK = 1 << 20


def download_filename(backup: SimBackup, path: Path) -> str:
    """Offered file name: the backup name slugified when the file is ``<slug>.tar``."""
    if path.name == f"{backup.slug}.tar":
        return f"{RE_SLUGIFY_NAME.sub('_', backup.name)}.tar"
    return path.name


async def download(
    request: web.Request,
    manager: BackupManager,
    faults: Faults,
    stopping: asyncio.Event,
) -> web.StreamResponse:
    """``GET /backups/<slug>/download[?location=]``: the archive as a streamed file."""
    backup = manager.get(request.match_info["slug"])
    if "location" in request.query:
        wanted = request.query["location"]
        location = None if wanted in ("", LOCAL_LOCATION) else wanted
    else:
        wanted, location = str(backup.location), backup.location
    if location not in backup.files:
        raise ApiError(f"Backup {backup.slug} is not in location {wanted}")
    path = backup.files[location]
    if not await asyncio.to_thread(path.is_file):
        # The Supervisor answers a bare 404 and rescans in the background.
        await asyncio.to_thread(manager.reload)
        return plain_error(404)
    headers = {"Content-Disposition": f"attachment; filename={download_filename(backup, path)}"}
    if faults.drop_download_after is None and faults.stall_download_after is None:
        response = web.FileResponse(path, headers=headers)
        response.content_type = CONTENT_TYPE_TAR
        return response
    return await _faulty_download(request, path, headers, faults, stopping)


async def _faulty_download(
    request: web.Request,
    path: Path,
    headers: dict[str, str],
    faults: Faults,
    stopping: asyncio.Event,
) -> web.StreamResponse:
    drop, stall = faults.drop_download_after, faults.stall_download_after
    limits = [n for n in (drop, stall) if n is not None]
    limit = min(limits)
    dropping = drop is not None and drop == limit
    response = web.StreamResponse(headers=headers)
    response.content_type = CONTENT_TYPE_TAR
    response.content_length = (await asyncio.to_thread(path.stat)).st_size
    await response.prepare(request)
    sent = 0
    with path.open("rb") as source:
        while sent < limit:
            chunk = await asyncio.to_thread(source.read, min(CHUNK, limit - sent))
            if not chunk:
                break
            await response.write(chunk)
            sent += len(chunk)
    if not dropping:
        await wait_until_released(request, stopping)
    # Closing mid-body is what a client sees when the connection is cut.
    if request.transport is not None:
        request.transport.close()
    return response


async def upload(request: web.Request, manager: BackupManager, config: SimConfig) -> web.Response:
    """``POST /backups/new/upload``: stream the first multipart part to disk, import it."""
    locations = [manager.resolve_location(name) for name in request.query.getall("location", [])]
    filename = request.query.get("filename")
    if filename is not None and not RE_BACKUP_FILENAME.match(filename):
        raise ApiError(
            f"does not match regular expression {RE_BACKUP_FILENAME.pattern} for dictionary value "
            f"@ data['filename']. Got {filename!r}"
        )
    if locations and locations[0] is not None:
        manager.require_mount_up(locations[0])
    temp_root = manager.location_dir(locations[0]) if locations and locations[0] else config.tmp_dir
    temp_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=temp_root) as temp_dir:
        tar_file = Path(temp_dir, "backup.tar")
        if not await _receive_first_part(request, tar_file):
            raise ApiError(UNKNOWN_ERROR)
        backup = await manager.import_backup(tar_file, filename, locations)
    if backup is None:
        raise ApiError(UNKNOWN_ERROR)
    return api_ok({"slug": backup.slug})


async def _receive_first_part(request: web.Request, target: Path) -> bool:
    try:
        reader = await request.multipart()
        part = await reader.next()
    except (ValueError, AssertionError):
        return False
    if not isinstance(part, BodyPartReader):
        return False
    with target.open("wb") as sink:
        while chunk := await part.read_chunk(UPLOAD_CHUNK):
            await asyncio.to_thread(sink.write, chunk)
    return True
