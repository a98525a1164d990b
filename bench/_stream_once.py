"""One measurement in its own process: the add-on streams one backup into two folder locations.

Started by ``bench_stream.py``; not meant to be run by hand (but it can be, see ``--help``).
The parent reads this process's peak RSS from ``wait4``; this process prints one JSON line
with its own timing and a few memory readings on stdout.

Modes:

``addon``
    The add-on's own code: a ``BackupRunner`` built like the service builds it (gateway,
    catalog, two ``FolderLocation``), then ``BackupRunner._stream_copies`` -- the part of
    ``BackupRunner.run`` after the Supervisor's job has finished: preflight, source (the local
    file under ``backup_dir`` or, when it is missing, the Supervisor's download endpoint),
    ``fan_out`` (sha256 + one bounded queue per location), ``FolderLocation.put`` (temp name,
    fsync, rename, directory fsync) and the catalog updates. Only that call is timed.

``naive``
    A reference floor, not the add-on: one synchronous loop that reads 1 MiB, hashes it and
    writes it to two files, then fsyncs both (no asyncio, no threads). It shows what the
    same work costs in plain Python on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import io
import json
import os
import pstats
import resource
import sys
import time
from pathlib import Path

# Runnable as a script: make the project importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backup_addon.catalog import Catalog
from backup_addon.fanout import CHUNK_SIZE
from backup_addon.locations import FolderLocation
from backup_addon.options import parse_options
from backup_addon.pipeline import BackupRunner
from backup_addon.supervisor import SupervisorGateway
from bench._proc import status_kib


def _cpu_since(before: resource.struct_rusage) -> dict[str, float]:
    """CPU seconds of this process (all its threads) since `before`: the timed part only."""
    now = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_user": now.ru_utime - before.ru_utime, "cpu_sys": now.ru_stime - before.ru_stime}


async def _addon(args: argparse.Namespace) -> dict[str, object]:
    work = Path(args.work)
    gateway = SupervisorGateway(args.url, args.token, request_timeout=60.0, stall_timeout=60.0)
    catalog = Catalog(work / "catalog.sqlite3")
    try:
        locations = [FolderLocation(f"copy{i + 1}", Path(d)) for i, d in enumerate(args.dest)]
        # The local file is used when backup_dir/<filename> exists; an empty directory makes
        # the runner fall back to the Supervisor's download endpoint, as on a mount-less setup.
        backup_dir = Path(args.backup_dir) if args.source == "file" else work / "no-backup-dir"
        runner = BackupRunner(
            gateway=gateway,
            catalog=catalog,
            locations=list(locations),
            options=parse_options({}),
            backup_dir=backup_dir,
        )
        # What BackupRunner._run does before streaming; not timed.
        info = await gateway.backup_info(args.slug)
        run_id = catalog.start_run("bench")
        size = BackupRunner._size(info)
        catalog.record_backup(
            slug=args.slug,
            run_id=run_id,
            name=info.name,
            type=str(info.type),
            created_at=info.date,
            size_bytes=size,
        )
        rss_before = status_kib("VmRSS")
        profiler = cProfile.Profile() if args.profile else None
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        copies, sha256, streamed = await runner._stream_copies(args.slug, info.date, size, args.filename, runner.locations)
        if profiler is not None:
            profiler.disable()
        seconds = time.perf_counter() - start
        cpu = _cpu_since(cpu_before)
        failed = [f"{c.location}: {c.error}" for c in copies if not c.ok]
        if failed:
            raise SystemExit("copies failed: " + "; ".join(failed))
        if profiler is not None:
            _dump_profile(profiler, args.profile)
        return {
            "seconds": seconds,
            "size": streamed,
            "sha256": sha256,
            "keys": [c.key for c in copies],
            "rss_before_kib": rss_before,
            **cpu,
        }
    finally:
        await gateway.close()
        catalog.close()


def _naive(args: argparse.Namespace) -> dict[str, object]:
    source = Path(args.backup_dir) / args.filename
    targets = [Path(d) / "naive.tar" for d in args.dest]
    rss_before = status_kib("VmRSS")
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    digest = hashlib.sha256()
    size = 0
    with source.open("rb") as src, targets[0].open("xb") as one, targets[1].open("xb") as two:
        while chunk := src.read(CHUNK_SIZE):
            digest.update(chunk)
            one.write(chunk)
            two.write(chunk)
            size += len(chunk)
        for handle in (one, two):
            handle.flush()
            os.fsync(handle.fileno())
    seconds = time.perf_counter() - start
    cpu = _cpu_since(cpu_before)
    return {
        "seconds": seconds,
        "size": size,
        "sha256": digest.hexdigest(),
        "keys": [t.name for t in targets],
        "rss_before_kib": rss_before,
        **cpu,
    }


def _dump_profile(profiler: cProfile.Profile, out: str) -> None:
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(25)
    Path(out).write_text(text.getvalue(), encoding="utf-8")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("addon", "naive"), default="addon")
    parser.add_argument("--source", choices=("file", "download"), default="file")
    parser.add_argument("--url", help="the simulator's base URL (addon mode)")
    parser.add_argument("--token", help="the simulator's token (addon mode)")
    parser.add_argument("--slug", help="the backup's slug (addon mode)")
    parser.add_argument("--filename", required=True, help="the archive's file name in --backup-dir")
    parser.add_argument("--backup-dir", required=True, help="the simulator's local backup folder")
    parser.add_argument("--dest", action="append", required=True, help="a folder location's root (twice)")
    parser.add_argument("--work", required=True, help="a scratch folder for the catalog")
    parser.add_argument(
        "--profile", metavar="OUT", help="run under cProfile and write the top functions to OUT"
    )
    args = parser.parse_args(argv)
    if len(args.dest) != 2:
        parser.error("give --dest exactly twice")
    if args.mode == "addon" and not (args.url and args.token and args.slug):
        parser.error("addon mode needs --url, --token and --slug")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = asyncio.run(_addon(args)) if args.mode == "addon" else _naive(args)
    result["vmhwm_kib"] = status_kib("VmHWM")
    result["ru_maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
