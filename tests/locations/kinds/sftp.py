"""The sftp kind on Debian's OpenSSH sshd, started with its own config, host keys and test user."""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import asyncssh

from backup_addon.locations.sftp import SftpLocation

SSHD = "/usr/sbin/sshd"  # sshd re-executes itself, so it needs its absolute path
TEST_USER = "b321sftp"
START_ATTEMPTS = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(*args: str, stdin: str | None = None) -> None:
    result = subprocess.run(args, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")


def _make_traversable(folder: Path) -> None:
    """Let the test user pass through the (0700) temp folders above its files, without listing them."""
    temp_root = Path(tempfile.gettempdir()).resolve()
    for current in [folder, *folder.parents]:
        mode = current.stat().st_mode
        if mode & stat.S_IXOTH:
            continue
        if temp_root not in current.parents or current.stat().st_uid != os.geteuid():
            raise RuntimeError(
                f"the sftp test user cannot pass through {current}; run the tests from a temp dir"
            )
        current.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _parent_pid(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may hold spaces, so the fields start after its last ')'.
    return int(text[text.rindex(")") + 2 :].split()[1])


class SftpProvider:
    """One sshd on a free loopback port; each location gets its own folder under the data dir."""

    id = "sftp-openssh"
    has_server = True

    def __init__(self) -> None:
        self.workdir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.user = TEST_USER
        self.password = ""
        self.client_key = ""  # OpenSSH private key text of the test user
        self.host_key = ""  # the server's ed25519 host key line, as a user pastes it
        self.ecdsa_host_key = ""
        self.data: Path | None = None
        self.home: Path | None = None
        self._count = itertools.count()

    # --- server life cycle ---

    def start(self, workdir: Path) -> None:
        self.workdir = workdir
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
        _make_traversable(workdir)
        self._ensure_user()
        self._make_keys(workdir)
        self.data = workdir / "data"
        self.data.mkdir()
        os.chown(self.data, *self._uid_gid())
        log = workdir / "sshd.log"
        for _ in range(START_ATTEMPTS):
            self.port = free_port()
            config = self._write_config(workdir)
            _run(SSHD, "-t", "-f", str(config))
            with log.open("ab") as out:
                self.process = subprocess.Popen(
                    [SSHD, "-D", "-e", "-f", str(config)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            if self._wait_until_it_answers():
                return
            self.stop()
            if "Address already in use" not in log.read_text(errors="replace"):
                break  # anything but a lost race for the port will not get better
        raise RuntimeError(f"sshd did not start; its log ({log}):\n{log.read_text(errors='replace')}")

    def _ensure_user(self) -> None:
        if subprocess.run(["id", TEST_USER], capture_output=True, check=False).returncode != 0:
            result = subprocess.run(
                ["useradd", "-m", "-s", "/usr/sbin/nologin", TEST_USER], capture_output=True, text=True
            )
            # Another test run may have created it at the same moment.
            if result.returncode != 0 and "already exists" not in result.stderr:
                raise RuntimeError(f"useradd {TEST_USER} failed: {result.stderr.strip()}")
        # The same for every run: two test runs on one machine share the system user, and a
        # password changed by one would lock the other out. The sshd only listens on loopback.
        self.password = "b321-sftp-test-password"
        _run("chpasswd", stdin=f"{TEST_USER}:{self.password}\n")
        self.home = Path(pwd.getpwnam(TEST_USER).pw_dir)

    def _uid_gid(self) -> tuple[int, int]:
        entry = pwd.getpwnam(TEST_USER)
        return entry.pw_uid, entry.pw_gid

    def _make_keys(self, workdir: Path) -> None:
        keys = workdir / "keys"
        keys.mkdir()
        for kind in ("ed25519", "ecdsa"):
            _run("ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "", "-f", str(keys / f"host_{kind}"))
        self.host_key = (keys / "host_ed25519.pub").read_text().strip()
        self.ecdsa_host_key = (keys / "host_ecdsa.pub").read_text().strip()
        client = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = client.export_private_key("openssh").decode()
        authorized = workdir / "authorized"
        authorized.mkdir(mode=0o755)
        (authorized / TEST_USER).write_bytes(client.export_public_key("openssh"))
        (authorized / TEST_USER).chmod(0o644)

    def _write_config(self, workdir: Path) -> Path:
        config = workdir / "sshd_config"
        keys = workdir / "keys"
        config.write_text(
            "\n".join(
                [
                    "ListenAddress 127.0.0.1",
                    f"Port {self.port}",
                    f"HostKey {keys / 'host_ed25519'}",
                    f"HostKey {keys / 'host_ecdsa'}",
                    f"PidFile {workdir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {workdir / 'authorized'}/%u",
                    "StrictModes no",  # the key files live under the test's temp folder
                    "UsePAM no",
                    "PasswordAuthentication yes",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin no",
                    f"AllowUsers {TEST_USER}",
                    "DisableForwarding yes",
                    "Subsystem sftp internal-sftp",
                    "ForceCommand internal-sftp",
                    "",
                ]
            )
        )
        return config

    def _wait_until_it_answers(self) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1) as sock:
                sock.settimeout(2)
                if sock.recv(64).startswith(b"SSH-2.0-"):
                    return True
            time.sleep(0.05)
        return False

    def _pids(self) -> list[int]:
        """The listening sshd and every process it forked; per-connection children leave its group."""
        if self.process is None or self.process.poll() is not None:
            return []
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (parent := _parent_pid(int(entry))) is not None:
                children.setdefault(parent, []).append(int(entry))
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def _signal_all(self, signum: int) -> None:
        done: set[int] = set()
        # Repeat until no new process shows up: a child may fork while we walk the tree.
        while pids := [p for p in self._pids() if p not in done]:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)
            done.update(pids)

    def stop(self) -> None:
        if self.process is None:
            return
        self._signal_all(signal.SIGCONT)
        pids = self._pids()
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def pause_server(self) -> None:
        self._signal_all(signal.SIGSTOP)

    def resume_server(self) -> None:
        self._signal_all(signal.SIGCONT)

    # --- locations ---

    def new_folder(self) -> Path:
        """A fresh, empty folder on the server, owned by the test user."""
        assert self.data is not None
        folder = self.data / f"loc{next(self._count)}"
        folder.mkdir()
        os.chown(folder, *self._uid_gid())
        return folder

    def location(self, name: str, **overrides: object) -> SftpLocation:
        settings: dict[str, object] = {
            "name": name,
            "host": "127.0.0.1",
            "port": self.port,
            "username": self.user,
            "private_key": self.client_key,
            "host_key": self.host_key,
            "folder": str(self.new_folder()),
            "timeout": 5.0,
        }
        settings.update(overrides)
        return SftpLocation(**settings)

    def location_with_wrong_credentials(self, name: str) -> SftpLocation:
        return self.location(name, private_key=None, password="not-the-password")


PROVIDERS = [SftpProvider()]
