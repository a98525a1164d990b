"""Any S3-compatible object store: AWS, Backblaze B2, Cloudflare R2, Wasabi, MinIO, Garage, Ceph RGW.

Uploads are multipart and streamed: parts of at least 8 MiB, at most two in flight, each sent
with its Content-MD5 and (where the server takes it) its SHA-256 checksum. The object appears
only when the upload is completed. A journal records the upload id and every finished part, so
a put of the same key after a restart skips the parts already stored, once their bytes are
proven identical.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import hashlib
import io
import json
import logging
import math
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

import aiohttp
from aiobotocore.session import AioSession  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
    SSLError,
)

from ..errors import (
    LocationAuthFailed,
    LocationError,
    LocationFull,
    LocationReadOnly,
    LocationTimeout,
    LocationUnreachable,
)
from .base import StoredObject, Usage, split_key
from .s3_options import ENDPOINT_EXAMPLE, normalize_endpoint, normalize_prefix
from .s3_options import S3LocationOptions as S3LocationOptions

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

MiB = 1 << 20
MIN_PART_SIZE = 8 * MiB
S3_MIN_PART_SIZE = 5 * MiB  # S3's own floor for every part but the last
MAX_PART_SIZE = 5 << 30
MAX_PARTS = 10_000
# Without a declared size the part size doubles every this many parts, so 10000 parts reach
# S3's 5 TiB object limit while an ordinary backup keeps 8 MiB parts and little memory.
PARTS_PER_STEP = 1000
PARTS_IN_FLIGHT = 2
# aiohttp starts its read timeout only once a request's body is sent, so a server that stops
# taking the body would hang the upload; each request also gets a deadline that allows at
# least this rate (bytes per second) for its body.
MIN_SEND_RATE = 32 * 1024
READ_CHUNK = MiB
ABANDONED_AFTER = timedelta(days=1)

AUTH_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
        "InvalidSecurity",
        "UnrecognizedClientException",
    }
)
FULL_CODES = frozenset(
    {"QuotaExceeded", "EntityTooLarge", "StorageCapExceeded", "XMinioStorageFull", "InsufficientStorage"}
)
FULL_HINTS = ("cap exceeded", "quota", "storage limit", "storage full", "no space")
BUSY_CODES = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "ServerBusy"})


# --- part sizes ----------------------------------------------------------------------------


def part_size(part_number: int, size_hint: int | None = None, *, base: int = MIN_PART_SIZE) -> int:
    """How many bytes part `part_number` (from 1) holds.

    With a declared size, one size fits the whole object in 10000 parts. Without one, parts
    start at `base` (8 MiB) and double every 1000 parts, so any object up to S3's 5 TiB fits.
    """
    if part_number < 1:
        raise ValueError("part numbers start at 1")
    grown = base << ((part_number - 1) // PARTS_PER_STEP)
    if size_hint:
        # 1 MiB steps keep the parts of equal archives equal, which resuming relies on.
        declared = math.ceil(size_hint / MAX_PARTS / MiB) * MiB
        grown = max(grown, declared)
    return min(grown, MAX_PART_SIZE)


# --- the resume journal --------------------------------------------------------------------


class MultipartJournal(Protocol):
    """Where open multipart uploads are remembered across restarts.

    One entry per object; `state` is plain JSON. The journal must belong to one location, or
    its keys must be unique across locations (the location passes its full object address).
    """

    async def load(self, key: str) -> dict[str, Any] | None:
        """The entry for key, or None."""
        ...

    async def save(self, key: str, state: dict[str, Any]) -> None:
        """Replace the entry for key, durably."""
        ...

    async def drop(self, key: str) -> None:
        """Forget key; forgetting a missing entry is not an error."""
        ...


class MemoryJournal:
    """A journal that lives as long as the process: resumes within one run only."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}

    async def load(self, key: str) -> dict[str, Any] | None:
        entry = self.entries.get(key)
        return json.loads(json.dumps(entry)) if entry is not None else None

    async def save(self, key: str, state: dict[str, Any]) -> None:
        self.entries[key] = json.loads(json.dumps(state))

    async def drop(self, key: str) -> None:
        self.entries.pop(key, None)


class JsonFileJournal:
    """A journal in one JSON file, replaced atomically on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, entries: dict[str, dict[str, Any]]) -> None:
        temp = self.path.with_name(f".{self.path.name}.tmp")
        with temp.open("w", encoding="utf-8") as handle:
            json.dump(entries, handle)
            handle.flush()
            os.fsync(handle.fileno())
        temp.replace(self.path)

    async def load(self, key: str) -> dict[str, Any] | None:
        async with self._lock:
            return (await asyncio.to_thread(self._read)).get(key)

    async def save(self, key: str, state: dict[str, Any]) -> None:
        async with self._lock:
            entries = await asyncio.to_thread(self._read)
            entries[key] = state
            await asyncio.to_thread(self._write, entries)

    async def drop(self, key: str) -> None:
        async with self._lock:
            entries = await asyncio.to_thread(self._read)
            if entries.pop(key, None) is not None:
                await asyncio.to_thread(self._write, entries)


# --- the location --------------------------------------------------------------------------


@dataclass
class _Upload:
    """One open multipart upload and the parts stored in it."""

    upload_id: str
    object_key: str
    started: datetime
    checksum: bool
    parts: dict[int, dict[str, Any]] = field(default_factory=dict)

    def state(self, bucket: str) -> dict[str, Any]:
        return {
            "upload_id": self.upload_id,
            "bucket": bucket,
            "object_key": self.object_key,
            "started": self.started.isoformat(),
            "checksum": "SHA256" if self.checksum else None,
            "parts": [self.parts[n] for n in sorted(self.parts)],
        }


class _ResumeMismatch(Exception):
    """The incoming bytes differ from the interrupted upload's parts."""

    def __init__(self, part_number: int, data: bytearray) -> None:
        super().__init__(part_number)
        self.part_number = part_number
        self.data = data


class _PartReader:
    """Cuts a stream of chunks of any size into parts of exact sizes."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._leftover = b""
        self._ended = False
        self._returned: bytearray | None = None

    @property
    def exhausted(self) -> bool:
        """True once the stream has ended and every byte was handed out."""
        return self._ended and not self._leftover and self._returned is None

    def give_back(self, part: bytearray) -> None:
        """Make the next read return `part` as it is (a part read ahead to choose how to send)."""
        self._returned = part

    async def read(self, size: int) -> bytearray:
        """Exactly `size` bytes, or fewer at the end of the stream.

        The part is filled in place, so it never exists twice in memory.
        """
        if self._returned is not None:
            part, self._returned = self._returned, None
            return part
        part = bytearray(size)
        have = 0
        with memoryview(part) as view:
            if self._leftover:
                have = min(size, len(self._leftover))
                view[:have] = self._leftover[:have]
                self._leftover = self._leftover[have:]
            while have < size and not self._ended:
                try:
                    chunk = await anext(self._chunks)
                except StopAsyncIteration:
                    self._ended = True
                    break
                take = min(len(chunk), size - have)
                view[have : have + take] = memoryview(chunk)[:take]
                if take < len(chunk):
                    self._leftover = chunk[take:]
                have += take
        if have < size:
            del part[have:]
        return part


class _PartBody(io.RawIOBase):
    """A part as the request body, read straight from its buffer.

    Given bytes, botocore and aiohttp would each make a copy of every part in flight.
    """

    def __init__(self, data: bytearray) -> None:
        super().__init__()
        self._view = memoryview(data)
        self._position = 0

    def __len__(self) -> int:
        return len(self._view)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, min(len(self._view), base + offset))
        return self._position

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), len(self._view) - self._position)
        buffer[:count] = self._view[self._position : self._position + count]
        self._position += count
        return count

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._position + size)
        chunk = bytes(self._view[self._position : end])
        self._position = end
        return chunk

    def release(self) -> None:
        """Let go of the part: request objects may live on in reference cycles until a GC pass."""
        self._view.release()
        self._view = memoryview(b"")
        self._position = 0


_SESSION: AioSession | None = None


def _session() -> AioSession:
    """One botocore session per process: it parses the S3 service model (about 10 MiB) once."""
    global _SESSION
    if _SESSION is None:
        _SESSION = AioSession()
    return _SESSION


def _digests(data: bytearray) -> tuple[bytes, bytes]:
    return hashlib.md5(data, usedforsecurity=False).digest(), hashlib.sha256(data).digest()


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _check_key(key: str) -> None:
    split_key(key, hidden=True)


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _status(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


class S3Location:
    """Copies as objects in one bucket, under an optional prefix."""

    kind = "s3"

    def __init__(
        self,
        name: str,
        *,
        bucket: str,
        access_key_id: str,
        secret_access_key: str,
        endpoint: str | None = None,
        region: str = "us-east-1",
        prefix: str = "",
        addressing_style: Literal["path", "virtual"] | None = None,
        storage_class: str | None = None,
        object_lock_days: int | None = None,
        object_lock_mode: Literal["governance", "compliance"] = "governance",
        verify_tls: bool = True,
        offsite: bool = True,
        journal: MultipartJournal | None = None,
        connect_timeout: float = 15,
        read_timeout: float = 60,
        min_send_rate: float = MIN_SEND_RATE,
        min_part_size: int = MIN_PART_SIZE,
    ) -> None:
        if min_part_size < S3_MIN_PART_SIZE:
            raise ValueError("S3 parts must be at least 5 MiB")
        self.name = name
        self.offsite = offsite
        self.bucket = bucket
        self.endpoint = normalize_endpoint(endpoint)
        self.region = region
        self.prefix = normalize_prefix(prefix)
        self.storage_class = storage_class
        self.object_lock_days = object_lock_days
        self.object_lock_mode = object_lock_mode.upper()
        self.journal: MultipartJournal = journal if journal is not None else MemoryJournal()
        self.min_part_size = min_part_size
        # What this object sent, for logs and the panel: parts (and single PUTs) and their bytes.
        self.parts_sent = 0
        self.bytes_sent = 0
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._verify_tls = verify_tls
        self._config = Config(
            region_name=region,
            signature_version="s3v4",
            s3={"addressing_style": addressing_style or ("path" if self.endpoint else "virtual")},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # Retries belong to RetryingLocation; here a failure is reported at once.
            retries={"total_max_attempts": 1, "mode": "standard"},
            # Many S3-compatible servers reject the CRC32 that botocore adds by default; the
            # location sends its own Content-MD5 and SHA-256 instead.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=PARTS_IN_FLIGHT + 2,
        )
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._min_send_rate = min_send_rate
        self._checksums = True  # cleared when the server refuses SHA-256 checksums
        self._bucket_seen = False
        self._lock_checked = False
        self._journal_lock = asyncio.Lock()
        if self.endpoint is not None and self.endpoint.startswith("http://"):
            _LOGGER.warning(
                "%s: the endpoint %s uses http://, so the connection is not encrypted "
                "(copies in an envelope stay encrypted)",
                name,
                self.endpoint,
            )
        if not verify_tls and (self.endpoint is None or self.endpoint.startswith("https://")):
            # Only the location's name: the endpoint and the keys stay out of the log.
            _LOGGER.warning(
                "location %r: verify_tls is off, so the add-on cannot tell the real server from an impostor; "
                "turn it on as soon as the server has a trusted certificate",
                name,
            )

    @classmethod
    def from_options(
        cls, options: S3LocationOptions, *, journal: MultipartJournal | None = None
    ) -> S3Location:
        return cls(
            options.name,
            bucket=options.bucket,
            access_key_id=options.access_key_id,
            secret_access_key=options.secret_access_key,
            endpoint=options.endpoint,
            region=options.region,
            prefix=options.prefix,
            addressing_style=options.addressing_style,
            storage_class=options.storage_class,
            object_lock_days=options.object_lock_days,
            object_lock_mode=options.object_lock_mode or "governance",
            verify_tls=options.verify_tls,
            journal=journal,
        )

    # --- plumbing --------------------------------------------------------------------------

    @property
    def _server(self) -> str:
        return urlsplit(self.endpoint).netloc if self.endpoint else f"AWS ({self.region})"

    @property
    def _where(self) -> str:
        return f"bucket {self.bucket} on {self._server}"

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[Any]:
        async with contextlib.AsyncExitStack() as stack:
            try:
                client = await stack.enter_async_context(
                    _session().create_client(
                        "s3",
                        endpoint_url=self.endpoint,
                        region_name=self.region,
                        aws_access_key_id=self._access_key_id,
                        aws_secret_access_key=self._secret_access_key,
                        verify=self._verify_tls,
                        config=self._config,
                    )
                )
            except ValueError as err:
                # botocore refuses an endpoint or a region it cannot use before anything is sent;
                # its own text is not repeated, only which option to correct.
                if "region" in str(err).lower():
                    fix = (
                        f"region {self.region!r} is not a region code; write it as your provider does, "
                        "e.g. us-east-1"
                    )
                else:
                    fix = (
                        f"endpoint {self.endpoint or 'AWS'} is not a web address it can use; correct it, "
                        f"e.g. {ENDPOINT_EXAMPLE}"
                    )
                raise LocationError(self.name, f"the S3 client could not be set up: {fix}") from err
            yield client

    def _object_key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative(self, object_key: str) -> str:
        return object_key[len(self.prefix) + 1 :] if self.prefix else object_key

    def _journal_key(self, object_key: str) -> str:
        server = self.endpoint or f"aws:{self.region}"
        return f"{server}/{self.bucket}/{object_key}"

    async def _call(
        self,
        action: str,
        call: Callable[[], Awaitable[T]],
        *,
        client: Any = None,
        write: bool = False,
        body_size: int = 0,
        extra_seconds: float = 0,
    ) -> T:
        """Make one request; turn whatever goes wrong into a LocationError a user can act on."""
        deadline = (
            self._connect_timeout + self._read_timeout + body_size / self._min_send_rate + extra_seconds
        )
        try:
            async with asyncio.timeout(deadline):
                result = await call()
        except ClientError as err:
            raise await self._client_error(err, action, client=client, write=write) from err
        except (ConnectTimeoutError, ReadTimeoutError, TimeoutError) as err:
            raise LocationTimeout(self.name, f"{self._where} did not answer in time while {action}") from err
        except SSLError as err:
            raise LocationUnreachable(
                self.name,
                f"the TLS certificate of {self._where} could not be verified while {action}; if the server "
                "uses a self-signed certificate, set verify_tls: false",
            ) from err
        except (
            EndpointConnectionError,
            ConnectionClosedError,
            HTTPClientError,
            aiohttp.ClientError,
            OSError,
        ) as err:
            raise LocationUnreachable(
                self.name, f"cannot reach {self._where} while {action}; check the endpoint and the network"
            ) from err
        except BotoCoreError as err:
            raise LocationError(self.name, f"{action} failed: {err}") from err
        self._bucket_seen = True
        return result

    async def _client_error(
        self, err: ClientError, action: str, *, client: Any, write: bool
    ) -> LocationError:
        code = _code(err)
        status = _status(err)
        message = str(err.response.get("Error", {}).get("Message", "") or "")
        if code == "NoSuchBucket":
            return LocationUnreachable(
                self.name,
                f"bucket {self.bucket} does not exist on {self._server}; "
                "create it, or correct the bucket name",
            )
        if code == "AuthorizationHeaderMalformed" or code == "PermanentRedirect" or status == 301:
            region = (
                err.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
            )
            hint = f"set region: {region}" if region else "check the region and the endpoint"
            return LocationUnreachable(self.name, f"{self._where} is in another region; {hint}")
        if code in AUTH_CODES:
            return LocationAuthFailed(
                self.name,
                f"{self._where} refused the access key ({code}); check access_key_id and secret_access_key",
            )
        if code == "InvalidStorageClass":
            return LocationError(
                self.name, f"{self._where} does not offer storage class {self.storage_class}"
            )
        if code == "RequestTimeout":
            return LocationTimeout(self.name, f"{self._where} timed out the request while {action}")
        if code == "RequestTimeTooSkewed":
            return LocationAuthFailed(
                self.name, f"{self._where} refused the request: this machine's clock is wrong"
            )
        if code in FULL_CODES or status == 507 or any(hint in message.lower() for hint in FULL_HINTS):
            return LocationFull(
                self.name, f"{self._where} has no room for more while {action} ({code or status})"
            )
        if code == "AccessDenied" or status == 403:
            if write and client is not None and await self._can_list(client):
                return LocationReadOnly(
                    self.name,
                    f"the access key may read but not write {self._where}; give it write permission "
                    "(s3:PutObject and the multipart actions)",
                )
            return LocationAuthFailed(
                self.name,
                f"{self._where} denied access while {action}; check the key's permissions for the bucket",
            )
        if code in BUSY_CODES or status >= 500:
            return LocationUnreachable(
                self.name, f"{self._where} failed while {action} ({code or status}); try again later"
            )
        detail = f"{code}: {message}" if message else code or str(status)
        return LocationError(self.name, f"{action} failed: {self._where} answered {detail[:300]}")

    async def _can_list(self, client: Any) -> bool:
        try:
            await client.list_objects_v2(Bucket=self.bucket, Prefix=self._list_prefix, MaxKeys=1)
        except (ClientError, BotoCoreError, aiohttp.ClientError, OSError):
            return False
        return True

    @property
    def _list_prefix(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    async def _check_object_lock(self, client: Any) -> None:
        """Before the first locked copy: the bucket must have Object Lock turned on."""
        if self.object_lock_days is None or self._lock_checked:
            return
        try:
            answer = await self._call(
                "checking Object Lock", lambda: client.get_object_lock_configuration(Bucket=self.bucket)
            )
        except LocationError as err:
            cause = err.__cause__
            code = _code(cause) if isinstance(cause, ClientError) else ""
            if code == "ObjectLockConfigurationNotFoundError":
                raise LocationError(
                    self.name,
                    f"{self._where} does not have Object Lock turned on, so copies cannot be locked; "
                    "use a bucket created with Object Lock, or remove object_lock_days",
                ) from err
            if code in ("NotImplemented", "MethodNotAllowed"):
                raise LocationError(
                    self.name, f"{self._where} does not support Object Lock; remove object_lock_days"
                ) from err
            if code != "AccessDenied":  # a key without this permission may still lock objects
                raise
        else:
            if answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
                raise LocationError(
                    self.name, f"{self._where} does not have Object Lock turned on; remove object_lock_days"
                )
        self._lock_checked = True

    def _lock_arguments(self) -> dict[str, Any]:
        if self.object_lock_days is None:
            return {}
        until = datetime.now(UTC) + timedelta(days=self.object_lock_days)
        return {"ObjectLockMode": self.object_lock_mode, "ObjectLockRetainUntilDate": until}

    def _class_arguments(self) -> dict[str, Any]:
        return {"StorageClass": self.storage_class} if self.storage_class else {}

    async def _save(self, journal_key: str, upload: _Upload) -> None:
        async with self._journal_lock:
            await self.journal.save(journal_key, upload.state(self.bucket))

    # --- put -------------------------------------------------------------------------------

    async def put(
        self, key: str, chunks: AsyncIterator[bytes], *, size_hint: int | None = None
    ) -> StoredObject:
        """Store the chunks under key; the object exists only once every byte is stored.

        `size_hint`, when the caller knows the size, lets huge objects use parts large enough
        to stay under S3's 10000 parts from the start.
        """
        object_key = self._object_key(key)
        journal_key = self._journal_key(object_key)
        reader = _PartReader(chunks)
        async with self._client() as client:
            await self._check_object_lock(client)
            upload, first = await self._resume(client, journal_key, object_key, reader)
            if upload is None:
                first_size = self._part_size(1, size_hint)
                if first is None:
                    first = await reader.read(first_size)
                elif len(first) < first_size:
                    first += await reader.read(first_size - len(first))
                if len(first) < first_size:
                    return await self._put_single(client, key, object_key, first)
                # Held here, the first part would stay in memory for the whole upload.
                reader.give_back(first)
                del first
            return await self._put_multipart(client, key, object_key, journal_key, reader, size_hint, upload)

    def _part_size(self, number: int, size_hint: int | None) -> int:
        return part_size(number, size_hint, base=self.min_part_size)

    async def _put_single(self, client: Any, key: str, object_key: str, data: bytearray) -> StoredObject:
        md5, sha = await asyncio.to_thread(_digests, data)
        action = f"writing {key}"

        async def send(checksum: bool) -> dict[str, Any]:
            extra = {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": _b64(sha)} if checksum else {}
            body = _PartBody(data)
            try:
                return await self._call(
                    action,
                    lambda: client.put_object(
                        Bucket=self.bucket,
                        Key=object_key,
                        Body=body,
                        ContentMD5=_b64(md5),
                        **extra,
                        **self._class_arguments(),
                        **self._lock_arguments(),
                    ),
                    client=client,
                    write=True,
                    body_size=len(data),
                )
            finally:
                body.release()

        answer = await self._with_checksum_fallback(send)
        self._check_returned_checksum(answer, sha, key)
        self.parts_sent += 1
        self.bytes_sent += len(data)
        return await self._verify_stored(client, key, object_key, len(data), answer.get("VersionId"))

    async def _with_checksum_fallback(self, send: Callable[[bool], Awaitable[T]]) -> T:
        """Send with a SHA-256 checksum; once a server refuses checksums, send without them."""
        if not self._checksums:
            return await send(False)
        try:
            return await send(True)
        except LocationError as err:
            cause = err.__cause__
            if not (isinstance(cause, ClientError) and _refuses_checksums(cause)):
                raise
        _LOGGER.info("%s: the server does not take SHA-256 checksums; relying on Content-MD5", self.name)
        self._checksums = False
        return await send(False)

    def _check_returned_checksum(self, answer: dict[str, Any], sha: bytes, what: str) -> None:
        returned = answer.get("ChecksumSHA256")
        if self._checksums and returned and returned.split("-")[0] != _b64(sha):
            raise LocationError(self.name, f"{self._where} stored different bytes than were sent for {what}")

    async def _resume(
        self, client: Any, journal_key: str, object_key: str, reader: _PartReader
    ) -> tuple[_Upload | None, bytearray | None]:
        """Pick up an interrupted upload of the same key, skipping the parts already stored.

        Returns the upload to continue (or None to start afresh) and, when starting afresh,
        bytes already taken from the stream that belong at its start.
        """
        state = await self.journal.load(journal_key)
        if not state:
            return None, None
        upload = await self._open_upload_from(client, journal_key, object_key, state)
        if upload is None:
            return None, None
        try:
            for number in sorted(upload.parts):
                record = upload.parts[number]
                data = await reader.read(int(record["size"]))
                digest = (await asyncio.to_thread(_digests, data))[1]
                if len(data) != record["size"] or digest.hex() != record["sha256"]:
                    raise _ResumeMismatch(number, data)
        except _ResumeMismatch as mismatch:
            await self._abort(client, upload, journal_key)
            if mismatch.part_number == 1:
                _LOGGER.info(
                    "%s: %s differs from the interrupted upload; starting over", self.name, object_key
                )
                return None, mismatch.data
            raise LocationError(
                self.name,
                f"the data for {self._relative(object_key)} differs from the interrupted upload after "
                f"part {mismatch.part_number - 1}; that upload was discarded and the next attempt starts over",
            ) from None
        skipped = sum(int(p["size"]) for p in upload.parts.values())
        _LOGGER.info(
            "%s: resuming %s after %d stored parts (%d MiB)",
            self.name,
            object_key,
            len(upload.parts),
            skipped >> 20,
        )
        return upload, None

    async def _open_upload_from(
        self, client: Any, journal_key: str, object_key: str, state: dict[str, Any]
    ) -> _Upload | None:
        """The journal's upload if the server still has it open, trimmed to the parts both agree on."""
        if state.get("bucket") != self.bucket or state.get("object_key") != object_key:
            return None
        upload_id = str(state["upload_id"])
        try:
            listed = await self._list_parts(client, object_key, upload_id)
        except LocationError as err:
            if isinstance(err.__cause__, ClientError) and _code(err.__cause__) == "NoSuchUpload":
                await self.journal.drop(journal_key)
                return None
            raise
        upload = _Upload(
            upload_id=upload_id,
            object_key=object_key,
            started=datetime.fromisoformat(state["started"]),
            checksum=state.get("checksum") == "SHA256",
        )
        journaled = {int(p["number"]): p for p in state.get("parts", [])}
        number = 1
        while number in journaled and listed.get(number) == (
            journaled[number]["etag"],
            journaled[number]["size"],
        ):
            upload.parts[number] = journaled[number]
            number += 1
        if not upload.parts:
            await self._abort(client, upload, journal_key)
            return None
        return upload

    async def _list_parts(self, client: Any, object_key: str, upload_id: str) -> dict[int, tuple[str, int]]:
        listed: dict[int, tuple[str, int]] = {}
        marker = 0
        while True:
            page = await self._call(
                "checking the interrupted upload",
                partial(
                    client.list_parts,
                    Bucket=self.bucket,
                    Key=object_key,
                    UploadId=upload_id,
                    PartNumberMarker=marker,
                ),
                client=client,
            )
            for part in page.get("Parts", []):
                listed[int(part["PartNumber"])] = (str(part["ETag"]), int(part["Size"]))
            if not page.get("IsTruncated"):
                return listed
            marker = int(page["NextPartNumberMarker"])

    async def _create_upload(self, client: Any, key: str, object_key: str, journal_key: str) -> _Upload:
        async def create(checksum: bool) -> dict[str, Any]:
            extra = {"ChecksumAlgorithm": "SHA256"} if checksum else {}
            return await self._call(
                f"writing {key}",
                lambda: client.create_multipart_upload(
                    Bucket=self.bucket,
                    Key=object_key,
                    **extra,
                    **self._class_arguments(),
                    **self._lock_arguments(),
                ),
                client=client,
                write=True,
            )

        answer = await self._with_checksum_fallback(create)
        upload = _Upload(str(answer["UploadId"]), object_key, datetime.now(UTC), self._checksums)
        await self._save(journal_key, upload)
        return upload

    async def _put_multipart(
        self,
        client: Any,
        key: str,
        object_key: str,
        journal_key: str,
        reader: _PartReader,
        size_hint: int | None,
        upload: _Upload | None,
    ) -> StoredObject:
        if upload is None:
            upload = await self._create_upload(client, key, object_key, journal_key)
        number = max(upload.parts, default=0) + 1
        total = sum(int(p["size"]) for p in upload.parts.values())
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while True:
                data = await reader.read(self._part_size(number, size_hint))
                if not data:
                    break
                while len(in_flight) >= PARTS_IN_FLIGHT:
                    done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()
                in_flight.add(
                    asyncio.create_task(self._send_part(client, key, upload, journal_key, number, data))
                )
                total += len(data)
                number += 1
                del data
                if reader.exhausted:
                    break
            if in_flight:
                await asyncio.gather(*in_flight)
                in_flight = set()
            parts = [
                {"PartNumber": n, "ETag": p["etag"]}
                | ({"ChecksumSHA256": _b64(bytes.fromhex(p["sha256"]))} if upload.checksum else {})
                for n, p in sorted(upload.parts.items())
            ]
            answer = await self._call(
                f"completing {key}",
                lambda: client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=object_key,
                    UploadId=upload.upload_id,
                    MultipartUpload={"Parts": parts},
                ),
                client=client,
                write=True,
                # AWS may take minutes to join many parts (it sends blanks meanwhile).
                extra_seconds=0.25 * len(parts),
            )
        except BaseException as err:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            if isinstance(err, LocationAuthFailed | LocationReadOnly | LocationFull):
                # Nothing a later attempt could continue: give the space back now.
                await self._abort(client, upload, journal_key)
            raise
        await self.journal.drop(journal_key)
        return await self._verify_stored(client, key, object_key, total, answer.get("VersionId"))

    async def _send_part(
        self, client: Any, key: str, upload: _Upload, journal_key: str, number: int, data: bytearray
    ) -> None:
        md5, sha = await asyncio.to_thread(_digests, data)
        extra = {"ChecksumSHA256": _b64(sha)} if upload.checksum else {}
        body = _PartBody(data)
        try:
            answer = await self._call(
                f"writing {key}",
                lambda: client.upload_part(
                    Bucket=self.bucket,
                    Key=upload.object_key,
                    UploadId=upload.upload_id,
                    PartNumber=number,
                    Body=body,
                    ContentMD5=_b64(md5),
                    **extra,
                ),
                client=client,
                write=True,
                body_size=len(data),
            )
        finally:
            body.release()
        returned = answer.get("ChecksumSHA256")
        if upload.checksum and returned and returned != _b64(sha):
            raise LocationError(
                self.name, f"{self._where} stored different bytes than were sent for part {number} of {key}"
            )
        upload.parts[number] = {
            "number": number,
            "etag": str(answer["ETag"]),
            "size": len(data),
            "sha256": sha.hex(),
        }
        self.parts_sent += 1
        self.bytes_sent += len(data)
        await self._save(journal_key, upload)

    async def _abort(self, client: Any, upload: _Upload, journal_key: str) -> None:
        with contextlib.suppress(LocationError):
            await self._call(
                "discarding an unfinished upload",
                lambda: client.abort_multipart_upload(
                    Bucket=self.bucket, Key=upload.object_key, UploadId=upload.upload_id
                ),
                client=client,
            )
        await self.journal.drop(journal_key)

    async def _verify_stored(
        self, client: Any, key: str, object_key: str, size: int, version_id: str | None
    ) -> StoredObject:
        """Check the completed object's size, and that it carries the retention asked for."""
        head = await self._call(
            f"checking {key}", lambda: client.head_object(Bucket=self.bucket, Key=object_key), client=client
        )
        try:
            if int(head["ContentLength"]) != size:
                raise LocationError(
                    self.name,
                    f"{key} was stored with {head['ContentLength']} bytes instead of {size}; it was removed",
                )
            if self.object_lock_days is not None and not head.get("ObjectLockRetainUntilDate"):
                # Some servers keep the retention of a multipart upload's request only for
                # single PUTs; set it on the stored version itself.
                retention = self._lock_arguments()
                extra = {"VersionId": version_id} if version_id else {}
                try:
                    await self._call(
                        f"locking {key}",
                        lambda: client.put_object_retention(
                            Bucket=self.bucket,
                            Key=object_key,
                            Retention={
                                "Mode": retention["ObjectLockMode"],
                                "RetainUntilDate": retention["ObjectLockRetainUntilDate"],
                            },
                            **extra,
                        ),
                        client=client,
                    )
                except LocationError as err:
                    denied = isinstance(err.__cause__, ClientError) and _code(err.__cause__) == "AccessDenied"
                    hint = "; the access key needs the s3:PutObjectRetention permission" if denied else ""
                    raise type(err)(
                        self.name, f"{key} could not be locked, so it was removed: {_detail(err)}{hint}"
                    ) from err
        except LocationError:
            # With a version id the bad version itself goes, not just behind a delete marker.
            version = {"VersionId": version_id} if version_id else {}
            with contextlib.suppress(LocationError):
                await self._call(
                    f"removing {key}",
                    lambda: client.delete_object(Bucket=self.bucket, Key=object_key, **version),
                    client=client,
                )
            raise
        return StoredObject(key=key, size=size, modified=head["LastModified"])

    # --- read, list, delete ----------------------------------------------------------------

    async def open(self, key: str) -> AsyncIterator[bytes]:
        object_key = self._object_key(key)
        async with self._client() as client:
            try:
                answer = await self._call(
                    f"reading {key}",
                    lambda: client.get_object(Bucket=self.bucket, Key=object_key),
                    client=client,
                )
            except LocationError as err:
                if isinstance(err.__cause__, ClientError) and _code(err.__cause__) == "NoSuchKey":
                    raise LocationError(self.name, f"{key} does not exist in {self._where}") from err
                raise
            expected = int(answer["ContentLength"])
            received = 0
            async with answer["Body"] as body:
                while True:
                    chunk = await self._call(f"reading {key}", lambda: body.read(READ_CHUNK))
                    if not chunk:
                        break
                    received += len(chunk)
                    yield chunk
            if received != expected:
                raise LocationUnreachable(
                    self.name,
                    f"reading {key} from {self._where} stopped after {received} of {expected} bytes",
                )

    async def stat(self, key: str) -> StoredObject | None:
        object_key = self._object_key(key)
        async with self._client() as client:
            try:
                head = await self._call(
                    f"checking {key}",
                    lambda: client.head_object(Bucket=self.bucket, Key=object_key),
                    client=client,
                )
            except LocationError as err:
                cause = err.__cause__
                if not (
                    isinstance(cause, ClientError) and (_status(cause) == 404 or _code(cause) == "NoSuchKey")
                ):
                    raise
                if not self._bucket_seen:
                    # HEAD says only "404": tell a missing object from a missing bucket.
                    await self._call(
                        "checking the bucket",
                        lambda: client.list_objects_v2(
                            Bucket=self.bucket, Prefix=self._list_prefix, MaxKeys=1
                        ),
                        client=client,
                    )
                return None
        return StoredObject(key=key, size=int(head["ContentLength"]), modified=head["LastModified"])

    async def list(self) -> builtins.list[StoredObject]:
        found: builtins.list[StoredObject] = []
        async with self._client() as client:
            token: str | None = None
            while True:
                extra = {"ContinuationToken": token} if token else {}
                page = await self._call(
                    "listing copies",
                    partial(client.list_objects_v2, Bucket=self.bucket, Prefix=self._list_prefix, **extra),
                    client=client,
                )
                for item in page.get("Contents", []):
                    object_key = str(item["Key"])
                    if object_key.endswith("/"):
                        continue  # a "folder" placeholder some consoles create
                    found.append(
                        StoredObject(self._relative(object_key), int(item["Size"]), item["LastModified"])
                    )
                if not page.get("IsTruncated"):
                    break
                token = page["NextContinuationToken"]
        return sorted(found, key=lambda o: o.key)

    async def delete(self, key: str) -> None:
        object_key = self._object_key(key)
        async with self._client() as client:
            try:
                await self._call(
                    f"deleting {key}",
                    lambda: client.delete_object(Bucket=self.bucket, Key=object_key),
                    client=client,
                    write=True,
                )
            except LocationError as err:
                if not (isinstance(err.__cause__, ClientError) and _code(err.__cause__) == "NoSuchKey"):
                    raise

    async def usage(self) -> Usage | None:
        """S3 does not tell free space; this only proves the bucket is reachable with the key."""
        async with self._client() as client:
            await self._call(
                "connecting",
                lambda: client.list_objects_v2(Bucket=self.bucket, Prefix=self._list_prefix, MaxKeys=1),
                client=client,
            )
        return None

    async def cleanup_incomplete(self) -> int:
        """Abort multipart uploads under the prefix that no put will resume.

        An upload is kept while the journal knows it and it is less than a day old.
        """
        removed = 0
        now = datetime.now(UTC)
        async with self._client() as client:
            markers: dict[str, str] = {}
            while True:
                try:
                    page = await self._call(
                        "listing unfinished uploads",
                        partial(
                            client.list_multipart_uploads,
                            Bucket=self.bucket,
                            Prefix=self._list_prefix,
                            **markers,
                        ),
                        client=client,
                    )
                except LocationError as err:
                    # rclone answers NoSuchUpload when a bucket has no unfinished upload at all.
                    if isinstance(err.__cause__, ClientError) and _code(err.__cause__) == "NoSuchUpload":
                        break
                    raise
                for item in page.get("Uploads", []):
                    object_key, upload_id = str(item["Key"]), str(item["UploadId"])
                    journal_key = self._journal_key(object_key)
                    state = await self.journal.load(journal_key) or {}
                    ours = state.get("upload_id") == upload_id
                    if ours and now - datetime.fromisoformat(str(state["started"])) < ABANDONED_AFTER:
                        continue
                    with contextlib.suppress(LocationError):
                        await self._call(
                            "discarding an unfinished upload",
                            partial(
                                client.abort_multipart_upload,
                                Bucket=self.bucket,
                                Key=object_key,
                                UploadId=upload_id,
                            ),
                            client=client,
                        )
                        removed += 1
                    if ours:
                        await self.journal.drop(journal_key)
                if not page.get("IsTruncated"):
                    break
                markers = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
        return removed


def _refuses_checksums(err: ClientError) -> bool:
    code = _code(err)
    message = str(err.response.get("Error", {}).get("Message", "")).lower()
    return code == "NotImplemented" or (
        code in ("InvalidArgument", "InvalidRequest") and "checksum" in message
    )


def _detail(err: LocationError) -> str:
    return str(err).removeprefix(f"{err.location}: ")


def build(options: S3LocationOptions, *, journal: MultipartJournal | None = None) -> S3Location:
    """The location an `s3` entry of the `locations` option describes.

    Pass a journal that outlives the process (the catalog's) so uploads resume after a restart.
    """
    return S3Location.from_options(options, journal=journal)
