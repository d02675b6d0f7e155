"""API request and response schemas. They are not tables: they translate to domain inputs."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from quanyu.domain.assortment import RuleInput
from quanyu.domain.orders import (
    IdentityInput,
    LineInput,
    OrderInput,
    PaymentInput,
    RefundInput,
    RefundLineInput,
)

Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
Text = Annotated[str, Field(min_length=1, max_length=200)]
Minor = Annotated[int, Field(ge=0, le=10**12, description="amount in minor currency units")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdentityIn(Strict):
    type: Annotated[str, Field(examples=["phone"], min_length=1, max_length=32)]
    value: Annotated[str, Field(min_length=1, max_length=255)]
    namespace: Annotated[str | None, Field(max_length=128)] = None

    def to_domain(self) -> IdentityInput:
        return IdentityInput(self.type, self.value, self.namespace)


class OrderLineIn(Strict):
    line_no: Annotated[int | None, Field(ge=1, le=10**6)] = None
    sku: Annotated[str, Field(min_length=1, max_length=64)]
    quantity: Annotated[int, Field(ge=1, le=10**6)]
    list_price: Minor
    paid_amount: Minor
    category: Annotated[str | None, Field(max_length=64)] = None


class PaymentIn(Strict):
    method: Annotated[str, Field(min_length=1, max_length=32, examples=["wechat_pay", "points"])]
    amount: Minor
    points: Annotated[int, Field(ge=0, le=10**12)] = 0


class OrderIn(Strict):
    channel: Code
    external_id: Annotated[str, Field(min_length=1, max_length=128)]
    ordered_at: AwareDatetime
    brand: Code | None = None
    store: Code | None = None
    guide: Code | None = None
    identities: Annotated[list[IdentityIn], Field(max_length=20)] = []
    lines: Annotated[list[OrderLineIn], Field(min_length=1, max_length=500)]
    payments: Annotated[list[PaymentIn], Field(max_length=20)] = []

    def to_domain(self) -> OrderInput:
        return OrderInput(
            channel=self.channel,
            external_id=self.external_id,
            ordered_at=self.ordered_at,
            brand=self.brand,
            store=self.store,
            guide=self.guide,
            identities=tuple(i.to_domain() for i in self.identities),
            lines=tuple(
                LineInput(
                    line.line_no or n + 1,
                    line.sku,
                    line.quantity,
                    line.list_price,
                    line.paid_amount,
                    line.category,
                )
                for n, line in enumerate(self.lines)
            ),
            payments=tuple(PaymentInput(p.method, p.amount, p.points) for p in self.payments),
        )


class OrderResult(BaseModel):
    order_id: int
    channel: str
    external_id: str
    member_id: int | None
    member_no: str | None
    points_earned: int
    points_used: int
    tier: str | None
    flags: list[dict[str, Any]] = Field(
        default_factory=list,
        description="lines the channel's assortment forbids, when the program flags them",
    )
    replayed: bool


class RefundLineIn(Strict):
    line_no: Annotated[int, Field(ge=1, le=10**6)]
    quantity: Annotated[int, Field(ge=0, le=10**6)] = 0
    amount: Minor


class RefundIn(Strict):
    channel: Code
    external_id: Annotated[str, Field(min_length=1, max_length=128)]
    order_external_id: Annotated[str, Field(min_length=1, max_length=128)]
    order_channel: Code | None = None
    refunded_at: AwareDatetime
    reason: Annotated[str, Field(max_length=500)] = ""
    lines: Annotated[list[RefundLineIn], Field(min_length=1, max_length=500)]

    def to_domain(self) -> RefundInput:
        return RefundInput(
            channel=self.channel,
            external_id=self.external_id,
            order_external_id=self.order_external_id,
            refunded_at=self.refunded_at,
            lines=tuple(RefundLineInput(x.line_no, x.quantity, x.amount) for x in self.lines),
            reason=self.reason,
            order_channel=self.order_channel,
        )


class RefundResult(BaseModel):
    refund_id: int
    order_id: int
    channel: str
    external_id: str
    amount: int
    points_clawed_back: int
    points_restored: int
    member_id: int | None
    coupons_returned: list[str] = Field(
        [], description="codes of the coupons a full refund gave back to the member"
    )
    replayed: bool


class BatchIn(Strict):
    items: Annotated[
        list[dict[str, Any]],
        Field(
            min_length=1,
            max_length=5000,
            description="Orders (or refunds) in the single-item format; each is checked on its own",
        ),
    ]


class BatchItemOut(BaseModel):
    index: int
    ok: bool
    result: dict[str, Any] | None = None
    problem: dict[str, Any] | None = None


class BatchOut(BaseModel):
    accepted: int
    rejected: int
    items: list[BatchItemOut]


class RegistrationIn(Strict):
    identities: Annotated[list[IdentityIn], Field(min_length=1, max_length=20)]
    program: Code | None = None
    brand: Code | None = None
    channel: Code | None = None
    store: Code | None = None
    guide: Code | None = None
    name: Annotated[str | None, Field(max_length=200)] = None
    gender: Annotated[str | None, Field(max_length=16)] = None
    birthday: date | None = None
    member_no: Annotated[str | None, Field(max_length=64)] = None
    registered_at: AwareDatetime | None = None


class RegistrationOut(BaseModel):
    member_id: int
    member_no: str
    program: str
    tier: str
    created: bool


class AdjustIn(Strict):
    points: Annotated[int, Field(ge=-(10**9), le=10**9)]
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    program: Code | None = None


class RedeemIn(Strict):
    points: Annotated[int, Field(ge=1, le=10**9)]
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    program: Code | None = None


class Balance(BaseModel):
    member_id: int
    program: str
    available: int
    pending: int
    debt: int
    expiring_soon: int
    total: int


# What an order line for a SKU forbidden in its channel does to the order.
AssortmentPolicyIn = Literal["reject", "flag"]


class ProgramIn(Strict):
    code: Code
    name: Text
    timezone: Annotated[str, Field(max_length=64)] = "Asia/Shanghai"
    currency: Annotated[str, Field(min_length=3, max_length=3)] = "CNY"
    pending_days: Annotated[int, Field(ge=0, le=365)] = 0
    expiry_kind: str = "end_of_following_year"
    expiry_days: Annotated[int | None, Field(ge=1, le=36500)] = None
    clawback_policy: str = "other_lots"
    point_value_minor: Annotated[float, Field(gt=0, le=10**6)] = 1
    points_payment_cap_percent: Annotated[int, Field(ge=0, le=100)] = 50
    tier_metric: str = "spend"
    tier_review: str = "anniversary"
    tier_review_month: Annotated[int, Field(ge=1, le=12)] = 1
    tier_review_day: Annotated[int, Field(ge=1, le=31)] = 1
    tier_grace_days: Annotated[int, Field(ge=0, le=3650)] = 30
    tier_max_downgrade_levels: Annotated[int, Field(ge=1, le=100)] = 1
    tier_window_days: Annotated[int, Field(ge=1, le=3650)] = 365
    assortment_policy: AssortmentPolicyIn = "flag"


class ProgramPatch(Strict):
    name: Text | None = None
    pending_days: Annotated[int | None, Field(ge=0, le=365)] = None
    expiry_kind: str | None = None
    expiry_days: Annotated[int | None, Field(ge=1, le=36500)] = None
    clawback_policy: str | None = None
    point_value_minor: Annotated[float | None, Field(gt=0, le=10**6)] = None
    points_payment_cap_percent: Annotated[int | None, Field(ge=0, le=100)] = None
    tier_metric: str | None = None
    tier_review: str | None = None
    tier_review_month: Annotated[int | None, Field(ge=1, le=12)] = None
    tier_review_day: Annotated[int | None, Field(ge=1, le=31)] = None
    tier_grace_days: Annotated[int | None, Field(ge=0, le=3650)] = None
    tier_max_downgrade_levels: Annotated[int | None, Field(ge=1, le=100)] = None
    tier_window_days: Annotated[int | None, Field(ge=1, le=3650)] = None
    assortment_policy: AssortmentPolicyIn | None = None


class TierIn(Strict):
    code: Code
    name: Text
    rank: Annotated[int, Field(ge=0, le=1000)]
    threshold: Annotated[int, Field(ge=0, le=10**12)]


class EarnRuleIn(Strict):
    effective_from: AwareDatetime
    document: dict[str, Any] = Field(
        description="base_rate, tier_multipliers, member_days, member_day_multiplier, "
        "birthday_month_multiplier, channel_rates, category_rates, excluded_channels, "
        "excluded_categories, excluded_skus",
        examples=[
            {
                "base_rate": "1",
                "tier_multipliers": {"gold": "1.5"},
                "member_days": [8],
                "member_day_multiplier": "2",
            }
        ],
    )


class BrandIn(Strict):
    code: Code
    name: Text
    program: Code


class ChannelIn(Strict):
    code: Code
    name: Text
    kind: str


class StoreIn(Strict):
    code: Code
    name: Text
    brand: Code
    city: Text
    region: Text
    latitude: Annotated[float | None, Field(ge=-90, le=90)] = None
    longitude: Annotated[float | None, Field(ge=-180, le=180)] = None


class StorePatch(Strict):
    name: Text | None = None
    city: Text | None = None
    region: Text | None = None
    latitude: Annotated[float | None, Field(ge=-90, le=90)] = None
    longitude: Annotated[float | None, Field(ge=-180, le=180)] = None


class GuideIn(Strict):
    code: Code
    name: Text
    store: Code


class ProductIn(Strict):
    sku: Code
    brand: Code
    name: Text
    style: Code
    colour: Annotated[str, Field(min_length=1, max_length=64)]
    size: Annotated[str, Field(min_length=1, max_length=32)]
    category: Code
    list_price: Minor


# ---------------------------------------------------------------- channel assortment


class AssortmentRuleIn(Strict):
    """A rule for one SKU or one category (give one of them), channel-wide or for one store."""

    channel: Code
    store: Code | None = Field(None, description="a store of the channel; none: channel-wide")
    sku: Annotated[str | None, Field(min_length=1, max_length=64)] = None
    category: Annotated[str | None, Field(min_length=1, max_length=64)] = None
    status: Literal["must", "optional", "forbidden"]

    def to_domain(self) -> RuleInput:
        return RuleInput(
            channel=self.channel,
            status=self.status,
            store=self.store,
            sku=self.sku,
            category=self.category,
        )
