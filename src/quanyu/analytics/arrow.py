"""Results of Ibis expressions as Arrow tables."""

from __future__ import annotations

import ibis.expr.operations as ops
import ibis.expr.types as ir
import pyarrow as pa
from ibis.backends.duckdb.converter import DuckDBPyArrowData


def to_arrow(expr: ir.Table) -> pa.Table:
    """``expr``'s result as Arrow, typed as Ibis types it.

    On DuckDB the query's result is taken with the connection's own Arrow export,
    which is about twice as fast as Ibis's (``to_arrow_table``) for millions of rows
    (``docs/benchmarks.md``, insight); elsewhere, and for expressions over in-memory
    tables (which Ibis registers first), through Ibis."""
    backend = expr._find_backend(use_default=False)
    if getattr(backend, "name", None) != "duckdb" or expr.op().find(ops.InMemoryTable):
        return expr.to_pyarrow()
    table = backend.con.sql(backend.compile(expr)).arrow()
    if isinstance(table, pa.RecordBatchReader):
        table = table.read_all()
    result: pa.Table = expr.__pyarrow_result__(table, data_mapper=DuckDBPyArrowData)
    return result
