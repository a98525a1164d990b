"""The webdav kind on three real servers: Apache mod_dav, nginx dav + dav-ext, and wsgidav at a Nextcloud-like path."""

from __future__ import annotations

import base64
import contextlib
import ctypes
import http.client
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

from backup_addon.locations.webdav import WebdavLocation

USER = "davuser"
TIMEOUT = 5.0  # short, so the "server stops answering" test fails fast
APACHE_MODULES = Path("/usr/lib/apache2/modules")
NGINX_DAV_EXT = Path("/usr/lib/nginx/modules/ngx_http_dav_ext_module.so")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent() -> None:
    """In the server's process, before exec: end it when the test run ends, even if killed."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def group_alive(pgid: int) -> bool:
    """Whether a process group still has a live (not zombie) member."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    return True
    return False


def allow_www_data_through(path: Path) -> None:
    """Let the www-data workers traverse the (root-only) temporary folders above path."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & 0o001:
            folder.chmod(mode | 0o001)


class DavServerProvider:
    """What the three servers share: start, stop, pause, and fresh collections."""

    id = "webdav"
    has_server = True
    base_path = "/dav"  # where the data folder is served
    drops_privileges = True  # workers run as www-data

    def __init__(self) -> None:
        self.workdir: Path | None = None
        self.data: Path | None = None
        self.port = 0
        self.password = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._keeper: tuple[threading.Event, threading.Thread] | None = None
        self._count = itertools.count()

    # --- to be filled in by each server -----------------------------------------------------------

    def configure(self, workdir: Path) -> list[str]:
        """Write the server's configuration; return its command line."""
        raise NotImplementedError

    def logs(self) -> str:
        assert self.workdir is not None
        texts = []
        for log in sorted(self.workdir.rglob("*.log")):
            texts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}")
        return "\n".join(texts)

    # --- Provider ---------------------------------------------------------------------------------

    def start(self, workdir: Path) -> None:
        self.workdir = workdir
        self.password = secrets.token_urlsafe(12)
        self.data = workdir / "data"
        self.data.mkdir()
        if self.drops_privileges:
            allow_www_data_through(workdir)
            shutil.chown(self.data, "www-data", "www-data")
        for _attempt in range(3):
            self.port = free_port()
            argv = self.configure(workdir)
            with (workdir / "server.log").open("ab") as log:
                self._proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
            if self._wait_ready():
                return
            logs = self.logs()
            self.stop()
            if "in use" not in logs:  # another helper took the port between bind and start: try again
                break
        raise RuntimeError(f"{self.id}: the server did not start\n{self.logs()}")

    def _wait_ready(self) -> bool:
        assert self._proc is not None
        auth = base64.b64encode(f"{USER}:{self.password}".encode()).decode()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request(
                    "PROPFIND", self.base_path + "/", headers={"Depth": "0", "Authorization": f"Basic {auth}"}
                )
                if conn.getresponse().status == 207:
                    return True
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        self._end_keeper()
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return  # already reaped: its group id may belong to another process by now
        # The leader is reaped only at the end, so until then the group id cannot be reused.
        pgid = proc.pid
        for sig in (signal.SIGTERM, signal.SIGCONT):  # a paused server acts on SIGTERM once continued
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
        deadline = time.monotonic() + 10
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        # Workers may outlive their master; nothing of this instance may be left.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=10)

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, sig)

    def pause_server(self) -> None:
        self._end_keeper()
        self._signal(signal.SIGSTOP)
        done = threading.Event()

        def keep_stopped() -> None:
            # With pid_max at 32768 PIDs come round again quickly, and a stray SIGCONT meant for
            # some earlier process must not wake this server while a test counts on it pausing.
            while not done.wait(0.02):
                self._signal(signal.SIGSTOP)

        thread = threading.Thread(target=keep_stopped, name=f"{self.id} paused", daemon=True)
        thread.start()
        self._keeper = (done, thread)

    def resume_server(self) -> None:
        self._end_keeper()
        self._signal(signal.SIGCONT)

    def _end_keeper(self) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper[0].set()
            keeper[1].join()

    def _collection(self) -> tuple[str, Path]:
        """A new, empty folder on the server; its name has a space and an umlaut, as users' names do."""
        assert self.data is not None
        name = f"loc {next(self._count)} ü"
        folder = self.data / name
        folder.mkdir()
        if self.drops_privileges:
            shutil.chown(folder, "www-data", "www-data")
        return f"http://127.0.0.1:{self.port}{self.base_path}/{quote(name)}", folder

    def location(self, name: str) -> WebdavLocation:
        return self.location_and_folder(name)[0]

    def location_and_folder(self, name: str) -> tuple[WebdavLocation, Path]:
        """A fresh location and the folder on disk the server keeps it in."""
        url, folder = self._collection()
        location = WebdavLocation(name=name, url=url, username=USER, password=self.password, timeout=TIMEOUT)
        return location, folder

    def location_with_wrong_credentials(self, name: str) -> WebdavLocation:
        return WebdavLocation(
            name=name, url=self._collection()[0], username=USER, password="not-the-password", timeout=TIMEOUT
        )


def htpasswd(workdir: Path, password: str) -> Path:
    path = workdir / "htpasswd"
    subprocess.run(["htpasswd", "-bc", str(path), USER, password], check=True, capture_output=True)
    return path


class ApacheProvider(DavServerProvider):
    id = "webdav-apache"

    def configure(self, workdir: Path) -> list[str]:
        assert self.data is not None
        for sub in ("run", "lock", "logs"):
            (workdir / sub).mkdir(exist_ok=True)
        shutil.chown(workdir / "lock", "www-data", "www-data")
        users = htpasswd(workdir, self.password)
        users.chmod(0o644)
        modules = [
            ("mpm_event_module", "mod_mpm_event.so"),
            ("authz_core_module", "mod_authz_core.so"),
            ("authz_user_module", "mod_authz_user.so"),
            ("authn_core_module", "mod_authn_core.so"),
            ("authn_file_module", "mod_authn_file.so"),
            ("auth_basic_module", "mod_auth_basic.so"),
            ("alias_module", "mod_alias.so"),
            ("dav_module", "mod_dav.so"),
            ("dav_fs_module", "mod_dav_fs.so"),
        ]
        load = "\n".join(f"LoadModule {name} {APACHE_MODULES / so}" for name, so in modules)
        config = workdir / "httpd.conf"
        config.write_text(
            f"""ServerRoot "{workdir}"
ServerName 127.0.0.1
Listen 127.0.0.1:{self.port}
PidFile "{workdir}/run/httpd.pid"
DefaultRuntimeDir "{workdir}/run"
ErrorLog "{workdir}/logs/error.log"
LogLevel warn
{load}
User www-data
Group www-data
StartServers 1
ServerLimit 2
ThreadsPerChild 16
MaxRequestWorkers 32
DavLockDB "{workdir}/lock/DavLock"
LimitRequestBody 0
Alias {self.base_path} "{self.data}"
<Directory "{self.data}">
  Dav On
  AuthType Basic
  AuthName "dav"
  AuthUserFile "{users}"
  Require valid-user
</Directory>
"""
        )
        return ["apache2", "-f", str(config), "-DFOREGROUND"]


class NginxProvider(DavServerProvider):
    id = "webdav-nginx"

    def configure(self, workdir: Path) -> list[str]:
        assert self.data is not None
        temp = workdir / "tmp"
        temp.mkdir(exist_ok=True)
        shutil.chown(temp, "www-data", "www-data")
        users = htpasswd(workdir, self.password)
        users.chmod(0o644)
        config = workdir / "nginx.conf"
        config.write_text(
            f"""load_module {NGINX_DAV_EXT};
daemon off;
worker_processes 1;
user www-data;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 128; }}
http {{
  access_log off;
  client_body_temp_path {temp};
  proxy_temp_path {temp}; fastcgi_temp_path {temp}; uwsgi_temp_path {temp}; scgi_temp_path {temp};
  server {{
    listen 127.0.0.1:{self.port};
    location {self.base_path}/ {{
      alias {self.data}/;
      dav_methods PUT DELETE MKCOL COPY MOVE;
      dav_ext_methods PROPFIND OPTIONS;
      create_full_put_path on;
      client_max_body_size 0;
      auth_basic "dav";
      auth_basic_user_file {users};
    }}
  }}
}}
"""
        )
        return ["nginx", "-e", str(workdir / "error.log"), "-c", str(config), "-p", f"{workdir}/"]


class WsgidavProvider(DavServerProvider):
    id = "webdav-wsgidav"
    base_path = f"/remote.php/dav/files/{USER}"  # like Nextcloud, without its chunked upload
    drops_privileges = False

    def configure(self, workdir: Path) -> list[str]:
        assert self.data is not None
        config = workdir / "wsgidav.yaml"  # JSON is YAML too
        settings = {
            "host": "127.0.0.1",
            "port": self.port,
            "server": "cheroot",
            "provider_mapping": {self.base_path: str(self.data)},
            "http_authenticator": {
                "domain_controller": None,
                "accept_basic": True,
                "accept_digest": False,
                "default_to_digest": False,
            },
            "simple_dc": {"user_mapping": {"*": {USER: {"password": self.password}}}},
            "dir_browser": {"enable": False},
            "verbose": 2,
            "lock_storage": True,
            "property_manager": True,
        }
        config.write_text(json.dumps(settings, indent=2))
        return [str(Path(sys.executable).with_name("wsgidav")), "--config", str(config)]


PROVIDERS = [ApacheProvider(), NginxProvider(), WsgidavProvider()]
