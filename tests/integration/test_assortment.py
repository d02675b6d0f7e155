"""Channel assortment on SQLite and PostgreSQL: rules, forbidden order lines under each
program policy, and must-sell gaps per store."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

import pytest
from sqlalchemy import Table, func, select

from conftest import T0, Brand, Shop, local, phone
from quanyu.adapters import tables as t
from quanyu.domain.assortment import RuleInput
from quanyu.domain.errors import ForbiddenInChannel, NotFound, ValidationFailed
from quanyu.domain.orders import IdentityInput, LineInput, OrderInput
from quanyu.services import assortment, orders, setup
from quanyu.services.uow import Platform

PHONE = ("phone", phone(1))


def count(platform: Platform, table: Table) -> int:
    with platform.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def flags(platform: Platform) -> list[tuple[int | None, str, str]]:
    with platform.engine.connect() as conn:
        return [
            (r.line_no, r.code, r.detail)
            for r in conn.execute(select(t.order_flags).order_by(t.order_flags.c.id))
        ]


def forbid(platform: Platform, *rules: RuleInput) -> list[dict[str, Any]]:
    return assortment.set_rules(platform, list(rules), actor="test")


def tee_and_jeans(brand: Brand, external_id: str, *, store: str | None = None) -> OrderInput:
    return OrderInput(
        channel="pos",
        external_id=external_id,
        ordered_at=T0,
        lines=(
            LineInput(1, brand.tee, 1, 19_900, 19_900),
            LineInput(2, brand.jeans, 1, 59_900, 59_900),
        ),
        identities=(IdentityInput(*PHONE),),
        store=store or brand.store,
    )


@pytest.fixture
def reject(platform: Platform, brand: Brand) -> None:
    setup.update_program(platform, brand.program, {"assortment_policy": "reject"})


# ---------------------------------------------------------------- rules


def test_setting_a_rule_again_replaces_it_by_channel_store_and_target(
    platform: Platform, brand: Brand
) -> None:
    [first] = forbid(platform, RuleInput("pos", "forbidden", sku=brand.tee))
    [second] = assortment.set_rules(
        platform, [RuleInput("pos", "optional", sku=brand.tee)], actor="ops"
    )

    assert second["id"] == first["id"]
    assert assortment.list_rules(platform) == [second]
    assert (second["status"], second["updated_by"], second["sku"]) == ("optional", "ops", brand.tee)


def test_setting_rules_stores_all_of_them_or_none(platform: Platform, brand: Brand) -> None:
    with pytest.raises(ValidationFailed) as caught:
        forbid(
            platform,
            RuleInput("pos", "forbidden", sku=brand.tee),
            RuleInput("pos", "must", store="NOPE", category="tops"),
        )

    assert caught.value.field == "[1].store"
    assert assortment.list_rules(platform) == []


def test_listing_rules_filters_by_channel_store_and_status(
    platform: Platform, brand: Brand
) -> None:
    forbid(
        platform,
        RuleInput("pos", "must", category="tops"),
        RuleInput("pos", "forbidden", store=brand.store, sku=brand.jeans),
        RuleInput("tmall", "forbidden", sku=brand.tee),
    )

    pos = assortment.list_rules(platform, channel="pos")
    assert [(r["store"], r["category"], r["sku"]) for r in pos] == [
        (None, "tops", None),
        (brand.store, None, brand.jeans),
    ]
    assert [r["sku"] for r in assortment.list_rules(platform, store=brand.store)] == [brand.jeans]
    assert [r["channel"] for r in assortment.list_rules(platform, status="forbidden")] == [
        "pos",
        "tmall",
    ]


def test_a_deleted_rule_no_longer_applies_to_orders(shop: Shop, platform: Platform) -> None:
    [rule] = forbid(platform, RuleInput("pos", "forbidden", sku=shop.brand.tee))

    assert assortment.delete_rule(platform, rule["id"]) == rule
    assert "flags" not in shop.order("A1", PHONE)
    with pytest.raises(NotFound):
        assortment.delete_rule(platform, rule["id"])


# ---------------------------------------------------------------- orders


@pytest.mark.usefixtures("reject")
def test_the_reject_policy_refuses_an_order_with_a_forbidden_line_and_writes_nothing(
    platform: Platform, brand: Brand
) -> None:
    forbid(platform, RuleInput("pos", "forbidden", sku=brand.jeans))

    with pytest.raises(ForbiddenInChannel) as caught:
        orders.ingest_order(platform, tee_and_jeans(brand, "A1"), actor="test")

    assert caught.value.fields["field"] == "lines[1].sku"
    assert (caught.value.fields["sku"], caught.value.fields["channel"]) == (brand.jeans, "pos")
    for table in (t.orders, t.order_lines, t.order_flags, t.profiles, t.points_entries):
        assert count(platform, table) == 0, table.name


@pytest.mark.usefixtures("reject")
def test_a_forbidden_order_in_a_batch_is_rejected_alone(platform: Platform, brand: Brand) -> None:
    forbid(platform, RuleInput("pos", "forbidden", category="bottoms"))
    only_tee = tee_and_jeans(brand, "A2")
    good = dataclasses.replace(only_tee, lines=only_tee.lines[:1])

    results = orders.ingest_orders(platform, [tee_and_jeans(brand, "A1"), good], actor="test")

    assert isinstance(results[0], ForbiddenInChannel)
    assert isinstance(results[1], dict)
    assert "flags" not in results[1]
    assert count(platform, t.orders) == 1


def test_the_flag_policy_accepts_the_order_and_records_a_flag_per_forbidden_line(
    shop: Shop, platform: Platform, brand: Brand
) -> None:
    shop.register(PHONE)
    forbid(platform, RuleInput("pos", "forbidden", category="bottoms"))

    result = orders.ingest_order(platform, tee_and_jeans(brand, "A1"), actor="test")

    assert result["points_earned"] == 798  # earned as usual
    [flag] = result["flags"]
    assert (flag["line_no"], flag["sku"], flag["code"]) == (2, brand.jeans, "forbidden_in_channel")
    assert flags(platform) == [(2, "forbidden_in_channel", flag["detail"])]
    assert "channel pos" in flag["detail"]


def test_an_order_without_forbidden_lines_keeps_its_result_unchanged(
    shop: Shop, platform: Platform, brand: Brand
) -> None:
    forbid(platform, RuleInput("tmall", "forbidden", sku=brand.tee))

    result = shop.order("A1", PHONE)

    assert "flags" not in result
    assert count(platform, t.order_flags) == 0


def test_a_store_rule_overrides_the_channel_rule(
    shop: Shop, platform: Platform, brand: Brand
) -> None:
    forbid(
        platform,
        RuleInput("pos", "forbidden", sku=brand.tee),
        RuleInput("pos", "optional", store=brand.store, sku=brand.tee),
    )

    at_store = shop.order("A1", PHONE, store=brand.store)
    elsewhere = shop.order("A2", PHONE, store=brand.other_store)

    assert "flags" not in at_store
    assert [f["sku"] for f in elsewhere["flags"]] == [brand.tee]


def test_an_order_without_a_store_sees_only_channel_wide_rules(
    shop: Shop, platform: Platform, brand: Brand
) -> None:
    forbid(platform, RuleInput("tmall", "forbidden", store=brand.store, sku=brand.tee))

    result = shop.order("T1", PHONE, channel="tmall", store=None, brand=brand.brand)

    assert "flags" not in result


def test_replaying_a_flagged_order_returns_the_first_result(
    shop: Shop, platform: Platform, brand: Brand
) -> None:
    [rule] = forbid(platform, RuleInput("pos", "forbidden", sku=brand.tee))
    first = shop.order("A1", PHONE)
    assortment.delete_rule(platform, rule["id"])

    again = shop.order("A1", PHONE)

    assert again == {**first, "replayed": True}
    assert len(again["flags"]) == 1
    assert count(platform, t.order_flags) == 1


def test_replaying_an_unflagged_order_after_a_rule_change_is_not_flagged(
    shop: Shop, platform: Platform, brand: Brand
) -> None:
    first = shop.order("A1", PHONE)
    setup.update_program(platform, brand.program, {"assortment_policy": "reject"})
    forbid(platform, RuleInput("pos", "forbidden", sku=brand.tee))

    assert shop.order("A1", PHONE) == {**first, "replayed": True}


def test_a_bad_assortment_policy_is_refused(platform: Platform, brand: Brand) -> None:
    with pytest.raises(ValidationFailed) as caught:
        setup.update_program(platform, brand.program, {"assortment_policy": "ignore"})

    assert caught.value.field == "assortment_policy"


# ---------------------------------------------------------------- must-sell gaps


def test_must_sell_gaps_are_reported_per_store(
    shop: Shop, platform: Platform, brand: Brand
) -> None:
    forbid(
        platform,
        RuleInput("pos", "must", sku=brand.tee),
        RuleInput("pos", "must", category="bottoms"),
    )
    shop.order("A1", PHONE, store=brand.store, sku=brand.tee)
    shop.order("A2", PHONE, store=brand.other_store, sku=brand.jeans)
    shop.order("T1", PHONE, channel="tmall", store=brand.other_store, sku=brand.tee)

    report = assortment.must_sell_gaps(
        platform, channel="pos", since=date(2026, 3, 1), until=date(2026, 3, 3)
    )

    assert report["gaps"] == [
        {"store": brand.other_store, "kind": "sku", "target": brand.tee, "units_sold": 0},
        {"store": brand.store, "kind": "category", "target": "bottoms", "units_sold": 0},
    ]
    assert [(s["store"], s["must_sell"], s["gaps"]) for s in report["stores"]] == [
        (brand.other_store, 2, 1),
        (brand.store, 2, 1),
    ]


def test_refunded_units_and_sales_outside_the_window_do_not_meet_a_must_sell(
    shop: Shop, platform: Platform, brand: Brand
) -> None:
    forbid(platform, RuleInput("pos", "must", sku=brand.tee))
    shop.order("A1", PHONE, store=brand.store, sku=brand.tee)
    shop.refund("R1", "A1", amount=10_000, quantity=1)
    shop.order("A2", PHONE, store=brand.other_store, at=local(2026, 2, 28))

    report = assortment.must_sell_gaps(
        platform, channel="pos", since=date(2026, 3, 1), until=date(2026, 3, 3)
    )

    assert [g["store"] for g in report["gaps"]] == [brand.other_store, brand.store]


def test_a_store_must_sell_rule_applies_to_that_store_only(
    shop: Shop, platform: Platform, brand: Brand
) -> None:
    forbid(platform, RuleInput("pos", "must", store=brand.store, sku=brand.jeans))

    report = assortment.must_sell_gaps(platform, channel="pos", store=brand.store)
    everywhere = assortment.must_sell_gaps(platform, channel="pos")

    assert report["gaps"] == [
        {"store": brand.store, "kind": "sku", "target": brand.jeans, "units_sold": 0}
    ]
    assert [(s["store"], s["gaps"]) for s in everywhere["stores"]] == [
        (brand.other_store, 0),
        (brand.store, 1),
    ]


def test_the_gaps_window_defaults_to_the_last_30_local_days_through_today(
    shop: Shop, platform: Platform, brand: Brand
) -> None:
    forbid(platform, RuleInput("pos", "must", sku=brand.tee))
    shop.order("A1", PHONE, store=brand.store, at=local(2026, 1, 31))  # 30 days before

    report = assortment.must_sell_gaps(platform, channel="pos", store=brand.store)

    [counts] = report["stores"]
    assert (counts["since"], counts["until"]) == (date(2026, 2, 1), date(2026, 3, 3))
    assert counts["gaps"] == 1
