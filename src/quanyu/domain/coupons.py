"""Coupons: templates, validity, scope, stacking and the discount a coupon gives a basket.

A *template* says what a coupon does; a *coupon* is one issued instance with its own
code and validity. Amounts are integers in minor units (fen).

Kinds:

* ``amount_off``  ``value`` fen off the eligible lines (never more than they cost);
* ``percent_off`` ``value`` percent off the eligible lines, floored to the fen and
  capped by ``max_discount`` when set;
* ``threshold``   满减: ``value`` fen off once the eligible lines reach ``min_spend``
  (e.g. 50 off 300); it does not repeat per multiple of the threshold;
* ``gift``        one unit of ``gift_sku`` free: if the basket holds the gift its unit
  price is the discount, otherwise the answer names the gift to add at no charge;
* ``shipping``    the shipping fee, up to ``value`` fen (0 means all of it).

Scope (JSON on the template)::

    {"include": {"channels": [...], "stores": [...], "brands": [...],
                 "skus": [...], "categories": [...]},
     "exclude": {...the same keys...}}

An empty or missing include list admits everything. Channels and stores are checked on
the basket; brands, SKUs and categories on each line, and a line outside the scope gets
no discount. ``min_spend`` is measured on the eligible lines.

Stacking: a template without a ``stack_group`` is *exclusive* and combines with no other
coupon. Coupons of different groups combine; two of the same group do not. Combined
coupons apply in the order given, each on what the lines cost after the ones before.

A discount is spread over the eligible lines in proportion to their amounts; the
largest remainders take the odd fen, so the line discounts add up exactly.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from quanyu.domain.errors import ValidationFailed


class CouponKind(enum.StrEnum):
    AMOUNT_OFF = "amount_off"
    PERCENT_OFF = "percent_off"
    THRESHOLD = "threshold"
    GIFT = "gift"
    SHIPPING = "shipping"


class CouponStatus(enum.StrEnum):
    AVAILABLE = "available"
    RESERVED = "reserved"
    REDEEMED = "redeemed"
    VOIDED = "voided"


class RedemptionStatus(enum.StrEnum):
    RESERVED = "reserved"
    CONFIRMED = "confirmed"
    RELEASED = "released"
    RETURNED = "returned"


class CouponEventKind(enum.StrEnum):
    ISSUED = "issued"
    CLAIMED = "claimed"
    RESERVED = "reserved"
    RELEASED = "released"
    REDEEMED = "redeemed"
    RETURNED = "returned"
    VOIDED = "voided"


SCOPE_KEYS = ("channels", "stores", "brands", "skus", "categories")
MAX_SCOPE_ITEMS = 10_000


@dataclass(frozen=True)
class Scope:
    include: Mapping[str, frozenset[str]] = field(default_factory=dict)
    exclude: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def admits(self, key: str, value: str | None) -> bool:
        """Whether ``value`` passes the include and exclude lists of ``key``."""
        allowed = self.include.get(key)
        if allowed and (value is None or value not in allowed):
            return False
        denied = self.exclude.get(key)
        return not (denied and value is not None and value in denied)

    def to_document(self) -> dict[str, Any]:
        return {
            part: {k: sorted(v) for k, v in lists.items() if v}
            for part, lists in (("include", self.include), ("exclude", self.exclude))
        }


def scope_from_document(doc: Mapping[str, Any] | None, *, field: str = "scope") -> Scope:
    """Parse and check a scope document; raises ValidationFailed naming the key."""
    if doc is None:
        return Scope()
    if not isinstance(doc, Mapping):
        raise ValidationFailed("a scope is an object with include and exclude", field=field)
    unknown = set(doc) - {"include", "exclude"}
    if unknown:
        raise ValidationFailed(f"unknown scope part {sorted(unknown)[0]!r}", field=field)
    parts: dict[str, dict[str, frozenset[str]]] = {}
    for part in ("include", "exclude"):
        lists = doc.get(part) or {}
        if not isinstance(lists, Mapping):
            raise ValidationFailed("a scope part is an object of lists", field=f"{field}.{part}")
        parsed: dict[str, frozenset[str]] = {}
        for key, values in lists.items():
            where = f"{field}.{part}.{key}"
            if key not in SCOPE_KEYS:
                raise ValidationFailed(
                    f"unknown scope key {key!r}; use one of {', '.join(SCOPE_KEYS)}", field=where
                )
            if not isinstance(values, list) or not all(
                isinstance(v, str) and v.strip() for v in values
            ):
                raise ValidationFailed("a scope list holds non-empty strings", field=where)
            if len(values) > MAX_SCOPE_ITEMS:
                raise ValidationFailed(
                    f"a scope list holds at most {MAX_SCOPE_ITEMS} items", field=where
                )
            if values:
                parsed[key] = frozenset(values)
        parts[part] = parsed
    return Scope(include=parts["include"], exclude=parts["exclude"])


@dataclass(frozen=True)
class Template:
    id: int
    code: str
    name: str
    kind: CouponKind
    value: int
    min_spend: int = 0
    max_discount: int | None = None
    gift_sku: str | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    valid_days: int | None = None
    scope: Scope = field(default_factory=Scope)
    stack_group: str | None = None
    per_member_limit: int | None = None
    total_limit: int | None = None
    max_issued: int | None = None
    max_discount_total: int | None = None
    active: bool = True


MAX_VALID_DAYS = 3660


def check_template(tpl: Template) -> None:
    """Rules a template must satisfy before it is stored; raises ValidationFailed."""
    if tpl.kind is CouponKind.PERCENT_OFF and not 1 <= tpl.value <= 100:
        raise ValidationFailed("a percent-off coupon takes 1 to 100 percent", field="value")
    if tpl.kind in (CouponKind.AMOUNT_OFF, CouponKind.THRESHOLD) and tpl.value <= 0:
        raise ValidationFailed("the amount off must be positive", field="value")
    if tpl.kind is CouponKind.THRESHOLD and tpl.min_spend <= tpl.value:
        raise ValidationFailed(
            "a threshold coupon needs a minimum spend above its discount", field="min_spend"
        )
    if tpl.kind is CouponKind.GIFT and not tpl.gift_sku:
        raise ValidationFailed("a gift coupon names its gift SKU", field="gift_sku")
    if tpl.kind is not CouponKind.GIFT and tpl.gift_sku:
        raise ValidationFailed("only a gift coupon names a gift SKU", field="gift_sku")
    if tpl.max_discount is not None and tpl.kind is not CouponKind.PERCENT_OFF:
        raise ValidationFailed("only a percent-off coupon has a discount cap", field="max_discount")
    if tpl.valid_until is None and tpl.valid_days is None:
        raise ValidationFailed("give valid_until or valid_days", field="valid_until")
    if tpl.valid_days is not None and not 1 <= tpl.valid_days <= MAX_VALID_DAYS:
        raise ValidationFailed(f"valid_days is 1 to {MAX_VALID_DAYS}", field="valid_days")
    if tpl.valid_from and tpl.valid_until and tpl.valid_until <= tpl.valid_from:
        raise ValidationFailed("valid_until must be after valid_from", field="valid_until")
    for name in ("per_member_limit", "total_limit", "max_issued", "max_discount_total"):
        value = getattr(tpl, name)
        if value is not None and value < 1:
            raise ValidationFailed(f"{name} must be at least 1 when set", field=name)


def validity(tpl: Template, issued_at: datetime) -> tuple[datetime, datetime | None]:
    """When a coupon issued at ``issued_at`` may be used: [from, until)."""
    start = max(tpl.valid_from, issued_at) if tpl.valid_from else issued_at
    until = tpl.valid_until
    if tpl.valid_days is not None:
        rolling = issued_at + timedelta(days=tpl.valid_days)
        until = min(until, rolling) if until else rolling
    return start, until


def can_issue(tpl: Template, as_of: datetime) -> None:
    """A template issues only while active and before its fixed end."""
    if not tpl.active:
        raise ValidationFailed(f"coupon template {tpl.code} is paused", field="template")
    if tpl.valid_until is not None and tpl.valid_until <= as_of:
        raise ValidationFailed(f"coupon template {tpl.code} has ended", field="template")


# ---------------------------------------------------------------- codes

# Crockford's base32 without I, L, O and U: nothing a clerk can misread.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 16  # 80 random bits


def new_code() -> str:
    """An unguessable coupon code: 16 characters, 80 bits from the OS's random source."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


MISREAD = str.maketrans("OIL", "011")


def normalise_code(code: str) -> str:
    """What a clerk typed or a scanner read: case, spaces and dashes do not matter, and
    the letters people confuse with digits read as those digits."""
    cleaned = code.strip().upper().replace("-", "").replace(" ", "")
    return cleaned.translate(MISREAD)


# ---------------------------------------------------------------- baskets


@dataclass(frozen=True)
class BasketLine:
    line_no: int
    sku: str
    category: str
    quantity: int
    amount: int  # what the whole line costs before these coupons, in fen
    brand: str | None = None
    forbidden: bool = False  # the channel's assortment forbids the SKU: no discount


@dataclass(frozen=True)
class Basket:
    channel: str
    lines: tuple[BasketLine, ...]
    store: str | None = None
    shipping_fee: int = 0


@dataclass(frozen=True)
class CouponView:
    """An issued coupon as the rules see it."""

    id: int
    code: str
    template: Template
    status: CouponStatus
    valid_from: datetime
    valid_until: datetime | None
    profile_id: int | None


@dataclass(frozen=True)
class Reason:
    code: str
    detail: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self, coupon: str) -> dict[str, Any]:
        return {"coupon": coupon, "code": self.code, "detail": self.detail, **self.data}


@dataclass(frozen=True)
class Applied:
    coupon: CouponView
    discount: int
    lines: tuple[tuple[int, int], ...]  # (line_no, discount) for lines that get some
    shipping: int = 0
    gift_sku: str | None = None
    gift_to_add: bool = False

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.coupon.code,
            "template": self.coupon.template.code,
            "kind": self.coupon.template.kind.value,
            "discount": self.discount,
            "lines": [{"line_no": n, "discount": d} for n, d in self.lines],
        }
        if self.shipping:
            out["shipping_discount"] = self.shipping
        if self.gift_sku:
            out["gift"] = {"sku": self.gift_sku, "quantity": 1, "add_to_basket": self.gift_to_add}
        return out


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` over ``weights`` in proportion; the largest remainders take the
    odd units, ties to the earlier position. The parts add up to ``total``."""
    whole = sum(weights)
    if total < 0 or whole <= 0 or total > whole:
        raise ValueError("allocate needs 0 <= total <= sum(weights) and positive weights")
    parts = [total * w // whole for w in weights]
    left = total - sum(parts)
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in order[:left]:
        parts[i] += 1
    return parts


def usable(coupon: CouponView, as_of: datetime, member_id: int | None) -> list[Reason]:
    """Reasons the coupon itself cannot be used now, whatever the basket."""
    reasons: list[Reason] = []
    if coupon.status is CouponStatus.VOIDED:
        reasons.append(Reason("voided", "the coupon was voided"))
    elif coupon.status is CouponStatus.REDEEMED:
        reasons.append(Reason("already_redeemed", "the coupon was already used"))
    elif coupon.status is CouponStatus.RESERVED:
        reasons.append(Reason("reserved", "the coupon is held by another checkout"))
    if not coupon.template.active:
        reasons.append(Reason("template_paused", "the coupon's campaign is paused"))
    if as_of < coupon.valid_from:
        reasons.append(
            Reason(
                "not_yet_valid", "the coupon is not valid yet", {"valid_from": coupon.valid_from}
            )
        )
    if coupon.valid_until is not None and as_of >= coupon.valid_until:
        reasons.append(
            Reason("expired", "the coupon has expired", {"valid_until": coupon.valid_until})
        )
    if coupon.profile_id is not None and member_id is not None and coupon.profile_id != member_id:
        reasons.append(Reason("not_owner", "the coupon belongs to another member"))
    if coupon.profile_id is not None and member_id is None:
        reasons.append(Reason("member_required", "name the member who holds the coupon"))
    return reasons


def quote_one(
    coupon: CouponView, basket: Basket, amounts: Mapping[int, int], shipping_left: int
) -> Applied | list[Reason]:
    """The discount one coupon gives on lines that now cost ``amounts`` (by line_no)."""
    tpl = coupon.template
    if not tpl.scope.admits("channels", basket.channel):
        return [Reason("wrong_channel", f"not valid in channel {basket.channel}")]
    if not tpl.scope.admits("stores", basket.store):
        return [Reason("wrong_store", f"not valid in store {basket.store or '(none)'}")]
    eligible = [
        line
        for line in basket.lines
        if not line.forbidden
        and amounts[line.line_no] > 0
        and tpl.scope.admits("skus", line.sku)
        and tpl.scope.admits("categories", line.category)
        and tpl.scope.admits("brands", line.brand)
    ]
    subtotal = sum(amounts[line.line_no] for line in eligible)
    if tpl.kind is CouponKind.SHIPPING:
        if shipping_left <= 0:
            return [Reason("no_shipping_fee", "the basket has no shipping fee to waive")]
        if subtotal < tpl.min_spend:
            return [_below(tpl.min_spend, subtotal)]
        off = shipping_left if tpl.value == 0 else min(tpl.value, shipping_left)
        return Applied(coupon, off, (), shipping=off)
    if not eligible:
        return [Reason("no_eligible_lines", "no line in the basket is within the coupon's scope")]
    if subtotal < tpl.min_spend:
        return [_below(tpl.min_spend, subtotal)]
    if tpl.kind is CouponKind.GIFT:
        assert tpl.gift_sku is not None
        gift = next(
            (
                line
                for line in basket.lines
                if line.sku == tpl.gift_sku and amounts[line.line_no] > 0 and not line.forbidden
            ),
            None,
        )
        if gift is None:
            return Applied(coupon, 0, (), gift_sku=tpl.gift_sku, gift_to_add=True)
        unit = -(-amounts[gift.line_no] // gift.quantity)  # one unit, rounded up to the fen
        off = min(unit, amounts[gift.line_no])
        return Applied(coupon, off, ((gift.line_no, off),), gift_sku=tpl.gift_sku)
    if tpl.kind is CouponKind.PERCENT_OFF:
        off = subtotal * tpl.value // 100
        if tpl.max_discount is not None:
            off = min(off, tpl.max_discount)
    else:  # amount off, threshold
        off = min(tpl.value, subtotal)
    parts = allocate(off, [amounts[line.line_no] for line in eligible])
    lines = tuple((line.line_no, d) for line, d in zip(eligible, parts, strict=True) if d)
    return Applied(coupon, off, lines)


def _below(min_spend: int, subtotal: int) -> Reason:
    return Reason(
        "below_min_spend",
        f"eligible lines come to {subtotal}, below the minimum spend of {min_spend}",
        {"min_spend": min_spend, "eligible_amount": subtotal, "short_by": min_spend - subtotal},
    )


@dataclass
class Quote:
    applied: list[Applied] = field(default_factory=list)
    rejected: dict[str, list[Reason]] = field(default_factory=dict)

    @property
    def discount(self) -> int:
        return sum(a.discount for a in self.applied)

    def line_discounts(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for a in self.applied:
            for n, d in a.lines:
                out[n] = out.get(n, 0) + d
        return out

    def reasons(self) -> list[dict[str, Any]]:
        return [r.as_dict(code) for code, rs in self.rejected.items() for r in rs]


def quote(
    coupons: Iterable[CouponView],
    basket: Basket,
    *,
    as_of: datetime,
    member_id: int | None,
) -> Quote:
    """Apply ``coupons`` to ``basket`` in the order given. A coupon that cannot be used
    gets its reasons in ``rejected``; the others apply, each on what is left."""
    out = Quote()
    amounts = {line.line_no: line.amount for line in basket.lines}
    shipping_left = basket.shipping_fee
    groups: dict[str, str] = {}  # stack group -> code of the coupon holding it
    exclusive: str | None = None
    for coupon in coupons:
        reasons = usable(coupon, as_of, member_id)
        group = coupon.template.stack_group
        if exclusive is not None:
            reasons.append(
                Reason(
                    "stacking", f"{exclusive} combines with no other coupon", {"with": exclusive}
                )
            )
        elif group is None and out.applied:
            reasons.append(
                Reason(
                    "stacking",
                    "this coupon combines with no other coupon",
                    {"with": out.applied[0].coupon.code},
                )
            )
        elif group is not None and group in groups:
            reasons.append(
                Reason(
                    "stacking",
                    f"only one coupon of group {group} applies",
                    {"with": groups[group], "group": group},
                )
            )
        if reasons:
            out.rejected[coupon.code] = reasons
            continue
        result = quote_one(coupon, basket, amounts, shipping_left)
        if isinstance(result, list):
            out.rejected[coupon.code] = result
            continue
        for n, d in result.lines:
            amounts[n] -= d
        shipping_left -= result.shipping
        out.applied.append(result)
        if group is None:
            exclusive = coupon.code
        else:
            groups[group] = coupon.code
    return out
