"""Build the location an entry of the `locations` option describes, with its wrappers."""

from __future__ import annotations

from pathlib import Path

from ..catalog import Catalog, CatalogJournal
from ..options import LocationOptions
from .base import Location
from .folder import FolderLocation, FolderLocationOptions
from .s3_options import S3LocationOptions
from .sftp_options import SftpLocationOptions
from .smb_options import SmbLocationOptions
from .webdav_options import WebdavLocationOptions
from .wrappers import LimitedLocation, RetryingLocation, ThrottledLocation, WindowedLocation

BYTES_PER_MEGABIT = 125_000


def _kind(options: LocationOptions, catalog: Catalog) -> Location:
    # A kind's module, with its client library (botocore, asyncssh, smbprotocol), is imported
    # only when a location of that kind is built: an add-on with folders only never loads them.
    match options:
        case FolderLocationOptions():
            return FolderLocation(options.name, Path(options.path))
        case S3LocationOptions():
            from . import s3

            return s3.build(options, journal=CatalogJournal(catalog, options.name))
        case SftpLocationOptions():
            from . import sftp

            return sftp.build(options)
        case SmbLocationOptions():
            from . import smb

            return smb.build(options)
        case WebdavLocationOptions():
            from . import webdav

            return webdav.build(options)
    raise ValueError(f"no location kind for {options!r}")


def build_location(options: LocationOptions, catalog: Catalog, *, retry: bool = True) -> Location:
    """The location with its wrappers; `retry=False` for a connection test that must answer at once."""
    location = _kind(options, catalog)
    if options.offsite is not None:
        location.offsite = options.offsite
    if options.upload_window is not None:
        location = WindowedLocation(location, options.upload_window)
    if options.upload_limit_mbit is not None:
        location = ThrottledLocation(location, int(options.upload_limit_mbit * BYTES_PER_MEGABIT))
    limited = LimitedLocation(location, limit=2)
    return RetryingLocation(limited) if retry else limited
