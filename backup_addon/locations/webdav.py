"""A folder on a WebDAV server: Nextcloud, ownCloud, Synology, or any RFC 4918 server."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import re
import socket
import uuid
import weakref
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from ..errors import (
    LocationAuthFailed,
    LocationError,
    LocationFull,
    LocationReadOnly,
    LocationTimeout,
    LocationUnreachable,
)
from .base import StoredObject, Usage, split_key
from .webdav_options import WebdavLocationOptions as WebdavLocationOptions
from .webdav_options import check_url

_LOGGER = logging.getLogger(__name__)

DAV = "{DAV:}"
# Temporary names are not hidden: nginx leaves hidden files out of PROPFIND answers, so
# cleanup_incomplete could not find them there.
TEMP_MARK = ".partial-"
TEMP_NAME = re.compile(r"^.+\.partial-[0-9a-f]{12}$")
UPLOAD_PREFIX = "backup321-"
READ_CHUNK = 1 << 20
# Nextcloud's chunked upload v2 wants chunks of 5 MB to 5 GB (the last may be smaller) and at most
# 10000 of them; 16 MiB keeps memory small and still allows objects of up to 156 GiB.
NEXTCLOUD_CHUNK = 16 << 20
NEXTCLOUD_MAX_CHUNKS = 10000
# A MOVE is a rename on most servers, but Nextcloud assembles chunks (and some servers copy) while
# the client waits for the answer; allow for that at a slow disk's pace.
ASSEMBLY_BYTES_PER_SECOND = 20 << 20
NEXTCLOUD_FILES = re.compile(r"^(?P<root>.*/remote\.php/dav)/files/(?P<user>[^/]+)(?:/|$)")
SCHEME_AND_HOST = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/]*")

PROPFIND_OBJECTS = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<d:propfind xmlns:d="DAV:"><d:prop>'
    b"<d:resourcetype/><d:getcontentlength/><d:getlastmodified/>"
    b"</d:prop></d:propfind>"
)
PROPFIND_QUOTA = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<d:propfind xmlns:d="DAV:"><d:prop>'
    b"<d:quota-available-bytes/><d:quota-used-bytes/>"
    b"</d:prop></d:propfind>"
)
XML_HEADERS = {"Content-Type": 'application/xml; charset="utf-8"'}


@dataclass(frozen=True, slots=True)
class _Entry:
    """One <response> of a PROPFIND answer."""

    path: str  # decoded, as the server named it
    is_collection: bool
    size: int | None
    modified: datetime | None
    quota_available: int | None
    quota_used: int | None

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]


def _check_key(key: str) -> tuple[str, ...]:
    parts = tuple(split_key(key))
    if TEMP_NAME.match(parts[-1]):
        raise ValueError(f"object key {key!r} looks like a temporary upload")
    return parts


def _segment(name: str) -> str:
    # Everything but RFC 3986 unreserved characters is percent-encoded, which every server decodes.
    return quote(name, safe="")


def decode_href(href: str) -> str:
    """The decoded path of a PROPFIND href, which may be an absolute URL or a path."""
    text = href.strip()
    # Split off scheme and host by hand: urlsplit would cut at a raw '#' or '?' that some servers
    # leave unencoded in file names.
    path = SCHEME_AND_HOST.sub("", text, count=1) or "/"
    try:
        return unquote(path, errors="strict")
    except UnicodeDecodeError:
        # A few servers encode names in Latin-1 rather than UTF-8.
        return unquote(path, encoding="latin-1")


def _int(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def _date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        parsed = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_multistatus(body: bytes) -> list[_Entry]:
    """The responses of a 207 Multi-Status body; raises ValueError when it is not one."""
    # The body comes from the server the user configured; ElementTree never resolves external
    # entities, and the bundled expat limits entity expansion.
    root = ET.fromstring(body)  # noqa: S314
    if root.tag != f"{DAV}multistatus":
        raise ValueError(f"expected a DAV:multistatus document, got {root.tag}")
    entries: list[_Entry] = []
    for response in root.iter(f"{DAV}response"):
        href = response.findtext(f"{DAV}href")
        if href is None:
            continue
        props: dict[str, ET.Element] = {}
        for propstat in response.iter(f"{DAV}propstat"):
            status = propstat.findtext(f"{DAV}status") or ""
            if " 200 " not in f"{status} ":
                continue
            for prop in propstat.iter(f"{DAV}prop"):
                for child in prop:
                    props[child.tag] = child
        kind = props.get(f"{DAV}resourcetype")
        path = decode_href(href)
        is_collection = kind is not None and kind.find(f"{DAV}collection") is not None
        entries.append(
            _Entry(
                path=path,
                is_collection=is_collection or (kind is None and path.endswith("/")),
                size=_int(_text(props, "getcontentlength")),
                modified=_date(_text(props, "getlastmodified")),
                quota_available=_int(_text(props, "quota-available-bytes")),
                quota_used=_int(_text(props, "quota-used-bytes")),
            )
        )
    return entries


def _text(props: dict[str, ET.Element], name: str) -> str | None:
    element = props.get(f"{DAV}{name}")
    return element.text if element is not None else None


def children(collection: str, entries: list[_Entry]) -> list[_Entry]:
    """The members of a collection in a Depth 1 answer, without the collection itself."""
    target = collection.rstrip("/")
    own = [e for e in entries if e.path.rstrip("/") == target]
    if not own and entries:
        # Behind some proxies hrefs carry another prefix; the collection is then the shortest
        # entry that is a prefix of all others.
        shortest = min(entries, key=lambda e: e.path.rstrip("/").count("/"))
        prefix = shortest.path.rstrip("/") + "/"
        if all(e is shortest or e.path.startswith(prefix) for e in entries):
            own = [shortest]
    if not own:
        return [e for e in entries if e.name]
    parent = own[0].path.rstrip("/")
    return [e for e in entries if e not in own and e.path.rstrip("/").rsplit("/", 1)[0] == parent and e.name]


class _Body:
    """The bytes of one upload, with a watchdog on the server taking them."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.size = 0
        self.source_error: BaseException | None = None

    async def stream(self, source: AsyncIterator[bytes], deadline: asyncio.Timeout) -> AsyncIterator[bytes]:
        """Yield the source's chunks; a chunk the server does not take in time trips the deadline."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                chunk = await anext(source)
            except StopAsyncIteration:
                return
            except Exception as err:
                # aiohttp wraps errors of the body in a connection error; keep the real one.
                self.source_error = err
                raise
            if not chunk:
                continue
            self.size += len(chunk)
            # Sending has no time-out of its own in aiohttp (sock_read starts after the body), and a
            # server that stopped reading would block the upload forever.
            _reschedule(deadline, loop.time() + self.timeout)
            yield chunk
            _reschedule(deadline, None)


def _reschedule(deadline: asyncio.Timeout, when: float | None) -> None:
    # aiohttp may still pull a chunk after an early answer ended the request and its deadline.
    with contextlib.suppress(RuntimeError):
        deadline.reschedule(when)


class _Sockets:
    """The sockets of one session, so that a failed upload can drop its connection at once."""

    def __init__(self) -> None:
        self._open: weakref.WeakSet[socket.socket] = weakref.WeakSet()

    def create(self, addr_info: tuple[Any, ...]) -> socket.socket:
        """A socket for aiohttp's connector (its socket_factory)."""
        family, kind, proto = addr_info[:3]
        sock = socket.socket(family=family, type=kind, proto=proto)
        self._open.add(sock)
        return sock

    def drop(self) -> None:
        """Shut every socket down, failing whatever is still queued on it."""
        for sock in builtins.list(self._open):
            if sock.fileno() != -1:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


async def _pieces(pieces: list[bytes]) -> AsyncIterator[bytes]:
    while pieces:
        yield pieces.pop(0)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


class WebdavLocation:
    """Copies as files under a folder (collection) on a WebDAV server, which must already exist.

    Uploads go to a temporary name (<name>.partial-<random>) in the same folder and are renamed
    (MOVE) when complete; on Nextcloud they use its chunked upload v2 when the server offers it.
    """

    kind = "webdav"

    def __init__(
        self,
        *,
        name: str,
        url: str,
        username: str = "",
        password: str = "",
        verify_tls: bool = True,
        offsite: bool = True,
        timeout: float = 60.0,
        nextcloud_chunk_size: int = NEXTCLOUD_CHUNK,
    ) -> None:
        base = check_url(url)
        if ":" in username:
            raise ValueError("a WebDAV user name cannot contain ':'")
        self.name = name
        self.offsite = offsite
        self.timeout = timeout
        self._username = username
        self._password = password
        self._verify_tls = verify_tls
        self._base_path = base.raw_path.rstrip("/")
        self._origin = base.origin()
        self.url = self._origin.with_path(self._base_path or "/", encoded=True).human_repr()
        nextcloud = NEXTCLOUD_FILES.match(self._base_path + "/")
        self._uploads = f"{nextcloud['root']}/uploads/{nextcloud['user']}/" if nextcloud else None
        self._chunk_size = nextcloud_chunk_size
        self._chunking: bool | None = None if self._uploads else False
        self._background: set[asyncio.Task[None]] = set()

    @property
    def chunked_uploads(self) -> bool | None:
        """Whether puts use Nextcloud's chunked upload: True, False, or None before the first put."""
        return self._chunking

    # --- URLs -----------------------------------------------------------------------------------

    def _url(self, raw_path: str) -> URL:
        return self._origin.with_path(raw_path, encoded=True)

    def _path(self, parts: tuple[str, ...], *, collection: bool = False) -> str:
        path = "/".join([self._base_path, *(_segment(p) for p in parts)])
        return path + "/" if collection or not parts else path

    # --- HTTP -----------------------------------------------------------------------------------

    def _session(self, sockets: _Sockets | None = None) -> aiohttp.ClientSession:
        headers = {"User-Agent": "3-2-1-Backup (Home Assistant add-on)"}
        if self._username:
            headers["Authorization"] = aiohttp.encode_basic_auth(self._username, self._password)
        return aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.timeout),
            connector=aiohttp.TCPConnector(
                ssl=self._verify_tls, socket_factory=sockets.create if sockets is not None else None
            ),
        )

    def _network_error(self, err: BaseException, action: str) -> LocationError:
        host = self._origin.host
        if isinstance(err, aiohttp.ClientConnectorCertificateError):
            cert = err.certificate_error
            reason = getattr(cert, "verify_message", None) or str(cert)
            return LocationUnreachable(
                self.name,
                f"the server's certificate is not trusted: {reason} (while {action}); give the server a "
                "certificate from a trusted authority (e.g. Let's Encrypt), or set verify_tls to false "
                "if you trust the network between Home Assistant and the server",
            )
        if isinstance(err, aiohttp.ClientSSLError):
            return LocationUnreachable(
                self.name,
                f"the secure connection to {host} failed while {action}: {err}; check the url "
                "(https:// or http://) and the port",
            )
        if isinstance(err, TimeoutError):
            return LocationTimeout(
                self.name,
                f"the server {host} did not answer within {self.timeout:g} s while {action}; "
                "check it is running and reachable",
            )
        if isinstance(err, aiohttp.ClientConnectorDNSError):
            return LocationUnreachable(
                self.name, f"the server name {host} could not be found while {action}; check the url"
            )
        if isinstance(err, aiohttp.ClientConnectorError):
            return LocationUnreachable(
                self.name,
                f"could not connect to {host} port {err.port} while {action} ({err.strerror or err}); "
                "check the server is running and the url, including the port",
            )
        if isinstance(err, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
            return LocationUnreachable(
                self.name, f"the connection to {host} broke while {action} ({err}); try again later"
            )
        if isinstance(err, UnicodeError):
            # The url's host passed the options but cannot be put in IDNA form to be looked up.
            return LocationError(
                self.name,
                f"the server name {host!r} in the url cannot be looked up while {action}; correct the url, "
                "e.g. https://cloud.example.com/remote.php/dav/files/alice/Backups",
            )
        if isinstance(err, ValueError):
            # Retrying cannot mend a request aiohttp or yarl refuse to build (aiohttp's InvalidURL too).
            return LocationError(
                self.name, f"the request could not be made while {action} ({str(err)[:200]}); check the url"
            )
        return LocationError(self.name, f"WebDAV request failed while {action}: {err}")

    def _status_error(
        self, status: int, reason: str | None, action: str, *, writing: bool, headers: CIMultiDictProxy[str]
    ) -> LocationError:
        answer = f"{status} {reason or ''}".strip()
        if status == 401:
            return LocationAuthFailed(
                self.name,
                f"the server refused the user name or password while {action}; check username and "
                "password (for Nextcloud and ownCloud, create an app password and use that)",
            )
        if status == 403:
            if writing:
                return LocationReadOnly(
                    self.name,
                    f"the server does not let {self._username or 'this user'} write there while {action} "
                    f"(403 Forbidden); check the user may write to {self.url}",
                )
            return LocationAuthFailed(
                self.name,
                f"the server does not let {self._username or 'this user'} read there while {action} "
                f"(403 Forbidden); check the user may read {self.url}",
            )
        if status in (413, 507):
            return LocationFull(
                self.name,
                f"the server refused the data while {action} ({answer}): it is out of space or the "
                "upload is larger than the server allows; free space, raise the quota, or raise the "
                "server's upload size limit",
            )
        if status in (301, 302, 303, 307, 308):
            target = headers.get("Location", "another address")
            return LocationError(
                self.name,
                f"the server redirected to {target} while {action}; put the final address in the url "
                "(often https:// instead of http://, or with a trailing folder name)",
            )
        if status == 423:
            return LocationError(self.name, f"the file is locked on the server while {action}; try later")
        if status in (502, 503, 504):
            return LocationUnreachable(
                self.name, f"the server answered {answer} while {action}; it may be down or in maintenance"
            )
        if status == 405 and writing:
            return LocationReadOnly(
                self.name,
                f"the server does not allow this while {action} ({answer}); check that WebDAV writing "
                "is enabled for the folder",
            )
        return LocationError(self.name, f"the server answered {answer} while {action}")

    async def _call(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        action: str,
        *,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        read_timeout: float | None = None,
    ) -> tuple[int, bytes, CIMultiDictProxy[str], str | None]:
        """Send a request with a small body; return status, body, headers and reason."""
        # The session's time-outs apply unless this request needs longer (timeout=None would mean none).
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.timeout, sock_read=read_timeout or self.timeout
        )
        try:
            async with session.request(
                method, url, headers=headers, data=data, allow_redirects=False, timeout=timeout
            ) as resp:
                return resp.status, await resp.read(), resp.headers, resp.reason
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            raise self._network_error(err, action) from err

    async def _propfind(
        self,
        session: aiohttp.ClientSession,
        raw_path: str,
        depth: int,
        action: str,
        body: bytes = PROPFIND_OBJECTS,
    ) -> list[_Entry] | None:
        """The entries of a PROPFIND, or None when the resource does not exist."""
        headers = {"Depth": str(depth), **XML_HEADERS}
        status, text, resp_headers, reason = await self._call(
            session, "PROPFIND", self._url(raw_path), action, headers=headers, data=body
        )
        if status == 404:
            return None
        if status != 207:
            raise self._status_error(status, reason, action, writing=False, headers=resp_headers)
        try:
            return parse_multistatus(text)
        except (ET.ParseError, ValueError) as err:
            raise LocationError(
                self.name,
                f"the server's answer was not WebDAV while {action} ({err}); check the url points at a "
                "WebDAV folder",
            ) from err

    def _missing_root(self) -> LocationUnreachable:
        return LocationUnreachable(
            self.name,
            f"the folder {self.url} does not exist on the server; create it (for example in the "
            "server's web interface) or correct the url",
        )

    async def _send(
        self,
        session: aiohttp.ClientSession,
        url: URL,
        source: AsyncIterator[bytes],
        body: _Body,
        action: str,
        headers: dict[str, str] | None = None,
    ) -> CIMultiDictProxy[str]:
        """PUT streamed bytes, with a time-out on the server taking them; return the answer's headers."""
        try:
            async with asyncio.timeout(None) as deadline:
                async with session.put(
                    url, data=body.stream(source, deadline), headers=headers, allow_redirects=False
                ) as resp:
                    status, reason, resp_headers = resp.status, resp.reason, resp.headers
                    await resp.read()
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            if body.source_error is not None:
                raise body.source_error from None
            raise self._network_error(err, action) from err
        if body.source_error is not None:
            raise body.source_error
        if status not in (200, 201, 204):
            raise self._status_error(status, reason, action, writing=True, headers=resp_headers)
        return resp_headers

    async def _move(
        self, session: aiohttp.ClientSession, source: URL, target: str, size: int, action: str, **extra: str
    ) -> None:
        headers = {"Destination": target, "Overwrite": "T", **extra}
        wait = self.timeout + size / ASSEMBLY_BYTES_PER_SECOND
        status, _, resp_headers, reason = await self._call(
            session, "MOVE", source, action, headers=headers, read_timeout=wait
        )
        if status not in (200, 201, 204):
            raise self._status_error(status, reason, action, writing=True, headers=resp_headers)

    async def _discard(self, url: URL) -> None:
        """Delete a leftover best-effort, even when the caller is being cancelled."""
        task = asyncio.create_task(self._delete_quietly(url))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        await asyncio.shield(task)

    async def _delete_quietly(self, url: URL) -> None:
        # A session of its own: the put's session is closed while this runs on after a cancel.
        try:
            async with self._session() as session, session.delete(url, allow_redirects=False) as resp:
                await resp.read()
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            _LOGGER.debug("Could not remove %s on %s: %s", url.path, self.name, err)

    async def _ensure_parent(
        self, session: aiohttp.ClientSession, parts: tuple[str, ...], action: str
    ) -> None:
        """Make sure the collections above an object exist, creating missing ones."""
        parent = parts[:-1]
        if await self._propfind(session, self._path(parent, collection=True), 0, action) is not None:
            return
        if not parent:
            raise self._missing_root()
        for depth in range(1, len(parent) + 1):
            raw = self._path(parent[:depth], collection=True)
            status, _, headers, reason = await self._call(session, "MKCOL", self._url(raw), action)
            if status == 409 and depth == 1:
                raise self._missing_root()
            if status in (201, 405):  # 405: it exists already
                continue
            # A concurrent put may have made it a moment ago: Apache then answers 403 and WsgiDAV
            # 500, so look before giving up.
            if status in (401, 507) or await self._propfind(session, raw, 0, action) is None:
                raise self._status_error(status, reason, action, writing=True, headers=headers)

    # --- Location -------------------------------------------------------------------------------

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> StoredObject:
        parts = _check_key(key)
        action = f"uploading {key}"
        source = aiter(chunks)
        sockets = _Sockets()
        try:
            async with self._session(sockets) as session:
                await self._ensure_parent(session, parts, action)
                if self._chunking is not False:
                    stored = await self._put_chunked(session, key, parts, source, action)
                    if stored is not None:
                        return stored
                return await self._put_plain(session, key, parts, source, action)
        except BaseException:
            # After a failed upload megabytes may still be queued for a server that stopped
            # reading, and asyncio keeps such a connection open until they drain: cut it now.
            sockets.drop()
            raise

    async def _put_plain(
        self,
        session: aiohttp.ClientSession,
        key: str,
        parts: tuple[str, ...],
        source: AsyncIterator[bytes],
        action: str,
    ) -> StoredObject:
        final = self._url(self._path(parts))
        temp_name = f"{parts[-1]}{TEMP_MARK}{uuid.uuid4().hex[:12]}"
        temp = self._url(self._path((*parts[:-1], temp_name)))
        body = _Body(self.timeout)
        try:
            answer = await self._send(session, temp, source, body, action)
            target = str(final)
            if answer.get("Server", "").startswith("WsgiDAV") and any(ch in parts[-1] for ch in ";?"):
                # WsgiDAV decodes the Destination header before splitting it as a URL, so a ';' in
                # the last segment starts "parameters" and a '?' a query; a trailing '/' keeps the
                # ';' in the path (WsgiDAV drops the '/' again), and nothing saves a '?'.
                if "?" in parts[-1]:
                    raise LocationError(
                        self.name, f"this WsgiDAV server cannot store names with '?' such as {key}"
                    )
                target += "/"
            await self._move(session, temp, target, body.size, action)
        except BaseException:
            await self._discard(temp)
            raise
        return StoredObject(key=key, size=body.size, modified=datetime.now(UTC))

    async def _put_chunked(
        self,
        session: aiohttp.ClientSession,
        key: str,
        parts: tuple[str, ...],
        source: AsyncIterator[bytes],
        action: str,
    ) -> StoredObject | None:
        """Nextcloud's chunked upload v2; None when the server does not offer it."""
        assert self._uploads is not None
        final = self._url(self._path(parts))
        destination = {"Destination": str(final)}
        upload = self._url(f"{self._uploads}{UPLOAD_PREFIX}{uuid.uuid4().hex}/")
        status, _, headers, reason = await self._call(session, "MKCOL", upload, action, headers=destination)
        if status in (401, 507):
            raise self._status_error(status, reason, action, writing=True, headers=headers)
        if status != 201:
            # Not Nextcloud (or an old one): wsgidav and others serve the files path only.
            _LOGGER.debug("%s: no chunked upload (MKCOL answered %s); using plain PUT", self.name, status)
            self._chunking = False
            return None
        self._chunking = True
        size = 0
        try:
            carry = b""
            ended = False
            number = 0
            while not ended:
                pieces, got, carry, ended = await _read_up_to(source, self._chunk_size, carry)
                if number == 0 and ended and got == 0:
                    # An empty object needs no chunks; a plain PUT is the well-trodden way.
                    await self._discard(upload)
                    return await self._put_plain(session, key, parts, _nothing(), action)
                if got == 0:
                    break
                number += 1
                if number > NEXTCLOUD_MAX_CHUNKS:
                    raise LocationError(
                        self.name,
                        f"{key} is larger than Nextcloud's chunked upload allows "
                        f"({NEXTCLOUD_MAX_CHUNKS} chunks of {self._chunk_size >> 20} MiB)",
                    )
                body = _Body(self.timeout)
                chunk_url = upload.joinpath(f"{number:05d}", encoded=True)
                await self._send(
                    session,
                    chunk_url,
                    _pieces(pieces),
                    body,
                    action,
                    {**destination, "Content-Length": str(got)},
                )
                size += got
            await self._move(
                session,
                upload.joinpath(".file", encoded=True),
                str(final),
                size,
                action,
                **{"OC-Total-Length": str(size)},
            )
        except BaseException:
            await self._discard(upload)
            raise
        return StoredObject(key=key, size=size, modified=datetime.now(UTC))

    async def open(self, key: str) -> AsyncIterator[bytes]:
        parts = _check_key(key)
        action = f"reading {key}"
        async with self._session() as session:
            try:
                async with session.get(self._url(self._path(parts)), allow_redirects=False) as resp:
                    if resp.status == 404:
                        raise LocationError(self.name, f"{key} is not on the server (404 Not Found)")
                    if resp.status != 200:
                        raise self._status_error(
                            resp.status, resp.reason, action, writing=False, headers=resp.headers
                        )
                    async for chunk in resp.content.iter_chunked(READ_CHUNK):
                        yield chunk
            except (aiohttp.ClientError, TimeoutError, ValueError) as err:
                raise self._network_error(err, action) from err

    async def stat(self, key: str) -> StoredObject | None:
        parts = _check_key(key)
        async with self._session() as session:
            entries = await self._propfind(session, self._path(parts), 0, f"checking {key}")
        files = [e for e in (entries or []) if not e.is_collection]
        if not files:
            return None
        return StoredObject(key=key, size=files[0].size or 0, modified=files[0].modified or datetime.now(UTC))

    async def _walk(
        self, session: aiohttp.ClientSession, action: str
    ) -> AsyncIterator[tuple[tuple[str, ...], _Entry]]:
        """Every file below the root, hidden ones included, with its path as parts."""
        pending: builtins.list[tuple[str, ...]] = [()]
        while pending:
            parts = pending.pop()
            raw = self._path(parts, collection=True)
            entries = await self._propfind(session, raw, 1, action)
            if entries is None:
                if not parts:
                    raise self._missing_root()
                continue  # removed while we walked
            for entry in children(unquote(raw), entries):
                if entry.is_collection:
                    # Hidden folders hold no objects (keys have no hidden parts), only server data.
                    if not entry.name.startswith(".") and len(parts) < 32:
                        pending.append((*parts, entry.name))
                else:
                    yield (*parts, entry.name), entry

    async def list(self) -> builtins.list[StoredObject]:
        found: builtins.list[StoredObject] = []
        async with self._session() as session:
            async for parts, entry in self._walk(session, "listing the folder"):
                if parts[-1].startswith(".") or TEMP_NAME.match(parts[-1]):
                    continue  # the server's own hidden files, and unfinished uploads
                modified = entry.modified or datetime.now(UTC)
                found.append(StoredObject(key="/".join(parts), size=entry.size or 0, modified=modified))
        return sorted(found, key=lambda o: o.key)

    async def delete(self, key: str) -> None:
        parts = _check_key(key)
        action = f"deleting {key}"
        async with self._session() as session:
            status, _, headers, reason = await self._call(
                session, "DELETE", self._url(self._path(parts)), action
            )
        if status not in (200, 202, 204, 404):
            raise self._status_error(status, reason, action, writing=True, headers=headers)

    async def usage(self) -> Usage | None:
        async with self._session() as session:
            entries = await self._propfind(session, self._path(()), 0, "reading free space", PROPFIND_QUOTA)
        if entries is None:
            raise self._missing_root()
        if not entries:
            return None
        available, used = entries[0].quota_available, entries[0].quota_used
        # Nextcloud reports negative numbers for "unlimited" and "unknown".
        if available is None or available < 0:
            return None
        return Usage(free_bytes=available, total_bytes=available + max(used or 0, 0))

    async def cleanup_incomplete(self) -> int:
        removed = 0
        action = "removing unfinished uploads"
        async with self._session() as session:
            async for parts, _entry in self._walk(session, action):
                if TEMP_NAME.match(parts[-1]):
                    await self._remove(session, self._url(self._path(parts)), action)
                    removed += 1
            if self._uploads is not None and self._chunking is not False:
                removed += await self._cleanup_uploads(session, action)
        return removed

    async def _cleanup_uploads(self, session: aiohttp.ClientSession, action: str) -> int:
        assert self._uploads is not None
        headers = {"Depth": "1", **XML_HEADERS}
        status, text, resp_headers, reason = await self._call(
            session, "PROPFIND", self._url(self._uploads), action, headers=headers, data=PROPFIND_OBJECTS
        )
        if status in (403, 404, 405, 501):
            return 0  # no Nextcloud upload area here
        if status != 207:
            raise self._status_error(status, reason, action, writing=False, headers=resp_headers)
        removed = 0
        try:
            entries = parse_multistatus(text)
        except (ET.ParseError, ValueError):
            return 0
        for entry in children(unquote(self._uploads), entries):
            if entry.is_collection and entry.name.startswith(UPLOAD_PREFIX):
                await self._remove(session, self._url(f"{self._uploads}{_segment(entry.name)}/"), action)
                removed += 1
        return removed

    async def _remove(self, session: aiohttp.ClientSession, url: URL, action: str) -> None:
        status, _, headers, reason = await self._call(session, "DELETE", url, action)
        if status not in (200, 202, 204, 404):
            raise self._status_error(status, reason, action, writing=True, headers=headers)


async def _read_up_to(
    source: AsyncIterator[bytes], limit: int, carry: bytes
) -> tuple[builtins.list[bytes], int, bytes, bool]:
    """Collect up to limit bytes; return the pieces, their size, the overflow and whether the source ended."""
    pieces: builtins.list[bytes] = [carry] if carry else []
    got = len(carry)
    while got < limit:
        try:
            chunk = await anext(source)
        except StopAsyncIteration:
            return pieces, got, b"", True
        pieces.append(chunk)
        got += len(chunk)
    overflow = got - limit
    if overflow:
        last = pieces.pop()
        pieces.append(last[: len(last) - overflow])
        return pieces, limit, last[len(last) - overflow :], False
    return pieces, got, b"", False


def build(options: WebdavLocationOptions) -> WebdavLocation:
    """The location an entry of the `locations` option describes."""
    for warning in options.warnings():
        _LOGGER.warning("%s", warning)
    return WebdavLocation(
        name=options.name,
        url=options.url,
        username=options.username,
        password=options.password,
        verify_tls=options.verify_tls,
    )
