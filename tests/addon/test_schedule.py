"""The daily schedule: next slot, catch-up after downtime, DST."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from backup_addon.schedule import due_slot, next_slot, previous_slot

BERLIN = ZoneInfo("Europe/Berlin")


def at(*args):
    return datetime(*args, tzinfo=BERLIN)


def test_next_slot_is_later_today_before_the_time():
    assert next_slot(at(2026, 11, 26, 3, 0), "04:45") == at(2026, 11, 26, 4, 45)


def test_next_slot_is_tomorrow_after_the_time():
    assert next_slot(at(2026, 11, 26, 4, 45), "04:45") == at(2026, 11, 27, 4, 45)


def test_previous_slot():
    assert previous_slot(at(2026, 11, 26, 3, 0), "04:45") == at(2026, 11, 25, 4, 45)


def test_first_start_waits_for_the_next_slot():
    assert due_slot(at(2026, 11, 26, 12, 0), "04:45", None) is None


def test_slot_reached_is_due_once():
    last = at(2026, 11, 25, 4, 45)
    now = at(2026, 11, 26, 4, 45, 1)
    assert due_slot(now, "04:45", last) == at(2026, 11, 26, 4, 45)
    assert due_slot(now, "04:45", at(2026, 11, 26, 4, 45)) is None


def test_days_of_downtime_give_one_catch_up_run():
    last = at(2026, 11, 20, 4, 45)
    slot = due_slot(at(2026, 11, 26, 9, 0), "04:45", last)
    assert slot == at(2026, 11, 26, 4, 45)
    assert due_slot(at(2026, 11, 26, 9, 0), "04:45", slot) is None


def test_slot_in_the_spring_forward_gap_still_happens_that_day():
    slot = next_slot(at(2026, 3, 29, 1, 0), "02:30")
    assert slot.date() == at(2026, 3, 29, 0, 0).date()
    assert slot - at(2026, 3, 29, 1, 0) <= timedelta(hours=2)


def test_schedule_follows_local_time_across_autumn_dst_change():
    before = next_slot(at(2026, 10, 24, 12, 0), "04:45")
    after = next_slot(before, "04:45")
    assert (before.hour, before.minute) == (after.hour, after.minute) == (4, 45)
