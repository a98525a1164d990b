"""age v1 file encryption (C2SP age, https://age-encryption.org/v1) for X25519 recipients.

Built only on `cryptography` primitives (X25519, HKDF-SHA-256, HMAC-SHA-256,
ChaCha20-Poly1305), so it runs wherever `cryptography` has wheels, musl included. Files it
writes decrypt with any age implementation (`age`, `rage`, ...), and it decrypts their files
for X25519 identities; stanzas of other types (plugins, grease, ...) are skipped, but still
authenticated by the header MAC.

File layout::

    age-encryption.org/v1
    -> X25519 <ephemeral share>          one stanza per recipient, body = the wrapped
    <wrapped file key>                   16-byte file key, base64 wrapped at 64 columns
    --- <HMAC-SHA-256 of the header up to and including "---">
    <16-byte nonce><payload: ChaCha20-Poly1305 STREAM, 64 KiB plaintext chunks>

Streaming: `encrypt_stream` and `decrypt_stream` turn async iterators of bytes into async
iterators of bytes with bounded memory (about 2 MiB of buffers, whatever the input's piece
sizes) and do the AEAD work in batches of 16 chunks, so Python's per-chunk overhead stays
small. `decrypt_stream` releases plaintext only for chunks that authenticated; it raises
`AgePayloadError` on a truncated stream, trailing data, a damaged, reordered or repeated
chunk. As with any streaming decryption, plaintext released before such an error is
authentic but incomplete: a consumer must treat the whole output as invalid on error.

Error messages never contain key material.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import AsyncIterable, AsyncIterator, Buffer, Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import BinaryIO, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from . import bech32

__all__ = [
    "CHUNK_SIZE",
    "AgeError",
    "AgeHeaderError",
    "AgeHeaderMacError",
    "AgePayloadError",
    "Identity",
    "NoMatchingIdentity",
    "Recipient",
    "Stanza",
    "decrypt_bytes",
    "decrypt_file",
    "decrypt_file_blocks",
    "decrypt_stream",
    "encrypt_bytes",
    "encrypt_file",
    "encrypt_file_blocks",
    "encrypt_stream",
    "parse_identity_file",
]

INTRO: Final = b"age-encryption.org/v1\n"
CHUNK_SIZE: Final = 64 * 1024
TAG_SIZE: Final = 16
ENC_CHUNK_SIZE: Final = CHUNK_SIZE + TAG_SIZE
FILE_KEY_SIZE: Final = 16
NONCE_SIZE: Final = 16
MAX_HEADER_SIZE: Final = 1 << 20

# Chunks per AEAD batch: 16 x 64 KiB = 1 MiB of plaintext per output piece.
BATCH_CHUNKS: Final = 16

_X25519_LABEL: Final = b"age-encryption.org/v1/X25519"
_X25519_TYPE: Final = "X25519"
_IDENTITY_HRP: Final = "AGE-SECRET-KEY-"
_PUBLIC_HRP: Final = "age"
_COLUMNS: Final = 64
_BYTES_PER_LINE: Final = _COLUMNS // 4 * 3
_ZERO_NONCE: Final = bytes(12)
_B64_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_VCHAR: Final = bytes(range(33, 127))
_ARMOR_BEGIN: Final = b"-----BEGIN AGE ENCRYPTED FILE-----"
_VERSION_PREFIX: Final = b"age-encryption.org/"


# --- errors -----------------------------------------------------------------------------


class AgeError(ValueError):
    """Base of every age error. Messages are for users and never hold key material."""


class AgeHeaderError(AgeError):
    """Not an age file, an unsupported one, or its header is malformed."""


class AgeHeaderMacError(AgeHeaderError):
    """The header parsed and a file key was unwrapped, but the header MAC does not match."""

    def __init__(
        self, message: str = "the file's header failed authentication: it was modified or damaged"
    ) -> None:
        super().__init__(message)


class NoMatchingIdentity(AgeError):
    """None of the given identities can open any recipient stanza of the file."""

    def __init__(
        self,
        message: str = "this backup was encrypted for a different key; use the emergency kit that belongs to it",
    ) -> None:
        super().__init__(message)


class AgePayloadError(AgeError):
    """The encrypted content is damaged, truncated or has trailing data.

    `offset` is how many plaintext bytes were authenticated (and released) before the
    problem; `reason` says what went wrong.
    """

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"the file is damaged or incomplete after {offset} bytes: {reason}")
        self.offset = offset
        self.reason = reason

    def __reduce__(self) -> tuple[type[AgePayloadError], tuple[int, str]]:
        return type(self), (self.offset, self.reason)


# --- small primitives -------------------------------------------------------------------


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt or None, info=info).derive(ikm)


def _b64encode(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _b64decode(text: bytes) -> bytes:
    """Strict unpadded base64: the standard alphabet only, canonical, no `=`, no newlines."""
    if len(text) % 4 == 1 or text.translate(None, _B64_ALPHABET):
        raise ValueError("not unpadded base64")
    try:
        data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise ValueError("not unpadded base64") from None
    if _b64encode(data) != text:
        raise ValueError("non-canonical base64")
    return data


def _nonce(counter: int, last: bool) -> bytes:
    return ((counter << 8) | last).to_bytes(12, "big")


# --- keys -------------------------------------------------------------------------------


class Recipient:
    """An age X25519 public key (`age1...`): files encrypted to it open with its identity."""

    __slots__ = ("_public",)

    def __init__(self, public_bytes: bytes) -> None:
        public_bytes = bytes(public_bytes)
        if len(public_bytes) != 32:
            raise ValueError("not an age public key (age1...): an X25519 public key is 32 bytes")
        try:
            # A low-order point would give every sender the all-zero shared secret.
            X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(public_bytes))
        except ValueError:
            raise ValueError("not an age public key (age1...): not a usable X25519 point") from None
        self._public = public_bytes

    @classmethod
    def from_public_bytes(cls, public_bytes: bytes) -> Recipient:
        return cls(public_bytes)

    @classmethod
    def parse(cls, text: str) -> Recipient:
        """Parse an `age1...` public key (surrounding whitespace is ignored)."""
        text = text.strip()
        if text.upper().startswith(_IDENTITY_HRP):
            raise ValueError("not an age public key (age1...): this is a secret key, give its public key")
        if text.startswith(("ssh-", "ecdsa-")):
            raise ValueError("not an age public key (age1...): SSH keys are not supported")
        if not text.startswith("age1"):
            raise ValueError("not an age public key (age1...)")
        try:
            hrp, data = bech32.decode(text)
        except bech32.Bech32Error as err:
            raise ValueError(f"not an age public key (age1...): {err}") from None
        if hrp != _PUBLIC_HRP:
            raise ValueError("not an age public key (age1...): this is a plugin or post-quantum key")
        return cls(data)

    @property
    def public_bytes(self) -> bytes:
        return self._public

    def wrap(self, file_key: bytes) -> Stanza:
        """Wrap `file_key` into an X25519 stanza for this recipient (fresh ephemeral key)."""
        ephemeral = X25519PrivateKey.generate()
        share = ephemeral.public_key().public_bytes_raw()
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(self._public))
        wrap_key = _hkdf(shared, share + self._public, _X25519_LABEL)
        body = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)
        return Stanza(_X25519_TYPE, (_b64encode(share).decode("ascii"),), body)

    def __str__(self) -> str:
        return bech32.encode(_PUBLIC_HRP, self._public)

    def __repr__(self) -> str:
        return f"Recipient({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Recipient) and other._public == self._public

    def __hash__(self) -> int:
        return hash(self._public)


class Identity:
    """An age X25519 secret key (`AGE-SECRET-KEY-1...`). Its repr never shows the secret."""

    __slots__ = ("_key", "_public", "_secret")

    def __init__(self, private_bytes: bytes) -> None:
        private_bytes = bytes(private_bytes)
        if len(private_bytes) != 32:
            raise ValueError("not an age secret key (AGE-SECRET-KEY-1...): an X25519 secret key is 32 bytes")
        self._secret = private_bytes
        self._key = X25519PrivateKey.from_private_bytes(private_bytes)
        self._public = self._key.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> Identity:
        return cls(os.urandom(32))

    @classmethod
    def from_private_bytes(cls, private_bytes: bytes) -> Identity:
        return cls(private_bytes)

    @classmethod
    def parse(cls, text: str) -> Identity:
        """Parse an `AGE-SECRET-KEY-1...` secret key (surrounding whitespace is ignored)."""
        text = text.strip()
        if text.startswith("age1"):
            raise ValueError("not an age secret key (AGE-SECRET-KEY-1...): this is a public key")
        if not text.upper().startswith(_IDENTITY_HRP + "1"):
            raise ValueError("not an age secret key (AGE-SECRET-KEY-1...)")
        try:
            hrp, data = bech32.decode(text)
        except bech32.Bech32Error as err:
            raise ValueError(f"not an age secret key (AGE-SECRET-KEY-1...): {err}") from None
        if hrp != _IDENTITY_HRP:
            raise ValueError("not an age secret key (AGE-SECRET-KEY-1...): it must be all uppercase")
        return cls(data)

    def private_bytes(self) -> bytes:
        return self._secret

    def to_string(self) -> str:
        """The `AGE-SECRET-KEY-1...` encoding. It is the secret: handle with care."""
        return bech32.encode(_IDENTITY_HRP, self._secret)

    def recipient(self) -> Recipient:
        return Recipient(self._public)

    def unwrap(self, stanza: Stanza) -> bytes | None:
        """The file key if `stanza` is addressed to this identity, else None.

        Raises AgeHeaderError for a malformed X25519 stanza or a low-order ephemeral share.
        """
        if stanza.type != _X25519_TYPE:
            return None
        if len(stanza.args) != 1:
            raise AgeHeaderError("malformed X25519 recipient stanza: it must have exactly one argument")
        try:
            share = _b64decode(stanza.args[0].encode("ascii"))
        except ValueError:
            raise AgeHeaderError(
                "malformed X25519 recipient stanza: the share is not canonical base64"
            ) from None
        if len(share) != 32:
            raise AgeHeaderError("malformed X25519 recipient stanza: the share is not 32 bytes")
        if len(stanza.body) != FILE_KEY_SIZE + TAG_SIZE:
            raise AgeHeaderError("malformed X25519 recipient stanza: the wrapped file key has the wrong size")
        try:
            shared = self._key.exchange(X25519PublicKey.from_public_bytes(share))
        except ValueError:
            shared = bytes(32)
        if not any(shared):
            raise AgeHeaderError("malformed X25519 recipient stanza: low-order ephemeral share")
        wrap_key = _hkdf(shared, share + self._public, _X25519_LABEL)
        try:
            return ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, stanza.body, None)
        except InvalidTag:
            return None

    def __repr__(self) -> str:
        return f"Identity(<secret>, recipient={str(self.recipient())!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Identity) and hmac.compare_digest(other._secret, self._secret)

    def __hash__(self) -> int:
        return hash(self._public)


def parse_identity_file(text: str) -> list[Identity]:
    """Parse an age identity file: one key a line, blank lines and `#` comments ignored."""
    identities: list[Identity] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(Identity.parse(line))
        except ValueError as err:
            raise ValueError(f"line {number}: {err}") from None
    if not identities:
        raise ValueError("no age secret key (AGE-SECRET-KEY-1...) in the identity file")
    return identities


# --- header -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stanza:
    """One recipient stanza: `-> type args...` and a binary body."""

    type: str
    args: tuple[str, ...]
    body: bytes

    def encode(self) -> bytes:
        line = " ".join(("->", self.type, *self.args)).encode("ascii") + b"\n"
        text = _b64encode(self.body)
        lines = [text[i : i + _COLUMNS] for i in range(0, len(text), _COLUMNS)]
        if len(text) % _COLUMNS == 0:
            lines.append(b"")  # the body always ends with a short (maybe empty) line
        return line + b"\n".join(lines) + b"\n"


def _header_mac(file_key: bytes, covered: bytes) -> bytes:
    return hmac.digest(_hkdf(file_key, b"", b"header"), covered, hashlib.sha256)


def _build_header(file_key: bytes, stanzas: Sequence[Stanza]) -> bytes:
    covered = INTRO + b"".join(s.encode() for s in stanzas) + b"---"
    return covered + b" " + _b64encode(_header_mac(file_key, covered)) + b"\n"


def _parse_stanza_args(line: bytes) -> tuple[str, tuple[str, ...]]:
    parts = line.split(b" ")
    if parts[0] != b"->" or len(parts) < 2:
        raise AgeHeaderError("malformed header: bad recipient stanza line")
    for arg in parts[1:]:
        if not arg or arg.translate(None, _VCHAR):
            raise AgeHeaderError("malformed header: bad recipient stanza argument")
    return parts[1].decode("ascii"), tuple(a.decode("ascii") for a in parts[2:])


def _parse_header(header: bytes) -> tuple[list[Stanza], bytes]:
    """Parse a complete header (ending with the MAC line's newline): (stanzas, MAC)."""
    lines = header.split(b"\n")
    if lines.pop() != b"" or lines[0] + b"\n" != INTRO or not lines[-1].startswith(b"---"):
        raise AgeHeaderError("malformed header")
    stanzas: list[Stanza] = []
    i = 1
    while not lines[i].startswith(b"---"):
        if not lines[i].startswith(b"->"):
            raise AgeHeaderError("malformed header: unexpected line")
        kind, args = _parse_stanza_args(lines[i])
        body = bytearray()
        while True:
            i += 1
            line = lines[i]
            if line.startswith((b"---", b"->")):
                raise AgeHeaderError("malformed header: a stanza body must end with a short line")
            if len(line) > _COLUMNS:
                raise AgeHeaderError("malformed header: stanza body line longer than 64 columns")
            try:
                piece = _b64decode(line)
            except ValueError as err:
                raise AgeHeaderError(f"malformed header: stanza body is {err}") from None
            body += piece
            if len(piece) < _BYTES_PER_LINE:
                break
        stanzas.append(Stanza(kind, args, bytes(body)))
        i += 1
    if i != len(lines) - 1:
        raise AgeHeaderError("malformed header")  # not reachable: the footer is the last line
    parts = lines[i].split(b" ")
    if parts[0] != b"---" or len(parts) != 2:
        raise AgeHeaderError("malformed header: bad MAC line")
    try:
        mac = _b64decode(parts[1])
    except ValueError as err:
        raise AgeHeaderError(f"malformed header: the MAC is {err}") from None
    if len(mac) != 32:
        raise AgeHeaderError("malformed header: the MAC has the wrong size")
    if not stanzas:
        raise AgeHeaderError("malformed header: no recipient stanza")
    return stanzas, mac


def _check_intro(data: bytes | bytearray, complete: bool) -> None:
    """Reject early what cannot become an age v1 header (`complete`: no more data comes)."""
    head = bytes(data[: len(_ARMOR_BEGIN)])
    if head.startswith(INTRO):
        return
    if INTRO.startswith(head):
        if not complete:
            return
        raise AgeHeaderError(
            "not an age-encrypted file: it is empty"
            if not head
            else "not an age-encrypted file: it ends inside the header"
        )
    if head == _ARMOR_BEGIN:
        raise AgeHeaderError("ASCII-armored age files are not supported; remove the armor first")
    if _ARMOR_BEGIN.startswith(head) and not complete:
        return
    if head.startswith(_VERSION_PREFIX):
        raise AgeHeaderError("unsupported age version line (only age-encryption.org/v1 is supported)")
    raise AgeHeaderError("not an age-encrypted file")


def _unwrap_file_key(stanzas: Sequence[Stanza], identities: Sequence[Identity]) -> bytes:
    if any(s.type == "scrypt" for s in stanzas) and len(stanzas) != 1:
        raise AgeHeaderError("malformed header: a passphrase (scrypt) stanza must be the only one")
    for identity in identities:
        for stanza in stanzas:
            file_key = identity.unwrap(stanza)
            if file_key is not None:
                return file_key
    if stanzas[0].type == "scrypt":
        raise NoMatchingIdentity("this file was encrypted with a passphrase (age -p), not with a key")
    raise NoMatchingIdentity()


# --- payload: batching and AEAD ----------------------------------------------------------


class _Rechunker:
    """Cuts a byte stream into whole `unit`s that are known not to be the last one.

    A unit is handed out only once at least one byte follows it, so the remainder at the
    end (0 < size <= unit, or 0 for an empty stream) is exactly the final unit. Pieces are
    copied only while they are smaller than a batch; large pieces are cut in place. Every
    buffer handed out is never written again, so views of it stay valid.
    """

    def __init__(self, unit: int, batch_units: int) -> None:
        self._unit = unit
        self._batch = batch_units
        self._pending = bytearray()

    def feed(self, piece: Buffer) -> Iterator[tuple[Buffer, int, int]]:
        """Yield (buffer, offset, count): `count` whole non-final units at `offset`."""
        view = memoryview(piece).cast("B")
        if not view:
            return
        unit, batch = self._unit, self._batch
        batch_bytes = unit * batch
        if self._pending:
            take = min(len(view), batch_bytes - len(self._pending))
            self._pending += view[:take]
            view = view[take:]
            if not view:
                return
            full, self._pending = self._pending, bytearray()
            yield full, 0, batch
        count = (len(view) - 1) // unit
        if count >= batch:
            for start in range(0, count, batch):
                yield view, start * unit, min(batch, count - start)
            view = view[count * unit :]
        self._pending = bytearray(view)

    def finish(self) -> tuple[Buffer, int, memoryview]:
        """(buffer, count, final): the last `count` (< batch) non-final units, then the final one."""
        data, self._pending = self._pending, bytearray()
        count = (len(data) - 1) // self._unit if data else 0
        return data, count, memoryview(data)[count * self._unit :]


class _Encryptor:
    """Incremental age encryption: `feed` and `finish` give jobs; each job returns bytes.

    Chunks are sealed straight from the caller's piece; only the last, possibly final,
    chunk of each piece (at most 64 KiB) is copied and held back until a byte follows it.
    A job reads the piece it was made from, so it must run before the caller reuses it.
    """

    def __init__(self, recipients: Sequence[Recipient]) -> None:
        if isinstance(recipients, Recipient) or not recipients:
            raise ValueError("age encryption needs a sequence of at least one recipient")
        if not all(isinstance(r, Recipient) for r in recipients):
            raise TypeError("recipients must be age Recipient objects (use Recipient.parse)")
        file_key = os.urandom(FILE_KEY_SIZE)
        nonce = os.urandom(NONCE_SIZE)
        header = _build_header(file_key, [r.wrap(file_key) for r in recipients])
        self._prefix = header + nonce
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._counter = 0
        self._held = b""
        self._queued: list[bytes] = []
        self._out = bytearray(BATCH_CHUNKS * ENC_CHUNK_SIZE)

    def feed(self, piece: Buffer) -> Iterator[Callable[[], bytes]]:
        view = memoryview(piece).cast("B")
        if not view:
            return
        held = self._held
        if len(held) < CHUNK_SIZE:
            need = CHUNK_SIZE - len(held)
            held += bytes(view[:need])
            view = view[need:]
            if not view:
                # Nothing follows yet, so this chunk may still be the final one.
                self._held = held
                return
        # `held` is one whole chunk and at least one byte follows it: it is not the final one.
        self._queued.append(held)
        count = (len(view) - 1) // CHUNK_SIZE
        self._held = bytes(view[count * CHUNK_SIZE :])
        if count == 0 and len(self._queued) < BATCH_CHUNKS:
            return  # small pieces: gather whole chunks until a batch is full
        queued, self._queued = self._queued, []
        first = min(count, BATCH_CHUNKS - len(queued))
        yield partial(self._seal, queued, view, 0, first)
        for start in range(first, count, BATCH_CHUNKS):
            yield partial(self._seal, [], view, start * CHUNK_SIZE, min(BATCH_CHUNKS, count - start))

    def finish(self) -> Callable[[], bytes]:
        """The last job: the chunks still gathered, the final chunk, and the header if still due."""
        final, self._held = self._held, b""
        queued, self._queued = self._queued, []
        return partial(self._seal_final, queued, final)

    def _take_prefix(self) -> bytes:
        prefix, self._prefix = self._prefix, b""
        return prefix

    def _seal(self, queued: list[bytes], buf: Buffer, offset: int, count: int) -> bytes:
        src = memoryview(buf)
        out = memoryview(self._out)
        encrypt_into = self._aead.encrypt_into
        counter = self._counter
        for i, chunk in enumerate(queued):
            encrypt_into(_nonce(counter + i, False), chunk, None, out[i * ENC_CHUNK_SIZE : (i + 1) * ENC_CHUNK_SIZE])
        done = len(queued)
        for i in range(count):
            start = offset + i * CHUNK_SIZE
            encrypt_into(
                _nonce(counter + done + i, False),
                src[start : start + CHUNK_SIZE],
                None,
                out[(done + i) * ENC_CHUNK_SIZE : (done + i + 1) * ENC_CHUNK_SIZE],
            )
        total = done + count
        self._counter = counter + total
        sealed = out[: total * ENC_CHUNK_SIZE]
        prefix = self._take_prefix()
        return prefix + sealed if prefix else bytes(sealed)

    def _seal_final(self, queued: list[bytes], final: bytes) -> bytes:
        head = self._seal(queued, b"", 0, 0) if queued else self._take_prefix()
        sealed = self._aead.encrypt(_nonce(self._counter, True), final, None)
        self._counter += 1
        return head + sealed


_Opened = tuple[bytes, AgePayloadError | None]


class _Decryptor:
    """Incremental age decryption. Jobs return (authenticated plaintext, error or None)."""

    def __init__(self, identities: Sequence[Identity]) -> None:
        if isinstance(identities, Identity) or not identities:
            raise ValueError("age decryption needs a sequence of at least one identity")
        if not all(isinstance(i, Identity) for i in identities):
            raise TypeError("identities must be age Identity objects (use Identity.parse)")
        self._identities = list(identities)
        self._header = bytearray()
        self._scanned = 0  # header bytes already searched for the MAC line
        self._footer = -1  # offset of the newline before "---", once seen
        self._file_key: bytes | None = None
        self._nonce = b""
        self._aead: ChaCha20Poly1305 | None = None
        self._counter = 0
        self._released = 0
        self._rechunker = _Rechunker(ENC_CHUNK_SIZE, BATCH_CHUNKS)
        self._out = bytearray(BATCH_CHUNKS * CHUNK_SIZE)

    def feed(self, piece: Buffer) -> Iterator[Callable[[], _Opened]]:
        view = memoryview(piece).cast("B")
        if self._aead is None:
            if self._file_key is None:
                view = self._take_header(view)
            if self._file_key is not None:
                view = self._take_nonce(view, self._file_key)
        if self._aead is not None and view:
            for buf, offset, count in self._rechunker.feed(view):
                yield partial(self._open, buf, offset, count)

    def finish(self) -> Callable[[], _Opened]:
        """The last job: the remaining chunks and the final one. Raises for a cut-off header."""
        if self._aead is None:
            if self._file_key is None:
                _check_intro(self._header, complete=True)
                raise AgeHeaderError("not an age-encrypted file: it ends inside the header")
            return partial(self._fail, "it ends before the encrypted content starts")
        return partial(self._open_last, *self._rechunker.finish())

    def _take_nonce(self, view: memoryview, file_key: bytes) -> memoryview:
        need = NONCE_SIZE - len(self._nonce)
        self._nonce += view[:need]
        if len(self._nonce) == NONCE_SIZE:
            self._aead = ChaCha20Poly1305(_hkdf(file_key, self._nonce, b"payload"))
            self._file_key = b""
        return view[need:]

    def _take_header(self, view: memoryview) -> memoryview:
        """Collect the header; once complete, parse and authenticate it, return the rest.

        At most MAX_HEADER_SIZE bytes are ever copied; the rest is a view of `view`.
        """
        header = self._header
        before = len(header)
        header += view[: MAX_HEADER_SIZE - before]
        _check_intro(header, complete=False)
        if self._footer < 0:
            self._footer = header.find(b"\n---", max(self._scanned - 3, 0))
            self._scanned = len(header) if self._footer < 0 else self._footer + 1
        end = header.find(b"\n", self._scanned) if self._footer >= 0 else -1
        if end < 0:
            if len(header) >= MAX_HEADER_SIZE:
                raise AgeHeaderError("malformed header: longer than 1 MiB")
            if self._footer >= 0 and len(header) - self._footer > 2 * _COLUMNS:
                raise AgeHeaderError("malformed header: bad MAC line")
            self._scanned = len(header)
            return view[len(view) :]
        complete = bytes(header[: end + 1])
        self._header = bytearray()
        stanzas, mac = _parse_header(complete)
        file_key = _unwrap_file_key(stanzas, self._identities)
        if not hmac.compare_digest(_header_mac(file_key, complete[: self._footer + 4]), mac):
            raise AgeHeaderMacError()
        self._file_key = file_key
        return view[end + 1 - before :]

    # payload

    def _fail(self, reason: str) -> _Opened:
        return b"", AgePayloadError(self._released, reason)

    def _open(self, buf: Buffer, offset: int, count: int) -> _Opened:
        assert self._aead is not None
        src = memoryview(buf)
        out = memoryview(self._out)
        decrypt_into = self._aead.decrypt_into
        counter = self._counter
        for i in range(count):
            start = offset + i * ENC_CHUNK_SIZE
            chunk = src[start : start + ENC_CHUNK_SIZE]
            try:
                decrypt_into(
                    _nonce(counter + i, False), chunk, None, out[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE]
                )
            except InvalidTag:
                good = bytes(out[: i * CHUNK_SIZE])
                self._counter = counter + i
                self._released += len(good)
                if self._opens_as_final(chunk):
                    return good, AgePayloadError(
                        self._released, "unexpected data after the end of the content"
                    )
                return good, AgePayloadError(self._released, "a chunk failed authentication")
        self._counter = counter + count
        self._released += count * CHUNK_SIZE
        return bytes(out[: count * CHUNK_SIZE]), None

    def _opens_as_final(self, chunk: memoryview) -> bool:
        assert self._aead is not None
        try:
            self._aead.decrypt(_nonce(self._counter, True), chunk, None)
        except InvalidTag:
            return False
        return True

    def _open_last(self, buf: Buffer, count: int, final: memoryview) -> _Opened:
        head, error = self._open(buf, 0, count) if count else (b"", None)
        if error is not None:
            return head, error
        plaintext, error = self._open_final(final)
        return head + plaintext, error

    def _open_final(self, chunk: memoryview) -> _Opened:
        assert self._aead is not None
        if len(chunk) < TAG_SIZE:
            return self._fail("it ends before the final chunk")
        if len(chunk) == TAG_SIZE and self._counter > 0:
            return self._fail("the final chunk is empty, which age does not allow")
        try:
            plaintext = self._aead.decrypt(_nonce(self._counter, True), chunk, None)
        except InvalidTag:
            if len(chunk) == ENC_CHUNK_SIZE:
                try:
                    plaintext = self._aead.decrypt(_nonce(self._counter, False), chunk, None)
                except InvalidTag:
                    pass
                else:
                    self._counter += 1
                    self._released += len(plaintext)
                    return plaintext, AgePayloadError(self._released, "it ends before the final chunk")
            return self._fail("the final chunk failed authentication (damaged or cut short)")
        self._counter += 1
        self._released += len(plaintext)
        return plaintext, None


# --- public streaming API ----------------------------------------------------------------


async def encrypt_stream(
    chunks: AsyncIterable[Buffer], recipients: Sequence[Recipient], *, offload: bool = False
) -> AsyncIterator[bytes]:
    """Encrypt a stream of byte pieces (any sizes) into an age file, yielded in ~1 MiB pieces.

    The header, with a fresh file key wrapped for every recipient, comes with the first
    piece. With `offload`, each batch's AEAD work runs in a worker thread (keeps the event
    loop free of the ~0.3 ms per MiB of crypto, at some throughput cost).
    """
    encryptor = _Encryptor(recipients)
    async for piece in chunks:
        for job in encryptor.feed(piece):
            yield await asyncio.to_thread(job) if offload else job()
    job = encryptor.finish()
    yield await asyncio.to_thread(job) if offload else job()


async def decrypt_stream(
    chunks: AsyncIterable[Buffer], identities: Sequence[Identity], *, offload: bool = False
) -> AsyncIterator[bytes]:
    """Decrypt an age file given as a stream of byte pieces; yield authenticated plaintext.

    Raises AgeHeaderError (not age, malformed, MAC mismatch), NoMatchingIdentity, or
    AgePayloadError (damaged, truncated, trailing data) - the latter after yielding the
    plaintext of every chunk that did authenticate, and never anything beyond it.
    """
    decryptor = _Decryptor(identities)
    async for piece in chunks:
        for job in decryptor.feed(piece):
            plaintext, error = await asyncio.to_thread(job) if offload else job()
            if plaintext:
                yield plaintext
            if error is not None:
                raise error
    job = decryptor.finish()
    plaintext, error = await asyncio.to_thread(job) if offload else job()
    if plaintext:
        yield plaintext
    if error is not None:
        raise error


# --- synchronous helpers -------------------------------------------------------------------


def encrypt_bytes(data: Buffer, recipients: Sequence[Recipient]) -> bytes:
    """Encrypt `data` in memory to an age file."""
    encryptor = _Encryptor(recipients)
    out = [job() for job in encryptor.feed(data)]
    out.append(encryptor.finish()())
    return b"".join(out)


def decrypt_bytes(data: Buffer, identities: Sequence[Identity]) -> bytes:
    """Decrypt an age file in memory; raises on any damage (nothing partial is returned)."""
    decryptor = _Decryptor(identities)
    out: list[bytes] = []

    def run(job: Callable[[], _Opened]) -> None:
        plaintext, error = job()
        if error is not None:
            raise error
        out.append(plaintext)

    for job in decryptor.feed(data):
        run(job)
    run(decryptor.finish())
    return b"".join(out)


def _read_pieces(src: BinaryIO, size: int) -> Iterator[Buffer]:
    """Read `src` in pieces, into one reused buffer when it supports readinto.

    Each piece is only valid until the next one is read: every job made from a piece runs
    before the next read, and the rechunker copies what it keeps.
    """
    readinto = getattr(src, "readinto", None)
    if readinto is None:
        while piece := src.read(size):
            yield piece
        return
    buffer = bytearray(size)
    view = memoryview(buffer)
    while count := readinto(buffer):
        yield view[:count]


def encrypt_file_blocks(
    src: BinaryIO, recipients: Sequence[Recipient], *, read_size: int = 1 << 20
) -> Iterator[bytes]:
    """Encrypt a binary file object, yielding the age file in ~1 MiB blocks."""
    encryptor = _Encryptor(recipients)
    for piece in _read_pieces(src, read_size):
        for job in encryptor.feed(piece):
            yield job()
    yield encryptor.finish()()


def decrypt_file_blocks(
    src: BinaryIO, identities: Sequence[Identity], *, read_size: int = 1 << 20
) -> Iterator[bytes]:
    """Decrypt an age file from a binary file object, yielding authenticated plaintext blocks.

    Raises like `decrypt_stream`, after yielding every block that authenticated.
    """
    decryptor = _Decryptor(identities)

    def opened() -> Iterator[Callable[[], _Opened]]:
        for piece in _read_pieces(src, read_size):
            yield from decryptor.feed(piece)
        yield decryptor.finish()

    for job in opened():
        plaintext, error = job()
        if plaintext:
            yield plaintext
        if error is not None:
            raise error


def encrypt_file(
    src: BinaryIO, dst: BinaryIO, recipients: Sequence[Recipient], *, read_size: int = 1 << 20
) -> int:
    """Encrypt from one binary file object to another; returns the bytes written."""
    return sum(dst.write(block) for block in encrypt_file_blocks(src, recipients, read_size=read_size))


def decrypt_file(
    src: BinaryIO, dst: BinaryIO, identities: Sequence[Identity], *, read_size: int = 1 << 20
) -> int:
    """Decrypt from one binary file object to another; returns the plaintext bytes written.

    On an AgePayloadError `dst` holds only the authenticated part; callers should discard it.
    """
    return sum(dst.write(block) for block in decrypt_file_blocks(src, identities, read_size=read_size))
