"""Quantiles of a bucketed distribution, with Woodruff's confidence interval.

The estimate inverts the histogram's CDF, interpolating linearly inside the bucket where the
cumulative count crosses ``q * n`` (as Prometheus' ``histogram_quantile`` does), so it lies in
the same bucket as the exact sample quantile: its error is at most one bucket width.

Woodruff (1952, JASA 47:635) inverts the CDF's pointwise interval: with ``se = sqrt(q (1 - q) /
n_eff)``, the interval is ``[Q(q - z se), Q(q + z se)]``. It needs no density estimate and is
asymmetric where the distribution is skewed. ``n_eff`` is the number of independent
observations; for clustered data pass ``n / deff`` (see
:mod:`modelrouter.analysis.quantile_guardrails`). The standard error of the quantile (or of its
log, for ratios of quantiles) is read off the interval as its width over ``2 z``, the
delta-method form ``sqrt(q (1 - q) / n_eff) / f(Q(q))`` with the density ``f`` replaced by a
finite difference of the empirical CDF (Woodruff's own variance estimator; Sitter & Wu, 2001,
"A note on Woodruff confidence intervals for quantiles", discuss why it behaves well in the
tails).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

from modelrouter.stats.results import ConfidenceInterval

__all__ = ["QuantileEstimate", "histogram_quantile", "woodruff"]


def _check(edges: np.ndarray, counts: np.ndarray, q: float) -> None:
    if not 0.0 < q < 1.0:
        raise ValueError(f"q ({q!r}) must be in (0, 1)")
    if counts.ndim != 1 or edges.ndim != 1 or counts.size != edges.size + 1:
        raise ValueError(f"counts ({counts.size} slots) must have len(edges) + 1 "
                         f"({edges.size + 1}): underflow, buckets, overflow")
    if np.any(counts < 0) or np.any(np.diff(edges) <= 0) or edges[0] < 0:
        raise ValueError("counts must be >= 0 and edges increasing from >= 0")


def histogram_quantile(edges: Sequence[float] | np.ndarray,
                       counts: Sequence[int] | np.ndarray, q: float) -> float:
    """The ``q`` quantile of a histogram: slot 0 is ``[0, edges[0]]``, slot ``i`` is
    ``(edges[i-1], edges[i]]``, the last slot is above ``edges[-1]`` (``inf`` if the quantile
    falls there); NaN when the histogram is empty."""
    e = np.asarray(edges, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    _check(e, c, q)
    return float(_invert(e, c, np.array([q]))[0])


def _invert(e: np.ndarray, c: np.ndarray, qs: np.ndarray) -> np.ndarray:
    n = c.sum()
    if n <= 0:
        return np.full(qs.shape, np.nan)
    cum = np.cumsum(c)
    target = np.clip(qs, 0.0, 1.0) * n
    s = np.minimum(np.searchsorted(cum, target, side="left"), c.size - 1)
    before = np.where(s > 0, cum[s - 1], 0.0)
    lower = np.concatenate(([0.0], e))[s]
    upper = np.concatenate((e, [np.inf]))[s]
    inside = np.where(c[s] > 0, (target - before) / np.where(c[s] > 0, c[s], 1.0), 0.0)
    out = lower + inside * (upper - lower)
    return np.where(s == c.size - 1, np.inf, out)


@dataclass(frozen=True)
class QuantileEstimate:
    """A quantile, Woodruff's interval, and the standard errors read off that interval."""

    q: float
    estimate: float
    low: float
    high: float
    confidence_level: float
    n: float
    n_eff: float
    se: float  # of the estimate: (high - low) / (2 z)
    se_log: float  # of log(estimate): (log high - log low) / (2 z)

    def confidence_interval(self) -> ConfidenceInterval:
        """Woodruff's interval at :attr:`confidence_level`."""
        return ConfidenceInterval(self.low, self.high)

    def __repr__(self) -> str:
        return (f"QuantileEstimate(p{self.q * 100:g}={self.estimate:.4g}, "
                f"{self.confidence_level:.0%} interval [{self.low:.4g}, {self.high:.4g}], "
                f"n={self.n:g}, n_eff={self.n_eff:.4g})")

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {"q": self.q, "estimate": self.estimate, "low": self.low, "high": self.high,
                "confidence_level": self.confidence_level, "n": self.n, "n_eff": self.n_eff,
                "se": self.se, "se_log": self.se_log}


def woodruff(edges: Sequence[float] | np.ndarray, counts: Sequence[int] | np.ndarray,
             q: float, *, n_eff: float | None = None,
             confidence_level: float = 0.95) -> QuantileEstimate:
    """The ``q`` quantile of a histogram with Woodruff's interval; ``n_eff`` defaults to the
    count (independent observations). Bounds beyond the data are ``0`` / ``inf`` (and the
    standard errors ``inf``): too few observations in the tail to bound the quantile."""
    e = np.asarray(edges, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    _check(e, c, q)
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level ({confidence_level!r}) must be in (0, 1)")
    n = float(c.sum())
    ne = n if n_eff is None else float(n_eff)
    if not ne > 0 or not math.isfinite(ne):
        raise ValueError(f"n_eff ({n_eff!r}) must be a positive number")
    z = float(norm.ppf(0.5 + confidence_level / 2.0))
    half = z * math.sqrt(q * (1.0 - q) / ne)
    est, lo, hi = _invert(e, c, np.array([q, q - half, q + half]))
    if q - half <= 0.0:
        lo = 0.0
    if q + half >= 1.0:
        hi = math.inf
    se = (hi - lo) / (2.0 * z)
    se_log = ((math.log(hi) - math.log(lo)) / (2.0 * z) if lo > 0 and math.isfinite(hi)
              else math.inf)
    return QuantileEstimate(q, float(est), float(lo), float(hi), confidence_level, n, ne,
                            float(se), se_log)
