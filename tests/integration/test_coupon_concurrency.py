"""Coupon limits and budgets under concurrent checkouts, on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from test_concurrency import race

from conftest import Shop, phone
from quanyu.adapters import tables as t
from quanyu.domain.errors import CouponUnavailable, LimitReached
from quanyu.services import coupons
from quanyu.services.uow import Platform

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("backend", ["postgres"], indirect=True),
]

RACERS = 12


def basket(member_id: int | None, code: str, order_id: str) -> coupons.CheckoutRequest:
    return coupons.CheckoutRequest(
        channel="pos",
        store="SH01",
        member=coupons.MemberRef(member_id=member_id),
        lines=(coupons.LineIn(1, "TEE-W-M", 1, 19_900),),
        codes=(code,),
        order_id=order_id,
    )


def live_redemptions(platform: Platform) -> int:
    with platform.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(t.coupon_redemptions)
                .where(t.coupon_redemptions.c.status.in_(["reserved", "confirmed"]))
            ).scalar_one()
        )


def test_racing_checkouts_never_pass_a_total_limit_of_one(shop: Shop, platform: Platform) -> None:
    ids = [shop.register(("phone", phone(i))) for i in range(RACERS)]
    coupons.create_template(
        platform,
        {
            "code": "ONCE",
            "name": "once",
            "kind": "amount_off",
            "value": 1_000,
            "valid_days": 9,
            "total_limit": 1,
        },
        actor="test",
    )
    coupons.issue_batch(
        platform,
        coupons.BatchRequest(template="ONCE", request_key="k", member_ids=tuple(ids)),
        actor="test",
    )
    codes = [coupons.member_coupons(platform, m)[0]["code"] for m in ids]

    outcomes = race(
        RACERS,
        lambda i: coupons.reserve(
            platform, basket(ids[i], codes[i], f"O{i}"), actor="test", confirm=True
        ),
    )

    won = [o for o in outcomes if isinstance(o, dict)]
    assert len(won) == 1
    assert all(isinstance(o, LimitReached) and o.limit == "total" for o in outcomes if o not in won)
    assert coupons.get_template(platform, "ONCE")["redeemed_count"] == 1
    assert live_redemptions(platform) == 1


def test_one_code_raced_by_many_checkouts_is_held_once(shop: Shop, platform: Platform) -> None:
    coupons.create_template(
        platform,
        {"code": "CODE", "name": "code", "kind": "amount_off", "value": 1_000, "valid_days": 9},
        actor="test",
    )
    batch = coupons.issue_batch(
        platform, coupons.BatchRequest(template="CODE", request_key="k", codes=1), actor="test"
    )
    code = coupons.export_codes(platform, batch["batch_id"]).splitlines()[1].split(",")[0]

    outcomes = race(
        RACERS, lambda i: coupons.reserve(platform, basket(None, code, f"O{i}"), actor="test")
    )

    assert sum(isinstance(o, dict) for o in outcomes) == 1
    assert all(isinstance(o, dict | CouponUnavailable) for o in outcomes)
    assert live_redemptions(platform) == 1


def test_racing_checkouts_hold_the_discount_budget(shop: Shop, platform: Platform) -> None:
    ids = [shop.register(("phone", phone(i))) for i in range(RACERS)]
    coupons.create_template(
        platform,
        {
            "code": "BUDGET",
            "name": "budget",
            "kind": "amount_off",
            "value": 1_000,
            "valid_days": 9,
            "max_discount_total": 3_500,
        },
        actor="test",
    )
    coupons.issue_batch(
        platform,
        coupons.BatchRequest(template="BUDGET", request_key="k", member_ids=tuple(ids)),
        actor="test",
    )
    codes = [coupons.member_coupons(platform, m)[0]["code"] for m in ids]

    outcomes = race(
        RACERS,
        lambda i: coupons.reserve(platform, basket(ids[i], codes[i], f"O{i}"), actor="test"),
    )

    assert sum(isinstance(o, dict) for o in outcomes) == 3
    assert coupons.get_template(platform, "BUDGET")["discount_total"] == 3_000
