"""The member summary: each member's counted orders, summed once a day.

Most order tests of tags and segments ("bought 3 times in 365 days", "last bought 180
days ago"), RFM and the lifecycle stage read the same few figures per member. Grouping
every order for each of them costs seconds at ten million members; the summary groups
them once, in the analytics store, for the orders before the start of the day
(``anchor``, wall-clock time of the program zone), and is kept current by the sync.

A question asked at ``as_of`` during that day is answered exactly, from the summary and
a thin slice of the orders:

- the orders on or after ``anchor`` (up to ``as_of``) are added;
- for a window of N days, the orders in ``[anchor - N, as_of - N)`` are taken away: the
  window ``[as_of - N, as_of]`` is the summary's ``[anchor - N, anchor)`` moved by the
  time since ``anchor``.

So a count, a sum or a recency from the summary equals the same figure grouped from the
orders (a test proves it, ``tests/integration/test_member_summary.py``).

Two more summaries hold the same figures per member and channel (from the orders) and
per member and category (from the lines, an order counted once per category): tests
on channels, and on categories, read them. Windows other than :data:`WINDOWS`, tests on
stores or SKUs, and order counts over several categories at once (an order with lines
in two of them would count twice) read the orders.

The summary is an optimisation of the DuckDB store: read directly from PostgreSQL, or on
any backend without it, every expression groups the orders as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from quanyu.analytics.kpis import Tables


def column(measure: str, window: int | None) -> str:
    """The summary column of ``measure`` over ``window`` days (or all time)."""
    return measure if window is None else f"{measure}_{window}"


WINDOWS = (7, 30, 90, 180, 365)  # days, the windows brands use most
MEASURES = ("orders", "sales", "units")
TABLE = "member_summary"
_TODAY = {"orders": "_n", "sales": "_sales", "units": "_units"}  # the day's figures in a slice
FACETS = ("channel", "category")  # the summaries by member and code
_FIGURES = {
    **{column(m, None): "int64" for m in MEASURES},
    **{column(m, d): "int64" for d in WINDOWS for m in MEASURES},
}


def _int64(value: ir.Value) -> ir.Value:
    """``value``, never null, as a 64-bit integer in the SQL too. DuckDB sums BIGINT into
    HUGEINT (128-bit) and PostgreSQL into NUMERIC, while Ibis types the sum int64 and
    drops a cast to the type it already has; a cast to non-null int64 is kept. Without
    it, every summary row's addition and every comparison after it is 128-bit (or
    decimal) arithmetic, and Arrow receives decimals to convert back."""
    return value.cast(dt.Int64(nullable=False))


def table_name(facet: str | None) -> str:
    return TABLE if facet is None else f"member_{facet}_summary"


def schema(facet: str | None) -> ibis.Schema:
    """The stored columns, in order. Sums are stored as int64: a backend's wider sum
    type (DuckDB's HUGEINT) is many times slower to read."""
    if facet is None:
        times = {"first_at": "timestamp", "last_at": "timestamp", "previous_at": "timestamp"}
        return ibis.schema({"member_id": "int64", **times, **_FIGURES})
    return ibis.schema({"member_id": "int64", "code": "string", "last_at": "timestamp", **_FIGURES})


@dataclass(frozen=True)
class Summary:
    """The summary tables and the start of the day they were computed for."""

    table: ir.Table
    anchor: datetime
    facets: Mapping[str, ir.Table] = field(default_factory=dict)

    def serves(self, as_of: datetime, window: int | None = None) -> bool:
        """Whether a figure at ``as_of`` (over ``window`` days, or all time) can be read
        from this summary: during its day, for a window it holds."""
        in_day = self.anchor <= as_of < self.anchor + timedelta(days=1)
        return in_day and (window is None or window in WINDOWS)


def anchor_of(now: datetime) -> datetime:
    """The start of ``now``'s day (naive wall-clock time of the program zone)."""
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def counted(tables: Tables, *extra: str) -> ir.Table:
    """Orders that count (refunds netted, fully refunded ones left out) of known members,
    with the ``extra`` columns asked for."""
    o = tables["orders"]
    o = o.filter(o.member_id.notnull() & (o.units > o.refunded_units))
    return o.select(
        "member_id",
        "order_id",
        "ordered_at",
        *extra,
        net_sales=o.paid_total - o.refunded_amount,
        net_units=o.units - o.refunded_units,
    )


def _source(tables: Tables, facet: str | None) -> ir.Table:
    """The rows a summary counts, with ``code`` for a facet; filter them by time, then
    :func:`_per_order`."""
    if facet is None:
        return counted(tables)
    if facet == "channel":
        o = counted(tables, "channel").rename(code="channel")
        return o.filter(o.code.notnull())  # no test names a missing code
    x = tables["order_lines"]
    x = x.filter(x.member_id.notnull() & (x.quantity > x.refunded_quantity) & x.category.notnull())
    return x.select(
        "member_id",
        "order_id",
        "ordered_at",
        code=x.category,
        net_sales=x.paid_amount - x.refunded_amount,
        net_units=x.quantity - x.refunded_quantity,
    )


def _per_order(rows: ir.Table, facet: str | None) -> ir.Table:
    """One row per order (per order and category for lines), so that a count of rows
    counts orders."""
    if facet != "category":
        return rows
    return rows.group_by("member_id", "code", "order_id").aggregate(
        ordered_at=rows.ordered_at.max(),
        net_sales=rows.net_sales.sum(),
        net_units=rows.net_units.sum(),
    )


def _keys(facet: str | None) -> list[str]:
    return ["member_id"] if facet is None else ["member_id", "code"]


def build(
    tables: Tables,
    *,
    anchor: datetime,
    members: ir.Table | None = None,
    facet: str | None = None,
) -> ir.Table:
    """The summary of the orders before ``anchor``, one row per member who has any (per
    member and code for a ``facet``), only of ``members``' ``member_id`` when given.
    ``previous_at`` is the time of the last order but one (equal to ``last_at`` when two
    share the latest time)."""
    o = _source(tables, facet)
    o = o.filter(o.ordered_at < anchor)
    if members is not None:
        o = o.filter(o.member_id.isin(members.member_id))
    o = _per_order(o, facet)
    figures: dict[str, ir.Value] = {}
    if facet is None:
        last = o.group_by("member_id").aggregate(_last=o.ordered_at.max())
        o = o.inner_join(last, "member_id")
        at_last = o.ordered_at == o._last
        figures |= {
            "first_at": o.ordered_at.min(),
            "previous_at": ibis.cases(
                (at_last.cast("int64").sum() > 1, o._last.max()),
                else_=o.ordered_at.max(where=~at_last),
            ),
        }
    figures |= {
        "last_at": o.ordered_at.max(),
        "orders": o.count(),
        "sales": o.net_sales.sum(),
        "units": o.net_units.sum(),
    }
    for days in WINDOWS:
        inside = o.ordered_at >= anchor - timedelta(days=days)
        figures[column("orders", days)] = o.count(where=inside)
        figures[column("sales", days)] = o.net_sales.sum(where=inside).fill_null(0)
        figures[column("units", days)] = o.net_units.sum(where=inside).fill_null(0)
    out = o.group_by(_keys(facet)).aggregate(**figures)
    return out.select(*schema(facet).names)


@dataclass(frozen=True)
class Reading:
    """What :func:`read` asks of one figure: ``measure`` (``orders``, ``sales``,
    ``units`` or ``last_at``, over ``window`` days or all time; ``first_at`` or
    ``previous_at``, all time, of the member summary only)."""

    measure: str
    window: int | None = None


def read(
    summary: Summary,
    tables: Tables,
    readings: Mapping[str, Reading],
    *,
    as_of: datetime,
    through: bool = True,
    facet: str | None = None,
    codes: Sequence[str] | None = None,
    changed_only: bool = False,
) -> ir.Table:
    """``member_id`` (and ``code`` for a ``facet``, only ``codes`` when given) and one
    column per reading, exact at ``as_of``, for every member with a counted order by
    ``as_of``: a full outer join of the summary and the day's slice. With
    ``through=False``, orders at ``as_of`` itself are left out, as the summary leaves out
    those at its anchor. With ``changed_only``, only the rows the slice changes.

    ``last_at`` over a window is the last order's time when it falls in the window, else
    null. The caller checks :meth:`Summary.serves` first."""
    anchor = summary.anchor
    windows = sorted({r.window for r in readings.values() if r.window is not None})
    o = _source(tables, facet)
    if codes is not None:
        o = o.filter(o.code.isin(list(codes)))
    # The slice: the day's orders, and the orders leaving each window since the anchor.
    # The ranges are disjoint (the day is shorter than the shortest window); one filter
    # each lets the backend skip the blocks outside them.
    end = o.ordered_at <= as_of if through else o.ordered_at < as_of
    ranges = [(o.ordered_at >= anchor) & end]
    ranges += _leaving(o, anchor, as_of, windows)
    o = _per_order(ibis.union(*[o.filter(r) for r in ranges], distinct=False), facet)
    if any(r.measure == "previous_at" for r in readings.values()):
        o = o.mutate(
            _rank=ibis.row_number().over(
                group_by=o.member_id,
                order_by=[
                    ibis.desc(o.ordered_at >= anchor),
                    ibis.desc(o.ordered_at),
                    ibis.desc(o.order_id),
                ],
            )
        )
    today = o.ordered_at >= anchor
    figures: dict[str, ir.Value] = {
        "_n": o.count(where=today),
        "_first": o.ordered_at.min(where=today),
        "_last": o.ordered_at.max(where=today),
        "_sales": o.net_sales.sum(where=today),
        "_units": o.net_units.sum(where=today),
    }
    if "_rank" in o.columns:
        figures["_second"] = o.ordered_at.max(where=today & (o._rank == 1))
    for d, part in zip(windows, _leaving(o, anchor, as_of, windows), strict=True):
        figures[f"_n{d}"] = o.count(where=part)
        figures[f"_sales{d}"] = o.net_sales.sum(where=part)
        figures[f"_units{d}"] = o.net_units.sum(where=part)
    keys = {"k": o.member_id} | ({} if facet is None else {"kc": o.code})
    slice_ = o.group_by(**keys).aggregate(**figures)
    # Each figure's change (the day's orders, less those leaving a window), netted on the
    # slice so that the summary's many rows take one 64-bit addition each.
    changes: dict[str, ir.Value] = {}
    for r in readings.values():
        if r.measure in MEASURES:
            today_ = slice_[_TODAY[r.measure]].fill_null(0)
            if r.window is not None:
                today_ = today_ - slice_[f"{_TODAY[r.measure]}{r.window}"].fill_null(0)
            changes[f"_d{column(r.measure, r.window)}"] = _int64(today_)
    slice_ = slice_.mutate(**changes)
    s = summary.table if facet is None else summary.facets[facet]
    if codes is not None:
        s = s.filter(s.code.isin(list(codes)))
    on = [s.member_id == slice_.k] + ([] if facet is None else [s.code == slice_.kc])
    j = slice_.left_join(s, on) if changed_only else s.outer_join(slice_, on)
    last = ibis.coalesce(j._last, j.last_at)
    out: dict[str, ir.Value] = {}
    for name, r in readings.items():
        if r.measure == "first_at":
            out[name] = ibis.coalesce(j.first_at, j._first)
            continue
        if r.measure == "previous_at":
            out[name] = ibis.cases(
                (j._n.fill_null(0) >= 2, j._second),
                (j._n.fill_null(0) == 1, j.last_at),
                else_=j.previous_at,
            )
            continue
        if r.measure == "last_at":
            value: ir.Value = last
            if r.window is not None:
                value = ibis.ifelse(last >= as_of - timedelta(days=r.window), last, ibis.null())
        else:
            figure = column(r.measure, r.window)
            value = j[figure].fill_null(0) + j[f"_d{figure}"].fill_null(0)
        out[name] = value
    ids = {"member_id": ibis.coalesce(j.member_id, j.k)}
    if facet is not None:
        ids["code"] = ibis.coalesce(j.code, j.kc)
    return j.select(**ids, **out)


def roll(summary: Summary, tables: Tables, facet: str | None = None) -> ir.Table:
    """The rows of the next day's summary that differ from this day's: those of the
    members who bought that day, or in the days leaving a window, moved on by those
    orders. A day costs a few days of orders, not a grouping of every order."""
    readings = {"last_at": Reading("last_at")}
    if facet is None:
        readings |= {"first_at": Reading("first_at"), "previous_at": Reading("previous_at")}
    for window in (None, *WINDOWS):
        readings |= {column(m, window): Reading(m, window) for m in MEASURES}
    next_day = summary.anchor + timedelta(days=1)
    out = read(
        summary, tables, readings, as_of=next_day, through=False, facet=facet, changed_only=True
    )
    return out.select(*schema(facet).names)


def _leaving(
    o: ir.Table, anchor: datetime, as_of: datetime, windows: Iterable[int]
) -> list[ir.BooleanValue]:
    return [
        (o.ordered_at >= anchor - timedelta(days=d)) & (o.ordered_at < as_of - timedelta(days=d))
        for d in windows
    ]
