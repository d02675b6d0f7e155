"""Coupons: templates, issuing (to members, in batches, as printable codes), and
redemption (核销): validate against a basket, reserve at checkout, confirm bound to an
order, release on cancel or timeout, return on a full refund.

Every change of a coupon is a ``coupon_events`` row with a reason and an actor, written
in the same transaction. Limits and budgets are counters on the template, moved by
conditional UPDATEs (``... WHERE redeemed_count + 1 <= total_limit``), so concurrent
checkouts on PostgreSQL cannot pass a limit; CHECK constraints back them up. A
reservation counts toward the limits until it is released or returned. A template
with no total limit and no discount budget keeps no redemption counters: updating
them would make every checkout of the campaign queue on its row. Reports count
redemptions from the events instead.

Reservations are idempotent on (channel, order id): the same request again answers the
first result; a different one for a live reservation is a conflict.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, Table, func, select, update

from quanyu.adapters import tables as t
from quanyu.adapters.bulk import BulkWriter
from quanyu.adapters.reference import ReferenceData
from quanyu.domain.assortment import AssortmentStatus
from quanyu.domain.coupons import (
    Basket,
    BasketLine,
    CouponEventKind,
    CouponKind,
    CouponStatus,
    CouponView,
    Quote,
    RedemptionStatus,
    Template,
    can_issue,
    check_template,
    new_code,
    normalise_code,
    quote,
    scope_from_document,
    validity,
)
from quanyu.domain.errors import (
    AlreadyExists,
    Conflict,
    CouponNotApplicable,
    CouponUnavailable,
    IdempotencyConflict,
    LimitReached,
    NotFound,
    ValidationFailed,
)
from quanyu.domain.events import HistoryKind
from quanyu.domain.identity import make_key
from quanyu.domain.orders import fingerprint
from quanyu.services.members import current_profile_id, profile_with
from quanyu.services.uow import Platform, run
from quanyu.services.working_set import WorkingSet, chunks

UNCATEGORISED = "uncategorised"
MAX_BATCH = 200_000
LIVE = (RedemptionStatus.RESERVED.value, RedemptionStatus.CONFIRMED.value)

# ---------------------------------------------------------------- templates


def _template(row: Any) -> Template:
    return Template(
        id=row.id,
        code=row.code,
        name=row.name,
        kind=CouponKind(row.kind),
        value=row.value,
        min_spend=row.min_spend,
        max_discount=row.max_discount,
        gift_sku=row.gift_sku,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        valid_days=row.valid_days,
        scope=scope_from_document(row.scope),
        stack_group=row.stack_group,
        per_member_limit=row.per_member_limit,
        total_limit=row.total_limit,
        max_issued=row.max_issued,
        max_discount_total=row.max_discount_total,
        active=row.status == "active",
    )


def _template_public(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    out["program_id"] = row.program_id
    return out


def _program_id(ref: ReferenceData, code: str | None) -> int:
    from quanyu.services.points import program_named  # noqa: PLC0415 - points imports us

    return program_named(ref, code).id


def create_template(platform: Platform, values: Mapping[str, Any], *, actor: str) -> dict[str, Any]:
    """Store a coupon template after checking its rules."""

    def command(ws: WorkingSet) -> dict[str, Any]:
        program_id = _program_id(ws.ref, values.get("program"))
        scope = scope_from_document(values.get("scope"))
        kind = CouponKind(values["kind"])
        tpl = Template(
            id=0,
            code=values["code"],
            name=values["name"],
            kind=kind,
            value=int(values.get("value") or 0),
            min_spend=int(values.get("min_spend") or 0),
            max_discount=values.get("max_discount"),
            gift_sku=values.get("gift_sku"),
            valid_from=values.get("valid_from"),
            valid_until=values.get("valid_until"),
            valid_days=values.get("valid_days"),
            scope=scope,
            stack_group=values.get("stack_group"),
            per_member_limit=values.get("per_member_limit"),
            total_limit=values.get("total_limit"),
            max_issued=values.get("max_issued"),
            max_discount_total=values.get("max_discount_total"),
        )
        check_template(tpl)
        exists = ws.conn.execute(
            select(t.coupon_templates.c.id).where(t.coupon_templates.c.code == tpl.code)
        ).first()
        if exists:
            raise AlreadyExists(f"coupon template {tpl.code} already exists", field="code")
        ws.conn.execute(
            t.coupon_templates.insert().values(
                program_id=program_id,
                code=tpl.code,
                name=tpl.name,
                kind=kind.value,
                value=tpl.value,
                max_discount=tpl.max_discount,
                min_spend=tpl.min_spend,
                gift_sku=tpl.gift_sku,
                valid_from=tpl.valid_from,
                valid_until=tpl.valid_until,
                valid_days=tpl.valid_days,
                scope=scope.to_document(),
                stack_group=tpl.stack_group,
                per_member_limit=tpl.per_member_limit,
                total_limit=tpl.total_limit,
                max_issued=tpl.max_issued,
                max_discount_total=tpl.max_discount_total,
                status="active",
                created_at=ws.now,
                created_by=actor,
            )
        )
        return _template_public(_template_row(ws.conn, tpl.code))

    return run(platform, command)


def _template_row(conn: Connection, code: str, *, lock: bool = False) -> Any:
    query = select(t.coupon_templates).where(t.coupon_templates.c.code == code)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFound("coupon template", code)
    return row


def get_template(platform: Platform, code: str) -> dict[str, Any]:
    with platform.engine.connect() as conn:
        return _template_public(_template_row(conn, code))


def list_templates(platform: Platform) -> list[dict[str, Any]]:
    with platform.engine.connect() as conn:
        return [
            _template_public(r)
            for r in conn.execute(select(t.coupon_templates).order_by(t.coupon_templates.c.code))
        ]


def set_template_status(platform: Platform, code: str, *, active: bool) -> dict[str, Any]:
    """Pause a template (no issuing, no redemption) or resume it."""

    def command(ws: WorkingSet) -> dict[str, Any]:
        row = _template_row(ws.conn, code, lock=True)
        ws.conn.execute(
            update(t.coupon_templates)
            .where(t.coupon_templates.c.id == row.id)
            .values(status="active" if active else "paused")
        )
        return _template_public(_template_row(ws.conn, code))

    return run(platform, command)


# ---------------------------------------------------------------- issuing


def _insert(ws: WorkingSet, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        with BulkWriter(ws.conn, largest=len(rows)) as writer:
            writer.insert(table, rows)


def _take_issue_budget(ws: WorkingSet, tpl: Template, n: int) -> None:
    """Count ``n`` more coupons issued, atomically within the template's issue budget."""
    c = t.coupon_templates.c
    done = ws.conn.execute(
        update(t.coupon_templates)
        .where(c.id == tpl.id, (c.max_issued.is_(None)) | (c.issued_count + n <= c.max_issued))
        .values(issued_count=c.issued_count + n)
    ).rowcount
    if done != 1:
        left = ws.conn.execute(select(c.max_issued - c.issued_count).where(c.id == tpl.id))
        raise LimitReached(
            f"coupon template {tpl.code} has {left.scalar_one()} coupons left to issue, {n} asked",
            limit="issue_budget",
            template=tpl.code,
        )


def _issue(
    ws: WorkingSet,
    tpl: Template,
    owners: Sequence[int | None],
    *,
    source: str,
    reason: str,
    actor: str,
    batch_id: int | None = None,
) -> list[dict[str, Any]]:
    """Issue one coupon per entry of ``owners`` (None: an unclaimed code)."""
    can_issue(tpl, ws.now)
    _take_issue_budget(ws, tpl, len(owners))
    valid_from, valid_until = validity(tpl, ws.now)
    ids = ws.ids.take(t.coupons, len(owners))
    coupons: list[dict[str, Any]] = [
        {
            "id": coupon_id,
            "template_id": tpl.id,
            "profile_id": owner,
            "code": new_code(),
            "status": CouponStatus.AVAILABLE.value,
            "valid_from": valid_from,
            "valid_until": valid_until,
            "batch_id": batch_id,
            "source": source,
            "issued_at": ws.now,
        }
        for coupon_id, owner in zip(ids, owners, strict=True)
    ]
    _insert(ws, t.coupons, coupons)
    _insert(
        ws,
        t.coupon_events,
        [
            _event(
                ws,
                c["id"],
                tpl.id,
                c["profile_id"],
                CouponEventKind.ISSUED,
                reason=reason,
                actor=actor,
            )
            for c in coupons
        ],
    )
    _insert(
        ws,
        t.history,
        [
            {
                "profile_id": c["profile_id"],
                "kind": HistoryKind.COUPON_ISSUED.value,
                "summary": f"coupon {tpl.code} issued: {reason}"[:500],
                "data": {"coupon_id": c["id"], "template": tpl.code, "source": source},
                "actor": actor,
                "occurred_at": ws.now,
            }
            for c in coupons
            if c["profile_id"] is not None
        ],
    )
    return coupons


def _event(
    ws: WorkingSet,
    coupon_id: int,
    template_id: int,
    profile_id: int | None,
    kind: CouponEventKind,
    *,
    reason: str,
    actor: str,
    redemption_id: int | None = None,
    channel_id: int | None = None,
    store_id: int | None = None,
    order_external_id: str | None = None,
    discount: int = 0,
) -> dict[str, Any]:
    return {
        "id": ws.ids.one(t.coupon_events),
        "coupon_id": coupon_id,
        "template_id": template_id,
        "profile_id": profile_id,
        "kind": kind.value,
        "redemption_id": redemption_id,
        "channel_id": channel_id,
        "store_id": store_id,
        "order_external_id": order_external_id,
        "discount": discount,
        "reason": reason[:500],
        "actor": actor,
        "occurred_at": ws.now,
    }


def issue_in(
    ws: WorkingSet,
    *,
    template_id: int,
    profile_id: int,
    source: str,
    reason: str,
    actor: str,
) -> dict[str, Any]:
    """Issue one coupon to a member inside a running command (points mall, benefits)."""
    row = ws.conn.execute(
        select(t.coupon_templates).where(t.coupon_templates.c.id == template_id)
    ).first()
    if row is None:
        raise NotFound("coupon template", template_id)
    coupon = _issue(ws, _template(row), [profile_id], source=source, reason=reason, actor=actor)[0]
    return _coupon_public(coupon, row.code)


def _coupon_public(c: Mapping[str, Any], template_code: str) -> dict[str, Any]:
    return {
        "coupon_id": c["id"],
        "code": c["code"],
        "template": template_code,
        "member_id": c["profile_id"],
        "status": c["status"],
        "valid_from": c["valid_from"],
        "valid_until": c["valid_until"],
        "source": c["source"],
        "issued_at": c["issued_at"],
    }


@dataclass(frozen=True)
class BatchRequest:
    template: str
    request_key: str
    member_ids: tuple[int, ...] = ()
    codes: int = 0  # unclaimed single-use codes to generate instead of members
    reason: str = "batch issue"


def issue_batch(platform: Platform, req: BatchRequest, *, actor: str) -> dict[str, Any]:
    """Issue to a list of members, or generate unclaimed codes, in one transaction:
    all of them or none. Idempotent on ``request_key``."""
    if bool(req.member_ids) == bool(req.codes):
        raise ValidationFailed("give members or a number of codes, not both", field="members")
    count = len(req.member_ids) or req.codes
    if count > MAX_BATCH:
        raise ValidationFailed(f"a batch issues at most {MAX_BATCH} coupons", field="members")
    if not req.reason.strip():
        raise ValidationFailed("a batch needs a reason", field="reason")
    canonical = {
        "template": req.template,
        "members": sorted(req.member_ids),
        "codes": req.codes,
        "reason": req.reason,
    }
    fp = fingerprint(canonical)

    def command(ws: WorkingSet) -> dict[str, Any]:
        stored = ws.conn.execute(
            select(t.coupon_batches).where(t.coupon_batches.c.request_key == req.request_key)
        ).first()
        if stored is not None:
            if stored.result.get("fingerprint") != fp:
                raise IdempotencyConflict(
                    f"coupon batch {req.request_key}",
                    {k: v for k, v in canonical.items() if stored.result["request"].get(k) != v},
                )
            return {**stored.result["answer"], "replayed": True}
        row = _template_row(ws.conn, req.template, lock=True)
        tpl = _template(row)
        owners: list[int | None]
        if req.member_ids:
            owners = list(_current_members(ws, row.program_id, req.member_ids))
        else:
            owners = [None] * req.codes
        batch_id = ws.ids.one(t.coupon_batches)
        answer = {
            "batch_id": batch_id,
            "template": tpl.code,
            "kind": "members" if req.member_ids else "codes",
            "issued": count,
            "replayed": False,
        }
        ws.conn.execute(
            t.coupon_batches.insert().values(
                id=batch_id,
                template_id=tpl.id,
                request_key=req.request_key,
                kind=answer["kind"],
                requested=count,
                issued=count,
                result={"fingerprint": fp, "request": canonical, "answer": answer},
                actor=actor,
                created_at=ws.now,
            )
        )
        _issue(
            ws,
            tpl,
            owners,
            source="batch" if req.member_ids else "code",
            reason=req.reason,
            actor=actor,
            batch_id=batch_id,
        )
        return answer

    return run(platform, command)


def _current_members(ws: WorkingSet, program_id: int, member_ids: Sequence[int]) -> list[int]:
    """The current profile of each id (following merges); each must be an active member
    of the program."""
    current: dict[int, int] = {}
    found: dict[int, tuple[str, int | None]] = {}
    wanted = sorted(set(member_ids))
    for chunk in chunks(wanted, 2000):
        for r in ws.conn.execute(
            select(t.profiles.c.id, t.profiles.c.status, t.profiles.c.merged_into_id).where(
                t.profiles.c.id.in_(chunk)
            )
        ):
            found[r.id] = (r.status, r.merged_into_id)
    for pid in wanted:
        if pid not in found:
            raise ValidationFailed(
                f"member {pid} does not exist", field=f"members[{list(member_ids).index(pid)}]"
            )
        status, into = found[pid]
        current[pid] = into if status == "merged" and into else pid
    members: set[int] = set()
    targets = sorted(set(current.values()))
    for chunk in chunks(targets, 2000):
        members.update(
            r[0]
            for r in ws.conn.execute(
                select(t.memberships.c.profile_id).where(
                    t.memberships.c.profile_id.in_(chunk),
                    t.memberships.c.program_id == program_id,
                    t.memberships.c.status == "active",
                )
            )
        )
    for i, pid in enumerate(member_ids):
        if current[pid] not in members:
            raise ValidationFailed(
                f"member {pid} is not a member of the coupon's program", field=f"members[{i}]"
            )
    return [current[pid] for pid in member_ids]


def list_batches(platform: Platform, *, limit: int = 50) -> list[dict[str, Any]]:
    """The latest batches, newest first."""
    b = t.coupon_batches
    with platform.engine.connect() as conn:
        rows = conn.execute(
            select(
                b.c.id,
                b.c.kind,
                b.c.requested,
                b.c.issued,
                b.c.actor,
                b.c.created_at,
                t.coupon_templates.c.code.label("template"),
            )
            .join(t.coupon_templates, t.coupon_templates.c.id == b.c.template_id)
            .order_by(b.c.id.desc())
            .limit(limit)
        )
        return [dict(r._mapping) for r in rows]


def export_codes(platform: Platform, batch_id: int) -> str:
    """The codes of a batch as CSV (code, template, valid_from, valid_until, status), for
    printing or for QR codes on products."""
    with platform.engine.connect() as conn:
        batch = conn.execute(
            select(t.coupon_batches, t.coupon_templates.c.code.label("template"))
            .join(t.coupon_templates, t.coupon_templates.c.id == t.coupon_batches.c.template_id)
            .where(t.coupon_batches.c.id == batch_id)
        ).first()
        if batch is None:
            raise NotFound("coupon batch", batch_id)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["code", "template", "member_id", "valid_from", "valid_until", "status"])
        for r in conn.execute(
            select(t.coupons).where(t.coupons.c.batch_id == batch_id).order_by(t.coupons.c.id)
        ):
            writer.writerow(
                [
                    r.code,
                    batch.template,
                    r.profile_id or "",
                    r.valid_from.isoformat(),
                    r.valid_until.isoformat() if r.valid_until else "",
                    r.status,
                ]
            )
        return buffer.getvalue()


# ---------------------------------------------------------------- reading coupons


def _views(conn: Connection, rows: Iterable[Any]) -> list[tuple[CouponView, Any]]:
    rows = list(rows)
    ids = sorted({r.template_id for r in rows})
    templates = {
        r.id: (_template(r), r)
        for r in conn.execute(select(t.coupon_templates).where(t.coupon_templates.c.id.in_(ids)))
    }
    return [
        (
            CouponView(
                id=r.id,
                code=r.code,
                template=templates[r.template_id][0],
                status=CouponStatus(r.status),
                valid_from=r.valid_from,
                valid_until=r.valid_until,
                profile_id=r.profile_id,
            ),
            templates[r.template_id][1],
        )
        for r in rows
    ]


def member_coupons(
    platform: Platform, member_id: int, *, status: str | None = None
) -> list[dict[str, Any]]:
    """A member's coupons, newest first; ``status`` filters (``expired`` included)."""
    now = platform.clock.now()
    with platform.engine.connect() as conn:
        pid = current_profile_id(conn, member_id)
        rows = conn.execute(
            select(t.coupons, t.coupon_templates.c.code.label("template_code"))
            .join(t.coupon_templates, t.coupon_templates.c.id == t.coupons.c.template_id)
            .where(t.coupons.c.profile_id == pid)
            .order_by(t.coupons.c.id.desc())
        ).all()
    out = []
    for r in rows:
        shown = _shown_status(r.status, r.valid_until, now)
        if status is None or status == shown:
            out.append(
                {
                    **_coupon_public(dict(r._mapping), r.template_code),
                    "status": shown,
                }
            )
    return out


def _shown_status(status: str, valid_until: datetime | None, now: datetime) -> str:
    if status == CouponStatus.AVAILABLE.value and valid_until is not None and valid_until <= now:
        return "expired"
    return status


def coupon_detail(platform: Platform, code: str) -> dict[str, Any]:
    with platform.engine.connect() as conn:
        row = conn.execute(
            select(t.coupons, t.coupon_templates.c.code.label("template_code"))
            .join(t.coupon_templates, t.coupon_templates.c.id == t.coupons.c.template_id)
            .where(t.coupons.c.code == normalise_code(code))
        ).first()
        if row is None:
            raise NotFound("coupon", code)
        events = [
            dict(e._mapping)
            for e in conn.execute(
                select(t.coupon_events)
                .where(t.coupon_events.c.coupon_id == row.id)
                .order_by(t.coupon_events.c.id)
            )
        ]
    return {
        **_coupon_public(dict(row._mapping), row.template_code),
        "status": _shown_status(row.status, row.valid_until, platform.clock.now()),
        "events": events,
    }


# ---------------------------------------------------------------- baskets and checkout


@dataclass(frozen=True)
class LineIn:
    line_no: int
    sku: str
    quantity: int
    amount: int
    category: str | None = None


@dataclass(frozen=True)
class MemberRef:
    member_id: int | None = None
    identity_type: str | None = None
    identity_value: str | None = None
    identity_namespace: str | None = None


@dataclass(frozen=True)
class CheckoutRequest:
    channel: str
    lines: tuple[LineIn, ...]
    codes: tuple[str, ...] = ()
    store: str | None = None
    member: MemberRef = field(default_factory=MemberRef)
    shipping_fee: int = 0
    order_id: str | None = None  # the channel's order id: needed to reserve


def _resolve_member(ws: WorkingSet, member: MemberRef) -> int | None:
    """The member named by id or by an identity the clerk scanned (member code, phone)."""
    if member.member_id is not None:
        return current_profile_id(ws.conn, member.member_id)
    if member.identity_type is None:
        return None
    key = make_key(
        member.identity_type,
        member.identity_value or "",
        member.identity_namespace,
        default_region=ws.default_region,
        field="member",
    )
    return profile_with(ws.conn, key, entity="member")


def _basket(ws: WorkingSet, req: CheckoutRequest) -> Basket:
    channel = ws.ref.channels.get(req.channel)
    if channel is None:
        raise ValidationFailed(f"unknown channel {req.channel!r}", field="channel")
    store = ws.ref.stores.get(req.store) if req.store else None
    if req.store and store is None:
        raise ValidationFailed(f"unknown store {req.store!r}", field="store")
    if not req.lines:
        raise ValidationFailed("a basket needs at least one line", field="lines")
    seen: set[int] = set()
    for i, line in enumerate(req.lines):
        if line.line_no in seen:
            raise ValidationFailed(f"line {line.line_no} appears twice", field=f"lines[{i}]")
        seen.add(line.line_no)
    skus = sorted({line.sku for line in req.lines})
    products = {
        r.sku: r
        for r in ws.conn.execute(
            select(t.products.c.sku, t.products.c.category, t.products.c.brand_id).where(
                t.products.c.sku.in_(skus)
            )
        )
    }
    lines = []
    for line in req.lines:
        product = products.get(line.sku)
        brand = ws.ref.brands_by_id.get(product.brand_id) if product else None
        category = line.category or (product.category if product else UNCATEGORISED)
        lines.append(
            BasketLine(
                line_no=line.line_no,
                sku=line.sku,
                category=category,
                quantity=line.quantity,
                amount=line.amount,
                brand=brand.code if brand else None,
                forbidden=_forbidden(
                    ws.ref, channel.id, store.id if store else None, line.sku, category
                ),
            )
        )
    return Basket(
        channel=req.channel,
        store=req.store,
        lines=tuple(lines),
        shipping_fee=req.shipping_fee,
    )


def _forbidden(
    ref: ReferenceData, channel_id: int, store_id: int | None, sku: str, category: str
) -> bool:
    """Whether the channel's assortment forbids the SKU (then no coupon discounts it)."""
    return ref.assortment.status_of(channel_id, store_id, sku, category) is (
        AssortmentStatus.FORBIDDEN
    )


def _coupons_by_code(
    ws: WorkingSet, codes: Sequence[str], *, lock: bool
) -> list[tuple[CouponView, Any]]:
    wanted = [normalise_code(c) for c in codes]
    if len(set(wanted)) != len(wanted):
        raise ValidationFailed("a coupon code appears twice", field="codes")
    query = select(t.coupons).where(t.coupons.c.code.in_(wanted)).order_by(t.coupons.c.id)
    if lock and ws.postgres:
        query = query.with_for_update()
    rows = {r.code: r for r in ws.conn.execute(query)}
    for i, code in enumerate(wanted):
        if code not in rows:
            raise NotFound("coupon", codes[i])
    views = dict((v.code, (v, r)) for v, r in _views(ws.conn, rows.values()))
    return [views[c] for c in wanted]


def _answer(q: Quote, basket: Basket, member_id: int | None) -> dict[str, Any]:
    by_line = q.line_discounts()
    return {
        "member_id": member_id,
        "applicable": not q.rejected and bool(q.applied),
        "discount": q.discount,
        "coupons": [a.as_dict() for a in q.applied],
        "lines": [
            {
                "line_no": line.line_no,
                "amount": line.amount,
                "discount": by_line.get(line.line_no, 0),
                "pays": line.amount - by_line.get(line.line_no, 0),
            }
            for line in basket.lines
        ],
        "shipping_discount": sum(a.shipping for a in q.applied),
        "reasons": q.reasons(),
    }


def validate(platform: Platform, req: CheckoutRequest) -> dict[str, Any]:
    """What the coupons would take off the basket, or structured reasons why they do not
    apply. With no codes, every available coupon of the member is tried on its own
    (what a clerk sees after scanning the member's code), best first."""

    def command(ws: WorkingSet) -> dict[str, Any]:
        member_id = _resolve_member(ws, req.member)
        basket = _basket(ws, req)
        if req.codes:
            found = _coupons_by_code(ws, req.codes, lock=False)
            views = [v for v, _ in found]
            answer = _answer(
                quote(views, basket, as_of=ws.now, member_id=member_id), basket, member_id
            )
            answer.update(_limit_reasons(ws, found, member_id, answer))
            return answer
        if member_id is None:
            raise ValidationFailed("give coupon codes or the member", field="codes")
        rows = ws.conn.execute(
            select(t.coupons).where(
                t.coupons.c.profile_id == member_id,
                t.coupons.c.status == CouponStatus.AVAILABLE.value,
            )
        )
        options = []
        for view, _ in _views(ws.conn, rows):
            q = quote([view], basket, as_of=ws.now, member_id=member_id)
            one = _answer(q, basket, member_id)
            options.append({"code": view.code, "template": view.template.code, **one})
        options.sort(key=lambda o: (not o["applicable"], -o["discount"], o["code"]))
        return {"member_id": member_id, "options": options}

    return run(platform, command, write=False)


def _limit_reasons(
    ws: WorkingSet,
    found: Sequence[tuple[CouponView, Any]],
    member_id: int | None,
    answer: dict[str, Any],
) -> dict[str, Any]:
    """Per-member and total limits, as reasons (validation does not take them).
    ``found`` pairs each coupon with its template's row, counters included."""
    extra: list[dict[str, Any]] = []
    for view, row in found:
        tpl = view.template
        if tpl.total_limit is not None and row.redeemed_count >= tpl.total_limit:
            extra.append(
                {
                    "coupon": view.code,
                    "code": "limit_reached",
                    "limit": "total",
                    "detail": "the campaign's redemption limit is reached",
                }
            )
        if tpl.per_member_limit is not None and member_id is not None:
            used = _member_uses(ws, tpl.id, member_id)
            if used >= tpl.per_member_limit:
                extra.append(
                    {
                        "coupon": view.code,
                        "code": "limit_reached",
                        "limit": "per_member",
                        "detail": f"the member has used {used} of {tpl.per_member_limit}",
                    }
                )
    if not extra:
        return {}
    return {"applicable": False, "reasons": [*answer["reasons"], *extra]}


def _member_uses(ws: WorkingSet, template_id: int, profile_id: int) -> int:
    r = t.coupon_redemptions.c
    return int(
        ws.conn.execute(
            select(func.count()).where(
                r.template_id == template_id, r.profile_id == profile_id, r.status.in_(LIVE)
            )
        ).scalar_one()
    )


def _checkout_canonical(req: CheckoutRequest, member_id: int | None) -> dict[str, Any]:
    return {
        "channel": req.channel,
        "order_id": req.order_id,
        "store": req.store,
        "member_id": member_id,
        "codes": [normalise_code(c) for c in req.codes],
        "shipping_fee": req.shipping_fee,
        "lines": [
            [line.line_no, line.sku, line.quantity, line.amount, line.category]
            for line in sorted(req.lines, key=lambda x: x.line_no)
        ],
    }


def _order_redemptions(
    ws: WorkingSet, channel_id: int, order_id: str, *, lock: bool
) -> list[Row[Any]]:
    r = t.coupon_redemptions
    query = (
        select(r, t.coupons.c.code, t.coupon_templates.c.code.label("template_code"))
        .join(t.coupons, t.coupons.c.id == r.c.coupon_id)
        .join(t.coupon_templates, t.coupon_templates.c.id == r.c.template_id)
        .where(r.c.channel_id == channel_id, r.c.order_external_id == order_id)
        .order_by(r.c.id)
    )
    if lock and ws.postgres:
        query = query.with_for_update(of=r)
    return list(ws.conn.execute(query))


def _redemption_answer(rows: Sequence[Any], channel: str, order_id: str) -> dict[str, Any]:
    return {
        "channel": channel,
        "order_id": order_id,
        "status": rows[0].status,
        "member_id": rows[0].profile_id,
        "discount": sum(r.discount for r in rows),
        "hold_until": rows[0].hold_until,
        "coupons": [
            {
                "code": r.code,
                "template": r.template_code,
                "discount": r.discount,
                "lines": r.lines,
                "status": r.status,
            }
            for r in rows
        ],
    }


def reserve(
    platform: Platform, req: CheckoutRequest, *, actor: str, confirm: bool = False
) -> dict[str, Any]:
    """Hold the coupons for one order at checkout (or, with ``confirm``, redeem them at
    once, as a POS does). All of the coupons apply or none is taken."""
    if not req.order_id:
        raise ValidationFailed("a reservation names the channel's order id", field="order_id")
    if not req.codes:
        raise ValidationFailed("name at least one coupon code", field="codes")
    order_id = req.order_id

    def command(ws: WorkingSet) -> dict[str, Any]:
        member_id = _resolve_member(ws, req.member)
        if member_id is not None:
            ws.lock_profiles([member_id])
        basket = _basket(ws, req)
        channel = ws.ref.channels[req.channel]
        store = ws.ref.stores.get(req.store) if req.store else None
        fp = fingerprint(_checkout_canonical(req, member_id))
        existing = [
            r for r in _order_redemptions(ws, channel.id, order_id, lock=True) if r.status in LIVE
        ]
        if existing:
            if existing[0].fingerprint != fp:
                raise IdempotencyConflict(
                    f"coupon reservation {req.channel}/{order_id}",
                    {"request": "differs from the request that reserved these coupons"},
                )
            if confirm and existing[0].status == RedemptionStatus.RESERVED.value:
                return _confirm(ws, req.channel, order_id, actor=actor)
            return {**_redemption_answer(existing, req.channel, order_id), "replayed": True}
        found = _coupons_by_code(ws, req.codes, lock=True)
        released = [
            _release_if_lapsed(ws, view, actor=actor)
            for view, _ in found
            if view.status is CouponStatus.RESERVED
        ]
        if any(released):  # read them again as they are now
            found = _coupons_by_code(ws, req.codes, lock=False)
        views = [v for v, _ in found]
        q = quote(views, basket, as_of=ws.now, member_id=member_id)
        if q.rejected:
            conflict = [
                r
                for rs in q.rejected.values()
                for r in rs
                if r.code in ("reserved", "already_redeemed")
            ]
            if conflict and len(conflict) == len(q.reasons()):
                raise CouponUnavailable(conflict[0].detail, reasons=q.reasons(), field="codes")
            raise CouponNotApplicable(
                "; ".join(f"{r['coupon']}: {r['detail']}" for r in q.reasons()),
                reasons=q.reasons(),
            )
        hold = min(ws.ref.programs[row.program_id].coupon_hold_minutes for _, row in found)
        hold_until = ws.now + timedelta(minutes=hold)
        status = RedemptionStatus.CONFIRMED if confirm else RedemptionStatus.RESERVED
        rows, events = [], []
        for applied in sorted(q.applied, key=lambda a: a.coupon.template.id):
            _take_limits(ws, applied.coupon, member_id, applied.discount)
        for applied in q.applied:
            view = applied.coupon
            rid = ws.ids.one(t.coupon_redemptions)
            owner = view.profile_id or member_id
            rows.append(
                {
                    "id": rid,
                    "coupon_id": view.id,
                    "template_id": view.template.id,
                    "profile_id": owner,
                    "channel_id": channel.id,
                    "order_external_id": order_id,
                    "store_id": store.id if store else None,
                    "status": status.value,
                    "discount": applied.discount,
                    "lines": applied.as_dict()["lines"],
                    "fingerprint": fp,
                    "reserved_at": ws.now,
                    "hold_until": hold_until,
                    "confirmed_at": ws.now if confirm else None,
                    "closed_at": None,
                }
            )
            kinds = [CouponEventKind.RESERVED] + ([CouponEventKind.REDEEMED] if confirm else [])
            for kind in kinds:
                events.append(
                    _event(
                        ws,
                        view.id,
                        view.template.id,
                        owner,
                        kind,
                        reason=f"checkout {req.channel}/{order_id}",
                        actor=actor,
                        redemption_id=rid,
                        channel_id=channel.id,
                        store_id=store.id if store else None,
                        order_external_id=order_id,
                        discount=applied.discount,
                    )
                )
            values: dict[str, Any] = {
                "status": (CouponStatus.REDEEMED if confirm else CouponStatus.RESERVED).value
            }
            if view.profile_id is None and owner is not None:
                values["profile_id"] = owner  # an unclaimed code now belongs to its user
            ws.conn.execute(update(t.coupons).where(t.coupons.c.id == view.id).values(**values))
        _insert(ws, t.coupon_redemptions, rows)
        _insert(ws, t.coupon_events, events)
        if member_id is not None:
            ws.history(
                member_id,
                HistoryKind.COUPON_REDEEMED if confirm else HistoryKind.COUPON_RESERVED,
                f"coupons {', '.join(a.coupon.code for a in q.applied)} "
                f"{'redeemed' if confirm else 'reserved'} on {req.channel}/{order_id}: "
                f"{q.discount} off",
                {"channel": req.channel, "order_id": order_id, "discount": q.discount},
                actor=actor,
                at=ws.now,
            )
        stored = _order_redemptions(ws, channel.id, order_id, lock=False)
        return {**_redemption_answer(stored, req.channel, order_id), "replayed": False}

    return run(platform, command)


def _take_limits(ws: WorkingSet, view: CouponView, member_id: int | None, discount: int) -> None:
    """Count one more redemption and its discount against the template, atomically.
    The per-member limit is checked under the member's lock (taken by the caller)."""
    tpl = view.template
    owner = view.profile_id or member_id
    if tpl.per_member_limit is not None and owner is not None:
        used = _member_uses(ws, tpl.id, owner)
        if used >= tpl.per_member_limit:
            raise LimitReached(
                f"coupon {view.code}: the member has used {used} of {tpl.per_member_limit} "
                f"allowed from {tpl.code}",
                limit="per_member",
                coupon=view.code,
                field="codes",
            )
    if tpl.total_limit is None and tpl.max_discount_total is None:
        return  # nothing to hold: leave the template's row unlocked for other checkouts
    c = t.coupon_templates.c
    done = ws.conn.execute(
        update(t.coupon_templates)
        .where(
            c.id == tpl.id,
            (c.total_limit.is_(None)) | (c.redeemed_count + 1 <= c.total_limit),
            (c.max_discount_total.is_(None))
            | (c.discount_total + discount <= c.max_discount_total),
        )
        .values(redeemed_count=c.redeemed_count + 1, discount_total=c.discount_total + discount)
    ).rowcount
    if done != 1:
        row = ws.conn.execute(select(t.coupon_templates).where(c.id == tpl.id)).one()
        if row.total_limit is not None and row.redeemed_count + 1 > row.total_limit:
            raise LimitReached(
                f"coupon {view.code}: {tpl.code} has reached its limit of "
                f"{row.total_limit} redemptions",
                limit="total",
                coupon=view.code,
                field="codes",
            )
        raise LimitReached(
            f"coupon {view.code}: {tpl.code} has {row.max_discount_total - row.discount_total} "
            f"left of its discount budget, {discount} needed",
            limit="discount_budget",
            coupon=view.code,
            field="codes",
        )


def _give_back_limits(ws: WorkingSet, template_id: int, discount: int) -> None:
    c = t.coupon_templates.c
    ws.conn.execute(
        update(t.coupon_templates)
        .where(
            c.id == template_id,
            (c.total_limit.is_not(None)) | (c.max_discount_total.is_not(None)),
        )
        .values(redeemed_count=c.redeemed_count - 1, discount_total=c.discount_total - discount)
    )


def _release_if_lapsed(ws: WorkingSet, view: CouponView, *, actor: str) -> bool:
    """A coupon held past its hold is released before another checkout takes it.
    Says whether it was."""
    r = t.coupon_redemptions.c
    held = ws.conn.execute(
        select(t.coupon_redemptions).where(
            r.coupon_id == view.id, r.status == RedemptionStatus.RESERVED.value
        )
    ).first()
    if held is None or held.hold_until > ws.now:
        return False
    _close(ws, [held], RedemptionStatus.RELEASED, reason="hold expired", actor=actor)
    return True


def _close(
    ws: WorkingSet,
    held: Sequence[Any],
    to: RedemptionStatus,
    *,
    reason: str,
    actor: str,
) -> None:
    """Release reserved, or return confirmed, redemptions: the coupons are available
    again and the limits and budget get the use back."""
    kind = CouponEventKind.RELEASED if to is RedemptionStatus.RELEASED else CouponEventKind.RETURNED
    events = []
    for h in held:
        ws.conn.execute(
            update(t.coupon_redemptions)
            .where(t.coupon_redemptions.c.id == h.id)
            .values(status=to.value, closed_at=ws.now)
        )
        ws.conn.execute(
            update(t.coupons)
            .where(t.coupons.c.id == h.coupon_id)
            .values(status=CouponStatus.AVAILABLE.value)
        )
        _give_back_limits(ws, h.template_id, h.discount)
        events.append(
            _event(
                ws,
                h.coupon_id,
                h.template_id,
                h.profile_id,
                kind,
                reason=reason,
                actor=actor,
                redemption_id=h.id,
                channel_id=h.channel_id,
                store_id=h.store_id,
                order_external_id=h.order_external_id,
                discount=-h.discount if kind is CouponEventKind.RETURNED else 0,
            )
        )
        if h.profile_id is not None:
            ws.history(
                h.profile_id,
                HistoryKind.COUPON_RELEASED
                if to is RedemptionStatus.RELEASED
                else HistoryKind.COUPON_RETURNED,
                f"coupon {h.coupon_id} {to.value}: {reason}",
                {"coupon_id": h.coupon_id, "order_id": h.order_external_id},
                actor=actor,
                at=ws.now,
            )
    _insert(ws, t.coupon_events, events)


def _confirm(ws: WorkingSet, channel: str, order_id: str, *, actor: str) -> dict[str, Any]:
    ch = ws.ref.channels.get(channel)
    if ch is None:
        raise ValidationFailed(f"unknown channel {channel!r}", field="channel")
    rows = _order_redemptions(ws, ch.id, order_id, lock=True)
    live = [r for r in rows if r.status in LIVE]
    if not rows:
        raise NotFound("coupon reservation", f"{channel}/{order_id}")
    if not live:
        raise CouponUnavailable(
            f"the coupons of {channel}/{order_id} were {rows[-1].status}; reserve them again",
            field="order_id",
        )
    if all(r.status == RedemptionStatus.CONFIRMED.value for r in live):
        return {**_redemption_answer(live, channel, order_id), "replayed": True}
    events = []
    for r in live:
        ws.conn.execute(
            update(t.coupon_redemptions)
            .where(t.coupon_redemptions.c.id == r.id)
            .values(status=RedemptionStatus.CONFIRMED.value, confirmed_at=ws.now)
        )
        ws.conn.execute(
            update(t.coupons)
            .where(t.coupons.c.id == r.coupon_id)
            .values(status=CouponStatus.REDEEMED.value)
        )
        events.append(
            _event(
                ws,
                r.coupon_id,
                r.template_id,
                r.profile_id,
                CouponEventKind.REDEEMED,
                reason=f"order {channel}/{order_id}",
                actor=actor,
                redemption_id=r.id,
                channel_id=r.channel_id,
                store_id=r.store_id,
                order_external_id=order_id,
                discount=r.discount,
            )
        )
    _insert(ws, t.coupon_events, events)
    if live[0].profile_id is not None:
        ws.history(
            live[0].profile_id,
            HistoryKind.COUPON_REDEEMED,
            f"coupons {', '.join(r.code for r in live)} redeemed on {channel}/{order_id}",
            {"channel": channel, "order_id": order_id, "discount": sum(r.discount for r in live)},
            actor=actor,
            at=ws.now,
        )
    stored = _order_redemptions(ws, ch.id, order_id, lock=False)
    return {
        **_redemption_answer([s for s in stored if s.status in LIVE], channel, order_id),
        "replayed": False,
    }


def confirm(platform: Platform, channel: str, order_id: str, *, actor: str) -> dict[str, Any]:
    """Redeem the coupons held for an order. Confirming again answers the same."""
    return run(platform, lambda ws: _confirm(ws, channel, order_id, actor=actor))


def release(
    platform: Platform, channel: str, order_id: str, *, reason: str, actor: str
) -> dict[str, Any]:
    """Give back the coupons held for a cancelled checkout. Releasing again answers the
    same; a confirmed order gets its coupons back through a full refund instead."""

    def command(ws: WorkingSet) -> dict[str, Any]:
        ch = ws.ref.channels.get(channel)
        if ch is None:
            raise ValidationFailed(f"unknown channel {channel!r}", field="channel")
        rows = _order_redemptions(ws, ch.id, order_id, lock=True)
        if not rows:
            raise NotFound("coupon reservation", f"{channel}/{order_id}")
        if any(r.status == RedemptionStatus.CONFIRMED.value for r in rows):
            raise Conflict(
                f"the coupons of {channel}/{order_id} are redeemed; a full refund returns them",
                field="order_id",
            )
        held = [r for r in rows if r.status == RedemptionStatus.RESERVED.value]
        if not held:
            last = [r for r in rows if r.closed_at == rows[-1].closed_at]
            return {**_redemption_answer(last, channel, order_id), "replayed": True}
        _close(
            ws, held, RedemptionStatus.RELEASED, reason=reason or "checkout cancelled", actor=actor
        )
        done = _order_redemptions(ws, ch.id, order_id, lock=False)
        return {
            **_redemption_answer(
                [d for d in done if d.id in {h.id for h in held}], channel, order_id
            ),
            "replayed": False,
        }

    return run(platform, command)


def order_redemptions(platform: Platform, channel: str, order_id: str) -> dict[str, Any]:
    def command(ws: WorkingSet) -> dict[str, Any]:
        ch = ws.ref.channels.get(channel)
        if ch is None:
            raise ValidationFailed(f"unknown channel {channel!r}", field="channel")
        rows = _order_redemptions(ws, ch.id, order_id, lock=False)
        if not rows:
            raise NotFound("coupon reservation", f"{channel}/{order_id}")
        return _redemption_answer(rows, channel, order_id)

    return run(platform, command, write=False)


def release_lapsed(platform: Platform, *, actor: str = "coupon-hold-job") -> int:
    """Release every reservation held past its hold. Returns how many coupons."""
    now = platform.clock.now()
    r = t.coupon_redemptions.c
    with platform.engine.connect() as conn:
        keys = sorted(
            {
                (row.channel_id, row.order_external_id)
                for row in conn.execute(
                    select(r.channel_id, r.order_external_id).where(
                        r.status == RedemptionStatus.RESERVED.value, r.hold_until <= now
                    )
                )
            }
        )
    released = 0
    for channel_id, order_id in keys:

        def command(ws: WorkingSet, channel_id: int = channel_id, order_id: str = order_id) -> int:
            held = [
                h
                for h in _order_redemptions(ws, channel_id, order_id, lock=True)
                if h.status == RedemptionStatus.RESERVED.value and h.hold_until <= ws.now
            ]
            _close(ws, held, RedemptionStatus.RELEASED, reason="hold expired", actor=actor)
            return len(held)

        released += run(platform, command)
    return released


def return_for_refund(
    ws: WorkingSet, channel_id: int, order_id: str, *, reason: str, actor: str
) -> list[str]:
    """On a full refund, the order's redeemed coupons come back to their holders (a
    coupon past its validity comes back expired). Returns their codes. A partial refund
    returns nothing: the discount stays spread over the order's lines."""
    confirmed = [
        r
        for r in _order_redemptions(ws, channel_id, order_id, lock=True)
        if r.status == RedemptionStatus.CONFIRMED.value
    ]
    _close(ws, confirmed, RedemptionStatus.RETURNED, reason=reason, actor=actor)
    return [r.code for r in confirmed]


def void(platform: Platform, code: str, *, reason: str, actor: str) -> dict[str, Any]:
    """Withdraw an available coupon (issued by mistake, fraud). Voiding twice answers the same."""
    if not reason.strip():
        raise ValidationFailed("voiding needs a reason", field="reason")

    def command(ws: WorkingSet) -> dict[str, Any]:
        ((view, _row),) = _coupons_by_code(ws, [code], lock=True)
        if view.status is CouponStatus.VOIDED:
            return {"code": view.code, "status": view.status.value, "replayed": True}
        if view.status is not CouponStatus.AVAILABLE:
            raise CouponUnavailable(f"coupon {view.code} is {view.status.value}", field="code")
        ws.conn.execute(
            update(t.coupons)
            .where(t.coupons.c.id == view.id)
            .values(status=CouponStatus.VOIDED.value)
        )
        _insert(
            ws,
            t.coupon_events,
            [
                _event(
                    ws,
                    view.id,
                    view.template.id,
                    view.profile_id,
                    CouponEventKind.VOIDED,
                    reason=reason,
                    actor=actor,
                )
            ],
        )
        if view.profile_id is not None:
            ws.history(
                view.profile_id,
                HistoryKind.COUPON_VOIDED,
                f"coupon {view.code} voided: {reason}",
                {"coupon_id": view.id},
                actor=actor,
                at=ws.now,
            )
        return {"code": view.code, "status": CouponStatus.VOIDED.value, "replayed": False}

    return run(platform, command)
