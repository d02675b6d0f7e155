"""Order ingestion from any channel: earning, pending and expiry, idempotency, batches."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Table, func, select

from conftest import T0, Brand, Shop, local, phone
from quanyu.adapters import tables as t
from quanyu.domain.errors import (
    IdempotencyConflict,
    PointsPaymentCapExceeded,
    QuanyuError,
    ValidationFailed,
)
from quanyu.domain.orders import IdentityInput, LineInput, OrderInput
from quanyu.services import members, orders, points, setup
from quanyu.services.uow import Platform

PHONE = ("phone", phone(1))


def count(platform: Platform, table: Table) -> int:
    with platform.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


# ---------------------------------------------------------------- earning


def test_an_order_earns_one_point_per_yuan_rounded_down(shop: Shop, platform: Platform) -> None:
    member_id = shop.register(PHONE)

    result = shop.order("A1", PHONE, paid=[9_999, 9_999])  # 199.98 yuan

    assert result["points_earned"] == 199
    assert result["member_id"] == member_id
    assert shop.total(member_id) == 199
    assert points.check_ledger(platform) == []


def test_a_member_day_doubles_the_points(shop: Shop, platform: Platform) -> None:
    shop.register(PHONE)

    assert shop.order("A1", PHONE, paid=10_000, at=local(2026, 3, 7))["points_earned"] == 100
    assert shop.order("A2", PHONE, paid=10_000, at=local(2026, 3, 8))["points_earned"] == 200
    assert points.check_ledger(platform) == []


def test_the_member_day_is_judged_in_the_programs_time_zone(shop: Shop) -> None:
    shop.register(PHONE)
    # 07:00 on the 8th in Shanghai is still the 7th in UTC.
    early = local(2026, 3, 8, hour=7)
    assert early.astimezone(UTC).day == 7

    assert shop.order("A1", PHONE, paid=10_000, at=early)["points_earned"] == 200


def test_gold_members_earn_double_and_a_member_day_multiplies_on_top(
    shop: Shop, brand: Brand, platform: Platform
) -> None:
    shop.register(PHONE)
    upgrade = shop.order("A1", PHONE, paid=brand.gold_threshold, at=local(2026, 3, 2))
    assert upgrade["tier"] == "gold"

    assert shop.order("A2", PHONE, paid=10_000, at=local(2026, 3, 3))["points_earned"] == 200
    assert shop.order("A3", PHONE, paid=10_000, at=local(2026, 3, 8))["points_earned"] == 400
    assert points.check_ledger(platform) == []


def test_the_part_of_an_order_paid_with_points_earns_nothing(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    points.adjust(platform, member_id, points=5_000, reason="welcome", actor="test")

    result = shop.order("A1", PHONE, paid=10_000, points=3_000)

    assert result["points_used"] == 3_000
    assert result["points_earned"] == 70  # only the 70 yuan paid in cash earn
    assert shop.total(member_id) == 5_000 - 3_000 + 70
    assert points.check_ledger(platform) == []


def test_a_new_earn_rule_version_applies_from_its_effective_date(
    shop: Shop, brand: Brand, platform: Platform
) -> None:
    setup.add_earn_rule(
        platform,
        brand.program,
        effective_from=local(2026, 4, 1, hour=0),
        document={"base_rate": "1", "category_rates": {"bottoms": "3"}},
        actor="test",
    )
    shop.register(PHONE)

    before = shop.order("A1", PHONE, paid=10_000, sku=brand.jeans, at=local(2026, 3, 31, hour=23))
    after = shop.order("A2", PHONE, paid=10_000, sku=brand.jeans, at=local(2026, 4, 1, hour=0))
    tee = shop.order("A3", PHONE, paid=10_000, sku=brand.tee, at=local(2026, 4, 2))

    # The category comes from the product catalogue when the channel does not send it.
    assert (before["points_earned"], after["points_earned"], tee["points_earned"]) == (
        100,
        300,
        100,
    )


def test_points_stay_pending_until_the_pending_days_have_passed(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    shop.order("A1", PHONE, paid=18_000, at=T0)

    balance = shop.balance(member_id)
    assert (balance["available"], balance["pending"], balance["total"]) == (0, 180, 180)
    shop.at(T0 + timedelta(days=7) - timedelta(seconds=1))
    assert (shop.available(member_id), shop.balance(member_id)["pending"]) == (0, 180)
    shop.at(T0 + timedelta(days=7))
    assert (shop.available(member_id), shop.balance(member_id)["pending"]) == (180, 0)
    assert points.check_ledger(platform) == []


@pytest.mark.parametrize(
    ("ordered_at", "expires_at"),
    [
        (local(2026, 3, 2), local(2028, 1, 1, hour=0)),
        (local(2026, 12, 31, hour=23), local(2028, 1, 1, hour=0)),
        # Already 2027 in Shanghai, though still 2026 in UTC.
        (local(2027, 1, 1, hour=0) + timedelta(minutes=30), local(2029, 1, 1, hour=0)),
    ],
    ids=["spring", "new-years-eve", "just-after-midnight-local"],
)
def test_points_expire_at_the_end_of_the_following_year_in_local_time(
    shop: Shop, platform: Platform, ordered_at: datetime, expires_at: datetime
) -> None:
    member_id = shop.register(PHONE, at=local(2026, 1, 1))

    shop.order("A1", PHONE, paid=10_000, at=ordered_at)

    [lot] = points.lots(platform, member_id)
    assert lot["expires_at"] == expires_at
    assert lot["available_at"] == ordered_at + timedelta(days=7)


def test_orders_from_customers_who_are_not_members_earn_nothing(
    shop: Shop, platform: Platform
) -> None:
    result = shop.order("T1", ("platform_buyer", "buyer-1", "tmall"), channel="tmall", store=None)

    assert result["member_id"] is not None
    assert (result["member_no"], result["points_earned"], result["tier"]) == (None, 0, None)
    assert members.summary(platform, result["member_id"])["is_member"] is False
    assert count(platform, t.points_entries) == 0


def test_an_order_without_identities_is_kept_without_a_customer(
    shop: Shop, platform: Platform
) -> None:
    result = shop.order("A1")

    assert result["member_id"] is None
    assert count(platform, t.orders) == 1
    assert count(platform, t.profiles) == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"store": "NOPE"}, "store"),
        ({"channel": "fax"}, "channel"),
        ({"brand": "nope"}, "brand"),
    ],
)
def test_an_order_naming_unknown_set_up_is_rejected_naming_the_field(
    shop: Shop, platform: Platform, change: dict[str, str], field: str
) -> None:
    order = dataclasses.replace(shop.order_input("A1", PHONE), **change)

    with pytest.raises(ValidationFailed) as caught:
        orders.ingest_order(platform, order, actor="test")

    assert caught.value.field == field
    assert count(platform, t.orders) == 0
    assert count(platform, t.profiles) == 0


# ---------------------------------------------------------------- idempotency


def test_replaying_an_order_returns_the_first_result_and_changes_nothing(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    first = shop.order("A1", PHONE, paid=18_000)
    shop.later(days=1)

    again = shop.order("A1", PHONE, paid=18_000, at=T0)

    assert again == {**first, "replayed": True}
    assert first["replayed"] is False
    assert count(platform, t.orders) == 1
    assert shop.total(member_id) == 180
    assert points.check_ledger(platform) == []


def test_a_replay_with_the_time_in_another_offset_is_still_a_replay(shop: Shop) -> None:
    shop.register(PHONE)
    first = shop.order(
        "A1", PHONE, at=datetime(2026, 3, 2, 10, tzinfo=timezone(timedelta(hours=8)))
    )

    again = shop.order("A1", PHONE, at=datetime(2026, 3, 2, 2, tzinfo=UTC))

    assert again["replayed"] is True
    assert again["order_id"] == first["order_id"]


def test_a_replay_listing_the_payments_in_another_order_is_still_a_replay(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    points.adjust(platform, member_id, points=1_000, reason="welcome", actor="test")
    order = shop.order_input("A1", PHONE, paid=10_000, points=500)
    first = orders.ingest_order(platform, order, actor="test")

    swapped = dataclasses.replace(order, payments=tuple(reversed(order.payments)))
    again = orders.ingest_order(platform, swapped, actor="test")

    assert again == {**first, "replayed": True}
    assert shop.available(member_id) == 500


def test_a_replay_with_the_phone_written_differently_is_still_a_replay(shop: Shop) -> None:
    shop.register(PHONE)
    first = shop.order("A1", ("phone", "13800130001"))

    again = shop.order("A1", ("phone", "+86 138 0013 0001"))

    assert again == {**first, "replayed": True}


def test_the_same_order_id_with_a_different_payload_is_a_conflict_naming_the_fields(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    shop.order("A1", PHONE, paid=18_000)
    changed = shop.order_input("A1", PHONE, paid=18_000, store="BJ01")
    changed = dataclasses.replace(
        changed, lines=(dataclasses.replace(changed.lines[0], paid_amount=17_000),)
    )

    with pytest.raises(IdempotencyConflict) as caught:
        orders.ingest_order(platform, changed, actor="test")

    assert caught.value.fields["differences"] == {
        "store": {"stored": "SH01", "received": "BJ01"},
        "lines[0].paid_amount": {"stored": 18_000, "received": 17_000},
    }
    assert "lines[0].paid_amount" in str(caught.value)
    assert count(platform, t.orders) == 1
    assert shop.total(member_id) == 180


def test_the_same_external_id_in_another_channel_is_another_order(shop: Shop) -> None:
    member_id = shop.register(PHONE)

    pos = shop.order("X1", PHONE, paid=10_000)
    mini = shop.order("X1", PHONE, paid=20_000, channel="mini", store=None)

    assert pos["order_id"] != mini["order_id"]
    assert not mini["replayed"]
    assert shop.total(member_id) == 300


# ---------------------------------------------------------------- points as payment


def test_points_may_pay_up_to_the_programs_cap_and_no_more(shop: Shop, platform: Platform) -> None:
    member_id = shop.register(PHONE)
    points.adjust(platform, member_id, points=10_000, reason="welcome", actor="test")

    with pytest.raises(PointsPaymentCapExceeded) as caught:
        shop.order("A1", PHONE, paid=10_000, points=5_001)
    assert caught.value.fields == {"cap": 5_000, "requested": 5_001, "field": "payments"}
    assert count(platform, t.orders) == 0

    assert shop.order("A2", PHONE, paid=10_000, points=5_000)["points_used"] == 5_000
    assert shop.available(member_id) == 5_000
    assert points.check_ledger(platform) == []


def test_only_a_member_can_pay_with_points(shop: Shop, platform: Platform) -> None:
    with pytest.raises(ValidationFailed) as caught:
        shop.order("A1", PHONE, points=100)

    assert caught.value.field == "payments"
    assert count(platform, t.profiles) == 0


def test_a_points_payment_must_be_worth_what_it_says(shop: Shop, platform: Platform) -> None:
    member_id = shop.register(PHONE)
    points.adjust(platform, member_id, points=1_000, reason="welcome", actor="test")
    order = shop.order_input("A1", PHONE, paid=10_000, points=300)
    wrong = dataclasses.replace(
        order,
        payments=(
            dataclasses.replace(order.payments[0], amount=200),
            dataclasses.replace(order.payments[1], amount=9_800),
        ),
    )

    with pytest.raises(ValidationFailed) as caught:
        orders.ingest_order(platform, wrong, actor="test")

    assert caught.value.field == "payments[0].amount"


# ---------------------------------------------------------------- batches


def test_a_batch_commits_the_good_orders_and_reports_the_bad_one(
    shop: Shop, platform: Platform
) -> None:
    member_id = shop.register(PHONE)
    batch = [
        shop.order_input("B1", PHONE, paid=10_000),
        shop.order_input("B2", PHONE, paid=10_000, store="NOPE"),
        shop.order_input("B3", PHONE, paid=20_000),
        dataclasses.replace(shop.order_input("B4", PHONE), lines=()),
    ]

    results = orders.ingest_orders(platform, batch, actor="test")

    assert isinstance(results[1], ValidationFailed)
    assert results[1].field == "store"
    assert isinstance(results[3], ValidationFailed)
    assert results[3].field == "lines"
    good = [r for r in results if not isinstance(r, QuanyuError)]
    assert [r["external_id"] for r in good] == ["B1", "B3"]
    assert count(platform, t.orders) == 2
    assert shop.total(member_id) == 300
    assert points.check_ledger(platform) == []


def test_a_failed_batch_item_leaves_nothing_half_written(shop: Shop, platform: Platform) -> None:
    a = shop.register(("phone", phone(1)), at=T0)
    b = shop.register(("phone", phone(2)), at=T0 + timedelta(hours=1))
    points.adjust(platform, a, points=10_000, reason="welcome", actor="test")
    # The bad order merges A and B and links a new phone before its points payment fails.
    bad = shop.order_input(
        "B2", ("phone", phone(1)), ("phone", phone(2)), ("phone", phone(3)), points=6_000
    )
    batch = [
        shop.order_input("B1", ("phone", phone(1)), paid=10_000),
        bad,
        shop.order_input("B3", ("phone", phone(2)), paid=20_000),
    ]

    results = orders.ingest_orders(platform, batch, actor="test")

    assert isinstance(results[1], PointsPaymentCapExceeded)
    assert [r["member_id"] for r in (results[0], results[2]) if isinstance(r, dict)] == [a, b]
    assert members.merges_of(platform) == []
    with pytest.raises(QuanyuError):
        members.lookup(platform, "phone", phone(3))
    assert shop.total(a) == 10_000 + 100
    assert shop.total(b) == 200
    assert count(platform, t.orders) == 2
    assert points.check_ledger(platform) == []


def test_a_batch_replays_orders_already_received(shop: Shop, platform: Platform) -> None:
    shop.register(PHONE)
    first = shop.order("B1", PHONE)

    results = orders.ingest_orders(
        platform,
        [shop.order_input("B1", PHONE), shop.order_input("B2", PHONE)],
        actor="test",
    )

    assert results[0] == {**first, "replayed": True}
    assert isinstance(results[1], dict)
    assert results[1]["replayed"] is False
    assert count(platform, t.orders) == 2


def test_an_order_line_category_sent_by_the_channel_wins_over_the_catalogue(
    shop: Shop, brand: Brand, platform: Platform
) -> None:
    shop.register(PHONE)
    order = dataclasses.replace(
        shop.order_input("A1", PHONE), lines=(LineInput(1, brand.tee, 1, 10_000, 10_000, "gifts"),)
    )

    orders.ingest_order(platform, order, actor="test")

    with platform.engine.connect() as conn:
        assert conn.execute(select(t.order_lines.c.category)).scalar_one() == "gifts"


def test_a_large_batch_is_stored_whole_and_keeps_the_ledger_consistent(
    platform: Platform, brand: Brand, shop: Shop
) -> None:
    """Hundreds of rows per table take the bulk path (COPY on PostgreSQL)."""
    shop.register(("phone", "13800000001"), at=T0 - timedelta(days=1))
    batch = [
        OrderInput(
            channel="pos",
            external_id=f"BIG-{i}",
            ordered_at=T0 + timedelta(minutes=i),
            store=brand.store,
            identities=(IdentityInput("phone", "13800000001" if i % 2 else f"1370000{i:04d}"),),
            lines=tuple(LineInput(n + 1, brand.tee, 1, 19_900, 19_900) for n in range(3)),
        )
        for i in range(300)
    ]
    shop.at(T0 + timedelta(minutes=300))
    results = orders.ingest_orders(platform, batch, actor="test")
    assert all(isinstance(r, dict) and not r["replayed"] for r in results)
    earned = sum(r["points_earned"] for r in results if isinstance(r, dict))
    member = results[1]
    assert isinstance(member, dict)
    assert points.balance(platform, member["member_id"])["total"] == earned
    assert points.check_ledger(platform) == []


def test_orders_rejected_before_any_change_do_not_rerun_their_batch(
    platform: Platform, brand: Brand, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unknown codes are common in dirty import files; each must not replay the batch."""
    runs = []
    real_run = orders.run

    def counting_run(*args: object, **kwargs: object) -> object:
        runs.append(1)
        return real_run(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(orders, "run", counting_run)
    batch = [
        shop.order_input(f"D-{i}", ("phone", phone(i)), store=brand.store if i % 3 else "NOPE")
        for i in range(30)
    ]
    results = orders.ingest_orders(platform, batch, actor="test")
    rejected = [r for r in results if isinstance(r, QuanyuError)]
    assert len(rejected) == 10
    assert all(r.fields["field"] == "store" for r in rejected)
    assert len(runs) == 1
    assert points.check_ledger(platform) == []
