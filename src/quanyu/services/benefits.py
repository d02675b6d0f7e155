"""Benefits: define them, grant the gifts when due (welcome on joining; birthday and
member-day gifts by the ``jobs run-due`` job), and answer a member's entitlements.

A grant is a ``benefit_grants`` row, unique per benefit, member and period, written in
the same transaction as the coupon or points it gives. A grant stays with the profile
that received it when profiles merge; the check for an earlier grant reads the
profiles merged into the member too, so a merge never earns a second gift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import extract, select

from quanyu.adapters import tables as t
from quanyu.adapters.reference import ProgramConfig
from quanyu.domain.benefits import (
    Benefit,
    BenefitKind,
    check_benefit,
    period_due,
    priority_window,
)
from quanyu.domain.errors import AlreadyExists, NotFound, ValidationFailed
from quanyu.domain.events import HistoryKind
from quanyu.domain.points import EntryKind
from quanyu.services import coupons
from quanyu.services.members import current_profile_id
from quanyu.services.uow import Platform, run
from quanyu.services.working_set import MembershipState, WorkingSet, expiry_for, local_date

CHUNK = 500


def _benefit(row: Any) -> Benefit:
    return Benefit(
        id=row.id,
        code=row.code,
        kind=BenefitKind(row.kind),
        tier_codes=tuple(row.tier_codes),
        coupon_template_id=row.coupon_template_id,
        points=row.points,
        settings=row.settings,
    )


def _public(row: Any, program_code: str) -> dict[str, Any]:
    return {**dict(row._mapping), "program": program_code}


def create_benefit(platform: Platform, values: Mapping[str, Any]) -> dict[str, Any]:
    from quanyu.services.points import program_named  # noqa: PLC0415 - points imports us

    def command(ws: WorkingSet) -> dict[str, Any]:
        program = program_named(ws.ref, values.get("program"))
        template_id = None
        if values.get("coupon_template"):
            template_id = ws.conn.execute(
                select(t.coupon_templates.c.id).where(
                    t.coupon_templates.c.code == values["coupon_template"],
                    t.coupon_templates.c.program_id == program.id,
                )
            ).scalar()
            if template_id is None:
                raise ValidationFailed(
                    f"no coupon template {values['coupon_template']!r} in {program.code}",
                    field="coupon_template",
                )
        benefit = Benefit(
            id=0,
            code=values["code"],
            kind=BenefitKind(values["kind"]),
            tier_codes=tuple(values.get("tier_codes") or ()),
            coupon_template_id=template_id,
            points=int(values.get("points") or 0),
            settings=dict(values.get("settings") or {}),
        )
        check_benefit(benefit, known_tiers=[x.code for x in program.tier_policy.tiers])
        if ws.conn.execute(
            select(t.benefits.c.id).where(t.benefits.c.code == benefit.code)
        ).first():
            raise AlreadyExists(f"benefit {benefit.code} already exists", field="code")
        ws.conn.execute(
            t.benefits.insert().values(
                program_id=program.id,
                code=benefit.code,
                name=values["name"],
                kind=benefit.kind.value,
                tier_codes=list(benefit.tier_codes),
                coupon_template_id=template_id,
                points=benefit.points,
                settings=dict(benefit.settings),
                status="active",
                created_at=ws.now,
            )
        )
        ws.memo.pop("benefits", None)
        row = ws.conn.execute(select(t.benefits).where(t.benefits.c.code == benefit.code)).one()
        return _public(row, program.code)

    return run(platform, command)


def list_benefits(platform: Platform) -> list[dict[str, Any]]:
    with platform.engine.connect() as conn:
        codes = {r.id: r.code for r in conn.execute(select(t.programs.c.id, t.programs.c.code))}
        return [
            _public(r, codes[r.program_id])
            for r in conn.execute(select(t.benefits).order_by(t.benefits.c.code))
        ]


def _active(ws: WorkingSet) -> dict[int, list[Benefit]]:
    """Active benefits by program, read once per command."""
    cached = ws.memo.get("benefits")
    if cached is None:
        cached = {}
        for r in ws.conn.execute(select(t.benefits).where(t.benefits.c.status == "active")):
            cached.setdefault(r.program_id, []).append(_benefit(r))
        ws.memo["benefits"] = cached
    out: dict[int, list[Benefit]] = cached
    return out


def _granted(ws: WorkingSet, benefit_id: int, profile_id: int, period: str) -> bool:
    merged = [
        r[0]
        for r in ws.conn.execute(
            select(t.profiles.c.id).where(t.profiles.c.merged_into_id == profile_id)
        )
    ]
    g = t.benefit_grants.c
    return (
        ws.conn.execute(
            select(g.id).where(
                g.benefit_id == benefit_id,
                g.profile_id.in_([profile_id, *merged]),
                g.period == period,
            )
        ).first()
        is not None
    )


def _grant(
    ws: WorkingSet,
    benefit: Benefit,
    membership: MembershipState,
    program: ProgramConfig,
    period: str,
    *,
    actor: str,
) -> dict[str, Any] | None:
    """Give the benefit's gift for ``period`` unless it was given already."""
    profile_id = membership.profile_id
    if _granted(ws, benefit.id, profile_id, period):
        return None
    ws.flush()  # the member's rows must exist before a coupon or grant refers to them
    reason = f"benefit {benefit.code} ({benefit.kind.value}, {period})"
    coupon: dict[str, Any] | None = None
    if benefit.coupon_template_id is not None:
        coupon = coupons.issue_in(
            ws,
            template_id=benefit.coupon_template_id,
            profile_id=profile_id,
            source=benefit.kind.value,
            reason=reason,
            actor=actor,
        )
    entry_id = None
    if benefit.points:
        made = ws.ledger(membership, complete=False).earn(
            points=benefit.points,
            earned_at=ws.now,
            available_at=ws.now,
            expires_at=expiry_for(program, ws.now),
            reason=reason,
            actor=actor,
            kind=EntryKind.EARN,
        )
        ws.flush()
        entry_id = next(e.id for e in made if e.kind is EntryKind.EARN)
    ws.conn.execute(
        t.benefit_grants.insert().values(
            benefit_id=benefit.id,
            profile_id=profile_id,
            period=period,
            coupon_id=coupon["coupon_id"] if coupon else None,
            points_entry_id=entry_id,
            actor=actor,
            granted_at=ws.now,
        )
    )
    ws.history(
        profile_id,
        HistoryKind.BENEFIT_GRANTED,
        f"{benefit.kind.value} gift: {benefit.code}",
        {
            "benefit": benefit.code,
            "period": period,
            "coupon": coupon["code"] if coupon else None,
            "points": benefit.points,
        },
        actor=actor,
        at=ws.now,
    )
    return {"benefit": benefit.code, "member_id": profile_id, "period": period}


def grant_welcome(ws: WorkingSet, membership: MembershipState, *, actor: str) -> list[str]:
    """Welcome gifts for a member who has just joined: codes of the benefits given."""
    given = []
    program = ws.ref.programs[membership.program_id]
    for benefit in _active(ws).get(membership.program_id, []):
        if (
            benefit.kind is BenefitKind.WELCOME
            and benefit.applies_to(membership.tier_code)
            and _grant(ws, benefit, membership, program, "once", actor=actor)
        ):
            given.append(benefit.code)
    return given


def grant_due(platform: Platform, *, actor: str = "benefit-job") -> int:
    """Birthday and member-day gifts due today (each program's local date). Returns how
    many were granted; running it again the same day grants nothing more."""
    now = platform.clock.now()
    with platform.engine.connect() as conn:
        ref = platform.reference.get(conn)
        rows = list(conn.execute(select(t.benefits).where(t.benefits.c.status == "active")))
        work: list[tuple[int, Benefit, str, list[int]]] = []
        for r in rows:
            benefit = _benefit(r)
            if benefit.kind not in (BenefitKind.BIRTHDAY, BenefitKind.MEMBER_DAY):
                continue
            today = local_date(now, ref.programs[r.program_id])
            m, p = t.memberships.c, t.profiles.c
            query = (
                select(m.profile_id)
                .join(t.profiles, p.id == m.profile_id)
                .where(m.program_id == r.program_id, m.status == "active")
                .order_by(m.profile_id)
            )
            if benefit.tier_codes:
                query = query.where(m.tier_code.in_(benefit.tier_codes))
            if benefit.kind is BenefitKind.BIRTHDAY:
                query = query.where(extract("month", p.birthday) == today.month)
                period = str(today.year)
            else:
                period = period_due(benefit, today=today, birthday=None) or ""
                if not period:
                    continue
            g = t.benefit_grants.c
            done = select(g.profile_id).where(g.benefit_id == benefit.id, g.period == period)
            query = query.where(m.profile_id.not_in(done))
            work.append((r.program_id, benefit, period, [x[0] for x in conn.execute(query)]))
    granted = 0
    for program_id, benefit, period, profile_ids in work:
        for i in range(0, len(profile_ids), CHUNK):
            part = profile_ids[i : i + CHUNK]

            def command(
                ws: WorkingSet,
                part: Sequence[int] = part,
                benefit: Benefit = benefit,
                period: str = period,
                program_id: int = program_id,
            ) -> int:
                ws.lock_profiles(part)
                ws.load_profiles(part)
                program = ws.ref.programs[program_id]
                n = 0
                for pid in part:
                    membership = ws.profiles[pid].memberships.get(program_id)
                    if membership is None or membership.status != "active":
                        continue
                    if _grant(ws, benefit, membership, program, period, actor=actor):
                        n += 1
                return n

            granted += run(platform, command)
    return granted


def entitlements(platform: Platform, member_id: int, *, sku: str | None = None) -> dict[str, Any]:
    """What the member's tier entitles them to now: benefits, free shipping, early
    access to ``sku``, and the gifts granted so far."""
    now = platform.clock.now()
    with platform.engine.connect() as conn:
        pid = current_profile_id(conn, member_id)
        ref = platform.reference.get(conn)
        memberships = list(
            conn.execute(
                select(t.memberships).where(
                    t.memberships.c.profile_id == pid, t.memberships.c.status == "active"
                )
            )
        )
        if not memberships:
            raise NotFound("membership", pid)
        benefits = {
            r.id: (_benefit(r), r)
            for r in conn.execute(select(t.benefits).where(t.benefits.c.status == "active"))
        }
        merged = [
            r[0]
            for r in conn.execute(select(t.profiles.c.id).where(t.profiles.c.merged_into_id == pid))
        ]
        grants = [
            {
                "benefit": benefits[g.benefit_id][0].code
                if g.benefit_id in benefits
                else g.benefit_id,
                "period": g.period,
                "granted_at": g.granted_at,
            }
            for g in conn.execute(
                select(t.benefit_grants)
                .where(t.benefit_grants.c.profile_id.in_([pid, *merged]))
                .order_by(t.benefit_grants.c.id)
            )
        ]
    programs = []
    for m in memberships:
        program = ref.programs[m.program_id]
        mine = [
            (b, r)
            for b, r in benefits.values()
            if r.program_id == m.program_id and b.applies_to(m.tier_code)
        ]
        early = []
        if sku is not None:
            for b, _ in benefits.values():
                window = priority_window(b, tier_code=m.tier_code, sku=sku, at=now)
                if window is not None:
                    early.append(window)
        programs.append(
            {
                "program": program.code,
                "tier": m.tier_code,
                "free_shipping": any(b.kind is BenefitKind.FREE_SHIPPING for b, _ in mine),
                "member_day_today": any(
                    b.kind is BenefitKind.MEMBER_DAY
                    and period_due(b, today=local_date(now, program), birthday=None)
                    for b, _ in mine
                ),
                "benefits": [
                    {"code": b.code, "name": r.name, "kind": b.kind.value, "settings": b.settings}
                    for b, r in mine
                ],
                "priority_purchase": early,
            }
        )
    return {"member_id": pid, "programs": programs, "grants": grants}
