"""The ``quanyu`` command line end to end, on both backends: import, jobs, ledger check,
and clear one-line errors instead of tracebacks."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from conftest import Brand
from quanyu.adapters import tables as t
from quanyu.domain.orders import IdentityInput
from quanyu.entrypoints.cli import app
from quanyu.services import members, points
from quanyu.services.uow import Platform

MEMBER_PHONE = "13912345678"
HEADER = "channel,external_id,ordered_at,store,phone,sku,quantity,list_price,paid_amount"
ROWS = [
    # two lines of one member order, long ago: its points have expired by now
    "pos,A-1,2020-03-02T10:00:00+08:00,SH01,13912345678,TEE-W-M,1,19900,19900",
    "pos,A-1,2020-03-02T10:00:00+08:00,SH01,13912345678,JEANS-B-32,1,59900,50000",
    # a walk-in order without identities
    "pos,A-2,2026-03-02T11:00:00+08:00,SH01,,TEE-W-M,2,19900,39800",
    # unreadable quantity: the whole order is rejected
    "pos,A-3,2026-03-02T12:00:00+08:00,SH01,,TEE-W-M,x,19900,19900",
    # no time zone offset
    "pos,A-4,2026-03-02 12:00:00,SH01,,TEE-W-M,1,19900,19900",
]


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("QUANYU_DATABASE_URL", database_url)
    return CliRunner()


@pytest.fixture
def orders_csv(tmp_path: Path) -> Path:
    path = tmp_path / "orders.csv"
    path.write_text("\n".join([HEADER, *ROWS]) + "\n")
    return path


@pytest.fixture
def member(platform: Platform, brand: Brand) -> int:
    result = members.register(
        platform,
        members.Registration(identities=(IdentityInput("phone", MEMBER_PHONE),), store=brand.store),
        actor="test",
    )
    return int(result["member_id"])


def order_count(platform: Platform) -> int:
    with platform.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.orders)).scalar_one())


def test_import_accepts_good_orders_and_lists_rejected_rows_with_their_reason(
    cli: CliRunner, platform: Platform, member: int, orders_csv: Path, tmp_path: Path
) -> None:
    rejects = tmp_path / "rejected.csv"
    result = cli.invoke(app, ["import", "orders", str(orders_csv), "--rejects", str(rejects)])
    assert result.exit_code == 0, result.output
    assert "4 orders (5 lines): 2 accepted, 0 already imported, 2 rejected (2 rows)" in (
        result.output
    )
    assert order_count(platform) == 2
    lines = rejects.read_text().splitlines()
    assert lines[0] == "row,rows,channel,external_id,field,reason"
    assert lines[1].startswith("4,1,pos,A-3,quantity,")
    assert lines[2].startswith("5,1,pos,A-4,ordered_at,")


def test_importing_the_same_file_again_changes_nothing(
    cli: CliRunner, platform: Platform, member: int, orders_csv: Path
) -> None:
    cli.invoke(app, ["import", "orders", str(orders_csv)])
    before = points.balance(platform, member)
    again = cli.invoke(app, ["import", "orders", str(orders_csv)])
    assert again.exit_code == 0, again.output
    assert "0 accepted, 2 already imported" in again.output
    assert order_count(platform) == 2
    assert points.balance(platform, member) == before


def test_import_reads_parquet_in_the_same_format(
    cli: CliRunner, platform: Platform, member: int, orders_csv: Path, tmp_path: Path
) -> None:
    table = pacsv.read_csv(
        orders_csv, convert_options=pacsv.ConvertOptions(column_types={"phone": pa.string()})
    )
    path = tmp_path / "orders.parquet"
    pq.write_table(table.slice(0, 3), path)
    result = cli.invoke(app, ["import", "orders", str(path)])
    assert result.exit_code == 0, result.output
    assert "2 accepted" in result.output
    assert order_count(platform) == 2


def test_run_due_expires_points_past_their_expiry_and_the_ledger_stays_consistent(
    cli: CliRunner, platform: Platform, member: int, orders_csv: Path
) -> None:
    cli.invoke(app, ["import", "orders", str(orders_csv)])
    earned = points.balance(platform, member)["total"]
    assert earned == 699  # (199 + 500) yuan at 1 point per yuan
    result = cli.invoke(app, ["jobs", "run-due"])
    assert result.exit_code == 0, result.output
    assert "expired 699 points" in result.output
    assert points.balance(platform, member)["total"] == 0
    check = cli.invoke(app, ["check", "ledger"])
    assert check.exit_code == 0, check.output
    assert "ledger consistent" in check.output


def test_import_of_a_missing_file_prints_a_message_not_a_traceback(
    cli: CliRunner, platform: Platform, tmp_path: Path
) -> None:
    result = cli.invoke(app, ["import", "orders", str(tmp_path / "nope.csv")])
    assert result.exit_code == 1
    assert "does not exist" in result.output
    assert "Traceback" not in result.output


def test_import_of_a_file_without_required_columns_names_them(
    cli: CliRunner, platform: Platform, tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("channel,external_id\npos,1\n")
    result = cli.invoke(app, ["import", "orders", str(path)])
    assert result.exit_code == 1
    assert "lacks columns: ordered_at, sku, quantity, list_price, paid_amount" in result.output
    assert "Traceback" not in result.output


def test_an_unreachable_database_is_reported_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QUANYU_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")
    result = CliRunner().invoke(app, ["check", "ledger"])
    assert result.exit_code == 2
    assert "cannot use the database" in result.output
    assert "Traceback" not in result.output


def test_a_bad_setting_is_named_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANYU_WORKERS", "0")
    result = CliRunner().invoke(app, ["check", "ledger"])
    assert result.exit_code == 2
    assert "QUANYU_WORKERS" in result.output
    assert "Traceback" not in result.output


def test_db_upgrade_creates_the_schema_in_an_empty_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("QUANYU_DATABASE_URL", f"sqlite:///{tmp_path}/fresh.db")
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "schema is up to date" in result.output
    check = CliRunner().invoke(app, ["check", "ledger"])
    assert check.exit_code == 0, check.output
