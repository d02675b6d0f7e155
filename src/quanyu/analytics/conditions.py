"""Compiling a condition (:mod:`quanyu.domain.segments`) to an Ibis expression.

:func:`matching` returns the members a condition selects, as one Ibis table: every test
that needs facts (orders, points, coupons, tags) becomes an aggregate per member, left
joined onto the members, and the condition becomes one boolean predicate over the joined
columns. The backend evaluates it set-wise; nothing is evaluated row by row in Python.

A test on a value a member does not have is false: a member with no orders has no
``recency_days``, so ``recency_days gte 180`` does not select them (``not`` an
``orders count within_days 180 gte 1`` does). Counts, sales, units, points and coupons of
a member with none are 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir

from quanyu.analytics import summary as summaries
from quanyu.analytics.kpis import Tables
from quanyu.domain.segments import (
    AllOf,
    AnyOf,
    AttrCondition,
    Attribute,
    Comparison,
    Condition,
    CouponCondition,
    CouponMetric,
    Not,
    Op,
    OrderCondition,
    OrderMetric,
    PointsCondition,
    TagCondition,
)

HELD_KINDS = ("issued", "claimed", "released", "returned")
SUMMARY_MEASURE = {
    OrderMetric.COUNT: "orders",
    OrderMetric.SALES: "sales",
    OrderMetric.UNITS: "units",
    OrderMetric.RECENCY_DAYS: "last_at",
}


def days_between(earlier: ir.TimestampValue, later: ir.TimestampValue) -> ir.IntegerValue:
    """Whole days from ``earlier`` to ``later``, portable across backends."""
    seconds = later.epoch_seconds() - earlier.epoch_seconds()
    return (seconds / 86_400).floor().cast("int64")


def compare(column: ir.Value, test: Comparison, *, where: bool = False) -> ir.BooleanValue:
    """``column`` against ``test``; a null column gives false, or, with ``where``, null
    (which a filter takes as false, and which is cheaper to filter on)."""
    op, value = test.op, test.value
    result: ir.BooleanValue
    if op is Op.IS_NULL:
        return column.isnull()
    if op is Op.NOT_NULL:
        return column.notnull()
    if op is Op.EQ:
        result = column == value
    elif op is Op.NE:
        result = column != value
    elif op is Op.GT:
        result = column > value
    elif op is Op.GTE:
        result = column >= value
    elif op is Op.LT:
        result = column < value
    elif op is Op.LTE:
        result = column <= value
    elif op is Op.IN:
        result = column.isin(list(value))
    elif op is Op.NOT_IN:
        result = column.notin(list(value))
    else:
        result = column.between(value[0], value[1])
    return result if where else result.fill_null(False)


class _Compiler:
    """Pass 1 collects every fact test, grouped by the facts it reads; each group becomes
    ONE aggregate per member with a filtered column per test (``sum(...) FILTER (WHERE
    ...)``), so twenty tests over orders scan the orders once. Pass 2 turns each condition
    into a predicate over the joined columns."""

    def __init__(
        self, tables: Tables, as_of: datetime, summary: summaries.Summary | None = None
    ) -> None:
        self.tables = tables
        self.as_of = as_of
        self.summary = summary
        self.base = tables["members"]
        self.columns: dict[int, str] = {}
        self.groups: dict[str, dict[str, Condition]] = {}
        self.restricted = False

    def collect(self, cond: Condition) -> None:
        match cond:
            case AllOf(parts) | AnyOf(parts):
                for part in parts:
                    self.collect(part)
            case Not(part):
                self.collect(part)
            case AttrCondition():
                pass
            case _:
                name = f"_t{len(self.columns)}"
                self.columns[id(cond)] = name
                self.groups.setdefault(self._source(cond), {})[name] = cond

    def _source(self, cond: Condition) -> str:
        if isinstance(cond, OrderCondition):
            if (source := self._summary_source(cond)) is not None:
                return source
            return "lines" if cond.category or cond.sku else "orders"
        if isinstance(cond, PointsCondition):
            return "points"
        if isinstance(cond, CouponCondition):
            return f"coupons_{cond.metric.value}"
        return "tags"

    def _summary_source(self, cond: OrderCondition) -> str | None:
        """Which summary serves ``cond``: ``summary`` (the member summary) or
        ``summary/<facet>``; None when the orders must be grouped."""
        s = self.summary
        if s is None or cond.store or cond.sku or not s.serves(self.as_of, cond.within_days):
            return None
        if not cond.channel and not cond.category:
            return "summary"
        if cond.channel and not cond.category and "channel" in s.facets:
            return "summary/channel"
        # Order counts over several categories are not the sum of each one's.
        single = len(cond.category) == 1 or cond.metric is not OrderMetric.COUNT
        if cond.category and not cond.channel and single and "category" in s.facets:
            return "summary/category"
        return None

    def restrict(self, tests: Sequence[AttrCondition]) -> None:
        """Only members that pass ``tests``; their facts alone are grouped."""
        self.base = self.base.filter(
            *[self.predicate(self.base, test, where=True) for test in tests]
        )
        self.restricted = True

    def joined(self) -> ir.Table:
        """The members with one column per fact test, from one aggregate per fact table."""
        table = self.base
        for source, tests in self.groups.items():
            aggregate = self._aggregate(source, tests)
            table = table.left_join(aggregate, table.member_id == aggregate.k).drop("k")
        return table

    def _aggregate(self, source: str, tests: dict[str, Condition]) -> ir.Table:
        if source == "summary":
            assert self.summary is not None
            readings = {name: _reading(c) for name, c in tests.items()}
            read = summaries.read(self.summary, self.tables, readings, as_of=self.as_of)
            return read.rename(k="member_id")
        if source.startswith("summary/"):
            return self._facet_aggregate(source.removeprefix("summary/"), tests)
        facts = self._facts(source)
        windows = [getattr(c, "within_days", None) for c in tests.values()]
        if source in ("orders", "lines") and None not in windows:
            # Every test looks back a bounded time: older facts need not be grouped at all.
            days = max(w for w in windows if w is not None)
            facts = facts.filter(facts.ordered_at >= self.as_of - timedelta(days))
        if source == "lines":
            # Every test on lines names categories or SKUs: other lines need no grouping.
            cats = sorted({c for t in tests.values() for c in getattr(t, "category", ())})
            skus = sorted({k for t in tests.values() for k in getattr(t, "sku", ())})
            wanted = ibis.literal(False)
            if cats:
                wanted |= facts.category.isin(cats)
            if skus:
                wanted |= facts.sku.isin(skus)
            facts = facts.filter(wanted)
        if source == "lines":
            return self._per_order_then_member(facts, tests)
        metrics = {name: self._metric(facts, cond) for name, cond in tests.items()}
        return facts.group_by(k="member_id").aggregate(**metrics)

    def _facet_aggregate(self, facet: str, tests: dict[str, Condition]) -> ir.Table:
        """Tests on channels or categories from that facet's summary: each member's
        figures per code, summed (or, for a recency, the latest) over the codes a test
        names."""
        assert self.summary is not None
        readings: dict[str, summaries.Reading] = {}
        wanted: dict[str, tuple[str, tuple[str, ...], OrderMetric]] = {}
        for name, cond in tests.items():
            assert isinstance(cond, OrderCondition)
            reading = _reading(cond)
            key = f"{reading.measure}_{reading.window}"
            readings[key] = reading
            codes = cond.channel if facet == "channel" else cond.category
            wanted[name] = (key, codes, cond.metric)
        every = sorted({c for _, codes, _ in wanted.values() for c in codes})
        rows = summaries.read(
            self.summary, self.tables, readings, as_of=self.as_of, facet=facet, codes=every
        )
        metrics: dict[str, ir.Value] = {}
        for name, (key, codes, metric) in wanted.items():
            mine = rows.code.isin(list(codes))
            if metric is OrderMetric.RECENCY_DAYS:
                metrics[name] = rows[key].max(where=mine)
            else:
                metrics[name] = rows[key].sum(where=mine)
        return rows.group_by(k="member_id").aggregate(**metrics)

    def _per_order_then_member(self, lines: ir.Table, tests: dict[str, Condition]) -> ir.Table:
        """Line tests grouped per order, then per member: an order counts once however
        many of its lines match, without a distinct count (many times slower)."""
        first: dict[str, ir.Value] = {}
        second: dict[str, Any] = {}
        for name, cond in tests.items():
            assert isinstance(cond, OrderCondition)
            where = self._order_where(lines, cond)
            if cond.metric is OrderMetric.COUNT:
                first[name] = (lines.count(where=where) > 0).cast("int64")
                second[name] = "sum"
            elif cond.metric is OrderMetric.RECENCY_DAYS:
                first[name] = lines.ordered_at.max(where=where)
                second[name] = "max"
            else:
                measure = lines.net_sales if cond.metric is OrderMetric.SALES else lines.net_units
                first[name] = measure.sum(where=where)
                second[name] = "sum"
        orders = lines.group_by("member_id", "order_id").aggregate(**first)
        return orders.group_by(k="member_id").aggregate(
            **{name: getattr(orders[name], how)() for name, how in second.items()}
        )

    def _facts(self, source: str) -> ir.Table:
        facts = self._all_facts(source)
        if self.restricted:  # only the members still in question
            facts = facts.filter(facts.member_id.isin(self.base.member_id))
        return facts

    def _all_facts(self, source: str) -> ir.Table:
        at = self.as_of
        if source == "orders":
            o = self.tables["orders"]
            o = o.filter(
                o.member_id.notnull() & (o.units > o.refunded_units) & (o.ordered_at <= at)
            )
            return o.select(
                "member_id",
                "order_id",
                "ordered_at",
                "channel",
                "store",
                net_sales=o.paid_total - o.refunded_amount,
                net_units=o.units - o.refunded_units,
            )
        if source == "lines":
            x = self.tables["order_lines"]
            x = x.filter(
                x.member_id.notnull() & (x.quantity > x.refunded_quantity) & (x.ordered_at <= at)
            )
            return x.select(
                "member_id",
                "order_id",
                "ordered_at",
                "channel",
                "store",
                "category",
                "sku",
                net_sales=x.paid_amount - x.refunded_amount,
                net_units=x.quantity - x.refunded_quantity,
            )
        if source == "points":
            e = self.tables["points_entries"]
            return e.filter(e.occurred_at <= at)
        if source == "coupons_used":
            e = self.tables["coupon_events"]
            return e.filter((e.occurred_at <= at) & e.kind.isin(["redeemed", "returned"]))
        if source == "coupons_held":
            e = self.tables["coupon_events"]
            e = e.filter((e.occurred_at <= at) & (e.kind != "reserved"))
            latest = e.mutate(
                _n=ibis.row_number().over(
                    group_by=e.coupon_id,
                    order_by=[ibis.desc(e.occurred_at), ibis.desc(e.event_id)],
                )
            )
            return latest.filter((latest._n == 0) & latest.kind.isin(list(HELD_KINDS)))
        return self.tables["member_tags"]

    def _metric(self, facts: ir.Table, cond: Condition) -> ir.Value:
        if isinstance(cond, OrderCondition):
            where = self._order_where(facts, cond)
            if cond.metric is OrderMetric.COUNT:
                return facts.count(where=where)
            if cond.metric is OrderMetric.SALES:
                return facts.net_sales.sum(where=where)
            if cond.metric is OrderMetric.UNITS:
                return facts.net_units.sum(where=where)
            return facts.ordered_at.max(where=where)
        if isinstance(cond, PointsCondition):
            return facts.points.sum() - facts.debt_delta.sum()
        if isinstance(cond, CouponCondition):
            where = ibis.literal(True)
            if cond.template:
                where &= facts.template.isin(list(cond.template))
            if cond.metric is CouponMetric.HELD:
                return facts.count(where=where)
            if cond.within_days is not None:
                where &= facts.occurred_at >= self.as_of - timedelta(cond.within_days)
            return (facts.kind == "redeemed").ifelse(1, -1).sum(where=where)
        assert isinstance(cond, TagCondition)
        mine = facts.tag == cond.tag
        if cond.test is None:
            return facts.count(where=mine)
        column = facts.score if cond.score else facts.value
        return column.max(where=mine)

    def _order_where(self, facts: ir.Table, cond: OrderCondition) -> ir.BooleanValue:
        where = ibis.literal(True)
        if cond.within_days is not None:
            where &= facts.ordered_at >= self.as_of - timedelta(cond.within_days)
        if cond.channel:
            where &= facts.channel.isin(list(cond.channel))
        if cond.store:
            where &= facts.store.isin(list(cond.store))
        if cond.category:
            where &= facts.category.isin(list(cond.category))
        if cond.sku:
            where &= facts.sku.isin(list(cond.sku))
        return where

    # -- pass 2: the predicate over the joined columns
    def predicate(
        self, table: ir.Table, cond: Condition, *, where: bool = False
    ) -> ir.BooleanValue:
        """``cond`` over the joined columns: true or false for every member, or, with
        ``where`` (for a filter), null where false would need a null filled in. Under
        ``any`` and ``all`` a null acts as false in a filter; under ``not`` it would not,
        so a negated part is always filled."""
        match cond:
            case AllOf(parts):
                out = self.predicate(table, parts[0], where=where)
                for part in parts[1:]:
                    out = out & self.predicate(table, part, where=where)
                return out
            case AnyOf(parts):
                out = self.predicate(table, parts[0], where=where)
                for part in parts[1:]:
                    out = out | self.predicate(table, part, where=where)
                return out
            case Not(part):
                return ~self.predicate(table, part)
            case AttrCondition(attr, test):
                return compare(self._attribute(table, attr), test, where=where)
        column = table[self.columns[id(cond)]]
        if isinstance(cond, OrderCondition):
            if cond.metric is OrderMetric.RECENCY_DAYS:
                days = days_between(column, ibis.literal(self.as_of))
                return compare(days, cond.test, where=where)
            return compare(column.fill_null(0), cond.test, where=where)
        if isinstance(cond, PointsCondition | CouponCondition):
            return compare(column.fill_null(0), cond.test, where=where)
        assert isinstance(cond, TagCondition)
        if cond.test is None:
            present = column > 0
            return present if where else present.fill_null(False)
        return compare(column, cond.test, where=where)

    def _attribute(self, table: ir.Table, attr: Attribute) -> ir.Value:
        now = ibis.literal(self.as_of)
        if attr is Attribute.AGE:
            born = table.birthday.cast("timestamp")
            return (days_between(born, now) / 365.25).floor().cast("int64")
        if attr is Attribute.JOINED_DAYS:
            return days_between(table.registered_at, now)
        if attr is Attribute.BIRTHDAY_MONTH:
            return table.birthday.month()
        return table[attr.value]


def _reading(cond: Condition) -> summaries.Reading:
    """What a summary is asked for an order test it serves."""
    assert isinstance(cond, OrderCondition)
    return summaries.Reading(SUMMARY_MEASURE[cond.metric], cond.within_days)


def evaluate(
    tables: Tables,
    named: Mapping[str, Condition],
    *,
    as_of: datetime,
    summary: summaries.Summary | None = None,
) -> ir.Table:
    """``member_id`` and one boolean column per named condition, for every member: many
    tags in one pass over the facts. Order tests the ``summary`` holds read it instead
    of the orders (:mod:`quanyu.analytics.summary`)."""
    compiler = _Compiler(tables, as_of, summary)
    for condition in named.values():
        compiler.collect(condition)
    table = compiler.joined()
    return table.select(
        "member_id", **{name: compiler.predicate(table, c) for name, c in named.items()}
    )


def matching(
    tables: Tables,
    condition: Condition,
    *,
    as_of: datetime,
    summary: summaries.Summary | None = None,
) -> ir.Table:
    """The members (all canonical member columns) that ``condition`` selects at ``as_of``.

    Attribute tests that every selected member must pass (the condition itself, or parts
    of a top-level ``all``) are applied to the members first, and the facts are grouped
    only for the members left: a segment of gold members groups gold members' orders."""
    compiler = _Compiler(tables, as_of, summary)
    compiler.collect(condition)
    parts = condition.parts if isinstance(condition, AllOf) else (condition,)
    required = [p for p in parts if isinstance(p, AttrCondition)]
    if required:
        compiler.restrict(required)
    table = compiler.joined()
    rest = [compiler.predicate(table, p, where=True) for p in parts if p not in required]
    if rest:
        table = table.filter(*rest)
    return table.select(*compiler.base.columns)


def member_ids(
    tables: Tables,
    condition: Condition,
    *,
    as_of: datetime,
    summary: summaries.Summary | None = None,
) -> ir.Table:
    return matching(tables, condition, as_of=as_of, summary=summary).select("member_id")
