"""Tiers in the store: immediate upgrade, the review job with its grace, and projection."""

from __future__ import annotations

from datetime import date

from conftest import T0, Brand, Shop, local, phone
from quanyu.domain.orders import IdentityInput
from quanyu.services import members, points, setup, tiers
from quanyu.services.uow import Platform

PHONE = ("phone", phone(1))


def test_crossing_a_threshold_upgrades_at_once(
    shop: Shop, brand: Brand, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    assert shop.order("A1", PHONE, paid=brand.gold_threshold - 1)["tier"] == "silver"

    result = shop.order("A2", PHONE, paid=1, at=local(2026, 3, 5))

    assert result["tier"] == "gold"
    current = tiers.current(platform, member_id)
    assert (current["tier"], current["achieved_at"]) == ("gold", local(2026, 3, 5))
    assert current["review_on"] == date(2027, 3, 5)
    [change] = tiers.history(platform, member_id)
    assert (change["from_tier"], change["to_tier"], change["reason"]) == (
        "silver",
        "gold",
        "order pos/A2",
    )
    assert change["qualifying_value"] == brand.gold_threshold
    assert "tier_changed" in [h["kind"] for h in members.member_history(platform, member_id)]


def test_the_upgrading_order_earns_at_the_tier_held_before_it(shop: Shop, brand: Brand) -> None:
    shop.register(PHONE)

    result = shop.order("A1", PHONE, paid=brand.gold_threshold)

    assert (result["tier"], result["points_earned"]) == ("gold", 3_000)


def test_a_large_order_can_skip_a_tier(shop: Shop, brand: Brand, platform: Platform) -> None:
    member_id = shop.register(PHONE)

    assert shop.order("A1", PHONE, paid=brand.platinum_threshold)["tier"] == "platinum"
    assert [c["to_tier"] for c in tiers.history(platform, member_id)] == ["platinum"]


def test_spend_older_than_the_window_does_not_count(
    shop: Shop, brand: Brand, platform: Platform
) -> None:
    member_id = shop.register(PHONE, at=local(2024, 1, 1))
    shop.order("OLD", PHONE, paid=brand.gold_threshold - 1, at=local(2025, 3, 1))

    result = shop.order("NEW", PHONE, paid=10, at=local(2026, 3, 2))

    assert result["tier"] == "silver"
    assert tiers.current(platform, member_id)["qualifying_value"] == 10


# ---------------------------------------------------------------- the review job


def _gold_since_t0(shop: Shop, brand: Brand) -> int:
    member_id = shop.register(PHONE, at=T0)
    assert shop.order("A1", PHONE, paid=brand.gold_threshold, at=T0)["tier"] == "gold"
    return member_id


def test_the_review_job_downgrades_only_after_the_grace_period(
    shop: Shop, brand: Brand, platform: Platform
) -> None:
    member_id = _gold_since_t0(shop, brand)  # reviewed on 2 March 2027, 30 days of grace

    shop.at(local(2027, 3, 31))
    assert tiers.review_due_tiers(platform)["reviewed"] == 0
    assert tiers.current(platform, member_id)["tier"] == "gold"

    shop.at(local(2027, 4, 1))
    counts = tiers.review_due_tiers(platform)

    assert counts == {"reviewed": 1, "kept": 0, "downgraded": 1, "upgraded": 0}
    current = tiers.current(platform, member_id)
    assert (current["tier"], current["review_on"]) == ("silver", date(2028, 4, 1))
    latest = tiers.history(platform, member_id)[0]
    assert (latest["from_tier"], latest["to_tier"], latest["reason"]) == (
        "gold",
        "silver",
        "review",
    )
    assert latest["actor"] == "tier-review-job"


def test_the_review_keeps_a_member_who_still_qualifies_and_moves_the_review_a_year(
    shop: Shop, brand: Brand, platform: Platform
) -> None:
    member_id = _gold_since_t0(shop, brand)
    shop.order("A2", PHONE, paid=brand.gold_threshold, at=local(2027, 1, 10))

    shop.at(local(2027, 4, 1))
    counts = tiers.review_due_tiers(platform)

    assert counts == {"reviewed": 1, "kept": 1, "downgraded": 0, "upgraded": 0}
    current = tiers.current(platform, member_id)
    assert (current["tier"], current["review_on"]) == ("gold", date(2028, 3, 2))
    assert len(tiers.history(platform, member_id)) == 1
    assert tiers.review_due_tiers(platform)["reviewed"] == 0


def test_the_review_moves_down_at_most_one_level(
    shop: Shop, brand: Brand, platform: Platform
) -> None:
    member_id = shop.register(PHONE, at=T0)
    shop.order("A1", PHONE, paid=brand.platinum_threshold, at=T0)

    shop.at(local(2027, 4, 1))
    tiers.review_due_tiers(platform)

    assert tiers.current(platform, member_id)["tier"] == "gold"


def test_the_review_leaves_merged_profiles_alone(
    shop: Shop, brand: Brand, platform: Platform
) -> None:
    a = shop.register(PHONE, at=T0)
    shop.register(("email", "mei@example.com"), at=T0)
    shop.order("M1", PHONE, ("email", "mei@example.com"), paid=brand.gold_threshold, at=T0)

    shop.at(local(2027, 4, 1))
    counts = tiers.review_due_tiers(platform)

    assert counts["reviewed"] == 1
    assert tiers.current(platform, a)["tier"] == "silver"
    assert points.check_ledger(platform) == []


# ---------------------------------------------------------------- projection


def test_projection_shows_what_is_needed_to_reach_or_keep_each_tier_by_a_date(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    shop.order("A1", PHONE, paid=100_000, at=T0)

    projection = tiers.projection(platform, member_id, by=date(2026, 6, 30))

    assert projection["tier"] == "silver"
    assert projection["by"] == date(2026, 6, 30)
    assert [(p["tier"], p["needed"], p["reached"], p["goal"]) for p in projection["tiers"]] == [
        ("silver", 0, True, "keep"),
        ("gold", 200_000, False, "reach"),
        ("platinum", 900_000, False, "reach"),
    ]
    assert {p["qualifying_at_date"] for p in projection["tiers"]} == {100_000}


def test_projection_by_default_looks_at_the_day_the_next_review_takes_effect(
    shop: Shop, brand: Brand, platform: Platform
) -> None:
    member_id = _gold_since_t0(shop, brand)
    shop.order("A2", PHONE, paid=50_000, at=local(2026, 9, 1))

    projection = tiers.projection(platform, member_id)

    # The review on 2 March 2027 takes effect after 30 days of grace; spend from 2 March
    # 2026 has left the window by then.
    assert projection["by"] == date(2027, 4, 1)
    gold = next(p for p in projection["tiers"] if p["tier"] == "gold")
    assert (gold["goal"], gold["qualifying_at_date"], gold["needed"]) == ("keep", 50_000, 250_000)
    silver = next(p for p in projection["tiers"] if p["tier"] == "silver")
    assert silver["goal"] == "below"


def test_a_points_metric_program_upgrades_on_points_earned_net_of_clawbacks(
    shop: Shop, brand: Brand, platform: Platform
) -> None:
    setup.update_program(platform, brand.program, {"tier_metric": "points"})
    setup.set_tiers(
        platform,
        brand.program,
        [
            {"code": "silver", "name": "Silver", "rank": 0, "threshold": 0},
            {"code": "gold", "name": "Gold", "rank": 1, "threshold": 1_000},
            {"code": "platinum", "name": "Platinum", "rank": 2, "threshold": 5_000},
        ],
    )
    member_id = shop.register(PHONE)
    assert shop.order("A1", PHONE, paid=99_999)["tier"] == "silver"  # 999 points
    shop.refund("R1", "A1", amount=50_000)  # claws back 499

    result = shop.order("A2", PHONE, paid=49_900)  # 1,498 earned less 499 clawed back

    assert result["tier"] == "silver"
    assert tiers.current(platform, member_id)["qualifying_value"] == 999
    assert shop.order("A3", PHONE, paid=100)["tier"] == "gold"
    assert points.check_ledger(platform) == []


def test_a_program_without_brands_has_no_qualifying_spend_and_orders_still_go_through(
    shop: Shop, brand: Brand, platform: Platform
) -> None:
    setup.create_program(platform, {"code": "outlet", "name": "Outlet Club"})
    setup.set_tiers(
        platform, "outlet", [{"code": "basic", "name": "Basic", "rank": 0, "threshold": 0}]
    )
    member_id = shop.register(PHONE)
    members.register(
        platform,
        members.Registration(
            identities=(IdentityInput(*PHONE),), program="outlet", store=brand.store
        ),
        actor="test",
    )

    assert shop.order("A1", PHONE, paid=18_000)["member_id"] == member_id

    outlet = tiers.current(platform, member_id, "outlet")
    assert outlet["tier"] == "basic" and outlet["qualifying_value"] == 0
    assert points.check_ledger(platform) == []
