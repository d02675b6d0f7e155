"""Model fitting speed: our BG/NBD and Gamma-Gamma fits (quanyu.analytics.clv) against
``lifetimes``' ``BetaGeoFitter().fit`` and ``GammaGammaFitter().fit`` on the same data.

The data is the CDNOW sample that ships with ``lifetimes``: 2,357 customers, 39-week
calibration period, time in weeks; Gamma-Gamma on its 946 repeat buyers. Both sides get
the same pandas Series, as a caller would pass them. Each round times one fit of each
kind, ours and lifetimes' alternately, so that a busy machine slows both alike; the
table reports the best of N rounds, the ratio lifetimes / ours, and both sets of
parameters with their log-likelihoods (the same data, so they should agree).

    uv run python -m benchmarks.clv_fit --repeats 7
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

from benchmarks.common import machine
from quanyu.analytics.clv import fit_beta_geo, fit_gamma_gamma

with warnings.catch_warnings():
    # Import-time warnings of lifetimes 0.11.3 (pkg_resources, a pandas 3 option).
    warnings.simplefilter("ignore")
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def quiet(fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7, help="rounds; the best is reported")
    args = parser.parse_args()

    data = load_cdnow_summary_data_with_monetary_value()
    freq, rec, age = data["frequency"], data["recency"], data["T"]
    repeat = data[data["frequency"] > 0]

    cases: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "BG/NBD (2,357 customers)": (
            lambda: fit_beta_geo(freq, rec, age=age),
            quiet(lambda: BetaGeoFitter().fit(freq, rec, age)),
        ),
        "Gamma-Gamma (946 repeat buyers)": (
            lambda: fit_gamma_gamma(repeat["frequency"], repeat["monetary_value"]),
            quiet(lambda: GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])),
        ),
    }
    best: dict[str, list[float]] = {name: [float("inf"), float("inf")] for name in cases}
    results: dict[str, list[Any]] = {name: [None, None] for name in cases}
    for _ in range(args.repeats):
        for name, (ours, theirs) in cases.items():
            for side, fn in enumerate((ours, theirs)):
                seconds, result = timed(fn)
                best[name][side] = min(best[name][side], seconds)
                results[name][side] = result

    print(f"machine: {machine()}")
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    print(f"OPENBLAS_NUM_THREADS={threads}; best of {args.repeats} rounds, interleaved")
    print()
    print(f"| {'model':<32} | {'ours s':>8} | {'lifetimes s':>11} | {'lifetimes/ours':>14} |")
    print(f"|{'-' * 34}|{'-' * 10}|{'-' * 13}|{'-' * 16}|")
    for name in cases:
        ours_s, theirs_s = best[name]
        print(f"| {name:<32} | {ours_s:>8.4f} | {theirs_s:>11.4f} | {theirs_s / ours_s:>13.1f}x |")
    print()

    bg_ours, bg_theirs = results["BG/NBD (2,357 customers)"]
    p = bg_ours.params
    ours_bg = {"r": p.r, "alpha": p.alpha, "a": p.a, "b": p.b}
    theirs_bg = {k: float(bg_theirs.params_[k]) for k in ours_bg}
    # lifetimes reports the mean negative log-likelihood on its rescaled times; ours is
    # the total in weeks. Compare on ours: our log-likelihood at their parameters.
    theirs_bg_ll = type(p)(**theirs_bg).log_likelihood(freq, rec, age=age)
    gg_ours, gg_theirs = results["Gamma-Gamma (946 repeat buyers)"]
    g = gg_ours.params
    ours_gg = {"p": g.p, "q": g.q, "gamma": g.gamma}
    theirs_gg = {"p": float(gg_theirs.params_["p"]), "q": float(gg_theirs.params_["q"])}
    theirs_gg["gamma"] = float(gg_theirs.params_["v"])
    theirs_gg_ll = type(g)(**theirs_gg).log_likelihood(
        repeat["frequency"], repeat["monetary_value"]
    )
    rows = [
        ("BG/NBD ours", ours_bg, bg_ours.log_likelihood, f"converged={bg_ours.converged}"),
        ("BG/NBD lifetimes", theirs_bg, theirs_bg_ll, ""),
        ("Gamma-Gamma ours", ours_gg, gg_ours.log_likelihood, f"converged={gg_ours.converged}"),
        ("Gamma-Gamma lifetimes", theirs_gg, theirs_gg_ll, ""),
    ]
    for label, params, ll, note in rows:
        shown = ", ".join(f"{k}={v:.6f}" for k, v in params.items())
        print(f"{label:<22} {shown}  log-likelihood={ll:.6f} {note}".rstrip())
    worst = (
        max(abs(ours_bg[k] / theirs_bg[k] - 1) for k in ours_bg),
        max(abs(ours_gg[k] / theirs_gg[k] - 1) for k in ours_gg),
    )
    print(
        f"largest relative parameter difference: BG/NBD {worst[0]:.1e}, Gamma-Gamma {worst[1]:.1e}"
    )
    faster = all(best[name][0] < best[name][1] for name in cases)
    print(f"ours faster than lifetimes on both: {'yes' if faster else 'NO'}")


if __name__ == "__main__":
    main()
