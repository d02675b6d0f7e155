"""Benefits a program or tier grants, and when each is due.

Kinds:

* ``welcome``            a gift (coupon and/or points) on joining; once per member;
* ``birthday``           a gift in the birthday month, once per member and year;
* ``member_day``         a gift on each member day (days of the month in
  ``settings["days"]``), once per member and day: typically a one-day discount
  coupon (the points multiplier of member days lives in the earn rules);
* ``free_shipping``      an entitlement the checkout reads: no gift is granted;
* ``priority_purchase``  an entitlement: members of the benefit's tiers may buy the
  SKUs in ``settings["skus"]`` from ``settings["opens_at"]``, everyone else from
  ``settings["public_at"]``.

A benefit with an empty ``tier_codes`` list applies to every tier. A gift is granted
at most once per member and *period* (``once``, ``2026``, ``2026-03-08``), which a
unique key in the database enforces.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from quanyu.domain.errors import ValidationFailed


class BenefitKind(enum.StrEnum):
    WELCOME = "welcome"
    BIRTHDAY = "birthday"
    MEMBER_DAY = "member_day"
    FREE_SHIPPING = "free_shipping"
    PRIORITY_PURCHASE = "priority_purchase"


GIFTS = (BenefitKind.WELCOME, BenefitKind.BIRTHDAY, BenefitKind.MEMBER_DAY)


@dataclass(frozen=True)
class Benefit:
    id: int
    code: str
    kind: BenefitKind
    tier_codes: tuple[str, ...] = ()
    coupon_template_id: int | None = None
    points: int = 0
    settings: Mapping[str, Any] = field(default_factory=dict)

    def applies_to(self, tier_code: str) -> bool:
        return not self.tier_codes or tier_code in self.tier_codes


def check_benefit(b: Benefit, *, known_tiers: Sequence[str]) -> None:
    """Raise ValidationFailed naming the field of the first broken rule."""
    for i, tier in enumerate(b.tier_codes):
        if tier not in known_tiers:
            raise ValidationFailed(f"unknown tier {tier!r}", field=f"tier_codes[{i}]")
    if b.kind in GIFTS and b.coupon_template_id is None and b.points <= 0:
        raise ValidationFailed("a gift gives a coupon, points or both", field="coupon_template")
    if b.kind not in GIFTS and (b.coupon_template_id is not None or b.points):
        raise ValidationFailed(f"a {b.kind.value} benefit gives no gift", field="coupon_template")
    if b.kind is BenefitKind.MEMBER_DAY:
        days = b.settings.get("days")
        if (
            not isinstance(days, list)
            or not days
            or not all(isinstance(d, int) and 1 <= d <= 31 for d in days)
        ):
            raise ValidationFailed(
                "member days are days of the month, 1 to 31", field="settings.days"
            )
    if b.kind is BenefitKind.PRIORITY_PURCHASE:
        skus = b.settings.get("skus")
        if not isinstance(skus, list) or not skus:
            raise ValidationFailed("name the SKUs members may buy first", field="settings.skus")
        opens, public = _instant(b, "opens_at"), _instant(b, "public_at")
        if public <= opens:
            raise ValidationFailed("public_at must be after opens_at", field="settings.public_at")


def _instant(b: Benefit, key: str) -> datetime:
    raw = b.settings.get(key)
    try:
        value = datetime.fromisoformat(str(raw))
    except ValueError:
        raise ValidationFailed(f"{key} is an ISO timestamp", field=f"settings.{key}") from None
    if value.tzinfo is None:
        raise ValidationFailed(f"{key} needs a time zone offset", field=f"settings.{key}")
    return value


def period_due(b: Benefit, *, today: date, birthday: date | None) -> str | None:
    """The period a gift is due for on ``today`` (the program's local date), or None."""
    if b.kind is BenefitKind.WELCOME:
        return "once"
    if b.kind is BenefitKind.BIRTHDAY:
        if birthday is not None and birthday.month == today.month:
            return f"{today.year}"
        return None
    if b.kind is BenefitKind.MEMBER_DAY:
        return today.isoformat() if today.day in b.settings.get("days", []) else None
    return None


def priority_window(b: Benefit, *, tier_code: str, sku: str, at: datetime) -> dict[str, Any] | None:
    """Whether a member of ``tier_code`` may buy ``sku`` at ``at`` under this benefit."""
    if b.kind is not BenefitKind.PRIORITY_PURCHASE or sku not in b.settings.get("skus", []):
        return None
    opens, public = _instant(b, "opens_at"), _instant(b, "public_at")
    member = b.applies_to(tier_code)
    start = opens if member else public
    return {
        "benefit": b.code,
        "sku": sku,
        "opens_at": start,
        "may_buy": at >= start,
        "early_access": member,
    }
