"""The members one transaction touches, with their ledgers, and its buffered writes.

Every command that changes a member works through a WorkingSet: it loads what it
needs in a few set-based queries, applies the pure domain rules in memory and writes
everything back in bulk at :meth:`WorkingSet.flush`. A single order is a batch of
one, so the API, batch ingestion, file import and the demo share this code path.

Locking: on PostgreSQL a member's profile row is locked (``FOR UPDATE``) before any
of its state is read for change; locks are taken in id order. On SQLite the whole
write transaction holds the database lock (``BEGIN IMMEDIATE``).

Merges are rare: pending writes are flushed, the merge is written directly, and the
states of the profiles involved are reloaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, Table, and_, delete, func, or_, select, update

from quanyu.adapters import tables as t
from quanyu.adapters.bulk import BulkWriter
from quanyu.adapters.ids import IdAllocator, SequenceBlocks
from quanyu.adapters.reads import Reader, day, day_or_none, marks
from quanyu.adapters.reference import ProgramConfig, ReferenceData
from quanyu.domain.errors import ValidationFailed
from quanyu.domain.events import HistoryKind
from quanyu.domain.identity import IdentityKey, IdentityType, ProfileRef, plan_resolution
from quanyu.domain.points import Entry, EntryKind, Ledger, Lot
from quanyu.domain.tiers import (
    Tier,
    TierMetric,
    next_review,
    qualifying_value,
    upgrade_for,
)
from quanyu.services.uow import RetryTransaction

SYSTEM = "system"


@dataclass
class MembershipState:
    id: int
    profile_id: int
    program_id: int
    member_no: str
    registered_at: datetime
    tier_code: str
    tier_achieved_at: datetime
    tier_review_on: date
    debt: int
    status: str = "active"
    is_new: bool = False
    dirty: bool = False


@dataclass
class ProfileState:
    id: int
    created_at: datetime
    name: str | None = None
    birthday: date | None = None
    gender: str | None = None
    home_store_id: int | None = None
    status: str = "active"
    memberships: dict[int, MembershipState] = field(default_factory=dict)

    def ref(self) -> ProfileRef:
        active = [m.registered_at for m in self.memberships.values() if m.status == "active"]
        return ProfileRef(
            id=self.id,
            is_member=bool(active),
            registered_at=min(active) if active else None,
            created_at=self.created_at,
        )


@dataclass
class LedgerState:
    membership: MembershipState
    ledger: Ledger
    complete: bool


def local_date(at: datetime, program: ProgramConfig) -> date:
    return at.astimezone(program.tz).date()


def expiry_for(program: ProgramConfig, earned_at: datetime) -> datetime | None:
    """When points earned at ``earned_at`` expire under the program's policy."""
    if program.expiry_kind == "never":
        return None
    if program.expiry_kind == "rolling_days":
        return earned_at + timedelta(days=program.expiry_days or 365)
    # end_of_following_year, in the program's local time
    year = earned_at.astimezone(program.tz).year + 2
    return datetime.combine(date(year, 1, 1), time(0), program.tz).astimezone(UTC)


# The tables a flush inserts into, parents before children.
FLUSHED_TABLES = (
    t.profiles,
    t.identities,
    t.memberships,
    t.orders,
    t.order_lines,
    t.payments,
    t.refunds,
    t.refund_lines,
    t.points_lots,
    t.points_entries,
    t.points_allocations,
    t.tier_changes,
    t.history,
    t.order_flags,
    t.member_tags,
)


class WorkingSet:
    def __init__(
        self,
        conn: Connection,
        ref: ReferenceData,
        now: datetime,
        *,
        default_region: str = "CN",
        id_blocks: SequenceBlocks | None = None,
    ) -> None:
        self.conn = conn
        self.ref = ref
        self.now = now
        self.default_region = default_region
        self.postgres = conn.dialect.name == "postgresql"
        self.ids = IdAllocator(conn, id_blocks)
        self.read = Reader(conn)
        self.owners: dict[IdentityKey, int | None] = {}
        self._keys_of: dict[int, list[IdentityKey]] = {}  # the reverse of ``owners``
        self.profiles: dict[int, ProfileState] = {}
        self.ledgers: dict[int, LedgerState] = {}
        # Ledgers handed out since the last flush: the only ones that can have changed,
        # since callers change a ledger right after taking it. A mid-transaction flush
        # looks at these; the transaction's last flush looks at every ledger.
        self._ledgers_out: dict[int, LedgerState] = {}
        self.contributions: dict[int, tuple[date, list[tuple[date, int]]]] = {}
        self.locked: set[int] = set()
        self._rows: dict[str, list[dict[str, Any]]] = {}
        self._lot_updates: dict[int, Lot] = {}
        self._updates: dict[tuple[Table, tuple[str, ...]], dict[int, tuple[Any, ...]]] = {}
        self._dirty: dict[int, MembershipState] = {}
        self._new_memberships: list[MembershipState] = []
        self.new_profile_rows: dict[int, dict[str, Any]] = {}
        # Reference-like rows a command reads once (benefits by program, ...).
        self.memo: dict[str, Any] = {}

    # ------------------------------------------------------------ buffers

    def add(self, table: Table, row: dict[str, Any]) -> None:
        self._rows.setdefault(table.name, []).append(row)

    def own(self, key: IdentityKey, profile_id: int) -> None:
        """Record that ``key`` belongs to ``profile_id``."""
        self.owners[key] = profile_id
        self._keys_of.setdefault(profile_id, []).append(key)

    def set_values(
        self, table: Table, columns: tuple[str, ...], row_id: int, values: tuple[Any, ...]
    ) -> None:
        """Buffer an update of ``columns`` on one stored row; the last values win."""
        self._updates.setdefault((table, columns), {})[row_id] = values

    def history(
        self,
        profile_id: int,
        kind: HistoryKind,
        summary: str,
        data: dict[str, Any],
        *,
        actor: str,
        at: datetime,
    ) -> None:
        self.add(
            t.history,
            {
                "profile_id": profile_id,
                "kind": kind.value,
                "summary": summary[:500],
                "data": data,
                "actor": actor,
                "occurred_at": at,
            },
        )

    # ------------------------------------------------------------ loading

    def lock_profiles(self, ids: Iterable[int]) -> None:
        """Lock profile rows in id order; a profile merged meanwhile restarts the command."""
        wanted = sorted(set(ids) - self.locked)
        if not wanted:
            return
        if not self.postgres:  # SQLite: BEGIN IMMEDIATE already holds the database lock
            self.locked.update(wanted)
            return
        for chunk in chunks(wanted, 5000):
            rows = self.read.rows(
                f"SELECT id, status FROM profiles WHERE id IN ({marks(len(chunk))}) "
                "ORDER BY id FOR UPDATE",
                chunk,
            )
            self.locked.update(r[0] for r in rows)
            if any(r[1] != "active" for r in rows):
                raise RetryTransaction("a profile was merged while the command ran")

    def load_profiles(self, ids: Iterable[int], *, lock: bool = False) -> None:
        """Load profiles with their memberships; ``lock`` locks them first.

        The lock is its own statement: a joined ``SELECT ... FOR UPDATE OF profiles`` that
        waits for the lock would still return the membership values from before the wait.
        """
        ids = set(ids)
        if lock:
            self.lock_profiles(ids)
        wanted = sorted(i for i in ids if i not in self.profiles)
        if not wanted:
            return
        read = self.read
        for chunk in chunks(wanted, 5000):
            rows = read.rows(
                "SELECT p.id, p.created_at, p.name, p.birthday, p.gender, p.home_store_id, "
                "p.status, m.id, m.program_id, m.member_no, m.registered_at, m.tier_code, "
                "m.tier_achieved_at, m.tier_review_on, m.debt_points, m.status "
                "FROM profiles p LEFT OUTER JOIN memberships m ON m.profile_id = p.id "
                f"WHERE p.id IN ({marks(len(chunk))}) ORDER BY p.id",
                chunk,
            )
            for r in rows:
                (pid, created_at, name, birthday, gender, home_store_id, status) = r[:7]
                state = self.profiles.get(pid)
                if state is None:
                    state = self.profiles[pid] = ProfileState(
                        id=pid,
                        created_at=t.stored_utc(created_at),
                        name=name,
                        birthday=day_or_none(birthday),
                        gender=gender,
                        home_store_id=home_store_id,
                        status=status,
                    )
                if r[7] is not None:
                    state.memberships[r[8]] = MembershipState(
                        id=r[7],
                        profile_id=pid,
                        program_id=r[8],
                        member_no=r[9],
                        registered_at=t.stored_utc(r[10]),
                        tier_code=r[11],
                        tier_achieved_at=t.stored_utc(r[12]),
                        tier_review_on=day(r[13]),
                        debt=r[14],
                        status=r[15],
                    )

    def preload_identities(self, keys: Iterable[IdentityKey]) -> None:
        """Find (and on PostgreSQL lock) the owners of many identities in a few queries."""
        wanted = sorted({k for k in keys if k not in self.owners})
        if not wanted:
            return
        found: set[int] = set()
        # One query per (type, namespace) with a plain IN on values uses the unique index
        # on both databases; PostgreSQL plans a long row-value IN as a scan.
        groups: dict[tuple[str, str], dict[str, IdentityKey]] = {}
        for k in wanted:
            self.owners[k] = None
            groups.setdefault((k.type.value, k.namespace), {})[k.value] = k
        for (type_, namespace), by_value in groups.items():
            values = sorted(by_value)
            for chunk in chunks(values, 2000):
                rows = self.read.rows(
                    "SELECT value, profile_id FROM identities WHERE type = %s "
                    f"AND namespace = %s AND value IN ({marks(len(chunk))})",
                    [type_, namespace, *chunk],
                )
                for value, profile_id in rows:
                    self.own(by_value[value], profile_id)
                    found.add(profile_id)
        self.load_profiles(found, lock=True)

    def profile(self, profile_id: int) -> ProfileState:
        self.load_profiles([profile_id])
        return self.profiles[profile_id]

    # ------------------------------------------------------------ identity resolution

    def issued_form(self, card: str) -> bool:
        """Whether ``card`` has the form of the numbers Quanyu issues (CLUB000000123).

        Such numbers only ever come from :meth:`new_membership`, so a card in that form
        that no one holds is a typo or a forgery, never a number to hand out later.
        """
        for program in self.ref.programs.values():
            prefix = program.code.upper()
            rest = card[len(prefix) :]
            if card.startswith(prefix) and len(rest) >= 9 and rest.isdigit():
                return True
        return False

    def new_profile(self, *, at: datetime, source: str) -> ProfileState:
        pid = self.ids.one(t.profiles)
        state = ProfileState(id=pid, created_at=at)
        self.profiles[pid] = state
        self.locked.add(pid)
        row = {
            "id": pid,
            "status": "active",
            "created_at": at,
            "updated_at": at,
            "name": None,
            "gender": None,
            "birthday": None,
            "home_store_id": None,
            "merged_into_id": None,
        }
        self.new_profile_rows[pid] = row
        self.add(t.profiles, row)
        return state

    def resolve(
        self,
        keys: Sequence[IdentityKey],
        *,
        at: datetime,
        source: str,
        trigger: str,
        actor: str,
    ) -> ProfileState | None:
        """The one profile these identities belong to, creating or merging as needed."""
        if not keys:
            return None
        self.preload_identities(keys)
        # The common case: every identity is already known, all of one profile.
        first = self.owners.get(keys[0])
        if first is not None and all(self.owners.get(k) == first for k in keys[1:]):
            self.lock_profiles((first,))
            return self.profiles[first]
        owners = {
            k: self.profiles[pid].ref() for k in keys if (pid := self.owners.get(k)) is not None
        }
        self.lock_profiles(ref.id for ref in owners.values())
        plan = plan_resolution(keys, owners)
        for key in plan.new_keys:
            if key.type is IdentityType.MEMBER_CARD and self.issued_form(key.value):
                raise ValidationFailed(
                    f"member card {key.value} was never issued", field="identities"
                )
        if plan.survivor is None:
            profile = self.new_profile(at=at, source=source)
            self.history(
                profile.id,
                HistoryKind.PROFILE_CREATED,
                f"first seen in {source}",
                {"identities": [str(k) for k in plan.new_keys], "trigger": trigger},
                actor=actor,
                at=at,
            )
        else:
            profile = self.profiles[plan.survivor.id]
            if plan.absorbed:
                self.merge(
                    profile.id,
                    [p.id for p in plan.absorbed],
                    trigger=trigger,
                    actor=actor,
                    reason="identities in one payload",
                )
                profile = self.profiles[plan.survivor.id]
            if plan.new_keys:
                self.history(
                    profile.id,
                    HistoryKind.IDENTITY_LINKED,
                    ", ".join(str(k) for k in plan.new_keys),
                    {"identities": [str(k) for k in plan.new_keys], "trigger": trigger},
                    actor=actor,
                    at=at,
                )
        for key in plan.new_keys:
            self.own(key, profile.id)
            self.add(
                t.identities,
                {
                    "profile_id": profile.id,
                    "type": key.type.value,
                    "namespace": key.namespace,
                    "value": key.value,
                    "first_seen_at": at,
                    "source": source,
                },
            )
        return profile

    # ------------------------------------------------------------ ledgers

    def ledger(self, membership: MembershipState, *, complete: bool) -> Ledger:
        """The member's ledger; ``complete`` loads every live lot (needed to take points)."""
        state = self.ledgers.get(membership.id)
        if state is None:
            state = LedgerState(
                membership, Ledger(debt=membership.debt), complete=membership.is_new
            )
            self.ledgers[membership.id] = state
        self._ledgers_out[membership.id] = state
        if complete and not state.complete:
            rows = self.conn.execute(
                select(t.points_lots).where(
                    t.points_lots.c.profile_id == membership.profile_id,
                    t.points_lots.c.program_id == membership.program_id,
                    t.points_lots.c.remaining > 0,
                )
            )
            known = {lot.id for lot in state.ledger.lots if lot.id is not None}
            stored = [
                Lot(
                    earned_at=r.earned_at,
                    available_at=r.available_at,
                    expires_at=r.expires_at,
                    original=r.original,
                    remaining=r.remaining,
                    order_id=r.order_id,
                    id=r.id,
                )
                for r in rows
                if r.id not in known
            ]
            state.ledger.lots[:0] = stored
            state.complete = True
        return state.ledger

    def ledger_balance(self, membership: MembershipState) -> int:
        """The balance by the entries, including writes not yet flushed."""
        stored = self.conn.execute(
            select(func.coalesce(func.sum(t.points_entries.c.points), 0)).where(
                t.points_entries.c.profile_id == membership.profile_id,
                t.points_entries.c.program_id == membership.program_id,
            )
        ).scalar_one()
        state = self.ledgers.get(membership.id)
        pending = sum(e.points for e in state.ledger.entries) if state else 0
        return int(stored) + pending

    # ------------------------------------------------------------ tiers

    def contributions_for(
        self, membership: MembershipState, program: ProgramConfig, since: date
    ) -> list[tuple[date, int]]:
        """Dated amounts that count toward the tier metric, from ``since`` on.

        The first load reads the store; later additions are appended in memory. Widening
        the window flushes and reloads, so callers record a contribution *before*
        buffering the change it describes.
        """
        cached = self.contributions.get(membership.id)
        if cached is not None and cached[0] <= since:
            return cached[1]
        if program.tier_policy.metric is TierMetric.SPEND:
            self.preload_contributions([membership], since)
            return self.contributions[membership.id][1]
        if cached is not None:
            self.flush()
        start = datetime.combine(since, time(0), program.tz).astimezone(UTC)
        # Through the order: orders move with a merge, points entries stay put.
        query = (
            select(t.points_entries.c.occurred_at, t.points_entries.c.points)
            .join(t.orders, t.orders.c.id == t.points_entries.c.order_id)
            .where(
                t.orders.c.profile_id == membership.profile_id,
                t.points_entries.c.program_id == membership.program_id,
                t.points_entries.c.kind.in_([EntryKind.EARN.value, EntryKind.CLAWBACK.value]),
                t.points_entries.c.occurred_at >= start,
            )
        )
        out = [(local_date(r[0], program), int(r[1])) for r in self.conn.execute(query)]
        self.contributions[membership.id] = (since, out)
        return out

    def preload_contributions(self, memberships: Sequence[MembershipState], since: date) -> None:
        """Load the spend contributions of many memberships (one program at a time).

        The same rule as :meth:`contributions_for`: a cached list that already covers
        ``since`` is kept; a narrower one is flushed and reloaded."""
        by_program: dict[int, list[MembershipState]] = {}
        for m in memberships:
            cached = self.contributions.get(m.id)
            if cached is None or cached[0] > since:
                by_program.setdefault(m.program_id, []).append(m)
        for program_id, group in by_program.items():
            program = self.ref.programs[program_id]
            if program.tier_policy.metric is not TierMetric.SPEND:
                continue  # points contributions load one member at a time
            start = datetime.combine(since, time(0), program.tz).astimezone(UTC)
            if any(self.contributions.get(m.id) is not None for m in group):
                self.flush()
            found: dict[int, list[tuple[date, int]]] = {m.profile_id: [] for m in group}
            brands = sorted(program.brand_ids)
            # A program with no brand has no qualifying orders (and `IN ()` is not SQL).
            for chunk in chunks(sorted(found) if brands else [], 5000):
                rows = self.read.rows(
                    "SELECT profile_id, ordered_at, paid_total - refunded_amount FROM orders "
                    f"WHERE profile_id IN ({marks(len(chunk))}) "
                    f"AND brand_id IN ({marks(len(brands))}) AND ordered_at >= %s",
                    [*chunk, *brands, self.read.utc_param(start)],
                )
                for r in rows:
                    found[r[0]].append((local_date(t.stored_utc(r[1]), program), int(r[2])))
            for m in group:
                self.contributions[m.id] = (since, found[m.profile_id])

    def contribute(
        self, membership: MembershipState, program: ProgramConfig, day: date, amount: int
    ) -> None:
        contributions = self.contributions_for(
            membership, program, day - timedelta(days=program.tier_policy.window_days)
        )
        contributions.append((day, amount))

    def qualifying(self, membership: MembershipState, program: ProgramConfig, on: date) -> int:
        window = program.tier_policy.window_days
        return qualifying_value(
            self.contributions_for(membership, program, on - timedelta(days=window)), on, window
        )

    def set_tier(
        self,
        membership: MembershipState,
        program: ProgramConfig,
        tier: Tier,
        *,
        at: datetime,
        reason: str,
        value: int,
        actor: str,
        review_on: date | None = None,
    ) -> None:
        before = membership.tier_code
        membership.tier_code = tier.code
        membership.tier_achieved_at = at
        today = local_date(at, program)
        membership.tier_review_on = review_on or next_review(
            program.tier_policy, achieved_on=today, after=today
        )
        self.mark_dirty(membership)
        self.add(
            t.tier_changes,
            {
                "membership_id": membership.id,
                "from_tier": before,
                "to_tier": tier.code,
                "reason": reason,
                "qualifying_value": value,
                "actor": actor,
                "changed_at": at,
            },
        )
        self.history(
            membership.profile_id,
            HistoryKind.TIER_CHANGED,
            f"{before} → {tier.code}: {reason}",
            {"program": program.code, "from": before, "to": tier.code, "qualifying_value": value},
            actor=actor,
            at=at,
        )

    def upgrade_if_qualified(
        self,
        membership: MembershipState,
        program: ProgramConfig,
        *,
        at: datetime,
        reason: str,
        actor: str,
    ) -> Tier | None:
        """Upgrade at once if the member qualifies at ``at`` or today (an order that
        arrives late can complete today's qualification)."""
        value = self.qualifying(membership, program, local_date(at, program))
        when = at
        if self.now > at:
            today = self.qualifying(membership, program, local_date(self.now, program))
            if today > value:
                value, when = today, self.now
        target = upgrade_for(program.tier_policy, membership.tier_code, value)
        if target is not None:
            self.set_tier(
                membership, program, target, at=when, reason=reason, value=value, actor=actor
            )
        return target

    # ------------------------------------------------------------ memberships

    def new_membership(
        self,
        profile: ProfileState,
        program: ProgramConfig,
        *,
        at: datetime,
        member_no: str | None,
        channel_id: int | None,
        store_id: int | None,
        guide_id: int | None,
    ) -> MembershipState:
        mid = self.ids.one(t.memberships)
        entry = program.tier_policy.ladder[0]
        today = local_date(at, program)
        state = MembershipState(
            id=mid,
            profile_id=profile.id,
            program_id=program.id,
            member_no=member_no or f"{program.code.upper()}{mid:09d}",
            registered_at=at,
            tier_code=entry.code,
            tier_achieved_at=at,
            tier_review_on=next_review(program.tier_policy, achieved_on=today, after=today),
            debt=0,
            is_new=True,
        )
        profile.memberships[program.id] = state
        self._new_memberships.append(state)
        self.add(
            t.memberships,
            {
                "id": mid,
                "profile_id": profile.id,
                "program_id": program.id,
                "member_no": state.member_no,
                "status": "active",
                "registered_at": at,
                "channel_id": channel_id,
                "store_id": store_id,
                "guide_id": guide_id,
                "tier_code": state.tier_code,
                "tier_achieved_at": at,
                "tier_review_on": state.tier_review_on,
                "debt_points": 0,
            },
        )
        return state

    # ------------------------------------------------------------ merges

    def merge(
        self,
        survivor_id: int,
        absorbed_ids: Sequence[int],
        *,
        trigger: str,
        actor: str,
        reason: str,
    ) -> None:
        """Merge profiles into the survivor; nothing is lost and the before-state is kept."""
        self.flush()
        self.lock_profiles([survivor_id, *absorbed_ids])
        at = self.now
        for absorbed_id in absorbed_ids:
            self._merge_one(
                survivor_id, absorbed_id, at=at, trigger=trigger, actor=actor, reason=reason
            )
            # The merge was written straight to the store: forget both profiles so the
            # next absorbed profile is merged into the survivor as it now stands.
            self._forget([survivor_id, absorbed_id])
        for absorbed_id in absorbed_ids:  # their identities now load as the survivor's
            for key in self._keys_of.pop(absorbed_id, ()):
                self.owners.pop(key, None)
        self.load_profiles([survivor_id])
        survivor = self.profiles[survivor_id]
        for membership in survivor.memberships.values():
            program = self.ref.programs[membership.program_id]
            self.upgrade_if_qualified(membership, program, at=at, reason="merge", actor=actor)
        # What the re-evaluation buffered is written with the rest of the transaction
        # (every merge starts with a flush, so the next one sees it).

    def _forget(self, profile_ids: Sequence[int]) -> None:
        for pid in profile_ids:
            state = self.profiles.pop(pid, None)
            if state:
                for m in state.memberships.values():
                    ledger = self.ledgers.pop(m.id, None)
                    self._ledgers_out.pop(m.id, None)
                    if ledger is not None and _changed(ledger):  # never drop points
                        raise RuntimeError(f"unwritten ledger changes of membership {m.id}")
                    self.contributions.pop(m.id, None)
                    self._dirty.pop(m.id, None)

    def _merge_one(
        self,
        survivor_id: int,
        absorbed_id: int,
        *,
        at: datetime,
        trigger: str,
        actor: str,
        reason: str,
    ) -> None:
        conn = self.conn
        before = _snapshot(conn, [survivor_id, absorbed_id])
        merge_id = self.ids.one(t.merges)
        conn.execute(
            t.merges.insert().values(
                id=merge_id,
                survivor_id=survivor_id,
                absorbed_id=absorbed_id,
                reason=reason,
                actor=actor,
                trigger=trigger,
                before_state=before,
                merged_at=at,
            )
        )
        survivor = self.profile(survivor_id)
        absorbed = self.profile(absorbed_id)
        # Profile attributes the survivor lacks come from the absorbed profile.
        fill = {
            name: getattr(absorbed, name)
            for name in ("name", "birthday", "gender", "home_store_id")
            if getattr(survivor, name) is None and getattr(absorbed, name) is not None
        }
        if fill:
            conn.execute(update(t.profiles).where(t.profiles.c.id == survivor_id).values(**fill))
        # Benefit grants stay with the profile that got them: a grant is once per member
        # and period, and the benefit check reads the profiles merged into a member too.
        for table in (
            t.identities,
            t.orders,
            t.points_lots,
            t.history,
            t.coupons,
            t.coupon_redemptions,
            t.coupon_events,
            t.reward_redemptions,
            t.consents,
            t.touchpoints,
        ):
            conn.execute(
                update(table)
                .where(table.c.profile_id == absorbed_id)
                .values(profile_id=survivor_id)
            )
        # Tags are derived: the survivor keeps its own, takes those it lacks (a real-time
        # tag exists only until the next run otherwise), and the next batch run recomputes
        # them from the merged facts. Segment membership is recomputed by the next snapshot.
        survivor_tags = select(t.member_tags.c.tag).where(t.member_tags.c.profile_id == survivor_id)
        conn.execute(
            delete(t.member_tags).where(
                t.member_tags.c.profile_id == absorbed_id, t.member_tags.c.tag.in_(survivor_tags)
            )
        )
        conn.execute(
            update(t.member_tags)
            .where(t.member_tags.c.profile_id == absorbed_id)
            .values(profile_id=survivor_id)
        )
        conn.execute(delete(t.segment_members).where(t.segment_members.c.profile_id == absorbed_id))
        conn.execute(
            update(t.profiles)
            .where(t.profiles.c.merged_into_id == absorbed_id)
            .values(merged_into_id=survivor_id)
        )
        conn.execute(
            update(t.profiles)
            .where(t.profiles.c.id == absorbed_id)
            .values(status="merged", merged_into_id=survivor_id, updated_at=at)
        )
        # Points move with their lots; each program's balance is transferred by a pair of
        # entries so both profiles' entries still add up to their lots less debt.
        programs = {
            r.program_id
            for r in conn.execute(
                select(t.points_entries.c.program_id)
                .where(t.points_entries.c.profile_id == absorbed_id)
                .distinct()
            )
        }
        programs |= set(absorbed.memberships)
        for program_id in sorted(programs):
            balance = int(
                conn.execute(
                    select(func.coalesce(func.sum(t.points_entries.c.points), 0)).where(
                        t.points_entries.c.profile_id == absorbed_id,
                        t.points_entries.c.program_id == program_id,
                    )
                ).scalar_one()
            )
            gone = absorbed.memberships.get(program_id)
            kept = survivor.memberships.get(program_id)
            debt = gone.debt if gone else 0
            if balance or debt:
                for pid, kind, pts in (
                    (absorbed_id, EntryKind.MERGE_OUT, -balance),
                    (survivor_id, EntryKind.MERGE_IN, balance),
                ):
                    conn.execute(
                        t.points_entries.insert().values(
                            id=self.ids.one(t.points_entries),
                            profile_id=pid,
                            program_id=program_id,
                            kind=kind.value,
                            points=pts,
                            debt_delta=(-debt if pid == absorbed_id else debt),
                            merge_id=merge_id,
                            reason=f"merge of profile {absorbed_id} into {survivor_id}",
                            actor=actor,
                            occurred_at=at,
                            recorded_at=self.now,
                        )
                    )
            if gone is None:
                continue
            if kept is None:
                conn.execute(
                    update(t.memberships)
                    .where(t.memberships.c.id == gone.id)
                    .values(profile_id=survivor_id)
                )
                continue
            program = self.ref.programs[program_id]
            gone_rank = program.tier_policy.by_code(gone.tier_code).rank
            keep_rank = program.tier_policy.by_code(kept.tier_code).rank
            values: dict[str, Any] = {"debt_points": kept.debt + debt}
            if gone_rank > keep_rank:  # the higher of the two tiers is kept
                values.update(
                    tier_code=gone.tier_code,
                    tier_achieved_at=gone.tier_achieved_at,
                    tier_review_on=gone.tier_review_on,
                )
                conn.execute(
                    t.tier_changes.insert().values(
                        membership_id=kept.id,
                        from_tier=kept.tier_code,
                        to_tier=gone.tier_code,
                        reason="merge",
                        qualifying_value=0,
                        actor=actor,
                        changed_at=at,
                    )
                )
            conn.execute(
                update(t.memberships).where(t.memberships.c.id == kept.id).values(**values)
            )
            conn.execute(
                update(t.memberships)
                .where(t.memberships.c.id == gone.id)
                .values(status="merged", debt_points=0)
            )
        summary = f"profile {absorbed_id} merged into {survivor_id} ({trigger})"
        for pid in (survivor_id, absorbed_id):
            conn.execute(
                t.history.insert().values(
                    profile_id=pid,
                    kind=HistoryKind.MERGED.value,
                    summary=summary,
                    data={
                        "merge_id": merge_id,
                        "survivor": survivor_id,
                        "absorbed": absorbed_id,
                        "trigger": trigger,
                    },
                    actor=actor,
                    occurred_at=at,
                )
            )

    def mark_dirty(self, membership: MembershipState) -> None:
        membership.dirty = True
        self._dirty[membership.id] = membership

    # ------------------------------------------------------------ flushing

    def flush(self, *, final: bool = False) -> None:
        """Write every buffered row and every changed ledger, lot and membership.

        ``final`` (the end of the transaction) checks every ledger: a ledger changed
        without being taken from :meth:`ledger` since the last flush breaks the rule
        that mid-transaction flushes rely on, and fails the command (nothing is
        written) rather than let a read in between have missed it."""
        if final:
            stray = [
                key
                for key, state in self.ledgers.items()
                if key not in self._ledgers_out and _changed(state)
            ]
            if stray:
                raise RuntimeError(f"ledgers changed outside WorkingSet.ledger(): {stray}")
        self._flush_ledgers()
        dirty = [m for m in self._dirty.values() if m.dirty]
        self._dirty.clear()
        largest = max([len(rows) for rows in self._rows.values()] + [len(self._lot_updates)])
        with BulkWriter(self.conn, largest=largest) as writer:
            for table in FLUSHED_TABLES:
                rows = self._rows.pop(table.name, None)
                if rows:
                    writer.insert(table, rows)
            if self._lot_updates:
                writer.update(
                    t.points_lots,
                    ("remaining",),
                    [(lot.remaining, lot.id) for lot in self._lot_updates.values()],
                )
                self._lot_updates.clear()
            for (table, columns), by_id in self._updates.items():
                writer.update(table, columns, [(*values, i) for i, values in by_id.items()])
            self._updates.clear()
            if dirty:
                writer.update(
                    t.memberships,
                    ("tier_code", "tier_achieved_at", "tier_review_on", "debt_points"),
                    [
                        (m.tier_code, m.tier_achieved_at, m.tier_review_on, m.debt, m.id)
                        for m in dirty
                    ],
                )
        for m in dirty:
            m.dirty = False
        for m in self._new_memberships:
            m.is_new = False
        self._new_memberships.clear()
        self.new_profile_rows.clear()

    def _flush_ledgers(self) -> None:
        """Turn the changes of the ledgers handed out since the last flush into rows."""
        states = [(s.membership, s) for s in self._ledgers_out.values() if _changed(s)]
        self._ledgers_out.clear()
        if not states:
            return
        new_lots = [lot for _, s in states for lot in s.ledger.new_lots]
        for lot, lot_id in zip(new_lots, self.ids.take(t.points_lots, len(new_lots)), strict=True):
            lot.id = lot_id
        entries = [e for _, s in states for e in s.ledger.entries]
        entry_ids = self.ids.take(t.points_entries, len(entries))
        for entry, entry_id in zip(entries, entry_ids, strict=True):
            entry.id = entry_id
        for m, state in states:
            ledger = state.ledger
            for lot in ledger.new_lots:
                self.add(
                    t.points_lots,
                    {
                        "id": lot.id,
                        "profile_id": m.profile_id,
                        "program_id": m.program_id,
                        "order_id": lot.order_id,
                        "earned_at": lot.earned_at,
                        "available_at": lot.available_at,
                        "expires_at": lot.expires_at,
                        "original": lot.original,
                        "remaining": lot.remaining,
                    },
                )
            for lot in ledger.dirty_lots:
                assert lot.id is not None
                self._lot_updates[lot.id] = lot
            for entry in ledger.entries:
                self.add(t.points_entries, _entry_row(entry, m, self.now))
                for alloc in entry.allocations:
                    self.add(
                        t.points_allocations,
                        {"entry_id": entry.id, "lot_id": alloc.lot.id, "points": alloc.points},
                    )
            if ledger.debt_changed:
                m.debt = ledger.debt
                self.mark_dirty(m)
            if ledger.entries:
                total = sum(e.points for e in ledger.entries)
                first = ledger.entries[0]
                self.history(
                    m.profile_id,
                    HistoryKind.POINTS_CHANGED,
                    "; ".join(f"{e.points:+d} {e.reason}" for e in ledger.entries)[:500],
                    {
                        "program_id": m.program_id,
                        "points": total,
                        "entries": [e.id for e in ledger.entries],
                    },
                    actor=first.actor,
                    at=first.occurred_at,
                )
            ledger.entries.clear()
            ledger.new_lots.clear()
            ledger.dirty_lots.clear()
            ledger.debt_changed = False


def _changed(state: LedgerState) -> bool:
    ledger = state.ledger
    return bool(ledger.entries or ledger.new_lots or ledger.dirty_lots)


def _entry_row(entry: Entry, m: MembershipState, now: datetime) -> dict[str, Any]:
    return {
        "id": entry.id,
        "profile_id": m.profile_id,
        "program_id": m.program_id,
        "kind": entry.kind.value,
        "points": entry.points,
        "debt_delta": entry.debt_delta,
        "lot_id": entry.lot.id if entry.lot else None,
        "order_id": entry.order_id,
        "refund_id": entry.refund_id,
        "merge_id": None,
        "reason": entry.reason[:500],
        "actor": entry.actor,
        "occurred_at": entry.occurred_at,
        "recorded_at": now,
    }


def _snapshot(conn: Connection, profile_ids: Sequence[int]) -> dict[str, Any]:
    """The full before-state of the profiles in a merge, enough to undo it."""

    def rows(table: Table, *conds: Any) -> list[dict[str, Any]]:
        return [
            {k: _jsonable(v) for k, v in r._mapping.items()}
            for r in conn.execute(select(table).where(or_(*conds)).order_by(table.c.id))
        ]

    ids = list(profile_ids)
    return {
        "profiles": rows(t.profiles, t.profiles.c.id.in_(ids)),
        "identities": rows(t.identities, t.identities.c.profile_id.in_(ids)),
        "memberships": rows(t.memberships, t.memberships.c.profile_id.in_(ids)),
        "lots": rows(
            t.points_lots, and_(t.points_lots.c.profile_id.in_(ids), t.points_lots.c.remaining > 0)
        ),
        "order_owners": {
            str(r.id): r.profile_id
            for r in conn.execute(
                select(t.orders.c.id, t.orders.c.profile_id).where(t.orders.c.profile_id.in_(ids))
            )
        },
        "coupon_owners": {
            str(r.id): r.profile_id
            for r in conn.execute(
                select(t.coupons.c.id, t.coupons.c.profile_id).where(
                    t.coupons.c.profile_id.in_(ids)
                )
            )
        },
        "lot_owners": {
            str(r.id): r.profile_id
            for r in conn.execute(
                select(t.points_lots.c.id, t.points_lots.c.profile_id).where(
                    t.points_lots.c.profile_id.in_(ids)
                )
            )
        },
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "as_tuple"):  # Decimal
        return str(value)
    return value


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
