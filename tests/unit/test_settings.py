"""Settings that have a rule behind their default."""

from __future__ import annotations

from quanyu.config import Settings


def test_sqlite_is_served_by_one_worker_by_default() -> None:
    assert Settings(database_url="sqlite:///x.db", workers=None).worker_count(cores=8) == 1


def test_postgresql_is_served_by_one_worker_per_core_by_default() -> None:
    settings = Settings(database_url="postgresql://u@h/db", workers=None)
    assert settings.worker_count(cores=2) == 2


def test_the_default_stops_at_four_workers_so_their_pools_fit_postgresql() -> None:
    settings = Settings(database_url="postgresql://u@h/db", workers=None)
    assert settings.worker_count(cores=64) == 4


def test_a_worker_count_that_is_set_wins_over_the_default() -> None:
    assert Settings(database_url="sqlite:///x.db", workers=3).worker_count(cores=8) == 3
