"""The coupon API: a template, a batch, a checkout at the POS, and problem+json errors."""

# The fixtures api, club and member come from test_api; pytest passes them by name.
# ruff: noqa: F811

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient
from test_api import API, PHONE, api, club, member, ok, problem  # noqa: F401

TEMPLATE = {
    "code": "OFF20",
    "name": "20 off 100",
    "kind": "threshold",
    "value": 2_000,
    "min_spend": 10_000,
    "valid_days": 30,
    "stack_group": "store",
}


def basket(**extra: object) -> dict[str, object]:
    return {
        "channel": "pos",
        "store": "SH01",
        "member": {"type": "phone", "value": PHONE},
        "lines": [{"sku": "TEE-W-M", "quantity": 2, "amount": 18_000}],
        **extra,
    }


def test_a_clerk_scans_the_member_and_redeems_the_best_coupon(api: TestClient, member: int) -> None:
    ok(api.post(f"{API}/coupon-templates", json=TEMPLATE), 201)
    batch = {"request_key": "spring", "members": [member], "reason": "spring campaign"}
    ok(api.post(f"{API}/coupon-templates/OFF20/batches", json=batch), 201)
    assert ok(api.post(f"{API}/coupon-templates/OFF20/batches", json=batch))["replayed"] is True

    options = ok(api.post(f"{API}/coupons/validate", json=basket()))["options"]
    assert options[0]["applicable"] and options[0]["discount"] == 2_000
    code = options[0]["code"]

    body = basket(codes=[code], order_id="POS-1", confirm=True)
    done = ok(api.post(f"{API}/coupons/reservations", json=body), 201)
    assert done["status"] == "confirmed" and done["coupons"][0]["lines"] == [
        {"line_no": 1, "discount": 2_000}
    ]
    assert ok(api.post(f"{API}/coupons/reservations", json=body))["replayed"] is True
    assert ok(api.get(f"{API}/members/{member}/coupons?status=redeemed"))[0]["code"] == code
    assert [e["kind"] for e in ok(api.get(f"{API}/coupons/{code}"))["events"]] == [
        "issued",
        "reserved",
        "redeemed",
    ]


def test_online_checkout_reserves_then_confirms_or_releases(api: TestClient, member: int) -> None:
    ok(api.post(f"{API}/coupon-templates", json=TEMPLATE), 201)
    ok(
        api.post(
            f"{API}/coupon-templates/OFF20/batches",
            json={"request_key": "k", "members": [member, member]},
        ),
        201,
    )
    a, b = (c["code"] for c in ok(api.get(f"{API}/members/{member}/coupons")))
    ok(api.post(f"{API}/coupons/reservations", json=basket(codes=[a], order_id="W1")), 201)
    ok(api.post(f"{API}/coupons/reservations", json=basket(codes=[b], order_id="W2")), 201)
    assert ok(api.post(f"{API}/coupons/reservations/pos/W1/confirm"))["status"] == "confirmed"
    released = ok(api.post(f"{API}/coupons/reservations/pos/W2/release", json={"reason": "cancel"}))
    assert released["status"] == "released"
    problem(api.post(f"{API}/coupons/reservations/pos/W2/confirm"), 409, "coupon_unavailable")


def test_coupon_that_does_not_apply_answers_its_reasons(api: TestClient, member: int) -> None:
    ok(api.post(f"{API}/coupon-templates", json=TEMPLATE), 201)
    ok(
        api.post(
            f"{API}/coupon-templates/OFF20/batches", json={"request_key": "k", "members": [member]}
        ),
        201,
    )
    (c,) = ok(api.get(f"{API}/members/{member}/coupons"))
    small = basket(
        codes=[c["code"]], order_id="W1", lines=[{"sku": "TEE-W-M", "quantity": 1, "amount": 9_000}]
    )
    body = problem(
        api.post(f"{API}/coupons/reservations", json=small), 422, "coupon_not_applicable", "codes"
    )
    assert body["reasons"][0]["code"] == "below_min_spend"
    assert body["reasons"][0]["short_by"] == 1_000


def test_bad_template_names_the_field(api: TestClient, club: None) -> None:
    problem(
        api.post(f"{API}/coupon-templates", json={**TEMPLATE, "min_spend": 1_000}),
        422,
        "validation_failed",
        "min_spend",
    )
    problem(
        api.post(f"{API}/coupon-templates", json={**TEMPLATE, "kind": "bogus"}),
        422,
        "validation_failed",
        "kind",
    )
    scope = {"include": {"colours": ["red"]}}
    problem(
        api.post(f"{API}/coupon-templates", json={**TEMPLATE, "scope": scope}),
        422,
        "validation_failed",
        "scope.include.colours",
    )
    problem(
        api.post(f"{API}/coupon-templates/NOPE/batches", json={"request_key": "k", "codes": 1}),
        404,
        "not_found",
    )


def test_printed_codes_download_as_csv(api: TestClient, club: None) -> None:
    ok(api.post(f"{API}/coupon-templates", json=TEMPLATE), 201)
    batch = ok(
        api.post(f"{API}/coupon-templates/OFF20/batches", json={"request_key": "k", "codes": 4}),
        201,
    )
    response = api.get(f"{API}/coupon-batches/{batch['batch_id']}/codes.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 4 and len({r["code"] for r in rows}) == 4
