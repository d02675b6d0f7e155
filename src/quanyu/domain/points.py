"""The points ledger: lots, entries and the rules that move points between them.

A *lot* is one batch of earned points with its own ``available_at`` (the end of the
pending period) and ``expires_at``. An *entry* is an append-only record of a change,
with a reason and an actor; entries that take points out of lots record which lots
they consumed (*allocations*). A member may owe points (*debt*) when a refund claws
back points that were already spent and the program's policy records a debt.

The invariant, per member and program, is::

    sum(entry.points) == sum(lot.remaining) - debt

and no lot's ``remaining`` is ever negative. Spending never clamps: it raises
:class:`InsufficientPoints`.

Lots are consumed soonest-expiring first (lots that never expire last), then oldest
earned first, then by id.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from quanyu.domain.errors import InsufficientPoints, ValidationFailed


class EntryKind(enum.StrEnum):
    EARN = "earn"
    SPEND = "spend"
    CLAWBACK = "clawback"
    RESTORE = "restore"
    EXPIRE = "expire"
    ADJUST = "adjust"
    MERGE_IN = "merge_in"
    MERGE_OUT = "merge_out"
    DEBT_SETTLE = "debt_settle"


class ClawbackPolicy(enum.StrEnum):
    """What a refund does when the points it claws back were already spent."""

    OTHER_LOTS = "other_lots"  # take them from the member's other lots, then record a debt
    DEBT = "debt"  # record a debt at once, settled from future earnings


@dataclass(eq=False)
class Lot:
    """A batch of points. ``id`` is None until stored."""

    earned_at: datetime
    available_at: datetime
    expires_at: datetime | None
    original: int
    remaining: int
    order_id: int | None = None
    id: int | None = None

    def is_live(self, as_of: datetime) -> bool:
        return self.remaining > 0 and (self.expires_at is None or self.expires_at > as_of)

    def is_available(self, as_of: datetime) -> bool:
        return self.is_live(as_of) and self.available_at <= as_of


def consumption_order(lot: Lot) -> tuple[bool, datetime, datetime, int]:
    """Soonest-expiring first; lots without expiry last; then oldest, then by id."""
    never = lot.expires_at is None
    return (never, lot.expires_at or lot.earned_at, lot.earned_at, lot.id or 0)


@dataclass(frozen=True)
class Allocation:
    lot: Lot
    points: int  # taken out of the lot (positive)


@dataclass
class Entry:
    kind: EntryKind
    points: int  # signed change to the balance
    occurred_at: datetime
    reason: str
    actor: str
    order_id: int | None = None
    refund_id: int | None = None
    lot: Lot | None = None  # the lot this entry created, if any
    allocations: tuple[Allocation, ...] = ()
    debt_delta: int = 0
    id: int | None = None


@dataclass
class Ledger:
    """The live lots and the debt of one member in one program.

    Methods change lots in memory and return the entries that record the change;
    ``new_lots``/``dirty_lots``/``entries`` tell the repository what to write.
    """

    lots: list[Lot] = field(default_factory=list)
    debt: int = 0
    entries: list[Entry] = field(default_factory=list)
    new_lots: list[Lot] = field(default_factory=list)
    dirty_lots: list[Lot] = field(default_factory=list)
    debt_changed: bool = False

    # ----- reading

    def available(self, as_of: datetime) -> int:
        return sum(lot.remaining for lot in self.lots if lot.is_available(as_of))

    def pending(self, as_of: datetime) -> int:
        return sum(
            lot.remaining for lot in self.lots if lot.is_live(as_of) and lot.available_at > as_of
        )

    def expired_unprocessed(self, as_of: datetime) -> int:
        return sum(
            lot.remaining
            for lot in self.lots
            if lot.remaining > 0 and lot.expires_at is not None and lot.expires_at <= as_of
        )

    def total(self) -> int:
        """What the entries must sum to: every lot's remainder less the debt."""
        return sum(lot.remaining for lot in self.lots) - self.debt

    # ----- bookkeeping

    def _record(self, entry: Entry) -> Entry:
        self.entries.append(entry)
        return entry

    def _take(self, lot: Lot, points: int) -> Allocation:
        if points <= 0 or points > lot.remaining:
            raise AssertionError("allocation outside the lot")  # a bug, never user input
        lot.remaining -= points
        if lot.id is not None and lot not in self.dirty_lots:
            self.dirty_lots.append(lot)
        return Allocation(lot, points)

    def _take_from(self, candidates: Iterable[Lot], points: int) -> tuple[list[Allocation], int]:
        """Take up to ``points`` from ``candidates`` in consumption order; return what is short."""
        allocations: list[Allocation] = []
        left = points
        for lot in sorted(candidates, key=consumption_order):
            if left == 0:
                break
            take = min(lot.remaining, left)
            if take > 0:
                allocations.append(self._take(lot, take))
                left -= take
        return allocations, left

    def _add_lot(self, lot: Lot) -> Lot:
        self.lots.append(lot)
        self.new_lots.append(lot)
        return lot

    def _change_debt(self, delta: int) -> None:
        if delta:
            self.debt += delta
            self.debt_changed = True

    # ----- commands

    def earn(
        self,
        *,
        points: int,
        earned_at: datetime,
        available_at: datetime,
        expires_at: datetime | None,
        reason: str,
        actor: str,
        kind: EntryKind = EntryKind.EARN,
        order_id: int | None = None,
        refund_id: int | None = None,
    ) -> list[Entry]:
        """Create a lot; if the member owes points, settle the debt from it first.

        Only an EARN lot belongs to its order for claw-back: points returned by a refund
        (RESTORE) were the member's own before the order and are never clawed back.
        """
        if points <= 0:
            raise ValidationFailed("points to add must be positive", field="points")
        lot = self._add_lot(
            Lot(
                earned_at=earned_at,
                available_at=max(available_at, earned_at),
                expires_at=expires_at,
                original=points,
                remaining=points,
                order_id=order_id if kind is EntryKind.EARN else None,
            )
        )
        out = [
            self._record(
                Entry(
                    kind,
                    points,
                    earned_at,
                    reason,
                    actor,
                    order_id=order_id,
                    refund_id=refund_id,
                    lot=lot,
                )
            )
        ]
        if self.debt > 0:
            settle = min(self.debt, points)
            allocation = self._take(lot, settle)
            self._change_debt(-settle)
            out.append(
                self._record(
                    Entry(
                        EntryKind.DEBT_SETTLE,
                        0,
                        earned_at,
                        f"settles {settle} points of debt",
                        actor,
                        order_id=order_id,
                        allocations=(allocation,),
                        debt_delta=-settle,
                    )
                )
            )
        return out

    def spend(
        self,
        *,
        points: int,
        as_of: datetime,
        reason: str,
        actor: str,
        kind: EntryKind = EntryKind.SPEND,
        order_id: int | None = None,
        also_available_at: datetime | None = None,
        field: str = "points",
    ) -> Entry:
        """Consume available points soonest-expiring first, or raise InsufficientPoints.

        ``also_available_at``: a lot must be available then too. An order dated in the
        past spends only points that were available when it was placed *and* are still
        live now, so a back-dated order cannot revive expired points nor a future-dated
        one spend pending points.
        """
        if points <= 0:
            raise ValidationFailed("points to spend must be positive", field="points")
        moments = [as_of] if also_available_at is None else [as_of, also_available_at]
        spendable = [lot for lot in self.lots if all(lot.is_available(m) for m in moments)]
        available = sum(lot.remaining for lot in spendable)
        if points > available:
            raise InsufficientPoints(requested=points, available=available, field=field)
        allocations, short = self._take_from(spendable, points)
        assert short == 0
        return self._record(
            Entry(
                kind,
                -points,
                as_of,
                reason,
                actor,
                order_id=order_id,
                allocations=tuple(allocations),
            )
        )

    def claw_back(
        self,
        *,
        points: int,
        as_of: datetime,
        policy: ClawbackPolicy,
        reason: str,
        actor: str,
        order_id: int | None,
        refund_id: int | None,
    ) -> Entry:
        """Take back points an order earned: from its own lot, then by policy.

        Whatever cannot be taken becomes a debt; nothing is silently dropped.
        """
        if points <= 0:
            raise ValidationFailed("points to claw back must be positive", field="points")
        own = [
            lot
            for lot in self.lots
            if order_id is not None and lot.order_id == order_id and lot.is_live(as_of)
        ]
        allocations, short = self._take_from(own, points)
        if short and policy is ClawbackPolicy.OTHER_LOTS:
            others = [lot for lot in self.lots if lot.is_live(as_of) and lot not in own]
            more, short = self._take_from(others, short)
            allocations.extend(more)
        self._change_debt(short)
        return self._record(
            Entry(
                EntryKind.CLAWBACK,
                -points,
                as_of,
                reason,
                actor,
                order_id=order_id,
                refund_id=refund_id,
                allocations=tuple(allocations),
                debt_delta=short,
            )
        )

    def expire(self, *, as_of: datetime, actor: str) -> Entry | None:
        """Expire every lot whose expiry has passed; one entry for the whole run."""
        due = [
            lot
            for lot in self.lots
            if lot.remaining > 0 and lot.expires_at is not None and lot.expires_at <= as_of
        ]
        if not due:
            return None
        allocations = [self._take(lot, lot.remaining) for lot in sorted(due, key=consumption_order)]
        total = sum(a.points for a in allocations)
        return self._record(
            Entry(
                EntryKind.EXPIRE,
                -total,
                as_of,
                "points expired",
                actor,
                allocations=tuple(allocations),
            )
        )

    def adjust(
        self,
        *,
        points: int,
        as_of: datetime,
        expires_at: datetime | None,
        reason: str,
        actor: str,
    ) -> list[Entry]:
        """A manual change. Needs a reason and an actor; a deduction never clamps."""
        if not reason.strip():
            raise ValidationFailed("a manual adjustment needs a reason", field="reason")
        if not actor.strip():
            raise ValidationFailed("a manual adjustment needs an actor", field="actor")
        if points == 0:
            raise ValidationFailed("an adjustment of 0 points changes nothing", field="points")
        if points > 0:
            return self.earn(
                points=points,
                earned_at=as_of,
                available_at=as_of,
                expires_at=expires_at,
                reason=reason,
                actor=actor,
                kind=EntryKind.ADJUST,
            )
        return [
            self.spend(
                points=-points, as_of=as_of, reason=reason, actor=actor, kind=EntryKind.ADJUST
            )
        ]


def proportional_share(total: int, part: int, whole: int) -> int:
    """floor(total * part / whole), exact in integers; the full part gives exactly ``total``."""
    if whole <= 0:
        return 0
    return (total * part) // whole
