"""The storage floor: the time to write exactly the rows an ingestion run wrote, with
the real schema (every index and constraint), and nothing else.

An ingestion run is compared with this floor as a ratio. The rows are copied from the
run's database into a fresh one: everything that existed before the run untimed, then
the run's own rows timed, table by table, with the fastest plain driver path
(``executemany`` on SQLite, ``COPY`` on PostgreSQL) in one transaction.
"""

from __future__ import annotations

import time
from typing import Any

from psycopg.types.json import Json
from sqlalchemy import Engine, Table, func, select

from quanyu.adapters import tables as t
from quanyu.adapters.db import make_engine
from quanyu.adapters.migrate import upgrade
from quanyu.services.working_set import FLUSHED_TABLES

INGESTION_TABLES = FLUSHED_TABLES  # every table an ingestion run writes rows into


def high_water(engine: Engine) -> dict[str, int]:
    """The largest id in each ingestion table: rows above it are the run's."""
    with engine.connect() as conn:
        return {
            table.name: conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()
            for table in INGESTION_TABLES
        }


def _rows(engine: Engine, table: Table, above: int | None, upto: int | None) -> list[Any]:
    sql = f"SELECT * FROM {table.name}"
    if above is not None:
        sql += f" WHERE id > {above}"
    elif upto is not None:
        sql += f" WHERE id <= {upto}"
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(sql)
        rows = cur.fetchall()
    finally:
        raw.close()
    if engine.dialect.name == "postgresql":
        return [tuple(Json(v) if isinstance(v, dict | list) else v for v in r) for r in rows]
    return list(rows)


def _without_payload(table: Table, rows: list[Any], postgres: bool) -> list[Any]:
    """The rows with their stored payload emptied (it repeats the order and its lines)."""
    if "payload" not in table.c:
        return rows
    i = list(table.c.keys()).index("payload")
    empty = Json({}) if postgres else "{}"
    return [(*r[:i], empty, *r[i + 1 :]) for r in rows]


def _drop_foreign_keys(cur: Any) -> None:
    cur.execute(
        "DO $$ DECLARE r record; BEGIN "
        "FOR r IN SELECT conrelid::regclass AS tbl, conname FROM pg_constraint "
        "WHERE contype = 'f' LOOP "
        "EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.tbl, r.conname); "
        "END LOOP; END $$"
    )


def _write(cur: Any, postgres: bool, table: Table, rows: list[Any]) -> None:
    if not rows:
        return
    columns = ", ".join(c.name for c in table.columns)
    if postgres:
        with cur.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        marks = ", ".join("?" * len(table.columns))
        cur.executemany(f"INSERT INTO {table.name} ({columns}) VALUES ({marks})", rows)


def storage_floor_seconds(
    source: Engine,
    target_url: str,
    before: dict[str, int],
    *,
    foreign_keys: bool = True,
    history: bool = True,
    payload: bool = True,
) -> float:
    """Copy ``source`` into the empty database at ``target_url``; time only the run's rows.

    The keyword arguments measure leaner designs than the real one: without foreign
    keys, without the history rows (history derived from orders and the ledger
    instead), and without the stored copy of each order's payload."""
    target = make_engine(target_url)
    upgrade(target)
    postgres = target.dialect.name == "postgresql"
    ingestion = {table.name: table for table in INGESTION_TABLES}
    raw = target.raw_connection()
    try:
        cur = raw.cursor()
        if not foreign_keys:
            if postgres:
                _drop_foreign_keys(cur)
                raw.commit()
            else:
                cur.execute("PRAGMA foreign_keys=OFF")
        if not postgres:  # the engine's SQLite connections leave transactions to us
            cur.execute("BEGIN")
        for table in t.metadata.sorted_tables:
            upto = before[table.name] if table.name in ingestion else None
            _write(cur, postgres, table, _rows(source, table, None, upto))
        raw.commit()
        new = [
            (tb, _rows(source, tb, before[tb.name], None))
            for tb in INGESTION_TABLES
            if history or tb.name != "history"
        ]
        if not payload:
            new = [(tb, _without_payload(tb, rows, postgres)) for tb, rows in new]
        started = time.perf_counter()
        if not postgres:
            cur.execute("BEGIN")
        for table, rows in new:
            _write(cur, postgres, table, rows)
        raw.commit()
        elapsed = time.perf_counter() - started
    finally:
        raw.close()
    target.dispose()
    return elapsed
