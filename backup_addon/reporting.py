"""What Home Assistant shows about the backups: notifications, sensors and events.

The pure functions turn a StatusSnapshot (plain data the service collects) into the wanted
notifications and entity states; the Reporter makes Home Assistant match them with as few
requests as possible, and re-publishes everything after Home Assistant restarted (it keeps
neither posted states nor persistent notifications across a restart).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import unicodedata
from collections.abc import Awaitable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import quote, quote_plus

from .homeassistant import HomeAssistant, HomeAssistantError

_LOGGER = logging.getLogger(__name__)

PREFIX = "backup_321"
TITLE = "3-2-1 Backup"
OPEN_PANEL = "Open 3-2-1 Backup from the sidebar"

# --- notifications --------------------------------------------------------------------------

NOTIFY_BACKUP_FAILED = f"{PREFIX}_backup_failed"
NOTIFY_LOCATION_UNREACHABLE = f"{PREFIX}_location_unreachable"
NOTIFY_COPY_CORRUPT = f"{PREFIX}_copy_failed_verification"
NOTIFY_RULE_NOT_MET = f"{PREFIX}_rule_not_met"
NOTIFY_STALE = f"{PREFIX}_backups_stale"
NOTIFY_KIT_NOT_SAVED = f"{PREFIX}_emergency_kit_not_saved"
NOTIFY_DISK_NEARLY_FULL = f"{PREFIX}_disk_nearly_full"
NOTIFY_OTHER_BACKUP_FAILED = f"{PREFIX}_other_backup_failed"
NOTIFICATION_IDS: tuple[str, ...] = (
    NOTIFY_BACKUP_FAILED,
    NOTIFY_LOCATION_UNREACHABLE,
    NOTIFY_COPY_CORRUPT,
    NOTIFY_RULE_NOT_MET,
    NOTIFY_STALE,
    NOTIFY_KIT_NOT_SAVED,
    NOTIFY_DISK_NEARLY_FULL,
    NOTIFY_OTHER_BACKUP_FAILED,
)

# --- entities -------------------------------------------------------------------------------

ENTITY_LAST_BACKUP = f"sensor.{PREFIX}_last_backup"
ENTITY_NEXT_BACKUP = f"sensor.{PREFIX}_next_backup"
ENTITY_LAST_BACKUP_SIZE = f"sensor.{PREFIX}_last_backup_size"
ENTITY_STATUS = f"sensor.{PREFIX}_status"
ENTITY_STALE = f"binary_sensor.{PREFIX}_stale"
# Home Assistant's data_size unit "MB" is 10^6 bytes (its InformationConverter); the exact byte
# count is in the "bytes" attribute.
SIZE_UNIT = "MB"
MAX_SLUG = 40
UNKNOWN = "unknown"

# --- events ---------------------------------------------------------------------------------

EVENT_BACKUP_STARTED = f"{PREFIX}_backup_started"
EVENT_BACKUP_COMPLETED = f"{PREFIX}_backup_completed"
EVENT_BACKUP_FAILED = f"{PREFIX}_backup_failed"
EVENT_COPY_VERIFIED = f"{PREFIX}_copy_verified"
EVENT_COPY_FAILED = f"{PREFIX}_copy_failed"
EVENT_PRUNED = f"{PREFIX}_pruned"
EVENTS: tuple[str, ...] = (
    EVENT_BACKUP_STARTED,
    EVENT_BACKUP_COMPLETED,
    EVENT_BACKUP_FAILED,
    EVENT_COPY_VERIFIED,
    EVENT_COPY_FAILED,
    EVENT_PRUNED,
)

REDACTED = "[redacted]"
# Secrets this short cannot be told apart from ordinary words; removing them would garble text.
MIN_SECRET_LENGTH = 4
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@]*:[^/\s@]*@")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_SECRET_PARAM = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|secret[_-]?key"
    r"|signature|x-amz-signature|x-amz-credential|x-amz-security-token)=([^&\s\"']+)"
)

STAGES = {
    "requesting": "while asking the Supervisor for a backup",
    "supervisor_backup": "while the Supervisor was making the backup",
    "recording": "while recording the new backup",
    "copying": "while copying the backup to your locations",
    "verifying": "while checking the copies",
    "pruning": "while removing old backups",
}


@dataclass(frozen=True, slots=True)
class Notification:
    """A persistent notification as Home Assistant shows it."""

    title: str
    message: str


@dataclass(frozen=True, slots=True)
class EntityState:
    """The state and attributes to post for one entity."""

    state: str
    attributes: dict[str, Any] = field(default_factory=dict)


class LocationTimes(NamedTuple):
    """When a location last received a copy, and when a copy there was last proven readable."""

    last_copy_at: datetime | None
    last_proven_at: datetime | None


class BadCopy(NamedTuple):
    """A copy that failed its verification."""

    backup: str
    location: str
    error: str


@dataclass(frozen=True, slots=True)
class RunFailure:
    """The last backup run, which failed."""

    run_id: int
    stage: str | None
    error: str
    locations: Sequence[str] = ()


@dataclass(slots=True)
class StatusSnapshot:
    """Everything the service knows about the backups at ``now``, as plain data.

    Datetimes must carry a time zone; notification texts use the one of ``now``. Unknown
    facts stay None. ``missing`` holds the 3-2-1 verdict's sentences for the user;
    ``bad_copies`` holds BadCopy-shaped tuples and ``locations`` LocationTimes-shaped ones.
    ``disk_*_bytes`` describe the storage behind /backup.
    """

    now: datetime
    last_success_at: datetime | None = None
    next_backup_at: datetime | None = None
    last_backup_size: int | None = None
    last_backup_name: str | None = None
    last_backup_slug: str | None = None
    running: bool = False
    rule_met: bool | None = None
    copies: int = 0
    media: int = 0
    offsite: int = 0
    missing: list[str] = field(default_factory=list)
    stale: bool = False
    stale_reason: str | None = None
    last_failure: RunFailure | None = None
    unreachable: dict[str, datetime] = field(default_factory=dict)
    bad_copies: list[tuple[str, str, str]] = field(default_factory=list)
    kit_confirmed: bool = False
    disk_free_bytes: int | None = None
    disk_total_bytes: int | None = None
    locations: dict[str, tuple[datetime | None, datetime | None]] = field(default_factory=dict)
    # Errors of backups Home Assistant made itself (seen in the Supervisor's jobs) since its last good one.
    other_failures: list[str] = field(default_factory=list)


# --- redaction ------------------------------------------------------------------------------


def _variants(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote_plus(secret), quote(secret)}


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without the given secrets (also URL-encoded), URL passwords, bearer tokens or
    ``password=``-style parameters."""
    forms = sorted(
        {form for s in secrets if len(s) >= MIN_SECRET_LENGTH for form in _variants(s)}, key=len, reverse=True
    )
    for form in forms:
        text = text.replace(form, REDACTED)
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    text = _BEARER.sub(lambda m: f"{m[1]} {REDACTED}", text)
    return _SECRET_PARAM.sub(lambda m: f"{m[1]}={REDACTED}", text)


def redact_value(value: Any, secrets: Iterable[str] = ()) -> Any:
    """``value`` with every string in it (keys too) passed through redact()."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {redact_value(k, secrets): redact_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v, secrets) for v in value]
    return value


# --- formatting -----------------------------------------------------------------------------


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _iso(moment: datetime | None) -> str:
    return UNKNOWN if moment is None else _aware(moment).isoformat()


def _local(moment: datetime, now: datetime) -> str:
    return _aware(moment).astimezone(_aware(now).tzinfo).strftime("%Y-%m-%d %H:%M")


def human_size(size: int) -> str:
    """Bytes as the user reads them: decimal units, like Home Assistant's data_size."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def _names(names: Iterable[str]) -> str:
    quoted = [f"'{name}'" for name in names]
    if len(quoted) <= 1:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _stage_text(stage: str | None) -> str:
    if not stage:
        return ""
    head, _, detail = stage.partition(":")
    # The pipeline records the Supervisor's own steps as "supervisor:<step>".
    if head == "supervisor" and detail:
        return f"{STAGES['supervisor_backup']} (its step '{detail}')"
    return STAGES.get(stage, f"at step '{stage}'")


def _clean(text: str, limit: int = 100) -> str:
    # Location names come from the user's options: keep them on one printable line.
    printable = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(printable.split())[:limit]


def _excerpt(text: str, limit: int = 600) -> str:
    # Error texts can be long tracebacks of a remote server; the notification needs the gist.
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


# --- notifications --------------------------------------------------------------------------


def _failure_notification(snapshot: StatusSnapshot, failure: RunFailure) -> Notification:
    where = _stage_text(failure.stage)
    lines = [
        f"Backup run #{failure.run_id} failed{' ' + where if where else ''}:",
        "",
        _excerpt(failure.error),
        "",
    ]
    if failure.locations:
        lines += [f"No new copy reached {_names(failure.locations)}.", ""]
    when = (
        f"The next scheduled backup is at {_local(snapshot.next_backup_at, snapshot.now)}."
        if snapshot.next_backup_at
        else "No further backup is scheduled."
    )
    lines.append(
        f"{OPEN_PANEL} and look at Activity for the details. Fix what the message names, then press "
        f"Back up now. {when}"
    )
    return Notification(f"{TITLE}: the last backup failed", "\n".join(lines))


def _unreachable_notification(snapshot: StatusSnapshot, names: list[str]) -> Notification:
    since = [f"- '{name}' (since {_local(snapshot.unreachable[name], snapshot.now)})" for name in names]
    lines = [
        "The add-on cannot reach these backup locations, so new backups are not copied there:",
        "",
        *since,
        "",
        "Check that the device or service is switched on, connected to the network and that its "
        "password has not changed. Then open 3-2-1 Backup from the sidebar and press Test connection "
        "on Locations.",
    ]
    plural = "s" if len(names) > 1 else ""
    return Notification(f"{TITLE}: backup location{plural} unreachable", "\n".join(lines))


def _corrupt_notification(bad: Sequence[tuple[str, str, str]]) -> Notification:
    items = [
        f"- backup '{backup}' in '{location}': {_excerpt(error, 300)}" for backup, location, error in bad
    ]
    lines = [
        "These copies failed their check and cannot be trusted for a restore:",
        "",
        *items,
        "",
        f"{OPEN_PANEL}, open Backups and press Back up now to make a fresh backup; the add-on "
        "copies it to every location again. If a location keeps failing, check its disk.",
    ]
    return Notification(f"{TITLE}: a copy failed verification", "\n".join(lines))


def _rule_notification(snapshot: StatusSnapshot) -> Notification:
    missing = [f"- {sentence.strip()}" for sentence in snapshot.missing] or [
        f"- copies: {snapshot.copies}, kinds of storage: {snapshot.media}, away from home: {snapshot.offsite}"
    ]
    lines = [
        "Your backups no longer follow the 3-2-1 rule (3 copies, 2 kinds of storage, 1 away from home):",
        "",
        *missing,
        "",
        f"{OPEN_PANEL} and add a location, or repair the one that fails, under Locations.",
    ]
    return Notification(f"{TITLE}: the 3-2-1 rule is not met", "\n".join(lines))


def _stale_notification(snapshot: StatusSnapshot) -> Notification:
    last = (
        f"The last successful backup was made on {_local(snapshot.last_success_at, snapshot.now)}."
        if snapshot.last_success_at
        else "No backup has succeeded yet."
    )
    reason = f" {snapshot.stale_reason.strip()}" if snapshot.stale_reason else ""
    lines = [
        f"Your backups are out of date.{reason}",
        "",
        last,
        "",
        f"{OPEN_PANEL}, look at Activity for what went wrong, and press Back up now.",
    ]
    return Notification(f"{TITLE}: backups are out of date", "\n".join(lines))


def _kit_notification() -> Notification:
    message = (
        "Your backups are encrypted. Without the emergency kit nobody can restore them, not even you, "
        "if this device breaks or is lost.\n\n"
        f"{OPEN_PANEL}, open Emergency kit, download it and keep it somewhere other than this device "
        "(print it, or store it in your password manager). Then confirm there that you saved it."
    )
    return Notification(f"{TITLE}: save your emergency kit", message)


def _disk_notification(snapshot: StatusSnapshot, free: int, total: int) -> Notification:
    need = (
        f" The last backup needed {human_size(snapshot.last_backup_size)}."
        if snapshot.last_backup_size
        else ""
    )
    message = (
        f"Only {human_size(free)} of {human_size(total)} are free on this device's backup storage; the next "
        f"backup may not fit.{need}\n\n"
        "Delete backups you no longer need under Settings > System > Backups, or free space on this "
        f"device. {OPEN_PANEL} to see which backups the add-on keeps."
    )
    return Notification(f"{TITLE}: backup storage nearly full", message)


def _disk_nearly_full(snapshot: StatusSnapshot) -> tuple[int, int] | None:
    free, total = snapshot.disk_free_bytes, snapshot.disk_total_bytes
    if free is None or not total:
        return None
    if free < total / 10 or (snapshot.last_backup_size and free < snapshot.last_backup_size):
        # Rounded so that the text, and the notification, does not change with every byte written.
        return _round_size(free), _round_size(total)
    return None


def _round_size(size: int) -> int:
    step = 100_000_000 if size >= 1_000_000_000 else 100_000
    return size // step * step


def desired_notifications(
    snapshot: StatusSnapshot, *, unreachable_after: timedelta = timedelta(hours=6)
) -> dict[str, Notification]:
    """Notifications Home Assistant should show now, by their stable notification id."""
    wanted: dict[str, Notification] = {}
    if snapshot.last_failure is not None:
        wanted[NOTIFY_BACKUP_FAILED] = _failure_notification(snapshot, snapshot.last_failure)
    now = _aware(snapshot.now)
    long_down = sorted(
        name for name, since in snapshot.unreachable.items() if now - _aware(since) >= unreachable_after
    )
    if long_down:
        wanted[NOTIFY_LOCATION_UNREACHABLE] = _unreachable_notification(snapshot, long_down)
    if snapshot.bad_copies:
        wanted[NOTIFY_COPY_CORRUPT] = _corrupt_notification(snapshot.bad_copies)
    if snapshot.rule_met is False:
        wanted[NOTIFY_RULE_NOT_MET] = _rule_notification(snapshot)
    if snapshot.stale:
        wanted[NOTIFY_STALE] = _stale_notification(snapshot)
    if not snapshot.kit_confirmed:
        wanted[NOTIFY_KIT_NOT_SAVED] = _kit_notification()
    if (disk := _disk_nearly_full(snapshot)) is not None:
        wanted[NOTIFY_DISK_NEARLY_FULL] = _disk_notification(snapshot, *disk)
    if snapshot.other_failures:
        wanted[NOTIFY_OTHER_BACKUP_FAILED] = _other_failure_notification(snapshot.other_failures)
    return wanted


def _other_failure_notification(errors: list[str]) -> Notification:
    message = (
        "A backup that Home Assistant started itself (not one of 3-2-1 Backup's) failed: "
        + "; ".join(errors[-3:])
        + "\n\nOpen Settings > System > Backups to see Home Assistant's backup settings, and Settings > "
        f"System > Logs (Supervisor) for details. 3-2-1 Backup's own backups are not affected: {OPEN_PANEL[0].lower()}{OPEN_PANEL[1:]} "
        "to see them."
    )
    return Notification(f"{TITLE}: Home Assistant's own backup failed", message)


# --- entity states --------------------------------------------------------------------------


# Latin letters that Unicode does not decompose into a base letter plus accents.
_LATIN = str.maketrans(
    {
        "ø": "o",
        "Ø": "o",
        "æ": "ae",
        "Æ": "ae",
        "œ": "oe",
        "Œ": "oe",
        "ß": "ss",
        "đ": "d",
        "Đ": "d",
        "ł": "l",
        "Ł": "l",
        "þ": "th",
        "Þ": "th",
        "ð": "d",
        "Ð": "d",
    }
)


def _slug(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name.translate(_LATIN)).encode("ascii", "ignore").decode()
    return "_".join(re.findall(r"[a-z0-9]+", ascii_name.lower()))[:MAX_SLUG].strip("_")


def _short_hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:6]


def location_slugs(names: Iterable[str]) -> dict[str, str]:
    """A distinct entity-id part for each location name, stable for a given set of names.

    Names that slugify to nothing, or to the same thing as another name, get a short hash of
    the exact name appended.
    """
    names = sorted(set(names))
    plain = {name: _slug(name) for name in names}
    counts: dict[str, int] = {}
    for slug in plain.values():
        counts[slug] = counts.get(slug, 0) + 1
    result: dict[str, str] = {}
    for name, slug in plain.items():
        if not slug or counts[slug] > 1:
            slug = f"{slug or 'location'}_{_short_hash(name)}"
        result[name] = slug
    return result


def _timestamp(friendly: str, icon: str, moment: datetime | None, **extra: Any) -> EntityState:
    attributes = {"device_class": "timestamp", "friendly_name": friendly, "icon": icon, **extra}
    return EntityState(_iso(moment), attributes)


def _size_state(snapshot: StatusSnapshot) -> EntityState:
    size = snapshot.last_backup_size
    state = UNKNOWN if size is None else f"{size / 1_000_000:.2f}"
    return EntityState(
        state,
        {
            "device_class": "data_size",
            "state_class": "measurement",
            "unit_of_measurement": SIZE_UNIT,
            "bytes": size,
            "friendly_name": f"{TITLE} last backup size",
            "icon": "mdi:harddisk",
        },
    )


def _status_state(snapshot: StatusSnapshot) -> EntityState:
    if snapshot.rule_met is None:
        state, icon = UNKNOWN, "mdi:shield-outline"
    elif snapshot.rule_met:
        state, icon = "met", "mdi:shield-check"
    else:
        state, icon = "not met", "mdi:shield-alert"
    return EntityState(
        state,
        {
            "copies": snapshot.copies,
            "media": snapshot.media,
            "offsite": snapshot.offsite,
            "missing": list(snapshot.missing),
            "running": snapshot.running,
            "friendly_name": f"{TITLE} status",
            "icon": icon,
        },
    )


def _stale_state(snapshot: StatusSnapshot) -> EntityState:
    return EntityState(
        "on" if snapshot.stale else "off",
        {
            "device_class": "problem",
            "reason": snapshot.stale_reason if snapshot.stale else None,
            "friendly_name": f"{TITLE} backups out of date",
            "icon": "mdi:clock-alert-outline" if snapshot.stale else "mdi:clock-check-outline",
        },
    )


def location_entities(slug: str) -> tuple[str, str]:
    """Entity ids of a location's last-copy and last-proven sensors."""
    return f"sensor.{PREFIX}_{slug}_last_copy", f"sensor.{PREFIX}_{slug}_last_proven"


def desired_states(snapshot: StatusSnapshot) -> dict[str, EntityState]:
    """Entity states Home Assistant should show now, by entity id."""
    states = {
        ENTITY_LAST_BACKUP: _timestamp(
            f"{TITLE} last backup",
            "mdi:backup-restore",
            snapshot.last_success_at,
            backup_name=snapshot.last_backup_name,
            slug=snapshot.last_backup_slug,
        ),
        ENTITY_NEXT_BACKUP: _timestamp(f"{TITLE} next backup", "mdi:calendar-clock", snapshot.next_backup_at),
        ENTITY_LAST_BACKUP_SIZE: _size_state(snapshot),
        ENTITY_STATUS: _status_state(snapshot),
        ENTITY_STALE: _stale_state(snapshot),
    }
    slugs = location_slugs(snapshot.locations)
    for name, (last_copy_at, last_proven_at) in sorted(snapshot.locations.items()):
        copy_id, proven_id = location_entities(slugs[name])
        label = _clean(name)
        since = snapshot.unreachable.get(name)
        extra = {"location": name, "unreachable_since": None if since is None else _iso(since)}
        states[copy_id] = _timestamp(f"{TITLE} {label} last copy", "mdi:content-copy", last_copy_at, **extra)
        states[proven_id] = _timestamp(
            f"{TITLE} {label} last proven restorable", "mdi:check-decagram", last_proven_at, **extra
        )
    return states


# --- event payloads -------------------------------------------------------------------------


def _seconds(duration: timedelta | float | None) -> float | None:
    if duration is None:
        return None
    value = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
    return round(value, 1)


def backup_started_payload(
    *, run_id: int, trigger: str, backup_type: str, locations: Sequence[str]
) -> dict[str, Any]:
    """``backup_321_backup_started``: a run began (trigger: schedule, manual, automation ...)."""
    return {"run_id": run_id, "trigger": trigger, "type": backup_type, "locations": list(locations)}


def backup_completed_payload(
    *,
    run_id: int,
    slug: str,
    name: str,
    size_bytes: int | None,
    duration: timedelta | float | None,
    locations: Sequence[str],
    failed_locations: Sequence[str] = (),
) -> dict[str, Any]:
    """``backup_321_backup_completed``: the backup exists; ``locations`` got a copy."""
    return {
        "run_id": run_id,
        "slug": slug,
        "name": name,
        "size_bytes": size_bytes,
        "duration_seconds": _seconds(duration),
        "locations": list(locations),
        "failed_locations": list(failed_locations),
    }


def backup_failed_payload(
    *,
    run_id: int,
    stage: str | None,
    error: str,
    failed_locations: Sequence[str] = (),
    duration: timedelta | float | None = None,
) -> dict[str, Any]:
    """``backup_321_backup_failed``: the run ended without a usable backup."""
    return {
        "run_id": run_id,
        "stage": stage,
        "error": error,
        "failed_locations": list(failed_locations),
        "duration_seconds": _seconds(duration),
    }


def copy_verified_payload(
    *, slug: str, name: str, location: str, size_bytes: int | None, duration: timedelta | float | None
) -> dict[str, Any]:
    """``backup_321_copy_verified``: the copy in ``location`` was read back and matches."""
    return {
        "slug": slug,
        "name": name,
        "location": location,
        "size_bytes": size_bytes,
        "duration_seconds": _seconds(duration),
    }


def copy_failed_payload(*, slug: str, name: str, location: str, error: str) -> dict[str, Any]:
    """``backup_321_copy_failed``: writing or verifying the copy in ``location`` failed."""
    return {"slug": slug, "name": name, "location": location, "error": error}


def pruned_payload(*, slug: str, name: str, locations: Sequence[str], reason: str) -> dict[str, Any]:
    """``backup_321_pruned``: the retention rules removed the backup from ``locations``."""
    return {"slug": slug, "name": name, "locations": list(locations), "reason": reason}


# --- the publisher --------------------------------------------------------------------------


def _ours(entity_id: str) -> bool:
    domain, _, name = entity_id.partition(".")
    return domain in ("sensor", "binary_sensor") and name.startswith(f"{PREFIX}_")


class _Restarted(Exception):
    """Home Assistant forgot what was posted: it restarted."""


class Reporter:
    """Keeps Home Assistant's notifications and sensors in line with the latest snapshot.

    Reporting never raises: when Home Assistant cannot be reached the problem is logged as a
    warning and the next publish() tries again.
    """

    def __init__(
        self,
        client: HomeAssistant,
        *,
        secrets: Collection[str] = (),
        unreachable_after: timedelta = timedelta(hours=6),
    ) -> None:
        self.client = client
        self.unreachable_after = unreachable_after
        self._secrets: tuple[str, ...] = tuple(secrets)
        self._shown: dict[str, Notification] = {}
        self._posted: dict[str, EntityState] = {}
        self._entity_set: set[str] = set()
        self._cleaned_up = False
        self._failing: str | None = None
        self._lock = asyncio.Lock()

    def update_secrets(self, secrets: Collection[str]) -> None:
        """Replace the texts that must never reach Home Assistant (keys, passwords, tokens)."""
        self._secrets = tuple(secrets)

    async def publish(self, snapshot: StatusSnapshot) -> bool:
        """Create, replace and dismiss notifications and post changed states; True if all went through."""
        snapshot = self._scrub_snapshot(snapshot)
        notifications = {
            nid: Notification(self._scrub(n.title), self._scrub(n.message))
            for nid, n in desired_notifications(snapshot, unreachable_after=self.unreachable_after).items()
        }
        states = {
            eid: EntityState(self._scrub(s.state), redact_value(s.attributes, self._secrets))
            for eid, s in desired_states(snapshot).items()
        }
        async with self._lock:
            return await self._guarded("publish the backup status", self._sync(notifications, states))

    async def event(self, event_type: str, payload: Mapping[str, Any]) -> bool:
        """Fire ``event_type`` with ``payload`` (scrubbed of secrets); True if Home Assistant took it."""
        data = redact_value(dict(payload), self._secrets)
        return await self._guarded(f"send the event {event_type}", self.client.fire_event(event_type, data))

    async def _guarded(self, what: str, work: Awaitable[object]) -> bool:
        try:
            await work
        except HomeAssistantError as err:
            self._warn(what, str(err))
            return False
        except Exception as err:  # reporting must never stop a backup
            self._warn(what, f"unexpected {type(err).__name__}: {err}")
            return False
        if self._failing is not None:
            _LOGGER.info("Home Assistant takes status updates again")
            self._failing = None
        return True

    def _warn(self, what: str, reason: str) -> None:
        reason = self._scrub(reason)
        # Once per outage: Home Assistant restarting must not flood the log.
        if reason != self._failing:
            _LOGGER.warning("Could not %s to Home Assistant: %s", what, reason)
        self._failing = reason

    def _scrub(self, text: str) -> str:
        return redact(text, self._secrets)

    def _scrub_snapshot(self, snapshot: StatusSnapshot) -> StatusSnapshot:
        # Names too: entity ids are made from location names.
        scrub = self._scrub
        failure = snapshot.last_failure
        return replace(
            snapshot,
            last_backup_name=None if snapshot.last_backup_name is None else scrub(snapshot.last_backup_name),
            missing=[scrub(m) for m in snapshot.missing],
            stale_reason=None if snapshot.stale_reason is None else scrub(snapshot.stale_reason),
            last_failure=None
            if failure is None
            else replace(
                failure,
                stage=None if failure.stage is None else scrub(failure.stage),
                error=scrub(failure.error),
                locations=[scrub(name) for name in failure.locations],
            ),
            unreachable={scrub(name): since for name, since in snapshot.unreachable.items()},
            bad_copies=[
                BadCopy(scrub(backup), scrub(location), scrub(error))
                for backup, location, error in snapshot.bad_copies
            ],
            locations={scrub(name): times for name, times in snapshot.locations.items()},
            other_failures=[scrub(error) for error in snapshot.other_failures],
        )

    async def _sync(self, notifications: dict[str, Notification], states: dict[str, EntityState]) -> None:
        if ENTITY_STATUS in self._posted and await self.client.get_state(ENTITY_STATUS) is None:
            self._forget("the sensors are gone")
        try:
            await self._sync_states(states)
        except _Restarted:
            self._forget("a sensor had to be created again")
            await self._sync_states(states)
        await self._sync_notifications(notifications)

    def _forget(self, sign: str) -> None:
        _LOGGER.info("Home Assistant restarted (%s); publishing sensors and notifications again", sign)
        # A restart clears posted states and persistent notifications alike.
        self._posted.clear()
        self._shown.clear()
        self._cleaned_up = True

    async def _sync_states(self, states: dict[str, EntityState]) -> None:
        if set(states) != self._entity_set:
            # A location was renamed or removed (now, or while the add-on was stopped): its
            # sensors would otherwise stay in Home Assistant, frozen, until it restarts.
            for entity_id in await self.client.entity_ids():
                if _ours(entity_id) and entity_id not in states:
                    await self.client.remove_state(entity_id)
                    self._posted.pop(entity_id, None)
            self._entity_set = set(states)
        for entity_id, wanted in states.items():
            if self._posted.get(entity_id) == wanted:
                continue
            known = entity_id in self._posted
            created = await self.client.set_state(entity_id, wanted.state, wanted.attributes)
            self._posted[entity_id] = wanted
            if created and known:
                raise _Restarted

    async def _sync_notifications(self, notifications: dict[str, Notification]) -> None:
        if not self._cleaned_up:
            # Left over from before this process started: nobody else would ever dismiss them.
            for notification_id in NOTIFICATION_IDS:
                if notification_id not in notifications:
                    await self.client.dismiss(notification_id)
            self._cleaned_up = True
        for notification_id in [nid for nid in self._shown if nid not in notifications]:
            await self.client.dismiss(notification_id)
            del self._shown[notification_id]
        for notification_id, wanted in notifications.items():
            if self._shown.get(notification_id) != wanted:
                await self.client.notify(notification_id, wanted.title, wanted.message)
                self._shown[notification_id] = wanted
