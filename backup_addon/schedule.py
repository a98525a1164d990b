"""When scheduled backups are due. Pure functions over aware datetimes; no I/O."""

from __future__ import annotations

from datetime import datetime, time, timedelta


def parse_time_of_day(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _slot_on(day: datetime, at: time) -> datetime:
    local = day.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    # Round-trip through UTC so a slot inside a DST gap lands on a real instant.
    return local.astimezone(day.tzinfo)


def previous_slot(now: datetime, at: str) -> datetime:
    """The latest daily slot at or before `now`, in `now`'s time zone."""
    when = parse_time_of_day(at)
    slot = _slot_on(now, when)
    if slot > now:
        slot = _slot_on(now - timedelta(days=1), when)
    return slot


def next_slot(now: datetime, at: str) -> datetime:
    """The first daily slot strictly after `now`."""
    when = parse_time_of_day(at)
    slot = _slot_on(now, when)
    if slot <= now:
        slot = _slot_on(now + timedelta(days=1), when)
    return slot


def due_slot(now: datetime, at: str, last_handled: datetime | None) -> datetime | None:
    """The slot to run now, if one is due and not handled yet.

    Several missed slots (the add-on was stopped for days) give one catch-up run, not many.
    On the very first start (`last_handled` is None) nothing is due: the schedule begins with
    the next slot.
    """
    slot = previous_slot(now, at)
    if last_handled is None or last_handled >= slot:
        return None
    return slot
