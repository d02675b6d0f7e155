"""Order and refund ingestion from any channel: single, batch and file import.

Each order resolves its identities to one profile (merging if it links two), earns
points under the program's rule in force at ``ordered_at``, spends any points used as
payment, and can upgrade the member's tier at once. Ingestion is idempotent on
(channel, external id): a replay returns the stored first result; the same key with a
different payload raises IdempotencyConflict naming the differing fields.

A batch runs in one transaction. An item that fails is reported with its error and
the batch is run again without it, so no half-applied item is ever stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Table, select

from quanyu.adapters import tables as t
from quanyu.adapters.reads import marks
from quanyu.adapters.reference import BrandRef, ProgramConfig, ReferenceData
from quanyu.domain.earn_rules import EarnLine, quote_points
from quanyu.domain.errors import IdempotencyConflict, QuanyuError, ValidationFailed
from quanyu.domain.events import HistoryKind
from quanyu.domain.identity import IdentityKey, make_key
from quanyu.domain.orders import (
    LineState,
    OrderInput,
    RefundInput,
    canonical_order,
    canonical_refund,
    differences,
    eligible_amounts,
    fingerprint,
    require_aware,
    validate_order,
    validate_points_payment,
    validate_refund,
)
from quanyu.domain.points import EntryKind, proportional_share
from quanyu.domain.tiers import TierMetric
from quanyu.services import coupons
from quanyu.services.assortment import add_order_flags, screen_order_lines
from quanyu.services.realtime_tags import tag_order
from quanyu.services.uow import Platform, run
from quanyu.services.working_set import WorkingSet, chunks, expiry_for, local_date

UNCATEGORISED = "uncategorised"
T = TypeVar("T")


@dataclass(frozen=True)
class Prepared:
    """An order that passed the shape rules, with its normalised keys and fingerprint."""

    order: OrderInput
    keys: tuple[IdentityKey, ...]
    canonical: dict[str, Any]
    fingerprint: str


FUTURE_ALLOWANCE = timedelta(hours=1)  # channel clocks run a little fast


def prepare_order(order: OrderInput, default_region: str) -> Prepared:
    validate_order(order)
    keys = tuple(
        make_key(
            i.type, i.value, i.namespace, default_region=default_region, field=f"identities[{n}]"
        )
        for n, i in enumerate(order.identities)
    )
    canonical = canonical_order(order, keys)
    return Prepared(order, keys, canonical, fingerprint(canonical))


def _brand_for(ref: ReferenceData, order: OrderInput, store_brand: int | None) -> BrandRef:
    if order.brand is not None:
        brand = ref.brands.get(order.brand)
        if brand is None:
            raise ValidationFailed(f"unknown brand {order.brand!r}", field="brand")
        if store_brand is not None and store_brand != brand.id:
            raise ValidationFailed(
                f"store {order.store} belongs to another brand than {order.brand}", field="brand"
            )
        return brand
    if store_brand is not None:
        return ref.brands_by_id[store_brand]
    if len(ref.brands) == 1:
        return next(iter(ref.brands.values()))
    raise ValidationFailed("brand is required when the order names no store", field="brand")


Stored = tuple[str, dict[str, Any], dict[str, Any]]  # fingerprint, payload, first result


def load_stored(
    ws: WorkingSet, table: Table, keys: Iterable[tuple[int, str]]
) -> dict[tuple[int, str], Stored]:
    """What is already stored under these (channel id, external id) keys in ``table``
    (orders or refunds), a few queries per channel."""
    by_channel: dict[int, set[str]] = {}
    for channel_id, external_id in keys:
        by_channel.setdefault(channel_id, set()).add(external_id)
    out: dict[tuple[int, str], Stored] = {}
    for channel_id, external_ids in by_channel.items():
        for chunk in chunks(sorted(external_ids), 2000):
            for external_id, fp, payload, result in ws.read.rows(
                f"SELECT external_id, fingerprint, payload, result FROM {table.name} "
                f"WHERE channel_id = %s AND external_id IN ({marks(len(chunk))})",
                [channel_id, *chunk],
            ):
                out[(channel_id, external_id)] = (
                    fp,
                    ws.read.json(payload),
                    ws.read.json(result),
                )
    return out


def replay(
    stored: Stored | None, fp: str, canonical: dict[str, Any], what: str
) -> dict[str, Any] | None:
    """The first result again if ``stored`` holds this very payload; None if nothing is
    stored; IdempotencyConflict naming the differences if another payload is."""
    if stored is None:
        return None
    if stored[0] == fp:
        return {**stored[2], "replayed": True}
    raise IdempotencyConflict(what, differences(stored[1], canonical))


class OrderBatch:
    """Applies prepared orders inside one WorkingSet."""

    def __init__(self, ws: WorkingSet, items: Sequence[Prepared], actor: str) -> None:
        self.ws = ws
        self.actor = actor
        ref = ws.ref
        self.stored = load_stored(
            ws,
            t.orders,
            (
                (ref.channels[p.order.channel].id, p.order.external_id)
                for p in items
                if p.order.channel in ref.channels
            ),
        )
        skus = sorted({line.sku for p in items for line in p.order.lines if line.category is None})
        self.categories: dict[str, str] = {}
        for chunk in chunks(skus, 5000):
            for sku, category in ws.read.rows(
                f"SELECT sku, category FROM products WHERE sku IN ({marks(len(chunk))})", chunk
            ):
                self.categories[sku] = category
        ws.preload_identities(k for p in items for k in p.keys)
        ws.ids.reserve(t.orders, len(items) - len(self.stored))
        if items:
            earliest = min(p.order.ordered_at for p in items)
            for program in ref.programs.values():
                since = local_date(earliest, program) - timedelta(
                    days=program.tier_policy.window_days
                )
                ws.preload_contributions(
                    [
                        m
                        for prof in ws.profiles.values()
                        for m in prof.memberships.values()
                        if m.program_id == program.id and m.status == "active"
                    ],
                    since,
                )

    def apply(self, item: Prepared) -> dict[str, Any]:
        """Apply one order. Until ``touched`` turns true nothing has changed, so an order
        rejected before then needs no rerun of its batch."""
        self.touched = False
        ws, order, ref = self.ws, item.order, self.ws.ref
        channel = ref.channels.get(order.channel)
        if channel is None:
            raise ValidationFailed(f"unknown channel {order.channel!r}", field="channel")
        replayed = replay(
            self.stored.get((channel.id, order.external_id)),
            item.fingerprint,
            item.canonical,
            f"order {order.channel}/{order.external_id}",
        )
        if replayed is not None:
            return replayed
        if order.ordered_at > ws.now + FUTURE_ALLOWANCE:
            raise ValidationFailed("ordered_at is in the future", field="ordered_at")
        store = ref.stores.get(order.store) if order.store else None
        if order.store and store is None:
            raise ValidationFailed(f"unknown store {order.store!r}", field="store")
        guide = ref.guides.get(order.guide) if order.guide else None
        if order.guide and guide is None:
            raise ValidationFailed(f"unknown guide {order.guide!r}", field="guide")
        brand = _brand_for(ref, order, store.brand_id if store else None)
        program = ref.programs[brand.program_id]
        categories = [
            line.category or self.categories.get(line.sku, UNCATEGORISED) for line in order.lines
        ]
        flags = screen_order_lines(
            ref.assortment,
            program,
            channel=channel,
            store=store,
            lines=order.lines,
            categories=categories,
        )
        trigger = f"order {order.channel}/{order.external_id}"
        self.touched = True
        profile = ws.resolve(
            item.keys, at=order.ordered_at, source=order.channel, trigger=trigger, actor=self.actor
        )
        membership = profile.memberships.get(program.id) if profile else None
        if membership is not None and membership.status != "active":
            membership = None
        if order.points_used:
            if membership is None:
                raise ValidationFailed(
                    "only a member of the program can pay with points", field="payments"
                )
            validate_points_payment(
                order,
                point_value_minor=program.point_value_minor,
                cap_percent=program.points_payment_cap_percent,
            )
        points = 0
        if membership is not None and profile is not None:
            quote = quote_points(
                program.rule_at(order.ordered_at),
                lines=[
                    EarnLine(line.sku, cat, amount)
                    for line, cat, amount in zip(
                        order.lines, categories, eligible_amounts(order), strict=True
                    )
                ],
                channel=channel.code,
                tier=membership.tier_code,
                local_day=local_date(order.ordered_at, program),
                birthday=profile.birthday,
            )
            points = quote.points
        order_id = ws.ids.one(t.orders)
        if membership is not None:
            day = local_date(order.ordered_at, program)
            amount = order.paid_total if program.tier_policy.metric is TierMetric.SPEND else points
            ws.contribute(membership, program, day, amount)
            if order.points_used:
                ws.ledger(membership, complete=True).spend(
                    points=order.points_used,
                    as_of=order.ordered_at,
                    also_available_at=ws.now,
                    reason=f"paid with points: {trigger}",
                    actor=self.actor,
                    order_id=order_id,
                    field="payments",
                )
            if points:
                ws.ledger(membership, complete=False).earn(
                    points=points,
                    earned_at=order.ordered_at,
                    available_at=order.ordered_at + timedelta(days=program.pending_days),
                    expires_at=expiry_for(program, order.ordered_at),
                    reason=f"earned: {trigger}",
                    actor=self.actor,
                    order_id=order_id,
                )
        tier = None
        if membership is not None:
            ws.upgrade_if_qualified(
                membership, program, at=order.ordered_at, reason=trigger, actor=self.actor
            )
            tier = membership.tier_code
        result = {
            "order_id": order_id,
            "channel": order.channel,
            "external_id": order.external_id,
            "member_id": profile.id if profile else None,
            "member_no": membership.member_no if membership else None,
            "points_earned": points,
            "points_used": order.points_used,
            "tier": tier,
            "replayed": False,
        }
        if flags:  # only then, so that results without flags stay as they were
            result["flags"] = flags
        ws.add(
            t.orders,
            {
                "id": order_id,
                "channel_id": channel.id,
                "external_id": order.external_id,
                "brand_id": brand.id,
                "profile_id": profile.id if profile else None,
                "store_id": store.id if store else None,
                "guide_id": guide.id if guide else None,
                "ordered_at": order.ordered_at,
                "list_total": order.list_total,
                "paid_total": order.paid_total,
                "points_used": order.points_used,
                "points_amount": order.points_amount,
                "points_earned": points,
                "refunded_amount": 0,
                "points_clawed_back": 0,
                "points_restored": 0,
                "fingerprint": item.fingerprint,
                "payload": item.canonical,
                "result": result,
                "received_at": ws.now,
            },
        )
        for line, cat in zip(order.lines, categories, strict=True):
            ws.add(
                t.order_lines,
                {
                    "order_id": order_id,
                    "line_no": line.line_no,
                    "sku": line.sku,
                    "category": cat,
                    "quantity": line.quantity,
                    "list_price": line.list_price,
                    "paid_amount": line.paid_amount,
                    "refunded_quantity": 0,
                    "refunded_amount": 0,
                },
            )
        add_order_flags(ws, order_id, flags)
        tag_order(
            ws,
            profile.id if profile else None,
            channel=order.channel,
            store=order.store,
            paid_total=order.paid_total,
            lines=[(line.sku, cat) for line, cat in zip(order.lines, categories, strict=True)],
        )
        for payment in order.payments:
            ws.add(
                t.payments,
                {
                    "order_id": order_id,
                    "method": payment.method,
                    "amount": payment.amount,
                    "points": payment.points,
                },
            )
        if profile is not None:
            ws.history(
                profile.id,
                HistoryKind.ORDER_PLACED,
                f"{order.channel} order {order.external_id}: {order.paid_total}",
                {
                    "order_id": order_id,
                    "channel": order.channel,
                    "paid_total": order.paid_total,
                    "points_earned": points,
                },
                actor=self.actor,
                at=order.ordered_at,
            )
        self.stored[(channel.id, order.external_id)] = (item.fingerprint, item.canonical, result)
        return result


@dataclass
class ItemFailed(Exception):
    index: int
    error: QuanyuError


def run_batch(
    platform: Platform,
    count: int,
    prepare: Callable[[int], T],
    apply: Callable[[WorkingSet, list[tuple[int, T]]], list[dict[str, Any] | QuanyuError]],
) -> list[dict[str, Any] | QuanyuError]:
    """Prepare every item and apply the good ones in one transaction.

    ``apply`` returns an error in place of a result for an item it rejected before
    changing anything; it raises ItemFailed for one that failed half-way, and the batch
    runs again without it.
    """
    outcome: dict[int, dict[str, Any] | QuanyuError] = {}
    good: list[tuple[int, T]] = []
    for i in range(count):
        try:
            good.append((i, prepare(i)))
        except QuanyuError as exc:
            outcome[i] = exc
    while True:
        try:
            items = list(good)
            results = run(platform, lambda ws, items=items: apply(ws, items))
        except ItemFailed as failed:
            outcome[failed.index] = failed.error
            good = [(i, p) for i, p in good if i != failed.index]
            continue
        for (i, _), res in zip(good, results, strict=True):
            outcome[i] = res
        return [outcome[i] for i in range(count)]


def apply_each(
    items: Sequence[tuple[int, T]],
    apply_one: Callable[[T], dict[str, Any]],
    touched: Callable[[], bool] = lambda: True,
) -> list[dict[str, Any] | QuanyuError]:
    """Apply items in order. An item that fails after ``touched`` turned true is
    reported by its index (ItemFailed) and its batch reruns without it; one rejected
    before it changed anything is simply answered with its error."""
    out: list[dict[str, Any] | QuanyuError] = []
    for i, item in items:
        try:
            out.append(apply_one(item))
        except QuanyuError as exc:
            if touched():
                raise ItemFailed(i, exc) from exc
            out.append(exc)
    return out


def ingest_orders(
    platform: Platform, orders: Sequence[OrderInput], *, actor: str
) -> list[dict[str, Any] | QuanyuError]:
    def apply(
        ws: WorkingSet, items: list[tuple[int, Prepared]]
    ) -> list[dict[str, Any] | QuanyuError]:
        batch = OrderBatch(ws, [p for _, p in items], actor)
        return apply_each(items, batch.apply, lambda: batch.touched)

    return run_batch(
        platform, len(orders), lambda i: prepare_order(orders[i], platform.default_region), apply
    )


def ingest_order(platform: Platform, order: OrderInput, *, actor: str) -> dict[str, Any]:
    item = prepare_order(order, platform.default_region)
    return run(platform, lambda ws: OrderBatch(ws, [item], actor).apply(item))


# ---------------------------------------------------------------- refunds


@dataclass
class _LineRow:
    id: int
    line_no: int
    quantity: int
    paid_amount: int
    refunded_quantity: int
    refunded_amount: int


@dataclass
class _OrderRow:
    """An order as a refund sees it; the running totals change as refunds apply."""

    id: int
    external_id: str
    brand_id: int
    profile_id: int | None
    ordered_at: datetime
    paid_total: int
    points_earned: int
    points_used: int
    refunded_amount: int
    points_clawed_back: int
    points_restored: int
    lines: dict[int, _LineRow]


class RefundBatch:
    """Applies refunds inside one WorkingSet.

    Stored refunds, the orders refunded (locked on PostgreSQL, in id order) with their
    lines, and their owners are read up front in a few queries; each refund then updates
    the orders' running totals in memory, and the flush writes them.
    """

    def __init__(self, ws: WorkingSet, refunds: Sequence[RefundInput]) -> None:
        self.ws = ws
        self.touched = False
        ref = ws.ref
        self.stored = load_stored(
            ws,
            t.refunds,
            (
                (ref.channels[r.channel].id, r.external_id)
                for r in refunds
                if r.channel in ref.channels
            ),
        )
        self.orders: dict[tuple[int, str], _OrderRow] = {}
        targets: dict[int, set[str]] = {}
        for r in refunds:
            order_ch = ref.channels.get(r.order_channel or r.channel)
            if order_ch is not None:
                targets.setdefault(order_ch.id, set()).add(r.order_external_id)
        o = t.orders
        by_id: dict[int, _OrderRow] = {}
        for channel_id, external_ids in targets.items():
            for chunk in chunks(sorted(external_ids), 2000):
                query = (
                    select(
                        o.c.id,
                        o.c.external_id,
                        o.c.brand_id,
                        o.c.profile_id,
                        o.c.ordered_at,
                        o.c.paid_total,
                        o.c.points_earned,
                        o.c.points_used,
                        o.c.refunded_amount,
                        o.c.points_clawed_back,
                        o.c.points_restored,
                    )
                    .where(o.c.channel_id == channel_id, o.c.external_id.in_(chunk))
                    .order_by(o.c.id)
                )
                if ws.postgres:
                    query = query.with_for_update()
                for found in ws.conn.execute(query):
                    values: tuple[Any, ...] = (*found, {})
                    order = _OrderRow(*values)
                    self.orders[(channel_id, order.external_id)] = order
                    by_id[order.id] = order
        for chunk in chunks(sorted(by_id), 2000):
            ol = t.order_lines
            for line in ws.conn.execute(
                select(
                    ol.c.order_id,
                    ol.c.id,
                    ol.c.line_no,
                    ol.c.quantity,
                    ol.c.paid_amount,
                    ol.c.refunded_quantity,
                    ol.c.refunded_amount,
                ).where(ol.c.order_id.in_(chunk))
            ):
                line_values: tuple[Any, ...] = tuple(line)[1:]
                by_id[line.order_id].lines[line.line_no] = _LineRow(*line_values)
        ws.load_profiles(
            (order.profile_id for order in by_id.values() if order.profile_id is not None),
            lock=True,
        )

    def apply(self, refund: RefundInput, *, actor: str) -> dict[str, Any]:
        """Apply one refund. Until ``touched`` turns true nothing has changed."""
        self.touched = False
        ws, ref = self.ws, self.ws.ref
        require_aware(refund.refunded_at, "refunded_at")
        channel = ref.channels.get(refund.channel)
        if channel is None:
            raise ValidationFailed(f"unknown channel {refund.channel!r}", field="channel")
        canonical = canonical_refund(refund)
        fp = fingerprint(canonical)
        replayed = replay(
            self.stored.get((channel.id, refund.external_id)),
            fp,
            canonical,
            f"refund {refund.channel}/{refund.external_id}",
        )
        if replayed is not None:
            return replayed
        order_channel = refund.order_channel or refund.channel
        order_ch = ref.channels.get(order_channel)
        if order_ch is None:
            raise ValidationFailed(f"unknown channel {order_channel!r}", field="order_channel")
        order = self.orders.get((order_ch.id, refund.order_external_id))
        if order is None:
            raise ValidationFailed(
                f"no order {order_ch.code}/{refund.order_external_id} to refund",
                field="order_external_id",
            )
        validate_refund(
            refund,
            [
                LineState(
                    x.line_no, x.quantity, x.paid_amount, x.refunded_quantity, x.refunded_amount
                )
                for x in order.lines.values()
            ],
        )
        self.touched = True
        refunded = order.refunded_amount + refund.amount
        clawback = (
            proportional_share(order.points_earned, refunded, order.paid_total)
            - order.points_clawed_back
        )
        restore = (
            proportional_share(order.points_used, refunded, order.paid_total)
            - order.points_restored
        )
        refund_id = ws.ids.one(t.refunds)
        program: ProgramConfig = ref.programs[ref.brands_by_id[order.brand_id].program_id]
        profile = ws.profile(order.profile_id) if order.profile_id is not None else None
        membership = profile.memberships.get(program.id) if profile else None
        trigger = (
            f"refund {refund.channel}/{refund.external_id}"
            f" of order {order_ch.code}/{order.external_id}"
        )
        if membership is not None:
            if program.tier_policy.metric is TierMetric.SPEND:
                ws.contribute(
                    membership, program, local_date(order.ordered_at, program), -refund.amount
                )
            elif clawback:
                ws.contribute(
                    membership, program, local_date(refund.refunded_at, program), -clawback
                )
            ledger = ws.ledger(membership, complete=bool(clawback or restore))
            if clawback > 0:
                ledger.claw_back(
                    points=clawback,
                    as_of=refund.refunded_at,
                    policy=program.clawback_policy,
                    reason=f"clawed back: {trigger}",
                    actor=actor,
                    order_id=order.id,
                    refund_id=refund_id,
                )
            if restore > 0:
                ledger.earn(
                    points=restore,
                    earned_at=refund.refunded_at,
                    available_at=refund.refunded_at,
                    expires_at=_restored_expiry(ws, order.id, program, refund.refunded_at),
                    reason=f"points payment returned: {trigger}",
                    actor=actor,
                    kind=EntryKind.RESTORE,
                    order_id=order.id,
                    refund_id=refund_id,
                )
        coupons_returned: list[str] = []
        if refunded == order.paid_total:  # a full refund gives the order's coupons back
            coupons_returned = coupons.return_for_refund(
                ws,
                order_ch.id,
                refund.order_external_id,
                reason=f"full refund {refund.channel}/{refund.external_id}",
                actor=actor,
            )
        result = {
            "refund_id": refund_id,
            "order_id": order.id,
            "channel": refund.channel,
            "external_id": refund.external_id,
            "amount": refund.amount,
            "points_clawed_back": clawback,
            "points_restored": restore,
            "member_id": order.profile_id,
            "coupons_returned": coupons_returned,
            "replayed": False,
        }
        ws.add(
            t.refunds,
            {
                "id": refund_id,
                "channel_id": channel.id,
                "external_id": refund.external_id,
                "order_id": order.id,
                "refunded_at": refund.refunded_at,
                "amount": refund.amount,
                "points_clawed_back": clawback,
                "points_restored": restore,
                "fingerprint": fp,
                "payload": canonical,
                "result": result,
                "received_at": ws.now,
            },
        )
        for rl in refund.lines:
            line = order.lines[rl.line_no]
            line.refunded_quantity += rl.quantity
            line.refunded_amount += rl.amount
            ws.add(
                t.refund_lines,
                {
                    "refund_id": refund_id,
                    "line_no": rl.line_no,
                    "quantity": rl.quantity,
                    "amount": rl.amount,
                },
            )
            ws.set_values(
                t.order_lines,
                ("refunded_quantity", "refunded_amount"),
                line.id,
                (line.refunded_quantity, line.refunded_amount),
            )
        order.refunded_amount = refunded
        order.points_clawed_back += clawback
        order.points_restored += restore
        ws.set_values(
            t.orders,
            ("refunded_amount", "points_clawed_back", "points_restored"),
            order.id,
            (order.refunded_amount, order.points_clawed_back, order.points_restored),
        )
        if order.profile_id is not None:
            ws.history(
                order.profile_id,
                HistoryKind.ORDER_REFUNDED,
                f"{refund.channel} refund {refund.external_id}: {refund.amount}",
                {
                    "refund_id": refund_id,
                    "order_id": order.id,
                    "amount": refund.amount,
                    "points_clawed_back": clawback,
                    "points_restored": restore,
                },
                actor=actor,
                at=refund.refunded_at,
            )
        self.stored[(channel.id, refund.external_id)] = (fp, canonical, result)
        return result


def _restored_expiry(
    ws: WorkingSet, order_id: int, program: ProgramConfig, at: datetime
) -> datetime | None:
    """Returned points keep the latest expiry of the lots the payment consumed."""
    rows = ws.conn.execute(
        select(t.points_lots.c.expires_at)
        .join(t.points_allocations, t.points_allocations.c.lot_id == t.points_lots.c.id)
        .join(t.points_entries, t.points_entries.c.id == t.points_allocations.c.entry_id)
        .where(
            t.points_entries.c.order_id == order_id,
            t.points_entries.c.kind == EntryKind.SPEND.value,
        )
    ).all()
    if not rows:
        return expiry_for(program, at)
    if any(r.expires_at is None for r in rows):
        return None
    latest: datetime = max(r.expires_at for r in rows)
    return latest


def ingest_refund(platform: Platform, refund: RefundInput, *, actor: str) -> dict[str, Any]:
    return run(platform, lambda ws: RefundBatch(ws, [refund]).apply(refund, actor=actor))


def ingest_refunds(
    platform: Platform, refunds: Sequence[RefundInput], *, actor: str
) -> list[dict[str, Any] | QuanyuError]:
    def apply(
        ws: WorkingSet, items: list[tuple[int, RefundInput]]
    ) -> list[dict[str, Any] | QuanyuError]:
        batch = RefundBatch(ws, [r for _, r in items])
        return apply_each(items, lambda r: batch.apply(r, actor=actor), lambda: batch.touched)

    return run_batch(platform, len(refunds), lambda i: refunds[i], apply)
