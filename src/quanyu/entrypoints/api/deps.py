"""Request dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from quanyu.services.uow import Platform


def platform(request: Request) -> Platform:
    p: Platform = request.app.state.platform
    return p


def actor(x_quanyu_actor: Annotated[str | None, Header(max_length=200)] = None) -> str:
    """Who is acting: the caller names itself until staff accounts and API keys arrive."""
    return f"api:{x_quanyu_actor}" if x_quanyu_actor else "api"


PlatformDep = Annotated[Platform, Depends(platform)]
ActorDep = Annotated[str, Depends(actor)]
