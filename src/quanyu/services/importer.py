"""``quanyu import orders FILE``: stream a CSV or Parquet file through batch ingestion."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from quanyu.adapters.order_files import ParsedOrder, read_orders
from quanyu.domain.errors import QuanyuError
from quanyu.domain.orders import OrderInput
from quanyu.services.orders import ingest_orders
from quanyu.services.uow import Platform


@dataclass(frozen=True)
class Rejection:
    row: int  # first data row of the order, 1-based, header excluded
    rows: int
    channel: str
    external_id: str
    field: str | None
    reason: str


@dataclass
class ImportSummary:
    orders: int = 0
    lines: int = 0
    accepted: int = 0
    replayed: int = 0
    rejected_orders: int = 0
    rejected_rows: int = 0
    rejections: list[Rejection] = field(default_factory=list)


def import_orders(
    platform: Platform,
    path: Path,
    *,
    actor: str,
    batch_orders: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Ingest every order in ``path``; each batch of orders is one transaction."""
    summary = ImportSummary()
    batch: list[tuple[ParsedOrder, OrderInput]] = []

    def reject(p: ParsedOrder, error: QuanyuError) -> None:
        summary.rejected_orders += 1
        summary.rejected_rows += p.rows
        summary.rejections.append(
            Rejection(
                p.first_row,
                p.rows,
                p.channel,
                p.external_id,
                error.fields.get("field"),
                error.detail,
            )
        )

    def flush() -> None:
        if not batch:
            return
        results = ingest_orders(platform, [o for _, o in batch], actor=actor)
        for (parsed, _order), res in zip(batch, results, strict=True):
            if isinstance(res, QuanyuError):
                reject(parsed, res)
            elif res["replayed"]:
                summary.replayed += 1
            else:
                summary.accepted += 1
        if progress:
            progress(sum(p.rows for p, _ in batch))
        batch.clear()

    for parsed in read_orders(path):
        summary.orders += 1
        summary.lines += parsed.rows
        if parsed.order is None:
            assert parsed.error is not None
            reject(parsed, parsed.error)
            if progress:
                progress(parsed.rows)
            continue
        batch.append((parsed, parsed.order))
        if len(batch) >= batch_orders:
            flush()
    flush()
    return summary
