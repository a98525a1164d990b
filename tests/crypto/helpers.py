"""Test helpers: an independent age file builder (raw `cryptography` primitives, no code from
backup_addon), file layout arithmetic, and drivers for the async streaming API."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from backup_addon.crypto.age import Identity, Recipient, decrypt_stream, encrypt_stream

CHUNK = 64 * 1024
ENC_CHUNK = CHUNK + 16


def hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt or None, info=info).derive(ikm)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def kit_random(n: int, skip: int = 0) -> bytes:
    """The C2SP age testkit's deterministic "randomness": ChaCha20 keystream, fixed key, zero nonce."""
    cipher = Cipher(algorithms.ChaCha20(b"TEST RANDOMNESS TEST RANDOMNESS!", bytes(16)), None).encryptor()
    return cipher.update(bytes(skip + n))[skip:]


def stanza_lines(kind: str, args: Sequence[str], body: bytes) -> str:
    text = b64(body)
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    if len(text) % 64 == 0:
        lines.append("")
    return " ".join(["->", kind, *args]) + "\n" + "\n".join(lines) + "\n"


def x25519_stanza(recipient_public: bytes, file_key: bytes, ephemeral: X25519PrivateKey | None = None) -> str:
    ephemeral = ephemeral or X25519PrivateKey.generate()
    share = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient_public))
    key = hkdf(shared, share + recipient_public, b"age-encryption.org/v1/X25519")
    return stanza_lines("X25519", [b64(share)], ChaCha20Poly1305(key).encrypt(bytes(12), file_key, None))


def header_with_mac(file_key: bytes, stanzas_text: str) -> bytes:
    covered = ("age-encryption.org/v1\n" + stanzas_text + "---").encode()
    mac = hmac.digest(hkdf(file_key, b"", b"header"), covered, hashlib.sha256)
    return covered + b" " + b64(mac).encode() + b"\n"


def seal_chunks(file_key: bytes, nonce: bytes, chunks: Sequence[tuple[bytes, bool]]) -> bytes:
    """The payload: nonce, then each (plaintext, is_final) chunk sealed with its counter."""
    aead = ChaCha20Poly1305(hkdf(file_key, nonce, b"payload"))
    out = [nonce]
    for counter, (plaintext, final) in enumerate(chunks):
        out.append(aead.encrypt(counter.to_bytes(11, "big") + bytes([final]), plaintext, None))
    return b"".join(out)


@dataclass
class Built:
    """A hand-built age file and what went into it."""

    file_key: bytes
    header: bytes
    payload: bytes
    plaintext: bytes = field(default=b"")

    @property
    def data(self) -> bytes:
        return self.header + self.payload


def build(
    recipient_public: bytes,
    chunks: Sequence[tuple[bytes, bool]],
    *,
    extra_stanzas: str = "",
    before: str = "",
    file_key: bytes | None = None,
) -> Built:
    file_key = file_key or bytes(range(16))
    stanzas = before + x25519_stanza(recipient_public, file_key) + extra_stanzas
    header = header_with_mac(file_key, stanzas)
    payload = seal_chunks(file_key, bytes(range(100, 116)), chunks)
    return Built(file_key, header, payload, b"".join(p for p, _ in chunks))


def header_length(data: bytes) -> int:
    """Bytes of the header (through the MAC line's newline); the 16-byte nonce follows."""
    footer = data.index(b"\n---")
    return data.index(b"\n", footer + 1) + 1


def chunk_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every payload chunk of a well-formed age file."""
    start = header_length(data) + 16
    spans = []
    while start < len(data):
        spans.append((start, min(start + ENC_CHUNK, len(data))))
        start += ENC_CHUNK
    return spans


async def pieces(data: bytes, sizes: Sequence[int] = (), default: int = 1 << 20) -> AsyncIterator[bytes]:
    """Yield `data` cut into pieces of the given sizes (cycled), then of `default`."""
    pos = 0
    index = 0
    while pos < len(data):
        size = sizes[index % len(sizes)] if sizes else default
        index += 1
        yield data[pos : pos + max(size, 1)]
        pos += max(size, 1)


@dataclass
class Outcome:
    """What a decryption released, and how it ended."""

    released: bytes
    error: BaseException | None


async def decrypt_outcome(data: bytes, identities: Sequence[Identity], sizes: Sequence[int] = ()) -> Outcome:
    released: list[bytes] = []
    try:
        async for block in decrypt_stream(pieces(data, sizes), identities):
            released.append(block)
    except Exception as err:  # the tests inspect the type
        return Outcome(b"".join(released), err)
    return Outcome(b"".join(released), None)


def run_decrypt(data: bytes, identities: Sequence[Identity], sizes: Sequence[int] = ()) -> Outcome:
    return asyncio.run(decrypt_outcome(data, identities, sizes))


async def encrypt_all(data: bytes, recipients: Sequence[Recipient], sizes: Sequence[int] = ()) -> bytes:
    return b"".join([b async for b in encrypt_stream(pieces(data, sizes), recipients)])
