"""What each location kind provides to the conformance suite.

A kind module in `tests/locations/kinds/` defines `PROVIDERS`, a list of objects with this
shape. The suite starts each provider's real server once per test session (in a folder of its
own), and asks it for fresh locations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from backup_addon.locations import Location


class Provider(Protocol):
    id: str  # the test id, e.g. "s3-rclone"
    has_server: bool  # False only for kinds with no server and no credentials (folder)

    def start(self, workdir: Path) -> None:
        """Start the real server(s) on loopback; raise with the server's log if it cannot start."""

    def stop(self) -> None:
        """Stop everything start() started; safe to call twice."""

    def location(self, name: str) -> Location:
        """A fresh location, empty, isolated from every other location this provider made."""

    def location_with_wrong_credentials(self, name: str) -> Location:
        """A location on the same server whose credentials the server refuses."""

    def pause_server(self) -> None:
        """Make the server stop answering (stop it, or SIGSTOP it) until resume_server()."""

    def resume_server(self) -> None:
        """Undo pause_server()."""
