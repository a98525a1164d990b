"""Retention: the user's rules decide what may go; the safety rules make sure a good copy stays."""

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backup_addon.retention import (
    DEFAULT_POLICY,
    CopyFacts,
    Decision,
    RetentionPolicy,
    plan_retention,
)

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
KEEP_ALL_AT_ONCE = {"allow_more": True}


def copy(
    slug: str,
    created_at: datetime,
    *,
    location: str = "nas",
    verified: bool = False,
    pinned: bool = False,
    ours: bool = True,
) -> CopyFacts:
    """A copy; unverified unless said, so the user's rules alone decide (verified copies have their own tests)."""
    return CopyFacts(slug, location, created_at, verified=verified, pinned=pinned, ours=ours)


def daily_backups(last: date, count: int, *, location: str = "nas", hour: int = 3) -> list[CopyFacts]:
    """One backup a day at `hour` UTC, the newest on `last`, slugs named after the date."""
    days = [last - timedelta(days=n) for n in range(count)]
    return [
        copy(day.isoformat(), datetime(day.year, day.month, day.day, hour, tzinfo=UTC), location=location)
        for day in days
    ]


def plan(copies, policy: RetentionPolicy | None, **options):
    policies = {} if policy is None else {"nas": policy}
    settings = {"now": NOW, "last_run_succeeded": True, **options}
    return plan_retention(copies, policies, **settings)


def kept(result, location: str = "nas") -> set[str]:
    return {d.slug for d in result.decisions if d.location == location and not d.delete}


def reasons(result, slug: str, location: str = "nas") -> tuple[str, ...]:
    (decision,) = [d for d in result.decisions if (d.slug, d.location) == (slug, location)]
    return decision.reasons


# --- the user's rules ------------------------------------------------------------------------


def test_keep_last_keeps_the_newest_backups():
    result = plan(daily_backups(date(2026, 3, 4), 5), RetentionPolicy(keep_last=3), **KEEP_ALL_AT_ONCE)
    assert kept(result) == {"2026-03-04", "2026-03-03", "2026-03-02"}
    assert reasons(result, "2026-03-03") == ("kept: one of the last 3",)
    assert reasons(result, "2026-03-01") == ("deleted: older than every rule keeps",)


def test_the_default_policy_keeps_the_last_three():
    assert RetentionPolicy(keep_last=3) == DEFAULT_POLICY
    result = plan(daily_backups(date(2026, 3, 4), 10), DEFAULT_POLICY, **KEEP_ALL_AT_ONCE)
    assert kept(result) == {"2026-03-04", "2026-03-03", "2026-03-02"}
    assert len(result.deletions) == 7


@pytest.mark.parametrize(
    ("age", "is_kept"),
    [
        (timedelta(hours=12), True),
        (timedelta(days=6, hours=23), True),
        (timedelta(days=7), True),
        (timedelta(days=7, minutes=1), False),
        (timedelta(days=30), False),
    ],
)
def test_keep_days_counts_back_from_now(age, is_kept):
    copies = [copy("newest", NOW), copy("other", NOW - age)]
    result = plan(copies, RetentionPolicy(keep_days=7))
    assert ("other" in kept(result)) is is_kept
    if is_kept:
        assert reasons(result, "other") == ("kept: made within the last 7 days",)


def test_gfs_over_400_daily_backups_keeps_exactly_the_expected_set():
    policy = RetentionPolicy(keep_daily=7, keep_weekly=4, keep_monthly=12, keep_yearly=2)
    result = plan(daily_backups(date(2026, 3, 4), 400), policy, **KEEP_ALL_AT_ONCE)
    assert sorted(kept(result)) == [
        "2025-04-30", "2025-05-31", "2025-06-30", "2025-07-31", "2025-08-31", "2025-09-30",
        "2025-10-31", "2025-11-30",  # months
        "2025-12-31",  # month and year
        "2026-01-31",  # month
        "2026-02-15", "2026-02-22",  # Sunday: last day of an ISO week
        "2026-02-26", "2026-02-27",  # days
        "2026-02-28",  # day and month
        "2026-03-01",  # day and week
        "2026-03-02", "2026-03-03",  # days
        "2026-03-04",  # newest: day, week, month, year
    ]  # fmt: skip
    assert reasons(result, "2026-03-04") == (
        "kept: newest of its day, one of the last 7 days with a backup",
        "kept: newest of its week, one of the last 4 weeks with a backup",
        "kept: newest of its month, one of the last 12 months with a backup",
        "kept: newest of its year, one of the last 2 years with a backup",
    )


def test_gfs_counts_periods_that_have_a_backup_not_calendar_periods():
    copies = [copy("mar", datetime(2026, 3, 1, tzinfo=UTC)), copy("jan", datetime(2026, 1, 5, tzinfo=UTC)),
              copy("oct", datetime(2025, 10, 9, tzinfo=UTC)), copy("sep", datetime(2025, 9, 9, tzinfo=UTC))]  # fmt: skip
    result = plan(copies, RetentionPolicy(keep_monthly=3))
    assert kept(result) == {"mar", "jan", "oct"}


def test_gfs_keeps_the_newest_backup_of_a_day():
    copies = [
        copy("evening", datetime(2026, 3, 3, 20, tzinfo=UTC)),
        copy("morning", datetime(2026, 3, 3, 8, tzinfo=UTC)),
    ]
    assert kept(plan(copies, RetentionPolicy(keep_daily=1))) == {"evening"}


@pytest.mark.parametrize(
    ("dates", "expected"),
    [
        pytest.param(
            [date(2026, 1, 2), date(2025, 12, 29), date(2025, 12, 27)],
            {"2026-01-02", "2025-12-27"},
            id="monday 29 december 2025 is in week 1 of 2026",
        ),
        pytest.param(
            [date(2027, 1, 4), date(2027, 1, 3), date(2026, 12, 28)],
            {"2027-01-04", "2027-01-03"},
            id="sunday 3 january 2027 ends week 53 of 2026",
        ),
    ],
)
def test_gfs_weeks_are_iso_weeks_across_the_new_year(dates, expected):
    copies = [copy(day.isoformat(), datetime(day.year, day.month, day.day, 12, tzinfo=UTC)) for day in dates]
    assert (
        kept(plan(copies, RetentionPolicy(keep_weekly=2), now=datetime(2027, 2, 1, tzinfo=UTC))) == expected
    )


@pytest.mark.parametrize(
    ("tz", "expected"),
    [
        pytest.param(UTC, {"next morning", "23:30 utc"}, id="utc: 22:00 and 23:30 are the same day"),
        pytest.param(BERLIN, {"next morning", "22:00 utc"}, id="berlin: 23:30 utc is already the next day"),
    ],
)
def test_gfs_days_begin_at_midnight_in_the_given_zone(tz, expected):
    copies = [
        copy("next morning", datetime(2026, 3, 5, 10, tzinfo=UTC)),
        copy("23:30 utc", datetime(2026, 3, 4, 23, 30, tzinfo=UTC)),
        copy("22:00 utc", datetime(2026, 3, 4, 22, tzinfo=UTC)),
    ]
    result = plan(copies, RetentionPolicy(keep_daily=2), now=datetime(2026, 3, 5, 12, tzinfo=UTC), tz=tz)
    assert kept(result) == expected


def test_rules_combine_so_a_copy_any_rule_keeps_is_kept():
    copies = daily_backups(date(2026, 3, 4), 40)
    result = plan(copies, RetentionPolicy(keep_last=2, keep_monthly=2), **KEEP_ALL_AT_ONCE)
    assert kept(result) == {"2026-03-04", "2026-03-03", "2026-02-28"}
    assert reasons(result, "2026-03-03") == ("kept: one of the last 2",)


# --- what the rules never touch ---------------------------------------------------------------


def test_a_location_without_rules_keeps_everything():
    result = plan(daily_backups(date(2026, 3, 4), 30), None)
    assert result.deletions == ()
    assert reasons(result, "2026-02-10") == ("kept: no retention rules for this location",)


def test_rules_that_are_all_off_keep_everything():
    result = plan(daily_backups(date(2026, 3, 4), 30), RetentionPolicy(include_others=True))
    assert result.deletions == ()
    assert reasons(result, "2026-02-10") == ("kept: every rule here is off, so every backup is kept",)


def test_pinned_backups_are_kept_whatever_their_age():
    copies = [
        *daily_backups(date(2026, 3, 4), 3),
        copy("old favourite", datetime(2020, 1, 1, tzinfo=UTC), pinned=True),
    ]
    result = plan(copies, RetentionPolicy(keep_last=1), **KEEP_ALL_AT_ONCE)
    assert kept(result) == {"2026-03-04", "old favourite"}
    assert reasons(result, "old favourite") == ("kept: pinned",)


def test_backups_made_by_others_are_kept_and_take_no_place_in_the_rules():
    copies = [
        copy("pre-update", datetime(2026, 3, 4, 9, tzinfo=UTC), ours=False),
        *daily_backups(date(2026, 3, 4), 4),
        copy("ha automatic", datetime(2026, 1, 1, tzinfo=UTC), ours=False),
    ]
    result = plan(copies, RetentionPolicy(keep_last=2), **KEEP_ALL_AT_ONCE)
    assert kept(result) == {"pre-update", "2026-03-04", "2026-03-03", "ha automatic"}
    assert reasons(result, "ha automatic") == ("kept: not made by this add-on",)


def test_backups_made_by_others_follow_the_rules_when_included():
    copies = [
        copy("pre-update", datetime(2026, 3, 4, 9, tzinfo=UTC), ours=False),
        *daily_backups(date(2026, 3, 4), 3),
    ]
    result = plan(copies, RetentionPolicy(keep_last=2, include_others=True), **KEEP_ALL_AT_ONCE)
    assert kept(result) == {"pre-update", "2026-03-04"}


# --- the safety rules ---------------------------------------------------------------------------


def test_the_newest_verified_copy_here_is_kept_when_newer_ones_are_unproven():
    copies = [
        copy("unproven 1", datetime(2026, 3, 4, tzinfo=UTC), verified=False),
        copy("unproven 2", datetime(2026, 3, 3, tzinfo=UTC), verified=False),
        copy("proven", datetime(2026, 3, 2, tzinfo=UTC), verified=True),
        copy("older proven", datetime(2026, 3, 1, tzinfo=UTC), verified=True, location="elsewhere"),
        copy("older proven", datetime(2026, 3, 1, tzinfo=UTC), verified=True),
    ]
    result = plan(copies, RetentionPolicy(keep_last=1), **KEEP_ALL_AT_ONCE)
    assert kept(result) == {"unproven 1", "proven"}
    assert reasons(result, "proven") == ("kept: newest verified copy here",)


def test_a_backup_every_location_retires_goes_as_a_whole():
    old = datetime(2026, 3, 1, tzinfo=UTC)
    copies = [
        copy("old", old, location="nas", verified=True),
        copy("old", old, location="s3", verified=True),
        copy("newer", datetime(2026, 3, 4, tzinfo=UTC), location="nas", verified=True),
        copy("newer", datetime(2026, 3, 4, tzinfo=UTC), location="s3", verified=True),
    ]
    policies = {"nas": RetentionPolicy(keep_last=1), "s3": RetentionPolicy(keep_last=1)}
    result = plan_retention(copies, policies, now=NOW, last_run_succeeded=True)
    assert sorted((d.slug, d.location) for d in result.deletions) == [("old", "nas"), ("old", "s3")]


def test_two_locations_cannot_both_delete_the_last_verified_copies_of_a_backup():
    old = datetime(2026, 3, 1, tzinfo=UTC)
    copies = [
        copy("old", old, location="nas", verified=True),
        copy("old", old, location="s3", verified=True),
        copy("newer at nas", datetime(2026, 3, 3, tzinfo=UTC), location="nas", verified=True),
        copy("newer at s3", datetime(2026, 3, 4, tzinfo=UTC), location="s3", verified=True),
        copy("old", old, location="usb"),
        copy("newer at usb", datetime(2026, 3, 4, tzinfo=UTC), location="usb"),
    ]
    policies = {
        "nas": RetentionPolicy(keep_last=1),
        "s3": RetentionPolicy(keep_last=1),
        "usb": RetentionPolicy(keep_last=2),
    }
    result = plan_retention(copies, policies, now=NOW, last_run_succeeded=True)
    # usb keeps "old" (unchecked there), so one checked copy of it must stay too.
    assert [(d.slug, d.location) for d in result.deletions] == [("old", "s3")]
    assert reasons(result, "old", "nas") == ("kept: last verified copy of this backup anywhere",)


def test_deletions_stop_at_the_limit_oldest_first():
    result = plan(daily_backups(date(2026, 3, 4), 8), RetentionPolicy(keep_last=2))
    assert [d.slug for d in result.deletions] == ["2026-02-26", "2026-02-25"]
    assert reasons(result, "2026-02-27") == ("kept: deletion limit of 2 reached for this run",)


def test_the_limit_can_be_set_or_lifted():
    copies = daily_backups(date(2026, 3, 4), 8)
    assert len(plan(copies, RetentionPolicy(keep_last=2), max_deletions=5).deletions) == 5
    assert len(plan(copies, RetentionPolicy(keep_last=2), max_deletions=0).deletions) == 0
    assert len(plan(copies, RetentionPolicy(keep_last=2), max_deletions=0, allow_more=True).deletions) == 6


@pytest.mark.parametrize(
    ("options", "held"),
    [
        pytest.param({"last_run_succeeded": False}, "the last backup failed", id="failed run"),
        pytest.param(
            {"now": datetime(2026, 3, 4, 1, 59, tzinfo=UTC)},
            "the clock looks wrong: the newest backup is dated in the future",
            id="newest backup more than an hour ahead",
        ),
        pytest.param(
            {"previous_now": NOW + timedelta(minutes=1)},
            "the clock looks wrong: it is earlier than at the previous check",
            id="time went back",
        ),
    ],
)
def test_nothing_is_deleted_while_held(options, held):
    result = plan(daily_backups(date(2026, 3, 4), 8), RetentionPolicy(keep_last=2), **options)
    assert result.held == held
    assert result.deletions == ()
    assert reasons(result, "2026-02-25") == (
        f"kept: nothing is deleted because {held}",
        "would be deleted: older than every rule keeps",
    )


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"now": datetime(2026, 3, 4, 2, 30, tzinfo=UTC)}, id="newest backup half an hour ahead"),
        pytest.param({"previous_now": NOW}, id="same time as the previous check"),
        pytest.param({"previous_now": NOW - timedelta(days=1)}, id="a day after the previous check"),
    ],
)
def test_small_clock_differences_do_not_hold_pruning(options):
    result = plan(daily_backups(date(2026, 3, 4), 8), RetentionPolicy(keep_last=2), **options)
    assert result.held is None
    assert len(result.deletions) == 2


def test_a_copy_listed_twice_is_refused():
    twice = copy("a", NOW)
    with pytest.raises(ValueError, match="listed twice"):
        plan([twice, twice], DEFAULT_POLICY)


def test_a_time_without_zone_is_refused():
    with pytest.raises(ValueError, match="no time zone"):
        plan([copy("a", datetime(2026, 3, 4))], DEFAULT_POLICY)


def test_negative_counts_are_refused():
    with pytest.raises(ValueError, match="keep_last must be 0 or more"):
        RetentionPolicy(keep_last=-1)


def test_no_copies_give_an_empty_plan():
    assert plan([], DEFAULT_POLICY) == plan_retention([], {}, now=NOW, last_run_succeeded=True)
    assert plan([], DEFAULT_POLICY).decisions == ()


# --- properties over random histories ---------------------------------------------------------

LOCATIONS = ("nas", "s3", "usb")
START = datetime(2025, 1, 1, tzinfo=UTC)
COUNTS = st.just(0) | st.integers(1, 4)
POLICIES = st.builds(
    RetentionPolicy,
    keep_last=COUNTS,
    keep_days=st.just(0) | st.integers(1, 30),
    keep_daily=COUNTS,
    keep_weekly=COUNTS,
    keep_monthly=COUNTS,
    keep_yearly=COUNTS,
    include_others=st.booleans(),
)
MOSTLY_FALSE = st.integers(0, 4).map(lambda n: n == 0)


# One copy's flags packed in one number (fast to draw): verified 1 in 2, not ours 1 in 5, pinned 1 in 5;
# 0, which hypothesis tries most, is the copy most open to deletion.
FLAGS = st.integers(0, 49)
BACKUPS = st.lists(
    st.tuples(
        st.integers(0, 24 * 120),
        st.sampled_from([UTC, BERLIN]),
        st.lists(FLAGS, min_size=3, max_size=3),
        st.integers(1, 7),
    ),
    max_size=30,
)


@st.composite
def histories(draw):
    """Backups at random (sometimes equal) times, each copied to some locations with random flags."""
    copies = []
    for n, (hours, zone, flags, where) in enumerate(draw(BACKUPS)):
        created_at = (START + timedelta(hours=hours)).astimezone(zone)
        for index, location in enumerate(LOCATIONS):
            if where & (1 << index):
                flag = flags[index]
                verified, ours, pinned = flag % 2 == 1, flag // 2 % 5 != 4, flag // 10 == 4
                copies.append(
                    CopyFacts(
                        f"backup-{n:02d}", location, created_at, verified=verified, pinned=pinned, ours=ours
                    )
                )
    return copies


@st.composite
def scenarios(draw):
    """A history, rules for most locations, and a planning time that usually allows deletions."""
    copies = draw(histories())
    newest = max((c.created_at for c in copies), default=START)
    now = newest + timedelta(hours=draw(st.integers(0, 24 * 10)))
    options = {
        "now": now,
        "last_run_succeeded": draw(st.sampled_from([True, True, True, False])),
        "previous_now": draw(st.none() | st.integers(0, 48).map(lambda h: now - timedelta(hours=h))),
        "max_deletions": draw(st.integers(0, 6)),
        "allow_more": draw(st.booleans()),
        "tz": draw(st.sampled_from([UTC, BERLIN, ZoneInfo("America/New_York")])),
    }
    policies = {}
    for location in LOCATIONS:
        if draw(st.integers(0, 3)) != 3:
            policies[location] = draw(POLICIES)
    return copies, policies, options


def decide(scenario) -> dict[tuple[str, str], Decision]:
    copies, policies, options = scenario
    result = plan_retention(copies, policies, **options)
    return {(d.slug, d.location): d for d in result.decisions}


def deleted(decisions, c: CopyFacts) -> bool:
    return decisions[(c.slug, c.location)].delete


PROPERTY = settings(max_examples=200, deadline=None)


@PROPERTY
@given(scenarios())
def test_every_copy_gets_exactly_one_decision_with_reasons(scenario):
    copies, policies, options = scenario
    result = plan_retention(copies, policies, **options)
    assert sorted((d.slug, d.location) for d in result.decisions) == sorted(
        (c.slug, c.location) for c in copies
    )
    for decision in result.decisions:
        assert decision.reasons
        if decision.delete:
            assert decision.reasons == ("deleted: older than every rule keeps",)
        else:
            assert decision.reasons[0].startswith("kept: ")


@PROPERTY
@given(scenarios())
def test_a_locations_newest_verified_copy_is_never_deleted(scenario):
    decisions = decide(scenario)
    for location in LOCATIONS:
        verified = [c for c in scenario[0] if c.location == location and c.verified]
        if verified:
            newest = max(c.created_at for c in verified)
            assert any(not deleted(decisions, c) for c in verified if c.created_at == newest)


@PROPERTY
@given(scenarios())
def test_a_kept_backup_always_keeps_a_verified_copy(scenario):
    decisions = decide(scenario)
    for slug in {c.slug for c in scenario[0]}:
        same = [c for c in scenario[0] if c.slug == slug]
        verified = [c for c in same if c.verified]
        if verified and any(not deleted(decisions, c) for c in same):
            assert any(not deleted(decisions, c) for c in verified)


@PROPERTY
@given(scenarios())
def test_nothing_is_deleted_after_a_failed_run(scenario):
    copies, policies, options = scenario
    result = plan_retention(copies, policies, **{**options, "last_run_succeeded": False})
    assert result.deletions == ()
    assert result.held == "the last backup failed"


@PROPERTY
@given(scenarios(), st.integers(61, 60 * 24 * 400))
def test_nothing_is_deleted_when_the_newest_backup_is_from_the_future(scenario, minutes_ahead):
    copies, policies, options = scenario
    if copies:
        newest = max(c.created_at for c in copies)
        options = {**options, "last_run_succeeded": True, "now": newest - timedelta(minutes=minutes_ahead)}
        result = plan_retention(copies, policies, **options)
        assert result.deletions == ()
        assert result.held is not None
        assert result.held.startswith("the clock looks wrong")


@PROPERTY
@given(scenarios(), st.integers(1, 10**6))
def test_nothing_is_deleted_when_time_went_back(scenario, seconds_back):
    copies, policies, options = scenario
    previous_now = options["now"] + timedelta(seconds=seconds_back)
    result = plan_retention(copies, policies, **{**options, "previous_now": previous_now})
    assert result.deletions == ()
    assert result.held is not None


@PROPERTY
@given(scenarios())
def test_deletions_stay_within_the_limit_and_are_the_oldest(scenario):
    copies, policies, options = scenario
    result = plan_retention(copies, policies, **{**options, "allow_more": False})
    for location in {c.location for c in copies}:
        assert len([d for d in result.deletions if d.location == location]) <= options["max_deletions"]
    by_key = {(c.slug, c.location): c for c in copies}
    for location in {c.location for c in copies}:
        deleted_ages = [by_key[(d.slug, d.location)].created_at for d in result.deletions if d.location == location]
        limited_ages = [
            by_key[(d.slug, d.location)].created_at
            for d in result.decisions
            if d.location == location
            and any(reason.startswith("kept: deletion limit") for reason in d.reasons)
            and len(d.reasons) == 1
        ]
        if deleted_ages and limited_ages:
            assert max(deleted_ages) <= min(limited_ages)


@PROPERTY
@given(scenarios())
def test_lifting_the_limit_only_adds_deletions(scenario):
    copies, policies, options = scenario
    limited = plan_retention(copies, policies, **{**options, "allow_more": False})
    unlimited = plan_retention(copies, policies, **{**options, "allow_more": True})
    assert set(limited.deletions) <= set(unlimited.deletions)


@PROPERTY
@given(scenarios())
def test_only_our_copies_are_deleted_unless_others_are_included(scenario):
    decisions = decide(scenario)
    for c in scenario[0]:
        if deleted(decisions, c):
            assert c.ours or scenario[1][c.location].include_others


@PROPERTY
@given(scenarios())
def test_pinned_copies_are_never_deleted(scenario):
    decisions = decide(scenario)
    assert not any(deleted(decisions, c) for c in scenario[0] if c.pinned)


@PROPERTY
@given(scenarios())
def test_a_location_without_a_policy_keeps_everything(scenario):
    decisions = decide(scenario)
    assert not any(deleted(decisions, c) for c in scenario[0] if c.location not in scenario[1])


@PROPERTY
@given(scenarios(), st.randoms(use_true_random=False))
def test_the_plan_does_not_depend_on_the_order_of_the_copies(scenario, rng: random.Random):
    copies, policies, options = scenario
    shuffled = list(copies)
    rng.shuffle(shuffled)
    assert plan_retention(shuffled, policies, **options) == plan_retention(copies, policies, **options)
