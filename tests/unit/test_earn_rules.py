"""Earn rules: documents, versions in force, and the points an order earns."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from quanyu.domain.earn_rules import (
    EarnLine,
    EarnRule,
    event_multiplier,
    quote_points,
    rule_from_document,
    rule_in_force,
)
from quanyu.domain.errors import ValidationFailed

JAN = datetime(2024, 1, 1, tzinfo=UTC)
FEB = datetime(2024, 2, 1, tzinfo=UTC)
MAR = datetime(2024, 3, 1, tzinfo=UTC)
ORDINARY_DAY = date(2024, 5, 14)


def rule(**doc: Any) -> EarnRule:
    return rule_from_document(1, JAN, doc)


def quote(
    r: EarnRule | None,
    *lines: EarnLine,
    channel: str = "tmall",
    tier: str | None = None,
    local_day: date = ORDINARY_DAY,
    birthday: date | None = None,
) -> int:
    return quote_points(
        r, lines=lines, channel=channel, tier=tier, local_day=local_day, birthday=birthday
    ).points


def line(amount: int, *, sku: str = "SKU1", category: str = "apparel") -> EarnLine:
    return EarnLine(sku=sku, category=category, eligible_amount=amount)


# ----- documents


def test_empty_document_earns_one_point_per_yuan_with_no_extras() -> None:
    r = rule_from_document(3, FEB, {})
    assert r == EarnRule(version=3, effective_from=FEB)
    assert r.base_rate == Decimal(1)


def test_document_numbers_are_read_as_exact_decimals() -> None:
    r = rule(base_rate="1.5", tier_multipliers={"gold": 2}, member_day_multiplier=0.1)
    assert r.base_rate == Decimal("1.5")
    assert r.tier_multipliers == {"gold": Decimal(2)}
    assert r.member_day_multiplier == Decimal("0.1")


def test_rule_survives_a_round_trip_through_its_document() -> None:
    r = rule_from_document(
        7,
        MAR,
        {
            "base_rate": "2",
            "tier_multipliers": {"gold": "1.5", "silver": "1.2"},
            "member_days": [28, 8, 18],
            "member_day_multiplier": "2",
            "birthday_month_multiplier": "3",
            "channel_rates": {"pos": "1.1"},
            "category_rates": {"beauty": "0.5"},
            "excluded_channels": ["outlet"],
            "excluded_categories": ["gift_card"],
            "excluded_skus": ["BAG"],
        },
    )
    assert rule_from_document(7, MAR, r.to_document()) == r
    assert r.to_document()["member_days"] == [8, 18, 28]


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"base_rate": "-1"}, "base_rate"),
        ({"base_rate": "abc"}, "base_rate"),
        ({"base_rate": None}, "base_rate"),
        ({"base_rate": "NaN"}, "base_rate"),
        ({"base_rate": "Infinity"}, "base_rate"),
        ({"member_day_multiplier": "-2"}, "member_day_multiplier"),
        ({"birthday_month_multiplier": "x"}, "birthday_month_multiplier"),
        ({"tier_multipliers": {"gold": "-1"}}, "tier_multipliers.gold"),
        ({"channel_rates": {"pos": "?"}}, "channel_rates.pos"),
        ({"category_rates": ["beauty"]}, "category_rates"),
        ({"excluded_skus": "BAG"}, "excluded_skus"),
        ({"member_days": [0]}, "member_days"),
        ({"member_days": [32]}, "member_days"),
        ({"member_days": ["8"]}, "member_days"),
        ({"member_days": 8}, "member_days"),
    ],
)
def test_invalid_rule_document_is_rejected_naming_the_field(
    doc: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationFailed) as err:
        rule(**doc)
    assert err.value.field == field


# ----- versions


def test_no_rule_is_in_force_before_the_first_takes_effect() -> None:
    assert rule_in_force([rule_from_document(1, FEB, {})], JAN) is None
    assert rule_in_force([], MAR) is None


def test_a_rule_is_in_force_from_its_effective_instant() -> None:
    r = rule_from_document(1, FEB, {})
    assert rule_in_force([r], FEB) is r


def test_the_latest_rule_that_has_taken_effect_is_in_force() -> None:
    v1 = rule_from_document(1, JAN, {})
    v2 = rule_from_document(2, FEB, {})
    v3 = rule_from_document(3, MAR, {})
    rules = [v3, v1, v2]
    assert rule_in_force(rules, datetime(2024, 1, 15, tzinfo=UTC)) is v1
    assert rule_in_force(rules, datetime(2024, 2, 15, tzinfo=UTC)) is v2
    assert rule_in_force(rules, datetime(2025, 1, 1, tzinfo=UTC)) is v3


def test_higher_version_wins_between_rules_effective_at_the_same_instant() -> None:
    v1 = rule_from_document(1, FEB, {})
    v2 = rule_from_document(2, FEB, {})
    assert rule_in_force([v2, v1], MAR) is v2


# ----- quotes


def test_no_rule_in_force_earns_nothing() -> None:
    q = quote_points(
        None,
        lines=[line(100_000)],
        channel="tmall",
        tier="gold",
        local_day=ORDINARY_DAY,
        birthday=None,
    )
    assert q.points == 0
    assert q.multiplier == Decimal(1)
    assert q.rule_version is None


def test_base_rate_earns_points_per_yuan_of_eligible_amount() -> None:
    assert quote(rule(), line(12_345)) == 123
    assert quote(rule(base_rate="2.5"), line(10_000)) == 250


def test_points_are_the_floor_of_the_order_sum_not_of_each_line() -> None:
    assert quote(rule(), line(150), line(150)) == 3


def test_less_than_one_point_rounds_down_to_nothing() -> None:
    assert quote(rule(), line(99)) == 0


def test_category_rate_beats_channel_rate_beats_base_rate() -> None:
    r = rule(base_rate="1", channel_rates={"pos": "2"}, category_rates={"beauty": "3"})
    assert quote(r, line(10_000, category="beauty"), channel="pos") == 300
    assert quote(r, line(10_000, category="apparel"), channel="pos") == 200
    assert quote(r, line(10_000, category="apparel"), channel="tmall") == 100


def test_zero_category_rate_earns_nothing_rather_than_falling_back() -> None:
    r = rule(base_rate="1", category_rates={"gift_card": "0"})
    assert quote(r, line(10_000, category="gift_card")) == 0


def test_excluded_channel_earns_nothing() -> None:
    q = quote_points(
        rule(excluded_channels=["outlet"]),
        lines=[line(10_000)],
        channel="outlet",
        tier=None,
        local_day=ORDINARY_DAY,
        birthday=None,
    )
    assert q.points == 0
    assert q.rule_version == 1


def test_excluded_category_and_sku_lines_earn_nothing_while_other_lines_earn() -> None:
    r = rule(excluded_categories=["gift_card"], excluded_skus=["BAG"])
    lines = [
        line(10_000, category="gift_card"),
        line(20_000, sku="BAG"),
        line(40_000, sku="SHOE"),
    ]
    assert quote(r, *lines) == 400


def test_tier_multiplier_applies_to_members_of_that_tier() -> None:
    r = rule(tier_multipliers={"gold": "1.5"})
    assert quote(r, line(10_000), tier="gold") == 150
    assert quote(r, line(10_000), tier="silver") == 100
    assert quote(r, line(10_000), tier=None) == 100


def test_member_day_multiplier_applies_on_a_member_day_only() -> None:
    r = rule(member_days=[8, 18], member_day_multiplier="2")
    assert quote(r, line(10_000), local_day=date(2024, 5, 18)) == 200
    assert quote(r, line(10_000), local_day=date(2024, 5, 19)) == 100


def test_birthday_month_multiplier_applies_through_the_birthday_month() -> None:
    r = rule(birthday_month_multiplier="3")
    born = date(1990, 5, 30)
    assert quote(r, line(10_000), local_day=date(2024, 5, 1), birthday=born) == 300
    assert quote(r, line(10_000), local_day=date(2024, 6, 1), birthday=born) == 100
    assert quote(r, line(10_000), local_day=date(2024, 5, 1), birthday=None) == 100


def test_member_day_and_birthday_multipliers_do_not_stack_the_larger_wins() -> None:
    r = rule(member_days=[18], member_day_multiplier="2", birthday_month_multiplier="3")
    assert event_multiplier(r, date(2024, 5, 18), date(1990, 5, 1)) == Decimal(3)
    r = rule(member_days=[18], member_day_multiplier="4", birthday_month_multiplier="3")
    assert event_multiplier(r, date(2024, 5, 18), date(1990, 5, 1)) == Decimal(4)


def test_an_event_multiplier_below_one_never_lowers_the_earning() -> None:
    r = rule(member_days=[18], member_day_multiplier="0.5")
    assert event_multiplier(r, date(2024, 5, 18), None) == Decimal(1)


def test_tier_and_event_multipliers_multiply() -> None:
    r = rule(tier_multipliers={"gold": "1.5"}, member_days=[18], member_day_multiplier="2")
    q = quote_points(
        r,
        lines=[line(10_000)],
        channel="tmall",
        tier="gold",
        local_day=date(2024, 5, 18),
        birthday=None,
    )
    assert q.multiplier == Decimal(3)
    assert q.points == 300


def test_quote_names_the_rule_version_it_used() -> None:
    r = rule_from_document(4, JAN, {})
    q = quote_points(
        r, lines=[line(100)], channel="pos", tier=None, local_day=ORDINARY_DAY, birthday=None
    )
    assert q.rule_version == 4


def test_fractional_rates_are_exact_not_binary_floating_point() -> None:
    assert quote(rule(base_rate="0.1"), line(3_000)) == 3  # 0.1 * 30 is 3, not 2.999...


def test_an_order_without_lines_earns_nothing() -> None:
    assert quote(rule()) == 0
