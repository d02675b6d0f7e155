"""KPIs, tags, segments, exports and attribution on the real stores: the operational
database (SQLite and PostgreSQL), fed into DuckDB; and the same expressions run directly
on PostgreSQL."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conftest import Shop, local, phone
from quanyu.adapters import tables as t
from quanyu.analytics import canonical, kpis
from quanyu.domain.errors import Unavailable, ValidationFailed
from quanyu.services import attribution, insight
from quanyu.services.uow import Platform


def refreshed(platform: Platform) -> None:
    insight.analytics(platform).refresh()


def q(**kw: Any) -> kpis.KpiQuery:
    base: dict[str, Any] = {"since": date(2026, 3, 1), "until": date(2026, 4, 1)}
    base.update(kw)
    return insight.kpi_query(**base)


@pytest.fixture
def march(shop: Shop) -> dict[str, int]:
    """Three members, five orders in March 2026 (one fully refunded), one anonymous order."""
    shop.at(local(2026, 3, 1, 9))
    a = shop.register(("phone", phone(1)), at=local(2026, 3, 1, 9))
    b = shop.register(("phone", phone(2)), at=local(2026, 3, 1, 9))
    c = shop.register(("phone", phone(3)), at=local(2026, 3, 1, 9))
    shop.order("A1", ("phone", phone(1)), paid=[10_000, 5_000], at=local(2026, 3, 2))
    shop.order("A2", ("phone", phone(1)), paid=20_000, at=local(2026, 3, 10))
    shop.order("B1", ("phone", phone(2)), paid=30_000, at=local(2026, 3, 3))
    shop.order("C1", ("phone", phone(3)), paid=8_000, at=local(2026, 3, 4))
    shop.order("X1", paid=7_000, at=local(2026, 3, 5))  # anonymous
    shop.refund("R1", "C1", amount=8_000, quantity=1, at=local(2026, 3, 6))
    shop.refund("R2", "A1", amount=5_000, line_no=2, quantity=1, at=local(2026, 3, 6))
    refreshed(shop.platform)
    return {"a": a, "b": b, "c": c}


def test_sales_net_refunds_and_ignore_fully_refunded_orders(
    shop: Shop, march: dict[str, int]
) -> None:
    [row] = insight.kpi(shop.platform, "sales", q())
    # A1 10,000 (after a 5,000 line refund) + A2 20,000 + B1 30,000 + X1 7,000; C1 is gone
    assert row["net_sales"] == 67_000
    assert row["orders"] == 4
    assert row["net_units"] == 4
    assert row["average_order_value"] == 16_750
    assert row["units_per_transaction"] == 1.0
    assert row["member_sales"] == 60_000
    assert row["member_share"] == round(60_000 / 67_000, 4)


def test_repurchase_counts_buyers_who_bought_again_within_the_window(
    shop: Shop, march: dict[str, int]
) -> None:
    [row] = insight.kpi(shop.platform, "repurchase", q(window_days=30))
    assert (row["buyers"], row["repeat_buyers"]) == (2, 1)  # a bought again; b did not
    [short] = insight.kpi(shop.platform, "repurchase", q(window_days=5))
    assert short["repeat_buyers"] == 0  # a's second order came 8 days later


def test_new_member_conversion_is_the_share_buying_within_n_days(
    shop: Shop, march: dict[str, int]
) -> None:
    [row] = insight.kpi(shop.platform, "new_member_conversion", q(window_days=7))
    # c's only order was refunded in full, so c did not convert
    assert (row["new_members"], row["converted"], row["conversion_rate"]) == (3, 2, 0.6667)


def test_kpis_break_down_by_period_and_dimension(shop: Shop, march: dict[str, int]) -> None:
    rows = insight.kpi(shop.platform, "new_members", q(grain="month", by=["store", "channel"]))
    assert rows == [{"period": "2026-03-01", "store": "SH01", "channel": "pos", "new_members": 3}]
    active = insight.kpi(shop.platform, "active_members", q(filters={"store": ["BJ01"]}))
    assert active == [{"active_members": 0}]


def test_cac_divides_loaded_costs_by_recruits_of_the_channel(
    shop: Shop, march: dict[str, int]
) -> None:
    insight.load_costs(
        shop.platform, [{"channel": "pos", "month": "2026-03", "amount": 90_000}], actor="t"
    )
    refreshed(shop.platform)
    [row] = insight.kpi(shop.platform, "acquisition_cost", q())
    assert row == {"channel": "pos", "cost": 90_000, "new_members": 3, "cac": 30_000}


def test_loading_a_cost_for_an_unknown_channel_names_the_field_and_loads_nothing(
    shop: Shop,
) -> None:
    with pytest.raises(ValidationFailed) as err:
        insight.load_costs(
            shop.platform,
            [
                {"channel": "pos", "month": "2026-03", "amount": 1},
                {"channel": "nope", "month": "2026-03", "amount": 1},
            ],
            actor="t",
        )
    assert err.value.field == "costs[1].channel"
    with shop.platform.engine.connect() as conn:
        assert conn.execute(select(t.acquisition_costs)).first() is None


def test_rule_tags_select_members_by_order_aggregates_and_write_back(
    shop: Shop, march: dict[str, int]
) -> None:
    insight.define_tag(
        shop.platform,
        code="repeat_buyer",
        name="Bought twice in 90 days",
        kind="rule",
        document={"orders": "count", "within_days": 90, "op": "gte", "value": 2},
        actor="t",
    )
    shop.at(local(2026, 3, 20))
    [run] = insight.run_tags(shop.platform, actor="t")
    assert run["members"] == 1
    assert insight.member_tags(shop.platform, march["a"])[0]["tag"] == "repeat_buyer"
    assert insight.member_tags(shop.platform, march["b"]) == []


def define_big_tags(platform: Platform) -> None:
    """``big``: net sales of 250 yuan or more; ``big_single``: big, in one order."""
    insight.define_tag(
        platform,
        code="big",
        name="Big",
        kind="rule",
        document={"orders": "sales", "op": "gte", "value": 25_000},
        actor="t",
    )
    insight.define_tag(
        platform,
        code="big_single",
        name="Big, one order",
        kind="rule",
        document={"all": [{"tag": "big"}, {"orders": "count", "op": "eq", "value": 1}]},
        actor="t",
    )


def test_a_rule_tag_can_use_another_tag_and_runs_after_it(
    shop: Shop, march: dict[str, int]
) -> None:
    define_big_tags(shop.platform)
    shop.at(local(2026, 3, 20))
    runs = {r["tag"]: r["members"] for r in insight.run_tags(shop.platform, actor="t")}
    assert runs == {"big": 2, "big_single": 1}  # a (30,000 over two orders) and b


def test_a_tag_condition_with_a_mistake_names_the_field(shop: Shop) -> None:
    with pytest.raises(ValidationFailed) as err:
        insight.define_tag(
            shop.platform,
            code="x",
            name="X",
            kind="rule",
            document={
                "all": [
                    {"orders": "count", "op": "gte", "value": 1},
                    {"orders": "count", "op": "most", "value": 1},
                ]
            },
            actor="t",
        )
    assert err.value.field == "document.all[1].op"


def test_realtime_tag_is_set_when_the_order_is_ingested(shop: Shop, march: dict[str, int]) -> None:
    insight.define_tag(
        shop.platform,
        code="big_basket",
        name="Big basket",
        kind="realtime",
        document={"event": "order", "min_paid": 50_000},
        actor="t",
    )
    shop.order("A9", ("phone", phone(1)), paid=60_000, at=local(2026, 3, 21))
    shop.order("B9", ("phone", phone(2)), paid=1_000, at=local(2026, 3, 21))
    assert [tg["tag"] for tg in insight.member_tags(shop.platform, march["a"])] == ["big_basket"]
    assert insight.member_tags(shop.platform, march["b"]) == []


def test_model_tags_give_rfm_and_lifecycle_with_model_versions(
    shop: Shop, march: dict[str, int]
) -> None:
    for code, model in (("rfm", "rfm"), ("stage", "lifecycle")):
        insight.define_tag(
            shop.platform, code=code, name=code, kind="model", document={"model": model}, actor="t"
        )
    shop.at(local(2026, 3, 20))
    runs = {r["tag"]: r for r in insight.run_tags(shop.platform, actor="t")}
    assert runs["stage"]["distribution"] == {"new": 3}
    assert runs["rfm"]["members"] == 2
    tags = {tg["tag"]: tg for tg in insight.member_tags(shop.platform, march["a"])}
    assert tags["stage"]["model_version"] == "lifecycle-1"
    assert tags["rfm"]["score"] is not None


def test_live_count_and_overlap_of_conditions(shop: Shop, march: dict[str, int]) -> None:
    shop.at(local(2026, 3, 20))
    bought = {"orders": "count", "op": "gte", "value": 1}
    twice = {"orders": "count", "op": "gte", "value": 2}
    assert insight.count(shop.platform, bought)["members"] == 2
    assert insight.overlap(shop.platform, bought, twice) == {
        "first": 2,
        "second": 1,
        "both": 1,
        "first_only": 1,
        "second_only": 0,
        "jaccard": 0.5,
    }


def test_attribute_tests_applied_first_select_the_same_members(
    shop: Shop, march: dict[str, int]
) -> None:
    shop.at(local(2026, 3, 20))
    tier = {"attr": "tier", "op": "eq", "value": "silver"}
    bought = {"orders": "sales", "op": "gte", "value": 25_000}
    first = insight.count(shop.platform, {"all": [tier, bought]})["members"]
    nested = insight.count(shop.platform, {"all": [{"any": [tier]}, bought]})["members"]
    assert first == nested == 2


def test_snapshots_record_who_entered_and_who_left(shop: Shop, march: dict[str, int]) -> None:
    shop.at(local(2026, 3, 20))
    insight.define_segment(
        shop.platform,
        code="buyers",
        name="Buyers",
        condition={"orders": "count", "within_days": 30, "op": "gte", "value": 1},
        actor="t",
    )
    first = insight.snapshot(shop.platform, "buyers", actor="t")
    assert (first["members"], first["entered"], first["exited"]) == (2, 2, 0)
    shop.order("C2", ("phone", phone(3)), paid=1_000, at=local(2026, 3, 25))
    shop.at(local(2026, 4, 8))  # b's order (3 March) is now older than 30 days
    refreshed(shop.platform)
    second = insight.snapshot(shop.platform, "buyers", actor="t")
    assert (second["members"], second["entered"], second["exited"]) == (2, 1, 1)
    kinds = {(e["member_id"], e["kind"]) for e in insight.segment_events(shop.platform, "buyers")}
    assert (march["c"], "entered") in kinds and (march["b"], "exited") in kinds


def test_export_includes_only_identities_the_member_consented_to_and_is_audited(
    shop: Shop, march: dict[str, int]
) -> None:
    insight.record_consents(shop.platform, march["a"], {"sms": True}, source="pos", actor="t")
    insight.record_consents(shop.platform, march["b"], {"sms": True}, source="pos", actor="t")
    insight.record_consents(shop.platform, march["b"], {"sms": False}, source="app", actor="t")
    refreshed(shop.platform)
    insight.define_segment(
        shop.platform,
        code="all",
        name="All",
        condition={"attr": "tier", "op": "not_null"},
        actor="t",
    )
    payload, n = insight.export_audience(shop.platform, code="all", actor="ops")
    rows = {int(r["member_id"]): r for r in csv.DictReader(io.StringIO(payload.decode()))}
    assert n == 3
    assert rows[march["a"]]["phone"] == "+86" + phone(1)
    assert rows[march["b"]]["phone"] == ""  # withdrew consent
    assert rows[march["c"]]["phone"] == ""  # never gave it
    with shop.platform.engine.connect() as conn:
        audit = conn.execute(select(t.audit_log)).one()
    assert (audit.action, audit.actor, audit.detail["members"]) == ("export", "ops", 3)


def test_attribution_counts_purchases_in_any_channel_within_the_window_against_control(
    shop: Shop, march: dict[str, int]
) -> None:
    attribution.create_campaign(
        shop.platform,
        code="popup",
        name="Pop-up",
        kind="popup",
        starts_at=local(2026, 3, 1, 8),
        ends_at=local(2026, 3, 2),
        window_days=7,
        cost=5_000,
        actor="t",
    )
    attribution.add_members(shop.platform, "popup", [(march["a"], local(2026, 3, 1, 8))], actor="t")
    attribution.add_members(
        shop.platform, "popup", [(march["b"], None), (march["c"], None)], role="control", actor="t"
    )
    refreshed(shop.platform)
    out = attribution.report(shop.platform, "popup")
    assert out["treated"]["revenue"] == 10_000  # A1 net; A2 (10 March) is outside 7 days
    assert out["control"]["revenue"] == 30_000  # B1; C1 was refunded in full
    assert out["attributed_revenue"] == 10_000
    assert out["lift"]["incremental_revenue"] == 10_000 - 15_000


def test_sync_is_incremental_and_follows_merges(shop: Shop, march: dict[str, int]) -> None:
    a = insight.analytics(shop.platform)
    shop.order("A3", ("phone", phone(1)), paid=1_000, at=local(2026, 3, 22))
    report = a.refresh()
    assert not report.full and report.rows["orders"] >= 1
    [row] = insight.kpi(shop.platform, "sales", q())
    assert row["orders"] == 5


def test_an_incremental_sync_re_points_the_facts_of_a_merged_profile(shop: Shop) -> None:
    a = shop.register(("phone", phone(7)), at=local(2026, 3, 1, 9))
    shop.order("P1", ("phone", phone(7)), paid=1_000, at=local(2026, 3, 2))
    shop.order("E1", ("email", "li@example.com"), paid=2_000, at=local(2026, 3, 3))
    refreshed(shop.platform)
    [before] = insight.kpi(shop.platform, "sales", q())
    assert before["buyers"] == 2
    # One order names both: OneID merges the e-mail profile into the member.
    shop.order(
        "B1", ("phone", phone(7)), ("email", "li@example.com"), paid=500, at=local(2026, 3, 4)
    )
    report = insight.analytics(shop.platform).refresh()
    assert report.merges == 1
    [after] = insight.kpi(shop.platform, "sales", q())
    assert (after["buyers"], after["orders"], after["member_sales"]) == (1, 3, 3_500)
    store = insight.analytics(shop.platform).store()
    owners = store.raw_sql("SELECT DISTINCT member_id FROM orders").fetchall()
    assert owners == [(a,)]


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_the_same_expressions_run_directly_on_postgresql(shop: Shop, march: dict[str, int]) -> None:
    duck = {
        name: insight.kpi(shop.platform, name, q(grain="month", by=["channel"]))
        for name in (
            "sales",
            "new_members",
            "repurchase",
            "active_members",
            "new_member_conversion",
        )
    }
    insight.close_analytics(shop.platform)
    shop.platform.analytics_direct = True
    try:
        direct = {
            name: insight.kpi(shop.platform, name, q(grain="month", by=["channel"]))
            for name in duck
        }
        assert insight.analytics(shop.platform).direct
    finally:
        insight.close_analytics(shop.platform)
        shop.platform.analytics_direct = False
    assert direct == duck
    views = canonical.views(insight.analytics(shop.platform).source())
    assert set(views) >= {
        "members",
        "orders",
        "order_lines",
        "refunds",
        "points_entries",
        "coupon_events",
        "touchpoints",
        "identities",
    }


def test_an_analytics_store_held_by_another_process_is_a_clear_unavailable_error(
    shop: Shop, tmp_path: Path
) -> None:
    path = tmp_path / "held.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('held', flush=True); "
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        insight.close_analytics(shop.platform)
        shop.platform.analytics_path = str(path)
        with pytest.raises(Unavailable, match="in use by another process"):
            insight.kpi(shop.platform, "sales", q())
    finally:
        holder.kill()
        holder.communicate()


def test_kpi_query_rejects_an_unknown_dimension_naming_the_field() -> None:
    with pytest.raises(ValidationFailed) as err:
        insight.kpi_query(since=date(2026, 1, 1), until=date(2026, 2, 1), by=["colour"])
    assert err.value.field == "by"
    with pytest.raises(ValidationFailed) as err:
        insight.kpi_query(since=date(2026, 1, 1), until=date(2026, 1, 1) - timedelta(1))
    assert err.value.field == "until"
