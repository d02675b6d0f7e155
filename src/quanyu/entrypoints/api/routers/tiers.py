"""Tiers: current tier, history and projection."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Query

from quanyu.entrypoints.api.deps import MemberId, PlatformDep
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
