"""Benchmark: a restore drill of a sealed copy in a folder location, against ``cat FILE > /dev/null``.

For each ``--size-mib`` it builds (not timed) a real Supervisor backup with the simulator's
archive writer: Home Assistant, one add-on and two folders, ``share`` holding an incompressible
payload of that size, gzip-compressed and protected with a throw-away key (SecureTar v3, as the
Supervisor writes for Home Assistant 2026.3 and later). It seals it as the add-on does
(``encrypt_file`` to the key's age recipient) into a ``FolderLocation``. Then, ``--repeat`` times
in rounds (every mode once per round, so drift hits all modes alike), it measures:

``cat``     ``cat FILE > /dev/null`` of the sealed copy
``native``  ``age -d -i IDENTITY FILE | sha256sum``: a scrub with native tools, for reference
``scrub``   ``prove_copy(..., drill=False)``: open the envelope and hash the plaintext
``drill``   ``prove_copy(..., drill=True)``: the scrub, plus walking every part with the key

each twice: ``hot`` (the file in the page cache) and ``cold`` (its pages dropped first with
``posix_fadvise(DONTNEED)``, so it is read from the disk). Each add-on measurement runs in a child
process (this script with ``--child``) that times only ``prove_copy`` reading
``FolderLocation.open``, and reports its own peak RSS (``VmHWM``; ``wait4`` would also count the
parent's image from before ``exec``). The key reaches the child through the environment, never
the command line; the identity file for ``native`` is written to the work directory (mode 0600).

Ratios: ``time(cat) / time(mode)`` in the same cache state (the aim: drill >= 0.5).

Example: ``.venv/bin/python bench/bench_drill.py --size-mib 256 --size-mib 1024 --repeat 3``
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backup_addon.crypto.age import encrypt_file  # noqa: E402
from backup_addon.crypto.keys import generate_key, identity_for  # noqa: E402
from bench._proc import status_kib  # noqa: E402

MIB = 1 << 20
KEY_ENV = "BENCH_DRILL_KEY"
OBJECT = "backup_321/bench/2026-03-01_033000_bench0001.tar.age"
AIM_RATIO = 0.5
MODES = ("cat", "native", "scrub", "drill")
CACHES = ("hot", "cold")
# Slowest rate any step may take before it is killed as stuck (MiB/s), plus a fixed allowance.
MIN_RATE_MIB_S = 10
BASE_TIMEOUT_S = 120


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


@dataclass
class Measurement:
    seconds: float
    rss_kib: int | None = None
    cpu: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SizeResult:
    size_mib: int
    archive_bytes: int
    sealed_bytes: int
    build_seconds: float
    runs: dict[tuple[str, str], list[Measurement]] = field(default_factory=dict)

    def median(self, mode: str, cache: str) -> float:
        return statistics.median(m.seconds for m in self.runs[mode, cache])


# -- the measured child ------------------------------------------------------------------------


def child(mode: str, root: Path, sha256: str) -> None:
    """Run one scrub or drill and print its timing as JSON (no imports or start-up in the time)."""
    from backup_addon.locations import FolderLocation
    from backup_addon.verify import prove_copy

    key = os.environ[KEY_ENV]
    location = FolderLocation("bench", root)
    identities = [identity_for(key)]

    async def run() -> Any:
        return await prove_copy(
            location.open(OBJECT),
            identities=identities,
            enveloped=True,
            expected_sha256=sha256,
            expected_size=None,
            password=key,
            drill=mode == "drill",
        )

    rss_before = status_kib("VmRSS")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    proof = asyncio.run(run())
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    if not proof.ok:
        raise SystemExit(f"the {mode} failed: {proof.error}")
    parts = [] if proof.report is None else [(p.name, p.members, p.bytes) for p in proof.report.parts]
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu": after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime,
                "rss_before_kib": rss_before,
                "hwm_kib": status_kib("VmHWM"),
                "size": proof.size,
                "parts": parts,
            }
        )
    )


# -- building the backup -----------------------------------------------------------------------


def build(work: Path, size_mib: int, key: str) -> tuple[Path, str, int, float]:
    """The archive, sealed into the folder location; returns (sealed file, archive sha256, archive size, s)."""
    from supervisor_sim.archive import ArchiveWriter

    start = time.perf_counter()
    tree = work / "tree"
    (tree / "sub").mkdir(parents=True, exist_ok=True)
    (tree / "configuration.yaml").write_text("homeassistant:\n  name: Home\n" * 200)
    (tree / "sub" / "data.bin").write_bytes(os.urandom(200_000))
    archive = work / "backup.tar"
    writer = ArchiveWriter(archive, password=key, compressed=True)
    writer.add_homeassistant(tree, {"version": "2026.3.0"}, exclude_database=False)
    writer.add_addon("core_ssh", {"slug": "core_ssh"}, tree)
    writer.add_folder("share", tree, payload_bytes=size_mib * MIB, payload_seed=b"bench")
    writer.add_folder("addons/local", tree)
    writer.finish(
        {
            "slug": "bench0001",
            "version": 2,
            "name": "Benchmark",
            "date": "2026-03-01T03:30:00+00:00",
            "type": "partial",
            "supervisor_version": "2026.08.0",
            "extra": {},
            "folders": ["share", "addons/local"],
            "homeassistant": {"version": "2026.3.0", "exclude_database": False, "size": 0.0},
            "compressed": True,
            "addons": [{"slug": "core_ssh", "name": "SSH", "version": "1.0", "size": 0.0}],
            "repositories": [],
            "protected": True,
        }
    )
    digest = hashlib.sha256()
    with archive.open("rb") as handle:
        while block := handle.read(MIB):
            digest.update(block)
    sealed = work / "location" / OBJECT
    sealed.parent.mkdir(parents=True)
    with archive.open("rb") as source, sealed.open("wb") as target:
        encrypt_file(source, target, [identity_for(key).recipient()])
        target.flush()
        os.fsync(target.fileno())  # clean pages, so DONTNEED can drop them
    size = archive.stat().st_size
    archive.unlink()
    return sealed, digest.hexdigest(), size, time.perf_counter() - start


# -- measuring ---------------------------------------------------------------------------------


def drop_cache(path: Path) -> None:
    """Evict this one file from the page cache (its pages are clean)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def warm_cache(path: Path) -> None:
    with path.open("rb") as handle:
        while handle.read(8 * MIB):
            pass


def run_measured(cmd: list[str], timeout: float, env: dict[str, str]) -> tuple[float, int, str]:
    """Run cmd to the end; (wall seconds, this child's peak RSS in KiB from wait4, stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    out: list[bytes] = []
    err: list[bytes] = []
    readers = [
        threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True),  # type: ignore[union-attr]
        threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True),  # type: ignore[union-attr]
    ]
    try:
        for reader in readers:
            reader.start()
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        for reader in readers:
            reader.join(10)
    finally:
        killer.cancel()
        if proc.returncode is None:
            proc.kill()
            proc.wait(10)
    if proc.returncode != 0:
        why = f"killed after {timeout:.0f} s" if seconds >= timeout else f"exit {proc.returncode}"
        raise BenchError(
            f"{' '.join(cmd[:4])} ... failed ({why}):\n{b''.join(err).decode(errors='replace')[-3000:]}"
        )
    return seconds, usage.ru_maxrss, b"".join(out).decode()


def measure(mode: str, sealed: Path, root: Path, sha256: str, key: str, timeout: float) -> Measurement:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if mode == "cat":
        seconds, _, _ = run_measured(["sh", "-c", 'cat "$1" > /dev/null', "sh", str(sealed)], timeout, env)
        return Measurement(seconds)
    if mode == "native":
        identity = root.parent / "identity.txt"
        if not identity.exists():
            identity.touch(mode=0o600)
            identity.write_text(identity_for(key).to_string() + "\n")
        digest = root.parent / "native.sha256"
        script = 'age -d -i "$1" "$2" | sha256sum > "$3"'
        seconds, _, _ = run_measured(
            ["sh", "-c", script, "sh", str(identity), str(sealed), str(digest)], timeout, env
        )
        if digest.read_text().split()[0] != sha256:
            raise BenchError("age -d | sha256sum did not give the archive's sha256")
        return Measurement(seconds)
    env[KEY_ENV] = key
    script_path = str(Path(__file__).resolve())
    cmd = [sys.executable, script_path, "--child", mode, "--root", str(root), "--sha256", sha256]
    _wall, _, stdout = run_measured(cmd, timeout, env)
    data = json.loads(stdout.strip().splitlines()[-1])
    # The child's own VmHWM: wait4's figure would include the parent's image from before exec.
    return Measurement(data["seconds"], data["hwm_kib"], data["cpu"], data)


def bench_size(work: Path, size_mib: int, repeat: int, settle: float) -> SizeResult:
    key = generate_key()
    print(f"building a {size_mib} MiB backup (not timed) ...", flush=True)
    sealed, sha256, archive_bytes, build_seconds = build(work, size_mib, key)
    result = SizeResult(size_mib, archive_bytes, sealed.stat().st_size, build_seconds)
    timeout = BASE_TIMEOUT_S + size_mib / MIN_RATE_MIB_S
    for round_no in range(1, repeat + 1):
        for cache in CACHES:
            for mode in MODES:
                if cache == "cold":
                    drop_cache(sealed)
                else:
                    warm_cache(sealed)
                time.sleep(settle)
                load = os.getloadavg()[0]
                m = measure(mode, sealed, work / "location", sha256, key, timeout)
                m.extra["load"] = load
                result.runs.setdefault((mode, cache), []).append(m)
                rss = f", peak RSS {m.rss_kib / 1024:.1f} MiB" if m.rss_kib else ""
                print(
                    f"  round {round_no} {cache:4} {mode:5} {m.seconds:7.3f} s (load {load:.1f}{rss})",
                    flush=True,
                )
    return result


# -- report ------------------------------------------------------------------------------------


def report(results: list[SizeResult], repeat: int) -> str:
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.platform()}",
        "",
    ]
    for result in results:
        lines += [
            f"#### {result.size_mib} MiB payload: archive {result.archive_bytes:,} bytes, sealed copy "
            f"{result.sealed_bytes:,} bytes, {repeat} runs per mode (build {result.build_seconds:.0f} s, not timed)",
            "",
            "| cache | mode | median s | min-max s | MiB/s (median) | cat / mode | CPU s (median) | "
            "RSS before MiB | peak RSS MiB | load avg |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for cache in CACHES:
            cat = result.median("cat", cache)
            for mode in MODES:
                runs = result.runs[mode, cache]
                median = result.median(mode, cache)
                seconds = [m.seconds for m in runs]
                cpu = [m.cpu for m in runs if m.cpu is not None]
                before = [m.extra["rss_before_kib"] for m in runs if m.extra.get("rss_before_kib")]
                peaks = [m.rss_kib for m in runs if m.rss_kib]
                loads = [m.extra["load"] for m in runs]
                cells = [
                    cache,
                    mode,
                    f"{median:.3f}",
                    f"{min(seconds):.3f}-{max(seconds):.3f}",
                    f"{result.sealed_bytes / MIB / median:,.0f}",
                    f"{cat / median:.2f}",
                    f"{statistics.median(cpu):.2f}" if cpu else "-",
                    f"{max(before) / 1024:.1f}" if before else "-",
                    f"{max(peaks) / 1024:.1f}" if peaks else "-",
                    f"{min(loads):.1f}-{max(loads):.1f}",
                ]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for cache in CACHES:
            ratio = result.median("cat", cache) / result.median("drill", cache)
            verdict = "met" if ratio >= AIM_RATIO else "missed"
            lines.append(
                f"- {cache}: drill runs at {ratio:.2f} x the speed of `cat` (aim {AIM_RATIO}: {verdict})"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size-mib", type=int, action="append", help="payload size (repeatable; default 1024)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds per size (default 3)")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds to wait before each measurement")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one, removed after)")
    parser.add_argument("--child", choices=("scrub", "drill"), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sha256", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.root, args.sha256)
        return 0
    sizes = args.size_mib or [1024]
    base = args.dir or Path(tempfile.mkdtemp(prefix="bench-drill-"))
    results = []
    try:
        for size in sizes:
            work = base / f"{size}mib"
            if work.exists():
                shutil.rmtree(work)
            work.mkdir(parents=True)
            results.append(bench_size(work, size, args.repeat, args.settle))
            shutil.rmtree(work)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    print()
    print(report(results, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
