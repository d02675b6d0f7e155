"""``quanyu kpi``, ``quanyu tags``, ``quanyu segments`` and ``quanyu analytics``: the
insight services on the command line. Conditions and tag documents are JSON, given inline
or as ``@file.json``."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from quanyu.domain.errors import ValidationFailed
from quanyu.entrypoints.cli import _platform, _progress, err, friendly, out

tags_app: typer.Typer = typer.Typer(
    help="Tags: define, run, see the distribution.", no_args_is_help=True
)
segments_app: typer.Typer = typer.Typer(
    help="Segments: count, overlap, snapshot, export.", no_args_is_help=True
)
analytics_app: typer.Typer = typer.Typer(help="The analytics store (DuckDB).", no_args_is_help=True)


def _json(text: str, field: str) -> Any:
    raw = Path(text[1:]).read_text(encoding="utf-8") if text.startswith("@") else text
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValidationFailed(f"not JSON: {exc.msg} at position {exc.pos}", field=field) from None


def _print_rows(rows: list[dict[str, Any]], fmt: str, out_file: Path | None) -> None:
    from quanyu.services.reports import to_csv  # noqa: PLC0415

    if fmt == "csv":
        text = to_csv(rows)
    elif fmt == "json":
        text = orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n"
    else:
        table = Table(*(rows[0].keys() if rows else ["(no rows)"]))
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row.values()))
        out.print(table)
        return
    if out_file is None:
        typer.echo(text, nl=False)
    else:
        out_file.write_text(text, encoding="utf-8")
        err.print(f"wrote {len(rows):,} rows to {out_file}")


@friendly
def kpi(
    metric: Annotated[
        str,
        typer.Argument(
            help="sales, active_members, new_members, "
            "new_member_conversion, repurchase, retention, "
            "lifecycle, acquisition_cost, points_liability"
        ),
    ],
    *,
    since: Annotated[str, typer.Option(help="First day, YYYY-MM-DD")],
    until: Annotated[str, typer.Option(help="Day after the last, YYYY-MM-DD")],
    grain: Annotated[str | None, typer.Option(help="day, week, month, quarter, year")] = None,
    by: Annotated[
        list[str] | None,
        typer.Option(help="Breakdown: brand, channel, store, region, guide, tier (repeatable)"),
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option("--filter", help="Filter as dimension=code[,code] (repeatable)"),
    ] = None,
    window_days: Annotated[int, typer.Option(help="N of conversion and repurchase")] = 30,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
    out_file: Annotated[Path | None, typer.Option("--out", help="Write to a file")] = None,
) -> None:
    """Compute one KPI with breakdowns and filters (definitions: docs/metrics.md)."""
    from quanyu.services import insight  # noqa: PLC0415

    filters: dict[str, list[str]] = {}
    for item in where or []:
        name, _, codes = item.partition("=")
        if not codes:
            raise ValidationFailed(f"{item!r} is not dimension=code[,code]", field="filter")
        filters[name] = codes.split(",")
    try:
        start, end = date.fromisoformat(since), date.fromisoformat(until)
    except ValueError:
        raise ValidationFailed("dates are YYYY-MM-DD", field="since/until") from None
    if fmt not in ("table", "json", "csv"):
        raise ValidationFailed("format is table, json or csv", field="format")
    query = insight.kpi_query(
        since=start, until=end, grain=grain, by=by or (), filters=filters, window_days=window_days
    )
    with _platform() as platform, err.status(f"computing {metric}"):
        rows = insight.kpi(platform, metric, query)
    _print_rows(rows, fmt, out_file)


@analytics_app.command("refresh")
@friendly
def refresh(full: Annotated[bool, typer.Option(help="Copy everything again")] = False) -> None:
    """Copy what changed in the operational database into the DuckDB analytics store."""
    from quanyu.services import insight  # noqa: PLC0415

    with _platform() as platform, _progress() as progress:
        task = progress.add_task("sync", total=None)

        def tick(stage: str, done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        report = insight.analytics(platform).refresh(full=full, progress=tick)
        insight.close_analytics(platform)
    rows = ", ".join(f"{k} {v:,}" for k, v in report.rows.items())
    kind = "full" if report.full else "incremental"
    out.print(f"{kind} sync in {report.seconds:.1f} s: {rows}; {report.merges} merges")


@tags_app.command("define")
@friendly
def tags_define(
    code: Annotated[str, typer.Argument()],
    name: Annotated[str, typer.Option()],
    kind: Annotated[str, typer.Option(help="rule, realtime or model")],
    document: Annotated[str, typer.Option(help="JSON, or @file.json")],
) -> None:
    """Create a tag, or a new version of it."""
    from quanyu.services import insight  # noqa: PLC0415

    with _platform() as platform:
        tag = insight.define_tag(
            platform,
            code=code,
            name=name,
            kind=kind,
            document=_json(document, "document"),
            actor="cli",
        )
    out.print(f"tag {tag['code']} v{tag['version']} ({tag['kind']})")


@tags_app.command("run")
@friendly
def tags_run(
    codes: Annotated[list[str] | None, typer.Argument(help="Default: all")] = None,
) -> None:
    """Recompute rule and model tags and write them to the members."""
    from quanyu.services import insight  # noqa: PLC0415

    with _platform() as platform, err.status("running tags"):
        runs = insight.run_tags(platform, codes=codes or None, actor="cli")
        insight.close_analytics(platform)
    table = Table("tag", "members", "model version", "distribution")
    for r in runs:
        table.add_row(
            r["tag"],
            f"{r['members']:,}",
            r["model_version"],
            ", ".join(f"{k} {v:,}" for k, v in list(r["distribution"].items())[:8]),
        )
    out.print(table)


@tags_app.command("show")
@friendly
def tags_show(code: Annotated[str, typer.Argument()]) -> None:
    """A tag's definition and how its members spread over its values."""
    from quanyu.services import insight  # noqa: PLC0415

    with _platform() as platform:
        found = insight.tag_distribution(platform, code)
    out.print(f"{code}: {found['members']:,} members; {found['tag']['document']}")
    _print_rows(found["values"], "table", None)


@segments_app.command("count")
@friendly
def segments_count(condition: Annotated[str, typer.Argument(help="JSON, or @file.json")]) -> None:
    """How many members a condition selects now."""
    from quanyu.services import insight  # noqa: PLC0415

    with _platform() as platform:
        found = insight.count(platform, _json(condition, "condition"))
        insight.close_analytics(platform)
    out.print(f"{found['members']:,} members")


@segments_app.command("overlap")
@friendly
def segments_overlap(
    first: Annotated[str, typer.Argument(help="Condition JSON, @file.json or segment:CODE")],
    second: Annotated[str, typer.Argument(help="Condition JSON, @file.json or segment:CODE")],
) -> None:
    """How two conditions (or saved segments) overlap."""
    from quanyu.services import insight  # noqa: PLC0415

    with _platform() as platform:

        def resolve(text: str, field: str) -> Any:
            if text.startswith("segment:"):
                return insight.segment(platform, text[8:])["condition"]
            return _json(text, field)

        found = insight.overlap(platform, resolve(first, "first"), resolve(second, "second"))
        insight.close_analytics(platform)
    _print_rows([found], "table", None)


@segments_app.command("define")
@friendly
def segments_define(
    code: Annotated[str, typer.Argument()],
    name: Annotated[str, typer.Option()],
    condition: Annotated[str, typer.Option(help="JSON, or @file.json")],
) -> None:
    """Save a segment (a new version if it exists)."""
    from quanyu.services import insight  # noqa: PLC0415

    with _platform() as platform:
        seg = insight.define_segment(
            platform, code=code, name=name, condition=_json(condition, "condition"), actor="cli"
        )
    out.print(f"segment {seg['code']} v{seg['version']}")


@segments_app.command("snapshot")
@friendly
def segments_snapshot(code: Annotated[str, typer.Argument()]) -> None:
    """Record the segment's members; entries and exits become events."""
    from quanyu.services import insight  # noqa: PLC0415

    with _platform() as platform:
        found = insight.snapshot(platform, code, actor="cli")
        insight.close_analytics(platform)
    out.print(
        f"{code}: {found['members']:,} members, {found['entered']:,} entered, "
        f"{found['exited']:,} left"
    )


@segments_app.command("export")
@friendly
def segments_export(
    code: Annotated[str, typer.Argument()],
    out_file: Annotated[Path, typer.Option("--out", help="File to write")],
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet")] = "csv",
) -> None:
    """Export a segment with only the identities each member consented to (audited)."""
    from quanyu.services import insight  # noqa: PLC0415

    with _platform() as platform:
        _, n = insight.export_audience(platform, code=code, actor="cli", fmt=fmt, out=out_file)
        insight.close_analytics(platform)
    err.print(f"wrote {n:,} members to {out_file}")
