"""The smb kind against Debian's Samba smbd on loopback, with its own configuration, state and users."""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import smbclient

from backup_addon.locations.smb import SmbLocation

USER = "smbkindtest"
SHORT_TIMEOUT = 5.0


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_user(name: str) -> None:
    """A Unix account for Samba to map the test user to; useradd may race other helpers, so retry."""
    for _ in range(20):
        if subprocess.run(["id", name], capture_output=True).returncode == 0:
            return
        subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", name], capture_output=True)
        time.sleep(0.1)
    raise RuntimeError(f"could not create the Unix user {name}")


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in a process group."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry))
    return found


class SambaServer:
    """One smbd under a work folder: own smb.conf, state, password database and shares.

    smbd runs in a session of its own, so its process group holds it and every child it forks
    per connection; pausing and stopping act on the whole group.
    """

    def __init__(
        self,
        *,
        shares: dict[str, dict[str, str]] | None = None,
        global_options: dict[str, str] | None = None,
    ) -> None:
        self.shares = {"backups": {}, **(shares or {})}
        self.global_options = global_options or {}
        self.password = secrets.token_urlsafe(12)
        self.port = 0
        self.workdir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def share_path(self, share: str) -> Path:
        assert self.workdir is not None
        return self.workdir / "shares" / share

    def log(self) -> str:
        assert self.workdir is not None
        texts = []
        for path in sorted(self.workdir.glob("log*")):
            texts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(texts)

    def _config(self) -> str:
        assert self.workdir is not None
        state = self.workdir / "state"
        lines = [
            "[global]",
            "server role = standalone server",
            "interfaces = 127.0.0.1",
            "bind interfaces only = yes",
            f"smb ports = {self.port}",
            "disable netbios = yes",
            "server min protocol = SMB2_10",
            "map to guest = never",
            f"passdb backend = tdbsam:{state}/private/passdb.tdb",
            f"private dir = {state}/private",
            f"lock directory = {state}/lock",
            f"state directory = {state}/state",
            f"cache directory = {state}/cache",
            f"pid directory = {state}/pid",
            f"ncalrpc dir = {state}/ncalrpc",
            f"log file = {self.workdir}/log.%m",
            "log level = 1",
            "load printers = no",
            "printing = bsd",
            "printcap name = /dev/null",
            "disable spoolss = yes",
            *(f"{key} = {value}" for key, value in self.global_options.items()),
        ]
        for share, options in self.shares.items():
            settings = {
                "path": str(self.share_path(share)),
                "read only": "no",
                "valid users": USER,
                # The work folder is private to root; acting as root on disk avoids opening it up.
                "force user": "root",
                **options,
            }
            lines += [f"[{share}]", *(f"{key} = {value}" for key, value in settings.items())]
        return "\n".join(lines) + "\n"

    def start(self, workdir: Path) -> None:
        self.workdir = workdir
        ensure_user(USER)
        for sub in ("private", "lock", "state", "cache", "pid", "ncalrpc"):
            (workdir / "state" / sub).mkdir(parents=True, exist_ok=True)
        for share in self.shares:
            self.share_path(share).mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _attempt in range(3):
            # Another helper may take the free port before smbd binds it: pick a new one and retry.
            self.port = free_port()
            conf = workdir / "smb.conf"
            conf.write_text(self._config())
            subprocess.run(
                ["smbpasswd", "-c", str(conf), "-s", "-a", USER],
                input=f"{self.password}\n{self.password}\n".encode(),
                capture_output=True,
                check=True,
            )
            with (workdir / "log.stdout").open("ab") as out:
                self.process = subprocess.Popen(
                    [
                        shutil.which("smbd") or "/usr/sbin/smbd",
                        "--foreground",
                        "--no-process-group",
                        "--debug-stdout",
                        "-s",
                        str(conf),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                self._wait_until_answering()
                return
            except RuntimeError as err:
                last_error = str(err)
                self.stop()
        raise RuntimeError(f"smbd did not start: {last_error}\n{self.log()}")

    def _wait_until_answering(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"smbd exited with {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                time.sleep(0.05)
                continue
            self._log_on()
            return
        raise RuntimeError(f"smbd did not listen on port {self.port} within 20 s")

    def _log_on(self) -> None:
        """A real SMB logon with the test user, so 'started' means 'answers'."""
        cache: dict[str, Any] = {}
        try:
            smbclient.register_session(
                "127.0.0.1",
                username=USER,
                password=self.password,
                port=self.port,
                connection_timeout=10,
                connection_cache=cache,
            )
        except Exception as err:
            raise RuntimeError(f"smbd on port {self.port} refused the test logon: {err!r}") from err
        finally:
            smbclient.reset_connection_cache(fail_on_error=False, connection_cache=cache)

    def stop(self) -> None:
        if self.process is None:
            return
        pgid = self.process.pid
        for sig in (signal.SIGCONT, signal.SIGTERM):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        deadline = time.monotonic() + 10
        while group_members(pgid) and time.monotonic() < deadline:
            # Children forked per connection outlive the parent's SIGTERM when busy.
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        if self.process.poll() is None:
            self.process.wait(timeout=5)
        leftovers = group_members(pgid)
        self.process = None
        if leftovers:
            raise RuntimeError(f"smbd processes {leftovers} survived SIGKILL")

    def pause(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGCONT)

    def location(
        self,
        name: str,
        *,
        share: str = "backups",
        folder: str = "",
        password: str | None = None,
        **options: Any,
    ) -> SmbLocation:
        return SmbLocation(
            name=name,
            server="127.0.0.1",
            port=self.port,
            share=share,
            folder=folder,
            username=USER,
            password=self.password if password is None else password,
            **{"timeout": SHORT_TIMEOUT, **options},
        )


class SambaProvider:
    id = "smb-samba"
    has_server = True

    def __init__(self) -> None:
        self.server = SambaServer()
        self._count = itertools.count()

    def start(self, workdir: Path) -> None:
        self.server.start(workdir)

    def stop(self) -> None:
        # Killing smbd ends every location's connection; their threads then close the sockets.
        self.server.stop()

    def location(self, name: str) -> SmbLocation:
        # Every location gets a folder of its own in the share; it appears with the first put.
        return self.server.location(name, folder=f"loc{next(self._count)}-{secrets.token_hex(3)}")

    def location_with_wrong_credentials(self, name: str) -> SmbLocation:
        return self.server.location(name, folder="wrong", password="not-" + self.server.password)

    def pause_server(self) -> None:
        self.server.pause()

    def resume_server(self) -> None:
        self.server.resume()


PROVIDERS = [SambaProvider()]
