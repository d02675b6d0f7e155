"""The points mall's pure rules: windows, tiers, limits, prices, statuses and reversal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from quanyu.domain.errors import (
    BusinessRuleViolation,
    Conflict,
    LimitReached,
    OutsideRedemptionWindow,
    ValidationFailed,
)
from quanyu.domain.mall import (
    MAX_QUANTITY,
    Price,
    RedemptionStatus,
    RewardKind,
    Window,
    check_member_limit,
    check_tier,
    check_window,
    fulfils,
    initial_status,
    price_for,
    restorations,
    reverses,
    validate_reward,
    validate_window,
)
from quanyu.domain.tiers import Tier

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
DAY = timedelta(days=1)
LADDER = (Tier("silver", "Silver", 0, 0), Tier("gold", "Gold", 1, 3), Tier("plat", "Plat", 2, 9))
THANKS = Window("thank-you month", NOW + 10 * DAY, NOW + 40 * DAY)


# ---------------------------------------------------------------- windows


def test_a_program_without_windows_is_always_open() -> None:
    check_window([], NOW)


def test_redemption_is_open_inside_a_window_including_its_start() -> None:
    check_window([THANKS], THANKS.starts_at)
    check_window([THANKS], THANKS.starts_at + DAY)


def test_a_window_ends_before_its_end_instant() -> None:
    with pytest.raises(OutsideRedemptionWindow):
        check_window([THANKS], THANKS.ends_at)


def test_outside_every_window_is_closed_and_names_the_next_opening() -> None:
    later = Window("double eleven", NOW + 200 * DAY, NOW + 210 * DAY)

    with pytest.raises(OutsideRedemptionWindow) as caught:
        check_window([later, THANKS], NOW)

    assert caught.value.fields["next_opens_at"] == THANKS.starts_at.isoformat()
    assert caught.value.fields["next_window"] == "thank-you month"


def test_after_the_last_window_there_is_no_next_opening() -> None:
    with pytest.raises(OutsideRedemptionWindow) as caught:
        check_window([THANKS], NOW + 100 * DAY)

    assert caught.value.fields["next_opens_at"] is None


def test_a_window_must_end_after_it_starts() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_window(NOW, NOW)

    assert caught.value.field == "ends_at"


def test_a_window_needs_aware_timestamps() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_window(NOW.replace(tzinfo=None), NOW + DAY)

    assert caught.value.field == "starts_at"


# ---------------------------------------------------------------- tiers


def test_a_reward_without_minimum_tier_is_open_to_every_tier() -> None:
    check_tier(LADDER, "silver", None)


@pytest.mark.parametrize("tier", ["gold", "plat"])
def test_the_minimum_tier_and_higher_ones_may_redeem(tier: str) -> None:
    check_tier(LADDER, tier, "gold")


def test_a_lower_tier_may_not_redeem() -> None:
    with pytest.raises(BusinessRuleViolation) as caught:
        check_tier(LADDER, "silver", "gold")

    assert caught.value.fields["rule"] == "min_tier"
    assert caught.value.fields["min_tier_code"] == "gold"


def test_a_minimum_tier_the_program_no_longer_has_admits_nobody() -> None:
    with pytest.raises(BusinessRuleViolation):
        check_tier(LADDER, "plat", "diamond")


# ---------------------------------------------------------------- limits and prices


def test_the_per_member_limit_counts_what_the_member_already_holds() -> None:
    check_member_limit(3, 1, 2)
    with pytest.raises(LimitReached) as caught:
        check_member_limit(3, 2, 2)

    assert caught.value.limit == "per_member"
    assert caught.value.fields["redeemed"] == 2


def test_no_per_member_limit_means_no_limit() -> None:
    check_member_limit(None, 10_000, MAX_QUANTITY)


def test_the_price_of_a_quantity_is_points_and_cash_times_the_quantity() -> None:
    assert price_for(300, 990, 3) == Price(points=900, cash=2_970)


@pytest.mark.parametrize("quantity", [0, -1, MAX_QUANTITY + 1])
def test_a_quantity_outside_1_to_the_maximum_is_invalid(quantity: int) -> None:
    with pytest.raises(ValidationFailed) as caught:
        price_for(100, 0, quantity)

    assert caught.value.field == "quantity"


# ---------------------------------------------------------------- the catalogue


def test_a_coupon_reward_needs_a_coupon_template() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_reward(
            kind=RewardKind.COUPON,
            points_price=100,
            cash_price=0,
            has_coupon_template=False,
            stock=None,
            per_member_limit=None,
        )

    assert caught.value.field == "coupon_template"


def test_only_a_coupon_reward_names_a_coupon_template() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_reward(
            kind=RewardKind.PHYSICAL,
            points_price=100,
            cash_price=0,
            has_coupon_template=True,
            stock=5,
            per_member_limit=None,
        )

    assert caught.value.field == "coupon_template"


def test_a_reward_costs_at_least_one_point() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_reward(
            kind=RewardKind.EXPERIENCE,
            points_price=0,
            cash_price=5_000,
            has_coupon_template=False,
            stock=None,
            per_member_limit=None,
        )

    assert caught.value.field == "points_price"


# ---------------------------------------------------------------- statuses


def test_a_coupon_is_fulfilled_at_once_and_goods_wait_for_fulfilment() -> None:
    assert initial_status(RewardKind.COUPON) is RedemptionStatus.FULFILLED
    assert initial_status(RewardKind.PHYSICAL) is RedemptionStatus.PLACED
    assert initial_status(RewardKind.EXPERIENCE) is RedemptionStatus.PLACED


def test_fulfilling_again_changes_nothing_and_a_reversed_redemption_cannot_be_fulfilled() -> None:
    assert fulfils(RedemptionStatus.PLACED) is True
    assert fulfils(RedemptionStatus.FULFILLED) is False
    with pytest.raises(Conflict):
        fulfils(RedemptionStatus.REVERSED)


def test_reversing_again_changes_nothing_and_a_fulfilled_redemption_cannot_be_reversed() -> None:
    assert reverses(RedemptionStatus.PLACED) is True
    assert reverses(RedemptionStatus.REVERSED) is False
    with pytest.raises(Conflict):
        reverses(RedemptionStatus.FULFILLED)


# ---------------------------------------------------------------- reversal


def test_returned_points_keep_the_expiry_of_the_lots_they_came_from() -> None:
    soon, later = NOW + 30 * DAY, NOW + 400 * DAY

    plan = restorations(
        [(later, 50), (soon, 100), (None, 20), (soon, 5)], as_of=NOW, fresh=NOW + 700 * DAY
    )

    assert plan == [(soon, 105), (later, 50), (None, 20)]


def test_returned_points_whose_lot_has_expired_since_get_a_fresh_expiry() -> None:
    fresh = NOW + 700 * DAY

    plan = restorations([(NOW - DAY, 40), (NOW, 10)], as_of=NOW, fresh=fresh)

    assert plan == [(fresh, 50)]
