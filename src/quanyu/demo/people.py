"""Who the demo people are to the platform: their identities, as pure functions of
(seed, person index).

Each person owns one phone, maybe an e-mail, a WeChat unionid with an openid in the
mini-program's namespace, and a buyer id on each marketplace. Which of them a
payload carries is a bit mask (:data:`PHONE`, :data:`WECHAT`, ...). Phones and buyer
ids come from an affine bijection of the index, so two people never share one and no
merge ever joins two different people by accident.
"""

from __future__ import annotations

import base64
import hashlib
import math
from random import Random

from quanyu.domain.identity import IdentityType
from quanyu.domain.orders import IdentityInput

PHONE = 1
EMAIL = 2
WECHAT = 4  # unionid plus the mini-program openid
TMALL = 8
JD = 16
DOUYIN = 32
KUAISHOU = 64

MINI_APP = "wx_mini"
MARKETPLACES = {"tmall": TMALL, "jd": JD, "douyin": DOUYIN, "kuaishou": KUAISHOU}

# Mainland mobile prefixes whose every eight-digit suffix is a valid number.
PHONE_PREFIXES = (
    "138", "139", "135", "136", "137", "150", "151", "152", "158", "159",
    "186", "187", "188", "130", "131", "132", "155", "156", "185", "133",
    "153", "180", "189", "177", "199", "182", "183", "157", "176", "181",
)  # fmt: skip
EMAIL_NAMES = ("lily", "amy", "tony", "kevin", "grace", "leo", "coco", "eric", "vivian", "jack")
EMAIL_DOMAINS = ("example.com", "example.cn", "example.net")
BUYER_DIGITS = {"tmall": 11, "jd": 10, "douyin": 12, "kuaishou": 10}
BUYER_PREFIX = {"tmall": "tb", "jd": "jd_", "douyin": "dy", "kuaishou": "ks"}


class _Bijection:
    """i -> (a*i + b) mod m with gcd(a, m) = 1: distinct outputs for i < m."""

    def __init__(self, rng: Random, modulus: int) -> None:
        a = rng.randrange(modulus // 3, modulus)
        while math.gcd(a, modulus) != 1:
            a += 1
        self.a, self.b, self.m = a, rng.randrange(modulus), modulus

    def __call__(self, i: int) -> int:
        return (self.a * i + self.b) % self.m


class Identities:
    """Identity values of every demo person under one seed."""

    def __init__(self, seed: int) -> None:
        rng = Random(f"quanyu-demo-identities-{seed}")
        self.seed = seed
        self._phone = _Bijection(rng, 10**8)
        self._email = _Bijection(rng, 10**7)
        self._buyer = {ns: _Bijection(rng, 10**d) for ns, d in BUYER_DIGITS.items()}

    def phone(self, index: int) -> str:
        prefix = PHONE_PREFIXES[index % len(PHONE_PREFIXES)]
        return f"{prefix}{self._phone(index // len(PHONE_PREFIXES)):08d}"

    def email(self, index: int) -> str:
        name = EMAIL_NAMES[index % len(EMAIL_NAMES)]
        return f"{name}.{self._email(index):07d}@{EMAIL_DOMAINS[index % 3]}"

    def wechat(self, index: int) -> tuple[str, str]:
        """(unionid, openid in the mini-program)."""
        digest = hashlib.blake2b(f"{self.seed}:{index}".encode(), digest_size=42).digest()
        text = base64.urlsafe_b64encode(digest).decode()
        return "o" + text[:27], "o" + text[28:55]

    def buyer(self, index: int, platform: str) -> str:
        digits = BUYER_DIGITS[platform]
        return f"{BUYER_PREFIX[platform]}{self._buyer[platform](index):0{digits}d}"

    def inputs(self, index: int, mask: int) -> tuple[IdentityInput, ...]:
        out: list[IdentityInput] = []
        if mask & PHONE:
            out.append(IdentityInput(IdentityType.PHONE.value, self.phone(index)))
        if mask & EMAIL:
            out.append(IdentityInput(IdentityType.EMAIL.value, self.email(index)))
        if mask & WECHAT:
            unionid, openid = self.wechat(index)
            out.append(IdentityInput(IdentityType.WECHAT_UNIONID.value, unionid))
            out.append(IdentityInput(IdentityType.WECHAT_OPENID.value, openid, MINI_APP))
        for platform, bit in MARKETPLACES.items():
            if mask & bit:
                out.append(
                    IdentityInput(
                        IdentityType.PLATFORM_BUYER.value, self.buyer(index, platform), platform
                    )
                )
        return tuple(out)
