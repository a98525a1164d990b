"""An SSH server reached over SFTP: a NAS, a VPS, a friend's Raspberry Pi."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import posixpath
import secrets
import socket
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncssh

from ..errors import (
    LocationAuthFailed,
    LocationError,
    LocationFull,
    LocationReadOnly,
    LocationTimeout,
    LocationUnreachable,
)
from .base import StoredObject, Usage, split_key
from .sftp_options import SftpLocationOptions as SftpLocationOptions
from .sftp_options import host_key_line, load_host_key, load_private_key, normalize_folder

_LOGGER = logging.getLogger(__name__)


def _cpu_has_aes() -> bool:
    """True when the processor has AES instructions (x86 'aes' flag, ARM 'aes' feature)."""
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return any(
        line.split(":", 1)[0].strip() in ("flags", "Features") and "aes" in line.split(":", 1)[-1].split()
        for line in info.splitlines()
    )


# asyncssh runs ChaCha20-Poly1305 with Python glue per packet, while AES-GCM goes straight to
# OpenSSL: on processors with AES instructions GCM uploads about 1.6x faster. A Raspberry Pi 4
# has no AES instructions, so there ChaCha20 stays first.
_FAST_AES = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
_CHACHA = ("chacha20-poly1305@openssh.com",)
_OTHERS = ("aes128-ctr", "aes192-ctr", "aes256-ctr")
CIPHERS = list(_FAST_AES + _CHACHA + _OTHERS) if _cpu_has_aes() else list(_CHACHA + _FAST_AES + _OTHERS)

PARTIAL_MARK = ".partial-"
DEFAULT_TIMEOUT = 60.0
# Keepalives notice a vanished server while the add-on waits on its own source, and keep NAT
# mappings of home routers open.
KEEPALIVE_SECONDS = 30.0
KEEPALIVE_COUNT = 3
# One SFTP request carries at most this much; OpenSSH accepts 255 KiB, others less (their limit wins).
MAX_REQUEST = 256 * 1024
# Bytes in flight (writes) or read ahead (reads) per transfer: enough to fill a long, fast link,
# small enough that memory stays a few MiB whatever the object's size.
IN_FLIGHT_BYTES = 4 << 20
MAX_REQUESTS = 64
# OpenSSH's SFTP server reports a full disk or quota only as a generic "Failure"; a refused write
# with less free space than this is reported as a full location.
NEARLY_FULL = 16 << 20
PRIVATE_FILE = asyncssh.SFTPAttrs(permissions=0o600)


class SftpHostKeyUnknown(LocationAuthFailed):
    """No host key is set yet; the message shows the key the server offered, to be checked and pinned."""

    def __init__(self, location: str, message: str, *, offered_key: str, fingerprint: str) -> None:
        super().__init__(location, message)
        self.offered_key = offered_key
        self.fingerprint = fingerprint


class SftpHostKeyChanged(LocationAuthFailed):
    """The server offered another host key than the pinned one: maybe reinstalled, maybe intercepted."""

    def __init__(self, location: str, message: str, *, offered_key: str, fingerprint: str) -> None:
        super().__init__(location, message)
        self.offered_key = offered_key
        self.fingerprint = fingerprint


def _check_key(key: str) -> str:
    # Names starting with '.' are this kind's temp files, and list() skips them.
    split_key(key)
    return key


def _modified(attrs: asyncssh.SFTPAttrs) -> datetime:
    return datetime.fromtimestamp(attrs.mtime or 0, UTC)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a background task's outcome as seen, so asyncio does not log it as lost."""
    if not task.cancelled():
        task.exception()


async def _drain(tasks: builtins.list[asyncio.Task[Any]]) -> None:
    """Cancel requests still in flight and wait until they are gone."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)
    for task in tasks:
        _retrieve(task)


async def _shielded[T](coro: Coroutine[Any, Any, T]) -> T:
    """Run a clean-up to its end even when the caller is cancelled (again) meanwhile."""
    task = asyncio.ensure_future(coro)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_retrieve)
        raise


class SftpLocation:
    """Copies as files in a folder on an SSH server, written through SFTP.

    Every operation opens its own SSH connection: nothing stale survives a server restart, and
    concurrent transfers do not queue behind each other. The server must prove its identity with
    the pinned host key before any credential is sent.
    """

    kind = "sftp"

    def __init__(
        self,
        *,
        name: str,
        host: str,
        username: str,
        port: int = 22,
        password: str | None = None,
        private_key: str | None = None,
        passphrase: str | None = None,
        folder: str = "",
        host_key: str | None = None,
        offsite: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if (password is None) == (private_key is None):
            raise ValueError("give either a password or a private key")
        self.name = name
        self.offsite = offsite
        self.host = host.removeprefix("[").removesuffix("]")
        self.port = port
        self.username = username
        self.folder = normalize_folder(folder)
        self.timeout = timeout
        self._password = password
        self._client_key = None if private_key is None else load_private_key(private_key, passphrase)
        self._host_key = None if not host_key else load_host_key(host_key)

    # --- connection ---

    @property
    def _server(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"SFTP server {host}:{self.port}"

    def _where(self) -> str:
        return f"folder {self.folder or '(login folder)'} on {self._server}"

    async def _timed[T](self, awaitable: Awaitable[T]) -> T:
        async with asyncio.timeout(self.timeout):
            return await awaitable

    async def _call[T](self, awaitable: Awaitable[T], action: str) -> T:
        try:
            return await self._timed(awaitable)
        except (OSError, asyncssh.Error) as err:
            raise self._translate(err, action) from err

    def _translate(self, err: BaseException, action: str) -> LocationError:
        """Turn a network or SFTP failure into a typed error the user can act on."""
        name, server = self.name, self._server
        if isinstance(err, TimeoutError):
            return LocationTimeout(
                name,
                f"{server} did not answer within {self.timeout:g} s while {action}; "
                "check that the server is on and reachable from Home Assistant",
            )
        if isinstance(err, asyncssh.PermissionDenied):
            if self._password is not None:
                check = "check username and password"
            else:
                check = "check username, and that the key's public half is in the user's authorized_keys"
            what = "password" if self._password is not None else "private key"
            return LocationAuthFailed(
                name, f"{server} refused the login of user {self.username!r} with the {what}; {check}"
            )
        if isinstance(err, asyncssh.ChannelOpenError):
            return LocationError(
                name, f"{server} did not start SFTP for user {self.username!r}; check that SFTP is enabled"
            )
        if isinstance(err, asyncssh.SFTPError):
            return self._translate_sftp(err, action)
        if isinstance(err, asyncssh.Error):
            return LocationUnreachable(name, f"{server} ended the connection while {action}: {err.reason}")
        if isinstance(err, ConnectionRefusedError):
            return LocationUnreachable(
                name, f"{server} refused the connection; check the port and that SSH/SFTP is turned on"
            )
        if isinstance(err, socket.gaierror):
            return LocationUnreachable(
                name, f"cannot find the server {self.host!r}; check the host name, or use its IP address"
            )
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        return LocationUnreachable(name, f"cannot reach {server} while {action}: {reason}")

    def _translate_sftp(self, err: asyncssh.SFTPError, action: str) -> LocationError:
        name, where = self.name, self._where()
        if isinstance(err, asyncssh.SFTPPermissionDenied | asyncssh.SFTPWriteProtect):
            return LocationReadOnly(
                name,
                f"{where} denied access while {action}; check that user {self.username!r} may write there",
            )
        if isinstance(err, asyncssh.SFTPNoSpaceOnFilesystem | asyncssh.SFTPQuotaExceeded):
            return LocationFull(
                name, f"{where} is full while {action}; free some space or remove old backups"
            )
        if isinstance(err, asyncssh.SFTPNoSuchFile | asyncssh.SFTPNoSuchPath):
            return LocationError(name, f"{where}: not found while {action}")
        if isinstance(err, asyncssh.SFTPConnectionLost | asyncssh.SFTPNoConnection):
            return LocationUnreachable(name, f"{self._server} lost the connection while {action}")
        return LocationError(name, f"{where} failed while {action}: {err.reason or 'no reason given'}")

    async def _connect(self) -> asyncssh.SSHClientConnection:
        action = "connecting"
        if self._host_key is None:
            offered = await self._offered_host_key(())
            raise SftpHostKeyUnknown(
                self.name,
                f"host_key is not set, so the server's identity cannot be checked. {self._server} "
                f"identifies itself with the host key {host_key_line(offered)} "
                f"(fingerprint {offered.get_fingerprint('sha256')}). Compare this fingerprint with the one "
                "the server shows (on the server: ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub; "
                "a NAS may show it in its SSH settings); if it matches, paste the key into host_key.",
                offered_key=host_key_line(offered),
                fingerprint=offered.get_fingerprint("sha256"),
            )
        pinned = self._host_key
        try:
            return await self._timed(
                asyncssh.connect(
                    self.host,
                    self.port,
                    username=self.username,
                    password=self._password,
                    client_keys=None if self._client_key is None else [self._client_key],
                    preferred_auth="publickey" if self._client_key else "keyboard-interactive,password",
                    # Trust exactly the pinned key: no known_hosts file, no host-name patterns.
                    known_hosts=([pinned], [], [], [], [], [], []),
                    # Only what the options say: no ~/.ssh files, agent, GSS or host-based login.
                    config=None,
                    agent_path=None,
                    gss_host=None,
                    host_based_auth=False,
                    x509_trusted_certs=None,
                    x509_trusted_cert_paths=[],
                    connect_timeout=self.timeout,
                    encryption_algs=CIPHERS,
                    keepalive_interval=KEEPALIVE_SECONDS,
                    keepalive_count_max=KEEPALIVE_COUNT,
                )
            )
        except asyncssh.HostKeyNotVerifiable:
            same_type = [alg.decode() for alg in pinned.sig_algorithms]
            raise self._changed_host_key(pinned, await self._offered_host_key(same_type)) from None
        except (OSError, asyncssh.Error) as err:
            # A server without a key of the pinned type ends the key exchange: its identity changed too.
            if isinstance(err, ConnectionResetError | asyncssh.KeyExchangeFailed | asyncssh.ConnectionLost):
                instead = await self._offered_instead(pinned)
                if instead is not None:
                    raise self._changed_host_key(pinned, instead) from None
            raise self._translate(err, action) from err

    async def _offered_host_key(self, algorithms: tuple[str, ...] | builtins.list[str]) -> asyncssh.SSHKey:
        offered = await self._call(
            asyncssh.get_server_host_key(
                self.host, self.port, server_host_key_algs=algorithms or (), config=None
            ),
            "asking the server for its host key",
        )
        if offered is None:
            raise LocationError(self.name, f"{self._server} did not show a host key; it cannot be checked")
        return offered

    async def _offered_instead(self, pinned: asyncssh.SSHKey) -> asyncssh.SSHKey | None:
        """The key the server offers when it has none of the pinned type, else None."""
        algorithms = [alg.decode() for alg in pinned.sig_algorithms]
        try:
            await self._offered_host_key(algorithms)
        except LocationError:
            with contextlib.suppress(LocationError):
                return await self._offered_host_key(())
        return None

    def _changed_host_key(self, pinned: asyncssh.SSHKey, offered: asyncssh.SSHKey) -> SftpHostKeyChanged:
        line, fingerprint = host_key_line(offered), offered.get_fingerprint("sha256")
        return SftpHostKeyChanged(
            self.name,
            f"WARNING: the server's identity changed: if you did not reinstall or replace the server, "
            f"someone may be intercepting the connection. Nothing was sent. {self._server} now offers the "
            f"host key {line} (fingerprint {fingerprint}) instead of the one in host_key (fingerprint "
            f"{pinned.get_fingerprint('sha256')}). Only if you know why it changed and the new fingerprint "
            "matches the server's, put the new key into host_key.",
            offered_key=line,
            fingerprint=fingerprint,
        )

    @contextlib.asynccontextmanager
    async def _session(self, action: str) -> AsyncIterator[asyncssh.SFTPClient]:
        """An SFTP client on a fresh connection, closed (or torn down on failure) afterwards."""
        conn = await self._connect()
        try:
            sftp = await self._call(conn.start_sftp_client(), action)
            yield sftp
        except BaseException:
            conn.abort()
            await self._closed(conn)
            raise
        conn.close()
        if not await self._closed(conn):
            conn.abort()

    async def _closed(self, conn: asyncssh.SSHClientConnection) -> bool:
        try:
            await self._timed(conn.wait_closed())
        except TimeoutError:
            return False
        return True

    # --- paths ---

    def _path(self, key: str) -> str:
        key = _check_key(key)
        return posixpath.join(self.folder, key) if self.folder else key

    def _dir(self, relative: str) -> str:
        if not relative:
            return self.folder or "."
        return posixpath.join(self.folder, relative) if self.folder else relative

    # --- writing ---

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> StoredObject:
        path = self._path(key)
        parent, leaf = posixpath.split(path)
        temp = posixpath.join(parent, f".{leaf}{PARTIAL_MARK}{secrets.token_hex(6)}")
        action = f"writing {key}"
        async with self._session(action) as sftp:
            handle: asyncssh.SFTPClientFile | None = None
            try:
                handle = await self._create(sftp, temp, parent, action)
                size = await self._write(sftp, handle, chunks, action)
                await self._finish(sftp, handle, temp, path, action)
            except BaseException as err:
                # Cancelled or timed out while creating, the temp file may exist without our knowing.
                if handle is not None or isinstance(err, asyncio.CancelledError | LocationTimeout):
                    problem = await _shielded(self._discard(sftp, handle, temp))
                    if problem is not None:
                        note = (
                            f"the partial file {temp} stayed on the server ({problem}); "
                            "the next clean-up removes it"
                        )
                        _LOGGER.warning("%s: %s", self.name, note)
                        err.add_note(note)
                raise
            attrs = await self._call(sftp.stat(path), f"checking {key}")
        if attrs.size != size:
            raise LocationError(
                self.name, f"{key} has {attrs.size} bytes on {self._server} after {size} were written"
            )
        return StoredObject(key=key, size=size, modified=_modified(attrs))

    async def _create(
        self, sftp: asyncssh.SFTPClient, temp: str, parent: str, action: str
    ) -> asyncssh.SFTPClientFile:
        try:
            try:
                return await self._timed(sftp.open(temp, "xb", PRIVATE_FILE, block_size=0))
            except asyncssh.SFTPNoSuchFile:
                # First copy into this folder: create it, then try once more.
                await self._timed(sftp.makedirs(parent, exist_ok=True))
                return await self._timed(sftp.open(temp, "xb", PRIVATE_FILE, block_size=0))
        except (OSError, asyncssh.Error) as err:
            raise await self._write_failed(sftp, err, action) from err

    async def _write(
        self,
        sftp: asyncssh.SFTPClient,
        handle: asyncssh.SFTPClientFile,
        chunks: AsyncIterator[bytes],
        action: str,
    ) -> int:
        """Send the chunks in requests the server accepts, a bounded number in flight."""
        piece = min(sftp.limits.max_write_len or MAX_REQUEST, MAX_REQUEST)
        depth = max(1, min(MAX_REQUESTS, IN_FLIGHT_BYTES // piece))
        pending: deque[asyncio.Task[int]] = deque()
        buffer = bytearray()
        offset = 0
        try:
            async for chunk in chunks:
                buffer += chunk
                while len(buffer) >= piece:
                    await self._send(sftp, handle, pending, depth, bytes(buffer[:piece]), offset, action)
                    del buffer[:piece]
                    offset += piece
            if buffer:
                await self._send(sftp, handle, pending, depth, bytes(buffer), offset, action)
                offset += len(buffer)
            while pending:
                await self._settle(sftp, pending[0], action)
                pending.popleft()
        finally:
            await _drain(builtins.list(pending))
        return offset

    async def _send(
        self,
        sftp: asyncssh.SFTPClient,
        handle: asyncssh.SFTPClientFile,
        pending: deque[asyncio.Task[int]],
        depth: int,
        data: bytes,
        offset: int,
        action: str,
    ) -> None:
        if len(pending) >= depth:
            await self._settle(sftp, pending[0], action)
            pending.popleft()
        pending.append(asyncio.ensure_future(handle.write(data, offset)))

    async def _settle(self, sftp: asyncssh.SFTPClient, task: asyncio.Task[int], action: str) -> None:
        done, _ = await asyncio.wait({task}, timeout=self.timeout)
        try:
            if not done:
                raise TimeoutError
            task.result()
        except (OSError, asyncssh.Error) as err:
            raise await self._write_failed(sftp, err, action) from err

    async def _finish(
        self, sftp: asyncssh.SFTPClient, handle: asyncssh.SFTPClientFile, temp: str, path: str, action: str
    ) -> None:
        """Make the temp file durable, then give it its final name in one step."""
        try:
            # Servers without fsync@openssh.com: the rename still shows a whole copy or none.
            with contextlib.suppress(asyncssh.SFTPOpUnsupported):
                await self._timed(handle.fsync())
            await self._timed(handle.close())
            try:
                await self._timed(sftp.posix_rename(temp, path))
            except asyncssh.SFTPOpUnsupported:
                await self._replace(sftp, temp, path)
        except (OSError, asyncssh.Error) as err:
            raise await self._write_failed(sftp, err, action) from err

    async def _replace(self, sftp: asyncssh.SFTPClient, temp: str, path: str) -> None:
        try:
            await self._timed(sftp.rename(temp, path))
        except asyncssh.SFTPFailure:
            # Plain SFTP v3 rename refuses an existing target; remove the old copy first.
            await self._timed(sftp.remove(path))
            await self._timed(sftp.rename(temp, path))

    async def _write_failed(
        self, sftp: asyncssh.SFTPClient, err: BaseException, action: str
    ) -> LocationError:
        if isinstance(err, asyncssh.SFTPFailure):
            free = await self._free_bytes(sftp)
            if free is not None and free < NEARLY_FULL:
                return LocationFull(
                    self.name,
                    f"{self._where()} is full while {action} ({free >> 20} MiB free); "
                    "free some space or keep fewer backups there",
                )
        return self._translate(err, action)

    async def _free_bytes(self, sftp: asyncssh.SFTPClient) -> int | None:
        """Free space, to tell a full disk from other refusals; None when the server cannot say."""
        try:
            vfs = await self._timed(sftp.statvfs(self.folder or "."))
        except (OSError, asyncssh.Error):
            return None
        free: int = vfs.bavail * vfs.frsize
        return free

    async def _discard(
        self, sftp: asyncssh.SFTPClient, handle: asyncssh.SFTPClientFile | None, temp: str
    ) -> str | None:
        """Remove the temp file of a failed put; return why that failed, if it did."""
        try:
            async with asyncio.timeout(self.timeout):
                if handle is not None:
                    with contextlib.suppress(asyncssh.Error):
                        await handle.close()
                await sftp.remove(temp)
        except asyncssh.SFTPNoSuchFile:
            return None
        except TimeoutError:
            return f"no answer within {self.timeout:g} s"
        except (OSError, asyncssh.Error) as err:
            return str(err) or type(err).__name__
        return None

    # --- reading ---

    async def open(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        action = f"reading {key}"
        async with self._session(action) as sftp:
            try:
                handle = await self._timed(sftp.open(path, "rb", block_size=0))
            except asyncssh.SFTPNoSuchFile:
                raise LocationError(self.name, f"{key} does not exist in {self._where()}") from None
            except (OSError, asyncssh.Error) as err:
                raise self._translate(err, action) from err
            size = (await self._call(handle.stat(), action)).size or 0
            piece = min(sftp.limits.max_read_len or MAX_REQUEST, MAX_REQUEST)
            depth = max(1, min(MAX_REQUESTS, IN_FLIGHT_BYTES // piece))
            ahead: deque[tuple[int, asyncio.Task[bytes]]] = deque()
            position = scheduled = 0
            try:
                while position < size:
                    while scheduled < size and len(ahead) < depth:
                        length = min(piece, size - scheduled)
                        ahead.append((length, asyncio.ensure_future(handle.read(length, scheduled))))
                        scheduled += length
                    length, task = ahead[0]
                    data = await self._received(task, action)
                    ahead.popleft()
                    if not data:
                        raise LocationError(
                            self.name,
                            f"{key} ended after {position} of {size} bytes; it was cut short on the server",
                        )
                    if len(data) < length:
                        # A short answer: ask again from where it ended, in order.
                        await _drain([t for _, t in ahead])
                        ahead.clear()
                        scheduled = position + len(data)
                    position += len(data)
                    yield data
            finally:
                await _drain([t for _, t in ahead])
            await self._call(handle.close(), action)

    async def _received(self, task: asyncio.Task[bytes], action: str) -> bytes:
        done, _ = await asyncio.wait({task}, timeout=self.timeout)
        try:
            if not done:
                raise TimeoutError
            return task.result()
        except (OSError, asyncssh.Error) as err:
            raise self._translate(err, action) from err

    async def stat(self, key: str) -> StoredObject | None:
        path = self._path(key)
        action = f"checking {key}"
        async with self._session(action) as sftp:
            try:
                attrs = await self._timed(sftp.stat(path))
            except asyncssh.SFTPNoSuchFile:
                return None
            except (OSError, asyncssh.Error) as err:
                raise self._translate(err, action) from err
        if attrs.type != asyncssh.FILEXFER_TYPE_REGULAR:
            return None
        return StoredObject(key=key, size=attrs.size or 0, modified=_modified(attrs))

    async def _walk(
        self, sftp: asyncssh.SFTPClient, action: str
    ) -> AsyncIterator[tuple[str, asyncssh.SFTPName]]:
        """Every entry below the folder with its path relative to it; missing folders are empty."""
        todo = [""]
        while todo:
            relative = todo.pop()
            try:
                names = await self._timed(sftp.readdir(self._dir(relative).encode()))
            except asyncssh.SFTPNoSuchFile:
                continue
            except (OSError, asyncssh.Error) as err:
                raise self._translate(err, action) from err
            for entry in names:
                raw = entry.filename
                try:
                    name = raw.decode() if isinstance(raw, bytes) else raw
                except UnicodeDecodeError:
                    continue  # not UTF-8, so not written by the add-on
                if name in (".", ".."):
                    continue
                child = f"{relative}/{name}" if relative else name
                if entry.attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY and not name.startswith("."):
                    todo.append(child)
                yield child, entry

    async def list(self) -> builtins.list[StoredObject]:
        found: builtins.list[StoredObject] = []
        async with self._session("listing copies") as sftp:
            async for relative, entry in self._walk(sftp, "listing copies"):
                name = posixpath.basename(relative)
                if entry.attrs.type == asyncssh.FILEXFER_TYPE_REGULAR and not name.startswith("."):
                    found.append(StoredObject(relative, entry.attrs.size or 0, _modified(entry.attrs)))
        return sorted(found, key=lambda o: o.key)

    async def delete(self, key: str) -> None:
        path = self._path(key)
        action = f"deleting {key}"
        async with self._session(action) as sftp:
            try:
                await self._timed(sftp.remove(path))
            except asyncssh.SFTPNoSuchFile:
                pass
            except (OSError, asyncssh.Error) as err:
                raise self._translate(err, action) from err

    async def usage(self) -> Usage | None:
        action = "reading free space"
        async with self._session(action) as sftp:
            try:
                # The folder may not exist before the first copy; the login folder's disk is a fair guess.
                try:
                    vfs = await self._timed(sftp.statvfs(self.folder or "."))
                except asyncssh.SFTPNoSuchFile:
                    vfs = await self._timed(sftp.statvfs("."))
            except asyncssh.SFTPOpUnsupported:
                return None
            except (OSError, asyncssh.Error) as err:
                raise self._translate(err, action) from err
        if not vfs.blocks:
            return None  # some servers answer statvfs with zeros
        return Usage(free_bytes=vfs.bavail * vfs.frsize, total_bytes=vfs.blocks * vfs.frsize)

    async def cleanup_incomplete(self) -> int:
        action = "removing partial copies"
        removed = 0
        async with self._session(action) as sftp:
            async for relative, entry in self._walk(sftp, action):
                name = posixpath.basename(relative)
                if (
                    entry.attrs.type == asyncssh.FILEXFER_TYPE_REGULAR
                    and name.startswith(".")
                    and PARTIAL_MARK in name
                ):
                    try:
                        await self._timed(sftp.remove(self._dir(relative)))
                    except asyncssh.SFTPNoSuchFile:
                        continue
                    except (OSError, asyncssh.Error) as err:
                        raise self._translate(err, action) from err
                    removed += 1
        return removed


def build(options: SftpLocationOptions) -> SftpLocation:
    """The location an `sftp` entry of the `locations` option describes."""
    return SftpLocation(
        name=options.name,
        host=options.host,
        port=options.port,
        username=options.username,
        password=options.password,
        private_key=options.private_key,
        passphrase=options.passphrase,
        folder=options.folder,
        host_key=options.host_key,
    )
