"""The add-on's options: what the user sets in the add-on's Configuration tab.

The Supervisor validates `/data/options.json` against `schema` in config.yaml before the
add-on starts; this model validates it again (the file may be edited by hand, or the schema
may be older than the code) and turns every problem into a sentence the user can act on.
"""

from __future__ import annotations

import json
import re
import reprlib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InvalidOptions
from .locations.folder import FolderLocationOptions
from .locations.s3_options import S3LocationOptions
from .locations.sftp_options import SftpLocationOptions
from .locations.smb_options import SmbLocationOptions
from .locations.webdav_options import WebdavLocationOptions
from .schedule import Schedule, check_cron, parse_days, parse_time


class BackupType(StrEnum):
    FULL = "full"
    PARTIAL = "partial"


class Folder(StrEnum):
    SHARE = "share"
    ADDONS_LOCAL = "addons/local"
    SSL = "ssl"
    MEDIA = "media"


class OtherBackups(StrEnum):
    """What to do with backups the add-on did not make (Home Assistant's own, for example)."""

    IGNORE = "ignore"
    MIRROR = "mirror"
    MIRROR_AND_REMOVE_LOCAL = "mirror_and_remove_local"


class LogLevel(StrEnum):
    TRACE = "trace"
    DEBUG = "debug"
    INFO = "info"
    NOTICE = "notice"
    WARNING = "warning"
    ERROR = "error"
    FATAL = "fatal"


MOUNT_NAME = re.compile(r"^[A-Za-z0-9_]+$")
KEY_PATTERN = re.compile(r"^([A-Z0-9]{4}-){6}[A-Z0-9]{4}$")
AGE_RECIPIENT = re.compile(r"^age1[02-9ac-hj-np-z]{58}$")
TIME_OF_DAY = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScheduleOptions(_Strict):
    """One entry of `schedules`: when to make which kind of backup."""

    type: BackupType = BackupType.FULL
    days: str = "daily"
    time: str | None = None
    cron: str | None = None

    @field_validator("days")
    @classmethod
    def _days(cls, value: str) -> str:
        parse_days(value)
        return value

    @field_validator("time")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not TIME_OF_DAY.match(value):
            raise ValueError(
                "must be a time of day as HH:MM in 24-hour form, e.g. 04:45; leave it out to start "
                "between 04:45 and 05:45"
            )
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return check_cron(value)

    def schedule(self) -> Schedule:
        if self.cron is not None:
            return Schedule(type=self.type, days=frozenset(), time=None, cron=self.cron)
        return Schedule(type=self.type, days=parse_days(self.days), time=parse_time(self.time or ""))


class RetentionOptions(_Strict):
    """How many backups to keep; each rule keeps what it selects, 0 turns a rule off."""

    keep_last: int = Field(default=3, ge=0, le=1000)
    keep_days: int = Field(default=0, ge=0, le=36500)
    keep_daily: int = Field(default=0, ge=0, le=1000)
    keep_weekly: int = Field(default=0, ge=0, le=1000)
    keep_monthly: int = Field(default=0, ge=0, le=1000)
    keep_yearly: int = Field(default=0, ge=0, le=100)


LocationOptions = Annotated[
    FolderLocationOptions
    | S3LocationOptions
    | SftpLocationOptions
    | SmbLocationOptions
    | WebdavLocationOptions,
    Field(discriminator="kind"),
]


class AddonOptions(RetentionOptions):
    """Everything in /data/options.json; the retention rules are the ones every place uses by default."""

    schedules: list[ScheduleOptions] = [ScheduleOptions()]
    include_homeassistant: bool = True
    include_addons: list[str] = []
    include_folders: list[Folder] = []
    exclude_database: bool = False
    supervisor_locations: list[str] = []
    locations: list[LocationOptions] = []
    max_deletions_per_run: int = Field(default=2, ge=0, le=1000)
    prune_other_backups: bool = False
    other_backups: OtherBackups = OtherBackups.IGNORE
    scrub_days: int = Field(default=30, ge=0, le=3650)
    drill_days: int = Field(default=7, ge=0, le=3650)
    verify_limit_mbit: float | None = None
    notify: bool = True
    encryption_key: str | None = None
    age_recipients: list[str] = []
    log_level: LogLevel = LogLevel.INFO

    @field_validator("encryption_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not KEY_PATTERN.match(value.strip()):
            raise ValueError(
                "must look like Home Assistant's backup encryption key: 7 groups of 4 capital letters "
                "or digits separated by '-' (e.g. ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ12); leave it empty "
                "to let the add-on make one"
            )
        return value.strip()

    @field_validator("age_recipients")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        for recipient in value:
            if not AGE_RECIPIENT.match(recipient):
                raise ValueError(
                    f"{recipient[:12]!r}... is not an age public key; it starts with 'age1' and is "
                    "62 characters long (make one with age-keygen)"
                )
        if len(set(value)) != len(value):
            raise ValueError("lists a public key twice")
        return value

    @field_validator("verify_limit_mbit")
    @classmethod
    def _verify_limit(cls, value: float | None) -> float | None:
        if value is not None and not 0.1 <= value <= 10_000:
            raise ValueError(
                "must be between 0.1 and 10000 megabits per second, e.g. 20; leave it out for no limit"
            )
        return value

    def retention(self) -> RetentionOptions:
        """The retention every location uses unless it sets its own."""
        return RetentionOptions(**{name: getattr(self, name) for name in RetentionOptions.model_fields})

    @field_validator("include_addons")
    @classmethod
    def _addons(cls, value: list[str]) -> list[str]:
        for slug in value:
            if not re.match(r"^[A-Za-z0-9_.-]+$", slug):
                raise ValueError(f"{slug!r} is not an add-on slug (e.g. core_mosquitto)")
        if len(set(value)) != len(value):
            raise ValueError("lists an add-on twice")
        return value

    @field_validator("include_folders")
    @classmethod
    def _folders(cls, value: list[Folder]) -> list[Folder]:
        if len(set(value)) != len(value):
            raise ValueError("lists a folder twice")
        return value

    @field_validator("supervisor_locations")
    @classmethod
    def _mounts(cls, value: list[str]) -> list[str]:
        for name in value:
            if not MOUNT_NAME.match(name):
                raise ValueError(
                    f"{name!r} is not a network storage name; use the name shown under "
                    "Settings > System > Storage (letters, digits and '_')"
                )
        if len(set(value)) != len(value):
            raise ValueError("lists a network storage twice")
        return value

    @model_validator(mode="after")
    def _unique_location_names(self) -> AddonOptions:
        names = [loc.name.casefold() for loc in self.locations]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"locations: two locations are named {duplicates[0]!r}; names must differ")
        return self


MAX_PROBLEM_CHARS = 280
_SHOWN = reprlib.Repr(maxstring=40, maxother=40, maxlist=4, maxdict=4, maxlevel=2)
_PLAIN_PART = re.compile(r"^[\w-]{1,40}$")


def _part(part: object) -> str:
    """One step of an option's path, safe to print: odd or long names are quoted and shortened."""
    text = str(part)
    return text if _PLAIN_PART.match(text) else _SHOWN.repr(text)


def _one_line(text: str) -> str:
    """A problem as one short line: control characters escaped, the tail cut."""
    flat = "".join(ch if ch >= " " and ch != "\x7f" else ch.encode("unicode_escape").decode() for ch in text)
    return flat if len(flat) <= MAX_PROBLEM_CHARS else flat[: MAX_PROBLEM_CHARS - 3] + "..."


def _describe(error: dict[str, Any]) -> str:
    return _one_line(_sentence(error))


def _sentence(error: dict[str, Any]) -> str:
    where = ".".join(_part(part) for part in error["loc"]) or "options"
    kind = error["type"]
    shown = _SHOWN.repr(error.get("input"))
    if kind == "extra_forbidden":
        return f"{where}: unknown option; remove it"
    if kind == "literal_error" or kind == "enum":
        allowed = error.get("ctx", {}).get("expected", "")
        return f"{where}: {shown} is not allowed; use one of {allowed}"
    if kind == "union_tag_invalid":
        allowed = error.get("ctx", {}).get("expected_tags", "")
        return f"{where}: kind {_SHOWN.repr(error['ctx'].get('tag'))} is not known; use one of {allowed}"
    if kind in ("greater_than_equal", "less_than_equal"):
        ctx = error.get("ctx", {})
        bound = ctx.get("ge", ctx.get("le"))
        word = "at least" if kind == "greater_than_equal" else "at most"
        return f"{where}: must be {word} {bound}"
    if kind == "missing":
        return f"{where}: missing; this option is required"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"


def parse_options(raw: object) -> AddonOptions:
    """Validate decoded options, raising InvalidOptions with one line per problem."""
    try:
        return AddonOptions.model_validate(raw)
    except ValidationError as err:
        problems = [_describe(dict(e)) for e in err.errors()]
        raise InvalidOptions(problems) from None


def load_options(path: Path) -> AddonOptions:
    """Read and validate the options file the Supervisor writes."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidOptions([f"{path}: not found; is the add-on started by the Supervisor?"]) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidOptions([f"{path}: not valid JSON ({err.msg} at line {err.lineno})"]) from None
    return parse_options(raw)
