"""Benchmark: the age envelope, alone and in the backup pipeline, against cp, age and securetar v3.

For each ``--size-mib`` it writes one file of N MiB of random (incompressible) bytes, reads it
once (sha256, not timed; from then on the source is hot in the page cache for every mode), and
then, ``--repeat`` times in rounds (every mode once per round, in an order rotated each round),
measures on the same disk, from that same file:

``cp``                          ``cp SRC OUT``: the floor
``age -> file``                 ``age -e -r RECIPIENT -o OUT SRC`` (the ``age`` found on PATH)
``age -> null``                 the same with ``-o /dev/null``
``ours file -> file``           ``encrypt_file`` (sync) into OUT
``ours file -> null``           the same into /dev/null
``ours stream -> file``         ``encrypt_stream`` (async, what the pipeline uses) from the pipeline's
                                file reader, blocks written with ``asyncio.to_thread``, into OUT
``ours stream -> null``         the same into /dev/null
``securetar v3 (4 MiB buf)``    ``SecureTarArchive(OUT, "w", password=key, bufsize=4 MiB)`` +
                                ``create_tar(..., gzip=False)`` adding the file: Home Assistant's
                                encryption, with the buffer size Home Assistant passes (``BUF_SIZE``)
``securetar v3 (10 KiB buf)``   the same with securetar's default buffer size (10240)
``pipeline plain``              ``BackupRunner._stream_copies`` from the local file into two folder
                                locations, no encryption
``pipeline enveloped``          the same, both locations enveloped (the default): one encryption pass
``pipeline enveloped offload``  the same with ``encrypt_stream(..., offload=True)`` (an experiment:
                                the AEAD work in a worker thread)

Every Python mode runs in its own child process (``_envelope_once.py``) that times only the work
(no interpreter start, no imports) and reports its own ``VmHWM``; the parent reaps it with
``os.wait4`` and keeps the larger of the two as its peak RSS. ``cp`` and ``age`` run under
GNU ``time`` (when installed), whose ``%M`` is their own peak RSS. Outputs are deleted and
``sync`` runs between measurements (not timed). ``--securetar-repeat`` runs the (slow)
securetar modes in the first rounds only. In the first round, one output of ours and one
enveloped pipeline copy are decrypted with ``age -d`` and compared with the source's sha256.

Ratios (throughput, i.e. inverse time): ours / age, ours / securetar v3, pipeline enveloped /
plain (the envelope's cost is 1 minus it), and cp / mode. Aims (issue "Encrypted by default"):
the envelope costs < 20 % of the pipeline's throughput; ours >= age; ours several times
(>= 3x) securetar v3; peak RSS flat from the smallest to the largest size.

Example (about 7 minutes here; ``--from-json envelope.json`` prints the report again)::

    .venv/bin/python bench/bench_envelope.py --size-mib 1024 --size-mib 4096 --repeat 3 \\
        --securetar-repeat 2 --json envelope.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The helpers shared with the streaming benchmark (imported, never edited); no .pyc next to them.
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stream import BenchError, check_space, clear, run_measured, sha256_file  # noqa: E402

MIB = 1 << 20
ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).resolve().with_name("_envelope_once.py")
KEY_ENV = "BENCH_ENVELOPE_KEY"
# Slowest rate any step may take before it is killed as stuck (MiB/s), plus a fixed allowance.
MIN_RATE_MIB_S = 10
BASE_TIMEOUT_S = 60
# age v1: 64 KiB plaintext chunks, 16-byte tag each; header + 16-byte nonce before them.
AGE_CHUNK = 64 * 1024
AGE_HEADER_RANGE = (100, 400)

AIM_ENVELOPE_COST = 0.20
AIM_VS_AGE = 1.0
AIM_VS_SECURETAR = 3.0
AIM_RSS_GROWTH_MIB = 8.0
# Enveloped faster than plain by more than this: the comparison says nothing about the envelope.
INCONCLUSIVE_MARGIN = 0.05

CP = "cp"
AGE_FILE, AGE_NULL = "age -> file", "age -> null"
OURS_FILE, OURS_FILE_NULL = "ours file -> file", "ours file -> null"
OURS_STREAM, OURS_STREAM_NULL = "ours stream -> file", "ours stream -> null"
ST_HA, ST_DEFAULT = "securetar v3 (4 MiB buf)", "securetar v3 (10 KiB buf)"
PIPE_PLAIN, PIPE_ENV, PIPE_OFFLOAD = "pipeline plain", "pipeline enveloped", "pipeline enveloped offload"

MODES = [
    CP,
    AGE_FILE,
    AGE_NULL,
    OURS_FILE,
    OURS_FILE_NULL,
    OURS_STREAM,
    OURS_STREAM_NULL,
    ST_HA,
    ST_DEFAULT,
    PIPE_PLAIN,
    PIPE_ENV,
    PIPE_OFFLOAD,
]
SECURETAR_MODES = (ST_HA, ST_DEFAULT)
PIPELINE_MODES = (PIPE_PLAIN, PIPE_ENV, PIPE_OFFLOAD)
# Python children: (driver mode, extra arguments, output to /dev/null)
DRIVER_MODES: dict[str, tuple[str, list[str], bool]] = {
    OURS_FILE: ("encrypt-file", [], False),
    OURS_FILE_NULL: ("encrypt-file", [], True),
    OURS_STREAM: ("encrypt-stream", [], False),
    OURS_STREAM_NULL: ("encrypt-stream", [], True),
    ST_HA: ("securetar", ["--bufsize", str(4 * MIB)], False),
    ST_DEFAULT: ("securetar", ["--bufsize", "10240"], False),
    PIPE_PLAIN: ("pipeline", [], False),
    PIPE_ENV: ("pipeline", ["--envelope"], False),
    PIPE_OFFLOAD: ("pipeline", ["--envelope", "--offload"], False),
}


@dataclass
class Measurement:
    round_no: int
    seconds: float
    rss_kib: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SizeResult:
    size_mib: int
    size_bytes: int
    sha256: str
    runs: dict[str, list[Measurement]] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)

    def times(self, mode: str) -> list[float]:
        return [m.seconds for m in self.runs.get(mode, [])]

    def median(self, mode: str) -> float | None:
        times = self.times(mode)
        return statistics.median(times) if times else None

    def peak_rss_mib(self, mode: str) -> float | None:
        values = [m.rss_kib for m in self.runs.get(mode, []) if m.rss_kib is not None]
        return max(values) / 1024 if values else None

    def rss_before_mib(self, mode: str) -> float | None:
        values = [m.extra["rss_before_kib"] for m in self.runs.get(mode, []) if m.extra.get("rss_before_kib")]
        return max(values) / 1024 if values else None

    def added_rss_mib(self, mode: str) -> float | None:
        """The most any run's peak RSS rose above its RSS right before the work."""
        values = [
            m.rss_kib - m.extra["rss_before_kib"]
            for m in self.runs.get(mode, [])
            if m.rss_kib is not None and m.extra.get("rss_before_kib")
        ]
        return max(values) / 1024 if values else None

    def ratio(self, base: str, mode: str) -> dict[str, float] | None:
        """Throughput of `mode` over that of `base`, i.e. time(base) / time(mode).

        On medians, on minima, and round by round (the two measured in the same round).
        """
        a, b = self.median(base), self.median(mode)
        if a is None or b is None:
            return None
        by_round = {m.round_no: m.seconds for m in self.runs[mode]}
        paired = [m.seconds / by_round[m.round_no] for m in self.runs[base] if m.round_no in by_round]
        return {
            "median": a / b,
            "minima": min(self.times(base)) / min(self.times(mode)),
            "round_min": min(paired) if paired else float("nan"),
            "round_max": max(paired) if paired else float("nan"),
        }


# -- setup ---------------------------------------------------------------------------------------


def make_source(path: Path, size: int) -> str:
    """N bytes of random data (like a compressed archive); returns the sha256 (re-read, so it is hot)."""
    block = 4 * MIB
    with path.open("xb") as handle:
        left = size
        while left:
            chunk = os.urandom(min(block, left))
            handle.write(chunk)
            left -= len(chunk)
    os.sync()
    return sha256_file(path)


def age_size(plain: int, header: int) -> int:
    chunks = max(1, -(-plain // AGE_CHUNK))
    return header + 16 + plain + 16 * chunks


def check_age_size(what: str, actual: int, plain: int) -> None:
    low, high = (age_size(plain, h) for h in AGE_HEADER_RANGE)
    if not low <= actual <= high:
        raise BenchError(f"{what}: {actual} bytes is not the size of an age file of {plain} bytes")


def age_binary() -> str:
    found = shutil.which("age")
    if found is None:
        raise BenchError("the age command is not installed (Debian: apt-get install age)")
    return found


def age_version(age: str) -> str:
    try:
        done = subprocess.run([age, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise BenchError(f"{age} --version failed: {err}") from err
    return done.stdout.strip() or done.stderr.strip()


def decrypted_sha256(age: str, identity_file: Path, encrypted: Path, timeout: float) -> str:
    """sha256 of what ``age -d`` makes of `encrypted` (streamed, nothing stored)."""
    proc = subprocess.Popen(
        [age, "-d", "-i", str(identity_file), str(encrypted)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    digest = hashlib.sha256()
    try:
        assert proc.stdout is not None
        while block := proc.stdout.read(MIB):
            digest.update(block)
        code = proc.wait(timeout)
    finally:
        killer.cancel()
        if proc.returncode is None:
            proc.kill()
            proc.wait(10)
        reader.join(10)
    if code != 0:
        raise BenchError(f"age -d failed on {encrypted.name} (exit {code}): {b''.join(errors)[-2000:]!r}")
    return digest.hexdigest()


def code_state() -> tuple[str, dict[str, int]]:
    """The commit under test (and whether the add-on's code differs from it), and its files' mtimes."""
    mtimes = {str(p.relative_to(ROOT)): p.stat().st_mtime_ns for p in (ROOT / "backup_addon").rglob("*.py")}
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "backup_addon"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)", mtimes
    return head + (" with uncommitted changes in backup_addon/" if dirty else ""), mtimes


# -- measurements --------------------------------------------------------------------------------


def measure_external(cmd: list[str], timeout: float, scratch: Path) -> Measurement:
    """A non-Python command; its own peak RSS and CPU from GNU time when present."""
    stats = scratch / "time.txt"
    gnu_time = shutil.which("time")  # the program (GNU time), not the shell keyword
    wrapped = [gnu_time, "-f", "%M %U %S", "-o", str(stats), *cmd] if gnu_time else cmd
    seconds, _rss, _out, (user, system) = run_measured(wrapped, timeout)
    rss = None
    if wrapped is not cmd:
        # wait4's figure would be at least this process's own high-water mark (Linux carries it over exec).
        fields = stats.read_text().split()
        rss, user, system = int(fields[0]), float(fields[1]), float(fields[2])
        stats.unlink()
    return Measurement(0, seconds, rss, {"cpu_user": user, "cpu_sys": system})


def measure_driver(
    mode: str, src: Path, out: Path, dests: list[Path], work: Path, timeout: float
) -> Measurement:
    driver_mode, extra, to_null = DRIVER_MODES[mode]
    cmd = [sys.executable, str(DRIVER), driver_mode, "--src", str(src), *extra]
    if driver_mode == "pipeline":
        cmd += ["--work", str(work)]
        for dest in dests:
            cmd += ["--dest", str(dest)]
    else:
        cmd += ["--out", os.devnull if to_null else str(out)]
    _wall, rss, stdout, (user, system) = run_measured(cmd, timeout, cwd=ROOT)
    result = json.loads(stdout.strip().splitlines()[-1])
    # wait4's figure is max(the child's own peak, this process's high-water mark when it forked);
    # the child's VmHWM is its own peak alone. The larger is kept: never an underestimate.
    rss = max(rss, result.get("vmhwm_kib") or 0)
    result["process_cpu_user"], result["process_cpu_sys"] = user, system
    return Measurement(0, result["seconds"], rss, result)


def run_mode(mode: str, ctx: dict[str, Any], scratch: Path, verify: bool) -> Measurement:
    """One measurement of `mode`; its outputs are checked, then deleted and synced away."""
    src: Path = ctx["src"]
    timeout: float = ctx["timeout"]
    out = scratch / "out.bin"
    dests = [scratch / "loc1", scratch / "loc2"]
    work = scratch / "work"
    for folder in (*dests, work):
        folder.mkdir(parents=True)
    try:
        if mode == CP:
            m = measure_external(["cp", str(src), str(out)], timeout, scratch)
        elif mode in (AGE_FILE, AGE_NULL):
            target = str(out) if mode == AGE_FILE else os.devnull
            m = measure_external(
                [ctx["age"], "-e", "-r", ctx["recipient"], "-o", target, str(src)], timeout, scratch
            )
        else:
            m = measure_driver(mode, src, out, dests, work, timeout)
        check_outputs(mode, m, ctx, out, dests)
        if verify and mode in (OURS_FILE, PIPE_ENV):
            encrypted = out if mode == OURS_FILE else next(p for p in dests[0].rglob("*") if p.is_file())
            if decrypted_sha256(ctx["age"], ctx["identity_file"], encrypted, timeout) != ctx["sha256"]:
                raise BenchError(f"{mode}: age -d of {encrypted.name} does not give back the source")
            ctx["checks"].append(f"`age -d` of the `{mode}` output gives back the source (sha256)")
        return m
    finally:
        clear(*(p for p in scratch.iterdir()))


def check_outputs(mode: str, m: Measurement, ctx: dict[str, Any], out: Path, dests: list[Path]) -> None:
    size: int = ctx["size"]
    if mode == CP and out.stat().st_size != size:
        raise BenchError("cp: the copy has the wrong size")
    if mode in (AGE_FILE, OURS_FILE, OURS_STREAM):
        check_age_size(mode, out.stat().st_size, size)
    if mode in (OURS_FILE, OURS_FILE_NULL, OURS_STREAM, OURS_STREAM_NULL):
        check_age_size(mode, m.extra["bytes_out"], size)
    if mode in SECURETAR_MODES and m.extra["bytes_out"] < size:
        raise BenchError(f"{mode}: the archive is smaller than its content")
    if mode in PIPELINE_MODES:
        if m.extra["size"] != size or m.extra["sha256"] != ctx["sha256"]:
            raise BenchError(f"{mode}: the pipeline read a different archive (size or sha256)")
        for dest in dests:
            made = [p for p in dest.rglob("*") if p.is_file()]
            if len(made) != 1 or made[0].name.startswith("."):
                raise BenchError(f"{mode}: {dest.name} does not hold exactly one committed copy")
            if mode == PIPE_PLAIN:
                if made[0].stat().st_size != size or made[0].suffix != ".tar":
                    raise BenchError(f"{mode}: {dest.name} does not hold the plain archive")
            else:
                if made[0].suffix != ".age":
                    raise BenchError(f"{mode}: {dest.name} holds {made[0].name}, not an enveloped copy")
                check_age_size(mode, made[0].stat().st_size, size)


# -- one size ------------------------------------------------------------------------------------


def run_size(size_mib: int, args: argparse.Namespace, base: Path, keys: dict[str, Any]) -> SizeResult:
    size = size_mib * MIB
    src = base / f"bench_{size_mib}.tar"
    scratch = base / "scratch"
    scratch.mkdir()
    print(
        f"[{size_mib} MiB] writing {size_mib} MiB of random bytes (not timed) ...",
        file=sys.stderr,
        flush=True,
    )
    try:
        sha256 = make_source(src, size)
        result = SizeResult(size_mib, size, sha256)
        ctx = {
            **keys,
            "src": src,
            "size": size,
            "sha256": sha256,
            "timeout": BASE_TIMEOUT_S + size_mib / MIN_RATE_MIB_S,
            "checks": result.checks,
        }
        for round_no in range(args.repeat):
            modes = [m for m in MODES if round_no < args.securetar_repeat or m not in SECURETAR_MODES]
            shift = round_no % len(modes)
            for mode in modes[shift:] + modes[:shift]:
                if args.settle:
                    time.sleep(args.settle)
                load = os.getloadavg()[0]
                m = run_mode(mode, ctx, scratch, verify=round_no == 0)
                m.round_no = round_no
                m.extra["load1_before"] = load
                result.runs.setdefault(mode, []).append(m)
                rss = f" peak RSS {m.rss_kib / 1024:6.1f} MiB" if m.rss_kib else ""
                print(
                    f"[{size_mib} MiB] round {round_no + 1}/{args.repeat} {mode:<27} {m.seconds:7.2f} s "
                    f"({size_mib / m.seconds:6.0f} MiB/s){rss}",
                    file=sys.stderr,
                    flush=True,
                )
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        src.unlink(missing_ok=True)


# -- report --------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _verdict(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def verdict(ratio: dict[str, float], threshold: float) -> str:
    """On medians, and whether every round agrees (a verdict the noise could flip says so)."""
    median_ok = ratio["median"] >= threshold
    rounds_agree = (ratio["round_min"] >= threshold) == (ratio["round_max"] >= threshold) == median_ok
    if median_ok:
        return "met" if rounds_agree else "met on medians, not in every round"
    return "**MISSED**" if rounds_agree else "**MISSED** on medians, met in some rounds"


def aims(r: SizeResult) -> list[tuple[str, dict[str, float], str, str]]:
    """(what, throughput ratio, aim text, verdict text) for one size."""
    rows: list[tuple[str, dict[str, float], str, str]] = []

    def add(what: str, base: str, mode: str, threshold: float | None, aim: str = "") -> None:
        ratio = r.ratio(base, mode)
        if ratio is None:
            return
        aim = aim or (f">= {threshold:g}" if threshold else "-")
        rows.append((what, ratio, aim, "-" if threshold is None else verdict(ratio, threshold)))

    add("ours stream / age, to a file", AGE_FILE, OURS_STREAM, AIM_VS_AGE)
    add("ours file / age, to a file", AGE_FILE, OURS_FILE, AIM_VS_AGE)
    add("ours stream / age, to /dev/null", AGE_NULL, OURS_STREAM_NULL, AIM_VS_AGE)
    add("ours file / age, to /dev/null", AGE_NULL, OURS_FILE_NULL, AIM_VS_AGE)
    for st in SECURETAR_MODES:
        add(f"ours stream / {st}", st, OURS_STREAM, AIM_VS_SECURETAR)
    add(
        "pipeline enveloped / plain (the envelope's cost = 1 - this)",
        PIPE_PLAIN,
        PIPE_ENV,
        1 - AIM_ENVELOPE_COST,
        f">= {1 - AIM_ENVELOPE_COST:g} (cost < {AIM_ENVELOPE_COST:.0%})",
    )
    env = r.ratio(PIPE_PLAIN, PIPE_ENV)
    if env is not None and env["median"] > 1 + INCONCLUSIVE_MARGIN:
        # Encrypting cannot make the same writes faster: the plain run was held back by something else.
        what, ratio, aim, _ = rows[-1]
        rows[-1] = (what, ratio, aim, "inconclusive: the plain pipeline was slower than the enveloped one")
    add("pipeline enveloped offload / plain (experiment)", PIPE_PLAIN, PIPE_OFFLOAD, None)
    add("pipeline plain / cp", CP, PIPE_PLAIN, None)
    add("pipeline enveloped / cp", CP, PIPE_ENV, None)
    return rows


def markdown(results: list[SizeResult], args: argparse.Namespace) -> str:
    lines: list[str] = []
    for r in results:
        cp = r.median(CP)
        st_runs = len(r.runs.get(ST_HA, []))
        lines += [
            f"#### {r.size_mib} MiB ({r.size_bytes:,} bytes of random data): {args.repeat} runs per mode"
            + (f", securetar {st_runs}" if st_runs != args.repeat else "")
            + (f", {args.settle:g} s settle" if args.settle else ""),
            "",
            "| mode | median s | min-max s | MiB/s (median) | cp / mode | CPU user+sys s | RSS before MiB "
            "| peak RSS MiB |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for mode in MODES:
            runs = r.runs.get(mode)
            if not runs:
                continue
            med = statistics.median(m.seconds for m in runs)
            lo, hi = min(m.seconds for m in runs), max(m.seconds for m in runs)
            user = statistics.median(m.extra.get("cpu_user", 0.0) for m in runs)
            system = statistics.median(m.extra.get("cpu_sys", 0.0) for m in runs)
            lines.append(
                f"| {mode} | {med:.2f} | {lo:.2f}-{hi:.2f} | {r.size_mib / med:.0f} "
                f"| {_fmt(cp / med if cp else None, '.2f')} | {user:.2f}+{system:.2f} "
                f"| {_fmt(r.rss_before_mib(mode))} | {_fmt(r.peak_rss_mib(mode))} |"
            )
        lines += [
            "",
            "| throughput ratio | median | on minima | per round, min-max | aim | verdict |",
            "| --- | ---: | ---: | ---: | --- | --- |",
        ]
        for what, ratio, aim, text in aims(r):
            lines.append(
                f"| {what} | **{ratio['median']:.2f}** | {ratio['minima']:.2f} "
                f"| {ratio['round_min']:.2f}-{ratio['round_max']:.2f} | {aim} | {text} |"
            )
        env = r.ratio(PIPE_PLAIN, PIPE_ENV)
        if env is not None:
            env_verdict = next(
                text for what, _r, _a, text in aims(r) if what.startswith("pipeline enveloped / plain")
            )
            lines += [
                "",
                f"The envelope costs **{1 - env['median']:.0%}** of the pipeline's throughput "
                f"(medians; {1 - env['round_max']:.0%} to {1 - env['round_min']:.0%} round by round; "
                f"aim < {AIM_ENVELOPE_COST:.0%}: {env_verdict}).",
            ]
        loads = [m.extra["load1_before"] for runs in r.runs.values() for m in runs]
        lines += [
            "",
            f"- 1-minute load average before each measurement: {min(loads):.2f}-{max(loads):.2f} "
            f"(median {statistics.median(loads):.2f}) on {os.cpu_count()} CPUs; above 1, something else "
            "was running",
            *(f"- checked: {c}" for c in dict.fromkeys(r.checks)),
            "",
        ]
    if len(results) > 1:
        lines += rss_table(results)
    return "\n".join(lines)


def rss_table(results: list[SizeResult]) -> list[str]:
    """Peak RSS per size, and what the work adds to the child's RSS before it (imports excluded)."""
    first, last = results[0], results[-1]
    peaks = " | ".join(f"peak, {r.size_mib} MiB" for r in results)
    added = " | ".join(f"added, {r.size_mib} MiB" for r in results)
    lines = [
        f"#### Peak RSS (MiB) from {first.size_mib} to {last.size_mib} MiB",
        "",
        f"| mode | {peaks} | {added} | growth | flat? |",
        "| --- | "
        + " | ".join("---:" for _ in results)
        + " | "
        + " | ".join("---:" for _ in results)
        + " | ---: | --- |",
    ]
    for mode in MODES:
        peaks = [r.peak_rss_mib(mode) for r in results]
        added = [r.added_rss_mib(mode) for r in results]
        if any(v is None for v in peaks):
            continue
        # For the Python children, judge what the work adds: their imports can change between runs.
        judged = added if all(a is not None for a in added) else peaks
        growth = judged[-1] - judged[0]  # type: ignore[operator]
        lines.append(
            f"| {mode} | "
            + " | ".join(_fmt(v) for v in peaks)
            + " | "
            + " | ".join(_fmt(v) for v in added)
            + f" | {growth:+.1f} | {_verdict(growth <= AIM_RSS_GROWTH_MIB)} |"
        )
    lines += [
        "",
        "*Added*: the most a run's peak rose above the child's RSS right before the work (its imports "
        f"excluded). Flat: growth at most +{AIM_RSS_GROWTH_MIB:g} MiB for {last.size_mib - first.size_mib} MiB "
        "more data, of what the work adds for the Python modes, of the peak for cp and age.",
        "",
    ]
    return lines


def to_json(
    results: list[SizeResult], args: argparse.Namespace, age_text: str, commit: str, changed: list[str]
) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "nproc": os.cpu_count(),
        "age": age_text,
        "code": commit,
        "code_changed_during_run": changed,
        "repeat": args.repeat,
        "securetar_repeat": args.securetar_repeat,
        "settle_seconds": args.settle,
        "sizes": [
            {
                "size_mib": r.size_mib,
                "size_bytes": r.size_bytes,
                "sha256": r.sha256,
                "median_seconds": {mode: r.median(mode) for mode in r.runs},
                "peak_rss_mib": {mode: r.peak_rss_mib(mode) for mode in r.runs},
                "ratios": {
                    what: {**ratio, "aim": aim, "verdict": text} for what, ratio, aim, text in aims(r)
                },
                "checks": list(dict.fromkeys(r.checks)),
                "runs": {
                    mode: [
                        {"round": m.round_no, "seconds": m.seconds, "rss_kib": m.rss_kib, **m.extra}
                        for m in runs
                    ]
                    for mode, runs in r.runs.items()
                },
            }
            for r in results
        ],
    }


def from_json(data: dict[str, Any]) -> list[SizeResult]:
    """The measurements of a ``--json`` file, to report them again."""
    results = []
    for size in data["sizes"]:
        r = SizeResult(
            size["size_mib"], size["size_bytes"], size.get("sha256", ""), checks=list(size.get("checks", []))
        )
        for mode, runs in size["runs"].items():
            r.runs[mode] = [
                Measurement(
                    m["round"],
                    m["seconds"],
                    m.get("rss_kib"),
                    {k: v for k, v in m.items() if k not in ("round", "seconds", "rss_kib")},
                )
                for m in runs
            ]
        results.append(r)
    return results


def render(data: dict[str, Any]) -> str:
    changed = data.get("code_changed_during_run") or []
    head = (
        f"Code {data.get('code', 'unknown')}; Python {data['python']}, {data['nproc']} CPUs, {data['age']} "
        "(Go age), source hot in the page cache, outputs deleted and `sync` run between measurements."
    )
    if changed:
        head += (
            f" **The add-on's code changed during the run** ({', '.join(changed)}): the measurements may mix "
            "two versions of it."
        )
    settings = argparse.Namespace(repeat=data["repeat"], settle=data.get("settle_seconds") or 0.0)
    return head + "\n\n" + markdown(from_json(data), settings)


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_envelope.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size-mib",
        type=int,
        action="append",
        metavar="N",
        help="source size in MiB; repeatable (default 1024)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="measurements per mode (default 3)")
    parser.add_argument(
        "--securetar-repeat",
        type=int,
        metavar="N",
        help="run the securetar modes in the first N rounds only (default: every round); they are slow",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="parent of the temporary work folder: the disk under test (default: the system temp folder)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=0.0,
        metavar="S",
        help="sleep S seconds before every measurement (default 0)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON to OUT")
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="IN",
        help="measure nothing: print the report of an earlier --json file",
    )
    args = parser.parse_args(argv)
    args.size_mib = args.size_mib or [1024]
    if any(s <= 0 for s in args.size_mib):
        parser.error("--size-mib must be > 0")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if args.securetar_repeat is None:
        args.securetar_repeat = args.repeat
    if not 1 <= args.securetar_repeat <= args.repeat:
        parser.error("--securetar-repeat must be between 1 and --repeat")
    if args.settle < 0:
        parser.error("--settle must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json is not None:
        print(render(json.loads(args.from_json.read_text(encoding="utf-8"))))
        return 0
    # SIGTERM ends the run through the same cleanup as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parent = args.dir if args.dir is not None else Path(tempfile.gettempdir())
    # Imported here so that --help works without the project's dependencies.
    sys.path.insert(0, str(ROOT))
    from backup_addon.crypto.keys import generate_key, identity_for

    # A throw-away key: only in memory, in the children's environment and in the temp folder.
    key = generate_key()
    os.environ[KEY_ENV] = key
    identity = identity_for(key)
    commit, mtimes = code_state()
    try:
        age = age_binary()
        age_text = age_version(age)
        check_space(parent, args.size_mib)
        results = []
        with tempfile.TemporaryDirectory(prefix="bench-envelope-", dir=parent) as temp:
            base = Path(temp)
            identity_file = base / "identity.txt"
            fd = os.open(identity_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(identity.to_string() + "\n")
            keys = {"age": age, "recipient": str(identity.recipient()), "identity_file": identity_file}
            for size in args.size_mib:
                results.append(run_size(size, args, base, keys))
    except BenchError as err:
        print(f"bench_envelope: {err}", file=sys.stderr)
        return 2
    changed = sorted(f for f, t in code_state()[1].items() if mtimes.get(f) != t)
    if changed:
        print(
            f"bench_envelope: WARNING: the add-on's code changed during the run: {', '.join(changed)}",
            file=sys.stderr,
        )
    data = to_json(results, args, age_text, commit, changed)
    print(render(data))
    if args.json is not None:
        args.json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
