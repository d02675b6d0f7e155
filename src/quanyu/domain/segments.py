"""The condition language of rule tags and segments: parsing and validation.

A condition is JSON. It is parsed here into frozen dataclasses (pure, no I/O) and
compiled to an Ibis predicate by :mod:`quanyu.analytics.conditions`; it is never evaluated
row by row in Python. ``docs/metrics.md`` documents the language with examples.

    {"all": [c, ...]}   every condition holds        {"any": [c, ...]}  at least one holds
    {"not": c}          c does not hold

    {"attr": "tier", "op": "in", "value": ["gold", "platinum"]}
        attributes: brand channel store region guide tier gender home_store
                    age (years) joined_days (days since joining) birthday_month
    {"orders": "count", "within_days": 90, "channel": ["douyin"], "op": "gte", "value": 2}
        aggregates of counted orders: count | sales (net, fen) | units | recency_days
        (days since the last one); optional within_days, channel, store, category, sku
        (a category or SKU filter counts the orders and sales of those lines only)
    {"points": "balance", "op": "gte", "value": 1000}
    {"coupons": "held" | "used", "template": ["WELCOME10"], "within_days": 30,
     "op": "gte", "value": 1}
    {"tag": "rfm_segment", "op": "in", "value": ["champions", "loyal"]}
    {"tag": "livestream_buyer"}                       the member has the tag
    {"tag": "clv", "score": true, "op": "gte", "value": 5000}   compare the tag's score

Comparison operators: eq ne gt gte lt lte in not_in between (value [low, high], both
included) is_null not_null.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from quanyu.domain.errors import ValidationFailed

E = TypeVar("E", bound=enum.StrEnum)

MAX_DEPTH = 8
MAX_LEAVES = 64


class Op(enum.StrEnum):
    EQ = "eq"
    NE = "ne"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    IN = "in"
    NOT_IN = "not_in"
    BETWEEN = "between"
    IS_NULL = "is_null"
    NOT_NULL = "not_null"


class Attribute(enum.StrEnum):
    BRAND = "brand"
    CHANNEL = "channel"
    STORE = "store"
    REGION = "region"
    GUIDE = "guide"
    TIER = "tier"
    GENDER = "gender"
    HOME_STORE = "home_store"
    AGE = "age"
    JOINED_DAYS = "joined_days"
    BIRTHDAY_MONTH = "birthday_month"


NUMERIC_ATTRIBUTES = {Attribute.AGE, Attribute.JOINED_DAYS, Attribute.BIRTHDAY_MONTH}


class OrderMetric(enum.StrEnum):
    COUNT = "count"
    SALES = "sales"
    UNITS = "units"
    RECENCY_DAYS = "recency_days"


class CouponMetric(enum.StrEnum):
    HELD = "held"
    USED = "used"


@dataclass(frozen=True)
class Comparison:
    op: Op
    value: Any = None


@dataclass(frozen=True)
class AttrCondition:
    attr: Attribute
    test: Comparison


@dataclass(frozen=True)
class OrderCondition:
    metric: OrderMetric
    test: Comparison
    within_days: int | None = None
    channel: tuple[str, ...] = ()
    store: tuple[str, ...] = ()
    category: tuple[str, ...] = ()
    sku: tuple[str, ...] = ()


@dataclass(frozen=True)
class PointsCondition:
    test: Comparison


@dataclass(frozen=True)
class CouponCondition:
    metric: CouponMetric
    test: Comparison
    template: tuple[str, ...] = ()
    within_days: int | None = None


@dataclass(frozen=True)
class TagCondition:
    tag: str
    test: Comparison | None = None  # None: the member has the tag
    score: bool = False


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    part: Condition


Condition = (
    AllOf
    | AnyOf
    | Not
    | AttrCondition
    | OrderCondition
    | PointsCondition
    | CouponCondition
    | TagCondition
)


def parse(document: Any, *, field: str = "condition") -> Condition:
    """Parse and validate a condition; a mistake raises :class:`ValidationFailed` naming
    the path of the offending part, e.g. ``condition.all[1].op``."""
    counter = [0]
    return _parse(document, field, 0, counter)


def tags_used(condition: Condition) -> set[str]:
    """The tag codes a condition refers to (a tag may not depend on itself)."""
    match condition:
        case AllOf(parts) | AnyOf(parts):
            return set().union(*(tags_used(p) for p in parts)) if parts else set()
        case Not(part):
            return tags_used(part)
        case TagCondition(tag=tag):
            return {tag}
        case _:
            return set()


def _fail(field: str, detail: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {detail}", field=field)


def _parse(doc: Any, field: str, depth: int, counter: list[int]) -> Condition:
    if depth > MAX_DEPTH:
        raise _fail(field, f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(doc, Mapping) or not doc:
        raise _fail(field, 'must be an object such as {"all": [...]} or {"attr": ...}')
    kinds = [
        k for k in ("all", "any", "not", "attr", "orders", "points", "coupons", "tag") if k in doc
    ]
    if len(kinds) != 1:
        raise _fail(
            field, "must have exactly one of all, any, not, attr, orders, points, coupons, tag"
        )
    kind = kinds[0]
    if kind in ("all", "any"):
        parts = doc[kind]
        if not isinstance(parts, list) or not parts:
            raise _fail(f"{field}.{kind}", "must be a non-empty list of conditions")
        _only(doc, {kind}, field)
        parsed = tuple(
            _parse(p, f"{field}.{kind}[{i}]", depth + 1, counter) for i, p in enumerate(parts)
        )
        return AllOf(parsed) if kind == "all" else AnyOf(parsed)
    if kind == "not":
        _only(doc, {"not"}, field)
        return Not(_parse(doc["not"], f"{field}.not", depth + 1, counter))
    counter[0] += 1
    if counter[0] > MAX_LEAVES:
        raise _fail(field, f"a condition may have at most {MAX_LEAVES} tests")
    if kind == "attr":
        _only(doc, {"attr", "op", "value"}, field)
        attr = _enum(Attribute, doc["attr"], f"{field}.attr")
        return AttrCondition(attr, _comparison(doc, field, numeric=attr in NUMERIC_ATTRIBUTES))
    if kind == "orders":
        _only(
            doc,
            {"orders", "op", "value", "within_days", "channel", "store", "category", "sku"},
            field,
        )
        return OrderCondition(
            metric=_enum(OrderMetric, doc["orders"], f"{field}.orders"),
            test=_comparison(doc, field, numeric=True),
            within_days=_days(doc.get("within_days"), f"{field}.within_days"),
            channel=_codes(doc.get("channel"), f"{field}.channel"),
            store=_codes(doc.get("store"), f"{field}.store"),
            category=_codes(doc.get("category"), f"{field}.category"),
            sku=_codes(doc.get("sku"), f"{field}.sku"),
        )
    if kind == "points":
        _only(doc, {"points", "op", "value"}, field)
        if doc["points"] != "balance":
            raise _fail(f"{field}.points", 'must be "balance"')
        return PointsCondition(_comparison(doc, field, numeric=True))
    if kind == "coupons":
        _only(doc, {"coupons", "op", "value", "template", "within_days"}, field)
        if doc.get("coupons") == "held" and "within_days" in doc:
            raise _fail(f"{field}.within_days", "applies to used coupons, not held ones")
        return CouponCondition(
            metric=_enum(CouponMetric, doc["coupons"], f"{field}.coupons"),
            test=_comparison(doc, field, numeric=True),
            template=_codes(doc.get("template"), f"{field}.template"),
            within_days=_days(doc.get("within_days"), f"{field}.within_days"),
        )
    _only(doc, {"tag", "op", "value", "score"}, field)
    tag = doc["tag"]
    if not isinstance(tag, str) or not 0 < len(tag) <= 64 or not tag.isprintable():
        raise _fail(f"{field}.tag", "must be a tag code")
    score = doc.get("score", False)
    if not isinstance(score, bool):
        raise _fail(f"{field}.score", "must be true or false")
    if "op" not in doc:
        if score:
            raise _fail(f"{field}.op", "is required when comparing a score")
        return TagCondition(tag)
    return TagCondition(tag, _comparison(doc, field, numeric=score), score)


def _only(doc: Mapping[str, Any], allowed: set[str], field: str) -> None:
    extra = sorted(set(doc) - allowed)
    if extra:
        raise _fail(f"{field}.{extra[0]}", "is not allowed here")


def _enum(kind: type[E], value: Any, field: str) -> E:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(e.value for e in kind)
        raise _fail(field, f"must be one of {choices}") from None


def _days(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 36_600:
        raise _fail(field, "must be a whole number of days from 1 to 36600")
    return value


def _codes(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(_code(v) for v in value):
        raise _fail(field, "must be a code or a non-empty list of codes")
    return tuple(value)


def _code(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 100 and value.isprintable()


def _comparison(doc: Mapping[str, Any], field: str, *, numeric: bool) -> Comparison:
    if "op" not in doc:
        raise _fail(f"{field}.op", "is required")
    op = _enum(Op, doc["op"], f"{field}.op")
    value = doc.get("value")
    where = f"{field}.value"
    if op in (Op.IS_NULL, Op.NOT_NULL):
        if "value" in doc:
            raise _fail(where, f"is not used with {op.value}")
        return Comparison(op)
    if "value" not in doc:
        raise _fail(where, "is required")
    if op in (Op.IN, Op.NOT_IN):
        if not isinstance(value, list) or not value:
            raise _fail(where, f"must be a non-empty list with {op.value}")
        return Comparison(op, tuple(_scalar(v, where, numeric) for v in value))
    if op is Op.BETWEEN:
        if not isinstance(value, list) or len(value) != 2:
            raise _fail(where, "must be [low, high] with between")
        low, high = (_scalar(v, where, numeric) for v in value)
        if low > high:
            raise _fail(where, "low must not be above high")
        return Comparison(op, (low, high))
    return Comparison(op, _scalar(value, where, numeric))


def _scalar(value: Any, field: str, numeric: bool) -> Any:
    if numeric:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(field, "must be a number")
        if not math.isfinite(value) or abs(value) >= 2**63:
            raise _fail(field, "must be a finite number below 2^63 in size")
        return value
    if not isinstance(value, str) or len(value) > 200 or not value.isprintable():
        raise _fail(field, "must be a string of up to 200 printable characters")
    return value


def validate_codes(codes: Sequence[str], field: str) -> None:
    """Tag and segment codes: 1-64 characters of letters, digits, ``_`` and ``-``."""
    for code in codes:
        if not code or len(code) > 64 or not all(c.isalnum() or c in "_-" for c in code):
            raise _fail(field, "must be 1-64 letters, digits, _ or -")
