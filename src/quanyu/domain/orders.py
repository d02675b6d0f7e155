"""Orders and refunds as received from any channel, their validation and fingerprints.

Amounts are integers in minor currency units (fen). A line carries its unit list
price and the amount actually paid for the whole line. Payments must add up to the
order's paid total; points used as payment are a payment of method ``points``.

Ingestion is idempotent on (channel, external id): the canonical form of a payload
is fingerprinted; a replay with the same fingerprint returns the first result and a
different one is a conflict that names the differing fields (:func:`differences`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from quanyu.domain.errors import (
    PointsPaymentCapExceeded,
    RefundExceedsOrder,
    ValidationFailed,
)
from quanyu.domain.identity import IdentityKey
from quanyu.jsonfast import dumps_canonical

POINTS_METHOD = "points"


@dataclass(frozen=True)
class IdentityInput:
    type: str
    value: str
    namespace: str | None = None


@dataclass(frozen=True)
class LineInput:
    line_no: int
    sku: str
    quantity: int
    list_price: int
    paid_amount: int
    category: str | None = None


@dataclass(frozen=True)
class PaymentInput:
    method: str
    amount: int
    points: int = 0


@dataclass(frozen=True)
class OrderInput:
    channel: str
    external_id: str
    ordered_at: datetime
    lines: tuple[LineInput, ...]
    identities: tuple[IdentityInput, ...] = ()
    payments: tuple[PaymentInput, ...] = ()
    brand: str | None = None
    store: str | None = None
    guide: str | None = None

    @property
    def paid_total(self) -> int:
        return sum(line.paid_amount for line in self.lines)

    @property
    def list_total(self) -> int:
        return sum(line.list_price * line.quantity for line in self.lines)

    @property
    def points_used(self) -> int:
        return sum(p.points for p in self.payments if p.method == POINTS_METHOD)

    @property
    def points_amount(self) -> int:
        return sum(p.amount for p in self.payments if p.method == POINTS_METHOD)


@dataclass(frozen=True)
class RefundLineInput:
    line_no: int
    quantity: int
    amount: int


@dataclass(frozen=True)
class RefundInput:
    channel: str
    external_id: str
    order_external_id: str
    refunded_at: datetime
    lines: tuple[RefundLineInput, ...]
    reason: str = ""
    order_channel: str | None = None  # the order's channel when it differs from the refund's

    @property
    def amount(self) -> int:
        return sum(line.amount for line in self.lines)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat()


EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
MAX_LINES = 1000
MAX_QUANTITY = 1_000_000
MAX_AMOUNT = 10**13  # minor units on one line: a hundred billion yuan


def require_aware(dt: datetime, field: str) -> datetime:
    """A timestamp with an offset, between 2000 and 2100."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValidationFailed("a timestamp needs a time zone offset", field=field)
    if not EARLIEST <= dt < LATEST:
        raise ValidationFailed("a timestamp must fall between 2000 and 2100", field=field)
    return dt


def validate_order(order: OrderInput) -> None:
    """Shape rules that hold whatever the program: raise ValidationFailed naming the field."""
    require_aware(order.ordered_at, "ordered_at")
    if not order.channel.strip():
        raise ValidationFailed("channel is required", field="channel")
    if not order.external_id.strip():
        raise ValidationFailed("external_id is required", field="external_id")
    if not order.lines:
        raise ValidationFailed("an order needs at least one line", field="lines")
    if len(order.lines) > MAX_LINES:
        raise ValidationFailed(f"an order has at most {MAX_LINES} lines", field="lines")
    seen: set[int] = set()
    for i, line in enumerate(order.lines):
        where = f"lines[{i}]"
        if line.line_no in seen:
            raise ValidationFailed(
                f"line_no {line.line_no} appears twice", field=f"{where}.line_no"
            )
        seen.add(line.line_no)
        if not line.sku.strip():
            raise ValidationFailed("sku is required", field=f"{where}.sku")
        if not 0 < line.quantity <= MAX_QUANTITY:
            raise ValidationFailed(
                f"quantity must be between 1 and {MAX_QUANTITY}", field=f"{where}.quantity"
            )
        if line.list_price * line.quantity > MAX_AMOUNT or line.paid_amount > MAX_AMOUNT:
            raise ValidationFailed("the line's amount is too large", field=f"{where}.paid_amount")
        if line.list_price < 0:
            raise ValidationFailed("list_price cannot be negative", field=f"{where}.list_price")
        if line.paid_amount < 0:
            raise ValidationFailed("paid_amount cannot be negative", field=f"{where}.paid_amount")
    for i, payment in enumerate(order.payments):
        if payment.amount < 0:
            raise ValidationFailed("amount cannot be negative", field=f"payments[{i}].amount")
        if payment.points < 0:
            raise ValidationFailed("points cannot be negative", field=f"payments[{i}].points")
        if payment.method != POINTS_METHOD and payment.points:
            raise ValidationFailed(
                f"only a {POINTS_METHOD!r} payment can carry points", field=f"payments[{i}].method"
            )
        if payment.method == POINTS_METHOD and payment.points == 0 and payment.amount > 0:
            raise ValidationFailed(
                "a points payment must say how many points", field=f"payments[{i}].points"
            )
    if order.payments and sum(p.amount for p in order.payments) != order.paid_total:
        raise ValidationFailed(
            f"payments add up to {sum(p.amount for p in order.payments)} "
            f"but the lines' paid amounts add up to {order.paid_total}",
            field="payments",
        )


def validate_points_payment(
    order: OrderInput, *, point_value_minor: Decimal, cap_percent: int
) -> None:
    """Points pay ``point_value_minor`` each, up to ``cap_percent`` of the order."""
    for i, payment in enumerate(order.payments):
        if payment.method != POINTS_METHOD:
            continue
        worth = int(Decimal(payment.points) * point_value_minor)
        if worth != payment.amount:
            raise ValidationFailed(
                f"{payment.points} points are worth {worth}, not {payment.amount}",
                field=f"payments[{i}].amount",
            )
    cap = order.paid_total * cap_percent // 100
    if order.points_amount > cap:
        raise PointsPaymentCapExceeded(
            f"points may pay at most {cap_percent}% ({cap}) of this order, "
            f"not {order.points_amount}",
            field="payments",
            cap=cap,
            requested=order.points_amount,
        )


def eligible_amounts(order: OrderInput) -> list[int]:
    """Each line's paid amount less its pro-rata share of the points payment.

    Shares use the largest-remainder method, so they add up exactly.
    """
    paid = [line.paid_amount for line in order.lines]
    total = sum(paid)
    excluded = order.points_amount
    if excluded == 0 or total == 0:
        return paid
    shares = [excluded * p // total for p in paid]
    remainders = sorted(range(len(paid)), key=lambda i: (-(excluded * paid[i] % total), i))
    for i in remainders[: excluded - sum(shares)]:
        shares[i] += 1
    return [p - s for p, s in zip(paid, shares, strict=True)]


def canonical_order(order: OrderInput, keys: Sequence[IdentityKey] | None = None) -> dict[str, Any]:
    """The order as fingerprinted. With ``keys`` (the normalised identities) a phone or
    e-mail written differently in a replay is still the same order."""
    if keys is not None:
        identities = sorted(
            (
                {"type": k.type.value, "value": k.value, "namespace": k.namespace or None}
                for k in keys
            ),
            key=lambda d: (d["type"], d["namespace"] or "", d["value"]),
        )
    else:
        identities = sorted(
            (
                {"type": i.type, "value": i.value, "namespace": i.namespace or None}
                for i in order.identities
            ),
            key=lambda d: (d["type"], d["namespace"] or "", d["value"]),
        )
    return {
        "channel": order.channel,
        "external_id": order.external_id,
        "ordered_at": _iso(order.ordered_at),
        "brand": order.brand,
        "store": order.store,
        "guide": order.guide,
        "identities": identities,
        "lines": [
            {
                "line_no": line.line_no,
                "sku": line.sku,
                "quantity": line.quantity,
                "list_price": line.list_price,
                "paid_amount": line.paid_amount,
                "category": line.category,
            }
            for line in sorted(order.lines, key=lambda x: x.line_no)
        ],
        "payments": sorted(
            ({"method": p.method, "amount": p.amount, "points": p.points} for p in order.payments),
            key=lambda d: (d["method"], d["amount"], d["points"]),
        ),
    }


def canonical_refund(refund: RefundInput) -> dict[str, Any]:
    return {
        "channel": refund.channel,
        "external_id": refund.external_id,
        "order_external_id": refund.order_external_id,
        "order_channel": refund.order_channel or refund.channel,
        "refunded_at": _iso(refund.refunded_at),
        "reason": refund.reason,
        "lines": [
            {"line_no": line.line_no, "quantity": line.quantity, "amount": line.amount}
            for line in sorted(refund.lines, key=lambda x: x.line_no)
        ],
    }


def fingerprint(canonical: Mapping[str, Any]) -> str:
    return hashlib.sha256(dumps_canonical(canonical)).hexdigest()


def differences(stored: Any, received: Any, path: str = "") -> dict[str, Any]:
    """Field paths where two canonical payloads differ, with both values."""
    if isinstance(stored, Mapping) and isinstance(received, Mapping):
        out: dict[str, Any] = {}
        for key in sorted(set(stored) | set(received)):
            out.update(
                differences(stored.get(key), received.get(key), f"{path}.{key}" if path else key)
            )
        return out
    if isinstance(stored, list) and isinstance(received, list) and len(stored) == len(received):
        out = {}
        for i, (a, b) in enumerate(zip(stored, received, strict=True)):
            out.update(differences(a, b, f"{path}[{i}]"))
        return out
    if stored != received:
        return {path or "payload": {"stored": stored, "received": received}}
    return {}


@dataclass(frozen=True)
class LineState:
    """What is left of an order line after earlier refunds."""

    line_no: int
    quantity: int
    paid_amount: int
    refunded_quantity: int
    refunded_amount: int


def validate_refund(refund: RefundInput, lines: Sequence[LineState]) -> None:
    require_aware(refund.refunded_at, "refunded_at")
    if not refund.lines:
        raise ValidationFailed("a refund needs at least one line", field="lines")
    by_no = {line.line_no: line for line in lines}
    seen: set[int] = set()
    for i, rl in enumerate(refund.lines):
        where = f"lines[{i}]"
        state = by_no.get(rl.line_no)
        if state is None:
            raise ValidationFailed(f"the order has no line {rl.line_no}", field=f"{where}.line_no")
        if rl.line_no in seen:
            raise ValidationFailed(f"line {rl.line_no} appears twice", field=f"{where}.line_no")
        seen.add(rl.line_no)
        if rl.quantity < 0 or rl.amount < 0 or (rl.quantity == 0 and rl.amount == 0):
            raise ValidationFailed(
                "a refund line returns a positive quantity or amount",
                field=f"{where}.quantity" if rl.quantity < 0 else f"{where}.amount",
            )
        if rl.quantity > state.quantity - state.refunded_quantity:
            raise RefundExceedsOrder(
                f"line {rl.line_no}: {rl.quantity} returned but only "
                f"{state.quantity - state.refunded_quantity} remain",
                field=f"{where}.quantity",
            )
        if rl.amount > state.paid_amount - state.refunded_amount:
            raise RefundExceedsOrder(
                f"line {rl.line_no}: {rl.amount} refunded but only "
                f"{state.paid_amount - state.refunded_amount} remain",
                field=f"{where}.amount",
            )
