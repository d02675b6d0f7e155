"""Settings, read once by bootstrap from the environment (prefix ``QUANYU_``)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QUANYU_", extra="ignore")

    database_url: str = "sqlite:///./var/quanyu.db"
    analytics_path: Path = Path("./var/analytics.duckdb")
    # Run KPIs, tags and segments on the operational database (PostgreSQL) directly,
    # instead of the DuckDB copy.
    analytics_direct: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int | None = Field(default=None, ge=1, le=256)
    default_region: str = "CN"
    reference_cache_seconds: float = 5.0

    @property
    def embedded(self) -> bool:
        """Whether the database is the embedded SQLite file."""
        return self.database_url.startswith("sqlite")

    def worker_count(self, cores: int | None = None) -> int:
        """API worker processes: as set, else one on SQLite, which runs one write at a
        time, and one per usable core on PostgreSQL, at most 4. Each worker holds up to
        20 database connections, and PostgreSQL allows 100 by default."""
        if self.workers is not None:
            return self.workers
        if self.embedded:
            return 1
        return max(1, min(cores if cores is not None else _usable_cores(), MAX_DEFAULT_WORKERS))


MAX_DEFAULT_WORKERS = 4


def _usable_cores() -> int:
    """The cores this process may run on (its affinity), not all the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - platforms without affinity
        return os.cpu_count() or 1
