"""The options of a `webdav` location, kept apart from the HTTP client so that reading them loads no
aiohttp."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from .options_base import LocationOptionsBase

if TYPE_CHECKING:
    from yarl import URL


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
    try:
        url = URL(text)
    except ValueError:
        raise ValueError(f"is not a web address; {example}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"must start with https:// (or http://) and name a server; {example}")
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
