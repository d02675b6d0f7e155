"""Reports on SQLite and PostgreSQL over a small, realistic history made through the
services: coupons issued, redeemed, released, returned by a refund, expired and voided;
points earned, granted, spent, clawed back into debt and expired."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from conftest import T0, Shop, phone
from quanyu.domain.errors import ValidationFailed
from quanyu.services import coupons, points, reports, setup
from quanyu.services.uow import Platform

DAY = timedelta(days=1)


def checkout(
    member_id: int, code: str, order_id: str, *, channel: str = "pos", store: str | None = "SH01"
) -> coupons.CheckoutRequest:
    return coupons.CheckoutRequest(
        channel=channel,
        store=store,
        member=coupons.MemberRef(member_id=member_id),
        lines=(coupons.LineIn(1, "TEE-W-M", 1, 19_900),),
        codes=(code,),
        order_id=order_id,
    )


def give(platform: Platform, template: str, member_id: int, key: str) -> str:
    coupons.issue_batch(
        platform,
        coupons.BatchRequest(template=template, request_key=key, member_ids=(member_id,)),
        actor="test",
    )
    return str(coupons.member_coupons(platform, member_id)[0]["code"])


@dataclass(frozen=True)
class History:
    platform: Platform
    now: datetime


@pytest.fixture
def history(shop: Shop) -> History:
    """OFF10 (10 yuan off, valid 30 days) and PCT10 (10% off) in program club; EMPTY in
    program other, never issued.

    Day 0:  a1 (m1) reserved then confirmed at pos/SH01; a2 (m1) redeemed at tmall with
            no store; a3 (m2) redeemed at pos/SH01 on order O3; a4 (m2) reserved and
            released; p1 (m1, PCT10) redeemed at pos/BJ01 (1,990 off 19,900).
    Day 2:  O3 is refunded in full, so a3 comes back (available).
    Day 10: a5 (m1) and a6 (m2) issued; a6 voided.
    Day 35: the report runs. a3 and a4 lapsed on day 30; a5 is valid until day 40.
    """
    p = shop.platform
    setup.create_program(p, {"code": "other", "name": "Other"})
    for code, kind, value in (("OFF10", "amount_off", 1_000), ("PCT10", "percent_off", 10)):
        coupons.create_template(
            p,
            {
                "code": code,
                "name": code,
                "kind": kind,
                "value": value,
                "valid_days": 30,
                "program": "club",
            },
            actor="test",
        )
    coupons.create_template(
        p,
        {
            "code": "EMPTY",
            "name": "Never issued",
            "kind": "amount_off",
            "value": 500,
            "valid_days": 30,
            "program": "other",
        },
        actor="test",
    )
    m1 = shop.register(("phone", phone(1)))
    m2 = shop.register(("phone", phone(2)))
    a1 = give(p, "OFF10", m1, "a1")
    a2 = give(p, "OFF10", m1, "a2")
    a3 = give(p, "OFF10", m2, "a3")
    a4 = give(p, "OFF10", m2, "a4")
    p1 = give(p, "PCT10", m1, "p1")
    coupons.reserve(p, checkout(m1, a1, "O1"), actor="test")
    coupons.confirm(p, "pos", "O1", actor="test")
    coupons.reserve(
        p, checkout(m1, a2, "T1", channel="tmall", store=None), actor="test", confirm=True
    )
    coupons.reserve(p, checkout(m2, a3, "O3"), actor="test", confirm=True)
    shop.order("O3", ("phone", phone(2)), paid=18_900)
    coupons.reserve(p, checkout(m2, a4, "W4"), actor="test")
    coupons.release(p, "pos", "W4", reason="customer left", actor="test")
    coupons.reserve(p, checkout(m1, p1, "B1", store="BJ01"), actor="test", confirm=True)
    shop.later(days=2)
    assert shop.refund("R3", "O3", amount=18_900, quantity=1)["coupons_returned"] == [a3]
    shop.later(days=8)
    give(p, "OFF10", m1, "a5")
    a6 = give(p, "OFF10", m2, "a6")
    coupons.void(p, a6, reason="issued by mistake", actor="test")
    shop.later(days=25)
    return History(p, shop.clock.now())


def by_row(report: dict[str, Any]) -> dict[tuple[str, str | None, str | None], dict[str, Any]]:
    return {(r["template"], r["channel"], r["store"]): r for r in report["rows"]}


# ---------------------------------------------------------------- coupons


def test_coupon_totals_count_each_coupon_by_what_became_of_it(history: History) -> None:
    report = reports.coupon_report(history.platform, as_of=history.now)
    off10 = by_row(report)[("OFF10", None, None)]
    assert {k: off10[k] for k in reports.COUPON_COLUMNS} == {
        "level": "total",
        "template": "OFF10",
        "template_name": "OFF10",
        "program": "club",
        "channel": None,
        "store": None,
        "issued": 6,
        "redeemed": 2,  # a1 and a2; a3 was returned
        "returned": 1,
        "expired": 2,  # a3 after its return, and a4 after its release
        "voided": 1,
        "reserved": 0,
        "outstanding": 1,  # a5
        "discount_cost": 2_000,
        "redemption_rate": Decimal("0.3333"),
    }
    parts = ("redeemed", "reserved", "expired", "voided", "outstanding")
    assert sum(off10[k] for k in parts) == off10["issued"]


def test_coupon_rows_break_redemptions_down_by_channel_and_store(history: History) -> None:
    report = reports.coupon_report(history.platform, as_of=history.now)
    assert [(r["level"], r["template"], r["channel"], r["store"]) for r in report["rows"]] == [
        ("total", "EMPTY", None, None),
        ("total", "OFF10", None, None),
        ("channel_store", "OFF10", "pos", "SH01"),
        ("channel_store", "OFF10", "tmall", None),
        ("total", "PCT10", None, None),
        ("channel_store", "PCT10", "pos", "BJ01"),
    ]
    rows = by_row(report)
    pos = rows[("OFF10", "pos", "SH01")]
    assert (pos["redeemed"], pos["returned"], pos["discount_cost"]) == (1, 1, 1_000)
    assert pos["issued"] is None and pos["redemption_rate"] is None
    tmall = rows[("OFF10", "tmall", None)]
    assert (tmall["redeemed"], tmall["returned"], tmall["discount_cost"]) == (1, 0, 1_000)
    pct = rows[("PCT10", None, None)]
    assert (pct["issued"], pct["redeemed"], pct["discount_cost"]) == (1, 1, 1_990)
    assert pct["redemption_rate"] == Decimal("1.0000")
    assert rows[("PCT10", "pos", "BJ01")]["discount_cost"] == 1_990


def test_redemption_rate_is_null_when_nothing_was_issued(history: History) -> None:
    empty = by_row(reports.coupon_report(history.platform, as_of=history.now))[
        ("EMPTY", None, None)
    ]
    assert empty["issued"] == 0 and empty["redemption_rate"] is None
    assert empty["program"] == "other"


def test_a_return_in_the_period_cancels_a_redemption_made_before_it(history: History) -> None:
    report = reports.coupon_report(
        history.platform, as_of=history.now, since=T0 + DAY, until=T0 + 40 * DAY
    )
    rows = by_row(report)
    off10 = rows[("OFF10", None, None)]
    assert (off10["issued"], off10["redeemed"], off10["returned"]) == (2, -1, 1)
    assert off10["discount_cost"] == -1_000
    assert (off10["voided"], off10["expired"], off10["outstanding"]) == (1, 2, 1)
    assert off10["redemption_rate"] == Decimal("-0.5000")
    assert rows[("OFF10", "pos", "SH01")]["redeemed"] == -1
    assert ("OFF10", "tmall", None) not in rows


def test_the_period_end_is_exclusive(history: History) -> None:
    report = reports.coupon_report(history.platform, as_of=history.now, until=T0 + 2 * DAY)
    off10 = by_row(report)[("OFF10", None, None)]
    # The refund happened at exactly T0 + 2 days: not in [.., T0 + 2 days).
    assert (off10["issued"], off10["redeemed"], off10["returned"]) == (4, 3, 0)
    assert off10["discount_cost"] == 3_000
    assert off10["expired"] == 0  # nothing lapsed before day 2


def test_coupon_report_filters_by_template_and_program(history: History) -> None:
    one = reports.coupon_report(history.platform, as_of=history.now, template="PCT10")
    assert {r["template"] for r in one["rows"]} == {"PCT10"}
    club = reports.coupon_report(history.platform, as_of=history.now, program="club")
    assert {r["template"] for r in club["rows"]} == {"OFF10", "PCT10"}
    none = reports.coupon_report(
        history.platform, as_of=history.now, program="other", template="OFF10"
    )
    assert none["rows"] == []


def test_expiry_is_judged_at_as_of(history: History) -> None:
    earlier = reports.coupon_report(history.platform, as_of=T0 + 20 * DAY)
    off10 = by_row(earlier)[("OFF10", None, None)]
    assert (off10["expired"], off10["outstanding"]) == (0, 3)


def test_coupon_report_refuses_a_period_that_ends_before_it_starts(history: History) -> None:
    with pytest.raises(ValidationFailed) as caught:
        reports.coupon_report(history.platform, as_of=history.now, since=T0, until=T0)
    assert caught.value.field == "until"
    with pytest.raises(ValidationFailed) as unknown:
        reports.coupon_report(history.platform, as_of=history.now, template="NOPE")
    assert unknown.value.field == "template"
    with pytest.raises(ValidationFailed) as naive:
        reports.coupon_report(history.platform, as_of=history.now.replace(tzinfo=None))
    assert naive.value.field == "as_of"


def test_coupon_report_as_csv_has_a_header_and_empty_cells_for_nulls(history: History) -> None:
    report = reports.coupon_report(history.platform, as_of=history.now)
    rows = list(csv.DictReader(io.StringIO(reports.to_csv(report["rows"], reports.COUPON_COLUMNS))))
    assert len(rows) == 6
    tmall = next(r for r in rows if r["channel"] == "tmall")
    assert tmall["store"] == "" and tmall["issued"] == "" and tmall["discount_cost"] == "1000"
    assert next(r for r in rows if r["template"] == "OFF10")["redemption_rate"] == "0.3333"


# ---------------------------------------------------------------- points


class Ledger:
    """Program club at 0.35 fen a point, points expiring 60 days after they are earned,
    pending 7 days. The fixture makes day 0; the tests move on with the steps.

    Day 0:  m1 earns 210 (order P1, pending); m2 is granted 100 (available at once);
            m3 earns 100 (order P3, pending).
    Day 8:  m3 spends its 100; P3 is refunded in full, the 100 are clawed back and, with
            nothing left to take them from, m3 owes 100.
    Day 30: m1 spends 60.
    Day 61: m1's remaining 150 and m2's 100 expired on day 60; the job runs.
    """

    def __init__(self, shop: Shop) -> None:
        self.shop = shop
        self.platform = shop.platform
        setup.update_program(
            self.platform,
            "club",
            {
                "point_value_minor": Decimal("0.35"),
                "expiry_kind": "rolling_days",
                "expiry_days": 60,
            },
        )
        self.m1 = shop.register(("phone", phone(1)))
        self.m2 = shop.register(("phone", phone(2)))
        self.m3 = shop.register(("phone", phone(3)))
        assert shop.order("P1", ("phone", phone(1)), paid=21_000)["points_earned"] == 210
        points.adjust(self.platform, self.m2, points=100, reason="goodwill", actor="test")
        assert shop.order("P3", ("phone", phone(3)), paid=10_000)["points_earned"] == 100

    def now(self) -> datetime:
        return self.shop.clock.now()

    def day_8(self) -> None:
        if self.now() >= T0 + 8 * DAY:
            return
        self.shop.at(T0 + 8 * DAY)
        points.spend(self.platform, self.m3, points=100, reason="reward", actor="test")
        self.shop.refund("R3", "P3", amount=10_000, quantity=1)
        assert self.shop.balance(self.m3)["debt"] == 100

    def day_30(self) -> None:
        self.day_8()
        if self.now() >= T0 + 30 * DAY:
            return
        self.shop.at(T0 + 30 * DAY)
        points.spend(self.platform, self.m1, points=60, reason="reward", actor="test")

    def day_61(self, *, run_expiry: bool = True) -> None:
        self.day_30()
        self.shop.at(T0 + 61 * DAY)
        if run_expiry:
            assert points.expire_due(self.platform) == 250


@pytest.fixture
def ledger(shop: Shop) -> Ledger:
    return Ledger(shop)


def test_liability_splits_available_and_pending_and_rounds_half_up(ledger: Ledger) -> None:
    report = reports.points_liability(ledger.platform, as_of=ledger.now())
    assert report == {
        "program": "club",
        "currency": "CNY",
        "as_of": T0,
        "available_points": 100,  # m2's grant; the orders' points are pending for 7 days
        "pending_points": 310,
        "outstanding_points": 410,
        "debt_points": 0,
        "liability_points": 410,
        "point_value_minor": "0.35",
        "liability_minor": 144,  # 410 x 0.35 = 143.5
        "expired_unprocessed_points": 0,
    }


def test_pending_points_count_as_available_from_their_available_at(ledger: Ledger) -> None:
    ahead = reports.points_liability(ledger.platform, as_of=T0 + 7 * DAY)
    assert (ahead["available_points"], ahead["pending_points"]) == (410, 0)
    assert ahead["liability_minor"] == 144


def test_liability_is_outstanding_points_less_debt_times_the_point_value(ledger: Ledger) -> None:
    ledger.day_8()
    report = reports.points_liability(ledger.platform, as_of=ledger.now())
    assert (report["available_points"], report["pending_points"]) == (310, 0)
    assert (report["debt_points"], report["liability_points"]) == (100, 210)
    assert report["liability_minor"] == 74  # 210 x 0.35 = 73.5
    ledger.day_30()
    report = reports.points_liability(ledger.platform, as_of=ledger.now())
    assert (report["outstanding_points"], report["liability_points"]) == (250, 150)
    assert report["liability_minor"] == 53  # 150 x 0.35 = 52.5


def test_liability_leaves_out_expired_points_before_the_expiry_job_runs(ledger: Ledger) -> None:
    ledger.day_61(run_expiry=False)
    due = reports.points_liability(ledger.platform, as_of=ledger.now())
    assert (due["outstanding_points"], due["expired_unprocessed_points"]) == (0, 250)
    assert (due["liability_points"], due["liability_minor"]) == (-100, -35)
    assert points.expire_due(ledger.platform) == 250
    after = reports.points_liability(ledger.platform, as_of=ledger.now())
    assert after == {**due, "expired_unprocessed_points": 0}


def test_breakage_is_points_expired_over_points_earned(ledger: Ledger) -> None:
    ledger.day_61()
    report = reports.points_breakage(ledger.platform, since=T0, until=T0 + 90 * DAY)
    assert report == {
        "program": "club",
        "since": T0,
        "until": T0 + 90 * DAY,
        "earned_since": T0,
        "earned_until": T0 + 90 * DAY,
        "expired_points": 250,
        "earned_points": 310,  # gross: the claw-back of P3 is not deducted
        "granted_points": 100,  # shown, not in the rate
        "breakage_rate": Decimal("0.8065"),  # 250 / 310 = 0.80645...
    }


def test_breakage_counts_expiry_in_its_period_and_earnings_in_the_earn_window(
    ledger: Ledger,
) -> None:
    ledger.day_61()  # the job expires at this moment
    expired_at = ledger.now()
    before = reports.points_breakage(ledger.platform, since=T0, until=expired_at)
    assert (before["expired_points"], before["breakage_rate"]) == (0, Decimal("0.0000"))
    later = reports.points_breakage(
        ledger.platform,
        since=expired_at,
        until=expired_at + DAY,
        earned_since=T0,
        earned_until=T0 + DAY,
    )
    assert (later["expired_points"], later["earned_points"]) == (250, 310)
    nothing_earned = reports.points_breakage(
        ledger.platform, since=expired_at, until=expired_at + DAY
    )
    assert nothing_earned["earned_points"] == 0 and nothing_earned["breakage_rate"] is None


def test_breakage_names_the_field_of_a_bad_window(ledger: Ledger) -> None:
    with pytest.raises(ValidationFailed) as caught:
        reports.points_breakage(ledger.platform, since=T0 + DAY, until=T0)
    assert caught.value.field == "until"
    with pytest.raises(ValidationFailed) as half:
        reports.points_breakage(ledger.platform, since=T0, until=T0 + DAY, earned_since=T0)
    assert half.value.field == "earned_until"
    with pytest.raises(ValidationFailed) as unknown:
        reports.points_liability(ledger.platform, as_of=T0, program="nope")
    assert unknown.value.field == "program"


def test_money_rounds_half_away_from_zero() -> None:
    assert [reports.money(n, Decimal("0.35")) for n in (10, 30, -30, 0)] == [4, 11, -11, 0]
    assert reports.rate(1, 3) == Decimal("0.3333") and reports.rate(2, 3) == Decimal("0.6667")
    assert reports.rate(1, 0) is None
