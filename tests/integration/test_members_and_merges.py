"""Registration, identity resolution (OneID) and merges, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from conftest import T0, Brand, Shop, phone
from quanyu.adapters import tables as t
from quanyu.domain.errors import AlreadyExists, NotFound
from quanyu.domain.orders import IdentityInput
from quanyu.services import members, points, setup, tiers
from quanyu.services.uow import Platform

# ---------------------------------------------------------------- registration


def test_registration_creates_a_member_on_the_entry_tier_with_a_member_card(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(("phone", phone(1)), name="Li Lei")

    summary = members.summary(platform, member_id)
    assert summary["is_member"] is True
    assert summary["name"] == "Li Lei"
    assert summary["home_store"] == "SH01"
    [membership] = summary["memberships"]
    assert membership["program"] == "club"
    assert membership["tier"] == "silver"
    assert membership["channel"] == "pos"
    keys = {(i["type"], i["value"]) for i in summary["identities"]}
    assert keys == {("phone", "+8613800130001"), ("member_card", membership["member_no"])}
    assert [h["kind"] for h in members.member_history(platform, member_id)] == [
        "registered",
        "profile_created",
    ]


def test_registering_the_same_person_again_returns_the_existing_membership(
    shop: Shop, platform: Platform
) -> None:
    first = members.register(
        platform,
        members.Registration(identities=(IdentityInput("phone", phone(1)),), program="club"),
        actor="test",
    )
    again = members.register(
        platform,
        members.Registration(
            identities=(IdentityInput("phone", "+86 138-0013-0001"),), program="club"
        ),
        actor="test",
    )

    assert first["created"] is True
    assert again == {**first, "created": False}
    with platform.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.memberships)).scalar() == 1


@pytest.mark.parametrize(
    "written", ["13800130001", "+86 138 0013 0001", "138-0013-0001", "008613800130001"]
)
def test_lookup_finds_a_member_by_phone_written_in_any_format(
    shop: Shop, platform: Platform, written: str
) -> None:
    member_id = shop.register(("phone", "+86 138 0013 0001"))

    assert members.lookup(platform, "phone", written) == member_id


def test_lookup_of_an_unknown_identity_is_not_found(shop: Shop, platform: Platform) -> None:
    with pytest.raises(NotFound):
        members.lookup(platform, "email", "nobody@example.com")


def test_a_customer_seen_in_a_channel_becomes_a_member_on_registration(
    shop: Shop, platform: Platform
) -> None:
    seen = shop.order(
        "T1", ("platform_buyer", "buyer-9", "tmall"), ("phone", phone(1)), channel="tmall"
    )
    assert seen["member_no"] is None
    assert seen["points_earned"] == 0

    member_id = shop.register(("phone", phone(1)))

    assert member_id == seen["member_id"]
    summary = members.summary(platform, member_id)
    assert summary["orders"]["count"] == 1
    assert summary["is_member"] is True


# ---------------------------------------------------------------- merges


def _two_members_with_points(shop: Shop) -> tuple[int, int]:
    """A (phone, registered first) with 180 points; B (e-mail) with 250 earned, 50 redeemed."""
    a = shop.register(("phone", phone(1)), at=T0)
    b = shop.register(("email", "Mei@Example.com"), at=T0 + timedelta(hours=1))
    shop.order("A1", ("phone", phone(1)), paid=18_000, at=T0)
    shop.order("B1", ("email", "mei@example.com"), paid=25_000, at=T0 + timedelta(hours=1))
    shop.later(days=8)
    points.spend(shop.platform, b, points=50, reason="gift", actor="test")
    return a, b


def test_merge_keeps_every_point_of_both_profiles(shop: Shop, platform: Platform) -> None:
    a, b = _two_members_with_points(shop)

    merged = shop.order("M1", ("phone", phone(1)), ("email", "MEI@example.com"), paid=10_000)

    assert merged["member_id"] == a
    assert merged["points_earned"] == 100
    balance = shop.balance(a)
    assert balance["available"] == 180 + 200
    assert balance["pending"] == 100
    assert balance["total"] == 180 + 200 + 100
    assert points.balance(platform, b) == balance  # the absorbed id resolves to the survivor
    assert points.check_ledger(platform) == []


def test_merge_moves_identities_orders_and_lots_to_the_survivor(
    shop: Shop, platform: Platform
) -> None:
    a, b = _two_members_with_points(shop)

    shop.order("M1", ("phone", phone(1)), ("email", "mei@example.com"))

    assert members.lookup(platform, "email", "mei@example.com") == a
    summary = members.summary(platform, b)
    assert summary["id"] == a
    assert summary["merged_profiles"] == [b]
    assert summary["orders"]["count"] == 3
    assert len([m for m in summary["identities"] if m["type"] == "member_card"]) == 2
    with platform.engine.connect() as conn:
        for table in (t.identities, t.orders, t.points_lots):
            owners = conn.execute(select(table.c.profile_id).distinct()).scalars().all()
            assert owners == [a], table.name
        absorbed = conn.execute(select(t.profiles).where(t.profiles.c.id == b)).one()
    assert (absorbed.status, absorbed.merged_into_id) == ("merged", a)
    assert points.check_ledger(platform) == []


def test_merge_record_keeps_the_before_state_of_both_profiles(
    shop: Shop, platform: Platform
) -> None:
    a, b = _two_members_with_points(shop)

    shop.order("M1", ("phone", phone(1)), ("email", "mei@example.com"))

    [merge] = members.merges_of(platform, b)
    assert (merge["survivor_id"], merge["absorbed_id"]) == (a, b)
    assert merge["trigger"] == "order pos/M1"
    before = members.merge_detail(platform, merge["id"])["before_state"]
    assert {p["id"] for p in before["profiles"]} == {a, b}
    assert all(p["status"] == "active" for p in before["profiles"])
    owner_of = {(i["type"], i["value"]): i["profile_id"] for i in before["identities"]}
    assert owner_of[("email", "mei@example.com")] == b
    assert owner_of[("phone", "+8613800130001")] == a
    assert set(before["order_owners"].values()) == {a, b}
    b_lots = [lot for lot in before["lots"] if lot["profile_id"] == b]
    assert [lot["remaining"] for lot in b_lots] == [200]
    assert points.check_ledger(platform) == []


def test_member_history_shows_the_merge_and_the_absorbed_profiles_past(
    shop: Shop, platform: Platform
) -> None:
    a, b = _two_members_with_points(shop)

    shop.order("M1", ("phone", phone(1)), ("email", "mei@example.com"))

    history = members.member_history(platform, a)
    kinds = [h["kind"] for h in history]
    assert kinds.count("merged") == 1
    assert kinds.count("registered") == 2  # B's registration moved over with B
    merged = next(h for h in history if h["kind"] == "merged")
    assert merged["data"]["survivor"] == a
    assert merged["data"]["absorbed"] == b


def test_merge_carries_the_absorbed_profiles_debt(
    shop: Shop, platform: Platform, brand: Brand
) -> None:
    setup.update_program(platform, brand.program, {"clawback_policy": "debt"})
    a, b = _two_members_with_points(shop)  # B: 250 earned, 50 redeemed
    shop.refund("R1", "B1", amount=25_000)  # claws back 250: 200 from B1's lot, 50 owed
    assert shop.balance(b)["debt"] == 50

    shop.order("M1", ("phone", phone(1)), ("email", "mei@example.com"), paid=1_000)

    balance = shop.balance(a)
    # The merge order's 10 points settle 10 of the 50 owed.
    assert balance["debt"] == 40
    assert balance["total"] == 180 - 40
    assert balance["available"] == 180
    assert points.check_ledger(platform) == []


def test_registration_naming_identities_of_two_profiles_merges_them(
    shop: Shop, platform: Platform
) -> None:
    a, _ = _two_members_with_points(shop)

    result = members.register(
        platform,
        members.Registration(
            identities=(
                IdentityInput("phone", phone(1)),
                IdentityInput("email", "mei@example.com"),
            ),
            program="club",
        ),
        actor="test",
    )

    assert result["member_id"] == a
    assert result["created"] is False
    assert shop.balance(a)["total"] == 180 + 200
    assert members.merges_of(platform, a)[0]["trigger"] == "registration"
    assert points.check_ledger(platform) == []


def test_merge_keeps_the_higher_tier_of_the_two(shop: Shop, platform: Platform) -> None:
    a = shop.register(("phone", phone(1)), at=T0)
    b = shop.register(("email", "mei@example.com"), at=T0 + timedelta(hours=1))
    assert shop.order("B1", ("email", "mei@example.com"), paid=300_000)["tier"] == "gold"
    shop.refund("R1", "B1", amount=250_000)  # B still gold, but qualifies for less
    assert tiers.current(platform, b)["qualifying_value"] == 50_000

    shop.order("M1", ("phone", phone(1)), ("email", "mei@example.com"), paid=1_000)

    current = tiers.current(platform, a)
    assert current["tier"] == "gold"
    assert current["qualifying_value"] == 51_000  # below gold: only the merge rule keeps it
    assert [(c["from_tier"], c["to_tier"], c["reason"]) for c in tiers.history(platform, a)] == [
        ("silver", "gold", "merge")
    ]
    assert points.check_ledger(platform) == []


def test_merge_re_evaluates_the_tier_on_the_combined_spend(shop: Shop, platform: Platform) -> None:
    a = shop.register(("phone", phone(1)), at=T0)
    shop.register(("email", "mei@example.com"), at=T0 + timedelta(hours=1))
    shop.order("A1", ("phone", phone(1)), paid=200_000)
    shop.order("B1", ("email", "mei@example.com"), paid=200_000)

    members.register(
        platform,
        members.Registration(
            identities=(
                IdentityInput("phone", phone(1)),
                IdentityInput("email", "mei@example.com"),
            ),
            program="club",
        ),
        actor="test",
    )

    current = tiers.current(platform, a)
    assert (current["tier"], current["qualifying_value"]) == ("gold", 400_000)
    assert tiers.history(platform, a)[0]["reason"] == "merge"


def test_orders_placed_before_joining_count_for_the_tier_after_a_merge(
    shop: Shop, platform: Platform
) -> None:
    customer = shop.order(
        "T1", ("platform_buyer", "buyer-9", "tmall"), channel="tmall", paid=500_000, store=None
    )
    a = shop.register(("phone", phone(1)))

    linked = shop.order(
        "T2",
        ("platform_buyer", "buyer-9", "tmall"),
        ("phone", phone(1)),
        channel="tmall",
        paid=10_000,
        store=None,
    )

    assert linked["member_id"] == a
    assert customer["member_id"] != a  # the member survives, the customer is absorbed
    assert linked["tier"] == "gold"
    # The merge comes first, so this order already earns at gold (×2); what was bought
    # before joining earns nothing after the fact.
    assert linked["points_earned"] == 200
    assert shop.total(a) == 200
    assert points.check_ledger(platform) == []


def test_lookup_by_member_card_ignores_case(shop: Shop, platform: Platform) -> None:
    member_id = shop.register(("phone", phone(1)))
    member_no = members.summary(platform, member_id)["memberships"][0]["member_no"]

    assert members.lookup(platform, "member_card", member_no.lower()) == member_id


def test_registering_with_a_member_number_already_taken_is_rejected(
    shop: Shop, platform: Platform
) -> None:
    owner = members.register(
        platform,
        members.Registration(
            identities=(IdentityInput("phone", phone(1)),), program="club", member_no="VIP001"
        ),
        actor="test",
    )
    assert owner["member_no"] == "VIP001"

    try:
        members.register(
            platform,
            members.Registration(
                identities=(IdentityInput("phone", phone(2)),), program="club", member_no="vip001"
            ),
            actor="test",
        )
    except AlreadyExists as exc:
        assert exc.fields["field"] == "member_no"
    else:
        pytest.fail("a taken member number was accepted")
    finally:
        # Whatever happened, the second phone must not have joined the owner's account.
        phones = {
            i["value"]
            for i in members.member_identities(platform, owner["member_id"])
            if i["type"] == "phone"
        }
        assert phones == {"+8613800130001"}
