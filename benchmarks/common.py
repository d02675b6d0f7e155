"""Shared set-up for the benchmarks: a fresh database, a small brand, synthetic orders."""

from __future__ import annotations

import os
import platform as pyplatform
import random
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from quanyu.adapters.migrate import upgrade
from quanyu.bootstrap import bootstrap
from quanyu.clock import FixedClock
from quanyu.config import Settings
from quanyu.domain.orders import IdentityInput, LineInput, OrderInput
from quanyu.services import members, setup
from quanyu.services.uow import Platform

PG_ADMIN = os.environ.get("QUANYU_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
PG_BENCH_DB = "quanyu_bench"
NOW = datetime(2026, 11, 1, tzinfo=UTC)
OUT = Path(__file__).parent / "out"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Python {pyplatform.python_version()}"


def fresh_database(backend: str, name: str = "bench") -> str:
    """A brand-new empty database URL for ``backend`` (sqlite or postgres)."""
    OUT.mkdir(exist_ok=True)
    if backend == "sqlite":
        path = OUT / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"
    database = PG_BENCH_DB if name == "bench" else f"{PG_BENCH_DB}_{name}"
    admin = PG_ADMIN.replace("postgresql://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {database}")
    return admin.rsplit("/", 1)[0] + f"/{database}"


STORES = 40


def seed_brand(url: str, *, members_count: int = 20_000) -> Platform:
    """A program with tiers and a versioned earn rule, one brand, channels, stores, members."""
    platform = bootstrap(Settings(database_url=url), clock=FixedClock(NOW))
    upgrade(platform.engine)
    setup.create_program(platform, {"code": "club", "name": "Club", "pending_days": 7})
    setup.set_tiers(
        platform,
        "club",
        [
            {"code": "silver", "name": "Silver", "rank": 0, "threshold": 0},
            {"code": "gold", "name": "Gold", "rank": 1, "threshold": 300_000},
            {"code": "black", "name": "Black", "rank": 2, "threshold": 1_500_000},
        ],
    )
    setup.add_earn_rule(
        platform,
        "club",
        effective_from=datetime(2020, 1, 1, tzinfo=UTC),
        document={
            "base_rate": "1",
            "tier_multipliers": {"gold": "1.5", "black": "2"},
            "member_days": [8],
            "member_day_multiplier": "2",
            "birthday_month_multiplier": "1.5",
        },
        actor="bench",
    )
    setup.create_brand(platform, code="acme", name="Acme", program="club")
    for code, kind in (("pos", "store_pos"), ("tmall", "tmall"), ("mini", "wechat_mini")):
        setup.create_channel(platform, code=code, name=code, kind=kind)
    for s in range(STORES):
        setup.create_store(
            platform,
            {
                "code": f"S{s:03d}",
                "name": f"Store {s}",
                "brand": "acme",
                "city": "Shanghai",
                "region": "East",
            },
        )
    regs = [
        members.Registration(
            identities=(IdentityInput("phone", phone(i)),),
            store=f"S{i % STORES:03d}",
            channel="pos",
            registered_at=NOW - timedelta(days=400),
        )
        for i in range(members_count)
    ]
    for k in range(0, len(regs), 5000):
        members.register_many(platform, regs[k : k + 5000], actor="bench")
    return platform


def phone(i: int) -> str:
    return f"139{i:08d}"


def order_dict(
    i: int, rng: random.Random, *, people: int = 40_000, lines: int = 3, prefix: str = "O"
) -> dict[str, Any]:
    """One synthetic store order as the API takes it; about half the buyers are members."""
    at = NOW - timedelta(days=300) + timedelta(seconds=60 * i)
    return {
        "channel": "pos",
        "external_id": f"{prefix}{i}",
        "ordered_at": at.isoformat(),
        "store": f"S{i % STORES:03d}",
        "identities": [{"type": "phone", "value": phone(rng.randrange(people))}],
        "lines": [
            {
                "line_no": n + 1,
                "sku": f"SKU{rng.randrange(500)}",
                "quantity": rng.randint(1, 3),
                "list_price": 19900,
                "paid_amount": rng.randrange(5000, 40000),
            }
            for n in range(lines)
        ],
    }


def order_input(d: dict[str, Any]) -> OrderInput:
    return OrderInput(
        channel=d["channel"],
        external_id=d["external_id"],
        ordered_at=datetime.fromisoformat(d["ordered_at"]),
        store=d["store"],
        identities=tuple(IdentityInput(x["type"], x["value"]) for x in d["identities"]),
        lines=tuple(
            LineInput(x["line_no"], x["sku"], x["quantity"], x["list_price"], x["paid_amount"])
            for x in d["lines"]
        ),
    )


def orders(n: int, *, seed: int = 1, prefix: str = "O", lines: int = 3) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for i in range(n):
        yield order_dict(i, rng, prefix=prefix, lines=lines)


def pgbench_tps(seconds: int = 30, clients: int = 8, threads: int = 2) -> float:
    """TPC-B-like TPS of the same PostgreSQL server, as a baseline for this run."""
    admin = PG_ADMIN
    base = admin.rsplit("/", 1)[0]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS quanyu_pgbench WITH (FORCE)")
        conn.execute("CREATE DATABASE quanyu_pgbench")
    target = f"{base}/quanyu_pgbench"
    subprocess.run(["pgbench", "-i", "-q", "-s", "10", target], check=True, capture_output=True)
    done = subprocess.run(
        ["pgbench", "-c", str(clients), "-j", str(threads), "-T", str(seconds), target],
        check=True,
        capture_output=True,
        text=True,
    )
    for line in done.stdout.splitlines():
        if line.startswith("tps ="):
            return float(line.split()[2])
    raise RuntimeError(f"pgbench printed no tps: {done.stdout}")
