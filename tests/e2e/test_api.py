"""The HTTP API end to end, through FastAPI's TestClient, on SQLite and PostgreSQL.

Every 4xx answer is ``application/problem+json`` with a stable ``code``; where the
caller's input was at fault it names the ``field``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

from conftest import phone
from quanyu.clock import FixedClock
from quanyu.entrypoints.api.app import create_app
from quanyu.services import points
from quanyu.services.uow import Platform

API = "/api/v1"
PROBLEM = "application/problem+json"
PHONE = phone(1)
ORDERED_AT = "2026-03-02T10:00:00+08:00"  # the clock's now (conftest.T0)


def ok(response: Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def problem(response: Response, status: int, code: str, field: str | None = None) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"/problems/{code}"
    assert body["title"]
    assert body["detail"]
    if field is not None:
        assert body.get("field") == field, body
    return body


def order_json(external_id: str, *, paid: int = 18_000, **extra: Any) -> dict[str, Any]:
    return {
        "channel": "pos",
        "external_id": external_id,
        "ordered_at": ORDERED_AT,
        "store": "SH01",
        "identities": [{"type": "phone", "value": "+86 138 0013 0001"}],
        "lines": [{"sku": "TEE-W-M", "quantity": 2, "list_price": paid // 2, "paid_amount": paid}],
        **extra,
    }


@pytest.fixture
def api(platform: Platform) -> Iterator[TestClient]:
    with TestClient(create_app(platform)) as client:
        yield client


@pytest.fixture
def club(api: TestClient) -> None:
    """The brand set-up, made through the set-up endpoints."""
    ok(
        api.post(
            f"{API}/setup/programs",
            json={"code": "club", "name": "Club", "pending_days": 7, "tier_grace_days": 30},
        ),
        201,
    )
    ok(
        api.put(
            f"{API}/setup/programs/club/tiers",
            json=[
                {"code": "silver", "name": "Silver", "rank": 0, "threshold": 0},
                {"code": "gold", "name": "Gold", "rank": 1, "threshold": 300_000},
            ],
        )
    )
    ok(
        api.post(
            f"{API}/setup/programs/club/earn-rules",
            json={
                "effective_from": "2020-01-01T00:00:00+08:00",
                "document": {
                    "base_rate": "1",
                    "tier_multipliers": {"gold": "2"},
                    "member_days": [8],
                    "member_day_multiplier": "2",
                },
            },
        ),
        201,
    )
    ok(
        api.post(f"{API}/setup/brands", json={"code": "acme", "name": "Acme", "program": "club"}),
        201,
    )
    for code, kind in (("pos", "store_pos"), ("tmall", "tmall"), ("mini", "wechat_mini")):
        ok(api.post(f"{API}/setup/channels", json={"code": code, "name": code, "kind": kind}), 201)
    for code, city in (("SH01", "Shanghai"), ("BJ01", "Beijing")):
        store = {"code": code, "name": city, "brand": "acme", "city": city, "region": "CN"}
        ok(api.post(f"{API}/setup/stores", json=store), 201)
    ok(api.post(f"{API}/setup/guides", json={"code": "G001", "name": "Wang", "store": "SH01"}), 201)
    product = {
        "sku": "TEE-W-M",
        "brand": "acme",
        "name": "Tee",
        "style": "TEE",
        "colour": "white",
        "size": "M",
        "category": "tops",
        "list_price": 9_000,
    }
    assert ok(api.put(f"{API}/setup/products", json=[product])) == {"upserted": 1}


@pytest.fixture
def member(api: TestClient, club: None) -> int:
    body = ok(
        api.post(
            f"{API}/members",
            json={
                "identities": [{"type": "phone", "value": PHONE}],
                "store": "SH01",
                "channel": "pos",
                "guide": "G001",
                "name": "Li",
            },
        ),
        201,
    )
    return int(body["member_id"])


@pytest.fixture
def with_points(api: TestClient, member: int, clock: FixedClock) -> int:
    """The member has 180 available points (order A1, pending for 7 days, now passed)."""
    ok(api.post(f"{API}/orders", json=order_json("A1")), 201)
    clock.set(clock.now() + timedelta(days=7))
    return member


# ---------------------------------------------------------------- set-up and members


def test_set_up_endpoints_list_what_was_created(api: TestClient, club: None) -> None:
    assert [p["code"] for p in ok(api.get(f"{API}/setup/programs"))] == ["club"]
    tiers = ok(api.get(f"{API}/setup/programs/club/tiers"))
    assert [(t["code"], t["threshold"]) for t in tiers] == [("silver", 0), ("gold", 300_000)]
    [rule] = ok(api.get(f"{API}/setup/programs/club/earn-rules"))
    assert (rule["version"], rule["document"]["member_days"]) == (1, [8])
    assert ok(api.get(f"{API}/setup/brands")) == [
        {"code": "acme", "name": "Acme", "program": "club"}
    ]
    assert [c["code"] for c in ok(api.get(f"{API}/setup/channels"))] == ["mini", "pos", "tmall"]
    assert [s["code"] for s in ok(api.get(f"{API}/setup/stores"))] == ["BJ01", "SH01"]
    assert ok(api.get(f"{API}/setup/guides")) == [{"code": "G001", "name": "Wang", "store": "SH01"}]
    [product] = ok(api.get(f"{API}/setup/products"))
    assert (product["sku"], product["category"]) == ("TEE-W-M", "tops")
    assert ok(api.get("/healthz")) == {"status": "ok"}


def test_registering_answers_201_and_the_same_person_again_200(api: TestClient, club: None) -> None:
    body = {"identities": [{"type": "phone", "value": PHONE}], "store": "SH01"}

    first = ok(api.post(f"{API}/members", json=body), 201)
    body["identities"] = [{"type": "phone", "value": "+86 138-0013-0001"}]
    again = ok(api.post(f"{API}/members", json=body), 200)

    assert first["created"] is True
    assert again == {**first, "created": False}
    assert (first["program"], first["tier"]) == ("club", "silver")


@pytest.mark.parametrize("written", [PHONE, "+86 138 0013 0001", "138-0013-0001"])
def test_lookup_by_phone_in_any_format_returns_the_member(
    api: TestClient, member: int, written: str
) -> None:
    found = ok(api.get(f"{API}/members/lookup", params={"type": "phone", "value": written}))

    assert found["id"] == member
    assert found["name"] == "Li"
    [membership] = found["memberships"]
    assert (membership["store"], membership["guide"], membership["tier"]) == (
        "SH01",
        "G001",
        "silver",
    )


def test_an_unknown_member_is_a_404_problem(api: TestClient, club: None) -> None:
    body = problem(api.get(f"{API}/members/999999"), 404, "not_found")

    assert (body["entity"], body["key"]) == ("member", "999999")
    problem(api.get(f"{API}/members/999999/points"), 404, "not_found")
    problem(
        api.get(f"{API}/members/lookup", params={"type": "email", "value": "x@example.com"}),
        404,
        "not_found",
    )


def test_unknown_routes_and_methods_are_problems_too(api: TestClient) -> None:
    problem(api.get(f"{API}/nothing-here"), 404, "http_404")
    problem(api.delete(f"{API}/members/1"), 405, "http_405")


def test_member_summary_identities_and_history(api: TestClient, with_points: int) -> None:
    summary = ok(api.get(f"{API}/members/{with_points}"))
    assert summary["orders"]["count"] == 1
    assert summary["orders"]["paid_total"] == 18_000
    identities = ok(api.get(f"{API}/members/{with_points}/identities"))
    assert {i["type"] for i in identities} == {"phone", "member_card"}
    history = ok(api.get(f"{API}/members/{with_points}/history", params={"limit": 2}))
    assert [h["kind"] for h in history] == ["points_changed", "order_placed"]


# ---------------------------------------------------------------- orders and refunds


def test_an_order_earns_points_shown_in_the_balance_lots_and_entries(
    api: TestClient, member: int
) -> None:
    result = ok(api.post(f"{API}/orders", json=order_json("A1")), 201)

    assert (result["member_id"], result["points_earned"], result["replayed"]) == (
        member,
        180,
        False,
    )
    balance = ok(api.get(f"{API}/members/{member}/points"))
    assert balance == {
        "member_id": member,
        "program": "club",
        "available": 0,
        "pending": 180,
        "debt": 0,
        "expiring_soon": 0,
        "total": 180,
    }
    [lot] = ok(api.get(f"{API}/members/{member}/points/lots"))
    assert (lot["original"], lot["remaining"]) == (180, 180)
    assert lot["available_at"] == "2026-03-09T02:00:00Z"
    assert lot["expires_at"] == "2027-12-31T16:00:00Z"
    [entry] = ok(api.get(f"{API}/members/{member}/points/entries"))
    assert (entry["kind"], entry["points"], entry["lot_id"]) == ("earn", 180, lot["id"])


def test_replaying_an_order_answers_200_with_replayed_true(api: TestClient, member: int) -> None:
    first = ok(api.post(f"{API}/orders", json=order_json("A1")), 201)

    again = ok(api.post(f"{API}/orders", json=order_json("A1")), 200)

    assert again == {**first, "replayed": True}
    assert ok(api.get(f"{API}/members/{member}/points"))["total"] == 180


def test_a_conflicting_replay_is_a_409_problem_naming_the_field(
    api: TestClient, member: int
) -> None:
    ok(api.post(f"{API}/orders", json=order_json("A1")), 201)

    body = problem(
        api.post(f"{API}/orders", json=order_json("A1", paid=19_000)), 409, "idempotency_conflict"
    )

    assert body["differences"]["lines[0].paid_amount"] == {"stored": 18_000, "received": 19_000}
    assert "lines[0].paid_amount" in body["detail"]
    assert body["key"] == "order pos/A1"


def test_a_refund_claws_back_points_and_its_replay_answers_200(
    api: TestClient, member: int, platform: Platform
) -> None:
    ok(api.post(f"{API}/orders", json=order_json("A1")), 201)
    refund = {
        "channel": "pos",
        "external_id": "R1",
        "order_external_id": "A1",
        "refunded_at": "2026-03-03T10:00:00+08:00",
        "lines": [{"line_no": 1, "quantity": 1, "amount": 9_000}],
    }

    first = ok(api.post(f"{API}/refunds", json=refund), 201)
    again = ok(api.post(f"{API}/refunds", json=refund), 200)

    assert (first["points_clawed_back"], first["member_id"]) == (90, member)
    assert again == {**first, "replayed": True}
    assert ok(api.get(f"{API}/members/{member}/points"))["total"] == 90
    assert points.check_ledger(platform) == []


def test_a_points_paying_order_and_its_refund_give_the_points_back(
    api: TestClient, with_points: int, platform: Platform
) -> None:
    paying = order_json(
        "A2",
        paid=10_000,
        ordered_at="2026-03-09T10:00:00+08:00",
        payments=[
            {"method": "points", "amount": 100, "points": 100},
            {"method": "cash", "amount": 9_900},
        ],
    )
    placed = ok(api.post(f"{API}/orders", json=paying), 201)
    assert (placed["points_used"], placed["points_earned"]) == (100, 99)
    assert ok(api.get(f"{API}/members/{with_points}/points"))["available"] == 80

    refund = {
        "channel": "pos",
        "external_id": "R2",
        "order_external_id": "A2",
        "refunded_at": "2026-03-09T10:00:00+08:00",
        "lines": [{"line_no": 1, "quantity": 2, "amount": 10_000}],
    }
    result = ok(api.post(f"{API}/refunds", json=refund), 201)

    assert (result["points_restored"], result["points_clawed_back"]) == (100, 99)
    balance = ok(api.get(f"{API}/members/{with_points}/points"))
    assert (balance["available"], balance["total"]) == (180, 180)
    assert points.check_ledger(platform) == []


def test_points_beyond_the_cap_are_a_422_problem(api: TestClient, with_points: int) -> None:
    paying = order_json(
        "A2",
        paid=200,
        payments=[
            {"method": "points", "amount": 150, "points": 150},
            {"method": "cash", "amount": 50},
        ],
    )

    body = problem(api.post(f"{API}/orders", json=paying), 422, "points_payment_cap_exceeded")

    assert (body["cap"], body["requested"]) == (100, 150)


def test_the_batch_endpoint_accepts_good_items_and_reports_each_bad_one_with_its_field(
    api: TestClient, member: int, platform: Platform
) -> None:
    missing = order_json("B2")
    del missing["external_id"]
    items = [
        order_json("B1"),
        missing,
        order_json("B3", store="NOPE"),
        order_json("B4", paid=10_000),
        order_json("B1", paid=1),  # same key as item 0, another payload
    ]

    body = ok(api.post(f"{API}/orders/batch", json={"items": items}))

    assert (body["accepted"], body["rejected"]) == (2, 3)
    outcome = {i["index"]: i for i in body["items"]}
    assert [outcome[i]["ok"] for i in range(5)] == [True, False, False, True, False]
    assert outcome[1]["problem"]["field"] == "external_id"
    assert outcome[2]["problem"]["field"] == "store"
    assert outcome[4]["problem"]["code"] == "idempotency_conflict"
    assert ok(api.get(f"{API}/members/{member}/points"))["total"] == 180 + 100
    assert points.check_ledger(platform) == []


# ---------------------------------------------------------------- points and tiers


def test_a_redemption_consumes_points_and_too_many_is_an_insufficient_points_problem(
    api: TestClient, with_points: int
) -> None:
    url = f"{API}/members/{with_points}/points/redemptions"
    spent = ok(api.post(url, json={"points": 80, "reason": "mug"}), 201)
    assert spent["available"] == 100

    body = problem(api.post(url, json={"points": 101, "reason": "mug"}), 422, "insufficient_points")

    assert (body["requested"], body["available"]) == (101, 100)
    assert ok(api.get(f"{API}/members/{with_points}/points"))["available"] == 100


@pytest.mark.parametrize(
    "body", [{"points": 50}, {"points": 50, "reason": ""}, {"points": 50, "reason": "  "}]
)
def test_an_adjustment_without_a_reason_is_a_422_problem_naming_reason(
    api: TestClient, member: int, body: dict[str, Any]
) -> None:
    response = api.post(f"{API}/members/{member}/points/adjustments", json=body)

    problem(response, 422, "validation_failed", field="reason")
    assert ok(api.get(f"{API}/members/{member}/points"))["total"] == 0


def test_an_adjustment_records_who_made_it(api: TestClient, member: int) -> None:
    made = ok(
        api.post(
            f"{API}/members/{member}/points/adjustments",
            json={"points": 50, "reason": "complaint"},
            headers={"X-Quanyu-Actor": "staff:li"},
        ),
        201,
    )

    assert made["available"] == 50
    [entry] = ok(api.get(f"{API}/members/{member}/points/entries"))
    assert (entry["kind"], entry["actor"], entry["reason"]) == (
        "adjust",
        "api:staff:li",
        "complaint",
    )


def test_tier_current_history_and_projection(api: TestClient, member: int) -> None:
    ok(api.post(f"{API}/orders", json=order_json("BIG", paid=300_000)), 201)

    current = ok(api.get(f"{API}/members/{member}/tier"))
    assert (current["tier"], current["qualifying_value"], current["review_on"]) == (
        "gold",
        300_000,
        "2027-03-02",
    )
    [change] = ok(api.get(f"{API}/members/{member}/tier/history"))
    assert (change["from_tier"], change["to_tier"]) == ("silver", "gold")
    projection = ok(api.get(f"{API}/members/{member}/tier/projection", params={"by": "2026-12-31"}))
    assert projection["by"] == "2026-12-31"
    assert [(p["tier"], p["needed"], p["goal"]) for p in projection["tiers"]] == [
        ("silver", 0, "below"),
        ("gold", 0, "keep"),
    ]
    default = ok(api.get(f"{API}/members/{member}/tier/projection"))
    assert date.fromisoformat(default["by"]) == date(2027, 3, 2) + timedelta(days=30)  # + grace


# ---------------------------------------------------------------- every client error


CASES: list[tuple[str, str, str, dict[str, Any] | None, int, str, str]] = [
    # (name, method, path, json, status, code, field)
    (
        "no identities",
        "POST",
        "/members",
        {"identities": []},
        422,
        "validation_failed",
        "identities",
    ),
    (
        "bad phone",
        "POST",
        "/members",
        {"identities": [{"type": "phone", "value": "123"}]},
        422,
        "validation_failed",
        "identities[0].value",
    ),
    (
        "unknown identity type",
        "POST",
        "/members",
        {"identities": [{"type": "fax", "value": "123"}]},
        422,
        "validation_failed",
        "identities[0].type",
    ),
    (
        "unexpected field",
        "POST",
        "/members",
        {"identities": [{"type": "phone", "value": PHONE}], "vip": True},
        422,
        "validation_failed",
        "vip",
    ),
    (
        "unknown store at registration",
        "POST",
        "/members",
        {"identities": [{"type": "phone", "value": PHONE}], "store": "NOPE"},
        422,
        "validation_failed",
        "store",
    ),
    (
        "naive timestamp",
        "POST",
        "/orders",
        order_json("X", ordered_at="2026-03-02T10:00:00"),
        422,
        "validation_failed",
        "ordered_at",
    ),
    ("no lines", "POST", "/orders", order_json("X", lines=[]), 422, "validation_failed", "lines"),
    (
        "zero quantity",
        "POST",
        "/orders",
        order_json("X", lines=[{"sku": "S", "quantity": 0, "list_price": 1, "paid_amount": 1}]),
        422,
        "validation_failed",
        "lines[0].quantity",
    ),
    (
        "unknown store",
        "POST",
        "/orders",
        order_json("X", store="NOPE"),
        422,
        "validation_failed",
        "store",
    ),
    (
        "unknown channel",
        "POST",
        "/orders",
        order_json("X", channel="fax"),
        422,
        "validation_failed",
        "channel",
    ),
    (
        "payments not adding up",
        "POST",
        "/orders",
        order_json("X", payments=[{"method": "cash", "amount": 1}]),
        422,
        "validation_failed",
        "payments",
    ),
    (
        "points from a non-member",
        "POST",
        "/orders",
        order_json(
            "X",
            identities=[{"type": "email", "value": "new@example.com"}],
            payments=[
                {"method": "points", "amount": 100, "points": 100},
                {"method": "cash", "amount": 17_900},
            ],
        ),
        422,
        "validation_failed",
        "payments",
    ),
    (
        "refund of an unknown order",
        "POST",
        "/refunds",
        {
            "channel": "pos",
            "external_id": "R9",
            "order_external_id": "NOPE",
            "refunded_at": ORDERED_AT,
            "lines": [{"line_no": 1, "amount": 1}],
        },
        422,
        "validation_failed",
        "order_external_id",
    ),
    (
        "refund beyond the order",
        "POST",
        "/refunds",
        {
            "channel": "pos",
            "external_id": "R9",
            "order_external_id": "A1",
            "refunded_at": ORDERED_AT,
            "lines": [{"line_no": 1, "amount": 18_001}],
        },
        422,
        "refund_exceeds_order",
        "lines[0].amount",
    ),
    (
        "bad lookup phone",
        "GET",
        "/members/lookup?type=phone&value=123",
        None,
        422,
        "validation_failed",
        "identity.value",
    ),
    (
        "lookup without value",
        "GET",
        "/members/lookup?type=phone",
        None,
        422,
        "validation_failed",
        "value",
    ),
    ("member id not a number", "GET", "/members/abc", None, 422, "validation_failed", "member_id"),
    (
        "limit out of range",
        "GET",
        "/members/{member}/history?limit=0",
        None,
        422,
        "validation_failed",
        "limit",
    ),
    (
        "redeem zero points",
        "POST",
        "/members/{member}/points/redemptions",
        {"points": 0, "reason": "x"},
        422,
        "validation_failed",
        "points",
    ),
    (
        "unknown program",
        "GET",
        "/members/{member}/points?program=nope",
        None,
        422,
        "validation_failed",
        "program",
    ),
    (
        "unknown channel kind",
        "POST",
        "/setup/channels",
        {"code": "x", "name": "X", "kind": "fax"},
        422,
        "validation_failed",
        "kind",
    ),
    (
        "channel code taken",
        "POST",
        "/setup/channels",
        {"code": "pos", "name": "POS", "kind": "store_pos"},
        409,
        "already_exists",
        "code",
    ),
    (
        "bad expiry kind",
        "POST",
        "/setup/programs",
        {"code": "p2", "name": "P2", "expiry_kind": "sometimes"},
        422,
        "validation_failed",
        "expiry_kind",
    ),
    (
        "tiers out of order",
        "PUT",
        "/setup/programs/club/tiers",
        [
            {"code": "silver", "name": "S", "rank": 0, "threshold": 10},
            {"code": "gold", "name": "G", "rank": 1, "threshold": 5},
        ],
        422,
        "validation_failed",
        "tiers",
    ),
    (
        "bad member day",
        "POST",
        "/setup/programs/club/earn-rules",
        {"effective_from": ORDERED_AT, "document": {"member_days": [32]}},
        422,
        "validation_failed",
        "member_days",
    ),
    (
        "store of an unknown brand",
        "POST",
        "/setup/stores",
        {"code": "X1", "name": "X", "brand": "nope", "city": "C", "region": "R"},
        422,
        "validation_failed",
        "brand",
    ),
]


def test_every_client_error_is_a_problem_naming_the_field_at_fault(
    api: TestClient, with_points: int, subtests: pytest.Subtests
) -> None:
    for name, method, path, body, status, code, field in CASES:
        with subtests.test(msg=name):
            response = api.request(method, API + path.format(member=with_points), json=body)
            problem(response, status, code, field=field)


def test_an_overlong_actor_header_is_a_problem_naming_the_header(
    api: TestClient, member: int
) -> None:
    response = api.post(
        f"{API}/members/{member}/points/adjustments",
        json={"points": 1, "reason": "x"},
        headers={"X-Quanyu-Actor": "a" * 201},
    )

    problem(response, 422, "validation_failed", field="x-quanyu-actor")


def test_a_body_that_is_not_json_is_a_problem_naming_the_body(api: TestClient, club: None) -> None:
    response = api.post(
        f"{API}/members",
        content=b'{"identities": [',
        headers={"content-type": "application/json"},
    )

    problem(response, 422, "validation_failed", field="body")
