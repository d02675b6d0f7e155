"""Benefits: define them, and read what a member is entitled to."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from quanyu.entrypoints.api.deps import MemberId, PlatformDep
from quanyu.entrypoints.api.schemas import Code, Strict, Text
from quanyu.services import benefits

router = APIRouter(tags=["benefits"])


class BenefitIn(Strict):
    code: Code
    name: Text
    program: Code | None = None
    kind: Literal["welcome", "birthday", "member_day", "free_shipping", "priority_purchase"]
    tier_codes: Annotated[list[Code], Field(max_length=50, description="empty: every tier")] = (
        Field(default_factory=list)
    )
    coupon_template: Code | None = None
    points: Annotated[int, Field(ge=0, le=10**9)] = 0
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description='member_day: {"days": [8]}; priority_purchase: '
        '{"skus": [...], "opens_at": ISO, "public_at": ISO}',
    )


@router.post("/benefits", status_code=201)
def create_benefit(body: BenefitIn, p: PlatformDep) -> dict[str, Any]:
    return benefits.create_benefit(p, body.model_dump())


@router.get("/benefits")
def list_benefits(p: PlatformDep) -> list[dict[str, Any]]:
    return benefits.list_benefits(p)


@router.get("/members/{member_id}/benefits")
def member_benefits(
    member_id: MemberId,
    p: PlatformDep,
    sku: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> dict[str, Any]:
    return benefits.entitlements(p, member_id, sku=sku)
