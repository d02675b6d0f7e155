"""Staff search members by phone, member number, any identity or the start of a name,
within their scope, with phone numbers masked."""

from __future__ import annotations

from typing import Any

from conftest import Brand, Shop, phone
from quanyu.domain.access import SYSTEM, Principal, Role
from quanyu.services import access, member_view, members
from quanyu.services.uow import Platform


def _ops(platform: Platform, role: Role = Role.HQ_OPERATOR, **scope: Any) -> Principal:
    access.create_staff(
        platform, username="staff1", password="a long password", role=role, actor="t", **scope
    )
    token, _ = access.login(platform, username="staff1", password="a long password", address="t")
    return access.session(platform, token)[0]


def test_search_finds_by_phone_in_any_format_member_number_and_name_prefix(
    platform: Platform, shop: Shop, brand: Brand
) -> None:
    li = shop.register(("phone", phone(1)), name="Li Na")
    shop.register(("phone", phone(2)), name="Lin Feng")
    shop.register(("phone", phone(3)), name="Wang Li")
    who = _ops(platform)
    found = member_view.search(platform, who, "138 0013 0001")
    assert [r["id"] for r in found] == [li]
    assert found[0]["phone"] == "138****0001"
    number = members.summary(platform, li)["memberships"][0]["member_no"]
    assert [r["id"] for r in member_view.search(platform, SYSTEM, number)] == [li]
    names = [r["name"] for r in member_view.search(platform, SYSTEM, "Li")]
    assert names == ["Lin Feng", "Li Na"]  # newest first; "Wang Li" does not start with it
    assert member_view.search(platform, SYSTEM, "Li%") == []  # no wildcards


def test_search_keeps_to_the_store_managers_stores(
    platform: Platform, shop: Shop, brand: Brand
) -> None:
    shop.register(("phone", phone(1)), name="Li Na")
    shop.register(("phone", phone(2)), name="Li Lei", store=brand.other_store)
    who = _ops(platform, Role.STORE_MANAGER, stores=[brand.store])
    assert [r["name"] for r in member_view.search(platform, who, "Li")] == ["Li Na"]
    assert member_view.search(platform, who, phone(2)) == []
