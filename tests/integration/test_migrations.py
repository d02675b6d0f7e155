"""The Alembic migrations build exactly the schema the code declares, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from quanyu.adapters.tables import metadata
from quanyu.services.uow import Platform


def test_migrations_produce_the_schema_declared_in_tables(platform: Platform) -> None:
    with platform.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
