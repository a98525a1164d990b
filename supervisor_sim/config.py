"""Configuration of one simulated Supervisor and the fixed facts it reports."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .faults import Faults

ADDON_SLUG = "local_backup_321"
SUPERVISOR_VERSION = "2026.08.0"
HOMEASSISTANT_VERSION = "2026.8.3"
LOCAL_LOCATION = ".local"
CLOUD_LOCATION = ".cloud_backup"
# The sample system's time zone (its configuration.yaml and the Supervisor's info say the same).
DEFAULT_TIME_ZONE = "Europe/Amsterdam"


@dataclass(frozen=True, slots=True)
class AddonSpec:
    """An add-on the simulated system has installed."""

    slug: str
    name: str
    version: str
    repository: str
    description: str
    hassio_role: str = "default"
    hassio_api: bool = False
    homeassistant_api: bool = False
    ingress: bool = False
    options: dict[str, object] = field(default_factory=dict)


# Own add-on first: the Supervisor backs up every installed add-on, the caller included.
INSTALLED_ADDONS: tuple[AddonSpec, ...] = (
    AddonSpec(
        slug=ADDON_SLUG,
        name="3-2-1 Backup",
        version="0.1.0",
        repository="local",
        description="Makes the 3-2-1 backup rule automatic and proven",
        hassio_role="backup",
        hassio_api=True,
        homeassistant_api=True,
        ingress=True,
        options={"schedule": "daily", "time": "04:45"},
    ),
    AddonSpec(
        slug="core_mosquitto",
        name="Mosquitto broker",
        version="6.5.1",
        repository="core",
        description="An Open Source MQTT broker",
        options={"logins": [], "require_certificate": False},
    ),
    AddonSpec(
        slug="core_ssh",
        name="Terminal & SSH",
        version="9.16.0",
        repository="core",
        description="Allow logging in remotely to Home Assistant using SSH",
        hassio_role="manager",
        hassio_api=True,
        ingress=True,
        options={"authorized_keys": [], "password": "", "apks": []},
    ),
)

REPOSITORIES: tuple[str, ...] = (
    "core",
    "local",
    "https://github.com/hassio-addons/repository",
    "https://github.com/esphome/home-assistant-addon",
)

ALL_FOLDERS: tuple[str, ...] = ("share", "addons/local", "ssl", "media")


@dataclass(slots=True)
class SimConfig:
    """How one simulator instance is set up; everything it writes lives under ``root``."""

    root: Path
    token: str = "sim-supervisor-token"  # noqa: S105 - a test double's default, not a secret
    payload_bytes: int = 0
    mounts: list[str] = field(default_factory=list)
    default_backup_mount: str | None = None
    addon_slug: str = ADDON_SLUG
    supervisor_version: str = SUPERVISOR_VERSION
    homeassistant_version: str = HOMEASSISTANT_VERSION
    backups_exclude_database: bool = False
    days_until_stale: int = 30
    faults: Faults = field(default_factory=Faults)
    time_zone: str = DEFAULT_TIME_ZONE

    def __post_init__(self) -> None:
        """Reject settings the real Supervisor could never have."""
        self.root = Path(self.root)
        if self.payload_bytes < 0:
            raise ValueError("payload_bytes must be >= 0")
        for name in self.mounts:
            if not name or not name.replace("_", "").isalnum():
                raise ValueError(f"mount name {name!r} must match ^[A-Za-z0-9_]+$")
        if self.default_backup_mount and self.default_backup_mount not in self.mounts:
            raise ValueError("default_backup_mount must be one of mounts")
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"time_zone {self.time_zone!r} is not an IANA time zone") from err

    @property
    def backup_dir(self) -> Path:
        """Local backup folder (the add-on's /backup)."""
        return self.root / "backup"

    def mount_dir(self, name: str) -> Path:
        """Directory standing in for the backup mount ``name``."""
        return self.root / "mounts" / name

    @property
    def tmp_dir(self) -> Path:
        """Scratch space for uploads."""
        return self.root / "tmp"

    @property
    def homeassistant_dir(self) -> Path:
        """Home Assistant's /config."""
        return self.root / "homeassistant"

    def addon_data_dir(self, slug: str) -> Path:
        """An add-on's /data."""
        return self.root / "addons" / "data" / slug

    def folder_dir(self, folder: str) -> Path:
        """A backup folder such as ``share`` or ``addons/local``."""
        return self.root / folder

    def installed_addons(self) -> tuple[AddonSpec, ...]:
        """Installed add-ons, with the own add-on under its configured slug."""
        own, *others = INSTALLED_ADDONS
        if own.slug != self.addon_slug:
            own = replace(own, slug=self.addon_slug)
        return (own, *others)

    def addon(self, slug: str) -> AddonSpec | None:
        """Installed add-on by slug (``self`` means the own add-on)."""
        if slug == "self":
            slug = self.addon_slug
        return next((a for a in self.installed_addons() if a.slug == slug), None)
