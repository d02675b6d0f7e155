"""Alembic environment: migrations run against the engine bootstrap would build."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from quanyu.adapters.tables import metadata

config = context.config


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:
    from quanyu.adapters.db import make_engine

    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        run_with(conn)
        conn.commit()
else:
    run_with(connection)
