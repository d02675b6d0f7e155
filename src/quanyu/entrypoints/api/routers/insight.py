"""Insight: KPIs, tags, segments, audiences, attribution, recruitment costs and consents.

Metric definitions are in ``docs/metrics.md``; the condition language of tags and
segments in :mod:`quanyu.domain.segments`. KPI periods are wall-clock dates of the
program's time zone, half-open ``[since, until)``.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import AwareDatetime, BaseModel, Field

from quanyu.analytics import kpis
from quanyu.entrypoints.api.auth import PrincipalDep
from quanyu.entrypoints.api.deps import ActorDep, MemberId, PlatformDep
from quanyu.services import access, attribution, insight, reports

router = APIRouter(tags=["insight"])

Format = Annotated[Literal["json", "csv"], Query(description="csv answers text/csv")]
Metric = Literal[
    "sales",
    "active_members",
    "new_members",
    "new_member_conversion",
    "repurchase",
    "retention",
    "lifecycle",
    "acquisition_cost",
    "points_liability",
    "guide_sales",
]
Dim = Literal["brand", "channel", "store", "region", "guide", "tier"]
CodePath = Annotated[str, Path(min_length=1, max_length=64)]
Codes = Annotated[list[str] | None, Query(max_length=200)]


def _csv(rows: list[dict[str, Any]], name: str) -> Response:
    return Response(
        reports.to_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@router.get("/kpis/{metric}", response_model=None)
def kpi(
    p: PlatformDep,
    who: PrincipalDep,
    metric: Metric,
    *,
    since: date,
    until: Annotated[date, Query(description="exclusive")],
    grain: Literal["day", "week", "month", "quarter", "year"] | None = None,
    by: Annotated[list[Dim] | None, Query(description="breakdown dimensions")] = None,
    brand: Codes = None,
    channel: Codes = None,
    store: Codes = None,
    region: Codes = None,
    guide: Codes = None,
    tier: Codes = None,
    window_days: Annotated[int, Query(ge=1, le=3660)] = 30,
    cohort: Literal["join_month", "first_purchase_month"] = "join_month",
    format: Format = "json",
) -> dict[str, Any] | Response:
    filters = {
        name: codes
        for name, codes in (
            ("brand", brand),
            ("channel", channel),
            ("store", store),
            ("region", region),
            ("guide", guide),
            ("tier", tier),
        )
        if codes
    }
    # A store or region manager gets their stores' figures, a guide their members'.
    filters = access.scoped_filters(p, who, filters)
    query = insight.kpi_query(
        since=since,
        until=until,
        grain=grain,
        by=by or (),
        filters=filters,
        window_days=window_days,
    )
    rows = insight.kpi(p, metric, query, cohort=kpis.Cohort(cohort))
    if format == "csv":
        return _csv(rows, metric)
    return {"metric": metric, "since": since.isoformat(), "until": until.isoformat(), "rows": rows}


@router.post("/analytics/refresh")
def refresh(p: PlatformDep, full: bool = False) -> dict[str, Any]:
    """Copy what changed in the operational store into the analytics store now."""
    report = insight.analytics(p).refresh(full=full)
    return {
        "full": report.full,
        "rows": report.rows,
        "merges": report.merges,
        "seconds": round(report.seconds, 3),
    }


# ---------------------------------------------------------------- tags


class TagIn(BaseModel):
    code: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["rule", "realtime", "model"]
    document: dict[str, Any]


@router.post("/tags", status_code=201)
def define_tag(p: PlatformDep, body: TagIn, actor: ActorDep) -> dict[str, Any]:
    return insight.define_tag(
        p, code=body.code, name=body.name, kind=body.kind, document=body.document, actor=actor
    )


@router.get("/tags")
def list_tags(p: PlatformDep) -> list[dict[str, Any]]:
    return insight.list_tags(p)


class TagRunIn(BaseModel):
    tags: list[str] = Field(default_factory=list, description="empty: every rule and model tag")


@router.post("/tags/run")
def run_tags(p: PlatformDep, body: TagRunIn, actor: ActorDep) -> list[dict[str, Any]]:
    return insight.run_tags(p, codes=body.tags or None, actor=actor)


@router.get("/tags/{code}")
def tag(p: PlatformDep, code: CodePath) -> dict[str, Any]:
    return insight.tag_distribution(p, code)


@router.get("/members/{member_id}/tags")
def member_tags(p: PlatformDep, member_id: MemberId) -> list[dict[str, Any]]:
    return insight.member_tags(p, insight.resolved(p, member_id))


# ---------------------------------------------------------------- segments


class ConditionIn(BaseModel):
    condition: dict[str, Any]


class OverlapIn(BaseModel):
    first: dict[str, Any]
    second: dict[str, Any]


class SegmentIn(BaseModel):
    code: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    condition: dict[str, Any]


@router.post("/segments/count")
def count(p: PlatformDep, body: ConditionIn) -> dict[str, Any]:
    """The live count of a condition while it is being edited."""
    return insight.count(p, body.condition)


@router.post("/segments/overlap")
def overlap(p: PlatformDep, body: OverlapIn) -> dict[str, Any]:
    return insight.overlap(p, body.first, body.second)


@router.post("/segments", status_code=201)
def define_segment(p: PlatformDep, body: SegmentIn, actor: ActorDep) -> dict[str, Any]:
    return insight.define_segment(
        p, code=body.code, name=body.name, condition=body.condition, actor=actor
    )


@router.get("/segments")
def list_segments(p: PlatformDep) -> list[dict[str, Any]]:
    return insight.list_segments(p)


@router.get("/segments/{code}")
def segment(p: PlatformDep, code: CodePath) -> dict[str, Any]:
    return insight.segment(p, code)


@router.post("/segments/{code}/snapshot")
def snapshot(p: PlatformDep, code: CodePath, actor: ActorDep) -> dict[str, Any]:
    return insight.snapshot(p, code, actor=actor)


@router.get("/segments/{code}/events")
def segment_events(
    p: PlatformDep, code: CodePath, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    return insight.segment_events(p, code, limit=limit)


@router.get("/segments/{code}/export", response_model=None)
def export(
    p: PlatformDep,
    code: CodePath,
    actor: ActorDep,
    format: Literal["csv", "parquet"] = "csv",
) -> Response:
    payload, _ = insight.export_audience(p, code=code, actor=actor, fmt=format)
    media = "text/csv; charset=utf-8" if format == "csv" else "application/vnd.apache.parquet"
    return Response(
        payload,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{code}.{format}"'},
    )


class SegmentCouponsIn(BaseModel):
    template: str = Field(min_length=1, max_length=64)
    request_key: str = Field(min_length=1, max_length=128)
    reason: str = Field(default="segment issue", min_length=1, max_length=200)


@router.post("/segments/{code}/coupons")
def issue_to_segment(
    p: PlatformDep, code: CodePath, body: SegmentCouponsIn, actor: ActorDep
) -> dict[str, Any]:
    """Issue a coupon to the segment's members now, in one batch keyed by
    ``request_key`` (a replay returns the first batch)."""
    from quanyu.services import coupons  # noqa: PLC0415

    ids = tuple(insight.segment_member_ids(p, code))
    return coupons.issue_batch(
        p,
        coupons.BatchRequest(
            template=body.template,
            request_key=body.request_key,
            member_ids=ids,
            codes=0,
            reason=body.reason,
        ),
        actor=actor,
    )


@router.get("/audiences/near-store")
def near_store(
    p: PlatformDep,
    store: Annotated[str, Query(min_length=1, max_length=64)],
    radius_km: Annotated[float, Query(gt=0, le=20_000)],
) -> dict[str, Any]:
    return insight.audience_near(p, store=store, radius_km=radius_km)


# ---------------------------------------------------------------- attribution


class CampaignIn(BaseModel):
    code: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["event", "popup", "campaign"] = "event"
    store: str | None = Field(default=None, max_length=64)
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    window_days: int = Field(default=14, ge=1, le=90)
    cost: int = Field(default=0, ge=0)


class CampaignMember(BaseModel):
    member_id: int = Field(ge=1, le=2**63 - 1)
    at: AwareDatetime | None = None


class CampaignMembersIn(BaseModel):
    role: Literal["interaction", "control"] = "interaction"
    members: list[CampaignMember] = Field(min_length=1, max_length=100_000)


@router.post("/campaigns", status_code=201)
def create_campaign(p: PlatformDep, body: CampaignIn, actor: ActorDep) -> dict[str, Any]:
    return attribution.create_campaign(p, actor=actor, **body.model_dump())


@router.post("/campaigns/{code}/members")
def add_campaign_members(
    p: PlatformDep, code: CodePath, body: CampaignMembersIn, actor: ActorDep
) -> dict[str, Any]:
    n = attribution.add_members(
        p, code, [(m.member_id, m.at) for m in body.members], role=body.role, actor=actor
    )
    return {"campaign": code, "role": body.role, "added": n}


@router.get("/campaigns/{code}/attribution")
def campaign_attribution(
    p: PlatformDep, code: CodePath, window_days: Annotated[int | None, Query(ge=1, le=90)] = None
) -> dict[str, Any]:
    return attribution.report(p, code, window_days=window_days)


# ---------------------------------------------------------------- costs and consents


class CostIn(BaseModel):
    channel: str = Field(min_length=1, max_length=64)
    month: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    amount: int = Field(ge=0)


class CostsIn(BaseModel):
    costs: list[CostIn] = Field(min_length=1, max_length=10_000)


@router.put("/acquisition-costs")
def load_costs(p: PlatformDep, body: CostsIn, actor: ActorDep) -> dict[str, Any]:
    n = insight.load_costs(p, [c.model_dump() for c in body.costs], actor=actor)
    return {"loaded": n}


class ConsentsIn(BaseModel):
    consents: dict[str, bool] = Field(min_length=1, max_length=20)
    source: str = Field(default="api", min_length=1, max_length=64)


@router.put("/members/{member_id}/consents")
def record_consents(
    p: PlatformDep, member_id: MemberId, body: ConsentsIn, actor: ActorDep
) -> list[dict[str, Any]]:
    return insight.record_consents(p, member_id, body.consents, source=body.source, actor=actor)


@router.get("/members/{member_id}/consents")
def consents(p: PlatformDep, member_id: MemberId) -> list[dict[str, Any]]:
    return insight.member_consents(p, insight.resolved(p, member_id))
