"""BG/NBD, Gamma-Gamma and CLV (quanyu.analytics.clv) against the published CDNOW
numbers, against ``lifetimes``' predictions for the same parameters, and by property."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quanyu.analytics.clv import (
    WEEKS_PER_MONTH,
    BetaGeoParams,
    GammaGammaParams,
    customer_lifetime_value,
    fit_beta_geo,
    fit_gamma_gamma,
)
from quanyu.domain.errors import ValidationFailed

with warnings.catch_warnings():
    # Import-time warnings from lifetimes 0.11.3 (a test-only dependency): it imports
    # pkg_resources, and sets a pandas option that pandas 3 deprecated.
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    warnings.filterwarnings("ignore", message="The 'mode.chained_assignment' option is deprecated")
    import pandas as pd
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.datasets import (
        load_cdnow_summary,
        load_cdnow_summary_data_with_monetary_value,
    )

Floats = np.ndarray[Any, np.dtype[np.float64]]

# The 2,357-customer CDNOW sample, 39-week calibration period, time in weeks.
CDNOW = load_cdnow_summary()
X = CDNOW["frequency"].to_numpy(dtype=np.float64)
TX = CDNOW["recency"].to_numpy(dtype=np.float64)
T = CDNOW["T"].to_numpy(dtype=np.float64)
SPEND = load_cdnow_summary_data_with_monetary_value()
REPEAT = SPEND[SPEND["frequency"] > 0]
M = SPEND["monetary_value"].to_numpy(dtype=np.float64)

# Fader, Hardie & Lee (2005), "Counting your customers the easy way", table/section 7.
PUBLISHED_BG = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
# Fader & Hardie, "The Gamma-Gamma model of monetary value" (946 repeat buyers).
PUBLISHED_GG = {"p": 6.25, "q": 3.74, "gamma": 15.44}


@pytest.fixture(scope="module")
def bg() -> BetaGeoParams:
    return fit_beta_geo(X, TX, age=T).params


@pytest.fixture(scope="module")
def gg() -> GammaGammaParams:
    return fit_gamma_gamma(REPEAT["frequency"], REPEAT["monetary_value"]).params


def lifetimes_bg(p: BetaGeoParams) -> Any:
    fitter = BetaGeoFitter()
    fitter.params_ = pd.Series({"r": p.r, "alpha": p.alpha, "a": p.a, "b": p.b})
    fitter.predict = fitter.conditional_expected_number_of_purchases_up_to_time
    return fitter


def lifetimes_gg(p: GammaGammaParams) -> Any:
    fitter = GammaGammaFitter()
    fitter.params_ = pd.Series({"p": p.p, "q": p.q, "v": p.gamma})
    return fitter


# --------------------------------------------------------------------------- published fits


def test_bgnbd_fit_on_cdnow_reproduces_the_published_parameters_and_log_likelihood() -> None:
    fit = fit_beta_geo(X, TX, age=T)
    p = fit.params
    assert fit.converged
    assert fit.customers == 2357
    assert {k: round(getattr(p, k), 3) for k in PUBLISHED_BG} == PUBLISHED_BG
    assert round(fit.log_likelihood, 1) == -9582.4


def test_bgnbd_fit_is_the_same_in_any_time_unit_up_to_alpha() -> None:
    weeks = fit_beta_geo(X, TX, age=T).params
    days = fit_beta_geo(X, TX * 7, age=T * 7).params
    assert days.r == pytest.approx(weeks.r, rel=1e-5)
    assert days.alpha == pytest.approx(weeks.alpha * 7, rel=1e-5)
    assert days.a == pytest.approx(weeks.a, rel=1e-5)
    assert days.b == pytest.approx(weeks.b, rel=1e-5)


def test_bgnbd_weights_count_identical_rows() -> None:
    rows = np.stack([X, TX, T], axis=1)
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    assert len(unique) < len(rows)
    full = fit_beta_geo(X, TX, age=T)
    compressed = fit_beta_geo(unique[:, 0], unique[:, 1], age=unique[:, 2], weights=counts)
    assert compressed.log_likelihood == pytest.approx(full.log_likelihood, rel=1e-10)
    for name in PUBLISHED_BG:
        assert getattr(compressed.params, name) == pytest.approx(
            getattr(full.params, name), rel=1e-5
        )
    assert compressed.customers == full.customers


def test_bgnbd_fit_stops_after_max_iter_and_says_it_did_not_converge() -> None:
    fit = fit_beta_geo(X, TX, age=T, max_iter=1)
    assert not fit.converged
    assert fit.iterations <= 1
    assert np.isfinite(fit.log_likelihood)


def test_bgnbd_fit_without_repeat_buyers_does_not_claim_convergence() -> None:
    fit = fit_beta_geo(np.zeros(50), np.zeros(50), age=np.linspace(1, 30, 50))
    assert not fit.converged


def test_gamma_gamma_fit_on_cdnow_repeat_buyers_reproduces_the_published_parameters() -> None:
    # p and q round to the published values. The published gamma (15.44) came from a
    # spreadsheet solver; the exact maximum is gamma = 15.4477 (lifetimes finds the same),
    # which rounds to 15.45: check that it lies within the last published digit and that
    # it is at least as likely as the published triple.
    x, m = REPEAT["frequency"].to_numpy(), REPEAT["monetary_value"].to_numpy()
    fit = fit_gamma_gamma(x, m)
    p = fit.params
    assert fit.converged
    assert fit.customers == 946
    assert round(p.p, 2) == PUBLISHED_GG["p"]
    assert round(p.q, 2) == PUBLISHED_GG["q"]
    assert abs(p.gamma - PUBLISHED_GG["gamma"]) < 0.01
    published = GammaGammaParams(**PUBLISHED_GG)
    assert fit.log_likelihood >= published.log_likelihood(x, m)
    assert fit.log_likelihood == pytest.approx(p.log_likelihood(x, m), rel=1e-12)


def test_gamma_gamma_weights_count_identical_rows() -> None:
    x, m = REPEAT["frequency"].to_numpy(), REPEAT["monetary_value"].to_numpy()
    pairs, counts = np.unique(np.stack([x, m], axis=1), axis=0, return_counts=True)
    full = fit_gamma_gamma(x, m)
    compressed = fit_gamma_gamma(pairs[:, 0], pairs[:, 1], weights=counts)
    assert compressed.log_likelihood == pytest.approx(full.log_likelihood, rel=1e-10)
    assert compressed.params.p == pytest.approx(full.params.p, rel=1e-5)
    assert compressed.params.gamma == pytest.approx(full.params.gamma, rel=1e-5)


# --------------------------------------------------------------------------- vs lifetimes


def test_probability_alive_matches_lifetimes(bg: BetaGeoParams) -> None:
    ours = bg.probability_alive(X, TX, age=T)
    theirs = np.asarray(lifetimes_bg(bg).conditional_probability_alive(X, TX, T))
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)


@pytest.mark.parametrize("t", [0.5, 1.0, 10.0, 39.0, 52.0, 500.0])
def test_conditional_expected_purchases_match_lifetimes(bg: BetaGeoParams, t: float) -> None:
    ours = bg.conditional_expected_purchases(X, TX, age=T, t=t)
    theirs = np.asarray(
        lifetimes_bg(bg).conditional_expected_number_of_purchases_up_to_time(t, X, TX, T)
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_conditional_expected_purchases_reproduce_the_papers_example(bg: BetaGeoParams) -> None:
    # FHL 2005: a customer with x = 2, t_x = 30.43, T = 38.86 weeks makes 1.226
    # purchases in the next 39 weeks.
    assert round(float(bg.conditional_expected_purchases(2, 30.43, age=38.86, t=39)), 3) == 1.226


def test_unconditional_expected_purchases_match_lifetimes(bg: BetaGeoParams) -> None:
    t = np.array([0.0, 1.0, 13.0, 39.0, 78.0, 1000.0])
    theirs = np.asarray(lifetimes_bg(bg).expected_number_of_purchases_up_to_time(t))
    np.testing.assert_allclose(bg.expected_purchases(t), theirs, rtol=1e-9, atol=1e-15)


def test_expected_average_value_matches_lifetimes(gg: GammaGammaParams) -> None:
    x = SPEND["frequency"].to_numpy(dtype=np.float64)
    theirs = np.asarray(lifetimes_gg(gg).conditional_expected_average_profit(x, M))
    np.testing.assert_allclose(gg.conditional_expected_value(x, M), theirs, rtol=1e-12)


def test_customer_lifetime_value_matches_lifetimes(bg: BetaGeoParams, gg: GammaGammaParams) -> None:
    frame = SPEND.iloc[:300]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # pandas chained assignment inside
        theirs = lifetimes_gg(gg).customer_lifetime_value(
            lifetimes_bg(bg),
            frame["frequency"],
            frame["recency"],
            frame["T"],
            frame["monetary_value"],
            time=12,
            discount_rate=0.01,
            freq="W",
        )
    ours = customer_lifetime_value(
        bg,
        gg,
        frequency=frame["frequency"],
        recency=frame["recency"],
        age=frame["T"],
        monetary_value=frame["monetary_value"],
        periods_per_month=WEEKS_PER_MONTH,
        margin=1.0,
        months=12,
        monthly_discount_rate=0.01,
    )
    np.testing.assert_allclose(ours, theirs.to_numpy(), rtol=1e-6)


def test_customer_lifetime_value_scales_with_margin(
    bg: BetaGeoParams, gg: GammaGammaParams
) -> None:
    common: dict[str, Any] = {
        "frequency": X[:50],
        "recency": TX[:50],
        "age": T[:50],
        "monetary_value": M[:50],
        "periods_per_month": WEEKS_PER_MONTH,
    }
    full = customer_lifetime_value(bg, gg, margin=1.0, **common)
    third = customer_lifetime_value(bg, gg, margin=0.3, **common)
    np.testing.assert_allclose(third, 0.3 * full, rtol=1e-12)


# --------------------------------------------------------------------------- properties

positive = st.floats(min_value=0.01, max_value=50.0)
BG_PARAMS = st.builds(
    BetaGeoParams,
    r=positive,
    alpha=st.floats(min_value=0.1, max_value=500.0),
    a=positive,
    b=positive,
)


@st.composite
def histories(draw: st.DrawFn) -> tuple[float, float, float]:
    age = draw(st.floats(min_value=0.0, max_value=400.0))
    x = draw(st.integers(min_value=0, max_value=200))
    if x == 0 or age < 1e-3:
        return 0.0, 0.0, age
    recency = draw(st.floats(min_value=age * 1e-3, max_value=age))
    return float(x), recency, age


@settings(max_examples=60, deadline=None)
@given(BG_PARAMS, histories())
def test_probability_alive_is_a_probability_and_one_without_repeat_purchases(
    p: BetaGeoParams, history: tuple[float, float, float]
) -> None:
    x, tx, age = history
    alive = float(p.probability_alive(x, tx, age=age))
    assert 0.0 <= alive <= 1.0
    if x == 0:
        assert alive == 1.0


@settings(max_examples=50, deadline=None)
@given(BG_PARAMS, histories(), st.floats(min_value=0.1, max_value=200.0))
def test_probability_alive_does_not_rise_with_a_longer_silence(
    p: BetaGeoParams, history: tuple[float, float, float], more: float
) -> None:
    x, tx, age = history
    now = float(p.probability_alive(x, tx, age=age))
    later = float(p.probability_alive(x, tx, age=age + more))
    assert later <= now * (1 + 1e-12)


@settings(max_examples=60, deadline=None)
@given(BG_PARAMS, histories())
def test_conditional_expected_purchases_are_non_negative_and_grow_with_the_horizon(
    p: BetaGeoParams, history: tuple[float, float, float]
) -> None:
    x, tx, age = history
    t = np.array([0.0, 0.5, 1.0, 5.0, 20.0, 52.0, 200.0, 1000.0])
    expected = p.conditional_expected_purchases(x, tx, age=age, t=t)
    assert np.all(np.isfinite(expected))
    assert expected[0] == 0.0
    assert np.all(expected >= 0.0)
    assert np.all(np.diff(expected) >= -1e-9 * np.abs(expected[1:]))


@settings(max_examples=50, deadline=None)
@given(BG_PARAMS)
def test_unconditional_expected_purchases_are_non_negative_and_grow_with_the_horizon(
    p: BetaGeoParams,
) -> None:
    expected = p.expected_purchases(np.array([0.0, 0.1, 1.0, 10.0, 100.0, 1000.0]))
    assert expected[0] == 0.0
    assert np.all(expected >= 0.0)
    assert np.all(np.diff(expected) >= -1e-9 * np.abs(expected[1:]))


@pytest.mark.parametrize("a", [1.0, 0.6])  # a == 1, and a + b == 1 for x == 0
def test_expected_purchases_are_continuous_across_the_removable_singularities(a: float) -> None:
    def at(a_value: float) -> Floats:
        p = BetaGeoParams(r=0.5, alpha=5.0, a=a_value, b=0.4)
        return np.concatenate(
            [
                p.conditional_expected_purchases([0, 3], [0, 10], age=20, t=15),
                p.expected_purchases([15.0]),
            ]
        )

    exact = at(a)
    assert np.all(np.isfinite(exact))
    np.testing.assert_allclose(exact, (at(a - 1e-4) + at(a + 1e-4)) / 2, rtol=1e-6)


@pytest.mark.parametrize(
    ("r", "a", "x"),
    [(1.0, 2.0, 99), (0.5, 0.5, 0), (0.5, 0.5, 3), (2.0, 1.0, 500), (0.25, 3.25, 1)],
)
def test_expected_purchases_stay_accurate_when_r_minus_a_is_a_whole_number(
    r: float, a: float, x: int
) -> None:
    # Then c - a - b of the 2F1 is a whole number, where scipy's hyp2f1 returns inf, nan
    # or wrong values for z near 1; the result must be finite and continuous in r.
    def at(r_value: float) -> Floats:
        p = BetaGeoParams(r=r_value, alpha=1.0, a=a, b=1.0)
        recency = 0.0 if x == 0 else 1.0
        return p.conditional_expected_purchases(x, recency, age=1.0, t=[0.5, 20.0, 1e3, 1e5])

    exact = at(r)
    assert np.all(np.isfinite(exact))
    assert np.all(exact >= 0)
    np.testing.assert_allclose(exact, (at(r - 3e-3) + at(r + 3e-3)) / 2, rtol=1e-4)


@settings(max_examples=50, deadline=None)
@given(
    st.builds(GammaGammaParams, p=positive, q=st.floats(1.01, 50.0), gamma=positive),
    st.integers(0, 100),
    st.floats(min_value=0.01, max_value=1e5),
)
def test_expected_value_lies_between_the_population_mean_and_the_customers_mean(
    p: GammaGammaParams, x: int, m: float
) -> None:
    value = float(p.conditional_expected_value(x, m))
    low, high = sorted((p.population_mean, m))
    assert low * (1 - 1e-12) <= value <= high * (1 + 1e-12)
    if x == 0:
        assert value == pytest.approx(p.population_mean, rel=1e-12)


@settings(max_examples=30, deadline=None)
@given(BG_PARAMS, histories(), st.floats(min_value=1.0, max_value=1000.0))
def test_customer_lifetime_value_is_non_negative_and_grows_with_the_horizon(
    p: BetaGeoParams, history: tuple[float, float, float], m: float
) -> None:
    x, tx, age = history
    spend = GammaGammaParams(p=6.0, q=4.0, gamma=15.0)
    values = [
        float(
            customer_lifetime_value(
                p,
                spend,
                frequency=x,
                recency=tx,
                age=age,
                monetary_value=m,
                periods_per_month=4.345,
                margin=0.3,
                months=months,
            )
        )
        for months in (1, 6, 24)
    ]
    assert all(v >= 0.0 for v in values)
    assert values == sorted(values)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("frequency", "recency", "age", "field"),
    [
        ([1, -1], [5.0, 0.0], [10.0, 10.0], "frequency"),
        ([1, 0], [-5.0, 0.0], [10.0, 10.0], "recency"),
        ([1, 0], [5.0, 0.0], [10.0, -10.0], "age"),
        ([1, 0], [12.0, 0.0], [10.0, 10.0], "recency"),  # recency > age
        ([1, 0], [0.0, 0.0], [10.0, 10.0], "recency"),  # repeat buyer, recency 0
        ([0, 0], [3.0, 0.0], [10.0, 10.0], "recency"),  # no repeat, recency > 0
        ([1.5, 0], [5.0, 0.0], [10.0, 10.0], "frequency"),  # not a count
        ([1, 0], [5.0, float("nan")], [10.0, 10.0], "recency"),
        ([], [], [], "frequency"),
        ([1, 0], [5.0, 0.0], [10.0, 10.0, 10.0], "age"),  # lengths differ
    ],
)
def test_bad_summaries_raise_validation_failed_naming_the_field(
    frequency: list[float], recency: list[float], age: list[float], field: str
) -> None:
    with pytest.raises(ValidationFailed) as fit_error:
        fit_beta_geo(frequency, recency, age=age)
    assert fit_error.value.field == field
    with pytest.raises(ValidationFailed) as predict_error:
        BetaGeoParams(r=0.2, alpha=4.0, a=0.8, b=2.4).probability_alive(frequency, recency, age=age)
    assert predict_error.value.field == field


@pytest.mark.parametrize(
    ("frequency", "monetary_value", "field"),
    [
        ([2, 0], [10.0, 0.0], "frequency"),  # not a repeat buyer
        ([2, 1], [10.0, 0.0], "monetary_value"),
        ([2, 1], [10.0, -3.0], "monetary_value"),
        ([], [], "frequency"),
    ],
)
def test_gamma_gamma_fit_takes_repeat_buyers_with_positive_values_only(
    frequency: list[float], monetary_value: list[float], field: str
) -> None:
    with pytest.raises(ValidationFailed) as error:
        fit_gamma_gamma(frequency, monetary_value)
    assert error.value.field == field


def test_parameters_must_be_positive_and_weights_not_negative() -> None:
    with pytest.raises(ValidationFailed) as error:
        BetaGeoParams(r=0.2, alpha=0.0, a=0.8, b=2.4)
    assert error.value.field == "alpha"
    with pytest.raises(ValidationFailed) as error:
        fit_beta_geo([1, 0], [5.0, 0.0], age=[10.0, 10.0], weights=[1, -1])
    assert error.value.field == "weights"
    with pytest.raises(ValidationFailed) as error:
        BetaGeoParams(r=0.2, alpha=4.0, a=0.8, b=2.4).expected_purchases(-1.0)
    assert error.value.field == "t"
