"""Rules of the points ledger: lots, entries, allocations, debt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from quanyu.domain.errors import BusinessRuleViolation, InsufficientPoints, ValidationFailed
from quanyu.domain.points import (
    ClawbackPolicy,
    Entry,
    EntryKind,
    Ledger,
    Lot,
    consumption_order,
    proportional_share,
)

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def earn(
    ledger: Ledger,
    points: int,
    *,
    at: datetime = T0,
    available_at: datetime | None = None,
    expires_at: datetime | None = None,
    order_id: int | None = None,
) -> Lot:
    entries = ledger.earn(
        points=points,
        earned_at=at,
        available_at=available_at or at,
        expires_at=expires_at,
        reason="order",
        actor="system",
        order_id=order_id,
    )
    lot = entries[0].lot
    assert lot is not None
    return lot


def assert_balanced(ledger: Ledger) -> None:
    assert sum(e.points for e in ledger.entries) == ledger.total()


# ----- earn


def test_earn_creates_a_lot_and_an_entry_for_the_points() -> None:
    ledger = Ledger()
    entries = ledger.earn(
        points=120,
        earned_at=T0,
        available_at=day(7),
        expires_at=day(365),
        reason="order 1",
        actor="system",
        order_id=1,
        refund_id=None,
    )
    assert len(entries) == 1
    (entry,) = entries
    assert entry.kind is EntryKind.EARN
    assert entry.points == 120
    assert entry.occurred_at == T0
    assert entry.order_id == 1
    assert entry.lot is not None
    assert entry.lot.original == entry.lot.remaining == 120
    assert entry.lot.available_at == day(7)
    assert entry.lot.expires_at == day(365)
    assert entry.lot.order_id == 1
    assert ledger.lots == [entry.lot]
    assert ledger.new_lots == [entry.lot]
    assert ledger.entries == [entry]
    assert_balanced(ledger)


@pytest.mark.parametrize("points", [0, -1, -100])
def test_earn_rejects_non_positive_points(points: int) -> None:
    ledger = Ledger()
    with pytest.raises(ValidationFailed) as err:
        ledger.earn(
            points=points,
            earned_at=T0,
            available_at=T0,
            expires_at=None,
            reason="x",
            actor="system",
        )
    assert err.value.field == "points"
    assert ledger.lots == [] and ledger.entries == []


def test_earn_never_makes_a_lot_available_before_it_is_earned() -> None:
    ledger = Ledger()
    lot = earn(ledger, 10, at=T0, available_at=day(-5))
    assert lot.available_at == T0


def test_earned_points_are_pending_until_available_at() -> None:
    ledger = Ledger()
    earn(ledger, 50, at=T0, available_at=day(7))
    assert ledger.pending(day(6)) == 50
    assert ledger.available(day(6)) == 0
    assert ledger.pending(day(7)) == 0
    assert ledger.available(day(7)) == 50


def test_earn_records_the_entry_kind_it_is_given() -> None:
    ledger = Ledger()
    entries = ledger.earn(
        points=5,
        earned_at=T0,
        available_at=T0,
        expires_at=None,
        reason="points payment returned",
        actor="system",
        kind=EntryKind.RESTORE,
        order_id=3,
        refund_id=9,
    )
    assert entries[0].kind is EntryKind.RESTORE
    assert entries[0].refund_id == 9


def test_earn_settles_outstanding_debt_from_the_new_lot_first() -> None:
    ledger = Ledger(debt=30)
    entries = ledger.earn(
        points=100,
        earned_at=T0,
        available_at=T0,
        expires_at=None,
        reason="order",
        actor="system",
        order_id=4,
    )
    earned, settle = entries
    assert earned.points == 100
    assert settle.kind is EntryKind.DEBT_SETTLE
    assert settle.points == 0
    assert settle.debt_delta == -30
    assert settle.order_id == 4
    assert [(a.lot, a.points) for a in settle.allocations] == [(earned.lot, 30)]
    assert ledger.debt == 0
    assert ledger.debt_changed
    assert ledger.available(T0) == 70
    assert ledger.total() == -30 + sum(e.points for e in entries)


def test_earn_smaller_than_the_debt_settles_only_part_of_it() -> None:
    ledger = Ledger(debt=80)
    lot = earn(ledger, 50)
    assert lot.remaining == 0
    assert ledger.debt == 30
    assert ledger.entries[-1].debt_delta == -50


def test_earn_without_debt_records_no_settlement_and_leaves_debt_unchanged() -> None:
    ledger = Ledger()
    entries = ledger.earn(
        points=10, earned_at=T0, available_at=T0, expires_at=None, reason="x", actor="system"
    )
    assert [e.kind for e in entries] == [EntryKind.EARN]
    assert not ledger.debt_changed


# ----- reading


def test_total_is_every_lots_remainder_less_the_debt() -> None:
    ledger = Ledger(
        lots=[
            Lot(T0, T0, None, original=10, remaining=7),
            Lot(T0, day(30), day(1), original=5, remaining=5),
        ],
        debt=3,
    )
    assert ledger.total() == 9


def test_a_lot_expires_exactly_at_its_expiry_instant() -> None:
    lot = Lot(T0, T0, day(10), original=5, remaining=5)
    assert lot.is_available(day(10) - timedelta(microseconds=1))
    assert not lot.is_live(day(10))
    assert not lot.is_available(day(10))


def test_an_empty_lot_is_not_live() -> None:
    assert not Lot(T0, T0, None, original=5, remaining=0).is_live(T0)


def test_expired_points_are_neither_available_nor_pending_until_processed() -> None:
    ledger = Ledger()
    earn(ledger, 40, expires_at=day(10))
    earn(ledger, 25, available_at=day(20), expires_at=day(15))
    earn(ledger, 7)
    assert ledger.available(day(16)) == 7
    assert ledger.pending(day(16)) == 0
    assert ledger.expired_unprocessed(day(16)) == 65
    assert ledger.total() == 72


# ----- spend


def test_spend_consumes_soonest_expiring_lot_first() -> None:
    ledger = Ledger()
    later = earn(ledger, 100, expires_at=day(300))
    sooner = earn(ledger, 100, expires_at=day(100))
    entry = ledger.spend(points=30, as_of=day(1), reason="redeem", actor="member")
    assert [(a.lot, a.points) for a in entry.allocations] == [(sooner, 30)]
    assert later.remaining == 100
    assert sooner.remaining == 70


def test_spend_consumes_never_expiring_lots_last() -> None:
    ledger = Ledger()
    forever = earn(ledger, 100, at=day(-10), expires_at=None)
    expiring = earn(ledger, 100, expires_at=day(1000))
    entry = ledger.spend(points=150, as_of=T0, reason="redeem", actor="member")
    assert [(a.lot, a.points) for a in entry.allocations] == [(expiring, 100), (forever, 50)]


def test_spend_breaks_expiry_ties_by_oldest_earned_then_by_id() -> None:
    ledger = Ledger()
    newer = earn(ledger, 10, at=day(-1), expires_at=day(100))
    older_high_id = earn(ledger, 10, at=day(-5), expires_at=day(100))
    older_low_id = earn(ledger, 10, at=day(-5), expires_at=day(100))
    older_high_id.id, older_low_id.id, newer.id = 8, 7, 1
    entry = ledger.spend(points=25, as_of=T0, reason="redeem", actor="member")
    assert [(a.lot, a.points) for a in entry.allocations] == [
        (older_low_id, 10),
        (older_high_id, 10),
        (newer, 5),
    ]


def test_consumption_order_puts_never_expiring_lots_after_any_expiring_lot() -> None:
    forever = Lot(day(-100), day(-100), None, original=1, remaining=1)
    far = Lot(T0, T0, day(10_000), original=1, remaining=1)
    assert sorted([forever, far], key=consumption_order) == [far, forever]


def test_spend_records_a_negative_entry_with_allocations_summing_to_its_points() -> None:
    ledger = Ledger()
    earn(ledger, 40, expires_at=day(10))
    earn(ledger, 40, expires_at=day(20))
    earn(ledger, 40, expires_at=day(30))
    entry = ledger.spend(points=95, as_of=T0, reason="redeem", actor="member", order_id=12)
    assert entry.kind is EntryKind.SPEND
    assert entry.points == -95
    assert entry.order_id == 12
    assert sum(a.points for a in entry.allocations) == 95
    assert [lot.remaining for lot in ledger.lots] == [0, 0, 25]
    assert_balanced(ledger)


def test_spend_more_than_available_raises_insufficient_points_and_changes_nothing() -> None:
    ledger = Ledger()
    lot = earn(ledger, 50)
    entries_before = list(ledger.entries)
    with pytest.raises(InsufficientPoints) as err:
        ledger.spend(points=51, as_of=T0, reason="redeem", actor="member")
    assert err.value.requested == 51
    assert err.value.available == 50
    assert err.value.fields == {"requested": 51, "available": 50, "field": "points"}
    assert err.value.code == "insufficient_points"
    assert isinstance(err.value, BusinessRuleViolation)
    assert lot.remaining == 50
    assert ledger.entries == entries_before


def test_spend_never_uses_pending_points() -> None:
    ledger = Ledger()
    earn(ledger, 30)
    earn(ledger, 100, available_at=day(7))
    with pytest.raises(InsufficientPoints) as err:
        ledger.spend(points=31, as_of=day(1), reason="redeem", actor="member")
    assert err.value.available == 30


def test_spend_never_uses_expired_points_even_before_the_expiry_run() -> None:
    ledger = Ledger()
    earn(ledger, 100, expires_at=day(5))
    with pytest.raises(InsufficientPoints) as err:
        ledger.spend(points=1, as_of=day(5), reason="redeem", actor="member")
    assert err.value.available == 0


@pytest.mark.parametrize("points", [0, -10])
def test_spend_rejects_non_positive_points(points: int) -> None:
    ledger = Ledger()
    earn(ledger, 50)
    with pytest.raises(ValidationFailed) as err:
        ledger.spend(points=points, as_of=T0, reason="redeem", actor="member")
    assert err.value.field == "points"


def test_spend_ignores_debt_when_points_are_available() -> None:
    ledger = Ledger(lots=[Lot(T0, T0, None, original=50, remaining=50)], debt=20)
    ledger.spend(points=50, as_of=T0, reason="redeem", actor="member")
    assert ledger.debt == 20
    assert ledger.total() == -20


def test_taking_from_a_stored_lot_marks_it_dirty_once() -> None:
    stored = Lot(T0, T0, None, original=50, remaining=50, id=11)
    ledger = Ledger(lots=[stored])
    ledger.spend(points=10, as_of=T0, reason="redeem", actor="member")
    ledger.spend(points=10, as_of=T0, reason="redeem", actor="member")
    assert ledger.dirty_lots == [stored]
    assert ledger.new_lots == []


def test_taking_from_a_new_lot_does_not_mark_it_dirty() -> None:
    ledger = Ledger()
    earn(ledger, 50)
    ledger.spend(points=10, as_of=T0, reason="redeem", actor="member")
    assert ledger.dirty_lots == []


# ----- claw back


def clawback(
    ledger: Ledger,
    points: int,
    *,
    policy: ClawbackPolicy,
    order_id: int | None,
    as_of: datetime = T0,
) -> Entry:
    return ledger.claw_back(
        points=points,
        as_of=as_of,
        policy=policy,
        reason="refund",
        actor="system",
        order_id=order_id,
        refund_id=77,
    )


@pytest.mark.parametrize("policy", list(ClawbackPolicy))
def test_refund_clawback_takes_from_the_orders_own_lot_first(policy: ClawbackPolicy) -> None:
    ledger = Ledger()
    other = earn(ledger, 100, expires_at=day(10), order_id=1)
    own = earn(ledger, 100, expires_at=day(300), order_id=2)
    entry = ledger.claw_back(
        points=60,
        as_of=T0,
        policy=policy,
        reason="refund",
        actor="system",
        order_id=2,
        refund_id=77,
    )
    assert entry.kind is EntryKind.CLAWBACK
    assert entry.points == -60
    assert entry.order_id == 2
    assert entry.refund_id == 77
    assert entry.debt_delta == 0
    assert [(a.lot, a.points) for a in entry.allocations] == [(own, 60)]
    assert other.remaining == 100
    assert_balanced(ledger)


def test_refund_clawback_takes_from_the_orders_lot_while_it_is_still_pending() -> None:
    ledger = Ledger()
    own = earn(ledger, 100, available_at=day(7), order_id=2)
    clawback(ledger, 100, policy=ClawbackPolicy.DEBT, order_id=2, as_of=day(1))
    assert own.remaining == 0
    assert ledger.debt == 0


def test_refund_clawback_of_spent_points_takes_other_lots_under_other_lots_policy() -> None:
    ledger = Ledger()
    other = earn(ledger, 100, order_id=1)
    own = earn(ledger, 100, expires_at=day(5), order_id=2)
    ledger.spend(points=80, as_of=T0, reason="redeem", actor="member")
    assert own.remaining == 20
    entry = clawback(ledger, 100, policy=ClawbackPolicy.OTHER_LOTS, order_id=2)
    assert [(a.lot, a.points) for a in entry.allocations] == [(own, 20), (other, 80)]
    assert other.remaining == 20
    assert ledger.debt == 0
    assert_balanced(ledger)


def test_refund_clawback_of_spent_points_records_debt_under_debt_policy() -> None:
    ledger = Ledger()
    other = earn(ledger, 100, order_id=1)
    own = earn(ledger, 100, expires_at=day(5), order_id=2)
    ledger.spend(points=80, as_of=T0, reason="redeem", actor="member")
    entry = clawback(ledger, 100, policy=ClawbackPolicy.DEBT, order_id=2)
    assert [(a.lot, a.points) for a in entry.allocations] == [(own, 20)]
    assert entry.points == -100
    assert entry.debt_delta == 80
    assert other.remaining == 100
    assert ledger.debt == 80
    assert ledger.debt_changed
    assert_balanced(ledger)


def test_refund_clawback_records_debt_for_what_other_lots_cannot_cover() -> None:
    ledger = Ledger()
    earn(ledger, 30, order_id=1)
    own = earn(ledger, 100, order_id=2)
    ledger.spend(points=120, as_of=T0, reason="redeem", actor="member")
    assert own.remaining + ledger.lots[0].remaining == 10
    entry = clawback(ledger, 100, policy=ClawbackPolicy.OTHER_LOTS, order_id=2)
    assert sum(a.points for a in entry.allocations) == 10
    assert entry.debt_delta == 90
    assert ledger.debt == 90
    assert all(lot.remaining == 0 for lot in ledger.lots)
    assert_balanced(ledger)


def test_clawback_under_other_lots_policy_may_take_other_pending_lots() -> None:
    ledger = Ledger()
    pending = earn(ledger, 50, available_at=day(7), order_id=1)
    clawback(ledger, 20, policy=ClawbackPolicy.OTHER_LOTS, order_id=2)
    assert pending.remaining == 30
    assert ledger.debt == 0


def test_clawback_without_an_order_treats_no_lot_as_its_own() -> None:
    ledger = Ledger()
    unowned = earn(ledger, 50, order_id=None)
    clawback(ledger, 20, policy=ClawbackPolicy.DEBT, order_id=None)
    assert unowned.remaining == 50
    assert ledger.debt == 20
    clawback(ledger, 20, policy=ClawbackPolicy.OTHER_LOTS, order_id=None)
    assert unowned.remaining == 30
    assert ledger.debt == 20
    assert_balanced(ledger)


@pytest.mark.parametrize("policy", list(ClawbackPolicy))
def test_clawback_never_takes_from_expired_lots(policy: ClawbackPolicy) -> None:
    ledger = Ledger()
    own = earn(ledger, 100, expires_at=day(5), order_id=2)
    other = earn(ledger, 100, expires_at=day(5), order_id=1)
    clawback(ledger, 40, policy=policy, order_id=2, as_of=day(6))
    assert own.remaining == 100
    assert other.remaining == 100
    assert ledger.debt == 40
    assert_balanced(ledger)


@pytest.mark.parametrize("points", [0, -5])
def test_clawback_rejects_non_positive_points(points: int) -> None:
    ledger = Ledger()
    with pytest.raises(ValidationFailed) as err:
        clawback(ledger, points, policy=ClawbackPolicy.DEBT, order_id=1)
    assert err.value.field == "points"
    assert ledger.entries == []


def test_debt_from_a_clawback_is_settled_from_the_next_earning() -> None:
    ledger = Ledger()
    earn(ledger, 100, order_id=1)
    ledger.spend(points=100, as_of=T0, reason="redeem", actor="member")
    clawback(ledger, 100, policy=ClawbackPolicy.DEBT, order_id=1)
    assert ledger.total() == -100
    new = earn(ledger, 150, at=day(1), order_id=2)
    assert new.remaining == 50
    assert ledger.debt == 0
    assert ledger.total() == 50
    assert_balanced(ledger)


# ----- expire


def test_expire_empties_every_lot_past_expiry_in_one_entry() -> None:
    ledger = Ledger()
    first = earn(ledger, 40, expires_at=day(10))
    second = earn(ledger, 25, expires_at=day(12))
    ledger.spend(points=15, as_of=T0, reason="redeem", actor="member")
    entry = ledger.expire(as_of=day(12), actor="worker")
    assert entry is not None
    assert entry.kind is EntryKind.EXPIRE
    assert entry.points == -50
    assert entry.actor == "worker"
    assert entry.occurred_at == day(12)
    assert [(a.lot, a.points) for a in entry.allocations] == [(first, 25), (second, 25)]
    assert first.remaining == second.remaining == 0
    assert_balanced(ledger)


def test_expire_leaves_never_expiring_and_future_lots_alone() -> None:
    ledger = Ledger()
    forever = earn(ledger, 10)
    future = earn(ledger, 20, expires_at=day(30))
    past = earn(ledger, 30, expires_at=day(3))
    entry = ledger.expire(as_of=day(29), actor="worker")
    assert entry is not None
    assert [a.lot for a in entry.allocations] == [past]
    assert forever.remaining == 10
    assert future.remaining == 20


def test_expire_records_nothing_when_nothing_is_due() -> None:
    ledger = Ledger()
    earn(ledger, 10, expires_at=day(30))
    assert ledger.expire(as_of=day(29), actor="worker") is None
    assert len(ledger.entries) == 1


def test_expire_twice_at_the_same_instant_records_one_entry() -> None:
    ledger = Ledger()
    earn(ledger, 10, expires_at=day(3))
    assert ledger.expire(as_of=day(3), actor="worker") is not None
    assert ledger.expire(as_of=day(3), actor="worker") is None
    assert [e.kind for e in ledger.entries] == [EntryKind.EARN, EntryKind.EXPIRE]


def test_expire_also_expires_points_that_never_became_available() -> None:
    ledger = Ledger()
    earn(ledger, 10, available_at=day(10), expires_at=day(5))
    entry = ledger.expire(as_of=day(5), actor="worker")
    assert entry is not None and entry.points == -10


def test_expire_does_not_touch_debt() -> None:
    ledger = Ledger(lots=[Lot(T0, T0, day(1), original=10, remaining=10)], debt=4)
    ledger.expire(as_of=day(2), actor="worker")
    assert ledger.debt == 4
    assert not ledger.debt_changed


# ----- adjust


def test_positive_adjustment_creates_a_lot_available_at_once() -> None:
    ledger = Ledger()
    entries = ledger.adjust(
        points=25, as_of=T0, expires_at=day(90), reason="goodwill", actor="agent:7"
    )
    (entry,) = entries
    assert entry.kind is EntryKind.ADJUST
    assert entry.points == 25
    assert entry.actor == "agent:7"
    assert entry.lot is not None and entry.lot.expires_at == day(90)
    assert ledger.available(T0) == 25


def test_positive_adjustment_settles_debt_like_any_earning() -> None:
    ledger = Ledger(debt=10)
    entries = ledger.adjust(points=25, as_of=T0, expires_at=None, reason="goodwill", actor="a")
    assert [e.kind for e in entries] == [EntryKind.ADJUST, EntryKind.DEBT_SETTLE]
    assert ledger.debt == 0


def test_negative_adjustment_spends_soonest_expiring_first() -> None:
    ledger = Ledger()
    later = earn(ledger, 50, expires_at=day(50))
    sooner = earn(ledger, 50, expires_at=day(5))
    (entry,) = ledger.adjust(points=-60, as_of=T0, expires_at=None, reason="fraud", actor="a")
    assert entry.kind is EntryKind.ADJUST
    assert entry.points == -60
    assert [(a.lot, a.points) for a in entry.allocations] == [(sooner, 50), (later, 10)]


def test_negative_adjustment_never_clamps_it_raises_insufficient_points() -> None:
    ledger = Ledger()
    lot = earn(ledger, 50)
    with pytest.raises(InsufficientPoints):
        ledger.adjust(points=-51, as_of=T0, expires_at=None, reason="fraud", actor="a")
    assert lot.remaining == 50
    assert len(ledger.entries) == 1


@pytest.mark.parametrize(
    ("reason", "actor", "field"),
    [("", "a", "reason"), ("  ", "a", "reason"), ("why", "", "actor"), ("why", " ", "actor")],
)
def test_adjustment_needs_a_reason_and_an_actor(reason: str, actor: str, field: str) -> None:
    ledger = Ledger()
    with pytest.raises(ValidationFailed) as err:
        ledger.adjust(points=5, as_of=T0, expires_at=None, reason=reason, actor=actor)
    assert err.value.field == field
    assert ledger.entries == []


def test_adjustment_of_zero_points_is_rejected() -> None:
    with pytest.raises(ValidationFailed) as err:
        Ledger().adjust(points=0, as_of=T0, expires_at=None, reason="why", actor="a")
    assert err.value.field == "points"


# ----- proportional share


def test_proportional_share_rounds_down() -> None:
    assert proportional_share(100, 1, 3) == 33
    assert proportional_share(100, 2, 3) == 66


def test_proportional_share_of_the_whole_is_exactly_the_total() -> None:
    assert proportional_share(101, 7, 7) == 101


@pytest.mark.parametrize("whole", [0, -1])
def test_proportional_share_of_an_empty_whole_is_zero(whole: int) -> None:
    assert proportional_share(100, 5, whole) == 0


def test_successive_refund_shares_never_claw_back_more_than_was_earned() -> None:
    earned, paid = 997, 300
    clawed = 0
    for refunded in (100, 200, 299, 300):
        clawed += proportional_share(earned, refunded, paid) - clawed
        assert clawed <= earned
    assert clawed == earned


def test_points_returned_by_a_refund_are_not_clawed_back_as_the_orders_own() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    ledger = Ledger()
    ledger.earn(
        points=100,
        earned_at=at,
        available_at=at,
        expires_at=None,
        reason="earn",
        actor="t",
        order_id=1,
    )
    ledger.earn(
        points=50,
        earned_at=at,
        available_at=at,
        expires_at=None,
        reason="restore",
        actor="t",
        order_id=2,
        kind=EntryKind.RESTORE,
    )
    entry = ledger.claw_back(
        points=30,
        as_of=at,
        policy=ClawbackPolicy.DEBT,
        reason="refund",
        actor="t",
        order_id=2,
        refund_id=9,
    )
    assert entry.allocations == ()
    assert ledger.debt == 30


def test_a_spend_that_must_also_be_available_later_skips_lots_expired_by_then() -> None:
    ledger = Ledger()
    ledger.earn(
        points=100,
        earned_at=T0,
        available_at=T0,
        expires_at=T0 + timedelta(days=10),
        reason="earn",
        actor="t",
        order_id=1,
    )
    with pytest.raises(InsufficientPoints):
        ledger.spend(
            points=10,
            as_of=T0 + timedelta(days=1),
            reason="back-dated order",
            actor="t",
            also_available_at=T0 + timedelta(days=20),
        )
    assert ledger.available(T0 + timedelta(days=1)) == 100


def test_a_spend_that_must_also_be_available_earlier_skips_lots_still_pending_then() -> None:
    ledger = Ledger()
    ledger.earn(
        points=100,
        earned_at=T0,
        available_at=T0 + timedelta(days=7),
        expires_at=None,
        reason="earn",
        actor="t",
        order_id=1,
    )
    with pytest.raises(InsufficientPoints):
        ledger.spend(
            points=10,
            as_of=T0 + timedelta(days=8),
            reason="future-dated order",
            actor="t",
            also_available_at=T0,
        )
