"""The fast paths on the ingestion hot path give exactly what the slow, reference
implementations give."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from quanyu.adapters import tables as t
from quanyu.adapters.bulk import _converters, _tuples
from quanyu.domain.identity import _fast_mobile, parse_e164
from quanyu.jsonfast import dumps_canonical, dumps_text


@settings(max_examples=1000)
@given(st.from_regex(r"\A1[0-9]{9,11}\Z"))
def test_fast_mobile_answer_always_equals_phonenumbers(raw: str) -> None:
    fast = _fast_mobile(raw, "CN")
    if fast is not None:
        assert fast == parse_e164(raw, "CN")


def test_fast_mobile_answers_a_common_cn_mobile_number() -> None:
    assert _fast_mobile("13800138000", "CN") == "+8613800138000"


def test_fast_mobile_leaves_other_forms_to_phonenumbers() -> None:
    for raw in ("138 0013 8000", "+8613800138000", "１３８００１３８０００", "02155551234"):
        assert _fast_mobile(raw, "CN") is None
    assert _fast_mobile("13800138000", "US") is None


json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=500)
@given(json_values)
def test_canonical_json_bytes_equal_the_standard_library(value: Any) -> None:
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert dumps_canonical(value) == expected.encode("utf-8", "surrogatepass")


@settings(max_examples=500)
@given(json_values)
def test_stored_json_text_equals_the_standard_library(value: Any) -> None:
    assert dumps_text(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def test_cached_timestamp_conversion_keeps_the_two_instants_of_a_repeated_hour_apart() -> None:
    new_york = ZoneInfo("America/New_York")  # 01:30 happens twice on 2025-11-02
    first = datetime(2025, 11, 2, 1, 30, tzinfo=new_york)
    second = first.replace(fold=1)
    converters = _converters(t.orders, ("ordered_at",), "sqlite")

    rows = _tuples([(first,), (second,)], converters)

    assert rows == [("2025-11-02 05:30:00.000000",), ("2025-11-02 06:30:00.000000",)]


def test_column_wise_conversion_equals_converting_each_value() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    columns = ("id", "ordered_at", "received_at", "payload")
    rows = [(n, at + timedelta(minutes=n % 3), at, {"n": n}) for n in range(7)]
    converters = _converters(t.orders, columns, "sqlite")

    expected = [tuple(c(v) for c, v in zip(converters, row, strict=True)) for row in rows]

    assert _tuples(rows, converters) == expected
    assert _tuples([], converters) == []
