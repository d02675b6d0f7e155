"""The insight expressions run unchanged on Spark (local mode): KPIs, model tags and tag
conditions over the same canonical tables give what they give on DuckDB."""

# The fixture march comes from test_insight; pytest passes it by name.
# ruff: noqa: F811

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import ibis
import pytest
from test_insight import march  # noqa: F401

from conftest import Shop
from quanyu.analytics import conditions, kpis, models
from quanyu.analytics.schema import SCHEMAS
from quanyu.domain.segments import parse
from quanyu.services import insight

pytestmark = [
    pytest.mark.spark,
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
    pytest.mark.parametrize("backend", ["sqlite"], indirect=True),
]

AS_OF = datetime(2026, 3, 20)
QUERY = kpis.KpiQuery(
    since=date(2026, 3, 1),
    until=date(2026, 4, 1),
    grain=kpis.Grain.MONTH,
    by=(kpis.Dimension.CHANNEL,),
    window_days=30,
)


def rows(expr: Any) -> list[dict[str, Any]]:
    out = expr.to_pyarrow().to_pylist()
    keys = sorted(out[0]) if out else []
    return sorted(out, key=lambda r: tuple(str(r[k]) for k in keys))


@pytest.fixture
def both(shop: Shop, march: dict[str, int], spark_session: Any) -> Any:
    """The canonical tables on DuckDB (synced from the shop) and the same data on Spark."""
    duck = insight.analytics(shop.platform).tables()
    con = ibis.pyspark.connect(spark_session)
    spark: dict[str, Any] = {}
    for name in SCHEMAS:
        data = duck[name].to_pyarrow()
        view = f"canonical_{name}"
        if data.num_rows:
            spark_session.createDataFrame(data).createOrReplaceTempView(view)
        else:  # Spark cannot infer a schema from no rows: give it the canonical one
            con.create_view(view, ibis.memtable(data), overwrite=True)
        spark[name] = con.table(view)
    yield duck, spark
    for name in SCHEMAS:
        spark_session.catalog.dropTempView(f"canonical_{name}")


def test_kpis_are_the_same_on_spark_and_duckdb(both: Any) -> None:
    duck, spark = both
    for metric in (
        kpis.sales,
        kpis.active_members,
        kpis.new_members,
        kpis.new_member_conversion,
        kpis.repurchase,
        kpis.retention,
    ):
        assert rows(metric(spark, QUERY)) == rows(metric(duck, QUERY)), metric.__name__


def test_model_tags_are_the_same_on_spark_and_duckdb(both: Any) -> None:
    duck, spark = both
    for model in (models.rfm, models.lifecycle, models.purchase_summary):
        assert rows(model(spark, as_of=AS_OF)) == rows(model(duck, as_of=AS_OF)), model.__name__


def test_tag_conditions_select_the_same_members_on_spark_and_duckdb(both: Any) -> None:
    duck, spark = both
    named = {
        "twice": parse({"orders": "count", "within_days": 30, "op": "gte", "value": 2}),
        "tops": parse({"orders": "sales", "category": ["tops"], "op": "gte", "value": 1}),
        "lapsing": parse({"orders": "recency_days", "op": "between", "value": [10, 20]}),
        "not_gold": parse({"not": {"attr": "tier", "op": "eq", "value": "gold"}}),
        "points": parse({"points": "balance", "op": "gte", "value": 1}),
    }
    on_spark = rows(conditions.evaluate(spark, named, as_of=AS_OF))
    assert on_spark == rows(conditions.evaluate(duck, named, as_of=AS_OF))
    assert any(r["twice"] for r in on_spark) and any(r["tops"] for r in on_spark)
