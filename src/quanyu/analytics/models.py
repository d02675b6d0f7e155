"""Model tags as Ibis expressions: RFM, lifecycle stage, and the purchase summary the
BG/NBD and Gamma-Gamma models (:mod:`quanyu.analytics.clv`) are fitted on.

Each function returns one row per member with ``value`` (the tag's value), ``score``
(a number, or null) and the columns behind them, computed as of ``as_of`` from counted
orders (refunds netted, fully refunded orders ignored; see :mod:`quanyu.analytics.kpis`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import ibis
import ibis.expr.types as ir

from quanyu.analytics import summary as summaries
from quanyu.analytics.conditions import days_between
from quanyu.analytics.kpis import Tables, counted_orders
from quanyu.analytics.summary import Reading

RFM_VERSION = "rfm-1"
LIFECYCLE_VERSION = "lifecycle-1"

# A named RFM segment: its name, and the R and F score ranges (1-5) it holds.
Segment = tuple[str, tuple[int, int], tuple[int, int]]
# The R x F grid of named RFM segments, checked top to bottom.
RFM_SEGMENTS: tuple[Segment, ...] = (
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


def _with_quintiles(table: ir.Table, scores: dict[str, tuple[str, bool]]) -> ir.Table:
    """``table`` with a 1-5 score per ``name: (column, descending)``: by the percent rank
    of the column (more is higher, or less when descending), equal values getting equal
    scores (ntile would split ties).

    Ranks are counted over each column's distinct values rather than by sorting every
    row: a histogram, a running count over it, and from that the four values where the
    score steps up. Each row is then scored against those four values (one row, cross
    joined), with no join on the column."""
    steps: list[ir.Table] = []
    for name, (column, descending) in scores.items():
        counts = table.group_by(column).aggregate(_n=table.count())
        order = ibis.desc(counts[column]) if descending else counts[column]
        before = counts._n.sum().over(ibis.window(order_by=order, following=0)) - counts._n
        rows = counts._n.sum().over()
        rank = (before.cast("float64") / (rows - 1).nullif(0).cast("float64")).fill_null(0.0)
        ranked = counts.mutate(_score=(rank * 5).floor().clip(upper=4).cast("int64") + 1)
        value = ranked[column]
        bound = {
            f"_{name}{k}": (value.max if descending else value.min)(where=ranked._score >= k)
            for k in range(2, 6)
        }
        steps.append(ranked.aggregate(**bound))
    out = table
    for step in steps:
        out = out.cross_join(step)
    for name, (column, descending) in scores.items():
        # The highest score whose lower bound the value reaches (a null bound, when no
        # value has that score, is never reached).
        value = out[column]
        steps_up: list[tuple[ir.BooleanValue, ir.IntegerValue]] = []
        for k in range(5, 1, -1):
            bound_k = out[f"_{name}{k}"]
            reached = value <= bound_k if descending else value >= bound_k
            steps_up.append((reached, ibis.literal(k, "int64")))
        out = out.mutate(**{name: ibis.cases(*steps_up, else_=ibis.literal(1, "int64"))})
    return out.drop(*[c for c in out.columns if c.startswith("_") and c not in table.columns])


def rfm(
    tables: Tables,
    *,
    as_of: datetime,
    lookback_days: int = 365,
    summary: summaries.Summary | None = None,
) -> ir.Table:
    """R, F and M quintile scores of members who bought in the lookback window (the
    ``lookback_days`` up to ``as_of``), the combined ``score`` (R*100 + F*10 + M) and the
    named segment as ``value``. Read from ``summary`` when it holds the window."""
    if summary is not None and summary.serves(as_of, lookback_days):
        per = summaries.read(
            summary,
            tables,
            {
                "last_at": Reading("last_at"),
                "frequency": Reading("orders", lookback_days),
                "monetary": Reading("sales", lookback_days),
            },
            as_of=as_of,
        )
        per = per.filter(per.frequency > 0)
    else:
        o = member_orders(tables, as_of)
        o = o.filter(o.ordered_at >= as_of - timedelta(days=lookback_days))
        per = o.group_by("member_id").aggregate(
            last_at=o.ordered_at.max(), frequency=o.count(), monetary=o.net_sales.sum()
        )
    per = per.select(
        "member_id",
        "frequency",
        "monetary",
        recency_days=days_between(per.last_at, ibis.literal(as_of)),
    )
    per = _with_quintiles(
        per,
        {"r": ("recency_days", True), "f": ("frequency", False), "m": ("monetary", False)},
    )
    return per.select(
        "member_id",
        value=rfm_segment(per.r, per.f),
        score=(per.r * 100 + per.f * 10 + per.m).cast("float64"),
        r=per.r,
        f=per.f,
        m=per.m,
        recency_days=per.recency_days,
        frequency=per.frequency,
        monetary=per.monetary,
    )


def rfm_segment_name(r: int, f: int, segments: Sequence[Segment] = RFM_SEGMENTS) -> str:
    """The named segment of R and F scores (1-5): the first of ``segments`` whose ranges
    hold them, else ``hibernating``."""
    for segment, (r_lo, r_hi), (f_lo, f_hi) in segments:
        if r_lo <= r <= r_hi and f_lo <= f <= f_hi:
            return segment
    return "hibernating"


def rfm_segment(
    r: ir.IntegerValue, f: ir.IntegerValue, segments: Sequence[Segment] = RFM_SEGMENTS
) -> ir.StringValue:
    """:func:`rfm_segment_name` as an expression: a case on R, then on F within it, from
    the grid the list makes, so that each row takes a few comparisons, not twenty."""

    def name(rv: int, fv: int) -> str:
        return rfm_segment_name(rv, fv, segments)

    def runs(values: range, named: Callable[[int], object]) -> list[tuple[int, object]]:
        """Descending ``values`` cut where ``named`` changes: ``(lowest value, name)``."""
        out: list[tuple[int, object]] = []
        for v in values:
            if out and out[-1][1] == named(v):
                out[-1] = (v, out[-1][1])
            else:
                out.append((v, named(v)))
        return out

    def by_f(rv: int) -> ir.StringValue:
        cut = runs(range(5, 0, -1), lambda fv: name(rv, fv))
        last = ibis.literal(str(cut[-1][1]))
        if len(cut) == 1:  # one name for every F
            return last
        return ibis.cases(*[(f >= lo, ibis.literal(str(n))) for lo, n in cut[:-1]], else_=last)

    rows = runs(range(5, 0, -1), lambda rv: tuple(name(rv, fv) for fv in range(1, 6)))
    if len(rows) == 1:  # the same names for every R
        return by_f(rows[0][0])
    return ibis.cases(
        *[(r >= lo, by_f(lo)) for lo, _ in rows[:-1]],
        else_=by_f(rows[-1][0]),
    )


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
    tables: Tables,
    *,
    as_of: datetime,
    thresholds: LifecycleThresholds | None = None,
    summary: summaries.Summary | None = None,
) -> ir.Table:
    """The lifecycle stage of every known person, as of ``as_of``:

    - ``new``: first bought, or joined without buying, within ``new_days``;
    - ``won_back``: bought within ``active_days`` after a gap longer than ``lapsed_days``;
    - ``active``: last bought within ``active_days``;
    - ``at_risk``: last bought between ``active_days`` and ``lapsed_days`` ago;
    - ``lapsed``: last bought longer ago than ``lapsed_days``;
    - ``prospect``: never bought, and not a member who joined within ``new_days``.

    ``score`` is the days since the last purchase (null for a prospect). Read from
    ``summary`` when it serves ``as_of``."""
    th = thresholds or LifecycleThresholds()
    if summary is not None and summary.serves(as_of):
        per = summaries.read(
            summary,
            tables,
            {
                "first_at": Reading("first_at"),
                "last_at": Reading("last_at"),
                "previous_at": Reading("previous_at"),
            },
            as_of=as_of,
        )
    else:
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
