"""Concurrent commands against one member, on PostgreSQL (SQLite serialises writers).

Each test starts its threads at a barrier so that they really overlap; where an
interleaving must be forced, the test holds the member's row lock itself until every
thread is waiting for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from sqlalchemy import Table, func, select, text

from conftest import Brand, Shop, phone
from quanyu.adapters import tables as t
from quanyu.domain.errors import InsufficientPoints, RefundExceedsOrder
from quanyu.services import members, points, setup, tiers
from quanyu.services.uow import Platform

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("backend", ["postgres"], indirect=True),
]

T = TypeVar("T")
PHONE = ("phone", phone(1))


def race(n: int, work: Callable[[int], T]) -> list[T | Exception]:
    """Run ``work(0..n-1)`` on n threads released together; exceptions are returned."""
    barrier = threading.Barrier(n)

    def go(i: int) -> T | Exception:
        barrier.wait(timeout=10)
        try:
            return work(i)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(go, range(n)))


def count(platform: Platform, table: Table) -> int:
    with platform.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_concurrent_redemptions_never_spend_more_than_the_balance(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    points.adjust(platform, member_id, points=1_000, reason="welcome", actor="test")

    outcomes = race(
        16, lambda i: points.spend(platform, member_id, points=150, reason=f"r{i}", actor="t")
    )

    spent = [o for o in outcomes if isinstance(o, dict)]
    failed = [o for o in outcomes if not isinstance(o, dict)]
    assert all(isinstance(f, InsufficientPoints) for f in failed), failed
    assert len(spent) == 6  # 6 × 150 = 900 of 1,000
    assert shop.available(member_id) == 100
    assert points.check_ledger(platform) == []


def test_concurrent_points_paying_orders_never_spend_more_than_the_balance(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    points.adjust(platform, member_id, points=1_000, reason="welcome", actor="test")

    outcomes = race(12, lambda i: shop.order(f"P{i}", PHONE, paid=10_000, points=400))

    placed = [o for o in outcomes if isinstance(o, dict)]
    failed = [o for o in outcomes if not isinstance(o, dict)]
    assert all(isinstance(f, InsufficientPoints) for f in failed), failed
    assert len(placed) == 2  # 2 × 400 = 800 of 1,000
    assert count(platform, t.orders) == 2
    balance = shop.balance(member_id)
    assert balance["available"] == 200
    assert balance["total"] == 200 + 2 * 96  # each placed order earns 96, still pending
    assert points.check_ledger(platform) == []


def test_concurrent_deliveries_of_one_order_store_it_once(shop: Shop, platform: Platform) -> None:
    member_id = shop.register(PHONE)

    outcomes = race(8, lambda _: shop.order("A1", PHONE, paid=18_000))

    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    results: list[dict[str, Any]] = [o for o in outcomes if isinstance(o, dict)]
    assert sorted(r["replayed"] for r in results) == [False] + [True] * 7
    assert len({r["order_id"] for r in results}) == 1
    assert count(platform, t.orders) == 1
    assert shop.total(member_id) == 180
    assert points.check_ledger(platform) == []


def test_concurrent_orders_introducing_the_same_new_phone_create_one_profile(
    shop: Shop, platform: Platform
) -> None:
    outcomes = race(8, lambda i: shop.order(f"N{i}", ("phone", phone(9)), paid=1_000))

    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert len({o["member_id"] for o in outcomes if isinstance(o, dict)}) == 1
    assert count(platform, t.profiles) == 1
    assert count(platform, t.identities) == 1
    assert count(platform, t.orders) == 8


def test_concurrent_refunds_of_one_order_never_exceed_it(shop: Shop, platform: Platform) -> None:
    member_id = shop.register(PHONE)
    shop.order("A1", PHONE, paid=18_000)

    outcomes = race(8, lambda i: shop.refund(f"R{i}", "A1", amount=5_000))

    refunded = [o for o in outcomes if isinstance(o, dict)]
    failed = [o for o in outcomes if not isinstance(o, dict)]
    assert all(isinstance(f, RefundExceedsOrder) for f in failed), failed
    assert len(refunded) == 3  # 3 × 5,000 of 18,000
    assert sum(r["points_clawed_back"] for r in refunded) == 150
    assert shop.total(member_id) == 30
    assert points.check_ledger(platform) == []


def test_concurrent_orders_linking_the_same_two_members_merge_them_once(
    shop: Shop, platform: Platform
) -> None:
    a = shop.register(("phone", phone(1)))
    b = shop.register(("phone", phone(2)))
    shop.order("A0", ("phone", phone(1)), paid=10_000)
    shop.order("B0", ("phone", phone(2)), paid=20_000)

    outcomes = race(
        6, lambda i: shop.order(f"M{i}", ("phone", phone(1)), ("phone", phone(2)), paid=1_000)
    )

    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert {o["member_id"] for o in outcomes if isinstance(o, dict)} == {a}
    assert [(m["survivor_id"], m["absorbed_id"]) for m in members.merges_of(platform)] == [(a, b)]
    assert shop.total(a) == 100 + 200 + 6 * 10
    assert points.check_ledger(platform) == []


# ---------------------------------------------------------------- forced interleavings


def _queued_for_locks(platform: Platform) -> int:
    with platform.engine.connect() as conn:  # a fresh transaction sees a fresh snapshot
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            ).scalar_one()
        )


def while_member_is_locked(
    platform: Platform, member_id: int, n: int, work: Callable[[int], T]
) -> list[T | Exception]:
    """Lock the member's profile row, start ``work(0..n-1)`` on n threads, wait until all
    of them queue for the lock, release it and return what the threads returned."""
    with ThreadPoolExecutor(max_workers=n) as pool:
        with platform.engine.connect() as conn:
            trans = conn.begin()
            conn.execute(
                select(t.profiles.c.id).where(t.profiles.c.id == member_id).with_for_update()
            )

            def go(i: int) -> T | Exception:
                try:
                    return work(i)
                except Exception as exc:
                    return exc

            futures = [pool.submit(go, i) for i in range(n)]
            deadline = time.monotonic() + 10
            while _queued_for_locks(platform) < n and time.monotonic() < deadline:
                time.sleep(0.01)
            queued = _queued_for_locks(platform)
            trans.rollback()
        outcomes = [f.result(timeout=30) for f in futures]
    assert queued >= n, f"only {queued} of {n} threads queued for the member's lock"
    return outcomes


def test_concurrent_orders_settle_a_debt_only_once(shop: Shop, platform: Platform) -> None:
    setup.update_program(
        platform, shop.brand.program, {"pending_days": 0, "clawback_policy": "debt"}
    )
    member_id = shop.register(PHONE)
    shop.order("A1", PHONE, paid=18_000)
    points.spend(platform, member_id, points=150, reason="gift", actor="test")
    shop.refund("R1", "A1", amount=18_000)  # claws back 180: 30 from the lot, 150 owed
    assert shop.balance(member_id)["debt"] == 150

    outcomes = while_member_is_locked(
        platform, member_id, 4, lambda i: shop.order(f"E{i}", PHONE, paid=10_000)
    )

    assert all(isinstance(o, dict) for o in outcomes), outcomes
    balance = shop.balance(member_id)
    assert (balance["debt"], balance["available"], balance["total"]) == (0, 250, 250)
    assert points.check_ledger(platform) == []


def test_concurrent_qualifying_orders_record_one_upgrade(
    shop: Shop, brand: Brand, platform: Platform
) -> None:
    member_id = shop.register(PHONE)

    outcomes = while_member_is_locked(
        platform, member_id, 2, lambda i: shop.order(f"G{i}", PHONE, paid=brand.gold_threshold)
    )

    assert all(isinstance(o, dict) for o in outcomes), outcomes
    changes = tiers.history(platform, member_id)
    assert [(c["from_tier"], c["to_tier"]) for c in changes] == [("silver", "gold")]
