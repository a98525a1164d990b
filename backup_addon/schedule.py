"""When scheduled backups run: Home Assistant's schedule semantics plus cron. Pure; no I/O."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from cronsim import CronSim, CronSimError

DEFAULT_TIME = time(4, 45)
MAX_JITTER = timedelta(minutes=60)
WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

_DAYS_HELP = "Write 'daily', 'never', or days of the week separated by commas, e.g. 'mon,wed,fri'."
_TIME_OF_DAY = re.compile(r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?")
_CRON_FIELDS = (
    ("minute", "use one number from 0 to 59"),
    ("hour", "use 0-23, '*', a range like 1-5, a list like 1,13 or a step like */6"),
    (
        "day of month",
        "use 1-31, 'L' for the last day, '*', a range like 1-15, a list like 1,15 or a step like */2",
    ),
    ("month", "use 1-12 or JAN-DEC, '*', a range like 3-9, a list like 1,7 or a step like */3"),
    ("weekday", "use 0-7 (0 and 7 are Sunday) or SUN-SAT, '*', a range like 1-5 or a list like 1,3,5"),
)
_CRON_EXAMPLE = "minute hour day month weekday, e.g. '30 3 * * 0' for Sundays at 03:30"
# Any fixed instant will do: parsing does not depend on it, only the "does it ever run" probe.
_CRON_PROBE_START = datetime(2000, 1, 1, tzinfo=UTC)
# How far back to look for a cron run, widening only when nothing was found: a daily
# expression is answered by the first window, "0 3 29 2 *" (up to 8 years apart) by the last.
_CRON_LOOKBACKS = (
    timedelta(days=1),
    timedelta(days=8),
    timedelta(days=32),
    timedelta(days=367),
    timedelta(days=9 * 366),
)


@dataclass(frozen=True, slots=True)
class Schedule:
    """When to make one kind of backup; `cron`, when set, replaces `days` and `time`."""

    type: str
    days: frozenset[int] | None
    time: time | None
    cron: str | None = None

    def __post_init__(self) -> None:
        if self.days is not None and not self.days <= frozenset(range(7)):
            raise ValueError(f"days must be weekdays 0 (Monday) to 6 (Sunday), not {sorted(self.days)}")
        if self.cron is not None:
            check_cron(self.cron)


def parse_days(text: str) -> frozenset[int] | None:
    """Days from options text: 'daily' is every day (empty set), 'never' is None, else weekdays."""
    words = [word for word in re.split(r"[\s,]+", text.strip().lower()) if word]
    if words == ["daily"]:
        return frozenset()
    if words == ["never"]:
        return None
    if not words:
        raise ValueError(f"No days given. {_DAYS_HELP}")
    days: set[int] = set()
    for word in words:
        if word in ("daily", "never"):
            raise ValueError(f"'{word}' cannot be combined with days of the week. {_DAYS_HELP}")
        day = _weekday(word)
        if day is None:
            raise ValueError(f"'{word}' is not a day of the week. {_DAYS_HELP}")
        days.add(day)
    return frozenset(days)


def _weekday(word: str) -> int | None:
    # Any prefix of three letters or more is unambiguous: "tue", "tues", "thurs", "friday".
    if len(word) < 3:
        return None
    for index, name in enumerate(WEEKDAY_NAMES):
        if name.startswith(word):
            return index
    return None


def parse_time(text: str) -> time | None:
    """A time of day from 'HH:MM' (24-hour; ':SS' allowed); empty means Home Assistant's default."""
    value = text.strip()
    if not value:
        return None
    match = _TIME_OF_DAY.fullmatch(value)
    if match is not None:
        hour, minute, second = (int(part or 0) for part in match.groups())
        if hour <= 23 and minute <= 59 and second <= 59:
            return time(hour, minute, second)
    raise ValueError(
        f"'{text}' is not a time of day. Write it as HH:MM in 24-hour form, e.g. 04:45 or 23:30."
    )


def check_cron(expr: str) -> str:
    """The expression with its whitespace normalised, or ValueError saying what to change."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(
            f"The cron expression '{expr.strip()}' has {len(fields)} fields but must have 5: {_CRON_EXAMPLE}."
        )
    for index, (name, hint) in enumerate(_CRON_FIELDS):
        # Checking each field alone names the one that is wrong; cronsim only says "Bad ...".
        probe = ["0", "0", "*", "*", "*"]
        probe[index] = fields[index]
        try:
            CronSim(" ".join(probe), _CRON_PROBE_START)
        except CronSimError:
            raise ValueError(
                f"The {name} field '{fields[index]}' of the cron expression is not valid: {hint}."
            ) from None
    if not fields[0].isdecimal():
        # Every backup takes minutes and storage: more than one an hour is a typo, not a plan.
        raise ValueError(
            f"The minute field '{fields[0]}' must be one number from 0 to 59: "
            "backups cannot run more often than once an hour."
        )
    normalised = " ".join(fields)
    try:
        next(CronSim(normalised, _CRON_PROBE_START))
    except (CronSimError, StopIteration):
        raise ValueError(
            f"The cron expression '{normalised}' never runs: its day and month never meet on a real date."
        ) from None
    return normalised


def jitter_for(seed: str) -> timedelta:
    """A stable delay in [0, 60 min) for a seed, so installations do not all back up at once."""
    digest = hashlib.sha256(seed.encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % int(MAX_JITTER.total_seconds()))


def next_run_after(
    schedule: Schedule, after: datetime, *, jitter: timedelta = timedelta(0)
) -> datetime | None:
    """The first run strictly after `after`, in `after`'s time zone; None for a schedule that never runs."""
    tz = _zone(after)
    if schedule.cron is not None:
        return next(_cron_runs(schedule.cron, after), None)
    if schedule.days is None:
        return None
    offset = _time_of_day(schedule, jitter)
    first = after.astimezone(tz).date() - timedelta(days=1)
    # From the day before (a slot shifted past a DST gap at midnight lands on the next date)
    # through a week later, which holds every weekday at least once.
    for n in range(9):
        slot = _slot_on(first + timedelta(days=n), schedule.days, offset, tz)
        if slot is not None and _utc(slot) > _utc(after):
            return slot
    return None


def previous_run_at_or_before(
    schedule: Schedule, now: datetime, *, jitter: timedelta = timedelta(0)
) -> datetime | None:
    """The latest run at or before `now`, in `now`'s time zone; None if there is none."""
    tz = _zone(now)
    if schedule.cron is not None:
        return _previous_cron_run(schedule.cron, now)
    if schedule.days is None:
        return None
    offset = _time_of_day(schedule, jitter)
    today = now.astimezone(tz).date()
    for n in range(9):
        slot = _slot_on(today - timedelta(days=n), schedule.days, offset, tz)
        if slot is not None and _utc(slot) <= _utc(now):
            return slot
    return None


def due_run(
    schedule: Schedule, now: datetime, last_handled: datetime | None, *, jitter: timedelta = timedelta(0)
) -> datetime | None:
    """The run to start now: the latest one at or before `now`, if it is later than `last_handled`.

    Many missed runs (the add-on or the host was down for days) give one catch-up run, not
    many. On the very first start (`last_handled` is None) nothing is due: the schedule
    begins with the next run.
    """
    if last_handled is None:
        return None
    _zone(last_handled)
    latest = previous_run_at_or_before(schedule, now, jitter=jitter)
    if latest is None or _utc(latest) <= _utc(last_handled):
        return None
    return latest


def _time_of_day(schedule: Schedule, jitter: timedelta) -> timedelta:
    """The wall-clock time of the schedule's runs, as a span from local midnight."""
    if not timedelta(0) <= jitter < MAX_JITTER:
        raise ValueError(f"jitter must be at least 0 and less than 60 minutes, not {jitter}")
    if schedule.time is not None:
        return _since_midnight(schedule.time)
    # Home Assistant's own rule: no time set means 04:45 plus a per-installation delay.
    return _since_midnight(DEFAULT_TIME) + jitter


def _since_midnight(at: time) -> timedelta:
    return timedelta(hours=at.hour, minutes=at.minute, seconds=at.second)


def _slot_on(day: date, days: frozenset[int], offset: timedelta, tz: tzinfo) -> datetime | None:
    """The instant of the run on local date `day`, or None if the schedule skips that weekday."""
    if days and day.weekday() not in days:
        return None
    wall = datetime.combine(day, time()) + offset
    # fold=0 takes the earlier instant of a repeated hour (so it runs once) and, inside a
    # spring-forward gap, the offset before the change: 02:30 becomes 03:30 summer time.
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC).astimezone(tz)


def _cron_runs(expr: str, after: datetime) -> Iterator[datetime]:
    """The expression's runs strictly after `after`, in order, each a real instant in `after`'s zone."""
    tz = _zone(after)
    floor = _utc(after)
    # cronsim walks local wall time; after a repeated hour it can offer an instant that is
    # not later than the last one, so only strictly later instants are passed on.
    for run in CronSim(expr, after.astimezone(tz)):
        if _utc(run) > floor:
            floor = _utc(run)
            yield run.astimezone(UTC).astimezone(tz)


def _previous_cron_run(expr: str, now: datetime) -> datetime | None:
    # Walking forward from a window before `now` reuses the direction cronsim's DST handling
    # is written for, so previous and next runs always agree.
    for lookback in _CRON_LOOKBACKS:
        latest: datetime | None = None
        for run in _cron_runs(expr, now - lookback):
            if _utc(run) > _utc(now):
                break
            latest = run
        if latest is not None:
            return latest
    return None


def _zone(moment: datetime) -> tzinfo:
    """The moment's time zone; ValueError for a naive datetime, which names no instant."""
    zone = moment.tzinfo
    if zone is None or moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no time zone")
    return zone


def _utc(moment: datetime) -> datetime:
    # Aware datetimes sharing one tzinfo compare by wall time, ignoring fold; UTC does not.
    return moment.astimezone(UTC)
