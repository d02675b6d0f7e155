"""Reports: coupon performance per template and per (channel, store), the points
liability of a program, and its points breakage. The definitions, and why they were
chosen, are in ``docs/reports.md``; this module is their one implementation.

Every figure is an aggregate computed by the database (``SUM``/``CASE`` with
``GROUP BY``); Python only attaches names to the aggregated rows, divides and rounds.
Nothing here reads the clock: the caller passes ``as_of``, ``since`` and ``until`` (the
API takes them from ``platform.clock.now()``). Periods are half-open, ``[since, until)``.

Numbers:

* counts and points are ``int``;
* money is ``int`` fen, rounded half away from zero (``ROUND_HALF_UP``) once, on the
  final amount, from exact fractions;
* rates are ``Decimal`` with four places, rounded the same way, and ``None`` when
  their denominator is zero. The API writes them as strings (``"0.3333"``), in JSON
  and in CSV alike, so that no float rounding creeps in.

The rounding helpers are pure and would belong in the domain layer; they live here
while reports are their only user.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    case,
    func,
    or_,
    select,
    true,
)

from quanyu.adapters import tables as t
from quanyu.domain.coupons import CouponEventKind, CouponStatus
from quanyu.domain.errors import ValidationFailed
from quanyu.domain.points import EntryKind
from quanyu.services.points import program_named
from quanyu.services.uow import Platform

RATE_PLACES = 4

COUPON_COLUMNS = (
    "level",
    "template",
    "template_name",
    "program",
    "channel",
    "store",
    "issued",
    "redeemed",
    "returned",
    "expired",
    "voided",
    "reserved",
    "outstanding",
    "discount_cost",
    "redemption_rate",
)
LIABILITY_COLUMNS = (
    "program",
    "currency",
    "as_of",
    "available_points",
    "pending_points",
    "outstanding_points",
    "debt_points",
    "liability_points",
    "point_value_minor",
    "liability_minor",
    "expired_unprocessed_points",
)
BREAKAGE_COLUMNS = (
    "program",
    "since",
    "until",
    "earned_since",
    "earned_until",
    "expired_points",
    "earned_points",
    "granted_points",
    "breakage_rate",
)

# ---------------------------------------------------------------- numbers


def round_half_up(value: Fraction) -> int:
    """``value`` to the nearest integer, halves away from zero (10.5 -> 11, -10.5 -> -11)."""
    magnitude = (abs(value.numerator) * 2 + value.denominator) // (2 * value.denominator)
    return magnitude if value >= 0 else -magnitude


def rate(part: int, whole: int) -> Decimal | None:
    """``part / whole`` to four places, rounded half up; None when ``whole`` is 0."""
    if whole == 0:
        return None
    scaled = round_half_up(Fraction(part, whole) * 10**RATE_PLACES)
    return Decimal(scaled).scaleb(-RATE_PLACES)


def money(points: int, point_value_minor: Decimal) -> int:
    """What ``points`` are worth in fen at ``point_value_minor`` fen each, rounded half up."""
    return round_half_up(Fraction(points) * Fraction(point_value_minor))


def _plain_decimal(value: Decimal) -> str:
    """A stored NUMERIC without its trailing zeros: ``0.3500`` -> ``"0.35"``, ``1`` -> ``"1"``."""
    return format(value.normalize(), "f")


# ---------------------------------------------------------------- periods


EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
DEFAULT_BREAKAGE_DAYS = 365


def _check_moment(name: str, value: datetime) -> None:
    if value.tzinfo is None:
        raise ValidationFailed(f"{name} needs a time zone", field=name)
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise ValidationFailed(f"{name} must fall in [{EARLIEST.year}, {LATEST.year})", field=name)


def _check_period(
    since: datetime | None,
    until: datetime | None,
    *,
    since_field: str = "since",
    until_field: str = "until",
) -> None:
    for name, value in ((since_field, since), (until_field, until)):
        if value is not None:
            _check_moment(name, value)
    if since is not None and until is not None and since >= until:
        raise ValidationFailed(
            f"{until_field} ({until.isoformat()}) must be after {since_field} "
            f"({since.isoformat()})",
            field=until_field,
        )


def _within(
    column: ColumnElement[datetime], since: datetime | None, until: datetime | None
) -> ColumnElement[bool]:
    """``since <= column < until``; an open end is not checked."""
    parts: list[ColumnElement[bool]] = [true()]
    if since is not None:
        parts.append(column >= since)
    if until is not None:
        parts.append(column < until)
    return and_(*parts)


def _total(expression: ColumnElement[Any]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(expression), 0)


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return _total(case((condition, 1), else_=0))


@contextmanager
def _reading(platform: Platform) -> Iterator[Connection]:
    """A connection whose queries all read one snapshot, so a report's rows agree with
    each other (REPEATABLE READ on PostgreSQL; a SQLite transaction already is one)."""
    with platform.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        yield conn


# ---------------------------------------------------------------- coupons


def coupon_report(
    platform: Platform,
    *,
    as_of: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
    template: str | None = None,
    program: str | None = None,
) -> dict[str, Any]:
    """Coupons per template (a ``total`` row) and per (channel, store) of redemption
    (``channel_store`` rows, after their template's total), ordered by template code.

    Event counts (issued, redeemed, returned, voided, discount cost) take the events
    whose time is in ``[since, until)``; expired takes coupons whose validity ended in
    it (and by ``as_of``); outstanding and reserved take the coupons issued in it, in
    their state now, judged at ``as_of``. Without a period every coupon counts, and
    ``issued == redeemed + reserved + expired + voided + outstanding``.
    """
    _check_moment("as_of", as_of)
    _check_period(since, until)
    ct, e, c = t.coupon_templates, t.coupon_events.c, t.coupons.c
    with _reading(platform) as conn:
        chosen: list[ColumnElement[bool]] = [true()]
        if program is not None:
            prog = program_named(platform.reference.get(conn), program)
            chosen.append(ct.c.program_id == prog.id)
        if template is not None:
            found = conn.execute(select(ct.c.id).where(ct.c.code == template)).scalar()
            if found is None:
                raise ValidationFailed(f"unknown coupon template {template!r}", field="template")
            chosen.append(ct.c.id == found)
        templates = select(ct.c.id).where(*chosen)

        counted = (
            CouponEventKind.ISSUED,
            CouponEventKind.REDEEMED,
            CouponEventKind.RETURNED,
            CouponEventKind.VOIDED,
        )
        redeemed = _count_if(e.kind == CouponEventKind.REDEEMED.value)
        returned = _count_if(e.kind == CouponEventKind.RETURNED.value)
        # Returned events carry the discount negated, so the plain sum is the net cost.
        discount = _total(
            case(
                (
                    e.kind.in_([CouponEventKind.REDEEMED.value, CouponEventKind.RETURNED.value]),
                    e.discount,
                ),
                else_=0,
            )
        )
        events = (
            select(
                e.template_id,
                _count_if(e.kind == CouponEventKind.ISSUED.value).label("issued"),
                (redeemed - returned).label("redeemed"),
                returned.label("returned"),
                _count_if(e.kind == CouponEventKind.VOIDED.value).label("voided"),
                discount.label("discount_cost"),
            )
            .where(
                e.template_id.in_(templates),
                e.kind.in_([k.value for k in counted]),
                _within(e.occurred_at, since, until),
            )
            .group_by(e.template_id)
            .subquery()
        )
        available = c.status == CouponStatus.AVAILABLE.value
        lapsed = and_(c.valid_until.is_not(None), c.valid_until <= as_of)
        issued_in = _within(c.issued_at, since, until)
        states = (
            select(
                c.template_id,
                _count_if(and_(available, lapsed, _within(c.valid_until, since, until))).label(
                    "expired"
                ),
                _count_if(and_(available, ~lapsed, issued_in)).label("outstanding"),
                _count_if(and_(c.status == CouponStatus.RESERVED.value, issued_in)).label(
                    "reserved"
                ),
            )
            .where(
                c.template_id.in_(templates),
                c.status.in_([CouponStatus.AVAILABLE.value, CouponStatus.RESERVED.value]),
            )
            .group_by(c.template_id)
            .subquery()
        )
        totals = conn.execute(
            select(
                ct.c.code.label("template"),
                ct.c.name.label("template_name"),
                t.programs.c.code.label("program"),
                *(
                    func.coalesce(events.c[name], 0).label(name)
                    for name in ("issued", "redeemed", "returned", "voided", "discount_cost")
                ),
                *(
                    func.coalesce(states.c[name], 0).label(name)
                    for name in ("expired", "outstanding", "reserved")
                ),
            )
            .select_from(ct)
            .join(t.programs, t.programs.c.id == ct.c.program_id)
            .outerjoin(events, events.c.template_id == ct.c.id)
            .outerjoin(states, states.c.template_id == ct.c.id)
            .where(*chosen)
            .order_by(ct.c.code)
        ).all()

        by_place = (
            select(
                e.template_id,
                e.channel_id,
                e.store_id,
                (redeemed - returned).label("redeemed"),
                returned.label("returned"),
                discount.label("discount_cost"),
            )
            .where(
                e.template_id.in_(templates),
                e.kind.in_([CouponEventKind.REDEEMED.value, CouponEventKind.RETURNED.value]),
                _within(e.occurred_at, since, until),
            )
            .group_by(e.template_id, e.channel_id, e.store_id)
            .subquery()
        )
        places = conn.execute(
            select(
                ct.c.code.label("template"),
                t.channels.c.code.label("channel"),
                t.stores.c.code.label("store"),
                by_place.c.redeemed,
                by_place.c.returned,
                by_place.c.discount_cost,
            )
            .select_from(by_place)
            .join(ct, ct.c.id == by_place.c.template_id)
            .join(t.channels, t.channels.c.id == by_place.c.channel_id)
            .outerjoin(t.stores, t.stores.c.id == by_place.c.store_id)
            .order_by(ct.c.code, t.channels.c.code, t.stores.c.code.asc().nulls_first())
        ).all()

    per_template: dict[str, list[dict[str, Any]]] = {}
    for p in places:
        per_template.setdefault(p.template, []).append(
            {
                "channel": p.channel,
                "store": p.store,
                "redeemed": int(p.redeemed),
                "returned": int(p.returned),
                "discount_cost": int(p.discount_cost),
            }
        )
    rows: list[dict[str, Any]] = []
    for row in totals:
        issued, net = int(row.issued), int(row.redeemed)
        base = {
            "template": row.template,
            "template_name": row.template_name,
            "program": row.program,
        }
        rows.append(
            {
                "level": "total",
                **base,
                "channel": None,
                "store": None,
                "issued": issued,
                "redeemed": net,
                "returned": int(row.returned),
                "expired": int(row.expired),
                "voided": int(row.voided),
                "reserved": int(row.reserved),
                "outstanding": int(row.outstanding),
                "discount_cost": int(row.discount_cost),
                "redemption_rate": rate(net, issued),
            }
        )
        for place in per_template.get(row.template, []):
            rows.append(
                {
                    "level": "channel_store",
                    **base,
                    "issued": None,
                    "expired": None,
                    "voided": None,
                    "reserved": None,
                    "outstanding": None,
                    "redemption_rate": None,
                    **place,
                }
            )
    return {
        "as_of": as_of,
        "since": since,
        "until": until,
        "template": template,
        "program": program,
        "rows": [{k: r[k] for k in COUPON_COLUMNS} for r in rows],
    }


# ---------------------------------------------------------------- points


def points_liability(
    platform: Platform, *, as_of: datetime, program: str | None = None
) -> dict[str, Any]:
    """The points a program owes its members at ``as_of`` and what they are worth.

    Lots count with their ``remaining`` as the ledger stands; ``as_of`` decides which of
    them have expired (``expires_at <= as_of``: left out, and shown as
    ``expired_unprocessed_points`` until the expiry job takes them) and which are still
    pending (``available_at > as_of``). Debt is what members owe now.
    """
    _check_moment("as_of", as_of)
    lots, m = t.points_lots.c, t.memberships.c
    with _reading(platform) as conn:
        prog = program_named(platform.reference.get(conn), program)
        currency = conn.execute(
            select(t.programs.c.currency).where(t.programs.c.id == prog.id)
        ).scalar_one()
        live = or_(lots.expires_at.is_(None), lots.expires_at > as_of)
        row = conn.execute(
            select(
                _total(case((and_(live, lots.available_at <= as_of), lots.remaining), else_=0)),
                _total(case((and_(live, lots.available_at > as_of), lots.remaining), else_=0)),
                _total(case((~live, lots.remaining), else_=0)),
                select(_total(m.debt_points)).where(m.program_id == prog.id).scalar_subquery(),
            ).where(lots.program_id == prog.id, lots.remaining > 0)
        ).one()
    available, pending, lapsed, debt = (int(v) for v in row)
    outstanding = available + pending
    liability = outstanding - debt
    return {
        "program": prog.code,
        "currency": currency,
        "as_of": as_of,
        "available_points": available,
        "pending_points": pending,
        "outstanding_points": outstanding,
        "debt_points": debt,
        "liability_points": liability,
        "point_value_minor": _plain_decimal(prog.point_value_minor),
        "liability_minor": money(liability, prog.point_value_minor),
        "expired_unprocessed_points": lapsed,
    }


def points_breakage(
    platform: Platform,
    *,
    until: datetime,
    since: datetime | None = None,
    program: str | None = None,
    earned_since: datetime | None = None,
    earned_until: datetime | None = None,
) -> dict[str, Any]:
    """Points expired in ``[since, until)`` over points earned in the earn window, which
    is the same period unless ``earned_since`` and ``earned_until`` name another (e.g. the
    year whose points expire in the reported one). ``since`` defaults to 365 days
    before ``until``."""
    _check_moment("until", until)
    if since is None:
        since = until - timedelta(days=DEFAULT_BREAKAGE_DAYS)
    _check_period(since, until)
    if (earned_since is None) != (earned_until is None):
        missing = "earned_until" if earned_until is None else "earned_since"
        raise ValidationFailed("give earned_since and earned_until together", field=missing)
    if earned_since is None or earned_until is None:
        earned_since, earned_until = since, until
    _check_period(
        earned_since, earned_until, since_field="earned_since", until_field="earned_until"
    )
    e = t.points_entries.c
    with _reading(platform) as conn:
        prog = program_named(platform.reference.get(conn), program)
        expired = (
            select(_total(-e.points))
            .where(
                e.program_id == prog.id,
                e.kind == EntryKind.EXPIRE.value,
                _within(e.occurred_at, since, until),
            )
            .scalar_subquery()
        )
        row = conn.execute(
            select(
                expired,
                _total(case((e.kind == EntryKind.EARN.value, e.points), else_=0)),
                _total(case((e.kind == EntryKind.ADJUST.value, e.points), else_=0)),
            ).where(
                e.program_id == prog.id,
                or_(
                    e.kind == EntryKind.EARN.value,
                    and_(e.kind == EntryKind.ADJUST.value, e.points > 0),
                ),
                _within(e.occurred_at, earned_since, earned_until),
            )
        ).one()
    expired_points, earned, granted = (int(v) for v in row)
    return {
        "program": prog.code,
        "since": since,
        "until": until,
        "earned_since": earned_since,
        "earned_until": earned_until,
        "expired_points": expired_points,
        "earned_points": earned,
        "granted_points": granted,
        "breakage_rate": rate(expired_points, earned),
    }


# ---------------------------------------------------------------- output


def _iso(value: datetime) -> str:
    """UTC, as the rest of the API writes times: ``2026-03-02T02:00:00Z``."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return _iso(value)
    return str(value)


def to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """``rows`` as CSV with a header of ``columns`` (default: the first row's keys): empty
    cells for None, times in UTC, decimals as written (``0.3333``)."""
    if columns is None:
        columns = list(rows[0]) if rows else []
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row[name]) for name in columns])
    return buffer.getvalue()


def as_json(value: Any) -> Any:
    """A report with its decimals as strings and its times in UTC, as the API answers."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, Mapping):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    return value
