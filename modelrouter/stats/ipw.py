"""Arm means and differences from adaptively allocated traffic (bandits), by inverse propensity.

Input is one row per unit, in time order: the arm it got, its outcome, the propensity of that
arm when it was chosen, and optionally the weights epoch. The estimand of arm a is the mean
potential outcome ``(1/n) sum_i E[Y_i(a)]`` over the units that arrived, which the plain mean
of arm a's outcomes misses whenever the allocation moved while the outcome level moved too.

- ``"hajek"``: self-normalised IPW, ``sum w Y / sum w`` with ``w = 1[A=a] / p``; sandwich
  (delta-method) variance ``sum w^2 (Y - mu)^2 / (sum w)^2``.
- ``"aipw"``: augmented IPW ``mean(m + 1[A=a] / p * (Y - m))`` with a *predictable* outcome
  model ``m`` = arm a's mean over earlier epochs (earlier rows without epochs), so every term
  has mean ``E[Y_i(a)]`` even though the propensities depend on the past (Hadad et al. 2021);
  variance from the per-unit scores.
- ``"stratified"``: period-stratified estimate; within each period a Hajek mean (a plain mean
  when the propensity is constant inside the epoch), combined with weights ``n_s / n``. Epochs
  are merged in time order into periods until every arm has ``min_units`` units in each.
- ``"naive"``: the plain per-arm mean, biased under adaptive allocation; kept as a reference.

Every estimator is written as ``estimate + mean(influence)``, so the standard error of an arm,
and of a difference between arms (which may share units, as AIPW's do), is
``sqrt(sum(influence^2)) / n``. Intervals and p-values are normal (large-sample) ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as _st

from modelrouter.stats.results import ConfidenceInterval

__all__ = [
    "IPWDifference",
    "IPWEstimate",
    "IPWMethod",
    "ipw_difference",
    "ipw_means",
]

IPWMethod = Literal["hajek", "aipw", "stratified", "naive"]
FloatArray = NDArray[np.float64]

# estimator key -> the method named in results
METHOD_NAMES = {
    "hajek": "Hajek (self-normalised IPW)",
    "aipw": "AIPW (predictable per-epoch outcome model)",
    "stratified": "period-stratified (per-epoch Hajek, weighted by the epoch's units)",
    "naive": "naive per-arm mean (biased under adaptive allocation)",
}


def _z(confidence_level: float) -> float:
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level ({confidence_level!r}) must be in (0, 1)")
    return float(_st.norm.ppf(0.5 + confidence_level / 2.0))


@dataclass(frozen=True)
class IPWEstimate:
    """Estimated mean outcome of one arm; ``n`` is the number of units observed on it."""

    arm: int
    estimate: float
    std_err: float
    n: int
    method: str

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Two-sided normal interval for the arm's mean."""
        q = _z(confidence_level) * self.std_err
        return ConfidenceInterval(self.estimate - q, self.estimate + q)

    def summary(self) -> str:
        """One line for logs and reports."""
        ci = self.confidence_interval()
        return (f"arm {self.arm}: {self.estimate:.6g} ± {self.std_err:.3g} "
                f"(95% CI {ci.low:.6g}..{ci.high:.6g}, n={self.n}, {self.method})")

    def to_dict(self) -> dict[str, Any]:
        """Plain form for JSON."""
        return asdict(self)


@dataclass(frozen=True)
class IPWDifference:
    """``difference`` = mean of ``arm`` minus mean of ``control``, with a z test of 0."""

    arm: int
    control: int
    difference: float
    std_err: float
    statistic: float
    pvalue: float
    estimate_arm: float
    estimate_control: float
    method: str

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Two-sided normal interval for the difference."""
        q = _z(confidence_level) * self.std_err
        return ConfidenceInterval(self.difference - q, self.difference + q)

    def summary(self) -> str:
        """One line for logs and reports."""
        ci = self.confidence_interval()
        return (f"arm {self.arm} - arm {self.control}: {self.difference:+.6g} "
                f"(95% CI {ci.low:+.6g}..{ci.high:+.6g}, z={self.statistic:.3f}, "
                f"p={self.pvalue:.4g}, {self.method})")

    def to_dict(self) -> dict[str, Any]:
        """Plain form for JSON."""
        return asdict(self)


class _Data:
    """Validated columns, shared by the estimators."""

    def __init__(self, arms: ArrayLike, outcomes: ArrayLike, propensities: ArrayLike | None,
                 epochs: ArrayLike | None, n_arms: int | None) -> None:
        a = np.asarray(arms)
        if a.ndim != 1 or a.size == 0 or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"arms must be a non-empty 1-d integer array, got {a.dtype} {a.shape}")
        if a.min() < 0:
            raise ValueError(f"arms must be >= 0, got {a.min()}")
        self.k = int(a.max()) + 1 if n_arms is None else int(n_arms)
        if a.max() >= self.k:
            raise ValueError(f"arms ({a.max()}) must be < n_arms ({self.k})")
        y = np.asarray(outcomes, dtype=np.float64)
        n = a.size
        if y.shape != (n,) or not np.all(np.isfinite(y)):
            raise ValueError(f"outcomes must be {n} finite numbers, got shape {y.shape}")
        p = np.ones(n) if propensities is None else np.asarray(propensities, dtype=np.float64)
        if p.shape != (n,) or not np.all((p > 0) & (p <= 1)):
            raise ValueError(f"propensities must be {n} numbers in (0, 1]")
        if epochs is None:
            codes = np.arange(n)  # every row its own period: rows must be in time order
        else:
            e = np.asarray(epochs)
            if e.shape != (n,):
                raise ValueError(f"epochs must have shape ({n},), got {e.shape}")
            codes = np.unique(e, return_inverse=True)[1].ravel()  # sorted epoch ids -> 0..E-1
        self.arms, self.y, self.p, self.epochs, self.n = a.astype(np.intp), y, p, codes, n
        self.n_epochs = int(codes.max()) + 1

    def count(self, arm: int) -> int:
        return int(np.count_nonzero(self.arms == arm))


def _hajek(d: _Data, arm: int, strata: NDArray[np.intp] | None = None) -> tuple[float, FloatArray]:
    """Hajek estimate (stratum-weighted when ``strata`` is given) and per-unit influence."""
    w = np.where(d.arms == arm, 1.0 / d.p, 0.0)
    if strata is None:
        strata = np.zeros(d.n, dtype=np.intp)
    n_s = np.bincount(strata).astype(np.float64)
    w_s = np.bincount(strata, weights=w, minlength=n_s.size)
    if np.any(w_s[n_s > 0] <= 0):
        raise ValueError(f"arm {arm} has no units in some period: cannot estimate its mean")
    mu_s = np.bincount(strata, weights=w * d.y, minlength=n_s.size) / np.where(w_s > 0, w_s, 1)
    estimate = float(np.sum(n_s * mu_s) / d.n)
    influence = n_s[strata] * w * (d.y - mu_s[strata]) / w_s[strata]
    return estimate, influence


def _aipw(d: _Data, arm: int) -> tuple[float, FloatArray]:
    hit = d.arms == arm
    e = d.n_epochs
    sums = np.bincount(d.epochs, weights=np.where(hit, d.y, 0.0), minlength=e)
    counts = np.bincount(d.epochs, weights=hit.astype(np.float64), minlength=e)
    all_sums = np.bincount(d.epochs, weights=d.y, minlength=e)
    all_counts = np.bincount(d.epochs, minlength=e).astype(np.float64)
    # outcome model for epoch t: arm's mean over epochs < t; else all arms' mean; else 0
    before = np.concatenate([[0.0], np.cumsum(sums)[:-1]])
    n_before = np.concatenate([[0.0], np.cumsum(counts)[:-1]])
    pooled = np.concatenate([[0.0], np.cumsum(all_sums)[:-1]])
    n_pooled = np.concatenate([[0.0], np.cumsum(all_counts)[:-1]])
    model = np.where(n_before > 0, before / np.maximum(n_before, 1),
                     np.where(n_pooled > 0, pooled / np.maximum(n_pooled, 1), 0.0))
    m = model[d.epochs]
    score = m + np.where(hit, (d.y - m) / d.p, 0.0)
    estimate = float(score.mean())
    return estimate, score - estimate


def _naive(d: _Data, arm: int) -> tuple[float, FloatArray]:
    hit = d.arms == arm
    n_a = int(hit.sum())
    if n_a == 0:
        raise ValueError(f"arm {arm} has no units: cannot estimate its mean")
    mean = float(d.y[hit].mean())
    return mean, np.where(hit, (d.n / n_a) * (d.y - mean), 0.0)


def merge_periods(counts: FloatArray, min_units: int) -> NDArray[np.intp]:
    """Period of each epoch (rows of ``counts``, shape (epochs, arms), in time order):
    consecutive epochs merged until each period holds ``min_units`` units of every arm."""
    period = np.empty(counts.shape[0], dtype=np.intp)
    current, filled, last_closed = 0, np.zeros(counts.shape[1]), -1
    for t in range(counts.shape[0]):
        period[t] = current
        filled = filled + counts[t]
        if np.all(filled >= min_units):
            last_closed, current, filled = t, current + 1, np.zeros(counts.shape[1])
    if last_closed < 0:
        raise ValueError(f"some arm has fewer than min_units ({min_units}) units in total")
    period[last_closed + 1:] = period[last_closed]  # an unfilled tail joins the last period
    return period


def _periods(d: _Data, min_units: int) -> NDArray[np.intp]:
    """Period of each row (see :func:`merge_periods`)."""
    table = np.zeros((d.n_epochs, d.k))
    np.add.at(table, (d.epochs, d.arms), 1.0)
    return merge_periods(table, min_units)[d.epochs]


def _estimator(
    d: _Data, method: str, min_units: int
) -> Callable[[int], tuple[float, FloatArray]]:
    if method == "hajek":
        return lambda arm: _hajek(d, arm)
    if method == "stratified":
        strata = _periods(d, min_units)
        return lambda arm: _hajek(d, arm, strata)
    if method == "aipw":
        return lambda arm: _aipw(d, arm)
    if method == "naive":
        return lambda arm: _naive(d, arm)
    raise ValueError(f"method ({method!r}) must be one of {', '.join(map(repr, METHOD_NAMES))}")


def _z_statistic(delta: float, se: float) -> float:
    if se > 0:
        return delta / se
    return 0.0 if delta == 0 else math.copysign(math.inf, delta)  # no spread: sign is certain


def ipw_means(
    arms: ArrayLike,
    outcomes: ArrayLike,
    propensities: ArrayLike,
    *,
    epochs: ArrayLike | None = None,
    n_arms: int | None = None,
    method: IPWMethod = "hajek",
    min_units: int = 10,
) -> tuple[IPWEstimate, ...]:
    """Mean outcome per arm (0..n_arms-1) by the chosen estimator, with standard errors."""
    d = _Data(arms, outcomes, propensities, epochs, n_arms)
    estimate = _estimator(d, method, min_units)
    results = []
    for arm in range(d.k):
        value, influence = estimate(arm)
        se = math.sqrt(float(np.dot(influence, influence))) / d.n
        results.append(IPWEstimate(arm, value, se, d.count(arm), METHOD_NAMES[method]))
    return tuple(results)


def ipw_difference(
    arms: ArrayLike,
    outcomes: ArrayLike,
    propensities: ArrayLike,
    *,
    arm: int,
    control: int = 0,
    epochs: ArrayLike | None = None,
    n_arms: int | None = None,
    method: IPWMethod = "hajek",
    min_units: int = 10,
) -> IPWDifference:
    """Mean of ``arm`` minus mean of ``control``, standard error, normal CI and z-test p-value."""
    d = _Data(arms, outcomes, propensities, epochs, n_arms)
    for name, value in (("arm", arm), ("control", control)):
        if not 0 <= value < d.k:
            raise ValueError(f"{name} ({value!r}) must be an arm index in [0, {d.k})")
    if arm == control:
        raise ValueError(f"arm ({arm!r}) and control ({control!r}) must differ")
    estimate = _estimator(d, method, min_units)
    mu_t, infl_t = estimate(arm)
    mu_c, infl_c = estimate(control)
    diff = infl_t - infl_c
    se = math.sqrt(float(np.dot(diff, diff))) / d.n
    delta = mu_t - mu_c
    z = _z_statistic(delta, se)
    pvalue = float(2.0 * _st.norm.sf(abs(z)))
    return IPWDifference(arm, control, delta, se, z, pvalue, mu_t, mu_c, METHOD_NAMES[method])
