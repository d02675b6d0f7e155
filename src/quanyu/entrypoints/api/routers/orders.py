"""Orders and refunds from any channel, single and batch; idempotent on the channel's id."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastapi import APIRouter, Response
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from quanyu.domain.access import Principal
from quanyu.domain.errors import QuanyuError, ValidationFailed
from quanyu.entrypoints.api.auth import PrincipalDep
from quanyu.entrypoints.api.deps import ActorDep, PlatformDep
from quanyu.entrypoints.api.errors import field_path, problem_body
from quanyu.entrypoints.api.schemas import (
    BatchIn,
    BatchItemOut,
    BatchOut,
    OrderIn,
    OrderResult,
    RefundIn,
    RefundResult,
)
from quanyu.services import access, orders

router = APIRouter(tags=["orders"])
M = TypeVar("M", bound=BaseModel)


# The single-item routes are the hot path for POS and e-commerce connectors: they are
# ``async def`` and hand the whole command to the thread pool once.


@router.post("/orders", status_code=201, response_model=OrderResult)
async def post_order(
    body: OrderIn, p: PlatformDep, actor: ActorDep, who: PrincipalDep, response: Response
) -> dict[str, Any]:
    access.check_channel_scope(who, channel=body.channel, store=body.store)
    result = await run_in_threadpool(orders.ingest_order, p, body.to_domain(), actor=actor)
    if result["replayed"]:
        response.status_code = 200
    return result


@router.post("/refunds", status_code=201, response_model=RefundResult)
async def post_refund(
    body: RefundIn, p: PlatformDep, actor: ActorDep, who: PrincipalDep, response: Response
) -> dict[str, Any]:
    # A refund names its channel, not its store: a store-scoped key may refund any order
    # of its channels that it can name.
    access.check_channel_scope(who, channel=body.channel, store=None, check_store=False)
    result = await run_in_threadpool(orders.ingest_refund, p, body.to_domain(), actor=actor)
    if result["replayed"]:
        response.status_code = 200
    return result


def _parse(
    model: type[M], items: Sequence[dict[str, Any]], who: Principal
) -> list[M | QuanyuError]:
    out: list[M | QuanyuError] = []
    for item in items:
        try:
            parsed = model.model_validate(item)
            store = getattr(parsed, "store", None)
            access.check_channel_scope(
                who,
                channel=getattr(parsed, "channel", ""),
                store=store,
                check_store=isinstance(parsed, OrderIn),
            )
            out.append(parsed)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = field_path(first["loc"])
            out.append(ValidationFailed(f"{field}: {first['msg']}", field=field))
        except QuanyuError as exc:
            out.append(exc)
    return out


def _batch(
    parsed: list[Any], ingest: Callable[[list[Any]], list[dict[str, Any] | QuanyuError]]
) -> BatchOut:
    good = [(i, x) for i, x in enumerate(parsed) if not isinstance(x, QuanyuError)]
    results = ingest([x for _, x in good])
    merged: list[dict[str, Any] | QuanyuError] = list(parsed)
    for (i, _), res in zip(good, results, strict=True):
        merged[i] = res
    items = [
        BatchItemOut(index=i, ok=False, problem=problem_body(r))
        if isinstance(r, QuanyuError)
        else BatchItemOut(index=i, ok=True, result=r)
        for i, r in enumerate(merged)
    ]
    ok = sum(1 for x in items if x.ok)
    return BatchOut(accepted=ok, rejected=len(items) - ok, items=items)


@router.post("/orders/batch", response_model=BatchOut)
def post_orders(body: BatchIn, p: PlatformDep, actor: ActorDep, who: PrincipalDep) -> BatchOut:
    """Up to 5,000 orders in one transaction; each item is accepted or rejected on its own."""
    return _batch(
        _parse(OrderIn, body.items, who),
        lambda good: orders.ingest_orders(p, [x.to_domain() for x in good], actor=actor),
    )


@router.post("/refunds/batch", response_model=BatchOut)
def post_refunds(body: BatchIn, p: PlatformDep, actor: ActorDep, who: PrincipalDep) -> BatchOut:
    return _batch(
        _parse(RefundIn, body.items, who),
        lambda good: orders.ingest_refunds(p, [x.to_domain() for x in good], actor=actor),
    )
