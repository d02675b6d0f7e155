"""What staff see of members: search by phone, card, name or any identity, and one
timeline across every channel. Both keep to the caller's data scope and mask phone and
e-mail for staff."""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import func, literal, null, select, union_all

from quanyu.adapters import tables as t
from quanyu.domain.access import Principal, mask_identity, mask_key_text, mask_value
from quanyu.domain.errors import ValidationFailed
from quanyu.domain.identity import normalise_phone
from quanyu.services.access import ensure_visible, member_clause
from quanyu.services.uow import Platform

MAX_RESULTS = 50


def search(
    platform: Platform, principal: Principal, text: str, *, limit: int = 20
) -> list[dict[str, Any]]:
    """Members whose phone, member number, card or other identity equals ``text``, or
    whose name starts with it; newest first, within the caller's scope."""
    text = text.strip()
    if not text:
        return []
    if len(text) > 255:
        raise ValidationFailed("search for at most 255 characters", field="q")
    if any(ord(c) < 32 for c in text):
        raise ValidationFailed("search text holds no control characters", field="q")
    limit = max(1, min(limit, MAX_RESULTS))
    values = {text}
    digits = text.replace(" ", "").replace("-", "")
    if digits.lstrip("+").isdigit() and len(digits) >= 7:
        with contextlib.suppress(ValidationFailed):  # not a phone number after all
            values.add(normalise_phone(digits, platform.default_region))
    p, i, m = t.profiles, t.identities, t.memberships
    scoped = member_clause(principal.scope)
    masked = principal.masks_pii
    with platform.engine.connect() as conn:
        ref = platform.reference.get(conn)
        # Exact keys first: an identity (a merged profile's point at the survivor through
        # ``merged_into_id``) or a member number.
        exact = select(func.coalesce(p.c.merged_into_id, p.c.id)).where(
            p.c.id.in_(
                union_all(
                    select(i.c.profile_id).where(i.c.value.in_(sorted(values))),
                    select(m.c.profile_id).where(m.c.member_no == text),
                ).scalar_subquery()
            )
        )
        ids = {int(x) for x in conn.execute(exact).scalars()}
        # Then names that start with the text, newest first, already within the scope;
        # a range rather than LIKE, so that the index on names serves it everywhere.
        ids.update(
            int(x)
            for x in conn.execute(
                select(p.c.id)
                .where(
                    p.c.name >= text,
                    p.c.name < text + "\U0010ffff",
                    p.c.status == "active",
                    scoped,
                )
                # ``id + 0``: sort the name range's matches, rather than walk every
                # profile newest first looking for them (SQLite's choice otherwise).
                .order_by((p.c.id + 0).desc())
                .limit(limit)
            ).scalars()
        )
        rows = (
            conn.execute(
                select(p, m.c.member_no, m.c.tier_code, m.c.registered_at)
                .outerjoin(m, (m.c.profile_id == p.c.id) & (m.c.status == "active"))
                .where(p.c.id.in_(sorted(ids)), p.c.status == "active", scoped)
                .order_by(p.c.id.desc())
                .limit(limit)
            ).all()
            if ids
            else []
        )
        phones: dict[int, str] = {}
        if rows:
            # All their identities, then the phones here: a filter on the type would
            # lead SQLite to read every phone through the identity key's index.
            for r in conn.execute(
                select(i.c.profile_id, i.c.type, i.c.value)
                .where(i.c.profile_id.in_([r.id for r in rows]))
                .order_by(i.c.id)
            ):
                if r.type == "phone":
                    phones.setdefault(r.profile_id, r.value)
    return [
        {
            "id": r.id,
            "name": r.name,
            "member_no": r.member_no,
            "tier": r.tier_code,
            "registered_at": r.registered_at,
            "home_store": ref.stores_by_id[r.home_store_id].code if r.home_store_id else None,
            "phone": (mask_identity("phone", phones[r.id]) if masked else phones[r.id])
            if r.id in phones
            else None,
        }
        for r in rows
    ]


def timeline(
    platform: Platform, principal: Principal, member_id: int, *, limit: int = 50
) -> list[dict[str, Any]]:
    """Newest first: the member's history (registration, orders, refunds, points, tiers,
    merges, mall) and coupon events, from every channel."""
    h, ce, c = t.history, t.coupon_events, t.coupons
    limit = max(1, min(limit, 500))
    with platform.engine.connect() as conn:
        pid = ensure_visible(conn, principal.scope, member_id)
        history = select(
            h.c.kind.label("kind"),
            h.c.summary.label("summary"),
            h.c.data.label("data"),
            h.c.actor.label("actor"),
            h.c.occurred_at.label("occurred_at"),
            h.c.id.label("seq"),
            literal("history").label("source"),
        ).where(h.c.profile_id == pid)
        coupon_events = (
            select(
                (literal("coupon_") + ce.c.kind).label("kind"),
                (c.c.code + literal(": ") + ce.c.reason).label("summary"),
                null().label("data"),
                ce.c.actor.label("actor"),
                ce.c.occurred_at.label("occurred_at"),
                ce.c.id.label("seq"),
                literal("coupon").label("source"),
            )
            .join(c, c.c.id == ce.c.coupon_id)
            .where(c.c.profile_id == pid)
        )
        both = union_all(history, coupon_events).subquery()
        rows = conn.execute(
            select(both).order_by(both.c.occurred_at.desc(), both.c.seq.desc()).limit(limit)
        ).all()
    masked = principal.masks_pii
    return [
        {
            "kind": r.kind,
            "summary": mask_key_text(r.summary) if masked else r.summary,
            "data": mask_value(r.data) if masked else r.data,
            "actor": r.actor,
            "occurred_at": r.occurred_at,
            "source": r.source,
        }
        for r in rows
    ]
