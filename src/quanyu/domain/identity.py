"""OneID: identity keys, their normalisation, and the deterministic resolution plan.

An identity key is (type, namespace, value). The namespace separates values that
are only unique within a scope: a WeChat openid within one app id, a platform buyer id
within one platform. Phones are stored as E.164, e-mails case-folded.

Resolution is pure: given the keys in a payload and who currently owns each, it says
which profile survives, which profiles merge into it and which keys are new.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import phonenumbers

from quanyu.domain.errors import ValidationFailed


class IdentityType(enum.StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    WECHAT_UNIONID = "wechat_unionid"
    WECHAT_OPENID = "wechat_openid"
    PLATFORM_BUYER = "platform_buyer"
    MEMBER_CARD = "member_card"


MAX_VALUE = 255
MAX_NAMESPACE = 128
NAMESPACED = {IdentityType.WECHAT_OPENID, IdentityType.PLATFORM_BUYER}


@dataclass(frozen=True, order=True)
class IdentityKey:
    type: IdentityType
    namespace: str
    value: str

    def __str__(self) -> str:
        ns = f"{self.namespace}:" if self.namespace else ""
        return f"{self.type.value}:{ns}{self.value}"


def normalise_phone(raw: str, default_region: str = "CN", *, field: str = "phone") -> str:
    """Return the E.164 form of ``raw`` or raise ValidationFailed naming ``field``."""
    e164 = _e164(raw, default_region)
    if e164 is None:
        raise ValidationFailed(f"{raw!r} is not a valid phone number", field=field)
    return e164


def _mobile_patterns() -> dict[str, tuple[str, re.Pattern[str]]]:
    """Per region with a mobile plan of one fixed length: the country code and a pattern
    built from phonenumbers' own metadata for a bare mobile number of that length."""
    out: dict[str, tuple[str, re.Pattern[str]]] = {}
    for region in ("CN",):
        meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
        assert meta is not None and meta.mobile is not None and meta.general_desc is not None
        lengths = meta.mobile.possible_length
        mobile, general = (
            meta.mobile.national_number_pattern,
            meta.general_desc.national_number_pattern,
        )
        if len(lengths) != 1 or mobile is None or general is None:
            continue
        pattern = re.compile(rf"(?=(?:{general})$)(?:{mobile})$")
        out[region] = (f"+{meta.country_code}", pattern)
    return out


_MOBILE = _mobile_patterns()


def _fast_mobile(raw: str, default_region: str) -> str | None:
    """The E.164 form of a bare domestic mobile number, or None to ask phonenumbers.

    Only a number that phonenumbers itself would accept unchanged is answered here (a
    test compares the two); anything else takes the full parser."""
    plan = _MOBILE.get(default_region)
    if plan is None or not raw.isascii() or not raw.isdigit():
        return None
    prefix, pattern = plan
    return prefix + raw if pattern.match(raw) else None


@functools.lru_cache(maxsize=262_144)
def _e164(raw: str, default_region: str) -> str | None:
    """Parsing is costly and the same numbers recur across orders: cache the answers."""
    return _fast_mobile(raw, default_region) or parse_e164(raw, default_region)


def parse_e164(raw: str, default_region: str) -> str | None:
    """The E.164 form by phonenumbers' full parser and validation, or None."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def normalise_email(raw: str, *, field: str = "email") -> str:
    value = raw.strip().casefold()
    local, _, domain = value.partition("@")
    if (
        not local
        or "." not in domain
        or "@" in domain
        or any(c.isspace() for c in value)
        or domain.startswith(".")
    ):
        raise ValidationFailed(f"{raw!r} is not an e-mail address", field=field)
    return value


def make_key(
    type_: str | IdentityType,
    value: str,
    namespace: str | None = None,
    *,
    default_region: str = "CN",
    field: str = "identities",
) -> IdentityKey:
    """Validate and normalise one identity into its key."""
    try:
        itype = IdentityType(type_)
    except ValueError as exc:
        allowed = ", ".join(t.value for t in IdentityType)
        raise ValidationFailed(
            f"unknown identity type {type_!r}; use one of {allowed}", field=f"{field}.type"
        ) from exc
    raw = value.strip()
    if not raw:
        raise ValidationFailed("identity value is empty", field=f"{field}.value")
    ns = (namespace or "").strip()
    if itype in NAMESPACED and not ns:
        raise ValidationFailed(
            f"{itype.value} needs a namespace (the app id or platform)",
            field=f"{field}.namespace",
        )
    if itype not in NAMESPACED:
        ns = ""
    if itype is IdentityType.PHONE:
        raw = normalise_phone(raw, default_region, field=f"{field}.value")
    elif itype is IdentityType.EMAIL:
        raw = normalise_email(raw, field=f"{field}.value")
    elif itype is IdentityType.MEMBER_CARD:
        raw = raw.upper()
    if len(raw) > MAX_VALUE:  # normalising can lengthen a value ("ß" folds to "ss")
        raise ValidationFailed(f"at most {MAX_VALUE} characters", field=f"{field}.value")
    if len(ns) > MAX_NAMESPACE:
        raise ValidationFailed(f"at most {MAX_NAMESPACE} characters", field=f"{field}.namespace")
    return IdentityKey(itype, ns, raw)


@dataclass(frozen=True)
class ProfileRef:
    """What resolution needs to know about an existing profile."""

    id: int
    is_member: bool
    registered_at: datetime | None
    created_at: datetime


def survivor_order(p: ProfileRef) -> tuple[bool, datetime, datetime, int]:
    """Members beat customers; then the earliest registration, the oldest profile, the lowest id."""
    return (not p.is_member, p.registered_at or p.created_at, p.created_at, p.id)


@dataclass(frozen=True)
class ResolutionPlan:
    survivor: ProfileRef | None  # None: create a new profile
    absorbed: tuple[ProfileRef, ...]
    new_keys: tuple[IdentityKey, ...]


def plan_resolution(
    keys: Iterable[IdentityKey], owners: Mapping[IdentityKey, ProfileRef]
) -> ResolutionPlan:
    """Decide who a payload's identities belong to.

    Every key owned by a profile pulls that profile in; if more than one profile is
    pulled in they merge into the survivor chosen by :func:`survivor_order`.
    """
    unique = sorted(set(keys))
    found: dict[int, ProfileRef] = {}
    for key in unique:
        owner = owners.get(key)
        if owner is not None:
            found[owner.id] = owner
    new_keys = tuple(k for k in unique if k not in owners)
    if not found:
        return ResolutionPlan(None, (), new_keys)
    ranked = sorted(found.values(), key=survivor_order)
    return ResolutionPlan(ranked[0], tuple(ranked[1:]), new_keys)
