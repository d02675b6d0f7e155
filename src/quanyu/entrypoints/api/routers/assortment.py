"""Assortment: routes over `quanyu.services.assortment`."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["assortment"])
