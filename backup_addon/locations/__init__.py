"""Add-on-managed locations: one module per kind, all behind the `Location` interface."""

from __future__ import annotations

from .base import Location, StoredObject, Usage
from .folder import FolderLocation

__all__ = ["FolderLocation", "Location", "StoredObject", "Usage"]
