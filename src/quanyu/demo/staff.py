"""Demo staff accounts, one per role, so that ``make demo`` opens straight into the
console. They share one password, printed when the demo starts; a real brand creates its
own accounts with ``quanyu staff add``."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import func, select

from quanyu.adapters import tables as t
from quanyu.domain.access import Role
from quanyu.services import access
from quanyu.services.uow import Platform

DEMO_PASSWORD = "quanyu-demo"


def seed_staff(platform: Platform) -> list[tuple[str, str, str]]:
    """Create the demo accounts if there are none: (username, role, scope) each."""
    with platform.engine.connect() as conn:
        ref = platform.reference.get(conn)
        # The guide with the most bound members, and that guide's store and region.
        busiest = conn.execute(
            select(t.memberships.c.guide_id, func.count())
            .where(t.memberships.c.guide_id.is_not(None))
            .group_by(t.memberships.c.guide_id)
            .order_by(func.count().desc(), t.memberships.c.guide_id)
            .limit(1)
        ).first()
    if busiest is not None:
        guide = ref.guides_by_id[busiest[0]]
    else:
        guide = min(ref.guides.values(), key=lambda g: g.code)
    store = ref.stores_by_id[guide.store_id]
    regions = Counter(s.region for s in ref.stores.values())
    accounts: list[tuple[str, Role, dict[str, Any], str]] = [
        ("admin", Role.HQ_ADMIN, {}, "管理员 Admin"),
        ("ops", Role.HQ_OPERATOR, {}, "会员运营 Ops"),
        ("analyst", Role.ANALYST, {}, "分析师 Analyst"),
        ("region", Role.REGION_MANAGER, {"region": store.region}, "大区经理 Region"),
        ("store", Role.STORE_MANAGER, {"stores": [store.code]}, "店长 Store"),
        ("guide", Role.GUIDE, {"guide": guide.code}, "导购 Guide"),
    ]
    made = []
    existing = {s["username"] for s in access.list_staff(platform)}
    for username, role, scope, name in accounts:
        if username not in existing:
            access.create_staff(
                platform,
                username=username,
                password=DEMO_PASSWORD,
                role=role,
                display_name=name,
                actor="demo",
                **scope,
            )
        label = scope.get("region") or ", ".join(scope.get("stores", [])) or scope.get("guide")
        made.append((username, role.value, str(label or "all members")))
    assert regions  # the demo has stores
    return made
