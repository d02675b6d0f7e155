"""Settings, read once by bootstrap from the environment (prefix ``QUANYU_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QUANYU_", extra="ignore")

    database_url: str = "sqlite:///./var/quanyu.db"
    analytics_path: Path = Path("./var/analytics.duckdb")
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    default_region: str = "CN"
    reference_cache_seconds: float = 5.0
