"""Typed errors. Each message is written for the user and never holds a secret."""

from __future__ import annotations


class AddonError(Exception):
    """Base of every error the add-on raises on purpose."""


class InvalidOptions(AddonError):
    """The options file has one or more problems."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class SupervisorError(AddonError):
    """The Supervisor refused a request or could not be reached."""


class MountUnavailable(SupervisorError):
    """A Supervisor network storage named as a backup location is unknown or down."""

    def __init__(self, mount: str, message: str) -> None:
        super().__init__(message)
        self.mount = mount


class BackupJobFailed(SupervisorError):
    """The Supervisor's backup job ended with errors."""


class SourceError(AddonError):
    """The backup archive could not be read completely."""


class LocationError(AddonError):
    """A location could not store or serve a copy."""

    def __init__(self, location: str, message: str) -> None:
        super().__init__(f"{location}: {message}")
        self.location = location


class LocationUnreachable(LocationError):
    """The location is missing, offline or refuses access."""


class LocationFull(LocationError):
    """The location has no space left."""


class LocationReadOnly(LocationError):
    """The location cannot be written."""


class LocationAuthFailed(LocationError):
    """The location refused the credentials; retrying cannot help."""


class LocationTimeout(LocationUnreachable):
    """The location did not answer in time."""


class NotEnoughSpace(AddonError):
    """Home Assistant's backup folder cannot take another backup."""
