"""One encryption measurement in its own process, for ``bench_envelope.py``.

Started by ``bench_envelope.py``; not meant to be run by hand (but it can be, see ``--help``).
The parent reads this process's peak RSS from ``wait4``; this process prints one JSON line with
its own timing (the measured work only: no interpreter start, no imports), its CPU time during
that work, and its ``VmHWM`` (its own peak RSS) on stdout.

The backup key comes from the environment variable ``BENCH_ENVELOPE_KEY`` (a throw-away key made
by the parent with ``generate_key()``), never from the command line. The age recipient is the
one the add-on derives from it (``identity_for(key).recipient()``).

Modes:

``encrypt-file``
    ``backup_addon.crypto.age.encrypt_file(src, dst, [recipient])``: synchronous, 1 MiB reads.
``encrypt-stream``
    ``encrypt_stream`` (async) fed by the pipeline's own file reader (``pipeline._read_file``,
    1 MiB chunks read in a worker thread), each block written with ``asyncio.to_thread`` as
    ``FolderLocation.put`` writes. ``--offload`` passes ``offload=True``.
``securetar``
    What Home Assistant does for an encrypted backup, with the source file as the only content:
    ``SecureTarArchive(out, "w", password=key, bufsize=...)`` (securetar's default version, v3)
    and ``create_tar("./bench.tar", gzip=False)`` adding the file. No gzip: this measures the
    encryption (and securetar's tar layers), not compression.
``pipeline``
    ``BackupRunner._stream_copies`` into two ``FolderLocation`` s, from the local file source
    (``backup_dir/<filename>``), built as the service builds it: ``--envelope`` gives it the
    ``Encryption`` that ``Addon._encryption`` makes (both locations enveloped, the default),
    without it the runner has no encryption (both plain). The gateway is never contacted.
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
from datetime import UTC, datetime
from pathlib import Path

# Runnable as a script: make the project importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backup_addon.catalog import Catalog
from backup_addon.crypto.age import Recipient, encrypt_file, encrypt_stream
from backup_addon.crypto.keys import identity_for, key_id
from backup_addon.fanout import CHUNK_SIZE
from backup_addon.locations import FolderLocation
from backup_addon.options import parse_options
from backup_addon.pipeline import BackupRunner, Encryption, _read_file
from backup_addon.supervisor import SupervisorGateway
from bench._proc import status_kib

KEY_ENV = "BENCH_ENVELOPE_KEY"
SLUG = "bench0001"


class _Timer:
    """Wall and CPU time (all threads of this process) of the measured part only."""

    def __enter__(self) -> _Timer:
        self.rss_before = status_kib("VmRSS")
        self._cpu = resource.getrusage(resource.RUSAGE_SELF)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
        now = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu_user = now.ru_utime - self._cpu.ru_utime
        self.cpu_sys = now.ru_stime - self._cpu.ru_stime

    def result(self, **extra: object) -> dict[str, object]:
        return {
            "seconds": self.seconds,
            "cpu_user": self.cpu_user,
            "cpu_sys": self.cpu_sys,
            "rss_before_kib": self.rss_before,
            **extra,
        }


def _key() -> str:
    key = os.environ.get(KEY_ENV)
    if not key:
        raise SystemExit(f"{KEY_ENV} is not set")
    return key


def _recipients(key: str) -> list[Recipient]:
    return [identity_for(key).recipient()]


def _encrypt_file(args: argparse.Namespace) -> dict[str, object]:
    recipients = _recipients(_key())
    with _Timer() as timer, Path(args.src).open("rb") as src, Path(args.out).open("wb") as dst:
        written = encrypt_file(src, dst, recipients)
    return timer.result(bytes_out=written)


async def _encrypt_stream(args: argparse.Namespace) -> dict[str, object]:
    recipients = _recipients(_key())
    written = 0
    with _Timer() as timer, Path(args.out).open("wb") as dst:
        source = _read_file(Path(args.src), CHUNK_SIZE)
        async for block in encrypt_stream(source, recipients, offload=args.offload):
            await asyncio.to_thread(dst.write, block)
            written += len(block)
    return timer.result(bytes_out=written)


def _securetar(args: argparse.Namespace) -> dict[str, object]:
    # Imported here: the other modes do not pay for it (nacl), so their RSS is not inflated.
    from securetar import SecureTarArchive

    key = _key()
    out = Path(args.out)
    with (
        _Timer() as timer,
        SecureTarArchive(out, "w", password=key, bufsize=args.bufsize) as archive,
        archive.create_tar("./bench.tar", gzip=False) as inner,
    ):
        inner.add(args.src, arcname="bench.tar", recursive=False)
    return timer.result(bytes_out=out.stat().st_size)


async def _pipeline(args: argparse.Namespace) -> dict[str, object]:
    src = Path(args.src)
    work = Path(args.work)
    # Never contacted: the archive is found under backup_dir, as in the common case.
    gateway = SupervisorGateway("http://127.0.0.1:9", "unused")
    catalog = Catalog(work / "catalog.sqlite3")
    try:
        encryption = None
        if args.envelope:
            key = _key()
            recipients = _recipients(key)

            # As Addon._encryption (backup_addon/service.py) builds it.
            def envelope(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
                return encrypt_stream(chunks, recipients, offload=args.offload)

            encryption = Encryption(password=key, key_id=key_id(key), envelope=envelope)
        runner = BackupRunner(
            gateway=gateway,
            catalog=catalog,
            locations=[FolderLocation(f"copy{i + 1}", Path(d)) for i, d in enumerate(args.dest)],
            options=parse_options({}),  # no location options: every location takes the default envelope
            backup_dir=src.parent,
            encryption=encryption,
        )
        size = src.stat().st_size
        created = datetime.now(UTC)
        run_id = catalog.start_run("bench")
        catalog.record_backup(
            slug=SLUG, run_id=run_id, name="bench", type="full", created_at=created, size_bytes=size
        )
        with _Timer() as timer:
            copies, sha256, streamed = await runner._stream_copies(SLUG, created, size, src.name, runner.locations)
        failed = [f"{c.location}: {c.error}" for c in copies if not c.ok]
        if failed:
            raise SystemExit("copies failed: " + "; ".join(failed))
        return timer.result(
            size=streamed, sha256=sha256, keys=[c.key for c in copies], sizes=[c.size for c in copies]
        )
    finally:
        await gateway.close()
        catalog.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=("encrypt-file", "encrypt-stream", "securetar", "pipeline"))
    parser.add_argument("--src", required=True, help="the source file (for pipeline: backup_dir/<filename>)")
    parser.add_argument("--out", help="the output file, or /dev/null (encrypt-*, securetar)")
    parser.add_argument(
        "--dest", action="append", default=[], help="a folder location's root (pipeline, twice)"
    )
    parser.add_argument("--work", help="a scratch folder for the catalog (pipeline)")
    parser.add_argument("--envelope", action="store_true", help="pipeline: envelope both locations")
    parser.add_argument("--offload", action="store_true", help="encrypt_stream(..., offload=True)")
    parser.add_argument("--bufsize", type=int, default=4 << 20, help="securetar's bufsize (default 4 MiB)")
    args = parser.parse_args(argv)
    if args.mode == "pipeline":
        if len(args.dest) != 2 or not args.work:
            parser.error("pipeline needs --dest twice and --work")
    elif not args.out:
        parser.error(f"{args.mode} needs --out")
    if args.mode == "securetar" and args.out == os.devnull:
        parser.error("securetar seeks back into its output: give a file")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.mode == "encrypt-file":
        result = _encrypt_file(args)
    elif args.mode == "encrypt-stream":
        result = asyncio.run(_encrypt_stream(args))
    elif args.mode == "securetar":
        result = _securetar(args)
    else:
        result = asyncio.run(_pipeline(args))
    result["vmhwm_kib"] = status_kib("VmHWM")
    result["ru_maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
