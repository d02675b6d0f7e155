"""Attribution of an event or pop-up (快闪): what its visitors bought afterwards.

A campaign has a list of members who interacted with it (touchpoints of kind
``interaction``) and, when the brand provides one, a matched control group (kind
``control``). Each member's window starts at their first touchpoint with the campaign and
lasts ``window_days`` (7-14 by default policy; 1-90 allowed). Purchases are counted
orders in any channel within the window, refunds netted (:mod:`quanyu.analytics.kpis`).

Lift compares the two groups per member: incremental revenue is the treated group's
revenue per member less the control group's, times the treated group's size.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import ibis
import ibis.expr.types as ir
from sqlalchemy import insert, select

from quanyu.adapters import tables as t
from quanyu.analytics.kpis import Tables, counted_orders
from quanyu.domain.errors import AlreadyExists, NotFound, ValidationFailed
from quanyu.domain.orders import require_aware
from quanyu.domain.segments import validate_codes
from quanyu.services import insight
from quanyu.services.members import current_profile_id
from quanyu.services.uow import Platform

ROLES = ("interaction", "control")


def create_campaign(
    platform: Platform,
    *,
    code: str,
    name: str,
    kind: str,
    starts_at: datetime,
    ends_at: datetime,
    store: str | None = None,
    window_days: int = 14,
    cost: int = 0,
    actor: str,
) -> dict[str, Any]:
    validate_codes([code], "code")
    if kind not in ("event", "popup", "campaign"):
        raise ValidationFailed("kind must be event, popup or campaign", field="kind")
    require_aware(starts_at, "starts_at")
    require_aware(ends_at, "ends_at")
    if ends_at <= starts_at:
        raise ValidationFailed("ends_at must be after starts_at", field="ends_at")
    if not 1 <= window_days <= 90:
        raise ValidationFailed("window_days must be 1-90", field="window_days")
    if cost < 0:
        raise ValidationFailed("cost must not be negative", field="cost")
    ref = platform.reference.get()
    store_ref = ref.stores.get(store) if store else None
    if store and store_ref is None:
        raise ValidationFailed(f"unknown store {store!r}", field="store")
    with platform.engine.begin() as conn:
        if conn.execute(select(t.campaigns.c.id).where(t.campaigns.c.code == code)).first():
            raise AlreadyExists(f"campaign {code} exists", field="code")
        conn.execute(
            insert(t.campaigns).values(
                code=code,
                name=name,
                kind=kind,
                store_id=store_ref.id if store_ref else None,
                starts_at=starts_at,
                ends_at=ends_at,
                window_days=window_days,
                cost=cost,
                created_by=actor,
                created_at=platform.clock.now(),
            )
        )
    return campaign(platform, code)


def campaign(platform: Platform, code: str) -> dict[str, Any]:
    with platform.engine.connect() as conn:
        row = conn.execute(select(t.campaigns).where(t.campaigns.c.code == code)).first()
    if row is None:
        raise NotFound("campaign", code)
    return {
        "code": row.code,
        "name": row.name,
        "kind": row.kind,
        "starts_at": row.starts_at.isoformat(),
        "ends_at": row.ends_at.isoformat(),
        "window_days": row.window_days,
        "cost": row.cost,
    }


def add_members(
    platform: Platform,
    code: str,
    members: Sequence[tuple[int, datetime | None]],
    *,
    role: str = "interaction",
    actor: str,
) -> int:
    """Record members who interacted (or were held out as control); all or nothing."""
    if role not in ROLES:
        raise ValidationFailed("role must be interaction or control", field="role")
    at = platform.clock.now()
    with platform.engine.begin() as conn:
        row = conn.execute(select(t.campaigns).where(t.campaigns.c.code == code)).first()
        if row is None:
            raise NotFound("campaign", code)
        rows = []
        for i, (member_id, when) in enumerate(members):
            if when is not None:
                require_aware(when, f"members[{i}].at")
            try:
                pid = current_profile_id(conn, member_id)
            except NotFound:
                raise ValidationFailed(
                    f"unknown member {member_id}", field=f"members[{i}].member_id"
                ) from None
            rows.append(
                {
                    "profile_id": pid,
                    "kind": role,
                    "campaign_id": row.id,
                    "channel_id": None,
                    "store_id": row.store_id,
                    "occurred_at": when or row.starts_at,
                    "source": "campaign",
                    "actor": actor,
                    "recorded_at": at,
                }
            )
        if rows:
            conn.execute(insert(t.touchpoints), rows)
    insight.analytics(platform).mark_stale()
    return len(rows)


def attribution_expression(tables: Tables, code: str, window_days: int) -> ir.Table:
    tp = tables["touchpoints"]
    tp = tp.filter((tp.campaign == code) & tp.kind.isin(list(ROLES)))
    first = tp.group_by(["member_id", "kind"]).aggregate(at=tp.occurred_at.min())
    o = counted_orders(tables).select(
        b_member="member_id", b_at="ordered_at", b_sales="net_sales", b_order="order_id"
    )
    window = ibis.interval(days=window_days)
    j = first.left_join(
        o, (first.member_id == o.b_member) & (o.b_at >= first.at) & (o.b_at < first.at + window)
    )
    per = j.group_by(["member_id", "kind"]).aggregate(
        orders=j.b_order.count(), revenue=j.b_sales.sum().fill_null(0)
    )
    return per.group_by(role="kind").aggregate(
        members=per.count(),
        buyers=(per.orders > 0).sum(),
        orders=per.orders.sum(),
        revenue=per.revenue.sum(),
    )


def report(platform: Platform, code: str, *, window_days: int | None = None) -> dict[str, Any]:
    c = campaign(platform, code)
    days = window_days or c["window_days"]
    if not 1 <= days <= 90:
        raise ValidationFailed("window_days must be 1-90", field="window_days")
    a = insight.analytics(platform)
    with a.lock:
        rows = a.execute(attribution_expression(a.tables(), code, days)).to_pylist()
    groups = {r["role"]: r for r in rows}
    out: dict[str, Any] = {"campaign": c, "window_days": days}
    for role, key in (("interaction", "treated"), ("control", "control")):
        g = groups.get(role)
        if g is None:
            out[key] = None
            continue
        members = int(g["members"])
        out[key] = {
            "members": members,
            "buyers": int(g["buyers"]),
            "orders": int(g["orders"]),
            "revenue": int(g["revenue"]),
            "conversion": round(g["buyers"] / members, 4) if members else None,
            "revenue_per_member": round(g["revenue"] / members) if members else None,
        }
    treated, control = out["treated"], out["control"]
    out["attributed_revenue"] = treated["revenue"] if treated else 0
    if treated and control and control["members"]:
        per_t = treated["revenue"] / treated["members"]
        per_c = control["revenue"] / control["members"]
        incremental = round((per_t - per_c) * treated["members"])
        out["lift"] = {
            "conversion_points": round(
                (treated["conversion"] or 0) - (control["conversion"] or 0), 4
            ),
            "incremental_revenue": incremental,
            "roi": round((incremental - c["cost"]) / c["cost"], 4) if c["cost"] else None,
        }
    else:
        out["lift"] = None
    return out
