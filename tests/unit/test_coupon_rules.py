"""Coupon rules: discounts, scope, minimum spend, stacking, validity and codes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quanyu.domain.coupons import (
    CODE_ALPHABET,
    Basket,
    BasketLine,
    CouponKind,
    CouponStatus,
    CouponView,
    Template,
    allocate,
    check_template,
    new_code,
    normalise_code,
    quote,
    scope_from_document,
    validity,
)
from quanyu.domain.errors import ValidationFailed

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def tpl(kind: CouponKind = CouponKind.AMOUNT_OFF, **kw: object) -> Template:
    values: dict[str, object] = {
        "id": 1,
        "code": "T",
        "name": "T",
        "kind": kind,
        "value": 5_000,
        "valid_days": 30,
    }
    values.update(kw)
    return Template(**values)  # type: ignore[arg-type]


def coupon(template: Template, code: str = "C1", **kw: object) -> CouponView:
    values: dict[str, object] = {
        "id": 1,
        "code": code,
        "template": template,
        "status": CouponStatus.AVAILABLE,
        "valid_from": NOW - timedelta(days=1),
        "valid_until": NOW + timedelta(days=1),
        "profile_id": 7,
    }
    values.update(kw)
    return CouponView(**values)  # type: ignore[arg-type]


def basket(*amounts: int, categories: tuple[str, ...] = (), **kw: object) -> Basket:
    lines = tuple(
        BasketLine(
            line_no=n + 1,
            sku=f"SKU{n + 1}",
            category=categories[n] if n < len(categories) else "tops",
            quantity=1,
            amount=a,
        )
        for n, a in enumerate(amounts)
    )
    return Basket(
        channel=str(kw.get("channel", "pos")),
        lines=lines,
        store="SH01",
        shipping_fee=int(kw.get("shipping_fee", 0)),
    )  # type: ignore[call-overload]


def test_amount_off_is_spread_over_lines_in_proportion_and_adds_up() -> None:
    q = quote([coupon(tpl(value=1_000))], basket(20_000, 10_000), as_of=NOW, member_id=7)
    assert q.discount == 1_000
    assert q.line_discounts() == {1: 667, 2: 333}


def test_amount_off_never_exceeds_what_the_lines_cost() -> None:
    q = quote([coupon(tpl(value=50_000))], basket(10_000), as_of=NOW, member_id=7)
    assert q.discount == 10_000


def test_percent_off_is_floored_to_the_fen_and_capped() -> None:
    capped = tpl(CouponKind.PERCENT_OFF, value=15, max_discount=2_000)
    assert quote([coupon(capped)], basket(9_999), as_of=NOW, member_id=7).discount == 1_499
    assert quote([coupon(capped)], basket(50_000), as_of=NOW, member_id=7).discount == 2_000


def test_threshold_coupon_below_its_minimum_spend_says_how_much_is_missing() -> None:
    t300 = tpl(CouponKind.THRESHOLD, value=5_000, min_spend=30_000)
    q = quote([coupon(t300)], basket(25_000), as_of=NOW, member_id=7)
    assert q.discount == 0
    (reason,) = q.reasons()
    assert reason["code"] == "below_min_spend"
    assert reason["short_by"] == 5_000
    assert quote([coupon(t300)], basket(30_000), as_of=NOW, member_id=7).discount == 5_000


def test_minimum_spend_counts_only_lines_within_scope() -> None:
    scoped = tpl(
        CouponKind.THRESHOLD,
        value=5_000,
        min_spend=30_000,
        scope=scope_from_document({"exclude": {"categories": ["sale"]}}),
    )
    q = quote(
        [coupon(scoped)],
        basket(20_000, 20_000, categories=("tops", "sale")),
        as_of=NOW,
        member_id=7,
    )
    assert q.reasons()[0]["eligible_amount"] == 20_000


def test_excluded_lines_get_no_discount() -> None:
    scoped = tpl(value=1_000, scope=scope_from_document({"exclude": {"categories": ["sale"]}}))
    q = quote(
        [coupon(scoped)],
        basket(10_000, 10_000, categories=("tops", "sale")),
        as_of=NOW,
        member_id=7,
    )
    assert q.line_discounts() == {1: 1_000}


def test_forbidden_lines_get_no_discount() -> None:
    b = basket(10_000, 10_000)
    b = Basket(
        channel=b.channel,
        store=b.store,
        lines=(b.lines[0], BasketLine(2, "SKU2", "tops", 1, 10_000, forbidden=True)),
    )
    assert quote([coupon(tpl(value=1_000))], b, as_of=NOW, member_id=7).line_discounts() == {
        1: 1_000
    }


def test_coupon_limited_to_a_channel_does_not_apply_in_another() -> None:
    mini_only = tpl(scope=scope_from_document({"include": {"channels": ["mini"]}}))
    q = quote([coupon(mini_only)], basket(10_000, channel="pos"), as_of=NOW, member_id=7)
    assert [r["code"] for r in q.reasons()] == ["wrong_channel"]


def test_exclusive_coupon_combines_with_no_other() -> None:
    first = coupon(tpl(value=1_000), "A", id=1)
    second = coupon(tpl(value=1_000, id=2, stack_group="store"), "B", id=2)
    q = quote([first, second], basket(10_000), as_of=NOW, member_id=7)
    assert q.discount == 1_000
    assert q.rejected["B"][0].code == "stacking"


def test_coupons_of_different_groups_stack_but_two_of_one_group_do_not() -> None:
    a = coupon(tpl(value=1_000, stack_group="store"), "A", id=1)
    b = coupon(tpl(CouponKind.PERCENT_OFF, value=10, id=2, stack_group="platform"), "B", id=2)
    c = coupon(tpl(value=500, id=3, stack_group="store"), "C", id=3)
    q = quote([a, b, c], basket(10_000), as_of=NOW, member_id=7)
    assert [x.coupon.code for x in q.applied] == ["A", "B"]
    assert q.discount == 1_000 + 900  # the percentage applies to what is left
    assert q.rejected["C"][0].data["group"] == "store"


def test_gift_coupon_names_the_gift_to_add_or_takes_one_unit_off() -> None:
    gift = tpl(CouponKind.GIFT, value=0, gift_sku="SKU2", min_spend=5_000)
    q = quote([coupon(gift)], basket(10_000), as_of=NOW, member_id=7)
    assert q.discount == 0
    assert q.applied[0].as_dict()["gift"] == {"sku": "SKU2", "quantity": 1, "add_to_basket": True}
    b = Basket(
        channel="pos",
        lines=(BasketLine(1, "SKU1", "tops", 1, 10_000), BasketLine(2, "SKU2", "gifts", 2, 3_000)),
    )
    assert quote([coupon(gift)], b, as_of=NOW, member_id=7).line_discounts() == {2: 1_500}


def test_shipping_coupon_waives_the_fee_up_to_its_value() -> None:
    ship = tpl(CouponKind.SHIPPING, value=800)
    assert (
        quote([coupon(ship)], basket(10_000, shipping_fee=1_200), as_of=NOW, member_id=7).discount
        == 800
    )
    free = tpl(CouponKind.SHIPPING, value=0)
    q = quote([coupon(free)], basket(10_000, shipping_fee=1_200), as_of=NOW, member_id=7)
    assert q.discount == 1_200 and q.line_discounts() == {}
    none = quote([coupon(free)], basket(10_000), as_of=NOW, member_id=7)
    assert none.reasons()[0]["code"] == "no_shipping_fee"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"status": CouponStatus.REDEEMED}, "already_redeemed"),
        ({"status": CouponStatus.RESERVED}, "reserved"),
        ({"status": CouponStatus.VOIDED}, "voided"),
        ({"valid_until": NOW}, "expired"),
        ({"valid_from": NOW + timedelta(seconds=1)}, "not_yet_valid"),
        ({"profile_id": 8}, "not_owner"),
    ],
)
def test_unusable_coupon_is_rejected_with_its_reason(
    changes: dict[str, object], reason: str
) -> None:
    q = quote([coupon(tpl(), **changes)], basket(10_000), as_of=NOW, member_id=7)
    assert reason in [r["code"] for r in q.reasons()]
    assert q.discount == 0


def test_held_coupon_needs_its_member() -> None:
    q = quote([coupon(tpl())], basket(10_000), as_of=NOW, member_id=None)
    assert [r["code"] for r in q.reasons()] == ["member_required"]


def test_unclaimed_code_works_for_anyone() -> None:
    q = quote([coupon(tpl(value=100), profile_id=None)], basket(10_000), as_of=NOW, member_id=None)
    assert q.discount == 100


def test_validity_is_fixed_dates_or_days_after_issue_whichever_ends_first() -> None:
    end = NOW + timedelta(days=10)
    assert validity(tpl(valid_days=30, valid_until=end), NOW) == (NOW, end)
    assert validity(tpl(valid_days=3), NOW) == (NOW, NOW + timedelta(days=3))
    start = NOW + timedelta(days=2)
    assert validity(tpl(valid_days=None, valid_from=start, valid_until=end), NOW) == (start, end)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kind": CouponKind.PERCENT_OFF, "value": 120}, "value"),
        ({"kind": CouponKind.THRESHOLD, "value": 5_000, "min_spend": 5_000}, "min_spend"),
        ({"kind": CouponKind.GIFT, "value": 0}, "gift_sku"),
        ({"max_discount": 100}, "max_discount"),
        ({"valid_days": None}, "valid_until"),
        ({"total_limit": 0}, "total_limit"),
    ],
)
def test_template_rules_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_template(tpl(**changes))
    assert caught.value.field == field


def test_scope_document_with_an_unknown_key_names_it() -> None:
    with pytest.raises(ValidationFailed) as caught:
        scope_from_document({"include": {"colours": ["red"]}})
    assert caught.value.field == "scope.include.colours"


def test_codes_are_sixteen_unambiguous_characters_and_read_back_as_typed() -> None:
    code = new_code()
    assert len(code) == 16 and set(code) <= set(CODE_ALPHABET)
    assert normalise_code(f" {code[:4].lower()}-{code[4:8]} {code[8:]}") == code
    assert normalise_code("ABOL") == "AB01"


@given(
    total=st.integers(min_value=0, max_value=10**9),
    weights=st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=30),
)
def test_allocation_adds_up_and_no_part_exceeds_its_weight(total: int, weights: list[int]) -> None:
    total = min(total, sum(weights))
    parts = allocate(total, weights)
    assert sum(parts) == total
    assert all(0 <= p <= w for p, w in zip(parts, weights, strict=True))
