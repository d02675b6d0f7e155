"""The one place where settings, engine, reference cache and clock are wired together."""

from __future__ import annotations

from quanyu.adapters.db import make_engine
from quanyu.adapters.reference import ReferenceCache
from quanyu.clock import Clock, SystemClock
from quanyu.config import Settings
from quanyu.services.uow import Platform


def bootstrap(settings: Settings | None = None, *, clock: Clock | None = None) -> Platform:
    settings = settings or Settings()
    engine = make_engine(settings.database_url)
    return Platform(
        engine=engine,
        reference=ReferenceCache(engine, settings.reference_cache_seconds),
        clock=clock or SystemClock(),
        default_region=settings.default_region,
        analytics_path=str(settings.analytics_path),
        analytics_direct=settings.analytics_direct,
    )
