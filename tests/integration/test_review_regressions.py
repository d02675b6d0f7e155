"""Regression tests for the findings of the code review, on SQLite and PostgreSQL.

Each test names the rule a finding broke: merges that absorb several profiles at once,
orders dated away from the clock spending points, timestamps and set-up values the
platform cannot use, member numbers in the issued form, refund keys repeated in one
batch or reused for another order, the points tier metric across merges and refunds,
late orders, the tier projection's default date, and API input beyond the store's limits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date, timedelta
from typing import Any, TypeVar

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import select

from conftest import T0, Brand, Shop, local, phone
from quanyu.adapters import tables as t
from quanyu.domain.errors import (
    IdempotencyConflict,
    InsufficientPoints,
    NotFound,
    ValidationFailed,
)
from quanyu.domain.orders import IdentityInput, RefundInput, RefundLineInput
from quanyu.entrypoints.api.app import create_app
from quanyu.services import members, orders, points, setup, tiers
from quanyu.services.uow import Platform

API = "/api/v1"
PROBLEM = "application/problem+json"
PHONE = ("phone", phone(1))
ORDERED_AT = "2026-03-02T10:00:00+08:00"  # the clock's now (conftest.T0)
R = TypeVar("R")


@pytest.fixture
def api(platform: Platform, brand: Brand) -> Iterator[TestClient]:
    """The HTTP API over the brand set-up made by the ``brand`` fixture."""
    with TestClient(create_app(platform)) as client:
        yield client


def ok(response: Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def problem(response: Response, status: int, code: str, field: str | None = None) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert (body["status"], body["code"]) == (status, code), body
    if field is not None:
        assert body.get("field") == field, body
    return body


def order_json(
    external_id: str,
    *,
    paid: int = 10_000,
    ordered_at: str = ORDERED_AT,
    payments: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "channel": "pos",
        "external_id": external_id,
        "ordered_at": ordered_at,
        "store": "SH01",
        "identities": [{"type": "phone", "value": phone(1)}],
        "lines": [{"sku": "TEE-W-M", "quantity": 1, "list_price": paid, "paid_amount": paid}],
        **({"payments": payments} if payments is not None else {}),
        **extra,
    }


def within(seconds: float, call: Callable[[], R]) -> R:
    """``call()``'s result, failing the test (not hanging it) if it takes longer."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the test's thread below
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"no answer within {seconds} seconds"
    if "error" in box:
        raise box["error"]
    value: R = box["value"]
    return value


def register_in(platform: Platform, program: str, *identities: tuple[str, str]) -> int:
    reg = members.Registration(
        identities=tuple(IdentityInput(*i) for i in identities), program=program
    )
    return int(members.register(platform, reg, actor="test")["member_id"])


def memberships_of(platform: Platform) -> list[Any]:
    with platform.engine.connect() as conn:
        return list(conn.execute(select(t.memberships).order_by(t.memberships.c.id)))


# ---------------------------------------------------------------- merges of several profiles


def _three_members(shop: Shop) -> tuple[int, int, int]:
    """S registered first (the survivor of any merge), then A1, then A2."""
    s = shop.register(("phone", phone(3)))
    shop.later(minutes=1)
    a1 = shop.register(("phone", phone(1)))
    shop.later(minutes=1)
    a2 = shop.register(("phone", phone(2)))
    return s, a1, a2


def _merge_all_three(shop: Shop) -> dict[str, Any]:
    return shop.order("X", ("phone", phone(1)), ("phone", phone(2)), ("phone", phone(3)), paid=100)


def test_a_merge_absorbing_two_profiles_carries_both_debts_to_the_survivor(
    shop: Shop, platform: Platform
) -> None:
    s, a1, a2 = _three_members(shop)
    shop.order("A1", ("phone", phone(1)), paid=10_000)  # 100 points
    shop.order("A2", ("phone", phone(2)), paid=5_000)  # 50 points
    shop.later(days=8)
    points.spend(platform, a1, points=100, reason="gift", actor="test")
    points.spend(platform, a2, points=50, reason="gift", actor="test")
    shop.refund("R1", "A1", amount=10_000)
    shop.refund("R2", "A2", amount=5_000)
    assert (shop.balance(a1)["debt"], shop.balance(a2)["debt"]) == (100, 50)

    merged = _merge_all_three(shop)

    assert merged["member_id"] == s
    balance = shop.balance(s)
    # The merging order's own points settle part of the carried debt.
    assert balance["debt"] == 100 + 50 - merged["points_earned"]
    assert balance["total"] == -balance["debt"]
    assert points.balance(platform, a1) == balance
    assert points.balance(platform, a2) == balance
    assert sum(m.debt_points for m in memberships_of(platform)) == balance["debt"]
    assert len(members.merges_of(platform, s)) == 2
    assert points.check_ledger(platform) == []


def test_a_merge_absorbing_two_profiles_keeps_the_highest_tier_among_them(
    shop: Shop, brand: Brand, platform: Platform
) -> None:
    s, _a1, _a2 = _three_members(shop)
    assert shop.order("A1", ("phone", phone(1)), paid=brand.platinum_threshold)["tier"] == (
        "platinum"
    )
    shop.refund("R1", "A1", amount=brand.platinum_threshold)  # the tier stays until review
    assert shop.order("A2", ("phone", phone(2)), paid=brand.gold_threshold)["tier"] == "gold"

    merged = _merge_all_three(shop)

    assert merged["tier"] == "platinum"
    assert tiers.current(platform, s)["tier"] == "platinum"
    assert points.check_ledger(platform) == []


def test_a_merge_absorbing_two_members_of_a_program_the_survivor_lacks_succeeds(
    shop: Shop, platform: Platform
) -> None:
    setup.create_program(platform, {"code": "p2", "name": "Second club"})
    setup.set_tiers(
        platform, "p2", [{"code": "member", "name": "Member", "rank": 0, "threshold": 0}]
    )
    setup.create_brand(platform, code="other", name="Other", program="p2")
    s = shop.register(("phone", phone(3)))
    shop.later(minutes=1)
    register_in(platform, "p2", ("phone", phone(1)))
    register_in(platform, "p2", ("phone", phone(2)))

    merged = _merge_all_three(shop)

    assert merged["member_id"] == s
    summary = members.summary(platform, s)
    assert sorted(m["program"] for m in summary["memberships"]) == ["club", "p2"]
    active = [m for m in memberships_of(platform) if m.status == "active"]
    assert sorted((m.profile_id, m.program_id) for m in active) == sorted(
        {(m.profile_id, m.program_id) for m in active}
    )
    assert len(active) == 2
    assert len(members.merges_of(platform, s)) == 2
    assert points.check_ledger(platform) == []


# ---------------------------------------------------------------- orders dated away from now


def test_a_back_dated_order_cannot_spend_points_that_have_expired_by_now(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    shop.order("A1", PHONE, paid=10_000)  # 100 points, expiring at the end of 2027
    shop.at(local(2028, 1, 5))  # expired, but the expiry job has not run
    before = shop.balance(member_id)

    with pytest.raises(InsufficientPoints) as caught:
        shop.order("A2", PHONE, paid=20_000, points=100, at=local(2027, 12, 30))

    assert caught.value.fields["field"] == "payments"
    assert caught.value.available == 0
    assert shop.balance(member_id) == before
    assert points.check_ledger(platform) == []


def test_an_order_dated_more_than_an_hour_ahead_of_the_clock_is_rejected(
    shop: Shop, platform: Platform
) -> None:
    shop.register(PHONE)
    now = shop.clock.now()
    ahead = shop.order_input("F1", PHONE, at=now + timedelta(hours=1, minutes=1))

    with pytest.raises(ValidationFailed) as caught:
        orders.ingest_order(platform, ahead, actor="test")

    assert caught.value.field == "ordered_at"
    slightly_ahead = shop.order_input("F2", PHONE, at=now + timedelta(minutes=59))
    assert orders.ingest_order(platform, slightly_ahead, actor="test")["replayed"] is False


def test_an_order_dated_now_cannot_spend_points_pending_until_tomorrow(shop: Shop) -> None:
    member_id = shop.register(PHONE)
    shop.order("A1", PHONE, paid=10_000)  # 100 points, pending for 7 days
    shop.later(days=6)

    with pytest.raises(InsufficientPoints) as caught:
        shop.order("A2", PHONE, paid=20_000, points=100)

    assert caught.value.fields["field"] == "payments"
    assert shop.balance(member_id)["pending"] == 100


def test_an_order_dated_a_little_ahead_cannot_spend_points_still_pending_now(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    shop.order("A1", PHONE, paid=10_000)  # available at T0 + 7 days
    shop.at(T0 + timedelta(days=7) - timedelta(minutes=15))
    ahead = shop.order_input(
        "A2", PHONE, paid=20_000, points=100, at=T0 + timedelta(days=7, minutes=15)
    )

    with pytest.raises(InsufficientPoints) as caught:
        orders.ingest_order(platform, ahead, actor="test")

    assert caught.value.fields["field"] == "payments"
    assert shop.balance(member_id)["pending"] == 100
    assert points.check_ledger(platform) == []


# ---------------------------------------------------------------- timestamps the API refuses


def test_registering_with_a_registered_at_in_year_9999_is_a_prompt_422(api: TestClient) -> None:
    body = {
        "identities": [{"type": "phone", "value": phone(9)}],
        "program": "club",
        "registered_at": "9999-06-01T00:00:00+00:00",
    }

    response = within(20, lambda: api.post(f"{API}/members", json=body))

    problem(response, 422, "validation_failed", "registered_at")
    ok(api.post(f"{API}/members", json={**body, "registered_at": None}), 201)


@pytest.mark.parametrize("ordered_at", ["0001-01-01T12:00:00+00:00", "9999-12-31T23:00:00-05:00"])
def test_an_order_dated_outside_the_supported_years_is_a_422_naming_ordered_at(
    api: TestClient, shop: Shop, ordered_at: str
) -> None:
    shop.register(PHONE)

    response = api.post(f"{API}/orders", json=order_json("Y1", ordered_at=ordered_at))

    problem(response, 422, "validation_failed", "ordered_at")


# ---------------------------------------------------------------- program set-up


def test_a_program_with_an_unknown_time_zone_is_a_422_and_the_api_keeps_working(
    api: TestClient, shop: Shop
) -> None:
    member_id = shop.register(PHONE)

    response = api.post(
        f"{API}/setup/programs", json={"code": "p2", "name": "P2", "timezone": "Mars/Olympus"}
    )

    problem(response, 422, "validation_failed", "timezone")
    assert [p["code"] for p in ok(api.get(f"{API}/setup/programs"))] == ["club"]
    assert ok(api.post(f"{API}/orders", json=order_json("Z1")), 201)["member_id"] == member_id
    assert ok(api.get(f"{API}/members/{member_id}/points"))["pending"] == 100


def test_a_fixed_review_date_that_is_no_day_of_the_year_is_a_422_on_create_and_on_patch(
    api: TestClient, shop: Shop
) -> None:
    member_id = shop.register(PHONE)
    fixed = {"tier_review": "fixed_date", "tier_review_month": 2}

    problem(
        api.post(
            f"{API}/setup/programs",
            json={"code": "p3", "name": "P3", **fixed, "tier_review_day": 30},
        ),
        422,
        "validation_failed",
        "tier_review_day",
    )
    problem(
        api.patch(f"{API}/setup/programs/club", json={**fixed, "tier_review_day": 30}),
        422,
        "validation_failed",
        "tier_review_day",
    )
    # A leap day is a day of the year; a patch is checked against the program as a whole.
    ok(
        api.post(
            f"{API}/setup/programs",
            json={"code": "p4", "name": "P4", **fixed, "tier_review_day": 29},
        ),
        201,
    )
    problem(
        api.patch(f"{API}/setup/programs/p4", json={"tier_review_day": 30}),
        422,
        "validation_failed",
        "tier_review_day",
    )
    programs = {p["code"]: p for p in ok(api.get(f"{API}/setup/programs"))}
    assert sorted(programs) == ["club", "p4"]
    assert programs["club"]["tier_review"] == "anniversary"
    assert programs["p4"]["tier_review_day"] == 29
    assert ok(api.post(f"{API}/orders", json=order_json("Z1")), 201)["member_id"] == member_id


# ---------------------------------------------------------------- member numbers


@pytest.mark.parametrize("member_no", ["CLUB000000002", "club000000002"])
def test_registering_with_an_unissued_number_of_the_issued_form_is_a_422(
    api: TestClient, member_no: str
) -> None:
    body = {"identities": [{"type": "phone", "value": phone(1)}], "program": "club"}

    problem(
        api.post(f"{API}/members", json={**body, "member_no": member_no}),
        422,
        "validation_failed",
        "member_no",
    )

    numbers = []
    for n in (1, 2, 3):
        body["identities"] = [{"type": "phone", "value": phone(n)}]
        numbers.append(ok(api.post(f"{API}/members", json=body), 201)["member_no"])
    assert len(set(numbers)) == 3


@pytest.mark.parametrize("card", ["CLUB000000099", "club000000002"])
def test_an_order_with_a_member_card_nobody_holds_is_rejected_and_registration_goes_on(
    shop: Shop, platform: Platform, card: str
) -> None:
    first = shop.register(PHONE)

    with pytest.raises(ValidationFailed) as caught:
        shop.order("C1", ("member_card", card), paid=100)

    assert caught.value.field == "identities"
    with pytest.raises(NotFound):
        members.lookup(platform, "member_card", card)
    later = [shop.register(("phone", phone(n))) for n in (2, 3)]
    numbers = {members.summary(platform, m)["memberships"][0]["member_no"] for m in (first, *later)}
    assert len(numbers) == 3


# ---------------------------------------------------------------- refund keys


def _refund(amount: int) -> RefundInput:
    return RefundInput(
        channel="pos",
        external_id="R1",
        order_external_id="A1",
        refunded_at=T0,
        lines=(RefundLineInput(1, 0, amount),),
    )


def test_an_identical_refund_repeated_in_one_batch_is_a_replay(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    shop.order("A1", PHONE, paid=10_000)

    first, again = orders.ingest_refunds(platform, [_refund(1_000), _refund(1_000)], actor="test")

    assert isinstance(first, dict)
    assert first["replayed"] is False
    assert again == {**first, "replayed": True}
    assert shop.total(member_id) == 100 - 10
    assert points.check_ledger(platform) == []


def test_a_different_refund_under_the_same_key_in_one_batch_is_an_idempotency_conflict(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    shop.order("A1", PHONE, paid=10_000)

    first, second = orders.ingest_refunds(platform, [_refund(1_000), _refund(2_000)], actor="test")

    assert isinstance(first, dict)
    assert first["replayed"] is False
    assert isinstance(second, IdempotencyConflict)
    assert "lines[0].amount" in second.fields["differences"]
    assert shop.total(member_id) == 100 - 10
    assert points.check_ledger(platform) == []


def test_a_refund_replay_naming_another_order_channel_is_a_409(
    api: TestClient, shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    shop.order("SAME", PHONE, paid=10_000, channel="pos")
    shop.order("SAME", PHONE, paid=20_000, channel="tmall")
    refund = {
        "channel": "pos",
        "external_id": "R1",
        "order_external_id": "SAME",
        "order_channel": "tmall",
        "refunded_at": ORDERED_AT,
        "lines": [{"line_no": 1, "amount": 1_000}],
    }
    ok(api.post(f"{API}/refunds", json=refund), 201)

    body = problem(
        api.post(f"{API}/refunds", json={**refund, "order_channel": "pos"}),
        409,
        "idempotency_conflict",
    )

    assert "order_channel" in body["differences"]
    assert members.summary(platform, member_id)["orders"]["refunded_total"] == 1_000
    assert points.check_ledger(platform) == []


def test_a_refund_replay_naming_another_order_channel_is_an_idempotency_conflict(
    shop: Shop, platform: Platform
) -> None:
    shop.register(PHONE)
    shop.order("SAME", PHONE, paid=10_000, channel="pos")
    shop.order("SAME", PHONE, paid=20_000, channel="tmall")
    refund = RefundInput(
        channel="pos",
        external_id="R1",
        order_external_id="SAME",
        refunded_at=T0,
        lines=(RefundLineInput(1, 0, 1_000),),
    )
    first = orders.ingest_refund(platform, replace(refund, order_channel="tmall"), actor="test")

    with pytest.raises(IdempotencyConflict) as caught:
        orders.ingest_refund(platform, replace(refund, order_channel="pos"), actor="test")

    assert "order_channel" in caught.value.fields["differences"]
    again = orders.ingest_refund(platform, replace(refund, order_channel="tmall"), actor="test")
    assert again == {**first, "replayed": True}
    assert points.check_ledger(platform) == []


# ---------------------------------------------------------------- tiers


@pytest.fixture
def points_metric(platform: Platform, brand: Brand) -> None:
    """The club qualifies on points earned: gold from 3,000 points, platinum from 10,000."""
    setup.update_program(platform, brand.program, {"tier_metric": "points"})
    setup.set_tiers(
        platform,
        brand.program,
        [
            {"code": "silver", "name": "Silver", "rank": 0, "threshold": 0},
            {"code": "gold", "name": "Gold", "rank": 1, "threshold": 3_000},
            {"code": "platinum", "name": "Platinum", "rank": 2, "threshold": 10_000},
        ],
    )


def _merge_points_earners(shop: Shop) -> tuple[int, dict[str, Any]]:
    """S earned 1,500 points and A (registered later) 2,000; an order then merges them."""
    s = shop.register(("phone", phone(3)))
    shop.later(minutes=1)
    a = shop.register(PHONE)
    assert shop.order("A", PHONE, paid=200_000)["points_earned"] == 2_000
    assert shop.order("S", ("phone", phone(3)), paid=150_000)["points_earned"] == 1_500
    merged = shop.order("X", PHONE, ("phone", phone(3)), paid=100)
    assert merged["member_id"] == s != a
    return s, merged


def test_after_a_merge_the_points_metric_counts_the_absorbed_profiles_points(
    shop: Shop, platform: Platform, points_metric: None
) -> None:
    s, merged = _merge_points_earners(shop)

    current = tiers.current(platform, s)

    assert current["qualifying_value"] == 2_000 + 1_500 + merged["points_earned"]
    assert (merged["tier"], current["tier"]) == ("gold", "gold")


def test_refunding_the_absorbed_profiles_order_takes_back_only_its_own_points(
    shop: Shop, platform: Platform, points_metric: None
) -> None:
    s, merged = _merge_points_earners(shop)

    refund = shop.refund("RA", "A", amount=200_000)

    assert refund["points_clawed_back"] == 2_000
    assert tiers.current(platform, s)["qualifying_value"] == 1_500 + merged["points_earned"]
    assert points.check_ledger(platform) == []


def test_a_late_order_completing_todays_qualification_upgrades_at_once(
    shop: Shop, brand: Brand, platform: Platform
) -> None:
    member_id = shop.register(PHONE, at=local(2026, 2, 1))
    assert shop.order("TODAY", PHONE, paid=200_000)["tier"] == "silver"

    late = shop.order("LAST-WEEK", PHONE, paid=150_000, at=local(2026, 2, 24))

    assert late["tier"] == "gold"
    current = tiers.current(platform, member_id)
    assert (current["tier"], current["qualifying_value"]) == ("gold", 350_000)
    assert current["qualifying_value"] >= brand.gold_threshold


@pytest.mark.parametrize(
    ("second_order_on", "keeps_gold"),
    [
        pytest.param(date(2026, 3, 20), False, id="spend-leaves-the-window-during-grace"),
        pytest.param(date(2026, 6, 1), True, id="spend-still-in-the-window"),
    ],
)
def test_the_default_projection_judges_on_the_day_the_review_does(
    shop: Shop,
    brand: Brand,
    platform: Platform,
    second_order_on: date,
    keeps_gold: bool,
) -> None:
    member_id = shop.register(PHONE)
    assert shop.order("O1", PHONE, paid=brand.gold_threshold)["tier"] == "gold"
    review_on = tiers.current(platform, member_id)["review_on"]
    assert review_on == date(2027, 3, 2)
    day = second_order_on
    shop.order("O2", PHONE, paid=brand.gold_threshold, at=local(day.year, day.month, day.day))
    shop.at(local(2027, 2, 1))

    projection = tiers.projection(platform, member_id)

    by = review_on + timedelta(days=30)  # the review date plus the grace days
    assert projection["by"] == by
    gold = next(p for p in projection["tiers"] if p["tier"] == "gold")
    assert (gold["goal"], gold["reached"]) == ("keep", keeps_gold)
    shop.at(local(by.year, by.month, by.day))
    counts = tiers.review_due_tiers(platform)
    assert counts["reviewed"] == 1
    assert counts["kept" if keeps_gold else "downgraded"] == 1
    assert tiers.current(platform, member_id)["tier"] == ("gold" if keeps_gold else "silver")


# ---------------------------------------------------------------- API input


def test_a_payment_method_other_than_points_cannot_carry_points(
    api: TestClient, shop: Shop
) -> None:
    member_id = shop.register(PHONE)
    shop.order("A1", PHONE, paid=10_000)
    shop.later(days=8)
    payments = [
        {"method": "Points", "amount": 50, "points": 50},
        {"method": "cash", "amount": 9_950},
    ]

    response = api.post(f"{API}/orders", json=order_json("A2", payments=payments))

    problem(response, 422, "validation_failed", "payments[0].method")
    assert shop.balance(member_id)["available"] == 100


def test_an_orders_points_payment_beyond_the_balance_is_a_problem_naming_payments(
    api: TestClient, shop: Shop
) -> None:
    member_id = shop.register(PHONE)
    payments = [
        {"method": "points", "amount": 50, "points": 50},
        {"method": "cash", "amount": 9_950},
    ]

    response = api.post(f"{API}/orders", json=order_json("A1", payments=payments))

    body = problem(response, 422, "insufficient_points", "payments")
    assert (body["requested"], body["available"]) == (50, 0)
    assert shop.total(member_id) == 0


def test_an_order_naming_another_brand_than_its_stores_is_a_422_naming_brand(
    api: TestClient, shop: Shop, platform: Platform, brand: Brand
) -> None:
    setup.create_brand(platform, code="other", name="Other", program=brand.program)
    member_id = shop.register(PHONE)

    response = api.post(f"{API}/orders", json=order_json("A1", brand="other"))

    problem(response, 422, "validation_failed", "brand")
    assert members.summary(platform, member_id)["orders"]["count"] == 0
    ok(api.post(f"{API}/orders", json=order_json("A1", brand=brand.brand)), 201)


def test_ids_beyond_the_database_integer_range_are_422_not_500(api: TestClient, shop: Shop) -> None:
    member_id = shop.register(PHONE)
    huge = "99999999999999999999"

    problem(api.get(f"{API}/members/{huge}"), 422, "validation_failed", "member_id")
    problem(api.get(f"{API}/merges/{huge}"), 422, "validation_failed", "merge_id")
    for path in ("history", "points/entries"):
        problem(
            api.get(f"{API}/members/{member_id}/{path}", params={"before_id": huge}),
            422,
            "validation_failed",
            "before_id",
        )


def test_an_actor_header_longer_than_190_characters_is_a_422(api: TestClient, shop: Shop) -> None:
    member_id = shop.register(PHONE)
    url = f"{API}/members/{member_id}/points/adjustments"
    body = {"points": 5, "reason": "goodwill"}

    problem(
        api.post(url, json=body, headers={"X-Quanyu-Actor": "a" * 195}),
        422,
        "validation_failed",
        "x-quanyu-actor",
    )

    ok(api.post(url, json=body, headers={"X-Quanyu-Actor": "a" * 190}), 201)
    [entry] = points.entries(shop.platform, member_id)
    assert entry["actor"] == "api:" + "a" * 190


def test_registering_with_twenty_long_identities_keeps_the_history_summary_in_bounds(
    api: TestClient, shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    emails = [f"{'x' * 60}{i}@example.com" for i in range(19)]
    identities = [{"type": "phone", "value": phone(1)}] + [
        {"type": "email", "value": e} for e in emails
    ]

    again = ok(api.post(f"{API}/members", json={"identities": identities}), 200)

    assert (again["member_id"], again["created"]) == (member_id, False)
    assert members.lookup(platform, "email", emails[-1]) == member_id
    linked = [
        h for h in members.member_history(platform, member_id) if h["kind"] == "identity_linked"
    ]
    assert [len(h["summary"]) for h in linked] == [500]
    fresh = [{"type": "phone", "value": phone(2)}] + [
        {"type": "email", "value": f"{'y' * 60}{i}@example.com"} for i in range(19)
    ]
    assert ok(api.post(f"{API}/members", json={"identities": fresh}), 201)["created"] is True


def test_an_email_longer_than_255_characters_once_case_folded_is_a_422(
    api: TestClient, platform: Platform
) -> None:
    email = "ß" * 130 + "@example.com"
    assert len(email) <= 255 < len(email.casefold())

    response = api.post(f"{API}/members", json={"identities": [{"type": "email", "value": email}]})

    problem(response, 422, "validation_failed", "identities[0].value")
    assert memberships_of(platform) == []
