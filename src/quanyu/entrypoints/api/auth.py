"""Who is calling the API, and may they call this route.

One table, :data:`ROUTES`, names the permission each route needs; a test checks that
every route is in it. The caller is a staff session (the console's cookie, with its CSRF
token on every change), an integration key (``Authorization: Bearer qk_...`` or
``X-Api-Key``), or, in set-up mode before any account or key exists, the system.

Routes with a ``{member_id}`` are checked against the caller's data scope here, before
the handler runs, through the service layer's :func:`access.check_member`; a member out
of scope answers 404.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import TypeAdapter, ValidationError

from quanyu.domain.access import SYSTEM, Permission, Principal, PrincipalKind
from quanyu.domain.errors import Forbidden, NotAuthenticated
from quanyu.entrypoints.api.deps import BIGINT
from quanyu.services import access
from quanyu.services.uow import Platform

API_PREFIX = "/api/v1"
SESSION_COOKIE = "quanyu_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

P = Permission
EVERYONE = None  # any authenticated caller

# (method, path under /api/v1) -> the permission needed. ``HQ`` routes also need the caller to see
# every member (they return data across members).
ROUTES: dict[tuple[str, str], Permission | None] = {
    ("POST", "/orders"): P.INGEST_ORDERS,
    ("POST", "/refunds"): P.INGEST_ORDERS,
    ("POST", "/orders/batch"): P.INGEST_ORDERS,
    ("POST", "/refunds/batch"): P.INGEST_ORDERS,
    ("POST", "/members"): P.REGISTER_MEMBERS,
    ("GET", "/members/lookup"): P.VIEW_MEMBERS,
    ("GET", "/members/{member_id}"): P.VIEW_MEMBERS,
    ("GET", "/members/{member_id}/identities"): P.VIEW_MEMBERS,
    ("GET", "/members/{member_id}/history"): P.VIEW_MEMBERS,
    ("GET", "/members/{member_id}/merges"): P.VIEW_MEMBERS,
    ("POST", "/members/{member_id}/reveal"): P.REVEAL_PII,
    ("GET", "/merges"): P.MANAGE_SETUP,
    ("GET", "/merges/{merge_id}"): P.MANAGE_SETUP,
    ("GET", "/members/{member_id}/points"): P.VIEW_MEMBERS,
    ("GET", "/members/{member_id}/points/lots"): P.VIEW_MEMBERS,
    ("GET", "/members/{member_id}/points/entries"): P.VIEW_MEMBERS,
    ("POST", "/members/{member_id}/points/adjustments"): P.ADJUST_POINTS,
    ("POST", "/members/{member_id}/points/redemptions"): P.REDEEM,
    ("GET", "/members/{member_id}/tier"): P.VIEW_MEMBERS,
    ("POST", "/members/{member_id}/tier"): P.CHANGE_TIER,
    ("GET", "/members/{member_id}/tier/history"): P.VIEW_MEMBERS,
    ("GET", "/members/{member_id}/tier/projection"): P.VIEW_MEMBERS,
    ("POST", "/coupon-templates"): P.MANAGE_COUPONS,
    ("GET", "/coupon-templates"): EVERYONE,
    ("GET", "/coupon-templates/{code}"): EVERYONE,
    ("POST", "/coupon-templates/{code}/pause"): P.MANAGE_COUPONS,
    ("POST", "/coupon-templates/{code}/resume"): P.MANAGE_COUPONS,
    ("POST", "/coupon-templates/{code}/batches"): P.MANAGE_COUPONS,
    ("GET", "/coupon-batches/{batch_id}/codes.csv"): P.MANAGE_COUPONS,
    ("GET", "/members/{member_id}/coupons"): P.VIEW_MEMBERS,
    ("POST", "/coupons/validate"): P.REDEEM,
    ("POST", "/coupons/reservations"): P.REDEEM,
    ("GET", "/coupons/reservations/{channel}/{order_id}"): P.REDEEM,
    ("POST", "/coupons/reservations/{channel}/{order_id}/confirm"): P.REDEEM,
    ("POST", "/coupons/reservations/{channel}/{order_id}/release"): P.REDEEM,
    ("GET", "/coupons/{code}"): P.REDEEM,
    ("POST", "/coupons/{code}/void"): P.MANAGE_COUPONS,
    ("GET", "/benefits"): EVERYONE,
    ("POST", "/benefits"): P.MANAGE_SETUP,
    ("GET", "/members/{member_id}/benefits"): P.VIEW_MEMBERS,
    ("POST", "/mall/rewards"): P.MANAGE_COUPONS,
    ("GET", "/mall/rewards"): EVERYONE,
    ("PATCH", "/mall/rewards/{code}"): P.MANAGE_COUPONS,
    ("POST", "/mall/windows"): P.MANAGE_COUPONS,
    ("GET", "/mall/windows"): EVERYONE,
    ("DELETE", "/mall/windows/{window_id}"): P.MANAGE_COUPONS,
    ("POST", "/members/{member_id}/mall/redemptions"): P.REDEEM,
    ("GET", "/members/{member_id}/mall/redemptions"): P.VIEW_MEMBERS,
    ("GET", "/mall/redemptions/{redemption_id}"): P.MANAGE_COUPONS,
    ("POST", "/mall/redemptions/{redemption_id}/fulfil"): P.MANAGE_COUPONS,
    ("POST", "/mall/redemptions/{redemption_id}/fail"): P.MANAGE_COUPONS,
    ("PUT", "/assortment/rules"): P.MANAGE_SETUP,
    ("GET", "/assortment/rules"): EVERYONE,
    ("DELETE", "/assortment/rules/{rule_id}"): P.MANAGE_SETUP,
    ("GET", "/assortment/must-sell-gaps"): P.VIEW_KPIS,
    ("GET", "/reports/coupons"): P.VIEW_KPIS,
    ("GET", "/reports/points-liability"): P.VIEW_KPIS,
    ("GET", "/reports/points-breakage"): P.VIEW_KPIS,
    ("GET", "/kpis/{metric}"): P.VIEW_KPIS,
    ("POST", "/analytics/refresh"): P.MANAGE_SEGMENTS,
    ("POST", "/tags"): P.MANAGE_SEGMENTS,
    ("GET", "/tags"): P.VIEW_KPIS,
    ("POST", "/tags/run"): P.MANAGE_SEGMENTS,
    ("GET", "/tags/{code}"): P.VIEW_KPIS,
    ("GET", "/members/{member_id}/tags"): P.VIEW_MEMBERS,
    ("POST", "/segments/count"): P.MANAGE_SEGMENTS,
    ("POST", "/segments/overlap"): P.MANAGE_SEGMENTS,
    ("POST", "/segments"): P.MANAGE_SEGMENTS,
    ("GET", "/segments"): P.MANAGE_SEGMENTS,
    ("GET", "/segments/{code}"): P.MANAGE_SEGMENTS,
    ("POST", "/segments/{code}/snapshot"): P.MANAGE_SEGMENTS,
    ("GET", "/segments/{code}/events"): P.MANAGE_SEGMENTS,
    ("GET", "/segments/{code}/export"): P.EXPORT,
    ("POST", "/segments/{code}/coupons"): P.ISSUE_COUPONS,
    ("GET", "/audiences/near-store"): P.EXPORT,
    ("POST", "/campaigns"): P.MANAGE_SEGMENTS,
    ("POST", "/campaigns/{code}/members"): P.MANAGE_SEGMENTS,
    ("GET", "/campaigns/{code}/attribution"): P.VIEW_KPIS,
    ("PUT", "/acquisition-costs"): P.MANAGE_SETUP,
    ("PUT", "/members/{member_id}/consents"): P.REGISTER_MEMBERS,
    ("GET", "/members/{member_id}/consents"): P.VIEW_MEMBERS,
    ("GET", "/setup/programs"): EVERYONE,
    ("POST", "/setup/programs"): P.MANAGE_SETUP,
    ("PATCH", "/setup/programs/{code}"): P.MANAGE_SETUP,
    ("GET", "/setup/programs/{code}/tiers"): EVERYONE,
    ("PUT", "/setup/programs/{code}/tiers"): P.MANAGE_SETUP,
    ("GET", "/setup/programs/{code}/earn-rules"): EVERYONE,
    ("POST", "/setup/programs/{code}/earn-rules"): P.MANAGE_SETUP,
    ("GET", "/setup/brands"): EVERYONE,
    ("POST", "/setup/brands"): P.MANAGE_SETUP,
    ("GET", "/setup/channels"): EVERYONE,
    ("POST", "/setup/channels"): P.MANAGE_SETUP,
    ("GET", "/setup/stores"): EVERYONE,
    ("POST", "/setup/stores"): P.MANAGE_SETUP,
    ("PATCH", "/setup/stores/{code}"): P.MANAGE_SETUP,
    ("GET", "/setup/guides"): EVERYONE,
    ("POST", "/setup/guides"): P.MANAGE_SETUP,
    ("GET", "/setup/products"): EVERYONE,
    ("PUT", "/setup/products"): P.MANAGE_SETUP,
    ("GET", "/staff"): P.MANAGE_STAFF,
    ("POST", "/staff"): P.MANAGE_STAFF,
    ("GET", "/api-keys"): P.MANAGE_STAFF,
    ("POST", "/api-keys"): P.MANAGE_STAFF,
    ("POST", "/api-keys/{key_id}/rotate"): P.MANAGE_STAFF,
    ("DELETE", "/api-keys/{key_id}"): P.MANAGE_STAFF,
    ("GET", "/audit-log"): P.MANAGE_STAFF,
    ("GET", "/me"): EVERYONE,
}

# Routes that return data across members: only for callers who see every member.
HQ_ONLY = frozenset(
    {
        ("GET", "/merges"),
        ("GET", "/merges/{merge_id}"),
        ("GET", "/segments/{code}/export"),
        ("GET", "/audiences/near-store"),
        ("POST", "/segments/{code}/coupons"),
    }
)

_bearer = HTTPBearer(auto_error=False, description="An integration key, qk_...")
_key_header = APIKeyHeader(name="X-Api-Key", auto_error=False)
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False)


def resolve(platform: Platform, request: Request) -> tuple[Principal, str | None]:
    """The caller of ``request`` and, for a staff session, its CSRF token."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached, getattr(request.state, "csrf", None)
    auth = request.headers.get("authorization", "")
    token = request.headers.get("x-api-key")
    if auth.lower().startswith("bearer "):
        token = auth[7:].strip()
    cookie = request.cookies.get(SESSION_COOKIE)
    csrf: str | None = None
    if token:
        principal = access.key_principal(platform, token)
    elif cookie:
        principal, csrf = access.session(platform, cookie)
    elif not access.credentials_exist(platform):
        principal = SYSTEM
    else:
        raise NotAuthenticated("log in, or send an integration key as a Bearer token")
    request.state.principal = principal
    request.state.csrf = csrf
    return principal, csrf


def authorize(
    request: Request,
    _b: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    _k: Annotated[str | None, Depends(_key_header)],
    _c: Annotated[str | None, Depends(_cookie)],
) -> Principal:
    """The router-wide dependency: authenticate, check CSRF, permission and scope."""
    platform: Platform = request.app.state.platform
    principal, csrf = resolve(platform, request)
    if (
        principal.kind is PrincipalKind.STAFF
        and request.method not in SAFE_METHODS
        and (csrf is None or not access.csrf_matches(csrf, request.headers.get(CSRF_HEADER)))
    ):
        raise Forbidden(
            f"a change made with a session cookie needs the {CSRF_HEADER} header",
            permission="csrf",
        )
    route = request.scope.get("route")
    path = route.path if isinstance(route, APIRoute) else request.url.path
    key = (request.method, path.removeprefix(API_PREFIX))
    if key not in ROUTES:
        raise Forbidden(f"{request.method} {path} is not open to callers", permission="route")
    needed = ROUTES[key]
    if needed is not None and not principal.can(needed):
        raise Forbidden(f"this needs the {needed.value} permission", permission=needed.value)
    if key in HQ_ONLY and not principal.scope.everything:
        raise Forbidden("this needs access to every member", permission="all_members")
    member_id = request.path_params.get("member_id")
    if member_id is not None and not principal.scope.everything:
        # Read the id as the route will (``2.0`` and `` 2`` are 2 to it too).
        try:
            number = _MEMBER_ID.validate_python(member_id)
        except ValidationError:
            number = 0  # the route's own validation answers 422
        if 1 <= number <= BIGINT:
            access.check_member(platform, principal, number)
    return principal


_MEMBER_ID: TypeAdapter[int] = TypeAdapter(int)


PrincipalDep = Annotated[Principal, Depends(authorize)]
