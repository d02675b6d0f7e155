"""Hot reads at the driver level, for order and refund ingestion.

Building and executing a SQLAlchemy Core SELECT costs about 0.2 ms of Python per
statement (statement construction, cache key, result metadata), several times the
cost of the query itself on an indexed key. The handful of reads every order makes go
through the DB-API cursor instead, as plain SQL with ``%s`` placeholders (rewritten to
``?`` for SQLite), returning tuples. Stored values are turned back into exactly what
the Core types in :mod:`quanyu.adapters.tables` return (``tables.stored_utc`` for
timestamps), and bound timestamps are written as :mod:`quanyu.adapters.bulk` writes
them. The integration tests run every one of these reads on both databases. An ``IN``
list must not be empty (``IN ()`` is an error on PostgreSQL): callers skip the query
instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection

from quanyu.adapters.bulk import naive_utc, sqlite_datetime


@lru_cache(maxsize=256)
def marks(n: int) -> str:
    """``%s, %s, ...``: the placeholders of an IN list of ``n`` (at least 1) values."""
    if n < 1:
        raise ValueError("an IN list needs at least one value")
    return ", ".join(["%s"] * n)


@lru_cache(maxsize=512)
def _qmark(sql: str) -> str:
    return sql.replace("%s", "?")


class Reader:
    """Plain SQL on the connection's driver, inside the connection's transaction."""

    def __init__(self, conn: Connection) -> None:
        self.postgres = conn.dialect.name == "postgresql"
        raw = conn.connection.driver_connection
        assert raw is not None
        self._cursor: Any = raw.cursor()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self._cursor
        cursor.execute(sql if self.postgres else _qmark(sql), params)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows

    def json(self, value: Any) -> Any:
        """A stored JSON column's value: psycopg decodes it, sqlite3 returns the text."""
        return value if self.postgres or value is None else json.loads(value)

    def utc_param(self, value: datetime) -> Any:
        """A bound UTC timestamp as the column stores it (naive UTC; text on SQLite)."""
        return naive_utc(value) if self.postgres else sqlite_datetime(value)


def day(value: Any) -> date:
    """A stored date (text on SQLite)."""
    if isinstance(value, date):
        return value
    return date.fromisoformat(value)


def day_or_none(value: Any) -> date | None:
    return None if value is None else day(value)
