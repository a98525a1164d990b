"""Add-on-managed locations: one module per kind, all behind the `Location` interface."""

from __future__ import annotations

from pathlib import Path

from ..options import LocationOptions
from .base import Location, StoredObject, Usage
from .folder import FolderLocation

__all__ = ["FolderLocation", "Location", "StoredObject", "Usage", "build_location"]


def build_location(options: LocationOptions) -> Location:
    """Create the location an options entry describes."""
    return FolderLocation(options.name, Path(options.path))
