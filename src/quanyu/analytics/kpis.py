"""The KPI layer: one Ibis expression per metric, over the canonical tables.

``docs/metrics.md`` holds the written definition of every metric here; this module is
their one implementation. Every function takes the canonical tables and a
:class:`KpiQuery` and returns an Ibis table: the breakdown columns the query asks for
(``period`` first when it has a grain), then the metric's columns. Nothing here executes
a query or reads the clock, so the same code runs on DuckDB, PostgreSQL or Spark.

Refunds are netted against the order they refund, in the order's period, as far as they
are known when the metric is computed:

- net sales of an order = ``paid_total - refunded_amount``;
- net units = ``units - refunded_units``;
- an order *counts* (towards orders, buyers, conversion, repurchase, retention) while it
  keeps at least one unit: a fully refunded order is as if it never happened.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta

import ibis
import ibis.expr.types as ir

Tables = Mapping[str, ir.Table]


class Dimension(enum.StrEnum):
    BRAND = "brand"
    CHANNEL = "channel"
    STORE = "store"
    REGION = "region"
    GUIDE = "guide"
    TIER = "tier"


class Grain(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


class Cohort(enum.StrEnum):
    JOIN_MONTH = "join_month"
    FIRST_PURCHASE_MONTH = "first_purchase_month"


TRUNCATE_UNIT = {
    Grain.DAY: "D",
    Grain.WEEK: "W",
    Grain.MONTH: "M",
    Grain.QUARTER: "Q",
    Grain.YEAR: "Y",
}


@dataclass(frozen=True)
class KpiQuery:
    """What to compute: the half-open period ``[since, until)`` in wall-clock dates,
    an optional grain, the breakdown dimensions, and filters (dimension -> codes)."""

    since: date
    until: date
    grain: Grain | None = None
    by: tuple[Dimension, ...] = ()
    filters: Mapping[Dimension, tuple[str, ...]] = field(default_factory=dict)
    window_days: int = 30  # N of "converted within N days" and "bought again within N"

    @property
    def start(self) -> datetime:
        return datetime.combine(self.since, time())

    @property
    def end(self) -> datetime:
        return datetime.combine(self.until, time())


def counted_orders(tables: Tables) -> ir.Table:
    """Orders with their net figures and the buyer's tier; only orders that count."""
    o = tables["orders"]
    m = tables["members"].select(m_id="member_id", tier="tier", m_registered_at="registered_at")
    j = o.left_join(m, o.member_id == m.m_id)
    j = j.mutate(
        net_sales=j.paid_total - j.refunded_amount,
        net_units=j.units - j.refunded_units,
        is_member=j.m_registered_at.notnull() & (j.m_registered_at <= j.ordered_at),
    )
    return j.filter(j.net_units > 0).drop("m_id", "m_registered_at")


def _period(column: ir.TimestampValue, grain: Grain | None) -> ir.Value:
    return column.truncate(TRUNCATE_UNIT[grain]).date() if grain else ibis.literal(None)


def _scoped(table: ir.Table, query: KpiQuery) -> ir.Table:
    for dim, codes in query.filters.items():
        if codes:
            table = table.filter(table[dim.value].isin(list(codes)))
    return table


def _keys(query: KpiQuery) -> list[str]:
    keys = ["period"] if query.grain else []
    return keys + [d.value for d in query.by]


def _with_period(table: ir.Table, at: str, query: KpiQuery) -> ir.Table:
    if query.grain is None:
        return table
    return table.mutate(period=_period(table[at], query.grain))


def _rate(numerator: ir.NumericValue, denominator: ir.NumericValue) -> ir.FloatingValue:
    """``numerator / denominator`` to four places; null when the denominator is 0."""
    ratio = numerator.cast("float64") / denominator.nullif(0).cast("float64")
    return ratio.round(4)


def _group(table: ir.Table, query: KpiQuery, **metrics: ir.Value) -> ir.Table:
    keys = _keys(query)
    out = table.group_by(keys).aggregate(**metrics) if keys else table.aggregate(**metrics)
    return out.order_by(keys) if keys else out


def _in_period(table: ir.Table, at: str, query: KpiQuery) -> ir.Table:
    return table.filter((table[at] >= query.start) & (table[at] < query.end))


def _recruits(tables: Tables, query: KpiQuery) -> ir.Table:
    m = tables["members"].filter(lambda m: m.registered_at.notnull())
    m = _in_period(m, "registered_at", query)
    return _with_period(_scoped(m, query), "registered_at", query)


# ---------------------------------------------------------------- sales


def sales(tables: Tables, query: KpiQuery) -> ir.Table:
    """Net sales, orders, average order value (客单价), units per transaction (连带率)
    and member share of sales."""
    o = _with_period(
        _scoped(_in_period(counted_orders(tables), "ordered_at", query), query), "ordered_at", query
    )
    out = _group(
        o,
        query,
        net_sales=o.net_sales.sum(),
        orders=o.count(),
        net_units=o.net_units.sum(),
        member_sales=o.is_member.ifelse(o.net_sales, 0).sum(),
        buyers=o.member_id.nunique(),
    )
    return out.mutate(
        average_order_value=_rate(out.net_sales, out.orders).round(0),
        units_per_transaction=_rate(out.net_units, out.orders),
        member_share=_rate(out.member_sales, out.net_sales),
    )


def guide_sales(tables: Tables, query: KpiQuery) -> ir.Table:
    """Per bound guide: net sales and orders of the members bound to them, in every
    channel, in the period (the guide leaderboard). Filters apply to the member."""
    o = _in_period(counted_orders(tables), "ordered_at", query)
    m = _scoped(tables["members"], query).filter(lambda m: m.guide.notnull())
    m = m.select(b_id="member_id", bound_guide="guide")
    j = o.join(m, o.member_id == m.b_id)
    out = j.group_by("bound_guide").aggregate(
        bound_sales=j.net_sales.sum(), bound_orders=j.count(), bound_buyers=j.member_id.nunique()
    )
    return out.rename(guide="bound_guide").order_by(ibis.desc("bound_sales"))


def active_members(tables: Tables, query: KpiQuery) -> ir.Table:
    """Members (joined on or before the order) with at least one counted order."""
    o = counted_orders(tables)
    o = _with_period(
        _scoped(_in_period(o.filter(o.is_member), "ordered_at", query), query), "ordered_at", query
    )
    return _group(o, query, active_members=o.member_id.nunique())


# ---------------------------------------------------------------- recruitment


def new_members(tables: Tables, query: KpiQuery) -> ir.Table:
    """Members who joined in the period, by their recruitment channel, store and guide."""
    m = _recruits(tables, query)
    return _group(m, query, new_members=m.count())


def new_member_conversion(tables: Tables, query: KpiQuery) -> ir.Table:
    """The share of the period's new members with a counted order within
    ``window_days`` of joining (joining day included)."""
    m = _recruits(tables, query)
    o = counted_orders(tables).select(b_member="member_id", b_at="ordered_at")
    window = ibis.interval(days=query.window_days)
    bought = (
        m.join(
            o,
            (m.member_id == o.b_member)
            & (o.b_at >= m.registered_at)
            & (o.b_at < m.registered_at + window),
        )
        .select("member_id")
        .distinct()
        .mutate(converted=ibis.literal(1))
    )
    j = m.left_join(bought, m.member_id == bought.member_id)
    out = _group(j, query, new_members=j.count(), converted=j.converted.fill_null(0).sum())
    return out.mutate(conversion_rate=_rate(out.converted, out.new_members))


def acquisition_cost(tables: Tables, query: KpiQuery) -> ir.Table:
    """Cost per new member (CAC) by recruitment channel: the brand's loaded costs for the
    months of the period over the members recruited in those channels."""
    months = _months(query.since, query.until)
    costs = tables["acquisition_costs"]
    costs = (
        costs.filter(costs.month.isin(months))
        .group_by("channel")
        .aggregate(cost=costs.amount.sum())
    )
    m = _recruits(tables, replace(query, grain=None, by=()))
    recruits = m.group_by("channel").aggregate(new_members=m.count())
    j = costs.outer_join(recruits, costs.channel == recruits.channel)
    j = j.select(
        channel=j.channel.fill_null(j.channel_right),
        cost=j.cost.fill_null(0),
        new_members=j.new_members.fill_null(0),
    )
    return j.mutate(cac=_rate(j.cost, j.new_members).round(0)).order_by("channel")


def _months(since: date, until: date) -> list[str]:
    months, year, month = [], since.year, since.month
    while (year, month) <= (until.year, until.month) and date(year, month, 1) < until:
        months.append(f"{year:04d}-{month:02d}")
        year, month = year + (month == 12), month % 12 + 1
    return months


# ---------------------------------------------------------------- repeat behaviour


def repurchase(tables: Tables, query: KpiQuery) -> ir.Table:
    """Of the members who bought in the period, the share who bought again (any channel)
    within ``window_days`` after their first counted order of the period."""
    o = counted_orders(tables).filter(lambda o: o.member_id.notnull())
    first = _scoped(_in_period(o, "ordered_at", query), query)
    first = first.mutate(
        _n=ibis.row_number().over(
            group_by=first.member_id, order_by=[first.ordered_at, first.order_id]
        )
    )
    first = _with_period(first.filter(first._n == 0), "ordered_at", query)
    later = o.select(r_member="member_id", r_at="ordered_at", r_order="order_id")
    window = ibis.interval(days=query.window_days)
    again = (
        first.join(
            later,
            (first.member_id == later.r_member)
            & (later.r_order != first.order_id)
            & (later.r_at >= first.ordered_at)
            & (later.r_at <= first.ordered_at + window),
        )
        .select("member_id")
        .distinct()
        .mutate(again=ibis.literal(1))
    )
    j = first.left_join(again, first.member_id == again.member_id)
    out = _group(j, query, buyers=j.count(), repeat_buyers=j.again.fill_null(0).sum())
    return out.mutate(repurchase_rate=_rate(out.repeat_buyers, out.buyers))


def retention(
    tables: Tables, query: KpiQuery, *, cohort: Cohort = Cohort.JOIN_MONTH, months: int = 12
) -> ir.Table:
    """Cohorts of members by join month (or first-purchase month) within the period; for
    each month offset 0..``months``, the share of the cohort with a counted order then."""
    o = counted_orders(tables).filter(lambda o: o.member_id.notnull())
    m = tables["members"].filter(lambda m: m.registered_at.notnull())
    if cohort is Cohort.JOIN_MONTH:
        base = m.mutate(cohort_at=m.registered_at)
    else:
        firsts = o.group_by(f_member="member_id").aggregate(cohort_at=o.ordered_at.min())
        base = m.join(firsts, m.member_id == firsts.f_member)
    base = _scoped(_in_period(base, "cohort_at", query), query)
    base = base.mutate(cohort=base.cohort_at.truncate("M").date())
    by = [d.value for d in query.by]
    sizes = base.group_by(["cohort", *by]).aggregate(members=base.count())
    bought = o.select(a_member="member_id", a_at="ordered_at")
    j = base.join(
        bought, (base.member_id == bought.a_member) & (bought.a_at >= base.cohort_at.truncate("M"))
    )
    j = j.mutate(
        offset=(j.a_at.year() - j.cohort.year()) * 12 + (j.a_at.month() - j.cohort.month())
    )
    j = j.filter(j.offset <= months)
    active = j.group_by(["cohort", *by, "offset"]).aggregate(active=j.member_id.nunique())
    out = sizes.join(active, ["cohort", *by])
    out = out.mutate(retention_rate=_rate(out.active, out.members))
    return out.select("cohort", *by, "offset", "members", "active", "retention_rate").order_by(
        ["cohort", *by, "offset"]
    )


# ---------------------------------------------------------------- points


def points_liability(tables: Tables, query: KpiQuery, *, point_value_minor: float) -> ir.Table:
    """Points outstanding at the end of the period (every ledger entry before ``until``,
    less debt), and their value in fen at ``point_value_minor`` per point."""
    e = tables["points_entries"]
    e = e.filter(e.occurred_at < query.end)
    m = tables["members"].select(
        l_member="member_id",
        brand="brand",
        channel="channel",
        store="store",
        region="region",
        guide="guide",
        tier="tier",
    )
    j = _scoped(e.join(m, e.member_id == m.l_member), query)
    keys = [d.value for d in query.by]
    agg = {"points": j.points.sum(), "debt": j.debt_delta.sum()}
    out = j.group_by(keys).aggregate(**agg) if keys else j.aggregate(**agg)
    out = out.mutate(liability_points=out.points - out.debt)
    return out.mutate(
        liability_value=(out.liability_points.cast("float64") * point_value_minor).round(0)
    )


def period_bounds(days: Sequence[date]) -> tuple[date, date]:
    """The half-open bounds that cover ``days``."""
    return min(days), max(days) + timedelta(days=1)
