"""The canonical tables that every analytics expression reads.

KPIs, tags, segments and model tags are Ibis expressions over these tables and
nothing else, so they run unchanged on DuckDB (the default, fed by
:mod:`quanyu.analytics.sync`), directly on PostgreSQL (over
:mod:`quanyu.analytics.canonical`'s views of the operational tables), or on any other
Ibis backend that holds tables of these shapes (Spark, ClickHouse, BigQuery).

Conventions:
- ``member_id`` is the OneID profile id. Merges re-point every fact to the surviving
  profile, so a merged-away id never appears.
- Timestamps are naive wall-clock time in the program's time zone: a period ("2026-03",
  a day) is the one a store manager would name.
- Money is integer fen. ``paid_*`` is what the lines sold for after discounts, whatever
  the tender (cash, card or points), ``refunded_*`` what was given back so far.
- Store, channel, guide, brand and tier are codes, not ids, so exports read well.
"""

from __future__ import annotations

from typing import Final

import ibis
import ibis.expr.datatypes as dt

S, I64, I32, F64 = dt.string, dt.int64, dt.int32, dt.float64
TS, D, B = dt.timestamp, dt.date, dt.boolean

SCHEMAS: Final[dict[str, ibis.Schema]] = {
    # One row per known person (active profile). ``registered_at`` is null for a
    # prospect: someone the brand knows (a marketplace buyer, a follower) who never joined.
    "members": ibis.schema(
        {
            "member_id": I64,
            "member_no": S,
            "registered_at": TS,
            "channel": S,  # recruitment channel
            "store": S,  # recruitment store
            "guide": S,  # bound guide
            "brand": S,  # brand of the recruitment store, else the program's first brand
            "region": S,  # region of the home store, else the recruitment store
            "tier": S,
            "gender": S,
            "birthday": D,
            "home_store": S,
            "latitude": F64,  # last known location; null when unknown
            "longitude": F64,
            "created_at": TS,
        }
    ),
    "identities": ibis.schema(
        {
            "member_id": I64,
            "type": S,
            "namespace": S,
            "value": S,
            "first_seen_at": TS,
            "source": S,
        }
    ),
    # One row per order. ``units`` and ``refunded_units`` sum the order's lines.
    # ``member_id`` is null for an anonymous order.
    "orders": ibis.schema(
        {
            "order_id": I64,
            "member_id": I64,
            "brand": S,
            "channel": S,
            "store": S,
            "region": S,
            "guide": S,
            "ordered_at": TS,
            "paid_total": I64,
            "refunded_amount": I64,
            "units": I64,
            "refunded_units": I64,
        }
    ),
    "order_lines": ibis.schema(
        {
            "order_id": I64,
            "member_id": I64,
            "ordered_at": TS,
            "channel": S,
            "store": S,
            "line_no": I32,
            "sku": S,
            "category": S,
            "quantity": I64,
            "paid_amount": I64,
            "refunded_quantity": I64,
            "refunded_amount": I64,
        }
    ),
    "refunds": ibis.schema(
        {
            "refund_id": I64,
            "order_id": I64,
            "member_id": I64,
            "refunded_at": TS,
            "amount": I64,
        }
    ),
    # kind: earn | spend | expire | clawback | restore | adjust | ... (see domain.points)
    "points_entries": ibis.schema(
        {
            "entry_id": I64,
            "member_id": I64,
            "program": S,
            "kind": S,
            "points": I64,
            "debt_delta": I64,  # debt added (+) or settled (-); liability is points - debt
            "occurred_at": TS,
        }
    ),
    # kind: issued | claimed | reserved | released | redeemed | returned | voided | expired
    "coupon_events": ibis.schema(
        {
            "event_id": I64,
            "coupon_id": I64,
            "member_id": I64,
            "template": S,
            "kind": S,
            "channel": S,
            "store": S,
            "discount": I64,
            "occurred_at": TS,
        }
    ),
    # A contact with a member outside an order: a campaign interaction, an event or
    # pop-up visit, a control-group assignment (kind = "control").
    "touchpoints": ibis.schema(
        {
            "touchpoint_id": I64,
            "member_id": I64,
            "kind": S,
            "campaign": S,
            "channel": S,
            "store": S,
            "occurred_at": TS,
        }
    ),
    # Tags per member: rule and model tags written by a run, real-time tags by ingestion.
    "member_tags": ibis.schema(
        {
            "member_id": I64,
            "tag": S,
            "value": S,
            "score": F64,
            "model_version": S,
            "computed_at": TS,
        }
    ),
    # The member's current consent per contact channel (sms, email, wechat, call).
    "consents": ibis.schema({"member_id": I64, "purpose": S, "granted": B, "recorded_at": TS}),
    # What the brand spent on recruitment, per channel and month ("YYYY-MM"), in fen.
    "acquisition_costs": ibis.schema({"channel": S, "month": S, "amount": I64}),
    "stores": ibis.schema(
        {
            "store": S,
            "name": S,
            "brand": S,
            "city": S,
            "region": S,
            "latitude": F64,
            "longitude": F64,
        }
    ),
}

#: Facts of the canonical model, in the order the sync loads them.
TABLES: Final[tuple[str, ...]] = tuple(SCHEMAS)
