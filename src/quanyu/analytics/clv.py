"""Repeat-purchase (BG/NBD) and spend (Gamma-Gamma) models, and customer lifetime value.

This module owns the probabilistic customer-base models and nothing else: fitting them
by maximum likelihood from per-customer summaries, and the predictions built on them.
It takes plain arrays (NumPy and SciPy only); computing the summaries from orders is
someone else's job.

Per-customer summary, in one time unit of the caller's choosing (days, weeks, ...):

- ``frequency`` (x): number of *repeat* purchases, i.e. purchase occasions after the
  first one. A whole number.
- ``recency`` (t_x): time from the first purchase to the last one. 0 when x == 0.
- ``age`` (T): time from the first purchase to the end of the observation period.
- ``monetary_value`` (m): mean value of the repeat purchases (the first purchase is
  excluded, as in the papers), in any currency unit. Only read where x > 0.

Models:

- :func:`fit_beta_geo` fits the BG/NBD model of Fader, Hardie & Lee (2005), "Counting
  your customers the easy way: an alternative to the Pareto/NBD model", Marketing
  Science 24(2). ``alpha`` is in the time unit of the data; ``r``, ``a`` and ``b`` have
  no unit. :class:`BetaGeoParams` gives P(alive), conditional expected purchases in the
  next ``t`` time units (eq. 10) and the unconditional E[X(t)] (eq. 9).
- :func:`fit_gamma_gamma` fits the Gamma-Gamma spend model (Fader, Hardie & Lee 2005,
  "RFM and CLV: using iso-value curves for customer base analysis", JMR 42; Fader &
  Hardie, "The Gamma-Gamma model of monetary value", 2013) on repeat buyers. ``gamma``
  is in the currency unit of ``monetary_value``. It assumes spend per transaction is
  independent of the purchase process.
- :func:`customer_lifetime_value` is the expected discounted margin over a horizon of
  whole months, as ``lifetimes``' ``customer_lifetime_value`` computes it.

Bad input raises :class:`~quanyu.domain.errors.ValidationFailed` naming the field. A fit
never raises for lack of convergence: it stops after ``max_iter`` iterations and says
whether it converged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import digamma, expit, gammaln, hyp2f1

from quanyu.domain.errors import ValidationFailed

__all__ = [
    "DAYS_PER_MONTH",
    "MONTHS_PER_MONTH",
    "WEEKS_PER_MONTH",
    "BetaGeoFit",
    "BetaGeoParams",
    "GammaGammaFit",
    "GammaGammaParams",
    "customer_lifetime_value",
    "fit_beta_geo",
    "fit_gamma_gamma",
]

Floats = NDArray[np.float64]

# Time units per month for ``periods_per_month`` (the factors ``lifetimes`` uses).
DAYS_PER_MONTH: Final = 30.0
WEEKS_PER_MONTH: Final = 4.345
MONTHS_PER_MONTH: Final = 1.0

# Log-parameters are kept in [-_LOG_BOUND, _LOG_BOUND] while fitting, so that every
# evaluation stays finite; an estimate on that bound means the data do not identify it.
_LOG_BOUND: Final = 25.0
# A fit has converged when the gradient of the mean negative log-likelihood with
# respect to the log-parameters is this small (and no parameter sits on a bound).
_CONVERGED_GRADIENT: Final = 1e-6
# ... and the smallest eigenvalue of its Hessian is above this (the maximum is isolated).
_MIN_CURVATURE: Final = 1e-6
# Newton steps that polish the optimiser's answer.
_NEWTON_STEPS: Final = 3
# Around the removable singularities a == 1 and (for x == 0) a + b == 1 of the
# expected-purchase formulas, interpolate from points this far and twice as far away.
_SINGULAR_STEP: Final = 1e-3
# scipy's hyp2f1(A, B; C; z) goes wrong (inf, nan, or finite and far off) when C - A - B
# is an integer or within rounding of one and z is near 1 (a special-case branch that is
# not robust, and cancellation next to it). Such points are interpolated from points
# this far and twice as far from the integer, where scipy is accurate.
_INTEGER_GAP: Final = 1e-3


# --------------------------------------------------------------------------- input checks


def _floats(values: ArrayLike, field: str) -> Floats:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"{field} must be numbers", field=field) from exc
    if not np.all(np.isfinite(arr)):
        raise ValidationFailed(f"{field} must be finite numbers", field=field)
    if np.any(arr < 0):
        raise ValidationFailed(f"{field} must not be negative", field=field)
    return arr


def _broadcast(named: dict[str, Floats]) -> list[Floats]:
    try:
        out = np.broadcast_arrays(*named.values())
    except ValueError as exc:
        field = list(named)[-1]
        raise ValidationFailed(f"{', '.join(named)} must have the same shape", field=field) from exc
    if out[0].size == 0:
        raise ValidationFailed(f"{', '.join(named)} must not be empty", field=next(iter(named)))
    return [np.asarray(a, dtype=np.float64) for a in out]


def _frequency(values: ArrayLike) -> Floats:
    x = _floats(values, "frequency")
    if np.any(x != np.floor(x)):
        raise ValidationFailed(
            "frequency must be whole numbers of repeat purchases", field="frequency"
        )
    return x


def _rfm(frequency: ArrayLike, recency: ArrayLike, age: ArrayLike) -> tuple[Floats, Floats, Floats]:
    x, tx, big_t = _broadcast(
        {
            "frequency": _frequency(frequency),
            "recency": _floats(recency, "recency"),
            "age": _floats(age, "age"),
        }
    )
    if np.any(tx > big_t):
        raise ValidationFailed("recency must not exceed age", field="recency")
    if np.any((x > 0) & (tx == 0)):
        raise ValidationFailed(
            "recency must be positive for a customer with repeat purchases", field="recency"
        )
    if np.any((x == 0) & (tx > 0)):
        raise ValidationFailed(
            "recency must be 0 for a customer without repeat purchases", field="recency"
        )
    return x, tx, big_t


def _one_dimensional(arrays: dict[str, Floats]) -> None:
    for field, arr in arrays.items():
        if arr.ndim != 1:
            raise ValidationFailed(f"{field} must be a one-dimensional array", field=field)
    lengths = {len(arr) for arr in arrays.values()}
    if len(lengths) != 1:
        raise ValidationFailed(
            f"{', '.join(arrays)} must have the same length", field=list(arrays)[-1]
        )
    if 0 in lengths:
        raise ValidationFailed(f"{', '.join(arrays)} must not be empty", field=next(iter(arrays)))


def _weights(weights: ArrayLike | None, n: int) -> Floats:
    if weights is None:
        return np.ones(n)
    w = _floats(weights, "weights")
    if w.shape != (n,):
        raise ValidationFailed("weights must have one entry per row", field="weights")
    if not w.sum() > 0:
        raise ValidationFailed("weights must not all be zero", field="weights")
    return w


def _positive(value: float, field: str) -> None:
    if not (np.isfinite(value) and value > 0):
        raise ValidationFailed(f"{field} must be a positive finite number", field=field)


def _horizon(t: ArrayLike) -> Floats:
    return _floats(t, "t")


def _result(values: Floats) -> Floats:
    return np.asarray(values, dtype=np.float64)


# --------------------------------------------------------------------------- optimiser


@dataclass(frozen=True, slots=True)
class _Optimum:
    log_params: Floats
    converged: bool
    iterations: int
    message: str


def _minimise(
    objective: Callable[[Floats], tuple[float, Floats]],
    start: Floats,
    *,
    max_iter: int,
    tol: float,
) -> _Optimum:
    """Minimise a mean negative log-likelihood over log-parameters.

    SLSQP with the analytic gradient, box-bounded so that every evaluation stays finite
    (L-BFGS-B is as fast single-threaded, but its C core becomes tens of times slower
    when OpenBLAS threads compete for busy cores). When it stops by itself, a few safeguarded
    Newton steps on a finite-difference Hessian polish the optimum to full precision.
    """
    from scipy.optimize import minimize  # noqa: PLC0415 - only fitting needs it (slow import)

    if isinstance(max_iter, bool) or not isinstance(max_iter, int | np.integer) or max_iter < 1:
        raise ValidationFailed("max_iter must be a whole number of at least 1", field="max_iter")
    _positive(tol, "tol")
    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * len(start)
    res = minimize(
        objective,
        start,
        jac=True,
        method="SLSQP",
        bounds=bounds,
        options={"maxiter": int(max_iter), "ftol": tol},
    )
    x = np.asarray(res.x, dtype=np.float64)
    iterations = int(res.nit)
    message = str(res.message)
    if iterations >= max_iter:
        return _Optimum(x, False, iterations, f"stopped after max_iter={max_iter}; {message}")
    for _ in range(_NEWTON_STEPS):
        value, grad = objective(x)
        if np.max(np.abs(grad)) < 1e-12:
            break
        hessian = _hessian(objective, x)
        if not _positive_definite(hessian):
            break
        candidate = x - np.linalg.solve(hessian, grad)
        if np.any(np.abs(candidate) > _LOG_BOUND) or not objective(candidate)[0] <= value:
            break
        x = candidate
    if np.any(np.abs(x) >= _LOG_BOUND * (1 - 1e-9)):
        message = f"a parameter reached its bound (the data do not identify it); {message}"
        return _Optimum(x, False, iterations, message)
    value, grad = objective(x)
    if not (np.isfinite(value) and np.max(np.abs(grad)) <= _CONVERGED_GRADIENT):
        return _Optimum(x, False, iterations, f"not at a stationary point; {message}")
    # An isolated maximum: else the data do not identify every parameter (e.g. no
    # repeat buyers at all) and the optimiser stopped on a plateau.
    if not _positive_definite(_hessian(objective, x)):
        message = f"flat likelihood (the data do not identify every parameter); {message}"
        return _Optimum(x, False, iterations, message)
    return _Optimum(x, True, iterations, message)


def _hessian(objective: Callable[[Floats], tuple[float, Floats]], x: Floats) -> Floats:
    """Central differences of the analytic gradient, symmetrised."""
    step = 1e-5
    rows = [(objective(x + e)[1] - objective(x - e)[1]) / (2 * step) for e in np.eye(len(x)) * step]
    h = np.array(rows, dtype=np.float64)
    return (h + h.T) / 2


def _positive_definite(hessian: Floats) -> bool:
    return bool(np.all(np.isfinite(hessian)) and np.linalg.eigvalsh(hessian).min() > _MIN_CURVATURE)


# --------------------------------------------------------------------------- BG/NBD


@dataclass(frozen=True, slots=True)
class BetaGeoParams:
    """BG/NBD parameters: purchase rates ~ Gamma(r, alpha), drop-out probabilities after
    each purchase ~ Beta(a, b). ``alpha`` is in the time unit of the data it was fitted
    on (mean purchase rate r / alpha per time unit)."""

    r: float
    alpha: float
    a: float
    b: float

    def __post_init__(self) -> None:
        for field in ("r", "alpha", "a", "b"):
            _positive(getattr(self, field), field)

    def log_likelihood(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        *,
        age: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> float:
        """Total (weighted) log-likelihood of the customers' summaries."""
        x, tx, big_t = _rfm(frequency, recency, age)
        x, tx, big_t = x.ravel(), tx.ravel(), big_t.ravel()
        data = _BetaGeoData.of(x, tx, big_t, _weights(weights, len(x)))
        log_params = np.log([self.r, self.alpha, self.a, self.b])
        value, _ = data.negative_log_likelihood(log_params)
        return -value * data.total

    def probability_alive(
        self, frequency: ArrayLike, recency: ArrayLike, *, age: ArrayLike
    ) -> Floats:
        """P(alive | x, t_x, T): the probability the customer has not dropped out by the
        end of the observation period. It is 1 for x == 0 (no purchase after the first,
        so no chance yet to drop out)."""
        x, tx, big_t = _rfm(frequency, recency, age)
        return _result(_probability_alive(self, x, tx, big_t))

    def conditional_expected_purchases(
        self, frequency: ArrayLike, recency: ArrayLike, *, age: ArrayLike, t: ArrayLike
    ) -> Floats:
        """E[Y(t) | x, t_x, T]: expected purchases in the next ``t`` time units for a
        customer with this history (FHL 2005 eq. 10). Broadcasts ``t`` against the
        summaries."""
        x, tx, big_t = _rfm(frequency, recency, age)
        x, tx, big_t, tt = _broadcast(
            {"frequency": x, "recency": tx, "age": big_t, "t": _horizon(t)}
        )
        return _result(_conditional_expected(self, tt, x, tx, big_t))

    def expected_purchases(self, t: ArrayLike) -> Floats:
        """E[X(t)]: expected repeat purchases of a new customer in its first ``t`` time
        units (FHL 2005 eq. 9)."""
        tt = _horizon(t)
        zero = np.zeros_like(tt)
        return _result(_conditional_expected(self, tt, zero, zero, zero))


@dataclass(frozen=True, slots=True)
class BetaGeoFit:
    """A fitted BG/NBD model. ``log_likelihood`` is the total over the (weighted)
    customers, in the time unit of the data; ``customers`` is the sum of the weights."""

    params: BetaGeoParams
    log_likelihood: float
    converged: bool
    iterations: int
    customers: float
    message: str


@dataclass(frozen=True, slots=True)
class _BetaGeoData:
    """A BG/NBD sample arranged for fast likelihood evaluations: terms depending only on
    x are summed per distinct x, customers without repeat purchases per distinct age."""

    total: float
    ux: Floats  # distinct frequencies
    wx: Floats  # weight of each distinct frequency
    t0: Floats  # distinct ages of x == 0 rows
    w0: Floats  # weight of each
    x1: Floats  # x > 0 rows
    tx1: Floats
    t1: Floats
    w1: Floats

    @staticmethod
    def of(x: Floats, tx: Floats, big_t: Floats, w: Floats) -> _BetaGeoData:
        keep = w > 0
        x, tx, big_t, w = x[keep], tx[keep], big_t[keep], w[keep]
        ux, inverse = np.unique(x, return_inverse=True)
        wx = np.bincount(inverse, weights=w, minlength=len(ux)).astype(np.float64)
        rep = x > 0
        # Customers without repeat purchases differ only in age: one row per distinct age.
        t0, at = np.unique(big_t[~rep], return_inverse=True)
        w0 = np.bincount(at, weights=w[~rep], minlength=len(t0)).astype(np.float64)
        return _BetaGeoData(
            total=float(w.sum()),
            ux=ux,
            wx=wx,
            t0=t0,
            w0=w0,
            x1=x[rep],
            tx1=tx[rep],
            t1=big_t[rep],
            w1=w[rep],
        )

    def scaled(self, factor: float) -> _BetaGeoData:
        """The same sample with every time multiplied by ``factor``."""
        return _BetaGeoData(
            total=self.total,
            ux=self.ux,
            wx=self.wx,
            t0=self.t0 * factor,
            w0=self.w0,
            x1=self.x1,
            tx1=self.tx1 * factor,
            t1=self.t1 * factor,
            w1=self.w1,
        )

    def negative_log_likelihood(self, log_params: Floats) -> tuple[float, Floats]:
        """Mean negative log-likelihood (FHL 2005, section 7 / Hardie note 004) and its
        gradient with respect to (log r, log alpha, log a, log b)."""
        r, alpha, a, b = np.exp(log_params)
        total, ux, wx = self.total, self.ux, self.wx

        # Terms that depend on x only (summed per distinct x) or on nothing.
        ll = float(
            wx @ (gammaln(r + ux) + gammaln(b + ux) - gammaln(a + b + ux))
            + total * (r * np.log(alpha) - gammaln(r) + gammaln(a + b) - gammaln(b))
        )
        psi_abx = digamma(a + b + ux)
        g_r = float(wx @ digamma(r + ux) + total * (np.log(alpha) - digamma(r)))
        g_alpha = total * r / alpha
        psi_ab = float(digamma(a + b))
        g_a = float(total * psi_ab - wx @ psi_abx)
        g_b = float(wx @ (digamma(b + ux) - psi_abx) + total * (psi_ab - digamma(b)))

        # x == 0: the customer is alive at T with no purchase in (0, T].
        if self.w0.size:
            log_at0 = np.log(alpha + self.t0)
            ll -= r * float(self.w0 @ log_at0)
            g_r -= float(self.w0 @ log_at0)
            g_alpha -= r * float(self.w0 @ (1.0 / (alpha + self.t0)))

        # x > 0: alive at T (A3), or dropped out right after the last purchase (A4).
        if self.w1.size:
            x, w = self.x1, self.w1
            rx = r + x
            log_at = np.log(alpha + self.t1)
            log_atx = np.log(alpha + self.tx1)
            log_bx = np.log(b + x - 1.0)
            a3 = -rx * log_at
            a4 = np.log(a) - log_bx - rx * log_atx
            ll += float(w @ np.logaddexp(a3, a4))
            w4 = expit(a4 - a3)  # posterior weight of "dropped out" among the two
            w3 = 1.0 - w4
            g_r -= float(w @ (w3 * log_at + w4 * log_atx))
            g_alpha -= float(w @ (rx * (w3 / (alpha + self.t1) + w4 / (alpha + self.tx1))))
            ww4 = w * w4
            g_a += float(ww4.sum()) / a
            g_b -= float(ww4 @ (1.0 / (b + x - 1.0)))

        grad = np.array([g_r * r, g_alpha * alpha, g_a * a, g_b * b])
        return float(-ll / total), -grad / total


def fit_beta_geo(
    frequency: ArrayLike,
    recency: ArrayLike,
    *,
    age: ArrayLike,
    weights: ArrayLike | None = None,
    initial: BetaGeoParams | None = None,
    max_iter: int = 200,
    tol: float = 1e-10,
) -> BetaGeoFit:
    """Fit BG/NBD by maximum likelihood.

    ``frequency``, ``recency`` and ``age`` are one entry per customer (or per distinct
    summary, with ``weights`` counting the customers that share it), in any one time
    unit; the fitted ``alpha`` is in that unit. The optimiser works on log-parameters
    with the analytic gradient, on times rescaled so that the oldest customer has age
    10, and stops after ``max_iter`` iterations; ``converged`` says whether it reached
    a stationary point inside the parameter bounds.
    """
    x, tx, big_t = _rfm(frequency, recency, age)
    _one_dimensional({"frequency": x, "recency": tx, "age": big_t})
    w = _weights(weights, len(x))
    data = _BetaGeoData.of(x, tx, big_t, w)
    oldest = float(big_t[w > 0].max())
    scale = 10.0 / oldest if oldest > 0 else 1.0
    if initial is None:
        start = np.zeros(4)
    else:
        start = np.log([initial.r, initial.alpha * scale, initial.a, initial.b])
    start = np.clip(start, -_LOG_BOUND / 2, _LOG_BOUND / 2)
    scaled = data.scaled(scale)
    opt = _minimise(scaled.negative_log_likelihood, start, max_iter=max_iter, tol=tol)
    r, alpha, a, b = (float(v) for v in np.exp(opt.log_params))
    params = BetaGeoParams(r=r, alpha=alpha / scale, a=a, b=b)
    value, _ = data.negative_log_likelihood(np.log([params.r, params.alpha, params.a, params.b]))
    return BetaGeoFit(
        params=params,
        log_likelihood=-value * data.total,
        converged=opt.converged,
        iterations=opt.iterations,
        customers=data.total,
        message=opt.message,
    )


def _probability_alive(p: BetaGeoParams, x: Floats, tx: Floats, big_t: Floats) -> Floats:
    # 1 / (1 + [x > 0] a / (b + x - 1) ((alpha + T) / (alpha + t_x))^(r + x)), as a
    # logistic so that it cannot overflow.
    log_odds_dead = (
        np.log(p.a)
        - np.log(p.b + np.maximum(x, 1.0) - 1.0)
        + (p.r + x) * (np.log(p.alpha + big_t) - np.log(p.alpha + tx))
    )
    return np.where(x > 0, expit(-log_odds_dead), 1.0)


def _hyp2f1(a: ArrayLike, b: ArrayLike, c: ArrayLike, z: ArrayLike) -> Floats:
    """scipy.special.hyp2f1 for 0 <= z < 1, kept away from its fragile case: where
    d = c - a - b is within ``_INTEGER_GAP`` of an integer k, 2F1 is evaluated at
    d = k -2, -1, +1, +2 gaps (moving ``a``, in which 2F1 is entire and smooth) and
    interpolated with the cubic through those points. Checked against mpmath to ~1e-8
    relative, z up to 1 - 1e-6, d up to 3000."""
    a, b, c, z = np.broadcast_arrays(a, b, c, z)
    d = c - a - b
    k = np.round(d)
    near = np.abs(d - k) < _INTEGER_GAP
    out = np.array(hyp2f1(a, b, c, z), dtype=np.float64)
    if np.any(near):
        an, bn, cn, zn = a[near], b[near], c[near], z[near]
        u = (d - k)[near] / _INTEGER_GAP  # where d lies, in gaps from k
        total = np.zeros_like(u)
        for node, weight in _cubic_weights(u):
            # moving a by (u - node) gaps puts c - a - b at k + node gaps
            total += weight * hyp2f1(an + (u - node) * _INTEGER_GAP, bn, cn, zn)
        out[near] = total
    return out


def _expected_core(p: BetaGeoParams, t: Floats, x: Floats, tx: Floats, big_t: Floats) -> Floats:
    """FHL 2005 eq. 10:

        (a + b + x - 1) / (a - 1)
        * [1 - ((alpha + T) / (alpha + T + t))^(r + x) 2F1(r + x, b + x; a + b + x - 1; z)]
        * P(alive),                        z = t / (alpha + T + t).

    2F1 is evaluated after Euler's transformation, 2F1(A, B; C; z) = (1 - z)^(C - A - B)
    2F1(C - A, C - B; C; z), which turns the bracket into

        1 - (1 - z)^(a - 1) 2F1(a + b - 1 - r, a - 1; a + b + x - 1; z):

    its upper parameters no longer grow with x, so the series neither overflows nor
    cancels for frequent buyers and z near 1. Where that still is not finite, the
    untransformed form is used.
    """
    r, alpha, a, b = p.r, p.alpha, p.a, p.b
    c = a + b + x - 1.0
    log_1mz = np.log(alpha + big_t) - np.log(alpha + big_t + t)
    z = t / (alpha + big_t + t)
    f = _hyp2f1(a + b - 1.0 - r, a - 1.0, c, z)
    bracket = 1.0 - np.exp((a - 1.0) * log_1mz) * f
    bad = ~np.isfinite(bracket)
    if np.any(bad):
        bracket = np.array(bracket, dtype=np.float64)
        xb, zb = x[bad], z[bad]
        bracket[bad] = 1.0 - np.exp((r + xb) * log_1mz[bad]) * _hyp2f1(r + xb, b + xb, c[bad], zb)
    out = c / (a - 1.0) * bracket * _probability_alive(p, x, tx, big_t)
    return np.where(t == 0, 0.0, out)


def _conditional_expected(
    p: BetaGeoParams, t: Floats, x: Floats, tx: Floats, big_t: Floats
) -> Floats:
    """:func:`_expected_core`, continued across its removable singularities at a == 1
    and, for x == 0, a + b == 1: within ``_SINGULAR_STEP`` of one, the cubic in ``a``
    through the points 1 and 2 steps either side."""
    t, x, tx, big_t = np.broadcast_arrays(t, x, tx, big_t)
    h = _SINGULAR_STEP
    for singular in (1.0, 1.0 - p.b):
        if abs(p.a - singular) < h and singular - 2 * h > 0:
            total = np.zeros(t.shape)
            for node, weight in _cubic_weights((p.a - singular) / h):
                moved = BetaGeoParams(r=p.r, alpha=p.alpha, a=singular + node * h, b=p.b)
                total += weight * _expected_core(moved, t, x, tx, big_t)
            return total
    return _expected_core(p, t, x, tx, big_t)


def _cubic_weights(u: ArrayLike) -> list[tuple[float, Floats]]:
    """Lagrange weights, at ``u``, of the cubic through the nodes -2, -1, 1 and 2."""
    nodes = (-2.0, -1.0, 1.0, 2.0)
    at = np.asarray(u, dtype=np.float64)
    out = []
    for node in nodes:
        weight = np.ones_like(at)
        for other in nodes:
            if other != node:
                weight = weight * (at - other) / (node - other)
        out.append((node, weight))
    return out


# --------------------------------------------------------------------------- Gamma-Gamma


@dataclass(frozen=True, slots=True)
class GammaGammaParams:
    """Gamma-Gamma parameters: a transaction's value ~ Gamma(p, nu) with the customer's
    nu ~ Gamma(q, gamma). ``gamma`` is in the currency unit of the data. The population
    mean transaction value p gamma / (q - 1) exists for q > 1."""

    p: float
    q: float
    gamma: float

    def __post_init__(self) -> None:
        for field in ("p", "q", "gamma"):
            _positive(getattr(self, field), field)

    @property
    def population_mean(self) -> float:
        """E[transaction value] across customers; infinite when q <= 1."""
        return self.p * self.gamma / (self.q - 1.0) if self.q > 1 else float("inf")

    def log_likelihood(
        self, frequency: ArrayLike, monetary_value: ArrayLike, *, weights: ArrayLike | None = None
    ) -> float:
        """Total (weighted) log-likelihood of the repeat buyers' mean values."""
        data = _GammaGammaData.of(*_spend_sample(frequency, monetary_value, weights))
        value, _ = data.negative_log_likelihood(np.log([self.p, self.q, self.gamma]))
        return -value * data.total

    def conditional_expected_value(self, frequency: ArrayLike, monetary_value: ArrayLike) -> Floats:
        """E[M | x, m]: expected value of the customer's future transactions, a weighted
        mean of the population mean and the customer's own mean ``m`` (weight
        p x / (p x + q - 1)). For x == 0 it is the population mean (``m`` is ignored).
        Needs q > 1."""
        if not self.q > 1:
            raise ValidationFailed("the expected value needs q > 1", field="q")
        x, m = _broadcast(
            {
                "frequency": _frequency(frequency),
                "monetary_value": _floats(monetary_value, "monetary_value"),
            }
        )
        own = self.p * x / (self.p * x + self.q - 1.0)
        return _result((1.0 - own) * self.population_mean + own * m)


@dataclass(frozen=True, slots=True)
class GammaGammaFit:
    """A fitted Gamma-Gamma model. ``log_likelihood`` is the total over the (weighted)
    repeat buyers, in the currency unit of the data; ``customers`` is the sum of the
    weights."""

    params: GammaGammaParams
    log_likelihood: float
    converged: bool
    iterations: int
    customers: float
    message: str


def _spend_sample(
    frequency: ArrayLike, monetary_value: ArrayLike, weights: ArrayLike | None
) -> tuple[Floats, Floats, Floats]:
    x = _frequency(frequency)
    m = _floats(monetary_value, "monetary_value")
    _one_dimensional({"frequency": x, "monetary_value": m})
    if np.any(x == 0):
        raise ValidationFailed(
            "the spend model is fitted on repeat buyers only: pass rows with frequency > 0",
            field="frequency",
        )
    if np.any(m == 0):
        raise ValidationFailed("monetary_value must be positive", field="monetary_value")
    return x, m, _weights(weights, len(x))


@dataclass(frozen=True, slots=True)
class _GammaGammaData:
    """A Gamma-Gamma sample arranged for fast likelihood evaluations: the Gamma function
    terms depend on x only and are summed per distinct x, the ln m and ln x terms are
    linear in p and summed once; only ln(gamma + x m) is left per row."""

    total: float
    ux: Floats  # distinct frequencies
    wx: Floats  # weight of each
    x: Floats  # per row
    w: Floats
    xm: Floats
    sum_log_m: float  # sum of w ln m
    sum_x_log_m: float  # sum of w x ln m
    sum_x_log_x: float  # sum of w x ln x

    @staticmethod
    def of(x: Floats, m: Floats, w: Floats) -> _GammaGammaData:
        keep = w > 0
        x, m, w = x[keep], m[keep], w[keep]
        ux, inverse = np.unique(x, return_inverse=True)
        wx = np.bincount(inverse, weights=w, minlength=len(ux)).astype(np.float64)
        log_m = np.log(m)
        return _GammaGammaData(
            total=float(w.sum()),
            ux=ux,
            wx=wx,
            x=x,
            w=w,
            xm=x * m,
            sum_log_m=float(w @ log_m),
            sum_x_log_m=float(w @ (x * log_m)),
            sum_x_log_x=float(w @ (x * np.log(x))),
        )

    def scaled(self, factor: float) -> _GammaGammaData:
        """The same sample with every value multiplied by ``factor``."""
        log_factor = float(np.log(factor))
        return _GammaGammaData(
            total=self.total,
            ux=self.ux,
            wx=self.wx,
            x=self.x,
            w=self.w,
            xm=self.xm * factor,
            sum_log_m=self.sum_log_m + self.total * log_factor,
            sum_x_log_m=self.sum_x_log_m + float(self.w @ self.x) * log_factor,
            sum_x_log_x=self.sum_x_log_x,
        )

    def negative_log_likelihood(self, log_params: Floats) -> tuple[float, Floats]:
        """Mean negative log-likelihood of the mean values m given x (Fader & Hardie's
        note, eq. 1a) and its gradient with respect to (log p, log q, log gamma):

            ln G(px + q) - ln G(px) - ln G(q) + q ln gamma + (px - 1) ln m + px ln x
            - (px + q) ln(gamma + x m)
        """
        p, q, gamma = np.exp(log_params)
        ux, wx, x, w = self.ux, self.wx, self.x, self.w
        pux = p * ux
        log_denominator = np.log(gamma + self.xm)
        psi_pxq = digamma(pux + q)
        ll = float(
            wx @ (gammaln(pux + q) - gammaln(pux))
            + p * (self.sum_x_log_m + self.sum_x_log_x)
            - self.sum_log_m
            - w @ ((p * x + q) * log_denominator)
            + self.total * (q * np.log(gamma) - gammaln(q))
        )
        g_p = float(
            wx @ (ux * (psi_pxq - digamma(pux)))
            + self.sum_x_log_m
            + self.sum_x_log_x
            - w @ (x * log_denominator)
        )
        g_q = float(wx @ psi_pxq - w @ log_denominator + self.total * (np.log(gamma) - digamma(q)))
        g_gamma = float(self.total * q / gamma - w @ ((p * x + q) / (gamma + self.xm)))
        grad = np.array([g_p * p, g_q * q, g_gamma * gamma])
        return float(-ll / self.total), -grad / self.total


def fit_gamma_gamma(
    frequency: ArrayLike,
    monetary_value: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    initial: GammaGammaParams | None = None,
    max_iter: int = 200,
    tol: float = 1e-10,
) -> GammaGammaFit:
    """Fit the Gamma-Gamma spend model by maximum likelihood on repeat buyers.

    Every row must have ``frequency`` > 0 (filter first: customers without a repeat
    purchase carry no spend information) and a positive ``monetary_value``, the mean of
    their repeat transactions. The optimiser works on log-parameters with the analytic
    gradient, on values rescaled to mean 1, and stops after ``max_iter`` iterations.
    """
    x, m, w = _spend_sample(frequency, monetary_value, weights)
    data = _GammaGammaData.of(x, m, w)
    scale = 1.0 / float(np.average(m[w > 0], weights=w[w > 0]))
    if initial is None:
        start = np.zeros(3)
    else:
        start = np.log([initial.p, initial.q, initial.gamma * scale])
    start = np.clip(start, -_LOG_BOUND / 2, _LOG_BOUND / 2)
    opt = _minimise(data.scaled(scale).negative_log_likelihood, start, max_iter=max_iter, tol=tol)
    p, q, gamma = (float(v) for v in np.exp(opt.log_params))
    params = GammaGammaParams(p=p, q=q, gamma=gamma / scale)
    value, _ = data.negative_log_likelihood(np.log([params.p, params.q, params.gamma]))
    return GammaGammaFit(
        params=params,
        log_likelihood=-value * data.total,
        converged=opt.converged,
        iterations=opt.iterations,
        customers=data.total,
        message=opt.message,
    )


# --------------------------------------------------------------------------- CLV


def customer_lifetime_value(
    purchases: BetaGeoParams,
    spend: GammaGammaParams,
    *,
    frequency: ArrayLike,
    recency: ArrayLike,
    age: ArrayLike,
    monetary_value: ArrayLike,
    periods_per_month: float,
    margin: float,
    months: int = 12,
    monthly_discount_rate: float = 0.01,
) -> Floats:
    """Expected discounted margin of each customer over the next ``months`` months.

    For month k = 1..months: the BG/NBD expected purchases in that month (the difference
    of the conditional expectation at k and k - 1 months), times the Gamma-Gamma
    expected transaction value, times ``margin``, discounted by
    (1 + monthly_discount_rate)^k. This is ``lifetimes``' ``customer_lifetime_value``
    (which has no margin; it equals ``margin=1``).

    Units: ``recency`` and ``age`` are in the time unit ``purchases`` was fitted in, and
    ``periods_per_month`` is how many of those units make a month (:data:`DAYS_PER_MONTH`
    = 30, :data:`WEEKS_PER_MONTH` = 4.345, :data:`MONTHS_PER_MONTH` = 1, the factors
    ``lifetimes`` uses). ``monetary_value`` is the mean repeat-transaction value in the
    currency unit ``spend`` was fitted in; ``margin`` is the share of it that is profit
    (0..1, or above 1 if value is cost-based); the result is in that currency unit.
    """
    _positive(periods_per_month, "periods_per_month")
    if not (np.isfinite(margin) and margin >= 0):
        raise ValidationFailed("margin must be a non-negative number", field="margin")
    if not (np.isfinite(monthly_discount_rate) and monthly_discount_rate > -1):
        raise ValidationFailed(
            "monthly_discount_rate must be greater than -1", field="monthly_discount_rate"
        )
    if isinstance(months, bool) or not isinstance(months, int | np.integer) or months < 1:
        raise ValidationFailed("months must be a whole number of at least 1", field="months")
    x, tx, big_t = _rfm(frequency, recency, age)
    x, tx, big_t, m = _broadcast(
        {
            "frequency": x,
            "recency": tx,
            "age": big_t,
            "monetary_value": _floats(monetary_value, "monetary_value"),
        }
    )
    value = spend.conditional_expected_value(x, m)
    k = np.arange(int(months) + 1, dtype=np.float64)
    cumulative = _conditional_expected(
        purchases, k * periods_per_month, x[..., None], tx[..., None], big_t[..., None]
    )
    per_month = np.diff(cumulative, axis=-1)
    discount = (1.0 + monthly_discount_rate) ** -k[1:]
    return _result(margin * value * (per_month @ discount))
