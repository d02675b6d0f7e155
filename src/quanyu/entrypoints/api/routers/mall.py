"""Points-mall: routes over `quanyu.services.mall`."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["points-mall"])
