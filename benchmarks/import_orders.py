"""``quanyu import orders`` throughput on a CSV and a Parquet file, in order lines per second.

Writes a file of N synthetic orders (one row per line, docs/import-format.md) and imports
it into a fresh database through the same code path as the CLI. Baseline, in the same
run: reading the same file into Arrow and writing its rows with a plain executemany.

    uv run python -m benchmarks.import_orders --backend sqlite --orders 60000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from benchmarks.batch_ingest import raw_baseline
from benchmarks.common import OUT, fresh_database, machine, orders, seed_brand
from quanyu.services.importer import import_orders


def write_files(n: int) -> tuple[int, list[str]]:
    rows: dict[str, list[object]] = {
        k: []
        for k in (
            "channel",
            "external_id",
            "ordered_at",
            "store",
            "phone",
            "line_no",
            "sku",
            "quantity",
            "list_price",
            "paid_amount",
        )
    }
    for d in orders(n, prefix="F", seed=3):
        for line in d["lines"]:
            rows["channel"].append(d["channel"])
            rows["external_id"].append(d["external_id"])
            rows["ordered_at"].append(d["ordered_at"])
            rows["store"].append(d["store"])
            rows["phone"].append(d["identities"][0]["value"])
            for k in ("line_no", "sku", "quantity", "list_price", "paid_amount"):
                rows[k].append(line[k])
    table = pa.table(rows)
    OUT.mkdir(exist_ok=True)
    pacsv.write_csv(table, OUT / "orders.csv")
    pq.write_table(table, OUT / "orders.parquet")
    return table.num_rows, [str(OUT / "orders.csv"), str(OUT / "orders.parquet")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--orders", type=int, default=60_000)
    parser.add_argument("--members", type=int, default=20_000)
    args = parser.parse_args()
    lines, files = write_files(args.orders)
    result: dict[str, object] = {
        "benchmark": "quanyu import orders",
        "backend": args.backend,
        "orders": args.orders,
        "lines": lines,
    }
    for path in files:
        kind = path.rsplit(".", 1)[1]
        platform = seed_brand(fresh_database(args.backend), members_count=args.members)
        t0 = time.perf_counter()
        summary = import_orders(platform, Path(path), actor="bench")
        seconds = time.perf_counter() - t0
        assert summary.accepted == args.orders, summary.rejections[:3]
        result[f"{kind}_lines_per_s"] = round(lines / seconds)
        t0 = time.perf_counter()
        table = pq.read_table(path) if kind == "parquet" else pacsv.read_csv(path)
        raw = [
            tuple(r.values())
            for r in table.select(
                ["external_id", "line_no", "sku", "quantity", "list_price", "paid_amount"]
            ).to_pylist()
        ]
        raw_s = time.perf_counter() - t0 + raw_baseline(platform, raw)
        result[f"{kind}_raw_lines_per_s"] = round(lines / raw_s)
        result[f"{kind}_ratio_to_raw"] = round((lines / seconds) / (lines / raw_s), 4)
        platform.engine.dispose()
    result["machine"] = machine()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
