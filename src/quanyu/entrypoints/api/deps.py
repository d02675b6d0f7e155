"""Request dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request

from quanyu.domain.access import PrincipalKind
from quanyu.services.uow import Platform

# Dependencies are ``async def`` so that FastAPI calls them on the event loop: a plain
# ``def`` dependency costs each request a round trip through the thread pool.


async def platform(request: Request) -> Platform:
    p: Platform = request.app.state.platform
    return p


async def actor(
    request: Request, x_quanyu_actor: Annotated[str | None, Header(max_length=190)] = None
) -> str:
    """Who is acting: the staff account or integration key (``entrypoints/api/auth.py``
    puts it on the request first); in set-up mode the caller names itself."""
    principal = getattr(request.state, "principal", None)
    if principal is not None and principal.kind is not PrincipalKind.SYSTEM:
        return str(principal.actor)
    return f"api:{x_quanyu_actor}" if x_quanyu_actor else "api"


PlatformDep = Annotated[Platform, Depends(platform)]
BIGINT = 2**63 - 1
MemberId = Annotated[int, Path(ge=1, le=BIGINT)]
EntityId = Annotated[int, Path(ge=1, le=BIGINT)]
BeforeId = Annotated[int | None, Query(ge=1, le=BIGINT)]
ActorDep = Annotated[str, Depends(actor)]
