"""Points: balances, lots, entries, manual adjustments, the expiry job and the ledger check."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, func, select

from quanyu.adapters import tables as t
from quanyu.adapters.reference import ProgramConfig, ReferenceData
from quanyu.domain.errors import NotFound, ValidationFailed
from quanyu.services.access import audit
from quanyu.services.members import current_profile_id
from quanyu.services.uow import Platform, run
from quanyu.services.working_set import MembershipState, WorkingSet, expiry_for

EXPIRING_SOON_DAYS = 30


def balances(
    conn: Connection, profile_id: int, program_id: int, now: datetime, debt: int
) -> dict[str, int]:
    lots = t.points_lots
    live = and_(
        lots.c.profile_id == profile_id,
        lots.c.program_id == program_id,
        lots.c.remaining > 0,
        (lots.c.expires_at.is_(None)) | (lots.c.expires_at > now),
    )
    row = conn.execute(
        select(
            func.coalesce(
                func.sum(case((lots.c.available_at <= now, lots.c.remaining), else_=0)), 0
            ),
            func.coalesce(
                func.sum(case((lots.c.available_at > now, lots.c.remaining), else_=0)), 0
            ),
            func.coalesce(
                func.sum(
                    case(
                        (
                            lots.c.expires_at <= now + timedelta(days=EXPIRING_SOON_DAYS),
                            lots.c.remaining,
                        ),
                        else_=0,
                    )
                ),
                0,
            ),
        ).where(live)
    ).one()
    total = conn.execute(
        select(func.coalesce(func.sum(t.points_entries.c.points), 0)).where(
            t.points_entries.c.profile_id == profile_id, t.points_entries.c.program_id == program_id
        )
    ).scalar_one()
    return {
        "available": int(row[0]),
        "pending": int(row[1]),
        "debt": debt,
        "expiring_soon": int(row[2]),
        "total": int(total),
    }


def _program(platform: Platform, conn: Connection, code: str | None) -> ProgramConfig:
    return program_named(platform.reference.get(conn), code)


def program_named(ref: ReferenceData, code: str | None) -> ProgramConfig:
    """The program with ``code``; with no code, the deployment's only program."""
    if code is None:
        if len(ref.programs) == 1:
            return next(iter(ref.programs.values()))
        raise ValidationFailed("name the program", field="program")
    for program in ref.programs.values():
        if program.code == code:
            return program
    raise ValidationFailed(f"unknown program {code!r}", field="program")


def _membership_row(conn: Connection, profile_id: int, program: ProgramConfig) -> Any:
    row = conn.execute(
        select(t.memberships).where(
            t.memberships.c.profile_id == profile_id,
            t.memberships.c.program_id == program.id,
            t.memberships.c.status == "active",
        )
    ).first()
    if row is None:
        raise NotFound("membership", f"{profile_id}/{program.code}")
    return row


def balance(platform: Platform, profile_id: int, program: str | None = None) -> dict[str, Any]:
    with platform.engine.connect() as conn:
        pid = current_profile_id(conn, profile_id)
        prog = _program(platform, conn, program)
        m = _membership_row(conn, pid, prog)
        return {
            "member_id": pid,
            "program": prog.code,
            **balances(conn, pid, prog.id, platform.clock.now(), m.debt_points),
        }


def lots(
    platform: Platform, profile_id: int, program: str | None = None, *, include_spent: bool = False
) -> list[dict[str, Any]]:
    with platform.engine.connect() as conn:
        pid = current_profile_id(conn, profile_id)
        prog = _program(platform, conn, program)
        _membership_row(conn, pid, prog)
        query = select(t.points_lots).where(
            t.points_lots.c.profile_id == pid, t.points_lots.c.program_id == prog.id
        )
        if not include_spent:
            query = query.where(t.points_lots.c.remaining > 0)
        return [
            dict(r._mapping)
            for r in conn.execute(query.order_by(t.points_lots.c.expires_at, t.points_lots.c.id))
        ]


def entries(
    platform: Platform,
    profile_id: int,
    program: str | None = None,
    *,
    limit: int = 100,
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    with platform.engine.connect() as conn:
        pid = current_profile_id(conn, profile_id)
        prog = _program(platform, conn, program)
        query = select(t.points_entries).where(
            t.points_entries.c.profile_id == pid, t.points_entries.c.program_id == prog.id
        )
        if before_id is not None:
            query = query.where(t.points_entries.c.id < before_id)
        rows = conn.execute(query.order_by(t.points_entries.c.id.desc()).limit(limit)).all()
        ids = [r.id for r in rows]
        allocations: dict[int, list[dict[str, int]]] = {}
        if ids:
            for a in conn.execute(
                select(t.points_allocations).where(t.points_allocations.c.entry_id.in_(ids))
            ):
                allocations.setdefault(a.entry_id, []).append(
                    {"lot_id": a.lot_id, "points": a.points}
                )
        return [{**dict(r._mapping), "allocations": allocations.get(r.id, [])} for r in rows]


def _locked_membership(
    ws: WorkingSet, profile_id: int, program_code: str | None
) -> tuple[MembershipState, ProgramConfig]:
    pid = current_profile_id(ws.conn, profile_id)
    ws.lock_profiles([pid])
    profile = ws.profile(pid)
    program = program_named(ws.ref, program_code)
    membership = profile.memberships.get(program.id)
    if membership is None or membership.status != "active":
        raise NotFound("membership", f"{pid}/{program.code}")
    return membership, program


def adjust(
    platform: Platform,
    profile_id: int,
    *,
    points: int,
    reason: str,
    actor: str,
    program: str | None = None,
) -> dict[str, Any]:
    """A manual change with a reason and an actor; a deduction never clamps."""

    def command(ws: WorkingSet) -> dict[str, Any]:
        membership, prog = _locked_membership(ws, profile_id, program)
        ledger = ws.ledger(membership, complete=points < 0)
        made = ledger.adjust(
            points=points,
            as_of=ws.now,
            expires_at=expiry_for(prog, ws.now),
            reason=reason,
            actor=actor,
        )
        ws.flush()
        audit(
            ws.conn,
            action="points_adjust",
            subject=f"member:{membership.profile_id}",
            detail={"program": prog.code, "points": points, "reason": reason},
            actor=actor,
            at=ws.now,
        )
        return {
            "member_id": membership.profile_id,
            "program": prog.code,
            "points": points,
            "entry_ids": [e.id for e in made],
            **balances(ws.conn, membership.profile_id, prog.id, ws.now, membership.debt),
        }

    return run(platform, command)


def spend(
    platform: Platform,
    profile_id: int,
    *,
    points: int,
    reason: str,
    actor: str,
    program: str | None = None,
) -> dict[str, Any]:
    """Redeem points (soonest-expiring first), e.g. for a reward; raises InsufficientPoints."""

    def command(ws: WorkingSet) -> dict[str, Any]:
        membership, prog = _locked_membership(ws, profile_id, program)
        if not reason.strip():
            raise ValidationFailed("a redemption needs a reason", field="reason")
        entry = ws.ledger(membership, complete=True).spend(
            points=points, as_of=ws.now, reason=reason, actor=actor
        )
        ws.flush()
        return {
            "member_id": membership.profile_id,
            "program": prog.code,
            "entry_id": entry.id,
            "consumed": [{"lot_id": a.lot.id, "points": a.points} for a in entry.allocations],
            **balances(ws.conn, membership.profile_id, prog.id, ws.now, membership.debt),
        }

    return run(platform, command)


def expire_due(platform: Platform, *, actor: str = "expiry-job", chunk: int = 500) -> int:
    """Expire every lot whose expiry has passed. Returns the number of points expired."""
    now = platform.clock.now()
    with platform.engine.connect() as conn:
        owners = [
            (r.profile_id, r.program_id)
            for r in conn.execute(
                select(t.points_lots.c.profile_id, t.points_lots.c.program_id)
                .where(t.points_lots.c.remaining > 0, t.points_lots.c.expires_at <= now)
                .distinct()
            )
        ]
    total = 0
    for i in range(0, len(owners), chunk):
        part = owners[i : i + chunk]

        def command(ws: WorkingSet, part: list[tuple[int, int]] = part) -> int:
            ws.lock_profiles(pid for pid, _ in part)
            ws.load_profiles(pid for pid, _ in part)
            expired = 0
            for pid, program_id in part:
                membership = ws.profiles[pid].memberships.get(program_id)
                if membership is None:
                    continue
                entry = ws.ledger(membership, complete=True).expire(as_of=ws.now, actor=actor)
                expired += -entry.points if entry else 0
            return expired

        total += run(platform, command)
    return total


def check_ledger(platform: Platform) -> list[dict[str, Any]]:
    """Every (member, program) whose entries disagree with its lots and debt, or whose lots
    disagree with their allocations. An empty list proves the ledger consistent."""
    e, lots, m, a = t.points_entries, t.points_lots, t.memberships, t.points_allocations
    with platform.engine.connect() as conn:
        by_entries = {
            (r[0], r[1]): int(r[2])
            for r in conn.execute(
                select(e.c.profile_id, e.c.program_id, func.sum(e.c.points)).group_by(
                    e.c.profile_id, e.c.program_id
                )
            )
        }
        by_lots = {
            (r[0], r[1]): int(r[2])
            for r in conn.execute(
                select(lots.c.profile_id, lots.c.program_id, func.sum(lots.c.remaining)).group_by(
                    lots.c.profile_id, lots.c.program_id
                )
            )
        }
        debts = {
            (r[0], r[1]): int(r[2])
            for r in conn.execute(
                select(m.c.profile_id, m.c.program_id, m.c.debt_points).where(m.c.debt_points != 0)
            )
        }
        problems: list[dict[str, Any]] = []
        for key in sorted(set(by_entries) | set(by_lots) | set(debts)):
            derived = by_lots.get(key, 0) - debts.get(key, 0)
            if by_entries.get(key, 0) != derived:
                problems.append(
                    {
                        "member_id": key[0],
                        "program_id": key[1],
                        "entries": by_entries.get(key, 0),
                        "lots_less_debt": derived,
                    }
                )
        consumed = (
            select(a.c.lot_id, func.sum(a.c.points).label("taken")).group_by(a.c.lot_id).subquery()
        )
        for r in conn.execute(
            select(
                lots.c.id,
                lots.c.profile_id,
                lots.c.original,
                lots.c.remaining,
                func.coalesce(consumed.c.taken, 0),
            )
            .outerjoin(consumed, consumed.c.lot_id == lots.c.id)
            .where(lots.c.original - func.coalesce(consumed.c.taken, 0) != lots.c.remaining)
        ):
            problems.append(
                {
                    "member_id": r[1],
                    "lot_id": r[0],
                    "original": r[2],
                    "remaining": r[3],
                    "allocated": int(r[4]),
                }
            )
        return problems
