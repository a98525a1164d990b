"""An SSH server reached over SFTP: a NAS, a VPS, a friend's Raspberry Pi."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import ipaddress
import logging
import posixpath
import re
import secrets
import socket
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self

import asyncssh
from pydantic import Field, field_validator, model_validator

from ..errors import (
    LocationAuthFailed,
    LocationError,
    LocationFull,
    LocationReadOnly,
    LocationTimeout,
    LocationUnreachable,
)
from .base import StoredObject, Usage, split_key
from .options_base import LocationOptionsBase

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

KEY_TYPE = re.compile(r"^(ssh|ecdsa|sk)-[a-z0-9@.-]+$")
FINGERPRINT = re.compile(r"^(SHA256:[A-Za-z0-9+/=]+|(MD5:)?([0-9a-f]{2}:){15}[0-9a-f]{2})$")
PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$"
)


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


def load_host_key(text: str) -> asyncssh.SSHKey:
    """Read a public host key as in a .pub file or a known_hosts line; ValueError says what is wrong."""
    fields = text.split()
    if not fields:
        raise ValueError("is empty; paste the server's public host key, e.g. ssh-ed25519 AAAAC3Nza...")
    if FINGERPRINT.match(fields[0]):
        raise ValueError(
            "is a fingerprint, not the key itself; paste the whole key line, e.g. ssh-ed25519 AAAAC3Nza... "
            "(the add-on shows it, with its fingerprint, when host_key is left empty)"
        )
    # A known_hosts line starts with the host's name; a .pub line starts with the key type.
    if len(fields) >= 3 and not KEY_TYPE.match(fields[0]) and KEY_TYPE.match(fields[1]):
        fields = fields[1:]
    if len(fields) < 2 or not KEY_TYPE.match(fields[0]):
        raise ValueError(
            "must be a public host key: its type, a space and the key, e.g. ssh-ed25519 AAAAC3Nza... "
            "(on the server: cat /etc/ssh/ssh_host_ed25519_key.pub)"
        )
    if "-cert-" in fields[0]:
        raise ValueError(
            "is a host certificate; paste the server's plain public host key, e.g. ssh-ed25519 ..."
        )
    try:
        return asyncssh.import_public_key(f"{fields[0]} {fields[1]}")
    except (asyncssh.KeyImportError, ValueError):
        raise ValueError(
            f"is not a valid {fields[0]} key; copy the whole line again, e.g. ssh-ed25519 AAAAC3Nza..."
        ) from None


def host_key_line(key: asyncssh.SSHKey) -> str:
    """The key as one 'type base64' line, without a comment."""
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


def normalize_private_key(text: str) -> str:
    """Put back the line breaks a one-line form field drops from a pasted key."""
    text = text.strip()
    match = PEM_BLOCK.fullmatch(text)
    if match is None or ":" in match.group(2):
        # Not one armored block, or old PEM with header lines: leave it for the key parser to judge.
        return text + "\n"
    label, body = match.groups()
    data = "".join(body.split())
    lines = [data[i : i + 64] for i in range(0, len(data), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""])


def load_private_key(text: str, passphrase: str | None) -> asyncssh.SSHKey:
    """Read a pasted private key; ValueError says what is wrong and what to do."""
    stripped = text.strip()
    if "PuTTY-User-Key-File" in stripped:
        raise ValueError(
            "is a PuTTY key; export it with PuTTYgen (Conversions > Export OpenSSH key) and paste that"
        )
    if "PUBLIC KEY" in stripped or KEY_TYPE.match(stripped.split(" ", 1)[0]):
        raise ValueError(
            "is a public key; paste the private key: the file without .pub, "
            "from its '-----BEGIN' line to its '-----END' line"
        )
    if "-----BEGIN" not in stripped or "PRIVATE KEY-----" not in stripped:
        raise ValueError(
            "must be the whole private key text, from its '-----BEGIN' line to its '-----END' line"
        )
    try:
        return asyncssh.import_private_key(normalize_private_key(text), passphrase)
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as err:
        reason = str(err)
    if "Passphrase must be specified" in reason:
        raise ValueError("is protected by a passphrase; enter it under passphrase")
    if "bcrypt" in reason:
        raise ValueError(
            "is protected by a passphrase in OpenSSH's own format, which the add-on cannot unlock; "
            "make a key just for backups without a passphrase, or remove it with: ssh-keygen -p -f <key file>"
        )
    if "decrypt" in reason.lower() or "incorrect passphrase" in reason.lower():
        raise ValueError("could not be unlocked: the passphrase is wrong")
    raise ValueError(
        f"could not be read ({reason}); paste the whole key, from -----BEGIN ... PRIVATE KEY----- "
        "to -----END ... PRIVATE KEY-----"
    )


def normalize_folder(value: str) -> str:
    """'' for the login folder, else a clean relative or absolute path; ValueError when unsafe."""
    value = value.strip()
    if value in ("", ".", "~", "~/"):
        return ""
    if value.startswith("~/"):
        # SFTP has no '~'; relative paths already start in the login folder.
        value = value[2:]
    if "\x00" in value or any(ord(c) < 32 for c in value):
        raise ValueError("must not contain control characters")
    if ".." in value.split("/"):
        raise ValueError("must not contain '..'; e.g. backups/home-assistant or /volume1/backups")
    normalized = posixpath.normpath(value)
    return "" if normalized == "." else normalized


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


class SftpLocationOptions(LocationOptionsBase):
    """A folder on an SSH server (NAS, VPS, Raspberry Pi), reached with SFTP."""

    kind: Literal["sftp"]
    host: str
    port: int = 22
    username: str
    password: str | None = Field(default=None, repr=False)
    private_key: str | None = Field(default=None, repr=False)
    passphrase: str | None = Field(default=None, repr=False)
    folder: str = ""
    host_key: str | None = None

    @field_validator("password", "private_key", "passphrase", "host_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # The add-on's form saves a cleared field as an empty string.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        value = value.strip()
        if "://" in value:
            raise ValueError(
                "must be only the server's name or address, without 'sftp://' or 'ssh://', "
                "e.g. nas.local or 192.168.1.20"
            )
        if "@" in value:
            raise ValueError("must be only the server's name or address; put the user name under username")
        if "/" in value:
            raise ValueError("must be only the server's name or address; put the folder under folder")
        bare = value.removeprefix("[").removesuffix("]")
        with contextlib.suppress(ValueError):
            return str(ipaddress.ip_address(bare))
        if value.count(":") == 1:
            raise ValueError(
                "must not include the port; put it under port, e.g. host nas.local and port 2222"
            )
        if not HOST_NAME.match(value):
            raise ValueError(
                "must be a host name or IP address, e.g. nas.local, my-vps.example.com or 192.168.1.20"
            )
        return value

    @field_validator("port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError("must be a port number from 1 to 65535; SSH usually listens on 22")
        return value

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError(
                "must not be empty; it is the account you log in with on the server, e.g. backup"
            )
        if any(ord(c) < 32 for c in value):
            raise ValueError("must not contain control characters")
        return value

    @field_validator("folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        return normalize_folder(value)

    @field_validator("host_key")
    @classmethod
    def _host_key(cls, value: str | None) -> str | None:
        return None if value is None else host_key_line(load_host_key(value))

    @field_validator("private_key")
    @classmethod
    def _private_key(cls, value: str | None) -> str | None:
        return None if value is None else normalize_private_key(value)

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        if self.password is None and self.private_key is None:
            raise ValueError("needs a password or a private_key to log in to the server; set one of them")
        if self.password is not None and self.private_key is not None:
            raise ValueError("has both password and private_key; set only one (a private key is safer)")
        if self.passphrase is not None and self.private_key is None:
            raise ValueError("has a passphrase but no private_key; the passphrase only unlocks a private key")
        if self.private_key is not None:
            try:
                load_private_key(self.private_key, self.passphrase)
            except ValueError as err:
                raise ValueError(f"private_key {err}") from None
        return self


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
