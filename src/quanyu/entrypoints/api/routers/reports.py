"""Reports: coupons per template and per (channel, store), points liability and points
breakage, as JSON or, with ``format=csv``, as CSV. Definitions: ``docs/reports.md``.

Left out, ``as_of`` and ``until`` are the platform clock's now (and the breakage period
starts 365 days before ``until``); rates are decimal strings, money is integer fen.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime

from quanyu.entrypoints.api.deps import PlatformDep
from quanyu.services import reports

router = APIRouter(prefix="/reports", tags=["reports"])

CodeQ = Annotated[str | None, Query(min_length=1, max_length=64)]
Moment = Annotated[AwareDatetime | None, Query()]
Until = Annotated[AwareDatetime | None, Query(description="exclusive; default: now")]
Format = Annotated[Literal["json", "csv"], Query(description="csv answers text/csv")]


def _answer(
    fmt: str,
    report: dict[str, Any],
    rows: list[dict[str, Any]],
    columns: tuple[str, ...],
    name: str,
) -> dict[str, Any] | Response:
    if fmt == "csv":
        return Response(
            reports.to_csv(rows, columns),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    answer: dict[str, Any] = reports.as_json(report)
    return answer


@router.get("/coupons", response_model=None)
def coupon_report(
    p: PlatformDep,
    *,
    template: CodeQ = None,
    program: CodeQ = None,
    since: Moment = None,
    until: Annotated[AwareDatetime | None, Query(description="exclusive")] = None,
    format: Format = "json",
) -> dict[str, Any] | Response:
    report = reports.coupon_report(
        p, as_of=p.clock.now(), since=since, until=until, template=template, program=program
    )
    return _answer(format, report, report["rows"], reports.COUPON_COLUMNS, "coupons")


@router.get("/points-liability", response_model=None)
def points_liability(
    p: PlatformDep, program: CodeQ = None, as_of: Moment = None, format: Format = "json"
) -> dict[str, Any] | Response:
    report = reports.points_liability(p, as_of=as_of or p.clock.now(), program=program)
    return _answer(format, report, [report], reports.LIABILITY_COLUMNS, "points-liability")


@router.get("/points-breakage", response_model=None)
def points_breakage(
    p: PlatformDep,
    *,
    program: CodeQ = None,
    since: Annotated[
        AwareDatetime | None,
        Query(description=f"default: {reports.DEFAULT_BREAKAGE_DAYS} days before until"),
    ] = None,
    until: Until = None,
    earned_since: Annotated[
        AwareDatetime | None, Query(description="earn window; default: since")
    ] = None,
    earned_until: Annotated[
        AwareDatetime | None, Query(description="earn window, exclusive; default: until")
    ] = None,
    format: Format = "json",
) -> dict[str, Any] | Response:
    report = reports.points_breakage(
        p,
        since=since,
        until=until or p.clock.now(),
        program=program,
        earned_since=earned_since,
        earned_until=earned_until,
    )
    return _answer(format, report, [report], reports.BREAKAGE_COLUMNS, "points-breakage")
