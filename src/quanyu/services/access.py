"""Staff accounts, console sessions, integration keys, data scopes and the audit log.

The API and the console both ask this module who is calling (a :class:`Principal`) and
whether a member is within that caller's scope; a member outside it is reported as not
found, so its existence does not leak.

Set-up mode: until the first staff account or integration key exists, the API is open
and acts as the system (as the CLI does). The first account or key closes it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, and_, delete, exists, insert, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from quanyu.adapters import tables as t
from quanyu.adapters.reference import ReferenceData
from quanyu.domain.access import (
    KEY_PERMISSIONS,
    ROLE_PERMISSIONS,
    Permission,
    Principal,
    PrincipalKind,
    Role,
    Scope,
    Throttle,
    staff_scope,
    validate_credentials,
    validate_language,
    validate_staff,
)
from quanyu.domain.errors import (
    AlreadyExists,
    Forbidden,
    NotAuthenticated,
    NotFound,
    ValidationFailed,
)
from quanyu.services.uow import Platform

SESSION_HOURS = 12
THROTTLE = Throttle()

_hasher = PasswordHasher()
# Verified against when the username is unknown, so that a miss costs what a hit costs.
_DUMMY_HASH = _hasher.hash("quanyu-dummy-password")


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def audit(
    conn: Connection,
    *,
    action: str,
    subject: str,
    detail: dict[str, Any],
    actor: str,
    at: datetime,
) -> None:
    """Append to the audit log: reveals, exports, manual points and tier changes."""
    conn.execute(
        insert(t.audit_log).values(
            action=action, subject=subject[:200], detail=detail, actor=actor, occurred_at=at
        )
    )


def audit_entries(
    platform: Platform, *, subject: str | None = None, action: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    query = select(t.audit_log).order_by(t.audit_log.c.id.desc()).limit(limit)
    if subject is not None:
        query = query.where(t.audit_log.c.subject == subject)
    if action is not None:
        query = query.where(t.audit_log.c.action == action)
    with platform.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


# ---------------------------------------------------------------- set-up mode

OPEN_RECHECK_SECONDS = 2.0


def credentials_exist(platform: Platform) -> bool:
    """Whether any staff account or integration key exists. Once true it stays true for
    the life of the process (accounts are deactivated, never deleted); while false it is
    checked again every 2 s, for accounts created by another process."""
    if platform.auth_closed:
        return True
    now = time.monotonic()
    if now - platform.auth_checked_at < OPEN_RECHECK_SECONDS:
        return False
    with platform.engine.connect() as conn:
        found = bool(
            conn.execute(select(exists(select(t.staff.c.id)))).scalar()
            or conn.execute(select(exists(select(t.api_keys.c.id)))).scalar()
        )
    platform.auth_closed = found
    platform.auth_checked_at = now
    return found


# ---------------------------------------------------------------- staff


def _staff_principal(conn: Connection, ref: ReferenceData, row: Any) -> Principal:
    role = Role(row.role)
    store_ids = [
        int(s)
        for s in conn.execute(
            select(t.staff_stores.c.store_id).where(t.staff_stores.c.staff_id == row.id)
        ).scalars()
    ]
    region_store_ids = [s.id for s in ref.stores.values() if row.region and s.region == row.region]
    return Principal(
        kind=PrincipalKind.STAFF,
        actor=f"staff:{row.username}",
        permissions=ROLE_PERMISSIONS[role],
        scope=staff_scope(
            role, store_ids=store_ids, region_store_ids=region_store_ids, guide_id=row.guide_id
        ),
        role=role,
        staff_id=int(row.id),
        language=row.language,
        display_name=row.display_name,
    )


def create_staff(
    platform: Platform,
    *,
    username: str,
    password: str,
    role: Role,
    display_name: str | None = None,
    stores: Sequence[str] = (),
    region: str | None = None,
    guide: str | None = None,
    language: str | None = None,
    actor: str,
) -> dict[str, Any]:
    validate_credentials(username, password)
    validate_staff(role=role, stores=stores, region=region, guide=guide)
    validate_language(language)
    password_hash = _hasher.hash(password)
    with platform.engine.begin() as conn:
        ref = platform.reference.get(conn)
        store_ids = []
        for i, code in enumerate(stores):
            if code not in ref.stores:
                raise ValidationFailed(f"unknown store {code!r}", field=f"stores[{i}]")
            store_ids.append(ref.stores[code].id)
        if region is not None and not any(s.region == region for s in ref.stores.values()):
            raise ValidationFailed(f"no store is in region {region!r}", field="region")
        guide_id = None
        if guide is not None:
            if guide not in ref.guides:
                raise ValidationFailed(f"unknown guide {guide!r}", field="guide")
            guide_id = ref.guides[guide].id
        taken = conn.execute(select(t.staff.c.id).where(t.staff.c.username == username)).first()
        if taken:
            raise AlreadyExists(f"staff account {username!r} already exists", field="username")
        staff_id = conn.execute(
            insert(t.staff)
            .values(
                username=username,
                display_name=display_name or username,
                password_hash=password_hash,
                role=role.value,
                region=region,
                guide_id=guide_id,
                language=language,
                active=True,
                created_by=actor,
                created_at=platform.clock.now(),
            )
            .returning(t.staff.c.id)
        ).scalar_one()
        if store_ids:
            conn.execute(
                insert(t.staff_stores),
                [{"staff_id": staff_id, "store_id": s} for s in sorted(set(store_ids))],
            )
        audit(
            conn,
            action="staff_create",
            subject=f"staff:{username}",
            detail={"role": role.value, "stores": list(stores), "region": region, "guide": guide},
            actor=actor,
            at=platform.clock.now(),
        )
    platform.auth_closed = True
    return staff_public(platform, int(staff_id))


def staff_public(platform: Platform, staff_id: int) -> dict[str, Any]:
    rows = list_staff(platform, staff_id=staff_id)
    if not rows:
        raise NotFound("staff", staff_id)
    return rows[0]


def list_staff(platform: Platform, *, staff_id: int | None = None) -> list[dict[str, Any]]:
    with platform.engine.connect() as conn:
        ref = platform.reference.get(conn)
        query = select(t.staff).order_by(t.staff.c.id)
        if staff_id is not None:
            query = query.where(t.staff.c.id == staff_id)
        rows = conn.execute(query).all()
        stores: dict[int, list[str]] = {}
        for s in conn.execute(select(t.staff_stores)):
            stores.setdefault(s.staff_id, []).append(ref.stores_by_id[s.store_id].code)
        return [
            {
                "id": r.id,
                "username": r.username,
                "display_name": r.display_name,
                "role": r.role,
                "stores": sorted(stores.get(r.id, [])),
                "region": r.region,
                "guide": ref.guides_by_id[r.guide_id].code if r.guide_id else None,
                "language": r.language,
                "active": bool(r.active),
                "created_at": r.created_at,
            }
            for r in rows
        ]


def set_active(platform: Platform, username: str, *, active: bool, actor: str) -> None:
    with platform.engine.begin() as conn:
        row = conn.execute(select(t.staff.c.id).where(t.staff.c.username == username)).first()
        if row is None:
            raise NotFound("staff", username)
        conn.execute(update(t.staff).where(t.staff.c.id == row.id).values(active=active))
        if not active:
            conn.execute(
                update(t.staff_sessions)
                .where(
                    t.staff_sessions.c.staff_id == row.id, t.staff_sessions.c.revoked_at.is_(None)
                )
                .values(revoked_at=platform.clock.now())
            )
        audit(
            conn,
            action="staff_activate" if active else "staff_deactivate",
            subject=f"staff:{username}",
            detail={},
            actor=actor,
            at=platform.clock.now(),
        )


def set_language(platform: Platform, staff_id: int, language: str | None) -> None:
    validate_language(language)
    with platform.engine.begin() as conn:
        conn.execute(update(t.staff).where(t.staff.c.id == staff_id).values(language=language))


# ---------------------------------------------------------------- sessions


def login(platform: Platform, *, username: str, password: str, address: str) -> tuple[str, str]:
    """Check the password (throttled per account and per address) and open a session.
    Returns ``(session token, csrf token)``; the token goes in the cookie only."""
    now = platform.clock.now()
    username = username.strip().lower()[:64]
    address = address[:64]
    since = now - THROTTLE.window
    with platform.engine.begin() as conn:
        account = conn.execute(
            select(t.login_failures.c.failed_at).where(
                t.login_failures.c.username == username, t.login_failures.c.failed_at > since
            )
        ).scalars()
        by_address = conn.execute(
            select(t.login_failures.c.failed_at).where(
                t.login_failures.c.address == address, t.login_failures.c.failed_at > since
            )
        ).scalars()
        THROTTLE.check(account_failures=list(account), address_failures=list(by_address), now=now)
        row = conn.execute(select(t.staff).where(t.staff.c.username == username)).first()
        ok = False
        try:
            ok = _hasher.verify(row.password_hash if row else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or row is None or not row.active:
            conn.execute(
                insert(t.login_failures).values(username=username, address=address, failed_at=now)
            )
            failed = True
        else:
            failed = False
            conn.execute(delete(t.login_failures).where(t.login_failures.c.username == username))
            token = secrets.token_urlsafe(32)
            csrf = secrets.token_urlsafe(24)
            conn.execute(
                insert(t.staff_sessions).values(
                    token_hash=_sha256(token),
                    staff_id=row.id,
                    csrf_token=csrf,
                    created_at=now,
                    expires_at=now + timedelta(hours=SESSION_HOURS),
                )
            )
            if _hasher.check_needs_rehash(row.password_hash):
                conn.execute(
                    update(t.staff)
                    .where(t.staff.c.id == row.id)
                    .values(password_hash=_hasher.hash(password))
                )
    if failed:
        # Committed above, so that the failure counts towards the throttle.
        raise NotAuthenticated("wrong username or password")
    return token, csrf


def session(platform: Platform, token: str) -> tuple[Principal, str]:
    """The principal and CSRF token of a live session; NotAuthenticated otherwise."""
    now = platform.clock.now()
    with platform.engine.connect() as conn:
        row = conn.execute(
            select(t.staff, t.staff_sessions.c.csrf_token)
            .join(t.staff_sessions, t.staff_sessions.c.staff_id == t.staff.c.id)
            .where(
                t.staff_sessions.c.token_hash == _sha256(token),
                t.staff_sessions.c.revoked_at.is_(None),
                t.staff_sessions.c.expires_at > now,
                t.staff.c.active.is_(True),
            )
        ).first()
        if row is None:
            raise NotAuthenticated("the session has ended; log in again")
        return _staff_principal(conn, platform.reference.get(conn), row), str(row.csrf_token)


def logout(platform: Platform, token: str) -> None:
    with platform.engine.begin() as conn:
        conn.execute(
            update(t.staff_sessions)
            .where(
                t.staff_sessions.c.token_hash == _sha256(token),
                t.staff_sessions.c.revoked_at.is_(None),
            )
            .values(revoked_at=platform.clock.now())
        )


def csrf_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


# ---------------------------------------------------------------- integration keys

KEY_PREFIX = "qk_"


def _key_scope_codes(
    ref: ReferenceData, channels: Sequence[str], stores: Sequence[str]
) -> tuple[list[str], list[str]]:
    for i, c in enumerate(channels):
        if c not in ref.channels:
            raise ValidationFailed(f"unknown channel {c!r}", field=f"channels[{i}]")
    for i, s in enumerate(stores):
        if s not in ref.stores:
            raise ValidationFailed(f"unknown store {s!r}", field=f"stores[{i}]")
    return sorted(set(channels)), sorted(set(stores))


def _new_key(
    conn: Connection,
    *,
    name: str,
    channels: list[str],
    stores: list[str],
    actor: str,
    now: datetime,
    rotated_from: int | None = None,
) -> dict[str, Any]:
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key_id = conn.execute(
        insert(t.api_keys)
        .values(
            prefix=prefix,
            secret_hash=_sha256(secret),
            name=name,
            channels=channels,
            stores=stores,
            created_by=actor,
            created_at=now,
            rotated_from_id=rotated_from,
        )
        .returning(t.api_keys.c.id)
    ).scalar_one()
    return {
        "id": int(key_id),
        "name": name,
        "prefix": prefix,
        "key": f"{KEY_PREFIX}{prefix}_{secret}",
        "channels": channels,
        "stores": stores,
        "created_at": now,
    }


def create_key(
    platform: Platform,
    *,
    name: str,
    channels: Sequence[str] = (),
    stores: Sequence[str] = (),
    actor: str,
) -> dict[str, Any]:
    """A new key. Its secret is shown once, here, and kept only as a hash."""
    name = name.strip()
    if not name:
        raise ValidationFailed("a key needs a name", field="name")
    now = platform.clock.now()
    with platform.engine.begin() as conn:
        ch, st = _key_scope_codes(platform.reference.get(conn), channels, stores)
        created = _new_key(conn, name=name, channels=ch, stores=st, actor=actor, now=now)
        audit(
            conn,
            action="key_create",
            subject=f"key:{created['prefix']}",
            detail={"name": name, "channels": ch, "stores": st},
            actor=actor,
            at=now,
        )
    platform.auth_closed = True
    return created


def rotate_key(
    platform: Platform, key_id: int, *, grace_minutes: int = 0, actor: str
) -> dict[str, Any]:
    """A new secret with the same name and scope; the old one stops working after
    ``grace_minutes`` (at once by default), so a channel system can switch over."""
    if not 0 <= grace_minutes <= 7 * 24 * 60:
        raise ValidationFailed("grace_minutes is 0 to 10080", field="grace_minutes")
    now = platform.clock.now()
    with platform.engine.begin() as conn:
        old = conn.execute(
            select(t.api_keys).where(t.api_keys.c.id == key_id).with_for_update()
        ).first()
        if old is None or old.revoked_at is not None or _expired(old.expires_at, now):
            raise NotFound("api key", key_id)
        created = _new_key(
            conn,
            name=old.name,
            channels=list(old.channels),
            stores=list(old.stores),
            actor=actor,
            now=now,
            rotated_from=old.id,
        )
        conn.execute(
            update(t.api_keys)
            .where(t.api_keys.c.id == old.id)
            .values(expires_at=now + timedelta(minutes=grace_minutes))
        )
        audit(
            conn,
            action="key_rotate",
            subject=f"key:{old.prefix}",
            detail={"new_prefix": created["prefix"], "grace_minutes": grace_minutes},
            actor=actor,
            at=now,
        )
    return created


def revoke_key(platform: Platform, key_id: int, *, actor: str) -> None:
    now = platform.clock.now()
    with platform.engine.begin() as conn:
        old = conn.execute(select(t.api_keys).where(t.api_keys.c.id == key_id)).first()
        if old is None:
            raise NotFound("api key", key_id)
        if old.revoked_at is None:
            conn.execute(update(t.api_keys).where(t.api_keys.c.id == key_id).values(revoked_at=now))
            audit(
                conn,
                action="key_revoke",
                subject=f"key:{old.prefix}",
                detail={},
                actor=actor,
                at=now,
            )


def list_keys(platform: Platform) -> list[dict[str, Any]]:
    now = platform.clock.now()
    with platform.engine.connect() as conn:
        return [
            {
                "id": r.id,
                "name": r.name,
                "prefix": r.prefix,
                "channels": list(r.channels),
                "stores": list(r.stores),
                "created_by": r.created_by,
                "created_at": r.created_at,
                "expires_at": r.expires_at,
                "revoked_at": r.revoked_at,
                "active": r.revoked_at is None and not _expired(r.expires_at, now),
                "rotated_from_id": r.rotated_from_id,
            }
            for r in conn.execute(select(t.api_keys).order_by(t.api_keys.c.id))
        ]


def _expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and expires_at <= now


def key_principal(platform: Platform, token: str) -> Principal:
    """The principal of an integration key; NotAuthenticated when it is not a live key."""
    body = token.removeprefix(KEY_PREFIX)
    prefix, _, secret = body.partition("_")
    if not token.startswith(KEY_PREFIX) or not prefix or not secret or len(prefix) > 16:
        raise NotAuthenticated("not a Quanyu API key")
    now = platform.clock.now()
    with platform.engine.connect() as conn:
        row = conn.execute(select(t.api_keys).where(t.api_keys.c.prefix == prefix)).first()
    if (
        row is None
        or not hmac.compare_digest(row.secret_hash, _sha256(secret))
        or row.revoked_at is not None
        or _expired(row.expires_at, now)
    ):
        raise NotAuthenticated("the API key is unknown, revoked or expired")
    return Principal(
        kind=PrincipalKind.KEY,
        actor=f"key:{row.prefix}:{row.name}"[:190],
        permissions=KEY_PERMISSIONS,
        key_id=int(row.id),
        channels=frozenset(row.channels),
        key_stores=frozenset(row.stores),
    )


def check_channel_scope(
    principal: Principal, *, channel: str | None, store: str | None, check_store: bool = True
) -> None:
    """An integration key acts only for its channels and stores; a request that names no
    channel (or store) is refused by a key limited to some."""
    if principal.kind is not PrincipalKind.KEY:
        return
    if principal.channels and channel not in principal.channels:
        raise Forbidden(
            f"this key is not allowed for channel {channel!r}",
            field="channel",
            permission="channel",
        )
    if (
        check_store
        and principal.key_stores
        and (store is None or store not in principal.key_stores)
    ):
        raise Forbidden(
            f"this key is not allowed for store {store!r}", field="store", permission="store"
        )


# ---------------------------------------------------------------- member scope


def member_clause(scope: Scope) -> ColumnElement[bool]:
    """A filter on ``profiles`` keeping the members ``scope`` sees."""
    if scope.everything:
        return t.profiles.c.id.is_not(None)
    parts: list[ColumnElement[bool]] = []
    if scope.stores:
        parts.append(t.profiles.c.home_store_id.in_(sorted(scope.stores)))
    # An alias, so that the EXISTS never correlates with a memberships join outside it.
    m = t.memberships.alias("scope_memberships")
    member_parts: list[ColumnElement[bool]] = []
    if scope.stores:
        member_parts.append(m.c.store_id.in_(sorted(scope.stores)))
    if scope.guides:
        member_parts.append(m.c.guide_id.in_(sorted(scope.guides)))
    if member_parts:
        parts.append(
            exists(
                select(m.c.id)
                .where(
                    m.c.profile_id == t.profiles.c.id,
                    m.c.status == "active",
                    or_(*member_parts),
                )
                .correlate(t.profiles)
            )
        )
    if not parts:
        return t.profiles.c.id.is_(None)
    return or_(*parts)


def visible(conn: Connection, scope: Scope, profile_id: int) -> bool:
    if scope.everything:
        return True
    row = conn.execute(
        select(t.profiles.c.id).where(and_(t.profiles.c.id == profile_id, member_clause(scope)))
    ).first()
    return row is not None


def ensure_visible(conn: Connection, scope: Scope, profile_id: int) -> int:
    """The current profile id of ``profile_id`` when ``scope`` sees it; NotFound
    otherwise, whether it is missing or out of scope."""
    from quanyu.services.members import current_profile_id  # noqa: PLC0415 - avoids a cycle

    pid = current_profile_id(conn, profile_id)
    if not visible(conn, scope, pid):
        raise NotFound("member", profile_id)
    return pid


def check_member(platform: Platform, principal: Principal, profile_id: int) -> int:
    with platform.engine.connect() as conn:
        return ensure_visible(conn, principal.scope, profile_id)


def reveal(platform: Platform, principal: Principal, profile_id: int) -> list[dict[str, Any]]:
    """The member's identities unmasked, for a principal allowed to reveal them. Every
    reveal is audited."""
    from quanyu.services.members import identities_of  # noqa: PLC0415

    if not principal.can(Permission.REVEAL_PII):
        raise Forbidden(
            "revealing phone and e-mail needs the reveal permission", permission="reveal_pii"
        )
    with platform.engine.begin() as conn:
        pid = ensure_visible(conn, principal.scope, profile_id)
        found = identities_of(conn, pid)
        audit(
            conn,
            action="reveal",
            subject=f"member:{pid}",
            detail={"types": sorted({i["type"] for i in found if i["type"] in ("phone", "email")})},
            actor=principal.actor,
            at=platform.clock.now(),
        )
    return found


def scoped_filters(
    platform: Platform, principal: Principal, filters: dict[str, list[str]]
) -> dict[str, list[str]]:
    """KPI filters narrowed to what the principal sees: a store or region manager's
    figures are those of their stores, a guide's those of their bound members."""
    scope = principal.scope
    if scope.everything:
        return filters
    ref = platform.reference.get()
    out = dict(filters)
    if scope.stores:
        mine = {ref.stores_by_id[s].code for s in scope.stores if s in ref.stores_by_id}
        asked = set(filters.get("store") or mine)
        out["store"] = sorted(asked & mine) or ["-"]  # "-" matches no store
    if scope.guides:
        mine = {ref.guides_by_id[g].code for g in scope.guides if g in ref.guides_by_id}
        asked = set(filters.get("guide") or mine)
        out["guide"] = sorted(asked & mine) or ["-"]
    if scope.nothing:
        out["store"] = ["-"]
    return out


def check_identities(platform: Platform, principal: Principal, keys: Iterable[Any]) -> None:
    """Staff who see part of the members may not reach, by naming its identities (to
    register or merge it), a member they cannot see: NotFound, as for a lookup."""
    if principal.scope.everything:
        return
    from quanyu.services.members import profile_with  # noqa: PLC0415 - avoids a cycle

    with platform.engine.connect() as conn:
        for key in keys:
            try:
                pid = profile_with(conn, key)
            except NotFound:
                continue  # nobody holds it yet
            if not visible(conn, principal.scope, pid):
                raise NotFound("identity", str(key))


def check_member_of(platform: Platform, principal: Principal, member_id: int | None) -> None:
    """A record that belongs to a member (a coupon, a reservation) is not found for staff
    who cannot see that member."""
    if member_id is not None and not principal.scope.everything:
        check_member(platform, principal, member_id)
