"""Benchmark-scale canonical analytics tables as Parquet, generated vectorised.

    uv run python -m benchmarks.scale_data --members 1000000 --out var/scale/1m
    uv run python -m benchmarks.scale_data --members 10000000 --out var/scale/10m --seed 7

Writes one Parquet file per table of :data:`quanyu.analytics.schema.SCHEMAS` into
``--out`` (``orders.parquet``, ...), with exactly those column names and types. The demo
generator (:mod:`quanyu.demo`) drives real ingestion and is far too slow at this scale, so
this mirrors its distributions with NumPy over chunks of profiles instead:

- the demo's catalogue for the seed: its 40 stores in eight cities (codes, brands,
  coordinates), their guides, and its SKUs with list prices and popularity weights;
- its four shopper kinds (join rate, WeChat rate, channel mix), 62 % women, a home
  store in a city weighted by store count, 20 % loyal to the other brand;
- its season: the same day weights (weekends, 618, Double 11, Double 12, member day,
  National Day, a rising trend) and hour weights for store and online orders;
- its orders: 3 a year for members and 1.2 for others, first order on the first day,
  85 % at the home store, guides, sale and usual discounts, 1-3 units a line, gift
  cards online, 5 % refunded (whole order, one line, or a price adjustment), 12 % of
  members' orders partly paid with points, registrations at the first or a later order.

Added for analytics at scale: 45 % of profiles lapse (their orders stop after an
exponential lifetime of mean 1.5 years), baskets are larger (about 9.7 lines per profile
over about 3.4 orders, anonymous ones included), 10 % of orders are anonymous walk-ins,
and members get campaigns (618 and Double 11: 15 % of members targeted, a 10 % control
group, a small uplift in orders), coupons (welcome, birthday, campaign), points entries
(earn, spend, clawback, restore, expire, adjust), consents and monthly recruitment costs.
``member_tags`` is written empty (runs fill it).

Profile ids are 1..N in order of creation. Order, refund, entry, coupon and touchpoint
ids are dense and grouped by chunk and member, not in time order. Everything is a pure
function of ``--members``, ``--seed`` and ``--as-of``; timestamps are naive local time
in the three years before ``--as-of`` (midnight).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as daytime
from pathlib import Path
from random import Random
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from benchmarks.common import machine
from quanyu.analytics.schema import SCHEMAS
from quanyu.demo import catalogue as demo_catalogue
from quanyu.demo.catalogue import BRANDS, CHANNELS, CITIES, GIFT_CARD, PROGRAM, TIERS
from quanyu.demo.people import BUYER_DIGITS, BUYER_PREFIX, MINI_APP, PHONE_PREFIXES
from quanyu.demo.season import CST, DAY, ONLINE_HOURS, STORE_HOURS, Season
from quanyu.demo.timeline import (
    ORDERS_PER_YEAR,
    POINTS_PAYMENT_RATE,
    REFUND_RATE,
    SALE_DISCOUNTS,
    SHOPPERS,
    USUAL_DISCOUNTS,
)

YEARS = 3
CHUNK = 200_000  # profiles per chunk; part of what the output is a function of
SHIFT = 28  # order sort key: (profile << SHIFT) | second; 2**28 s is 8.5 years
MAX_MEMBERS = 1 << 24  # identity bijections stay within int64 below this
MAX_ORDERS = 200
NO_ORDER_RATE = 0.08  # members who join and never buy (demo)
LAPSE_RATE = 0.45
LAPSE_MEAN_DAYS = 1.5 * 365
ANONYMOUS_SHARE = 0.10
# Larger baskets than the demo's 1-4 lines, for about 10 lines per profile.
LINE_COUNTS = ((1, 22), (2, 24), (3, 20), (4, 15), (5, 10), (6, 9))
QUANTITIES = ((1, 90), (2, 8), (3, 2))
GIFT_CARD_RATE = 0.03  # web and mini orders that add a gift card (demo)
REFUND_WHOLE, REFUND_LINE = 0.35, 0.8  # below: whole order, one line; above: price adjustment
ADJUST_PERCENTS = (10, 20, 30)
REGISTER_AT_FIRST = 0.6
BIRTHDAY_RATE = {True: 0.85, False: 0.4}  # registered in store or mini program, elsewhere
POINTS_ADJUST_RATE = 0.01
CAMPAIGN_TARGET, CAMPAIGN_CONTROL, CAMPAIGN_UPLIFT = 0.15, 0.10, 0.08
EVENT_RATE = 0.03  # members with a home store who come to a store event
# template -> (face value in fen, share of coupons with a qualifying order that redeem)
TEMPLATES = {
    "welcome_20": (2000, 0.5),
    "birthday_50": (5000, 0.35),
    "618_50": (5000, 0.6),
    "d11_100": (10000, 0.6),
}
COUPON_DAYS = 30
RELEASE_RATE = 0.05  # a reservation released instead of redeemed
VOID_RATE = 0.01

CHANNEL_CODES = tuple(c for c, _, _ in CHANNELS)
CH = {c: i for i, c in enumerate(CHANNEL_CODES)}
POS, WEB, MINI, TMALL = CH["pos"], CH["web"], CH["mini"], CH["tmall"]
MARKETPLACES = tuple(CH[c] for c in ("tmall", "jd", "douyin", "kuaishou"))
BRAND_CODES = tuple(b for b, _ in BRANDS)
REGION_CODES = tuple(sorted({c.region for c in CITIES}))
TIER_CODES = tuple(t["code"] for t in sorted(TIERS, key=lambda t: t["rank"]))
TIER_THRESHOLDS = np.array([t["threshold"] for t in sorted(TIERS, key=lambda t: t["rank"])])
ENTRY_KINDS = ("earn", "spend", "clawback", "restore", "expire", "adjust")
EARN, SPEND, CLAWBACK, RESTORE, EXPIRE, ADJUST = range(len(ENTRY_KINDS))
COUPON_KINDS = ("issued", "claimed", "reserved", "released", "redeemed", "returned", "voided")
COUPON_KINDS += ("expired",)
ISSUED, CLAIMED, RESERVED, RELEASED, REDEEMED, RETURNED, VOIDED, EXPIRED = range(8)
TOUCH_KINDS = ("sent", "opened", "clicked", "control", "event")
SENT, OPENED, CLICKED, CONTROL, EVENT = range(len(TOUCH_KINDS))
TOUCH_CHANNELS = ("sms", "mini", "pos")
# purpose -> (share of members asked, share of them who agree)
CONSENTS = {"sms": (0.95, 0.75), "email": (0.3, 0.6), "wechat": (1.0, 0.85), "call": (0.25, 0.4)}
WECHAT_CONSENT = tuple(CONSENTS).index("wechat")
WITHDRAW_RATE = 0.08
# Recruitment cost per new member in fen, by channel (only joining channels are paid for).
COST_PER_RECRUIT = {"pos": 3000, "web": 2500, "mini": 1500, "tmall": 4000}
IDENTITY_TYPES = ("phone", "wechat_unionid", "wechat_openid", "platform_buyer")
CITY_LAT = np.array([c.latitude for c in CITIES])
CITY_LON = np.array([c.longitude for c in CITIES])

Arrays = dict[str, Any]


# ---------------------------------------------------------------- helpers


def _cum(weights: Sequence[float] | np.ndarray) -> np.ndarray:
    c = np.cumsum(np.asarray(weights, dtype=np.float64))
    return c / c[-1]


def _pick(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Indexes drawn by weight: ``cum`` holds cumulative weights ending at 1."""
    return np.minimum(np.searchsorted(cum, u, side="right"), len(cum) - 1)


def _pick_rows(table: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Per-row weighted choice: ``table[r]`` is row r's cumulative weights ending at 1."""
    width = table.shape[1]
    flat = (table + np.arange(len(table))[:, None]).ravel()
    idx = np.searchsorted(flat, rows + u, side="right") - rows * width
    return np.clip(idx, 0, width - 1)


def _values(weighted: Sequence[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([v for v, _ in weighted]), _cum([w for _, w in weighted])


def _starts(group: np.ndarray, groups: int) -> np.ndarray:
    """Where each group begins in an array sorted by group (empty groups too)."""
    return np.searchsorted(group, np.arange(groups + 1))


def _firsts(key: np.ndarray) -> np.ndarray:
    """Where each run of equal values begins in sorted ``key``."""
    return np.flatnonzero(np.r_[True, key[1:] != key[:-1]])


def _mix64(x: np.ndarray, salt: int) -> np.ndarray:
    """SplitMix64 of ``x`` and ``salt``: a well-spread uint64 per value."""
    z = x.astype(np.uint64) + np.uint64((salt * 0x9E3779B97F4A7C15) % (1 << 64))
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _digits(x: np.ndarray, width: int, prefix: pa.Array | str = "") -> pa.Array:
    text = pc.utf8_lpad(pc.cast(pa.array(x), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, text, "")


def _strings(values: Sequence[str], idx: np.ndarray) -> pa.Array:
    """``values[idx]`` as a plain string array, null where ``idx`` < 0."""
    return pa.array(values, pa.string()).take(pa.array(idx, mask=idx < 0))


def _bijection(rng: Random, modulus: int) -> tuple[int, int]:
    a = rng.randrange(modulus // 3, min(modulus, 1 << 39))
    while a % 2 == 0 or a % 5 == 0:
        a += 1
    return a, rng.randrange(modulus)


# ---------------------------------------------------------------- the world


@dataclass(frozen=True)
class World:
    """Calendar, catalogue and identity parameters shared by every chunk."""

    seed: int
    members: int
    first_day: date
    days: int
    horizon: int  # seconds from origin to the end (as-of midnight)
    origin_us: int  # origin (local midnight of day 0) in microseconds since 1970
    store_cum: np.ndarray  # the season's cumulative day weights, len days + 1
    online_cum: np.ndarray
    recruit_cum: np.ndarray  # normalised, len days
    store_hours: np.ndarray
    online_hours: np.ndarray
    sale: np.ndarray  # bool per day
    month: np.ndarray  # per day
    dom: np.ndarray
    year: np.ndarray
    last_new_year: np.ndarray  # per day: second of 1 January of the year before
    month_index: np.ndarray  # per day: months since the first day's month
    month_labels: tuple[str, ...]  # "YYYY-MM" per month index
    months: int
    campaigns: tuple[tuple[str, str, int, int], ...]  # (code, template, first day, days)
    stores: pa.Table
    store_codes: tuple[str, ...]
    store_brand: np.ndarray
    store_city: np.ndarray
    store_region: np.ndarray
    store_lat: np.ndarray
    store_lon: np.ndarray
    city_cum: np.ndarray
    city_stores: np.ndarray  # [city, k] store index, padded
    city_count: np.ndarray
    guides: tuple[str, ...]
    store_guides: np.ndarray  # [store, k] guide index, padded
    guide_count: np.ndarray
    skus: tuple[str, ...]
    categories: tuple[str, ...]
    product_category: np.ndarray
    price: np.ndarray
    gift: np.ndarray  # bool per product
    brand_products: np.ndarray  # [brand, k] product index, padded
    brand_cum: np.ndarray  # [brand, k] cumulative popularity
    gift_cards: np.ndarray  # [brand, k]
    phone: tuple[int, int]
    buyers: dict[int, tuple[int, int]]


def build_world(*, seed: int, members: int, as_of: date) -> World:
    end = datetime.combine(as_of, daytime(0), CST)
    season = Season(end, YEARS)
    days = season.days
    first = season.first_day
    dates = np.datetime64(first, "D") + np.arange(days)
    months = dates.astype("datetime64[M]")
    years = dates.astype("datetime64[Y]").astype(np.int64) + 1970
    # The demo samples days from these cumulative weights (Season.sample); read them
    # rather than repeat its calendar of lifts.
    store_cum = np.asarray(season._days_cum[0], dtype=np.float64)
    online_cum = np.asarray(season._days_cum[1], dtype=np.float64)
    jan1_before = (years - 1971).astype("datetime64[Y]").astype("datetime64[D]")
    recruit = np.diff(store_cum) / store_cum[-1] + np.diff(online_cum) / online_cum[-1]
    campaigns = []
    for y in range(first.year, as_of.year + 1):
        for code, template, month, length in (("618", "618_50", 6, 18), ("d11", "d11_100", 11, 11)):
            start = (date(y, month, 1) - first).days
            if start >= 30 and start + length <= days:
                campaigns.append((f"{code}_{y}", template, start, length))
    rng = Random(f"quanyu-demo-catalogue-{seed}")
    store_rows, stores = demo_catalogue._stores(rng)
    _, products, weights = demo_catalogue._products(rng)
    guides = tuple(g for s in stores for g in s.guides)
    guide_index = {g: i for i, g in enumerate(guides)}
    store_guides = np.zeros((len(stores), max(len(s.guides) for s in stores)), np.int64)
    for i, s in enumerate(stores):
        store_guides[i, : len(s.guides)] = [guide_index[g] for g in s.guides]
    store_city = np.array([s.city for s in stores])
    city_count = np.bincount(store_city, minlength=len(CITIES))
    city_stores = np.zeros((len(CITIES), city_count.max()), np.int64)
    for c in range(len(CITIES)):
        found = np.flatnonzero(store_city == c)
        city_stores[c, : len(found)] = found
    categories = tuple(sorted({p.category for p in products}))
    brand_of = np.array([BRAND_CODES.index(p.brand) for p in products])
    weight = np.array(weights)
    width = max(int(np.sum((brand_of == b) & (weight > 0))) for b in range(len(BRANDS)))
    brand_products = np.zeros((len(BRANDS), width), np.int64)
    brand_cum = np.ones((len(BRANDS), width))
    for b in range(len(BRANDS)):
        chosen = np.flatnonzero((brand_of == b) & (weight > 0))
        brand_products[b, : len(chosen)] = chosen
        brand_cum[b, : len(chosen)] = _cum(weight[chosen])
    gift = np.array([p.category == GIFT_CARD for p in products])
    ids = Random(f"quanyu-scale-identities-{seed}")
    return World(
        seed=seed,
        members=members,
        first_day=first,
        days=days,
        horizon=season.horizon,
        origin_us=(first - date(1970, 1, 1)).days * DAY * 1_000_000,
        store_cum=store_cum,
        online_cum=online_cum,
        recruit_cum=_cum(recruit),
        store_hours=_cum(STORE_HOURS),
        online_hours=_cum(ONLINE_HOURS),
        sale=np.frombuffer(bytes(season.sale), dtype=np.uint8).astype(bool),
        month=(months.astype(np.int64) % 12 + 1),
        dom=(dates - months.astype("datetime64[D]")).astype(np.int64) + 1,
        year=years,
        last_new_year=(jan1_before - np.datetime64(first, "D")).astype(np.int64) * DAY,
        month_index=(months - months[0]).astype(np.int64),
        month_labels=tuple(str(m) for m in np.unique(months)),
        months=len(np.unique(months)),
        campaigns=tuple(campaigns),
        stores=pa.Table.from_pylist(
            [
                {k: row[k] if k != "store" else row["code"] for k in SCHEMAS["stores"]}
                for row in store_rows
            ],
            schema=SCHEMAS["stores"].to_pyarrow(),
        ),
        store_codes=tuple(s.code for s in stores),
        store_brand=np.array([BRAND_CODES.index(s.brand) for s in stores]),
        store_city=store_city,
        store_region=np.array([REGION_CODES.index(CITIES[s.city].region) for s in stores]),
        store_lat=np.array([r["latitude"] for r in store_rows]),
        store_lon=np.array([r["longitude"] for r in store_rows]),
        city_cum=_cum(city_count),
        city_stores=city_stores,
        city_count=city_count,
        guides=guides,
        store_guides=store_guides,
        guide_count=np.array([len(s.guides) for s in stores]),
        skus=tuple(p.sku for p in products),
        categories=categories,
        product_category=np.array([categories.index(p.category) for p in products]),
        price=np.array([p.list_price for p in products], dtype=np.int64),
        gift=gift,
        brand_products=brand_products,
        brand_cum=brand_cum,
        gift_cards=np.array(
            [np.flatnonzero((brand_of == b) & gift) for b in range(len(BRANDS))], dtype=np.int64
        ),
        phone=_bijection(ids, 10**8),
        buyers={CH[ns]: _bijection(ids, 10**d) for ns, d in BUYER_DIGITS.items()},
    )


# ---------------------------------------------------------------- distributions

SHOPPER_CUM = _cum(np.diff(np.r_[0.0, SHOPPERS.cum]))
MEMBER_RATE = np.array([s.member_rate for s in SHOPPERS.values])
WECHAT_RATE = np.array([s.wechat_rate for s in SHOPPERS.values])
# Row shopper * 2 + wechat: cumulative weights over CHANNEL_CODES (no mini without WeChat).
CHANNEL_TABLE = np.array(
    [
        _cum([dict(s.channels).get(c, 0) if wechat or c != "mini" else 0 for c in CHANNEL_CODES])
        for s in SHOPPERS.values
        for wechat in (False, True)
    ]
)
LINE_VALUES, LINE_CUM = _values(LINE_COUNTS)
QUANTITY_VALUES, QUANTITY_CUM = _values(QUANTITIES)
SALE_VALUES, SALE_CUM = _values(
    list(zip(SALE_DISCOUNTS.values, np.diff(np.r_[0, SALE_DISCOUNTS.cum]), strict=True))
)
USUAL_VALUES, USUAL_CUM = _values(
    list(zip(USUAL_DISCOUNTS.values, np.diff(np.r_[0, USUAL_DISCOUNTS.cum]), strict=True))
)


class Ids:
    """The next id of each sequence, handed out chunk by chunk."""

    def __init__(self) -> None:
        self.next = dict.fromkeys(("order", "refund", "entry", "coupon", "event", "touch"), 1)

    def take(self, name: str, count: int) -> np.ndarray:
        first = self.next[name]
        self.next[name] = first + count
        return np.arange(first, first + count, dtype=np.int64)


class Chunk:
    """The tables' rows of profiles ``start + 1 .. stop`` and of their orders."""

    def __init__(self, world: World, number: int, ids: Ids) -> None:
        self.w = world
        self.ids = ids
        self.rng = np.random.default_rng([world.seed, number])
        self.start = number * CHUNK
        self.n = min(self.start + CHUNK, world.members) - self.start
        self.recruits = np.zeros((len(CHANNEL_CODES), world.months), np.int64)

    # ------------------------------------------------------------ small draws

    def _u(self, size: int) -> np.ndarray:
        return self.rng.random(size)

    def _index(self, counts: np.ndarray) -> np.ndarray:
        return (self._u(len(counts)) * counts).astype(np.int64)

    def _days(self, first: np.ndarray, last: np.ndarray, online: np.ndarray) -> np.ndarray:
        """A day in [first, last] by the season's store or online day weights."""
        w, u = self.w, self._u(len(first))
        out = np.empty(len(first), np.int64)
        for flag, cum in ((False, w.store_cum), (True, w.online_cum)):
            m = online == flag
            f, la = first[m], last[m]
            lo, hi = cum[f], cum[la + 1]
            day = np.searchsorted(cum, lo + u[m] * (hi - lo), side="right") - 1
            out[m] = np.clip(day, f, la)
        return out

    def _seconds(self, day: np.ndarray, online: np.ndarray) -> np.ndarray:
        u = self._u(len(day))
        hour = np.where(online, _pick(self.w.online_hours, u), _pick(self.w.store_hours, u))
        return day * DAY + hour * 3600 + self.rng.integers(0, 3600, len(day))

    def _guide(
        self, store: np.ndarray, home: np.ndarray, favourite: np.ndarray, rate: float
    ) -> np.ndarray:
        w = self.w
        guide = w.store_guides[store, self._index(w.guide_count[store])]
        guide = np.where(store == home, favourite, guide)
        return np.where((store >= 0) & (self._u(len(store)) < rate), guide, -1)

    def _discount(self, day: np.ndarray) -> np.ndarray:
        u = self._u(len(day))
        return np.where(
            self.w.sale[day], SALE_VALUES[_pick(SALE_CUM, u)], USUAL_VALUES[_pick(USUAL_CUM, u)]
        )

    def _ts(self, sec: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
        return pa.array(self.w.origin_us + sec * 1_000_000, pa.timestamp("us"), mask=null)

    # ------------------------------------------------------------ people

    def people(self) -> Arrays:
        w, n, u = self.w, self.n, self._u
        mid = np.arange(self.start + 1, self.start + n + 1, dtype=np.int64)
        first = _pick(w.recruit_cum, (mid - 1 + u(n)) / w.members)
        shopper = _pick(SHOPPER_CUM, u(n))
        city = _pick(w.city_cum, u(n))
        home = w.city_stores[city, self._index(w.city_count[city])]
        own = w.store_brand[home]
        member = u(n) < MEMBER_RATE[shopper]
        lapses = u(n) < LAPSE_RATE
        life = self.rng.exponential(LAPSE_MEAN_DAYS, n).astype(np.int64)
        last = np.where(lapses, np.minimum(first + life, w.days - 1), w.days - 1)
        rate = np.where(member, ORDERS_PER_YEAR[True], ORDERS_PER_YEAR[False])
        mean = rate * (last - first + 1) / 365
        count = 1 + (self.rng.exponential(1.0, n) * mean).astype(np.int64)
        count[member & (u(n) < NO_ORDER_RATE)] = 0
        return {
            "id": mid,
            "first": first,
            "last": last,
            "shopper": shopper,
            "city": city,
            "home": home,
            "favourite": w.store_guides[home, self._index(w.guide_count[home])],
            "brand": np.where(u(n) < 0.2, 1 - own, own),
            "wechat": u(n) < WECHAT_RATE[shopper],
            "female": u(n) < 0.62,
            "gives_phone": u(n) < 0.5,
            "member": member,
            "count": np.minimum(count, MAX_ORDERS),
        }

    # ------------------------------------------------------------ orders

    def _slots(self, p: Arrays, owner: np.ndarray, first: np.ndarray, last: np.ndarray) -> Arrays:
        """Channel, time and place of orders of ``owner`` on days in [first, last]."""
        w, m = self.w, len(owner)
        row = p["shopper"][owner] * 2 + p["wechat"][owner]
        channel = _pick_rows(CHANNEL_TABLE, row, self._u(m))
        online = channel != POS
        day = self._days(first, last, online)
        home, city = p["home"][owner], p["city"][owner]
        r = self._u(m)
        nearby = w.city_stores[city, self._index(w.city_count[city])]
        anywhere = self.rng.integers(0, len(w.store_brand), m)
        store = np.where(r < 0.85, home, np.where(r < 0.97, nearby, anywhere))
        store = np.where(online, -1, store)
        own = p["brand"][owner]
        brand = np.where(self._u(m) < 0.15, 1 - own, own)
        return {
            "owner": owner,
            "channel": channel,
            "day": day,
            "sec": self._seconds(day, online),
            "store": store,
            "brand": np.where(online, brand, w.store_brand[store]),
            "guide": self._guide(store, home, p["favourite"][owner], 0.75),
            "percent": self._discount(day),
        }

    def _register(self, p: Arrays, o: Arrays) -> None:
        """Registration of members: at their first or a later order, else on day one."""
        w, n, u = self.w, self.n, self._u
        count = p["count"]
        start = np.cumsum(count) - count
        k = np.where(u(n) < REGISTER_AT_FIRST, 0, self._index(count))
        has = count > 0
        at = np.where(has, start + k, 0)
        pad = {key: np.r_[o[key], 0] for key in ("sec", "channel", "store")}  # for no orders
        sec = np.maximum(pad["sec"][at] - self.rng.integers(60, 901, n), 0)
        channel = pad["channel"][at]
        joinable = np.isin(channel, (POS, MINI, WEB, TMALL))
        channel = np.where(joinable, channel, np.where(p["wechat"], MINI, WEB))
        store = np.where(channel == POS, pad["store"][at], -1)
        # Members who never buy join in a store (or the mini program) on their first day.
        quiet = u(n)
        online = (quiet >= 0.7) & p["wechat"]
        sec = np.where(has, sec, self._seconds(p["first"], np.zeros(n, bool)))
        channel = np.where(has, channel, np.where(online, MINI, POS))
        store = np.where(has, store, np.where(online, -1, p["home"]))
        member = p["member"]
        p["reg_sec"] = np.where(member, sec, -1)
        p["reg_channel"] = np.where(member, channel, -1)
        p["reg_store"] = np.where(member, store, -1)
        p["reg_guide"] = np.where(member, self._guide(store, p["home"], p["favourite"], 0.85), -1)
        full = np.isin(channel, (POS, MINI))
        p["gender_known"] = member & full
        told = member & (u(n) < np.where(full, BIRTHDAY_RATE[True], BIRTHDAY_RATE[False]))
        born = w.year[0] - self.rng.integers(18, 61, n)
        jan1 = (born - 1970).astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)
        birthday = jan1 + self.rng.integers(0, 365, n)
        p["birthday"] = np.where(told, birthday, 0)
        p["birthday_known"] = told
        month = birthday.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12
        p["birth_month"] = np.where(told, month + 1, 0)

    def _campaigns(self, p: Arrays) -> tuple[list[tuple[np.ndarray, np.ndarray]], Arrays]:
        """Targets (and control flags) of each campaign, and the extra orders it brings."""
        owners: list[np.ndarray] = []
        firsts: list[np.ndarray] = []
        lasts: list[np.ndarray] = []
        targets = []
        for _, _, day, length in self.w.campaigns:
            known = (p["reg_sec"] >= 0) & (p["reg_sec"] < (day - 1) * DAY)
            who = np.flatnonzero(known & (self._u(self.n) < CAMPAIGN_TARGET))
            control = self._u(len(who)) < CAMPAIGN_CONTROL
            targets.append((who, control))
            extra = who[~control & (self._u(len(who)) < CAMPAIGN_UPLIFT)]
            owners.append(extra)
            firsts.append(np.full(len(extra), day))
            lasts.append(np.full(len(extra), day + length - 1))
        empty = np.zeros(0, np.int64)
        extra = self._slots(
            p,
            np.concatenate([empty, *owners]),
            np.concatenate([empty, *firsts]),
            np.concatenate([empty, *lasts]),
        )
        return targets, extra

    def orders(self, p: Arrays) -> Arrays:
        w, n = self.w, self.n
        count = p["count"]
        owner = np.repeat(np.arange(n), count)
        k = np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count)
        first = p["first"][owner]
        last = np.where(k == 0, first, p["last"][owner])
        o = self._slots(p, owner, first, last)
        order = np.argsort((owner << SHIFT) | o["sec"], kind="stable")
        o = {key: v[order] for key, v in o.items()}
        self._register(p, o)
        targets, extra = self._campaigns(p)
        p["targets"] = targets
        merged = {key: np.concatenate([o[key], extra[key]]) for key in o}
        order = np.argsort((merged["owner"] << SHIFT) | merged["sec"], kind="stable")
        o = {key: v[order] for key, v in merged.items()}
        # Anonymous walk-ins: no profile, any store, store hours.
        a = round(len(o["owner"]) * ANONYMOUS_SHARE / (1 - ANONYMOUS_SHARE))
        store = self.rng.integers(0, len(w.store_brand), a)
        offline = np.zeros(a, bool)
        day = self._days(np.zeros(a, np.int64), np.full(a, w.days - 1), offline)
        sec = self._seconds(day, offline)
        order = np.argsort(sec, kind="stable")
        store, day, sec = store[order], day[order], sec[order]
        anonymous = {
            "owner": np.full(a, -1),
            "channel": np.full(a, POS),
            "day": day,
            "sec": sec,
            "store": store,
            "brand": w.store_brand[store],
            "guide": self._guide(store, np.full(a, -1), np.full(a, -1), 0.75),
            "percent": self._discount(day),
        }
        o = {key: np.concatenate([o[key], anonymous[key]]) for key in o}
        o["known"] = len(o["owner"]) - a
        owner = o["owner"]
        reg = np.where(owner >= 0, p["reg_sec"][owner], -1)
        o["earns"] = (reg >= 0) & (o["sec"] >= reg)
        m = len(owner)
        refund_sec = o["sec"] + self.rng.integers(DAY, 10 * DAY + 1, m)
        o["refunded"] = (self._u(m) < REFUND_RATE) & (refund_sec < w.horizon)
        o["refund_sec"] = refund_sec
        return o

    def lines(self, p: Arrays, o: Arrays) -> Arrays:
        """Lines, points payments and refunds of the orders (updates ``o``)."""
        w, rng = self.w, self.rng
        m = len(o["owner"])
        brand = o["brand"]
        count = LINE_VALUES[_pick(LINE_CUM, self._u(m))]
        line_order = np.repeat(np.arange(m), count)
        b = brand[line_order]
        product = w.brand_products[b, _pick_rows(w.brand_cum, b, self._u(len(b)))]
        products = len(w.price)
        key = np.sort(line_order * products + product, kind="stable")  # nearly sorted
        key = key[_firsts(key)]  # one line per SKU, in SKU order
        line_order, product = key // products, key % products
        online_gift = np.isin(o["channel"], (WEB, MINI)) & (self._u(m) < GIFT_CARD_RATE)
        gifted = np.flatnonzero(online_gift)
        cards = w.gift_cards[brand[gifted], rng.integers(0, w.gift_cards.shape[1], len(gifted))]
        line_order = np.concatenate([line_order, gifted])
        product = np.concatenate([product, cards])
        order = np.argsort(line_order, kind="stable")
        line_order, product = line_order[order], product[order]
        lines = len(line_order)
        gift = w.gift[product]
        quantity = np.where(gift, 1, QUANTITY_VALUES[_pick(QUANTITY_CUM, self._u(lines))])
        price = w.price[product]
        amount = np.where(gift, price, price * quantity * o["percent"][line_order] // 10_000 * 100)
        starts = _starts(line_order, m)[:-1]
        gross = np.add.reduceat(amount, starts)
        # Points paid: at most half the order and half of what the member earned (and
        # kept) since their last points payment and since 1 January of last year (older
        # lots have expired), so balances hardly ever go short.
        known = o["known"]
        earns = o["earns"]
        base = np.add.reduceat(np.where(gift, 0, amount), starts) // 100
        kept = np.where(earns & ~o["refunded"], base, 0)[:known]
        before = np.cumsum(kept) - kept
        candidate = earns[:known] & (self._u(known) < POINTS_PAYMENT_RATE)
        last = np.maximum.accumulate(np.r_[-1, np.where(candidate, np.arange(known), -1)[:-1]])
        owner, sec = o["owner"][:known], o["sec"][:known]
        live = np.maximum(w.last_new_year[o["day"][:known]], 0)
        live_from = np.searchsorted((owner << SHIFT) | sec, (owner << SHIFT) | live)
        since = before - before[np.maximum(last, live_from)]
        used = np.minimum(since // 2, gross[:known] // 2) // 100 * 100
        used = np.where(candidate & (used >= 500), used, 0)
        used = np.r_[used, np.zeros(m - known, np.int64)]
        # The points payment is shared pro rata over the lines; paid_* is money only.
        share = used[line_order] * amount // gross[line_order]
        share[starts] += used - np.add.reduceat(share, starts)
        money = amount - share
        paid = gross - used
        # Refunds: the whole order, one line, or money back on one line.
        refunded = np.flatnonzero(o["refunded"])
        r = self._u(len(refunded))
        nlines = np.diff(np.r_[starts, lines])
        one = starts[refunded] + self._index(nlines[refunded])
        adjust = (r >= REFUND_LINE) & (money[one] >= 1000)
        whole = np.zeros(m, bool)
        whole[refunded[r < REFUND_WHOLE]] = True
        refunded_quantity = np.where(whole[line_order], quantity, 0)
        refunded_amount = np.where(whole[line_order], money, 0)
        back = one[(r >= REFUND_WHOLE) & ~adjust]
        refunded_quantity[back] = quantity[back]
        refunded_amount[back] = money[back]
        adjusted = one[(r >= REFUND_WHOLE) & adjust]
        percent = np.array(ADJUST_PERCENTS)[rng.integers(0, len(ADJUST_PERCENTS), len(adjusted))]
        refunded_amount[adjusted] = money[adjusted] * percent // 10_000 * 100
        o["paid"] = paid
        o["used"] = used
        o["units"] = np.add.reduceat(quantity, starts)
        o["refunded_amount"] = np.add.reduceat(refunded_amount, starts)
        o["refunded_units"] = np.add.reduceat(refunded_quantity, starts)
        o["earning"] = np.add.reduceat(np.where(gift, 0, money), starts)
        return {
            "order": line_order,
            "line_no": (np.arange(lines) - starts[line_order] + 1).astype(np.int32),
            "product": product,
            "quantity": quantity,
            "paid": money,
            "refunded_quantity": refunded_quantity,
            "refunded_amount": refunded_amount,
        }

    # ------------------------------------------------------------ points

    def points(self, p: Arrays, o: Arrays) -> Arrays:
        w, n = self.w, self.n
        known = o["known"]
        owner, sec = o["owner"][:known], o["sec"][:known]
        earns = o["earns"][:known]
        refunded = o["refunded"][:known]
        refund_sec = o["refund_sec"][:known]
        paid = o["paid"][:known]
        day = o["day"][:known]
        multiplier = np.where(w.dom[day] == 8, 2.0, 1.0) * np.where(
            w.month[day] == p["birth_month"][owner], 1.5, 1.0
        )
        earned = (o["earning"][:known] // 100 * multiplier).astype(np.int64)
        earned = np.where(earns & (o["earning"][:known] >= 100), earned, 0)
        used = o["used"][:known]
        back = o["refunded_amount"][:known]
        safe = np.maximum(paid, 1)
        clawback = np.where(refunded, earned * back // safe, 0)
        restore = np.where(refunded, used * back // safe, 0)
        parts: list[tuple[np.ndarray, np.ndarray, int, np.ndarray]] = []
        for kind, amount, at in (
            (EARN, earned, sec),
            (SPEND, -used, sec),
            (CLAWBACK, -clawback, refund_sec),
            (RESTORE, restore, refund_sec),
        ):
            hit = amount != 0
            parts.append((owner[hit], at[hit], kind, amount[hit]))
        registered = p["reg_sec"] >= 0
        lucky = np.flatnonzero(registered & (self._u(n) < POINTS_ADJUST_RATE))
        reg = p["reg_sec"][lucky]
        at = reg + (self._u(len(lucky)) * (w.horizon - reg)).astype(np.int64)
        gift = np.array([100, 200, 500, 1000, 2000])[self.rng.integers(0, 5, len(lucky))]
        parts.append((lucky, at, ADJUST, gift))
        # Expiry at the end of the following year, oldest lots first: what is left of the
        # lots of year Y and before once the spending before 1 January Y+2 is taken.
        owners = np.concatenate([x[0] for x in parts])
        ats = np.concatenate([x[1] for x in parts])
        amounts = np.concatenate([x[3] for x in parts])
        gained = amounts > 0
        year = w.year[np.minimum(ats // DAY, w.days - 1)]
        expired = np.zeros(n, np.int64)
        for y in range(int(w.year[0]), int(w.year[-1]) + 1):
            cut = (date(y + 2, 1, 1) - w.first_day).days * DAY
            if cut >= w.horizon:
                break
            lots = np.bincount(owners[gained & (year <= y)], amounts[gained & (year <= y)], n)
            spent = np.bincount(owners[~gained & (ats < cut)], -amounts[~gained & (ats < cut)], n)
            lapse = np.maximum(lots.astype(np.int64) - spent.astype(np.int64) - expired, 0)
            expired += lapse
            hit = np.flatnonzero(lapse)
            parts.append((hit, np.full(len(hit), cut), EXPIRE, -lapse[hit]))
        owner = np.concatenate([x[0] for x in parts])
        at = np.concatenate([x[1] for x in parts])
        kind = np.concatenate([np.full(len(x[0]), x[2]) for x in parts])
        amount = np.concatenate([x[3] for x in parts])
        order = np.lexsort((kind, at, owner))
        owner, at, kind, amount = owner[order], at[order], kind[order], amount[order]
        # Where a balance would still go short, the entry takes only what is there: a
        # clawback records the rest as debt (the "other_lots" policy), a spend or an
        # expiry is smaller.
        debt = np.zeros(len(owner), np.int64)
        group = _starts(owner, n)
        for _ in range(20):
            total = np.cumsum(amount)
            balance = total - np.r_[0, total][group[:-1]][owner]
            short = np.flatnonzero(balance < 0)
            if not len(short):
                break
            short = short[_firsts(owner[short])]
            gap = -balance[short]
            amount[short] += gap
            debt[short] += np.where(kind[short] == CLAWBACK, gap, 0)
        keep = (amount != 0) | (debt != 0)
        owner, at, kind, amount, debt = (x[keep] for x in (owner, at, kind, amount, debt))
        return {
            "entry_id": self.ids.take("entry", len(owner)),
            "member_id": p["id"][owner],
            "program": pa.repeat(pa.scalar(PROGRAM, pa.string()), len(owner)),
            "kind": _strings(ENTRY_KINDS, kind),
            "points": amount,
            "debt_delta": debt,
            "occurred_at": self._ts(at),
        }

    def consents(self, p: Arrays) -> Arrays:
        """Each member's latest consent per purpose, given at joining or withdrawn later."""
        w, u = self.w, self._u
        joined = np.flatnonzero(p["reg_sec"] >= 0)
        k = len(joined)
        parts = []
        for purpose, (asked, granted) in enumerate(CONSENTS.values()):
            ask = u(k) < asked
            if purpose == WECHAT_CONSENT:
                ask &= p["wechat"][joined]
            who = joined[ask]
            reg = p["reg_sec"][who]
            grant = u(len(who)) < granted
            withdrawn = grant & (u(len(who)) < WITHDRAW_RATE)
            later = reg + (u(len(who)) * (w.horizon - reg)).astype(np.int64)
            at = np.where(withdrawn, later, reg)
            parts.append((who, np.full(len(who), purpose), grant & ~withdrawn, at))
        owner, purpose, granted, at = (np.concatenate([x[i] for x in parts]) for i in range(4))
        order = np.lexsort((purpose, owner))
        return {
            "member_id": p["id"][owner[order]],
            "purpose": _strings(tuple(CONSENTS), purpose[order]),
            "granted": granted[order],
            "recorded_at": self._ts(at[order]),
        }

    # ------------------------------------------------------------ coupons, touchpoints

    def coupons(self, p: Arrays, o: Arrays) -> Arrays:
        w, u = self.w, self._u
        templates = tuple(TEMPLATES)
        face = np.array([v for v, _ in TEMPLATES.values()])
        redeem_rate = np.array([r for _, r in TEMPLATES.values()])
        reg = p["reg_sec"]
        parts: list[tuple[np.ndarray, ...]] = []

        def add(owner: np.ndarray, template: int, issue: np.ndarray, claim: np.ndarray,
                expiry: np.ndarray, channel: np.ndarray, store: np.ndarray) -> None:  # fmt: skip
            parts.append(
                (owner, np.full(len(owner), template), issue, claim, expiry, channel, store)
            )

        joined = np.flatnonzero(reg >= 0)
        at = reg[joined]
        add(joined, 0, at, at, at + COUPON_DAYS * DAY, p["reg_channel"][joined],
            p["reg_store"][joined])  # fmt: skip
        told = np.flatnonzero(p["birthday_known"])
        first = np.datetime64(w.first_day, "D")
        for y in range(int(w.year[0]), int(w.year[-1]) + 1):
            month = ((y - 1970) * 12 + p["birth_month"][told] - 1).astype("datetime64[M]")
            begin = (month.astype("datetime64[D]") - first).astype(np.int64)
            end = ((month + 1).astype("datetime64[D]") - first).astype(np.int64)
            issue = begin * DAY + 9 * 3600
            ok = (begin >= 0) & (issue >= reg[told]) & (issue < w.horizon)
            none = np.full(int(ok.sum()), -1)
            add(told[ok], 1, issue[ok], issue[ok], end[ok] * DAY, none, none)
        for (_, template, day, length), (who, control) in zip(
            w.campaigns, p["targets"], strict=True
        ):
            treated = who[~control]
            k = len(treated)
            issue = (day - 1) * DAY + 10 * 3600 + self.rng.integers(0, 7200, k)
            expiry = np.full(k, (day + length) * DAY)
            claim = issue + self.rng.exponential(DAY, k).astype(np.int64)
            claim = np.where((u(k) < 0.7) & (claim < expiry), claim, -1)
            add(treated, templates.index(template), issue, claim, expiry, np.full(k, MINI),
                np.full(k, -1))  # fmt: skip
        owner, template, issue, claim, expiry, channel, store = (
            np.concatenate([x[i] for x in parts]) for i in range(7)
        )
        order = np.lexsort((template, issue, owner))
        owner, template, issue, claim, expiry, channel, store = (
            x[order] for x in (owner, template, issue, claim, expiry, channel, store)
        )
        c = len(owner)
        coupon_id = self.ids.take("coupon", c)
        # Redeemed with the member's first order after the claim, if before expiry.
        known = o["known"]
        o_owner = np.r_[o["owner"][:known], -2]
        o_sec = np.r_[o["sec"][:known], 0]
        found = np.searchsorted(
            (o_owner[:-1] << SHIFT) | o_sec[:-1], (owner << SHIFT) | np.maximum(claim, 0)
        )
        ok = (claim >= 0) & (o_owner[found] == owner) & (o_sec[found] < expiry)
        ok &= u(c) < redeem_rate[template]
        released = ok & (u(c) < RELEASE_RATE)
        redeemed = ok & ~released
        at_order = o_sec[found]
        whole = np.r_[
            o["refunded"][:known] & (o["refunded_amount"][:known] == o["paid"][:known]), False
        ]
        returned = redeemed & whole[found]
        voided = ~redeemed & (u(c) < VOID_RATE)
        void_at = issue + (u(c) * (np.minimum(expiry, w.horizon) - issue)).astype(np.int64)
        expired = ~redeemed & ~voided & (expiry < w.horizon)
        o_channel = np.r_[o["channel"][:known], -1][found]
        o_store = np.r_[o["store"][:known], -1][found]
        none = np.full(c, -1)
        events = (
            (np.ones(c, bool), ISSUED, issue, channel, store, False),
            ((claim >= 0) & (claim != issue), CLAIMED, claim, np.full(c, MINI), none, False),
            (ok, RESERVED, np.maximum(at_order - 20, claim), o_channel, o_store, True),
            (released, RELEASED, at_order - 10, o_channel, o_store, True),
            (redeemed, REDEEMED, at_order, o_channel, o_store, True),
            (returned, RETURNED, np.r_[o["refund_sec"][:known], 0][found], o_channel, o_store,
             True),
            (voided, VOIDED, void_at, none, none, False),
            (expired, EXPIRED, expiry, none, none, False),
        )  # fmt: skip
        idx = np.concatenate([np.flatnonzero(e[0]) for e in events])
        kind = np.concatenate([np.full(int(e[0].sum()), e[1]) for e in events])
        at = np.concatenate([e[2][e[0]] for e in events])
        ch = np.concatenate([e[3][e[0]] for e in events])
        st = np.concatenate([e[4][e[0]] for e in events])
        discount = np.concatenate([np.full(int(e[0].sum()), e[5]) for e in events])
        order = np.lexsort((kind, at, idx))
        idx, kind, at, ch, st, discount = (x[order] for x in (idx, kind, at, ch, st, discount))
        return {
            "event_id": self.ids.take("event", len(idx)),
            "coupon_id": coupon_id[idx],
            "member_id": p["id"][owner[idx]],
            "template": _strings(templates, template[idx]),
            "kind": _strings(COUPON_KINDS, kind),
            "channel": _strings(CHANNEL_CODES, ch),
            "store": _strings(w.store_codes, st),
            "discount": pa.array(face[template[idx]], pa.int64(), mask=~discount),
            "occurred_at": self._ts(at),
        }

    def touchpoints(self, p: Arrays) -> Arrays:
        w, u = self.w, self._u
        parts: list[tuple[np.ndarray, ...]] = []
        codes = [code for code, _, _, _ in w.campaigns]
        for c, ((_, _, day, _), (who, control)) in enumerate(
            zip(w.campaigns, p["targets"], strict=True)
        ):
            k = len(who)
            sent = (day - 1) * DAY + 10 * 3600 + self.rng.integers(0, 7200, k)
            channel = np.where(u(k) < 0.4, 0, 1)  # sms, mini
            opened = ~control & (u(k) < 0.35)
            clicked = opened & (u(k) < 0.35)
            open_at = sent + self.rng.exponential(6 * 3600, k).astype(np.int64)
            click_at = open_at + self.rng.exponential(1800, k).astype(np.int64)
            for mask, kind, at, ch in (
                (control, CONTROL, sent, np.full(k, -1)),
                (~control, SENT, sent, channel),
                (opened, OPENED, open_at, channel),
                (clicked, CLICKED, click_at, channel),
            ):
                hit = np.flatnonzero(mask)
                parts.append(
                    (who[hit], np.full(len(hit), kind), np.full(len(hit), c), at[hit], ch[hit],
                     np.full(len(hit), -1))
                )  # fmt: skip
        home = p["home_store"]
        goers = np.flatnonzero((p["reg_sec"] >= 0) & (home >= 0) & (u(self.n) < EVENT_RATE))
        begin = p["created"][goers]
        at = begin + (u(len(goers)) * (w.horizon - begin)).astype(np.int64)
        g = len(goers)
        parts.append((goers, np.full(g, EVENT), np.full(g, len(codes)), at, np.full(g, 2),
                      home[goers]))  # fmt: skip
        owner, kind, campaign, at, channel, store = (
            np.concatenate([x[i] for x in parts]) for i in range(6)
        )
        order = np.lexsort((kind, at, owner))
        owner, kind, campaign, at, channel, store = (
            x[order] for x in (owner, kind, campaign, at, channel, store)
        )
        return {
            "touchpoint_id": self.ids.take("touch", len(owner)),
            "member_id": p["id"][owner],
            "kind": _strings(TOUCH_KINDS, kind),
            "campaign": _strings([*codes, "store_event"], campaign),
            "channel": _strings(TOUCH_CHANNELS, channel),
            "store": _strings(self.w.store_codes, store),
            "occurred_at": self._ts(at),
        }

    # ------------------------------------------------------------ profiles

    def profiles(self, p: Arrays, o: Arrays) -> None:
        """Derived profile fields: created, home store, region, brand, tier, location."""
        w, n = self.w, self.n
        known = o["known"]
        owner, sec = o["owner"][:known], o["sec"][:known]
        starts = _starts(owner, n)
        has = np.diff(starts) > 0
        first = np.minimum(starts[:-1], max(known - 1, 0))
        pad = {key: np.r_[o[key][:known], 0] for key in ("sec", "brand", "channel")}
        first_sec = np.where(has, pad["sec"][first], w.horizon)
        reg = p["reg_sec"]
        member = reg >= 0
        p["created"] = np.where(member, np.minimum(reg, first_sec), first_sec)
        p["first_channel"] = np.where(has, pad["channel"][first], p["reg_channel"])
        at_home = np.bincount(owner[o["store"][:known] == p["home"][owner]], minlength=n) > 0
        home = np.where(p["reg_store"] >= 0, p["reg_store"], np.where(at_home, p["home"], -1))
        p["home_store"] = home
        p["region"] = np.where(home >= 0, w.store_region[home], -1)
        p["member_brand"] = np.where(
            p["reg_store"] >= 0,
            w.store_brand[p["reg_store"]],
            np.where(has, pad["brand"][first], p["brand"]),
        )
        recent = sec >= w.horizon - 365 * DAY
        net = (o["paid"] - o["refunded_amount"])[:known]
        spend = np.bincount(owner[recent], net[recent], n)
        tier = np.searchsorted(TIER_THRESHOLDS, spend, side="right") - 1
        p["tier"] = np.where(member, tier, -1)

    def members(self, p: Arrays) -> Arrays:
        w, n = self.w, self.n
        member = p["reg_sec"] >= 0
        home = p["home_store"]
        city = p["city"]
        near = home >= 0
        lat = np.where(near, w.store_lat[home], CITY_LAT[city])
        lon = np.where(near, w.store_lon[home], CITY_LON[city])
        spread = np.where(near, 0.02, 0.05)
        lat = np.round(lat + self.rng.normal(0, 1, n) * spread, 6)
        lon = np.round(lon + self.rng.normal(0, 1, n) * spread, 6)
        located = near | (self._u(n) < 0.6)
        number = _digits(p["id"], 9, PROGRAM.upper())
        return {
            "member_id": p["id"],
            "member_no": pc.if_else(pa.array(member), number, pa.scalar(None, pa.string())),
            "registered_at": self._ts(p["reg_sec"], ~member),
            "channel": _strings(CHANNEL_CODES, p["reg_channel"]),
            "store": _strings(w.store_codes, p["reg_store"]),
            "guide": _strings(w.guides, p["reg_guide"]),
            "brand": _strings(BRAND_CODES, p["member_brand"]),
            "region": _strings(REGION_CODES, p["region"]),
            "tier": _strings(TIER_CODES, p["tier"]),
            "gender": _strings(("F", "M"), np.where(p["gender_known"], ~p["female"], -1)),
            "birthday": pa.array(
                p["birthday"].astype(np.int32), pa.date32(), mask=~p["birthday_known"]
            ),
            "home_store": _strings(w.store_codes, home),
            "latitude": pa.array(lat, pa.float64(), mask=~located),
            "longitude": pa.array(lon, pa.float64(), mask=~located),
            "created_at": self._ts(p["created"]),
        }

    def identities(self, p: Arrays, o: Arrays) -> Arrays:
        """A phone for members (and most prospects), WeChat ids for mini-program users, a
        buyer id per marketplace, each first seen when first used."""
        w, n = self.w, self.n
        known = o["known"]
        owner, channel, sec = (o[k][:known] for k in ("owner", "channel", "sec"))
        used = np.isin(channel, (MINI, *MARKETPLACES))
        reg_ch = p["reg_channel"]
        joined = np.flatnonzero(np.isin(reg_ch, (MINI, TMALL)))
        who = np.r_[owner[used], joined]
        ch = np.r_[channel[used], reg_ch[joined]]
        at = np.r_[sec[used], p["reg_sec"][joined]]
        key = who * 8 + ch
        order = np.lexsort((at, key))
        key, at = key[order], at[order]
        first = _firsts(key)
        key, at = key[first], at[first]
        who, ch = key // 8, key % 8
        member = p["reg_sec"] >= 0
        other = np.bincount(who, minlength=n) > 0
        phoned = np.flatnonzero(member | p["gives_phone"] | ~other)
        mid = p["id"]
        a, b = w.phone
        i = mid[phoned]
        phone = _digits((a * (i // len(PHONE_PREFIXES)) + b) % 10**8, 8,
                        _strings(PHONE_PREFIXES, i % len(PHONE_PREFIXES)))  # fmt: skip
        wechat = ch == MINI
        wx = mid[who[wechat]]
        buyer = np.flatnonzero(~wechat)
        values = [phone]
        values.append(_digits(_mix64(wx, 2 * w.seed + 1), 20, "o"))
        values.append(_digits(_mix64(wx, 2 * w.seed + 2), 20, "o"))
        by_market = np.concatenate([buyer[ch[buyer] == c] for c in MARKETPLACES])
        for c in MARKETPLACES:
            code = CHANNEL_CODES[c]
            x, y = w.buyers[c]
            i = mid[who[buyer[ch[buyer] == c]]]
            values.append(_digits((x * i + y) % 10 ** BUYER_DIGITS[code], BUYER_DIGITS[code],
                                  BUYER_PREFIX[code]))  # fmt: skip
        phone_seen = np.where(member, p["reg_sec"], p["created"])[phoned]
        phone_source = np.where(member, reg_ch, p["first_channel"])[phoned]
        # (profiles, type, namespace: -1 none, 0 the mini program, 1 + channel, seen, source)
        rows = (
            (phoned, 0, -1, phone_seen, phone_source),
            (who[wechat], 1, -1, at[wechat], ch[wechat]),
            (who[wechat], 2, 0, at[wechat], ch[wechat]),
            (who[by_market], 3, 1 + ch[by_market], at[by_market], ch[by_market]),
        )
        owner = np.concatenate([r[0] for r in rows])
        kind = np.concatenate([np.full(len(r[0]), r[1]) for r in rows])
        namespace = np.concatenate([np.broadcast_to(r[2], len(r[0])) for r in rows])
        seen = np.concatenate([r[3] for r in rows])
        source = np.concatenate([r[4] for r in rows])
        order = np.lexsort((kind, owner))
        return {
            "member_id": mid[owner[order]],
            "type": _strings(IDENTITY_TYPES, kind[order]),
            "namespace": pc.fill_null(_strings((MINI_APP, *CHANNEL_CODES), namespace[order]), ""),
            "value": pa.concat_arrays(values).take(pa.array(order)),
            "first_seen_at": self._ts(seen[order]),
            "source": _strings(CHANNEL_CODES, source[order]),
        }

    # ------------------------------------------------------------ the chunk's tables

    def tables(self) -> dict[str, pa.Table]:
        w = self.w
        p = self.people()
        o = self.orders(p)
        li = self.lines(p, o)
        self.profiles(p, o)
        m = len(o["owner"])
        order_id = self.ids.take("order", m)
        anonymous = o["owner"] < 0
        member_id = pa.array(
            np.where(anonymous, 0, p["id"][o["owner"]]), pa.int64(), mask=anonymous
        )
        store = o["store"]
        orders = {
            "order_id": order_id,
            "member_id": member_id,
            "brand": _strings(BRAND_CODES, o["brand"]),
            "channel": _strings(CHANNEL_CODES, o["channel"]),
            "store": _strings(w.store_codes, store),
            "region": _strings(REGION_CODES, np.where(store >= 0, w.store_region[store], -1)),
            "guide": _strings(w.guides, o["guide"]),
            "ordered_at": self._ts(o["sec"]),
            "paid_total": o["paid"],
            "refunded_amount": o["refunded_amount"],
            "units": o["units"],
            "refunded_units": o["refunded_units"],
        }
        lo = li["order"]
        lines = {
            "order_id": order_id[lo],
            "member_id": member_id.take(pa.array(lo)),
            "ordered_at": orders["ordered_at"].take(pa.array(lo)),
            "channel": orders["channel"].take(pa.array(lo)),
            "store": orders["store"].take(pa.array(lo)),
            "line_no": li["line_no"],
            "sku": _strings(w.skus, li["product"]),
            "category": _strings(w.categories, w.product_category[li["product"]]),
            "quantity": li["quantity"],
            "paid_amount": li["paid"],
            "refunded_quantity": li["refunded_quantity"],
            "refunded_amount": li["refunded_amount"],
        }
        back = np.flatnonzero(o["refunded"] & (o["refunded_amount"] > 0))
        refunds = {
            "refund_id": self.ids.take("refund", len(back)),
            "order_id": order_id[back],
            "member_id": member_id.take(pa.array(back)),
            "refunded_at": self._ts(o["refund_sec"][back]),
            "amount": o["refunded_amount"][back],
        }
        columns = {
            "members": self.members(p),
            "identities": self.identities(p, o),
            "orders": orders,
            "order_lines": lines,
            "refunds": refunds,
            "points_entries": self.points(p, o),
            "coupon_events": self.coupons(p, o),
            "touchpoints": self.touchpoints(p),
            "consents": self.consents(p),
        }
        joined = p["reg_sec"] >= 0
        month = w.month_index[p["reg_sec"][joined] // DAY]
        self.recruits = np.bincount(
            p["reg_channel"][joined] * w.months + month, minlength=len(CHANNEL_CODES) * w.months
        ).reshape(len(CHANNEL_CODES), w.months)
        return {
            name: pa.Table.from_pydict(cols, schema=SCHEMAS[name].to_pyarrow())
            for name, cols in columns.items()
        }


# ---------------------------------------------------------------- running


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError


def generate(
    out: Path,
    *,
    members: int,
    seed: int = 7,
    as_of: date = date(2026, 11, 1),
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Write every canonical table of ``members`` profiles into ``out``; rows per table."""
    if not 1 <= members <= MAX_MEMBERS:
        raise ValueError(f"members must be between 1 and {MAX_MEMBERS}")
    world = build_world(seed=seed, members=members, as_of=as_of)
    out.mkdir(parents=True, exist_ok=True)
    static = ("stores", "acquisition_costs")
    writers = {
        name: pq.ParquetWriter(out / f"{name}.parquet", schema.to_pyarrow(), compression="zstd")
        for name, schema in SCHEMAS.items()
        if name not in static
    }
    rows = dict.fromkeys(SCHEMAS, 0)
    recruits = np.zeros((len(CHANNEL_CODES), world.months), np.int64)
    ids = Ids()

    def write(tables: dict[str, pa.Table]) -> None:
        for name, table in tables.items():
            writers[name].write_table(table, row_group_size=1 << 20)

    # Generation on this thread, writing (which releases the GIL) on another: one
    # chunk is written while the next is generated.
    pending: Future[None] | None = None
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            for number in range((members + CHUNK - 1) // CHUNK):
                chunk = Chunk(world, number, ids)
                tables = chunk.tables()
                for name, table in tables.items():
                    rows[name] += table.num_rows
                recruits += chunk.recruits
                if pending is not None:
                    pending.result()
                pending = pool.submit(write, tables)
                del tables
                if progress:
                    progress(chunk.n)
            if pending is not None:
                pending.result()
    finally:
        for writer in writers.values():
            writer.close()
    costs = acquisition_costs(world, recruits)
    for name, table in (("stores", world.stores), ("acquisition_costs", costs)):
        pq.write_table(table, out / f"{name}.parquet", compression="zstd")
        rows[name] = table.num_rows
    return rows


def acquisition_costs(world: World, recruits: np.ndarray) -> pa.Table:
    """What each joining channel cost per month: its recruits at a noisy unit cost."""
    rng = np.random.default_rng([world.seed, 1 << 32])
    rows: dict[str, list[Any]] = {"channel": [], "month": [], "amount": []}
    for code, unit in COST_PER_RECRUIT.items():
        count = recruits[CH[code]]
        noise = rng.uniform(0.8, 1.25, len(count))
        for month, n, f in zip(world.month_labels, count, noise, strict=True):
            rows["channel"].append(code)
            rows["month"].append(month)
            rows["amount"].append(round(int(n) * unit * f))
    return pa.Table.from_pydict(rows, schema=SCHEMAS["acquisition_costs"].to_pyarrow())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 11, 1))
    args = parser.parse_args()
    console = Console()
    console.print(f"{machine()}; {args.members:,} profiles, seed {args.seed}, as of {args.as_of}")
    started = time.perf_counter()
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} profiles"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("generating", total=args.members)

        def advance(n: int) -> None:
            bar.advance(task, n)
            if not console.is_terminal:  # a log gets a line per chunk instead of a bar
                done = int(bar.tasks[0].completed)
                elapsed = time.perf_counter() - started
                console.print(f"{done:,}/{args.members:,} profiles, {elapsed:,.0f} s")

        rows = generate(
            args.out, members=args.members, seed=args.seed, as_of=args.as_of, progress=advance
        )
    seconds = time.perf_counter() - started
    table = Table(title=f"{args.out} ({seconds:,.1f} s)")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("bytes", justify="right")
    total = 0
    for name, count in rows.items():
        size = (args.out / f"{name}.parquet").stat().st_size
        total += size
        table.add_row(name, f"{count:,}", _size(size))
    table.add_row("total", "", _size(total))
    console.print(table)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    free = shutil.disk_usage(args.out).free
    console.print(
        f"{seconds:,.1f} s, peak RSS {peak:,.0f} MiB, "
        f"{rows['order_lines'] / max(seconds, 1e-9):,.0f} order lines/s, {_size(free)} disk free"
    )


if __name__ == "__main__":
    main()
