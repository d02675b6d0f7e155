"""Refunds: proportional clawback, spent points under both clawback policies, debt, and the
return of points used as payment."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from conftest import T0, Brand, Shop, local, phone
from quanyu.domain.errors import IdempotencyConflict, RefundExceedsOrder, ValidationFailed
from quanyu.domain.orders import RefundInput, RefundLineInput
from quanyu.services import orders, points, setup, tiers
from quanyu.services.uow import Platform

PHONE = ("phone", phone(1))


def kinds(platform: Platform, member_id: int) -> list[str]:
    return [e["kind"] for e in reversed(points.entries(platform, member_id))]


def test_a_partial_refund_claws_back_points_in_proportion(shop: Shop, platform: Platform) -> None:
    member_id = shop.register(PHONE)
    shop.order("A1", PHONE, paid=18_000)

    result = shop.refund("R1", "A1", amount=9_000, quantity=1)

    assert (result["points_clawed_back"], result["points_restored"]) == (90, 0)
    assert result["member_id"] == member_id
    assert shop.total(member_id) == 90
    assert kinds(platform, member_id) == ["earn", "clawback"]
    assert points.check_ledger(platform) == []


def test_refunds_adding_up_to_the_order_claw_back_exactly_what_it_earned(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    assert shop.order("A1", PHONE, paid=10_001)["points_earned"] == 100

    clawed = [
        shop.refund(f"R{n}", "A1", amount=amount)["points_clawed_back"]
        for n, amount in enumerate((3_333, 3_333, 3_335))
    ]

    assert clawed == [33, 33, 34]
    assert shop.total(member_id) == 0
    assert points.check_ledger(platform) == []


def test_a_refund_lowers_the_qualifying_spend_but_never_the_tier(
    shop: Shop, brand: Brand, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    shop.order("A1", PHONE, paid=brand.gold_threshold)

    shop.refund("R1", "A1", amount=brand.gold_threshold)

    current = tiers.current(platform, member_id)
    assert (current["tier"], current["qualifying_value"]) == ("gold", 0)
    assert shop.total(member_id) == 0
    assert points.check_ledger(platform) == []


def test_replaying_a_refund_returns_the_first_result_and_claws_back_once(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    shop.order("A1", PHONE, paid=18_000)
    first = shop.refund("R1", "A1", amount=9_000)

    again = shop.refund("R1", "A1", amount=9_000)

    assert again == {**first, "replayed": True}
    assert shop.total(member_id) == 90
    assert points.check_ledger(platform) == []


def test_the_same_refund_id_with_another_amount_is_a_conflict_naming_the_field(
    shop: Shop,
) -> None:
    shop.register(PHONE)
    shop.order("A1", PHONE, paid=18_000)
    shop.refund("R1", "A1", amount=9_000)

    with pytest.raises(IdempotencyConflict) as caught:
        shop.refund("R1", "A1", amount=8_000)

    assert set(caught.value.fields["differences"]) == {"lines[0].amount"}


def test_a_refund_beyond_what_remains_of_the_line_is_rejected(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    shop.order("A1", PHONE, paid=18_000)
    shop.refund("R1", "A1", amount=9_000)

    with pytest.raises(RefundExceedsOrder) as caught:
        shop.refund("R2", "A1", amount=9_001)

    assert caught.value.fields["field"] == "lines[0].amount"
    assert shop.total(member_id) == 90
    assert points.check_ledger(platform) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [({"order_external_id": "NOPE"}, "order_external_id"), ({"line_no": 2}, "lines[0].line_no")],
)
def test_a_refund_of_something_not_ordered_is_rejected_naming_the_field(
    shop: Shop, change: dict[str, object], field: str
) -> None:
    shop.register(PHONE)
    shop.order("A1", PHONE, paid=18_000)
    args: dict[str, object] = {"order_external_id": "A1", "line_no": 1} | change

    with pytest.raises(ValidationFailed) as caught:
        shop.refund("R1", amount=100, **args)  # type: ignore[arg-type]

    assert caught.value.field == field


def test_a_refund_from_another_channel_names_the_channel_of_the_order(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    shop.order("A1", PHONE, paid=18_000)
    refund = RefundInput(
        channel="mini",
        external_id="R1",
        order_external_id="A1",
        refunded_at=shop.clock.now(),
        lines=(RefundLineInput(1, 0, 18_000),),
    )

    with pytest.raises(ValidationFailed):
        orders.ingest_refund(platform, refund, actor="test")  # no mini order A1
    result = orders.ingest_refund(platform, replace(refund, order_channel="pos"), actor="test")

    assert result["points_clawed_back"] == 180
    assert shop.total(member_id) == 0
    assert points.check_ledger(platform) == []


def test_a_refund_batch_commits_the_good_refunds_and_reports_the_bad_one(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    shop.order("A1", PHONE, paid=18_000)
    shop.order("A2", PHONE, paid=10_000)

    def refund(external_id: str, order: str, amount: int) -> RefundInput:
        lines = (RefundLineInput(1, 0, amount),)
        return RefundInput("pos", external_id, order, shop.clock.now(), lines)

    results = orders.ingest_refunds(
        platform,
        [refund("R1", "A1", 9_000), refund("R2", "A2", 10_001), refund("R3", "A2", 5_000)],
        actor="test",
    )

    assert isinstance(results[1], RefundExceedsOrder)
    assert [r["points_clawed_back"] for r in (results[0], results[2]) if isinstance(r, dict)] == [
        90,
        50,
    ]
    assert shop.total(member_id) == 280 - 90 - 50
    assert points.check_ledger(platform) == []


# ---------------------------------------------------------------- spent points


def _spend_most_of_the_first_order(shop: Shop, platform: Platform) -> int:
    """A1 earns 180 and A2 100, both available at once; 150 are redeemed, from A1's lot."""
    setup.update_program(platform, shop.brand.program, {"pending_days": 0})
    member_id = shop.register(PHONE)
    shop.order("A1", PHONE, paid=18_000, at=T0)
    shop.order("A2", PHONE, paid=10_000, at=T0 + timedelta(hours=1))
    shop.at(T0 + timedelta(hours=2))
    spent = points.spend(platform, member_id, points=150, reason="gift", actor="test")
    assert [c["points"] for c in spent["consumed"]] == [150]
    shop.later(hours=1)
    return member_id


@pytest.mark.parametrize(
    ("policy", "after_refund", "after_next_order"),
    [
        # 30 from A1's own lot, 100 from A2's lot, 50 owed
        ("other_lots", {"available": 0, "debt": 50, "total": -50}, {"available": 150}),
        # 30 from A1's own lot, 150 owed; A2's lot is left alone
        ("debt", {"available": 100, "debt": 150, "total": -50}, {"available": 150}),
    ],
)
def test_a_refund_claws_back_spent_points_by_the_programs_policy_and_later_earnings_settle_the_debt(
    shop: Shop,
    platform: Platform,
    policy: str,
    after_refund: dict[str, int],
    after_next_order: dict[str, int],
) -> None:
    member_id = _spend_most_of_the_first_order(shop, platform)
    setup.update_program(platform, shop.brand.program, {"clawback_policy": policy})

    refund = shop.refund("R1", "A1", amount=18_000)

    assert refund["points_clawed_back"] == 180
    balance = shop.balance(member_id)
    assert {k: balance[k] for k in after_refund} == after_refund
    assert points.check_ledger(platform) == []

    shop.later(hours=1)
    assert shop.order("A3", PHONE, paid=20_000)["points_earned"] == 200

    balance = shop.balance(member_id)
    assert balance["debt"] == 0
    assert balance["available"] == after_next_order["available"]
    assert balance["total"] == -50 + 200
    assert kinds(platform, member_id)[-2:] == ["earn", "debt_settle"]
    assert points.check_ledger(platform) == []


def test_a_debt_larger_than_the_next_earning_is_settled_in_part(
    shop: Shop, platform: Platform
) -> None:
    member_id = _spend_most_of_the_first_order(shop, platform)
    setup.update_program(platform, shop.brand.program, {"clawback_policy": "debt"})
    shop.refund("R1", "A1", amount=18_000)  # 150 owed

    shop.order("A3", PHONE, paid=6_000)  # earns 60

    balance = shop.balance(member_id)
    assert (balance["debt"], balance["available"], balance["total"]) == (90, 100, 10)
    assert points.check_ledger(platform) == []


def test_a_manual_credit_also_settles_a_debt(shop: Shop, platform: Platform) -> None:
    member_id = _spend_most_of_the_first_order(shop, platform)
    setup.update_program(platform, shop.brand.program, {"clawback_policy": "debt"})
    shop.refund("R1", "A1", amount=18_000)  # 150 owed

    points.adjust(platform, member_id, points=200, reason="goodwill", actor="test")

    balance = shop.balance(member_id)
    assert (balance["debt"], balance["available"], balance["total"]) == (0, 150, 150)
    assert points.check_ledger(platform) == []


# ---------------------------------------------------------------- points used as payment


def test_a_refund_returns_points_used_to_pay_in_proportion(shop: Shop, platform: Platform) -> None:
    member_id = shop.register(PHONE, at=local(2025, 1, 1))
    shop.order("A1", PHONE, paid=50_000, at=local(2025, 6, 1))  # 500, expiring at 2027's start
    paid = shop.order("A2", PHONE, paid=10_000, points=300)  # earns 97 on 97 yuan of cash
    assert (paid["points_used"], paid["points_earned"]) == (300, 97)
    assert shop.total(member_id) == 500 - 300 + 97

    half = shop.refund("R1", "A2", amount=5_000)
    rest = shop.refund("R2", "A2", amount=5_000)

    assert (half["points_restored"], half["points_clawed_back"]) == (150, 48)
    assert (rest["points_restored"], rest["points_clawed_back"]) == (150, 49)
    balance = shop.balance(member_id)
    assert (balance["available"], balance["pending"], balance["total"]) == (500, 0, 500)
    assert points.check_ledger(platform) == []


def test_returned_points_keep_the_expiry_of_the_points_that_paid(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE, at=local(2025, 1, 1))
    shop.order("A1", PHONE, paid=50_000, at=local(2025, 6, 1))
    shop.order("A2", PHONE, paid=10_000, points=300)

    shop.refund("R1", "A2", amount=10_000)

    restored = [
        lot for lot in points.lots(platform, member_id) if lot["earned_at"] == shop.clock.now()
    ]
    assert [(lot["original"], lot["expires_at"]) for lot in restored] == [
        (300, local(2027, 1, 1, hour=0))
    ]
    assert kinds(platform, member_id)[-2:] == ["clawback", "restore"]
