"""Tiers: current tier, history and projection."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from quanyu.entrypoints.api.deps import ActorDep, MemberId, PlatformDep
from quanyu.services import tiers

router = APIRouter(prefix="/members/{member_id}/tier", tags=["tiers"])
ProgramQ = Query(None, max_length=64)


@router.get("")
def current(member_id: MemberId, p: PlatformDep, program: str | None = ProgramQ) -> dict[str, Any]:
    return tiers.current(p, member_id, program)


@router.get("/history")
def history(
    member_id: MemberId, p: PlatformDep, program: str | None = ProgramQ
) -> list[dict[str, Any]]:
    return tiers.history(p, member_id, program)


@router.get("/projection")
def projection(
    member_id: MemberId, p: PlatformDep, program: str | None = ProgramQ, by: date | None = None
) -> dict[str, Any]:
    """How much more is needed by ``by`` (default: the next review) to reach or keep each tier."""
    return tiers.projection(p, member_id, program, by=by)


class TierChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tier: Annotated[str, Field(min_length=1, max_length=64)]
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    program: Annotated[str | None, Field(max_length=64)] = None


@router.post("", status_code=201)
def change(
    member_id: MemberId, body: TierChangeIn, p: PlatformDep, actor: ActorDep
) -> dict[str, Any]:
    """A manual tier change with a reason; audited."""
    return tiers.change(
        p, member_id, tier=body.tier, reason=body.reason, actor=actor, program=body.program
    )
