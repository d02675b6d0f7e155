"""Points: balance, lots, entries, manual adjustment and redemption."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from quanyu.entrypoints.api.deps import ActorDep, BeforeId, MemberId, PlatformDep
from quanyu.entrypoints.api.schemas import AdjustIn, Balance, RedeemIn
from quanyu.services import points

router = APIRouter(prefix="/members/{member_id}/points", tags=["points"])
ProgramQ = Query(None, max_length=64)


@router.get("", response_model=Balance)
def balance(member_id: MemberId, p: PlatformDep, program: str | None = ProgramQ) -> dict[str, Any]:
    return points.balance(p, member_id, program)


@router.get("/lots")
def lots(
    member_id: MemberId, p: PlatformDep, program: str | None = ProgramQ, include_spent: bool = False
) -> list[dict[str, Any]]:
    return points.lots(p, member_id, program, include_spent=include_spent)


@router.get("/entries")
def entries(
    member_id: MemberId,
    p: PlatformDep,
    program: str | None = ProgramQ,
    limit: int = Query(100, ge=1, le=1000),
    before_id: BeforeId = None,
) -> list[dict[str, Any]]:
    return points.entries(p, member_id, program, limit=limit, before_id=before_id)


@router.post("/adjustments", status_code=201)
def adjust(member_id: MemberId, body: AdjustIn, p: PlatformDep, actor: ActorDep) -> dict[str, Any]:
    return points.adjust(
        p, member_id, points=body.points, reason=body.reason, actor=actor, program=body.program
    )


@router.post("/redemptions", status_code=201)
def redeem(member_id: MemberId, body: RedeemIn, p: PlatformDep, actor: ActorDep) -> dict[str, Any]:
    return points.spend(
        p, member_id, points=body.points, reason=body.reason, actor=actor, program=body.program
    )
