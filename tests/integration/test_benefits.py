"""Benefits: welcome, birthday and member-day gifts once per period, and entitlements."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from conftest import Shop, local, phone
from quanyu.domain.errors import ValidationFailed
from quanyu.domain.orders import IdentityInput
from quanyu.services import benefits, coupons, members, points
from quanyu.services.uow import Platform


def gift_template(platform: Platform, code: str = "GIFT") -> None:
    coupons.create_template(
        platform,
        {"code": code, "name": code, "kind": "amount_off", "value": 2_000, "valid_days": 30},
        actor="test",
    )


def benefit(platform: Platform, code: str, kind: str, **kw: Any) -> dict[str, Any]:
    return benefits.create_benefit(platform, {"code": code, "name": code, "kind": kind, **kw})


def register(shop: Shop, n: int, birthday: date | None = None) -> dict[str, Any]:
    return members.register(
        shop.platform,
        members.Registration(
            identities=(IdentityInput("phone", phone(n)),),
            program="club",
            store="SH01",
            birthday=birthday,
        ),
        actor="test",
    )


def templates_held(platform: Platform, member_id: int) -> list[str]:
    return [c["template"] for c in coupons.member_coupons(platform, member_id)]


def test_a_new_member_gets_the_welcome_gift_once(shop: Shop) -> None:
    p = shop.platform
    gift_template(p)
    benefit(p, "WELCOME", "welcome", coupon_template="GIFT", points=100)
    joined = register(shop, 1)
    assert joined["welcome_gifts"] == ["WELCOME"]
    again = register(shop, 1)
    assert "welcome_gifts" not in again
    member = joined["member_id"]
    assert templates_held(p, member) == ["GIFT"]
    assert shop.available(member) == 100
    assert points.check_ledger(p) == []


def test_birthday_gift_is_granted_in_the_birthday_month_once_a_year(shop: Shop) -> None:
    p = shop.platform
    gift_template(p)
    benefit(p, "BDAY", "birthday", coupon_template="GIFT")
    march = register(shop, 1, birthday=date(1990, 3, 20))["member_id"]
    april = register(shop, 2, birthday=date(1990, 4, 2))["member_id"]
    assert benefits.grant_due(p) == 1
    assert benefits.grant_due(p) == 0
    assert templates_held(p, march) == ["GIFT"] and templates_held(p, april) == []
    shop.at(local(2026, 4, 1))
    assert benefits.grant_due(p) == 1
    shop.at(local(2027, 3, 1))
    assert benefits.grant_due(p) == 1
    assert templates_held(p, march) == ["GIFT", "GIFT"]


def test_member_day_gift_goes_only_to_the_benefits_tiers_on_member_days(shop: Shop) -> None:
    p = shop.platform
    gift_template(p)
    benefit(
        p, "DAY8", "member_day", coupon_template="GIFT", tier_codes=["gold"], settings={"days": [8]}
    )
    silver = register(shop, 1)["member_id"]
    gold = register(shop, 2)["member_id"]
    shop.order("G1", ("phone", phone(2)), paid=300_000)
    assert benefits.grant_due(p) == 0  # the 2nd is no member day
    shop.at(local(2026, 3, 8))
    assert benefits.grant_due(p) == 1
    assert templates_held(p, gold) == ["GIFT"] and templates_held(p, silver) == []
    assert benefits.entitlements(p, gold)["programs"][0]["member_day_today"] is True


def test_a_merge_does_not_earn_a_second_birthday_gift(shop: Shop) -> None:
    p = shop.platform
    gift_template(p)
    benefit(p, "BDAY", "birthday", points=500)
    register(shop, 1, birthday=date(1990, 3, 20))
    other = members.register(
        p,
        members.Registration(
            identities=(IdentityInput("email", "li@example.com"),),
            program="club",
            birthday=date(1990, 3, 20),
        ),
        actor="test",
    )["member_id"]
    assert benefits.grant_due(p) == 2
    shop.order("M1", ("phone", phone(1)), ("email", "li@example.com"))
    assert benefits.grant_due(p) == 0
    survivor = members.lookup(p, "email", "li@example.com")
    assert len(benefits.entitlements(p, survivor)["grants"]) == 2
    assert members.lookup(p, "phone", phone(1)) == survivor
    assert shop.total(survivor) == 2 * 500 + 100  # both gifts are kept, plus the order
    assert other > 0


def test_free_shipping_and_priority_purchase_are_entitlements_of_a_tier(shop: Shop) -> None:
    p = shop.platform
    benefit(p, "SHIP", "free_shipping", tier_codes=["gold", "platinum"])
    benefit(
        p,
        "EARLY",
        "priority_purchase",
        tier_codes=["gold"],
        settings={
            "skus": ["JEANS-B-32"],
            "opens_at": "2026-03-01T10:00:00+08:00",
            "public_at": "2026-03-05T10:00:00+08:00",
        },
    )
    silver = register(shop, 1)["member_id"]
    gold = register(shop, 2)["member_id"]
    shop.order("G1", ("phone", phone(2)), paid=300_000)
    mine = benefits.entitlements(p, gold, sku="JEANS-B-32")["programs"][0]
    theirs = benefits.entitlements(p, silver, sku="JEANS-B-32")["programs"][0]
    assert mine["free_shipping"] is True and theirs["free_shipping"] is False
    assert mine["priority_purchase"][0]["may_buy"] is True
    assert theirs["priority_purchase"][0]["may_buy"] is False


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"kind": "welcome"}, "coupon_template"),
        ({"kind": "member_day", "points": 10, "settings": {"days": [32]}}, "settings.days"),
        ({"kind": "welcome", "points": 10, "tier_codes": ["diamond"]}, "tier_codes[0]"),
        ({"kind": "free_shipping", "points": 10}, "coupon_template"),
        ({"kind": "welcome", "coupon_template": "NOPE"}, "coupon_template"),
    ],
)
def test_bad_benefit_names_the_field(shop: Shop, values: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        benefit(shop.platform, "B", **values)
    assert caught.value.field == field
