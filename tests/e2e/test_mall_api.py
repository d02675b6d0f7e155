"""The points mall over HTTP: catalogue, windows, redemptions, fulfilment; errors as
problem+json."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from test_api import API, ok, problem

from conftest import Brand, Shop, local, phone
from quanyu.entrypoints.api.app import create_app
from quanyu.services import points
from quanyu.services.uow import Platform

PHONE = ("phone", phone(1))


@pytest.fixture
def api(platform: Platform, brand: Brand) -> Iterator[TestClient]:
    with TestClient(create_app(platform)) as client:
        yield client


@pytest.fixture
def member(shop: Shop, platform: Platform) -> int:
    """A member with 500 available points."""
    member_id = shop.register(PHONE)
    points.adjust(platform, member_id, points=500, reason="welcome", actor="test")
    return member_id


MUG = {"code": "MUG", "name": "Mug", "kind": "physical", "points_price": 200, "stock": 2}


def redeem(api: TestClient, member_id: int, key: str, **extra: Any) -> Response:
    body = {"reward": "MUG", "quantity": 1, "request_key": key, **extra}
    return api.post(f"{API}/members/{member_id}/mall/redemptions", json=body)


def test_the_catalogue_and_windows_are_managed_over_http(api: TestClient) -> None:
    created = ok(api.post(f"{API}/mall/rewards", json=MUG), 201)
    assert (created["program"], created["stock"], created["status"]) == ("club", 2, "active")

    patched = ok(api.patch(f"{API}/mall/rewards/MUG", json={"stock": None, "cash_price": 990}))
    assert (patched["stock"], patched["cash_price"], patched["points_price"]) == (None, 990, 200)
    assert [r["code"] for r in ok(api.get(f"{API}/mall/rewards", params={"status": "active"}))] == [
        "MUG"
    ]

    window = ok(
        api.post(
            f"{API}/mall/windows",
            json={
                "name": "thank-you month",
                "starts_at": "2026-04-01T00:00:00+08:00",
                "ends_at": "2026-05-01T00:00:00+08:00",
            },
        ),
        201,
    )
    assert [w["id"] for w in ok(api.get(f"{API}/mall/windows"))] == [window["id"]]
    deleted = api.delete(f"{API}/mall/windows/{window['id']}")
    assert (deleted.status_code, deleted.content) == (204, b"")
    problem(api.delete(f"{API}/mall/windows/{window['id']}"), 404, "not_found")
    problem(api.patch(f"{API}/mall/rewards/NOPE", json={"name": "x"}), 404, "not_found")
    problem(api.post(f"{API}/mall/rewards", json=MUG), 409, "already_exists", "code")


def test_redeeming_answers_201_and_a_retry_200_with_the_same_body(
    api: TestClient, member: int, shop: Shop
) -> None:
    ok(api.post(f"{API}/mall/rewards", json=MUG), 201)

    first = ok(redeem(api, member, "K1"), 201)
    again = ok(redeem(api, member, "K1"), 200)

    assert again == {**first, "replayed": True}
    assert (first["status"], first["points"], first["member_id"]) == ("placed", 200, member)
    assert shop.available(member) == 300
    listed = ok(api.get(f"{API}/members/{member}/mall/redemptions"))
    assert [r["redemption_id"] for r in listed] == [first["redemption_id"]]


def test_a_failed_fulfilment_gives_the_points_back_and_cannot_then_be_fulfilled(
    api: TestClient, member: int, shop: Shop, platform: Platform
) -> None:
    ok(api.post(f"{API}/mall/rewards", json=MUG), 201)
    placed = ok(redeem(api, member, "K1"), 201)
    rid = placed["redemption_id"]

    failed = ok(api.post(f"{API}/mall/redemptions/{rid}/fail", json={"reason": "broken"}))

    assert (failed["status"], sum(r["points"] for r in failed["restored"])) == ("reversed", 200)
    assert ok(api.post(f"{API}/mall/redemptions/{rid}/fail", json={"reason": "again"})) == failed
    assert shop.available(member) == 500
    problem(api.post(f"{API}/mall/redemptions/{rid}/fulfil"), 409, "conflict")
    assert points.check_ledger(platform) == []


def test_fulfilling_answers_the_redemption_fulfilled(api: TestClient, member: int) -> None:
    ok(api.post(f"{API}/mall/rewards", json=MUG), 201)
    rid = ok(redeem(api, member, "K1"), 201)["redemption_id"]

    done = ok(api.post(f"{API}/mall/redemptions/{rid}/fulfil"))

    assert done["status"] == "fulfilled"
    assert ok(api.get(f"{API}/mall/redemptions/{rid}")) == done
    problem(api.post(f"{API}/mall/redemptions/{rid}/fail", json={"reason": "x"}), 409, "conflict")


def test_mall_rule_violations_are_problems(api: TestClient, member: int, shop: Shop) -> None:
    ok(api.post(f"{API}/mall/rewards", json=MUG), 201)
    ok(redeem(api, member, "K1"), 201)
    ok(redeem(api, member, "K2"), 201)

    out = problem(redeem(api, member, "K3"), 422, "limit_reached", "quantity")
    assert out["limit"] == "stock"
    ok(api.patch(f"{API}/mall/rewards/MUG", json={"stock": 10}))
    short = problem(redeem(api, member, "K3"), 422, "insufficient_points")
    assert (short["requested"], short["available"]) == (200, 100)
    clash = problem(redeem(api, member, "K1", quantity=2), 409, "idempotency_conflict")
    assert set(clash["differences"]) == {"quantity"}
    problem(redeem(api, member, "K4", reward="NOPE"), 422, "validation_failed", "reward")
    problem(redeem(api, member, "K4", quantity=0), 422, "validation_failed", "quantity")
    problem(redeem(api, 999_999, "K4"), 404, "not_found")
    problem(api.post(f"{API}/mall/redemptions/999999/fulfil"), 404, "not_found")
    ok(api.patch(f"{API}/mall/rewards/MUG", json={"status": "paused"}))
    paused = problem(redeem(api, member, "K4"), 409, "conflict", "reward")
    assert paused["reward_status"] == "paused"
    ok(api.patch(f"{API}/mall/rewards/MUG", json={"status": "active"}))

    shop.at(local(2026, 3, 10))
    ok(
        api.post(
            f"{API}/mall/windows",
            json={
                "name": "later",
                "starts_at": "2026-06-01T00:00:00+08:00",
                "ends_at": "2026-07-01T00:00:00+08:00",
            },
        ),
        201,
    )
    closed = problem(redeem(api, member, "K5", quantity=1), 422, "outside_redemption_window")
    assert closed["next_opens_at"] == "2026-05-31T16:00:00+00:00"


def test_a_window_must_end_after_it_starts(api: TestClient) -> None:
    body = {
        "name": "backwards",
        "starts_at": "2026-06-01T00:00:00+08:00",
        "ends_at": "2026-05-01T00:00:00+08:00",
    }

    problem(api.post(f"{API}/mall/windows", json=body), 422, "validation_failed", "ends_at")
