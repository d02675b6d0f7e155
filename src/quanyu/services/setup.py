"""Brand set-up kept as data: organisation, programs, brands, tiers, earn rules,
channels, stores, guides and products. Every change invalidates this process's
reference snapshot; other processes pick it up within ``reference_cache_seconds``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from quanyu.adapters import tables as t
from quanyu.domain.assortment import AssortmentPolicy
from quanyu.domain.earn_rules import rule_from_document
from quanyu.domain.errors import AlreadyExists, NotFound, ValidationFailed
from quanyu.domain.orders import require_aware
from quanyu.domain.points import ClawbackPolicy
from quanyu.domain.tiers import ReviewKind, Tier, TierMetric, TierPolicy
from quanyu.services.uow import Platform

CHANNEL_KINDS = (
    "store_pos",
    "web_mall",
    "wechat_mini",
    "tmall",
    "jd",
    "douyin",
    "kuaishou",
    "other",
)
EXPIRY_KINDS = ("never", "end_of_following_year", "rolling_days")


def _one(conn: Connection, table: Table, key_col: str, key: str, entity: str) -> Any:
    row = conn.execute(select(table).where(table.c[key_col] == key)).first()
    if row is None:
        raise NotFound(entity, key)
    return row


def _id_of(
    conn: Connection, table: Table, code: str, entity: str, *, field: str, key_col: str = "code"
) -> int:
    row = conn.execute(select(table.c.id).where(table.c[key_col] == code)).first()
    if row is None:
        raise ValidationFailed(f"unknown {entity} {code!r}", field=field)
    return int(row.id)


def _write(platform: Platform, work: Any) -> Any:
    try:
        with platform.engine.begin() as conn:
            result = work(conn)
    except IntegrityError as exc:
        raise AlreadyExists("that code is already taken", field="code") from exc
    platform.reference.invalidate()
    return result


def _rows(platform: Platform, table: Table, order: str = "code") -> list[dict[str, Any]]:
    with platform.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table).order_by(table.c[order]))]


def _validate_program(values: Mapping[str, Any]) -> None:
    checks = {
        "expiry_kind": EXPIRY_KINDS,
        "clawback_policy": [p.value for p in ClawbackPolicy],
        "tier_metric": [m.value for m in TierMetric],
        "tier_review": [r.value for r in ReviewKind],
        "assortment_policy": [p.value for p in AssortmentPolicy],
    }
    for name, allowed in checks.items():
        if name in values and values[name] not in allowed:
            raise ValidationFailed(f"{name} must be one of {', '.join(allowed)}", field=name)
    if values.get("expiry_kind") == "rolling_days" and not values.get("expiry_days"):
        raise ValidationFailed("rolling_days expiry needs expiry_days", field="expiry_days")
    cap = values.get("points_payment_cap_percent")
    if cap is not None and not 0 <= cap <= 100:
        raise ValidationFailed("must be between 0 and 100", field="points_payment_cap_percent")
    if "timezone" in values:
        try:
            ZoneInfo(values["timezone"])
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValidationFailed(
                f"unknown time zone {values['timezone']!r}", field="timezone"
            ) from exc
    month, day = values.get("tier_review_month", 1), values.get("tier_review_day", 1)
    try:
        date(2000, month, day)  # a leap year admits 29 February
    except ValueError as exc:
        raise ValidationFailed(
            f"{month}-{day} is not a day of the year", field="tier_review_day"
        ) from exc


def ensure_organisation(platform: Platform, code: str, name: str) -> dict[str, Any]:
    def work(conn: Connection) -> dict[str, Any]:
        row = conn.execute(select(t.organisations)).first()
        if row is None:
            conn.execute(insert(t.organisations).values(code=code, name=name))
            row = conn.execute(select(t.organisations)).one()
        return dict(row._mapping)

    result: dict[str, Any] = _write(platform, work)
    return result


def _org_id(conn: Connection) -> int:
    org = conn.execute(select(t.organisations.c.id)).first()
    if org is None:
        conn.execute(insert(t.organisations).values(code="default", name="Default"))
        org = conn.execute(select(t.organisations.c.id)).one()
    return int(org.id)


def create_program(platform: Platform, values: dict[str, Any]) -> dict[str, Any]:
    _validate_program(values)

    def work(conn: Connection) -> dict[str, Any]:
        conn.execute(insert(t.programs).values(organisation_id=_org_id(conn), **values))
        return dict(_one(conn, t.programs, "code", values["code"], "program")._mapping)

    result: dict[str, Any] = _write(platform, work)
    return result


def update_program(platform: Platform, code: str, values: dict[str, Any]) -> dict[str, Any]:
    def work(conn: Connection) -> dict[str, Any]:
        stored = dict(_one(conn, t.programs, "code", code, "program")._mapping)
        _validate_program({**stored, **values})  # the program as it will be, as a whole
        if values:
            conn.execute(update(t.programs).where(t.programs.c.code == code).values(**values))
        return dict(_one(conn, t.programs, "code", code, "program")._mapping)

    result: dict[str, Any] = _write(platform, work)
    return result


def set_tiers(
    platform: Platform, program: str, tiers: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Replace a program's tier ladder (validated as a whole)."""
    TierPolicy(
        metric=TierMetric.SPEND,
        tiers=tuple(Tier(x["code"], x["name"], x["rank"], x["threshold"]) for x in tiers),
    )

    def work(conn: Connection) -> list[dict[str, Any]]:
        pid = _id_of(conn, t.programs, program, "program", field="program")
        in_use = {
            r.tier_code
            for r in conn.execute(
                select(t.memberships.c.tier_code)
                .where(t.memberships.c.program_id == pid)
                .distinct()
            )
        }
        missing = in_use - {x["code"] for x in tiers}
        if missing:
            raise ValidationFailed(
                f"members hold tiers {sorted(missing)}; keep them", field="tiers"
            )
        conn.execute(t.tiers.delete().where(t.tiers.c.program_id == pid))
        conn.execute(insert(t.tiers), [{**x, "program_id": pid} for x in tiers])
        return [
            dict(r._mapping)
            for r in conn.execute(
                select(t.tiers).where(t.tiers.c.program_id == pid).order_by(t.tiers.c.rank)
            )
        ]

    result: list[dict[str, Any]] = _write(platform, work)
    return result


def add_earn_rule(
    platform: Platform,
    program: str,
    *,
    effective_from: datetime,
    document: dict[str, Any],
    actor: str,
) -> dict[str, Any]:
    """Add the next version of a program's earn rule; earlier versions stay for history."""
    require_aware(effective_from, "effective_from")

    def work(conn: Connection) -> dict[str, Any]:
        pid = _id_of(conn, t.programs, program, "program", field="program")
        version = (
            conn.execute(
                select(func.max(t.earn_rules.c.version)).where(t.earn_rules.c.program_id == pid)
            ).scalar()
            or 0
        ) + 1
        rule = rule_from_document(version, effective_from, document)
        conn.execute(
            insert(t.earn_rules).values(
                program_id=pid,
                version=version,
                effective_from=effective_from,
                document=rule.to_document(),
                created_at=platform.clock.now(),
                created_by=actor,
            )
        )
        return {
            "program": program,
            "version": version,
            "effective_from": effective_from,
            "document": rule.to_document(),
        }

    result: dict[str, Any] = _write(platform, work)
    return result


def earn_rules(platform: Platform, program: str) -> list[dict[str, Any]]:
    with platform.engine.connect() as conn:
        pid = _id_of(conn, t.programs, program, "program", field="program")
        return [
            {
                "program": program,
                "version": r.version,
                "effective_from": r.effective_from,
                "document": r.document,
                "created_by": r.created_by,
            }
            for r in conn.execute(
                select(t.earn_rules)
                .where(t.earn_rules.c.program_id == pid)
                .order_by(t.earn_rules.c.version)
            )
        ]


def create_brand(platform: Platform, *, code: str, name: str, program: str) -> dict[str, Any]:
    def work(conn: Connection) -> dict[str, Any]:
        pid = _id_of(conn, t.programs, program, "program", field="program")
        conn.execute(
            insert(t.brands).values(
                organisation_id=_org_id(conn), program_id=pid, code=code, name=name
            )
        )
        return {"code": code, "name": name, "program": program}

    result: dict[str, Any] = _write(platform, work)
    return result


def create_channel(platform: Platform, *, code: str, name: str, kind: str) -> dict[str, Any]:
    if kind not in CHANNEL_KINDS:
        raise ValidationFailed(f"kind must be one of {', '.join(CHANNEL_KINDS)}", field="kind")

    def work(conn: Connection) -> dict[str, Any]:
        conn.execute(insert(t.channels).values(code=code, name=name, kind=kind))
        return {"code": code, "name": name, "kind": kind}

    result: dict[str, Any] = _write(platform, work)
    return result


def create_store(platform: Platform, values: dict[str, Any]) -> dict[str, Any]:
    def work(conn: Connection) -> dict[str, Any]:
        brand_id = _id_of(conn, t.brands, values["brand"], "brand", field="brand")
        row = {k: v for k, v in values.items() if k != "brand"}
        conn.execute(insert(t.stores).values(brand_id=brand_id, **row))
        return dict(values)

    result: dict[str, Any] = _write(platform, work)
    return result


def update_store(platform: Platform, code: str, values: dict[str, Any]) -> dict[str, Any]:
    def work(conn: Connection) -> dict[str, Any]:
        _one(conn, t.stores, "code", code, "store")
        if values:
            conn.execute(update(t.stores).where(t.stores.c.code == code).values(**values))
        return dict(_one(conn, t.stores, "code", code, "store")._mapping)

    result: dict[str, Any] = _write(platform, work)
    return result


def create_guide(platform: Platform, *, code: str, name: str, store: str) -> dict[str, Any]:
    def work(conn: Connection) -> dict[str, Any]:
        store_id = _id_of(conn, t.stores, store, "store", field="store")
        conn.execute(insert(t.guides).values(store_id=store_id, code=code, name=name))
        return {"code": code, "name": name, "store": store}

    result: dict[str, Any] = _write(platform, work)
    return result


def upsert_products(platform: Platform, products: list[dict[str, Any]]) -> int:
    def work(conn: Connection) -> int:
        brand_ids = {r.code: r.id for r in conn.execute(select(t.brands.c.code, t.brands.c.id))}
        existing = {
            r.sku
            for r in conn.execute(
                select(t.products.c.sku).where(t.products.c.sku.in_([p["sku"] for p in products]))
            )
        }
        rows = []
        for i, p in enumerate(products):
            if p["brand"] not in brand_ids:
                raise ValidationFailed(f"unknown brand {p['brand']!r}", field=f"[{i}].brand")
            rows.append(
                {**{k: v for k, v in p.items() if k != "brand"}, "brand_id": brand_ids[p["brand"]]}
            )
        new = [r for r in rows if r["sku"] not in existing]
        if new:
            conn.execute(insert(t.products), new)
        for r in rows:
            if r["sku"] in existing:
                conn.execute(update(t.products).where(t.products.c.sku == r["sku"]).values(**r))
        return len(rows)

    result: int = _write(platform, work)
    return result


def list_programs(platform: Platform) -> list[dict[str, Any]]:
    return _rows(platform, t.programs)


def list_tiers(platform: Platform, program: str) -> list[dict[str, Any]]:
    with platform.engine.connect() as conn:
        pid = _id_of(conn, t.programs, program, "program", field="program")
        return [
            dict(r._mapping)
            for r in conn.execute(
                select(t.tiers).where(t.tiers.c.program_id == pid).order_by(t.tiers.c.rank)
            )
        ]


def list_brands(platform: Platform) -> list[dict[str, Any]]:
    with platform.engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(
                select(t.brands.c.code, t.brands.c.name, t.programs.c.code.label("program"))
                .join(t.programs, t.programs.c.id == t.brands.c.program_id)
                .order_by(t.brands.c.code)
            )
        ]


def list_channels(platform: Platform) -> list[dict[str, Any]]:
    return _rows(platform, t.channels)


def list_stores(platform: Platform) -> list[dict[str, Any]]:
    with platform.engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(
                select(
                    t.stores.c.code,
                    t.stores.c.name,
                    t.stores.c.city,
                    t.stores.c.region,
                    t.stores.c.latitude,
                    t.stores.c.longitude,
                    t.brands.c.code.label("brand"),
                )
                .join(t.brands, t.brands.c.id == t.stores.c.brand_id)
                .order_by(t.stores.c.code)
            )
        ]


def list_guides(platform: Platform) -> list[dict[str, Any]]:
    with platform.engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(
                select(t.guides.c.code, t.guides.c.name, t.stores.c.code.label("store"))
                .join(t.stores, t.stores.c.id == t.guides.c.store_id)
                .order_by(t.guides.c.code)
            )
        ]


def list_products(platform: Platform, *, limit: int = 500, offset: int = 0) -> list[dict[str, Any]]:
    with platform.engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(
                select(
                    t.products.c.sku,
                    t.products.c.name,
                    t.products.c.style,
                    t.products.c.colour,
                    t.products.c.size,
                    t.products.c.category,
                    t.products.c.list_price,
                    t.brands.c.code.label("brand"),
                )
                .join(t.brands, t.brands.c.id == t.products.c.brand_id)
                .order_by(t.products.c.sku)
                .limit(limit)
                .offset(offset)
            )
        ]
