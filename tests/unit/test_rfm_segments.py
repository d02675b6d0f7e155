"""The RFM segment name (models.rfm_segment) is the first grid entry holding R and F."""

from __future__ import annotations

import ibis
import pytest

from quanyu.analytics.models import RFM_SEGMENTS, rfm_segment

Grid = tuple[tuple[str, tuple[int, int], tuple[int, int]], ...]
GRIDS: dict[str, Grid] = {
    "standard": RFM_SEGMENTS,
    "one name everywhere": (("everyone", (1, 5), (1, 5)),),
    "none match": (),
    "one row split": (("top", (5, 5), (1, 5)), ("low_f", (1, 4), (1, 2))),
    "overlapping": (("a", (3, 5), (3, 5)), ("b", (1, 5), (4, 5)), ("c", (2, 2), (1, 5))),
}


def first_match(grid: Grid, r: int, f: int) -> str:
    for name, (r_lo, r_hi), (f_lo, f_hi) in grid:
        if r_lo <= r <= r_hi and f_lo <= f <= f_hi:
            return name
    return "hibernating"


@pytest.mark.parametrize("grid", GRIDS.values(), ids=GRIDS.keys())
def test_the_segment_is_the_first_grid_entry_holding_r_and_f_else_hibernating(
    grid: Grid,
) -> None:
    pairs = [(r, f) for r in range(1, 6) for f in range(1, 6)]
    t = ibis.memtable({"r": [r for r, _ in pairs], "f": [f for _, f in pairs]})
    rows = t.mutate(name=rfm_segment(t.r, t.f, grid)).to_pyarrow().to_pylist()
    assert {(x["r"], x["f"]): x["name"] for x in rows} == {
        (r, f): first_match(grid, r, f) for r, f in pairs
    }
