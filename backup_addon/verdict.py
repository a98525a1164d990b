"""The 3-2-1 verdict: is there a recent backup with 3 proven copies, on 2 kinds of storage, 1 away?

A pure function over plain facts, so it can be tested exhaustively. The rules, exactly:

- A copy *counts* when it is good (it exists and no check found it damaged) and its proof level
  is at least `min_level` (1, CHECKED: the location confirmed its size or checksum).
- The verdict looks at one backup: the newest one with at least one copy that counts (the
  *newest proven backup*). Newer backups without a counting copy are ignored.
- `copies` is the number of distinct locations holding a counting copy of it, `media` the
  number of distinct media labels among those locations, `offsite` the number of those
  locations that are off-site. (Should the facts list a location twice, its best-proven copy
  speaks for it.)
- With `max_age`, the verdict is `stale` when there is no proven backup younger than it
  (none at all included); without it, never.
- `met` when the counts reach the rule (3, 2 and 1 by default) and it is not stale. `missing`
  holds one sentence for every shortfall, in that order; `met` is exactly "nothing missing".
- `last_offsite_proven_at` is the latest `proven_at` of any counting off-site copy of any
  backup; `last_offsite_backup_at` is when the newest backup with such a copy was made.

Dates in sentences use the time zone of `now`: a weekday and date within the last 7 days
("Tuesday 24 November"), a date otherwise ("3 November", with the year if it is not this one).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

__all__ = ["BackupFacts", "CopyProof", "Verdict", "describe_day", "evaluate_321"]

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True, slots=True)
class CopyProof:
    """What is known about one copy of a backup."""

    location: str
    media: str  # what kind of storage holds it, e.g. "this device", "nas", "s3:bucket"
    offsite: bool
    good: bool
    level: int  # a ProofLevel: 0 written, 1 checked, 2 scrubbed, 3 drilled
    proven_at: datetime | None


class BackupFacts(NamedTuple):
    """One backup and its copies; a plain (slug, name, created_at, copies) tuple works too."""

    slug: str
    name: str
    created_at: datetime
    copies: Sequence[CopyProof]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The 3-2-1 verdict over the newest proven backup."""

    met: bool
    copies: int
    media: int
    offsite: int
    stale: bool
    missing: list[str]
    summary: str
    newest_slug: str | None
    newest_at: datetime | None
    last_offsite_proven_at: datetime | None
    newest_name: str | None = None
    last_offsite_backup_at: datetime | None = None
    locations: list[str] = field(default_factory=list)  # where the counted copies are


def evaluate_321(
    backups: Iterable[tuple[str, str, datetime, Sequence[CopyProof]]],
    *,
    now: datetime,
    max_age: timedelta | None,
    copies: int = 3,
    media: int = 2,
    offsite: int = 1,
    min_level: int = 1,
) -> Verdict:
    """Judge the backups (any order) against the rule: `copies` copies, `media` kinds, `offsite` away."""
    facts = [BackupFacts(*backup) for backup in backups]
    counting = {b.slug: [c for c in b.copies if c.good and c.level >= min_level] for b in facts}
    proven = [b for b in facts if counting[b.slug]]
    newest = max(proven, key=lambda b: b.created_at, default=None)
    newest_overall = max(facts, key=lambda b: b.created_at, default=None)

    offsite_copies = [(b, c) for b in facts for c in counting[b.slug] if c.offsite]
    proven_times = [c.proven_at for _, c in offsite_copies if c.proven_at is not None]
    last_offsite_proven_at = max(proven_times, default=None)
    last_offsite_backup_at = max((b.created_at for b, _ in offsite_copies), default=None)

    held = _one_per_location(counting[newest.slug]) if newest is not None else []
    locations = sorted(c.location for c in held)
    count = len(held)
    kinds = len({c.media for c in held})
    away = sum(1 for c in held if c.offsite)
    stale = max_age is not None and (newest is None or now - newest.created_at >= max_age)

    missing: list[str] = []
    if newest is None:
        missing.append("no backup yet" if not facts else "no backup has a proven copy yet")
    else:
        if newest_overall is not None and newest_overall.created_at > newest.created_at:
            subject = f"the newest proven backup (from {describe_day(newest.created_at, now)})"
        else:
            subject = "the newest backup"
        if count < copies:
            verb = "copy" if count == 1 else "copies"
            be = "is" if count == 1 else "are"
            missing.append(f"only {count} {verb} of {subject} {be} proven; {copies} are needed")
        if kinds < media:
            missing.append(
                f"the proven copies of {subject} are on only {_kinds(kinds)}; {media} kinds are needed"
            )
        if away < offsite:
            if away == 0:
                since = (
                    "yet"
                    if last_offsite_backup_at is None
                    else f"since {describe_day(last_offsite_backup_at, now)}"
                )
                missing.append(f"no verified off-site copy {since}")
            else:
                verb = "copy" if away == 1 else "copies"
                be = "is" if away == 1 else "are"
                missing.append(f"only {away} off-site {verb} of {subject} {be} proven; {offsite} are needed")
        if stale and max_age is not None:
            missing.append(
                f"the newest proven backup is from {describe_day(newest.created_at, now)}; "
                f"it should be less than {_duration(max_age)} old"
            )

    if missing:
        summary = "3-2-1 not met: " + "; ".join(missing)
    else:
        summary = (
            f"3-2-1 met: {count} proven copies on {_kinds(kinds)}, {away} off-site "
            f"(newest proven backup: {describe_day(newest.created_at, now) if newest else 'none'})"
        )
    return Verdict(
        met=not missing,
        copies=count,
        media=kinds,
        offsite=away,
        stale=stale,
        missing=missing,
        summary=summary,
        newest_slug=None if newest is None else newest.slug,
        newest_at=None if newest is None else newest.created_at,
        last_offsite_proven_at=last_offsite_proven_at,
        newest_name=None if newest is None else newest.name,
        last_offsite_backup_at=last_offsite_backup_at,
        locations=locations,
    )


def _one_per_location(copies: Sequence[CopyProof]) -> list[CopyProof]:
    """A location holds one copy of a backup; should the facts repeat it, keep the best proven."""
    best: dict[str, CopyProof] = {}
    for proof in sorted(copies, key=_strength):
        best[proof.location] = proof
    return list(best.values())


def _strength(proof: CopyProof) -> tuple[int, float, str, bool]:
    proven = proof.proven_at.timestamp() if proof.proven_at is not None else float("-inf")
    return (proof.level, proven, proof.media, proof.offsite)


def describe_day(when: datetime, now: datetime) -> str:
    """ "Tuesday 24 November" within the last 7 days, "3 November" (or "3 November 2025") before."""
    local = when.astimezone(now.tzinfo) if when.tzinfo is not None and now.tzinfo is not None else when
    days = (now.date() - local.date()).days
    if days < 7:
        return f"{WEEKDAYS[local.weekday()]} {local.day} {MONTHS[local.month - 1]}"
    if local.year == now.year:
        return f"{local.day} {MONTHS[local.month - 1]}"
    return f"{local.day} {MONTHS[local.month - 1]} {local.year}"


def _kinds(count: int) -> str:
    word = NUMBERS[count] if count < len(NUMBERS) else str(count)
    return f"{word} kind of storage" if count == 1 else f"{word} kinds of storage"


def _duration(span: timedelta) -> str:
    """A limit in words: "2 days", "36 hours", "90 minutes"."""
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    hours = seconds / 3600
    return f"{hours:.1f} hours"
