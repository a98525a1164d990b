"""The options of an `smb` location, kept apart from the SMB client so that reading them loads no
smbprotocol."""

from __future__ import annotations

import contextlib
import ipaddress
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .options_base import LocationOptionsBase

# Windows and most NAS file systems refuse these in names.
FORBIDDEN_CHARS = frozenset('\\/:*?"<>|')
RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} | {f"LPT{i}" for i in range(1, 10)}
)
HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$"
)
SHARE_NAME = re.compile(r"^[^\\/:*?\"<>|\[\]=;,+\x00-\x1f]{1,80}$")
DOMAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


def _check_part(part: str, what: str) -> None:
    if part in ("", ".", ".."):
        raise ValueError(f"{what} must not have empty, '.' or '..' parts")
    if bad := sorted({c for c in part if c in FORBIDDEN_CHARS or ord(c) < 32}):
        shown = " ".join(repr(c) for c in bad)
        raise ValueError(f"{what} has characters SMB shares do not allow in names: {shown}")
    if part[-1] in ". ":
        raise ValueError(f"{what} has a name ending in a dot or space, which Windows servers drop")
    if part.split(".")[0].upper() in RESERVED_NAMES:
        raise ValueError(f"{what} uses {part!r}, a name Windows reserves for devices")


def check_key(key: str) -> list[str]:
    """Split an object key into its parts, or raise ValueError if an SMB share cannot hold it."""
    if key.startswith("/"):
        raise ValueError(f"object key {key!r} must be relative")
    parts = key.split("/")
    for part in parts:
        _check_part(part, f"object key {key!r}")
        if part.startswith("."):
            # Hidden names are reserved for the temporary files of unfinished puts.
            raise ValueError(f"object key {key!r} must not have parts starting with '.'")
    return parts


def folder_parts(folder: str) -> list[str]:
    """The parts of a folder inside the share ('\\' or '/' between them), or ValueError."""
    cleaned = folder.replace("\\", "/").strip("/")
    if not cleaned:
        return []
    parts = cleaned.split("/")
    for part in parts:
        _check_part(part, "the folder")
    return parts


class SmbLocationOptions(LocationOptionsBase):
    """A share on a Windows PC, a NAS or a Samba server, written over SMB2/3."""

    kind: Literal["smb"]
    server: str
    port: int = 445
    share: str
    folder: str = ""
    username: str
    password: str = Field(repr=False)
    domain: str = ""
    require_encryption: bool = False

    @field_validator("server")
    @classmethod
    def _server(cls, value: str) -> str:
        value = value.strip()
        if "\\" in value or "/" in value:
            raise ValueError(
                "must be only the server's name or IP address, e.g. nas.local or 192.168.1.20; "
                "put the share's name in 'share' and any folder in 'folder'"
            )
        with contextlib.suppress(ValueError):
            return str(ipaddress.ip_address(value.strip("[]")))
        if not HOST_NAME.match(value):
            raise ValueError("must be a host name such as nas.local or an IP address such as 192.168.1.20")
        return value

    @field_validator("port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError("must be between 1 and 65535; SMB servers normally use 445")
        return value

    @field_validator("share")
    @classmethod
    def _share(cls, value: str) -> str:
        value = value.strip()
        if "\\" in value or "/" in value:
            raise ValueError(
                "must be only the share's name, e.g. backups for \\\\nas\\backups; "
                "put a folder inside the share in 'folder'"
            )
        if not SHARE_NAME.match(value):
            raise ValueError("must be the share's name, e.g. backups, without : * ? \" < > | [ ] = ; , +")
        return value

    @field_validator("folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        try:
            return "/".join(folder_parts(value))
        except ValueError as err:
            raise ValueError(f"must be a folder inside the share such as ha/backups: {err}") from None

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must be the user name the server knows, e.g. backup")
        return value

    @field_validator("password")
    @classmethod
    def _password(cls, value: str) -> str:
        if not value:
            raise ValueError("must be the user's password; shares without a password are not supported")
        return value

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        value = value.strip()
        if value and not DOMAIN_NAME.match(value):
            raise ValueError("must be a workgroup or domain name such as WORKGROUP or corp.example.com")
        return value

    @model_validator(mode="after")
    def _user_and_domain(self) -> SmbLocationOptions:
        if self.domain and ("\\" in self.username or "@" in self.username):
            raise ValueError("username already names a domain; leave 'domain' out or use the plain user name")
        return self
