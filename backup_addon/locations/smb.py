"""An SMB2/3 share reached directly: a Windows shared folder, a NAS share, a Samba server."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar, cast

import smbclient  # type: ignore[import-untyped]
from smbprotocol.connection import Connection  # type: ignore[import-untyped]
from smbprotocol.exceptions import (  # type: ignore[import-untyped]
    SMBAuthenticationError,
    SMBConnectionClosed,
    SMBException,
    SMBOSError,
    SMBResponseException,
)
from smbprotocol.tree import TreeConnect  # type: ignore[import-untyped]

from ..errors import (
    LocationAuthFailed,
    LocationError,
    LocationFull,
    LocationReadOnly,
    LocationTimeout,
    LocationUnreachable,
)
from .base import StoredObject, Usage
from .smb_options import SmbLocationOptions as SmbLocationOptions
from .smb_options import check_key as check_key
from .smb_options import folder_parts

T = TypeVar("T")

PARTIAL_MARK = ".partial-"
DEFAULT_TIMEOUT = 60.0
# Small writes are gathered into one SMB write of this size: fewer round trips, constant memory.
WRITE_CHUNK = 1 << 20
READ_CHUNK = 1 << 20
FLUSH_PATIENCE = 5.0

# NTSTATUS codes (MS-ERREF 2.3) this module tells apart; smbprotocol's NtStatus lacks some of them.
STATUS_ACCESS_DENIED = 0xC0000022
STATUS_OBJECT_NAME_INVALID = 0xC0000033
STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
STATUS_OBJECT_PATH_NOT_FOUND = 0xC000003A
STATUS_SHARING_VIOLATION = 0xC0000043
STATUS_QUOTA_EXCEEDED = 0xC0000044
STATUS_DISK_FULL = 0xC000007F
STATUS_MEDIA_WRITE_PROTECTED = 0xC00000A2
STATUS_NETWORK_NAME_DELETED = 0xC00000C9
STATUS_NETWORK_ACCESS_DENIED = 0xC00000CA
STATUS_BAD_NETWORK_NAME = 0xC00000CC
STATUS_USER_SESSION_DELETED = 0xC0000203
STATUS_NOT_FOUND = 0xC0000225
LOGON_REFUSED = frozenset(
    {
        0xC0000064,  # NO_SUCH_USER
        0xC000006A,  # WRONG_PASSWORD
        0xC000006D,  # LOGON_FAILURE
        0xC000006E,  # ACCOUNT_RESTRICTION
        0xC000006F,  # INVALID_LOGON_HOURS
        0xC0000070,  # INVALID_WORKSTATION
        0xC0000071,  # PASSWORD_EXPIRED
        0xC0000072,  # ACCOUNT_DISABLED
        0xC0000193,  # ACCOUNT_EXPIRED
        0xC0000224,  # PASSWORD_MUST_CHANGE
        0xC0000234,  # ACCOUNT_LOCKED_OUT
        STATUS_ACCESS_DENIED,
    }
)
NOT_FOUND = frozenset({STATUS_OBJECT_NAME_NOT_FOUND, STATUS_OBJECT_PATH_NOT_FOUND, STATUS_NOT_FOUND})
# The server dropped our session or tree: the cached connection is useless now.
SESSION_GONE = frozenset({STATUS_NETWORK_NAME_DELETED, STATUS_USER_SESSION_DELETED})


def build(options: SmbLocationOptions) -> SmbLocation:
    """The location an `smb` entry of the options describes."""
    return SmbLocation(
        name=options.name,
        server=options.server,
        port=options.port,
        share=options.share,
        folder=options.folder,
        username=options.username,
        password=options.password,
        domain=options.domain,
        require_encryption=options.require_encryption,
    )


class _Abandoned(Exception):
    """The caller gave up on this call before it started; it must not run late."""


def _status(err: BaseException) -> int | None:
    if isinstance(err, SMBOSError):
        return cast(int, err.ntstatus)
    if isinstance(err, SMBResponseException):
        return cast(int, err.status)
    return None


def _status_name(err: BaseException) -> str:
    status = _status(err)
    return f"NTSTATUS 0x{status:08X}" if status is not None else type(err).__name__


def _missing(err: BaseException) -> bool:
    return _status(err) in NOT_FOUND


def _write_all(handle: Any, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        # A raw SMB write stores at most what the server's limits and credits allow.
        written = cast(int, handle.write(view))
        view = view[written:]


def _read(handle: Any) -> bytes:
    return cast(bytes, handle.read(READ_CHUNK))


def _finish(handle: Any) -> None:
    """Ask the server to store the file durably, then close it."""
    handle.flush()
    handle.close()


def _close_quietly(handle: Any) -> None:
    with contextlib.suppress(SMBException, OSError, ValueError):
        handle.close()


def _forget(handle: Any) -> None:
    """Treat a handle as closed even when its close could not reach the server."""
    # Once the connection is gone the server has dropped the handle; without this, smbclient
    # would warn about an unclosed handle when it is garbage collected.
    fd = getattr(handle, "fd", None)
    if fd is not None and getattr(fd, "_connected", False):
        fd._connected = False


def _shutdown(connections: list[Any]) -> None:
    for connection in connections:
        # Shutting the socket down (not close(), which waits for a lock a stuck sender holds)
        # wakes every thread blocked on this connection; smbprotocol then closes it itself.
        sock = getattr(getattr(connection, "transport", None), "_sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class SmbLocation:
    """Copies as files under a folder of an SMB share, written by the add-on itself.

    Every location keeps its own connection cache, so two locations on one server never share a
    session or its credentials, and closing one cannot break the other.
    """

    kind = "smb"

    def __init__(
        self,
        *,
        name: str,
        server: str,
        share: str,
        username: str,
        password: str,
        port: int = 445,
        folder: str = "",
        domain: str = "",
        require_encryption: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        offsite: bool = False,
    ) -> None:
        if not server or "\\" in server or "/" in server:
            raise ValueError(f"invalid server {server!r}")
        if not share or "\\" in share or "/" in share:
            raise ValueError(f"invalid share {share!r}")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.name = name
        self.server = server
        self.port = port
        self.share = share
        self.folder = "/".join(folder_parts(folder))
        self.username = username
        self.require_encryption = require_encryption
        self.timeout = timeout
        self.offsite = offsite
        self._logon = f"{domain}\\{username}" if domain else username
        self._password = password
        self._share_unc = f"\\\\{server}\\{share}"
        self._root_unc = "\\".join([self._share_unc, *folder_parts(folder)])
        self._cache: dict[str, Any] = {}
        # One call at a time on this location's connection: smbclient reads credits and picks a
        # write size before sending, which concurrent callers could invalidate.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SmbLocation(name={self.name!r}, unc={self._root_unc!r}, port={self.port})"

    @property
    def _where(self) -> str:
        return f"share {self._root_unc}"

    def _kwargs(self) -> dict[str, Any]:
        return {
            "username": self._logon,
            "password": self._password,
            "port": self.port,
            "encrypt": True if self.require_encryption else None,
            "connection_timeout": self.timeout,
            "connection_cache": self._cache,
        }

    def _unc(self, parts: builtins.list[str]) -> str:
        return "\\".join([self._root_unc, *parts])

    # -- connection handling ------------------------------------------------------------------

    def _abort(self) -> None:
        """Drop this location's connections at once, without waiting for the server."""
        connections = list(self._cache.values())
        self._cache.clear()
        _shutdown(connections)

    def _connect(self) -> Any:
        """Log on and connect the share, unless this location's connection is already up."""
        try:
            # smbclient's own pool key: path calls then find and reuse this connection.
            key = f"{self.server.lower()}:{self.port}"
            connection = self._cache.get(key)
            if connection is None or not connection.transport.connected:
                connection = Connection(
                    smbclient.ClientConfig().client_guid, self.server, self.port, require_signing=True
                )
                connection.connect(timeout=self.timeout)
                self._cache[key] = connection
            # Encrypt whenever the server can (SMB3); require_encryption makes it a must.
            encrypt = True if self.require_encryption or connection.supports_encryption else None
            session = smbclient.register_session(
                self.server,
                username=self._logon,
                password=self._password,
                port=self.port,
                encrypt=encrypt,
                connection_timeout=self.timeout,
                connection_cache=self._cache,
            )
        except Exception as err:
            self._abort()
            raise self._connect_error(err, "logging on") from err
        tree = next((t for t in session.tree_connect_table.values() if t.share_name == self._share_unc), None)
        if tree is None:
            tree = TreeConnect(session, self._share_unc)
            try:
                tree.connect(require_secure_negotiate=smbclient.ClientConfig().require_secure_negotiate)
            except Exception as err:
                if _status(err) is None:
                    self._abort()
                raise self._connect_error(err, "connecting to the share") from err
        return session

    def _connect_error(self, err: Exception, action: str) -> LocationError:
        status = _status(err)
        server = f"server {self.server}"
        if status == STATUS_BAD_NETWORK_NAME:
            return LocationUnreachable(
                self.name,
                f"the share {self.share} does not exist on {server}; check the share's name "
                "(it is the part after the server, e.g. backups in \\\\nas\\backups)",
            )
        if status in (STATUS_ACCESS_DENIED, STATUS_NETWORK_ACCESS_DENIED) and action != "logging on":
            return LocationAuthFailed(
                self.name,
                f"{server} does not let user {self.username} use the share {self.share}; "
                "give that user access to the share on the server",
            )
        if status in LOGON_REFUSED or isinstance(err, SMBAuthenticationError):
            return LocationAuthFailed(
                self.name,
                f"{server} refused the user name or password of {self.username}; "
                "check username, password and domain in the add-on's options",
            )
        if isinstance(err, SMBException) and "guest" in str(err):
            return LocationAuthFailed(
                self.name,
                f"{server} logged user {self.username} on as a guest, which means it does not know that "
                "user name or password; check them",
            )
        if isinstance(err, SMBException) and "does not support" in str(err) and "encrypt" in str(err):
            return LocationError(
                self.name,
                f"{server} does not offer SMB3 encryption; enable SMB3 on the server, "
                "or turn off require_encryption",
            )
        return self._error(err, action)

    def _error(self, err: BaseException, action: str, *, writing: bool = False) -> LocationError:
        """Turn anything smbprotocol raised into a message for the user; reset broken connections."""
        status = _status(err)
        where = self._where
        if status is not None:
            if status == STATUS_BAD_NETWORK_NAME:
                return self._connect_error(cast(Exception, err), action)
            if status in (STATUS_DISK_FULL, STATUS_QUOTA_EXCEEDED):
                return LocationFull(
                    self.name, f"{where} is full while {action}; free some space on the server"
                )
            if status == STATUS_MEDIA_WRITE_PROTECTED or (writing and status == STATUS_ACCESS_DENIED):
                return LocationReadOnly(
                    self.name,
                    f"{where} cannot be written while {action}; give user {self.username} write access "
                    "to the share and folder on the server",
                )
            if status == STATUS_ACCESS_DENIED:
                return LocationError(
                    self.name, f"access denied while {action} on {where}; check user {self.username}'s rights"
                )
            if status in NOT_FOUND:
                return LocationError(self.name, f"{where}: nothing found while {action}")
            if status == STATUS_OBJECT_NAME_INVALID:
                return LocationError(self.name, f"{where} refused a file name while {action}")
            if status == STATUS_SHARING_VIOLATION:
                return LocationError(
                    self.name, f"{where}: a file is in use by another program while {action}; try again later"
                )
            if status in SESSION_GONE:
                self._abort()
                return LocationUnreachable(
                    self.name, f"server {self.server} ended the session while {action}; it will reconnect"
                )
            return LocationError(
                self.name, f"{where}: the server answered {_status_name(err)} while {action}"
            )
        self._abort()
        if isinstance(err, ValueError) and str(err).startswith("Failed to connect"):
            cause = err.__cause__
            if isinstance(cause, socket.gaierror):
                return LocationUnreachable(
                    self.name,
                    f"cannot find server {self.server}; check its name or use its IP address",
                )
            if isinstance(cause, TimeoutError):
                return LocationTimeout(
                    self.name,
                    f"server {self.server} did not answer on port {self.port} within {self.timeout:g} s; "
                    "check it is on and reachable from Home Assistant",
                )
            return LocationUnreachable(
                self.name,
                f"cannot connect to server {self.server} on port {self.port}; check it is on and that "
                "file sharing (SMB) is enabled",
            )
        if isinstance(err, SMBException) and "timeout" in str(err).lower():
            return LocationTimeout(
                self.name, f"server {self.server} did not answer in time while {action}; check it is on"
            )
        if isinstance(err, (SMBConnectionClosed, ConnectionError, OSError)):
            return LocationUnreachable(
                self.name, f"lost the connection to server {self.server} while {action}; check it is on"
            )
        detail = f"{type(err).__name__}: {err}"[:200]
        return LocationError(self.name, f"{where}: unexpected {detail} while {action}")

    async def _run(
        self,
        action: str,
        func: Callable[[], T],
        *,
        writing: bool = False,
        patience: float = 1.0,
        connect: bool = True,
    ) -> T:
        """Run one blocking SMB step in a thread, bounded by the time-out (times patience)."""
        abandoned = threading.Event()

        def work() -> T:
            with self._lock:
                if abandoned.is_set():
                    raise _Abandoned
                if connect:
                    self._connect()
                return func()

        limit = self.timeout * patience
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                return await asyncio.to_thread(work)
        except LocationError:
            raise
        except asyncio.CancelledError:
            abandoned.set()
            raise
        except Exception as err:
            # smbprotocol raises many types (its own, socket, spnego, parsing); all end up as
            # LocationError so one broken share never takes the whole backup down.
            if not (isinstance(err, TimeoutError) and deadline.expired()):
                raise self._error(err, action, writing=writing) from err
            abandoned.set()
            # The stuck thread may wait for an answer that never comes: cut the connection.
            self._abort()
            raise LocationTimeout(
                self.name,
                f"server {self.server} did not answer within {limit:g} s while {action}; "
                "check it is on and reachable",
            ) from None

    # -- the Location interface ---------------------------------------------------------------

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> StoredObject:
        parts = check_key(key)
        final = self._unc(parts)
        parent = self._unc(parts[:-1])
        temp = f"{parent}\\.{parts[-1]}{PARTIAL_MARK}{uuid.uuid4().hex[:12]}"
        kwargs = self._kwargs()
        action = f"writing {key}"
        handle: Any = None
        size = 0
        try:
            await self._run(
                action, partial(smbclient.makedirs, parent, exist_ok=True, **kwargs), writing=True
            )
            handle = await self._run(
                action, partial(smbclient.open_file, temp, mode="xb", buffering=0, **kwargs), writing=True
            )
            pending = bytearray()
            async for chunk in chunks:
                size += len(chunk)
                if not pending and len(chunk) >= WRITE_CHUNK:
                    await self._run(action, partial(_write_all, handle, chunk), writing=True)
                    continue
                pending += chunk
                if len(pending) >= WRITE_CHUNK:
                    await self._run(action, partial(_write_all, handle, pending), writing=True)
                    pending = bytearray()
            if pending:
                await self._run(action, partial(_write_all, handle, pending), writing=True)
            # The server may write a lot of cached data to its disks before it confirms the flush.
            await self._run(action, partial(_finish, handle), writing=True, patience=FLUSH_PATIENCE)
            await self._run(action, partial(smbclient.replace, temp, final, **kwargs), writing=True)
        except BaseException:
            await asyncio.shield(self._discard(handle, temp))
            raise
        return StoredObject(key=key, size=size, modified=datetime.now(UTC))

    async def _discard(self, handle: Any, temp: str) -> None:
        """Best effort: close and remove an unfinished temp file; cleanup_incomplete() catches the rest."""

        def remove() -> None:
            if handle is not None:
                _close_quietly(handle)
            self._remove(temp)

        try:
            with contextlib.suppress(LocationError):
                await self._run("removing an unfinished upload", remove)
        finally:
            if handle is not None:
                _forget(handle)

    async def open(self, key: str) -> AsyncIterator[bytes]:
        path = self._unc(check_key(key))
        kwargs = self._kwargs()
        action = f"reading {key}"
        try:
            handle = await self._run(
                action, partial(smbclient.open_file, path, mode="rb", buffering=0, share_access="r", **kwargs)
            )
        except LocationError as err:
            if err.__cause__ is not None and _missing(err.__cause__):
                raise LocationError(self.name, f"{self._where} has no object {key}") from err.__cause__
            raise
        try:
            while chunk := await self._run(action, partial(_read, handle)):
                yield chunk
        finally:
            try:
                with contextlib.suppress(LocationError):
                    # A handle lives on its own connection: closing it must not open a new one.
                    await asyncio.shield(self._run(action, partial(_close_quietly, handle), connect=False))
            finally:
                _forget(handle)

    async def stat(self, key: str) -> StoredObject | None:
        path = self._unc(check_key(key))
        kwargs = self._kwargs()

        def describe() -> StoredObject | None:
            try:
                st = smbclient.stat(path, **kwargs)
            except SMBOSError as err:
                if _missing(err):
                    return None
                raise
            return StoredObject(key=key, size=st.st_size, modified=datetime.fromtimestamp(st.st_mtime, UTC))

        return await self._run(f"checking {key}", describe)

    async def list(self) -> list[StoredObject]:
        found: builtins.list[StoredObject] = []
        pending: builtins.list[builtins.list[str]] = [[]]
        while pending:
            parts = pending.pop()
            # One folder per step, so a big tree on a slow link does not run into the time-out.
            for name, is_dir, size, written in await self._run("listing copies", partial(self._scan, parts)):
                if name.startswith("."):
                    continue
                if is_dir:
                    pending.append([*parts, name])
                else:
                    found.append(StoredObject("/".join([*parts, name]), size, _aware(written)))
        return sorted(found, key=lambda o: o.key)

    def _scan(self, parts: builtins.list[str]) -> builtins.list[tuple[str, bool, int, datetime]]:
        """Name, is-folder, size and write time of every entry of a folder; empty when it is missing."""
        try:
            with smbclient.scandir(self._unc(parts), **self._kwargs()) as entries:
                return [
                    (e.name, e.is_dir(), e.smb_info.end_of_file, e.smb_info.last_write_time) for e in entries
                ]
        except SMBOSError as err:
            # The location's folder appears with the first put.
            if _missing(err):
                return []
            raise

    def _remove(self, path: str) -> None:
        """Remove a file; a file that is already gone is fine."""
        try:
            smbclient.remove(path, **self._kwargs())
        except SMBOSError as err:
            if not _missing(err):
                raise

    async def delete(self, key: str) -> None:
        path = self._unc(check_key(key))
        await self._run(f"deleting {key}", partial(self._remove, path), writing=True)

    async def usage(self) -> Usage | None:
        kwargs = self._kwargs()

        def volume() -> Usage:
            result = smbclient.stat_volume(self._share_unc, **kwargs)
            total = int(result.total_size)
            return Usage(free_bytes=min(int(result.caller_available_size), total), total_bytes=total)

        return await self._run("reading free space", volume)

    async def cleanup_incomplete(self) -> int:
        action = "removing unfinished uploads"
        removed = 0
        pending: builtins.list[builtins.list[str]] = [[]]
        while pending:
            parts = pending.pop()
            for name, is_dir, _size, _written in await self._run(action, partial(self._scan, parts)):
                if is_dir:
                    if not name.startswith("."):
                        pending.append([*parts, name])
                elif name.startswith(".") and PARTIAL_MARK in name:
                    await self._run(action, partial(self._remove, self._unc([*parts, name])), writing=True)
                    removed += 1
        return removed

    # -- extras -------------------------------------------------------------------------------

    def encryption_in_use(self) -> bool | None:
        """Whether the current connection encrypts its traffic; None while not connected."""
        for connection in list(self._cache.values()):
            for session in list(connection.session_table.values()):
                trees = [t for t in session.tree_connect_table.values() if t.share_name == self._share_unc]
                return bool(session.encrypt_data or any(t.encrypt_data for t in trees))
        return None

    async def close(self) -> None:
        """Log off and drop the connection; the next call reconnects."""
        connections = list(self._cache.values())
        self._cache.clear()

        def disconnect() -> None:
            with self._lock:
                for connection in connections:
                    with contextlib.suppress(Exception):
                        connection.disconnect(close=True, timeout=self.timeout)

        try:
            async with asyncio.timeout(self.timeout):
                await asyncio.to_thread(disconnect)
        except TimeoutError:
            _shutdown(connections)
