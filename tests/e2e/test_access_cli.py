"""``quanyu staff`` and ``quanyu keys`` on the command line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from conftest import Brand
from quanyu.entrypoints.cli import app
from quanyu.services import access
from quanyu.services.uow import Platform


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("QUANYU_DATABASE_URL", database_url)
    return CliRunner()


def test_staff_add_creates_a_scoped_account_and_a_bad_store_is_one_line(
    cli: CliRunner, platform: Platform, brand: Brand
) -> None:
    made = cli.invoke(
        app,
        ["staff", "add", "li", "--role", "store_manager", "--store", brand.store],
        env={"QUANYU_NEW_PASSWORD": "a long enough password"},
    )
    assert made.exit_code == 0, made.output
    (row,) = access.list_staff(platform)
    assert (row["username"], row["stores"]) == ("li", [brand.store])
    bad = cli.invoke(
        app,
        ["staff", "add", "wu", "--role", "store_manager", "--store", "NOPE"],
        env={"QUANYU_NEW_PASSWORD": "a long enough password"},
    )
    assert bad.exit_code == 1
    assert "stores[0]" in bad.output and "Traceback" not in bad.output


def test_keys_are_printed_once_and_rotation_replaces_them(
    cli: CliRunner, platform: Platform, brand: Brand
) -> None:
    made = cli.invoke(app, ["keys", "create", "SH POS", "--channel", "pos", "--store", brand.store])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("qk_")
    assert access.key_principal(platform, key).channels == {"pos"}
    (listed,) = access.list_keys(platform)
    rotated = cli.invoke(app, ["keys", "rotate", str(listed["id"])])
    assert rotated.exit_code == 0, rotated.output
    new_key = rotated.stdout.strip().splitlines()[-1]
    assert new_key != key and access.key_principal(platform, new_key)
    listing = cli.invoke(app, ["keys", "list"])
    assert key not in listing.output and new_key not in listing.output
