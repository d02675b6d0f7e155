"""The ``quanyu`` command line: the same services as the API, for operators and engineers."""

from __future__ import annotations

import contextlib
import csv
import enum
import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import pydantic
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.exc import OperationalError, ProgrammingError

from quanyu.bootstrap import bootstrap
from quanyu.config import Settings
from quanyu.domain.errors import QuanyuError
from quanyu.services.uow import Platform

app = typer.Typer(
    help="Quanyu: one member platform across every channel.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
import_app = typer.Typer(help="Import data files.", no_args_is_help=True)
jobs_app = typer.Typer(help="Scheduled work.", no_args_is_help=True)
check_app = typer.Typer(help="Consistency checks.", no_args_is_help=True)
coupons_app = typer.Typer(
    help="Coupons: issue batches, export printable codes.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(import_app, name="import")
app.add_typer(jobs_app, name="jobs")
app.add_typer(check_app, name="check")
app.add_typer(coupons_app, name="coupons")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


def friendly(fn: F) -> F:
    """Turn known failures into one clear line and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except QuanyuError as exc:
            where = f" ({exc.fields['field']})" if exc.fields.get("field") else ""
            err.print(f"[red]error{where}:[/red] {exc.detail}")
            raise typer.Exit(1) from None
        except OperationalError as exc:
            err.print(f"[red]error:[/red] cannot use the database: {exc.orig}")
            raise typer.Exit(2) from None
        except pydantic.ValidationError as exc:  # settings from the environment
            first = exc.errors()[0]
            name = "QUANYU_" + "_".join(str(part) for part in first["loc"]).upper()
            err.print(f"[red]error ({name}):[/red] {first['msg']}")
            raise typer.Exit(2) from None
        except ProgrammingError as exc:
            err.print(
                f"[red]error:[/red] the database schema is missing or old "
                f"(run `quanyu db upgrade`): {exc.orig}"
            )
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def _platform() -> Iterator[Platform]:
    platform = bootstrap(Settings())
    try:
        yield platform
    finally:
        platform.engine.dispose()


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    )


@db_app.command("upgrade")
@friendly
def db_upgrade() -> None:
    """Create or migrate the schema to the latest version."""
    from quanyu.adapters.migrate import upgrade  # noqa: PLC0415

    settings = Settings()
    engine = bootstrap(settings).engine
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    out.print(f"schema is up to date ({settings.database_url.split('@')[-1]})")


class LogLevel(enum.StrEnum):
    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"
    trace = "trace"


@app.command()
@friendly
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address")] = None,
    port: Annotated[int | None, typer.Option(help="Port", min=1, max=65535)] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes (default: 1 on SQLite, 1 per core up to 4 otherwise)",
            min=1,
            max=256,
        ),
    ] = None,
    log_level: Annotated[
        LogLevel, typer.Option(help="uvicorn's log level", case_sensitive=False)
    ] = LogLevel.info,
    access_log: Annotated[bool, typer.Option(help="Log every request")] = True,
) -> None:
    """Serve the API (OpenAPI docs at /docs)."""
    from quanyu.entrypoints.api import server  # noqa: PLC0415

    settings = Settings()
    workers = workers or settings.worker_count()
    if workers > 1 and settings.embedded:
        err.print(
            "[yellow]note:[/] SQLite runs one write at a time; worker processes would queue "
            "on its file lock with growing sleeps. One worker serves the embedded database "
            "best; use PostgreSQL (QUANYU_DATABASE_URL) for more."
        )
    if workers > 1 and not settings.embedded and not settings.analytics_direct:
        # A DuckDB file is opened by one process at a time: the workers run KPIs, tags
        # and segments on PostgreSQL itself instead.
        os.environ["QUANYU_ANALYTICS_DIRECT"] = "true"
        err.print(
            "[yellow]note:[/] with several workers, analytics run on PostgreSQL directly "
            "(the DuckDB store is opened by one process at a time)."
        )
    server.run(
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level=log_level.value,
        access_log=access_log,
    )


@app.command()
@friendly
def demo(
    people: Annotated[int, typer.Option(help="How many people the demo brand has")] = 50_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same data")] = 7,
    reset: Annotated[bool, typer.Option(help="Delete the embedded database first")] = False,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the API afterwards")
    ] = True,
) -> None:
    """Seed the demo brand group into the configured database, then serve."""
    from sqlalchemy import func, select  # noqa: PLC0415

    from quanyu.adapters import tables as t  # noqa: PLC0415
    from quanyu.adapters.migrate import upgrade  # noqa: PLC0415
    from quanyu.demo import seed_demo  # noqa: PLC0415
    from quanyu.demo.insight import define_realtime_tags, seed_insight  # noqa: PLC0415
    from quanyu.services import insight  # noqa: PLC0415

    settings = Settings()
    url = settings.database_url
    if reset and url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        for suffix in ("", ".wal"):
            Path(f"{settings.analytics_path}{suffix}").unlink(missing_ok=True)
    platform = bootstrap(settings)
    upgrade(platform.engine)
    with platform.engine.connect() as conn:
        seeded = conn.execute(select(func.count()).select_from(t.programs)).scalar_one()
    if seeded:
        out.print("demo data already present (use --reset to seed again)")
    else:
        with _progress() as bar:
            tasks: dict[str, Any] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done, total=total)

            define_realtime_tags(platform)
            summary = seed_demo(platform, people=people, seed=seed, progress=progress)
        with err.status("tags, segments and KPIs: syncing the analytics store, fitting models"):
            made = seed_insight(platform)
            insight.close_analytics(platform)
        table = Table(title="demo brand group")
        table.add_column("what")
        table.add_column("count", justify="right")
        for name, value in (*vars(summary).items(), *made.items()):
            table.add_row(
                name.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value)
            )
        out.print(table)
    from quanyu.demo.staff import DEMO_PASSWORD, seed_staff  # noqa: PLC0415

    accounts = Table(title=f"console accounts (password: {DEMO_PASSWORD})")
    for col in ("username", "role", "sees"):
        accounts.add_column(col)
    for row in seed_staff(platform):
        accounts.add_row(*row)
    out.print(accounts)
    platform.engine.dispose()
    if serve_after:
        out.print(
            f"console on http://{settings.host}:{settings.port}/ (log in with an account "
            f"above); API docs at /docs"
        )
        serve(None, None, None, LogLevel.info, True)


@import_app.command("orders")
@friendly
def import_orders(
    file: Annotated[Path, typer.Argument(help="CSV or Parquet, see docs/import-format.md")],
    rejects: Annotated[Path | None, typer.Option(help="Write rejected orders to this CSV")] = None,
    batch: Annotated[int, typer.Option(help="Orders per transaction", min=1)] = 2000,
    actor: Annotated[str, typer.Option(help="Recorded as the actor")] = "import",
) -> None:
    """Import orders from a file, with a progress bar and a summary of rejected rows."""
    from quanyu.services.importer import import_orders as run_import  # noqa: PLC0415

    if not file.exists():
        err.print(f"[red]error:[/red] {file} does not exist")
        raise typer.Exit(1)
    size = _count_rows(file)
    with _platform() as platform, _progress() as bar:
        task = bar.add_task(f"importing {file.name}", total=size)
        summary = run_import(
            platform,
            file,
            actor=f"cli:{actor}",
            batch_orders=batch,
            progress=lambda n: bar.advance(task, n),
        )
    out.print(
        f"{summary.orders:,} orders ({summary.lines:,} lines): "
        f"{summary.accepted:,} accepted, {summary.replayed:,} already imported, "
        f"{summary.rejected_orders:,} rejected ({summary.rejected_rows:,} rows)"
    )
    if summary.rejections:
        table = Table(title="rejected orders")
        for col in ("row", "order", "field", "reason"):
            table.add_column(col)
        for r in summary.rejections[:20]:
            table.add_row(str(r.row), f"{r.channel}/{r.external_id}", r.field or "", r.reason)
        out.print(table)
        if len(summary.rejections) > 20:
            out.print(f"... and {len(summary.rejections) - 20:,} more")
    if rejects is not None:
        with rejects.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["row", "rows", "channel", "external_id", "field", "reason"])
            for r in summary.rejections:
                writer.writerow([r.row, r.rows, r.channel, r.external_id, r.field or "", r.reason])
        out.print(f"rejected orders written to {rejects}")


def _count_rows(file: Path) -> int:
    if file.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq  # noqa: PLC0415

        return int(pq.ParquetFile(file).metadata.num_rows)
    with file.open("rb") as fh:
        return max(sum(1 for _ in fh) - 1, 0)


@jobs_app.command("run-due")
@friendly
def run_due() -> None:
    """Expire due points, review due tiers, release coupons held past their hold and
    grant the birthday and member-day gifts due today."""
    from quanyu.services.benefits import grant_due  # noqa: PLC0415
    from quanyu.services.coupons import release_lapsed  # noqa: PLC0415
    from quanyu.services.points import expire_due  # noqa: PLC0415
    from quanyu.services.tiers import review_due_tiers  # noqa: PLC0415

    with _platform() as platform:
        expired = expire_due(platform)
        counts = review_due_tiers(platform)
        released = release_lapsed(platform)
        gifts = grant_due(platform)
    out.print(
        f"expired {expired:,} points; tiers reviewed {counts['reviewed']:,} "
        f"(kept {counts['kept']:,}, down {counts['downgraded']:,}, "
        f"up {counts['upgraded']:,}); released {released:,} held coupons; "
        f"granted {gifts:,} gifts"
    )


@check_app.command("ledger")
@friendly
def check_ledger() -> None:
    """Prove that every member's points entries agree with their lots and debt."""
    from quanyu.services.points import check_ledger as check  # noqa: PLC0415

    with _platform() as platform:
        problems = check(platform)
    if problems:
        table = Table(title="ledger disagreements")
        for key in problems[0]:
            table.add_column(key)
        for p in problems[:50]:
            table.add_row(*(str(v) for v in p.values()))
        out.print(table)
        err.print(f"[red]{len(problems):,} disagreements[/red]")
        raise typer.Exit(1)
    out.print("ledger consistent: every balance equals its entries, every lot its allocations")


def _member_ids(file: Path) -> tuple[int, ...]:
    """Member ids from a file: one per line, or a CSV with a ``member_id`` column."""
    from quanyu.domain.errors import ValidationFailed  # noqa: PLC0415

    if not file.is_file():
        raise ValidationFailed(f"no file {file}", field="members")
    with file.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    column = 0
    if rows and rows[0] and not rows[0][0].strip().isdigit():
        header = [h.strip() for h in rows[0]]
        if "member_id" not in header:
            raise ValidationFailed(f"{file} has no member_id column", field="members")
        column, rows = header.index("member_id"), rows[1:]
    ids = []
    for n, row in enumerate(rows, start=2 if column else 1):
        value = row[column].strip() if len(row) > column else ""
        if not value:
            continue
        if not value.isdigit() or int(value) < 1:
            raise ValidationFailed(f"line {n}: {value!r} is not a member id", field="members")
        ids.append(int(value))
    if not ids:
        raise ValidationFailed(f"{file} names no members", field="members")
    return tuple(ids)


@coupons_app.command("issue")
@friendly
def coupons_issue(
    template: Annotated[str, typer.Argument(help="Coupon template code")],
    *,
    request_key: Annotated[
        str, typer.Option(help="Idempotency key: running again with it issues nothing more")
    ],
    members: Annotated[
        Path | None, typer.Option(help="File of member ids (one per line, or a member_id column)")
    ] = None,
    codes: Annotated[
        int, typer.Option(min=0, max=200_000, help="Generate this many unclaimed codes instead")
    ] = 0,
    segment: Annotated[
        str | None, typer.Option(help="Issue to the members of this segment now")
    ] = None,
    reason: Annotated[
        str, typer.Option(help="Why: shown in each member's history")
    ] = "batch issue",
) -> None:
    """Issue a template's coupons to a list of members, or generate printable codes."""
    from quanyu.services import coupons  # noqa: PLC0415

    ids = _member_ids(members) if members else ()
    if segment:
        from quanyu.services import insight  # noqa: PLC0415

        with _platform() as platform, err.status(f"finding the members of {segment}"):
            ids = tuple(insight.segment_member_ids(platform, segment))
            insight.close_analytics(platform)
    with _platform() as platform, err.status(f"issuing {len(ids) or codes:,} coupons"):
        result = coupons.issue_batch(
            platform,
            coupons.BatchRequest(
                template=template,
                request_key=request_key,
                member_ids=ids,
                codes=codes,
                reason=reason,
            ),
            actor="cli",
        )
    again = " (already issued under this key)" if result["replayed"] else ""
    out.print(
        f"batch {result['batch_id']}: {result['issued']:,} {template} coupons{again}; "
        f"export codes with `quanyu coupons export {result['batch_id']}`"
    )


@coupons_app.command("export")
@friendly
def coupons_export(
    batch: Annotated[int, typer.Argument(min=1, help="Batch id")],
    out_file: Annotated[Path | None, typer.Option("--out", help="CSV file; default stdout")] = None,
) -> None:
    """Export a batch's codes as CSV, for printing or for QR codes on products."""
    from quanyu.services import coupons  # noqa: PLC0415

    with _platform() as platform:
        text = coupons.export_codes(platform, batch)
    if out_file is None:
        typer.echo(text, nl=False)
        return
    out_file.write_text(text, encoding="utf-8")
    err.print(f"wrote {text.count(chr(10)) - 1:,} codes to {out_file}")


from quanyu.entrypoints import cli_insight  # noqa: E402 - it uses the helpers above

app.command("kpi")(cli_insight.kpi)
app.add_typer(cli_insight.tags_app, name="tags")
app.add_typer(cli_insight.segments_app, name="segments")
app.add_typer(cli_insight.analytics_app, name="analytics")

from quanyu.entrypoints import cli_access  # noqa: E402 - it uses the helpers above

app.add_typer(cli_access.staff_app, name="staff")
app.add_typer(cli_access.keys_app, name="keys")


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
