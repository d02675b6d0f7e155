"""Coupon checkout throughput: validate then redeem a member's coupon, against
single-order ingestion measured in the same run.

One brand (benchmarks/common.py), N members, one coupon template (amount off, one per
member) and one coupon per member issued by ``issue_batch``. Then, in one process and
interleaved in rounds, each with T threads:

- ``order``: ``orders.ingest_order``, one 3-line order per member: the baseline;
- ``validate_redeem``: ``coupons.validate`` then ``coupons.reserve(..., confirm=True)``
  on the same basket, as a POS redeems at the till;
- ``reserve_confirm``: ``coupons.reserve`` then ``coupons.confirm``, as an online
  checkout holds the coupon and confirms it after payment.

Each member takes part in one measurement only (a coupon is redeemed once). Reported
per mode: checkouts (or orders) per second, p50/p99 latency of one checkout (both
calls), and the ratio to the order rate with the same threads. Before the timed part,
a few checkouts of each mode run with every statement counted at the driver (also the
warm-up). More than one thread only on PostgreSQL (SQLite runs one write at a time).

    uv run python -m benchmarks.coupon_redeem --backend postgres
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import random
import sqlite3
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import event, select

from benchmarks.common import fresh_database, machine, order_dict, order_input, seed_brand
from quanyu.adapters import tables as t
from quanyu.services import coupons, orders
from quanyu.services.uow import Platform

TEMPLATE = "BENCH10"
ACTOR = "bench"
MODES = ("order", "validate_redeem", "reserve_confirm")
COUNTED_PER_MODE = 10


@dataclass(frozen=True)
class Member:
    index: int  # phone(index) is the member's phone
    member_id: int
    code: str


# ---------------------------------------------------------------- set-up


def set_up(backend: str, members_count: int) -> tuple[Platform, list[Member]]:
    url = fresh_database(backend, "coupons")
    platform = seed_brand(url, members_count=members_count)
    coupons.create_template(
        platform,
        {
            "code": TEMPLATE,
            "name": "10 off, one per member",
            "kind": "amount_off",
            "value": 1_000,
            "valid_days": 30,
            "per_member_limit": 1,
            "total_limit": members_count * 2,
        },
        actor=ACTOR,
    )
    with platform.engine.connect() as conn:
        by_profile = {
            int(value[-8:]): int(pid)
            for pid, value in conn.execute(
                select(t.identities.c.profile_id, t.identities.c.value).where(
                    t.identities.c.type == "phone"
                )
            )
        }
    ids = [by_profile[i] for i in range(members_count)]
    coupons.issue_batch(
        platform,
        coupons.BatchRequest(template=TEMPLATE, request_key="bench", member_ids=tuple(ids)),
        actor=ACTOR,
    )
    with platform.engine.connect() as conn:
        codes = {
            int(pid): code
            for pid, code in conn.execute(select(t.coupons.c.profile_id, t.coupons.c.code))
        }
    return platform, [Member(i, pid, codes[pid]) for i, pid in enumerate(ids)]


def basket(m: Member) -> dict[str, Any]:
    """The member's 3-line order as the API takes it (the same lines for both paths)."""
    d = order_dict(m.index, random.Random(m.index), prefix="M")
    d["identities"] = [{"type": "phone", "value": f"139{m.index:08d}"}]
    return d


def checkout(m: Member, order_id: str) -> coupons.CheckoutRequest:
    d = basket(m)
    return coupons.CheckoutRequest(
        channel="pos",
        store=d["store"],
        member=coupons.MemberRef(member_id=m.member_id),
        lines=tuple(
            coupons.LineIn(x["line_no"], x["sku"], x["quantity"], x["paid_amount"])
            for x in d["lines"]
        ),
        codes=(m.code,),
        order_id=order_id,
    )


# ---------------------------------------------------------------- the operations


def operations(platform: Platform) -> dict[str, Callable[[Member], None]]:
    def order(m: Member) -> None:
        d = basket(m)
        d["external_id"] = f"ORD-{m.index}"
        orders.ingest_order(platform, order_input(d), actor=ACTOR)

    def validate_redeem(m: Member) -> None:
        req = checkout(m, f"POS-{m.index}")
        answer = coupons.validate(platform, req)
        assert answer["applicable"], answer
        done = coupons.reserve(platform, req, actor=ACTOR, confirm=True)
        assert done["status"] == "confirmed", done

    def reserve_confirm(m: Member) -> None:
        req = checkout(m, f"WEB-{m.index}")
        held = coupons.reserve(platform, req, actor=ACTOR)
        assert held["status"] == "reserved", held
        done = coupons.confirm(platform, "pos", f"WEB-{m.index}", actor=ACTOR)
        assert done["status"] == "confirmed", done

    return {
        "order": order,
        "validate_redeem": validate_redeem,
        "reserve_confirm": reserve_confirm,
    }


class WaitSampler:
    """PostgreSQL only: what the benchmark's active sessions wait for, sampled from
    ``pg_stat_activity`` every 20 ms on a connection of its own."""

    def __init__(self, url: str) -> None:
        self.url = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.samples: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> WaitSampler:
        def sample() -> None:
            with psycopg.connect(self.url, autocommit=True) as conn:
                while not self._stop.wait(0.02):
                    for kind, name in conn.execute(
                        "SELECT wait_event_type, wait_event FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                        "AND state = 'active'"
                    ):
                        self.samples[f"{kind}:{name}" if kind else "CPU"] += 1

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def drive(op: Callable[[Member], None], items: Sequence[Member], threads: int) -> dict[str, Any]:
    """Run ``op`` over ``items`` from ``threads`` threads; wall time and latencies."""
    feed = iter(items)
    lock = threading.Lock()
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[str] = []

    def worker(k: int) -> None:
        while True:
            with lock:
                m = next(feed, None)
            if m is None:
                return
            t0 = time.perf_counter()
            try:
                op(m)
            except Exception as exc:  # counted and reported, not fatal
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            latencies[k].append(time.perf_counter() - t0)

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    t0 = time.perf_counter()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    wall = time.perf_counter() - t0
    return {"wall": wall, "latencies": [x for part in latencies for x in part], "errors": errors}


# ---------------------------------------------------------------- counting statements


class _Counts:
    def __init__(self) -> None:
        self.driver: Counter[str] = Counter()
        self.core = 0

    def total(self) -> int:
        return sum(self.driver.values())


def _verb(sql: str) -> str:
    return sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"


def _sql_text(query: Any, cursor: Any) -> str:
    if isinstance(query, str):
        return query
    if isinstance(query, bytes):
        return query.decode()
    return str(query.as_string(cursor))


class _CountingCursor(psycopg.Cursor[Any]):
    counts: _Counts | None = None

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        if self.counts is not None:
            self.counts.driver[_verb(_sql_text(query, self))] += 1
        return super().execute(query, *args, **kwargs)

    def executemany(self, query: Any, params_seq: Any, *args: Any, **kwargs: Any) -> Any:
        params_seq = list(params_seq)
        if self.counts is not None:
            self.counts.driver[_verb(_sql_text(query, self))] += len(params_seq)
        return super().executemany(query, params_seq, *args, **kwargs)

    def copy(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        if self.counts is not None:
            self.counts.driver["COPY"] += 1
        return super().copy(statement, *args, **kwargs)


@contextmanager
def counting(platform: Platform) -> Iterator[_Counts]:
    """Count every statement sent to the database: at the driver (psycopg's cursor, or
    SQLite's trace callback), and those built by SQLAlchemy Core (before_cursor_execute).
    Connections are reopened on entry and exit."""
    counts = _Counts()
    engine = platform.engine

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        if isinstance(dbapi_conn, psycopg.Connection):
            dbapi_conn.cursor_factory = _CountingCursor
        elif isinstance(dbapi_conn, sqlite3.Connection):
            dbapi_conn.set_trace_callback(lambda sql: counts.driver.update([_verb(sql)]))

    def on_core(*_args: Any) -> None:
        counts.core += 1

    _CountingCursor.counts = counts
    engine.dispose()
    event.listen(engine, "connect", on_connect)
    event.listen(engine, "before_cursor_execute", on_core)
    try:
        yield counts
    finally:
        event.remove(engine, "connect", on_connect)
        event.remove(engine, "before_cursor_execute", on_core)
        _CountingCursor.counts = None
        engine.dispose()


def count_statements(
    platform: Platform, sample: dict[str, list[Member]]
) -> dict[str, dict[str, Any]]:
    """Statements per call of each step, single-threaded (this is also the warm-up)."""
    p = platform
    out: dict[str, dict[str, Any]] = {}
    with counting(platform) as counts:

        def measure(name: str, items: list[Member], step: Callable[[Member], object]) -> None:
            core0, driver0 = counts.core, Counter(counts.driver)
            for m in items:
                step(m)
            driver = counts.driver - driver0
            n = len(items)
            out[name] = {
                "statements": round(sum(driver.values()) / n, 1),
                "via_core": round((counts.core - core0) / n, 1),
                "by_verb": {k: round(v / n, 1) for k, v in sorted(driver.items())},
            }

        measure(
            "order: ingest_order",
            sample["order"],
            lambda m: orders.ingest_order(
                p, order_input({**basket(m), "external_id": f"CNT-{m.index}"}), actor=ACTOR
            ),
        )
        vr = sample["validate_redeem"]
        measure("validate", vr, lambda m: coupons.validate(p, checkout(m, f"CV-{m.index}")))
        measure(
            "reserve(confirm=True)",
            vr,
            lambda m: coupons.reserve(p, checkout(m, f"CV-{m.index}"), actor=ACTOR, confirm=True),
        )
        rc = sample["reserve_confirm"]
        measure(
            "reserve", rc, lambda m: coupons.reserve(p, checkout(m, f"CR-{m.index}"), actor=ACTOR)
        )
        measure(
            "confirm",
            rc,
            lambda m: coupons.confirm(p, "pos", f"CR-{m.index}", actor=ACTOR),
        )
    return out


# ---------------------------------------------------------------- main


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [x for r in results for x in r["latencies"]]
    count = len(latencies)
    wall = sum(r["wall"] for r in results)
    if count < 2:
        raise SystemExit(f"only {count} calls succeeded: {results[0]['errors'][:3]}")
    q = statistics.quantiles(latencies, n=100)
    return {
        "count": count,
        "per_s": round(count / wall, 1),
        "p50_ms": round(q[49] * 1000, 2),
        "p99_ms": round(q[98] * 1000, 2),
        "errors": sum(len(r["errors"]) for r in results),
    }


def _shares(samples: Counter[str]) -> dict[str, float]:
    """Each wait's share of the sampled active sessions (the top 5)."""
    total = sum(samples.values()) or 1
    return {k: round(v / total, 2) for k, v in samples.most_common(5)}


def profile_one_thread(platform: Platform, items: list[Member], top: int) -> str:
    op = operations(platform)["validate_redeem"]
    profiler = cProfile.Profile()
    profiler.enable()
    for m in items:
        op(m)
    profiler.disable()
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--members", type=int, default=2_000)
    parser.add_argument(
        "--threads",
        default="1,4",
        help="comma-separated thread counts (default 1,4; more than 1 on PostgreSQL only)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="each mode is measured this many times per thread count, interleaved",
    )
    parser.add_argument(
        "--waits",
        action="store_true",
        help="PostgreSQL: sample pg_stat_activity during each measurement and report what "
        "the sessions waited for (a query every 20 ms: a little load of its own)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="afterwards, profile N validate-and-redeem checkouts on one thread with "
        "cProfile and print the top functions to stderr",
    )
    args = parser.parse_args()

    threads = [int(x) for x in args.threads.split(",")]
    skipped = [n for n in threads if n > 1 and args.backend == "sqlite"]
    threads = [n for n in threads if n not in skipped]

    t_setup = time.perf_counter()
    platform, everyone = set_up(args.backend, args.members)
    setup_s = time.perf_counter() - t_setup

    pool = iter(everyone)

    def take(n: int) -> list[Member]:
        got = [m for _, m in zip(range(n), pool, strict=False)]
        if len(got) < n:
            raise SystemExit(f"not enough members: raise --members above {args.members}")
        return got

    sample = {mode: take(COUNTED_PER_MODE) for mode in MODES}
    profiled = take(args.profile) if args.profile else []
    cells = len(threads) * args.rounds * len(MODES)
    size = (args.members - len(MODES) * COUNTED_PER_MODE - args.profile) // cells
    if size < 20:
        raise SystemExit(f"too few members per measurement ({size}): raise --members")

    statements = count_statements(platform, sample)

    ops = operations(platform)
    raw: dict[tuple[int, str], list[dict[str, Any]]] = {}
    waits: dict[tuple[int, str], Counter[str]] = {}
    sample_waits = args.waits and args.backend == "postgres"
    t_measure = time.perf_counter()
    for r in range(args.rounds):
        for n in threads:
            # Rotate the order of the modes from round to round.
            for mode in MODES[r % 3 :] + MODES[: r % 3]:
                items = take(size)
                if sample_waits:
                    with WaitSampler(platform.engine.url.render_as_string(False)) as w:
                        raw.setdefault((n, mode), []).append(drive(ops[mode], items, n))
                    waits.setdefault((n, mode), Counter()).update(w.samples)
                else:
                    raw.setdefault((n, mode), []).append(drive(ops[mode], items, n))
    measure_s = time.perf_counter() - t_measure

    modes: list[dict[str, Any]] = []
    for n in threads:
        base = summary(raw[(n, "order")])
        for mode in MODES:
            s = base if mode == "order" else summary(raw[(n, mode)])
            modes.append(
                {
                    "mode": mode,
                    "threads": n,
                    **s,
                    "ratio_to_orders": round(s["per_s"] / base["per_s"], 3),
                    **({"waits": _shares(waits[(n, mode)])} if (n, mode) in waits else {}),
                }
            )
    errors = sorted({e for cell in raw.values() for r in cell for e in r["errors"]})

    profile = profile_one_thread(platform, profiled, 30) if profiled else ""
    result = {
        "benchmark": "coupon validate and redeem",
        "backend": args.backend,
        "members": args.members,
        "per_measurement": size,
        "rounds": args.rounds,
        "threads_skipped_on_sqlite": skipped,
        "setup_s": round(setup_s, 1),
        "measure_s": round(measure_s, 1),
        "unit": "orders/s for order, checkouts/s (both calls) for the coupon modes",
        "modes": modes,
        "statements_per_call": statements,
        "statements_note": "sent to the driver per call, single-threaded; on PostgreSQL "
        "without BEGIN and COMMIT (psycopg sends them itself) and pipelined writes share "
        "one round trip; on SQLite with them, and one per executemany row",
        "first_errors": errors[:5],
        "machine": machine(),
    }
    print(json.dumps(result, indent=2))
    if profile:
        print(profile, file=sys.stderr)
    platform.engine.dispose()


if __name__ == "__main__":
    main()
