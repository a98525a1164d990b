"""The options of an `s3` location, kept apart from the S3 client so that reading them loads no botocore."""

from __future__ import annotations

import ipaddress
import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from .options_base import LocationOptionsBase

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
IP_ADDRESS = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
REGION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
STORAGE_CLASS = re.compile(r"^[A-Z][A-Z0-9_]{1,31}$")
# What botocore takes as an endpoint's host: labels of letters, digits and '-', not starting or
# ending with '-', at most 253 characters in all, with an optional final dot.
HOST_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
HOST_NAME = re.compile(rf"^(?=.{{1,253}}$)({HOST_LABEL}\.)*{HOST_LABEL}\.?$")
ENDPOINT_EXAMPLE = "https://s3.eu-central-003.backblazeb2.com"
# Objects in these classes cannot be read back without a restore request, so no copy there
# could be verified or restored when it is needed.
ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})


class S3LocationOptions(LocationOptionsBase):
    """A bucket (and optional folder in it) on any S3-compatible store."""

    kind: Literal["s3"]
    endpoint: str | None = None
    region: str = "us-east-1"
    bucket: str
    prefix: str = ""
    access_key_id: str
    secret_access_key: str = Field(repr=False)
    addressing_style: Literal["path", "virtual"] | None = None
    storage_class: str | None = None
    object_lock_days: int | None = None
    object_lock_mode: Literal["governance", "compliance"] | None = None
    verify_tls: bool = True

    @field_validator(
        "endpoint", "addressing_style", "storage_class", "object_lock_days", "object_lock_mode", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # The add-on's form saves a cleared field as an empty string.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return normalize_endpoint(value)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        value = value.strip() or "us-east-1"
        if not REGION.match(value):
            raise ValueError(
                "must be the region's code as your provider writes it, e.g. us-east-1, eu-central-003 or auto"
            )
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        value = value.strip()
        if value.startswith("s3://") or "/" in value:
            raise ValueError(
                "must be only the bucket's name, e.g. my-backups; put a folder inside it in prefix"
            )
        if not BUCKET_NAME.match(value) or ".." in value or IP_ADDRESS.match(value):
            raise ValueError(
                "must be the bucket's name: 3-63 lowercase letters, digits, '.' or '-', starting and ending "
                "with a letter or digit (create the bucket first, in your provider's console)"
            )
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return normalize_prefix(value)

    @field_validator("access_key_id")
    @classmethod
    def _access_key_id(cls, value: str) -> str:
        value = value.strip()
        if not value or any(ch.isspace() for ch in value):
            raise ValueError("must be the access key ID your provider gave you (no spaces)")
        return value

    @field_validator("secret_access_key")
    @classmethod
    def _secret(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be the secret access key that belongs to access_key_id")
        return value.strip()

    @field_validator("storage_class")
    @classmethod
    def _storage_class(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().upper()
        if value in ARCHIVE_CLASSES:
            raise ValueError(
                f"{value} keeps objects offline until a restore request, so copies could be neither "
                "verified nor restored quickly; use GLACIER_IR or STANDARD_IA instead"
            )
        if not STORAGE_CLASS.match(value):
            raise ValueError("must be a storage class name such as STANDARD, STANDARD_IA or GLACIER_IR")
        return value

    @field_validator("object_lock_days")
    @classmethod
    def _lock_days(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= 36_500:
            raise ValueError(
                "must be a whole number of days from 1 to 36500; leave it out to not lock copies"
            )
        return value

    @model_validator(mode="after")
    def _lock_mode_needs_days(self) -> S3LocationOptions:
        if self.object_lock_mode is not None and self.object_lock_days is None:
            raise ValueError(
                "object_lock_mode needs object_lock_days: say for how many days copies are locked"
            )
        return self

    @property
    def unencrypted(self) -> bool:
        """True when the endpoint is plain http://."""
        return self.endpoint is not None and self.endpoint.startswith("http://")


def normalize_endpoint(value: str | None) -> str | None:
    """The endpoint as a URL with scheme and no path; None means AWS. Raises ValueError."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if any(ord(ch) < 32 or ch == "\x7f" for ch in value):
        raise ValueError(
            "must not contain control characters such as line breaks; type the address again, "
            f"e.g. {ENDPOINT_EXAMPLE}"
        )
    if "://" not in value:
        value = f"https://{value}"
    try:
        parts = urlsplit(value)
    except ValueError:
        # urlsplit refuses a bracketed host that is not an IPv6 address, or a missing bracket.
        raise ValueError(
            f"must be a web address such as {ENDPOINT_EXAMPLE}; an IPv6 address goes in brackets, "
            "e.g. http://[fd00::10]:9000"
        ) from None
    if parts.scheme not in ("https", "http"):
        raise ValueError(
            "must start with https:// (or http:// for a server on your own network, which is unencrypted)"
        )
    if "@" in parts.netloc:
        raise ValueError("must not hold a user name or password; use access_key_id and secret_access_key")
    if not parts.hostname:
        raise ValueError(f"must name a server, e.g. {ENDPOINT_EXAMPLE}")
    host = _endpoint_host(parts.hostname, parts.netloc)
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ValueError(
            f"must be only the server's address, e.g. {ENDPOINT_EXAMPLE}; "
            "put the bucket in bucket and a folder in prefix"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has an invalid port number") from None
    if host == parts.hostname:
        return f"{parts.scheme}://{parts.netloc}"
    # A host name in another script travels in its IDNA (xn--) form.
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def _endpoint_host(hostname: str, netloc: str) -> str:
    """The endpoint's host as botocore takes it: ASCII, IDNA-encoded if need be; ValueError if not a host."""
    shown = repr(netloc if len(netloc) <= 60 else netloc[:57] + "...")
    refusal = f"must be a web address such as {ENDPOINT_EXAMPLE}; {shown} is not a host name or IP address"
    if netloc.startswith("["):
        try:
            ipaddress.IPv6Address(hostname)
        except ValueError:
            raise ValueError(refusal) from None
        return hostname
    host = hostname
    if not host.isascii():
        from yarl import URL  # the IDNA encoding aiohttp uses; loaded only for such a host

        try:
            host = URL.build(scheme="https", host=host).raw_host or ""
        except ValueError:  # UnicodeError included
            raise ValueError(refusal) from None
    if "_" in host and HOST_NAME.match(host.replace("_", "-")):
        raise ValueError(
            f"must be a web address such as {ENDPOINT_EXAMPLE}; S3 clients take no '_' in a host name, "
            f"so write the server's IP address instead of {shown}"
        )
    if not HOST_NAME.match(host):
        raise ValueError(refusal)
    if IP_ADDRESS.match(host.rstrip(".")):
        try:
            ipaddress.IPv4Address(host.rstrip("."))
        except ValueError:
            raise ValueError(
                f"must be a web address such as {ENDPOINT_EXAMPLE} or http://192.168.1.20:9000; "
                f"{shown} is not an IP address"
            ) from None
    return host


def normalize_prefix(value: str) -> str:
    """A folder inside the bucket without leading or trailing '/'; '' for the bucket's root."""
    value = value.strip().strip("/")
    if not value:
        return ""
    segments = value.split("/")
    if any(s in ("", ".", "..") or "\\" in s or "\x00" in s for s in segments):
        raise ValueError("must be a folder path such as backups/home, without '//', '.', '..' or '\\'")
    if len(value) > 512:
        raise ValueError("must be at most 512 characters")
    return value
