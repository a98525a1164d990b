"""The schedule: Home Assistant's never/daily/weekdays semantics, cron, catch-up, DST, jitter."""

import re
from datetime import UTC, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backup_addon.schedule import (
    Schedule,
    check_cron,
    due_run,
    jitter_for,
    next_run_after,
    parse_days,
    parse_time,
    previous_run_at_or_before,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def daily(at: str) -> Schedule:
    return Schedule("full", frozenset(), parse_time(at))


def on(days: str, at: str) -> Schedule:
    return Schedule("full", parse_days(days), parse_time(at))


def cron(expr: str) -> Schedule:
    return Schedule("full", None, None, cron=expr)


NEVER = Schedule("full", None, time(3, 30))
HA_DEFAULT = Schedule("full", frozenset(), None)


def moment(iso: str, zone: ZoneInfo = BERLIN) -> datetime:
    """An instant written with its UTC offset (which also says which pass of a repeated hour), seen in `zone`."""
    return datetime.fromisoformat(iso).astimezone(zone)


def shown(result: datetime | None) -> str | None:
    return None if result is None else result.isoformat()


# --- reading the options -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("daily", frozenset()),
        ("never", None),
        ("Never", None),
        ("mon,wed,fri", frozenset({0, 2, 4})),
        ("Monday, Wednesday", frozenset({0, 2})),
        ("  SAT , sun ", frozenset({5, 6})),
        ("tues,thurs", frozenset({1, 3})),
        ("sat sun", frozenset({5, 6})),
        ("mon,mon", frozenset({0})),
    ],
)
def test_days_are_read_from_words(text, days):
    assert parse_days(text) == days


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "No days given"),
        ("mo", "'mo' is not a day of the week"),
        ("funday", "'funday' is not a day of the week"),
        ("daily,mon", "'daily' cannot be combined"),
        ("1,3,5", "'1' is not a day of the week"),
    ],
)
def test_unknown_days_are_refused_with_an_example(text, complaint):
    with pytest.raises(ValueError, match=complaint) as caught:
        parse_days(text)
    assert "e.g. 'mon,wed,fri'" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "at"),
    [
        ("", None),
        ("  ", None),
        ("04:45", time(4, 45)),
        ("4:05", time(4, 5)),
        ("00:00", time(0, 0)),
        ("23:59", time(23, 59)),
        ("03:30:00", time(3, 30)),
    ],
)
def test_time_of_day_is_read_as_24_hour_clock(text, at):
    assert parse_time(text) == at


@pytest.mark.parametrize("text", ["24:00", "12:60", "noon", "4.45", "-1:00", "4:5", "04:45pm", "٠٤:٤٥"])
def test_a_time_that_is_not_hh_mm_is_refused(text):
    with pytest.raises(ValueError, match=r"Write it as HH:MM in 24-hour form, e.g. 04:45"):
        parse_time(text)


def test_cron_whitespace_is_normalised():
    assert check_cron("  30  3 *\t* 0 ") == "30 3 * * 0"


@pytest.mark.parametrize(
    "expr",
    [
        "0 3 * * *",
        "30 3 * * 0",
        "0 */6 * * *",
        "15 2 1,15 * *",
        "0 4 * * MON-FRI",
        "0 3 L * *",
        "0 3 29 2 *",
        "0 * * * *",
    ],
)
def test_usual_cron_expressions_are_accepted(expr):
    assert check_cron(expr) == expr


@pytest.mark.parametrize(
    ("expr", "complaint"),
    [
        (
            "30 3 * *",
            re.escape("has 4 fields but must have 5: minute hour day month weekday, e.g. '30 3 * * 0'"),
        ),
        ("0 30 3 * * 0", "has 6 fields but must have 5"),
        ("", "has 0 fields but must have 5"),
        ("61 3 * * *", "The minute field '61' .* not valid: use one number from 0 to 59"),
        ("0 25 * * *", "The hour field '25' .* not valid: use 0-23"),
        ("0 3 32 * *", "The day of month field '32' .* not valid: use 1-31"),
        ("0 3 * 13 *", "The month field '13' .* not valid: use 1-12 or JAN-DEC"),
        ("0 3 * * 8", "The weekday field '8' .* not valid: use 0-7"),
        ("0 3 * * funday", "The weekday field 'funday'"),
        ("*/5 * * * *", "cannot run more often than once an hour"),
        ("0,30 3 * * *", "cannot run more often than once an hour"),
        ("0 3 30 2 *", "never runs"),
        ("0 3 31 4,6,9,11 *", "never runs"),
    ],
)
def test_cron_mistakes_are_explained(expr, complaint):
    with pytest.raises(ValueError) as caught:
        check_cron(expr)
    assert re.search(complaint, str(caught.value))


def test_a_schedule_refuses_a_bad_cron_expression():
    with pytest.raises(ValueError, match="must have 5"):
        cron("every night")


def test_a_schedule_refuses_weekdays_out_of_range():
    with pytest.raises(ValueError, match="weekdays 0"):
        Schedule("full", frozenset({7}), time(3, 0))


# --- the next run ------------------------------------------------------------------------------

# fmt: off
NEXT_RUNS = [
    pytest.param(daily("03:30"), "2026-11-26T03:00+01:00", "2026-11-26T03:30:00+01:00", id="later the same day"),
    pytest.param(daily("03:30"), "2026-11-26T03:30+01:00", "2026-11-27T03:30:00+01:00", id="strictly after: not the run at that instant"),
    pytest.param(daily("03:30"), "2026-11-26T03:29:59.999999+01:00", "2026-11-26T03:30:00+01:00", id="a microsecond before"),
    pytest.param(on("mon,wed,fri", "03:30"), "2026-11-25T04:00+01:00", "2026-11-27T03:30:00+01:00", id="weekdays skip thursday"),
    pytest.param(on("mon", "03:30"), "2026-11-27T12:00+01:00", "2026-11-30T03:30:00+01:00", id="friday waits for monday"),
    pytest.param(on("wed", "03:30"), "2026-11-25T03:30+01:00", "2026-12-02T03:30:00+01:00", id="same weekday a week later"),
    pytest.param(NEVER, "2026-11-25T03:00+01:00", None, id="never"),
    # Berlin springs forward 02:00 -> 03:00 on 2026-03-29 and falls back 03:00 -> 02:00 on 2026-10-25.
    pytest.param(daily("02:30"), "2026-03-29T00:00+01:00", "2026-03-29T03:30:00+02:00", id="berlin gap moves 02:30 to 03:30"),
    pytest.param(daily("02:30"), "2026-03-29T03:30+02:00", "2026-03-30T02:30:00+02:00", id="berlin gap runs once"),
    pytest.param(daily("02:30"), "2026-10-25T00:00+02:00", "2026-10-25T02:30:00+02:00", id="berlin repeated hour runs on the first pass"),
    pytest.param(daily("02:30"), "2026-10-25T02:30+02:00", "2026-10-26T02:30:00+01:00", id="berlin repeated hour runs once"),
    pytest.param(daily("02:30"), "2026-10-25T02:15+01:00", "2026-10-26T02:30:00+01:00", id="berlin second pass is not a run"),
    # New York springs forward 02:00 -> 03:00 on 2026-03-08 and falls back 02:00 -> 01:00 on 2026-11-01.
    pytest.param(daily("02:30"), "2026-03-08T00:00-05:00", "2026-03-08T03:30:00-04:00", id="new york gap moves 02:30 to 03:30"),
    pytest.param(daily("01:30"), "2026-11-01T00:00-04:00", "2026-11-01T01:30:00-04:00", id="new york repeated hour runs on the first pass"),
    pytest.param(daily("01:30"), "2026-11-01T01:30-04:00", "2026-11-02T01:30:00-05:00", id="new york repeated hour runs once"),
    pytest.param(on("sat", "23:30"), "2026-11-27T12:00-05:00", "2026-11-28T23:30:00-05:00", id="weekday of the local date, not of utc"),
    pytest.param(on("tue", "03:30"), "2028-02-28T12:00+01:00", "2028-02-29T03:30:00+01:00", id="leap day is a tuesday like any other"),
    pytest.param(on("tue", "03:30"), "2028-02-29T03:30+01:00", "2028-03-07T03:30:00+01:00", id="the tuesday after the leap day"),
    pytest.param(daily("03:30"), "2028-02-28T12:00+01:00", "2028-02-29T03:30:00+01:00", id="daily includes the leap day"),
    pytest.param(daily("03:30"), "2027-02-28T12:00+01:00", "2027-03-01T03:30:00+01:00", id="daily without a leap day"),
    pytest.param(cron("0 3 29 2 *"), "2026-03-01T00:00+01:00", "2028-02-29T03:00:00+01:00", id="cron leap day waits for a leap year"),
    pytest.param(cron("0 3 29 2 *"), "2028-02-29T03:00+01:00", "2032-02-29T03:00:00+01:00", id="cron leap day four years on"),
    pytest.param(cron("30 3 * * 0"), "2026-11-25T12:00+01:00", "2026-11-29T03:30:00+01:00", id="cron sundays"),
    pytest.param(cron("30 3 * * 0"), "2026-11-29T03:30+01:00", "2026-12-06T03:30:00+01:00", id="cron strictly after"),
    # Cron keeps cron's own rule for a gap (the first minute after it), as cronsim and Debian cron do.
    pytest.param(cron("30 2 * * *"), "2026-03-29T00:00+01:00", "2026-03-29T03:00:00+02:00", id="cron berlin gap runs when it ends"),
    pytest.param(cron("30 2 * * *"), "2026-03-29T03:00+02:00", "2026-03-30T02:30:00+02:00", id="cron berlin gap runs once"),
    pytest.param(cron("30 2 * * *"), "2026-10-25T00:00+02:00", "2026-10-25T02:30:00+02:00", id="cron berlin repeated hour first pass"),
    pytest.param(cron("30 2 * * *"), "2026-10-25T02:30+02:00", "2026-10-26T02:30:00+01:00", id="cron berlin repeated hour runs once"),
    pytest.param(cron("30 2 * * *"), "2026-10-25T02:15+01:00", "2026-10-26T02:30:00+01:00", id="cron berlin second pass is not a run"),
    pytest.param(cron("30 2 * * *"), "2026-03-08T00:00-05:00", "2026-03-08T03:00:00-04:00", id="cron new york gap"),
    pytest.param(cron("30 1 * * *"), "2026-11-01T01:30-04:00", "2026-11-02T01:30:00-05:00", id="cron new york repeated hour runs once"),
    pytest.param(cron("0 * * * *"), "2026-10-25T02:00+02:00", "2026-10-25T02:00:00+01:00", id="hourly cron runs in each real hour"),
]
# fmt: on


@pytest.mark.parametrize(("schedule", "after", "expected"), NEXT_RUNS)
def test_next_run(schedule, after, expected):
    zone = NEW_YORK if after.endswith(("-04:00", "-05:00")) else BERLIN
    assert shown(next_run_after(schedule, moment(after, zone))) == expected


def test_no_time_means_04_45_plus_the_jitter():
    jitter = timedelta(minutes=17, seconds=5)
    result = next_run_after(HA_DEFAULT, moment("2026-11-26T00:00+01:00"), jitter=jitter)
    assert shown(result) == "2026-11-26T05:02:05+01:00"


def test_a_set_time_ignores_the_jitter():
    result = next_run_after(daily("03:30"), moment("2026-11-26T00:00+01:00"), jitter=timedelta(minutes=40))
    assert shown(result) == "2026-11-26T03:30:00+01:00"


def test_cron_ignores_the_jitter():
    result = next_run_after(cron("0 3 * * *"), moment("2026-11-26T00:00+01:00"), jitter=timedelta(minutes=40))
    assert shown(result) == "2026-11-26T03:00:00+01:00"


@pytest.mark.parametrize("jitter", [timedelta(minutes=-1), timedelta(minutes=60), timedelta(hours=5)])
def test_a_jitter_outside_the_hour_is_refused(jitter):
    with pytest.raises(ValueError, match="less than 60 minutes"):
        next_run_after(HA_DEFAULT, moment("2026-11-26T00:00+01:00"), jitter=jitter)


def test_the_result_is_in_the_zone_of_the_input():
    result = next_run_after(daily("03:30"), datetime(2026, 11, 26, 12, 0, tzinfo=UTC).astimezone(NEW_YORK))
    assert result is not None
    assert result.tzinfo is NEW_YORK


def test_a_naive_time_is_refused():
    with pytest.raises(ValueError, match="no time zone"):
        next_run_after(daily("03:30"), datetime(2026, 11, 26, 12, 0))


# --- what is due now ---------------------------------------------------------------------------

# fmt: off
DUE_RUNS = [
    pytest.param(daily("03:30"), "2026-11-26T12:00+01:00", None, None, id="first start waits for the next run"),
    pytest.param(cron("0 3 * * *"), "2026-11-26T12:00+01:00", None, None, id="first start with cron"),
    pytest.param(daily("03:30"), "2026-11-26T03:30:01+01:00", "2026-11-25T03:30+01:00", "2026-11-26T03:30:00+01:00", id="run reached"),
    pytest.param(daily("03:30"), "2026-11-26T03:30+01:00", "2026-11-25T03:30+01:00", "2026-11-26T03:30:00+01:00", id="due at the very instant"),
    pytest.param(daily("03:30"), "2026-11-26T03:29+01:00", "2026-11-25T03:30+01:00", None, id="not yet"),
    pytest.param(daily("03:30"), "2026-11-26T03:31+01:00", "2026-11-26T03:30+01:00", None, id="restart right after a handled run"),
    pytest.param(daily("03:30"), "2026-11-26T09:00+01:00", "2026-11-20T03:30+01:00", "2026-11-26T03:30:00+01:00", id="six missed runs give one catch-up"),
    pytest.param(on("mon,wed,fri", "03:30"), "2026-11-29T12:00+01:00", "2026-11-16T03:30+01:00", "2026-11-27T03:30:00+01:00", id="missed weekdays give one catch-up"),
    pytest.param(on("mon", "03:30"), "2026-11-26T12:00+01:00", "2026-11-23T03:30+01:00", None, id="nothing between weekly runs"),
    pytest.param(NEVER, "2026-11-26T12:00+01:00", "2026-11-20T03:30+01:00", None, id="never"),
    pytest.param(daily("02:30"), "2026-03-29T03:31+02:00", "2026-03-28T02:30+01:00", "2026-03-29T03:30:00+02:00", id="gap run is due after the gap"),
    pytest.param(daily("02:30"), "2026-03-29T03:29+02:00", "2026-03-28T02:30+01:00", None, id="gap run is not due early"),
    pytest.param(daily("02:30"), "2026-10-25T02:31+02:00", "2026-10-24T02:30+02:00", "2026-10-25T02:30:00+02:00", id="repeated hour due on first pass"),
    pytest.param(daily("02:30"), "2026-10-25T02:45+01:00", "2026-10-25T02:30+02:00", None, id="repeated hour not due on second pass"),
    pytest.param(daily("01:30"), "2026-11-01T01:45-05:00", "2026-11-01T01:30-04:00", None, id="new york repeated hour runs once"),
    pytest.param(cron("0 3 * * 0"), "2026-11-26T12:00+01:00", "2026-11-01T03:00+01:00", "2026-11-22T03:00:00+01:00", id="cron missed weeks"),
    pytest.param(cron("0 3 29 2 *"), "2028-03-10T12:00+01:00", "2024-02-29T03:00+01:00", "2028-02-29T03:00:00+01:00", id="cron leap day due"),
    pytest.param(cron("0 3 29 2 *"), "2030-06-01T12:00+02:00", "2028-02-29T03:00+01:00", None, id="cron leap day handled"),
]
# fmt: on


@pytest.mark.parametrize(("schedule", "now", "last_handled", "expected"), DUE_RUNS)
def test_due_run(schedule, now, last_handled, expected):
    zone = NEW_YORK if now.endswith(("-04:00", "-05:00")) else BERLIN
    handled = None if last_handled is None else moment(last_handled, zone)
    assert shown(due_run(schedule, moment(now, zone), handled)) == expected


def test_jittered_run_is_due_only_after_its_delay():
    jitter = timedelta(minutes=30)
    handled = moment("2026-11-25T05:15+01:00")
    assert due_run(HA_DEFAULT, moment("2026-11-26T05:00+01:00"), handled, jitter=jitter) is None
    assert (
        shown(due_run(HA_DEFAULT, moment("2026-11-26T05:16+01:00"), handled, jitter=jitter))
        == "2026-11-26T05:15:00+01:00"
    )


def run_service(schedule: Schedule, start: str, days: int, down: tuple[str, str] | None = None) -> list[str]:
    """Ask what is due every five minutes, as the service does, and record each run started."""
    first = moment(start).astimezone(UTC)
    stopped = None if down is None else (moment(down[0]), moment(down[1]))
    handled: datetime | None = None
    runs = []
    for tick in range(days * 24 * 12):
        now = (first + timedelta(minutes=5 * tick)).astimezone(BERLIN)
        if stopped is not None and stopped[0] <= now < stopped[1]:
            continue
        if handled is None:
            handled = now
        slot = due_run(schedule, now, handled)
        if slot is not None:
            handled = slot
            runs.append(slot.isoformat())
    return runs


def test_a_fortnight_across_the_autumn_change_runs_once_a_day():
    runs = run_service(daily("02:30"), "2026-10-18T12:00+02:00", 14)
    assert len(runs) == len(set(runs)) == 14
    assert "2026-10-25T02:30:00+02:00" in runs


def test_a_fortnight_across_the_spring_change_runs_once_a_day():
    runs = run_service(daily("02:30"), "2026-03-22T12:00+01:00", 14)
    assert len(runs) == 14
    assert "2026-03-29T03:30:00+02:00" in runs


def test_a_stop_of_several_days_gives_one_catch_up_at_restart():
    runs = run_service(
        daily("03:30"),
        "2026-11-01T12:00+01:00",
        14,
        down=("2026-11-04T00:00+01:00", "2026-11-09T10:02+01:00"),
    )
    assert runs[1:4] == [
        "2026-11-03T03:30:00+01:00",
        "2026-11-09T03:30:00+01:00",
        "2026-11-10T03:30:00+01:00",
    ]
    assert len(runs) == 14 - 6 + 1


def test_weekday_schedule_runs_only_on_its_days():
    runs = run_service(on("tue,sat", "23:00"), "2026-11-01T12:00+01:00", 14)
    assert [datetime.fromisoformat(run).strftime("%a") for run in runs] == ["Tue", "Sat", "Tue", "Sat"]


# --- properties ------------------------------------------------------------------------------

SCHEDULES = st.one_of(
    st.builds(
        Schedule,
        type=st.just("full"),
        days=st.frozensets(st.integers(0, 6)),
        time=st.none() | st.times() | st.sampled_from([time(2, 30), time(1, 30), time(0, 0), time(23, 59)]),
    ),
    st.sampled_from(
        ["30 2 * * *", "0 3 29 2 *", "15 1 * * 0", "0 * * * *", "45 4 1 * *", "0 3 * * 1-5", "30 1 L * *"]
    ).map(cron),
)
MOMENTS = st.datetimes(
    min_value=datetime(2025, 1, 1),
    max_value=datetime(2032, 12, 31),
    timezones=st.sampled_from([BERLIN, NEW_YORK]),
    allow_imaginary=False,
)
JITTERS = st.integers(0, 3599).map(lambda seconds: timedelta(seconds=seconds))


@settings(max_examples=200, deadline=None)
@given(schedule=SCHEDULES, now=MOMENTS, jitter=JITTERS)
def test_previous_and_next_runs_bracket_now_with_nothing_between(schedule, now, jitter):
    previous = previous_run_at_or_before(schedule, now, jitter=jitter)
    following = next_run_after(schedule, now, jitter=jitter)
    assert previous is not None
    assert following is not None
    assert previous.astimezone(UTC) <= now.astimezone(UTC) < following.astimezone(UTC)
    assert next_run_after(schedule, previous, jitter=jitter) == following
    assert previous_run_at_or_before(schedule, following, jitter=jitter) == following
    assert following.tzinfo is now.tzinfo


@settings(max_examples=200, deadline=None)
@given(schedule=SCHEDULES.filter(lambda s: s.cron is None), now=MOMENTS)
def test_runs_fall_on_the_chosen_weekdays_at_the_chosen_time(schedule, now):
    following = next_run_after(schedule, now)
    assert following is not None
    assert not schedule.days or following.weekday() in schedule.days
    wall = (schedule.time or time(4, 45)).replace(microsecond=0)
    # Only a wall time that does not exist that day may move, and then by the size of the gap.
    if following.time() != wall:
        assert following.dst() != (following - timedelta(hours=2)).dst()


@settings(max_examples=200, deadline=None)
@given(seed=st.text())
def test_jitter_is_stable_and_within_the_hour(seed):
    jitter = jitter_for(seed)
    assert timedelta(0) <= jitter < timedelta(minutes=60)
    assert jitter == jitter_for(seed)
    assert jitter.microseconds == 0


def test_jitter_spreads_installations_over_the_hour():
    jitters = [jitter_for(f"installation-{n}:0") for n in range(500)]
    assert min(jitters) < timedelta(minutes=5)
    assert max(jitters) > timedelta(minutes=55)
    assert len(set(jitters)) > 400


def test_jitter_differs_between_schedules_of_one_installation():
    assert jitter_for("abc123:0") != jitter_for("abc123:1")


# --- a plain daily schedule at a set time ----------------------------------------------------


DAILY_0445 = Schedule(type="full", days=frozenset(), time=parse_time("04:45"))


def test_next_slot_is_later_today_before_the_time():
    assert shown(next_run_after(DAILY_0445, moment("2026-11-26T03:00+01:00"))) == "2026-11-26T04:45:00+01:00"


def test_next_slot_is_tomorrow_at_the_time():
    assert shown(next_run_after(DAILY_0445, moment("2026-11-26T04:45+01:00"))) == "2026-11-27T04:45:00+01:00"


def test_previous_slot_is_yesterday_before_the_time():
    assert (
        shown(previous_run_at_or_before(DAILY_0445, moment("2026-11-26T03:00+01:00")))
        == "2026-11-25T04:45:00+01:00"
    )


def test_due_slot_gives_one_catch_up_and_nothing_on_first_start():
    now = moment("2026-11-26T09:00+01:00")
    assert due_run(DAILY_0445, now, None) is None
    slot = due_run(DAILY_0445, now, moment("2026-11-20T04:45+01:00"))
    assert shown(slot) == "2026-11-26T04:45:00+01:00"
    assert due_run(DAILY_0445, now, slot) is None


def test_slots_work_with_the_fixed_offset_the_service_passes():
    now = datetime(2026, 11, 26, 3, 0, tzinfo=timezone(timedelta(hours=1)))
    assert shown(next_run_after(DAILY_0445, now)) == "2026-11-26T04:45:00+01:00"
