"""Tiers: current tier, history, projection, and the review job that moves members down."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import select

from quanyu.adapters import tables as t
from quanyu.adapters.reference import ProgramConfig
from quanyu.domain.errors import ValidationFailed
from quanyu.domain.tiers import next_review, project, review_due, tier_after_review
from quanyu.services.access import audit
from quanyu.services.members import current_profile_id
from quanyu.services.points import _locked_membership, _membership_row, _program
from quanyu.services.uow import Platform, run
from quanyu.services.working_set import WorkingSet, local_date


def current(platform: Platform, profile_id: int, program: str | None = None) -> dict[str, Any]:
    def command(ws: WorkingSet) -> dict[str, Any]:
        membership, prog = _locked_membership(ws, profile_id, program)
        today = local_date(ws.now, prog)
        tier = prog.tier_policy.by_code(membership.tier_code)
        return {
            "member_id": membership.profile_id,
            "program": prog.code,
            "tier": tier.code,
            "name": tier.name,
            "rank": tier.rank,
            "achieved_at": membership.tier_achieved_at,
            "review_on": membership.tier_review_on,
            "metric": prog.tier_policy.metric.value,
            "qualifying_value": ws.qualifying(membership, prog, today),
        }

    return run(platform, command, write=False)


def change(
    platform: Platform,
    profile_id: int,
    *,
    tier: str,
    reason: str,
    actor: str,
    program: str | None = None,
) -> dict[str, Any]:
    """A manual tier change (a VIP grant, a correction): takes effect now, with the next
    review counted from today, a reason and an actor; recorded in the tier history and
    the audit log."""
    reason = reason.strip()
    if not reason:
        raise ValidationFailed("a manual tier change needs a reason", field="reason")
    if len(reason) > 500:
        raise ValidationFailed("a reason is at most 500 characters", field="reason")

    def command(ws: WorkingSet) -> dict[str, Any]:
        membership, prog = _locked_membership(ws, profile_id, program)
        target = next((x for x in prog.tier_policy.tiers if x.code == tier), None)
        if target is None:
            codes = ", ".join(x.code for x in prog.tier_policy.tiers)
            raise ValidationFailed(f"unknown tier {tier!r}; one of {codes}", field="tier")
        before = membership.tier_code
        if target.code == before:
            raise ValidationFailed(f"the member is already {tier}", field="tier")
        value = ws.qualifying(membership, prog, local_date(ws.now, prog))
        ws.set_tier(
            membership,
            prog,
            target,
            at=ws.now,
            reason=f"manual: {reason}",
            value=value,
            actor=actor,
        )
        ws.flush()
        audit(
            ws.conn,
            action="tier_change",
            subject=f"member:{membership.profile_id}",
            detail={"program": prog.code, "from": before, "to": target.code, "reason": reason},
            actor=actor,
            at=ws.now,
        )
        return {
            "member_id": membership.profile_id,
            "program": prog.code,
            "from": before,
            "tier": target.code,
            "review_on": membership.tier_review_on,
        }

    return run(platform, command)


def history(
    platform: Platform, profile_id: int, program: str | None = None
) -> list[dict[str, Any]]:
    with platform.engine.connect() as conn:
        pid = current_profile_id(conn, profile_id)
        prog = _program(platform, conn, program)
        m = _membership_row(conn, pid, prog)
        return [
            dict(r._mapping)
            for r in conn.execute(
                select(t.tier_changes)
                .where(t.tier_changes.c.membership_id == m.id)
                .order_by(t.tier_changes.c.changed_at.desc(), t.tier_changes.c.id.desc())
            )
        ]


def projection(
    platform: Platform, profile_id: int, program: str | None = None, *, by: date | None = None
) -> dict[str, Any]:
    """For every tier: how much more (in the program's metric) is needed by ``by``.

    ``by`` defaults to the day the next review can take effect (the review date plus
    the grace period), the day the review judges qualification on.
    """
    if by is not None and not date(2000, 1, 1) <= by < date(2100, 1, 1):
        raise ValidationFailed("by must fall between 2000 and 2100", field="by")

    def command(ws: WorkingSet) -> dict[str, Any]:
        membership, prog = _locked_membership(ws, profile_id, program)
        target = by or membership.tier_review_on + timedelta(days=prog.tier_policy.grace_days)
        window = prog.tier_policy.window_days
        contributions = ws.contributions_for(
            membership, prog, min(target, local_date(ws.now, prog)) - timedelta(days=window)
        )
        rows = project(prog.tier_policy, contributions=contributions, by=target)
        current_rank = prog.tier_policy.by_code(membership.tier_code).rank
        return {
            "member_id": membership.profile_id,
            "program": prog.code,
            "tier": membership.tier_code,
            "metric": prog.tier_policy.metric.value,
            "by": target,
            "tiers": [
                {
                    "tier": p.tier.code,
                    "name": p.tier.name,
                    "threshold": p.tier.threshold,
                    "qualifying_at_date": p.qualifying_at_date,
                    "needed": p.needed,
                    "reached": p.reached,
                    "goal": "keep"
                    if p.tier.rank == current_rank
                    else ("reach" if p.tier.rank > current_rank else "below"),
                }
                for p in rows
            ],
        }

    return run(platform, command, write=False)


def review_due_tiers(
    platform: Platform, *, actor: str = "tier-review-job", chunk: int = 500
) -> dict[str, int]:
    """Review every membership whose review date plus grace has passed."""
    now = platform.clock.now()
    with platform.engine.connect() as conn:
        ref = platform.reference.get(conn)
        candidates = []
        for program in ref.programs.values():
            today = local_date(now, program)
            latest = today - timedelta(days=program.tier_policy.grace_days)
            candidates += [
                r.profile_id
                for r in conn.execute(
                    select(t.memberships.c.profile_id).where(
                        t.memberships.c.program_id == program.id,
                        t.memberships.c.status == "active",
                        t.memberships.c.tier_review_on <= latest,
                    )
                )
            ]
    counts = {"reviewed": 0, "kept": 0, "downgraded": 0, "upgraded": 0}
    for i in range(0, len(candidates), chunk):
        part = candidates[i : i + chunk]

        def command(ws: WorkingSet, part: list[int] = part) -> None:
            ws.lock_profiles(part)
            ws.load_profiles(part)
            for pid in part:
                for m in ws.profiles[pid].memberships.values():
                    program = ws.ref.programs[m.program_id]
                    policy = program.tier_policy
                    today = local_date(ws.now, program)
                    if m.status != "active" or not review_due(policy, m.tier_review_on, today):
                        continue
                    value = ws.qualifying(m, program, today)
                    before = policy.by_code(m.tier_code)
                    after = tier_after_review(policy, m.tier_code, value)
                    counts["reviewed"] += 1
                    if after.rank == before.rank:
                        counts["kept"] += 1
                        m.tier_review_on = _following(ws, m.tier_review_on, program)
                        ws.mark_dirty(m)
                        continue
                    counts["downgraded" if after.rank < before.rank else "upgraded"] += 1
                    ws.set_tier(
                        m, program, after, at=ws.now, reason="review", value=value, actor=actor
                    )

        run(platform, command)
    return counts


def _following(ws: WorkingSet, review_on: date, program: ProgramConfig) -> date:
    return next_review(program.tier_policy, achieved_on=review_on, after=review_on)
