"""Tags: what a tag definition is, and the real-time tag conditions checked at ingestion.

Three kinds of tag, one ``member_tags`` row per member and tag (value, score, model
version):

- ``rule``: a condition (:mod:`quanyu.domain.segments`) over attributes, orders, points,
  coupons and other tags, evaluated in bulk by a tag run;
- ``realtime``: a condition on the event being ingested, checked in the event's own
  transaction, so the tag exists without a batch run. An order matches when every
  given field matches::

      {"event": "order", "channel": ["douyin", "kuaishou"], "store": [...],
       "category": [...], "sku": [...], "min_paid": 50000}

- ``model``: a model's output: ``{"model": "rfm" | "lifecycle" | "p_alive" |
  "expected_purchases" | "clv", ...settings}``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from quanyu.domain.errors import ValidationFailed
from quanyu.domain.segments import parse, tags_used, validate_codes


class TagKind(enum.StrEnum):
    RULE = "rule"
    REALTIME = "realtime"
    MODEL = "model"


class Model(enum.StrEnum):
    RFM = "rfm"
    LIFECYCLE = "lifecycle"
    P_ALIVE = "p_alive"
    EXPECTED_PURCHASES = "expected_purchases"
    CLV = "clv"


MODEL_SETTINGS: dict[Model, dict[str, tuple[int, int]]] = {
    Model.RFM: {"lookback_days": (30, 3660)},
    Model.LIFECYCLE: {"new_days": (1, 3660), "active_days": (1, 3660), "lapsed_days": (2, 7320)},
    Model.P_ALIVE: {},
    Model.EXPECTED_PURCHASES: {"horizon_days": (1, 3660)},
    Model.CLV: {"horizon_months": (1, 120), "margin_percent": (1, 100)},
}


@dataclass(frozen=True)
class OrderEvent:
    """What a real-time tag sees of an ingested order."""

    channel: str
    store: str | None
    paid_total: int
    lines: Sequence[tuple[str, str]]  # (sku, category)


@dataclass(frozen=True)
class RealtimeCondition:
    channel: tuple[str, ...] = ()
    store: tuple[str, ...] = ()
    category: tuple[str, ...] = ()
    sku: tuple[str, ...] = ()
    min_paid: int = 0

    def matches(self, event: OrderEvent) -> bool:
        if self.channel and event.channel not in self.channel:
            return False
        if self.store and event.store not in self.store:
            return False
        if event.paid_total < self.min_paid:
            return False
        if self.category and not any(c in self.category for _, c in event.lines):
            return False
        return not (self.sku and not any(s in self.sku for s, _ in event.lines))


def validate_definition(code: str, kind: str, document: Any) -> Any:
    """Check a tag definition; return its parsed form (condition, realtime condition or
    model settings). Errors name the field, e.g. ``document.all[0].op``."""
    validate_codes([code], "code")
    try:
        tag_kind = TagKind(kind)
    except ValueError:
        raise ValidationFailed("kind must be rule, realtime or model", field="kind") from None
    if tag_kind is TagKind.RULE:
        condition = parse(document, field="document")
        if code in tags_used(condition):
            raise ValidationFailed("a tag may not depend on itself", field="document")
        return condition
    if not isinstance(document, Mapping):
        raise ValidationFailed("must be an object", field="document")
    if tag_kind is TagKind.REALTIME:
        return parse_realtime(document)
    return parse_model(document)


def parse_realtime(document: Mapping[str, Any]) -> RealtimeCondition:
    allowed = {"event", "channel", "store", "category", "sku", "min_paid"}
    extra = sorted(set(document) - allowed)
    if extra:
        raise ValidationFailed(f"{extra[0]} is not allowed", field=f"document.{extra[0]}")
    if document.get("event") != "order":
        raise ValidationFailed('event must be "order"', field="document.event")
    lists: dict[str, tuple[str, ...]] = {}
    for name in ("channel", "store", "category", "sku"):
        value = document.get(name)
        if value is None:
            lists[name] = ()
            continue
        if isinstance(value, str):
            value = [value]
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and 0 < len(v) <= 100 and v.isprintable() for v in value)
        ):
            raise ValidationFailed("must be a code or list of codes", field=f"document.{name}")
        lists[name] = tuple(value)
    min_paid = document.get("min_paid", 0)
    if isinstance(min_paid, bool) or not isinstance(min_paid, int) or min_paid < 0:
        raise ValidationFailed("must be a whole number of fen", field="document.min_paid")
    if not any(lists.values()) and not min_paid:
        raise ValidationFailed(
            "give at least one of channel, store, category, sku, min_paid", field="document"
        )
    return RealtimeCondition(min_paid=min_paid, **lists)


def parse_model(document: Mapping[str, Any]) -> tuple[Model, dict[str, int]]:
    try:
        model = Model(str(document.get("model")))
    except ValueError:
        choices = ", ".join(m.value for m in Model)
        raise ValidationFailed(f"model must be one of {choices}", field="document.model") from None
    settings: dict[str, int] = {}
    for name, value in document.items():
        if name == "model":
            continue
        bounds = MODEL_SETTINGS[model].get(name)
        if bounds is None:
            raise ValidationFailed(
                f"{name} is not a setting of {model.value}", field=f"document.{name}"
            )
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not (bounds[0] <= value <= bounds[1])
        ):
            raise ValidationFailed(
                f"must be a whole number from {bounds[0]} to {bounds[1]}", field=f"document.{name}"
            )
        settings[name] = value
    if model is Model.LIFECYCLE:
        active = settings.get("active_days", 180)
        lapsed = settings.get("lapsed_days", 365)
        if active >= lapsed:
            raise ValidationFailed(
                "active_days must be below lapsed_days", field="document.active_days"
            )
    return model, settings
