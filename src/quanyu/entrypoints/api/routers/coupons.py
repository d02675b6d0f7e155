"""Coupons: routes over `quanyu.services.coupons`."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["coupons"])
