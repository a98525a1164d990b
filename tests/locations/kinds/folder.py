"""The folder kind on a local directory (no server to start)."""

from __future__ import annotations

import itertools
from pathlib import Path

from backup_addon.locations import FolderLocation


class FolderProvider:
    id = "folder"
    has_server = False

    def __init__(self) -> None:
        self.workdir: Path | None = None
        self._count = itertools.count()

    def start(self, workdir: Path) -> None:
        self.workdir = workdir

    def stop(self) -> None:
        pass

    def location(self, name: str) -> FolderLocation:
        assert self.workdir is not None
        root = self.workdir / f"loc{next(self._count)}"
        root.mkdir()
        return FolderLocation(name, root)

    def location_with_wrong_credentials(self, name: str) -> FolderLocation:
        raise NotImplementedError("a folder has no credentials")

    def pause_server(self) -> None:
        raise NotImplementedError("a folder has no server")

    def resume_server(self) -> None:
        raise NotImplementedError("a folder has no server")


PROVIDERS = [FolderProvider()]
