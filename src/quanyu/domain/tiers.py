"""Tiers: qualification, immediate upgrade, downgrade at review after grace, projection.

A program measures each member by one metric over a rolling window (365 days by
default): qualifying spend (paid amount net of refunds) or qualifying points (points
earned net of clawbacks). Crossing a higher tier's threshold upgrades at once. A
member is only moved down at a review (the anniversary of reaching the tier, or a
fixed date each year) once ``grace_days`` have passed after it, and at most
``max_downgrade_levels`` at a time. Refunds lower the metric but never downgrade by
themselves.
"""

from __future__ import annotations

import calendar
import enum
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from quanyu.domain.errors import ValidationFailed


class TierMetric(enum.StrEnum):
    SPEND = "spend"
    POINTS = "points"


class ReviewKind(enum.StrEnum):
    ANNIVERSARY = "anniversary"
    FIXED_DATE = "fixed_date"


@dataclass(frozen=True)
class Tier:
    code: str
    name: str
    rank: int
    threshold: int


@dataclass(frozen=True)
class TierPolicy:
    metric: TierMetric
    tiers: tuple[Tier, ...]  # any order; the lowest rank is the entry tier
    review: ReviewKind = ReviewKind.ANNIVERSARY
    fixed_month: int = 1
    fixed_day: int = 1
    grace_days: int = 0
    max_downgrade_levels: int = 1
    window_days: int = 365

    def __post_init__(self) -> None:
        if not self.tiers:
            raise ValidationFailed("a program needs at least one tier", field="tiers")
        ranks = [t.rank for t in self.tiers]
        if len(set(ranks)) != len(ranks):
            raise ValidationFailed("tier ranks must be unique", field="tiers")
        ordered = sorted(self.tiers, key=lambda t: t.rank)
        if any(a.threshold > b.threshold for a, b in itertools.pairwise(ordered)):
            raise ValidationFailed("a higher tier cannot have a lower threshold", field="tiers")
        codes = [t.code for t in self.tiers]
        if len(set(codes)) != len(codes):
            raise ValidationFailed("tier codes must be unique", field="tiers")
        if self.max_downgrade_levels < 1:
            raise ValidationFailed("must be at least 1", field="max_downgrade_levels")
        if self.grace_days < 0:
            raise ValidationFailed("cannot be negative", field="grace_days")
        if self.window_days < 1:
            raise ValidationFailed("must be at least 1", field="window_days")
        try:
            date(2000, self.fixed_month, self.fixed_day)  # a leap year admits every review day
        except ValueError as exc:
            raise ValidationFailed(
                f"{self.fixed_month}-{self.fixed_day} is not a day of the year", field="fixed_day"
            ) from exc

    @property
    def ladder(self) -> list[Tier]:
        return sorted(self.tiers, key=lambda t: t.rank)

    def by_code(self, code: str | None) -> Tier:
        for tier in self.tiers:
            if tier.code == code:
                return tier
        return self.ladder[0]


def qualifying_value(
    contributions: Iterable[tuple[date, int]], as_of: date, window_days: int
) -> int:
    """Sum of contributions dated in (as_of - window, as_of]."""
    start = as_of - timedelta(days=window_days)
    return sum(amount for day, amount in contributions if start < day <= as_of)


def deserved_tier(policy: TierPolicy, value: int) -> Tier:
    best = policy.ladder[0]
    for tier in policy.ladder:
        if value >= tier.threshold:
            best = tier
    return best


def upgrade_for(policy: TierPolicy, current: str | None, value: int) -> Tier | None:
    """The tier to move up to now, or None when the member stays."""
    target = deserved_tier(policy, value)
    return target if target.rank > policy.by_code(current).rank else None


def _safe_date(year: int, month: int, day: int) -> date:
    """The date, with 29 February falling on the 28th in a common year."""
    if month == 2 and day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return date(year, month, day)


def next_review(policy: TierPolicy, *, achieved_on: date, after: date) -> date:
    """The first review date strictly after ``after``.

    Anniversary: the next anniversary of ``achieved_on``. Fixed date: the first fixed
    date at least a year after ``achieved_on``, so a tier reached on 30 December is kept
    for a full year, not reviewed two days later.
    """
    if policy.review is ReviewKind.ANNIVERSARY:
        year = max(after.year, achieved_on.year + 1)
        candidate = _safe_date(year, achieved_on.month, achieved_on.day)
        while candidate <= after or candidate <= achieved_on:
            year += 1
            candidate = _safe_date(year, achieved_on.month, achieved_on.day)
        return candidate
    year_on = _safe_date(achieved_on.year + 1, achieved_on.month, achieved_on.day)
    year = after.year
    candidate = _safe_date(year, policy.fixed_month, policy.fixed_day)
    while candidate <= after or candidate < year_on:
        year += 1
        candidate = _safe_date(year, policy.fixed_month, policy.fixed_day)
    return candidate


def review_due(policy: TierPolicy, review_on: date, today: date) -> bool:
    return today >= review_on + timedelta(days=policy.grace_days)


def tier_after_review(policy: TierPolicy, current: str | None, value: int) -> Tier:
    """Keep the tier if still qualified, else step down (at most max_downgrade_levels)."""
    now = policy.by_code(current)
    deserved = deserved_tier(policy, value)
    if deserved.rank >= now.rank:
        return deserved
    ladder = policy.ladder
    index = ladder.index(now)
    floor_index = max(index - policy.max_downgrade_levels, 0)
    candidates = [t for t in ladder[floor_index:index] if t.rank >= deserved.rank]
    return candidates[0] if candidates else deserved


@dataclass(frozen=True)
class Projection:
    tier: Tier
    by: date
    qualifying_at_date: int
    needed: int  # in the program's metric (minor currency units, or points)
    reached: bool


def project(
    policy: TierPolicy,
    *,
    contributions: Sequence[tuple[date, int]],
    by: date,
) -> list[Projection]:
    """For every tier: how much more is needed by ``by`` to reach or keep it.

    What counts at ``by`` is what is already recorded and still inside the window then.
    """
    value = qualifying_value(contributions, by, policy.window_days)
    return [
        Projection(
            tier=tier,
            by=by,
            qualifying_at_date=value,
            needed=max(tier.threshold - value, 0),
            reached=value >= tier.threshold,
        )
        for tier in policy.ladder
    ]
