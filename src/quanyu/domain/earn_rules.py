"""Earn rules: how many points an order earns. Versioned data, evaluated purely.

A rule is a JSON-serialisable document (stored per program with a version and an
``effective_from``). For each order line::

    rate       = category_rates[category] or channel_rates[channel] or base_rate
    multiplier = tier_multipliers[tier] × max(member_day_multiplier if the local day is
                 a member day, birthday_month_multiplier if it is the birthday month, 1)
    points    += eligible_amount / 100 × rate × multiplier

Lines in an excluded channel, category or SKU earn nothing. The order's points are the
floor of the sum. ``eligible_amount`` is the line's paid amount less its share of any
payment that does not earn (points used as payment), in minor currency units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from quanyu.domain.errors import ValidationFailed

ONE = Decimal(1)
MINOR_PER_MAJOR = Decimal(100)


@dataclass(frozen=True)
class EarnRule:
    version: int
    effective_from: datetime
    base_rate: Decimal = ONE  # points per major currency unit (per yuan)
    tier_multipliers: Mapping[str, Decimal] = field(default_factory=dict)
    member_days: frozenset[int] = frozenset()  # days of the month
    member_day_multiplier: Decimal = ONE
    birthday_month_multiplier: Decimal = ONE
    channel_rates: Mapping[str, Decimal] = field(default_factory=dict)
    category_rates: Mapping[str, Decimal] = field(default_factory=dict)
    excluded_channels: frozenset[str] = frozenset()
    excluded_categories: frozenset[str] = frozenset()
    excluded_skus: frozenset[str] = frozenset()

    def to_document(self) -> dict[str, Any]:
        return {
            "base_rate": str(self.base_rate),
            "tier_multipliers": {k: str(v) for k, v in sorted(self.tier_multipliers.items())},
            "member_days": sorted(self.member_days),
            "member_day_multiplier": str(self.member_day_multiplier),
            "birthday_month_multiplier": str(self.birthday_month_multiplier),
            "channel_rates": {k: str(v) for k, v in sorted(self.channel_rates.items())},
            "category_rates": {k: str(v) for k, v in sorted(self.category_rates.items())},
            "excluded_channels": sorted(self.excluded_channels),
            "excluded_categories": sorted(self.excluded_categories),
            "excluded_skus": sorted(self.excluded_skus),
        }


def _decimal(value: Any, field_name: str) -> Decimal:
    try:
        result = Decimal(str(value))
    except ArithmeticError as exc:
        raise ValidationFailed(f"{value!r} is not a number", field=field_name) from exc
    if not result.is_finite() or result < 0:
        raise ValidationFailed(f"{value!r} must be a non-negative number", field=field_name)
    return result


def _rates(doc: Mapping[str, Any], key: str) -> dict[str, Decimal]:
    raw = doc.get(key) or {}
    if not isinstance(raw, Mapping):
        raise ValidationFailed(f"{key} must be an object", field=key)
    return {str(k): _decimal(v, f"{key}.{k}") for k, v in raw.items()}


def _names(doc: Mapping[str, Any], key: str) -> frozenset[str]:
    raw = doc.get(key) or []
    if not isinstance(raw, list):
        raise ValidationFailed(f"{key} must be a list", field=key)
    return frozenset(str(x) for x in raw)


def rule_from_document(version: int, effective_from: datetime, doc: Mapping[str, Any]) -> EarnRule:
    """Validate a stored or submitted rule document."""
    days = doc.get("member_days") or []
    if not isinstance(days, list) or not all(isinstance(d, int) and 1 <= d <= 31 for d in days):
        raise ValidationFailed("member_days must be days of the month (1-31)", field="member_days")
    return EarnRule(
        version=version,
        effective_from=effective_from,
        base_rate=_decimal(doc.get("base_rate", 1), "base_rate"),
        tier_multipliers=_rates(doc, "tier_multipliers"),
        member_days=frozenset(days),
        member_day_multiplier=_decimal(
            doc.get("member_day_multiplier", 1), "member_day_multiplier"
        ),
        birthday_month_multiplier=_decimal(
            doc.get("birthday_month_multiplier", 1), "birthday_month_multiplier"
        ),
        channel_rates=_rates(doc, "channel_rates"),
        category_rates=_rates(doc, "category_rates"),
        excluded_channels=_names(doc, "excluded_channels"),
        excluded_categories=_names(doc, "excluded_categories"),
        excluded_skus=_names(doc, "excluded_skus"),
    )


def rule_in_force(rules: Sequence[EarnRule], at: datetime) -> EarnRule | None:
    """The rule with the latest effective_from not after ``at``; a tie goes to the
    higher version. A new version can thus be scheduled ahead, or back-dated."""
    candidates = [r for r in rules if r.effective_from <= at]
    return max(candidates, key=lambda r: (r.effective_from, r.version)) if candidates else None


@dataclass(frozen=True)
class EarnLine:
    sku: str
    category: str
    eligible_amount: int


@dataclass(frozen=True)
class PointsQuote:
    points: int
    multiplier: Decimal
    rule_version: int | None


def event_multiplier(rule: EarnRule, local_day: date, birthday: date | None) -> Decimal:
    candidates = [ONE]
    if local_day.day in rule.member_days:
        candidates.append(rule.member_day_multiplier)
    if birthday is not None and birthday.month == local_day.month:
        candidates.append(rule.birthday_month_multiplier)
    return max(candidates)


def quote_points(
    rule: EarnRule | None,
    *,
    lines: Sequence[EarnLine],
    channel: str,
    tier: str | None,
    local_day: date,
    birthday: date | None,
) -> PointsQuote:
    """Points an order earns under ``rule``; no rule in force earns nothing."""
    if rule is None:
        return PointsQuote(0, ONE, None)
    multiplier = rule.tier_multipliers.get(tier or "", ONE) * event_multiplier(
        rule, local_day, birthday
    )
    if channel in rule.excluded_channels:
        return PointsQuote(0, multiplier, rule.version)
    exact = Decimal(0)
    for line in lines:
        if line.category in rule.excluded_categories or line.sku in rule.excluded_skus:
            continue
        rate = rule.category_rates.get(
            line.category, rule.channel_rates.get(channel, rule.base_rate)
        )
        exact += Decimal(line.eligible_amount) / MINOR_PER_MAJOR * rate * multiplier
    points = int(exact.to_integral_value(rounding=ROUND_FLOOR))
    return PointsQuote(max(points, 0), multiplier, rule.version)
