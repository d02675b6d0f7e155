"""Brand set-up as an in-process snapshot: channels, brands, stores, guides, programs
and the channel assortment rules.

These tables are small and read on every order, so each process keeps a snapshot
and reloads it after ``max_age`` seconds, or at once after a set-up change made in
this process (:func:`invalidate`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, select

from quanyu.adapters import tables as t
from quanyu.domain.assortment import Assortment, AssortmentRule, AssortmentStatus, TargetKind
from quanyu.domain.earn_rules import EarnRule, rule_from_document, rule_in_force
from quanyu.domain.points import ClawbackPolicy
from quanyu.domain.tags import RealtimeCondition, TagKind, parse_realtime
from quanyu.domain.tiers import ReviewKind, Tier, TierMetric, TierPolicy


@dataclass(frozen=True)
class ChannelRef:
    id: int
    code: str
    kind: str


@dataclass(frozen=True)
class BrandRef:
    id: int
    code: str
    program_id: int


@dataclass(frozen=True)
class StoreRef:
    id: int
    code: str
    brand_id: int
    region: str


@dataclass(frozen=True)
class GuideRef:
    id: int
    code: str
    store_id: int


@dataclass(frozen=True)
class ProgramConfig:
    id: int
    code: str
    tz: ZoneInfo
    pending_days: int
    expiry_kind: str
    expiry_days: int | None
    clawback_policy: ClawbackPolicy
    point_value_minor: Decimal
    points_payment_cap_percent: int
    tier_policy: TierPolicy
    rules: tuple[EarnRule, ...]
    brand_ids: frozenset[int]
    coupon_hold_minutes: int = 30
    assortment_policy: str = "flag"  # reject | flag

    def rule_at(self, at: datetime) -> EarnRule | None:
        return rule_in_force(self.rules, at)


@dataclass(frozen=True)
class ReferenceData:
    channels: dict[str, ChannelRef] = field(default_factory=dict)
    brands: dict[str, BrandRef] = field(default_factory=dict)
    stores: dict[str, StoreRef] = field(default_factory=dict)
    guides: dict[str, GuideRef] = field(default_factory=dict)
    programs: dict[int, ProgramConfig] = field(default_factory=dict)
    brands_by_id: dict[int, BrandRef] = field(default_factory=dict)
    stores_by_id: dict[int, StoreRef] = field(default_factory=dict)
    channels_by_id: dict[int, ChannelRef] = field(default_factory=dict)
    guides_by_id: dict[int, GuideRef] = field(default_factory=dict)
    assortment: Assortment = field(default_factory=Assortment)
    # Active real-time tags: (code, condition), checked on every ingested order.
    realtime_tags: tuple[tuple[str, RealtimeCondition], ...] = ()


def load_reference(conn: Connection) -> ReferenceData:
    channels = {r.code: ChannelRef(r.id, r.code, r.kind) for r in conn.execute(select(t.channels))}
    brands = {r.code: BrandRef(r.id, r.code, r.program_id) for r in conn.execute(select(t.brands))}
    stores = {
        r.code: StoreRef(r.id, r.code, r.brand_id, r.region) for r in conn.execute(select(t.stores))
    }
    guides = {r.code: GuideRef(r.id, r.code, r.store_id) for r in conn.execute(select(t.guides))}
    tiers_by_program: dict[int, list[Tier]] = {}
    for r in conn.execute(select(t.tiers)):
        tiers_by_program.setdefault(r.program_id, []).append(
            Tier(r.code, r.name, r.rank, r.threshold)
        )
    rules_by_program: dict[int, list[EarnRule]] = {}
    for r in conn.execute(select(t.earn_rules)):
        rules_by_program.setdefault(r.program_id, []).append(
            rule_from_document(r.version, r.effective_from, r.document)
        )
    programs: dict[int, ProgramConfig] = {}
    for r in conn.execute(select(t.programs)):
        tier_list = tiers_by_program.get(r.id) or [Tier("member", "Member", 0, 0)]
        programs[r.id] = ProgramConfig(
            id=r.id,
            code=r.code,
            tz=ZoneInfo(r.timezone),
            pending_days=r.pending_days,
            expiry_kind=r.expiry_kind,
            expiry_days=r.expiry_days,
            clawback_policy=ClawbackPolicy(r.clawback_policy),
            point_value_minor=Decimal(r.point_value_minor),
            points_payment_cap_percent=r.points_payment_cap_percent,
            tier_policy=TierPolicy(
                metric=TierMetric(r.tier_metric),
                tiers=tuple(tier_list),
                review=ReviewKind(r.tier_review),
                fixed_month=r.tier_review_month,
                fixed_day=r.tier_review_day,
                grace_days=r.tier_grace_days,
                max_downgrade_levels=r.tier_max_downgrade_levels,
                window_days=r.tier_window_days,
            ),
            rules=tuple(rules_by_program.get(r.id, [])),
            brand_ids=frozenset(b.id for b in brands.values() if b.program_id == r.id),
            coupon_hold_minutes=r.coupon_hold_minutes,
            assortment_policy=r.assortment_policy,
        )
    assortment = Assortment(
        AssortmentRule(
            r.channel_id,
            r.store_id,
            TargetKind(r.target_kind),
            r.target,
            AssortmentStatus(r.status),
        )
        for r in conn.execute(
            select(
                t.assortment_rules.c.channel_id,
                t.assortment_rules.c.store_id,
                t.assortment_rules.c.target_kind,
                t.assortment_rules.c.target,
                t.assortment_rules.c.status,
            )
        )
    )
    realtime = tuple(
        (r.code, parse_realtime(r.document))
        for r in conn.execute(
            select(t.tag_definitions.c.code, t.tag_definitions.c.document)
            .where(
                t.tag_definitions.c.kind == TagKind.REALTIME,
                t.tag_definitions.c.status == "active",
            )
            .order_by(t.tag_definitions.c.code)
        )
    )
    return ReferenceData(
        realtime_tags=realtime,
        channels=channels,
        brands=brands,
        stores=stores,
        guides=guides,
        programs=programs,
        brands_by_id={b.id: b for b in brands.values()},
        stores_by_id={s.id: s for s in stores.values()},
        channels_by_id={c.id: c for c in channels.values()},
        guides_by_id={g.id: g for g in guides.values()},
        assortment=assortment,
    )


class ReferenceCache:
    def __init__(self, engine: Engine, max_age: float) -> None:
        self.engine = engine
        self.max_age = max_age
        self._data: ReferenceData | None = None
        self._loaded = 0.0
        self._lock = threading.Lock()

    def get(self, conn: Connection | None = None) -> ReferenceData:
        with self._lock:
            if self._data is None or time.monotonic() - self._loaded > self.max_age:
                if conn is not None:
                    self._data = load_reference(conn)
                else:
                    with self.engine.connect() as c:
                        self._data = load_reference(c)
                self._loaded = time.monotonic()
            return self._data

    def invalidate(self) -> None:
        with self._lock:
            self._data = None
