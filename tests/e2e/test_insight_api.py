"""The insight API: KPIs as JSON and CSV, tags, segments, exports and attribution, and
problem+json naming the field for bad input."""

# The fixtures api, club and member come from test_api; pytest passes them by name.
# ruff: noqa: F811

from __future__ import annotations

import csv
import io

import pyarrow.parquet as pq
from fastapi.testclient import TestClient
from test_api import API, PHONE, api, club, member, ok, order_json, problem  # noqa: F401

DAY = {"since": "2026-03-01", "until": "2026-04-01"}


def bought(api: TestClient) -> None:
    ok(api.post(f"{API}/orders", json=order_json("POS-1", paid=18_000)), 201)
    ok(api.post(f"{API}/analytics/refresh"))


def test_a_kpi_answers_json_rows_and_csv(api: TestClient, member: int) -> None:
    bought(api)
    body = ok(api.get(f"{API}/kpis/sales", params={**DAY, "by": "channel"}))
    [row] = body["rows"]
    assert (row["channel"], row["net_sales"], row["orders"]) == ("pos", 18_000, 1)
    text = api.get(f"{API}/kpis/new_members", params={**DAY, "format": "csv"})
    assert text.headers["content-type"].startswith("text/csv")
    assert list(csv.DictReader(io.StringIO(text.text))) == [{"new_members": "1"}]


def test_an_unknown_metric_or_a_backwards_period_is_a_problem_naming_the_field(
    api: TestClient, club: None
) -> None:
    problem(api.get(f"{API}/kpis/happiness", params=DAY), 422, "validation_failed", "metric")
    params = {"since": "2026-03-01", "until": "2026-02-01"}
    problem(api.get(f"{API}/kpis/sales", params=params), 422, "validation_failed", "until")


def test_tags_are_defined_run_and_shown_on_the_member(api: TestClient, member: int) -> None:
    bought(api)
    tag = {
        "code": "buyer",
        "name": "Buyer",
        "kind": "rule",
        "document": {"orders": "count", "op": "gte", "value": 1},
    }
    assert ok(api.post(f"{API}/tags", json=tag), 201)["version"] == 1
    [run] = ok(api.post(f"{API}/tags/run", json={}))
    assert run["members"] == 1
    assert ok(api.get(f"{API}/tags/buyer"))["values"] == [
        {"value": "true", "members": 1, "score_min": None, "score_avg": None, "score_max": None}
    ]
    assert [t["tag"] for t in ok(api.get(f"{API}/members/{member}/tags"))] == ["buyer"]


def test_a_bad_condition_is_a_problem_naming_its_path(api: TestClient, club: None) -> None:
    body = {"condition": {"any": [{"attr": "tier", "op": "in", "value": "gold"}]}}
    problem(
        api.post(f"{API}/segments/count", json=body),
        422,
        "validation_failed",
        "condition.any[0].value",
    )


def test_segment_count_snapshot_and_parquet_export_with_consent(
    api: TestClient, member: int
) -> None:
    bought(api)
    ok(api.put(f"{API}/members/{member}/consents", json={"consents": {"sms": True}}))
    condition = {"orders": "sales", "op": "gte", "value": 10_000}
    assert ok(api.post(f"{API}/segments/count", json={"condition": condition}))["members"] == 1
    ok(
        api.post(f"{API}/segments", json={"code": "big", "name": "Big", "condition": condition}),
        201,
    )
    snap = ok(api.post(f"{API}/segments/big/snapshot"))
    assert (snap["members"], snap["entered"]) == (1, 1)
    export = api.get(f"{API}/segments/big/export", params={"format": "parquet"})
    assert export.status_code == 200
    table = pq.read_table(io.BytesIO(export.content))
    assert table.column("phone").to_pylist() == ["+86" + PHONE]


def test_attribution_of_a_popup_reports_revenue_in_the_window(api: TestClient, member: int) -> None:
    campaign = {
        "code": "popup",
        "name": "Pop-up",
        "kind": "popup",
        "starts_at": "2026-03-01T10:00:00+08:00",
        "ends_at": "2026-03-02T10:00:00+08:00",
    }
    ok(api.post(f"{API}/campaigns", json=campaign), 201)
    added = {"members": [{"member_id": member, "at": "2026-03-01T12:00:00+08:00"}]}
    assert ok(api.post(f"{API}/campaigns/popup/members", json=added))["added"] == 1
    bought(api)
    out = ok(api.get(f"{API}/campaigns/popup/attribution"))
    assert out["attributed_revenue"] == 18_000 and out["lift"] is None
    problem(
        api.post(f"{API}/campaigns/popup/members", json={"members": [{"member_id": 999}]}),
        422,
        "validation_failed",
        "members[0].member_id",
    )
