"""Build the location an entry of the `locations` option describes, with its wrappers."""

from __future__ import annotations

from pathlib import Path

from ..catalog import Catalog, CatalogJournal
from ..options import LocationOptions
from . import s3, sftp, smb, webdav
from .base import Location
from .folder import FolderLocation, FolderLocationOptions
from .s3 import S3LocationOptions
from .sftp import SftpLocationOptions
from .smb import SmbLocationOptions
from .webdav import WebdavLocationOptions
from .wrappers import LimitedLocation, RetryingLocation, ThrottledLocation, WindowedLocation

BYTES_PER_MEGABIT = 125_000


def _kind(options: LocationOptions, catalog: Catalog) -> Location:
    match options:
        case FolderLocationOptions():
            return FolderLocation(options.name, Path(options.path))
        case S3LocationOptions():
            return s3.build(options, journal=CatalogJournal(catalog, options.name))
        case SftpLocationOptions():
            return sftp.build(options)
        case SmbLocationOptions():
            return smb.build(options)
        case WebdavLocationOptions():
            return webdav.build(options)
    raise ValueError(f"no location kind for {options!r}")


def build_location(options: LocationOptions, catalog: Catalog) -> Location:
    location = _kind(options, catalog)
    if options.upload_window is not None:
        location = WindowedLocation(location, options.upload_window)
    if options.upload_limit_mbit is not None:
        location = ThrottledLocation(location, int(options.upload_limit_mbit * BYTES_PER_MEGABIT))
    return RetryingLocation(LimitedLocation(location, limit=2))
