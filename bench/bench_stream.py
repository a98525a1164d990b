"""Benchmark: the add-on streams one backup archive into two folder locations, against ``cp``.

For each ``--size-mib`` it starts the simulated Supervisor in its own process with that
payload, has it write one uncompressed full backup (not timed), and then, ``--repeat`` times
in rounds (every mode once per round, so drift hits all modes alike), measures on the same
disk and from the same, page-cache-hot source file:

``addon-file``      the add-on reads the local archive (``backup_dir/<filename>``), the common case
``addon-download``  the add-on downloads it from the simulator over loopback HTTP
``cp x1``           ``cp SRC A``                      (one copy, no fsync)
``cp x2``           ``cp SRC A; cp SRC B``            (the same two copies, no fsync)
``cp x2 + sync``    ``cp SRC A; cp SRC B; sync A B``  (two copies made durable, like the add-on's fsync)
``python naive``    one synchronous Python loop: read 1 MiB, sha256, write to A and B, fsync both

Each add-on measurement runs in a separate child process (``_stream_once.py``) that times only
``BackupRunner._stream_copies`` (opening the source to both copies committed); its peak RSS
comes from ``os.wait4``. The copies are deleted and ``sync`` is run between measurements (not
timed), so no measurement pays for the previous one's writeback. ``--settle S`` also waits S seconds
before each measurement (see docs/performance.md, "Noise", for why that matters on a VM).

Ratios: ``time(cp x2) / time(add-on)`` (the aim: >= 0.5), ``time(cp x2 + sync) / time(add-on)``
and ``time(cp x1) / time(add-on)``.

Example: ``.venv/bin/python bench/bench_stream.py --size-mib 1024 --size-mib 4096 --repeat 3``
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIB = 1 << 20
ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).resolve().with_name("_stream_once.py")
TOKEN = "bench-supervisor-token"
AIM_RATIO = 0.5
AIM_RSS_MIB = 100
# Slowest rate any step may take before it is killed as stuck (MiB/s), plus a fixed allowance.
MIN_RATE_MIB_S = 20
BASE_TIMEOUT_S = 60

ADDON_MODES = {"file": "addon-file", "download": "addon-download"}
CP1, CP2, CP2_SYNC, NAIVE = "cp x1", "cp x2", "cp x2 + sync", "python naive"


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


@dataclass
class Measurement:
    seconds: float
    rss_kib: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SizeResult:
    size_mib: int
    archive_bytes: int
    sha256: str
    runs: dict[str, list[Measurement]] = field(default_factory=dict)

    def median(self, mode: str) -> float | None:
        runs = self.runs.get(mode)
        return statistics.median(m.seconds for m in runs) if runs else None

    def peak_rss_mib(self, mode: str) -> float | None:
        values = [m.rss_kib for m in self.runs.get(mode, []) if m.rss_kib is not None]
        return max(values) / 1024 if values else None

    def rss_before_mib(self, mode: str) -> float | None:
        values = [m.extra["rss_before_kib"] for m in self.runs.get(mode, []) if m.extra.get("rss_before_kib")]
        return max(values) / 1024 if values else None


# -- processes ---------------------------------------------------------------------------------


def run_measured(
    cmd: list[str], timeout: float, *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> tuple[float, int, str, tuple[float, float]]:
    """Run cmd to the end; return (wall seconds, peak RSS in KiB from wait4, stdout, (user, sys) CPU s).

    The RSS is this one child's (``os.wait4``), not the maximum over all children as
    ``RUSAGE_CHILDREN`` would give. ``env`` adds to (or replaces parts of) this process's environment.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    try:
        # Read the pipes in threads so a chatty child never blocks; wait4 reaps it.
        out: list[bytes] = []
        err: list[bytes] = []
        readers = [
            threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True),  # type: ignore[union-attr]
            threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True),  # type: ignore[union-attr]
        ]
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
    stdout = b"".join(out).decode(errors="replace")
    stderr = b"".join(err).decode(errors="replace")
    if proc.returncode != 0:
        why = f"killed after the {timeout:.0f} s timeout" if seconds >= timeout else f"exit {proc.returncode}"
        raise BenchError(f"{' '.join(cmd[:3])} ... failed ({why}):\n{stderr[-3000:]}")
    return seconds, usage.ru_maxrss, stdout, (usage.ru_utime, usage.ru_stime)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def simulator(data_dir: Path, payload_mib: int, timeout: float) -> Iterator[str]:
    """The simulated Supervisor in its own process; yields its base URL."""
    port = free_port()
    log = data_dir.with_name(data_dir.name + ".log")
    cmd = [
        sys.executable,
        "-m",
        "supervisor_sim",
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        "--token",
        TOKEN,
        "--payload-mib",
        str(payload_mib),
        "--stage-delay",
        "0",
        "--log-level",
        "WARNING",
    ]
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise BenchError(
                    f"the simulator did not say it was listening within {timeout:.0f} s"
                ) from None
            if line is None:
                raise BenchError(f"the simulator exited: {log.read_text(errors='replace')[-2000:]}")
            if "listening on" in line:
                break
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def api(url: str, method: str, path: str, body: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # loopback only
        answer = json.loads(response.read())
    if answer.get("result") != "ok":
        raise BenchError(f"{method} {path}: {answer}")
    return answer.get("data") or {}


# -- measurements ------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(MIB):
            digest.update(block)
    return digest.hexdigest()


def clear(*paths: Path) -> None:
    """Delete what a measurement made, then flush the disk (not timed)."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    os.sync()


def measure_cp(mode: str, src: Path, dest: Path, timeout: float) -> Measurement:
    a, b = dest / "a.tar", dest / "b.tar"
    dest.mkdir()
    cmds = [["cp", str(src), str(a)]]
    if mode != CP1:
        cmds.append(["cp", str(src), str(b)])
    if mode == CP2_SYNC:
        cmds.append(["sync", str(a), str(b)])
    try:
        total, user, system = 0.0, 0.0, 0.0
        for cmd in cmds:
            seconds, _rss, _, (cmd_user, cmd_sys) = run_measured(cmd, timeout)
            total += seconds
            user += cmd_user
            system += cmd_sys
        for made in (a, b) if mode != CP1 else (a,):
            if made.stat().st_size != src.stat().st_size:
                raise BenchError(f"{mode}: {made.name} has the wrong size")
        # No RSS: cp's wait4 figure is the forking parent's high-water mark, not cp's.
        return Measurement(total, None, {"cpu_user": user, "cpu_sys": system})
    finally:
        clear(dest)


def measure_driver(
    mode: str, ctx: dict[str, Any], dest: Path, timeout: float, profile: Path | None = None
) -> Measurement:
    roots = [dest / "loc1", dest / "loc2"]
    for root in roots:
        root.mkdir(parents=True)
    work = dest / "work"
    work.mkdir()
    cmd = [
        sys.executable,
        str(DRIVER),
        "--filename",
        ctx["filename"],
        "--backup-dir",
        str(ctx["backup_dir"]),
        "--work",
        str(work),
        "--dest",
        str(roots[0]),
        "--dest",
        str(roots[1]),
    ]
    if mode == NAIVE:
        cmd += ["--mode", "naive"]
    else:
        source = "file" if mode == ADDON_MODES["file"] else "download"
        cmd += [
            "--mode",
            "addon",
            "--source",
            source,
            "--url",
            ctx["url"],
            "--token",
            TOKEN,
            "--slug",
            ctx["slug"],
        ]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    try:
        _wall, rss, stdout, (user, system) = run_measured(cmd, timeout, cwd=ROOT)
        result = json.loads(stdout.strip().splitlines()[-1])
        # wait4's figure is max(the child's own peak, this process's high-water mark when it forked),
        # since Linux carries the old mm's peak over exec; the child's VmHWM is its own peak alone.
        # Both are kept; the larger one is reported, so the figure is never an underestimate.
        rss = max(rss, result.get("vmhwm_kib") or 0)
        if result["size"] != ctx["size"] or result["sha256"] != ctx["sha256"]:
            raise BenchError(f"{mode}: the copy's size or sha256 does not match the archive")
        for root in roots:
            made = [p for p in root.rglob("*") if p.is_file()]
            if len(made) != 1 or made[0].stat().st_size != ctx["size"] or made[0].name.startswith("."):
                raise BenchError(f"{mode}: {root.name} does not hold exactly one committed copy")
        # The child's own CPU figures cover the timed part only; wait4's cover its imports and setup too.
        return Measurement(
            result["seconds"], rss, {**result, "process_cpu_user": user, "process_cpu_sys": system}
        )
    finally:
        clear(dest)


# -- one size ----------------------------------------------------------------------------------


def run_size(size_mib: int, args: argparse.Namespace, base: Path) -> SizeResult:
    timeout = BASE_TIMEOUT_S + 2 * size_mib / MIN_RATE_MIB_S
    sim_dir = base / f"sim-{size_mib}"
    filename = f"bench_{size_mib}.tar"
    with simulator(sim_dir, size_mib, BASE_TIMEOUT_S) as url:
        print(f"[{size_mib} MiB] creating the archive (not timed) ...", file=sys.stderr, flush=True)
        created = api(
            url,
            "POST",
            "/backups/new/full",
            {"name": f"bench {size_mib} MiB", "compressed": False, "filename": filename},
            timeout,
        )
        slug = created["slug"]
        backup_dir = sim_dir / "backup"
        archive = backup_dir / filename
        os.sync()
        # Reading it once both checks it and makes the source hot in the page cache for every mode.
        sha256 = sha256_file(archive)
        result = SizeResult(size_mib, archive.stat().st_size, sha256)
        ctx = {
            "url": url,
            "slug": slug,
            "filename": filename,
            "backup_dir": backup_dir,
            "size": result.archive_bytes,
            "sha256": sha256,
        }
        modes = [ADDON_MODES[s] for s in (("file", "download") if args.source == "both" else (args.source,))]
        modes += [CP1, CP2, CP2_SYNC, NAIVE]
        scratch = base / "scratch"
        for round_no in range(args.repeat):
            # Rotate the order each round, so no mode always runs first or after the same one.
            shift = round_no % len(modes)
            for mode in modes[shift:] + modes[:shift]:
                if args.settle:
                    time.sleep(args.settle)
                if mode in (CP1, CP2, CP2_SYNC):
                    m = measure_cp(mode, archive, scratch, timeout)
                else:
                    m = measure_driver(mode, ctx, scratch, timeout)
                result.runs.setdefault(mode, []).append(m)
                rate = result.archive_bytes / MIB / m.seconds
                rss = f" peak RSS {m.rss_kib / 1024:6.1f} MiB" if m.rss_kib else ""
                print(
                    f"[{size_mib} MiB] round {round_no + 1}/{args.repeat} {mode:<15} {m.seconds:7.2f} s "
                    f"({rate:6.0f} MiB/s of archive){rss}",
                    file=sys.stderr,
                    flush=True,
                )
        if args.profile_dir is not None:
            for mode in modes:
                if mode.startswith("addon"):
                    out = args.profile_dir / f"profile-{size_mib}-{mode}.txt"
                    m = measure_driver(mode, ctx, scratch, timeout, profile=out.resolve())
                    print(
                        f"[{size_mib} MiB] {mode} under cProfile: {m.seconds:.2f} s -> {out}", file=sys.stderr
                    )
        api(url, "DELETE", f"/backups/{slug}", {}, 60)
    shutil.rmtree(sim_dir, ignore_errors=True)
    return result


# -- report ------------------------------------------------------------------------------------


def markdown(results: list[SizeResult], settle: float) -> str:
    lines = []
    for r in results:
        size = r.archive_bytes / MIB
        cp1, cp2, cp2s = r.median(CP1), r.median(CP2), r.median(CP2_SYNC)
        repeat = len(next(iter(r.runs.values())))
        lines += [
            f"#### {r.size_mib} MiB payload: archive {r.archive_bytes:,} bytes, {repeat} runs per mode"
            + (f", {settle:g} s settle" if settle else ""),
            "",
            "| mode | median s | min-max s | MiB/s (median) | cp x2 / mode | cp x2+sync / mode | cp x1 / mode "
            "| CPU user+sys s | RSS before MiB | peak RSS MiB |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for mode, runs in r.runs.items():
            med = statistics.median(m.seconds for m in runs)
            lo, hi = min(m.seconds for m in runs), max(m.seconds for m in runs)
            rss, before = r.peak_rss_mib(mode), r.rss_before_mib(mode)
            user = statistics.median(m.extra.get("cpu_user", 0.0) for m in runs)
            system = statistics.median(m.extra.get("cpu_sys", 0.0) for m in runs)

            def ratio(base: float | None, med: float = med) -> str:
                return f"{base / med:.2f}" if base else "-"

            def mib(value: float | None) -> str:
                return f"{value:.1f}" if value is not None else "-"

            lines.append(
                f"| {mode} | {med:.2f} | {lo:.2f}-{hi:.2f} | {size / med:.0f} | {ratio(cp2)} | {ratio(cp2s)} "
                f"| {ratio(cp1)} | {user:.2f}+{system:.2f} | {mib(before)} | {mib(rss)} |"
            )
        lines.append("")
        for mode in ADDON_MODES.values():
            addon = r.median(mode)
            if addon is None or cp2 is None:
                continue
            best = min(m.seconds for m in r.runs[mode])
            cp2_best = min(m.seconds for m in r.runs[CP2])
            peak = r.peak_rss_mib(mode) or 0.0
            lines.append(
                f"- {mode}: cp x2 / add-on = **{cp2 / addon:.2f}** on medians ({cp2_best / best:.2f} on minima; "
                f"aim >= {AIM_RATIO}: {'met' if cp2 / addon >= AIM_RATIO else 'MISSED'}); "
                f"cp x2 + sync / add-on = {(cp2s or 0) / addon:.2f}; peak RSS **{peak:.1f} MiB** "
                f"(aim < {AIM_RSS_MIB} MiB: {'met' if peak < AIM_RSS_MIB else 'MISSED'})"
            )
        lines.append("")
    return "\n".join(lines)


def to_json(results: list[SizeResult], args: argparse.Namespace) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "nproc": os.cpu_count(),
        "repeat": args.repeat,
        "settle_seconds": args.settle,
        "sizes": [
            {
                "size_mib": r.size_mib,
                "archive_bytes": r.archive_bytes,
                "sha256": r.sha256,
                "median_seconds": {mode: r.median(mode) for mode in r.runs},
                "peak_rss_mib": {mode: r.peak_rss_mib(mode) for mode in r.runs},
                "runs": {
                    mode: [{"seconds": m.seconds, "rss_kib": m.rss_kib, **m.extra} for m in runs]
                    for mode, runs in r.runs.items()
                },
            }
            for r in results
        ],
    }


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_stream.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size-mib",
        type=int,
        action="append",
        metavar="N",
        help="payload size in MiB; repeatable (default 1024)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="measurements per mode (default 3)")
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="parent of the temporary work folder: the disk under test (default: the system temp folder)",
    )
    parser.add_argument(
        "--source",
        choices=("file", "download", "both"),
        default="both",
        help="the add-on's source: the local archive, the download endpoint, or both (default)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=0.0,
        metavar="S",
        help="sleep S seconds before every measurement (default 0); on a VM that hands freed memory back "
        "to its host, a few seconds make every measurement start from the same (cold) memory",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON to OUT")
    parser.add_argument(
        "--profile-dir",
        type=Path,
        metavar="DIR",
        help="after the timed runs, run each add-on mode once more under cProfile, "
        "writing the top functions to DIR (not part of the results)",
    )
    args = parser.parse_args(argv)
    args.size_mib = args.size_mib or [1024]
    if any(s <= 0 for s in args.size_mib):
        parser.error("--size-mib must be > 0")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if args.settle < 0:
        parser.error("--settle must be >= 0")
    return args


def check_space(where: Path, sizes: list[int]) -> None:
    """Sizes run one after the other; the peak is the largest source plus two copies of it."""
    largest = max(sizes) * MIB
    need = 3 * largest + max(512 * MIB, largest // 10)
    free = shutil.disk_usage(where).free
    if free < need:
        raise BenchError(
            f"not enough free space in {where}: {free / 2**30:.1f} GiB free, about {need / 2**30:.1f} GiB "
            f"needed (the {max(sizes)} MiB source + 2 copies at once + margin). Free some space or use --dir."
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.profile_dir is not None:
        args.profile_dir.mkdir(parents=True, exist_ok=True)
    # SIGTERM ends the run through the same cleanup as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parent = args.dir if args.dir is not None else Path(tempfile.gettempdir())
    try:
        check_space(parent, args.size_mib)
        results = []
        with tempfile.TemporaryDirectory(prefix="bench-stream-", dir=parent) as temp:
            for size in args.size_mib:
                results.append(run_size(size, args, Path(temp)))
    except BenchError as err:
        print(f"bench_stream: {err}", file=sys.stderr)
        return 2
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, source hot in the page cache, "
        f"copies deleted and `sync` run between measurements.\n"
    )
    print(markdown(results, args.settle))
    if args.json is not None:
        args.json.write_text(json.dumps(to_json(results, args), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
