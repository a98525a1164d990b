"""The options of a `webdav` location, kept apart from the HTTP client so that reading them loads no
aiohttp."""

from __future__ import annotations

import contextlib
import ipaddress
import re
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from .options_base import LocationOptionsBase

if TYPE_CHECKING:
    from yarl import URL

# A host name as DNS, mDNS and Docker know it: labels of letters, digits, '-' and '_', not starting
# or ending with '-', at most 253 characters in all, with an optional final dot.
HOST_LABEL = r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)"
HOST_NAME = re.compile(rf"^(?=.{{1,253}}$)({HOST_LABEL}\.)*{HOST_LABEL}\.?$")


class WebdavLocationOptions(LocationOptionsBase):
    """A folder on a WebDAV server, e.g. https://cloud.example.com/remote.php/dav/files/alice/Backups."""

    kind: Literal["webdav"]
    url: str
    username: str = ""
    password: str = Field(default="", repr=False)
    verify_tls: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        check_url(value)
        return value.strip()

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if ":" in value:
            raise ValueError("must not contain ':' (WebDAV's Basic sign-in cannot carry it)")
        if any(ch < " " or ch == "\x7f" for ch in value):
            raise ValueError("must not contain control characters")
        return value

    @field_validator("password")
    @classmethod
    def _password(cls, value: str) -> str:
        if any(ch in "\r\n\x00" for ch in value):
            raise ValueError("must not contain line breaks")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> WebdavLocationOptions:
        if self.password and not self.username:
            raise ValueError("a password is set but no username; set username too")
        return self

    def warnings(self) -> list[str]:
        """Problems that do not stop the add-on but that the user should know about."""
        from yarl import URL

        found: list[str] = []
        if URL(self.url).scheme == "http":
            found.append(
                f"location {self.name!r}: the url uses http://, so the password travels unencrypted; "
                "use https:// unless the server is on your own network"
            )
        if not self.verify_tls and URL(self.url).scheme == "https":
            found.append(
                f"location {self.name!r}: verify_tls is off, so the add-on cannot tell the real server "
                "from an impostor; turn it on as soon as the server has a trusted certificate"
            )
        return found


def check_url(value: str) -> URL:
    """Parse a WebDAV folder URL, raising ValueError with a message for the user."""
    from yarl import URL  # yarl comes with aiohttp; load it only for a webdav location

    example = "e.g. https://cloud.example.com/remote.php/dav/files/alice/Backups"
    text = value.strip()
    if any(ord(ch) < 32 or ch == "\x7f" for ch in text):
        raise ValueError(
            f"must not contain control characters such as line breaks; type the address again, {example}"
        )
    try:
        url = URL(text)
    except ValueError:
        raise ValueError(f"is not a web address; {example}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"must start with https:// (or http://) and name a server; {example}")
    check_host(url, example)
    if url.user is not None or url.password is not None:
        raise ValueError("must not contain a user name or password; put them in username and password")
    if "/apps/files" in url.path or "/index.php/" in url.path:
        raise ValueError(
            "is the address of Nextcloud's or ownCloud's web page, not of its WebDAV folder; "
            f"copy the WebDAV address from Files > Settings and add the folder, {example}"
        )
    if url.query_string or url.fragment or "?" in text or "#" in text:
        raise ValueError("must not contain '?' or '#'; write them as %3F and %23 if a folder name has them")
    if re.search(r"/remote\.php/dav/?$", url.path) or re.search(r"/remote\.php/dav/files/?$", url.path):
        raise ValueError("points at Nextcloud's WebDAV root; add files/<your user name>/<folder>, " + example)
    return url


def check_host(url: URL, example: str) -> None:
    """Refuse a URL whose server is neither a host name nor an IP address."""
    host = url.host or ""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return
    shown = repr(host if len(host) <= 60 else host[:57] + "...")
    refusal = (
        f"must be a web address such as {example.removeprefix('e.g. ')}; {shown} is not a host name "
        "or IP address"
    )
    # raw_host is the IDNA (xn--) form, the one looked up, of a name in another script.
    if not HOST_NAME.match(url.raw_host or "") or re.fullmatch(r"[0-9.]+", host):
        raise ValueError(refusal)
