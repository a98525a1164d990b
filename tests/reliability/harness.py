"""The real service and the simulated Supervisor in processes of their own, and what "nothing lost" means.

`Simulator` runs ``python -m supervisor_sim``; `Service` runs the add-on as the Supervisor does
(``python -m backup_addon run``) or through `launcher` (same service, plus loopback access to the
panel API and kill points). `nothing_lost` checks every invariant a crash must not break.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backup_addon.catalog import Catalog
from backup_addon.crypto.age import AgeError, decrypt_file
from backup_addon.crypto.keys import KEYS_FILE, KeyStore
from supervisor_sim.archive import ArchiveError, read_backup_json

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "reliability-supervisor-token"
CATALOG = "catalog.sqlite3"
PARTIAL = ".partial-"
SIDECAR_SUFFIX = ".meta.age"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for[T](predicate: Callable[[], T], timeout: float, what: str, every: float = 0.02) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def _request(
    url: str, method: str = "GET", body: Any = None, token: str | None = None, timeout: float = 10, *, raw: bool = False
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    if method == "POST" and data is None:
        data = b"{}"
    # The panel marks its own state-changing requests with this header (forgery protection).
    headers = {"Content-Type": "application/json", "X-Requested-With": "backup_321"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read()
    if raw:
        return text.decode("utf-8", "replace")
    return json.loads(text) if text else None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class _Hashing:
    def __init__(self) -> None:
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return len(data)


def plaintext_sha256(path: Path, data_dir: Path) -> str:
    """The sha256 of a copy's archive: of the file, or of what its age envelope holds."""
    if not path.name.endswith(".age"):
        return sha256_file(path)
    sink = _Hashing()
    with path.open("rb") as source:
        decrypt_file(source, sink, KeyStore.open(data_dir).identities())  # type: ignore[arg-type]
    return sink.digest.hexdigest()


# --- the simulated Supervisor -------------------------------------------------------------


class Simulator:
    """``python -m supervisor_sim`` on a free port, its log in a file."""

    def __init__(self, root: Path, *, payload_mib: int = 0, stage_delay: float = 0.01) -> None:
        self.root = root
        self.payload_mib = payload_mib
        self.stage_delay = stage_delay
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root.with_name(root.name + ".log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def backup_dir(self) -> Path:
        return self.root / "backup"

    def start(self) -> Simulator:
        self.port = free_port()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "supervisor_sim", "--port", str(self.port), "--dir", str(self.root),
                 "--token", TOKEN, "--payload-mib", str(self.payload_mib), "--stage-delay", str(self.stage_delay)],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        try:
            wait_for(lambda: "listening" in self.log.read_text(errors="replace") or self.process.poll() is not None,
                     20, "the simulator to listen")
        finally:
            if self.process.poll() is not None:
                raise RuntimeError(f"the simulator did not start:\n{self.log.read_text(errors='replace')}")
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_faults(self, faults: dict[str, Any]) -> None:
        _request(f"{self.url}/_sim/faults", "POST", faults)

    def reset_faults(self) -> None:
        _request(f"{self.url}/_sim/faults", "DELETE")
        self.set_faults({"stage_delay": self.stage_delay})

    def backups(self) -> list[dict[str, Any]]:
        return list(_request(f"{self.url}/backups", token=TOKEN)["data"]["backups"])

    def slugs(self) -> set[str]:
        return {b["slug"] for b in self.backups()}

    def calls(self) -> list[dict[str, Any]]:
        return list(_request(f"{self.url}/_sim/calls"))

    def state(self) -> str:
        """The simulated system's state: "running", or "freeze" while a restore holds it."""
        return str(_request(f"{self.url}/_sim/state")["state"])

    def restores(self) -> list[dict[str, Any]]:
        """Every restore job the simulator ran, oldest first, with the sha256 of the archive it read."""
        return list(_request(f"{self.url}/_sim/restores"))

    def others_backup(self, kind: str = "automatic") -> str:
        """Have Home Assistant start a backup of its own; the Supervisor job's id."""
        return str(_request(f"{self.url}/_sim/others/backup", "POST", {"kind": kind})["job_id"])

    def archives(self) -> dict[str, str]:
        """slug -> sha256 of every archive the simulator holds locally."""
        found: dict[str, str] = {}
        for path in sorted(self.backup_dir.glob("*.tar")):
            with contextlib.suppress(ArchiveError):
                found[read_backup_json(path)["slug"]] = sha256_file(path)
        return found


# --- the add-on service -------------------------------------------------------------------


@dataclass
class Service:
    """The add-on's service in its own process, as the Supervisor runs it."""

    supervisor_url: str
    data_dir: Path
    backup_dir: Path
    launcher: bool = True  # False: plain `python -m backup_addon run`
    kill_file: Path | None = None
    stage_log: Path | None = None
    poll_interval: float | None = 0.05
    env: dict[str, str] = field(default_factory=dict)
    web_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    starts: int = 0

    def start(self) -> Service:
        self.web_port = free_port()
        self.starts += 1
        self.log = self.data_dir.with_name(f"{self.data_dir.name}.service.{self.starts}.log")
        env = {
            **os.environ,
            "SUPERVISOR_API": self.supervisor_url,
            "SUPERVISOR_TOKEN": TOKEN,
            "BACKUP_321_DATA_DIR": str(self.data_dir),
            "BACKUP_321_BACKUP_DIR": str(self.backup_dir),
            "BACKUP_321_WEB_PORT": str(self.web_port),
            "TZ": "UTC",
            **self.env,
        }
        if self.launcher:
            env.setdefault("BACKUP_321_TEST_ALLOW_LOOPBACK", "1")
            if self.poll_interval is not None:
                env["BACKUP_321_TEST_POLL_INTERVAL"] = str(self.poll_interval)
            if self.kill_file is not None:
                env["BACKUP_321_TEST_KILL_FILE"] = str(self.kill_file)
            if self.stage_log is not None:
                env["BACKUP_321_TEST_STAGE_LOG"] = str(self.stage_log)
        module = "tests.reliability.launcher" if self.launcher else "backup_addon"
        args = [sys.executable, "-m", module] + ([] if self.launcher else ["run"])
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def output(self) -> str:
        return "" if self.log is None else self.log.read_text(errors="replace")

    def all_output(self) -> str:
        logs = sorted(self.data_dir.parent.glob(f"{self.data_dir.name}.service.*.log"))
        return "\n".join(p.read_text(errors="replace") for p in logs)

    def wait_ready(self, timeout: float = 30) -> Service:
        def ready() -> bool:
            if not self.alive:
                raise AssertionError(f"the service exited early:\n{self.output()[-3000:]}")
            try:
                return _request(f"{self.url}/health", timeout=2) == {"status": "ok"}
            except (OSError, urllib.error.URLError):
                return False

        wait_for(ready, timeout, "the service to answer its health check", every=0.05)
        return self

    def backup_now(self, wait: float = 60.0) -> None:
        # After a restart the service may first write a copy the crash cut off (a "late copy"
        # run); the panel answers 409 until it is done, as it would to a user.
        deadline = time.monotonic() + wait
        while True:
            try:
                answer = _request(f"{self.url}/api/backup", "POST")
                break
            except urllib.error.HTTPError as err:
                if err.code != 409 or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert answer == {"started": True}, answer

    def get(self, path: str, *, raw: bool = False) -> Any:
        return _request(f"{self.url}{path}", raw=raw)

    def post(self, path: str, body: Any = None) -> Any:
        return _request(f"{self.url}{path}", "POST", body)

    def delete(self, path: str) -> Any:
        return _request(f"{self.url}{path}", "DELETE")

    def kill(self) -> None:
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
        self.wait_dead(10)

    def wait_dead(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> int | None:
        """SIGTERM, as the Supervisor stops an add-on; the exit code (None if it was not running)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                return self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                raise AssertionError("the service did not stop within 30 s of SIGTERM") from None
        return self.process.returncode

    def peak_rss_mib(self) -> float:
        """VmHWM: the most memory the process ever had resident."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM in /proc/PID/status")


# --- reading the catalog behind the service's back ----------------------------------------


def query(data_dir: Path, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
    """Read the catalog without writing to it (the service may be running)."""
    path = data_dir / CATALOG
    if not path.exists():
        return []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        db.row_factory = sqlite3.Row
        return db.execute(sql, tuple(params)).fetchall()


def runs(data_dir: Path) -> list[sqlite3.Row]:
    return query(data_dir, "SELECT * FROM runs ORDER BY id")


def last_run_id(data_dir: Path) -> int:
    rows = query(data_dir, "SELECT MAX(id) FROM runs")
    return int(rows[0][0] or 0) if rows else 0


def running(data_dir: Path) -> sqlite3.Row | None:
    rows = query(data_dir, "SELECT * FROM runs WHERE state = 'running' ORDER BY id DESC LIMIT 1")
    return rows[0] if rows else None


def wait_idle(data_dir: Path, after: int, timeout: float = 60, quiet: float = 0.3) -> list[sqlite3.Row]:
    """Wait until a run newer than `after` exists and no run has been running for `quiet` seconds."""
    calm_since: list[float] = []

    def idle() -> bool:
        newer = query(data_dir, "SELECT state FROM runs WHERE id > ?", (after,))
        if not newer or any(r["state"] == "running" for r in newer):
            calm_since.clear()
            return False
        calm_since.append(time.monotonic())
        return calm_since[-1] - calm_since[0] >= quiet

    wait_for(idle, timeout, "the service's runs to finish")
    return query(data_dir, "SELECT * FROM runs WHERE id > ? ORDER BY id", (after,))


def wait_no_run(data_dir: Path, timeout: float = 60, quiet: float = 0.3) -> None:
    """Wait until no run has been running for `quiet` seconds."""
    calm_since: list[float] = []

    def calm() -> bool:
        if running(data_dir) is not None:
            calm_since.clear()
            return False
        calm_since.append(time.monotonic())
        return calm_since[-1] - calm_since[0] >= quiet

    wait_for(calm, timeout, "the service to be idle")


# --- nothing lost -------------------------------------------------------------------------


def final_files(folder: Path) -> list[Path]:
    """Files under a folder location that carry a final name (not hidden temp files)."""
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def temp_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob(f"*{PARTIAL}*") if p.is_file())


def _sidecar_problems(path: Path, data_dir: Path, archives: dict[str, str]) -> list[str]:
    """A copy's sidecar (its encrypted description) must open and describe a real archive."""
    from backup_addon.sidecar import SidecarUnreadable, read_sidecar

    try:
        meta = read_sidecar(path.read_bytes(), KeyStore.open(data_dir).identities())
    except SidecarUnreadable as err:
        return [f"the sidecar under a final name does not open: {err}"]
    if meta.slug not in archives:
        return [f"the sidecar describes {meta.slug}, which the Supervisor does not have"]
    if meta.sha256 is not None and meta.sha256 != archives[meta.slug]:
        return ["the sidecar's sha256 is not its archive's"]
    return []


def nothing_lost(
    data_dir: Path,
    folders: dict[str, Path],
    archives: dict[str, str],
    supervisor_slugs: set[str] | None = None,
    known_slugs: Iterable[str] = (),
    *,
    check_integrity: bool = True,
) -> list[str]:
    """Every way a crash could have lost or damaged something; empty when nothing was.

    - every file under a final name in a folder location is a complete copy of an archive;
    - every copy the catalog marks committed exists and holds exactly its backup's archive;
    - no backup the Supervisor had before is gone;
    - SQLite's integrity check of the catalog passes (only when the service is not running).
    """
    problems: list[str] = []
    hashes = set(archives.values())
    has_keys = (data_dir / KEYS_FILE).exists()
    for name, folder in folders.items():
        for path in final_files(folder):
            rel = path.relative_to(folder)
            if path.name.endswith(".age") and not has_keys:
                problems.append(f"{name}: {rel} is sealed but the add-on has no key")
                continue
            if path.name.endswith(SIDECAR_SUFFIX):
                problems.extend(f"{name}: {rel}: {p}" for p in _sidecar_problems(path, data_dir, archives))
                continue
            try:
                digest = plaintext_sha256(path, data_dir)
            except AgeError as err:
                problems.append(f"{name}: {rel} under a final name does not open: {err}")
                continue
            if digest not in hashes:
                problems.append(f"{name}: {rel} under a final name matches no archive of the Supervisor")
    for copy in query(data_dir, "SELECT * FROM copies WHERE state = 'committed' AND kind = 'folder'"):
        folder = folders.get(copy["location"])
        if folder is None:
            continue
        path = folder / copy["key"]
        if not path.is_file():
            problems.append(f"{copy['location']}: committed copy {copy['key']} is missing")
            continue
        expected = archives.get(copy["slug"])
        if expected is None:
            problems.append(f"{copy['location']}: committed copy of {copy['slug']}, which the Supervisor lacks")
        elif plaintext_sha256(path, data_dir) != expected:
            problems.append(f"{copy['location']}: committed copy {copy['key']} differs from the archive")
    for backup in query(data_dir, "SELECT slug, sha256 FROM backups WHERE sha256 IS NOT NULL"):
        expected = archives.get(backup["slug"])
        if expected is not None and backup["sha256"] != expected:
            problems.append(f"catalog: backup {backup['slug']} has a sha256 that is not its archive's")
    for copy in query(data_dir, "SELECT * FROM copies WHERE state = 'bad'"):
        problems.append(f"{copy['location']}: a check found the copy of {copy['slug']} damaged: {copy['error']}")
    if supervisor_slugs is not None:
        pruned = {
            r["slug"] for r in query(data_dir, "SELECT slug FROM copies WHERE location = '.local' AND state IN ('deleted', 'deleting')")
        }
        problems.extend(
            f"backup {slug} vanished from the Supervisor, and the catalog does not say retention deleted it"
            for slug in set(known_slugs) - supervisor_slugs - pruned
        )
        for copy in query(data_dir, "SELECT slug FROM copies WHERE location = '.local' AND state = 'committed'"):
            if copy["slug"] not in supervisor_slugs:
                problems.append(f".local: the catalog says {copy['slug']} is in the Supervisor, which lacks it")
    if check_integrity and (data_dir / CATALOG).exists():
        catalog = Catalog(data_dir / CATALOG)
        try:
            problems.extend(f"catalog integrity: {p}" for p in catalog.integrity_problems())
        finally:
            catalog.close()
    return problems
