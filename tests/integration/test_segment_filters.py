"""A segment's filter (conditions.matching) selects exactly the members its flags
(conditions.evaluate) mark true: a filter may leave a failed test null, since a filter
takes null as false, but never where that would change the answer (under ``not``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from quanyu.analytics import conditions, sync
from quanyu.analytics.schema import SCHEMAS
from quanyu.domain.segments import parse

AS_OF = datetime(2026, 5, 10, 12)
# Members 1-8: tier, gender and registration, some of them missing.
TIERS = ["gold", "silver", None, "gold", None, "black", "silver", None]
GENDERS = ["F", None, "M", "F", "F", None, "M", None]
REGISTERED = [400, 20, None, 90, 5, None, 200, 1]  # days before AS_OF
# (member, days ago, paid)
ORDERS = [(1, 10, 30_000), (1, 200, 5_000), (2, 3, 2_000), (4, 40, 90_000), (5, 1, 500)]

CONDITIONS: list[dict[str, Any]] = [
    {"attr": "tier", "op": "in", "value": ["gold", "black"]},
    {"not": {"attr": "tier", "op": "eq", "value": "gold"}},
    {"not": {"attr": "gender", "op": "in", "value": ["F"]}},
    {
        "all": [
            {"attr": "tier", "op": "ne", "value": "silver"},
            {"not": {"attr": "gender", "op": "eq", "value": "M"}},
        ]
    },
    {
        "any": [
            {"attr": "gender", "op": "eq", "value": "F"},
            {"orders": "count", "within_days": 30, "op": "gte", "value": 1},
        ]
    },
    {
        "all": [
            {"attr": "tier", "op": "in", "value": ["gold", "silver"]},
            {
                "any": [
                    {"attr": "joined_days", "op": "lte", "value": 100},
                    {"not": {"attr": "gender", "op": "eq", "value": "F"}},
                ]
            },
        ]
    },
    {
        "not": {
            "any": [
                {"attr": "joined_days", "op": "gt", "value": 30},
                {"orders": "sales", "within_days": 365, "op": "gte", "value": 10_000},
            ]
        }
    },
    {
        "all": [
            {"not": {"orders": "recency_days", "op": "lte", "value": 5}},
            {"attr": "gender", "op": "not_null"},
        ]
    },
]


def store() -> Any:
    con = sync.open_store(":memory:")
    n = len(TIERS)
    members: dict[str, list[Any]] = {c: [None] * n for c in SCHEMAS["members"].names}
    members["member_id"] = list(range(1, n + 1))
    members["tier"] = TIERS
    members["gender"] = GENDERS
    members["created_at"] = [AS_OF - timedelta(days=500)] * n
    members["registered_at"] = [
        None if d is None else AS_OF - timedelta(days=d) for d in REGISTERED
    ]
    con.con.register("_m", pa.table(members, schema=SCHEMAS["members"].to_pyarrow()))
    con.con.execute("INSERT INTO members SELECT * FROM _m")
    orders: dict[str, list[Any]] = {c: [] for c in SCHEMAS["orders"].names}
    for i, (member, days, paid) in enumerate(ORDERS, start=1):
        row = {
            "order_id": i,
            "member_id": member,
            "ordered_at": AS_OF - timedelta(days=days),
            "units": 1,
            "refunded_units": 0,
            "paid_total": paid,
            "refunded_amount": 0,
            "channel": "pos",
        }
        for c, values in orders.items():
            values.append(row.get(c))
    con.con.register("_o", pa.table(orders, schema=SCHEMAS["orders"].to_pyarrow()))
    con.con.execute("INSERT INTO orders SELECT * FROM _o")
    return con


@pytest.mark.parametrize("doc", CONDITIONS, ids=[str(i) for i in range(len(CONDITIONS))])
def test_a_segment_selects_the_members_its_flag_marks_with_missing_attributes_failing(
    doc: dict[str, Any],
) -> None:
    con = store()
    tables = {name: con.table(name) for name in SCHEMAS}
    condition = parse(doc)
    flags = conditions.evaluate(tables, {"c": condition}, as_of=AS_OF).to_pyarrow().to_pylist()
    flagged = {r["member_id"] for r in flags if r["c"]}
    assert all(r["c"] is not None for r in flags)  # a flag is true or false, never null
    selected = conditions.member_ids(tables, condition, as_of=AS_OF).to_pyarrow()
    assert set(selected.column("member_id").to_pylist()) == flagged
