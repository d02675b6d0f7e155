"""create_app(): the FastAPI application over a bootstrapped Platform."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI

from quanyu.entrypoints.api import errors
from quanyu.entrypoints.api.auth import authorize
from quanyu.entrypoints.api.routers import (
    access,
    assortment,
    benefits,
    coupons,
    insight,
    mall,
    members,
    orders,
    points,
    reports,
    setup,
    tiers,
)
from quanyu.entrypoints.console import pages
from quanyu.services import insight as insight_service
from quanyu.services.uow import Platform


def create_app(platform: Platform, *, background: bool = False) -> FastAPI:
    """The API and console over ``platform``. With ``background``, the analytics store
    is refreshed by a thread while the app runs, so no request waits for a refresh."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if background:
            insight_service.analytics(platform).start_background()
        try:
            yield
        finally:
            if background:
                insight_service.analytics(platform).stop_background()

    app = FastAPI(
        lifespan=lifespan,
        title="Quanyu",
        version="0.1.0",
        description=(
            "One member platform across every channel: OneID, orders, points, tiers, "
            "coupons, benefits, the points mall and channel assortment."
        ),
    )
    app.state.platform = platform
    errors.install(app, html=pages.html_error)
    # Orders first: routes are matched in order, and orders are the hot path.
    for module in (
        orders,
        members,
        points,
        tiers,
        coupons,
        benefits,
        mall,
        assortment,
        reports,
        insight,
        setup,
        access,
    ):
        app.include_router(module.router, prefix="/api/v1", dependencies=[Depends(authorize)])

    pages.install(app)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def app_from_env() -> FastAPI:
    """The ASGI factory uvicorn calls (``quanyu serve``): settings from the environment."""
    from quanyu.bootstrap import bootstrap  # noqa: PLC0415 - only when serving

    return create_app(bootstrap(), background=True)
