"""Seeding the demo brand group: wall time split into planning, building service inputs,
and each ingestion service (registrations, orders, refunds), with peak memory.

    uv run python -m benchmarks.demo_seed --people 50000

Recorded on 2 cores (AMD EPYC), SQLite, 50,000 people, seed 7: 30,490 members,
135,720 orders (225,336 lines), 6,709 refunds, 1,083 merges, nothing rejected.
Best run on a quiet machine: 108 s = planning and building inputs 8 s + services
100 s (register_many 12 s, ingest_orders 69 s, ingest_refunds 19 s); peak RSS 198 MiB.
With another benchmark on the second core: 153-160 s. At 1,000,000 people planning
takes 82 s and peak RSS stays under 300 MiB, but ingestion slows from 1,700 to 660
events/s by 0.9 M of 3.45 M events: the row-value ``IN`` lookups in
``WorkingSet.preload_identities`` and ``OrderBatch`` scan whole tables on SQLite.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from benchmarks.common import NOW, fresh_database, machine
from quanyu.adapters.migrate import upgrade
from quanyu.bootstrap import bootstrap
from quanyu.clock import FixedClock
from quanyu.config import Settings
from quanyu.demo import seed as demo_seed


def _timed(name: str, fn: Callable[..., Any], spent: dict[str, float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - started

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--segment", type=int, default=demo_seed.SEGMENT, help="events per batch")
    args = parser.parse_args()

    platform = bootstrap(Settings(database_url=fresh_database(args.backend)), clock=FixedClock(NOW))
    upgrade(platform.engine)
    demo_seed.SEGMENT = args.segment
    spent: dict[str, float] = defaultdict(float)
    for name in ("register_many", "ingest_orders", "ingest_refunds"):
        setattr(demo_seed, name, _timed(name, getattr(demo_seed, name), spent))
    planning: dict[str, float] = defaultdict(float)
    demo_seed.Planner.plan = _timed("plan", demo_seed.Planner.plan, planning)  # type: ignore[method-assign]
    stages: dict[str, float] = {}
    started = time.perf_counter()

    def progress(stage: str, done: int, total: int) -> None:
        if done == total:
            stages.setdefault(stage, time.perf_counter() - started)

    summary = demo_seed.seed_demo(platform, people=args.people, seed=args.seed, progress=progress)
    total = time.perf_counter() - started
    ingest = sum(spent.values())
    plan = planning["plan"]
    build = total - stages["setup"] - plan - ingest
    print(machine())
    print(f"segment {args.segment}; {summary}")
    print(f"total {total:.1f}s = set-up {stages['setup']:.1f}s + planning {plan:.1f}s")
    print(f"  + building inputs and spooling {build:.1f}s + services {ingest:.1f}s:")
    for name, seconds in spent.items():
        print(f"    {name:<15} {seconds:7.1f}s")
    print(f"orders/s through ingest_orders: {summary.orders / spent['ingest_orders']:.0f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
