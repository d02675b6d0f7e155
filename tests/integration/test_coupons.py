"""Coupons on SQLite and PostgreSQL: issuing, checkout, limits, refunds, merges."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from conftest import Shop, phone
from quanyu.adapters import tables as t
from quanyu.domain.assortment import RuleInput
from quanyu.domain.errors import (
    Conflict,
    CouponNotApplicable,
    CouponUnavailable,
    IdempotencyConflict,
    LimitReached,
    ValidationFailed,
)
from quanyu.services import assortment, coupons, members
from quanyu.services.uow import Platform


def template(platform: Platform, code: str = "OFF50", **kw: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "code": code,
        "name": code,
        "kind": "amount_off",
        "value": 5_000,
        "valid_days": 30,
    }
    values.update(kw)
    return coupons.create_template(platform, values, actor="test")


def give(platform: Platform, code: str, *member_ids: int, key: str | None = None) -> list[str]:
    coupons.issue_batch(
        platform,
        coupons.BatchRequest(
            template=code, request_key=key or f"{code}-{member_ids}", member_ids=member_ids
        ),
        actor="test",
    )
    return [
        c["code"]
        for m in dict.fromkeys(member_ids)
        for c in reversed(coupons.member_coupons(platform, m))
        if c["template"] == code
    ]


def checkout(
    member_id: int | None,
    *codes: str,
    order_id: str | None = "W1",
    amounts: tuple[int, ...] = (19_900,),
    channel: str = "pos",
    sku: str = "TEE-W-M",
) -> coupons.CheckoutRequest:
    return coupons.CheckoutRequest(
        channel=channel,
        store="SH01",
        member=coupons.MemberRef(member_id=member_id),
        lines=tuple(coupons.LineIn(n + 1, sku, 1, a) for n, a in enumerate(amounts)),
        codes=codes,
        order_id=order_id,
    )


@pytest.fixture
def member(shop: Shop) -> int:
    return shop.register(("phone", phone(1)))


def test_issued_coupon_appears_in_the_members_wallet_and_history(shop: Shop, member: int) -> None:
    p = shop.platform
    template(p)
    (code,) = give(p, "OFF50", member)
    wallet = coupons.member_coupons(p, member)
    assert wallet[0]["status"] == "available"
    assert wallet[0]["valid_until"] == shop.clock.now() + timedelta(days=30)
    kinds = [h["kind"] for h in members.member_history(p, member)]
    assert "coupon_issued" in kinds
    assert len(code) == 16


def test_batch_issue_is_idempotent_on_its_request_key(shop: Shop, member: int) -> None:
    p = shop.platform
    template(p)
    req = coupons.BatchRequest(template="OFF50", request_key="b1", member_ids=(member,))
    first = coupons.issue_batch(p, req, actor="test")
    again = coupons.issue_batch(p, req, actor="test")
    assert again == {**first, "replayed": True}
    assert len(coupons.member_coupons(p, member)) == 1
    with pytest.raises(IdempotencyConflict):
        coupons.issue_batch(
            p, coupons.BatchRequest(template="OFF50", request_key="b1", codes=5), actor="test"
        )


def test_batch_to_an_unknown_member_issues_nothing_and_names_the_entry(
    shop: Shop, member: int
) -> None:
    p = shop.platform
    template(p)
    with pytest.raises(ValidationFailed) as caught:
        coupons.issue_batch(
            p,
            coupons.BatchRequest(template="OFF50", request_key="b", member_ids=(member, 999_999)),
            actor="test",
        )
    assert caught.value.field == "members[1]"
    assert coupons.member_coupons(p, member) == []


def test_issue_budget_stops_a_batch_whole(shop: Shop, member: int) -> None:
    p = shop.platform
    other = shop.register(("phone", phone(2)))
    template(p, max_issued=1)
    with pytest.raises(LimitReached) as caught:
        give(p, "OFF50", member, other)
    assert caught.value.limit == "issue_budget"
    assert coupons.get_template(p, "OFF50")["issued_count"] == 0


def test_validate_answers_the_discount_per_line_and_changes_nothing(
    shop: Shop, member: int
) -> None:
    p = shop.platform
    template(p, value=1_000)
    (code,) = give(p, "OFF50", member)
    answer = coupons.validate(p, checkout(member, code, amounts=(30_000, 10_000)))
    assert answer["applicable"] is True
    assert [line["discount"] for line in answer["lines"]] == [750, 250]
    assert coupons.member_coupons(p, member)[0]["status"] == "available"


def test_scanning_the_member_lists_their_coupons_best_first(shop: Shop, member: int) -> None:
    p = shop.platform
    template(p, "SMALL", value=1_000)
    template(p, "BIG", value=3_000)
    template(p, "FAR", kind="threshold", value=5_000, min_spend=100_000)
    for name in ("SMALL", "BIG", "FAR"):
        give(p, name, member)
    req = checkout(None)
    req = coupons.CheckoutRequest(
        channel="pos",
        store="SH01",
        member=coupons.MemberRef(identity_type="phone", identity_value=phone(1)),
        lines=req.lines,
    )
    options = coupons.validate(p, req)["options"]
    assert [(o["template"], o["discount"], o["applicable"]) for o in options] == [
        ("BIG", 3_000, True),
        ("SMALL", 1_000, True),
        ("FAR", 0, False),
    ]
    assert options[2]["reasons"][0]["code"] == "below_min_spend"


def test_reserve_holds_the_coupon_against_a_second_checkout(shop: Shop, member: int) -> None:
    p = shop.platform
    template(p)
    (code,) = give(p, "OFF50", member)
    held = coupons.reserve(p, checkout(member, code, order_id="W1"), actor="test")
    assert held["status"] == "reserved" and held["discount"] == 5_000
    with pytest.raises(CouponUnavailable):
        coupons.reserve(p, checkout(member, code, order_id="W2"), actor="test")


def test_reserve_again_for_the_same_order_returns_the_first_answer(shop: Shop, member: int) -> None:
    p = shop.platform
    template(p)
    (code,) = give(p, "OFF50", member)
    first = coupons.reserve(p, checkout(member, code), actor="test")
    assert coupons.reserve(p, checkout(member, code), actor="test") == {**first, "replayed": True}
    with pytest.raises(IdempotencyConflict):
        coupons.reserve(p, checkout(member, code, amounts=(59_900,)), actor="test")


def test_a_second_payment_step_confirms_once(shop: Shop, member: int) -> None:
    p = shop.platform
    template(p)
    (code,) = give(p, "OFF50", member)
    coupons.reserve(p, checkout(member, code), actor="test")
    first = coupons.confirm(p, "pos", "W1", actor="test")
    second = coupons.confirm(p, "pos", "W1", actor="test")
    assert first["status"] == "confirmed" and not first["replayed"]
    assert second == {**first, "replayed": True}
    events = coupons.coupon_detail(p, code)["events"]
    assert [e["kind"] for e in events] == ["issued", "reserved", "redeemed"]


def test_release_on_cancel_gives_the_coupon_back(shop: Shop, member: int) -> None:
    p = shop.platform
    template(p, total_limit=1)
    (code,) = give(p, "OFF50", member)
    coupons.reserve(p, checkout(member, code), actor="test")
    coupons.release(p, "pos", "W1", reason="customer cancelled", actor="test")
    assert coupons.member_coupons(p, member)[0]["status"] == "available"
    assert coupons.get_template(p, "OFF50")["redeemed_count"] == 0
    again = coupons.reserve(p, checkout(member, code, order_id="W2"), actor="test")
    assert again["status"] == "reserved"


def test_confirm_after_release_is_refused(shop: Shop, member: int) -> None:
    p = shop.platform
    template(p)
    (code,) = give(p, "OFF50", member)
    coupons.reserve(p, checkout(member, code), actor="test")
    coupons.release(p, "pos", "W1", reason="cancel", actor="test")
    with pytest.raises(CouponUnavailable):
        coupons.confirm(p, "pos", "W1", actor="test")


def test_release_of_a_redeemed_order_is_refused(shop: Shop, member: int) -> None:
    p = shop.platform
    template(p)
    (code,) = give(p, "OFF50", member)
    coupons.reserve(p, checkout(member, code), actor="test", confirm=True)
    with pytest.raises(Conflict):
        coupons.release(p, "pos", "W1", reason="cancel", actor="test")


def test_a_lapsed_hold_is_released_by_the_job_and_by_the_next_checkout(
    shop: Shop, member: int
) -> None:
    p = shop.platform
    template(p)
    a, b = give(p, "OFF50", member, member)
    coupons.reserve(p, checkout(member, a, order_id="W1"), actor="test")
    coupons.reserve(p, checkout(member, b, order_id="W2"), actor="test")
    shop.later(minutes=31)
    taken = coupons.reserve(p, checkout(member, a, order_id="W3"), actor="test")
    assert taken["status"] == "reserved"
    assert coupons.release_lapsed(p) == 1
    assert coupons.order_redemptions(p, "pos", "W2")["status"] == "released"


def test_a_full_refund_returns_the_coupon_and_a_partial_one_does_not(
    shop: Shop, member: int
) -> None:
    p = shop.platform
    template(p, value=1_000, max_discount_total=100_000)
    a, b = give(p, "OFF50", member, member)
    coupons.reserve(p, checkout(member, a, order_id="O1"), actor="test", confirm=True)
    coupons.reserve(p, checkout(member, b, order_id="O2"), actor="test", confirm=True)
    shop.order("O1", ("phone", phone(1)), paid=18_900)
    shop.order("O2", ("phone", phone(1)), paid=18_900)
    full = shop.refund("R1", "O1", amount=18_900, quantity=1)
    part = shop.refund("R2", "O2", amount=5_000)
    assert full["coupons_returned"] == [a]
    assert part["coupons_returned"] == []
    status = {c["code"]: c["status"] for c in coupons.member_coupons(p, member)}
    assert status == {a: "available", b: "redeemed"}
    assert coupons.get_template(p, "OFF50")["discount_total"] == 1_000


def test_a_coupon_returned_after_its_validity_comes_back_expired(shop: Shop, member: int) -> None:
    p = shop.platform
    template(p, value=1_000, valid_days=2)
    (code,) = give(p, "OFF50", member)
    coupons.reserve(p, checkout(member, code, order_id="O1"), actor="test", confirm=True)
    shop.order("O1", ("phone", phone(1)), paid=18_900)
    shop.later(days=3)
    shop.refund("R1", "O1", amount=18_900, quantity=1)
    assert coupons.member_coupons(p, member)[0]["status"] == "expired"


def test_per_member_limit_counts_held_and_used_coupons(shop: Shop, member: int) -> None:
    p = shop.platform
    template(p, per_member_limit=1)
    a, b = give(p, "OFF50", member, member)
    coupons.reserve(p, checkout(member, a, order_id="W1"), actor="test")
    with pytest.raises(LimitReached) as caught:
        coupons.reserve(p, checkout(member, b, order_id="W2"), actor="test")
    assert caught.value.limit == "per_member"
    assert coupons.validate(p, checkout(member, b))["applicable"] is False


def test_discount_budget_stops_redemption_once_spent(shop: Shop, member: int) -> None:
    p = shop.platform
    template(p, max_discount_total=7_000)
    a, b = give(p, "OFF50", member, member)
    coupons.reserve(p, checkout(member, a, order_id="W1"), actor="test", confirm=True)
    with pytest.raises(LimitReached) as caught:
        coupons.reserve(p, checkout(member, b, order_id="W2"), actor="test")
    assert caught.value.limit == "discount_budget"


def test_a_coupon_that_does_not_apply_reserves_nothing(shop: Shop, member: int) -> None:
    p = shop.platform
    template(p, kind="threshold", value=5_000, min_spend=30_000)
    template(p, "OTHER", value=100, stack_group="store")
    (code,) = give(p, "OFF50", member)
    with pytest.raises(CouponNotApplicable) as caught:
        coupons.reserve(p, checkout(member, code), actor="test")
    assert caught.value.reasons[0]["code"] == "below_min_spend"
    assert coupons.member_coupons(p, member)[0]["status"] == "available"
    with p.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.coupon_redemptions)).scalar() == 0


def test_printed_codes_export_and_bind_to_the_member_who_uses_one(shop: Shop, member: int) -> None:
    p = shop.platform
    template(p, value=1_000)
    batch = coupons.issue_batch(
        p, coupons.BatchRequest(template="OFF50", request_key="print", codes=3), actor="test"
    )
    rows = list(csv.DictReader(io.StringIO(coupons.export_codes(p, batch["batch_id"]))))
    assert len(rows) == 3 and all(r["member_id"] == "" for r in rows)
    typed = rows[0]["code"].lower()
    coupons.reserve(p, checkout(member, typed), actor="test", confirm=True)
    assert [c["code"] for c in coupons.member_coupons(p, member)] == [rows[0]["code"]]


def test_an_unclaimed_code_redeems_without_a_member(shop: Shop) -> None:
    p = shop.platform
    template(p, value=1_000)
    batch = coupons.issue_batch(
        p, coupons.BatchRequest(template="OFF50", request_key="print", codes=1), actor="test"
    )
    (row,) = csv.DictReader(io.StringIO(coupons.export_codes(p, batch["batch_id"])))
    done = coupons.reserve(p, checkout(None, row["code"]), actor="test", confirm=True)
    assert done["status"] == "confirmed" and done["member_id"] is None


def test_voided_coupon_cannot_be_used(shop: Shop, member: int) -> None:
    p = shop.platform
    template(p)
    (code,) = give(p, "OFF50", member)
    coupons.void(p, code, reason="issued by mistake", actor="test")
    with pytest.raises(CouponNotApplicable):
        coupons.reserve(p, checkout(member, code), actor="test")


def test_paused_template_neither_issues_nor_redeems(shop: Shop, member: int) -> None:
    p = shop.platform
    template(p)
    (code,) = give(p, "OFF50", member)
    coupons.set_template_status(p, "OFF50", active=False)
    with pytest.raises(ValidationFailed):
        give(p, "OFF50", member, key="again")
    assert coupons.validate(p, checkout(member, code))["reasons"][0]["code"] == "template_paused"


def test_coupons_follow_a_merge_to_the_survivor(shop: Shop, member: int) -> None:
    p = shop.platform
    other = shop.register(("email", "a@example.com"))
    template(p)
    (code,) = give(p, "OFF50", other)
    shop.order("M1", ("phone", phone(1)), ("email", "a@example.com"))
    survivor = members.lookup(p, "email", "a@example.com")
    assert code in [c["code"] for c in coupons.member_coupons(p, survivor)]
    assert coupons.validate(p, checkout(survivor, code))["applicable"] is True


def test_template_code_is_unique(shop: Shop) -> None:
    template(shop.platform)
    with pytest.raises(Conflict):
        template(shop.platform)


def test_a_line_the_channel_forbids_gets_no_discount(shop: Shop, member: int) -> None:
    p = shop.platform
    assortment.set_rules(p, [RuleInput("pos", "forbidden", sku="JEANS-B-32")], actor="test")
    template(p, value=1_000)
    (code,) = give(p, "OFF50", member)
    req = checkout(member, code, amounts=(19_900,))
    jeans = coupons.LineIn(2, "JEANS-B-32", 1, 59_900)
    req = coupons.CheckoutRequest(
        channel="pos", store="SH01", member=req.member, lines=(*req.lines, jeans), codes=(code,)
    )
    answer = coupons.validate(p, req)
    assert [line["discount"] for line in answer["lines"]] == [1_000, 0]
