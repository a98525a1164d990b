"""The one secret the user keeps: the backup key, in Home Assistant's format.

The key is the Supervisor backup password (so Home Assistant restores the native archive with
it) and, through HKDF, the add-on's age identity (so any age tool opens the envelope). Keys
are never forgotten: when the key changes, older ones stay in the store so older backups stay
readable, and the emergency kit lists them all.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .age import Identity, Recipient

KEY_ALPHABET = string.ascii_uppercase + string.digits
KEY_PATTERN = re.compile(r"^([A-Z0-9]{4}-){6}[A-Z0-9]{4}$")
# Changing this string changes every derived identity: never edit it, add a new version instead.
IDENTITY_INFO_V1 = b"backup_321/age-identity/v1"
KEYS_FILE = "keys.json"


class InvalidKey(ValueError):
    """The text is not a backup key in Home Assistant's format."""


def generate_key() -> str:
    """A new key from the operating system's CSPRNG: 7 groups of 4 of A-Z0-9."""
    groups = ("".join(secrets.choice(KEY_ALPHABET) for _ in range(4)) for _ in range(7))
    return "-".join(groups)


def check_key(text: str) -> str:
    """Return the key if well-formed; the error never repeats the text (it may be a secret)."""
    key = text.strip()
    if not KEY_PATTERN.match(key):
        raise InvalidKey(
            "the encryption key must look like Home Assistant's: 7 groups of 4 capital letters "
            "or digits separated by '-', e.g. ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ12"
        )
    return key


def identity_for(key: str) -> Identity:
    """The age identity derived from a key (HKDF-SHA256 with a fixed, versioned info string)."""
    secret = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=IDENTITY_INFO_V1).derive(
        check_key(key).encode("ascii")
    )
    return Identity.from_private_bytes(secret)


def key_id(key: str) -> str:
    """A public name for a key: its age recipient. Safe to store and show."""
    return str(identity_for(key).recipient())


@dataclass(slots=True)
class StoredKey:
    key: str
    created_at: str

    @property
    def id(self) -> str:
        return key_id(self.key)


@dataclass(slots=True)
class KeyStore:
    """Keys in /data/keys.json (mode 0600); the first is the one in use."""

    path: Path
    keys: list[StoredKey] = field(default_factory=list)
    kit_confirmed_for: str | None = None

    @classmethod
    def open(cls, data_dir: Path, configured: str | None = None) -> KeyStore:
        """Load the store, creating a key on first start or adopting the one from the options."""
        store = cls(data_dir / KEYS_FILE)
        if store.path.exists():
            raw = json.loads(store.path.read_text(encoding="utf-8"))
            store.keys = [StoredKey(k["key"], k["created_at"]) for k in raw.get("keys", [])]
            store.kit_confirmed_for = raw.get("kit_confirmed_for")
        wanted = check_key(configured) if configured else None
        if wanted is not None and (not store.keys or store.keys[0].key != wanted):
            store.keys = [StoredKey(wanted, _now())] + [k for k in store.keys if k.key != wanted]
            store.save()
        elif not store.keys:
            store.keys = [StoredKey(generate_key(), _now())]
            store.save()
        return store

    @property
    def current(self) -> str:
        return self.keys[0].key

    @property
    def current_id(self) -> str:
        return self.keys[0].id

    def identities(self) -> list[Identity]:
        return [identity_for(k.key) for k in self.keys]

    def password_for(self, wanted: str | None) -> str:
        """The key a backup was made with, by its public id; the current key when unknown."""
        return next((k.key for k in self.keys if k.id == wanted), self.current)

    def recipient(self) -> Recipient:
        return identity_for(self.current).recipient()

    @property
    def kit_confirmed(self) -> bool:
        """True once the user confirmed saving a kit that holds the current key."""
        return self.kit_confirmed_for == self.current_id

    def confirm_kit(self) -> None:
        self.kit_confirmed_for = self.current_id
        self.save()

    def save(self) -> None:
        data = {
            "keys": [{"key": k.key, "created_at": k.created_at} for k in self.keys],
            "kit_confirmed_for": self.kit_confirmed_for,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        temp.chmod(0o600)
        temp.replace(self.path)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
