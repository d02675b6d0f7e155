"""Staff access: roles, permissions, data scopes, masking and login throttling.

Pure rules. Who may do what is decided here, from a role; which members a person may
see is a :class:`Scope`, which the services turn into a query filter. Time is always a
parameter.

Roles and what they see:

- ``hq_admin``: everything, including staff accounts and integration keys;
- ``hq_operator``: every member; points, tiers, coupons, segments and exports;
- ``analyst``: KPIs, tags and segments; members masked, no changes to them;
- ``region_manager``: the members of the stores in their region;
- ``store_manager``: the members of their stores;
- ``guide``: the members bound to them.

A member belongs to a store through their home store or the store that recruited them,
and to a guide through the guide their membership is bound to.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from quanyu.domain.errors import TooManyAttempts, ValidationFailed


class Role(enum.StrEnum):
    HQ_ADMIN = "hq_admin"
    HQ_OPERATOR = "hq_operator"
    ANALYST = "analyst"
    REGION_MANAGER = "region_manager"
    STORE_MANAGER = "store_manager"
    GUIDE = "guide"


class Permission(enum.StrEnum):
    VIEW_MEMBERS = "view_members"
    REGISTER_MEMBERS = "register_members"
    REVEAL_PII = "reveal_pii"
    ADJUST_POINTS = "adjust_points"
    CHANGE_TIER = "change_tier"
    ISSUE_COUPONS = "issue_coupons"
    REDEEM = "redeem"  # check out coupons, redeem mall rewards, claim benefits
    INGEST_ORDERS = "ingest_orders"
    VIEW_KPIS = "view_kpis"
    MANAGE_SEGMENTS = "manage_segments"  # define tags and segments, run them
    EXPORT = "export"
    MANAGE_COUPONS = "manage_coupons"  # templates, batches, rewards
    MANAGE_SETUP = "manage_setup"  # programs, tiers, earn rules, channels, stores
    MANAGE_STAFF = "manage_staff"  # staff accounts and integration keys


P = Permission

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.HQ_ADMIN: frozenset(Permission) - {P.INGEST_ORDERS},
    Role.HQ_OPERATOR: frozenset(
        {
            P.VIEW_MEMBERS,
            P.REGISTER_MEMBERS,
            P.REVEAL_PII,
            P.ADJUST_POINTS,
            P.CHANGE_TIER,
            P.ISSUE_COUPONS,
            P.REDEEM,
            P.VIEW_KPIS,
            P.MANAGE_SEGMENTS,
            P.EXPORT,
            P.MANAGE_COUPONS,
        }
    ),
    Role.ANALYST: frozenset({P.VIEW_MEMBERS, P.VIEW_KPIS, P.MANAGE_SEGMENTS}),
    Role.REGION_MANAGER: frozenset(
        {P.VIEW_MEMBERS, P.REVEAL_PII, P.ADJUST_POINTS, P.ISSUE_COUPONS, P.REDEEM, P.VIEW_KPIS}
    ),
    Role.STORE_MANAGER: frozenset(
        {
            P.VIEW_MEMBERS,
            P.REGISTER_MEMBERS,
            P.REVEAL_PII,
            P.ADJUST_POINTS,
            P.ISSUE_COUPONS,
            P.REDEEM,
            P.VIEW_KPIS,
        }
    ),
    Role.GUIDE: frozenset({P.VIEW_MEMBERS, P.REGISTER_MEMBERS, P.REVEAL_PII, P.REDEEM}),
}

# What an integration key (POS, e-commerce, livestream shop) may do.
KEY_PERMISSIONS = frozenset({P.INGEST_ORDERS, P.REGISTER_MEMBERS, P.VIEW_MEMBERS, P.REDEEM})


@dataclass(frozen=True)
class Scope:
    """Which members are visible. ``everything`` wins; otherwise a member is visible when
    their store is in ``stores`` or their guide is in ``guides``."""

    everything: bool = False
    stores: frozenset[int] = frozenset()
    guides: frozenset[int] = frozenset()

    @property
    def nothing(self) -> bool:
        return not self.everything and not self.stores and not self.guides

    def allows(self, *, stores: Iterable[int | None], guide: int | None) -> bool:
        if self.everything:
            return True
        if guide is not None and guide in self.guides:
            return True
        return any(s is not None and s in self.stores for s in stores)

    def allows_store(self, store_id: int | None) -> bool:
        return self.everything or (store_id is not None and store_id in self.stores)


ALL = Scope(everything=True)


class PrincipalKind(enum.StrEnum):
    STAFF = "staff"
    KEY = "key"
    SYSTEM = "system"  # the CLI, and the API before any account or key exists


@dataclass(frozen=True)
class Principal:
    """Who is acting, what they may do and which members they see."""

    kind: PrincipalKind
    actor: str
    permissions: frozenset[Permission]
    scope: Scope = ALL
    role: Role | None = None
    staff_id: int | None = None
    key_id: int | None = None
    # An integration key's channels and stores (codes); empty means any.
    channels: frozenset[str] = frozenset()
    key_stores: frozenset[str] = frozenset()
    language: str | None = None
    display_name: str = ""

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    @property
    def masks_pii(self) -> bool:
        """Staff and keys see phone and e-mail masked unless they reveal them."""
        return self.kind is not PrincipalKind.SYSTEM


SYSTEM = Principal(PrincipalKind.SYSTEM, "system", frozenset(Permission))


def staff_scope(
    role: Role, *, store_ids: Iterable[int], region_store_ids: Iterable[int], guide_id: int | None
) -> Scope:
    """HQ roles see every member; the others see their stores, region or bound members."""
    if role in (Role.HQ_ADMIN, Role.HQ_OPERATOR, Role.ANALYST):
        return ALL
    if role is Role.REGION_MANAGER:
        return Scope(stores=frozenset(region_store_ids))
    if role is Role.STORE_MANAGER:
        return Scope(stores=frozenset(store_ids))
    return Scope(guides=frozenset({guide_id}) if guide_id is not None else frozenset())


def validate_staff(
    *, role: Role, stores: Sequence[str], region: str | None, guide: str | None
) -> None:
    """Each scoped role needs what it is scoped to, and only that."""
    if role is Role.STORE_MANAGER and not stores:
        raise ValidationFailed("a store manager needs at least one store", field="stores")
    if role is Role.REGION_MANAGER and not region:
        raise ValidationFailed("a region manager needs a region", field="region")
    if role is Role.GUIDE and not guide:
        raise ValidationFailed("a guide account needs its guide code", field="guide")
    if stores and role is not Role.STORE_MANAGER:
        raise ValidationFailed(f"a {role.value} is not scoped to stores", field="stores")
    if region and role is not Role.REGION_MANAGER:
        raise ValidationFailed(f"a {role.value} is not scoped to a region", field="region")
    if guide and role is not Role.GUIDE:
        raise ValidationFailed(f"a {role.value} is not a guide", field="guide")


LANGUAGES = ("zh-CN", "en")  # what staff may choose for the console


def validate_language(language: str | None) -> None:
    if language is not None and language not in LANGUAGES:
        raise ValidationFailed(f"language must be one of {', '.join(LANGUAGES)}", field="language")


USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD = 10


def validate_credentials(username: str, password: str) -> None:
    if not USERNAME.match(username):
        raise ValidationFailed(
            "a username is 2 to 64 lower-case letters, digits, dots, dashes or underscores",
            field="username",
        )
    if len(password) < MIN_PASSWORD:
        raise ValidationFailed(
            f"a password needs at least {MIN_PASSWORD} characters", field="password"
        )
    if len(password) > 1024:
        raise ValidationFailed("a password is at most 1024 characters", field="password")


# ------------------------------------------------------------------ throttling


@dataclass(frozen=True)
class Throttle:
    """At most ``per_account`` failed logins for one username, and ``per_address`` from
    one address, within ``window``; then wait until the oldest failure leaves it."""

    per_account: int = 5
    per_address: int = 20
    window: timedelta = field(default=timedelta(minutes=15))

    def check(
        self,
        *,
        account_failures: Sequence[datetime],
        address_failures: Sequence[datetime],
        now: datetime,
    ) -> None:
        since = now - self.window
        for failures, limit in (
            (account_failures, self.per_account),
            (address_failures, self.per_address),
        ):
            recent = sorted(f for f in failures if f > since)
            if len(recent) >= limit:
                until = recent[len(recent) - limit] + self.window
                seconds = max(1, int((until - now).total_seconds()) + 1)
                raise TooManyAttempts(
                    f"too many failed logins; try again in {seconds} s", retry_after=seconds
                )


# ------------------------------------------------------------------ masking


def mask_phone(value: str) -> str:
    """138****5678: the first three and last four digits stay (E.164 +86 is dropped)."""
    digits = value.removeprefix("+86") if value.startswith("+86") else value
    if len(digits) <= 7:
        return digits[:1] + "*" * max(len(digits) - 2, 1) + digits[-1:]
    return digits[:3] + "****" + digits[-4:]


def mask_email(value: str) -> str:
    """z***@example.com: the first character of the local part and the domain stay."""
    local, at, domain = value.partition("@")
    if not at:
        return mask_phone(value)
    return (local[:1] or "*") + "***@" + domain


MASKED_TYPES = {"phone": mask_phone, "email": mask_email}


def mask_identity(type_: str, value: str) -> str:
    masker = MASKED_TYPES.get(type_)
    return masker(value) if masker else value


# An identity key written into text: ``phone:+8613800130001``, or ``email:`` and an
# address, whose local part may hold any character up to its last ``@`` and a domain.
_PHONE_TEXT = re.compile(r"\bphone:(\+?\d+)")
_EMAIL_TEXT = re.compile(r"\bemail:(.+?@[A-Za-z0-9.-]+)")


def mask_key_text(text: str) -> str:
    """Masks identity keys written as ``phone:+86...`` or ``email:...`` inside text."""
    text = _PHONE_TEXT.sub(lambda m: f"phone:{mask_phone(m[1])}", text)
    return _EMAIL_TEXT.sub(lambda m: f"email:{mask_email(m[1])}", text)


def mask_value(value: object) -> object:
    """``mask_key_text`` applied through lists and dicts, for history data and merge
    records; a dict that is an identity row (``type`` and ``value``) has its value
    masked by its type."""
    if isinstance(value, str):
        return mask_key_text(value)
    if isinstance(value, list):
        return [mask_value(v) for v in value]
    if isinstance(value, dict):
        if isinstance(value.get("type"), str) and isinstance(value.get("value"), str):
            value = {**value, "value": mask_identity(value["type"], value["value"])}
        return {k: mask_value(v) for k, v in value.items()}
    return value
