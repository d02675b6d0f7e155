"""Shared fixtures: a migrated database on each backend, a movable clock, a brand set-up
and a small driver (``shop``) that places orders, refunds and registrations through the
services.

``platform`` runs every test that asks for it twice: on a fresh SQLite file and on
PostgreSQL (``QUANYU_TEST_POSTGRES_URL``, default ``postgresql://postgres@127.0.0.1:5432/test``).
Without a reachable PostgreSQL the postgres half is skipped, or fails when ``CI`` is set.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from quanyu.adapters.db import make_engine
from quanyu.adapters.migrate import upgrade
from quanyu.bootstrap import bootstrap
from quanyu.clock import FixedClock
from quanyu.config import Settings
from quanyu.domain.orders import (
    IdentityInput,
    LineInput,
    OrderInput,
    PaymentInput,
    RefundInput,
    RefundLineInput,
)
from quanyu.services import insight, members, orders, points, setup
from quanyu.services.uow import Platform

POSTGRES_URL = os.environ.get(
    "QUANYU_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)

# Monday 2 March 2026, 10:00 in Shanghai: not a member day (the 8th) and not a review day.
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
SHANGHAI = timedelta(hours=8)


def local(year: int, month: int, day: int, hour: int = 10) -> datetime:
    """An aware datetime given in Shanghai local time (the program's time zone)."""
    return datetime(year, month, day, hour, tzinfo=UTC) - SHANGHAI


# ---------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, made once; every test gets a copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "quanyu.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    # Fold the write-ahead log into the main file, so that copying the file copies it all.
    with closing(sqlite3.connect(path)) as raw:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@dataclass(frozen=True)
class PostgresDatabase:
    url: str
    engine: Engine
    tables: tuple[str, ...]

    def truncate(self) -> None:
        names = ", ".join(f'"{name}"' for name in self.tables)
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[PostgresDatabase]:
    """PostgreSQL with a freshly migrated ``public`` schema, made once per session."""
    engine = make_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError as exc:
            reason = f"PostgreSQL at {POSTGRES_URL} cannot be reached: {exc.orig}"
            if os.environ.get("CI"):
                pytest.fail(f"{reason} (CI is set, so PostgreSQL is required)", pytrace=False)
            pytest.skip(f"{reason}; set QUANYU_TEST_POSTGRES_URL to run the postgres tests")
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        upgrade(engine)
        with engine.connect() as conn:
            tables = tuple(
                r[0]
                for r in conn.execute(
                    text(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                        "AND tablename <> 'alembic_version' ORDER BY tablename"
                    )
                )
            )
        yield PostgresDatabase(POSTGRES_URL, engine, tables)
    finally:
        engine.dispose()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    """Which database the test runs on; override with ``parametrize(..., indirect=True)``."""
    value: str = request.param
    return value


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated database of the chosen backend."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "quanyu.db"
        shutil.copyfile(template, path)
        return f"sqlite:///{path}"
    db: PostgresDatabase = request.getfixturevalue("postgres_database")
    db.truncate()
    return db.url


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def platform(database_url: str, clock: FixedClock, tmp_path: Path) -> Iterator[Platform]:
    settings = Settings(database_url=database_url, analytics_path=tmp_path / "analytics.duckdb")
    p = bootstrap(settings, clock=clock)
    try:
        yield p
    finally:
        insight.close_analytics(p)
        p.engine.dispose()


# ---------------------------------------------------------------- brand set-up


@dataclass(frozen=True)
class Brand:
    """Codes of the set-up made by the ``brand`` fixture.

    Program ``club``: 1 point per yuan; gold earns ×2 and platinum ×3; the 8th of every
    month is a member day (×2). Points are pending for 7 days and expire at the end of
    the following year; refunds claw back from other lots before recording a debt; points
    may pay up to 50% of an order at 1 fen each. Tiers by spend over 365 days: silver
    from 0, gold from 3,000 yuan, platinum from 10,000 yuan; downgrade at the anniversary
    after 30 days of grace.
    """

    program: str = "club"
    brand: str = "acme"
    store: str = "SH01"
    other_store: str = "BJ01"
    guide: str = "G001"
    tee: str = "TEE-W-M"  # 199 yuan, category tops
    jeans: str = "JEANS-B-32"  # 599 yuan, category bottoms
    gold_threshold: int = 300_000
    platinum_threshold: int = 1_000_000


@pytest.fixture
def brand(platform: Platform) -> Brand:
    b = Brand()
    setup.create_program(
        platform,
        {
            "code": b.program,
            "name": "Acme Club",
            "pending_days": 7,
            "expiry_kind": "end_of_following_year",
            "clawback_policy": "other_lots",
            "points_payment_cap_percent": 50,
            "tier_metric": "spend",
            "tier_review": "anniversary",
            "tier_grace_days": 30,
            "tier_max_downgrade_levels": 1,
        },
    )
    setup.set_tiers(
        platform,
        b.program,
        [
            {"code": "silver", "name": "Silver", "rank": 0, "threshold": 0},
            {"code": "gold", "name": "Gold", "rank": 1, "threshold": b.gold_threshold},
            {"code": "platinum", "name": "Platinum", "rank": 2, "threshold": b.platinum_threshold},
        ],
    )
    setup.add_earn_rule(
        platform,
        b.program,
        effective_from=datetime(2020, 1, 1, tzinfo=UTC),
        document={
            "base_rate": "1",
            "tier_multipliers": {"gold": "2", "platinum": "3"},
            "member_days": [8],
            "member_day_multiplier": "2",
        },
        actor="test",
    )
    setup.create_brand(platform, code=b.brand, name="Acme", program=b.program)
    setup.create_channel(platform, code="pos", name="Store POS", kind="store_pos")
    setup.create_channel(platform, code="tmall", name="Tmall", kind="tmall")
    setup.create_channel(platform, code="mini", name="WeChat mini program", kind="wechat_mini")
    for code, city, region in ((b.store, "Shanghai", "East"), (b.other_store, "Beijing", "North")):
        setup.create_store(
            platform,
            {
                "code": code,
                "name": f"Acme {city}",
                "brand": b.brand,
                "city": city,
                "region": region,
            },
        )
    setup.create_guide(platform, code=b.guide, name="Wang", store=b.store)
    setup.upsert_products(
        platform,
        [
            {
                "sku": b.tee,
                "brand": b.brand,
                "name": "Tee",
                "style": "TEE",
                "colour": "white",
                "size": "M",
                "category": "tops",
                "list_price": 19_900,
            },
            {
                "sku": b.jeans,
                "brand": b.brand,
                "name": "Jeans",
                "style": "JEANS",
                "colour": "blue",
                "size": "32",
                "category": "bottoms",
                "list_price": 59_900,
            },
        ],
    )
    return b


# ---------------------------------------------------------------- a driver for the services


def phone(n: int) -> str:
    """A valid mainland mobile number, distinct for each ``n``."""
    return f"1380013{n:04d}"


class Shop:
    """Places registrations, orders and refunds through the services, as a channel would."""

    def __init__(self, platform: Platform, clock: FixedClock, brand: Brand) -> None:
        self.platform = platform
        self.clock = clock
        self.brand = brand

    # time
    def at(self, when: datetime) -> None:
        self.clock.set(when)

    def later(self, **delta: float) -> datetime:
        self.clock.set(self.clock.now() + timedelta(**delta))
        return self.clock.now()

    # members
    def register(
        self,
        *identities: tuple[str, str] | tuple[str, str, str],
        at: datetime | None = None,
        name: str | None = None,
        store: str | None = None,
        channel: str | None = "pos",
    ) -> int:
        reg = members.Registration(
            identities=tuple(IdentityInput(*i) for i in identities),
            program=self.brand.program,
            channel=channel,
            store=store or self.brand.store,
            name=name,
            registered_at=at,
        )
        result = members.register(self.platform, reg, actor="test")
        return int(result["member_id"])

    # orders
    def order_input(
        self,
        external_id: str,
        *identities: tuple[str, str] | tuple[str, str, str],
        paid: int | Sequence[int] = 10_000,
        at: datetime | None = None,
        channel: str = "pos",
        store: str | None = "default",
        brand: str | None = None,
        points: int = 0,
        sku: str | None = None,
    ) -> OrderInput:
        amounts = [paid] if isinstance(paid, int) else list(paid)
        lines = tuple(
            LineInput(n + 1, sku or self.brand.tee, 1, amount, amount)
            for n, amount in enumerate(amounts)
        )
        total = sum(amounts)
        payments: tuple[PaymentInput, ...] = ()
        if points:
            payments = (
                PaymentInput("points", points, points),
                PaymentInput("cash", total - points),
            )
        return OrderInput(
            channel=channel,
            external_id=external_id,
            ordered_at=at or self.clock.now(),
            lines=lines,
            identities=tuple(IdentityInput(*i) for i in identities),
            payments=payments,
            brand=brand,
            store=self.brand.store if store == "default" else store,
        )

    def order(
        self, external_id: str, *identities: tuple[str, str] | tuple[str, str, str], **kw: Any
    ) -> dict[str, Any]:
        """Place an order; an order dated ahead of the clock arrives when it is placed."""
        order = self.order_input(external_id, *identities, **kw)
        if order.ordered_at > self.clock.now():
            self.clock.set(order.ordered_at)
        return orders.ingest_order(self.platform, order, actor="test")

    def refund(
        self,
        external_id: str,
        order_external_id: str,
        *,
        amount: int,
        line_no: int = 1,
        quantity: int = 0,
        at: datetime | None = None,
        channel: str = "pos",
    ) -> dict[str, Any]:
        refund = RefundInput(
            channel=channel,
            external_id=external_id,
            order_external_id=order_external_id,
            refunded_at=at or self.clock.now(),
            lines=(RefundLineInput(line_no, quantity, amount),),
        )
        return orders.ingest_refund(self.platform, refund, actor="test")

    # points
    def balance(self, member_id: int) -> dict[str, Any]:
        return points.balance(self.platform, member_id)

    def available(self, member_id: int) -> int:
        return int(self.balance(member_id)["available"])

    def total(self, member_id: int) -> int:
        return int(self.balance(member_id)["total"])


@pytest.fixture
def shop(platform: Platform, clock: FixedClock, brand: Brand) -> Shop:
    return Shop(platform, clock, brand)


# ---------------------------------------------------------------- Spark (local mode)


def _start_spark(tmp: Path) -> Any:
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # loopback only, no DNS lookup
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession  # noqa: PLC0415 - only the Spark tests need it

    jvm = (
        f"-Djava.io.tmpdir={tmp} -Dderby.system.home={tmp / 'derby'} "
        "-XX:+UseSerialGC -XX:TieredStopAtLevel=1"  # starts faster on two cores
    )
    builder = SparkSession.builder.master("local[2]").appName("quanyu-tests")
    for key, value in {
        "spark.driver.memory": "1g",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.extraJavaOptions": jvm,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": "2",
        "spark.default.parallelism": "2",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.warehouse.dir": str(tmp / "warehouse"),
        "spark.local.dir": str(tmp / "local"),
    }.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("OFF")
    return spark


@pytest.fixture(scope="session")
def spark_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One local Spark for the whole run (about 10 s to start); it needs Java 17+."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        if os.environ.get("CI"):
            pytest.fail("Spark needs a Java runtime (CI is set, so it is required)")
        pytest.skip("Spark needs a Java runtime (17 or 21)")
    spark = _start_spark(tmp_path_factory.mktemp("spark"))
    try:
        yield spark
    finally:
        spark.stop()
