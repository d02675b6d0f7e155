"""Real-time tags: checked while an order is ingested, in the order's own transaction.

The active definitions come with the reference data (``ReferenceData.realtime_tags``;
this process reloads it when a tag is defined, others within
``QUANYU_REFERENCE_CACHE_SECONDS``), so an order that matches none pays no query. A
matching order sets the tag on its member (value ``"true"``, model version
``"realtime"``), replacing an earlier one, so the tag is there without waiting for a batch
run (:mod:`quanyu.domain.tags`).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete

from quanyu.adapters import tables as t
from quanyu.analytics.canonical import REALTIME
from quanyu.domain.tags import OrderEvent
from quanyu.services.working_set import WorkingSet

MEMO_KEY = "realtime_tags"


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
    definitions = ws.ref.realtime_tags
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
