"""The options of an `sftp` location, apart from the SSH client: reading them loads asyncssh only
when a host key or private key has to be parsed."""

from __future__ import annotations

import contextlib
import ipaddress
import posixpath
import re
from typing import TYPE_CHECKING, Literal, Self

from pydantic import Field, field_validator, model_validator

from .options_base import LocationOptionsBase

if TYPE_CHECKING:
    import asyncssh

KEY_TYPE = re.compile(r"^(ssh|ecdsa|sk)-[a-z0-9@.-]+$")
FINGERPRINT = re.compile(r"^(SHA256:[A-Za-z0-9+/=]+|(MD5:)?([0-9a-f]{2}:){15}[0-9a-f]{2})$")
PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$"
)


def load_host_key(text: str) -> asyncssh.SSHKey:
    """Read a public host key as in a .pub file or a known_hosts line; ValueError says what is wrong."""
    import asyncssh  # loaded only when a host key is set, not on every start

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
    import asyncssh  # loaded only when a private key is set, not on every start

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
