"""Real-time tags: checked while an order is ingested, in the order's own transaction.

The active definitions are read once per transaction. A matching order sets the tag on
its member (value ``"true"``, model version ``"realtime"``), replacing an earlier one, so
the tag is there without waiting for a batch run (:mod:`quanyu.domain.tags`).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select

from quanyu.adapters import tables as t
from quanyu.analytics.canonical import REALTIME
from quanyu.domain.tags import OrderEvent, RealtimeCondition, TagKind, parse_realtime
from quanyu.services.working_set import WorkingSet

MEMO_KEY = "realtime_tags"


def _definitions(ws: WorkingSet) -> list[tuple[str, RealtimeCondition]]:
    found = ws.memo.get(MEMO_KEY)
    if found is None:
        rows = ws.conn.execute(
            select(t.tag_definitions.c.code, t.tag_definitions.c.document).where(
                t.tag_definitions.c.kind == TagKind.REALTIME,
                t.tag_definitions.c.status == "active",
            )
        )
        found = [(r.code, parse_realtime(r.document)) for r in rows]
        ws.memo[MEMO_KEY] = found
    return list(found)


def tag_order(
    ws: WorkingSet,
    profile_id: int | None,
    *,
    channel: str,
    store: str | None,
    paid_total: int,
    lines: Sequence[tuple[str, str]],
) -> list[str]:
    """Set the real-time tags this order matches on its member; the codes set."""
    if profile_id is None:
        return []
    definitions = _definitions(ws)
    if not definitions:
        return []
    event = OrderEvent(channel=channel, store=store, paid_total=paid_total, lines=lines)
    hits = [code for code, condition in definitions if condition.matches(event)]
    mt = t.member_tags
    done: set[tuple[int, str]] = ws.memo.setdefault(MEMO_KEY + ":set", set())
    for code in hits:
        if (profile_id, code) in done:
            continue
        done.add((profile_id, code))
        # The row is written with the transaction's other rows, after its profile.
        ws.conn.execute(delete(mt).where(mt.c.profile_id == profile_id, mt.c.tag == code))
        ws.add(
            mt,
            {
                "profile_id": profile_id,
                "tag": code,
                "value": "true",
                "score": None,
                "model_version": REALTIME,
                "computed_at": ws.now,
            },
        )
    return hits
