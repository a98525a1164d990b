"""Build the location an entry of the `locations` option describes."""

from __future__ import annotations

from pathlib import Path

from ..options import LocationOptions
from .base import Location
from .folder import FolderLocation, FolderLocationOptions


def build_location(options: LocationOptions) -> Location:
    match options:
        case FolderLocationOptions():
            return FolderLocation(options.name, Path(options.path))
    raise ValueError(f"no location kind for {options!r}")
