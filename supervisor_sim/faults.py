"""Fault knobs: what the simulator does wrong on purpose."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

DEFAULT_STAGE_DELAY = 0.05


@dataclass(slots=True)
class Faults:
    """Every knob a test or the demo can turn; the JSON names are the field names."""

    # Seconds each backup job stage lasts (on top of the real archive writing).
    stage_delay: float = DEFAULT_STAGE_DELAY
    # The root backup job ends done with an error entry and no backup is listed.
    fail_job: bool = False
    # The first add-on's backup_addon_save job carries an error; the backup is still made
    # (without that add-on, as the real Supervisor does).
    child_job_error: bool = False
    # Path regex (re.search on the request path) -> HTTP status answered instead.
    http_status: dict[str, int] = field(default_factory=dict)
    # Path regex whose requests are never answered (until the client goes or the sim stops).
    hang: str | None = None
    # Downloads are cut (connection closed) after this many body bytes.
    drop_download_after: int | None = None
    # Downloads stop sending after this many body bytes and keep the connection open.
    stall_download_after: int | None = None
    # Backup jobs fail with "[Errno 28] No space left on device" on the root job.
    disk_full: bool = False
    # Supervisor core state reported to every call ("setup", "shutdown", ...); None = ready.
    not_ready_state: str | None = None
    # Backup mounts that are down (400 backup_mount_down when used as a location).
    mounts_down: list[str] = field(default_factory=list)
    # Seconds added to the clock new backups are dated by (tests of schedules and retention).
    clock_offset: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return asdict(self)

    def updated(self, changes: dict[str, Any]) -> Faults:
        """Copy with ``changes`` applied; raises ValueError on unknown keys or bad types."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown fault knobs: {', '.join(unknown)}")
        result = replace(self, **changes)
        result.validate()
        return result

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Faults:
        """Build from JSON (missing keys keep their defaults)."""
        return cls().updated(data)

    def validate(self) -> None:
        """Raise ValueError when a knob has the wrong type or an unusable value."""
        if not _is_number(self.stage_delay) or self.stage_delay < 0:
            raise ValueError("stage_delay must be a number >= 0")
        if not _is_number(self.clock_offset):
            raise ValueError("clock_offset must be a number of seconds")
        for name in ("fail_job", "child_job_error", "disk_full"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a boolean")
        if not isinstance(self.http_status, dict):
            raise ValueError("http_status must be an object of path regex -> status")
        for pattern, status in self.http_status.items():
            _check_regex(pattern, "http_status")
            if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
                raise ValueError("http_status values must be integers 400-599")
        if self.hang is not None:
            _check_regex(self.hang, "hang")
        for name in ("drop_download_after", "stall_download_after"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be null or an integer >= 0")
        if self.not_ready_state is not None and not isinstance(self.not_ready_state, str):
            raise ValueError("not_ready_state must be null or a string")
        if not isinstance(self.mounts_down, list) or not all(isinstance(m, str) for m in self.mounts_down):
            raise ValueError("mounts_down must be a list of mount names")

    def status_for(self, path: str) -> int | None:
        """Status code forced for ``path``, if any."""
        for pattern, status in self.http_status.items():
            if re.search(pattern, path):
                return status
        return None

    def hangs(self, path: str) -> bool:
        """Whether requests to ``path`` must never be answered."""
        return self.hang is not None and re.search(self.hang, path) is not None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_regex(pattern: object, knob: str) -> None:
    if not isinstance(pattern, str):
        raise ValueError(f"{knob} patterns must be strings")
    try:
        re.compile(pattern)
    except re.error as err:
        raise ValueError(f"{knob}: invalid regex {pattern!r}: {err}") from err
