"""One demo person's life with the brand group, planned as time-stamped events.

Each person gets a ``random.Random`` seeded by (seed, index), so a person is the same
whatever the population size, and the plan is compact tuples (no domain objects) that
can be spooled to disk and turned into service inputs later.

Identity fragmentation is planned the way it happens in the field: a marketplace or
mini-program buyer is first known only by a buyer id or a WeChat id; joining the
program adds the phone; once the marketplace shares the phone (membership binding)
or the member authorises it in the mini program, orders carry both and OneID merges
the profiles. The planner replays that resolution per person (a handful of bit masks)
to know which orders earn points, and keeps a conservative shadow of the member's
points (base rate only, nothing from orders that will be refunded) so that orders
paying with points only spend points the member really has, and that the services
still let a back-dated order spend: available when it was placed and not expired at
the time of ingestion.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from random import Random
from typing import Generic, NamedTuple, TypeVar

from quanyu.demo.catalogue import GIFT_CARD, PROGRAM_VALUES, Catalogue, person_name
from quanyu.demo.people import EMAIL, MARKETPLACES, PHONE, WECHAT
from quanyu.demo.season import DAY, Season

CARD = 1 << 7  # the member card: only in the planner's replay of resolution
MAX_ORDERS = 200
REGISTRATION_SEQ = 255
REFUND_SEQ = 256
PENDING_DAYS: int = PROGRAM_VALUES["pending_days"]
T = TypeVar("T")


class RegistrationEvent(NamedTuple):
    at: int
    rank: int  # 0: a registration comes before an order in the same second
    person: int
    seq: int
    keys: int
    channel: str
    store: str | None
    guide: str | None
    name: str | None
    gender: str | None
    birthday: int  # proleptic ordinal, 0 when not given


class OrderEvent(NamedTuple):
    at: int
    rank: int  # 1
    person: int
    seq: int
    keys: int
    channel: str
    brand: str
    store: str | None
    guide: str | None
    lines: tuple[tuple[int, int, int], ...]  # (product index, quantity, paid amount)
    points: int  # points used as payment (1 point pays 1 fen)
    method: str  # how the rest is paid


class RefundEvent(NamedTuple):
    at: int
    rank: int  # 2
    person: int
    seq: int
    channel: str
    order_seq: int
    lines: tuple[tuple[int, int, int], ...]  # (line number, quantity, amount)
    reason: str


Event = RegistrationEvent | OrderEvent | RefundEvent


class Choices(Generic[T]):
    """Values drawn by weight with one ``random()`` and a bisection."""

    def __init__(self, options: Iterable[tuple[T, float]]) -> None:
        pairs = list(options)
        self.values = [v for v, _ in pairs]
        self.cum = list(itertools.accumulate(w for _, w in pairs))

    def pick(self, rng: Random) -> T:
        return self.values[bisect.bisect_right(self.cum, rng.random() * self.cum[-1])]


@dataclass(frozen=True)
class Shopper:
    """A kind of shopper: how likely to join, to use WeChat, and where they buy."""

    member_rate: float
    wechat_rate: float
    channels: tuple[tuple[str, int], ...]

    def channel_choices(self, *, wechat: bool) -> Choices[str]:
        return Choices((c, w) for c, w in self.channels if wechat or c != "mini")


SHOPPERS = Choices(
    [
        (Shopper(0.75, 0.85, (("pos", 80), ("mini", 10), ("tmall", 5), ("web", 5))), 0.40),
        (
            Shopper(
                0.70, 0.90, (("pos", 35), ("mini", 25), ("tmall", 20), ("web", 10), ("jd", 10))
            ),
            0.25,
        ),
        (Shopper(0.45, 0.60, (("tmall", 55), ("jd", 30), ("pos", 10), ("mini", 5))), 0.25),
        (Shopper(0.25, 0.60, (("douyin", 60), ("kuaishou", 25), ("tmall", 10), ("pos", 5))), 0.10),
    ]
)
ORDERS_PER_YEAR = {True: 3.0, False: 1.2}  # members, others
BIND_RATE = {"tmall": 0.6, "jd": 0.4, "douyin": 0.25, "kuaishou": 0.25}
MINI_PHONE_RATE = 0.7
LINE_COUNTS = Choices([(1, 55), (2, 28), (3, 12), (4, 5)])
SALE_DISCOUNTS = Choices([(100, 10), (85, 30), (70, 40), (50, 20)])  # percent of list price
USUAL_DISCOUNTS = Choices([(100, 55), (90, 25), (80, 12), (60, 8)])
METHODS = {
    "pos": ("wechat_pay", "alipay", "bank_card", "cash"),
    "web": ("alipay", "wechat_pay"),
    "mini": ("wechat_pay",),
    "tmall": ("alipay",),
    "jd": ("jd_pay", "wechat_pay"),
    "douyin": ("douyin_pay",),
    "kuaishou": ("kuaishou_pay",),
}
REFUND_RATE = 0.05
POINTS_PAYMENT_RATE = 0.12
RETURN_REASONS = ("尺码不合适", "七天无理由退货", "质量问题", "颜色与预期不符")


@dataclass
class _Life:
    """One person while being planned: traits, then what the planner has replayed."""

    person: int
    rng: Random
    city: int
    home: int  # store index
    favourite_guide: str
    brand: str
    gender: str
    wechat: bool
    has_email: bool
    gives_phone: bool  # gives a phone at the till before joining
    registered_at: int | None = None
    bound: dict[str, int] = field(default_factory=dict)  # marketplace -> shares phone from
    mini_phone_at: int | None = None
    profiles: list[int] = field(default_factory=list)  # key masks, one per profile
    lots: list[list[int]] = field(default_factory=list)  # [available at, expires at, left]


class Planner:
    """Plans people one at a time; ``expected_merges`` counts the merges they will cause."""

    def __init__(self, *, seed: int, season: Season, catalogue: Catalogue, now: int) -> None:
        """``now``: when ingestion runs, in seconds from ``season.origin``."""
        self.seed = seed
        self.now = now
        self.season = season
        self.catalogue = catalogue
        self.brands = sorted({s.brand for s in catalogue.stores})
        sizes = [len(stores) for stores in catalogue.stores_by_city]
        self.city_cum = list(itertools.accumulate(sizes))
        self.expected_merges = 0

    def _other_brand(self, brand: str) -> str:
        return self.brands[1 - self.brands.index(brand)]

    def plan(self, person: int) -> list[Event]:
        """Every event of one person (registration, orders, refunds)."""
        cat = self.catalogue
        rng = Random(self.seed * (1 << 40) + person)
        shopper = SHOPPERS.pick(rng)
        gender = "F" if rng.random() < 0.62 else "M"
        city = bisect.bisect_right(self.city_cum, rng.random() * self.city_cum[-1])
        home = rng.choice(cat.stores_by_city[city])
        brand = cat.stores[home].brand
        life = _Life(
            person=person,
            rng=rng,
            city=city,
            home=home,
            favourite_guide=rng.choice(cat.stores[home].guides),
            brand=self._other_brand(brand) if rng.random() < 0.2 else brand,
            gender=gender,
            wechat=rng.random() < shopper.wechat_rate,
            has_email=rng.random() < 0.3,
            gives_phone=rng.random() < 0.5,
        )
        member = rng.random() < shopper.member_rate
        orders = self._order_slots(life, shopper, member=member)
        events: list[Event] = []
        registration = self._registration(life, orders) if member else None
        if registration is not None:
            events.append(registration)
        for seq, (at, channel, store) in enumerate(orders):
            if registration is not None and registration.at <= at:
                self._link(life, registration.keys | CARD)
                registration = None
            keys = self._order_keys(life, channel, at)
            profile = self._link(life, keys) if keys else 0
            earns = bool(profile & CARD)
            order, refund = self._order(
                life, seq=seq, at=at, channel=channel, store=store, keys=keys, earns=earns
            )
            events.append(order)
            if refund is not None:
                events.append(refund)
        if registration is not None:
            self._link(life, registration.keys | CARD)
        return events

    def _order_slots(
        self, life: _Life, shopper: Shopper, *, member: bool
    ) -> list[tuple[int, str, int]]:
        """When, where and in which store (index, or -1 online) the person buys."""
        season, cat, rng = self.season, self.catalogue, life.rng
        channels = shopper.channel_choices(wechat=life.wechat)
        first_day = int(season.days * rng.random())
        mean = ORDERS_PER_YEAR[member] * (season.days - first_day) / 365
        count = 0 if member and rng.random() < 0.08 else 1 + int(rng.expovariate(1 / mean))
        slots: list[tuple[int, str, int]] = []
        for k in range(min(count, MAX_ORDERS)):
            channel = channels.pick(rng)
            at = season.sample(
                rng,
                online=channel != "pos",
                first=first_day,
                last=first_day if k == 0 else season.days - 1,
            )
            store = -1
            if channel == "pos":
                r = rng.random()
                if r < 0.85:
                    store = life.home
                elif r < 0.97:
                    store = rng.choice(cat.stores_by_city[life.city])
                else:
                    store = rng.randrange(len(cat.stores))
            slots.append((at, channel, store))
        if member and not slots:  # a member who never buys joins on their first day
            life.registered_at = season.sample(rng, online=False, first=first_day, last=first_day)
            return []
        slots.sort()
        return slots

    def _registration(self, life: _Life, orders: list[tuple[int, str, int]]) -> RegistrationEvent:
        cat, rng = self.catalogue, life.rng
        if orders:
            k = 0 if rng.random() < 0.6 else rng.randrange(len(orders))
            at, channel, store = orders[k]
            at = max(at - rng.randint(60, 900), 0)
            if channel not in ("pos", "mini", "web", "tmall"):
                channel = "mini" if life.wechat else "web"
        else:
            assert life.registered_at is not None
            at, store = life.registered_at, life.home
            channel = "pos" if rng.random() < 0.7 or not life.wechat else "mini"
        life.registered_at = at
        keys = {"pos": PHONE, "mini": PHONE | WECHAT, "tmall": PHONE | MARKETPLACES["tmall"]}.get(
            channel, PHONE | (EMAIL if life.has_email else 0)
        )
        store_code = guide = None
        if channel == "pos":
            store_code = cat.stores[store].code
            if rng.random() < 0.85:
                guides = cat.stores[store].guides
                guide = life.favourite_guide if store == life.home else rng.choice(guides)
        for platform, rate in BIND_RATE.items():
            if channel == platform:
                life.bound[platform] = at
            elif rng.random() < rate:
                life.bound[platform] = at + int(rng.expovariate(1 / (20 * DAY)))
        if channel == "mini":
            life.mini_phone_at = at
        elif rng.random() < MINI_PHONE_RATE:
            life.mini_phone_at = at + int(rng.expovariate(1 / (10 * DAY)))
        full = channel in ("pos", "mini")
        birthday = 0
        if rng.random() < (0.85 if full else 0.4):
            born = self.season.first_day.year - rng.randint(18, 60)
            birthday = date(born, 1, 1).toordinal() + rng.randrange(365)
        return RegistrationEvent(
            at=at,
            rank=0,
            person=life.person,
            seq=REGISTRATION_SEQ,
            keys=keys,
            channel=channel,
            store=store_code,
            guide=guide,
            name=person_name(rng, life.gender) if full or rng.random() < 0.5 else None,
            gender=life.gender if full else None,
            birthday=birthday,
        )

    @staticmethod
    def _order_keys(life: _Life, channel: str, at: int) -> int:
        """The identities a channel's payload carries at ``at``."""
        registered = life.registered_at is not None and life.registered_at <= at
        if channel == "pos":
            return PHONE if registered or life.gives_phone else 0
        if channel == "web":
            return PHONE | (EMAIL if life.has_email else 0)
        if channel == "mini":
            since = life.mini_phone_at
            return WECHAT | (PHONE if registered and since is not None and at >= since else 0)
        since = life.bound.get(channel)
        return MARKETPLACES[channel] | (
            PHONE if registered and since is not None and at >= since else 0
        )

    def _link(self, life: _Life, keys: int) -> int:
        """Replay OneID for one person: the profile (key mask) these keys resolve to."""
        touching = [p for p in life.profiles if p & keys]
        merged = keys
        for p in touching:
            merged |= p
            life.profiles.remove(p)
        life.profiles.append(merged)
        self.expected_merges += max(len(touching) - 1, 0)
        return merged

    def _order(
        self,
        life: _Life,
        *,
        seq: int,
        at: int,
        channel: str,
        store: int,
        keys: int,
        earns: bool,
    ) -> tuple[OrderEvent, RefundEvent | None]:
        cat, season, rng = self.catalogue, self.season, life.rng
        brand, store_code, guide = life.brand, None, None
        if store >= 0:
            brand = cat.stores[store].brand
            store_code = cat.stores[store].code
            if rng.random() < 0.75:
                guides = cat.stores[store].guides
                guide = life.favourite_guide if store == life.home else rng.choice(guides)
        elif rng.random() < 0.15:
            brand = self._other_brand(brand)
        percent = (SALE_DISCOUNTS if season.is_sale(at) else USUAL_DISCOUNTS).pick(rng)
        chosen: list[int] = []
        lines: list[tuple[int, int, int]] = []
        for _ in range(LINE_COUNTS.pick(rng)):
            product = cat.pick_product(rng, brand)
            if product in chosen:
                continue
            chosen.append(product)
            r = rng.random()
            quantity = 1 if r < 0.9 else 2 if r < 0.98 else 3
            price = cat.products[product].list_price
            lines.append((product, quantity, price * quantity * percent // 10_000 * 100))
        if channel in ("web", "mini") and rng.random() < 0.03:
            card = rng.choice(cat.gift_cards[brand])
            lines.append((card, 1, cat.products[card].list_price))
        paid = sum(x[2] for x in lines)
        earning = sum(x[2] for x in lines if cat.products[x[0]].category != GIFT_CARD)
        refunded = rng.random() < REFUND_RATE
        points = 0
        if earns and rng.random() < POINTS_PAYMENT_RATE:
            available = sum(lot[2] for lot in _spendable(life.lots, at=at, now=self.now))
            points = min(available // 2, paid // 2) // 100 * 100
            if points >= 500:
                _take(life.lots, at=at, now=self.now, points=points)
            else:
                points = 0
        if earns and not refunded and earning - points >= 100:
            life.lots.append(
                [at + PENDING_DAYS * DAY, season.expiry(at), (earning - points) // 100]
            )
        methods = METHODS[channel]
        order = OrderEvent(
            at=at,
            rank=1,
            person=life.person,
            seq=seq,
            keys=keys,
            channel=channel,
            brand=brand,
            store=store_code,
            guide=guide,
            lines=tuple(lines),
            points=points,
            method=methods[0] if len(methods) == 1 else rng.choice(methods),
        )
        refund_at = at + rng.randint(DAY, 10 * DAY)
        if not refunded or refund_at >= season.horizon:
            return order, None
        return order, self._refund(life, order, refund_at)

    @staticmethod
    def _refund(life: _Life, order: OrderEvent, at: int) -> RefundEvent:
        """A return of the whole order or of one line, or money back on one line."""
        rng = life.rng
        r = rng.random()
        reason = rng.choice(RETURN_REASONS)
        numbered = [(n, q, amount) for n, (_, q, amount) in enumerate(order.lines, start=1)]
        if r < 0.35:
            lines = numbered
        else:
            n, q, amount = rng.choice(numbered)
            lines = [(n, q, amount)]
            if r >= 0.8 and amount >= 1000:  # a price adjustment: money back, goods kept
                lines = [(n, 0, amount * rng.choice((10, 20, 30)) // 10_000 * 100)]
                reason = "价保退差价"
        return RefundEvent(
            at=at,
            rank=2,
            person=life.person,
            seq=REFUND_SEQ + order.seq,
            channel=order.channel,
            order_seq=order.seq,
            lines=tuple(lines),
            reason=reason,
        )


def _spendable(lots: list[list[int]], *, at: int, now: int) -> Iterator[list[int]]:
    """Shadow lots a back-dated order may spend: available at ``at`` and still live now."""
    return (lot for lot in lots if lot[0] <= at < lot[1] and now < lot[1] and lot[2])


def _take(lots: list[list[int]], *, at: int, now: int, points: int) -> None:
    """Spend from the shadow lots oldest first (they expire in the same order)."""
    for lot in _spendable(lots, at=at, now=now):
        take = min(lot[2], points)
        lot[2] -= take
        points -= take
        if points == 0:
            return
