"""Bulk inserts at the driver level, for the hot ingestion path.

SQLAlchemy Core costs tens of microseconds per row in parameter processing; here each
table's column types are turned once into plain converters. On PostgreSQL several rows
go in with ``COPY ... FROM STDIN`` (a pipelined executemany still makes the server run
one statement per row); on SQLite with the driver's ``executemany``. Values are stored
exactly as the SQLAlchemy types in :mod:`quanyu.adapters.tables` store them, so reads
through Core see no difference.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from psycopg.types.json import Json
from sqlalchemy import JSON, Connection, Date, Table

from quanyu.adapters.tables import UtcDateTime

Converter = Callable[[Any], Any]


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC).replace(tzinfo=None)


def _sqlite_datetime(value: datetime | None) -> str | None:
    naive = _naive_utc(value)
    return None if naive is None else naive.isoformat(sep=" ", timespec="microseconds")


def _sqlite_date(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _sqlite_json(value: Any) -> str:
    return json.dumps(value)


def _identity(value: Any) -> Any:
    return value


@lru_cache(maxsize=256)
def _plan(
    table: Table, columns: tuple[str, ...], dialect: str
) -> tuple[str, tuple[Converter, ...]]:
    postgres = dialect == "postgresql"
    converters: list[Converter] = []
    for name in columns:
        kind = table.c[name].type
        if isinstance(kind, UtcDateTime):
            converters.append(_naive_utc if postgres else _sqlite_datetime)
        elif isinstance(kind, JSON):
            converters.append(Json if postgres else _sqlite_json)
        elif isinstance(kind, Date):
            converters.append(_identity if postgres else _sqlite_date)
        else:
            converters.append(_identity)
    mark = "%s" if postgres else "?"
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join([mark] * len(columns))})"
    )
    return sql, tuple(converters)


def _copy_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@lru_cache(maxsize=256)
def _copy_plan(table: Table, columns: tuple[str, ...]) -> tuple[str, tuple[Converter, ...]]:
    converters: list[Converter] = []
    for name in columns:
        kind = table.c[name].type
        if isinstance(kind, UtcDateTime):
            converters.append(_naive_utc)
        elif isinstance(kind, JSON):
            converters.append(_copy_json)
        else:
            converters.append(_identity)
    return f"COPY {table.name} ({', '.join(columns)}) FROM STDIN", tuple(converters)


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows that all have the same keys."""
    if not rows:
        return
    columns = tuple(rows[0])
    postgres = conn.dialect.name == "postgresql"
    if postgres and len(rows) > 1:
        sql, converters = _copy_plan(table, columns)
        pairs = tuple(zip(columns, converters, strict=True))
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(tuple(convert(row[name]) for name, convert in pairs))
        return
    sql, converters = _plan(table, columns, conn.dialect.name)
    pairs = tuple(zip(columns, converters, strict=True))
    params = [tuple(convert(row[name]) for name, convert in pairs) for row in rows]
    if len(params) == 1:
        conn.exec_driver_sql(sql, params[0])
    else:
        conn.exec_driver_sql(sql, params)
