"""The unit of work: one transaction per command, retried on transient conflicts.

A command is a function of a :class:`WorkingSet`. On PostgreSQL two commands can
race to create the same identity or deadlock on member locks; the loser's whole
transaction is rolled back and the command runs again from the start.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from quanyu.adapters.ids import SequenceBlocks
from quanyu.adapters.reference import ReferenceCache
from quanyu.clock import Clock

T = TypeVar("T")

RETRYABLE_SQLSTATES = {"40001", "40P01", "23505"}  # serialization, deadlock, unique


class RetryTransaction(Exception):
    """Raised inside a command when state it read has changed under it."""


@dataclass
class Platform:
    """What every service needs: the engine, the reference cache and the clock."""

    engine: Engine
    reference: ReferenceCache
    clock: Clock
    default_region: str = "CN"
    max_attempts: int = 8
    id_blocks: SequenceBlocks = field(default_factory=SequenceBlocks)
    serial: threading.RLock | None = None
    analytics_path: str = ":memory:"  # the DuckDB analytics store
    analytics_direct: bool = False  # run analytics on the operational database instead
    # Set once a staff account or integration key is known to exist (services/access.py).
    auth_closed: bool = False
    auth_checked_at: float = 0.0

    def __post_init__(self) -> None:
        # SQLite runs one write transaction at a time (BEGIN IMMEDIATE). Threads of one
        # process queue on this lock, and the next one starts the moment the last
        # commits; on the database lock alone they would poll it with sleeps growing
        # to 100 ms, which gave single orders a p99 of almost a second under load.
        if self.serial is None and self.engine.dialect.name == "sqlite":
            self.serial = threading.RLock()


def _retryable(exc: Exception) -> bool:
    code = getattr(getattr(exc, "orig", exc), "sqlstate", None)
    if code is not None:
        return code in RETRYABLE_SQLSTATES
    return isinstance(exc, IntegrityError | OperationalError) and "locked" in str(exc).lower()


def run(platform: Platform, command: Callable[..., T], *, write: bool = True) -> T:
    """Run ``command(ws)`` in a fresh transaction, retrying transient conflicts."""
    from quanyu.services.working_set import WorkingSet  # noqa: PLC0415 - avoids a cycle

    attempt = 0
    while True:
        attempt += 1
        try:
            with platform.serial or contextlib.nullcontext(), platform.engine.begin() as conn:
                ws = WorkingSet(
                    conn,
                    platform.reference.get(conn),
                    platform.clock.now(),
                    default_region=platform.default_region,
                    id_blocks=platform.id_blocks,
                )
                result = command(ws)
                if write:
                    ws.flush(final=True)
                return result
        except RetryTransaction:
            if attempt >= platform.max_attempts:
                raise
        except (DBAPIError, psycopg.Error) as exc:
            # Writes sent in a psycopg pipeline raise the driver's own errors.
            if not _retryable(exc) or attempt >= platform.max_attempts:
                raise
