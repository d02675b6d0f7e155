"""Channel assortment: what a channel, or one store of it, must sell (必销), may sell
(选销) or must not sell (禁销).

A rule names a channel, optionally one store, and a target: one SKU or one category.
Which rule decides for a SKU of some category sold in a channel at a store:

1. a rule of that store for the SKU,
2. a rule of that store for the category,
3. a channel-wide rule for the SKU,
4. a channel-wide rule for the category.

A store rule beats a channel-wide rule; at the same level a SKU rule beats a category
rule. No rule at all means the SKU is not governed (``None``), which callers treat as
optional. An order or a basket without a store sees the channel-wide rules only.

This module is pure: ids in, statuses and lines out. What a forbidden line does to an
order is the program's :class:`AssortmentPolicy`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


class AssortmentStatus(enum.StrEnum):
    MUST = "must"  # 必销: every store is expected to sell it
    OPTIONAL = "optional"  # 选销: may be sold
    FORBIDDEN = "forbidden"  # 禁销: must not be sold


class TargetKind(enum.StrEnum):
    SKU = "sku"
    CATEGORY = "category"


class AssortmentPolicy(enum.StrEnum):
    """What an order line for a forbidden SKU does, per program."""

    REJECT = "reject"  # the order is refused
    FLAG = "flag"  # the order is accepted and the line flagged


FORBIDDEN_IN_CHANNEL = "forbidden_in_channel"  # the code of an order flag


def rule_key(channel_id: int, store_id: int | None, target_kind: TargetKind, target: str) -> str:
    """``<channel id>/<store id or *>/<kind>:<target>``: one rule per target and level."""
    store = "*" if store_id is None else str(store_id)
    return f"{channel_id}/{store}/{TargetKind(target_kind).value}:{target}"


@dataclass(frozen=True)
class AssortmentRule:
    channel_id: int
    store_id: int | None  # None: every store of the channel, and orders without a store
    target_kind: TargetKind
    target: str
    status: AssortmentStatus

    @property
    def key(self) -> str:
        return rule_key(self.channel_id, self.store_id, self.target_kind, self.target)


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    target: str


@dataclass(frozen=True)
class RuleInput:
    """A rule as a user gives it: codes, either a SKU or a category, and a status."""

    channel: str
    status: str
    store: str | None = None  # None: channel-wide
    sku: str | None = None
    category: str | None = None


_Key = tuple[int, int | None, TargetKind, str]


class Assortment:
    """The rules of every channel, indexed for lookups on the order path."""

    def __init__(self, rules: Iterable[AssortmentRule] = ()) -> None:
        self._rules: dict[_Key, AssortmentRule] = {}
        self._channels: set[int] = set()
        for rule in rules:
            self._rules[(rule.channel_id, rule.store_id, rule.target_kind, rule.target)] = rule
            self._channels.add(rule.channel_id)

    def __len__(self) -> int:
        return len(self._rules)

    def governs(self, channel_id: int) -> bool:
        """Whether the channel has any rule at all."""
        return channel_id in self._channels

    def rule_for(
        self, channel_id: int, store_id: int | None, sku: str, category: str | None
    ) -> AssortmentRule | None:
        """The rule that decides for ``sku`` (of ``category``), by the module's precedence."""
        if channel_id not in self._channels:
            return None
        get = self._rules.get
        for level in (store_id, None) if store_id is not None else (None,):
            found = get((channel_id, level, TargetKind.SKU, sku))
            if found is None and category is not None:
                found = get((channel_id, level, TargetKind.CATEGORY, category))
            if found is not None:
                return found
        return None

    def status_of(
        self, channel_id: int, store_id: int | None, sku: str, category: str | None
    ) -> AssortmentStatus | None:
        rule = self.rule_for(channel_id, store_id, sku, category)
        return None if rule is None else rule.status

    def category_rule(
        self, channel_id: int, store_id: int | None, category: str
    ) -> AssortmentRule | None:
        """The rule that decides for a category as a whole: the store's, else the channel's."""
        get = self._rules.get
        for level in (store_id, None) if store_id is not None else (None,):
            found = get((channel_id, level, TargetKind.CATEGORY, category))
            if found is not None:
                return found
        return None

    def must_sell(
        self, channel_id: int, store_id: int | None, category_of: Mapping[str, str]
    ) -> list[Target]:
        """What the store must sell in the channel, sorted: each must-sell SKU and category
        whose rule still decides at this store. A must-sell SKU that a more specific rule
        makes optional or forbidden here (say, a store rule for its category) is left out.
        ``category_of`` gives the category of a SKU, where known."""
        if channel_id not in self._channels:
            return []
        out: set[Target] = set()
        for (ch, level, kind, target), rule in self._rules.items():
            if ch != channel_id or level not in (store_id, None):
                continue
            if rule.status is not AssortmentStatus.MUST:
                continue
            if kind is TargetKind.SKU:
                decides = self.rule_for(channel_id, store_id, target, category_of.get(target))
            else:
                decides = self.category_rule(channel_id, store_id, target)
            if decides is not None and decides.status is AssortmentStatus.MUST:
                out.add(Target(kind, target))
        return sorted(out, key=lambda x: (x.kind.value, x.target))


def unsold(
    must: Iterable[Target], sold_skus: Mapping[str, int], sold_categories: Mapping[str, int]
) -> list[Target]:
    """The must-sell targets with no unit sold: a SKU with none of its own, a category
    with none of any SKU of it. Units are net of refunds."""
    return [
        x
        for x in must
        if (sold_skus if x.kind is TargetKind.SKU else sold_categories).get(x.target, 0) <= 0
    ]


class SkuLine(Protocol):
    """A line of an order or a basket, as the assortment sees it."""

    @property
    def sku(self) -> str: ...

    @property
    def category(self) -> str | None: ...


@dataclass(frozen=True)
class Line:
    sku: str
    category: str | None


@dataclass(frozen=True)
class ForbiddenLine:
    index: int  # the line's position in the sequence given
    sku: str
    category: str | None
    rule: AssortmentRule


def forbidden_lines(
    assortment: Assortment, channel_id: int, store_id: int | None, lines: Sequence[SkuLine]
) -> list[ForbiddenLine]:
    """The lines whose SKU the channel (or the store) forbids, in line order. A line
    without a known category is judged by its SKU rules only."""
    if not assortment.governs(channel_id):
        return []
    out = []
    for index, line in enumerate(lines):
        rule = assortment.rule_for(channel_id, store_id, line.sku, line.category)
        if rule is not None and rule.status is AssortmentStatus.FORBIDDEN:
            out.append(ForbiddenLine(index, line.sku, line.category, rule))
    return out
