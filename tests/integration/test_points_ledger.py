"""The points ledger in the store: redemption, manual adjustment, the expiry job."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conftest import Shop, local, phone
from quanyu.domain.errors import InsufficientPoints, NotFound, ValidationFailed
from quanyu.services import points
from quanyu.services.uow import Platform, run
from quanyu.services.working_set import WorkingSet

PHONE = ("phone", phone(1))


@pytest.fixture
def member_with_two_lots(shop: Shop) -> int:
    """100 points from 2025 (expire at 2027's start) and 100 from 2026 (expire at 2028's)."""
    member_id = shop.register(PHONE, at=local(2025, 1, 1))
    shop.order("OLD", PHONE, paid=10_000, at=local(2025, 6, 1))
    shop.order("NEW", PHONE, paid=10_000, at=local(2026, 2, 1))
    return member_id


def test_redemption_takes_the_soonest_expiring_points_first(
    shop: Shop, platform: Platform, member_with_two_lots: int
) -> None:
    lots = {lot["expires_at"]: lot["id"] for lot in points.lots(platform, member_with_two_lots)}

    result = points.spend(platform, member_with_two_lots, points=150, reason="mug", actor="test")

    assert result["consumed"] == [
        {"lot_id": lots[local(2027, 1, 1, hour=0)], "points": 100},
        {"lot_id": lots[local(2028, 1, 1, hour=0)], "points": 50},
    ]
    assert (result["available"], result["total"]) == (50, 50)
    [entry] = points.entries(platform, member_with_two_lots, limit=1)
    assert (entry["kind"], entry["points"], entry["reason"]) == ("spend", -150, "mug")
    assert entry["allocations"] == result["consumed"]
    assert points.check_ledger(platform) == []


def test_redeeming_more_than_available_raises_and_changes_nothing(
    shop: Shop, platform: Platform, member_with_two_lots: int
) -> None:
    with pytest.raises(InsufficientPoints) as caught:
        points.spend(platform, member_with_two_lots, points=201, reason="bike", actor="test")

    assert (caught.value.requested, caught.value.available) == (201, 200)
    assert shop.available(member_with_two_lots) == 200
    assert len(points.entries(platform, member_with_two_lots)) == 2
    assert points.check_ledger(platform) == []


def test_pending_points_cannot_be_redeemed(shop: Shop, platform: Platform) -> None:
    member_id = shop.register(PHONE)
    shop.order("A1", PHONE, paid=10_000)

    with pytest.raises(InsufficientPoints) as caught:
        points.spend(platform, member_id, points=1, reason="gift", actor="test")

    assert caught.value.available == 0
    shop.later(days=7)
    assert points.spend(platform, member_id, points=100, reason="gift", actor="test")["total"] == 0


def test_a_redemption_needs_a_reason(shop: Shop, platform: Platform) -> None:
    member_id = shop.register(PHONE)

    with pytest.raises(ValidationFailed) as caught:
        points.spend(platform, member_id, points=1, reason="  ", actor="test")

    assert caught.value.field == "reason"


def test_a_manual_adjustment_needs_a_reason(shop: Shop, platform: Platform) -> None:
    member_id = shop.register(PHONE)

    with pytest.raises(ValidationFailed) as caught:
        points.adjust(platform, member_id, points=100, reason=" ", actor="staff:li")

    assert caught.value.field == "reason"
    assert points.entries(platform, member_id) == []


def test_a_manual_credit_is_available_at_once_and_records_who_made_it(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)

    result = points.adjust(platform, member_id, points=120, reason="complaint", actor="staff:li")

    assert (result["available"], result["pending"], result["total"]) == (120, 0, 120)
    [entry] = points.entries(platform, member_id)
    assert (entry["kind"], entry["actor"], entry["reason"]) == ("adjust", "staff:li", "complaint")
    assert points.check_ledger(platform) == []


def test_a_manual_deduction_never_takes_the_balance_below_zero(
    shop: Shop, platform: Platform, member_with_two_lots: int
) -> None:
    with pytest.raises(InsufficientPoints):
        points.adjust(platform, member_with_two_lots, points=-201, reason="fraud", actor="staff")

    result = points.adjust(platform, member_with_two_lots, points=-200, reason="fraud", actor="st")
    assert (result["available"], result["total"]) == (0, 0)
    assert points.check_ledger(platform) == []


def test_a_balance_of_someone_who_is_not_a_member_is_not_found(
    shop: Shop, platform: Platform
) -> None:
    customer = shop.order("T1", ("platform_buyer", "b1", "tmall"), channel="tmall", store=None)

    with pytest.raises(NotFound):
        points.balance(platform, customer["member_id"])
    with pytest.raises(NotFound):
        points.balance(platform, 999_999)


# ---------------------------------------------------------------- expiry


def test_points_about_to_expire_are_shown_as_expiring_soon(
    shop: Shop, member_with_two_lots: int
) -> None:
    shop.at(local(2026, 12, 15))

    balance = shop.balance(member_with_two_lots)

    assert (balance["available"], balance["expiring_soon"]) == (200, 100)


def test_the_expiry_job_expires_only_lots_whose_expiry_has_passed(
    shop: Shop, platform: Platform, member_with_two_lots: int
) -> None:
    shop.at(local(2027, 1, 1, hour=0) - timedelta(seconds=1))
    assert points.expire_due(platform) == 0

    shop.at(local(2027, 1, 1, hour=0))
    expired = points.expire_due(platform)

    assert expired == 100
    balance = shop.balance(member_with_two_lots)
    assert (balance["available"], balance["total"]) == (100, 100)
    [entry] = points.entries(platform, member_with_two_lots, limit=1)
    assert (entry["kind"], entry["points"], entry["actor"]) == ("expire", -100, "expiry-job")
    assert [a["points"] for a in entry["allocations"]] == [100]
    assert points.check_ledger(platform) == []


def test_running_the_expiry_job_twice_expires_nothing_more(
    shop: Shop, platform: Platform, member_with_two_lots: int
) -> None:
    shop.at(local(2027, 6, 1))
    assert points.expire_due(platform) == 100

    assert points.expire_due(platform) == 0
    assert shop.total(member_with_two_lots) == 100
    assert points.check_ledger(platform) == []


def test_the_expiry_job_takes_only_what_is_left_of_a_partly_spent_lot(
    shop: Shop, platform: Platform, member_with_two_lots: int
) -> None:
    points.spend(platform, member_with_two_lots, points=30, reason="gift", actor="test")
    shop.at(local(2027, 6, 1))

    assert points.expire_due(platform) == 70
    assert shop.total(member_with_two_lots) == 100
    assert points.check_ledger(platform) == []


def test_expired_points_cannot_be_redeemed_before_the_job_runs(
    shop: Shop, platform: Platform, member_with_two_lots: int
) -> None:
    shop.at(local(2027, 6, 1))

    with pytest.raises(InsufficientPoints) as caught:
        points.spend(platform, member_with_two_lots, points=101, reason="gift", actor="test")

    assert caught.value.available == 100


def test_a_ledger_changed_without_being_taken_again_after_a_flush_fails_the_command_whole(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    before = shop.total(member_id)

    def command(ws: WorkingSet) -> None:
        membership = next(iter(ws.profile(member_id).memberships.values()))
        ledger = ws.ledger(membership, complete=False)
        ledger.adjust(as_of=ws.now, expires_at=None, points=5, reason="kept", actor="test")
        ws.flush()  # a mid-transaction flush, as a merge makes
        ledger.adjust(as_of=ws.now, expires_at=None, points=7, reason="stray", actor="test")

    with pytest.raises(RuntimeError, match=r"outside WorkingSet\.ledger"):
        run(platform, command)

    assert shop.total(member_id) == before
    assert points.check_ledger(platform) == []
