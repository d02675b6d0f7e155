"""The HTTP floor: the most a single-order endpoint on this stack can do, with no rules.

Serves one FastAPI route on the same stack as ``quanyu serve`` (uvicorn with httptools
and uvloop, the same worker count, Nagle off) that takes the same order JSON and makes
the same database work as a real order for a registered member, with no Python rules
and no SQLAlchemy:

- the six reads the service makes (stored key, catalogue, identities, profile lock,
  profile with memberships, 12-month tier contributions), by plain psycopg;
- the writes (order, 3 lines, points lot and entry, 2 history events) as one
  statement, then the commit.

It is a floor, not a model: a buyer who is not yet known gets no profile written, and
the six writes are one statement where the service sends several in a pipeline. So the
real service cannot be faster than this. It is measured with the same wrk load as
``benchmarks.http_orders`` and, in the same run, pgbench.

    uv run python -m benchmarks.http_floor --seconds 30
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from benchmarks.common import fresh_database, machine, pgbench_tps, seed_brand
from benchmarks.http_orders import PORT, wait_ready, wrk_load

_local = threading.local()

READS = (
    "SELECT external_id, fingerprint, payload, result FROM orders "
    "WHERE channel_id = %s AND external_id IN (%s)",
    "SELECT sku, category FROM products WHERE sku IN (%s, %s, %s)",
    "SELECT value, profile_id FROM identities WHERE type = %s AND namespace = %s AND value IN (%s)",
)
LOCK = "SELECT id, status FROM profiles WHERE id IN (%s) ORDER BY id FOR UPDATE"
PROFILE = (
    "SELECT p.id, p.created_at, p.name, p.birthday, p.gender, p.home_store_id, p.status, "
    "m.id, m.program_id, m.member_no, m.registered_at, m.tier_code, m.tier_achieved_at, "
    "m.tier_review_on, m.debt_points, m.status FROM profiles p LEFT OUTER JOIN memberships m "
    "ON m.profile_id = p.id WHERE p.id IN (%s) ORDER BY p.id"
)
CONTRIBUTIONS = (
    "SELECT profile_id, ordered_at, paid_total - refunded_amount FROM orders "
    "WHERE profile_id IN (%s) AND brand_id IN (%s) AND ordered_at >= %s"
)
WRITE = """
WITH o AS (
  INSERT INTO orders (channel_id, external_id, brand_id, profile_id, store_id, ordered_at,
    list_total, paid_total, points_used, points_amount, points_earned, fingerprint, payload,
    result, received_at)
  VALUES (%(channel)s, %(external_id)s, %(brand)s, %(profile)s, %(store)s, %(at)s,
    %(total)s, %(total)s, 0, 0, %(points)s, %(fp)s, %(payload)s, %(result)s, %(now)s)
  RETURNING id
), l AS (
  INSERT INTO order_lines (order_id, line_no, sku, category, quantity, list_price, paid_amount)
  SELECT o.id, x.line_no, x.sku, 'general', x.quantity, x.list_price, x.paid_amount
  FROM o, jsonb_to_recordset(%(lines)s::jsonb)
    AS x(line_no int, sku text, quantity int, list_price bigint, paid_amount bigint)
), lot AS (
  INSERT INTO points_lots (profile_id, program_id, order_id, earned_at, available_at,
    expires_at, original, remaining)
  SELECT %(profile)s, %(program)s, o.id, %(at)s, %(at)s, %(at)s, %(points)s, %(points)s FROM o
  RETURNING id, order_id
), e AS (
  INSERT INTO points_entries (profile_id, program_id, kind, points, lot_id, order_id, reason,
    actor, occurred_at, recorded_at)
  SELECT %(profile)s, %(program)s, 'earn', %(points)s, lot.id, lot.order_id, 'order', 'api',
    %(at)s, %(now)s FROM lot
)
INSERT INTO history (profile_id, kind, summary, data, actor, occurred_at)
SELECT %(profile)s, k, 'order', '{}', 'api', %(at)s FROM o, (VALUES ('order'), ('points')) v(k)
"""


def _conn() -> psycopg.Connection[Any]:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = psycopg.connect(os.environ["QUANYU_DATABASE_URL"])
        row = conn.execute(
            "SELECT c.id, b.id, b.program_id, s.id FROM channels c, brands b, stores s "
            "WHERE c.code = 'pos' AND b.code = 'acme' AND s.code = 'S000'"
        ).fetchone()
        conn.commit()
        assert row is not None
        _local.ids = row
    return conn


def _ingest(order: dict[str, Any], body: bytes) -> dict[str, Any]:
    conn = _conn()
    channel, brand, program, store = _local.ids
    now = datetime.now(UTC).replace(tzinfo=None)
    at = datetime.fromisoformat(order["ordered_at"]).astimezone(UTC).replace(tzinfo=None)
    lines = order["lines"]
    phone = "+86" + order["identities"][0]["value"]
    with conn.transaction():
        conn.execute(READS[0], (channel, order["external_id"])).fetchall()
        conn.execute(READS[1], [line["sku"] for line in lines]).fetchall()
        found = conn.execute(READS[2], ("phone", "", phone)).fetchall()
        points = 0
        profile = None
        if found:
            profile = found[0][1]
            conn.execute(LOCK, (profile,)).fetchall()
            conn.execute(PROFILE, (profile,)).fetchall()
            conn.execute(CONTRIBUTIONS, (profile, brand, at)).fetchall()
            points = sum(line["paid_amount"] for line in lines) // 100
        if profile is not None and points > 0:
            conn.execute(
                WRITE,
                {
                    "channel": channel,
                    "external_id": order["external_id"],
                    "brand": brand,
                    "profile": profile,
                    "store": store,
                    "program": program,
                    "at": at,
                    "now": now,
                    "total": sum(line["paid_amount"] for line in lines),
                    "points": points,
                    "fp": "0" * 64,
                    "payload": body.decode(),
                    "result": "{}",
                    "lines": json.dumps(lines),
                },
            )
    return {"external_id": order["external_id"], "points_earned": points}


app = FastAPI()


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/api/v1/orders")
async def post_order(request: Request) -> Response:
    body = await request.body()
    result = await run_in_threadpool(_ingest, orjson.loads(body), body)
    return Response(orjson.dumps(result), status_code=201, media_type="application/json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--no-pgbench", action="store_true")
    args = parser.parse_args()
    url = fresh_database("postgres", name="floor")
    seed_brand(url, members_count=args.members).engine.dispose()
    env = {**os.environ, "QUANYU_DATABASE_URL": url}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.http_floor:app",
            "--port",
            str(PORT),
            "--workers",
            str(args.workers),
            "--http",
            "quanyu.entrypoints.api.server:NoDelayHttpToolsProtocol",
            "--loop",
            "uvloop",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
    )
    try:
        wait_ready(PORT)
        wrk_load(3, args.clients, tag="W")
        measured = wrk_load(args.seconds, args.clients)
        healthz = wrk_load(10, args.clients, path="/healthz", method="GET")
    finally:
        server.terminate()
        server.wait(timeout=30)
    result: dict[str, Any] = {
        "benchmark": "http floor: the order's SQL with no rules, on the same stack",
        "clients": args.clients,
        "workers": args.workers,
        "seconds": args.seconds,
        "orders_per_s": round(measured["rate"], 1),
        "p50_ms": round(measured["p50_ms"], 2),
        "p99_ms": round(measured["p99_ms"], 2),
        "errors": int(measured["errors"]),
        "healthz_per_s": round(healthz["rate"], 1),
        "machine": machine(),
    }
    if not args.no_pgbench:
        tps = pgbench_tps(seconds=args.seconds)
        result["pgbench_tps"] = round(tps, 1)
        result["ratio_to_pgbench"] = round(measured["rate"] / tps, 3)
        result["healthz_ratio_to_pgbench"] = round(healthz["rate"] / tps, 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
