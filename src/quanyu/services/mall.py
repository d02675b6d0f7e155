"""The points mall: the reward catalogue, redemption windows, and redeeming rewards.

A redemption runs in one transaction: the member's profile is locked (so per-member
limits hold under concurrency), the window, tier and limit rules are checked
(:mod:`quanyu.domain.mall`), stock is taken by an atomic conditional UPDATE, points are
spent through the ledger (soonest-expiring first, the lots recorded on the entry), a
coupon reward's coupons are issued, and the redemption and a history row are written.

Redeeming is idempotent on ``request_key``: the same key with the same payload answers
the first result again (``replayed``: true); with another payload it raises
IdempotencyConflict naming the differing fields. The stored first result is what a
replay answers, even after the redemption was fulfilled or reversed; the redemption's
state now is read from :func:`redemptions`.

A failed fulfilment reverses the redemption: the points come back as RESTORE entries,
one lot per expiry of the lots they came from (:func:`quanyu.domain.mall.restorations`),
and the stock is put back. Ledger entries are only ever appended.

Locks, in this order: a redemption row (fulfil, fail), the member's profile, the
reward's row (stock).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from quanyu.adapters import tables as t
from quanyu.domain.errors import (
    AlreadyExists,
    Conflict,
    IdempotencyConflict,
    LimitReached,
    NotFound,
    ValidationFailed,
)
from quanyu.domain.events import HistoryKind
from quanyu.domain.mall import (
    RedemptionStatus,
    RewardKind,
    RewardStatus,
    Window,
    check_member_limit,
    check_quantity,
    check_tier,
    check_window,
    fulfils,
    initial_status,
    price_for,
    restorations,
    reverses,
    validate_reward,
    validate_window,
)
from quanyu.domain.orders import differences, fingerprint
from quanyu.domain.points import EntryKind
from quanyu.services.coupons import issue_in
from quanyu.services.members import current_profile_id
from quanyu.services.points import _locked_membership, program_named
from quanyu.services.uow import Platform, run
from quanyu.services.working_set import WorkingSet, expiry_for

REWARD_FIELDS = (
    "name",
    "points_price",
    "cash_price",
    "coupon_template",
    "stock",
    "per_member_limit",
    "min_tier_code",
    "status",
)
MAX_REQUEST_KEY = 128


def _iso(value: datetime | None) -> str | None:
    """Timestamps in results as UTC ISO text: a stored first result and a redemption read
    back later must answer alike."""
    return None if value is None else value.astimezone(UTC).isoformat()


# ---------------------------------------------------------------- the catalogue


def _reward_query() -> Any:
    r, ct = t.rewards, t.coupon_templates
    return select(
        r,
        t.programs.c.code.label("program"),
        ct.c.code.label("coupon_template"),
    ).select_from(
        r.join(t.programs, t.programs.c.id == r.c.program_id).outerjoin(
            ct, ct.c.id == r.c.coupon_template_id
        )
    )


def _reward_view(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "code": row.code,
        "program": row.program,
        "name": row.name,
        "kind": row.kind,
        "points_price": row.points_price,
        "cash_price": row.cash_price,
        "coupon_template": row.coupon_template,
        "stock": row.stock,
        "per_member_limit": row.per_member_limit,
        "min_tier_code": row.min_tier_code,
        "status": row.status,
        "created_at": _iso(row.created_at),
    }


def _reward_row(conn: Connection, code: str) -> Row[Any] | None:
    row: Row[Any] | None = conn.execute(_reward_query().where(t.rewards.c.code == code)).first()
    return row


def _template_id(conn: Connection, code: str, program_id: int) -> int:
    row = conn.execute(
        select(t.coupon_templates.c.id, t.coupon_templates.c.program_id).where(
            t.coupon_templates.c.code == code
        )
    ).first()
    if row is None:
        raise ValidationFailed(f"unknown coupon template {code!r}", field="coupon_template")
    if row.program_id != program_id:
        raise ValidationFailed(
            f"coupon template {code} belongs to another program", field="coupon_template"
        )
    return int(row.id)


def _checked(
    platform: Platform, conn: Connection, program_id: int, values: Mapping[str, Any]
) -> dict[str, Any]:
    """The columns of a reward as it will be stored, validated as a whole."""
    try:
        kind = RewardKind(values["kind"])
    except ValueError as exc:
        allowed = ", ".join(k.value for k in RewardKind)
        raise ValidationFailed(f"kind must be one of {allowed}", field="kind") from exc
    try:
        status = RewardStatus(values.get("status") or RewardStatus.ACTIVE)
    except ValueError as exc:
        allowed = ", ".join(s.value for s in RewardStatus)
        raise ValidationFailed(f"status must be one of {allowed}", field="status") from exc
    template = values.get("coupon_template")
    validate_reward(
        kind=kind,
        points_price=values["points_price"],
        cash_price=values.get("cash_price") or 0,
        has_coupon_template=template is not None,
        stock=values.get("stock"),
        per_member_limit=values.get("per_member_limit"),
    )
    min_tier = values.get("min_tier_code")
    program = platform.reference.get(conn).programs[program_id]
    if min_tier is not None and min_tier not in {x.code for x in program.tier_policy.tiers}:
        raise ValidationFailed(
            f"program {program.code} has no tier {min_tier!r}", field="min_tier_code"
        )
    return {
        "name": values["name"],
        "kind": kind.value,
        "points_price": values["points_price"],
        "cash_price": values.get("cash_price") or 0,
        "coupon_template_id": (
            _template_id(conn, template, program_id) if template is not None else None
        ),
        "stock": values.get("stock"),
        "per_member_limit": values.get("per_member_limit"),
        "min_tier_code": min_tier,
        "status": status.value,
    }


def create_reward(
    platform: Platform,
    *,
    code: str,
    name: str,
    kind: str,
    points_price: int,
    program: str | None = None,
    cash_price: int = 0,
    coupon_template: str | None = None,
    stock: int | None = None,
    per_member_limit: int | None = None,
    min_tier_code: str | None = None,
    status: str = RewardStatus.ACTIVE,
) -> dict[str, Any]:
    """Add a reward to a program's catalogue; a coupon reward names its coupon template."""
    try:
        with platform.engine.begin() as conn:
            prog = program_named(platform.reference.get(conn), program)
            values = _checked(
                platform,
                conn,
                prog.id,
                {
                    "name": name,
                    "kind": kind,
                    "points_price": points_price,
                    "cash_price": cash_price,
                    "coupon_template": coupon_template,
                    "stock": stock,
                    "per_member_limit": per_member_limit,
                    "min_tier_code": min_tier_code,
                    "status": status,
                },
            )
            conn.execute(
                insert(t.rewards).values(
                    code=code, program_id=prog.id, created_at=platform.clock.now(), **values
                )
            )
            row = _reward_row(conn, code)
    except IntegrityError as exc:
        raise AlreadyExists(f"reward {code} already exists", field="code") from exc
    assert row is not None
    return _reward_view(row)


def update_reward(platform: Platform, code: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Change a reward; ``values`` holds only what changes (None clears stock, the limit,
    the minimum tier). Its kind and program stay. Stock is set, not added to."""
    unknown = sorted(set(values) - set(REWARD_FIELDS))
    if unknown:
        raise ValidationFailed(f"{unknown[0]} cannot be changed", field=unknown[0])
    with platform.engine.begin() as conn:
        row = _reward_row(conn, code)
        if row is None:
            raise NotFound("reward", code)
        stored = _reward_view(row)
        merged = {**stored, **values}
        for required in ("name", "points_price", "status"):
            if merged[required] is None:
                raise ValidationFailed("cannot be cleared", field=required)
        columns = _checked(platform, conn, row.program_id, merged)
        conn.execute(update(t.rewards).where(t.rewards.c.id == row.id).values(**columns))
        changed = _reward_row(conn, code)
    assert changed is not None
    return _reward_view(changed)


def rewards(
    platform: Platform, *, program: str | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    with platform.engine.connect() as conn:
        query = _reward_query().order_by(t.rewards.c.code)
        if program is not None:
            query = query.where(t.programs.c.code == program)
        if status is not None:
            query = query.where(t.rewards.c.status == status)
        return [_reward_view(r) for r in conn.execute(query)]


# ---------------------------------------------------------------- redemption windows


def _window_view(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "program": row.program,
        "name": row.name,
        "starts_at": _iso(row.starts_at),
        "ends_at": _iso(row.ends_at),
    }


def _window_query() -> Any:
    w = t.redemption_windows
    return select(w, t.programs.c.code.label("program")).join(
        t.programs, t.programs.c.id == w.c.program_id
    )


def create_window(
    platform: Platform,
    *,
    name: str,
    starts_at: datetime,
    ends_at: datetime,
    program: str | None = None,
) -> dict[str, Any]:
    """Restrict a program's redemption to a period (its first window closes all other time)."""
    validate_window(starts_at, ends_at)
    if not name.strip():
        raise ValidationFailed("a window needs a name", field="name")
    with platform.engine.begin() as conn:
        prog = program_named(platform.reference.get(conn), program)
        key = conn.execute(
            insert(t.redemption_windows).values(
                program_id=prog.id, name=name, starts_at=starts_at, ends_at=ends_at
            )
        ).inserted_primary_key
        assert key is not None
        window_id = key[0]
        row = conn.execute(_window_query().where(t.redemption_windows.c.id == window_id)).one()
        return _window_view(row)


def windows(platform: Platform, *, program: str | None = None) -> list[dict[str, Any]]:
    with platform.engine.connect() as conn:
        query = _window_query().order_by(
            t.redemption_windows.c.starts_at, t.redemption_windows.c.id
        )
        if program is not None:
            query = query.where(t.programs.c.code == program)
        return [_window_view(r) for r in conn.execute(query)]


def delete_window(platform: Platform, window_id: int) -> None:
    with platform.engine.begin() as conn:
        gone = conn.execute(
            t.redemption_windows.delete().where(t.redemption_windows.c.id == window_id)
        )
        if gone.rowcount != 1:
            raise NotFound("redemption window", window_id)


def _windows_of(conn: Connection, program_id: int) -> list[Window]:
    w = t.redemption_windows
    return [
        Window(r.name, r.starts_at, r.ends_at)
        for r in conn.execute(
            select(w.c.name, w.c.starts_at, w.c.ends_at).where(w.c.program_id == program_id)
        )
    ]


# ---------------------------------------------------------------- redeeming


def _profile_ids(conn: Connection, profile_id: int) -> list[int]:
    """The profile and every profile merged into it (merges point straight at the survivor)."""
    merged = conn.execute(
        select(t.profiles.c.id).where(t.profiles.c.merged_into_id == profile_id)
    ).scalars()
    return [profile_id, *merged]


def _redeemed_quantity(conn: Connection, reward_id: int, profile_id: int) -> int:
    rr = t.reward_redemptions
    return int(
        conn.execute(
            select(func.coalesce(func.sum(rr.c.quantity), 0)).where(
                rr.c.reward_id == reward_id,
                rr.c.profile_id.in_(_profile_ids(conn, profile_id)),
                rr.c.status != RedemptionStatus.REVERSED.value,
            )
        ).scalar_one()
    )


def _take_stock(conn: Connection, reward_id: int, quantity: int) -> None:
    """Take ``quantity`` from a limited stock atomically, or raise LimitReached."""
    r = t.rewards
    taken = conn.execute(
        update(r)
        .where(r.c.id == reward_id, r.c.stock.is_not(None), r.c.stock >= quantity)
        .values(stock=r.c.stock - quantity)
    )
    if taken.rowcount != 1:
        left = conn.execute(select(r.c.stock).where(r.c.id == reward_id)).scalar()
        raise LimitReached(
            f"only {left} left in stock",
            limit="stock",
            available=left,
            requested=quantity,
            field="quantity",
        )


def _resolved(conn: Connection, profile_id: Any) -> Any:
    try:
        return current_profile_id(conn, int(profile_id))
    except (NotFound, TypeError, ValueError):
        return profile_id


def _replay(
    conn: Connection, request_key: str, fp: str, canonical: dict[str, Any]
) -> dict[str, Any] | None:
    """The first result again for the same payload; None if the key is new."""
    rr = t.reward_redemptions
    stored = conn.execute(
        select(rr.c.fingerprint, rr.c.result).where(rr.c.request_key == request_key)
    ).first()
    if stored is None:
        return None
    first: dict[str, Any] = stored.result
    if stored.fingerprint != fp:
        # Compare members as they stand now: a request naming a member that has since
        # been merged names the same member as one naming the survivor.
        before = {
            "member_id": _resolved(conn, first["member_id"]),
            "reward": first["reward"],
            "quantity": first["quantity"],
        }
        now = {**canonical, "member_id": _resolved(conn, canonical["member_id"])}
        found = differences(before, now)
        if found:
            raise IdempotencyConflict(f"mall redemption {request_key}", found)
    return {**first, "replayed": True}


def _issue_coupons(
    ws: WorkingSet, *, template_id: int, profile_id: int, quantity: int, reason: str, actor: str
) -> list[dict[str, Any]]:
    issued = []
    for _ in range(quantity):
        coupon = issue_in(
            ws,
            template_id=template_id,
            profile_id=profile_id,
            source="mall",
            reason=reason,
            actor=actor,
        )
        issued.append({"coupon_id": int(coupon["coupon_id"]), "code": str(coupon["code"])})
    return issued


def redeem(
    platform: Platform,
    *,
    member_id: int,
    reward: str,
    quantity: int,
    request_key: str,
    actor: str,
) -> dict[str, Any]:
    """Redeem ``quantity`` of a reward for a member, in one transaction; see the module."""
    check_quantity(quantity)
    if not request_key.strip() or len(request_key) > MAX_REQUEST_KEY:
        raise ValidationFailed(
            f"a request key has 1 to {MAX_REQUEST_KEY} characters", field="request_key"
        )
    canonical = {"member_id": member_id, "reward": reward, "quantity": quantity}
    fp = fingerprint(canonical)

    def command(ws: WorkingSet) -> dict[str, Any]:
        conn = ws.conn
        replayed = _replay(conn, request_key, fp, canonical)
        if replayed is not None:
            return replayed
        item = _reward_row(conn, reward)
        if item is None:
            raise ValidationFailed(f"unknown reward {reward!r}", field="reward")
        membership, program = _locked_membership(ws, member_id, item.program)
        pid = membership.profile_id
        if item.status != RewardStatus.ACTIVE:
            raise Conflict(
                f"reward {reward} is {item.status}", reward_status=item.status, field="reward"
            )
        check_window(_windows_of(conn, program.id), ws.now)
        check_tier(program.tier_policy.tiers, membership.tier_code, item.min_tier_code)
        check_member_limit(item.per_member_limit, _redeemed_quantity(conn, item.id, pid), quantity)
        price = price_for(item.points_price, item.cash_price, quantity)
        if item.stock is not None:
            _take_stock(conn, item.id, quantity)
        why = f"points mall: {reward} x{quantity}"
        entry = ws.ledger(membership, complete=True).spend(
            points=price.points, as_of=ws.now, reason=why, actor=actor
        )
        kind = RewardKind(item.kind)
        coupons = (
            _issue_coupons(
                ws,
                template_id=item.coupon_template_id,
                profile_id=pid,
                quantity=quantity,
                reason=why,
                actor=actor,
            )
            if kind is RewardKind.COUPON
            else []
        )
        ws.flush()  # the spend entry (and any coupon) exists before the redemption names it
        assert entry.id is not None
        status = initial_status(kind)
        redemption_id = ws.ids.one(t.reward_redemptions)
        result: dict[str, Any] = {
            "redemption_id": redemption_id,
            "request_key": request_key,
            "member_id": pid,
            "program": program.code,
            "reward": reward,
            "reward_name": item.name,
            "kind": kind.value,
            "quantity": quantity,
            "points": price.points,
            "cash": price.cash,
            "status": status.value,
            "spend_entry_id": entry.id,
            "reversal_entry_id": None,
            "consumed": [
                {"lot_id": a.lot.id, "points": a.points, "expires_at": _iso(a.lot.expires_at)}
                for a in entry.allocations
            ],
            "coupons": coupons,
            "created_at": _iso(ws.now),
            "closed_at": _iso(ws.now) if status is RedemptionStatus.FULFILLED else None,
            "replayed": False,
        }
        conn.execute(
            insert(t.reward_redemptions).values(
                id=redemption_id,
                reward_id=item.id,
                profile_id=pid,
                program_id=program.id,
                request_key=request_key,
                fingerprint=fp,
                quantity=quantity,
                points=price.points,
                cash=price.cash,
                status=status.value,
                spend_entry_id=entry.id,
                reversal_entry_id=None,
                coupon_id=coupons[0]["coupon_id"] if coupons else None,
                result=result,
                actor=actor,
                created_at=ws.now,
                closed_at=ws.now if status is RedemptionStatus.FULFILLED else None,
            )
        )
        ws.history(
            pid,
            HistoryKind.REWARD_REDEEMED,
            f"{item.name} x{quantity} for {price.points} points",
            {
                "redemption_id": redemption_id,
                "reward": reward,
                "kind": kind.value,
                "quantity": quantity,
                "points": price.points,
                "cash": price.cash,
                "status": status.value,
                "coupon_ids": [c["coupon_id"] for c in coupons],
            },
            actor=actor,
            at=ws.now,
        )
        return result

    return run(platform, command)


# ---------------------------------------------------------------- after redeeming


def _redemption_query() -> Any:
    rr = t.reward_redemptions
    return select(
        rr,
        t.rewards.c.code.label("reward"),
        t.rewards.c.name.label("reward_name"),
        t.rewards.c.kind.label("kind"),
        t.programs.c.code.label("program"),
    ).select_from(
        rr.join(t.rewards, t.rewards.c.id == rr.c.reward_id).join(
            t.programs, t.programs.c.id == rr.c.program_id
        )
    )


def _redemption_view(row: Row[Any]) -> dict[str, Any]:
    """A redemption as it stands now, in the shape of the first result."""
    first = row.result
    return {
        "redemption_id": row.id,
        "request_key": row.request_key,
        "member_id": row.profile_id,
        "program": row.program,
        "reward": row.reward,
        "reward_name": row.reward_name,
        "kind": row.kind,
        "quantity": row.quantity,
        "points": row.points,
        "cash": row.cash,
        "status": row.status,
        "spend_entry_id": row.spend_entry_id,
        "reversal_entry_id": row.reversal_entry_id,
        "consumed": first.get("consumed", []),
        "coupons": first.get("coupons", []),
        "created_at": _iso(row.created_at),
        "closed_at": _iso(row.closed_at),
    }


def _locked_redemption(ws: WorkingSet, redemption_id: int) -> Row[Any]:
    query = _redemption_query().where(t.reward_redemptions.c.id == redemption_id)
    if ws.postgres:
        query = query.with_for_update(of=t.reward_redemptions)
    row: Row[Any] | None = ws.conn.execute(query).first()
    if row is None:
        raise NotFound("redemption", redemption_id)
    return row


def redemptions(
    platform: Platform,
    member_id: int,
    *,
    status: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    """A member's redemptions, newest first, with those of profiles merged into it."""
    rr = t.reward_redemptions
    with platform.engine.connect() as conn:
        pid = current_profile_id(conn, member_id)
        query = _redemption_query().where(rr.c.profile_id.in_(_profile_ids(conn, pid)))
        if status is not None:
            query = query.where(rr.c.status == status)
        if before_id is not None:
            query = query.where(rr.c.id < before_id)
        rows = conn.execute(query.order_by(rr.c.id.desc()).limit(limit))
        return [_redemption_view(r) for r in rows]


def redemption(platform: Platform, redemption_id: int) -> dict[str, Any]:
    with platform.engine.connect() as conn:
        row = conn.execute(
            _redemption_query().where(t.reward_redemptions.c.id == redemption_id)
        ).first()
        if row is None:
            raise NotFound("redemption", redemption_id)
        return _redemption_view(row)


def fulfil(platform: Platform, redemption_id: int, *, actor: str) -> dict[str, Any]:
    """Mark a placed redemption delivered. Again: the same answer; reversed: Conflict."""

    def command(ws: WorkingSet) -> dict[str, Any]:
        row = _locked_redemption(ws, redemption_id)
        if fulfils(RedemptionStatus(row.status)):
            ws.conn.execute(
                update(t.reward_redemptions)
                .where(t.reward_redemptions.c.id == redemption_id)
                .values(status=RedemptionStatus.FULFILLED.value, closed_at=ws.now)
            )
            row = _locked_redemption(ws, redemption_id)
        return _redemption_view(row)

    return run(platform, command)


def _reversal_prefix(redemption_id: int) -> str:
    return f"points mall reversal of redemption {redemption_id}:"


def _restored(conn: Connection, row: Row[Any]) -> list[dict[str, Any]]:
    """The RESTORE entries of a reversed redemption, read back from the ledger."""
    if row.reversal_entry_id is None:
        return []
    e, lots = t.points_entries, t.points_lots
    owner = conn.execute(select(e.c.profile_id).where(e.c.id == row.reversal_entry_id)).scalar()
    found = conn.execute(
        select(e.c.id, e.c.points, lots.c.id.label("lot_id"), lots.c.expires_at)
        .join(lots, lots.c.id == e.c.lot_id)
        .where(
            e.c.profile_id == owner,
            e.c.program_id == row.program_id,
            e.c.kind == EntryKind.RESTORE.value,
            e.c.id >= row.reversal_entry_id,
            e.c.reason.startswith(_reversal_prefix(row.id), autoescape=True),
        )
        .order_by(e.c.id)
    )
    return [
        {"entry_id": r.id, "lot_id": r.lot_id, "points": r.points, "expires_at": _iso(r.expires_at)}
        for r in found
    ]


def fail(platform: Platform, redemption_id: int, *, reason: str, actor: str) -> dict[str, Any]:
    """Fulfilment failed: give the points and the stock back and mark the redemption
    reversed. Again: the same answer; a fulfilled redemption: Conflict."""
    if not reason.strip():
        raise ValidationFailed("say why fulfilment failed", field="reason")

    def command(ws: WorkingSet) -> dict[str, Any]:
        conn = ws.conn
        row = _locked_redemption(ws, redemption_id)
        if not reverses(RedemptionStatus(row.status)):
            return {**_redemption_view(row), "restored": _restored(conn, row)}
        program = ws.ref.programs[row.program_id]
        membership, _ = _locked_membership(ws, row.profile_id, program.code)
        a, lots = t.points_allocations, t.points_lots
        consumed = [
            (r.expires_at, int(r.points))
            for r in conn.execute(
                select(lots.c.expires_at, a.c.points)
                .join(lots, lots.c.id == a.c.lot_id)
                .where(a.c.entry_id == row.spend_entry_id)
            )
        ]
        why = f"{_reversal_prefix(row.id)} {row.reward} x{row.quantity}, {reason}"
        ledger = ws.ledger(membership, complete=False)
        made = [
            ledger.earn(
                points=points,
                earned_at=ws.now,
                available_at=ws.now,
                expires_at=expires_at,
                reason=why,
                actor=actor,
                kind=EntryKind.RESTORE,
            )[0]
            for expires_at, points in restorations(
                consumed, as_of=ws.now, fresh=expiry_for(program, ws.now)
            )
        ]
        r = t.rewards
        conn.execute(
            update(r)
            .where(r.c.id == row.reward_id, r.c.stock.is_not(None))
            .values(stock=r.c.stock + row.quantity)
        )
        ws.flush()  # the restore entries exist before the redemption names one
        conn.execute(
            update(t.reward_redemptions)
            .where(t.reward_redemptions.c.id == row.id)
            .values(
                status=RedemptionStatus.REVERSED.value,
                reversal_entry_id=made[0].id if made else None,
                closed_at=ws.now,
            )
        )
        ws.history(
            membership.profile_id,
            HistoryKind.REWARD_REVERSED,
            f"{row.reward_name} x{row.quantity} reversed, {row.points} points returned: {reason}",
            {
                "redemption_id": row.id,
                "reward": row.reward,
                "quantity": row.quantity,
                "points": row.points,
                "reason": reason,
                "entries": [e.id for e in made],
            },
            actor=actor,
            at=ws.now,
        )
        stored = _locked_redemption(ws, redemption_id)
        return {**_redemption_view(stored), "restored": _restored(conn, stored)}

    return run(platform, command)
