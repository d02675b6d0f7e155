"""Insight use cases: KPIs, tags, segments, audiences, attribution.

The analytics store is DuckDB (``QUANYU_ANALYTICS_PATH``), fed incrementally from the
operational database by :mod:`quanyu.analytics.sync` whenever it is older than
``max_age`` seconds. With ``direct=True`` the same expressions run on the operational
database itself (PostgreSQL) over :mod:`quanyu.analytics.canonical`'s views.

What members end up with (tags, segment membership and its entry/exit events, the
export audit) is written to the operational database, in one transaction per command.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Connection, delete, func, insert, select, update

from quanyu.adapters import tables as t
from quanyu.analytics import canonical, conditions, kpis, models, sync
from quanyu.analytics import summary as summaries
from quanyu.analytics.schema import SCHEMAS
from quanyu.domain.errors import NotFound, Unavailable, ValidationFailed
from quanyu.domain.segments import Condition, parse, tags_used, validate_codes
from quanyu.domain.tags import Model, TagKind, validate_definition
from quanyu.services.members import current_profile_id
from quanyu.services.reports import to_csv
from quanyu.services.uow import Platform

CONSENT_FOR_IDENTITY = {
    "phone": "sms",
    "email": "email",
    "wechat_unionid": "wechat",
    "wechat_openid": "wechat",
}
EXPORT_COLUMNS = (
    "member_id",
    "member_no",
    "tier",
    "phone",
    "email",
    "wechat_unionid",
    "wechat_openid",
)
WRITE_CHUNK = 5_000
log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_PERIOD_DAYS = 3_660
MAX_PURPOSE = 32


# ---------------------------------------------------------------- the analytics store


class Snapshot(dict[str, ir.Table]):
    """The canonical tables of one refresh of the store, with its member summary (None
    when read directly, or before the first refresh made one)."""

    summary: summaries.Summary | None = None


def summary_of(tables: kpis.Tables) -> summaries.Summary | None:
    return tables.summary if isinstance(tables, Snapshot) else None


@dataclass(frozen=True)
class Result:
    rows: list[dict[str, Any]]
    at: datetime  # the analytics clock when computed
    recipe: Callable[[dict[str, ir.Table]], list[dict[str, Any]]]


@dataclass
class Analytics:
    """The analytics store of one platform, shared by its threads.

    Reads go through ``reader``, a second connection to the same DuckDB database, one
    query at a time (``lock``); refreshes and tag write-backs go through the store's own
    connection (``write_lock``). DuckDB's snapshots let reads go on while a refresh
    writes: they see the data as of the last commit.

    Served (``quanyu serve``), a background thread refreshes the store every
    ``max_age`` seconds and computes again the KPI results asked for since the last
    refresh before it switches to them (:meth:`start_background`), so no page waits for
    a refresh. Otherwise a read refreshes first when the copy is older than ``max_age``.
    """

    platform: Platform
    path: str
    direct: bool = False
    max_age: float = 60.0
    lock: threading.RLock = field(default_factory=threading.RLock)
    write_lock: threading.RLock = field(default_factory=threading.RLock)
    background: bool = False
    _store: Any = None
    _reader: Any = None
    _source: Any = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _synced: datetime | None = None
    _tables: Snapshot | None = None
    memo: dict[str, Any] = field(default_factory=dict)  # fits shared within one sync
    # KPI results of the current data: every refresh starts a new ``generation`` with
    # its own results, so a figure is never older than the data it is computed from.
    generation: int = 0
    results: OrderedDict[tuple[Any, ...], Result] = field(default_factory=OrderedDict)

    @property
    def timezone(self) -> str:
        programs = self.platform.reference.get().programs
        if not programs:
            return "Asia/Shanghai"
        return str(programs[min(programs)].tz.key)

    def source(self) -> Any:
        if self._source is None:
            self._source = sync.operational_backend(
                str(self.platform.engine.url.render_as_string(hide_password=False))
            )
        return self._source

    def store(self) -> Any:
        if self._store is None:
            try:
                self._store = sync.open_store(self.path)
            except duckdb.IOException as exc:
                raise Unavailable(
                    f"the analytics store {self.path} is in use by another process; run one "
                    "process on it, or set QUANYU_ANALYTICS_DIRECT=true on PostgreSQL"
                ) from exc
        return self._store

    def reader(self) -> Any:
        """The connection reads go through (a cursor of the store's database)."""
        if self._reader is None:
            self._reader = ibis.duckdb.from_connection(self.store().con.cursor())
        return self._reader

    def now(self) -> datetime:
        """The platform clock's now, as naive wall-clock time of the program zone."""
        at = self.platform.clock.now()
        minutes = canonical.offset_minutes(self.timezone, at)
        return (at.astimezone(UTC) + timedelta(minutes=minutes)).replace(tzinfo=None)

    def refresh(
        self, *, full: bool = False, progress: sync.Progress | None = None, warm: bool = False
    ) -> sync.SyncReport:
        """Copy what changed into the store. With ``warm``, compute the KPI results asked
        for since the last refresh again before switching to the new data's results;
        otherwise forget them (they are computed again when next asked for)."""
        with self.write_lock:
            report = sync.sync(
                self.source(),
                self.store(),
                now=self.platform.clock.now().astimezone(UTC).replace(tzinfo=None),
                timezone=self.timezone,
                full=full,
                progress=progress,
            )
        fresh: OrderedDict[tuple[Any, ...], Result] = OrderedDict()
        if warm:
            # The new data's tables, with the summary's new anchor: tables kept from
            # before would pair a summary moved on to a new day with yesterday's anchor
            # (read as stale: the orders are grouped instead).
            with self.lock:
                self._tables = None
            tables = self._build_tables()
            for key, old in list(self.results.items())[-WARMED:]:
                rows = old.recipe(tables)
                fresh[(self.generation + 1, *key[1:])] = Result(rows, self.now(), old.recipe)
        # Switch (plain assignments, so that no lock is needed against readers).
        self._synced = datetime.now(UTC)
        self.memo = {}
        self._tables = None
        self.results = fresh
        self.generation += 1
        return report

    def start_background(self) -> None:
        """Refresh every ``max_age`` seconds in a thread, until :meth:`stop_background`."""
        if self.direct or self._thread is not None:
            return
        self.background = True
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.refresh(warm=True)
                except Exception:  # keep serving the last copy; try again later
                    log.exception("refreshing the analytics store failed")
                self._stop.wait(self.max_age)

        self._thread = threading.Thread(target=loop, name="analytics-refresh", daemon=True)
        self._thread.start()

    def stop_background(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self._thread = None
        self.background = False

    def cached(
        self,
        key: tuple[Any, ...],
        recipe: Callable[[dict[str, ir.Table]], list[dict[str, Any]]],
        *,
        judged_now: bool = False,
    ) -> list[dict[str, Any]]:
        """``recipe(tables)`` once per key while the data stay the same (at most
        ``RESULTS_KEPT`` keys, the least recently used dropped first). A result
        ``judged_now`` (it depends on the time it is computed at) is kept for
        ``max_age`` seconds of the platform's clock."""
        tables = self.tables()  # refreshes first when stale (and not refreshed for us)
        with self.lock:
            # Read directly, the data are live: results are kept for ``max_age``.
            era = int(time.monotonic() // self.max_age) if self.direct else self.generation
            full_key = (era, *key)
            results = self.results
            found = results.get(full_key)
            now = self.now()
            if found is not None and (
                not judged_now or timedelta(0) <= now - found.at <= timedelta(seconds=self.max_age)
            ):
                results.move_to_end(full_key)
                return found.rows
            rows = recipe(tables)
            results[full_key] = Result(rows, now, recipe)
            while len(results) > RESULTS_KEPT:
                results.popitem(last=False)
            return rows

    def tables(self) -> Snapshot:
        """The canonical tables, refreshed first when older than ``max_age`` (unless a
        background thread refreshes them)."""
        if self.direct:
            minutes = canonical.offset_minutes(self.timezone, self.platform.clock.now())
            with self.lock:
                return Snapshot(canonical.views(self.source(), minutes=minutes))
        stale = (
            self._synced is None
            or (datetime.now(UTC) - self._synced).total_seconds() > self.max_age
        )
        if stale and not self.background:
            self.refresh()
        return self._build_tables()

    def _build_tables(self) -> Snapshot:
        with self.lock:
            if self._tables is None:  # the same tables until the next refresh
                reader = self.reader()
                tables = Snapshot({name: reader.table(name) for name in SCHEMAS})
                tables.summary = sync.stored_summary(reader)
                self._tables = tables
            copy = Snapshot(self._tables)
            copy.summary = self._tables.summary
            return copy

    def execute(self, expr: ir.Expr) -> pa.Table:
        with self.lock:
            return expr.to_pyarrow()

    def mark_stale(self) -> None:
        self._synced = None

    def close(self) -> None:
        self.stop_background()
        with self.write_lock, self.lock:
            for con in (self._reader, self._source, self._store):
                if con is not None:
                    con.disconnect()
            self._source = self._store = self._reader = None
            self._synced = None
            self._tables = None


RESULTS_KEPT = 256
WARMED = 64  # results computed again after a background refresh, the latest asked for


_registry: dict[int, Analytics] = {}
_registry_lock = threading.Lock()


def analytics(platform: Platform) -> Analytics:
    """The platform's analytics store (created on first use)."""
    with _registry_lock:
        found = _registry.get(id(platform))
        if found is None or found.platform is not platform:
            found = Analytics(
                platform, path=platform.analytics_path, direct=platform.analytics_direct
            )
            _registry[id(platform)] = found
        return found


def close_analytics(platform: Platform) -> None:
    """Close the platform's analytics connections (at shutdown, or when tests end)."""
    with _registry_lock:
        found = _registry.pop(id(platform), None)
    if found is not None:
        found.close()


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = table.to_pylist()
    for row in out:
        for key, value in row.items():
            if isinstance(value, datetime | date):
                row[key] = value.isoformat()
            elif isinstance(value, float) and math.isnan(value):
                row[key] = None
    return out


# ---------------------------------------------------------------- KPIs

METRIC_FUNCTIONS: dict[str, Any] = {
    "sales": kpis.sales,
    "active_members": kpis.active_members,
    "new_members": kpis.new_members,
    "new_member_conversion": kpis.new_member_conversion,
    "repurchase": kpis.repurchase,
    "acquisition_cost": kpis.acquisition_cost,
    "guide_sales": kpis.guide_sales,
}
METRIC_NAMES = (
    "sales",
    "active_members",
    "new_members",
    "new_member_conversion",
    "repurchase",
    "retention",
    "lifecycle",
    "acquisition_cost",
    "points_liability",
    "guide_sales",
)


def kpi(
    platform: Platform,
    metric: str,
    query: kpis.KpiQuery,
    *,
    cohort: kpis.Cohort = kpis.Cohort.JOIN_MONTH,
) -> list[dict[str, Any]]:
    """Compute one metric; rows of breakdown columns and figures."""
    if metric not in METRIC_NAMES:
        raise ValidationFailed(f"unknown metric; one of {', '.join(METRIC_NAMES)}", field="metric")
    if query.until <= query.since:
        raise ValidationFailed("until must be after since", field="until")
    if metric == "acquisition_cost":
        # Costs are loaded per channel and month for the whole program.
        for dim, codes in query.filters.items():
            if codes and dim is not kpis.Dimension.CHANNEL:
                raise ValidationFailed(
                    "recruitment costs are per channel: filter CAC by channel only",
                    field=dim.value,
                )
    a = analytics(platform)

    def recipe(tables: dict[str, ir.Table]) -> list[dict[str, Any]]:
        expr: ir.Table
        if metric == "retention":
            expr = kpis.retention(tables, query, cohort=cohort)
        elif metric == "lifecycle":
            expr = lifecycle_counts(tables, query, as_of=min(query.end, a.now()))
        elif metric == "points_liability":
            expr = kpis.points_liability(tables, query, point_value_minor=_point_value(platform))
        else:
            expr = METRIC_FUNCTIONS[metric](tables, query)
        return _rows(a.execute(expr))

    key = (metric, repr(query), cohort.value)
    # Lifecycle stages are judged at the time of asking: kept for ``max_age`` only.
    rows = a.cached(key, recipe, judged_now=metric == "lifecycle")
    return [dict(row) for row in rows]  # callers get their own copy


def lifecycle_counts(tables: kpis.Tables, query: kpis.KpiQuery, *, as_of: datetime) -> ir.Table:
    stages = models.lifecycle(tables, as_of=as_of, summary=summary_of(tables))
    m = tables["members"].drop("registered_at")
    j = stages.join(m, "member_id")
    for dim, codes in query.filters.items():
        if codes:
            j = j.filter(j[dim.value].isin(list(codes)))
    keys = ["value", *[d.value for d in query.by]]
    out = j.group_by(keys).aggregate(members=j.count()).rename(stage="value")
    return out.order_by(["stage", *keys[1:]])


def _point_value(platform: Platform) -> float:
    programs = platform.reference.get().programs
    return float(programs[min(programs)].point_value_minor) if programs else 1.0


# ---------------------------------------------------------------- tags


def define_tag(
    platform: Platform, *, code: str, name: str, kind: str, document: Any, actor: str
) -> dict[str, Any]:
    """Create a tag, or a new version of it."""
    validate_definition(code, kind, document)
    if not name or len(name) > 200:
        raise ValidationFailed("name must be 1-200 characters", field="name")
    at = platform.clock.now()
    with platform.engine.begin() as conn:
        if kind == TagKind.RULE:
            known = {r.code for r in conn.execute(select(t.tag_definitions.c.code))}
            missing = sorted(tags_used(parse(document, field="document")) - known - {code})
            if missing:
                raise ValidationFailed(f"unknown tag {missing[0]!r}", field="document")
        row = conn.execute(
            select(t.tag_definitions).where(t.tag_definitions.c.code == code)
        ).first()
        values = {
            "name": name,
            "kind": kind,
            "document": document,
            "actor": actor,
            "updated_at": at,
            "status": "active",
        }
        if row is None:
            conn.execute(insert(t.tag_definitions).values(code=code, version=1, **values))
        else:
            conn.execute(
                update(t.tag_definitions)
                .where(t.tag_definitions.c.code == code)
                .values(version=row.version + 1, **values)
            )
    platform.reference.invalidate()
    return tag_definition(platform, code)


def tag_definition(platform: Platform, code: str) -> dict[str, Any]:
    with platform.engine.connect() as conn:
        row = conn.execute(
            select(t.tag_definitions).where(t.tag_definitions.c.code == code)
        ).first()
    if row is None:
        raise NotFound("tag", code)
    return _definition(row)


def _definition(row: Any) -> dict[str, Any]:
    return {
        "code": row.code,
        "name": row.name,
        "kind": row.kind,
        "document": row.document,
        "version": row.version,
        "updated_at": row.updated_at.isoformat(),
    }


def list_tags(platform: Platform) -> list[dict[str, Any]]:
    with platform.engine.connect() as conn:
        rows = conn.execute(select(t.tag_definitions).order_by(t.tag_definitions.c.code))
        return [_definition(r) for r in rows]


def model_expression(
    tables: kpis.Tables, document: Any, *, as_of: datetime
) -> tuple[ir.Table, str] | None:
    """(member_id, value, score) of a model tag computed by the backend, with its model
    version; None for the models fitted in Python (BG/NBD, CLV)."""
    model, settings = validate_definition("model", TagKind.MODEL, document)
    if model is Model.RFM:
        r = models.rfm(tables, as_of=as_of, summary=summary_of(tables), **settings)
        return r.select("member_id", "value", "score"), models.RFM_VERSION
    if model is Model.LIFECYCLE:
        th = models.LifecycleThresholds(**settings)
        stages = models.lifecycle(tables, as_of=as_of, thresholds=th, summary=summary_of(tables))
        return stages.select("member_id", "value", "score"), models.LIFECYCLE_VERSION
    return None


def _run_order(defs: Sequence[Any]) -> list[Any]:
    """Model tags first, then rule tags after the tags they use."""
    by_code = {d.code: d for d in defs}
    done: list[Any] = []
    seen: set[str] = set()

    def visit(d: Any, path: tuple[str, ...]) -> None:
        if d.code in seen:
            return
        if d.code in path:
            raise ValidationFailed(
                f"tags depend on each other: {' -> '.join(path)}", field="document"
            )
        if d.kind == TagKind.RULE:
            for used in sorted(tags_used(parse(d.document, field="document"))):
                if used in by_code:
                    visit(by_code[used], (*path, d.code))
        seen.add(d.code)
        done.append(d)

    for d in sorted(defs, key=lambda d: (d.kind != TagKind.MODEL, d.code)):
        visit(d, ())
    return done


def run_tags(
    platform: Platform, *, codes: Sequence[str] | None = None, actor: str, write_back: bool = True
) -> list[dict[str, Any]]:
    """Recompute rule and model tags (all, or ``codes`` and what they need) in the analytics
    store, and write each tag's members back to the operational database."""
    a = analytics(platform)
    with platform.engine.connect() as conn:
        defs = list(
            conn.execute(
                select(t.tag_definitions).where(
                    t.tag_definitions.c.status == "active",
                    t.tag_definitions.c.kind != TagKind.REALTIME,
                )
            )
        )
    if codes:
        unknown = sorted(set(codes) - {d.code for d in defs})
        if unknown:
            raise NotFound("tag", unknown[0])
    results = []
    wanted = _with_dependencies(defs, codes) if codes else None
    chosen = [d for d in _run_order(defs) if wanted is None or d.code in wanted]
    with a.lock:
        tables = a.tables()
        as_of = a.now()
        for level in _levels(chosen):
            # The rule tags of one level are evaluated together, in one pass over the facts.
            rules = [d for d in level if d.kind == TagKind.RULE]
            flags = None
            if rules:
                named = {d.code: parse(d.document, field="document") for d in rules}
                flags = a.execute(
                    conditions.evaluate(tables, named, as_of=as_of, summary=summary_of(tables))
                )
            for d in level:
                results.append(
                    _run_one(
                        platform,
                        a,
                        tables,
                        d,
                        as_of=as_of,
                        actor=actor,
                        write_back=write_back,
                        flags=flags,
                    )
                )
    return results


def _with_dependencies(defs: Sequence[Any], codes: Sequence[str]) -> set[str]:
    """``codes`` and every rule or model tag they use, directly or not."""
    by_code = {d.code: d for d in defs}
    wanted: set[str] = set()
    todo = list(codes)
    while todo:
        code = todo.pop()
        if code in wanted or code not in by_code:
            continue
        wanted.add(code)
        d = by_code[code]
        if d.kind == TagKind.RULE:
            todo.extend(tags_used(parse(d.document, field="document")))
    return wanted


def _levels(ordered: Sequence[Any]) -> list[list[Any]]:
    """Tags in run order, grouped so that a rule tag comes a level after the tags it uses."""
    level: dict[str, int] = {}
    for d in ordered:
        used = tags_used(parse(d.document, field="document")) if d.kind == TagKind.RULE else set()
        level[d.code] = 1 + max((level[u] for u in used if u in level), default=-1)
    out: list[list[Any]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for d in ordered:
        out[level[d.code]].append(d)
    return out


def _run_one(
    platform: Platform,
    a: Analytics,
    tables: kpis.Tables,
    d: Any,
    *,
    as_of: datetime,
    actor: str,
    write_back: bool,
    flags: pa.Table | None = None,
) -> dict[str, Any]:
    started = platform.clock.now()
    details: dict[str, Any] = {}
    if d.kind == TagKind.RULE:
        assert flags is not None  # run_tags evaluates a level's rule tags together
        ids = flags.filter(flags.column(d.code)).column("member_id")
        data = pa.table(
            {
                "member_id": ids,
                "value": pa.array(["true"] * len(ids), pa.string()),
                "score": pa.nulls(len(ids), pa.float64()),
            }
        )
        version = f"rule-v{d.version}"
    elif (found := model_expression(tables, d.document, as_of=as_of)) is None:
        from quanyu.services import clv_tags  # noqa: PLC0415 - numpy/scipy only when used

        data, version, details = clv_tags.compute(a, tables, d.document, as_of=as_of)
    else:
        data, version = a.execute(found[0]), found[1]
    computed_at = as_of
    data = pa.table(
        {
            "member_id": data.column("member_id").cast(pa.int64()),
            "tag": pa.array([d.code] * data.num_rows, pa.string()),
            "value": data.column("value").cast(pa.string()),
            "score": data.column("score").cast(pa.float64()),
            "model_version": pa.array([version] * data.num_rows, pa.string()),
            "computed_at": pa.array([computed_at] * data.num_rows, pa.timestamp("us")),
        }
    )
    counted = data.column("value").value_counts().to_pylist()
    distribution = dict(sorted((c["values"], c["counts"]) for c in counted))
    finished = platform.clock.now()
    with platform.engine.begin() as conn:
        if write_back:
            _write_tags(conn, d.code, data, platform.clock.now())
        conn.execute(
            insert(t.tag_runs).values(
                tag=d.code,
                version=d.version,
                model_version=version,
                members=data.num_rows,
                distribution=distribution,
                details=details,
                actor=actor,
                started_at=started,
                finished_at=finished,
            )
        )
    # The operational write is the record; the analytics copy follows it.
    if not a.direct:
        with a.write_lock, sync.transaction(a.store()) as con:
            con.execute("DELETE FROM member_tags WHERE tag = ?", [d.code])
            con.register("_tagged", data)
            con.execute("INSERT INTO member_tags SELECT * FROM _tagged")
            con.unregister("_tagged")
    return {
        "tag": d.code,
        "version": d.version,
        "model_version": version,
        "members": data.num_rows,
        "distribution": distribution,
        "details": details,
    }


def _write_tags(conn: Connection, tag: str, data: pa.Table, at: datetime) -> None:
    conn.execute(delete(t.member_tags).where(t.member_tags.c.tag == tag))
    version = data.column("model_version")[0].as_py() if data.num_rows else ""
    rows = zip(
        data.column("member_id").to_pylist(),
        data.column("value").to_pylist(),
        data.column("score").to_pylist(),
        strict=True,
    )
    for chunk in _chunks(list(rows)):
        conn.execute(
            insert(t.member_tags),
            [
                {
                    "profile_id": i,
                    "tag": tag,
                    "value": v,
                    "score": s,
                    "model_version": version,
                    "computed_at": at,
                }
                for i, v, s in chunk
            ],
        )


def tag_distribution(platform: Platform, code: str) -> dict[str, Any]:
    """How a tag's members spread over its values, with score statistics."""
    definition = tag_definition(platform, code)
    with platform.engine.connect() as conn:
        mt = t.member_tags
        rows = conn.execute(
            select(
                mt.c.value,
                func.count(),
                func.min(mt.c.score),
                func.avg(mt.c.score),
                func.max(mt.c.score),
            )
            .where(mt.c.tag == code)
            .group_by(mt.c.value)
            .order_by(mt.c.value)
        ).all()
        last = conn.execute(
            select(t.tag_runs)
            .where(t.tag_runs.c.tag == code)
            .order_by(t.tag_runs.c.id.desc())
            .limit(1)
        ).first()
    return {
        "tag": definition,
        "values": [
            {
                "value": r[0],
                "members": r[1],
                "score_min": r[2],
                "score_avg": r[3],
                "score_max": r[4],
            }
            for r in rows
        ],
        "members": sum(r[1] for r in rows),
        "last_run": None
        if last is None
        else {
            "model_version": last.model_version,
            "finished_at": last.finished_at.isoformat(),
            "members": last.members,
            "details": last.details,
        },
    }


def resolved(platform: Platform, profile_id: int) -> int:
    """The member a (possibly merged-away) id now is; NotFound if none."""
    with platform.engine.connect() as conn:
        return current_profile_id(conn, profile_id)


def member_tags(platform: Platform, profile_id: int) -> list[dict[str, Any]]:
    with platform.engine.connect() as conn:
        rows = conn.execute(
            select(t.member_tags)
            .where(t.member_tags.c.profile_id == profile_id)
            .order_by(t.member_tags.c.tag)
        )
        return [
            {
                "tag": r.tag,
                "value": r.value,
                "score": r.score,
                "model_version": r.model_version,
                "computed_at": r.computed_at.isoformat(),
            }
            for r in rows
        ]


# ---------------------------------------------------------------- segments


def _condition(document: Any) -> Condition:
    return parse(document, field="condition")


def count(platform: Platform, document: Any) -> dict[str, Any]:
    """The live count of a condition (a segment being edited)."""
    condition = _condition(document)
    a = analytics(platform)
    with a.lock:
        at = a.now()
        tables = a.tables()
        expr = conditions.matching(tables, condition, as_of=at, summary=summary_of(tables)).count()
        return {"members": int(expr.execute()), "as_of": at.isoformat()}


def overlap(platform: Platform, first: Any, second: Any) -> dict[str, Any]:
    a_cond = parse(first, field="first")
    b_cond = parse(second, field="second")
    a = analytics(platform)
    with a.lock:
        # Both conditions in one pass over the facts.
        tables = a.tables()
        flags = conditions.evaluate(
            tables,
            {"first": a_cond, "second": b_cond},
            as_of=a.now(),
            summary=summary_of(tables),
        )
        agg = a.execute(
            flags.aggregate(
                first=flags.first.sum(),
                second=flags.second.sum(),
                both=(flags.first & flags.second).sum(),
            )
        ).to_pylist()[0]
    first_n, second_n, both = (int(agg[c] or 0) for c in ("first", "second", "both"))
    union = first_n + second_n - both
    return {
        "first": first_n,
        "second": second_n,
        "both": both,
        "first_only": first_n - both,
        "second_only": second_n - both,
        "jaccard": round(both / union, 4) if union else None,
    }


def define_segment(
    platform: Platform, *, code: str, name: str, condition: Any, actor: str
) -> dict[str, Any]:
    validate_codes([code], "code")
    _condition(condition)
    if not name or len(name) > 200:
        raise ValidationFailed("name must be 1-200 characters", field="name")
    at = platform.clock.now()
    with platform.engine.begin() as conn:
        row = conn.execute(select(t.segments).where(t.segments.c.code == code)).first()
        values = {"name": name, "condition": condition, "actor": actor, "updated_at": at}
        if row is None:
            conn.execute(insert(t.segments).values(code=code, version=1, **values))
        else:
            conn.execute(
                update(t.segments)
                .where(t.segments.c.code == code)
                .values(version=row.version + 1, **values)
            )
    return segment(platform, code)


def segment(platform: Platform, code: str) -> dict[str, Any]:
    with platform.engine.connect() as conn:
        row = conn.execute(select(t.segments).where(t.segments.c.code == code)).first()
        if row is None:
            raise NotFound("segment", code)
        last = conn.execute(
            select(t.segment_snapshots)
            .where(t.segment_snapshots.c.segment_id == row.id)
            .order_by(t.segment_snapshots.c.id.desc())
            .limit(1)
        ).first()
    return {
        "code": row.code,
        "name": row.name,
        "condition": row.condition,
        "version": row.version,
        "updated_at": row.updated_at.isoformat(),
        "last_snapshot": None
        if last is None
        else {
            "taken_at": last.taken_at.isoformat(),
            "members": last.members,
            "entered": last.entered,
            "exited": last.exited,
        },
    }


def list_segments(platform: Platform) -> list[dict[str, Any]]:
    with platform.engine.connect() as conn:
        codes = [
            r.code for r in conn.execute(select(t.segments.c.code).order_by(t.segments.c.code))
        ]
    return [segment(platform, c) for c in codes]


def segment_member_ids(platform: Platform, code: str) -> list[int]:
    return _members_of(platform, segment(platform, code))


def _members_of(platform: Platform, definition: Mapping[str, Any]) -> list[int]:
    condition = _condition(definition["condition"])
    a = analytics(platform)
    with a.lock:
        tables = a.tables()
        ids = a.execute(
            conditions.member_ids(tables, condition, as_of=a.now(), summary=summary_of(tables))
        )
    return sorted(ids.column("member_id").to_pylist())


def snapshot(platform: Platform, code: str, *, actor: str) -> dict[str, Any]:
    """Record the segment's members now; who entered and who left since the last snapshot
    become ``segment_events`` (journeys trigger on them)."""
    definition = segment(platform, code)
    current = set(_members_of(platform, definition))
    at = platform.clock.now()
    with platform.serial or contextlib.nullcontext(), platform.engine.begin() as conn:
        # One snapshot of a segment at a time: the next one diffs against this one.
        seg_id = conn.execute(
            select(t.segments.c.id).where(t.segments.c.code == code).with_for_update()
        ).scalar_one()
        sm, prof = t.segment_members, t.profiles
        rows = conn.execute(
            select(sm.c.profile_id, prof.c.status)
            .join(prof, prof.c.id == sm.c.profile_id)
            .where(sm.c.segment_id == seg_id)
        ).all()
        before = {r.profile_id for r in rows}
        # A merged-away member leaves without an exit event: the survivor carries on.
        live = {r.profile_id for r in rows if r.status == "active"}
        entered = sorted(current - before)
        exited = sorted((before - current) & live)
        snap_id = conn.execute(
            insert(t.segment_snapshots)
            .values(
                segment_id=seg_id,
                version=definition["version"],
                members=len(current),
                entered=len(entered),
                exited=len(exited),
                actor=actor,
                taken_at=at,
            )
            .returning(t.segment_snapshots.c.id)
        ).scalar_one()
        for chunk in _chunks(entered):
            conn.execute(
                insert(t.segment_members),
                [{"segment_id": seg_id, "profile_id": p, "entered_at": at} for p in chunk],
            )
        for chunk in _chunks(sorted(before - current)):
            conn.execute(
                delete(t.segment_members).where(
                    t.segment_members.c.segment_id == seg_id,
                    t.segment_members.c.profile_id.in_(chunk),
                )
            )
        for kind, members in (("entered", entered), ("exited", exited)):
            for chunk in _chunks(members):
                conn.execute(
                    insert(t.segment_events),
                    [
                        {
                            "segment_id": seg_id,
                            "snapshot_id": snap_id,
                            "profile_id": p,
                            "kind": kind,
                            "occurred_at": at,
                        }
                        for p in chunk
                    ],
                )
    return {
        "segment": code,
        "members": len(current),
        "entered": len(entered),
        "exited": len(exited),
        "taken_at": at.isoformat(),
    }


def segment_events(platform: Platform, code: str, *, limit: int = 100) -> list[dict[str, Any]]:
    with platform.engine.connect() as conn:
        seg_id = conn.execute(select(t.segments.c.id).where(t.segments.c.code == code)).scalar()
        if seg_id is None:
            raise NotFound("segment", code)
        rows = conn.execute(
            select(t.segment_events)
            .where(t.segment_events.c.segment_id == seg_id)
            .order_by(t.segment_events.c.id.desc())
            .limit(limit)
        )
        return [
            {"member_id": r.profile_id, "kind": r.kind, "occurred_at": r.occurred_at.isoformat()}
            for r in rows
        ]


def _chunks(items: Sequence[T], size: int = WRITE_CHUNK) -> Iterable[list[T]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def export_audience(
    platform: Platform,
    *,
    member_ids: ir.Table | None = None,
    code: str | None = None,
    actor: str,
    fmt: str = "csv",
    out: Path | None = None,
) -> tuple[bytes, int]:
    """An audience file: one row per member with only the identities the member consented
    to be contacted on (phone needs sms, email needs email, WeChat ids need wechat).
    Every export is written to the audit log."""
    if fmt not in ("csv", "parquet"):
        raise ValidationFailed("format must be csv or parquet", field="format")
    a = analytics(platform)
    with a.lock:
        if not a.direct:
            a.refresh()  # consents withdrawn a moment ago must already hold
        tables = a.tables()
        if member_ids is None:
            assert code is not None
            condition = _condition(segment(platform, code)["condition"])
            member_ids = conditions.member_ids(
                tables, condition, as_of=a.now(), summary=summary_of(tables)
            )
        expr = audience_expression(tables, member_ids)
        data = a.execute(expr)
    with platform.engine.begin() as conn:
        conn.execute(
            insert(t.audit_log).values(
                action="export",
                subject=f"segment:{code}" if code else "audience",
                detail={"members": data.num_rows, "format": fmt, "columns": list(EXPORT_COLUMNS)},
                actor=actor,
                occurred_at=platform.clock.now(),
            )
        )
    if fmt == "parquet":
        sink = io.BytesIO()
        pq.write_table(data, sink)
        payload = sink.getvalue()
    else:
        payload = to_csv(data.to_pylist(), EXPORT_COLUMNS).encode()
    if out is not None:
        out.write_bytes(payload)
    return payload, data.num_rows


def audience_expression(tables: kpis.Tables, member_ids: ir.Table) -> ir.Table:
    m = tables["members"]
    base = m.filter(m.member_id.isin(member_ids.member_id)).select("member_id", "member_no", "tier")
    consents = tables["consents"].filter(lambda c: c.granted)
    ids = tables["identities"]
    for kind, purpose in CONSENT_FOR_IDENTITY.items():
        ok = consents.filter(consents.purpose == purpose).select(c_member="member_id")
        values = ids.filter((ids.type == kind) & ids.member_id.isin(ok.c_member))
        values = values.group_by(v_member="member_id").aggregate(**{kind: values.value.min()})
        base = base.left_join(values, base.member_id == values.v_member).drop("v_member")
    return base.select(*EXPORT_COLUMNS).order_by("member_id")


# ---------------------------------------------------------------- geography


def near_store(platform: Platform, *, store: str, radius_km: float) -> ir.Table:
    """Members within ``radius_km`` of a store: by last known location, else by their home
    store's coordinates (great-circle distance)."""
    if not 0 < radius_km <= 20_000:
        raise ValidationFailed("radius must be between 0 and 20000 km", field="radius_km")
    if not store.isprintable():
        raise ValidationFailed("not a store code", field="store")
    a = analytics(platform)
    tables = a.tables()
    stores = tables["stores"]
    target = a.execute(stores.filter(stores.store == store).select("latitude", "longitude"))
    if target.num_rows == 0:
        raise NotFound("store", store)
    lat0, lon0 = target.column("latitude")[0].as_py(), target.column("longitude")[0].as_py()
    if lat0 is None or lon0 is None:
        raise ValidationFailed(f"store {store} has no coordinates", field="store")
    return within(tables, lat0, lon0, radius_km)


def within(tables: kpis.Tables, lat0: float, lon0: float, radius_km: float) -> ir.Table:
    m = tables["members"]
    s = tables["stores"].select(h_store="store", h_lat="latitude", h_lon="longitude")
    j = m.left_join(s, m.home_store == s.h_store)
    lat = j.latitude.fill_null(j.h_lat)
    lon = j.longitude.fill_null(j.h_lon)
    distance = haversine_km(lat, lon, lat0, lon0)
    j = j.mutate(distance_km=distance)
    return j.filter(j.distance_km <= radius_km).select("member_id", "distance_km")


def haversine_km(
    lat: ir.FloatingValue, lon: ir.FloatingValue, lat0: float, lon0: float
) -> ir.FloatingValue:
    radians = math.pi / 180
    dlat = (lat - lat0) * radians / 2
    dlon = (lon - lon0) * radians / 2
    h = (
        dlat.sin() ** 2
        + (lat * radians).cos() * ibis.literal(lat0 * radians).cos() * dlon.sin() ** 2
    )
    return h.sqrt().clip(upper=1.0).asin() * 2 * 6371.0088


def audience_near(platform: Platform, *, store: str, radius_km: float) -> dict[str, Any]:
    a = analytics(platform)
    with a.lock:
        expr = near_store(platform, store=store, radius_km=radius_km)
        n = int(expr.count().execute())
    return {"store": store, "radius_km": radius_km, "members": n}


# ---------------------------------------------------------------- CAC costs and consents


def load_costs(platform: Platform, rows: Sequence[Mapping[str, Any]], *, actor: str) -> int:
    """Upsert recruitment costs per (channel, month); all or nothing."""
    ref = platform.reference.get()
    at = platform.clock.now()
    parsed = []
    for i, row in enumerate(rows):
        channel = ref.channels.get(str(row.get("channel")))
        if channel is None:
            raise ValidationFailed(
                f"unknown channel {row.get('channel')!r}", field=f"costs[{i}].channel"
            )
        month = str(row.get("month", ""))
        try:
            datetime.strptime(month, "%Y-%m")  # noqa: DTZ007 - a format check only
        except ValueError:
            raise ValidationFailed("month must be YYYY-MM", field=f"costs[{i}].month") from None
        amount = row.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise ValidationFailed(
                "amount must be whole fen, not negative", field=f"costs[{i}].amount"
            )
        parsed.append((channel.id, month, amount))
    with platform.engine.begin() as conn:
        for channel_id, month, amount in parsed:
            c = t.acquisition_costs.c
            conn.execute(
                delete(t.acquisition_costs).where(c.channel_id == channel_id, c.month == month)
            )
            conn.execute(
                insert(t.acquisition_costs).values(
                    channel_id=channel_id, month=month, amount=amount, actor=actor, loaded_at=at
                )
            )
    analytics(platform).mark_stale()
    return len(parsed)


def record_consents(
    platform: Platform, profile_id: int, consents: Mapping[str, bool], *, source: str, actor: str
) -> list[dict[str, Any]]:
    for purpose in consents:
        validate_codes([purpose], f"consents.{purpose}")
        if len(purpose) > MAX_PURPOSE:
            raise ValidationFailed(
                f"a purpose has at most {MAX_PURPOSE} characters", field=f"consents.{purpose}"
            )
    at = platform.clock.now()
    with platform.engine.begin() as conn:
        pid = current_profile_id(conn, profile_id)
        for purpose, granted in consents.items():
            conn.execute(
                insert(t.consents).values(
                    profile_id=pid,
                    purpose=purpose,
                    granted=bool(granted),
                    source=source,
                    actor=actor,
                    recorded_at=at,
                )
            )
    analytics(platform).mark_stale()
    return member_consents(platform, pid)


def member_consents(platform: Platform, profile_id: int) -> list[dict[str, Any]]:
    with platform.engine.connect() as conn:
        rows = conn.execute(
            select(t.consents)
            .where(t.consents.c.profile_id == profile_id)
            .order_by(t.consents.c.recorded_at, t.consents.c.id)
        )
        latest: dict[str, Any] = {}
        for r in rows:
            latest[r.purpose] = {
                "purpose": r.purpose,
                "granted": r.granted,
                "source": r.source,
                "recorded_at": r.recorded_at.isoformat(),
            }
    return [latest[k] for k in sorted(latest)]


def kpi_query(
    *,
    since: date,
    until: date,
    grain: str | None = None,
    by: Sequence[str] = (),
    filters: Mapping[str, Sequence[str]] | None = None,
    window_days: int = 30,
) -> kpis.KpiQuery:
    """A :class:`KpiQuery` from plain values, with errors naming the field."""
    try:
        g = kpis.Grain(grain) if grain else None
    except ValueError:
        raise ValidationFailed(
            "grain must be day, week, month, quarter or year", field="grain"
        ) from None
    dims: list[kpis.Dimension] = []
    for name in dict.fromkeys(by):  # each dimension once, in the order given
        try:
            dims.append(kpis.Dimension(name))
        except ValueError:
            raise ValidationFailed(f"unknown dimension {name!r}", field="by") from None
    scoped: dict[kpis.Dimension, tuple[str, ...]] = {}
    for name, codes in (filters or {}).items():
        try:
            dim = kpis.Dimension(name)
        except ValueError:
            raise ValidationFailed(f"unknown dimension {name!r}", field=name) from None
        for code in codes:
            if not 0 < len(code) <= 100 or not code.isprintable():
                raise ValidationFailed("codes are 1-100 printable characters", field=name)
        scoped[dim] = tuple(codes)
    if not 1 <= window_days <= 3660:
        raise ValidationFailed("window_days must be 1-3660", field="window_days")
    if until <= since:
        raise ValidationFailed("until must be after since", field="until")
    if (until - since).days > MAX_PERIOD_DAYS:
        raise ValidationFailed("a period may span at most ten years", field="until")
    return replace(
        kpis.KpiQuery(since=since, until=until),
        grain=g,
        by=tuple(dims),
        filters=scoped,
        window_days=window_days,
    )
