"""What happened, as recorded in a member's history.

History events are rows written in the same transaction as the change they describe;
their ``kind`` is one of :class:`HistoryKind`.
"""

from __future__ import annotations

import enum


class HistoryKind(enum.StrEnum):
    PROFILE_CREATED = "profile_created"
    REGISTERED = "registered"
    IDENTITY_LINKED = "identity_linked"
    MERGED = "merged"
    ORDER_PLACED = "order_placed"
    ORDER_REFUNDED = "order_refunded"
    POINTS_CHANGED = "points_changed"
    TIER_CHANGED = "tier_changed"
    COUPON_ISSUED = "coupon_issued"
    COUPON_RESERVED = "coupon_reserved"
    COUPON_RELEASED = "coupon_released"
    COUPON_REDEEMED = "coupon_redeemed"
    COUPON_RETURNED = "coupon_returned"
    COUPON_VOIDED = "coupon_voided"
    BENEFIT_GRANTED = "benefit_granted"
    REWARD_REDEEMED = "reward_redeemed"
    REWARD_REVERSED = "reward_reversed"
