"""One upload through one location kind, in its own process, for ``bench_locations.py``.

Started by ``bench_locations.py``; not meant to be run by hand (but it can be, see ``--help``).
The location's settings (server address, user, password or key) come as JSON in the
environment variable ``BENCH_LOCATIONS_SETTINGS``, never on the command line:
``{"kind": "s3" | "sftp" | "smb" | "webdav" | "folder", "args": {constructor arguments}}``.
The location is built with its kind's own constructor and its normal (default) time-outs.

The source file is read as the pipeline reads a local archive (``pipeline._read_file``: one
``asyncio.to_thread(read, 1 MiB)`` per chunk) and streamed into ``await location.put(key, chunks)``:
with ``--feed fanout`` (the default) through the add-on's own ``fan_out`` (its bounded queue
between reader and put, as in a backup; ``digest=False``, the hash is not this benchmark's
subject), with ``--feed direct`` straight from the reader. Only that part is timed: no
interpreter start, no imports. The parent reads this process's peak
RSS from ``os.wait4``; this process prints one JSON line with its timing, its CPU time during the
put, its RSS before the put, at a quarter, half, three quarters and the end of the stream, and
its ``VmHWM`` (its own peak RSS).

``stream_s`` is the time until ``put`` had taken the last chunk; ``tail_s`` what ``put`` did after
that (last writes in flight, fsync/flush, close, rename or complete, the final check).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

# Runnable as a script: make the project importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._proc import status_kib

SETTINGS_ENV = "BENCH_LOCATIONS_SETTINGS"
CHUNK = 1 << 20


def build_location(settings: dict[str, Any]) -> Any:
    """The location the settings describe, made by its kind's constructor (default time-outs)."""
    kind, args = settings["kind"], dict(settings["args"])
    if kind == "s3":
        from backup_addon.locations.s3 import S3Location

        return S3Location("bench", **args)
    if kind == "sftp":
        from backup_addon.locations.sftp import SftpLocation

        return SftpLocation(name="bench", **args)
    if kind == "smb":
        from backup_addon.locations.smb import SmbLocation

        return SmbLocation(name="bench", **args)
    if kind == "webdav":
        from backup_addon.locations.webdav import WebdavLocation

        return WebdavLocation(name="bench", **args)
    if kind == "folder":
        from backup_addon.locations import FolderLocation

        return FolderLocation("bench", Path(args["root"]))
    raise SystemExit(f"unknown kind {kind!r}")


class Source:
    """The file in 1 MiB chunks, read as ``pipeline._read_file`` reads it; notes when and how much."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self.sent = 0
        self.ended_at: float | None = None
        self.rss_kib: dict[str, int | None] = {}
        self._marks = [(size * q // 4, f"{25 * q}%") for q in (1, 2, 3)]

    async def chunks(self) -> AsyncIterator[bytes]:
        with self.path.open("rb") as handle:
            while chunk := await asyncio.to_thread(handle.read, CHUNK):
                self.sent += len(chunk)
                while self._marks and self.sent >= self._marks[0][0]:
                    self.rss_kib[self._marks.pop(0)[1]] = status_kib("VmRSS")
                yield chunk
        self.ended_at = time.perf_counter()
        self.rss_kib["100%"] = status_kib("VmRSS")


async def _sftp_cipher(settings: dict[str, Any]) -> str | None:
    """The cipher asyncssh negotiates with the server, on a connection of the location's own making."""
    location = build_location(settings)
    conn = await location._connect()
    try:
        return str(conn.get_extra_info("send_cipher"))
    finally:
        conn.close()
        await conn.wait_closed()


async def _run(args: argparse.Namespace, settings: dict[str, Any]) -> dict[str, Any]:
    source_path = Path(args.src)
    size = source_path.stat().st_size
    location = build_location(settings)
    source = Source(source_path, size)
    encrypted: bool | None = None
    rss_before = status_kib("VmRSS")
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    if args.feed == "fanout":
        from backup_addon.fanout import fan_out

        async def writer(chunks: AsyncIterator[bytes]) -> Any:
            return await location.put(args.key, chunks)

        outcome = await fan_out(source.chunks(), {"bench": writer}, digest=False)
        sink = outcome.sinks["bench"]
        if sink.error is not None:
            raise sink.error
        stored = sink.value
    else:
        stored = await location.put(args.key, source.chunks())
    end = time.perf_counter()
    after = resource.getrusage(resource.RUSAGE_SELF)
    if args.report_session and hasattr(location, "encryption_in_use"):
        encrypted = location.encryption_in_use()  # smb: did the session encrypt?
    close = getattr(location, "close", None)
    if close is not None:  # smb keeps its connection; let it go outside the timed part
        await close()
    if stored.size != size or source.sent != size:
        raise SystemExit(f"stored {stored.size} bytes and sent {source.sent}, expected {size}")
    result: dict[str, Any] = {
        "seconds": end - start,
        "stream_s": (source.ended_at or end) - start,
        "tail_s": end - (source.ended_at or end),
        "cpu_user": after.ru_utime - cpu.ru_utime,
        "cpu_sys": after.ru_stime - cpu.ru_stime,
        "rss_before_kib": rss_before,
        "rss_kib": source.rss_kib,
        "hwm_kib": status_kib("VmHWM"),
        "bytes": size,
    }
    if args.report_session and settings["kind"] == "sftp":
        result["session"] = f"cipher {await _sftp_cipher(settings)}"
    if args.report_session and settings["kind"] == "smb":
        result["session"] = "SMB3 encryption " + ("on" if encrypted else "off")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="One location put of a file, timed, in its own process (driver of bench_locations.py). "
        f"Settings come as JSON in ${SETTINGS_ENV}."
    )
    parser.add_argument("--src", required=True, help="the file to upload")
    parser.add_argument("--key", required=True, help="the object key to store it under")
    parser.add_argument(
        "--feed",
        choices=["fanout", "direct"],
        default="fanout",
        help="fanout (default): put takes the chunks from fan_out's bounded queue, as in a backup "
        "(the file is read ahead by up to 4 chunks; no hashing); direct: put reads the file itself",
    )
    parser.add_argument(
        "--report-session",
        action="store_true",
        help="also report (untimed) the sftp cipher or whether the smb session encrypts",
    )
    args = parser.parse_args(argv)
    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        parser.error(f"${SETTINGS_ENV} is not set")
    settings = json.loads(raw)
    result = asyncio.run(_run(args, settings))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
