"""Reading order files (CSV or Parquet) in the documented column format.

One row per order line; consecutive rows with the same (channel, external_id) form
one order. See docs/import-format.md. Rows are read in Arrow batches so files larger
than memory stream through. A row that cannot be parsed rejects its whole order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from quanyu.domain.errors import ValidationFailed
from quanyu.domain.orders import IdentityInput, LineInput, OrderInput, PaymentInput

REQUIRED = ("channel", "external_id", "ordered_at", "sku", "quantity", "list_price", "paid_amount")
OPTIONAL = (
    "brand",
    "store",
    "guide",
    "line_no",
    "category",
    "phone",
    "email",
    "wechat_unionid",
    "wechat_openid",
    "wechat_appid",
    "platform",
    "platform_buyer_id",
    "member_card",
    "points_used",
    "points_amount",
    "payment_method",
)
LINE_LEVEL = ("line_no", "category")
ORDER_LEVEL = ("ordered_at", *(c for c in OPTIONAL if c not in LINE_LEVEL))


@dataclass(frozen=True)
class ParsedOrder:
    first_row: int  # 1-based data row number (header excluded)
    rows: int
    channel: str
    external_id: str
    order: OrderInput | None
    error: ValidationFailed | None


def _batches(path: Path, batch_rows: int) -> Iterator[pa.RecordBatch]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows)
        return
    if suffix not in (".csv", ".txt"):
        raise ValidationFailed(f"{path.name}: use a .csv or .parquet file", field="file")
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=8 << 20),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in (*REQUIRED, *OPTIONAL)},
            strings_can_be_null=True,
        ),
    )
    yield from reader


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _int(value: Any, field: str, *, default: int | None = None) -> int:
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is None:
            raise ValidationFailed(f"{field} is required", field=field)
        return default
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError as exc:
        raise ValidationFailed(
            f"{field} must be a whole number, not {value!r}", field=field
        ) from exc


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValidationFailed("ordered_at needs a time zone offset", field="ordered_at")
        return value
    text = _text(value)
    if text is None:
        raise ValidationFailed("ordered_at is required", field="ordered_at")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValidationFailed(f"ordered_at {text!r} is not ISO 8601", field="ordered_at") from exc
    if parsed.tzinfo is None:
        raise ValidationFailed("ordered_at needs a time zone offset", field="ordered_at")
    return parsed


def _identities(row: dict[str, Any], channel: str) -> tuple[IdentityInput, ...]:
    out: list[IdentityInput] = []
    for column in ("phone", "email", "wechat_unionid", "member_card"):
        if (v := _text(row.get(column))) is not None:
            out.append(IdentityInput(column, v))
    if (v := _text(row.get("wechat_openid"))) is not None:
        out.append(IdentityInput("wechat_openid", v, _text(row.get("wechat_appid"))))
    if (v := _text(row.get("platform_buyer_id"))) is not None:
        out.append(IdentityInput("platform_buyer", v, _text(row.get("platform")) or channel))
    return tuple(out)


def _build(rows: list[dict[str, Any]]) -> OrderInput:
    head = rows[0]
    for name in ORDER_LEVEL:
        values = {_text(r.get(name)) for r in rows}
        if len(values) > 1:
            raise ValidationFailed(f"{name} differs between the lines of one order", field=name)
    channel = _text(head.get("channel")) or ""
    lines = []
    for n, r in enumerate(rows):
        sku = _text(r.get("sku"))
        if sku is None:
            raise ValidationFailed("sku is required", field="sku")
        lines.append(
            LineInput(
                line_no=_int(r.get("line_no"), "line_no", default=n + 1),
                sku=sku,
                quantity=_int(r.get("quantity"), "quantity"),
                list_price=_int(r.get("list_price"), "list_price"),
                paid_amount=_int(r.get("paid_amount"), "paid_amount"),
                category=_text(r.get("category")),
            )
        )
    paid = sum(line.paid_amount for line in lines)
    points_used = _int(head.get("points_used"), "points_used", default=0)
    payments: tuple[PaymentInput, ...] = ()
    if points_used:
        amount = _int(head.get("points_amount"), "points_amount")
        payments = (
            PaymentInput("points", amount, points_used),
            PaymentInput(_text(head.get("payment_method")) or "other", paid - amount),
        )
    return OrderInput(
        channel=channel,
        external_id=_text(head.get("external_id")) or "",
        ordered_at=_time(head.get("ordered_at")),
        lines=tuple(lines),
        identities=_identities(head, channel),
        payments=payments,
        brand=_text(head.get("brand")),
        store=_text(head.get("store")),
        guide=_text(head.get("guide")),
    )


def read_orders(path: Path, *, batch_rows: int = 65536) -> Iterator[ParsedOrder]:
    """Yield each order in the file, parsed or with the reason it was rejected."""
    if not path.exists():
        raise ValidationFailed(f"{path} does not exist", field="file")
    pending: list[dict[str, Any]] = []
    first = 0
    key: tuple[Any, Any] | None = None
    row_no = 0
    checked = False
    for batch in _batches(path, batch_rows):
        if not checked:
            missing = [c for c in REQUIRED if c not in batch.schema.names]
            if missing:
                raise ValidationFailed(
                    f"{path.name} lacks columns: {', '.join(missing)}", field="file"
                )
            checked = True
        for row in batch.to_pylist():
            row_no += 1
            row_key = (row.get("channel"), row.get("external_id"))
            if key is not None and row_key != key:
                yield _finish(first, pending)
                pending = []
            if not pending:
                first = row_no
            key = row_key
            pending.append(row)
    if pending:
        yield _finish(first, pending)


def _finish(first: int, rows: list[dict[str, Any]]) -> ParsedOrder:
    channel = _text(rows[0].get("channel")) or ""
    external_id = _text(rows[0].get("external_id")) or ""
    try:
        return ParsedOrder(first, len(rows), channel, external_id, _build(rows), None)
    except ValidationFailed as exc:
        return ParsedOrder(first, len(rows), channel, external_id, None, exc)
