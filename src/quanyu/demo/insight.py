"""The demo brand's insight set-up: tags, segments, recruitment costs and a pop-up.

``define_realtime_tags`` runs before the orders are seeded, so that ingestion sets them;
``seed_insight`` runs after: it loads recruitment costs, defines the model and rule tags
and segments, syncs the analytics store, runs the tags and snapshots the segments.
Everything is a pure function of the seeded data and the platform clock.
"""

from __future__ import annotations

from typing import Any

from quanyu.services import insight
from quanyu.services.uow import Platform

ACTOR = "demo"

REALTIME_TAGS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "livestream_buyer",
        "Bought in a livestream",
        {"event": "order", "channel": ["douyin", "kuaishou"]},
    ),
    ("big_basket", "One order over 2,000 yuan", {"event": "order", "min_paid": 200_000}),
)

MODEL_TAGS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("rfm", "RFM segment", {"model": "rfm"}),
    ("lifecycle", "Lifecycle stage", {"model": "lifecycle"}),
    ("p_alive", "Still active (BG/NBD)", {"model": "p_alive"}),
    ("next_90d", "Expected purchases, next 90 days", {"model": "expected_purchases"}),
    ("clv", "Customer lifetime value, 12 months", {"model": "clv"}),
)

RULE_TAGS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "outerwear_fan",
        "Bought outerwear twice in a year",
        {"orders": "count", "category": ["outerwear"], "within_days": 365, "op": "gte", "value": 2},
    ),
    (
        "high_spender",
        "Over 5,000 yuan in a year",
        {"orders": "sales", "within_days": 365, "op": "gte", "value": 500_000},
    ),
    (
        "omnichannel",
        "Bought online and in store",
        {
            "all": [
                {"orders": "count", "channel": ["pos"], "op": "gte", "value": 1},
                {
                    "orders": "count",
                    "channel": ["tmall", "jd", "mini", "web"],
                    "op": "gte",
                    "value": 1,
                },
            ]
        },
    ),
)

SEGMENTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "vip_at_risk",
        "Gold and black-card members at risk",
        {
            "all": [
                {"attr": "tier", "op": "in", "value": ["gold", "black"]},
                {"tag": "lifecycle", "op": "in", "value": ["at_risk", "lapsed"]},
            ]
        },
    ),
    ("champions", "RFM champions", {"tag": "rfm", "op": "eq", "value": "champions"}),
    (
        "livestream_fans",
        "Livestream buyers who never bought in store",
        {
            "all": [
                {"tag": "livestream_buyer"},
                {"not": {"orders": "count", "channel": ["pos"], "op": "gte", "value": 1}},
            ]
        },
    ),
)

# Recruitment cost per new member, fen, by channel: what the demo brand loads for CAC.
COST_PER_RECRUIT = {
    "pos": 1_500,
    "mini": 2_500,
    "web": 3_000,
    "tmall": 6_000,
    "jd": 5_500,
    "douyin": 8_000,
    "kuaishou": 7_000,
}


def define_realtime_tags(platform: Platform) -> None:
    for code, name, document in REALTIME_TAGS:
        insight.define_tag(
            platform, code=code, name=name, kind="realtime", document=document, actor=ACTOR
        )


def seed_insight(platform: Platform) -> dict[str, int]:
    """Set up and run the demo's tags and segments; counts of what was made."""
    a = insight.analytics(platform)
    a.refresh(full=True)
    tables = a.tables()
    m = tables["members"]
    m = m.filter(m.registered_at.notnull())
    recruits = a.execute(
        m.group_by(channel=m.channel, month=m.registered_at.strftime("%Y-%m")).aggregate(
            n=m.count()
        )
    ).to_pylist()
    costs = [
        {
            "channel": r["channel"],
            "month": r["month"],
            "amount": r["n"] * COST_PER_RECRUIT.get(r["channel"], 2_000),
        }
        for r in recruits
        if r["channel"]
    ]
    if costs:
        insight.load_costs(platform, costs, actor=ACTOR)
    for code, name, document in MODEL_TAGS:
        insight.define_tag(
            platform, code=code, name=name, kind="model", document=document, actor=ACTOR
        )
    for code, name, document in RULE_TAGS:
        insight.define_tag(
            platform, code=code, name=name, kind="rule", document=document, actor=ACTOR
        )
    a.refresh()
    runs = insight.run_tags(platform, actor=ACTOR)
    for code, name, condition in SEGMENTS:
        insight.define_segment(platform, code=code, name=name, condition=condition, actor=ACTOR)
        insight.snapshot(platform, code, actor=ACTOR)
    return {"tags": len(runs), "segments": len(SEGMENTS), "cost_rows": len(costs)}
