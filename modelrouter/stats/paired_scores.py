"""Paired differences of continuous outputs: scores, losses and latencies of shadow vs served.

Each request gives a pair ``(served, shadow)``; the analysis works on the differences
``d = shadow - served`` (or, for latency, on both samples resampled together):

- :func:`mean_difference` / :func:`mean_difference_from_moments`: the paired t interval and
  test of the mean of ``d`` (Student, 1908; the same numbers as ``scipy.stats.ttest_rel``),
  from raw pairs or from Welford moments (:mod:`modelrouter.stats.paired_accumulator`).
- :func:`quantile_difference`: a quantile of ``d`` with the distribution-free order-statistic
  interval ``[d_(r), d_(s)]``, where ``r`` and ``s`` are chosen from ``Binomial(n, q)`` so that
  each tail has probability at most ``(1 - level) / 2`` (Hahn & Meeker, 1991, *Statistical
  Intervals*, sec. 5.2; Conover, 1999, *Practical Nonparametric Statistics*, sec. 3.2). Its
  coverage is at least the nominal level for any continuous distribution; an end is infinite
  when ``n`` is too small for it.
- :func:`latency_ratio`: ``Q_shadow(q) / Q_served(q)`` with a percentile bootstrap interval
  that resamples *requests* (the pair stays together, so the correlation of the two latencies
  through the request is kept), ``B = 2000`` resamples from a fixed seed (Efron & Tibshirani,
  1993, *An Introduction to the Bootstrap*, ch. 13), via ``scipy.stats.bootstrap(paired=True)``.
- :func:`paired_loss`: losses of both models on labelled requests: the paired t test of the
  mean loss difference and the Wilcoxon signed-rank test (Wilcoxon, 1945) from scipy.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from modelrouter.exceptions import AnalysisError
from modelrouter.stats.results import ConfidenceInterval

__all__ = [
    "LatencyRatio",
    "MeanDifference",
    "PairedLoss",
    "QuantileDifference",
    "latency_ratio",
    "mean_difference",
    "mean_difference_from_moments",
    "order_statistic_ranks",
    "paired_loss",
    "quantile_difference",
]

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20260
MAX_ABS = 1e150


def _none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _ci_dict(ci: ConfidenceInterval) -> dict[str, float | None]:
    return {"low": _none(ci.low), "high": _none(ci.high)}


def _level(confidence_level: float) -> float:
    if not 0.0 < confidence_level < 1.0:
        raise AnalysisError(f"confidence_level ({confidence_level!r}) must be in (0, 1)")
    return confidence_level


def _pairs(served: Sequence[float] | np.ndarray, shadow: Sequence[float] | np.ndarray,
           what: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        a = np.asarray(served, dtype=np.float64)
        b = np.asarray(shadow, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"{what}: values must be numbers ({exc})") from None
    if a.ndim != 1 or a.shape != b.shape:
        raise AnalysisError(f"{what}: served ({a.shape}) and shadow ({b.shape}) must be "
                            "1-d arrays of the same length (one pair per request)")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise AnalysisError(f"{what}: values must be finite (drop failed requests first)")
    if a.size and max(np.abs(a).max(), np.abs(b).max()) > MAX_ABS:
        # squares of larger values overflow the variance
        raise AnalysisError(f"{what}: values must be within +-{MAX_ABS:g}")
    return a, b


@dataclass(frozen=True)
class MeanDifference:
    """Mean of ``shadow - served`` over ``n`` pairs with the paired t interval and test."""

    n: int
    mean_served: float
    mean_shadow: float
    difference: float
    std_error: float
    statistic: float
    df: float
    pvalue: float
    ci: ConfidenceInterval
    confidence_level: float

    def confidence_interval(self) -> ConfidenceInterval:
        """The t interval at :attr:`confidence_level`."""
        return self.ci

    def __repr__(self) -> str:
        return (f"MeanDifference(n={self.n}, shadow - served = {self.difference:+.4g} "
                f"[{self.ci.low:+.4g}, {self.ci.high:+.4g}], t={self.statistic:.3g}, "
                f"p={self.pvalue:.3g})")

    def to_dict(self) -> dict[str, Any]:
        """Plain data; NaN and infinities become ``None``."""
        return {"n": self.n, "mean_served": _none(self.mean_served),
                "mean_shadow": _none(self.mean_shadow), "difference": _none(self.difference),
                "std_error": _none(self.std_error), "statistic": _none(self.statistic),
                "df": _none(self.df), "pvalue": _none(self.pvalue), "ci": _ci_dict(self.ci),
                "confidence_level": self.confidence_level}


def mean_difference_from_moments(n: int, mean_served: float, mean_shadow: float,
                                 var_difference: float, confidence_level: float = 0.95
                                 ) -> MeanDifference:
    """The paired t analysis from sufficient statistics: ``n`` pairs, the two means and the
    sample variance (``ddof=1``) of the differences. Needs ``n >= 2``."""
    _level(confidence_level)
    if n < 2:
        raise AnalysisError(f"a paired t interval needs at least 2 pairs, got {n}")
    diff = mean_shadow - mean_served
    se = math.sqrt(max(var_difference, 0.0) / n)
    df = float(n - 1)
    tq = float(stats.t.ppf(0.5 + confidence_level / 2.0, df))
    if se > 0.0:
        t = diff / se
        p = float(2.0 * stats.t.sf(abs(t), df))
    else:  # every pair differs by the same amount: the difference is known exactly
        t = math.nan if diff == 0.0 else math.copysign(math.inf, diff)
        p = math.nan if diff == 0.0 else 0.0
    return MeanDifference(n, mean_served, mean_shadow, diff, se, t, df, p,
                          ConfidenceInterval(diff - tq * se, diff + tq * se), confidence_level)


def mean_difference(served: Sequence[float] | np.ndarray, shadow: Sequence[float] | np.ndarray,
                    confidence_level: float = 0.95) -> MeanDifference:
    """The paired t analysis of ``shadow - served`` from the pairs themselves."""
    a, b = _pairs(served, shadow, "mean_difference")
    if a.size < 2:
        raise AnalysisError(f"a paired t interval needs at least 2 pairs, got {a.size}")
    d = b - a
    return mean_difference_from_moments(int(a.size), float(a.mean()), float(b.mean()),
                                        float(d.var(ddof=1)), confidence_level)


def order_statistic_ranks(n: int, q: float, confidence_level: float = 0.95
                          ) -> tuple[int | None, int | None]:
    """The 1-based ranks ``(r, s)`` of the order statistics bounding the ``q`` quantile with
    coverage ``P(r <= K < s) >= level``, ``K ~ Binomial(n, q)``, each tail ``<= (1-level)/2``;
    ``None`` for an end that no order statistic of ``n`` values can give."""
    _level(confidence_level)
    if not 0.0 < q < 1.0:
        raise AnalysisError(f"q ({q!r}) must be in (0, 1)")
    tail = (1.0 - confidence_level) / 2.0
    cdf = stats.binom.cdf(np.arange(n + 1), n, q)  # cdf[k] = P(K <= k)
    # lower: the largest r in 1..n with P(K <= r - 1) <= tail
    low_ok = np.nonzero(cdf[:n] <= tail)[0]
    r = int(low_ok[-1]) + 1 if low_ok.size else None
    # upper: the smallest s in 1..n with P(K >= s) <= tail, i.e. cdf[s - 1] >= 1 - tail
    high_ok = np.nonzero(cdf[:n] >= 1.0 - tail)[0]
    s = int(high_ok[0]) + 1 if high_ok.size else None
    return r, s


@dataclass(frozen=True)
class QuantileDifference:
    """The ``q`` quantile of ``shadow - served`` with its order-statistic interval."""

    q: float
    n: int
    estimate: float
    ci: ConfidenceInterval
    confidence_level: float

    def confidence_interval(self) -> ConfidenceInterval:
        """The distribution-free interval (ends may be infinite when ``n`` is small)."""
        return self.ci

    def __repr__(self) -> str:
        return (f"QuantileDifference(q={self.q:g}, n={self.n}, estimate={self.estimate:+.4g} "
                f"[{self.ci.low:+.4g}, {self.ci.high:+.4g}])")

    def to_dict(self) -> dict[str, Any]:
        """Plain data; NaN and infinities become ``None``."""
        return {"q": self.q, "n": self.n, "estimate": _none(self.estimate),
                "ci": _ci_dict(self.ci), "confidence_level": self.confidence_level}


def quantile_difference(served: Sequence[float] | np.ndarray,
                        shadow: Sequence[float] | np.ndarray, q: float = 0.5,
                        confidence_level: float = 0.95) -> QuantileDifference:
    """The ``q`` quantile of the paired differences (``numpy`` default interpolation) with the
    distribution-free interval of :func:`order_statistic_ranks`."""
    a, b = _pairs(served, shadow, "quantile_difference")
    if a.size == 0:
        raise AnalysisError("quantile_difference needs at least 1 pair")
    d = np.sort(b - a)
    r, s = order_statistic_ranks(int(d.size), q, confidence_level)
    ci = ConfidenceInterval(-math.inf if r is None else float(d[r - 1]),
                            math.inf if s is None else float(d[s - 1]))
    return QuantileDifference(q, int(d.size), float(np.quantile(d, q)), ci, confidence_level)


@dataclass(frozen=True)
class LatencyRatio:
    """``Q_shadow(q) / Q_served(q)`` on the same requests, percentile-bootstrap interval."""

    q: float
    n: int
    served: float
    shadow: float
    ratio: float
    ci: ConfidenceInterval
    confidence_level: float
    resamples: int
    method: str = "percentile bootstrap over requests (pairs kept together)"

    def confidence_interval(self) -> ConfidenceInterval:
        """The bootstrap interval at :attr:`confidence_level`."""
        return self.ci

    def __repr__(self) -> str:
        return (f"LatencyRatio(p{100 * self.q:g}: shadow {self.shadow:.4g} / served "
                f"{self.served:.4g} = {self.ratio:.4g} [{self.ci.low:.4g}, {self.ci.high:.4g}],"
                f" n={self.n})")

    def to_dict(self) -> dict[str, Any]:
        """Plain data; NaN and infinities become ``None``."""
        return {"q": self.q, "n": self.n, "served": _none(self.served),
                "shadow": _none(self.shadow), "ratio": _none(self.ratio),
                "ci": _ci_dict(self.ci), "confidence_level": self.confidence_level,
                "resamples": self.resamples, "method": self.method}


def _ratio(served: np.ndarray, shadow: np.ndarray, q: float, axis: int = -1) -> np.ndarray:
    with np.errstate(all="ignore"):  # a zero served quantile: an infinite ratio
        out: np.ndarray = np.quantile(shadow, q, axis=axis) / np.quantile(served, q, axis=axis)
    return out


def latency_ratio(served_ms: Sequence[float] | np.ndarray, shadow_ms: Sequence[float] | np.ndarray,
                  q: float = 0.5, confidence_level: float = 0.95, *,
                  resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
                  ) -> LatencyRatio:
    """The ratio of the shadow's to the served model's latency quantile on the same requests.

    The interval is deterministic for given data (fixed ``seed``). Needs at least 2 pairs
    and positive latencies; a zero served quantile gives an infinite ratio."""
    a, b = _pairs(served_ms, shadow_ms, "latency_ratio")
    _level(confidence_level)
    if not 0.0 < q < 1.0:
        raise AnalysisError(f"q ({q!r}) must be in (0, 1)")
    if a.size < 2:
        raise AnalysisError(f"latency_ratio needs at least 2 pairs, got {a.size}")
    if np.any(a < 0) or np.any(b < 0):
        raise AnalysisError("latency_ratio: latencies must be >= 0")
    est = float(_ratio(a, b, q))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # identical resamples (e.g. constant latencies) give a degenerate, but correct,
        # interval; a zero served quantile gives infinite ratios (and scipy's standard error
        # of them overflows): both are answers, not faults
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap((a, b), lambda x, y, axis=-1: _ratio(x, y, q, axis), paired=True,
                              vectorized=True, n_resamples=resamples, method="percentile",
                              confidence_level=confidence_level, batch=200,
                              random_state=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    ci = ConfidenceInterval(lo if math.isfinite(lo) else -math.inf,
                            hi if math.isfinite(hi) else math.inf)
    return LatencyRatio(q, int(a.size), float(np.quantile(a, q)), float(np.quantile(b, q)),
                        est, ci, confidence_level, resamples)


@dataclass(frozen=True)
class PairedLoss:
    """Mean loss of shadow minus served on labelled pairs: paired t and Wilcoxon signed-rank."""

    t: MeanDifference
    wilcoxon_statistic: float
    wilcoxon_pvalue: float

    @property
    def difference(self) -> float:
        """Mean loss difference ``shadow - served`` (negative: the shadow is better)."""
        return self.t.difference

    @property
    def pvalue(self) -> float:
        """The paired t test's p-value."""
        return self.t.pvalue

    def confidence_interval(self) -> ConfidenceInterval:
        """The paired t interval of the mean loss difference."""
        return self.t.ci

    def __repr__(self) -> str:
        return (f"PairedLoss(n={self.t.n}, shadow - served = {self.t.difference:+.4g} "
                f"[{self.t.ci.low:+.4g}, {self.t.ci.high:+.4g}], t p={self.t.pvalue:.3g}, "
                f"Wilcoxon p={self.wilcoxon_pvalue:.3g})")

    def to_dict(self) -> dict[str, Any]:
        """Plain data; NaN and infinities become ``None``."""
        return {"t": self.t.to_dict(), "wilcoxon_statistic": _none(self.wilcoxon_statistic),
                "wilcoxon_pvalue": _none(self.wilcoxon_pvalue)}


def paired_loss(served_loss: Sequence[float] | np.ndarray,
                shadow_loss: Sequence[float] | np.ndarray,
                confidence_level: float = 0.95) -> PairedLoss:
    """Compare per-request losses of the two models (``scipy.stats.wilcoxon`` with its
    defaults: zero differences dropped, exact null for small samples without ties). The
    Wilcoxon p-value is NaN when every difference is zero."""
    a, b = _pairs(served_loss, shadow_loss, "paired_loss")
    t = mean_difference(a, b, confidence_level)
    d = b - a
    if np.all(d == 0):
        return PairedLoss(t, math.nan, math.nan)
    with warnings.catch_warnings():
        # scipy warns that it switches to the normal approximation with ties: expected here
        warnings.simplefilter("ignore", UserWarning)
        w = stats.wilcoxon(d)
    return PairedLoss(t, float(w.statistic), float(w.pvalue))
