"""The one error hierarchy of Quanyu.

Every error a user can cause is a :class:`QuanyuError` with a stable ``code`` and
structured fields. The HTTP layer maps them to problem+json in one module
(``entrypoints/api/errors.py``), the CLI prints ``str(error)``.

    QuanyuError
    ├── ValidationFailed        bad input; names the field            (422)
    ├── NotAuthenticated        no valid session or key                (401)
    ├── Forbidden               authenticated, but not allowed          (403)
    ├── NotFound                an entity does not exist, or is outside
    │                           the caller's data scope                (404)
    ├── Conflict                the request clashes with stored state  (409)
    │   ├── IdempotencyConflict same key, different payload
    │   ├── AlreadyExists       a unique business key is taken
    │   └── CouponUnavailable   the coupon is held by another order, used or voided
    ├── BusinessRuleViolation   input is well formed, but a rule forbids it (422)
    │   ├── InsufficientPoints
    │   ├── PointsPaymentCapExceeded
    │   ├── RefundExceedsOrder
    │   ├── CouponNotApplicable the basket does not qualify; ``reasons`` says why
    │   ├── LimitReached        a usage limit, budget or stock is exhausted
    │   ├── OutsideRedemptionWindow
    │   └── ForbiddenInChannel  a SKU the channel's assortment forbids
    ├── TooManyAttempts         login throttled; ``retry_after`` seconds (429)
    ├── Unavailable             a resource is busy or down; retry later (503)
    └── LedgerInvariantBroken   stored ledger disagrees with itself   (500)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class QuanyuError(Exception):
    """Base of every domain error. ``code`` is stable and machine-readable."""

    code = "quanyu_error"
    title = "Quanyu error"

    def __init__(self, detail: str, **fields: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields: dict[str, Any] = fields


class ValidationFailed(QuanyuError):
    code = "validation_failed"
    title = "Invalid input"

    def __init__(self, detail: str, *, field: str, **fields: Any) -> None:
        super().__init__(detail, field=field, **fields)
        self.field = field


class NotAuthenticated(QuanyuError):
    code = "not_authenticated"
    title = "Authentication required"


class Forbidden(QuanyuError):
    """``permission`` names what the caller lacks."""

    code = "forbidden"
    title = "Forbidden"


class TooManyAttempts(QuanyuError):
    code = "too_many_attempts"
    title = "Too many attempts"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after


class NotFound(QuanyuError):
    code = "not_found"
    title = "Not found"

    def __init__(self, entity: str, key: object) -> None:
        super().__init__(f"{entity} {key!s} does not exist", entity=entity, key=str(key))
        self.entity = entity


class Conflict(QuanyuError):
    code = "conflict"
    title = "Conflict"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"
    title = "Idempotency key reused with a different payload"

    def __init__(self, key: str, differences: Mapping[str, Any]) -> None:
        names = ", ".join(sorted(differences)) or "payload"
        super().__init__(
            f"{key} was already received with a different payload (differs in: {names})",
            key=key,
            differences=dict(differences),
        )


class AlreadyExists(Conflict):
    code = "already_exists"
    title = "Already exists"


class BusinessRuleViolation(QuanyuError):
    code = "business_rule_violation"
    title = "Business rule violated"


class InsufficientPoints(BusinessRuleViolation):
    code = "insufficient_points"
    title = "Insufficient points"

    def __init__(self, *, requested: int, available: int, field: str = "points") -> None:
        super().__init__(
            f"{requested} points requested but only {available} are available",
            requested=requested,
            available=available,
            field=field,
        )
        self.requested = requested
        self.available = available


class PointsPaymentCapExceeded(BusinessRuleViolation):
    code = "points_payment_cap_exceeded"
    title = "Points payment exceeds the program's cap"


class RefundExceedsOrder(BusinessRuleViolation):
    code = "refund_exceeds_order"
    title = "Refund exceeds what remains of the order"


class CouponUnavailable(Conflict):
    code = "coupon_unavailable"
    title = "Coupon unavailable"


class CouponNotApplicable(BusinessRuleViolation):
    """``reasons`` is a list of ``{"coupon", "code", "detail", ...}``, one per failed rule."""

    code = "coupon_not_applicable"
    title = "Coupon does not apply"

    def __init__(self, detail: str, *, reasons: list[dict[str, Any]], field: str = "codes") -> None:
        super().__init__(detail, reasons=reasons, field=field)
        self.reasons = reasons


class LimitReached(BusinessRuleViolation):
    """``limit`` names what ran out: per_member, total, issue_budget, discount_budget, stock."""

    code = "limit_reached"
    title = "Limit reached"

    def __init__(self, detail: str, *, limit: str, **fields: Any) -> None:
        super().__init__(detail, limit=limit, **fields)
        self.limit = limit


class OutsideRedemptionWindow(BusinessRuleViolation):
    code = "outside_redemption_window"
    title = "Outside the program's redemption windows"


class ForbiddenInChannel(BusinessRuleViolation):
    code = "forbidden_in_channel"
    title = "Forbidden in this channel"


class Unavailable(QuanyuError):
    """A resource the command needs is busy or down (e.g. the analytics store is held by
    another process); the same request may succeed later."""

    code = "unavailable"
    title = "Temporarily unavailable"


class LedgerInvariantBroken(QuanyuError):
    code = "ledger_invariant_broken"
    title = "Ledger invariant broken"
