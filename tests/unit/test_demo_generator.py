"""Demo generator rules that need no database: segmenting events, identity values."""

from __future__ import annotations

import itertools
import random

import phonenumbers

from quanyu.demo.people import EMAIL, JD, PHONE, TMALL, WECHAT, Identities
from quanyu.demo.seed import segments
from quanyu.demo.spool import ORDER
from quanyu.demo.timeline import Event, OrderEvent, RefundEvent, RegistrationEvent


def _event(rng: random.Random, person: int, seq: int, at: int) -> Event:
    kind = rng.choice("ror")
    if kind == "r":
        return RegistrationEvent(at, 0, person, seq, PHONE, "pos", None, None, None, None, 0)
    if kind == "o":
        return OrderEvent(at, 1, person, seq, PHONE, "pos", "yunshan", None, None, (), 0, "cash")
    return RefundEvent(at, 2, person, seq, "pos", 0, (), "")


def _stream(seed: int) -> list[Event]:
    rng = random.Random(seed)
    events = [_event(rng, rng.randrange(20), seq, rng.randrange(1000)) for seq in range(600)]
    return sorted(events, key=ORDER)


def test_segments_apply_each_persons_events_in_their_time_order() -> None:
    for seed in range(20):
        stream = _stream(seed)
        applied = [
            e
            for s in segments(stream, 50)
            for e in itertools.chain(s.registrations, s.orders, s.refunds)
        ]
        assert sorted(applied, key=ORDER) == stream
        for person in range(20):
            mine = [ORDER(e) for e in applied if e.person == person]
            assert mine == sorted(mine)


def test_a_conflict_holds_back_only_that_persons_later_events() -> None:
    order = OrderEvent(1, 1, 1, 0, PHONE, "pos", "yunshan", None, None, (), 0, "cash")
    joins = RegistrationEvent(2, 0, 1, 255, PHONE, "pos", None, None, None, None, 0)
    again = order._replace(at=3, seq=1)
    others = [order._replace(at=4 + p, person=p) for p in range(2, 12)]
    first, second = segments([order, joins, again, *others], 11)
    assert first.orders == [order, *others]
    assert (second.registrations, second.orders) == ([joins], [again])


def test_people_never_share_a_phone_email_or_buyer_id() -> None:
    ids = Identities(7)
    people = range(0, 3_000_000, 997)
    for make in (
        ids.phone,
        ids.email,
        lambda i: ids.buyer(i, "tmall"),
        lambda i: ids.buyer(i, "jd"),
    ):
        values = [make(i) for i in people]
        assert len(set(values)) == len(values)


def test_demo_phones_are_valid_mainland_mobiles() -> None:
    ids = Identities(3)
    for i in range(0, 200_000, 101):
        number = phonenumbers.parse(ids.phone(i), "CN")
        assert phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.MOBILE


def test_identity_mask_selects_which_identities_a_payload_carries() -> None:
    ids = Identities(7)
    types = [(i.type, i.namespace) for i in ids.inputs(5, PHONE | EMAIL | WECHAT | TMALL | JD)]
    assert types == [
        ("phone", None),
        ("email", None),
        ("wechat_unionid", None),
        ("wechat_openid", "wx_mini"),
        ("platform_buyer", "tmall"),
        ("platform_buyer", "jd"),
    ]
    assert ids.inputs(5, 0) == ()
