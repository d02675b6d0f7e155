"""The condition language of tags and segments, and tag definitions: parsing, and errors
that name the path of the mistake."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quanyu.domain.errors import ValidationFailed
from quanyu.domain.segments import (
    AllOf,
    AnyOf,
    AttrCondition,
    Attribute,
    Comparison,
    Not,
    Op,
    OrderCondition,
    OrderMetric,
    TagCondition,
    parse,
    tags_used,
)
from quanyu.domain.tags import (
    Model,
    OrderEvent,
    RealtimeCondition,
    parse_realtime,
    validate_definition,
)


def field_of(document: Any) -> str:
    with pytest.raises(ValidationFailed) as err:
        parse(document)
    return err.value.field


def test_parses_nested_conditions_into_their_parts() -> None:
    parsed = parse(
        {
            "all": [
                {"attr": "tier", "op": "in", "value": ["gold"]},
                {
                    "any": [
                        {
                            "orders": "count",
                            "within_days": 90,
                            "channel": "douyin",
                            "op": "gte",
                            "value": 2,
                        },
                        {"not": {"tag": "vip"}},
                    ]
                },
            ]
        }
    )
    assert parsed == AllOf(
        (
            AttrCondition(Attribute.TIER, Comparison(Op.IN, ("gold",))),
            AnyOf(
                (
                    OrderCondition(
                        OrderMetric.COUNT,
                        Comparison(Op.GTE, 2),
                        within_days=90,
                        channel=("douyin",),
                    ),
                    Not(TagCondition("vip")),
                )
            ),
        )
    )


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({}, "condition"),
        ({"all": []}, "condition.all"),
        ({"all": [{"attr": "tier"}]}, "condition.all[0].op"),
        ({"any": [{"attr": "colour", "op": "eq", "value": "x"}]}, "condition.any[0].attr"),
        ({"attr": "age", "op": "gt", "value": "thirty"}, "condition.value"),
        ({"attr": "tier", "op": "between", "value": ["b", "a"]}, "condition.value"),
        ({"attr": "tier", "op": "is_null", "value": 1}, "condition.value"),
        ({"orders": "count", "op": "gte", "value": 1, "within_days": 0}, "condition.within_days"),
        ({"orders": "count", "op": "gte", "value": 1, "colour": "red"}, "condition.colour"),
        ({"orders": "visits", "op": "gte", "value": 1}, "condition.orders"),
        ({"points": "lifetime", "op": "gte", "value": 1}, "condition.points"),
        ({"tag": "clv", "score": True}, "condition.op"),
        ({"attr": "tier", "op": "eq", "value": "a\x00b"}, "condition.value"),
        ({"attr": "tier", "op": "eq", "value": "x", "orders": "count"}, "condition"),
    ],
)
def test_a_mistake_is_rejected_naming_its_path(document: Any, field: str) -> None:
    assert field_of(document) == field


def test_a_condition_may_not_nest_deeper_than_eight_levels() -> None:
    doc: dict[str, Any] = {"tag": "x"}
    for _ in range(10):
        doc = {"not": doc}
    assert field_of(doc).startswith("condition.not")


def test_tags_used_lists_every_tag_a_condition_refers_to() -> None:
    doc = {
        "all": [
            {"tag": "a"},
            {"not": {"tag": "b", "op": "eq", "value": "x"}},
            {"attr": "tier", "op": "eq", "value": "gold"},
        ]
    }
    assert tags_used(parse(doc)) == {"a", "b"}


def test_a_rule_tag_may_not_depend_on_itself() -> None:
    with pytest.raises(ValidationFailed) as err:
        validate_definition("loop", "rule", {"tag": "loop"})
    assert err.value.field == "document"


def test_model_settings_are_checked_by_range() -> None:
    assert validate_definition("r", "model", {"model": "rfm", "lookback_days": 180}) == (
        Model.RFM,
        {"lookback_days": 180},
    )
    with pytest.raises(ValidationFailed) as err:
        validate_definition("l", "model", {"model": "lifecycle", "active_days": 400})
    assert err.value.field == "document.active_days"
    with pytest.raises(ValidationFailed) as err:
        validate_definition("c", "model", {"model": "clv", "horizon_days": 30})
    assert err.value.field == "document.horizon_days"


def test_a_realtime_tag_matches_an_order_when_every_given_field_matches() -> None:
    cond = parse_realtime(
        {"event": "order", "channel": ["douyin"], "category": "shoes", "min_paid": 10_000}
    )
    order = OrderEvent(
        channel="douyin", store=None, paid_total=12_000, lines=[("SKU1", "tops"), ("SKU2", "shoes")]
    )
    assert cond.matches(order)
    assert not cond.matches(OrderEvent("tmall", None, 12_000, [("SKU2", "shoes")]))
    assert not cond.matches(OrderEvent("douyin", None, 9_999, [("SKU2", "shoes")]))
    assert not cond.matches(OrderEvent("douyin", None, 12_000, [("SKU1", "tops")]))


def test_a_realtime_tag_needs_at_least_one_test() -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_realtime({"event": "order"})
    assert err.value.field == "document"


@given(st.sampled_from(["douyin", "kuaishou", "tmall", "pos"]), st.integers(0, 10**7))
def test_an_empty_realtime_filter_never_excludes_an_order(channel: str, paid: int) -> None:
    cond = RealtimeCondition(min_paid=0)
    assert cond.matches(OrderEvent(channel, None, paid, []))
