"""Members: registration, lookup by any identity, the 360 summary, identities and history.

Registration turns a profile (a customer seen in any channel) into a member of a
program, recording the recruitment channel, store and guide. Registering an
already-registered person returns the existing membership (``created`` is false).
A profile id that was merged away resolves to the profile it was merged into.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from quanyu.adapters import tables as t
from quanyu.domain.access import SYSTEM, Principal, mask_identity, mask_key_text, mask_value
from quanyu.domain.errors import AlreadyExists, NotFound, QuanyuError, ValidationFailed
from quanyu.domain.events import HistoryKind
from quanyu.domain.identity import IdentityKey, IdentityType, make_key
from quanyu.domain.orders import IdentityInput, require_aware
from quanyu.services.access import ensure_visible, visible
from quanyu.services.uow import Platform, run
from quanyu.services.working_set import WorkingSet


@dataclass(frozen=True)
class Registration:
    identities: tuple[IdentityInput, ...]
    program: str | None = None
    brand: str | None = None
    channel: str | None = None
    store: str | None = None
    guide: str | None = None
    name: str | None = None
    gender: str | None = None
    birthday: date | None = None
    member_no: str | None = None
    registered_at: datetime | None = None


def apply_registration(ws: WorkingSet, reg: Registration, *, actor: str) -> dict[str, Any]:
    ref = ws.ref
    if not reg.identities:
        raise ValidationFailed("registration needs at least one identity", field="identities")
    at = require_aware(reg.registered_at, "registered_at") if reg.registered_at else ws.now
    program = None
    if reg.program is not None:
        program = next((p for p in ref.programs.values() if p.code == reg.program), None)
        if program is None:
            raise ValidationFailed(f"unknown program {reg.program!r}", field="program")
    store = ref.stores.get(reg.store) if reg.store else None
    if reg.store and store is None:
        raise ValidationFailed(f"unknown store {reg.store!r}", field="store")
    if program is None:
        brand = (
            ref.brands.get(reg.brand)
            if reg.brand
            else (ref.brands_by_id[store.brand_id] if store else None)
        )
        if reg.brand and brand is None:
            raise ValidationFailed(f"unknown brand {reg.brand!r}", field="brand")
        if brand is None and len(ref.programs) == 1:
            program = next(iter(ref.programs.values()))
        elif brand is None:
            raise ValidationFailed("name a program, a brand or a store", field="program")
        else:
            program = ref.programs[brand.program_id]
    channel = ref.channels.get(reg.channel) if reg.channel else None
    if reg.channel and channel is None:
        raise ValidationFailed(f"unknown channel {reg.channel!r}", field="channel")
    guide = ref.guides.get(reg.guide) if reg.guide else None
    if reg.guide and guide is None:
        raise ValidationFailed(f"unknown guide {reg.guide!r}", field="guide")
    keys = [
        make_key(
            i.type, i.value, i.namespace, default_region=ws.default_region, field=f"identities[{n}]"
        )
        for n, i in enumerate(reg.identities)
    ]
    # A member number given at registration is checked, never resolved: a number that
    # belongs to someone else must not pull this person into their account.
    card = (
        make_key(IdentityType.MEMBER_CARD, reg.member_no, field="member_no")
        if (reg.member_no)
        else None
    )
    if card is not None:
        ws.preload_identities([card])
    source = reg.channel or "registration"
    profile = ws.resolve(keys, at=at, source=source, trigger="registration", actor=actor)
    assert profile is not None
    card_owner = ws.owners.get(card) if card is not None else None
    if card is not None and card_owner not in (None, profile.id):
        raise AlreadyExists(f"member number {card.value} is taken", field="member_no")
    if card is not None and card_owner is None and ws.issued_form(card.value):
        raise ValidationFailed(
            f"numbers in the form {card.value} are issued by the platform", field="member_no"
        )
    existing = profile.memberships.get(program.id)
    if existing is not None and existing.status == "active":
        return {
            "member_id": profile.id,
            "member_no": existing.member_no,
            "program": program.code,
            "tier": existing.tier_code,
            "created": False,
        }
    member_no = card.value if card is not None else None
    if (
        member_no
        and ws.conn.execute(
            select(t.memberships.c.id).where(t.memberships.c.member_no == member_no)
        ).first()
    ):
        raise AlreadyExists(f"member number {member_no} is taken", field="member_no")
    membership = ws.new_membership(
        profile,
        program,
        at=at,
        member_no=member_no,
        channel_id=channel.id if channel else None,
        store_id=store.id if store else None,
        guide_id=guide.id if guide else None,
    )
    if card is None or card_owner is None:
        card = make_key(IdentityType.MEMBER_CARD, membership.member_no)
        ws.own(card, profile.id)
        ws.add(
            t.identities,
            {
                "profile_id": profile.id,
                "type": card.type.value,
                "namespace": "",
                "value": card.value,
                "first_seen_at": at,
                "source": source,
            },
        )
    fill = {
        k: v
        for k, v in (
            ("name", reg.name),
            ("gender", reg.gender),
            ("birthday", reg.birthday),
            ("home_store_id", store.id if store else None),
        )
        if v is not None and getattr(profile, k) is None
    }
    if fill:
        buffered = ws.new_profile_rows.get(profile.id)
        if buffered is not None:
            buffered.update(fill)
        else:
            columns = tuple(sorted(fill))
            ws.set_values(
                t.profiles,
                (*columns, "updated_at"),
                profile.id,
                (*(fill[c] for c in columns), ws.now),
            )
        for k, v in fill.items():
            setattr(profile, k, v)
    from quanyu.services.benefits import grant_welcome  # noqa: PLC0415 - benefits uses members

    ws.history(
        profile.id,
        HistoryKind.REGISTERED,
        f"joined {program.code} via {source}",
        {
            "program": program.code,
            "member_no": membership.member_no,
            "channel": reg.channel,
            "store": reg.store,
            "guide": reg.guide,
        },
        actor=actor,
        at=at,
    )
    gifts = grant_welcome(ws, membership, actor=actor)
    return {
        "member_id": profile.id,
        "member_no": membership.member_no,
        "program": program.code,
        "tier": membership.tier_code,
        "created": True,
        **({"welcome_gifts": gifts} if gifts else {}),
    }


def registration_keys(platform: Platform, reg: Registration) -> list[IdentityKey]:
    """The identity keys a registration resolves (errors name the identity)."""
    return [
        make_key(
            i.type,
            i.value,
            i.namespace,
            default_region=platform.default_region,
            field=f"identities[{n}]",
        )
        for n, i in enumerate(reg.identities)
    ]


def register(platform: Platform, reg: Registration, *, actor: str) -> dict[str, Any]:
    return run(platform, lambda ws: apply_registration(ws, reg, actor=actor))


# ---------------------------------------------------------------- queries


def current_profile_id(conn: Connection, profile_id: int) -> int:
    row = conn.execute(
        select(t.profiles.c.status, t.profiles.c.merged_into_id).where(
            t.profiles.c.id == profile_id
        )
    ).first()
    if row is None:
        raise NotFound("member", profile_id)
    return int(row.merged_into_id) if row.status == "merged" else profile_id


def lookup(
    platform: Platform,
    type_: str,
    value: str,
    namespace: str | None = None,
    *,
    principal: Principal = SYSTEM,
) -> int:
    """The member holding an identity, if the principal's scope sees them."""
    if "\x00" in value:
        raise ValidationFailed("an identity holds no NUL character", field="value")
    key = make_key(
        type_, value, namespace, default_region=platform.default_region, field="identity"
    )
    with platform.engine.connect() as conn:
        pid = profile_with(conn, key)
        if not principal.scope.everything and not visible(conn, principal.scope, pid):
            raise NotFound("identity", str(key))
        return pid


def profile_with(conn: Connection, key: IdentityKey, *, entity: str = "identity") -> int:
    """The current profile that owns ``key``; NotFound(``entity``) when none does."""
    pid = conn.execute(
        select(t.identities.c.profile_id).where(
            t.identities.c.type == key.type.value,
            t.identities.c.namespace == key.namespace,
            t.identities.c.value == key.value,
        )
    ).scalar()
    if pid is None:
        raise NotFound(entity, str(key))
    return current_profile_id(conn, int(pid))


def identities_of(
    conn: Connection, profile_id: int, *, masked: bool = False
) -> list[dict[str, Any]]:
    return [
        {
            "type": r.type,
            "namespace": r.namespace or None,
            "value": mask_identity(r.type, r.value) if masked else r.value,
            "first_seen_at": r.first_seen_at,
            "source": r.source,
        }
        for r in conn.execute(
            select(t.identities)
            .where(t.identities.c.profile_id == profile_id)
            .order_by(t.identities.c.id)
        )
    ]


def summary(
    platform: Platform, profile_id: int, *, principal: Principal = SYSTEM
) -> dict[str, Any]:
    """The member 360: profile, identities, memberships with tier and balances, totals.
    Outside the principal's scope the member is not found; phone and e-mail are masked
    for staff and keys (reveal them with :func:`access.reveal`)."""
    from quanyu.services.points import balances  # noqa: PLC0415 - points builds on members

    with platform.engine.connect() as conn:
        pid = ensure_visible(conn, principal.scope, profile_id)
        p = conn.execute(select(t.profiles).where(t.profiles.c.id == pid)).one()
        ref = platform.reference.get(conn)
        memberships = []
        for m in conn.execute(
            select(t.memberships).where(
                t.memberships.c.profile_id == pid, t.memberships.c.status == "active"
            )
        ):
            program = ref.programs[m.program_id]
            memberships.append(
                {
                    "program": program.code,
                    "member_no": m.member_no,
                    "registered_at": m.registered_at,
                    "channel": ref.channels_by_id[m.channel_id].code if m.channel_id else None,
                    "store": ref.stores_by_id[m.store_id].code if m.store_id else None,
                    "guide": ref.guides_by_id[m.guide_id].code if m.guide_id else None,
                    "tier": m.tier_code,
                    "tier_review_on": m.tier_review_on,
                    "points": balances(
                        conn, pid, m.program_id, platform.clock.now(), m.debt_points
                    ),
                }
            )
        stats = conn.execute(
            select(
                func.count(t.orders.c.id),
                func.coalesce(func.sum(t.orders.c.paid_total), 0),
                func.coalesce(func.sum(t.orders.c.refunded_amount), 0),
                func.min(t.orders.c.ordered_at),
                func.max(t.orders.c.ordered_at),
            ).where(t.orders.c.profile_id == pid)
        ).one()
        merged = [
            r.absorbed_id
            for r in conn.execute(
                select(t.merges.c.absorbed_id).where(t.merges.c.survivor_id == pid)
            )
        ]
        return {
            "id": pid,
            "name": p.name,
            "gender": p.gender,
            "birthday": p.birthday,
            "home_store": ref.stores_by_id[p.home_store_id].code if p.home_store_id else None,
            "created_at": p.created_at,
            "is_member": bool(memberships),
            "identities": identities_of(conn, pid, masked=principal.masks_pii),
            "memberships": memberships,
            "orders": {
                "count": stats[0],
                "paid_total": int(stats[1]),
                "refunded_total": int(stats[2]),
                "first_at": stats[3],
                "last_at": stats[4],
            },
            "merged_profiles": merged,
        }


def member_identities(
    platform: Platform, profile_id: int, *, principal: Principal = SYSTEM
) -> list[dict[str, Any]]:
    with platform.engine.connect() as conn:
        pid = ensure_visible(conn, principal.scope, profile_id)
        return identities_of(conn, pid, masked=principal.masks_pii)


def member_history(
    platform: Platform,
    profile_id: int,
    *,
    limit: int = 100,
    before_id: int | None = None,
    principal: Principal = SYSTEM,
) -> list[dict[str, Any]]:
    """Newest first: registrations, orders, refunds, points, tier changes and merges."""
    masked = principal.masks_pii
    with platform.engine.connect() as conn:
        pid = ensure_visible(conn, principal.scope, profile_id)
        query = select(t.history).where(t.history.c.profile_id == pid)
        if before_id is not None:
            query = query.where(t.history.c.id < before_id)
        rows = conn.execute(
            query.order_by(t.history.c.occurred_at.desc(), t.history.c.id.desc()).limit(limit)
        )
        return [
            {
                "id": r.id,
                "kind": r.kind,
                "summary": mask_key_text(r.summary) if masked else r.summary,
                "data": mask_value(r.data) if masked else r.data,
                "actor": r.actor,
                "occurred_at": r.occurred_at,
            }
            for r in rows
        ]


def merges_of(
    platform: Platform, profile_id: int | None = None, *, limit: int = 100
) -> list[dict[str, Any]]:
    with platform.engine.connect() as conn:
        query = select(
            t.merges.c.id,
            t.merges.c.survivor_id,
            t.merges.c.absorbed_id,
            t.merges.c.reason,
            t.merges.c.actor,
            t.merges.c.trigger,
            t.merges.c.merged_at,
        )
        if profile_id is not None:
            pid = current_profile_id(conn, profile_id)
            query = query.where((t.merges.c.survivor_id == pid) | (t.merges.c.absorbed_id == pid))
        return [
            dict(r._mapping)
            for r in conn.execute(query.order_by(t.merges.c.id.desc()).limit(limit))
        ]


def merge_detail(
    platform: Platform, merge_id: int, *, principal: Principal = SYSTEM
) -> dict[str, Any]:
    """A merge with the absorbed member's state before it; phone and e-mail in it are
    masked for staff and keys."""
    with platform.engine.connect() as conn:
        row = conn.execute(select(t.merges).where(t.merges.c.id == merge_id)).first()
        if row is None:
            raise NotFound("merge", merge_id)
        found = dict(row._mapping)
    if principal.masks_pii:
        found["before_state"] = mask_value(found.get("before_state"))
    return found


def register_many(
    platform: Platform, regs: list[Registration], *, actor: str
) -> list[dict[str, Any] | QuanyuError]:
    """Register many people in one transaction; each is accepted or rejected on its own."""
    from quanyu.services.orders import apply_each, run_batch  # noqa: PLC0415

    def apply(
        ws: WorkingSet, items: list[tuple[int, Registration]]
    ) -> list[dict[str, Any] | QuanyuError]:
        ws.preload_identities(
            make_key(i.type, i.value, i.namespace, default_region=ws.default_region)
            for _, r in items
            for i in r.identities
        )
        return apply_each(items, lambda reg: apply_registration(ws, reg, actor=actor))

    def prepare(i: int) -> Registration:
        for n, ident in enumerate(regs[i].identities):
            make_key(
                ident.type,
                ident.value,
                ident.namespace,
                default_region=platform.default_region,
                field=f"identities[{n}]",
            )
        return regs[i]

    return run_batch(platform, len(regs), prepare, apply)
