"""Server time of the console's dashboard, member search and member 360.

    uv run quanyu demo --no-serve                       # the demo brand group (50,000 people)
    uv run python -m benchmarks.console_pages --runs 30

    QUANYU_DATABASE_URL=sqlite:///var/scale/console-1m/quanyu.db \\
    QUANYU_ANALYTICS_PATH=var/scale/console-1m/analytics.duckdb \\
        uv run python -m benchmarks.console_pages --runs 30

Runs against the database the settings name (``QUANYU_DATABASE_URL``), in process through
the ASGI app (no network): the time is the server's, from request to last byte. Each page
is asked ``--runs`` times for different members and phones; ``/healthz`` is asked as
often in the same run, as the floor that every request pays. The first dashboard request
brings the analytics store up to date and is reported on its own. The dashboard's
figures are kept until the analytics store's next refresh; served, a thread refreshes
every minute and computes again the figures asked for, so pages read kept figures. The
dashboard is also timed computing every figure (for filters nobody asked for since the
last refresh), and the refresh itself is timed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from benchmarks.common import machine
from quanyu.adapters import tables as t
from quanyu.bootstrap import bootstrap
from quanyu.domain.access import Role
from quanyu.entrypoints.api.app import create_app
from quanyu.entrypoints.api.auth import SESSION_COOKIE
from quanyu.services import access, insight

PASSWORD = "benchmark-password"


def _account(platform: Any, username: str, role: Role, **scope: Any) -> None:
    if username not in {s["username"] for s in access.list_staff(platform)}:
        access.create_staff(
            platform, username=username, password=PASSWORD, role=role, actor="bench", **scope
        )


def _client(platform: Any, username: str) -> TestClient:
    token, _ = access.login(platform, username=username, password=PASSWORD, address="bench")
    client = TestClient(create_app(platform))
    client.cookies.set(SESSION_COOKIE, token)
    return client


def _time(fn: Callable[[int], Any], runs: int) -> list[float]:
    out = []
    for i in range(runs):
        start = time.perf_counter()
        response = fn(i)
        out.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.text[:500]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    console = Console()
    platform = bootstrap()
    rng = random.Random(args.seed)
    with platform.engine.connect() as conn:
        people = conn.execute(select(func.count()).select_from(t.memberships)).scalar_one()
        top = conn.execute(select(func.max(t.memberships.c.profile_id))).scalar_one()
        member_ids = []
        while len(member_ids) < args.runs:
            pid = rng.randint(1, int(top))
            row = conn.execute(
                select(t.memberships.c.profile_id, t.memberships.c.store_id).where(
                    t.memberships.c.profile_id == pid, t.memberships.c.status == "active"
                )
            ).first()
            if row is not None and row.store_id is not None:
                member_ids.append(int(row.profile_id))
        phones = [
            conn.execute(
                select(t.identities.c.value).where(
                    t.identities.c.profile_id == pid, t.identities.c.type == "phone"
                )
            ).scalar()
            or "13800000000"
            for pid in member_ids
        ]
        store_id = conn.execute(
            select(t.memberships.c.store_id).where(t.memberships.c.profile_id == member_ids[0])
        ).scalar_one()
    ref = platform.reference.get()
    store = ref.stores_by_id[int(store_id)].code
    _account(platform, "bench-ops", Role.HQ_OPERATOR)
    _account(platform, "bench-store", Role.STORE_MANAGER, stores=[store])
    ops = _client(platform, "bench-ops")
    manager = _client(platform, "bench-store")

    start = time.perf_counter()
    first = ops.get("/")
    first_ms = (time.perf_counter() - start) * 1000
    assert first.status_code == 200, first.text[:500]

    analytics = insight.analytics(platform)

    def cold(i: int) -> Any:
        analytics.results.clear()  # as for filters nobody asked for since the refresh
        return ops.get("/")

    rows: list[tuple[str, list[float]]] = [
        ("/healthz (floor)", _time(lambda i: ops.get("/healthz"), args.runs)),
        ("dashboard, HQ (12 months)", _time(lambda i: ops.get("/"), args.runs)),
        ("dashboard, store manager", _time(lambda i: manager.get("/"), args.runs)),
        ("dashboard, HQ, every figure computed", _time(cold, max(3, args.runs // 6))),
        (
            "member search by phone, HQ",
            _time(lambda i: ops.get(f"/members?q={phones[i]}"), args.runs),
        ),
        (
            "member search by phone, store manager",
            _time(lambda i: manager.get(f"/members?q={phones[i]}"), args.runs),
        ),
        ("member search by name prefix, HQ", _time(lambda i: ops.get("/members?q=王"), args.runs)),
        ("member 360, HQ", _time(lambda i: ops.get(f"/members/{member_ids[i]}"), args.runs)),
    ]
    floor = statistics.median(rows[0][1])
    table = Table(title=f"console pages, {people:,} members; {machine()}")
    for col in ("page", "median ms", "p95 ms", "max ms", "× floor"):
        table.add_column(col, justify="left" if col == "page" else "right")
    for name, times in rows:
        times.sort()
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        table.add_row(
            name,
            f"{statistics.median(times):.1f}",
            f"{p95:.1f}",
            f"{times[-1]:.1f}",
            f"{statistics.median(times) / floor:.1f}",
        )
    console.print(table)
    console.print(
        f"first dashboard request, bringing the analytics store up to date: {first_ms:,.0f} ms"
    )
    start = time.perf_counter()
    analytics.refresh()
    plain = time.perf_counter() - start
    ops.get("/")
    manager.get("/")
    start = time.perf_counter()
    analytics.refresh(warm=True)
    warm = time.perf_counter() - start
    console.print(
        f"a refresh with nothing new: {plain:,.1f} s; the same computing again the "
        f"{len(analytics.results)} results the two dashboards asked for (what the served "
        f"app's thread does each minute, while pages read the last copy): {warm:,.1f} s"
    )
    insight.close_analytics(platform)


if __name__ == "__main__":
    main()
