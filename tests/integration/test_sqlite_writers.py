"""Concurrent writers on the embedded SQLite database, inside one process."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from conftest import Shop, phone
from quanyu.adapters import tables as t
from quanyu.domain.errors import QuanyuError
from quanyu.services import points
from quanyu.services.uow import Platform

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def test_threads_of_one_process_take_turns_and_every_order_is_stored(
    shop: Shop, platform: Platform
) -> None:
    members = [shop.register(("phone", phone(n))) for n in range(4)]
    barrier = threading.Barrier(8)

    def place(k: int) -> list[dict[str, Any]]:
        barrier.wait(timeout=10)
        return [
            shop.order(f"T{k}-{i}", ("phone", phone((k + i) % 6)), paid=10_000) for i in range(5)
        ]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = [r for batch in pool.map(place, range(8)) for r in batch]

    assert len(results) == 40 and not any(r["replayed"] for r in results)
    with platform.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.orders)).scalar_one() == 40
    assert points.check_ledger(platform) == []
    assert all(shop.total(m) > 0 for m in members)


def test_a_rejected_command_lets_the_next_writer_in(shop: Shop, platform: Platform) -> None:
    with pytest.raises(QuanyuError):
        shop.order("BAD", ("phone", phone(1)), paid=10_000, store="NO-SUCH-STORE")

    def place() -> dict[str, Any]:
        return shop.order("GOOD", ("phone", phone(1)), paid=10_000)

    with ThreadPoolExecutor(max_workers=1) as pool:
        result = pool.submit(place).result(timeout=10)

    assert result["replayed"] is False
