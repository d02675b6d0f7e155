"""Seeding the demo brand group: wall time split into planning, building service inputs,
and each ingestion service (registrations, orders, refunds), with peak memory.

    uv run python -m benchmarks.demo_seed --people 50000
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
    args = parser.parse_args()

    platform = bootstrap(Settings(database_url=fresh_database(args.backend)), clock=FixedClock(NOW))
    upgrade(platform.engine)
    spent: dict[str, float] = defaultdict(float)
    for name in ("register_many", "ingest_orders", "ingest_refunds"):
        setattr(demo_seed, name, _timed(name, getattr(demo_seed, name), spent))
    stages: dict[str, float] = {}
    started = time.perf_counter()

    def progress(stage: str, done: int, total: int) -> None:
        stages.setdefault(stage, time.perf_counter() - started)

    summary = demo_seed.seed_demo(platform, people=args.people, seed=args.seed, progress=progress)
    total = time.perf_counter() - started
    print(machine())
    print(summary)
    starts = ", ".join(f"{k} {v:.1f}s" for k, v in stages.items())
    print(f"total {total:.1f}s; stages started at {starts}")
    print(f"generate {summary.generate_seconds:.1f}s, ingest {summary.ingest_seconds:.1f}s")
    for name, seconds in spent.items():
        print(f"  {name:<15} {seconds:7.1f}s")
    print(f"orders/s through ingest_orders: {summary.orders / spent['ingest_orders']:.0f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
