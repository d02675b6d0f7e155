"""Edge cases of insight found in review: merges in the analytics copy, past periods,
bounds of input, long model versions on PostgreSQL, concurrent snapshots, scoped CAC and
tag dependencies."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from typing import Any

import pytest
from test_insight import define_big_tags

from conftest import Shop, local, phone
from quanyu.analytics import kpis
from quanyu.domain.errors import ValidationFailed
from quanyu.services import insight, tiers


def q(**kw: Any) -> kpis.KpiQuery:
    base: dict[str, Any] = {"since": date(2026, 3, 1), "until": date(2026, 4, 1)}
    base.update(kw)
    return insight.kpi_query(**base)


def test_a_merge_leaves_the_survivor_one_row_per_tag_in_the_analytics_copy(shop: Shop) -> None:
    a = shop.register(("phone", phone(7)), at=local(2026, 3, 1, 9))
    shop.order("P1", ("phone", phone(7)), paid=1_000, at=local(2026, 3, 2))
    shop.order("E1", ("email", "li@example.com"), paid=2_000, at=local(2026, 3, 3))
    insight.define_tag(
        shop.platform, code="rfm", name="rfm", kind="model", document={"model": "rfm"}, actor="t"
    )
    shop.at(local(2026, 3, 4))
    insight.run_tags(shop.platform, actor="t")
    shop.order(
        "B1", ("phone", phone(7)), ("email", "li@example.com"), paid=500, at=local(2026, 3, 4, 11)
    )
    assert insight.analytics(shop.platform).refresh().merges == 1
    store = insight.analytics(shop.platform).store()
    rows = store.raw_sql(f"SELECT value FROM member_tags WHERE member_id = {a}").fetchall()
    [kept] = insight.member_tags(shop.platform, a)
    assert rows == [(kept["value"],)]
    assert (
        insight.count(shop.platform, {"tag": "rfm", "op": "eq", "value": kept["value"]})["members"]
        == 1
    )


def test_lifecycle_of_a_past_period_leaves_out_people_who_joined_later(shop: Shop) -> None:
    shop.register(("phone", phone(1)), at=local(2026, 3, 1, 9))
    shop.at(local(2026, 5, 10))
    shop.register(("phone", phone(2)), at=local(2026, 5, 10, 9))
    past = insight.kpi(
        shop.platform, "lifecycle", q(since=date(2026, 1, 1), until=date(2026, 2, 1))
    )
    assert past == []
    march = insight.kpi(shop.platform, "lifecycle", q(until=date(2026, 3, 2)))
    assert march == [{"stage": "new", "members": 1}]


@pytest.mark.parametrize(
    "value", [10**20, -(2**63), float("inf")], ids=["huge", "min_int64", "infinity"]
)
def test_a_number_outside_64_bits_in_a_condition_is_rejected(shop: Shop, value: float) -> None:
    with pytest.raises(ValidationFailed) as err:
        insight.count(shop.platform, {"orders": "sales", "op": "gte", "value": value})
    assert err.value.field == "condition.value"


def test_cac_for_the_last_month_of_the_calendar_is_computed(shop: Shop) -> None:
    rows = insight.kpi(
        shop.platform, "acquisition_cost", q(since=date(9999, 12, 1), until=date(9999, 12, 31))
    )
    assert rows == []


def test_cac_can_be_filtered_by_channel_only(shop: Shop) -> None:
    with pytest.raises(ValidationFailed) as err:
        insight.kpi(shop.platform, "acquisition_cost", q(filters={"store": ["SH01"]}))
    assert err.value.field == "store"


def test_a_consent_purpose_longer_than_32_characters_is_rejected(shop: Shop) -> None:
    a = shop.register(("phone", phone(1)), at=local(2026, 3, 1, 9))
    with pytest.raises(ValidationFailed):
        insight.record_consents(shop.platform, a, {"p" * 33: True}, source="t", actor="t")


def test_running_one_tag_runs_the_tags_it_uses_first(shop: Shop) -> None:
    shop.register(("phone", phone(1)), at=local(2026, 3, 1, 9))
    shop.order("A1", ("phone", phone(1)), paid=30_000, at=local(2026, 3, 2))
    define_big_tags(shop.platform)
    runs = {
        r["tag"]: r["members"]
        for r in insight.run_tags(shop.platform, codes=["big_single"], actor="t")
    }
    assert runs == {"big": 1, "big_single": 1}


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_clv_tag_with_its_long_model_version_is_written_on_postgresql(shop: Shop) -> None:
    n = 0
    for i in range(16):
        shop.register(("phone", phone(i)), at=local(2025, 1, 1, 9))
    base = local(2025, 1, 5)
    for i in range(16):
        for k in range(1 + i % 4):
            n += 1
            shop.order(
                f"O{n}",
                ("phone", phone(i)),
                paid=3_000 + 1_700 * ((i * 7 + k * 3) % 11),
                at=base + timedelta(days=11 * i + 37 * k),
            )
    insight.define_tag(
        shop.platform, code="clv", name="clv", kind="model", document={"model": "clv"}, actor="t"
    )
    shop.at(local(2026, 3, 1))
    [run] = insight.run_tags(shop.platform, actor="t")
    assert run["model_version"].startswith("bgnbd:") and run["members"] == 16
    assert len(insight.member_tags(shop.platform, 1)) == 1


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_concurrent_snapshots_of_a_segment_record_each_entry_once(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        shop.register(("phone", phone(i)), at=local(2026, 3, 1, 9))
        shop.order(f"A{i}", ("phone", phone(i)), paid=1_000, at=local(2026, 3, 2))
    insight.define_segment(
        shop.platform,
        code="buyers",
        name="b",
        condition={"orders": "count", "op": "gte", "value": 1},
        actor="t",
    )
    insight.segment_member_ids(shop.platform, "buyers")
    barrier = threading.Barrier(4)
    real = insight.segment_member_ids

    def together(platform: Any, code: str) -> list[int]:
        out = real(platform, code)
        barrier.wait()  # every snapshot has its members before any writes
        return out

    monkeypatch.setattr(insight, "segment_member_ids", together)
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda _: insight.snapshot(shop.platform, "buyers", actor="t"), range(4))
        )
    assert sorted(r["entered"] for r in results) == [0, 0, 0, 5]
    assert len(insight.segment_events(shop.platform, "buyers")) == 5


def test_a_background_refresh_brings_new_orders_and_reads_never_wait_for_it(
    shop: Shop,
) -> None:
    shop.order("BG-1", ("phone", phone(1)), paid=10_000, at=local(2026, 3, 1))
    a = insight.analytics(shop.platform)
    a.refresh()
    a.background = True  # as when served: reads no longer refresh by themselves
    query = q(since=date(2026, 3, 1), until=date(2026, 3, 3))
    (before,) = insight.kpi(shop.platform, "sales", query)
    assert before["orders"] == 1
    shop.order("BG-2", ("phone", phone(2)), paid=20_000, at=local(2026, 3, 1, 12))
    # A refresh in progress (holding the writer's lock) does not hold up a read.
    held, release = threading.Event(), threading.Event()

    def refreshing() -> None:
        with a.write_lock:
            held.set()
            release.wait(10)

    worker = threading.Thread(target=refreshing)
    worker.start()
    held.wait(10)
    with ThreadPoolExecutor(1) as pool:
        read = pool.submit(insight.kpi, shop.platform, "sales", query)
        assert read.result(timeout=5)[0]["orders"] == 1  # the last copy, at once
    release.set()
    worker.join()
    a.refresh(warm=True)
    assert len(a.results) == 1  # computed again for the new data before the switch
    (after,) = insight.kpi(shop.platform, "sales", query)
    assert (after["orders"], after["net_sales"]) == (2, 30_000)


def test_an_idle_refresh_leaves_the_members_alone_and_a_tier_change_is_copied(
    shop: Shop,
) -> None:
    member = shop.register(("phone", phone(1)), at=local(2026, 3, 1))
    a = insight.analytics(shop.platform)
    a.refresh()
    idle = a.refresh()
    assert "members" not in idle.rows and "identities" not in idle.rows
    tiers.change(shop.platform, member, tier="gold", reason="VIP", actor="test")
    changed = a.refresh()
    assert changed.rows["members"] >= 1
    tables = a.tables()
    tier = a.execute(tables["members"].filter(tables["members"].member_id == member).select("tier"))
    assert tier.to_pylist() == [{"tier": "gold"}]


def test_a_new_order_refreshes_the_members_but_orders_copied_before_do_not(
    shop: Shop,
) -> None:
    shop.order("F-1", ("phone", phone(1)), paid=1_000, at=local(2026, 3, 1))
    a = insight.analytics(shop.platform)
    a.refresh()
    again = a.refresh()  # the margin reads F-1 again: not new
    assert again.rows["orders"] == 1 and "members" not in again.rows
    shop.order("F-2", ("phone", phone(2)), paid=1_000, at=local(2026, 3, 1))
    assert "members" in a.refresh().rows
