"""Model tags fitted in Python: P(alive), expected purchases (BG/NBD) and CLV
(BG/NBD with Gamma-Gamma).

The purchase summary (frequency, recency, age in days, mean repeat spend) is computed by
the analytics backend (:func:`quanyu.analytics.models.purchase_summary`); only the fit and
the per-member predictions run in NumPy (:mod:`quanyu.analytics.clv`). Identical
summaries are fitted once with a weight, so the fit's cost follows the number of distinct
histories, not of members. One run fits once and shares the fit between these tags.

The model version names the parameters and the as-of date, so every tag value can be
traced to the fit that produced it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from quanyu.analytics import clv, models
from quanyu.analytics.kpis import Tables
from quanyu.domain.tags import parse_model
from quanyu.services.insight import Analytics

P_ALIVE_BANDS = ((0.7, "high"), (0.3, "medium"), (0.0, "low"))


def _fits(a: Analytics, tables: Tables, as_of: datetime) -> dict[str, Any]:
    key = f"clv:{as_of.isoformat()}"
    found = a.memo.get(key)
    if found is not None:
        return dict(found)
    summary = a.execute(models.purchase_summary(tables, as_of=as_of))
    x = summary.column("frequency").to_numpy().astype(float)
    tx = summary.column("recency").to_numpy().astype(float)
    age = np.maximum(summary.column("age").to_numpy().astype(float), tx)
    m = summary.column("monetary").to_numpy().astype(float)
    rows = np.stack([x, tx, age])
    unique, counts = np.unique(rows, axis=1, return_counts=True)
    bg = clv.fit_beta_geo(unique[0], unique[1], age=unique[2], weights=counts)
    repeat = (x > 0) & (m > 0)
    gg = None
    if repeat.sum() >= 10:
        gg = clv.fit_gamma_gamma(x[repeat], m[repeat])
    found = {
        "ids": summary.column("member_id"),
        "x": x,
        "tx": tx,
        "age": age,
        "m": m,
        "bg": bg,
        "gg": gg,
    }
    a.memo[key] = found
    return dict(found)


def compute(
    a: Analytics, tables: Tables, document: Any, *, as_of: datetime
) -> tuple[pa.Table, str, dict[str, Any]]:
    model, settings = parse_model(document)
    f = _fits(a, tables, as_of)
    bg: clv.BetaGeoFit = f["bg"]
    p = bg.params
    version = f"bgnbd:r={p.r:.4g},alpha={p.alpha:.4g},a={p.a:.4g},b={p.b:.4g}@{as_of.date()}"
    details: dict[str, Any] = {
        "bgnbd": {
            "r": p.r,
            "alpha": p.alpha,
            "a": p.a,
            "b": p.b,
            "converged": bg.converged,
            "log_likelihood": bg.log_likelihood,
            "customers": bg.customers,
        },
        "time_unit": "day",
    }
    x, tx, age = f["x"], f["tx"], f["age"]
    gg = f["gg"]
    if model.value == "clv" and gg is not None and gg.params.q > 1:
        g = gg.params
        version += f";gg:p={g.p:.4g},q={g.q:.4g},gamma={g.gamma:.4g}"
    with np.errstate(all="ignore"):  # a degenerate fit gives NaN, marked below
        score, value = _predict(
            model.value, settings, f=f, p=p, x=x, tx=tx, age=age, details=details
        )
    finite = np.isfinite(score)
    if not finite.all():
        value = np.where(finite, value, "unscored")
        details["unscored"] = int((~finite).sum())
    table = pa.table(
        {
            "member_id": f["ids"],
            "value": pa.array(np.asarray(value).astype(str)),
            "score": pa.array(np.where(finite, score, 0.0), mask=~finite),
        }
    )
    return table, version, details


def _predict(
    model: str,
    settings: dict[str, int],
    *,
    f: dict[str, Any],
    p: clv.BetaGeoParams,
    x: Any,
    tx: Any,
    age: Any,
    details: dict[str, Any],
) -> tuple[Any, Any]:
    if model == "p_alive":
        score = p.probability_alive(x, tx, age=age)
        value = np.select(
            [score >= lo for lo, _ in P_ALIVE_BANDS], [name for _, name in P_ALIVE_BANDS], "low"
        )
    elif model == "expected_purchases":
        horizon = settings.get("horizon_days", 90)
        score = p.conditional_expected_purchases(x, tx, age=age, t=horizon)
        value = np.where(score >= 3, "3+", np.floor(score + 0.5).astype(int).astype(str))
        details["horizon_days"] = horizon
    else:
        gg = f["gg"]
        if gg is None or gg.params.q <= 1:
            # Too few repeat buyers, or a spend model with no finite mean: no CLV.
            details["gamma_gamma"] = None if gg is None else {"q": gg.params.q}
            score = np.zeros_like(x)
        else:
            g = gg.params
            details["gamma_gamma"] = {
                "p": g.p,
                "q": g.q,
                "gamma": g.gamma,
                "converged": gg.converged,
            }
            score = clv.customer_lifetime_value(
                p,
                g,
                frequency=x,
                recency=tx,
                age=age,
                monetary_value=f["m"],
                periods_per_month=clv.DAYS_PER_MONTH,
                margin=settings.get("margin_percent", 100) / 100,
                months=settings.get("horizon_months", 12),
            )
        ranks = np.argsort(np.argsort(score, kind="stable"), kind="stable")
        value = np.char.add("q", (ranks * 5 // max(len(score), 1) + 1).astype(str))
    return np.asarray(score, dtype=float), value
