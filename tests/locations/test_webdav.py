"""The webdav kind beyond the conformance suite: status codes, TLS, href encodings, Nextcloud chunking, options."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import os
import re
import shutil
import ssl
import time
import xml.etree.ElementTree as ET
from urllib.parse import quote, unquote

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from backup_addon.errors import (
    LocationAuthFailed,
    LocationError,
    LocationFull,
    LocationReadOnly,
    LocationTimeout,
    LocationUnreachable,
    SourceError,
)
from backup_addon.locations.webdav import (
    WebdavLocation,
    WebdavLocationOptions,
    build,
    children,
    decode_href,
    parse_multistatus,
)
from tests.locations.kinds.webdav import PROVIDERS as DAV_PROVIDERS
from tests.locations.kinds.webdav import free_port
from tests.locations.test_conformance import chunks_of, read_all

USER, PASSWORD = "alice", "stub-pass-123"
ODD_KEY = "backup_321/ünï cödé/semi;colon,comma+plus&amp%percent#hash'quote [x] (y).tar"


# --- a small in-memory WebDAV server --------------------------------------------------------------


class MiniDav:
    """Enough of RFC 4918 (and of Nextcloud's chunked upload v2) to test what real servers rarely do."""

    def __init__(
        self,
        *,
        root: str = "/dav/backups",
        href_style: str = "plain",
        nextcloud: bool = False,
        chunk_min: int = 0,
    ) -> None:
        self.root = root
        self.href_style = href_style
        self.nextcloud = nextcloud
        self.chunk_min = chunk_min
        self.files: dict[str, bytes] = {}
        self.collections: set[str] = set()
        for depth in range(1, root.count("/") + 1):
            self.collections.add("/".join(root.split("/")[: depth + 1]))
        self.uploads = f"/remote.php/dav/uploads/{USER}"
        if nextcloud:
            self.collections |= {"/remote.php", "/remote.php/dav", "/remote.php/dav/uploads", self.uploads}
        self.statuses: dict[str, int] = {}  # method -> forced answer
        self.move_status: int | None = None
        self.quota: tuple[str, str] | None = None
        self.stall_put = False
        self.release = asyncio.Event()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.assembled: list[list[int]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def href(self, path: str, request: web.Request, collection: bool) -> str:
        path = path + "/" if collection and not path.endswith("/") else path
        if self.href_style == "plain":
            return quote(path)
        if self.href_style == "absolute":
            return f"{request.scheme}://{request.host}{quote(path)}"
        if self.href_style == "lowercase":
            return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(path))
        if self.href_style == "sub-delims":  # Apache leaves these as they are
            return quote(path, safe="/;,+&=@'()[]!$*")
        if self.href_style == "raw":
            return path
        if self.href_style == "latin-1":
            return quote(path, encoding="latin-1")
        raise AssertionError(self.href_style)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = request.raw_path.split("?", 1)[0]
        self.requests.append((request.method, raw, dict(request.headers)))
        expected = f"Basic {__import__('base64').b64encode(f'{USER}:{PASSWORD}'.encode()).decode()}"
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="stub"'})
        if request.method in self.statuses:
            await request.read()
            return web.Response(status=self.statuses[request.method])
        path = unquote(raw)
        collection_request = path.endswith("/") and path != "/"
        path = path.rstrip("/") or "/"
        handler = getattr(self, f"do_{request.method.lower()}", None)
        if handler is None:
            return web.Response(status=405)
        return await handler(request, path, collection_request)

    def parent_exists(self, path: str) -> bool:
        return path.rsplit("/", 1)[0] in self.collections

    async def do_propfind(self, request: web.Request, path: str, _collection: bool) -> web.StreamResponse:
        body = await request.read()
        if path in self.collections:
            members = [path]
            if request.headers.get("Depth") == "1":
                members += sorted(
                    p for p in (*self.collections, *self.files) if p.rsplit("/", 1)[0] == path and p != path
                )
        elif path in self.files:
            members = [path]
        else:
            return web.Response(status=404)
        multistatus = ET.Element("{DAV:}multistatus")
        for member in members:
            response = ET.SubElement(multistatus, "{DAV:}response")
            is_collection = member in self.collections
            ET.SubElement(response, "{DAV:}href").text = self.href(member, request, is_collection)
            propstat = ET.SubElement(response, "{DAV:}propstat")
            prop = ET.SubElement(propstat, "{DAV:}prop")
            kind = ET.SubElement(prop, "{DAV:}resourcetype")
            if is_collection:
                ET.SubElement(kind, "{DAV:}collection")
            else:
                ET.SubElement(prop, "{DAV:}getcontentlength").text = str(len(self.files[member]))
            ET.SubElement(prop, "{DAV:}getlastmodified").text = "Mon, 12 Jan 2026 10:00:00 GMT"
            if self.quota and b"quota-available-bytes" in body:
                ET.SubElement(prop, "{DAV:}quota-available-bytes").text = self.quota[0]
                ET.SubElement(prop, "{DAV:}quota-used-bytes").text = self.quota[1]
            ET.SubElement(propstat, "{DAV:}status").text = "HTTP/1.1 200 OK"
        return web.Response(status=207, body=ET.tostring(multistatus), content_type="application/xml")

    async def do_mkcol(self, request: web.Request, path: str, _collection: bool) -> web.StreamResponse:
        if path in self.collections or path in self.files:
            return web.Response(status=405)
        if not self.parent_exists(path):
            return web.Response(status=409)
        if path.startswith(self.uploads + "/") and "Destination" not in request.headers:
            return web.Response(status=400, text="chunking v2 needs a Destination header")
        self.collections.add(path)
        return web.Response(status=201)

    async def do_put(self, request: web.Request, path: str, _collection: bool) -> web.StreamResponse:
        if self.stall_put:
            await self.release.wait()  # never reads the body: the client's sending stalls
            return web.Response(status=500)
        if not self.parent_exists(path):
            await request.read()
            return web.Response(status=409)
        if path.startswith(self.uploads + "/"):
            name = path.rsplit("/", 1)[1]
            if "Destination" not in request.headers or "Content-Length" not in request.headers:
                return web.Response(status=400, text="chunks need Destination and Content-Length")
            if not name.isdigit() or not 1 <= int(name) <= 10000:
                return web.Response(status=400, text="chunk names are numbers from 1 to 10000")
        data = await request.read()
        existed = path in self.files
        self.files[path] = data
        return web.Response(status=204 if existed else 201)

    async def do_get(self, request: web.Request, path: str, _collection: bool) -> web.StreamResponse:
        if path not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[path])

    async def do_delete(self, request: web.Request, path: str, _collection: bool) -> web.StreamResponse:
        if path in self.files:
            del self.files[path]
            return web.Response(status=204)
        if path in self.collections:
            for member in [
                p for p in (*self.files, *self.collections) if p == path or p.startswith(path + "/")
            ]:
                self.files.pop(member, None)
                self.collections.discard(member)
            return web.Response(status=204)
        return web.Response(status=404)

    async def do_move(self, request: web.Request, path: str, _collection: bool) -> web.StreamResponse:
        destination = request.headers.get("Destination", "")
        if not destination.startswith(f"{request.scheme}://{request.host}/"):
            return web.Response(status=400, text="Destination must be an absolute URL on this server")
        target = unquote(destination.split("://", 1)[1].split("/", 1)[1]).rstrip("/")
        target = "/" + target
        if not self.parent_exists(target):
            return web.Response(status=409)
        existed = target in self.files
        if existed and request.headers.get("Overwrite", "T") != "T":
            return web.Response(status=412)
        if self.nextcloud and path.startswith(self.uploads + "/") and path.endswith("/.file"):
            upload = path.rsplit("/", 1)[0]
            names = sorted(
                (p for p in self.files if p.rsplit("/", 1)[0] == upload),
                key=lambda p: int(p.rsplit("/", 1)[1]),
            )
            sizes = [len(self.files[n]) for n in names]
            if any(size < self.chunk_min for size in sizes[:-1]):
                return web.Response(status=400, text="chunks too small")
            if request.headers.get("OC-Total-Length") not in (None, str(sum(sizes))):
                return web.Response(status=400, text="OC-Total-Length does not match")
            self.files[target] = b"".join(self.files[n] for n in names)
            self.assembled.append(sizes)
            await self.do_delete(request, upload, True)
        elif path in self.files:
            self.files[target] = self.files.pop(path)
        else:
            return web.Response(status=404)
        return web.Response(status=self.move_status or (204 if existed else 201))


@contextlib.asynccontextmanager
async def serve(app: web.Application, ssl_context: ssl.SSLContext | None = None):
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context)
    await site.start()
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def mini_dav(**kwargs):
    dav = MiniDav(**kwargs)
    async with serve(dav.app()) as origin:
        try:
            yield dav, origin
        finally:
            dav.release.set()  # lets a stalled handler end before the server shuts down


def stub_location(origin: str, path: str = "/dav/backups", **kwargs) -> WebdavLocation:
    kwargs.setdefault("timeout", 5.0)
    return WebdavLocation(name="stub", url=origin + quote(path), username=USER, password=PASSWORD, **kwargs)


# --- on the three real servers ---------------------------------------------------------------------

real_servers = pytest.mark.parametrize(
    "provider", DAV_PROVIDERS, indirect=True, ids=[p.id for p in DAV_PROVIDERS]
)


@real_servers
async def test_missing_nested_collections_are_created(provider):
    location = provider.location("nested")
    key = "backup_321/a b/c/d/ü/deep.tar"
    await location.put(key, chunks_of(b"deep"))
    await location.put("backup_321/a b/c/sibling.tar", chunks_of(b"x"))
    assert [o.key for o in await location.list()] == [
        "backup_321/a b/c/d/ü/deep.tar",
        "backup_321/a b/c/sibling.tar",
    ]
    assert await read_all(location, key) == b"deep"


@real_servers
async def test_a_missing_root_folder_is_reported_not_created(provider):
    location, folder = provider.location_and_folder("gone")
    shutil.rmtree(folder)
    with pytest.raises(LocationUnreachable, match="does not exist on the server"):
        await location.put("backup_321/x/y.tar", chunks_of(b"x"))
    with pytest.raises(LocationUnreachable, match="does not exist on the server"):
        await location.list()
    assert not folder.exists()


@real_servers
async def test_leftovers_of_interrupted_puts_are_hidden_and_cleaned_up(provider):
    location, folder = provider.location_and_folder("leftovers")
    await location.put("backup_321/i/kept.tar", chunks_of(b"kept"))
    leftover = folder / "backup_321" / "i" / "kept.tar.partial-0123456789ab"
    leftover.write_bytes(b"half")
    if provider.drops_privileges:
        shutil.chown(leftover, "www-data", "www-data")
    assert [o.key for o in await location.list()] == ["backup_321/i/kept.tar"]
    assert await location.cleanup_incomplete() == 1
    assert not leftover.exists()
    assert await location.cleanup_incomplete() == 0
    assert await read_all(location, "backup_321/i/kept.tar") == b"kept"


@real_servers
async def test_overwrite_and_usage_on_real_servers(provider):
    location = provider.location("usage")
    await location.put("backup_321/u/x.tar", chunks_of(b"1" * 10))
    await location.put("backup_321/u/x.tar", chunks_of(b"2" * 20))
    stored = await location.stat("backup_321/u/x.tar")
    assert stored is not None and stored.size == 20
    usage = await location.usage()
    assert usage is None or 0 <= usage.free_bytes <= usage.total_bytes


@pytest.mark.parametrize(
    "provider", [p for p in DAV_PROVIDERS if p.id == "webdav-wsgidav"], indirect=True, ids=["webdav-wsgidav"]
)
async def test_nextcloud_like_path_without_chunking_falls_back_to_plain_put(provider):
    location = provider.location("fallback")
    assert location.chunked_uploads is None
    await location.put("backup_321/n/x.tar", chunks_of(os.urandom(100_000)))
    assert location.chunked_uploads is False
    assert [o.key for o in await location.list()] == ["backup_321/n/x.tar"]
    assert await location.cleanup_incomplete() == 0


# --- status codes, time-outs and TLS against stubs ---------------------------------------------------


@pytest.mark.parametrize("status", [201, 204])
async def test_move_answered_201_or_204_both_succeed(status):
    async with mini_dav() as (dav, origin):
        dav.move_status = status
        location = stub_location(origin)
        stored = await location.put("backup_321/m/x.tar", chunks_of(b"moved"))
        assert stored.size == 5
        assert dav.files["/dav/backups/backup_321/m/x.tar"] == b"moved"
        moves = [headers for method, _, headers in dav.requests if method == "MOVE"]
        assert len(moves) == 1 and moves[0]["Overwrite"] == "T"
        assert moves[0]["Destination"] == f"{origin}/dav/backups/backup_321/m/x.tar"
        assert not any(".partial-" in p for p in dav.files)


@pytest.mark.parametrize(
    ("method", "status", "error"),
    [
        ("PUT", 507, LocationFull),
        ("PUT", 413, LocationFull),
        ("MOVE", 507, LocationFull),
        ("PUT", 403, LocationReadOnly),
        ("PROPFIND", 403, LocationAuthFailed),
        ("PUT", 503, LocationUnreachable),
        ("PUT", 500, LocationError),
    ],
)
async def test_status_codes_map_to_clear_errors(method, status, error):
    async with mini_dav() as (dav, origin):
        dav.statuses[method] = status
        location = stub_location(origin)
        with pytest.raises(error) as caught:
            await location.put("backup_321/s/x.tar", chunks_of(b"x" * 1000))
        assert "stub" in str(caught.value) and PASSWORD not in str(caught.value)
        assert str(status) in str(caught.value) or status == 403
        assert "/dav/backups/backup_321/s/x.tar" not in dav.files
        assert not any(".partial-" in p for p in dav.files)


async def test_wrong_password_fails_at_once_without_retries():
    async with mini_dav() as (dav, origin):
        location = WebdavLocation(name="stub", url=origin + "/dav/backups", username=USER, password="wrong")
        with pytest.raises(LocationAuthFailed, match="app password"):
            await location.put("backup_321/w/x.tar", chunks_of(b"x"))
        assert len(dav.requests) == 1
        with pytest.raises(LocationAuthFailed):
            await location.list()


async def test_redirect_is_reported_with_its_target():
    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=301, headers={"Location": "https://cloud.example.com/dav/backups/"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    async with serve(app) as origin:
        location = stub_location(origin)
        with pytest.raises(LocationError, match=r"redirected to https://cloud\.example\.com"):
            await location.list()


async def test_connection_refused_and_unknown_host_are_unreachable():
    location = WebdavLocation(name="stub", url=f"http://127.0.0.1:{free_port()}/dav", timeout=2)
    with pytest.raises(LocationUnreachable, match="could not connect"):
        await location.list()
    location = WebdavLocation(name="stub", url="https://nowhere.invalid/dav", timeout=2)
    with pytest.raises(LocationUnreachable, match=r"nowhere\.invalid could not be found"):
        await location.stat("backup_321/x.tar")


async def test_a_server_that_never_answers_times_out():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        location = WebdavLocation(name="stub", url=f"http://127.0.0.1:{port}/dav", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(LocationTimeout, match=r"did not answer within 0\.5 s"):
            await location.put("backup_321/t/x.tar", chunks_of(b"x"))
        assert time.monotonic() - started < 5
    finally:
        server.close()
        await server.wait_closed()


async def test_a_server_that_stops_taking_the_upload_times_out():
    block = os.urandom(1 << 20)

    async def big():
        for _ in range(64):
            yield block

    async with mini_dav() as (dav, origin):
        dav.stall_put = True
        location = stub_location(origin, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(LocationTimeout, match="uploading"):
            await location.put("backup_321/t/big.tar", big())
        assert time.monotonic() - started < 10
        assert "DELETE" in [method for method, _, _ in dav.requests]  # the temporary object is removed


async def test_a_failing_source_is_reraised_and_the_temporary_object_removed():
    async with mini_dav() as (dav, origin):
        location = stub_location(origin)
        with pytest.raises(SourceError):
            await location.put("backup_321/f/x.tar", chunks_of(os.urandom(300_000), fail_at=200_000))
        deletes = [path for method, path, _ in dav.requests if method == "DELETE"]
        assert len(deletes) == 1 and ".partial-" in deletes[0]
        assert dav.files == {}


def self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


async def test_tls_is_verified_by_default_and_can_be_turned_off(tmp_path):
    cert, key = self_signed()
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    dav = MiniDav()
    async with serve(dav.app(), context) as origin:
        assert origin.startswith("https://")
        checked = stub_location(origin)
        with pytest.raises(
            LocationUnreachable, match=r"the server's certificate is not trusted: .*verify_tls"
        ):
            await checked.put("backup_321/tls/x.tar", chunks_of(b"secret"))
        assert dav.requests == []  # nothing, not even the password, went to the untrusted server
        unchecked = stub_location(origin, verify_tls=False)
        await unchecked.put("backup_321/tls/x.tar", chunks_of(b"secret"))
        assert await read_all(unchecked, "backup_321/tls/x.tar") == b"secret"


@pytest.mark.parametrize("style", ["plain", "absolute", "lowercase", "sub-delims", "raw"])
async def test_hrefs_in_any_encoding_give_the_same_keys(style):
    async with mini_dav(href_style=style, root="/dav/my backups ü") as (_dav, origin):
        location = stub_location(origin, "/dav/my backups ü")
        await location.put(ODD_KEY, chunks_of(b"odd"))
        await location.put("backup_321/plain/a.tar", chunks_of(b"a"))
        assert [o.key for o in await location.list()] == ["backup_321/plain/a.tar", ODD_KEY]
        stored = await location.stat(ODD_KEY)
        assert stored is not None and stored.size == 3
        assert stored.modified == datetime.datetime(2026, 1, 12, 10, 0, tzinfo=datetime.UTC)
        assert await read_all(location, ODD_KEY) == b"odd"


async def test_latin1_hrefs_are_decoded():
    async with mini_dav(href_style="latin-1") as (_dav, origin):
        location = stub_location(origin)
        await location.put("backup_321/Sicherung über Nacht.tar", chunks_of(b"x"))
        assert [o.key for o in await location.list()] == ["backup_321/Sicherung über Nacht.tar"]


def test_href_decoding_and_children():
    assert decode_href("http://h:1/dav/a%20b/c%3bd%23e") == "/dav/a b/c;d#e"
    assert decode_href("/dav/raw#hash?q") == "/dav/raw#hash?q"
    assert decode_href("/dav/%C3%BC%c3%bc") == "/dav/üü"
    assert decode_href("/dav/%FC") == "/dav/ü"
    body = b"""<?xml version="1.0"?>
    <multistatus xmlns="DAV:">
      <response><href>https://proxy.example/prefix/dav/x/</href>
        <propstat><prop><resourcetype><collection/></resourcetype></prop><status>HTTP/1.1 200 OK</status></propstat>
      </response>
      <response><href>https://proxy.example/prefix/dav/x/a%26b.tar</href>
        <propstat><prop><getcontentlength>7</getcontentlength><resourcetype/></prop>
          <status>HTTP/1.1 200 OK</status></propstat>
        <propstat><prop><getlastmodified/></prop><status>HTTP/1.1 404 Not Found</status></propstat>
      </response>
    </multistatus>"""
    entries = parse_multistatus(body)
    assert [(e.path, e.is_collection, e.size, e.modified) for e in entries] == [
        ("/prefix/dav/x/", True, None, None),
        ("/prefix/dav/x/a&b.tar", False, 7, None),
    ]
    # hrefs under another prefix than the request (a proxy): the shortest is the collection
    assert [e.name for e in children("/dav/x/", entries)] == ["a&b.tar"]


async def test_usage_from_quota_properties():
    async with mini_dav() as (dav, origin):
        location = stub_location(origin)
        assert await location.usage() is None
        dav.quota = ("1000", "24")
        usage = await location.usage()
        assert usage is not None and (usage.free_bytes, usage.total_bytes) == (1000, 1024)
        dav.quota = ("-3", "24")  # Nextcloud: unlimited
        assert await location.usage() is None


async def test_keys_are_checked_before_anything_is_sent():
    location = WebdavLocation(name="x", url=f"http://127.0.0.1:{free_port()}/dav")
    for key in [
        "",
        "/abs.tar",
        "a//b.tar",
        "a/../b.tar",
        "../b.tar",
        "a/./b",
        "a/.hidden",
        "a/b\nc",
        "a/",
        "a/b.tar.partial-0123456789ab",
    ]:
        with pytest.raises(ValueError, match="key"):
            await location.stat(key)
        with pytest.raises(ValueError, match="key"):
            await location.delete(key)
        with pytest.raises(ValueError, match="key"):
            await location.put(key, chunks_of(b"x"))
        with pytest.raises(ValueError, match="key"):
            await read_all(location, key)


# --- Nextcloud's chunked upload v2 ----------------------------------------------------------------

NEXTCLOUD_FILES = f"/remote.php/dav/files/{USER}/Backups"


async def test_nextcloud_chunked_upload_assembles_the_object():
    chunk = 64 * 1024
    data = os.urandom(3 * chunk + 1234)
    async with mini_dav(root=NEXTCLOUD_FILES, nextcloud=True, chunk_min=chunk) as (dav, origin):
        location = stub_location(origin, NEXTCLOUD_FILES, nextcloud_chunk_size=chunk)
        stored = await location.put("backup_321/nc/big.tar", chunks_of(data, 50_000))
        assert stored.size == len(data)
        assert location.chunked_uploads is True
        assert dav.assembled == [[chunk, chunk, chunk, 1234]]
        assert dav.files[f"{NEXTCLOUD_FILES}/backup_321/nc/big.tar"] == data
        assert await read_all(location, "backup_321/nc/big.tar") == data
        # every chunked-upload request named the target; nothing went through a temporary name
        target = f"{origin}{NEXTCLOUD_FILES}/backup_321/nc/big.tar"
        upload_requests = [h for _, path, h in dav.requests if path.startswith(dav.uploads + "/")]
        assert len(upload_requests) == 6 and all(h["Destination"] == target for h in upload_requests)
        assert not any(".partial-" in path for _, path, _ in dav.requests)
        assert [p for p in dav.collections if p.startswith(dav.uploads + "/")] == []
        # an exact multiple of the chunk size, and an empty object
        await location.put("backup_321/nc/exact.tar", chunks_of(data[: 2 * chunk]))
        assert dav.assembled[-1] == [chunk, chunk]
        await location.put("backup_321/nc/empty.tar", chunks_of(b""))
        assert await read_all(location, "backup_321/nc/empty.tar") == b""
        assert [o.key for o in await location.list()] == [
            "backup_321/nc/big.tar",
            "backup_321/nc/empty.tar",
            "backup_321/nc/exact.tar",
        ]


async def test_nextcloud_chunked_upload_is_aborted_when_the_source_fails():
    chunk = 64 * 1024
    async with mini_dav(root=NEXTCLOUD_FILES, nextcloud=True, chunk_min=chunk) as (dav, origin):
        location = stub_location(origin, NEXTCLOUD_FILES, nextcloud_chunk_size=chunk)
        with pytest.raises(SourceError):
            await location.put("backup_321/nc/x.tar", chunks_of(os.urandom(300_000), 10_000, fail_at=200_000))
        assert [p for p in (*dav.files, *dav.collections) if p.startswith(dav.uploads + "/")] == []
        assert f"{NEXTCLOUD_FILES}/backup_321/nc/x.tar" not in dav.files
        # a leftover upload folder of ours (say, after a power cut) is removed by the clean-up
        dav.collections.add(f"{dav.uploads}/backup321-leftover")
        dav.collections.add(f"{dav.uploads}/someone-elses-upload")
        assert await location.cleanup_incomplete() == 1
        assert f"{dav.uploads}/someone-elses-upload" in dav.collections


# --- options ---------------------------------------------------------------------------------------


def options(**fields):
    return WebdavLocationOptions.model_validate({"kind": "webdav", "name": "Nextcloud", **fields})


def test_options_accept_a_nextcloud_url_and_build_a_location(caplog):
    parsed = options(
        url="https://cloud.example.com/remote.php/dav/files/alice/Home Assistant Backups",
        username="alice",
        password="app-password-xyz",
    )
    assert parsed.verify_tls is True and parsed.warnings() == []
    assert "app-password-xyz" not in repr(parsed)
    with caplog.at_level(logging.WARNING):
        location = build(parsed)
    assert caplog.records == []
    assert location.kind == "webdav" and location.offsite is True and location.name == "Nextcloud"
    assert location.url == "https://cloud.example.com/remote.php/dav/files/alice/Home Assistant Backups"
    assert location.chunked_uploads is None  # Nextcloud path: chunking is tried on the first put


def test_plain_http_is_accepted_with_a_warning(caplog):
    parsed = options(url="http://nas.local:5005/backups", username="bob", password="hunter2-pw")
    assert len(parsed.warnings()) == 1 and "unencrypted" in parsed.warnings()[0]
    with caplog.at_level(logging.WARNING):
        location = build(parsed)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "http://" in caplog.records[0].getMessage() and "hunter2" not in caplog.records[0].getMessage()
    assert location.chunked_uploads is False  # not a Nextcloud path
    assert "verify_tls" in options(url="https://nas.local/b", verify_tls=False).warnings()[0]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": "ftp://nas.local/backups"}, "must start with https://"),
        ({"url": "nas.local/backups"}, "must start with https://"),
        ({"url": "https:///backups"}, "must start with https://"),
        ({"url": "https://alice:secret@cloud.example.com/dav"}, "put them in username and password"),
        ({"url": "https://cloud.example.com/apps/files/?dir=/Backups"}, "web page"),
        ({"url": "https://cloud.example.com/dav/a?b"}, "must not contain '\\?' or '#'"),
        ({"url": "https://cloud.example.com/remote.php/dav/"}, "WebDAV root"),
        ({"url": "https://cloud.example.com/dav", "password": "pw"}, "set username too"),
        (
            {"url": "https://cloud.example.com/dav", "username": "a:b", "password": "pw"},
            "must not contain ':'",
        ),
        ({"url": "https://cloud.example.com/dav", "bucket": "x"}, "Extra inputs"),
    ],
)
def test_options_reject_with_a_message_for_the_user(fields, message):
    with pytest.raises(ValidationError, match=message):
        options(**fields)
