"""Seeding the demo: set-up, planning every person, and ingesting in time order.

Planning writes each person's events into a time-bucketed :class:`Spool` (memory is
bounded by its spill limit, not by the population). Ingestion drains the buckets in
time order and cuts them into segments (:func:`segments`); within a segment
registrations go first, then orders, then refunds, each kind in one batch through the
same services the API uses. Each person's events reach the services in their time
order; different people's may be a segment apart, which no rule depends on.
"""

from __future__ import annotations

import itertools
import tempfile
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from quanyu.adapters import tables as t
from quanyu.demo.catalogue import BRANDS, PROGRAM, Catalogue, install
from quanyu.demo.people import Identities
from quanyu.demo.season import Season
from quanyu.demo.spool import ORDER, Spool
from quanyu.demo.timeline import Event, OrderEvent, Planner, RefundEvent, RegistrationEvent
from quanyu.domain.errors import AlreadyExists, QuanyuError, ValidationFailed
from quanyu.domain.orders import (
    POINTS_METHOD,
    LineInput,
    OrderInput,
    PaymentInput,
    RefundInput,
    RefundLineInput,
    require_aware,
)
from quanyu.services import setup
from quanyu.services.members import Registration, register_many
from quanyu.services.orders import ingest_orders, ingest_refunds
from quanyu.services.uow import Platform

ACTOR = "demo"
SEGMENT = 5000
ORDER_PREFIX = {
    "pos": "POS",
    "web": "WEB",
    "mini": "MP",
    "tmall": "TM",
    "jd": "JD",
    "douyin": "DY",
    "kuaishou": "KS",
}

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DemoSummary:
    """What was seeded: counts only (the CLI prints every field as a number)."""

    brands: int
    stores: int
    guides: int
    products: int
    people: int
    members: int
    orders: int
    order_lines: int
    refunds: int
    merges: int
    planned_merges: int  # what the planner's replay of OneID expects; equal when all is well
    rejected_registrations: int
    rejected_orders: int
    rejected_refunds: int


def order_external_id(channel: str, person: int, seq: int) -> str:
    return f"{ORDER_PREFIX[channel]}{person:08d}{seq:03d}"


@dataclass
class Segment:
    """Events applied together: registrations, then orders, then refunds."""

    registrations: list[RegistrationEvent] = field(default_factory=list)
    orders: list[OrderEvent] = field(default_factory=list)
    refunds: list[RefundEvent] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.registrations) + len(self.orders) + len(self.refunds)

    def add(self, event: Event) -> None:
        if isinstance(event, OrderEvent):
            self.orders.append(event)
        elif isinstance(event, RegistrationEvent):
            self.registrations.append(event)
        else:
            self.refunds.append(event)


def segments(events: Iterable[Event], size: int) -> Iterator[Segment]:
    """Cut a time-ordered stream into segments of ``size`` events.

    Applying a segment kind by kind must never put one person's event before an
    earlier one of theirs. An event that would (a registration after the same person's
    order, an order after their refund) is held back with the rest of that person's
    events for the next segment; other people's events keep filling this one.
    """
    stream = iter(events)
    held: deque[Event] = deque()

    def pending() -> Iterator[Event]:
        while held:
            yield held.popleft()
        yield from stream

    while True:
        segment, latest, blocked, later = Segment(), dict[int, int](), set[int](), list[Event]()
        for event in pending():
            person = event.person
            if person in blocked or latest.get(person, -1) > event.rank:
                blocked.add(person)
                later.append(event)
            else:
                latest[person] = max(latest.get(person, -1), event.rank)
                segment.add(event)
            if len(segment) >= size:
                break
        held = deque(sorted([*held, *later], key=ORDER))
        if not segment:
            return
        yield segment


class _Ingestion:
    def __init__(
        self,
        platform: Platform,
        *,
        catalogue: Catalogue,
        identities: Identities,
        season: Season,
        progress: Progress | None,
        total: int,
    ) -> None:
        self.platform = platform
        self.catalogue = catalogue
        self.identities = identities
        self.season = season
        self.progress = progress
        self.total = total
        self.done = 0
        self.counts: Counter[str] = Counter()

    def registration(self, e: RegistrationEvent) -> Registration:
        return Registration(
            identities=self.identities.inputs(e.person, e.keys),
            program=PROGRAM,
            channel=e.channel,
            store=e.store,
            guide=e.guide,
            name=e.name,
            gender=e.gender,
            birthday=date.fromordinal(e.birthday) if e.birthday else None,
            registered_at=self.season.datetime(e.at),
        )

    def order(self, e: OrderEvent) -> OrderInput:
        products = self.catalogue.products
        lines = tuple(
            LineInput(n, products[p].sku, quantity, products[p].list_price, paid)
            for n, (p, quantity, paid) in enumerate(e.lines, start=1)
        )
        rest = sum(x[2] for x in e.lines) - e.points
        payments: tuple[PaymentInput, ...] = (PaymentInput(e.method, rest),)
        if e.points:
            payments = (PaymentInput(POINTS_METHOD, e.points, e.points), *payments)
        return OrderInput(
            channel=e.channel,
            external_id=order_external_id(e.channel, e.person, e.seq),
            ordered_at=self.season.datetime(e.at),
            lines=lines,
            identities=self.identities.inputs(e.person, e.keys),
            payments=payments,
            brand=e.brand,
            store=e.store,
            guide=e.guide,
        )

    def refund(self, e: RefundEvent) -> RefundInput:
        order_id = order_external_id(e.channel, e.person, e.order_seq)
        return RefundInput(
            channel=e.channel,
            external_id=f"{order_id}-R",
            order_external_id=order_id,
            refunded_at=self.season.datetime(e.at),
            lines=tuple(RefundLineInput(n, q, amount) for n, q, amount in e.lines),
            reason=e.reason,
        )

    def _tally(self, kind: str, results: list[dict[str, Any] | QuanyuError]) -> None:
        for result in results:
            if isinstance(result, QuanyuError):
                self.counts[f"rejected_{kind}"] += 1
            elif kind == "registrations":
                self.counts["members"] += bool(result["created"])
            else:
                self.counts[kind] += 1

    def ingest(self, events: Iterable[Event]) -> None:
        for segment in segments(events, SEGMENT):
            reg_inputs = [self.registration(e) for e in segment.registrations]
            order_inputs = [self.order(e) for e in segment.orders]
            refund_inputs = [self.refund(e) for e in segment.refunds]
            if reg_inputs:
                self._tally("registrations", register_many(self.platform, reg_inputs, actor=ACTOR))
            if order_inputs:
                results = ingest_orders(self.platform, order_inputs, actor=ACTOR)
                self._tally("orders", results)
                self.counts["order_lines"] += sum(
                    len(o.lines)
                    for o, r in zip(order_inputs, results, strict=True)
                    if not isinstance(r, QuanyuError)
                )
            if refund_inputs:
                self._tally("refunds", ingest_refunds(self.platform, refund_inputs, actor=ACTOR))
            self.done += len(segment)
            if self.progress:
                self.progress("events", self.done, self.total)


def seed_demo(
    platform: Platform,
    *,
    people: int = 50_000,
    seed: int = 7,
    years: int = 2,
    end: datetime | None = None,
    progress: Progress | None = None,
) -> DemoSummary:
    """Seed an empty database with the demo brand group and ``people`` shoppers.

    Orders span ``years`` years up to ``end`` (the platform clock's now by default).
    The data is a pure function of ``seed`` and ``people``. ``progress(stage, done,
    total)`` is called for the stages ``setup``, ``people`` and ``events``.
    """
    if people < 1:
        raise ValidationFailed("people must be at least 1", field="people")
    if years < 1:
        raise ValidationFailed("years must be at least 1", field="years")
    end = require_aware(end, "end") if end is not None else platform.clock.now()
    if setup.list_programs(platform):
        raise AlreadyExists("the demo needs an empty database", field="database")
    season = Season(end, years)
    catalogue = install(platform, seed=seed, effective_from=season.origin, progress=progress)
    now = int((platform.clock.now() - season.origin).total_seconds())
    planner = Planner(seed=seed, season=season, catalogue=catalogue, now=now)
    with tempfile.TemporaryDirectory(prefix="quanyu-demo-") as directory:
        spool = Spool(horizon=season.horizon, directory=Path(directory))
        for person in range(people):
            spool.add(planner.plan(person))
            if progress and ((person + 1) % 1000 == 0 or person + 1 == people):
                progress("people", person + 1, people)
        ingestion = _Ingestion(
            platform,
            catalogue=catalogue,
            identities=Identities(seed),
            season=season,
            progress=progress,
            total=spool.count,
        )
        ingestion.ingest(itertools.chain.from_iterable(spool.drain()))
    with platform.engine.connect() as conn:
        merges = conn.execute(select(func.count()).select_from(t.merges)).scalar_one()
    counts = ingestion.counts
    return DemoSummary(
        brands=len(BRANDS),
        stores=len(catalogue.stores),
        guides=sum(len(s.guides) for s in catalogue.stores),
        products=len(catalogue.products),
        people=people,
        members=counts["members"],
        orders=counts["orders"],
        order_lines=counts["order_lines"],
        refunds=counts["refunds"],
        merges=int(merges),
        planned_merges=planner.expected_merges,
        rejected_registrations=counts["rejected_registrations"],
        rejected_orders=counts["rejected_orders"],
        rejected_refunds=counts["rejected_refunds"],
    )
