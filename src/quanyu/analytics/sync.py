"""Feeding DuckDB from the operational store, incrementally.

Each run copies what changed since the previous run into the DuckDB file named by
``QUANYU_ANALYTICS_PATH``, in one DuckDB transaction:

- facts (orders with their lines, refunds, points entries, coupon events, touchpoints)
  recorded since the previous run, less a margin; an order refunded since then is copied
  again, with its lines. A copied row replaces the row with the same id, so rows read
  twice are harmless;
- merges since then re-point every fact of an absorbed member to the survivor;
- the dimensions (members, identities, stores) are replaced whole: they change in place
  (tiers, guides, locations) and are small beside the facts. They are left as they are
  when no order new to the store arrived, no merge happened and their fingerprint (row
  counts and latest stamps of the tables they come from, :func:`dimension_fingerprint`)
  is unchanged: an idle store's refresh then reads a few aggregates, not every member;
- the member summaries (:mod:`quanyu.analytics.summary`) are moved on to a new day on the
  first run of the day, and the rows of the members whose orders were copied, or who
  were merged, are computed again.

Why a margin: ids come from per-process blocks and a transaction stamps its rows before it
commits, so a row can become visible a little after a later-stamped one. Rows are
selected from ``previous start - margin``; a transaction that stays open longer than the
margin (10 minutes) after stamping its rows would be missed until the next full sync
(``full=True``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
from sqlalchemy.engine import make_url

from quanyu.analytics import canonical
from quanyu.analytics import summary as summaries
from quanyu.analytics.schema import SCHEMAS

MARGIN = timedelta(minutes=10)
STATE = "_quanyu_sync"
FINGERPRINT = "_quanyu_dimensions"
FACT_KEYS = {
    "orders": "order_id",
    "order_lines": "order_id",
    "refunds": "refund_id",
    "points_entries": "entry_id",
    "coupon_events": "event_id",
    "touchpoints": "touchpoint_id",
}
# Real-time tags replace the same member's same tag; batch runs write DuckDB themselves.
TAG_KEY = "(member_id, tag)"
MAX_ROLLED_DAYS = 31  # a summary older than this is built again rather than moved on
DIMENSIONS = ("members", "identities", "stores", "acquisition_costs", "consents")

Progress = Callable[[str, int, int], None]


@dataclass
class SyncReport:
    full: bool
    since: datetime | None
    started_at: datetime
    rows: dict[str, int] = field(default_factory=dict)
    merges: int = 0
    seconds: float = 0.0


def operational_backend(database_url: str) -> Any:
    """An Ibis connection to the operational database named by a SQLAlchemy URL."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        # Shared by the threads of a server, one at a time (the caller holds a lock).
        raw = sqlite3.connect(url.database or ":memory:", check_same_thread=False)
        return ibis.sqlite.from_connection(raw)
    if url.get_backend_name() == "postgresql":
        return ibis.postgres.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            database=url.database,
        )
    raise ValueError(f"no analytics source for {url.get_backend_name()}")


def open_store(path: Path | str) -> Any:
    """The DuckDB analytics store, with every canonical table created if missing."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    con = ibis.duckdb.connect(str(path))
    con.raw_sql("SET enable_progress_bar = false")  # it would write to the server's stdout
    # This connection writes (refreshes, tags); reads go through cursors of their own.
    # Not keeping the order of inserted rows makes large inserts a third faster.
    con.raw_sql("SET SESSION preserve_insertion_order = false")
    existing = set(con.list_tables())
    for name, schema in SCHEMAS.items():
        if name not in existing:
            con.create_table(name, schema=schema)
    if STATE not in existing:
        con.raw_sql(f"CREATE TABLE {STATE} (name VARCHAR PRIMARY KEY, synced_at TIMESTAMP)")
    if FINGERPRINT not in existing:
        con.raw_sql(f"CREATE TABLE {FINGERPRINT} (fingerprint VARCHAR)")
    return con


def dimension_fingerprint(op: canonical.Operational) -> str:
    """Counts and latest stamps of what the dimensions are made of: a new profile,
    membership, identity, consent, tier change or merge, a profile updated, or a store
    or guide changed, changes it. Stores and costs are few and always copied."""
    parts: list[ir.Scalar] = [
        op.profiles.count(),
        op.profiles.updated_at.max(),
        op.profiles.id.max(),
        op.memberships.count(),
        op.memberships.tier_achieved_at.max(),
        op.identities.count(),
        op.identities.id.max(),
        op.identities.profile_id.sum(),
        op.tier_changes.count(),
        op.merges.count(),
        op.consents.count(),
        op.consents.recorded_at.max(),
        # Members carry their store's region and brand, and their guide's code.
        op.stores.region.group_concat(),
        op.stores.brand_id.sum(),
        op.guides.count(),
        op.guides.store_id.sum(),
    ]
    return "|".join(str(part.execute()) for part in parts)


def _stored_fingerprint(store: Any) -> str | None:
    rows = store.raw_sql(f"SELECT fingerprint FROM {FINGERPRINT}").fetchall()
    return str(rows[0][0]) if rows else None


@contextlib.contextmanager
def transaction(store: Any) -> Iterator[Any]:
    """The store's raw DuckDB connection in one transaction, committed on success."""
    con = store.con
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def last_sync(store: Any) -> datetime | None:
    rows = store.raw_sql(f"SELECT synced_at FROM {STATE} WHERE name = 'facts'").fetchall()
    return rows[0][0] if rows else None


def sync(
    source: Any,
    store: Any,
    *,
    now: datetime,
    timezone: str = "Asia/Shanghai",
    program: str | None = None,
    full: bool = False,
    progress: Progress | None = None,
) -> SyncReport:
    """Copy what changed in ``source`` (operational) into ``store`` (DuckDB)."""
    started = time.perf_counter()
    previous = None if full else last_sync(store)
    since = None if previous is None else previous - MARGIN
    report = SyncReport(full=previous is None, since=since, started_at=now)
    minutes = canonical.offset_minutes(timezone, now)
    op = canonical.Operational(source)
    facts: dict[str, ir.Table] = {
        "orders": canonical.orders(op, since=since),
        "order_lines": canonical.order_lines(op, since=since),
        "refunds": canonical.refunds(op, since=since),
        "points_entries": canonical.points_entries(op, since=since),
        "coupon_events": canonical.coupon_events(op, since=since),
        "touchpoints": canonical.touchpoints(op, since=since),
        "member_tags": canonical.member_tags(op, since=since, realtime=True),
    }
    dims: dict[str, ir.Table] = {
        "members": canonical.members(op, program=program),
        "identities": canonical.identities(op),
        "stores": canonical.stores(op),
        "acquisition_costs": canonical.acquisition_costs(op),
        "consents": canonical.consents(op),
    }
    merges = _merges_since(op, since)
    fingerprint = dimension_fingerprint(op)
    steps = len(facts) + len(dims) + 2
    touched: list[pa.Array] = []  # members whose orders were copied
    with transaction(store) as con:
        arrived = False
        for i, (name, expr) in enumerate({**facts, **dims}.items()):
            if (
                name in ("members", "identities", "consents")
                and not report.full
                and not arrived
                and not merges
                and fingerprint == _stored_fingerprint(store)
            ):
                continue  # nothing they are made of has changed
            data = expr.to_pyarrow()
            report.rows[name] = data.num_rows
            con.register("_incoming", data)
            if name == "orders" and data.num_rows and not report.full:
                # An order new to the store may have filled in its buyer's profile; the
                # orders of the margin that were copied last time have not.
                (new,) = con.execute(
                    "SELECT count(*) FROM _incoming WHERE order_id NOT IN "
                    "(SELECT order_id FROM orders)"
                ).fetchone()
                arrived = new > 0
            if name == "orders":
                touched.append(data.column("member_id").combine_chunks())
            shifted = _shifted_select(name, minutes)
            if name in DIMENSIONS or (report.full and name != "member_tags"):
                con.execute(f"DELETE FROM {name}")
            elif name == "member_tags":
                con.execute(
                    f"DELETE FROM member_tags WHERE {TAG_KEY} IN "
                    f"(SELECT member_id, tag FROM _incoming)"
                )
            else:
                key = FACT_KEYS[name]
                con.execute(f"DELETE FROM {name} WHERE {key} IN (SELECT {key} FROM _incoming)")
            con.execute(f"INSERT INTO {name} {shifted}")
            con.unregister("_incoming")
            if progress:
                progress("sync", i + 1, steps)
        if not report.full and merges:
            mapping = pa.table(
                {"absorbed": [a for a, _ in merges], "survivor": [s for _, s in merges]}
            )
            con.register("_merges", mapping)
            # As in the operational merge: the survivor keeps its own tags.
            con.execute(
                "DELETE FROM member_tags USING _merges m "
                "WHERE member_tags.member_id = m.absorbed AND EXISTS ("
                "SELECT 1 FROM member_tags s WHERE s.member_id = m.survivor "
                "AND s.tag = member_tags.tag)"
            )
            for name in (*FACT_KEYS, "member_tags"):
                con.execute(
                    f"UPDATE {name} SET member_id = m.survivor FROM _merges m "
                    f"WHERE {name}.member_id = m.absorbed"
                )
            con.unregister("_merges")
        report.merges = len(merges)
        if merges:
            touched.append(pa.array([m for pair in merges for m in pair], pa.int64()))
        _keep_summary(
            store,
            con,
            local_now=now + timedelta(minutes=minutes),
            touched=touched,
            whole=report.full,
        )
        if progress:
            progress("sync", steps - 1, steps)
        con.execute(
            f"INSERT OR REPLACE INTO {STATE} VALUES ('facts', ?)", [now.replace(tzinfo=None)]
        )
        con.execute(f"DELETE FROM {FINGERPRINT}")
        con.execute(f"INSERT INTO {FINGERPRINT} VALUES (?)", [fingerprint])
    if progress:
        progress("sync", steps, steps)
    report.seconds = time.perf_counter() - started
    return report


def _keep_summary(
    store: Any, con: Any, *, local_now: datetime, touched: list[pa.Array], whole: bool
) -> None:
    """Keep the member summaries (:mod:`quanyu.analytics.summary`) current. On the first
    refresh of a day they are moved on from the day before (:func:`summaries.roll`), or
    built again when older or missing, or when every fact was copied again (``whole``);
    then the rows of the members whose orders were copied, or who were merged, are
    computed again."""
    anchor = summaries.anchor_of(local_now)
    row = con.execute(f"SELECT synced_at FROM {STATE} WHERE name = 'summary'").fetchone()
    if whole:
        row = None
    if row is None or row[0] != anchor:
        days = 0 if row is None else (anchor - row[0]).days
        rolled = 0 < days <= MAX_ROLLED_DAYS
        for facet in (None, *summaries.FACETS):
            if rolled:
                for day in range(days):  # a day at a time
                    roll_summary(store, con, anchor=row[0] + timedelta(days=day), facet=facet)
            else:
                write_summary(store, con, anchor=anchor, facet=facet)
        if not rolled:
            touched = []  # built from every order
        con.execute(f"INSERT OR REPLACE INTO {STATE} VALUES ('summary', ?)", [anchor])
    ids = (
        pa.chunked_array([a.cast(pa.int64()) for a in touched], pa.int64()).drop_null().unique()
        if touched
        else None
    )
    if ids is None or not len(ids):
        return
    con.register("_touched", pa.table({"member_id": ids}))
    for facet in (None, *summaries.FACETS):
        write_summary(store, con, anchor=anchor, members="_touched", facet=facet)
    con.unregister("_touched")


def _summary_columns(facet: str | None) -> str:
    return ", ".join(f'"{c}" {_duck_type(k)}' for c, k in summaries.schema(facet).items())


def _facts_of(store: Any) -> dict[str, ir.Table]:
    return {name: store.table(name) for name in ("orders", "order_lines")}


def write_summary(
    store: Any,
    con: Any,
    *,
    anchor: datetime,
    members: str | None = None,
    facet: str | None = None,
) -> None:
    """Build a member summary (by ``facet``, or overall) as of ``anchor`` (the rows of
    the members listed in the table or view named ``members``, when given) through the
    store's raw connection."""
    who = None if members is None else ibis.table({"member_id": "int64"}, name=members)
    expr = summaries.build(_facts_of(store), anchor=anchor, members=who, facet=facet)
    sql = ibis.to_sql(expr, dialect="duckdb")
    name = summaries.table_name(facet)
    if members is None:
        con.execute(f"CREATE OR REPLACE TABLE {name} ({_summary_columns(facet)})")
    else:
        con.execute(f"DELETE FROM {name} WHERE member_id IN (SELECT member_id FROM {members})")
    con.execute(f"INSERT INTO {name} {sql}")


def roll_summary(store: Any, con: Any, *, anchor: datetime, facet: str | None = None) -> None:
    """Move a member summary of ``anchor``'s day on to the next day: the rows that
    change are replaced."""
    name = summaries.table_name(facet)
    current = summaries.Summary(
        store.table(summaries.TABLE),
        anchor,
        {facet: store.table(name)} if facet is not None else {},
    )
    sql = ibis.to_sql(summaries.roll(current, _facts_of(store), facet), dialect="duckdb")
    keys = "member_id" if facet is None else "member_id, code"
    con.execute(f"CREATE OR REPLACE TEMP TABLE _moved ({_summary_columns(facet)})")
    con.execute(f"INSERT INTO _moved {sql}")
    con.execute(f"DELETE FROM {name} WHERE ({keys}) IN (SELECT {keys} FROM _moved)")
    con.execute(f"INSERT INTO {name} SELECT * FROM _moved")
    con.execute("DROP TABLE _moved")


def stored_summary(store: Any) -> summaries.Summary | None:
    """The store's member summaries, when it has them."""
    rows = store.raw_sql(f"SELECT synced_at FROM {STATE} WHERE name = 'summary'").fetchall()
    if not rows:
        return None
    facets = {f: store.table(summaries.table_name(f)) for f in summaries.FACETS}
    return summaries.Summary(store.table(summaries.TABLE), rows[0][0], facets)


def _shifted_select(name: str, minutes: int) -> str:
    columns = []
    for column, kind in SCHEMAS[name].items():
        if kind.is_timestamp() and minutes:
            columns.append(f'"{column}" + INTERVAL {minutes} MINUTE AS "{column}"')
        else:
            columns.append(f'CAST("{column}" AS {_duck_type(kind)}) AS "{column}"')
    return f"SELECT {', '.join(columns)} FROM _incoming"


def _duck_type(kind: Any) -> str:
    names = {"string": "VARCHAR", "int64": "BIGINT", "int32": "INTEGER", "float64": "DOUBLE"}
    name = str(kind).lstrip("!")
    if kind.is_timestamp():
        return "TIMESTAMP"
    if kind.is_date():
        return "DATE"
    if kind.is_boolean():
        return "BOOLEAN"
    return names[name]


def _merges_since(op: canonical.Operational, since: datetime | None) -> list[tuple[int, int]]:
    """(absorbed, final survivor) of merges recorded since ``since``."""
    if since is None:
        return []
    m = op.merges.filter(lambda m: m.merged_at >= since).select("absorbed_id")
    p = op.profiles
    rows = (
        p.filter(p.id.isin(m.absorbed_id) & p.merged_into_id.notnull())
        .select("id", "merged_into_id")
        .to_pyarrow()
        .to_pylist()
    )
    return [(int(r["id"]), int(r["merged_into_id"])) for r in rows]
