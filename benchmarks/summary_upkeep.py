"""What keeping the member summaries costs a refresh, at scale: the rows of a sample of
members recomputed (as a refresh does for the buyers of the orders it copies), and the
summaries' size. Run after ``benchmarks.insight_scale`` on the same folder, which leaves
the summaries in its DuckDB file.

    uv run python -m benchmarks.summary_upkeep var/scale/10m
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyarrow as pa

from benchmarks.insight_scale import AS_OF, load
from quanyu.analytics import summary as summaries
from quanyu.analytics import sync


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    store = load(args.folder, by_time=True)
    raw = store.con
    anchor = summaries.anchor_of(AS_OF)
    for n in (1_000, 10_000, 100_000):
        ids = raw.execute(
            f"SELECT member_id FROM {summaries.TABLE} USING SAMPLE {n} ROWS"
        ).to_arrow_table()
        raw.register("_touched", pa.table({"member_id": ids.column(0)}))
        started = time.perf_counter()
        raw.execute("BEGIN TRANSACTION")
        for facet in (None, *summaries.FACETS):
            sync.write_summary(store, raw, anchor=anchor, members="_touched", facet=facet)
        raw.execute("ROLLBACK")  # leave the summaries as they were
        print(f"  rows of {n:>7,} members recomputed  {time.perf_counter() - started:6.2f} s")
    for facet in (None, *summaries.FACETS):
        name = summaries.table_name(facet)
        (rows,) = raw.execute(f"SELECT count(*) FROM {name}").fetchone()
        (blocks,) = raw.execute(
            f"SELECT count(DISTINCT block_id) FROM pragma_storage_info('{name}')"
        ).fetchone()
        print(f"  {name:<26} {rows:>12,} rows  {blocks * 256 / 1024:6.0f} MB")


if __name__ == "__main__":
    main()
