"""Model tags as Ibis expressions: RFM, lifecycle stage, and the purchase summary the
BG/NBD and Gamma-Gamma models (:mod:`quanyu.analytics.clv`) are fitted on.

Each function returns one row per member with ``value`` (the tag's value), ``score``
(a number, or null) and the columns behind them, computed as of ``as_of`` from counted
orders (refunds netted, fully refunded orders ignored; see :mod:`quanyu.analytics.kpis`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import ibis
import ibis.expr.types as ir

from quanyu.analytics.conditions import days_between
from quanyu.analytics.kpis import Tables, counted_orders

RFM_VERSION = "rfm-1"
LIFECYCLE_VERSION = "lifecycle-1"

# The R x F grid of named RFM segments (R and F scores 1-5), checked top to bottom.
RFM_SEGMENTS: tuple[tuple[str, tuple[int, int], tuple[int, int]], ...] = (
    ("champions", (5, 5), (4, 5)),
    ("loyal", (3, 4), (4, 5)),
    ("potential_loyalist", (4, 5), (2, 3)),
    ("new_customers", (5, 5), (1, 1)),
    ("promising", (4, 4), (1, 1)),
    ("need_attention", (3, 3), (3, 3)),
    ("about_to_sleep", (3, 3), (1, 2)),
    ("cant_lose_them", (1, 2), (5, 5)),
    ("at_risk", (1, 2), (3, 4)),
    ("hibernating", (1, 2), (1, 2)),
)


def member_orders(tables: Tables, as_of: datetime) -> ir.Table:
    o = counted_orders(tables)
    return o.filter(o.member_id.notnull() & (o.ordered_at <= as_of))


def _quintile(column: ir.Value, *, descending: bool = False) -> ir.IntegerValue:
    """1-5 by percent rank, so equal values get equal scores (ntile would split ties)."""
    order = ibis.desc(column) if descending else column
    rank = ibis.percent_rank().over(order_by=order)
    return (rank * 5).floor().clip(upper=4).cast("int64") + 1


def rfm(tables: Tables, *, as_of: datetime, lookback_days: int = 365) -> ir.Table:
    """R, F and M quintile scores of members who bought in the lookback window, the
    combined ``score`` (R*100 + F*10 + M) and the named segment as ``value``."""
    o = member_orders(tables, as_of)
    o = o.filter(o.ordered_at > as_of - timedelta(days=lookback_days))
    per = o.group_by("member_id").aggregate(
        last_at=o.ordered_at.max(), frequency=o.count(), monetary=o.net_sales.sum()
    )
    per = per.mutate(recency_days=days_between(per.last_at, ibis.literal(as_of)))
    per = per.mutate(
        r=_quintile(per.recency_days, descending=True),
        f=_quintile(per.frequency),
        m=_quintile(per.monetary),
    )
    segment = ibis.cases(
        *[
            (per.r.between(r[0], r[1]) & per.f.between(f[0], f[1]), ibis.literal(name))
            for name, r, f in RFM_SEGMENTS
        ],
        else_=ibis.literal("hibernating"),
    )
    return per.mutate(
        value=segment, score=(per.r * 100 + per.f * 10 + per.m).cast("float64")
    ).select("member_id", "value", "score", "r", "f", "m", "recency_days", "frequency", "monetary")


@dataclass(frozen=True)
class LifecycleThresholds:
    """Days that separate the stages; a brand sets its own."""

    new_days: int = 90  # joined or first bought this recently: new
    active_days: int = 180  # last bought this recently: active
    lapsed_days: int = 365  # last bought longer ago than this: lapsed (between: at risk)

    def __post_init__(self) -> None:
        if not (self.new_days > 0 and 0 < self.active_days < self.lapsed_days):
            raise ValueError("thresholds must satisfy 0 < active_days < lapsed_days")


LIFECYCLE_STAGES = ("prospect", "new", "active", "at_risk", "lapsed", "won_back")


def lifecycle(
    tables: Tables, *, as_of: datetime, thresholds: LifecycleThresholds | None = None
) -> ir.Table:
    """The lifecycle stage of every known person, as of ``as_of``:

    - ``new``: first bought, or joined without buying, within ``new_days``;
    - ``won_back``: bought within ``active_days`` after a gap longer than ``lapsed_days``;
    - ``active``: last bought within ``active_days``;
    - ``at_risk``: last bought between ``active_days`` and ``lapsed_days`` ago;
    - ``lapsed``: last bought longer ago than ``lapsed_days``;
    - ``prospect``: never bought, and not a member who joined within ``new_days``.

    ``score`` is the days since the last purchase (null for a prospect)."""
    th = thresholds or LifecycleThresholds()
    o = member_orders(tables, as_of)
    o = o.mutate(
        _n=ibis.row_number().over(
            group_by=o.member_id, order_by=[ibis.desc(o.ordered_at), ibis.desc(o.order_id)]
        )
    )
    per = o.group_by("member_id").aggregate(
        first_at=o.ordered_at.min(),
        last_at=o.ordered_at.max(),
        previous_at=o.ordered_at.max(where=o._n == 1),
    )
    m = tables["members"]
    # Only people known at as_of: a member who joins later is not counted back in time.
    m = m.filter(
        (m.created_at <= as_of) & (m.registered_at.isnull() | (m.registered_at <= as_of))
    ).select("member_id", "registered_at")
    j = m.left_join(per, m.member_id == per.member_id).drop("member_id_right")
    now = ibis.literal(as_of)
    since_last = days_between(j.last_at, now)
    since_first = days_between(j.first_at, now)
    since_join = days_between(j.registered_at, now)
    gap = days_between(j.previous_at, j.last_at)
    stage = ibis.cases(
        (j.last_at.isnull() & (since_join <= th.new_days).fill_null(False), "new"),
        (j.last_at.isnull(), "prospect"),
        (since_first <= th.new_days, "new"),
        ((since_last <= th.active_days) & (gap > th.lapsed_days).fill_null(False), "won_back"),
        (since_last <= th.active_days, "active"),
        (since_last <= th.lapsed_days, "at_risk"),
        else_="lapsed",
    )
    return j.select("member_id", value=stage, score=since_last.cast("float64"), last_at=j.last_at)


def purchase_summary(tables: Tables, *, as_of: datetime) -> ir.Table:
    """Per buyer, in days, as the BG/NBD model wants it: ``frequency`` (repeat purchase
    days: days with a purchase, less the first), ``recency`` (first to last purchase day),
    ``age`` (first purchase day to ``as_of``) and ``monetary`` (mean net sales per repeat
    purchase day, fen)."""
    o = member_orders(tables, as_of)
    days = o.group_by("member_id", day=o.ordered_at.date()).aggregate(sales=o.net_sales.sum())
    first = days.day.min().over(group_by=days.member_id)
    days = days.mutate(_first=first)
    per = days.group_by("member_id").aggregate(
        purchase_days=days.count(),
        first_day=days.day.min(),
        last_day=days.day.max(),
        repeat_sales=days.sales.sum(where=days.day != days._first),
    )
    at = ibis.literal(as_of).date()
    return per.select(
        "member_id",
        frequency=per.purchase_days - 1,
        recency=days_between(per.first_day.cast("timestamp"), per.last_day.cast("timestamp")),
        age=days_between(per.first_day.cast("timestamp"), at.cast("timestamp")),
        monetary=(
            per.repeat_sales.fill_null(0).cast("float64")
            / (per.purchase_days - 1).nullif(0).cast("float64")
        ).fill_null(0.0),
    )
