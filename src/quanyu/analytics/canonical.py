"""The canonical tables as Ibis expressions over the operational tables.

This is the one mapping from the operational schema (``adapters/tables.py``) to the
canonical model (:mod:`quanyu.analytics.schema`). It runs on whatever Ibis backend holds
the operational tables:

- on PostgreSQL, KPIs, tags and segments run straight over these expressions;
- :mod:`quanyu.analytics.sync` runs them (filtered to what is new) on SQLite or
  PostgreSQL and loads the result into DuckDB.

Timestamps come out in UTC here; :func:`localise` shifts them to the program's wall
clock. They are separate because SQLite's Ibis backend cannot add intervals, so the sync
shifts on the DuckDB side. The shift is the program time zone's UTC offset at the time of
the run: exact for zones without daylight saving (Asia/Shanghai and every other zone in
mainland China), an hour off for part of the year elsewhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import ibis
import ibis.expr.types as ir

from quanyu.analytics.schema import SCHEMAS

REALTIME = "realtime"  # the model_version of tags set at ingestion


def offset_minutes(timezone: str, at: datetime) -> int:
    """The UTC offset of ``timezone`` at ``at``, in whole minutes."""
    delta = ZoneInfo(timezone).utcoffset(at.replace(tzinfo=None))
    return int(delta.total_seconds() // 60) if delta is not None else 0


def localise(table: ir.Table, minutes: int) -> ir.Table:
    """``table`` with every timestamp column moved by ``minutes`` (UTC to wall clock)."""
    if minutes == 0:
        return table
    shift = ibis.interval(minutes=minutes)
    changes = {
        name: table[name] + shift for name, kind in table.schema().items() if kind.is_timestamp()
    }
    return table.mutate(**changes) if changes else table


def conform(table: ir.Table, name: str) -> ir.Table:
    """``table`` cast to exactly the canonical schema of ``name``, columns in order."""
    schema = SCHEMAS[name]
    return table.select(*[table[c].cast(kind).name(c) for c, kind in schema.items()])


class Operational:
    """The operational tables of one database, as Ibis tables."""

    def __init__(self, con: Any) -> None:
        self.con = con

    def __getattr__(self, name: str) -> ir.Table:
        table: ir.Table = self.con.table(name)
        return table


def _codes(op: Operational) -> tuple[ir.Table, ir.Table, ir.Table, ir.Table]:
    channels = op.channels.select(channel_id="id", channel="code")
    brands = op.brands.select(brand_id="id", brand="code", brand_program_id="program_id")
    stores = op.stores.select(
        store_id="id", store="code", store_brand_id="brand_id", store_region="region"
    )
    guides = op.guides.select(guide_id="id", guide="code")
    return channels, brands, stores, guides


def _since(table: ir.Table, column: str, since: datetime | None) -> ir.Table:
    return table if since is None else table.filter(table[column] >= since)


def stores(op: Operational) -> ir.Table:
    s = op.stores
    b = op.brands.select(brand_id="id", brand="code")
    joined = s.left_join(b, s.brand_id == b.brand_id)
    return conform(joined.mutate(store=joined.code), "stores")


def members(op: Operational, *, program: str | None = None) -> ir.Table:
    """Active profiles with their membership of ``program`` (the first one when None)."""
    p = op.profiles.filter(lambda p: p.status == "active")
    m = op.memberships.filter(lambda m: m.status == "active")
    programs = op.programs.select(program_id="id", program_code="code")
    m = m.join(programs, m.program_id == programs.program_id)
    if program is not None:
        m = m.filter(m.program_code == program)
    m = m.mutate(_rank=ibis.row_number().over(group_by=m.profile_id, order_by=m.id))
    m = m.filter(m._rank == 0).select(
        profile_id="profile_id",
        m_program_id="program_id",
        member_no="member_no",
        registered_at="registered_at",
        m_channel_id="channel_id",
        m_store_id="store_id",
        m_guide_id="guide_id",
        tier="tier_code",
    )
    channels, brands, stores_, guides = _codes(op)
    first_brand = brands.group_by("brand_program_id").aggregate(
        program_brand_id=brands.brand_id.min()
    )
    home = stores_.select(home_id="store_id", home_store="store", home_region="store_region")
    j = p.left_join(m, p.id == m.profile_id)
    j = j.left_join(channels, j.m_channel_id == channels.channel_id)
    j = j.left_join(stores_, j.m_store_id == stores_.store_id)
    j = j.left_join(guides, j.m_guide_id == guides.guide_id)
    j = j.left_join(home, j.home_store_id == home.home_id)
    j = j.left_join(first_brand, j.m_program_id == first_brand.brand_program_id)
    j = j.left_join(brands, brands.brand_id == j.store_brand_id.fill_null(j.program_brand_id))
    j = j.mutate(
        member_id=j.id,
        region=j.home_region.fill_null(j.store_region),
        latitude=j.last_latitude,
        longitude=j.last_longitude,
    )
    return conform(j, "members")


def identities(op: Operational) -> ir.Table:
    i = op.identities
    return conform(i.mutate(member_id=i.profile_id), "identities")


def _line_totals(op: Operational, orders: ir.Table) -> ir.Table:
    lines = op.order_lines
    lines = lines.filter(lines.order_id.isin(orders.id))
    return lines.group_by(l_order_id=lines.order_id).aggregate(
        units=lines.quantity.sum(), refunded_units=lines.refunded_quantity.sum()
    )


def _changed_orders(op: Operational, since: datetime | None) -> ir.Table:
    """Orders received at or after ``since``, or refunded since then (all when None)."""
    o = op.orders
    if since is None:
        return o
    refunded = op.refunds.filter(lambda r: r.received_at >= since).select("order_id")
    return o.filter((o.received_at >= since) | o.id.isin(refunded.order_id))


def orders(op: Operational, *, since: datetime | None = None) -> ir.Table:
    o = _changed_orders(op, since)
    channels, brands, stores_, guides = _codes(op)
    j = o.join(channels, o.channel_id == channels.channel_id)
    j = j.join(brands, j.brand_id == brands.brand_id)
    j = j.left_join(stores_, j.store_id == stores_.store_id)
    j = j.left_join(guides, j.guide_id == guides.guide_id)
    totals = _line_totals(op, o)
    j = j.left_join(totals, j.id == totals.l_order_id)
    j = j.mutate(
        order_id=j.id,
        member_id=j.profile_id,
        region=j.store_region,
        units=j.units.fill_null(0),
        refunded_units=j.refunded_units.fill_null(0),
    )
    return conform(j, "orders")


def order_lines(op: Operational, *, since: datetime | None = None) -> ir.Table:
    o = _changed_orders(op, since)
    channels, _, stores_, _ = _codes(op)
    head = o.select(
        o_id="id",
        member_id="profile_id",
        ordered_at="ordered_at",
        o_channel="channel_id",
        o_store="store_id",
    )
    head = head.join(channels, head.o_channel == channels.channel_id)
    head = head.left_join(stores_, head.o_store == stores_.store_id)
    lines = op.order_lines
    j = lines.join(head, lines.order_id == head.o_id)
    return conform(j, "order_lines")


def refunds(op: Operational, *, since: datetime | None = None) -> ir.Table:
    r = _since(op.refunds, "received_at", since)
    o = op.orders.select(o_id="id", member_id="profile_id")
    j = r.join(o, r.order_id == o.o_id)
    return conform(j.mutate(refund_id=j.id), "refunds")


def points_entries(op: Operational, *, since: datetime | None = None) -> ir.Table:
    e = _since(op.points_entries, "recorded_at", since)
    p = op.profiles.select(p_id="id", merged_into_id="merged_into_id")
    programs = op.programs.select(pr_id="id", program="code")
    j = e.join(p, e.profile_id == p.p_id).join(programs, e.program_id == programs.pr_id)
    j = j.mutate(entry_id=j.id, member_id=j.merged_into_id.fill_null(j.profile_id))
    return conform(j, "points_entries")


def coupon_events(op: Operational, *, since: datetime | None = None) -> ir.Table:
    e = _since(op.coupon_events, "occurred_at", since)
    templates = op.coupon_templates.select(t_id="id", template="code")
    channels, _, stores_, _ = _codes(op)
    j = e.join(templates, e.template_id == templates.t_id)
    j = j.left_join(channels, j.channel_id == channels.channel_id)
    j = j.left_join(stores_, j.store_id == stores_.store_id)
    return conform(j.mutate(event_id=j.id, member_id=j.profile_id), "coupon_events")


def touchpoints(op: Operational, *, since: datetime | None = None) -> ir.Table:
    tp = _since(op.touchpoints, "recorded_at", since)
    campaigns = op.campaigns.select(c_id="id", campaign="code")
    channels, _, stores_, _ = _codes(op)
    j = tp.left_join(campaigns, tp.campaign_id == campaigns.c_id)
    j = j.left_join(channels, j.channel_id == channels.channel_id)
    j = j.left_join(stores_, j.store_id == stores_.store_id)
    return conform(j.mutate(touchpoint_id=j.id, member_id=j.profile_id), "touchpoints")


def member_tags(
    op: Operational, *, since: datetime | None = None, realtime: bool = False
) -> ir.Table:
    """Tags per member; only real-time tags (``model_version = "realtime"``) if asked."""
    mt = _since(op.member_tags, "computed_at", since)
    if realtime:
        mt = mt.filter(mt.model_version == REALTIME)
    return conform(mt.mutate(member_id=mt.profile_id), "member_tags")


def consents(op: Operational) -> ir.Table:
    """The latest consent of each member for each purpose."""
    c = op.consents
    c = c.mutate(
        _n=ibis.row_number().over(
            group_by=[c.profile_id, c.purpose], order_by=[ibis.desc(c.recorded_at), ibis.desc(c.id)]
        )
    )
    c = c.filter(c._n == 0)
    return conform(c.mutate(member_id=c.profile_id), "consents")


def acquisition_costs(op: Operational) -> ir.Table:
    c = op.acquisition_costs
    channels, _, _, _ = _codes(op)
    return conform(c.join(channels, c.channel_id == channels.channel_id), "acquisition_costs")


def views(con: Any, *, program: str | None = None, minutes: int = 0) -> dict[str, ir.Table]:
    """Every canonical table over the operational tables of ``con``, on wall-clock time."""
    op = Operational(con)
    built = {
        "members": members(op, program=program),
        "identities": identities(op),
        "orders": orders(op),
        "order_lines": order_lines(op),
        "refunds": refunds(op),
        "points_entries": points_entries(op),
        "coupon_events": coupon_events(op),
        "touchpoints": touchpoints(op),
        "member_tags": member_tags(op),
        "consents": consents(op),
        "acquisition_costs": acquisition_costs(op),
        "stores": stores(op),
    }
    return {name: localise(table, minutes) for name, table in built.items()}
