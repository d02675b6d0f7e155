"""Ledger invariants across random sequences of commands on two members' ledgers.

The machine earns, spends, claws back under both policies, advances time and expires,
adjusts, stores lots (as a repository would), and merges one member's ledger into the
other the way the merge service does: the lots and the debt move, and a MERGE_OUT /
MERGE_IN pair of entries records the transferred balance. After every step:

* ``sum(entry.points) == sum(lot.remaining) - debt`` for each ledger;
* every lot keeps ``0 <= remaining <= original``, and its remainder is its original less
  every allocation any entry took from it;
* every entry accounts for its points: the lot it created, less what it took from lots,
  less the debt it added;
* the ledger tells the repository about every new lot and every stored lot it changed.

Spending takes a prefix of the available lots in consumption order and its allocations
add up to its points; an :class:`InsufficientPoints` error leaves the ledger unchanged.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from quanyu.domain.errors import InsufficientPoints
from quanyu.domain.points import (
    ClawbackPolicy,
    Entry,
    EntryKind,
    Ledger,
    Lot,
    consumption_order,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
ACTOR = "test"
MERGE_KINDS = {EntryKind.MERGE_IN, EntryKind.MERGE_OUT}

members = st.integers(min_value=0, max_value=1)
amounts = st.integers(min_value=1, max_value=400)
order_ids = st.sampled_from([None, 1, 2])
takings = st.integers(min_value=1, max_value=200)
pending_days = st.sampled_from([0, 0, 0, 1, 7])
expiry_days = st.none() | st.integers(min_value=0, max_value=60)


def snapshot(ledger: Ledger) -> tuple[Any, ...]:
    """Everything a failed command must leave as it was."""
    return (
        [(id(lot), lot.remaining) for lot in ledger.lots],
        ledger.debt,
        [id(e) for e in ledger.entries],
        [id(lot) for lot in ledger.new_lots],
        [id(lot) for lot in ledger.dirty_lots],
        ledger.debt_changed,
    )


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ledgers = [Ledger(), Ledger()]
        self.now = T0
        self.next_id = 1
        self.stored_remaining: dict[int, int] = {}

    def expiry(self, days: int | None) -> datetime | None:
        return None if days is None else self.now + timedelta(days=days)

    def all_lots(self) -> list[Lot]:
        return [lot for ledger in self.ledgers for lot in ledger.lots]

    # ----- commands

    @rule(
        member=members, points=amounts, pending=pending_days, expires=expiry_days, order=order_ids
    )
    def earn(
        self, member: int, points: int, pending: int, expires: int | None, order: int | None
    ) -> None:
        ledger = self.ledgers[member]
        debt = ledger.debt
        entries = ledger.earn(
            points=points,
            earned_at=self.now,
            available_at=self.now + timedelta(days=pending),
            expires_at=self.expiry(expires),
            reason="order",
            actor=ACTOR,
            order_id=order,
        )
        assert entries[0].points == points
        assert ledger.debt == max(debt - points, 0)

    @rule(member=members, points=takings)
    def spend(self, member: int, points: int) -> None:
        ledger = self.ledgers[member]
        before = snapshot(ledger)
        in_order = sorted(
            (lot for lot in ledger.lots if lot.is_available(self.now)), key=consumption_order
        )
        try:
            entry = ledger.spend(points=points, as_of=self.now, reason="redeem", actor=ACTOR)
        except InsufficientPoints as error:
            assert error.requested == points
            assert error.available == ledger.available(self.now) < points
            assert snapshot(ledger) == before
            return
        assert entry.points == -points
        assert sum(a.points for a in entry.allocations) == points
        consumed = [a.lot for a in entry.allocations]
        assert consumed == in_order[: len(consumed)]
        assert all(lot.remaining == 0 for lot in consumed[:-1])

    @precondition(lambda self: any(ledger.available(self.now) for ledger in self.ledgers))
    @rule(member=members)
    def spend_everything_available(self, member: int) -> None:
        ledger = self.ledgers[member]
        available = ledger.available(self.now)
        if available:
            ledger.spend(points=available, as_of=self.now, reason="redeem", actor=ACTOR)
            assert ledger.available(self.now) == 0

    @rule(
        member=members,
        points=takings,
        policy=st.sampled_from(ClawbackPolicy),
        order=order_ids,
    )
    def claw_back(
        self, member: int, points: int, policy: ClawbackPolicy, order: int | None
    ) -> None:
        ledger = self.ledgers[member]
        total, debt = ledger.total(), ledger.debt
        entry = ledger.claw_back(
            points=points,
            as_of=self.now,
            policy=policy,
            reason="refund",
            actor=ACTOR,
            order_id=order,
            refund_id=None,
        )
        assert ledger.total() == total - points
        assert entry.debt_delta == ledger.debt - debt >= 0
        own = [order is not None and a.lot.order_id == order for a in entry.allocations]
        assert own == sorted(own, reverse=True)  # the order's own lots come first
        if policy is ClawbackPolicy.DEBT:
            assert all(own)
        if entry.debt_delta and policy is ClawbackPolicy.OTHER_LOTS:
            assert not any(lot.is_live(self.now) for lot in ledger.lots)

    @rule(hours=st.integers(min_value=0, max_value=24 * 15))
    def advance_time(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    @rule(member=members)
    def expire(self, member: int) -> None:
        ledger = self.ledgers[member]
        due = ledger.expired_unprocessed(self.now)
        entry = ledger.expire(as_of=self.now, actor=ACTOR)
        assert (entry.points if entry else 0) == -due
        assert ledger.expired_unprocessed(self.now) == 0

    @rule(
        member=members,
        points=st.integers(min_value=-300, max_value=300).filter(bool),
        expires=expiry_days,
    )
    def adjust(self, member: int, points: int, expires: int | None) -> None:
        ledger = self.ledgers[member]
        before, total = snapshot(ledger), ledger.total()
        try:
            ledger.adjust(
                points=points,
                as_of=self.now,
                expires_at=self.expiry(expires),
                reason="manual",
                actor=ACTOR,
            )
        except InsufficientPoints:
            assert points < 0
            assert snapshot(ledger) == before
            return
        assert ledger.total() == total + points

    @rule()
    def store(self) -> None:
        """What a repository does on commit: give new lots ids and forget what it wrote."""
        for ledger in self.ledgers:
            for lot in ledger.lots:
                if lot.id is None:
                    lot.id = self.next_id
                    self.next_id += 1
            ledger.new_lots.clear()
            ledger.dirty_lots.clear()
            ledger.debt_changed = False
        self.stored_remaining = {id(lot): lot.remaining for lot in self.all_lots()}

    @rule(absorbed=members)
    def merge(self, absorbed: int) -> None:
        gone, kept = self.ledgers[absorbed], self.ledgers[1 - absorbed]
        balance, debt = sum(e.points for e in gone.entries), gone.debt
        assert balance == gone.total()
        kept_total = kept.total()
        kept.lots.extend(gone.lots)
        gone.lots = []
        kept.debt += debt
        gone.debt = 0
        reason = "merge"
        gone.entries.append(
            Entry(EntryKind.MERGE_OUT, -balance, self.now, reason, ACTOR, debt_delta=-debt)
        )
        kept.entries.append(
            Entry(EntryKind.MERGE_IN, balance, self.now, reason, ACTOR, debt_delta=debt)
        )
        assert gone.total() == 0
        assert kept.total() == kept_total + balance

    # ----- invariants

    @invariant()
    def entries_add_up_to_lots_less_debt(self) -> None:
        for ledger in self.ledgers:
            assert sum(e.points for e in ledger.entries) == ledger.total()

    @invariant()
    def debt_is_never_negative(self) -> None:
        assert all(ledger.debt >= 0 for ledger in self.ledgers)

    @invariant()
    def lots_stay_between_empty_and_their_original(self) -> None:
        for lot in self.all_lots():
            assert lot.original > 0
            assert 0 <= lot.remaining <= lot.original

    @invariant()
    def every_lot_is_its_original_less_its_allocations(self) -> None:
        taken: dict[int, int] = defaultdict(int)
        for ledger in self.ledgers:
            for entry in ledger.entries:
                for allocation in entry.allocations:
                    assert allocation.points > 0
                    taken[id(allocation.lot)] += allocation.points
        for lot in self.all_lots():
            assert lot.remaining == lot.original - taken[id(lot)]

    @invariant()
    def every_entry_accounts_for_its_points(self) -> None:
        for ledger in self.ledgers:
            for entry in ledger.entries:
                if entry.kind in MERGE_KINDS:
                    continue
                created = entry.lot.original if entry.lot is not None else 0
                taken = sum(a.points for a in entry.allocations)
                assert entry.points == created - taken - entry.debt_delta
                if entry.kind is EntryKind.SPEND:
                    assert taken == -entry.points

    @invariant()
    def remainders_split_into_available_pending_and_expired(self) -> None:
        for ledger in self.ledgers:
            assert ledger.available(self.now) + ledger.pending(
                self.now
            ) + ledger.expired_unprocessed(self.now) == sum(lot.remaining for lot in ledger.lots)

    @invariant()
    def repository_learns_of_every_new_and_changed_lot(self) -> None:
        for ledger in self.ledgers:
            assert len({id(lot) for lot in ledger.dirty_lots}) == len(ledger.dirty_lots)
        # a lot changed before a merge is reported by the ledger it was changed in
        new = {id(lot) for ledger in self.ledgers for lot in ledger.new_lots}
        dirty = {id(lot) for ledger in self.ledgers for lot in ledger.dirty_lots}
        for lot in self.all_lots():
            if lot.id is None:
                assert id(lot) in new
            elif lot.remaining != self.stored_remaining[id(lot)]:
                assert id(lot) in dirty


LedgerMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=30, deadline=None, database=None
)
TestLedgerInvariantsHoldAcrossRandomCommands = LedgerMachine.TestCase
