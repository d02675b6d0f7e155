"""Channel assortment: setting, listing and deleting rules, screening order lines
against them, and the must-sell gaps of each store.

Rules are kept in ``assortment_rules``, one per target and level (``rule_key``), and
cached in each process's reference snapshot, so screening an order reads nothing.
Every write invalidates this process's snapshot; other processes pick the change up
within ``reference_cache_seconds``. The gaps report reads the rules from the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Select, Table, and_, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from quanyu.adapters import tables as t
from quanyu.adapters.reference import ChannelRef, ProgramConfig, StoreRef
from quanyu.domain.assortment import (
    FORBIDDEN_IN_CHANNEL,
    Assortment,
    AssortmentPolicy,
    AssortmentRule,
    AssortmentStatus,
    ForbiddenLine,
    Line,
    RuleInput,
    Target,
    TargetKind,
    forbidden_lines,
    unsold,
)
from quanyu.domain.errors import ForbiddenInChannel, NotFound, ValidationFailed
from quanyu.domain.orders import EARLIEST, LATEST, LineInput
from quanyu.services.uow import Platform
from quanyu.services.working_set import WorkingSet, chunks

GAP_DAYS = 30  # the default window of the must-sell gaps report
MAX_TARGET = 64  # the length of a SKU or category code
STATUSES = ", ".join(s.value for s in AssortmentStatus)


# ---------------------------------------------------------------- writing and reading rules


def _ids(conn: Connection, table: Table, codes: set[str]) -> dict[str, int]:
    if not codes:
        return {}
    return {
        r.code: int(r.id)
        for r in conn.execute(select(table.c.code, table.c.id).where(table.c.code.in_(codes)))
    }


def _resolve(conn: Connection, rules: Sequence[RuleInput]) -> list[AssortmentRule]:
    """The rules with their codes turned into ids, each checked; fields are named
    ``[i].name`` after the rule's position."""
    channels = _ids(conn, t.channels, {r.channel for r in rules})
    stores = _ids(conn, t.stores, {r.store for r in rules if r.store is not None})
    out: list[AssortmentRule] = []
    seen: dict[str, int] = {}
    for i, r in enumerate(rules):
        if r.channel not in channels:
            raise ValidationFailed(f"unknown channel {r.channel!r}", field=f"[{i}].channel")
        if r.store is not None and r.store not in stores:
            raise ValidationFailed(f"unknown store {r.store!r}", field=f"[{i}].store")
        if r.sku is not None and r.category is not None:
            raise ValidationFailed(
                "a rule targets either a sku or a category, not both", field=f"[{i}].category"
            )
        if not r.sku and not r.category:
            raise ValidationFailed("a rule needs a sku or a category", field=f"[{i}].sku")
        try:
            status = AssortmentStatus(r.status)
        except ValueError:
            raise ValidationFailed(
                f"status must be one of {STATUSES}", field=f"[{i}].status"
            ) from None
        kind, target = (TargetKind.SKU, r.sku) if r.sku else (TargetKind.CATEGORY, r.category)
        assert target is not None
        if len(target) > MAX_TARGET:
            raise ValidationFailed(f"at most {MAX_TARGET} characters", field=f"[{i}].{kind.value}")
        store_id = stores[r.store] if r.store is not None else None
        rule = AssortmentRule(channels[r.channel], store_id, kind, target, status)
        if rule.key in seen:
            raise ValidationFailed(
                f"[{seen[rule.key]}] already sets this {kind.value} at this level",
                field=f"[{i}].{kind.value}",
            )
        seen[rule.key] = i
        out.append(rule)
    return out


def _select_rules() -> Select[Any]:
    r = t.assortment_rules
    return (
        select(
            r.c.id,
            t.channels.c.code.label("channel"),
            t.stores.c.code.label("store"),
            r.c.target_kind,
            r.c.target,
            r.c.status,
            r.c.updated_at,
            r.c.updated_by,
        )
        .join(t.channels, t.channels.c.id == r.c.channel_id)
        .outerjoin(t.stores, t.stores.c.id == r.c.store_id)
    )


def _public(row: Any) -> dict[str, Any]:
    is_sku = row.target_kind == TargetKind.SKU.value
    return {
        "id": row.id,
        "channel": row.channel,
        "store": row.store,
        "sku": row.target if is_sku else None,
        "category": None if is_sku else row.target,
        "status": row.status,
        "updated_at": row.updated_at,
        "updated_by": row.updated_by,
    }


def set_rules(
    platform: Platform, rules: Sequence[RuleInput], *, actor: str
) -> list[dict[str, Any]]:
    """Create or replace rules, matched by channel, store and target, in one transaction;
    all of them or, on any invalid rule, none. Returns the stored rules in input order."""
    if not rules:
        return []
    now = platform.clock.now()
    with platform.engine.begin() as conn:
        resolved = _resolve(conn, rules)
        rows = [
            {
                "channel_id": r.channel_id,
                "store_id": r.store_id,
                "target_kind": r.target_kind.value,
                "target": r.target,
                "status": r.status.value,
                "rule_key": r.key,
                "updated_at": now,
                "updated_by": actor,
            }
            for r in resolved
        ]
        conn.execute(_upsert(conn), rows)
        keys = [r.key for r in resolved]
        stored: dict[str, dict[str, Any]] = {}
        for chunk in chunks(keys, 2000):
            for row in conn.execute(
                _select_rules()
                .add_columns(t.assortment_rules.c.rule_key)
                .where(t.assortment_rules.c.rule_key.in_(chunk))
            ):
                stored[row.rule_key] = _public(row)
    platform.reference.invalidate()
    return [stored[key] for key in keys]


def _upsert(conn: Connection) -> Any:
    """INSERT ... ON CONFLICT (rule_key) DO UPDATE: a rule replaces the one for the same
    target and level, atomically under concurrent writers."""
    r = t.assortment_rules
    stmt = postgresql.insert(r) if conn.dialect.name == "postgresql" else sqlite.insert(r)
    return stmt.on_conflict_do_update(
        index_elements=[r.c.rule_key],
        set_={
            "status": stmt.excluded.status,
            "updated_at": stmt.excluded.updated_at,
            "updated_by": stmt.excluded.updated_by,
        },
    )


def delete_rule(platform: Platform, rule_id: int) -> dict[str, Any]:
    """Delete one rule; returns it as it was."""
    with platform.engine.begin() as conn:
        row = conn.execute(_select_rules().where(t.assortment_rules.c.id == rule_id)).first()
        if row is None:
            raise NotFound("assortment rule", rule_id)
        conn.execute(delete(t.assortment_rules).where(t.assortment_rules.c.id == rule_id))
    platform.reference.invalidate()
    return _public(row)


def _id_of(conn: Connection, table: Table, code: str, entity: str) -> int:
    found = _ids(conn, table, {code})
    if code not in found:
        raise ValidationFailed(f"unknown {entity} {code!r}", field=entity)
    return found[code]


def list_rules(
    platform: Platform,
    *,
    channel: str | None = None,
    store: str | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    """Rules, by channel, store (channel-wide rules first) and target. ``store`` keeps
    the rules made for that store only."""
    r = t.assortment_rules
    with platform.engine.connect() as conn:
        query = _select_rules()
        if channel is not None:
            query = query.where(r.c.channel_id == _id_of(conn, t.channels, channel, "channel"))
        if store is not None:
            query = query.where(r.c.store_id == _id_of(conn, t.stores, store, "store"))
        if status is not None:
            if status not in {s.value for s in AssortmentStatus}:
                raise ValidationFailed(f"status must be one of {STATUSES}", field="status")
            query = query.where(r.c.status == status)
        query = query.order_by(
            t.channels.c.code,
            r.c.store_id.is_not(None),
            t.stores.c.code,
            r.c.target_kind,
            r.c.target,
        )
        return [_public(row) for row in conn.execute(query)]


# ---------------------------------------------------------------- orders


def screen_order_lines(
    assortment: Assortment,
    program: ProgramConfig,
    *,
    channel: ChannelRef,
    store: StoreRef | None,
    lines: Sequence[LineInput],
    categories: Sequence[str],
) -> list[dict[str, Any]]:
    """The flags of an order's lines forbidden in its channel, for the order's result.

    Under the program's ``reject`` policy a forbidden line refuses the whole order
    instead (ForbiddenInChannel, naming the first such line). Nothing is read or
    written here: the rules come from the reference snapshot (``ref.assortment``)."""
    if not assortment.governs(channel.id):
        return []
    found = forbidden_lines(
        assortment,
        channel.id,
        store.id if store else None,
        [Line(line.sku, cat) for line, cat in zip(lines, categories, strict=True)],
    )
    if not found:
        return []
    if program.assortment_policy == AssortmentPolicy.REJECT:
        first = found[0]
        raise ForbiddenInChannel(
            _detail(first, channel, store),
            field=f"lines[{first.index}].sku",
            sku=first.sku,
            channel=channel.code,
            store=store.code if store else None,
            lines=[f"lines[{x.index}].sku" for x in found],
        )
    return [
        {
            "line_no": lines[x.index].line_no,
            "sku": x.sku,
            "code": FORBIDDEN_IN_CHANNEL,
            "detail": _detail(x, channel, store),
        }
        for x in found
    ]


def _detail(line: ForbiddenLine, channel: ChannelRef, store: StoreRef | None) -> str:
    rule = line.rule
    where = f"channel {channel.code}"
    if rule.store_id is not None and store is not None:
        where = f"store {store.code} in {where}"
    return f"{line.sku} is forbidden in {where} by a {rule.target_kind.value} rule"[:500]


def add_order_flags(ws: WorkingSet, order_id: int, flags: Sequence[dict[str, Any]]) -> None:
    for flag in flags:
        ws.add(
            t.order_flags,
            {
                "order_id": order_id,
                "line_no": flag["line_no"],
                "code": flag["code"],
                "detail": flag["detail"],
            },
        )


# ---------------------------------------------------------------- must-sell gaps


@dataclass(frozen=True)
class _Store:
    id: int
    code: str
    brand_id: int
    tz: ZoneInfo
    since: date
    until: date
    musts: list[Target]

    def window(self) -> tuple[datetime, datetime]:
        """The local days [since, until) as instants."""
        return (
            datetime.combine(self.since, time(0), self.tz),
            datetime.combine(self.until, time(0), self.tz),
        )


def must_sell_gaps(
    platform: Platform,
    *,
    channel: str,
    store: str | None = None,
    since: date | None = None,
    until: date | None = None,
) -> dict[str, Any]:
    """Each must-sell SKU and category that a store of the channel sold no unit of (net
    of refunded quantity) in the channel's orders at that store, over the local days
    [since, until) in the time zone of the store's program.

    Without ``until`` the window runs through today (by the platform clock); without
    ``since`` it covers the ``GAP_DAYS`` days before ``until``. The stores are every
    store, or the one named; a must-sell SKU known as another brand's product is not
    expected of a store. A must-sell category is met by any unit of any SKU of it.
    Returns the gaps, ``{store, kind, target, units_sold: 0}``, and per store its
    window and its counts of must-sell targets and gaps.
    """
    for name, day in (("since", since), ("until", until)):
        if day is not None and not EARLIEST.date() <= day < LATEST.date():
            raise ValidationFailed(
                f"must be between {EARLIEST.date()} and {LATEST.date()}", field=name
            )
    if since is not None and until is not None and since >= until:
        raise ValidationFailed("since must be before until", field="since")
    now = platform.clock.now()
    r = t.assortment_rules
    with platform.engine.connect() as conn:
        channel_id = _id_of(conn, t.channels, channel, "channel")
        rules = [
            AssortmentRule(
                row.channel_id,
                row.store_id,
                TargetKind(row.target_kind),
                row.target,
                AssortmentStatus(row.status),
            )
            for row in conn.execute(select(r).where(r.c.channel_id == channel_id))
        ]
        assortment = Assortment(rules)
        must_skus = sorted(
            {
                x.target
                for x in rules
                if x.target_kind is TargetKind.SKU and x.status is AssortmentStatus.MUST
            }
        )
        category_of: dict[str, str] = {}
        brand_of: dict[str, int] = {}
        for chunk in chunks(must_skus, 2000):
            for p in conn.execute(
                select(t.products.c.sku, t.products.c.category, t.products.c.brand_id).where(
                    t.products.c.sku.in_(chunk)
                )
            ):
                category_of[p.sku] = p.category
                brand_of[p.sku] = p.brand_id
        query = (
            select(t.stores.c.id, t.stores.c.code, t.stores.c.brand_id, t.programs.c.timezone)
            .join(t.brands, t.brands.c.id == t.stores.c.brand_id)
            .join(t.programs, t.programs.c.id == t.brands.c.program_id)
            .order_by(t.stores.c.code)
        )
        if store is not None:
            query = query.where(t.stores.c.id == _id_of(conn, t.stores, store, "store"))
        stores: list[_Store] = []
        for row in conn.execute(query):
            tz = ZoneInfo(row.timezone)
            last = until or now.astimezone(tz).date() + timedelta(days=1)
            first = since or last - timedelta(days=GAP_DAYS)
            if first >= last:
                raise ValidationFailed("since must be before until", field="since")
            musts = [
                x
                for x in assortment.must_sell(channel_id, row.id, category_of)
                if x.kind is TargetKind.CATEGORY
                or brand_of.get(x.target, row.brand_id) == row.brand_id
            ]
            stores.append(_Store(row.id, row.code, row.brand_id, tz, first, last, musts))
        sold = _units_sold(conn, channel_id, stores)
    gaps: list[dict[str, Any]] = []
    counts: list[dict[str, Any]] = []
    for s in stores:
        by_sku, by_category = sold.get(s.id, ({}, {}))
        missing = unsold(s.musts, by_sku, by_category)
        gaps.extend(
            {"store": s.code, "kind": x.kind.value, "target": x.target, "units_sold": 0}
            for x in missing
        )
        counts.append(
            {
                "store": s.code,
                "since": s.since,
                "until": s.until,
                "must_sell": len(s.musts),
                "gaps": len(missing),
            }
        )
    return {"channel": channel, "gaps": gaps, "stores": counts}


def _units_sold(
    conn: Connection, channel_id: int, stores: Sequence[_Store]
) -> dict[int, tuple[dict[str, int], dict[str, int]]]:
    """Net units per store, by SKU and by line category, of the must-sell targets; one
    query per distinct window (one, unless the stores' programs keep different zones)."""
    o, ol = t.orders, t.order_lines
    by_window: dict[tuple[datetime, datetime], list[int]] = {}
    skus: set[str] = set()
    categories: set[str] = set()
    for s in stores:
        if s.musts:
            by_window.setdefault(s.window(), []).append(s.id)
        for x in s.musts:
            (skus if x.kind is TargetKind.SKU else categories).add(x.target)
    targets: list[ColumnElement[bool]] = []
    if skus:
        targets.append(ol.c.sku.in_(sorted(skus)))
    if categories:
        targets.append(ol.c.category.in_(sorted(categories)))
    out: dict[int, tuple[dict[str, int], dict[str, int]]] = {}
    if not targets:
        return out
    net = func.sum(ol.c.quantity - ol.c.refunded_quantity)
    for (start, end), store_ids in by_window.items():
        for chunk in chunks(store_ids, 2000):
            query = (
                select(o.c.store_id, ol.c.sku, ol.c.category, net)
                .join(o, o.c.id == ol.c.order_id)
                .where(
                    and_(
                        o.c.channel_id == channel_id,
                        o.c.store_id.in_(chunk),
                        o.c.ordered_at >= start,
                        o.c.ordered_at < end,
                        or_(*targets),
                    )
                )
                .group_by(o.c.store_id, ol.c.sku, ol.c.category)
            )
            for store_id, sku, category, units in conn.execute(query):
                by_sku, by_category = out.setdefault(store_id, ({}, {}))
                by_sku[sku] = by_sku.get(sku, 0) + int(units)
                by_category[category] = by_category.get(category, 0) + int(units)
    return out
