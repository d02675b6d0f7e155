"""The points mall in the store: redeeming rewards through the ledger, the tier, limit,
window and stock rules, idempotent retries, fulfilment and its failure."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Table, func, select
from test_concurrency import race

from conftest import Shop, local, phone
from quanyu.adapters import tables as t
from quanyu.domain.errors import (
    AlreadyExists,
    BusinessRuleViolation,
    Conflict,
    IdempotencyConflict,
    InsufficientPoints,
    LimitReached,
    NotFound,
    OutsideRedemptionWindow,
    ValidationFailed,
)
from quanyu.services import coupons, mall, members, points
from quanyu.services.uow import Platform

PHONE = ("phone", phone(1))
OTHER = ("phone", phone(2))
EXPIRES_2027 = local(2027, 1, 1, hour=0)
EXPIRES_2028 = local(2028, 1, 1, hour=0)


@pytest.fixture
def member_with_two_lots(shop: Shop) -> int:
    """100 points from 2025 (expire at 2027's start) and 100 from 2026 (expire at 2028's)."""
    member_id = shop.register(PHONE, at=local(2025, 1, 1))
    shop.order("OLD", PHONE, paid=10_000, at=local(2025, 6, 1))
    shop.order("NEW", PHONE, paid=10_000, at=local(2026, 2, 1))
    return member_id


def reward(platform: Platform, code: str = "MUG", **values: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "program": "club",
        "name": f"{code} reward",
        "kind": "physical",
        "points_price": 150,
        **values,
    }
    return mall.create_reward(platform, code=code, **spec)


def redeem(
    platform: Platform, member_id: int, key: str, code: str = "MUG", quantity: int = 1
) -> dict[str, Any]:
    return mall.redeem(
        platform,
        member_id=member_id,
        reward=code,
        quantity=quantity,
        request_key=key,
        actor="test",
    )


def stock_of(platform: Platform, code: str = "MUG") -> int | None:
    [found] = [r for r in mall.rewards(platform) if r["code"] == code]
    stock: int | None = found["stock"]
    return stock


def count(platform: Platform, table: Table) -> int:
    with platform.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def kinds(platform: Platform, member_id: int) -> list[str]:
    return [h["kind"] for h in members.member_history(platform, member_id)]


# ---------------------------------------------------------------- redeeming


def test_redeeming_spends_the_soonest_expiring_points_first_and_records_the_lots(
    shop: Shop, platform: Platform, member_with_two_lots: int
) -> None:
    lots = {lot["expires_at"]: lot["id"] for lot in points.lots(platform, member_with_two_lots)}
    reward(platform, stock=10)

    result = redeem(platform, member_with_two_lots, "K1")

    assert result["consumed"] == [
        {"lot_id": lots[EXPIRES_2027], "points": 100, "expires_at": EXPIRES_2027.isoformat()},
        {"lot_id": lots[EXPIRES_2028], "points": 50, "expires_at": EXPIRES_2028.isoformat()},
    ]
    assert (result["status"], result["points"], result["replayed"]) == ("placed", 150, False)
    [entry] = points.entries(platform, member_with_two_lots, limit=1)
    assert (entry["id"], entry["kind"], entry["points"]) == (
        result["spend_entry_id"],
        "spend",
        -150,
    )
    assert entry["reason"] == "points mall: MUG x1"
    assert [a["points"] for a in entry["allocations"]] == [100, 50]
    assert shop.available(member_with_two_lots) == 50
    assert stock_of(platform) == 9
    assert points.check_ledger(platform) == []


def test_points_plus_cash_rewards_record_both_prices_times_the_quantity(
    platform: Platform, member_with_two_lots: int
) -> None:
    reward(platform, "SPA", kind="experience", points_price=60, cash_price=9_900)

    result = redeem(platform, member_with_two_lots, "K1", "SPA", quantity=3)

    assert (result["points"], result["cash"], result["quantity"]) == (180, 29_700, 3)


def test_redeeming_without_enough_points_raises_and_changes_nothing(
    shop: Shop, platform: Platform, member_with_two_lots: int
) -> None:
    reward(platform, stock=10, points_price=201)

    with pytest.raises(InsufficientPoints) as caught:
        redeem(platform, member_with_two_lots, "K1")

    assert (caught.value.requested, caught.value.available) == (201, 200)
    assert shop.available(member_with_two_lots) == 200
    assert stock_of(platform) == 10
    assert count(platform, t.reward_redemptions) == 0
    assert "reward_redeemed" not in kinds(platform, member_with_two_lots)
    assert points.check_ledger(platform) == []


def test_a_reward_runs_out_of_stock(platform: Platform, member_with_two_lots: int) -> None:
    reward(platform, points_price=10, stock=2)
    redeem(platform, member_with_two_lots, "K1", quantity=2)

    with pytest.raises(LimitReached) as caught:
        redeem(platform, member_with_two_lots, "K2")

    assert caught.value.limit == "stock"
    assert stock_of(platform) == 0


def test_a_paused_reward_cannot_be_redeemed(platform: Platform, member_with_two_lots: int) -> None:
    reward(platform, status="paused")

    with pytest.raises(Conflict):
        redeem(platform, member_with_two_lots, "K1")


def test_an_unknown_reward_names_the_field(platform: Platform, member_with_two_lots: int) -> None:
    with pytest.raises(ValidationFailed) as caught:
        redeem(platform, member_with_two_lots, "K1", "NOPE")

    assert caught.value.field == "reward"


# ---------------------------------------------------------------- who may redeem


def test_a_member_below_the_minimum_tier_is_refused(
    shop: Shop, platform: Platform, member_with_two_lots: int
) -> None:
    reward(platform, min_tier_code="gold")

    with pytest.raises(BusinessRuleViolation) as caught:
        redeem(platform, member_with_two_lots, "K1")

    assert caught.value.fields["rule"] == "min_tier"
    assert shop.available(member_with_two_lots) == 200


def test_a_member_at_the_minimum_tier_or_above_may_redeem(
    shop: Shop, platform: Platform, member_with_two_lots: int
) -> None:
    reward(platform, min_tier_code="gold")
    assert shop.order("BIG", PHONE, paid=300_000)["tier"] == "gold"

    assert redeem(platform, member_with_two_lots, "K1")["status"] == "placed"


def test_the_per_member_limit_counts_every_redemption_not_reversed(
    platform: Platform, member_with_two_lots: int
) -> None:
    reward(platform, points_price=10, per_member_limit=2)
    first = redeem(platform, member_with_two_lots, "K1")
    redeem(platform, member_with_two_lots, "K2")

    with pytest.raises(LimitReached) as caught:
        redeem(platform, member_with_two_lots, "K3")
    assert (caught.value.limit, caught.value.fields["redeemed"]) == ("per_member", 2)

    mall.fail(platform, first["redemption_id"], reason="lost in transit", actor="test")
    assert redeem(platform, member_with_two_lots, "K4")["status"] == "placed"


def test_the_per_member_limit_follows_a_member_into_a_merge(shop: Shop, platform: Platform) -> None:
    a = shop.register(PHONE)
    b = shop.register(OTHER)
    for member_id in (a, b):
        points.adjust(platform, member_id, points=100, reason="welcome", actor="test")
    reward(platform, points_price=10, per_member_limit=1)
    redeem(platform, b, "KB")

    survivor = shop.order("LINK", PHONE, OTHER, paid=1_000)["member_id"]

    assert survivor == a  # b, with its redemption, was merged into a
    with pytest.raises(LimitReached):
        redeem(platform, survivor, "KA")
    assert [r["request_key"] for r in mall.redemptions(platform, survivor)] == ["KB"]


def test_redemption_is_closed_outside_the_programs_windows(
    shop: Shop, platform: Platform, member_with_two_lots: int
) -> None:
    reward(platform)
    start = local(2026, 4, 1, hour=0)
    mall.create_window(
        platform,
        program="club",
        name="thank-you month",
        starts_at=start,
        ends_at=local(2026, 5, 1, 0),
    )

    with pytest.raises(OutsideRedemptionWindow) as caught:
        redeem(platform, member_with_two_lots, "K1")
    assert caught.value.fields["next_opens_at"] == start.isoformat()

    shop.at(start + timedelta(days=3))
    assert redeem(platform, member_with_two_lots, "K1")["status"] == "placed"


def test_deleting_the_last_window_opens_redemption_at_any_time(
    platform: Platform, member_with_two_lots: int
) -> None:
    reward(platform)
    window = mall.create_window(
        platform,
        program="club",
        name="later",
        starts_at=local(2027, 1, 1),
        ends_at=local(2027, 2, 1),
    )
    with pytest.raises(OutsideRedemptionWindow):
        redeem(platform, member_with_two_lots, "K1")

    mall.delete_window(platform, window["id"])

    assert mall.windows(platform) == []
    assert redeem(platform, member_with_two_lots, "K1")["status"] == "placed"
    with pytest.raises(NotFound):
        mall.delete_window(platform, window["id"])


# ---------------------------------------------------------------- retries


def test_a_replay_returns_the_first_result_and_spends_once(
    shop: Shop, platform: Platform, member_with_two_lots: int
) -> None:
    reward(platform, stock=5)
    first = redeem(platform, member_with_two_lots, "K1")

    again = redeem(platform, member_with_two_lots, "K1")

    assert again == {**first, "replayed": True}
    assert shop.available(member_with_two_lots) == 50
    assert stock_of(platform) == 4
    assert count(platform, t.reward_redemptions) == 1


def test_a_replay_with_another_payload_raises_naming_the_differing_fields(
    platform: Platform, member_with_two_lots: int
) -> None:
    reward(platform, points_price=10)
    redeem(platform, member_with_two_lots, "K1")

    with pytest.raises(IdempotencyConflict) as caught:
        redeem(platform, member_with_two_lots, "K1", quantity=2)

    assert caught.value.fields["differences"] == {"quantity": {"stored": 1, "received": 2}}
    assert count(platform, t.reward_redemptions) == 1


# ---------------------------------------------------------------- fulfilment


def test_a_failed_fulfilment_returns_the_points_with_their_expiry_and_the_stock(
    shop: Shop, platform: Platform, member_with_two_lots: int
) -> None:
    reward(platform, stock=10)
    placed = redeem(platform, member_with_two_lots, "K1")
    shop.later(days=2)

    reversed_ = mall.fail(
        platform, placed["redemption_id"], reason="out of stock in the warehouse", actor="ops"
    )

    assert reversed_["status"] == "reversed"
    assert [(r["points"], r["expires_at"]) for r in reversed_["restored"]] == [
        (100, EXPIRES_2027.isoformat()),
        (50, EXPIRES_2028.isoformat()),
    ]
    assert reversed_["reversal_entry_id"] == reversed_["restored"][0]["entry_id"]
    assert shop.available(member_with_two_lots) == 200
    assert stock_of(platform) == 10
    spend, *_ = [e for e in points.entries(platform, member_with_two_lots) if e["kind"] == "spend"]
    assert (spend["points"], len(spend["allocations"])) == (-150, 2)  # never edited
    assert points.check_ledger(platform) == []


def test_points_whose_lot_expired_before_the_reversal_come_back_with_a_fresh_expiry(
    shop: Shop, platform: Platform, member_with_two_lots: int
) -> None:
    reward(platform)
    placed = redeem(platform, member_with_two_lots, "K1")
    shop.at(local(2027, 1, 5))

    reversed_ = mall.fail(platform, placed["redemption_id"], reason="courier lost it", actor="ops")

    assert [(r["points"], r["expires_at"]) for r in reversed_["restored"]] == [
        (50, EXPIRES_2028.isoformat()),
        (100, local(2029, 1, 1, hour=0).isoformat()),
    ]
    assert points.check_ledger(platform) == []


def test_reversing_twice_answers_the_same_and_returns_the_points_once(
    shop: Shop, platform: Platform, member_with_two_lots: int
) -> None:
    reward(platform, stock=10)
    placed = redeem(platform, member_with_two_lots, "K1")
    first = mall.fail(platform, placed["redemption_id"], reason="damaged", actor="ops")

    again = mall.fail(platform, placed["redemption_id"], reason="damaged again", actor="ops")

    assert again == first
    assert shop.available(member_with_two_lots) == 200
    assert stock_of(platform) == 10
    assert points.check_ledger(platform) == []


def test_fulfilling_a_reversed_redemption_is_a_conflict(
    platform: Platform, member_with_two_lots: int
) -> None:
    reward(platform)
    placed = redeem(platform, member_with_two_lots, "K1")
    mall.fail(platform, placed["redemption_id"], reason="damaged", actor="ops")

    with pytest.raises(Conflict):
        mall.fulfil(platform, placed["redemption_id"], actor="ops")


def test_fulfilling_closes_the_redemption_and_it_can_no_longer_be_reversed(
    shop: Shop, platform: Platform, member_with_two_lots: int
) -> None:
    reward(platform)
    placed = redeem(platform, member_with_two_lots, "K1")
    shop.later(days=1)

    done = mall.fulfil(platform, placed["redemption_id"], actor="ops")

    assert (done["status"], done["closed_at"]) == ("fulfilled", shop.clock.now().isoformat())
    assert mall.fulfil(platform, placed["redemption_id"], actor="ops") == done
    with pytest.raises(Conflict):
        mall.fail(platform, placed["redemption_id"], reason="too late", actor="ops")
    assert shop.available(member_with_two_lots) == 50
    with pytest.raises(NotFound):
        mall.fulfil(platform, 999_999, actor="ops")


def test_redeeming_and_reversing_appear_in_the_members_history(
    platform: Platform, member_with_two_lots: int
) -> None:
    reward(platform)
    placed = redeem(platform, member_with_two_lots, "K1")
    mall.fail(platform, placed["redemption_id"], reason="damaged", actor="ops")

    history = members.member_history(platform, member_with_two_lots)

    redeemed = next(h for h in history if h["kind"] == "reward_redeemed")
    reversed_ = next(h for h in history if h["kind"] == "reward_reversed")
    assert redeemed["data"]["redemption_id"] == placed["redemption_id"]
    assert (reversed_["data"]["reason"], reversed_["actor"]) == ("damaged", "ops")
    listed = mall.redemptions(platform, member_with_two_lots)
    assert [(r["redemption_id"], r["status"]) for r in listed] == [
        (placed["redemption_id"], "reversed")
    ]


# ---------------------------------------------------------------- coupon rewards


def test_a_coupon_reward_issues_the_coupon_and_is_fulfilled_at_once(
    shop: Shop, platform: Platform, member_with_two_lots: int
) -> None:
    coupons.create_template(
        platform,
        {
            "code": "TEN-OFF",
            "name": "10 off",
            "kind": "amount_off",
            "value": 1_000,
            "valid_days": 30,
        },
        actor="test",
    )
    reward(platform, "COUPON10", kind="coupon", coupon_template="TEN-OFF", points_price=50)

    result = redeem(platform, member_with_two_lots, "K1", "COUPON10", quantity=2)

    assert result["status"] == "fulfilled"
    held = coupons.member_coupons(platform, member_with_two_lots)
    assert sorted(c["code"] for c in held) == sorted(c["code"] for c in result["coupons"])
    assert {c["source"] for c in held} == {"mall"}
    assert shop.available(member_with_two_lots) == 100
    with pytest.raises(Conflict):
        mall.fail(platform, result["redemption_id"], reason="no", actor="ops")


# ---------------------------------------------------------------- the catalogue


def test_reward_codes_are_unique(platform: Platform, member_with_two_lots: int) -> None:
    reward(platform)

    with pytest.raises(AlreadyExists):
        reward(platform)


def test_a_reward_names_a_tier_and_a_coupon_template_of_its_program(
    platform: Platform, member_with_two_lots: int
) -> None:
    with pytest.raises(ValidationFailed) as tier:
        reward(platform, min_tier_code="diamond")
    with pytest.raises(ValidationFailed) as template:
        reward(platform, kind="coupon", coupon_template="NOPE")

    assert (tier.value.field, template.value.field) == ("min_tier_code", "coupon_template")


def test_updating_a_reward_changes_only_what_is_given_and_null_clears(
    platform: Platform, member_with_two_lots: int
) -> None:
    reward(platform, stock=3, per_member_limit=1, min_tier_code="gold")

    changed = mall.update_reward(
        platform, "MUG", {"points_price": 99, "stock": None, "min_tier_code": None}
    )

    assert (changed["points_price"], changed["stock"]) == (99, None)
    assert (changed["per_member_limit"], changed["min_tier_code"]) == (1, None)
    with pytest.raises(NotFound):
        mall.update_reward(platform, "NOPE", {"name": "x"})
    with pytest.raises(ValidationFailed):
        mall.update_reward(platform, "MUG", {"kind": "coupon"})


# ---------------------------------------------------------------- concurrency (PostgreSQL)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
@pytest.mark.postgres
def test_concurrent_redemptions_by_many_members_never_sell_more_than_the_stock(
    shop: Shop, platform: Platform
) -> None:
    people = [shop.register(("phone", phone(i))) for i in range(20)]
    for member_id in people:
        points.adjust(platform, member_id, points=500, reason="welcome", actor="test")
    reward(platform, stock=3)

    outcomes = race(20, lambda i: redeem(platform, people[i], f"K{i}"))

    placed = [o for o in outcomes if isinstance(o, dict)]
    failed = [o for o in outcomes if not isinstance(o, dict)]
    assert all(isinstance(f, LimitReached) and f.limit == "stock" for f in failed), failed
    assert len(placed) == 3
    assert stock_of(platform) == 0
    assert count(platform, t.reward_redemptions) == 3
    assert sum(shop.available(m) for m in people) == 20 * 500 - 3 * 150
    assert points.check_ledger(platform) == []


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
@pytest.mark.postgres
def test_concurrent_redemptions_by_one_member_never_pass_the_per_member_limit(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    points.adjust(platform, member_id, points=1_000, reason="welcome", actor="test")
    reward(platform, points_price=10, per_member_limit=2)

    outcomes = race(10, lambda i: redeem(platform, member_id, f"K{i}"))

    failed = [o for o in outcomes if not isinstance(o, dict)]
    assert all(isinstance(f, LimitReached) and f.limit == "per_member" for f in failed), failed
    assert len(failed) == 8
    assert shop.available(member_id) == 980
    assert points.check_ledger(platform) == []


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
@pytest.mark.postgres
def test_concurrent_retries_of_one_request_redeem_once(shop: Shop, platform: Platform) -> None:
    member_id = shop.register(PHONE)
    points.adjust(platform, member_id, points=1_000, reason="welcome", actor="test")
    reward(platform, stock=5)

    outcomes = race(8, lambda _: redeem(platform, member_id, "SAME"))

    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    results = [o for o in outcomes if isinstance(o, dict)]
    assert sorted(r["replayed"] for r in results) == [False] + [True] * 7
    assert len({r["redemption_id"] for r in results}) == 1
    assert stock_of(platform) == 4
    assert shop.available(member_id) == 850
    assert points.check_ledger(platform) == []
