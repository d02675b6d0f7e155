"""The demo brand group as data: organisation, program, tiers, earn rule, brands,
channels, stores, guides and products, installed through ``quanyu.services.setup``.

Everything is fictional except the cities and their districts. The group Yunshan
(云杉时尚集团) runs two brands, the apparel brand ``yunshan`` and the outdoor brand
``tuolu``, sharing one loyalty program ``club``. Store coordinates, guide names and
list prices are drawn from a ``random.Random`` seeded by the demo seed.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from random import Random
from typing import Any

from quanyu.services import setup
from quanyu.services.uow import Platform

ORGANISATION = ("yunshan_group", "云杉时尚集团")
PROGRAM = "club"
GIFT_CARD = "gift_card"

PROGRAM_VALUES: dict[str, Any] = {
    "code": PROGRAM,
    "name": "云杉会",
    "pending_days": 7,
    "expiry_kind": "end_of_following_year",
    "clawback_policy": "other_lots",
    "point_value_minor": 1,
    "points_payment_cap_percent": 50,
}

TIERS: list[dict[str, Any]] = [
    {"code": "member", "name": "会员", "rank": 0, "threshold": 0},
    {"code": "silver", "name": "银卡", "rank": 1, "threshold": 300_000},
    {"code": "gold", "name": "金卡", "rank": 2, "threshold": 1_000_000},
    {"code": "black", "name": "黑金卡", "rank": 3, "threshold": 3_000_000},
]

EARN_RULE: dict[str, Any] = {
    "base_rate": "1",
    "tier_multipliers": {"member": "1", "silver": "1.2", "gold": "1.5", "black": "2"},
    "member_days": [8],
    "member_day_multiplier": "2",
    "birthday_month_multiplier": "1.5",
    "excluded_categories": [GIFT_CARD],
}

BRANDS = (("yunshan", "云杉"), ("tuolu", "拓路"))

# (code, name, kind)
CHANNELS = (
    ("pos", "门店收银", "store_pos"),
    ("web", "官网商城", "web_mall"),
    ("mini", "微信小程序商城", "wechat_mini"),
    ("tmall", "天猫旗舰店", "tmall"),
    ("jd", "京东旗舰店", "jd"),
    ("douyin", "抖音直播间", "douyin"),
    ("kuaishou", "快手直播间", "kuaishou"),
)


@dataclass(frozen=True)
class City:
    code: str
    name: str
    display: str
    region: str
    latitude: float
    longitude: float
    districts: tuple[str, ...]  # one store per district


CITIES = (
    City(
        "SH", "Shanghai", "上海", "East", 31.2304, 121.4737,
        ("南京西路", "徐家汇", "陆家嘴", "五角场", "静安寺", "中山公园", "七宝"),
    ),
    City(
        "BJ", "Beijing", "北京", "North", 39.9042, 116.4074,
        ("三里屯", "西单", "望京", "国贸", "中关村", "五道口"),
    ),
    City("GZ", "Guangzhou", "广州", "South", 23.1291, 113.2644,
         ("天河路", "北京路", "珠江新城", "番禺", "白云")),
    City("SZ", "Shenzhen", "深圳", "South", 22.5431, 114.0579,
         ("福田", "南山", "罗湖", "宝安", "龙华")),
    City("HZ", "Hangzhou", "杭州", "East", 30.2741, 120.1551,
         ("湖滨", "西溪", "滨江", "武林", "萧山")),
    City("CD", "Chengdu", "成都", "West", 30.5728, 104.0668, ("春熙路", "太古里", "高新", "双流")),
    City("WH", "Wuhan", "武汉", "Central", 30.5928, 114.3055,
         ("江汉路", "光谷", "武广", "楚河汉街")),
    City("NJ", "Nanjing", "南京", "East", 32.0603, 118.7969, ("新街口", "河西", "江宁", "仙林")),
)  # fmt: skip

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶"
    "程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛段雷侯龙史陶黎贺顾毛"
)
GIVEN_FEMALE = "静丽敏婷雪琳颖佳欣怡嘉雯晓梦璐瑶倩蕾萱妍洁芳慧娜楠悦诗涵"
GIVEN_MALE = "伟强磊军勇杰涛斌超鹏浩宇晨俊峰凯文博轩然明辉刚毅航哲昊"

COLOURS = (
    ("black", "黑色"),
    ("white", "白色"),
    ("navy", "藏青"),
    ("grey", "灰色"),
    ("beige", "米色"),
    ("khaki", "卡其"),
    ("burgundy", "酒红"),
    ("forest", "墨绿"),
    ("mist_blue", "雾蓝"),
)

# brand -> (category, style names, list price range in yuan, sizes)
STYLES: dict[str, tuple[tuple[str, tuple[str, ...], tuple[int, int], tuple[str, ...]], ...]] = {
    "yunshan": (
        ("tops", ("纯棉圆领T恤", "宽松衬衫", "条纹长袖T恤", "真丝衬衫", "亚麻短袖衫", "Polo衫"),
         (199, 599), ("S", "M", "L", "XL")),
        ("knitwear", ("轻羊毛圆领针织衫", "羊绒开衫", "麻花高领毛衣", "针织背心", "马海毛毛衣"),
         (499, 1299), ("S", "M", "L", "XL")),
        ("dresses", ("收腰连衣裙", "针织长裙", "碎花茶歇裙", "衬衫裙", "吊带裙"),
         (599, 1599), ("S", "M", "L")),
        ("trousers", ("直筒西裤", "阔腿裤", "九分牛仔裤", "休闲束脚裤", "半身裙", "工装裤"),
         (399, 899), ("S", "M", "L", "XL")),
        ("outerwear", ("双面羊绒大衣", "轻薄羽绒服", "西装外套", "风衣", "短款夹克", "连帽派克"),
         (999, 3599), ("S", "M", "L", "XL")),
        ("accessories", ("羊绒围巾", "托特包", "渔夫帽", "真皮腰带", "针织手套"),
         (199, 999), ("F",)),
    ),
    "tuolu": (
        ("jackets", ("三合一冲锋衣", "软壳外套", "抓绒夹克", "轻量皮肤衣"), (599, 2599),
         ("S", "M", "L", "XL")),
        ("footwear", ("中帮徒步鞋", "越野跑鞋", "溯溪鞋", "防水登山靴"), (599, 1499),
         ("39", "40", "41", "42", "43")),
        ("bags", ("30L登山包", "城市通勤包", "腰包"), (199, 999), ("F",)),
        ("base_layer", ("速干T恤", "美利奴打底衫", "徒步短裤", "速干长裤"), (199, 599),
         ("S", "M", "L", "XL")),
    ),
}  # fmt: skip
SIZE_WEIGHT = {
    "S": 20,
    "M": 35,
    "L": 30,
    "XL": 15,
    "F": 100,
    "39": 15,
    "40": 25,
    "41": 25,
    "42": 20,
    "43": 15,
}
GIFT_CARD_VALUES = (200, 500, 1000)  # yuan


@dataclass(frozen=True)
class Product:
    sku: str
    brand: str
    category: str
    list_price: int  # fen


@dataclass(frozen=True)
class Store:
    code: str
    brand: str
    city: int  # index into CITIES
    guides: tuple[str, ...]


@dataclass(frozen=True)
class Catalogue:
    """What the planner needs to know about the installed set-up."""

    stores: tuple[Store, ...]
    stores_by_city: tuple[tuple[int, ...], ...]  # store indexes per city
    products: tuple[Product, ...]
    choice_weights: dict[str, list[float]]  # brand -> cumulative weights over its products
    choice_index: dict[str, list[int]]  # brand -> product indexes, parallel to the weights
    gift_cards: dict[str, tuple[int, ...]]  # brand -> gift card product indexes

    def pick_product(self, rng: Random, brand: str) -> int:
        cum = self.choice_weights[brand]
        return self.choice_index[brand][bisect.bisect_right(cum, rng.random() * cum[-1])]


def person_name(rng: Random, gender: str) -> str:
    pool = GIVEN_FEMALE if gender == "F" else GIVEN_MALE
    given = rng.choice(pool) + (rng.choice(pool) if rng.random() < 0.7 else "")
    return rng.choice(SURNAMES) + given


def _stores(rng: Random) -> tuple[list[dict[str, Any]], list[Store]]:
    rows: list[dict[str, Any]] = []
    stores: list[Store] = []
    brand_names = dict(BRANDS)
    for ci, city in enumerate(CITIES):
        for n, district in enumerate(city.districts, start=1):
            brand = "tuolu" if n % 3 == 0 else "yunshan"
            code = f"{'TL' if brand == 'tuolu' else 'YS'}-{city.code}{n:02d}"
            rows.append(
                {
                    "code": code,
                    "name": f"{brand_names[brand]} {city.display}{district}店",
                    "brand": brand,
                    "city": city.name,
                    "region": city.region,
                    "latitude": round(city.latitude + rng.gauss(0, 0.05), 6),
                    "longitude": round(city.longitude + rng.gauss(0, 0.06), 6),
                }
            )
            guides = tuple(f"{code}-G{g}" for g in range(1, rng.randint(3, 5) + 1))
            stores.append(Store(code, brand, ci, guides))
    return rows, stores


def _products(rng: Random) -> tuple[list[dict[str, Any]], list[Product], list[float]]:
    rows: list[dict[str, Any]] = []
    products: list[Product] = []
    weights: list[float] = []
    for brand, categories in STYLES.items():
        prefix = "YS" if brand == "yunshan" else "TL"
        number = itertools.count(101)
        for category, names, (low, high), sizes in categories:
            for name in names:
                style = f"{prefix}{next(number)}"
                price = rng.randrange(low, high + 1, 10) * 100
                popularity = rng.paretovariate(1.5)
                colours = rng.sample(COLOURS, rng.randint(2, 3))
                for colour, colour_name in colours:
                    for size in sizes:
                        sku = f"{style}-{colour.upper()[:3]}-{size}"
                        rows.append(
                            {
                                "sku": sku,
                                "brand": brand,
                                "name": f"{name} {colour_name} {size}",
                                "style": style,
                                "colour": colour,
                                "size": size,
                                "category": category,
                                "list_price": price,
                            }
                        )
                        products.append(Product(sku, brand, category, price))
                        weights.append(popularity * SIZE_WEIGHT[size] / len(colours))
        for value in GIFT_CARD_VALUES:
            sku = f"{prefix}-GC{value}"
            rows.append(
                {
                    "sku": sku,
                    "brand": brand,
                    "name": f"{dict(BRANDS)[brand]}礼品卡 {value}元",
                    "style": f"{prefix}-GC",
                    "colour": "none",
                    "size": "F",
                    "category": GIFT_CARD,
                    "list_price": value * 100,
                }
            )
            products.append(Product(sku, brand, GIFT_CARD, value * 100))
            weights.append(0.0)
    return rows, products, weights


def install(
    platform: Platform,
    *,
    seed: int,
    effective_from: datetime,
    progress: Callable[[str, int, int], None] | None = None,
) -> Catalogue:
    """Create the whole set-up in an empty database and return what the planner needs."""
    rng = Random(f"quanyu-demo-catalogue-{seed}")
    store_rows, stores = _stores(rng)
    product_rows, products, weights = _products(rng)
    guide_rows = [
        {"code": g, "name": person_name(rng, rng.choice("FM")), "store": s.code}
        for s in stores
        for g in s.guides
    ]
    steps: list[Callable[[], object]] = [
        lambda: setup.ensure_organisation(platform, *ORGANISATION),
        lambda: setup.create_program(platform, dict(PROGRAM_VALUES)),
        lambda: setup.set_tiers(platform, PROGRAM, TIERS),
        lambda: setup.add_earn_rule(
            platform, PROGRAM, effective_from=effective_from, document=EARN_RULE, actor="demo"
        ),
        *(
            (lambda b=b, n=n: setup.create_brand(platform, code=b, name=n, program=PROGRAM))
            for b, n in BRANDS
        ),
        *(
            (lambda c=c, n=n, k=k: setup.create_channel(platform, code=c, name=n, kind=k))
            for c, n, k in CHANNELS
        ),
        *((lambda row=row: setup.create_store(platform, row)) for row in store_rows),
        *((lambda row=row: setup.create_guide(platform, **row)) for row in guide_rows),
        lambda: setup.upsert_products(platform, product_rows),
    ]
    for done, step in enumerate(steps, start=1):
        step()
        if progress:
            progress("setup", done, len(steps))
    choice_weights: dict[str, list[float]] = {}
    choice_index: dict[str, list[int]] = {}
    for i, (product, weight) in enumerate(zip(products, weights, strict=True)):
        if weight > 0:
            cum = choice_weights.setdefault(product.brand, [])
            cum.append((cum[-1] if cum else 0.0) + weight)
            choice_index.setdefault(product.brand, []).append(i)
    return Catalogue(
        stores=tuple(stores),
        stores_by_city=tuple(
            tuple(i for i, s in enumerate(stores) if s.city == ci) for ci in range(len(CITIES))
        ),
        products=tuple(products),
        choice_weights=choice_weights,
        choice_index=choice_index,
        gift_cards={
            b: tuple(i for i, p in enumerate(products) if p.brand == b and p.category == GIFT_CARD)
            for b, _ in BRANDS
        },
    )
