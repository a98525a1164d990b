"""Security: who may talk to the panel, where secrets end up, file permissions, TLS and SSH host keys."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import secrets
import ssl
import stat
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncssh
import pytest
from aiohttp import web

from backup_addon.catalog import Catalog
from backup_addon.crypto.keys import identity_for
from backup_addon.errors import LocationAuthFailed, LocationError
from backup_addon.locations.registry import build_location
from backup_addon.options import parse_options

from .harness import TOKEN, Service, Simulator, last_run_id, wait_idle

CATEGORY = "security"
KEY = "QWER-TYUI-OPAS-DFGH-JKLZ-XCVB-NM12"


def outside_address() -> str | None:
    """An IPv4 address of this machine that is not loopback, if it has one."""
    try:
        listing = json.loads(subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True, check=True).stdout)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return None
    for interface in listing:
        for info in interface.get("addr_info", []):
            if info.get("family") == "inet" and not info["local"].startswith("127."):
                return str(info["local"])
    return None


def ask(port: int, path: str, *, source: str, target: str, method: str = "GET", headers: dict | None = None) -> int:
    """One HTTP request over a real socket from `source` to `target`; the status code."""
    connection = http.client.HTTPConnection(target, port, timeout=10, source_address=(source, 0))
    try:
        body = b"{}" if method == "POST" else None
        connection.request(method, path, body=body, headers={"X-Requested-With": "backup_321", **(headers or {})})
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.fixture
def small_setup(tmp_path):
    sim = Simulator(tmp_path / "supervisor", payload_mib=0, stage_delay=0.01).start()
    data = tmp_path / "data"
    data.mkdir()
    usb = tmp_path / "usb"
    usb.mkdir()
    (data / "options.json").write_text(json.dumps({"schedules": [], "locations": [
        {"name": "USB", "kind": "folder", "path": str(usb)}]}))
    started: list[Service] = []
    yield sim, data, started
    for service in started:
        service.stop()
    sim.stop()


@pytest.mark.reliability(
    CATEGORY,
    "requests over real sockets to the panel of `python -m backup_addon run` from this machine's non-loopback "
    "address and from loopback, with and without a forged X-Forwarded-For: 172.30.32.2",
    "every page and API call refused (403) unless the peer is an allowed address; /health answers loopback only; "
    "a service told to allow the outside address serves it and still refuses loopback",
)
def test_ingress_refuses_every_other_peer(small_setup, row):
    sim, data, started = small_setup
    outside = outside_address()
    if outside is None:
        row.happened = "this machine has no non-loopback address: only the faked-peer test below applies"
        return
    plain = Service(sim.url, data, sim.backup_dir, launcher=False)
    started.append(plain.start())
    plain_env = {"BACKUP_321_TEST_ALLOW_LOOPBACK": "0", "BACKUP_321_TEST_ALLOW_CLIENTS": outside}
    wait_health(plain)
    forged = {"X-Forwarded-For": "172.30.32.2", "X-Real-IP": "172.30.32.2", "X-Ingress-Path": "/api/hassio_ingress/x"}
    plain_answers = {
        (who, method, path, bool(h)): ask(plain.web_port, path, source=src, target=tgt, method=method, headers=h)
        for who, src, tgt in (("outside", outside, outside), ("loopback", "127.0.0.1", "127.0.0.1"))
        for method, path in (("GET", "/"), ("GET", "/api/overview"), ("GET", "/api/kit"), ("POST", "/api/backup"),
                             ("GET", "/health"))
        for h in (None, forged)
    }
    plain.stop()
    allowing = Service(sim.url, data, sim.backup_dir, env=plain_env)
    started.append(allowing.start())
    wait_health(allowing)
    allowed_answers = {
        who: ask(allowing.web_port, "/api/overview", source=src, target=tgt)
        for who, src, tgt in (("outside", outside, outside), ("loopback", "127.0.0.1", "127.0.0.1"))
    }
    refused = [k for k, v in plain_answers.items() if v == 403]
    let_in = {f"{k[0]} {k[1]} {k[2]}{' forged' if k[3] else ''}": v for k, v in plain_answers.items() if v != 403}
    row.happened = (
        f"plain service: {len(refused)} of {len(plain_answers)} requests refused; answered: {let_in}; service allowing "
        f"the outside address: outside {allowed_answers['outside']}, loopback {allowed_answers['loopback']}"
    )
    assert let_in == {"loopback GET /health": 200, "loopback GET /health forged": 200}
    assert allowed_answers == {"outside": 200, "loopback": 403}


@pytest.mark.reliability(
    CATEGORY,
    "the panel's address check with faked peers: the Supervisor's address (also IPv4-mapped IPv6), its neighbours, "
    "private and public addresses, IPv6 loopback, no peer at all",
    "only 172.30.32.2 (in either form) gets through; /health only for loopback",
)
async def test_address_check_with_faked_peers(row):
    from unittest import mock

    from aiohttp.test_utils import make_mocked_request

    from backup_addon.web.app import ALLOWED_KEY, SUPERVISOR_ADDRESS, only_allowed_clients

    cases = [
        ("172.30.32.2", "/api/overview", 200), ("::ffff:172.30.32.2", "/api/overview", 200),
        ("172.30.32.1", "/api/overview", 403), ("172.30.32.20", "/api/overview", 403),
        ("10.0.0.5", "/api/overview", 403), ("8.8.8.8", "/", 403), ("::1", "/api/overview", 403),
        ("::1", "/health", 200), ("127.0.0.1", "/health", 200), ("10.0.0.5", "/health", 403),
        (None, "/api/overview", 403),
    ]
    app = web.Application()
    app[ALLOWED_KEY] = frozenset({SUPERVISOR_ADDRESS})

    async def handler(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    answers = []
    for peer, path, _ in cases:
        transport = mock.Mock()
        transport.get_extra_info.side_effect = (
            lambda name, default=None, peer=peer: (peer, 1234) if name == "peername" and peer else default
        )
        request = make_mocked_request("GET", path, app=app, transport=transport)
        try:
            status = (await only_allowed_clients(request, handler)).status
        except web.HTTPException as err:
            status = err.status
        answers.append(status)
    wrong = [f"{peer} {path}: {got} (expected {want})" for (peer, path, want), got in zip(cases, answers, strict=True)
             if got != want]
    row.happened = f"{len(cases) - len(wrong)} of {len(cases)} peers answered as expected" + (
        f"; WRONG: {wrong}" if wrong else ""
    )
    assert not wrong, wrong


def wait_health(service: Service) -> None:
    from .harness import wait_for

    def healthy() -> bool:
        try:
            return ask(service.web_port, "/health", source="127.0.0.1", target="127.0.0.1") == 200
        except OSError:
            return False

    wait_for(healthy, 30, "the service's health check", every=0.05)


# --- secrets ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secret_run(servers, tmp_path_factory):
    """A full service run with known secrets in every kind's options, plus wrong passwords."""
    from tests.locations.kinds.smb import USER as SMB_USER
    from tests.locations.kinds.webdav import USER as DAV_USER

    tmp_path = tmp_path_factory.mktemp("secrets")
    sftp, s3, smb, dav = servers.sftp, servers.s3, servers.smb, servers.webdav
    bucket = s3.make_bucket()
    url, _ = dav._collection()
    wrong_dav = "WrongDav-" + secrets.token_hex(6)
    wrong_s3 = "WrongS3-" + secrets.token_hex(8)
    secrets_used = {
        "encryption key": KEY,
        "age identity of the key": identity_for(KEY).to_string(),
        "Supervisor token": TOKEN,
        "SFTP password": sftp.password,
        "S3 secret": s3.secret,
        "SMB password": smb.server.password,
        "WebDAV password": dav.password,
        "wrong WebDAV password": wrong_dav,
        "wrong S3 secret": wrong_s3,
    }
    locations = [
        {"name": "Folder", "kind": "folder", "path": str(tmp_path / "folder")},
        {"name": "SFTP", "kind": "sftp", "host": "127.0.0.1", "port": sftp.port, "username": sftp.user,
         "password": sftp.password, "folder": str(sftp.new_folder()), "host_key": sftp.host_key},
        {"name": "S3", "kind": "s3", "endpoint": s3.endpoint, "bucket": bucket, "access_key_id": s3.key,
         "secret_access_key": s3.secret},
        {"name": "SMB", "kind": "smb", "server": "127.0.0.1", "port": smb.server.port, "share": "backups",
         "folder": f"secrets-{secrets.token_hex(3)}", "username": SMB_USER, "password": smb.server.password},
        {"name": "WebDAV", "kind": "webdav", "url": url, "username": DAV_USER, "password": dav.password},
        {"name": "WebDAV wrong", "kind": "webdav", "url": url, "username": DAV_USER, "password": wrong_dav},
        {"name": "S3 wrong", "kind": "s3", "endpoint": s3.endpoint, "bucket": bucket, "access_key_id": s3.key,
         "secret_access_key": wrong_s3},
    ]
    (tmp_path / "folder").mkdir()
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    options = {"schedules": [], "encryption_key": KEY, "log_level": "debug", "locations": locations}
    (data / "options.json").write_text(json.dumps(options))
    with Simulator(tmp_path / "supervisor", payload_mib=1, stage_delay=0.01) as sim:
        service = Service(sim.url, data, sim.backup_dir).start().wait_ready()
        try:
            after = last_run_id(data)
            service.backup_now()
            runs = wait_idle(data, after, timeout=120)
            panel: dict[str, Any] = {}
            for path in ("/api/overview", "/api/runs", "/api/backups", "/api/locations", "/api/retention",
                         "/api/setup", "/api/backup/choices"):
                panel[path] = service.get(path)
            for backup in panel["/api/backups"].get("backups", []):
                slug = backup["slug"]
                panel[f"/api/backups/{slug}"] = service.get(f"/api/backups/{slug}")
            for location in locations:
                name = quote(location["name"])
                panel[f"/api/locations/{name}/usage"] = _tolerant(lambda n=name: service.get(f"/api/locations/{n}/usage"))
                panel[f"/api/locations/{name}/test"] = _tolerant(lambda n=name: service.post(f"/api/locations/{n}/test"))
            kit = _tolerant(lambda: service.get("/api/kit", raw=True))
            calls = sim.calls()
        finally:
            service.stop()
    yield {"secrets": secrets_used, "data": data, "service": service, "panel": panel, "kit": kit,
           "calls": calls, "runs": runs, "folder": tmp_path / "folder"}


def _tolerant(call: Any) -> Any:
    """The answer, or the error answer's text: both may leak."""
    import urllib.error

    try:
        return call()
    except urllib.error.HTTPError as err:
        return {"status": err.code, "body": err.read().decode(errors="replace")}


def _leaks(haystack: str, secrets_used: dict[str, str], skip: tuple[str, ...] = ()) -> list[str]:
    return [name for name, value in secrets_used.items() if name not in skip and value and value in haystack]


@pytest.mark.reliability(
    CATEGORY,
    "a full service run (log level debug) with an encryption key, an S3 secret and SFTP/SMB/WebDAV passwords in the "
    "options, plus a wrong WebDAV password and a wrong S3 secret: logs, catalog, every panel API answer (including "
    "'test connection' and free space), the files written, and every call the Supervisor's core API recorded",
    "no secret appears anywhere (the emergency kit holds the key by design and nothing else)",
)
def test_no_secret_reaches_logs_catalog_panel_or_core_api(secret_run, row):
    secrets_used = secret_run["secrets"]
    data: Path = secret_run["data"]
    found: dict[str, list[str]] = {}
    found["service log"] = _leaks(secret_run["service"].all_output(), secrets_used)
    for path in sorted(data.iterdir()):
        if path.name in ("options.json", "keys.json") or not path.is_file():
            continue  # the options are the user's own file; keys.json is the key store (0600)
        found[f"data/{path.name}"] = _leaks(path.read_bytes().decode("latin-1"), secrets_used)
    found["panel API"] = _leaks(json.dumps(secret_run["panel"]), secrets_used)
    kit = secret_run["kit"] if isinstance(secret_run["kit"], str) else json.dumps(secret_run["kit"])
    found["emergency kit"] = _leaks(kit, secrets_used, skip=("encryption key", "age identity of the key"))
    found["core API calls"] = _leaks(json.dumps(secret_run["calls"]), secrets_used)
    names = " ".join(str(p.relative_to(secret_run["folder"])) for p in secret_run["folder"].rglob("*"))
    found["file names in the folder location"] = _leaks(names, secrets_used)
    leaks = {where: what for where, what in found.items() if what}
    states = ", ".join(f"{r['kind']} {r['state']}" for r in secret_run["runs"])
    row.happened = (
        f"runs: {states}; scanned {len(found)} places, {len(secret_run['calls'])} core API calls; "
        + (f"LEAKS: {leaks}" if leaks else "no secret found")
    )
    row.nothing_lost = None
    assert any(r["kind"] == "backup" for r in secret_run["runs"])
    assert not leaks, leaks


@pytest.mark.reliability(
    CATEGORY,
    "file and folder permissions under the data folder after a full service run",
    "keys.json and the catalog (with its -wal/-shm) are 0600, folders 0700: nothing readable by other users",
)
def test_data_files_are_private(secret_run, row):
    data: Path = secret_run["data"]
    wrong = []
    for path in sorted(data.rglob("*")):
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.name == "options.json":
            continue  # written by the Supervisor (here: by the test)
        if (path.is_dir() and mode != 0o700) or (path.is_file() and mode & 0o077):
            wrong.append(f"{path.relative_to(data)} {mode:04o}")
    listed = ", ".join(f"{p.name} {stat.S_IMODE(p.stat().st_mode):04o}" for p in sorted(data.rglob("*")))
    row.happened = f"{listed}" + (f"; TOO OPEN: {wrong}" if wrong else "")
    assert (data / "keys.json").exists()
    assert not wrong, wrong


# --- TLS and host keys --------------------------------------------------------------------


@pytest.mark.reliability(
    CATEGORY,
    "locations built from options with verify_tls: false on an https endpoint (S3, WebDAV)",
    "turning TLS verification off is never silent: a warning names the location when it is built",
)
@pytest.mark.parametrize("kind", ["s3", "webdav"])
def test_tls_verification_off_is_never_silent(kind, tmp_path, caplog, row):
    entry = {
        "s3": {"name": "Cloud", "kind": "s3", "endpoint": "https://s3.example.com", "bucket": "my-backups",
               "access_key_id": "AKIA", "secret_access_key": "secret", "verify_tls": False},
        "webdav": {"name": "Cloud", "kind": "webdav", "url": "https://dav.example.com/remote.php/dav/files/a/b",
                   "username": "a", "password": "b", "verify_tls": False},
    }[kind]
    defaults = {k: v for k, v in entry.items() if k != "verify_tls"}
    default_on = parse_options({"locations": [defaults]}).locations[0].verify_tls
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    try:
        with caplog.at_level(logging.WARNING):
            build_location(parse_options({"locations": [entry]}).locations[0], catalog)
    finally:
        catalog.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    row.happened = f"verify_tls defaults to {default_on}; warnings when off: {warnings or 'none'}"
    assert default_on is True
    assert any("verify" in w.lower() or "certificate" in w.lower() or "tls" in w.lower() for w in warnings), warnings


def _self_signed(tmp_path: Path) -> ssl.SSLContext:
    from tests.locations.kinds.s3 import _self_signed_certificate

    cert, key = _self_signed_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.mark.reliability(
    CATEGORY,
    "S3 (rclone over https) and WebDAV (an https server) with a self-signed certificate, verify_tls left at its default",
    "the connection is refused with a message about the certificate; nothing is sent",
)
async def test_untrusted_certificates_are_refused_by_default(servers, tmp_path, row):
    from backup_addon.locations.s3 import S3Location
    from backup_addon.locations.webdav import WebdavLocation

    provider = servers.s3_tls
    s3 = S3Location("Cloud", bucket=provider.make_bucket(), access_key_id=provider.key,
                    secret_access_key=provider.secret, endpoint=provider.endpoint, connect_timeout=3, read_timeout=5)
    requests: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        requests.append(request.method)
        return web.Response(status=207, text="<d:multistatus xmlns:d='DAV:'/>")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=_self_signed(tmp_path))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    dav = WebdavLocation(name="Dav", url=f"https://127.0.0.1:{port}/dav", username="u", password="p", timeout=5)
    answers = {}
    try:
        for location in (s3, dav):
            try:
                await asyncio.wait_for(location.usage(), 20)
                answers[location.kind] = "ACCEPTED"
            except LocationError as err:
                answers[location.kind] = str(err)
    finally:
        await runner.cleanup()
    row.happened = f"{answers}; requests the https server received: {requests}"
    assert all("certificate" in a.lower() for a in answers.values()), answers
    assert requests == []


@pytest.mark.reliability(
    CATEGORY,
    "an SFTP location pinned to another host key than the server's, and one with no host key",
    "both refused before logging in (host key changed / unknown, with the offered key's fingerprint); nothing written",
)
async def test_sftp_host_key_is_pinned(servers, row):
    provider = servers.sftp
    stranger = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().strip()
    outcomes = {}
    for label, host_key in (("wrong pinned key", stranger), ("no key", None)):
        folder = provider.new_folder()
        location = provider.location(f"SFTP {label}", folder=str(folder), host_key=host_key, timeout=5)

        async def body():
            yield b"should never arrive"

        try:
            await location.put("backup_321/probe.tar", body())
            outcomes[label] = ("WRITTEN", list(folder.rglob("*")))
        except LocationAuthFailed as err:
            outcomes[label] = (f"{type(err).__name__}: {err}", list(folder.rglob("*")))
        except LocationError as err:
            outcomes[label] = (f"refused, but as {type(err).__name__}: {err}", list(folder.rglob("*")))
    row.happened = "; ".join(f"{label}: {text} (files: {len(files)})" for label, (text, files) in outcomes.items())
    for text, files in outcomes.values():
        assert text.startswith("SftpHostKey"), text
        assert "SHA256:" in text
        assert files == []
