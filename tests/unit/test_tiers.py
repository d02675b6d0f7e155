"""Tier rules: qualification, upgrades, review dates, downgrades and projection."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quanyu.domain.errors import ValidationFailed
from quanyu.domain.tiers import (
    ReviewKind,
    Tier,
    TierMetric,
    TierPolicy,
    deserved_tier,
    next_review,
    project,
    qualifying_value,
    review_due,
    tier_after_review,
    upgrade_for,
)

MEMBER = Tier("member", "Member", 0, 0)
SILVER = Tier("silver", "Silver", 1, 1_000)
GOLD = Tier("gold", "Gold", 2, 5_000)
PLATINUM = Tier("platinum", "Platinum", 3, 20_000)


BASE = TierPolicy(metric=TierMetric.SPEND, tiers=(GOLD, MEMBER, PLATINUM, SILVER))


def policy(**changes: Any) -> TierPolicy:
    return replace(BASE, **changes)


# ----- policy


def test_policy_needs_at_least_one_tier() -> None:
    with pytest.raises(ValidationFailed) as err:
        policy(tiers=())
    assert err.value.field == "tiers"


def test_policy_rejects_two_tiers_with_the_same_rank() -> None:
    with pytest.raises(ValidationFailed, match="unique"):
        policy(tiers=(MEMBER, Tier("other", "Other", 0, 10)))


def test_policy_rejects_a_higher_tier_with_a_lower_threshold() -> None:
    with pytest.raises(ValidationFailed, match="lower threshold"):
        policy(tiers=(MEMBER, Tier("silver", "Silver", 1, 5_000), Tier("gold", "Gold", 2, 10)))


def test_policy_allows_equal_thresholds_on_neighbouring_tiers() -> None:
    policy(tiers=(MEMBER, Tier("free", "Free", 1, 0)))


@pytest.mark.parametrize(("month", "day"), [(13, 1), (0, 1), (1, 0), (1, 32), (2, 30), (4, 31)])
def test_policy_rejects_a_review_date_that_is_no_day_of_the_year(month: int, day: int) -> None:
    with pytest.raises(ValidationFailed) as err:
        policy(review=ReviewKind.FIXED_DATE, fixed_month=month, fixed_day=day)
    assert err.value.field == "fixed_day"


def test_policy_accepts_29_february_as_a_review_date() -> None:
    policy(review=ReviewKind.FIXED_DATE, fixed_month=2, fixed_day=29)


def test_ladder_lists_tiers_from_the_entry_tier_up() -> None:
    assert policy().ladder == [MEMBER, SILVER, GOLD, PLATINUM]


def test_unknown_or_missing_tier_code_means_the_entry_tier() -> None:
    p = policy()
    assert p.by_code(None) == MEMBER
    assert p.by_code("diamond") == MEMBER
    assert p.by_code("gold") == GOLD


# ----- qualification


def test_qualifying_value_counts_the_window_ending_today_inclusive() -> None:
    today = date(2024, 6, 30)
    contributions = [
        (today - timedelta(days=365), 1),  # just outside the window
        (today - timedelta(days=364), 10),
        (today, 100),
        (today + timedelta(days=1), 1_000),  # in the future
    ]
    assert qualifying_value(contributions, today, 365) == 110


def test_refunds_lower_the_qualifying_value() -> None:
    today = date(2024, 6, 30)
    assert qualifying_value([(today, 5_000), (today, -1_200)], today, 365) == 3_800


def test_reaching_a_threshold_exactly_qualifies_for_the_tier() -> None:
    assert deserved_tier(policy(), 5_000) == GOLD
    assert deserved_tier(policy(), 4_999) == SILVER
    assert deserved_tier(policy(), 0) == MEMBER


def test_negative_value_still_deserves_the_entry_tier() -> None:
    assert deserved_tier(policy(), -50) == MEMBER


# ----- upgrades


def test_crossing_a_higher_threshold_upgrades_at_once_skipping_tiers() -> None:
    assert upgrade_for(policy(), "member", 20_000) == PLATINUM


def test_new_member_without_a_tier_is_upgraded_from_the_entry_tier() -> None:
    assert upgrade_for(policy(), None, 1_000) == SILVER


def test_member_who_still_deserves_the_same_tier_is_not_upgraded() -> None:
    assert upgrade_for(policy(), "gold", 6_000) is None


def test_refunds_never_downgrade_outside_a_review() -> None:
    assert upgrade_for(policy(), "gold", 10) is None


# ----- review dates


def test_anniversary_review_is_one_year_after_reaching_the_tier() -> None:
    p = policy()
    assert next_review(p, achieved_on=date(2024, 3, 10), after=date(2024, 3, 10)) == date(
        2025, 3, 10
    )


def test_anniversary_review_is_strictly_after_the_given_day() -> None:
    p = policy()
    achieved = date(2023, 3, 10)
    assert next_review(p, achieved_on=achieved, after=date(2025, 3, 9)) == date(2025, 3, 10)
    assert next_review(p, achieved_on=achieved, after=date(2025, 3, 10)) == date(2026, 3, 10)


def test_anniversary_of_29_february_falls_on_28_february_in_common_years() -> None:
    p = policy()
    achieved = date(2024, 2, 29)
    assert next_review(p, achieved_on=achieved, after=achieved) == date(2025, 2, 28)
    assert next_review(p, achieved_on=achieved, after=date(2027, 3, 1)) == date(2028, 2, 29)


def test_fixed_date_review_comes_at_least_a_year_after_the_tier_was_reached() -> None:
    p = policy(review=ReviewKind.FIXED_DATE, fixed_month=1, fixed_day=1)
    assert next_review(p, achieved_on=date(2026, 12, 30), after=date(2026, 12, 30)) == date(
        2028, 1, 1
    )
    assert next_review(p, achieved_on=date(2026, 1, 1), after=date(2026, 1, 1)) == date(2027, 1, 1)


def test_fixed_date_review_after_a_kept_review_is_the_next_years_date() -> None:
    p = policy(review=ReviewKind.FIXED_DATE, fixed_month=7, fixed_day=1)
    assert next_review(p, achieved_on=date(2024, 7, 1), after=date(2024, 7, 1)) == date(2025, 7, 1)


def test_fixed_date_review_moves_to_next_year_once_the_date_is_reached() -> None:
    p = policy(review=ReviewKind.FIXED_DATE, fixed_month=7, fixed_day=1)
    assert next_review(p, achieved_on=date(2024, 2, 1), after=date(2024, 7, 1)) == date(2025, 7, 1)


def test_fixed_review_on_29_february_falls_on_28_february_in_common_years() -> None:
    p = policy(review=ReviewKind.FIXED_DATE, fixed_month=2, fixed_day=29)
    assert next_review(p, achieved_on=date(2024, 1, 1), after=date(2024, 3, 1)) == date(2025, 2, 28)
    assert next_review(p, achieved_on=date(2023, 1, 1), after=date(2024, 1, 1)) == date(2024, 2, 29)


@settings(max_examples=200, deadline=None, database=None)
@given(
    achieved=st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31)),
    gap=st.integers(min_value=0, max_value=3_000),
)
def test_anniversary_review_is_the_first_anniversary_strictly_after_both_days(
    achieved: date, gap: int
) -> None:
    after = achieved + timedelta(days=gap)
    review = next_review(policy(), achieved_on=achieved, after=after)
    assert review > after
    assert review > achieved
    assert review.month == achieved.month
    assert review.day == achieved.day or (achieved.month, achieved.day, review.day) == (2, 29, 28)
    assert review - timedelta(days=366) <= max(after, achieved)


def test_review_is_due_only_after_the_grace_period() -> None:
    p = policy(grace_days=30)
    review_on = date(2025, 3, 10)
    assert not review_due(p, review_on, date(2025, 4, 8))
    assert review_due(p, review_on, date(2025, 4, 9))


def test_review_without_grace_is_due_on_the_review_day() -> None:
    assert review_due(policy(), date(2025, 3, 10), date(2025, 3, 10))
    assert not review_due(policy(), date(2025, 3, 10), date(2025, 3, 9))


# ----- downgrades


def test_review_keeps_the_tier_while_still_qualified() -> None:
    assert tier_after_review(policy(), "gold", 5_000) == GOLD


def test_review_steps_down_one_level_by_default_however_little_was_spent() -> None:
    assert tier_after_review(policy(), "platinum", 0) == GOLD


def test_review_steps_down_at_most_max_downgrade_levels() -> None:
    assert tier_after_review(policy(max_downgrade_levels=2), "platinum", 0) == SILVER


def test_review_never_steps_down_below_the_deserved_tier() -> None:
    assert tier_after_review(policy(max_downgrade_levels=3), "platinum", 1_500) == SILVER


def test_review_moves_up_to_a_higher_deserved_tier() -> None:
    assert tier_after_review(policy(), "silver", 25_000) == PLATINUM


def test_review_of_the_entry_tier_stays_there() -> None:
    assert tier_after_review(policy(), "member", 0) == MEMBER
    assert tier_after_review(policy(), None, 0) == MEMBER


@settings(max_examples=200, deadline=None, database=None)
@given(
    current=st.sampled_from(["member", "silver", "gold", "platinum"]),
    value=st.integers(min_value=0, max_value=30_000),
    levels=st.integers(min_value=1, max_value=4),
)
def test_review_lands_between_the_deserved_tier_and_the_current_tier(
    current: str, value: int, levels: int
) -> None:
    p = policy(max_downgrade_levels=levels)
    now = p.by_code(current)
    after = tier_after_review(p, current, value)
    deserved = deserved_tier(p, value)
    if deserved.rank >= now.rank:
        assert after == deserved
    else:
        assert deserved.rank <= after.rank < now.rank
        assert p.ladder.index(now) - p.ladder.index(after) <= levels


# ----- projection


def test_projection_says_how_much_more_each_tier_needs_by_the_date() -> None:
    by = date(2024, 12, 31)
    rows = project(policy(), contributions=[(date(2024, 6, 1), 3_000)], by=by)
    assert [(r.tier, r.needed, r.reached) for r in rows] == [
        (MEMBER, 0, True),
        (SILVER, 0, True),
        (GOLD, 2_000, False),
        (PLATINUM, 17_000, False),
    ]
    assert all(r.qualifying_at_date == 3_000 and r.by == by for r in rows)


def test_projection_drops_contributions_that_leave_the_window_by_the_date() -> None:
    rows = project(
        policy(window_days=365),
        contributions=[(date(2023, 12, 1), 5_000), (date(2024, 6, 1), 1_000)],
        by=date(2024, 12, 31),
    )
    gold = next(r for r in rows if r.tier == GOLD)
    assert gold.qualifying_at_date == 1_000
    assert gold.needed == 4_000


def test_a_review_in_the_last_representable_year_fails_fast_instead_of_looping() -> None:
    p = policy()
    with pytest.raises(ValueError):
        next_review(p, achieved_on=date(9999, 6, 1), after=date(9999, 6, 1))
