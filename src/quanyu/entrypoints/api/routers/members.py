"""Members: register, lookup by any identity, 360 summary, identities, history, merges."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response

from quanyu.domain.orders import IdentityInput
from quanyu.entrypoints.api.auth import PrincipalDep
from quanyu.entrypoints.api.deps import ActorDep, BeforeId, EntityId, MemberId, PlatformDep
from quanyu.entrypoints.api.schemas import RegistrationIn, RegistrationOut
from quanyu.services import access, members

router = APIRouter(tags=["members"])


@router.post("/members", status_code=201, response_model=RegistrationOut)
def register(
    body: RegistrationIn, p: PlatformDep, actor: ActorDep, who: PrincipalDep, response: Response
) -> dict[str, Any]:
    access.check_channel_scope(who, channel=body.channel, store=body.store)
    reg = members.Registration(
        identities=tuple(IdentityInput(i.type, i.value, i.namespace) for i in body.identities),
        **body.model_dump(exclude={"identities"}),
    )
    access.check_identities(p, who, members.registration_keys(p, reg))
    result = members.register(p, reg, actor=actor)
    if not result["created"]:
        response.status_code = 200
    return result


@router.get("/members/lookup")
def lookup(
    p: PlatformDep,
    who: PrincipalDep,
    type: str = Query(..., max_length=32),
    value: str = Query(..., min_length=1, max_length=255),
    namespace: str | None = Query(None, max_length=128),
) -> dict[str, Any]:
    found = members.lookup(p, type, value, namespace, principal=who)
    return members.summary(p, found, principal=who)


@router.get("/members/{member_id}")
def summary(member_id: MemberId, p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    """Phone and e-mail come masked for staff and keys; ``POST .../reveal`` shows them."""
    return members.summary(p, member_id, principal=who)


@router.get("/members/{member_id}/identities")
def identities(member_id: MemberId, p: PlatformDep, who: PrincipalDep) -> list[dict[str, Any]]:
    return members.member_identities(p, member_id, principal=who)


@router.post("/members/{member_id}/reveal")
def reveal(member_id: MemberId, p: PlatformDep, who: PrincipalDep) -> list[dict[str, Any]]:
    """The member's identities unmasked. Needs the reveal permission; audited."""
    return access.reveal(p, who, member_id)


@router.get("/members/{member_id}/history")
def history(
    member_id: MemberId,
    p: PlatformDep,
    who: PrincipalDep,
    limit: int = Query(100, ge=1, le=1000),
    before_id: BeforeId = None,
) -> list[dict[str, Any]]:
    return members.member_history(p, member_id, limit=limit, before_id=before_id, principal=who)


@router.get("/members/{member_id}/merges")
def member_merges(member_id: MemberId, p: PlatformDep) -> list[dict[str, Any]]:
    return members.merges_of(p, member_id)


@router.get("/merges")
def list_merges(p: PlatformDep, limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
    return members.merges_of(p, limit=limit)


@router.get("/merges/{merge_id}")
def merge_detail(merge_id: EntityId, p: PlatformDep, who: PrincipalDep) -> dict[str, Any]:
    return members.merge_detail(p, merge_id, principal=who)
