"""``quanyu coupons``: issue a batch from a file of members, export printable codes."""

from __future__ import annotations

import csv
from pathlib import Path

from test_cli import cli, member  # noqa: F401 - fixtures
from typer.testing import CliRunner

from quanyu.entrypoints.cli import app
from quanyu.services import coupons
from quanyu.services.uow import Platform

# ruff: noqa: F811


def make_template(platform: Platform) -> None:
    coupons.create_template(
        platform,
        {
            "code": "WELCOME",
            "name": "Welcome",
            "kind": "amount_off",
            "value": 1_000,
            "valid_days": 30,
        },
        actor="test",
    )


def test_issue_from_a_member_file_once_per_request_key(
    cli: CliRunner, platform: Platform, member: int, tmp_path: Path
) -> None:
    make_template(platform)
    file = tmp_path / "members.csv"
    file.write_text(f"name,member_id\nLi,{member}\n")
    args = ["coupons", "issue", "WELCOME", "--members", str(file), "--request-key", "k1"]
    first = cli.invoke(app, args)
    assert first.exit_code == 0, first.output
    again = cli.invoke(app, args)
    assert "already issued" in again.output
    assert len(coupons.member_coupons(platform, member)) == 1


def test_generated_codes_export_to_a_csv_file(
    cli: CliRunner, platform: Platform, member: int, tmp_path: Path
) -> None:
    make_template(platform)
    result = cli.invoke(app, ["coupons", "issue", "WELCOME", "--codes", "5", "--request-key", "p"])
    assert result.exit_code == 0, result.output
    batch = result.output.split()[1].rstrip(":")
    out = tmp_path / "codes.csv"
    exported = cli.invoke(app, ["coupons", "export", batch, "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == 5 and rows[0]["template"] == "WELCOME"


def test_a_bad_member_file_is_named_in_one_line(
    cli: CliRunner, platform: Platform, member: int, tmp_path: Path
) -> None:
    make_template(platform)
    file = tmp_path / "members.txt"
    file.write_text(f"{member}\nabc\n")
    result = cli.invoke(
        app, ["coupons", "issue", "WELCOME", "--members", str(file), "--request-key", "k"]
    )
    assert result.exit_code == 1
    assert "line 2" in result.output and "Traceback" not in result.output
