"""The channel assortment over HTTP: rules, forbidden order lines and must-sell gaps.

Errors are problem+json naming the field, as everywhere in the API.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from test_api import API, ok
from test_api import problem as api_problem

from conftest import Brand
from quanyu.entrypoints.api.app import create_app
from quanyu.services.uow import Platform

RULES = f"{API}/assortment/rules"


def problem(response: Response, status: int, code: str, field: str | None = None) -> Any:
    """The API's problem+json check, and ``field`` is exactly the one named (or none)."""
    body = api_problem(response, status, code, field)
    assert body.get("field") == field, body
    return body


def order_json(external_id: str, sku: str, **extra: Any) -> dict[str, Any]:
    return {
        "channel": "pos",
        "external_id": external_id,
        "ordered_at": "2026-03-02T10:00:00+08:00",  # the clock's now (conftest.T0)
        "store": "SH01",
        "lines": [{"sku": sku, "quantity": 1, "list_price": 19_900, "paid_amount": 19_900}],
        **extra,
    }


@pytest.fixture
def api(platform: Platform, brand: Brand) -> Iterator[TestClient]:
    with TestClient(create_app(platform)) as client:
        yield client


def test_rules_are_set_listed_and_deleted(api: TestClient, brand: Brand) -> None:
    stored = ok(
        api.put(
            RULES,
            json=[
                {"channel": "pos", "category": "bottoms", "status": "must"},
                {"channel": "pos", "store": "SH01", "sku": brand.tee, "status": "forbidden"},
            ],
            headers={"X-Quanyu-Actor": "ops"},
        )
    )
    assert [(r["store"], r["sku"], r["category"], r["status"]) for r in stored] == [
        (None, None, "bottoms", "must"),
        ("SH01", brand.tee, None, "forbidden"),
    ]
    assert {r["updated_by"] for r in stored} == {"api:ops"}

    assert ok(api.get(RULES, params={"status": "forbidden"})) == [stored[1]]
    assert ok(api.get(RULES, params={"channel": "pos", "store": "SH01"})) == [stored[1]]
    assert ok(api.delete(f"{RULES}/{stored[1]['id']}")) == stored[1]
    assert ok(api.get(RULES)) == [stored[0]]
    problem(api.delete(f"{RULES}/{stored[1]['id']}"), 404, "not_found")


def test_a_bad_status_is_a_422_naming_the_field(api: TestClient, brand: Brand) -> None:
    body = [
        {"channel": "pos", "sku": brand.tee, "status": "must"},
        {"channel": "pos", "sku": brand.jeans, "status": "banned"},
    ]

    problem(api.put(RULES, json=body), 422, "validation_failed", "[1].status")
    problem(api.get(RULES, params={"status": "banned"}), 422, "validation_failed", "status")
    assert ok(api.get(RULES)) == []


def test_a_rule_with_both_sku_and_category_is_a_422_naming_the_field(
    api: TestClient, brand: Brand
) -> None:
    both = {"channel": "pos", "sku": brand.tee, "category": "tops", "status": "forbidden"}
    neither = {"channel": "pos", "status": "forbidden"}

    problem(api.put(RULES, json=[both]), 422, "validation_failed", "[0].category")
    problem(api.put(RULES, json=[neither]), 422, "validation_failed", "[0].sku")
    assert ok(api.get(RULES)) == []


def test_unknown_codes_in_rules_are_422s_naming_the_field(api: TestClient, brand: Brand) -> None:
    unknown_channel = {"channel": "nope", "sku": brand.tee, "status": "must"}
    unknown_store = {"channel": "pos", "store": "NOPE", "sku": brand.tee, "status": "must"}

    problem(api.put(RULES, json=[unknown_channel]), 422, "validation_failed", "[0].channel")
    problem(api.put(RULES, json=[unknown_store]), 422, "validation_failed", "[0].store")
    problem(api.get(RULES, params={"channel": "nope"}), 422, "validation_failed", "channel")


def test_under_the_reject_policy_a_forbidden_order_line_is_a_422_naming_the_line(
    api: TestClient, brand: Brand
) -> None:
    patched = ok(api.patch(f"{API}/setup/programs/club", json={"assortment_policy": "reject"}))
    assert patched["assortment_policy"] == "reject"
    ok(api.put(RULES, json=[{"channel": "pos", "sku": brand.jeans, "status": "forbidden"}]))

    body = problem(
        api.post(f"{API}/orders", json=order_json("A1", brand.jeans)),
        422,
        "forbidden_in_channel",
        "lines[0].sku",
    )

    assert (body["sku"], body["channel"]) == (brand.jeans, "pos")
    ok(api.post(f"{API}/orders", json=order_json("A2", brand.tee)), 201)


def test_under_the_flag_policy_a_batch_result_carries_the_flags(
    api: TestClient, brand: Brand
) -> None:
    ok(api.put(RULES, json=[{"channel": "pos", "category": "bottoms", "status": "forbidden"}]))

    out = ok(api.post(f"{API}/orders/batch", json={"items": [order_json("A1", brand.jeans)]}))

    [item] = out["items"]
    assert item["ok"] is True
    [flag] = item["result"]["flags"]
    assert (flag["line_no"], flag["sku"], flag["code"]) == (1, brand.jeans, "forbidden_in_channel")


def test_a_bad_assortment_policy_is_a_422_naming_the_field(api: TestClient, brand: Brand) -> None:
    problem(
        api.patch(f"{API}/setup/programs/club", json={"assortment_policy": "ignore"}),
        422,
        "validation_failed",
        "assortment_policy",
    )


def test_must_sell_gaps_by_default_cover_the_last_30_days(api: TestClient, brand: Brand) -> None:
    ok(api.put(RULES, json=[{"channel": "pos", "sku": brand.tee, "status": "must"}]))
    ok(api.post(f"{API}/orders", json=order_json("A1", brand.tee)), 201)

    report = ok(api.get(f"{API}/assortment/must-sell-gaps", params={"channel": "pos"}))

    assert report["gaps"] == [
        {"store": "BJ01", "kind": "sku", "target": brand.tee, "units_sold": 0}
    ]
    assert report["stores"] == [
        {"store": "BJ01", "since": "2026-02-01", "until": "2026-03-03", "must_sell": 1, "gaps": 1},
        {"store": "SH01", "since": "2026-02-01", "until": "2026-03-03", "must_sell": 1, "gaps": 0},
    ]


@pytest.mark.parametrize(
    ("since", "until", "field"),
    [("2026-03-02", "2026-03-01", "since"), ("2026-03-02", "0001-01-01", "until")],
)
def test_a_bad_gaps_window_is_a_422_naming_the_field(
    api: TestClient, brand: Brand, since: str, until: str, field: str
) -> None:
    params = {"channel": "pos", "since": since, "until": until}

    problem(
        api.get(f"{API}/assortment/must-sell-gaps", params=params),
        422,
        "validation_failed",
        field,
    )


def test_an_empty_list_of_rules_is_a_422(api: TestClient, brand: Brand) -> None:
    problem(api.put(RULES, json=[]), 422, "validation_failed", "body")
