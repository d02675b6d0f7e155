"""The points mall: rewards priced in points (or points plus cash), and the rules of redeeming them.

A *reward* is a coupon, a physical gift or an experience. A member may redeem it when

* the program's redemption windows are open (no windows: always open; otherwise ``as_of``
  must fall in one, ``starts_at <= as_of < ends_at``),
* the member's tier ranks at least as high as the reward's ``min_tier_code``,
* the quantity keeps the member within the reward's ``per_member_limit`` (redemptions
  that were reversed do not count),
* the reward has stock left (None: unlimited), and
* the member has the points (the ledger raises :class:`InsufficientPoints`).

A *redemption* is ``placed``, then ``fulfilled`` or ``reversed``. A coupon reward is
fulfilled at once (the coupon is issued in the same transaction); a physical gift or an
experience stays placed until it is fulfilled or its fulfilment fails, which reverses it:
the points go back to the member with the expiry they had where that has not passed yet
(:func:`restorations`), and the stock is put back. Fulfilling or reversing again is a
no-op that answers the same; fulfilling a reversed redemption, or reversing a fulfilled
one, is a :class:`Conflict`.

Pure rules: no I/O, no clock; time is passed in.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from quanyu.domain.errors import (
    BusinessRuleViolation,
    Conflict,
    LimitReached,
    OutsideRedemptionWindow,
    ValidationFailed,
)
from quanyu.domain.orders import require_aware
from quanyu.domain.tiers import Tier

MAX_QUANTITY = 100  # of one reward in one redemption


class RewardKind(enum.StrEnum):
    COUPON = "coupon"
    PHYSICAL = "physical"
    EXPERIENCE = "experience"


class RewardStatus(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"


class RedemptionStatus(enum.StrEnum):
    PLACED = "placed"
    FULFILLED = "fulfilled"
    REVERSED = "reversed"


# ---------------------------------------------------------------- the catalogue


def validate_reward(
    *,
    kind: RewardKind,
    points_price: int,
    cash_price: int,
    has_coupon_template: bool,
    stock: int | None,
    per_member_limit: int | None,
) -> None:
    """A reward as it will be stored, checked as a whole."""
    if points_price < 1:
        raise ValidationFailed("a reward costs at least 1 point", field="points_price")
    if cash_price < 0:
        raise ValidationFailed("cannot be negative", field="cash_price")
    if kind is RewardKind.COUPON and not has_coupon_template:
        raise ValidationFailed("a coupon reward names its coupon template", field="coupon_template")
    if kind is not RewardKind.COUPON and has_coupon_template:
        raise ValidationFailed(
            f"only a coupon reward names a coupon template, not a {kind} one",
            field="coupon_template",
        )
    if stock is not None and stock < 0:
        raise ValidationFailed("cannot be negative", field="stock")
    if per_member_limit is not None and per_member_limit < 1:
        raise ValidationFailed("must be at least 1", field="per_member_limit")


@dataclass(frozen=True)
class Price:
    points: int
    cash: int  # minor currency units


def check_quantity(quantity: int) -> None:
    if not 1 <= quantity <= MAX_QUANTITY:
        raise ValidationFailed(f"must be between 1 and {MAX_QUANTITY}", field="quantity")


def price_for(points_price: int, cash_price: int, quantity: int) -> Price:
    """What ``quantity`` of a reward costs."""
    check_quantity(quantity)
    return Price(points=points_price * quantity, cash=cash_price * quantity)


# ---------------------------------------------------------------- redemption windows


@dataclass(frozen=True)
class Window:
    name: str
    starts_at: datetime
    ends_at: datetime  # exclusive

    def contains(self, as_of: datetime) -> bool:
        return self.starts_at <= as_of < self.ends_at


def validate_window(starts_at: datetime, ends_at: datetime) -> None:
    require_aware(starts_at, "starts_at")
    require_aware(ends_at, "ends_at")
    if ends_at <= starts_at:
        raise ValidationFailed("a window must end after it starts", field="ends_at")


def check_window(windows: Iterable[Window], as_of: datetime) -> None:
    """Raise OutsideRedemptionWindow unless redemption is open at ``as_of``.

    A program without windows is always open; with windows, ``as_of`` must fall in one.
    The error names the next opening, if there is one."""
    windows = list(windows)
    if not windows or any(w.contains(as_of) for w in windows):
        return
    upcoming = sorted((w for w in windows if w.starts_at > as_of), key=lambda w: w.starts_at)
    nxt = upcoming[0] if upcoming else None
    raise OutsideRedemptionWindow(
        "redemption is closed now"
        + (f"; it opens next at {nxt.starts_at.isoformat()} ({nxt.name})" if nxt else ""),
        next_opens_at=nxt.starts_at.isoformat() if nxt else None,
        next_window=nxt.name if nxt else None,
    )


# ---------------------------------------------------------------- who may redeem


def check_tier(tiers: Sequence[Tier], member_tier: str, min_tier: str | None) -> None:
    """The member's tier must rank at least as high as ``min_tier`` (None: every tier).

    A reward whose minimum tier is no longer on the program's ladder is open to nobody
    until it is corrected, rather than silently to everybody."""
    if min_tier is None:
        return
    by_code = {t.code: t for t in tiers}
    required = by_code.get(min_tier)
    held = by_code.get(member_tier)
    if required is not None and held is not None and held.rank >= required.rank:
        return
    detail = (
        f"this reward is for {min_tier} members and above; the member is {member_tier}"
        if required is not None
        else f"this reward requires tier {min_tier}, which the program no longer has"
    )
    raise BusinessRuleViolation(
        detail, rule="min_tier", min_tier_code=min_tier, tier=member_tier, field="reward"
    )


def check_member_limit(limit: int | None, redeemed: int, quantity: int) -> None:
    """``redeemed``: the quantity the member already holds of the reward (not reversed)."""
    if limit is not None and redeemed + quantity > limit:
        raise LimitReached(
            f"{quantity} more would exceed the limit of {limit} per member "
            f"({redeemed} already redeemed)",
            limit="per_member",
            per_member_limit=limit,
            redeemed=redeemed,
            requested=quantity,
            field="quantity",
        )


def initial_status(kind: RewardKind) -> RedemptionStatus:
    """A coupon is delivered at once; goods and experiences wait for fulfilment."""
    return RedemptionStatus.FULFILLED if kind is RewardKind.COUPON else RedemptionStatus.PLACED


def fulfils(status: RedemptionStatus) -> bool:
    """Whether fulfilling changes anything: False when already fulfilled; Conflict when
    the redemption was reversed."""
    if status is RedemptionStatus.REVERSED:
        raise Conflict("a reversed redemption cannot be fulfilled", redemption_status=status.value)
    return status is RedemptionStatus.PLACED


def reverses(status: RedemptionStatus) -> bool:
    """Whether a failed fulfilment changes anything: False when already reversed;
    Conflict when the reward was already delivered."""
    if status is RedemptionStatus.FULFILLED:
        raise Conflict("a fulfilled redemption cannot be reversed", redemption_status=status.value)
    return status is RedemptionStatus.PLACED


# ---------------------------------------------------------------- reversal


def restorations(
    consumed: Iterable[tuple[datetime | None, int]], *, as_of: datetime, fresh: datetime | None
) -> list[tuple[datetime | None, int]]:
    """The lots that give back points a redemption consumed: ``(expires_at, points)``.

    ``consumed`` holds the expiry of each lot the redemption took points from and how
    many. Points go back with that expiry while it is still ahead of ``as_of``; points
    whose lot would have expired by now come back with ``fresh`` (the program's expiry
    for points earned now), since the member did not choose to lose them. One lot per
    expiry, soonest-expiring first, never-expiring last."""
    by_expiry: dict[datetime | None, int] = {}
    for expires_at, points in consumed:
        if points <= 0:
            continue
        keep = expires_at is None or expires_at > as_of
        key = expires_at if keep else fresh
        by_expiry[key] = by_expiry.get(key, 0) + points
    return sorted(by_expiry.items(), key=lambda kv: (kv[0] is None, kv[0] or as_of))
