"""Bulk writes at the driver level, for the hot ingestion path.

SQLAlchemy Core costs tens of microseconds per row in parameter processing; here each
table's column types are turned once into plain converters. On PostgreSQL the writes of
one flush are sent in a single psycopg pipeline (one network round trip), a few rows as
one multi-row INSERT and many with ``COPY ... FROM STDIN`` (an executemany would make
the server run one statement per row). On SQLite rows go to the driver's
``executemany``. Values are stored exactly as the SQLAlchemy types in
:mod:`quanyu.adapters.tables` store them, so reads through Core see no difference.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timezone
from functools import lru_cache
from operator import itemgetter
from types import TracebackType
from typing import Any

from psycopg.types.json import Json
from sqlalchemy import JSON, Connection, Date, Table

from quanyu.adapters.tables import UtcDateTime
from quanyu.jsonfast import dumps_text

Converter = Callable[[Any], Any]
MULTI_ROW_MAX = 200  # PostgreSQL: up to this many rows in one INSERT, more by COPY


def naive_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    zone = value.tzinfo
    if zone is None:
        raise ValueError("naive datetime given to a UTC column")
    if zone is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None)


def sqlite_datetime(value: datetime | None) -> str | None:
    naive = naive_utc(value)
    return None if naive is None else naive.isoformat(sep=" ", timespec="microseconds")


def _sqlite_date(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _json_text(value: Any) -> str:
    return dumps_text(value)


def _identity(value: Any) -> Any:
    return value


@lru_cache(maxsize=512)
def _converters(table: Table, columns: tuple[str, ...], mode: str) -> tuple[Converter, ...]:
    """mode: ``sqlite``, ``pg`` (bound parameters) or ``copy`` (PostgreSQL COPY text)."""
    out: list[Converter] = []
    for name in columns:
        kind = table.c[name].type
        if isinstance(kind, UtcDateTime):
            out.append(sqlite_datetime if mode == "sqlite" else naive_utc)
        elif isinstance(kind, JSON):
            out.append(Json if mode == "pg" else _json_text)
        elif isinstance(kind, Date) and mode == "sqlite":
            out.append(_sqlite_date)
        else:
            out.append(_identity)
    return tuple(out)


def _tuples(
    rows: Sequence[Sequence[Any]], converters: tuple[Converter, ...]
) -> list[tuple[Any, ...]]:
    """Rows with each value converted, column by column; only the columns that need it
    are touched."""
    active = [(i, _MEMOISED.get(c, c)) for i, c in enumerate(converters) if c is not _identity]
    if not active or not rows:
        return list(map(tuple, rows))
    columns = list(zip(*rows, strict=True))
    for i, convert in active:
        columns[i] = tuple(map(convert, columns[i]))
    return list(zip(*columns, strict=True))


def _fixed_offset_cache(convert: Converter) -> Converter:
    """``convert`` with a cache for datetimes in UTC or a fixed offset.

    Timestamps repeat (the command's clock, an order's time on its lot, entry and
    events, across flushes too), so each distinct one is converted once. A datetime in
    a zone with daylight saving is converted directly: the two occurrences of a
    repeated hour compare and hash equal but are different instants."""
    memo = lru_cache(maxsize=1 << 16)(convert)

    def cached(value: Any) -> Any:
        if value is None or type(value.tzinfo) is not timezone:
            return convert(value)
        return memo(value)

    return cached


_MEMOISED: dict[Converter, Converter] = {
    naive_utc: _fixed_offset_cache(naive_utc),
    sqlite_datetime: _fixed_offset_cache(sqlite_datetime),
}


class BulkWriter:
    """Inserts and updates by id for one flush.

    On PostgreSQL a small flush (``largest`` rows in any one table at most
    MULTI_ROW_MAX, as for one order) goes in one pipeline; a large one uses COPY, which
    a pipeline cannot carry.
    """

    def __init__(self, conn: Connection, *, largest: int) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        self.pipelined = self.postgres and largest <= MULTI_ROW_MAX
        self._stack = contextlib.ExitStack()
        self._cursor: Any = None

    def __enter__(self) -> BulkWriter:
        if self.postgres:
            raw = self.conn.connection.dbapi_connection
            assert raw is not None
            if self.pipelined:
                self._stack.enter_context(raw.pipeline())
            self._cursor = raw.cursor()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.__exit__(kind, exc, tb)

    def insert(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        """Insert rows that all have the same keys."""
        if not rows:
            return
        columns = tuple(rows[0])
        values = (
            list(map(itemgetter(*columns), rows))
            if len(columns) > 1
            else [(row[columns[0]],) for row in rows]
        )
        names = ", ".join(columns)
        if not self.postgres:
            converted = _tuples(values, _converters(table, columns, "sqlite"))
            marks = ", ".join("?" * len(columns))
            sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"
            for i in range(0, len(converted), 5000):
                self.conn.exec_driver_sql(sql, converted[i : i + 5000])
            return
        if len(values) > MULTI_ROW_MAX:
            converters = _converters(table, columns, "copy")
            with self._cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
                for row in _tuples(values, converters):
                    copy.write_row(row)
            return
        converted = _tuples(values, _converters(table, columns, "pg"))
        group = "(" + ", ".join(["%s"] * len(columns)) + ")"
        sql = f"INSERT INTO {table.name} ({names}) VALUES " + ", ".join([group] * len(values))
        self._cursor.execute(sql, [v for row in converted for v in row])

    def update(
        self, table: Table, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
    ) -> None:
        """Set ``columns`` on rows given as (values..., id)."""
        converters = (*_converters(table, columns, "pg" if self.postgres else "sqlite"), _identity)
        converted = _tuples(rows, converters)
        if self.postgres:
            sets = ", ".join(f"{c} = %s" for c in columns)
            self._cursor.executemany(f"UPDATE {table.name} SET {sets} WHERE id = %s", converted)
        else:
            sets = ", ".join(f"{c} = ?" for c in columns)
            self.conn.exec_driver_sql(f"UPDATE {table.name} SET {sets} WHERE id = ?", converted)
