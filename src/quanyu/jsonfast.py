"""Fast JSON encoding with the exact output of the standard library.

orjson is several times faster than :mod:`json` on the hot ingestion path. Its compact
output equals ``json.dumps(value, separators=(",", ":"), ensure_ascii=False)`` for the
values we store (strings, integers, booleans, None, lists and dicts with string keys);
for what it refuses (lone surrogates, integers beyond 64 bits, other types) the
standard library is used, so the result never changes with the encoder.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps_canonical(value: Any) -> bytes:
    """Compact UTF-8 JSON with sorted keys, as fingerprints hash it."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8", "surrogatepass"
        )


def dumps_text(value: Any) -> str:
    """Compact JSON text, keys in their given order, non-ASCII kept as is."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
