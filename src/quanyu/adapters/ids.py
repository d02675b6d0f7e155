"""Allocating primary keys before a bulk insert, so related rows can be written together.

PostgreSQL draws them from the table's sequence, a block at a time per process
(:class:`SequenceBlocks`; a rolled-back transaction leaves gaps, never duplicates).
SQLite, whose write transactions hold the database lock from ``BEGIN IMMEDIATE``,
continues from the current maximum.
"""

from __future__ import annotations

import threading

from sqlalchemy import Connection, Table, func, select, text

BLOCK = 64


class SequenceBlocks:
    """Per-process pools of PostgreSQL sequence values, shared by all transactions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: dict[str, list[int]] = {}

    def take(self, conn: Connection, table: Table, n: int) -> list[int]:
        with self._lock:
            free = self._free.setdefault(table.name, [])
            if len(free) < n:
                rows = conn.execute(
                    text(
                        "SELECT nextval(pg_get_serial_sequence(:t, 'id')) "
                        "FROM generate_series(1, :n)"
                    ),
                    {"t": table.name, "n": max(n - len(free), BLOCK)},
                )
                free.extend(r[0] for r in rows)
            out, self._free[table.name] = free[:n], free[n:]
            return out


class IdAllocator:
    def __init__(self, conn: Connection, blocks: SequenceBlocks | None = None) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        self.blocks = blocks or SequenceBlocks()
        self._next: dict[str, int] = {}
        self._pool: dict[str, list[int]] = {}

    def take(self, table: Table, n: int) -> list[int]:
        if n <= 0:
            return []
        if self.postgres:
            return self.blocks.take(self.conn, table, n)
        start = self._next.get(table.name)
        if start is None:
            start = (self.conn.execute(select(func.max(table.c.id))).scalar() or 0) + 1
        self._next[table.name] = start + n
        return list(range(start, start + n))

    def reserve(self, table: Table, n: int) -> None:
        """Draw ``n`` ids now so that later calls to :meth:`one` need no round trip."""
        self._pool.setdefault(table.name, []).extend(reversed(self.take(table, n)))

    def one(self, table: Table) -> int:
        pool = self._pool.get(table.name)
        if pool:
            return pool.pop()
        return self.take(table, 1)[0]
