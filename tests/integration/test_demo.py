"""The demo brand group seeds a small population through the real services on SQLite."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import phonenumbers
import pytest
from sqlalchemy import func, select

from quanyu.adapters import tables as t
from quanyu.adapters.migrate import upgrade
from quanyu.bootstrap import bootstrap
from quanyu.clock import FixedClock
from quanyu.config import Settings
from quanyu.demo import DemoSummary, seed_demo
from quanyu.domain.errors import AlreadyExists
from quanyu.services.points import check_ledger
from quanyu.services.uow import Platform

NOW = datetime(2026, 11, 1, tzinfo=UTC)
PEOPLE = 300


@dataclass(frozen=True)
class Seeded:
    platform: Platform
    summary: DemoSummary
    stages: frozenset[str]


def _seed(path: Path, *, seed: int = 7) -> Seeded:
    platform = bootstrap(Settings(database_url=f"sqlite:///{path}"), clock=FixedClock(NOW))
    upgrade(platform.engine)
    stages: set[str] = set()
    summary = seed_demo(
        platform, people=PEOPLE, seed=seed, progress=lambda stage, done, total: stages.add(stage)
    )
    return Seeded(platform, summary, frozenset(stages))


def _fingerprints(platform: Platform) -> list[tuple[str, str]]:
    with platform.engine.connect() as conn:
        return [
            (r.external_id, r.fingerprint)
            for r in conn.execute(
                select(t.orders.c.external_id, t.orders.c.fingerprint).order_by(
                    t.orders.c.external_id
                )
            )
        ]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return _seed(tmp_path_factory.mktemp("demo") / "d.db")


def test_same_seed_gives_the_same_summary_and_orders(seeded: Seeded, tmp_path: Path) -> None:
    again = _seed(tmp_path / "again.db")
    assert again.summary == seeded.summary
    assert _fingerprints(again.platform) == _fingerprints(seeded.platform)


def test_another_seed_gives_other_orders(seeded: Seeded, tmp_path: Path) -> None:
    other = _seed(tmp_path / "other.db", seed=8)
    assert _fingerprints(other.platform) != _fingerprints(seeded.platform)


def test_seeds_the_whole_brand_set_up(seeded: Seeded) -> None:
    s = seeded.summary
    assert (s.brands, s.stores) == (2, 40)
    assert 3 * s.stores <= s.guides <= 5 * s.stores
    assert 200 <= s.products <= 1000
    with seeded.platform.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.programs)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(t.channels)).scalar_one() == 7
        cities = conn.execute(select(func.count(t.stores.c.city.distinct()))).scalar_one()
        assert cities == 8


def test_about_sixty_percent_of_people_join_and_buyers_average_two_to_four_orders(
    seeded: Seeded,
) -> None:
    s = seeded.summary
    assert 0.5 * PEOPLE <= s.members <= 0.7 * PEOPLE
    assert 2 * PEOPLE <= s.orders <= 4 * PEOPLE
    assert s.orders < s.order_lines <= 4 * s.orders


def test_fragmented_identities_make_oneid_merge_profiles(seeded: Seeded) -> None:
    assert seeded.summary.merges > 0


def test_oneid_merges_exactly_the_profiles_the_plan_fragmented(seeded: Seeded) -> None:
    assert seeded.summary.merges == seeded.summary.planned_merges


def test_about_five_percent_of_orders_are_refunded(seeded: Seeded) -> None:
    s = seeded.summary
    assert 0.02 * s.orders <= s.refunds <= 0.08 * s.orders


def test_no_item_is_rejected_by_the_services(seeded: Seeded) -> None:
    s = seeded.summary
    assert (s.rejected_registrations, s.rejected_orders, s.rejected_refunds) == (0, 0, 0)


def test_summary_is_counts_only(seeded: Seeded) -> None:
    assert all(type(v) is int for v in vars(seeded.summary).values())


def test_points_ledger_stays_consistent(seeded: Seeded) -> None:
    assert check_ledger(seeded.platform) == []


def test_some_members_pay_with_points(seeded: Seeded) -> None:
    with seeded.platform.engine.connect() as conn:
        paid = conn.execute(select(func.count()).where(t.orders.c.points_used > 0)).scalar_one()
    assert paid > 0


def test_orders_fall_within_the_years_before_the_clock(seeded: Seeded) -> None:
    with seeded.platform.engine.connect() as conn:
        first, last = conn.execute(
            select(func.min(t.orders.c.ordered_at), func.max(t.orders.c.ordered_at))
        ).one()
    assert NOW - timedelta(days=2 * 365) <= first < last < NOW


def test_phones_are_valid_mainland_mobile_numbers(seeded: Seeded) -> None:
    with seeded.platform.engine.connect() as conn:
        phones = conn.execute(
            select(t.identities.c.value).where(t.identities.c.type == "phone")
        ).scalars()
        for phone in phones:
            number = phonenumbers.parse(phone, "CN")
            assert phonenumbers.is_valid_number(number), phone
            assert phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.MOBILE


def test_progress_reports_every_stage(seeded: Seeded) -> None:
    assert seeded.stages == {"setup", "people", "events"}


def test_refuses_a_database_that_already_has_a_program(seeded: Seeded) -> None:
    with pytest.raises(AlreadyExists):
        seed_demo(seeded.platform, people=10)
