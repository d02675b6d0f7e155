"""Coupons: templates, batches and codes, a member's coupons, and redemption (核销):
validate a basket, reserve at checkout, confirm with the order, release on cancel."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import AwareDatetime, Field, model_validator
from starlette.concurrency import run_in_threadpool

from quanyu.domain.access import Principal
from quanyu.entrypoints.api.auth import PrincipalDep
from quanyu.entrypoints.api.deps import ActorDep, EntityId, MemberId, PlatformDep
from quanyu.entrypoints.api.schemas import Code, Minor, Strict, Text
from quanyu.services import access, coupons, members
from quanyu.services.uow import Platform

router = APIRouter(tags=["coupons"])

ScopeList = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=10_000)
]


class ScopeLists(Strict):
    channels: ScopeList = Field(default_factory=list)
    stores: ScopeList = Field(default_factory=list)
    brands: ScopeList = Field(default_factory=list)
    skus: ScopeList = Field(default_factory=list)
    categories: ScopeList = Field(default_factory=list)


class ScopeIn(Strict):
    include: ScopeLists = ScopeLists()
    exclude: ScopeLists = ScopeLists()


class TemplateIn(Strict):
    code: Code
    name: Text
    program: Code | None = None
    kind: Literal["amount_off", "percent_off", "threshold", "gift", "shipping"]
    value: Annotated[int, Field(ge=0, le=10**12, description="fen off, or percent")] = 0
    max_discount: Minor | None = None
    min_spend: Minor = 0
    gift_sku: Annotated[str | None, Field(min_length=1, max_length=64)] = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    valid_days: Annotated[int | None, Field(ge=1, le=3660)] = None
    scope: ScopeIn = ScopeIn()
    stack_group: Code | None = Field(None, description="None: exclusive")
    per_member_limit: Annotated[int | None, Field(ge=1, le=10**6)] = None
    total_limit: Annotated[int | None, Field(ge=1, le=10**9)] = None
    max_issued: Annotated[int | None, Field(ge=1, le=10**9)] = None
    max_discount_total: Minor | None = None


class BatchIn(Strict):
    request_key: Annotated[str, Field(min_length=1, max_length=128)]
    members: Annotated[
        list[Annotated[int, Field(ge=1, le=2**63 - 1)]], Field(max_length=200_000)
    ] = Field(default_factory=list)
    codes: Annotated[int, Field(ge=0, le=200_000, description="unclaimed codes to generate")] = 0
    reason: Text = "batch issue"

    @model_validator(mode="after")
    def _one_kind(self) -> BatchIn:
        if bool(self.members) == bool(self.codes):
            raise ValueError("give members or a number of codes, not both")
        return self


class LineIn(Strict):
    line_no: Annotated[int | None, Field(ge=1, le=10**6)] = None
    sku: Annotated[str, Field(min_length=1, max_length=64)]
    quantity: Annotated[int, Field(ge=1, le=10**6)]
    amount: Minor = Field(description="what the whole line costs before coupons")
    category: Annotated[str | None, Field(max_length=64)] = None


class MemberIn(Strict):
    """The member by id, or by an identity a clerk scanned (member card, phone, ...)."""

    member_id: Annotated[int | None, Field(ge=1, le=2**63 - 1)] = None
    type: Annotated[str | None, Field(min_length=1, max_length=32)] = None
    value: Annotated[str | None, Field(min_length=1, max_length=255)] = None
    namespace: Annotated[str | None, Field(max_length=128)] = None

    @model_validator(mode="after")
    def _one_way(self) -> MemberIn:
        if (self.member_id is None) == (self.type is None or self.value is None):
            raise ValueError("give member_id, or type and value of an identity")
        return self


class BasketIn(Strict):
    channel: Code
    store: Code | None = None
    member: MemberIn | None = None
    lines: Annotated[list[LineIn], Field(min_length=1, max_length=500)]
    shipping_fee: Minor = 0
    codes: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=40)]], Field(max_length=20)
    ] = Field(default_factory=list)

    def to_request(self, order_id: str | None = None) -> coupons.CheckoutRequest:
        m = self.member
        return coupons.CheckoutRequest(
            channel=self.channel,
            store=self.store,
            member=coupons.MemberRef(
                member_id=m.member_id,
                identity_type=m.type,
                identity_value=m.value,
                identity_namespace=m.namespace,
            )
            if m
            else coupons.MemberRef(),
            lines=tuple(
                coupons.LineIn(
                    line_no=line.line_no or n + 1,
                    sku=line.sku,
                    quantity=line.quantity,
                    amount=line.amount,
                    category=line.category,
                )
                for n, line in enumerate(self.lines)
            ),
            shipping_fee=self.shipping_fee,
            codes=tuple(self.codes),
            order_id=order_id,
        )


class ReservationIn(BasketIn):
    order_id: Annotated[str, Field(min_length=1, max_length=128)]
    confirm: bool = Field(False, description="redeem at once (a POS), without a separate confirm")


class ReasonIn(Strict):
    reason: Text


ChannelPath = Annotated[str, Path(min_length=1, max_length=64)]
OrderPath = Annotated[str, Path(min_length=1, max_length=128)]


@router.post("/coupon-templates", status_code=201)
def create_template(body: TemplateIn, p: PlatformDep, actor: ActorDep) -> dict[str, Any]:
    return coupons.create_template(p, body.model_dump(), actor=actor)


@router.get("/coupon-templates")
def list_templates(p: PlatformDep) -> list[dict[str, Any]]:
    return coupons.list_templates(p)


@router.get("/coupon-templates/{code}")
def get_template(code: str, p: PlatformDep) -> dict[str, Any]:
    return coupons.get_template(p, code)


@router.post("/coupon-templates/{code}/pause")
def pause_template(code: str, p: PlatformDep) -> dict[str, Any]:
    return coupons.set_template_status(p, code, active=False)


@router.post("/coupon-templates/{code}/resume")
def resume_template(code: str, p: PlatformDep) -> dict[str, Any]:
    return coupons.set_template_status(p, code, active=True)


@router.post("/coupon-templates/{code}/batches", status_code=201)
def issue_batch(
    code: str, body: BatchIn, p: PlatformDep, actor: ActorDep, response: Response
) -> dict[str, Any]:
    result = coupons.issue_batch(
        p,
        coupons.BatchRequest(
            template=code,
            request_key=body.request_key,
            member_ids=tuple(body.members),
            codes=body.codes,
            reason=body.reason,
        ),
        actor=actor,
    )
    if result["replayed"]:
        response.status_code = 200
    return result


@router.get("/coupon-batches/{batch_id}/codes.csv", response_class=Response)
def export_codes(batch_id: EntityId, p: PlatformDep) -> Response:
    return Response(
        coupons.export_codes(p, batch_id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="coupons-{batch_id}.csv"'},
    )


@router.get("/members/{member_id}/coupons")
def member_coupons(
    member_id: MemberId,
    p: PlatformDep,
    status: Literal["available", "reserved", "redeemed", "voided", "expired"] | None = Query(None),
) -> list[dict[str, Any]]:
    return coupons.member_coupons(p, member_id, status=status)


def _check_basket_member(p: Platform, who: Principal, body: BasketIn) -> None:
    """Staff who see part of the members check out only members they see."""
    m = body.member
    if m is None or who.scope.everything:
        return
    if m.member_id is not None:
        access.check_member(p, who, m.member_id)
    else:
        assert m.type is not None and m.value is not None
        members.lookup(p, m.type, m.value, m.namespace, principal=who)


def _check_reservation_member(p: Platform, who: Principal, channel: str, order_id: str) -> None:
    if not who.scope.everything:
        found = coupons.order_redemptions(p, channel, order_id)
        access.check_member_of(p, who, found.get("member_id"))


@router.post("/coupons/validate")
async def validate(body: BasketIn, p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    access.check_channel_scope(who, channel=body.channel, store=body.store)
    await run_in_threadpool(_check_basket_member, p, who, body)
    return await run_in_threadpool(coupons.validate, p, body.to_request())


@router.post("/coupons/reservations", status_code=201)
async def reserve(
    body: ReservationIn, p: PlatformDep, actor: ActorDep, who: PrincipalDep, response: Response
) -> dict[str, Any]:
    access.check_channel_scope(who, channel=body.channel, store=body.store)
    await run_in_threadpool(_check_basket_member, p, who, body)
    result = await run_in_threadpool(
        coupons.reserve, p, body.to_request(body.order_id), actor=actor, confirm=body.confirm
    )
    if result["replayed"]:
        response.status_code = 200
    return result


@router.get("/coupons/reservations/{channel}/{order_id}")
def reservation(
    channel: ChannelPath, order_id: OrderPath, p: PlatformDep, who: PrincipalDep
) -> dict[str, Any]:
    found = coupons.order_redemptions(p, channel, order_id)
    access.check_member_of(p, who, found.get("member_id"))
    return found


@router.post("/coupons/reservations/{channel}/{order_id}/confirm")
async def confirm(
    channel: ChannelPath, order_id: OrderPath, p: PlatformDep, actor: ActorDep, who: PrincipalDep
) -> dict[str, Any]:
    access.check_channel_scope(who, channel=channel, store=None, check_store=False)
    await run_in_threadpool(_check_reservation_member, p, who, channel, order_id)
    return await run_in_threadpool(coupons.confirm, p, channel, order_id, actor=actor)


@router.post("/coupons/reservations/{channel}/{order_id}/release")
def release(  # noqa: PLR0917 - FastAPI parameters
    channel: ChannelPath,
    order_id: OrderPath,
    body: ReasonIn,
    p: PlatformDep,
    actor: ActorDep,
    who: PrincipalDep,
) -> dict[str, Any]:
    access.check_channel_scope(who, channel=channel, store=None, check_store=False)
    _check_reservation_member(p, who, channel, order_id)
    return coupons.release(p, channel, order_id, reason=body.reason, actor=actor)


@router.get("/coupons/{code}")
def coupon(
    code: Annotated[str, Path(min_length=1, max_length=40)], p: PlatformDep, who: PrincipalDep
) -> dict[str, Any]:
    found = coupons.coupon_detail(p, code)
    access.check_member_of(p, who, found.get("member_id"))
    return found


@router.post("/coupons/{code}/void")
def void(
    code: Annotated[str, Path(min_length=1, max_length=40)],
    body: ReasonIn,
    p: PlatformDep,
    actor: ActorDep,
) -> dict[str, Any]:
    return coupons.void(p, code, reason=body.reason, actor=actor)
