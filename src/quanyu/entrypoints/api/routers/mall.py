"""Points-mall: routes over `quanyu.services.mall`: the reward catalogue, redemption
windows, and members' redemptions with their fulfilment.

The request and response schemas live here, next to the only routes that use them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import AwareDatetime, BaseModel, Field

from quanyu.domain.mall import MAX_QUANTITY, RedemptionStatus, RewardKind, RewardStatus
from quanyu.entrypoints.api.deps import ActorDep, BeforeId, EntityId, MemberId, PlatformDep
from quanyu.entrypoints.api.schemas import Code, Minor, Strict, Text
from quanyu.services import mall

router = APIRouter(tags=["points-mall"])
ProgramQ = Query(None, max_length=64)
RewardCode = Annotated[str, Path(min_length=1, max_length=64)]
Points = Annotated[int, Field(ge=1, le=10**12)]
Stock = Annotated[int | None, Field(ge=0, le=10**9, description="None: unlimited")]
PerMember = Annotated[int | None, Field(ge=1, le=10**6, description="None: no limit")]


# ---------------------------------------------------------------- schemas


class RewardIn(Strict):
    code: Code
    name: Text
    kind: RewardKind
    points_price: Points
    cash_price: Minor = 0
    program: Code | None = None
    coupon_template: Code | None = Field(None, description="a coupon reward's template code")
    stock: Stock = None
    per_member_limit: PerMember = None
    min_tier_code: Code | None = Field(None, description="the lowest tier that may redeem")
    status: RewardStatus = RewardStatus.ACTIVE


class RewardPatch(Strict):
    """Only the fields sent change; null clears stock, the limit or the minimum tier."""

    name: Text | None = None
    points_price: Points | None = None
    cash_price: Minor | None = None
    coupon_template: Code | None = None
    stock: Stock = None
    per_member_limit: PerMember = None
    min_tier_code: Code | None = None
    status: RewardStatus | None = None


class RewardPublic(BaseModel):
    id: int
    code: str
    program: str
    name: str
    kind: RewardKind
    points_price: int
    cash_price: int
    coupon_template: str | None
    stock: int | None
    per_member_limit: int | None
    min_tier_code: str | None
    status: RewardStatus
    created_at: datetime


class WindowIn(Strict):
    name: Text
    starts_at: AwareDatetime
    ends_at: AwareDatetime = Field(description="exclusive")
    program: Code | None = None


class WindowPublic(BaseModel):
    id: int
    program: str
    name: str
    starts_at: datetime
    ends_at: datetime


class RedemptionIn(Strict):
    reward: Code
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY)] = 1
    request_key: Annotated[
        str,
        Field(
            min_length=1,
            max_length=128,
            description="the caller's id for this redemption: a retry with it answers the "
            "first result",
        ),
    ]


class FailIn(Strict):
    reason: Annotated[str, Field(min_length=1, max_length=400)]


class ConsumedLot(BaseModel):
    lot_id: int
    points: int
    expires_at: datetime | None


class IssuedCoupon(BaseModel):
    coupon_id: int
    code: str


class RedemptionPublic(BaseModel):
    redemption_id: int
    request_key: str
    member_id: int
    program: str
    reward: str
    reward_name: str
    kind: RewardKind
    quantity: int
    points: int
    cash: int
    status: RedemptionStatus
    spend_entry_id: int | None
    reversal_entry_id: int | None
    consumed: list[ConsumedLot]
    coupons: list[IssuedCoupon]
    created_at: datetime
    closed_at: datetime | None


class RedemptionResult(RedemptionPublic):
    replayed: bool


class RestoredLot(BaseModel):
    entry_id: int
    lot_id: int
    points: int
    expires_at: datetime | None


class ReversalResult(RedemptionPublic):
    restored: list[RestoredLot]


# ---------------------------------------------------------------- the catalogue


@router.post("/mall/rewards", status_code=201, response_model=RewardPublic)
def create_reward(body: RewardIn, p: PlatformDep) -> dict[str, Any]:
    return mall.create_reward(p, **body.model_dump(mode="json"))


@router.get("/mall/rewards", response_model=list[RewardPublic])
def list_rewards(
    p: PlatformDep, program: str | None = ProgramQ, status: RewardStatus | None = None
) -> list[dict[str, Any]]:
    return mall.rewards(p, program=program, status=status.value if status else None)


@router.patch("/mall/rewards/{code}", response_model=RewardPublic)
def update_reward(code: RewardCode, body: RewardPatch, p: PlatformDep) -> dict[str, Any]:
    return mall.update_reward(p, code, body.model_dump(mode="json", exclude_unset=True))


# ---------------------------------------------------------------- redemption windows


@router.post("/mall/windows", status_code=201, response_model=WindowPublic)
def create_window(body: WindowIn, p: PlatformDep) -> dict[str, Any]:
    return mall.create_window(
        p, name=body.name, starts_at=body.starts_at, ends_at=body.ends_at, program=body.program
    )


@router.get("/mall/windows", response_model=list[WindowPublic])
def list_windows(p: PlatformDep, program: str | None = ProgramQ) -> list[dict[str, Any]]:
    return mall.windows(p, program=program)


@router.delete("/mall/windows/{window_id}", status_code=204, response_class=Response)
def delete_window(window_id: EntityId, p: PlatformDep) -> Response:
    mall.delete_window(p, window_id)
    return Response(status_code=204)


# ---------------------------------------------------------------- redemptions


@router.post(
    "/members/{member_id}/mall/redemptions", status_code=201, response_model=RedemptionResult
)
def redeem(
    member_id: MemberId, body: RedemptionIn, p: PlatformDep, actor: ActorDep, response: Response
) -> dict[str, Any]:
    """Redeem a reward; a retry with the same request key answers 200 with the first result."""
    result = mall.redeem(
        p,
        member_id=member_id,
        reward=body.reward,
        quantity=body.quantity,
        request_key=body.request_key,
        actor=actor,
    )
    if result["replayed"]:
        response.status_code = 200
    return result


@router.get("/members/{member_id}/mall/redemptions", response_model=list[RedemptionPublic])
def list_redemptions(
    member_id: MemberId,
    p: PlatformDep,
    status: RedemptionStatus | None = None,
    limit: int = Query(100, ge=1, le=1000),
    before_id: BeforeId = None,
) -> list[dict[str, Any]]:
    return mall.redemptions(
        p, member_id, status=status.value if status else None, limit=limit, before_id=before_id
    )


@router.get("/mall/redemptions/{redemption_id}", response_model=RedemptionPublic)
def get_redemption(redemption_id: EntityId, p: PlatformDep) -> dict[str, Any]:
    return mall.redemption(p, redemption_id)


@router.post("/mall/redemptions/{redemption_id}/fulfil", response_model=RedemptionPublic)
def fulfil(redemption_id: EntityId, p: PlatformDep, actor: ActorDep) -> dict[str, Any]:
    """The reward was delivered. Again: the same answer; a reversed redemption: 409."""
    return mall.fulfil(p, redemption_id, actor=actor)


@router.post("/mall/redemptions/{redemption_id}/fail", response_model=ReversalResult)
def fail(redemption_id: EntityId, body: FailIn, p: PlatformDep, actor: ActorDep) -> dict[str, Any]:
    """Fulfilment failed: the points and the stock go back. Again: the same answer; a
    fulfilled redemption: 409."""
    return mall.fail(p, redemption_id, reason=body.reason, actor=actor)
