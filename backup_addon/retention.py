"""Which backup copies each location keeps, and which it deletes. Pure; no I/O.

A copy is kept if ANY rule keeps it (restic's semantics). Safety rules come on top of the
user's rules and cannot be switched off: a location's newest verified copy and a backup's
last verified copy anywhere are never deleted, pinned copies are never deleted, and nothing
is deleted after a failed run or while the clock looks wrong.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

# Clocks drift and backups are stamped by another machine; an hour ahead is still believable.
CLOCK_TOLERANCE = timedelta(hours=1)
DELETED = "deleted: older than every rule keeps"

type _Key = tuple[str, str]
type _Period = Callable[[datetime], Hashable]


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """One location's rules; a count of 0 switches a rule off, all 0 keeps everything."""

    keep_last: int = 0
    keep_days: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    include_others: bool = False

    def __post_init__(self) -> None:
        for name, value in self._counts():
            if value < 0:
                raise ValueError(f"{name} must be 0 or more, not {value}")

    @property
    def keeps_everything(self) -> bool:
        """True when no rule is on, which keeps every backup at the location."""
        return not any(value for _, value in self._counts())

    def _counts(self) -> tuple[tuple[str, int], ...]:
        return (
            ("keep_last", self.keep_last),
            ("keep_days", self.keep_days),
            ("keep_daily", self.keep_daily),
            ("keep_weekly", self.keep_weekly),
            ("keep_monthly", self.keep_monthly),
            ("keep_yearly", self.keep_yearly),
        )


DEFAULT_POLICY = RetentionPolicy(keep_last=3)


@dataclass(frozen=True, slots=True)
class CopyFacts:
    """What the planner knows about one backup's copy at one location."""

    slug: str
    location: str
    created_at: datetime
    verified: bool
    pinned: bool
    ours: bool


@dataclass(frozen=True, slots=True)
class Decision:
    """Keep or delete one copy, with the reasons in words a user can read."""

    slug: str
    location: str
    delete: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RetentionPlan:
    """One decision per copy; when `held` says why, nothing is deleted."""

    decisions: tuple[Decision, ...]
    held: str | None

    @property
    def deletions(self) -> tuple[Decision, ...]:
        """The decisions that delete a copy."""
        return tuple(decision for decision in self.decisions if decision.delete)


def plan_retention(
    copies: Sequence[CopyFacts],
    policies: Mapping[str, RetentionPolicy],
    *,
    now: datetime,
    last_run_succeeded: bool,
    previous_now: datetime | None = None,
    max_deletions: int = 2,
    allow_more: bool = False,
    tz: tzinfo = UTC,
) -> RetentionPlan:
    """Decide every copy's fate; `tz` is the zone in which GFS days, weeks, months and years begin."""
    _check_inputs(copies, now, previous_now, max_deletions)
    keeps: dict[_Key, list[str]] = {}
    for location, here in _by_location(copies).items():
        keeps.update(_location_keeps(here, policies.get(location), now, tz))
    _keep_last_verified_anywhere(copies, keeps)
    if not allow_more:
        _keep_beyond_limit(copies, keeps, max_deletions)
        # The limit may keep an unverified copy of a backup whose verified ones it lets go.
        _keep_last_verified_anywhere(copies, keeps)
    held = _hold_reason(copies, now=now, previous_now=previous_now, last_run_succeeded=last_run_succeeded)
    return RetentionPlan(tuple(_decide(copy, keeps[_key(copy)], held) for copy in _ordered(copies)), held)


def _check_inputs(
    copies: Sequence[CopyFacts], now: datetime, previous_now: datetime | None, max_deletions: int
) -> None:
    for moment in (now, previous_now, *(copy.created_at for copy in copies)):
        if moment is not None and moment.utcoffset() is None:
            raise ValueError(f"{moment.isoformat()} has no time zone")
    if max_deletions < 0:
        raise ValueError(f"max_deletions must be 0 or more, not {max_deletions}")
    seen: set[_Key] = set()
    for copy in copies:
        if _key(copy) in seen:
            raise ValueError(f"backup {copy.slug} is listed twice at {copy.location}")
        seen.add(_key(copy))


def _location_keeps(
    here: list[CopyFacts], policy: RetentionPolicy | None, now: datetime, tz: tzinfo
) -> dict[_Key, list[str]]:
    """Why each copy at one location is kept; an empty list means no rule keeps it."""
    if policy is None:
        return {_key(copy): ["kept: no retention rules for this location"] for copy in here}
    if policy.keeps_everything:
        return {_key(copy): ["kept: every rule here is off, so every backup is kept"] for copy in here}
    keeps: dict[_Key, list[str]] = {_key(copy): [] for copy in here}
    for copy in here:
        if not (copy.ours or policy.include_others):
            keeps[_key(copy)].append("kept: not made by this add-on")
        if copy.pinned:
            keeps[_key(copy)].append("kept: pinned")
    # Others' backups neither count towards nor take a place in the rules unless the user opted in.
    ruled = [copy for copy in here if copy.ours or policy.include_others]
    for copy, reason in _rule_keeps(ruled, policy, now, tz):
        keeps[_key(copy)].append(reason)
    newest_verified = next((copy for copy in here if copy.verified), None)
    if newest_verified is not None:
        keeps[_key(newest_verified)].append("kept: newest verified copy here")
    return keeps


def _rule_keeps(
    newest_first: list[CopyFacts], policy: RetentionPolicy, now: datetime, tz: tzinfo
) -> Iterable[tuple[CopyFacts, str]]:
    """Each copy a user rule keeps, with that rule's reason."""
    if policy.keep_last:
        reason = (
            "kept: the newest backup"
            if policy.keep_last == 1
            else f"kept: one of the last {policy.keep_last}"
        )
        yield from ((copy, reason) for copy in newest_first[: policy.keep_last])
    if policy.keep_days:
        since = _utc(now) - timedelta(days=policy.keep_days)
        reason = f"kept: made within the last {_count(policy.keep_days, 'day')}"
        yield from ((copy, reason) for copy in newest_first if _utc(copy.created_at) >= since)
    periods: tuple[tuple[int, str, _Period], ...] = (
        (policy.keep_daily, "day", lambda moment: moment.date()),
        (policy.keep_weekly, "week", lambda moment: moment.isocalendar()[:2]),
        (policy.keep_monthly, "month", lambda moment: (moment.year, moment.month)),
        (policy.keep_yearly, "year", lambda moment: moment.year),
    )
    for count, unit, period in periods:
        if count:
            reason = (
                f"kept: newest of the latest {unit} with a backup"
                if count == 1
                else f"kept: newest of its {unit}, one of the last {count} {unit}s with a backup"
            )
            yield from ((copy, reason) for copy in _newest_per_period(newest_first, count, period, tz))


def _newest_per_period(
    newest_first: list[CopyFacts], count: int, period: _Period, tz: tzinfo
) -> list[CopyFacts]:
    """The newest copy of each of the last `count` periods that have one (GFS, as restic counts)."""
    kept: list[CopyFacts] = []
    seen: set[Hashable] = set()
    for copy in newest_first:
        if len(kept) == count:
            break
        bucket = period(copy.created_at.astimezone(tz))
        if bucket not in seen:
            seen.add(bucket)
            kept.append(copy)
    return kept


def _keep_last_verified_anywhere(copies: Sequence[CopyFacts], keeps: dict[_Key, list[str]]) -> None:
    """Rescue one verified copy of every kept backup whose verified copies would all be deleted.

    A backup that every location retires goes as a whole; one that stays anywhere must not be
    left with only copies nobody has checked.
    """
    verified: dict[str, list[CopyFacts]] = defaultdict(list)
    survives: set[str] = set()
    for copy in copies:
        if copy.verified:
            verified[copy.slug].append(copy)
        if keeps[_key(copy)]:
            survives.add(copy.slug)
    for slug, same_backup in verified.items():
        # Looked at across all locations at once, so two locations cannot each delete "the other" copy.
        if slug in survives and all(not keeps[_key(copy)] for copy in same_backup):
            rescued = min(same_backup, key=lambda copy: copy.location)
            keeps[_key(rescued)].append("kept: last verified copy of this backup anywhere")


def _keep_beyond_limit(copies: Sequence[CopyFacts], keeps: dict[_Key, list[str]], max_deletions: int) -> None:
    """Keep all but the oldest `max_deletions` deletions per location, so a wrong rule cannot empty one in a run."""
    for here in _by_location(copies).values():
        doomed = sorted((copy for copy in here if not keeps[_key(copy)]), key=_age_order)
        for copy in doomed[max_deletions:]:
            keeps[_key(copy)].append(f"kept: deletion limit of {max_deletions} reached for this run")


def _hold_reason(
    copies: Sequence[CopyFacts], *, now: datetime, previous_now: datetime | None, last_run_succeeded: bool
) -> str | None:
    """Why nothing may be deleted in this run, or None."""
    if not last_run_succeeded:
        return "the last backup failed"
    newest = max((_utc(copy.created_at) for copy in copies), default=None)
    if newest is not None and newest - _utc(now) > CLOCK_TOLERANCE:
        return "the clock looks wrong: the newest backup is dated in the future"
    if previous_now is not None and _utc(previous_now) > _utc(now):
        return "the clock looks wrong: it is earlier than at the previous check"
    return None


def _decide(copy: CopyFacts, keeps: list[str], held: str | None) -> Decision:
    if keeps:
        return Decision(copy.slug, copy.location, delete=False, reasons=tuple(keeps))
    if held is not None:
        reasons = (f"kept: nothing is deleted because {held}", f"would be {DELETED}")
        return Decision(copy.slug, copy.location, delete=False, reasons=reasons)
    return Decision(copy.slug, copy.location, delete=True, reasons=(DELETED,))


def _by_location(copies: Sequence[CopyFacts]) -> dict[str, list[CopyFacts]]:
    """Copies grouped by location, newest first."""
    grouped: dict[str, list[CopyFacts]] = defaultdict(list)
    for copy in _ordered(copies):
        grouped[copy.location].append(copy)
    return grouped


def _ordered(copies: Sequence[CopyFacts]) -> list[CopyFacts]:
    """By location, then newest first; the slug breaks ties so the input order never matters."""
    by_slug = sorted(copies, key=lambda copy: copy.slug)
    newest_first = sorted(by_slug, key=lambda copy: _utc(copy.created_at), reverse=True)
    return sorted(newest_first, key=lambda copy: copy.location)


def _age_order(copy: CopyFacts) -> tuple[datetime, str, str]:
    return _utc(copy.created_at), copy.slug, copy.location


def _key(copy: CopyFacts) -> _Key:
    return copy.slug, copy.location


def _count(number: int, unit: str) -> str:
    return unit if number == 1 else f"{number} {unit}s"


def _utc(moment: datetime) -> datetime:
    # Aware datetimes sharing one tzinfo compare and subtract by wall time; UTC does not.
    return moment.astimezone(UTC)
