"""``quanyu staff`` and ``quanyu keys``: staff accounts and integration keys on the
command line. The CLI acts as the system; every change is audited as ``cli``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from quanyu.domain.access import Role
from quanyu.entrypoints.cli import _platform, err, friendly, out
from quanyu.services import access

staff_app: typer.Typer = typer.Typer(help="Staff accounts for the console.", no_args_is_help=True)
keys_app: typer.Typer = typer.Typer(
    help="Integration keys for POS, e-commerce and other channel systems.", no_args_is_help=True
)


@staff_app.command("add")
@friendly
def staff_add(  # noqa: PLR0917 - Typer options
    username: Annotated[str, typer.Argument(help="Lower-case login name")],
    role: Annotated[Role, typer.Option(help="What the account may do", case_sensitive=False)],
    store: Annotated[
        list[str] | None, typer.Option(help="A store code (store managers; repeatable)")
    ] = None,
    region: Annotated[str | None, typer.Option(help="The region (region managers)")] = None,
    guide: Annotated[str | None, typer.Option(help="The guide code (guide accounts)")] = None,
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    language: Annotated[
        str | None, typer.Option(help="zh-CN or en; default: the browser's")
    ] = None,
    password: Annotated[
        str | None,
        typer.Option(help="The password (asked for when left out)", envvar="QUANYU_NEW_PASSWORD"),
    ] = None,
) -> None:
    """Create a staff account."""
    if password is None:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    with _platform() as platform:
        made = access.create_staff(
            platform,
            username=username,
            password=password,
            role=role,
            display_name=name,
            stores=store or [],
            region=region,
            guide=guide,
            language=language,
            actor="cli",
        )
    out.print(f"created {made['role']} [bold]{made['username']}[/]")


@staff_app.command("list")
@friendly
def staff_list() -> None:
    """List staff accounts."""
    with _platform() as platform:
        rows = access.list_staff(platform)
    table = Table("username", "name", "role", "scope", "language", "active")
    for r in rows:
        scope = ", ".join(r["stores"]) or r["region"] or r["guide"] or "all members"
        table.add_row(
            r["username"],
            r["display_name"],
            r["role"],
            scope,
            r["language"] or "browser",
            "yes" if r["active"] else "no",
        )
    out.print(table)


@staff_app.command("deactivate")
@friendly
def staff_deactivate(username: str) -> None:
    """Deactivate an account and end its sessions."""
    with _platform() as platform:
        access.set_active(platform, username, active=False, actor="cli")
    out.print(f"deactivated {username}")


@keys_app.command("create")
@friendly
def keys_create(
    name: Annotated[str, typer.Argument(help="What uses the key, e.g. 'Shanghai POS'")],
    channel: Annotated[
        list[str] | None, typer.Option(help="A channel the key may send (repeatable; default any)")
    ] = None,
    store: Annotated[
        list[str] | None,
        typer.Option(help="A store the key may send for (repeatable; default any)"),
    ] = None,
) -> None:
    """Create a key. It is printed once; only its hash is kept."""
    with _platform() as platform:
        made = access.create_key(
            platform, name=name, channels=channel or [], stores=store or [], actor="cli"
        )
    err.print(f"key {made['id']} ({made['prefix']}); keep it now, it is not shown again:")
    typer.echo(made["key"])


@keys_app.command("rotate")
@friendly
def keys_rotate(
    key_id: int,
    grace_minutes: Annotated[
        int, typer.Option(help="Minutes the old key keeps working", min=0, max=10080)
    ] = 0,
) -> None:
    """Replace a key's secret; the old one stops after the grace period."""
    with _platform() as platform:
        made = access.rotate_key(platform, key_id, grace_minutes=grace_minutes, actor="cli")
    err.print(f"key {made['id']} replaces key {key_id}; keep it now, it is not shown again:")
    typer.echo(made["key"])


@keys_app.command("revoke")
@friendly
def keys_revoke(key_id: int) -> None:
    """Revoke a key at once."""
    with _platform() as platform:
        access.revoke_key(platform, key_id, actor="cli")
    out.print(f"revoked key {key_id}")


@keys_app.command("list")
@friendly
def keys_list() -> None:
    """List keys (never their secrets)."""
    with _platform() as platform:
        rows = access.list_keys(platform)
    table = Table("id", "name", "prefix", "channels", "stores", "active", "created")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["name"],
            r["prefix"],
            ", ".join(r["channels"]) or "any",
            ", ".join(r["stores"]) or "any",
            "yes" if r["active"] else "no",
            r["created_at"].isoformat(timespec="minutes"),
        )
    out.print(table)
