"""Brand set-up: programs, tiers, earn rules, brands, channels, stores, guides, products."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from quanyu.entrypoints.api.deps import ActorDep, PlatformDep
from quanyu.entrypoints.api.schemas import (
    BrandIn,
    ChannelIn,
    EarnRuleIn,
    GuideIn,
    ProductIn,
    ProgramIn,
    ProgramPatch,
    StoreIn,
    StorePatch,
    TierIn,
)
from quanyu.services import setup

router = APIRouter(prefix="/setup", tags=["brand set-up"])


@router.get("/programs")
def list_programs(p: PlatformDep) -> list[dict[str, Any]]:
    return setup.list_programs(p)


@router.post("/programs", status_code=201)
def create_program(body: ProgramIn, p: PlatformDep) -> dict[str, Any]:
    return setup.create_program(p, body.model_dump())


@router.patch("/programs/{code}")
def update_program(code: str, body: ProgramPatch, p: PlatformDep) -> dict[str, Any]:
    return setup.update_program(p, code, body.model_dump(exclude_none=True))


@router.get("/programs/{code}/tiers")
def list_tiers(code: str, p: PlatformDep) -> list[dict[str, Any]]:
    return setup.list_tiers(p, code)


@router.put("/programs/{code}/tiers")
def set_tiers(code: str, body: list[TierIn], p: PlatformDep) -> list[dict[str, Any]]:
    return setup.set_tiers(p, code, [x.model_dump() for x in body])


@router.get("/programs/{code}/earn-rules")
def list_earn_rules(code: str, p: PlatformDep) -> list[dict[str, Any]]:
    return setup.earn_rules(p, code)


@router.post("/programs/{code}/earn-rules", status_code=201)
def add_earn_rule(code: str, body: EarnRuleIn, p: PlatformDep, actor: ActorDep) -> dict[str, Any]:
    return setup.add_earn_rule(
        p, code, effective_from=body.effective_from, document=body.document, actor=actor
    )


@router.get("/brands")
def list_brands(p: PlatformDep) -> list[dict[str, Any]]:
    return setup.list_brands(p)


@router.post("/brands", status_code=201)
def create_brand(body: BrandIn, p: PlatformDep) -> dict[str, Any]:
    return setup.create_brand(p, code=body.code, name=body.name, program=body.program)


@router.get("/channels")
def list_channels(p: PlatformDep) -> list[dict[str, Any]]:
    return setup.list_channels(p)


@router.post("/channels", status_code=201)
def create_channel(body: ChannelIn, p: PlatformDep) -> dict[str, Any]:
    return setup.create_channel(p, code=body.code, name=body.name, kind=body.kind)


@router.get("/stores")
def list_stores(p: PlatformDep) -> list[dict[str, Any]]:
    return setup.list_stores(p)


@router.post("/stores", status_code=201)
def create_store(body: StoreIn, p: PlatformDep) -> dict[str, Any]:
    return setup.create_store(p, body.model_dump())


@router.patch("/stores/{code}")
def update_store(code: str, body: StorePatch, p: PlatformDep) -> dict[str, Any]:
    return setup.update_store(p, code, body.model_dump(exclude_none=True))


@router.get("/guides")
def list_guides(p: PlatformDep) -> list[dict[str, Any]]:
    return setup.list_guides(p)


@router.post("/guides", status_code=201)
def create_guide(body: GuideIn, p: PlatformDep) -> dict[str, Any]:
    return setup.create_guide(p, code=body.code, name=body.name, store=body.store)


@router.get("/products")
def list_products(
    p: PlatformDep, limit: int = Query(500, ge=1, le=5000), offset: int = Query(0, ge=0, le=10**9)
) -> list[dict[str, Any]]:
    return setup.list_products(p, limit=limit, offset=offset)


@router.put("/products")
def upsert_products(body: list[ProductIn], p: PlatformDep) -> dict[str, int]:
    return {"upserted": setup.upsert_products(p, [x.model_dump() for x in body])}
