"""Staff accounts, integration keys, the audit log, and who am I."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from quanyu.domain.access import Role
from quanyu.entrypoints.api.auth import PrincipalDep
from quanyu.entrypoints.api.deps import BIGINT, ActorDep, PlatformDep
from quanyu.services import access

router = APIRouter(tags=["access"])

Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
KeyId = Annotated[int, Path(ge=1, le=BIGINT)]


class StaffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Annotated[str, Field(min_length=2, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]
    role: Role
    display_name: Annotated[str | None, Field(max_length=200)] = None
    stores: Annotated[list[Code], Field(max_length=200)] = []
    region: Annotated[str | None, Field(min_length=1, max_length=100)] = None
    guide: Code | None = None
    language: Annotated[str | None, Field(max_length=8)] = None


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=200)]
    channels: Annotated[list[Code], Field(max_length=100)] = []
    stores: Annotated[list[Code], Field(max_length=1000)] = []


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grace_minutes: Annotated[int, Field(ge=0, le=10080)] = 0


@router.get("/me")
def me(who: PrincipalDep) -> dict[str, Any]:
    return {
        "kind": who.kind.value,
        "actor": who.actor,
        "role": who.role.value if who.role else None,
        "permissions": sorted(p.value for p in who.permissions),
        "sees_all_members": who.scope.everything,
        "language": who.language,
    }


@router.get("/staff")
def list_staff(p: PlatformDep) -> list[dict[str, Any]]:
    return access.list_staff(p)


@router.post("/staff", status_code=201)
def create_staff(body: StaffIn, p: PlatformDep, actor: ActorDep) -> dict[str, Any]:
    return access.create_staff(p, actor=actor, **body.model_dump())


@router.get("/api-keys")
def list_keys(p: PlatformDep) -> list[dict[str, Any]]:
    return access.list_keys(p)


@router.post("/api-keys", status_code=201)
def create_key(body: KeyIn, p: PlatformDep, actor: ActorDep) -> dict[str, Any]:
    """The key is in the answer once; only its hash is kept."""
    return access.create_key(p, actor=actor, **body.model_dump())


@router.post("/api-keys/{key_id}/rotate", status_code=201)
def rotate_key(
    key_id: KeyId, p: PlatformDep, actor: ActorDep, body: RotateIn | None = None
) -> dict[str, Any]:
    grace = body.grace_minutes if body else 0
    return access.rotate_key(p, key_id, grace_minutes=grace, actor=actor)


@router.delete("/api-keys/{key_id}", status_code=204)
def revoke_key(key_id: KeyId, p: PlatformDep, actor: ActorDep) -> Response:
    access.revoke_key(p, key_id, actor=actor)
    return Response(status_code=204)


@router.get("/audit-log")
def audit_log(
    p: PlatformDep,
    subject: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    return access.audit_entries(p, subject=subject, action=action, limit=limit)
