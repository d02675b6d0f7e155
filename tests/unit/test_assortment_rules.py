"""Channel assortment rules: precedence, forbidden lines and must-sell targets."""

from __future__ import annotations

from quanyu.domain.assortment import (
    Assortment,
    AssortmentRule,
    AssortmentStatus,
    Line,
    Target,
    TargetKind,
    forbidden_lines,
    rule_key,
    unsold,
)

MUST, OPTIONAL, FORBIDDEN = (
    AssortmentStatus.MUST,
    AssortmentStatus.OPTIONAL,
    AssortmentStatus.FORBIDDEN,
)
SKU, CATEGORY = TargetKind.SKU, TargetKind.CATEGORY
POS, TMALL = 1, 2
SH01, BJ01 = 10, 11


def rule(
    kind: TargetKind,
    target: str,
    status: AssortmentStatus,
    *,
    store: int | None = None,
    channel: int = POS,
) -> AssortmentRule:
    return AssortmentRule(channel, store, kind, target, status)


# ---------------------------------------------------------------- precedence


def test_without_any_rule_a_sku_is_not_governed() -> None:
    assortment = Assortment([rule(SKU, "TEE", FORBIDDEN)])

    assert assortment.status_of(POS, SH01, "JEANS", "bottoms") is None
    assert assortment.status_of(TMALL, SH01, "TEE", "tops") is None


def test_a_store_rule_beats_the_channel_wide_rule() -> None:
    assortment = Assortment([rule(SKU, "TEE", FORBIDDEN), rule(SKU, "TEE", OPTIONAL, store=SH01)])

    assert assortment.status_of(POS, SH01, "TEE", "tops") is OPTIONAL
    assert assortment.status_of(POS, BJ01, "TEE", "tops") is FORBIDDEN


def test_a_sku_rule_beats_a_category_rule_at_the_same_level() -> None:
    assortment = Assortment(
        [
            rule(CATEGORY, "tops", FORBIDDEN),
            rule(SKU, "TEE", MUST),
            rule(CATEGORY, "bottoms", MUST, store=SH01),
            rule(SKU, "JEANS", FORBIDDEN, store=SH01),
        ]
    )

    assert assortment.status_of(POS, None, "TEE", "tops") is MUST
    assert assortment.status_of(POS, None, "POLO", "tops") is FORBIDDEN
    assert assortment.status_of(POS, SH01, "JEANS", "bottoms") is FORBIDDEN
    assert assortment.status_of(POS, SH01, "CHINOS", "bottoms") is MUST


def test_a_store_category_rule_beats_a_channel_wide_sku_rule() -> None:
    assortment = Assortment(
        [rule(SKU, "TEE", FORBIDDEN), rule(CATEGORY, "tops", OPTIONAL, store=SH01)]
    )

    assert assortment.status_of(POS, SH01, "TEE", "tops") is OPTIONAL
    assert assortment.status_of(POS, BJ01, "TEE", "tops") is FORBIDDEN


def test_without_a_store_only_channel_wide_rules_apply() -> None:
    assortment = Assortment([rule(SKU, "TEE", FORBIDDEN, store=SH01)])

    assert assortment.status_of(POS, None, "TEE", "tops") is None
    assert assortment.status_of(POS, SH01, "TEE", "tops") is FORBIDDEN


def test_a_sku_of_unknown_category_is_judged_by_its_sku_rules_only() -> None:
    assortment = Assortment([rule(CATEGORY, "tops", FORBIDDEN), rule(SKU, "CAP", MUST)])

    assert assortment.status_of(POS, None, "TEE", None) is None
    assert assortment.status_of(POS, None, "CAP", None) is MUST


def test_the_rule_key_names_channel_store_kind_and_target() -> None:
    assert rule_key(3, None, SKU, "TEE-W-M") == "3/*/sku:TEE-W-M"
    assert rule_key(3, 17, CATEGORY, "tops") == "3/17/category:tops"
    assert rule(CATEGORY, "tops", MUST, store=SH01).key == f"{POS}/{SH01}/category:tops"


# ---------------------------------------------------------------- forbidden lines


def test_forbidden_lines_lists_each_forbidden_line_in_order_with_its_deciding_rule() -> None:
    by_category = rule(CATEGORY, "bottoms", FORBIDDEN)
    by_store = rule(SKU, "CAP", FORBIDDEN, store=SH01)
    assortment = Assortment([by_category, by_store, rule(SKU, "TEE", OPTIONAL)])
    lines = [Line("TEE", "tops"), Line("JEANS", "bottoms"), Line("CAP", None), Line("TEE", None)]

    found = forbidden_lines(assortment, POS, SH01, lines)

    assert [(x.index, x.sku, x.rule) for x in found] == [
        (1, "JEANS", by_category),
        (2, "CAP", by_store),
    ]


def test_no_line_is_forbidden_in_a_channel_without_rules() -> None:
    assortment = Assortment([rule(SKU, "TEE", FORBIDDEN)])

    assert forbidden_lines(assortment, TMALL, None, [Line("TEE", "tops")]) == []
    assert forbidden_lines(Assortment(), POS, None, [Line("TEE", "tops")]) == []


def test_a_store_rule_lets_a_store_sell_what_the_channel_forbids() -> None:
    assortment = Assortment([rule(SKU, "TEE", FORBIDDEN), rule(SKU, "TEE", OPTIONAL, store=SH01)])

    assert forbidden_lines(assortment, POS, SH01, [Line("TEE", "tops")]) == []
    assert len(forbidden_lines(assortment, POS, BJ01, [Line("TEE", "tops")])) == 1


# ---------------------------------------------------------------- must-sell


def test_must_sell_lists_the_channel_and_store_targets_that_still_decide() -> None:
    assortment = Assortment(
        [
            rule(SKU, "TEE", MUST),
            rule(CATEGORY, "bottoms", MUST),
            rule(SKU, "CAP", MUST, store=SH01),
            rule(CATEGORY, "tops", OPTIONAL, store=BJ01),  # makes TEE optional at BJ01
            rule(CATEGORY, "bottoms", OPTIONAL, store=BJ01),
            rule(SKU, "SOCKS", MUST, channel=TMALL),
        ]
    )
    category_of = {"TEE": "tops", "CAP": "hats"}

    assert assortment.must_sell(POS, SH01, category_of) == [
        Target(CATEGORY, "bottoms"),
        Target(SKU, "CAP"),
        Target(SKU, "TEE"),
    ]
    assert assortment.must_sell(POS, BJ01, category_of) == []


def test_a_must_sell_category_is_met_by_any_unit_of_any_sku_of_it() -> None:
    must = [Target(CATEGORY, "bottoms"), Target(SKU, "TEE"), Target(SKU, "CAP")]

    missing = unsold(must, {"TEE": 2, "CAP": 0, "JEANS": 1}, {"bottoms": 1, "tops": 2})

    assert missing == [Target(SKU, "CAP")]
    assert unsold(must, {}, {}) == must
