"""The member summary (analytics/summary.py): every figure read from it equals the same
figure counted from the orders, at any time of its day; the sync keeps it current."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import ibis
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Shop, local, phone
from quanyu.analytics import conditions, models, sync
from quanyu.analytics import summary as summaries
from quanyu.analytics.schema import SCHEMAS
from quanyu.domain.segments import parse
from quanyu.services import insight

ANCHOR = datetime(2026, 5, 10)
MEMBERS = 6


@dataclass(frozen=True)
class Order:
    member_id: int | None
    ordered_at: datetime
    units: int
    refunded_units: int
    paid: int
    refunded: int
    channel: str = "pos"
    # Lines: (category, quantity, refunded quantity, paid, refunded)
    lines: tuple[tuple[str | None, int, int, int, int], ...] = ()


line = st.tuples(
    st.sampled_from(["tops", "shoes", "bags", None]),  # a SKU with no category
    st.integers(1, 2),
    st.integers(0, 2),
    st.integers(0, 9_000),
    st.integers(0, 9_000),
).map(lambda t: (t[0], t[1], min(t[1], t[2]), t[3], min(t[3], t[4])))


@st.composite
def orders(draw: st.DrawFn) -> list[Order]:
    out = []
    for _ in range(draw(st.integers(0, 40))):
        units = draw(st.integers(1, 3))
        paid = draw(st.integers(0, 50_000))
        # Around the window edges of the summary: 7, 30, 90, 180 and 365 days back, and
        # the anchor's own day, to the minute.
        day = draw(st.sampled_from([-400, -366, -365, -364, -181, -180, -91, -90, -31, -30]))
        day = draw(st.one_of(st.just(day), st.integers(-400, 0), st.sampled_from([-8, -7, -1])))
        minute = draw(st.integers(0, 24 * 60 - 1))
        out.append(
            Order(
                member_id=draw(st.one_of(st.none(), st.integers(1, MEMBERS))),
                ordered_at=ANCHOR + timedelta(days=day, minutes=minute),
                units=units,
                refunded_units=draw(st.integers(0, units)),
                paid=paid,
                refunded=draw(st.integers(0, paid)),
                channel=draw(st.sampled_from(["pos", "tmall", "douyin"])),
                lines=tuple(draw(st.lists(line, max_size=3))),
            )
        )
    return out


def store_of(rows: list[Order]) -> Any:
    """An in-memory DuckDB store holding ``rows`` as its orders and lines, and six
    members."""
    con = sync.open_store(":memory:")
    data: dict[str, list[Any]] = {name: [] for name in SCHEMAS["orders"].names}
    lines: dict[str, list[Any]] = {name: [] for name in SCHEMAS["order_lines"].names}
    for n, o in enumerate(rows):
        for category, quantity, back, paid, refunded in o.lines:
            fill_line = {
                "order_id": n + 1,
                "member_id": o.member_id,
                "ordered_at": o.ordered_at,
                "channel": o.channel,
                "category": category,
                "quantity": quantity,
                "refunded_quantity": back,
                "paid_amount": paid,
                "refunded_amount": refunded,
            }
            for name, values in lines.items():
                values.append(fill_line.get(name))
        fill = {
            "order_id": n + 1,
            "member_id": o.member_id,
            "ordered_at": o.ordered_at,
            "units": o.units,
            "refunded_units": o.refunded_units,
            "paid_total": o.paid,
            "refunded_amount": o.refunded,
            "channel": o.channel,
        }
        for name, values in data.items():
            values.append(fill.get(name))
    con.con.register("_rows", pa.table(data, schema=SCHEMAS["orders"].to_pyarrow()))
    con.con.execute("INSERT INTO orders SELECT * FROM _rows")
    con.con.register("_lines", pa.table(lines, schema=SCHEMAS["order_lines"].to_pyarrow()))
    con.con.execute("INSERT INTO order_lines SELECT * FROM _lines")
    members: dict[str, list[Any]] = {n: [None] * MEMBERS for n in SCHEMAS["members"].names}
    members["member_id"] = list(range(1, MEMBERS + 1))
    members["created_at"] = [ANCHOR - timedelta(days=500)] * MEMBERS
    members["registered_at"] = [ANCHOR - timedelta(days=d) for d in (500, 60, 30, 1, 0, 400)]
    con.con.register("_members", pa.table(members, schema=SCHEMAS["members"].to_pyarrow()))
    con.con.execute("INSERT INTO members SELECT * FROM _members")
    return con


def summary_of(con: Any) -> summaries.Summary:
    for facet in (None, *summaries.FACETS):
        sync.write_summary(con, con.con, anchor=ANCHOR, facet=facet)
    facets = {f: con.table(summaries.table_name(f)) for f in summaries.FACETS}
    return summaries.Summary(con.table(summaries.TABLE), ANCHOR, facets)


def tables_of(con: Any) -> dict[str, Any]:
    return {name: con.table(name) for name in SCHEMAS}


def counted(rows: list[Order], as_of: datetime) -> Iterator[Order]:
    return (
        o
        for o in rows
        if o.member_id is not None and o.units > o.refunded_units and o.ordered_at <= as_of
    )


READINGS = {
    f"{m}_{w}": summaries.Reading(m, w)
    for m in ("orders", "sales", "units", "last_at")
    for w in (None, *summaries.WINDOWS)
} | {"first_at": summaries.Reading("first_at"), "previous_at": summaries.Reading("previous_at")}


def expected(rows: list[Order], as_of: datetime) -> dict[int, dict[str, Any]]:
    """Each figure counted from the orders in plain Python."""
    out: dict[int, dict[str, Any]] = {}
    mine: dict[int, list[Order]] = {}
    for o in counted(rows, as_of):
        assert o.member_id is not None
        mine.setdefault(o.member_id, []).append(o)
    for member, theirs in mine.items():
        times = sorted((o.ordered_at for o in theirs), reverse=True)
        row: dict[str, Any] = {
            "first_at": times[-1],
            "previous_at": times[1] if len(times) > 1 else None,
        }
        for w in (None, *summaries.WINDOWS):
            inside = [o for o in theirs if w is None or o.ordered_at >= as_of - timedelta(days=w)]
            row[f"orders_{w}"] = len(inside)
            row[f"sales_{w}"] = sum(o.paid - o.refunded for o in inside)
            row[f"units_{w}"] = sum(o.units - o.refunded_units for o in inside)
            row[f"last_at_{w}"] = max((o.ordered_at for o in inside), default=None)
        out[member] = row
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=orders(), minute=st.integers(0, 24 * 60 - 1))
def test_every_summary_figure_equals_the_figure_counted_from_the_orders_at_any_time_of_its_day(
    rows: list[Order], minute: int
) -> None:
    con = store_of(rows)
    as_of = ANCHOR + timedelta(minutes=minute)
    read = summaries.read(summary_of(con), tables_of(con), READINGS, as_of=as_of).to_pyarrow()
    got = {r.pop("member_id"): r for r in read.to_pylist()}
    assert got == expected(rows, as_of)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=orders(), minute=st.integers(0, 24 * 60 - 1))
def test_rfm_lifecycle_and_conditions_from_the_summary_equal_those_from_the_orders(
    rows: list[Order], minute: int
) -> None:
    con = store_of(rows)
    tables = tables_of(con)
    summary = summary_of(con)
    as_of = ANCHOR + timedelta(minutes=minute)

    def same(make: Any) -> None:
        direct = make(None).to_pyarrow().sort_by("member_id")
        summed = make(summary).to_pyarrow().sort_by("member_id")
        assert summed.to_pylist() == direct.to_pylist()

    same(lambda s: models.rfm(tables, as_of=as_of, summary=s))
    same(lambda s: models.rfm(tables, as_of=as_of, lookback_days=30, summary=s))
    same(lambda s: models.lifecycle(tables, as_of=as_of, summary=s))
    named = {
        "count": parse({"orders": "count", "within_days": 30, "op": "gte", "value": 1}),
        "sales": parse({"orders": "sales", "within_days": 365, "op": "gte", "value": 20_000}),
        "units": parse({"orders": "units", "op": "between", "value": [2, 5]}),
        "recent": parse({"orders": "recency_days", "within_days": 90, "op": "lte", "value": 10}),
        "lapsed": parse({"orders": "recency_days", "op": "gte", "value": 180}),
        "odd": parse({"orders": "count", "within_days": 45, "op": "gte", "value": 1}),
        "none": parse({"not": {"orders": "count", "within_days": 7, "op": "gte", "value": 1}}),
        "live": parse({"orders": "count", "channel": ["douyin"], "op": "gte", "value": 1}),
        "market": parse(
            {
                "orders": "sales",
                "channel": ["tmall", "douyin"],
                "within_days": 30,
                "op": "gte",
                "value": 9_000,
            }
        ),
        "shop_recent": parse(
            {
                "orders": "recency_days",
                "channel": ["pos"],
                "within_days": 365,
                "op": "lte",
                "value": 100,
            }
        ),
        "shoes": parse(
            {"orders": "count", "category": ["shoes"], "within_days": 90, "op": "gte", "value": 2}
        ),
        "shoes_bags": parse(
            {"orders": "count", "category": ["shoes", "bags"], "op": "gte", "value": 2}
        ),
        "tops_sales": parse(
            {
                "orders": "sales",
                "category": ["tops", "bags"],
                "within_days": 365,
                "op": "gte",
                "value": 5_000,
            }
        ),
        "tops_units": parse(
            {"orders": "units", "category": ["tops"], "within_days": 7, "op": "gte", "value": 1}
        ),
        "bags_recent": parse(
            {"orders": "recency_days", "category": ["bags"], "op": "lte", "value": 200}
        ),
    }
    same(lambda s: conditions.evaluate(tables, named, as_of=as_of, summary=s))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=orders())
def test_a_summary_moved_on_a_day_equals_one_built_for_that_day(rows: list[Order]) -> None:
    con = store_of(rows)
    yesterday = ANCHOR - timedelta(days=1)
    for facet in (None, *summaries.FACETS):
        sync.write_summary(con, con.con, anchor=yesterday, facet=facet)
        sync.roll_summary(con, con.con, anchor=yesterday, facet=facet)
    keys = ["member_id", "code"]
    moved = {f: con.table(summaries.table_name(f)).to_pyarrow() for f in (None, *summaries.FACETS)}
    built = summary_of(con)
    for facet, table in moved.items():
        fresh = built.table if facet is None else built.facets[facet]
        order = [k for k in keys if k in table.column_names]
        assert table.sort_by([(k, "ascending") for k in order]).to_pylist() == (
            fresh.to_pyarrow().sort_by([(k, "ascending") for k in order]).to_pylist()
        ), facet


def test_summary_figures_come_out_of_duckdb_as_64_bit_integers() -> None:
    # DuckDB sums BIGINT into 128-bit HUGEINT; a read keeps every figure 64-bit, so the
    # summary's rows are not added, compared and handed to Arrow as 128-bit values.
    rows = [Order(1, ANCHOR - timedelta(days=d), 2, 0, 1_000, 0) for d in (1, 400)]
    rows += [Order(2, ANCHOR + timedelta(hours=h), 1, 0, 500, 0) for h in (1, 2)]
    con = store_of(rows)
    as_of = ANCHOR + timedelta(hours=3)
    read = summaries.read(summary_of(con), tables_of(con), READINGS, as_of=as_of)
    arrow = con.con.sql(ibis.to_sql(read, dialect="duckdb")).to_arrow_table()
    for name in READINGS:
        if not name.startswith(("last_at", "first_at", "previous_at")):
            assert arrow.schema.field(name).type == pa.int64(), name
    figures = {r["member_id"]: r for r in arrow.to_pylist()}
    assert (figures[1]["sales_365"], figures[2]["sales_None"], figures[2]["orders_7"]) == (
        1_000,
        1_000,
        2,
    )


def test_the_summary_serves_its_own_day_and_the_windows_it_holds_only() -> None:
    s = summaries.Summary(ibis.table({"member_id": "int64"}, name="s"), ANCHOR)
    assert s.serves(ANCHOR) and s.serves(ANCHOR + timedelta(hours=23, minutes=59), 365)
    assert not s.serves(ANCHOR - timedelta(microseconds=1))
    assert not s.serves(ANCHOR + timedelta(days=1))
    assert not s.serves(ANCHOR, 45)


def test_rows_rebuilt_for_some_members_equal_a_whole_rebuild() -> None:
    rows = [Order(1, ANCHOR - timedelta(days=d), 2, 0, 1_000 * d, 0) for d in (1, 40, 200, 500)] + [
        Order(2, ANCHOR - timedelta(days=3), 1, 0, 500, 0)
    ]
    con = store_of(rows)
    summary_of(con)
    con.con.execute("UPDATE orders SET refunded_units = units WHERE order_id = 2")
    con.con.execute("DELETE FROM orders WHERE member_id = 2")
    con.con.register("_some", pa.table({"member_id": pa.array([1, 2], pa.int64())}))
    sync.write_summary(con, con.con, anchor=ANCHOR, members="_some")
    partly = con.table(summaries.TABLE).order_by("member_id").to_pyarrow()
    whole = summary_of(con).table.order_by("member_id").to_pyarrow()
    assert partly.to_pylist() == whole.to_pylist()
    assert [r["member_id"] for r in whole.to_pylist()] == [1]


# ------------------------------------------------------------ kept current by the sync

TESTS = [
    {"orders": "count", "within_days": 30, "op": "gte", "value": 1},
    {"orders": "sales", "within_days": 365, "op": "gte", "value": 15_000},
    {"orders": "recency_days", "op": "lte", "value": 3},
    {"orders": "count", "op": "gte", "value": 2},
    {"orders": "count", "channel": ["pos"], "within_days": 30, "op": "gte", "value": 1},
]


def counts(shop: Shop) -> tuple[list[int], list[int]]:
    """Each test's count from the summary, and counted from the orders."""
    a = insight.analytics(shop.platform)
    tables = a.tables()
    assert insight.summary_of(tables) is not None
    at = a.now()
    with a.lock:
        summed = [insight.count(shop.platform, doc)["members"] for doc in TESTS]
        direct = [
            int(conditions.matching(tables, parse(doc), as_of=at).count().execute())
            for doc in TESTS
        ]
    return summed, direct


def test_the_sync_keeps_the_summary_current_through_orders_refunds_merges_and_days(
    shop: Shop,
) -> None:
    a = insight.analytics(shop.platform)
    shop.at(local(2026, 3, 1, 9))
    shop.order("A1", ("phone", phone(1)), paid=10_000, at=local(2026, 2, 1))
    shop.order("A2", ("phone", phone(1)), paid=8_000, at=local(2026, 2, 27))
    shop.order("B1", ("email", "b@example.com"), paid=9_000, at=local(2026, 2, 28))
    a.refresh()
    assert counts(shop) == ([2, 1, 2, 1, 2], [2, 1, 2, 1, 2])
    anchor = insight.summary_of(a.tables()).anchor  # type: ignore[union-attr]
    assert anchor == datetime(2026, 3, 1)
    # An order today, a refund of an old order: the same day, the rows are rebuilt.
    shop.order("A3", ("phone", phone(1)), paid=2_000, at=local(2026, 3, 1, 11))
    shop.refund("R1", "A2", amount=8_000, quantity=1)
    a.refresh()
    summed, direct = counts(shop)
    assert summed == direct == [2, 0, 2, 1, 2]
    # A merge: the survivor's row holds both members' orders.
    shop.order(
        "AB", ("phone", phone(1)), ("email", "b@example.com"), paid=100, at=shop.later(hours=1)
    )
    a.refresh()
    summed, direct = counts(shop)
    assert summed == direct == [1, 1, 1, 1, 1]
    # Weeks later, the summary is built again for the day; the day after, moved on.
    for day in (20, 21):
        shop.at(local(2026, 3, day, 9))
        if day == 21:
            shop.order("B2", ("email", "b@example.com"), paid=700, at=local(2026, 3, 20, 18))
        a.refresh(warm=day == 21)  # as the server's background refresh does
        summary = insight.summary_of(a.tables())
        assert summary is not None and summary.anchor == datetime(2026, 3, day)
        summed, direct = counts(shop)
        assert summed == direct
    # Every fact copied again: the summaries are built again, not patched.
    a.refresh(full=True)
    assert counts(shop) == (summed, direct)
