"""The reports API: coupons, points liability and points breakage, as JSON and as CSV,
and problem+json for a bad period."""

# The fixtures api, club and member come from test_api; pytest passes them by name.
# ruff: noqa: F811

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

from fastapi.testclient import TestClient
from test_api import API, PHONE, api, club, member, ok, order_json, problem  # noqa: F401

from quanyu.clock import FixedClock
from quanyu.services import points
from quanyu.services.uow import Platform

TEMPLATE = {
    "code": "OFF20",
    "name": "20 off",
    "kind": "amount_off",
    "value": 2_000,
    "valid_days": 30,
}
DAY0 = "2026-03-02T00:00:00+08:00"
DAY1 = "2026-03-03T00:00:00+08:00"


def redeem_one_of_two(api: TestClient, member: int) -> None:
    """Two OFF20 coupons for the member; one redeemed at the POS of store SH01."""
    ok(api.post(f"{API}/coupon-templates", json=TEMPLATE), 201)
    batch = {"request_key": "k", "members": [member, member]}
    ok(api.post(f"{API}/coupon-templates/OFF20/batches", json=batch), 201)
    code = ok(api.get(f"{API}/members/{member}/coupons"))[0]["code"]
    body = {
        "channel": "pos",
        "store": "SH01",
        "member": {"type": "phone", "value": PHONE},
        "lines": [{"sku": "TEE-W-M", "quantity": 2, "amount": 18_000}],
        "codes": [code],
        "order_id": "POS-1",
        "confirm": True,
    }
    ok(api.post(f"{API}/coupons/reservations", json=body), 201)


def test_coupon_report_gives_a_total_row_and_a_row_per_channel_and_store(
    api: TestClient, member: int
) -> None:
    redeem_one_of_two(api, member)
    report = ok(api.get(f"{API}/reports/coupons", params={"template": "OFF20"}))
    assert report["as_of"] == "2026-03-02T02:00:00Z" and report["since"] is None
    total, place = report["rows"]
    assert total == {
        "level": "total",
        "template": "OFF20",
        "template_name": "20 off",
        "program": "club",
        "channel": None,
        "store": None,
        "issued": 2,
        "redeemed": 1,
        "returned": 0,
        "expired": 0,
        "voided": 0,
        "reserved": 0,
        "outstanding": 1,
        "discount_cost": 2_000,
        "redemption_rate": "0.5000",
    }
    assert (place["level"], place["channel"], place["store"]) == ("channel_store", "pos", "SH01")
    assert (place["redeemed"], place["discount_cost"], place["issued"]) == (1, 2_000, None)


def test_coupon_report_answers_csv_when_asked(api: TestClient, member: int) -> None:
    redeem_one_of_two(api, member)
    response = api.get(f"{API}/reports/coupons", params={"format": "csv", "since": DAY0})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "coupons.csv" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["level"], r["channel"], r["store"]) for r in rows] == [
        ("total", "", ""),
        ("channel_store", "pos", "SH01"),
    ]
    assert (rows[0]["issued"], rows[0]["redemption_rate"], rows[1]["issued"]) == ("2", "0.5000", "")


def test_points_liability_values_outstanding_points_in_fen(api: TestClient, member: int) -> None:
    ok(api.post(f"{API}/orders", json=order_json("A1")), 201)  # 180 points, pending 7 days
    ok(
        api.post(
            f"{API}/members/{member}/points/adjustments", json={"points": 30, "reason": "gift"}
        ),
        201,
    )
    ok(api.patch(f"{API}/setup/programs/club", json={"point_value_minor": 0.35}))
    now = ok(api.get(f"{API}/reports/points-liability", params={"program": "club"}))
    assert now == {
        "program": "club",
        "currency": "CNY",
        "as_of": "2026-03-02T02:00:00Z",
        "available_points": 30,
        "pending_points": 180,
        "outstanding_points": 210,
        "debt_points": 0,
        "liability_points": 210,
        "point_value_minor": "0.35",
        "liability_minor": 74,  # 210 x 0.35 = 73.5, rounded half up
        "expired_unprocessed_points": 0,
    }
    week = api.get(
        f"{API}/reports/points-liability",
        params={"as_of": "2026-03-09T10:00:00+08:00", "format": "csv"},
    )
    assert week.headers["content-type"].startswith("text/csv")
    [row] = csv.DictReader(io.StringIO(week.text))
    assert (row["available_points"], row["pending_points"], row["liability_minor"]) == (
        "210",
        "0",
        "74",
    )
    assert row["as_of"] == "2026-03-09T02:00:00Z"


def test_points_breakage_compares_a_year_of_expiry_with_the_year_that_earned_it(
    api: TestClient, member: int, clock: FixedClock, platform: Platform
) -> None:
    ok(api.post(f"{API}/orders", json=order_json("A1")), 201)  # 180 points, expire end of 2027
    clock.set(datetime.fromisoformat("2028-01-02T10:00:00+08:00"))
    assert points.expire_due(platform) == 180
    window = {
        "since": "2028-01-01T00:00:00+08:00",
        "until": "2029-01-01T00:00:00+08:00",
        "earned_since": "2026-01-01T00:00:00+08:00",
        "earned_until": "2027-01-01T00:00:00+08:00",
    }
    report = ok(api.get(f"{API}/reports/points-breakage", params=window))
    assert (report["expired_points"], report["earned_points"]) == (180, 180)
    assert report["breakage_rate"] == "1.0000"
    clock.set(clock.now() + timedelta(hours=1))  # until is exclusive: now is not in it
    last_year = ok(api.get(f"{API}/reports/points-breakage"))  # the 365 days up to now
    assert last_year["until"] == "2028-01-02T03:00:00Z"
    assert datetime.fromisoformat(last_year["until"]) - datetime.fromisoformat(
        last_year["since"]
    ) == timedelta(days=365)
    assert (last_year["expired_points"], last_year["earned_points"]) == (180, 0)
    assert last_year["breakage_rate"] is None
    response = api.get(f"{API}/reports/points-breakage", params={**window, "format": "csv"})
    [row] = csv.DictReader(io.StringIO(response.text))
    assert (row["expired_points"], row["breakage_rate"]) == ("180", "1.0000")


def test_a_period_that_does_not_end_after_it_starts_is_a_422_problem_naming_until(
    api: TestClient, club: None
) -> None:
    body = problem(
        api.get(f"{API}/reports/coupons", params={"since": DAY1, "until": DAY0}),
        422,
        "validation_failed",
        "until",
    )
    assert "until" in body["detail"]
    problem(
        api.get(f"{API}/reports/points-breakage", params={"since": DAY0, "until": DAY0}),
        422,
        "validation_failed",
        "until",
    )


def test_report_problems_name_the_query_parameter_at_fault(api: TestClient, club: None) -> None:
    problem(
        api.get(f"{API}/reports/points-breakage", params={"earned_since": DAY0}),
        422,
        "validation_failed",
        "earned_until",
    )
    problem(
        api.get(f"{API}/reports/coupons", params={"since": "2026-03-02T00:00:00"}),
        422,
        "validation_failed",
        "since",
    )
    problem(
        api.get(f"{API}/reports/coupons", params={"template": "NOPE"}),
        422,
        "validation_failed",
        "template",
    )
    problem(
        api.get(f"{API}/reports/points-liability", params={"program": "nope"}),
        422,
        "validation_failed",
        "program",
    )
    problem(
        api.get(f"{API}/reports/points-liability", params={"format": "xml"}),
        422,
        "validation_failed",
        "format",
    )
