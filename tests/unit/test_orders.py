"""Order and refund rules: validation, points payments, eligible amounts, fingerprints."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quanyu.domain.errors import (
    PointsPaymentCapExceeded,
    RefundExceedsOrder,
    ValidationFailed,
)
from quanyu.domain.orders import (
    IdentityInput,
    LineInput,
    LineState,
    OrderInput,
    PaymentInput,
    RefundInput,
    RefundLineInput,
    canonical_order,
    canonical_refund,
    differences,
    eligible_amounts,
    fingerprint,
    validate_order,
    validate_points_payment,
    validate_refund,
)

AT = datetime(2024, 5, 18, 10, 30, tzinfo=UTC)
SHANGHAI = timezone(timedelta(hours=8))


def order(
    *lines: LineInput,
    payments: tuple[PaymentInput, ...] = (),
    identities: tuple[IdentityInput, ...] = (),
) -> OrderInput:
    return OrderInput(
        channel="tmall",
        external_id="T-1001",
        ordered_at=AT,
        lines=lines or (LineInput(1, "SKU1", 2, 5_000, 9_000),),
        identities=identities,
        payments=payments,
        store="S1",
    )


def paid_line(line_no: int, paid: int) -> LineInput:
    return LineInput(line_no, f"SKU{line_no}", 1, paid, paid)


def points_order(*paid: int, points_amount: int) -> OrderInput:
    total = sum(paid)
    return order(
        *(paid_line(i + 1, p) for i, p in enumerate(paid)),
        payments=(
            PaymentInput("alipay", total - points_amount),
            PaymentInput("points", points_amount, points_amount),
        ),
    )


def field_of(o: OrderInput) -> str:
    with pytest.raises(ValidationFailed) as err:
        validate_order(o)
    return err.value.field


# ----- totals


def test_order_totals_add_up_lines_and_points_payments() -> None:
    o = order(
        LineInput(1, "A", 2, 5_000, 9_000),
        LineInput(2, "B", 1, 3_000, 3_000),
        payments=(
            PaymentInput("wechat_pay", 10_000),
            PaymentInput("points", 2_000, 200),
        ),
    )
    assert o.paid_total == 12_000
    assert o.list_total == 13_000
    assert o.points_used == 200
    assert o.points_amount == 2_000


# ----- order validation


def test_well_formed_order_passes_validation() -> None:
    validate_order(points_order(6_000, 4_000, points_amount=1_000))


def test_order_without_payments_passes_validation() -> None:
    validate_order(order())


def test_order_time_needs_a_time_zone() -> None:
    naive = replace(order(), ordered_at=datetime(2024, 5, 18, 10, 30))
    assert field_of(naive) == "ordered_at"


@pytest.mark.parametrize("name", ["channel", "external_id"])
def test_order_needs_a_channel_and_an_external_id(name: str) -> None:
    blank: dict[str, Any] = {name: "  "}
    assert field_of(replace(order(), **blank)) == name


def test_order_needs_at_least_one_line() -> None:
    assert field_of(replace(order(), lines=())) == "lines"


def test_line_numbers_must_be_unique_within_an_order() -> None:
    assert field_of(order(paid_line(1, 10), paid_line(1, 20))) == "lines[1].line_no"


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (LineInput(2, " ", 1, 10, 10), "lines[1].sku"),
        (LineInput(2, "B", 0, 10, 10), "lines[1].quantity"),
        (LineInput(2, "B", -1, 10, 10), "lines[1].quantity"),
        (LineInput(2, "B", 1, -10, 10), "lines[1].list_price"),
        (LineInput(2, "B", 1, 10, -10), "lines[1].paid_amount"),
    ],
)
def test_invalid_line_is_rejected_naming_its_field(line: LineInput, field: str) -> None:
    assert field_of(order(paid_line(1, 10), line)) == field


def test_a_free_line_is_valid() -> None:
    validate_order(order(LineInput(1, "GIFT", 1, 0, 0)))


@pytest.mark.parametrize(
    ("payment", "field"),
    [
        (PaymentInput("alipay", -1), "payments[0].amount"),
        (PaymentInput("points", 100, -1), "payments[0].points"),
        (PaymentInput("points", 100, 0), "payments[0].points"),
    ],
)
def test_invalid_payment_is_rejected_naming_its_field(payment: PaymentInput, field: str) -> None:
    assert field_of(order(paid_line(1, 100), payments=(payment,))) == field


def test_payments_must_add_up_to_the_paid_total() -> None:
    o = order(paid_line(1, 1_000), payments=(PaymentInput("alipay", 999),))
    with pytest.raises(ValidationFailed) as err:
        validate_order(o)
    assert err.value.field == "payments"
    assert "999" in err.value.detail and "1000" in err.value.detail


# ----- points as payment


def test_points_payment_within_the_cap_at_the_program_rate_is_accepted() -> None:
    o = order(
        paid_line(1, 10_000),
        payments=(PaymentInput("alipay", 5_000), PaymentInput("points", 5_000, 500)),
    )
    validate_points_payment(o, point_value_minor=Decimal(10), cap_percent=50)


def test_points_payment_must_be_worth_its_amount_at_the_program_rate() -> None:
    o = order(
        paid_line(1, 10_000),
        payments=(PaymentInput("alipay", 9_000), PaymentInput("points", 1_000, 50)),
    )
    with pytest.raises(ValidationFailed) as err:
        validate_points_payment(o, point_value_minor=Decimal(10), cap_percent=50)
    assert err.value.field == "payments[1].amount"


def test_fractional_point_value_is_truncated_to_whole_minor_units() -> None:
    o = order(
        paid_line(1, 10_000),
        payments=(PaymentInput("alipay", 9_999), PaymentInput("points", 1, 3)),
    )
    validate_points_payment(o, point_value_minor=Decimal("0.5"), cap_percent=50)


def test_points_payment_above_the_cap_is_a_business_rule_violation() -> None:
    o = order(
        paid_line(1, 10_000),
        payments=(PaymentInput("alipay", 4_999), PaymentInput("points", 5_001, 5_001)),
    )
    with pytest.raises(PointsPaymentCapExceeded) as err:
        validate_points_payment(o, point_value_minor=Decimal(1), cap_percent=50)
    assert err.value.fields == {"cap": 5_000, "requested": 5_001, "field": "payments"}
    assert err.value.code == "points_payment_cap_exceeded"


def test_zero_cap_forbids_paying_with_points() -> None:
    o = order(
        paid_line(1, 100),
        payments=(PaymentInput("alipay", 99), PaymentInput("points", 1, 1)),
    )
    with pytest.raises(PointsPaymentCapExceeded):
        validate_points_payment(o, point_value_minor=Decimal(1), cap_percent=0)


def test_other_payment_methods_are_not_checked_against_the_point_value() -> None:
    o = order(paid_line(1, 100), payments=(PaymentInput("alipay", 100, 7),))
    validate_points_payment(o, point_value_minor=Decimal(1), cap_percent=0)


# ----- eligible amounts


def test_without_a_points_payment_every_paid_amount_is_eligible() -> None:
    assert eligible_amounts(order(paid_line(1, 300), paid_line(2, 700))) == [300, 700]


def test_points_payment_is_shared_pro_rata_across_lines() -> None:
    assert eligible_amounts(points_order(6_000, 4_000, points_amount=1_000)) == [5_400, 3_600]


def test_points_payment_shares_use_the_largest_remainder_and_add_up_exactly() -> None:
    # 100 shared over 1:1:1 is 33.3 each; the leftover point goes to the first line
    assert eligible_amounts(points_order(100, 100, 100, points_amount=100)) == [66, 67, 67]


def test_free_lines_bear_no_share_of_the_points_payment() -> None:
    assert eligible_amounts(points_order(0, 101, 0, 202, points_amount=100)) == [0, 68, 0, 135]


def test_an_order_paid_entirely_with_points_has_nothing_eligible() -> None:
    assert eligible_amounts(points_order(250, 750, points_amount=1_000)) == [0, 0]


@settings(max_examples=200, deadline=None, database=None)
@given(
    paid=st.lists(st.integers(min_value=0, max_value=1_000_000), min_size=1, max_size=8),
    fraction=st.fractions(min_value=0, max_value=1),
)
def test_eligible_amounts_exclude_exactly_the_points_payment_and_never_go_negative(
    paid: list[int], fraction: Fraction
) -> None:
    total = sum(paid)
    points_amount = int(total * fraction)
    eligible = eligible_amounts(points_order(*paid, points_amount=points_amount))
    assert sum(eligible) == total - points_amount
    assert all(0 <= e <= p for e, p in zip(eligible, paid, strict=True))


# ----- canonical form and fingerprints


def test_fingerprint_is_stable_for_the_same_payload() -> None:
    assert fingerprint(canonical_order(order())) == fingerprint(canonical_order(order()))


def test_fingerprint_ignores_the_offset_a_timestamp_is_written_in() -> None:
    same_instant = replace(order(), ordered_at=AT.astimezone(SHANGHAI))
    assert canonical_order(same_instant)["ordered_at"] == "2024-05-18T10:30:00+00:00"
    assert fingerprint(canonical_order(same_instant)) == fingerprint(canonical_order(order()))


def test_fingerprint_ignores_the_order_of_lines_and_identities() -> None:
    phone = IdentityInput("phone", "13800138000")
    openid = IdentityInput("wechat_openid", "o1", "app1")
    a = order(paid_line(1, 10), paid_line(2, 20), identities=(phone, openid))
    b = order(paid_line(2, 20), paid_line(1, 10), identities=(openid, phone))
    assert fingerprint(canonical_order(a)) == fingerprint(canonical_order(b))


def test_fingerprint_treats_an_empty_namespace_as_none() -> None:
    a = order(identities=(IdentityInput("phone", "1", ""),))
    b = order(identities=(IdentityInput("phone", "1", None),))
    assert fingerprint(canonical_order(a)) == fingerprint(canonical_order(b))


@pytest.mark.parametrize(
    "changed",
    [
        replace(order(), store="S2"),
        replace(order(), guide="G1"),
        replace(order(), brand="B1"),
        replace(order(), ordered_at=AT + timedelta(seconds=1)),
        order(LineInput(1, "SKU1", 2, 5_000, 9_001)),
        order(LineInput(1, "SKU1", 2, 5_000, 9_000, category="shoes")),
        order(payments=(PaymentInput("alipay", 9_000),)),
        order(identities=(IdentityInput("email", "a@b.cn"),)),
    ],
)
def test_fingerprint_changes_with_any_field(changed: OrderInput) -> None:
    assert fingerprint(canonical_order(changed)) != fingerprint(canonical_order(order()))


def test_canonical_order_is_plain_json_data() -> None:
    canonical = canonical_order(order(payments=(PaymentInput("alipay", 9_000),)))
    assert canonical["lines"] == [
        {
            "line_no": 1,
            "sku": "SKU1",
            "quantity": 2,
            "list_price": 5_000,
            "paid_amount": 9_000,
            "category": None,
        }
    ]
    assert canonical["payments"] == [{"method": "alipay", "amount": 9_000, "points": 0}]


def test_canonical_refund_sorts_lines_and_normalises_the_time() -> None:
    r = RefundInput(
        channel="tmall",
        external_id="R-1",
        order_external_id="T-1001",
        refunded_at=AT.astimezone(SHANGHAI),
        lines=(RefundLineInput(2, 1, 50), RefundLineInput(1, 0, 10)),
        reason="damaged",
    )
    canonical = canonical_refund(r)
    assert [x["line_no"] for x in canonical["lines"]] == [1, 2]
    assert canonical["refunded_at"] == "2024-05-18T10:30:00+00:00"
    assert canonical["reason"] == "damaged"
    assert r.amount == 60


# ----- differences


def test_equal_payloads_have_no_differences() -> None:
    c = canonical_order(order())
    assert differences(c, canonical_order(order())) == {}


def test_differences_name_the_nested_field_path_with_both_values() -> None:
    stored = canonical_order(order())
    received = canonical_order(order(LineInput(1, "SKU1", 3, 5_000, 9_000)))
    assert differences(stored, received) == {"lines[0].quantity": {"stored": 2, "received": 3}}


def test_differences_report_a_key_present_on_one_side_only() -> None:
    assert differences({"a": 1}, {"a": 1, "b": 2}) == {"b": {"stored": None, "received": 2}}


def test_lists_of_different_length_differ_as_a_whole() -> None:
    assert differences({"lines": [1]}, {"lines": [1, 2]}) == {
        "lines": {"stored": [1], "received": [1, 2]}
    }


def test_differing_scalars_at_the_top_are_named_payload() -> None:
    assert differences(1, 2) == {"payload": {"stored": 1, "received": 2}}


# ----- refunds

LINES = [
    LineState(line_no=1, quantity=2, paid_amount=9_000, refunded_quantity=0, refunded_amount=0),
    LineState(line_no=2, quantity=1, paid_amount=3_000, refunded_quantity=1, refunded_amount=2_000),
]


def refund(*lines: RefundLineInput, refunded_at: datetime = AT) -> RefundInput:
    return RefundInput(
        channel="tmall",
        external_id="R-1",
        order_external_id="T-1001",
        refunded_at=refunded_at,
        lines=lines,
    )


def refund_field(r: RefundInput) -> str:
    with pytest.raises(ValidationFailed) as err:
        validate_refund(r, LINES)
    return err.value.field


def test_refund_within_what_remains_passes_validation() -> None:
    validate_refund(refund(RefundLineInput(1, 2, 9_000), RefundLineInput(2, 0, 1_000)), LINES)


def test_amount_only_refund_without_returned_quantity_is_allowed() -> None:
    validate_refund(refund(RefundLineInput(1, 0, 500)), LINES)


def test_refund_time_needs_a_time_zone() -> None:
    naive = refund(RefundLineInput(1, 1, 10), refunded_at=datetime(2024, 5, 18))
    assert refund_field(naive) == "refunded_at"


def test_refund_needs_at_least_one_line() -> None:
    assert refund_field(refund()) == "lines"


def test_refund_of_a_line_the_order_does_not_have_is_rejected() -> None:
    assert refund_field(refund(RefundLineInput(9, 1, 10))) == "lines[0].line_no"


def test_refund_naming_a_line_twice_is_rejected() -> None:
    r = refund(RefundLineInput(1, 1, 10), RefundLineInput(1, 1, 10))
    assert refund_field(r) == "lines[1].line_no"


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (RefundLineInput(1, -1, 10), "lines[0].quantity"),
        (RefundLineInput(1, 1, -10), "lines[0].amount"),
        (RefundLineInput(1, 0, 0), "lines[0].amount"),
    ],
)
def test_refund_line_must_return_a_positive_quantity_or_amount(
    line: RefundLineInput, field: str
) -> None:
    assert refund_field(refund(line)) == field


def test_refund_of_more_units_than_remain_exceeds_the_order() -> None:
    with pytest.raises(RefundExceedsOrder) as err:
        validate_refund(refund(RefundLineInput(2, 1, 100)), LINES)
    assert err.value.fields["field"] == "lines[0].quantity"
    assert err.value.code == "refund_exceeds_order"


def test_refund_of_more_money_than_remains_exceeds_the_order() -> None:
    with pytest.raises(RefundExceedsOrder) as err:
        validate_refund(refund(RefundLineInput(2, 0, 1_001)), LINES)
    assert err.value.fields["field"] == "lines[0].amount"
    assert "1000 remain" in err.value.detail


def test_a_payment_other_than_points_cannot_carry_points() -> None:
    o = order(paid_line(1, 10_000), payments=(PaymentInput("Points", 10_000, 50),))
    with pytest.raises(ValidationFailed) as err:
        validate_order(o)
    assert err.value.field == "payments[0].method"


def test_an_order_placed_before_2000_or_after_2100_is_rejected() -> None:
    with pytest.raises(ValidationFailed) as err:
        validate_order(replace(order(), ordered_at=datetime(9999, 1, 1, tzinfo=UTC)))
    assert err.value.field == "ordered_at"


def test_a_replayed_refund_aimed_at_another_channels_order_has_another_fingerprint() -> None:
    base = RefundInput(
        "pos", "R1", "O1", datetime(2026, 1, 2, tzinfo=UTC), (RefundLineInput(1, 1, 100),)
    )
    other = replace(base, order_channel="tmall")
    assert fingerprint(canonical_refund(base)) != fingerprint(canonical_refund(other))
