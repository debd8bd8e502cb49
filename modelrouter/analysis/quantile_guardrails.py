"""Quantile guardrails: the treatment's p95 latency against the control's.

Estimate. Each variant's quantile comes from the store's latency histogram
(:mod:`modelrouter.store.histogram`, 2%-wide log buckets), interpolated inside the bucket: it is
within one bucket width of the exact sample quantile.

Uncertainty. Woodruff's interval (:func:`modelrouter.stats.quantile.woodruff`) inverts the CDF
at ``q +- z sqrt(q (1 - q) / n_eff)``. At request level every request is independent:
``n_eff = n``. In user- or session-level experiments requests of one unit are correlated, so
``n_eff = n / deff``. The design effect of the exceedance indicator ``1{latency > Q}`` would need
per-unit exceedance counts, which the store does not keep; we use instead the design effect of
the **mean latency**, which it can estimate exactly: the cluster-robust (delta-method) variance
of the per-request mean from the per-unit sums, over the naive variance ``s^2 / n`` that treats
requests as independent (``s^2`` from the histogram), floored at 1. This is an approximation:
it is conservative when the unit effect scales the whole distribution (a lognormal per-user
factor: 95% intervals cover 0.99 of the time in ``tests/analysis/test_quantile_guardrails.py``,
where treating requests as independent covers < 0.90), and anti-conservative when units differ
mainly in the spread of their own latencies (measured coverage ~0.93 with 5 requests per unit,
~0.90 with 20). The always-valid interval the guardrail decides on is much wider than these
fixed intervals, which keeps its false-fail rate low in both cases.

Comparison. The relative change is tested on ``log(Q_t / Q_c)`` with the delta-method variance
``se_log_t^2 + se_log_c^2``, each ``se_log`` read off that arm's Woodruff interval on the log
scale (width over ``2 z``). Absolute margins use ``Q_t - Q_c`` and the interval widths. The
decision is then the mean guardrail's (:func:`modelrouter.analysis.guardrails.decide`, applied
by :func:`modelrouter.analysis.guardrails.quantile_guardrail_results`): an always-valid
interval, so repeated looks keep the false-fail rate below ``alpha``.

**Adaptively routed traffic is refused** (:func:`adaptive_refusal`). Under a bandit the share
of each arm changes over time with the data, so an arm's pooled latency distribution over-weights
the epochs in which the bandit favoured it; if latency drifts over time (load, time of day) its
plain quantile is biased, and after an A/B <-> bandit switch the histogram also mixes the A/B
units' requests with the bandit's. The valid estimate would weight each request by the inverse
of its propensity (a weighted empirical CDF, Hajek-normalised, and its quantile), but the store's
histogram keeps only counts per variant, not per epoch or per propensity, so the weights cannot
be applied. The guardrail is therefore ``inconclusive`` with the reason ("p95 guardrail is not
available on adaptively routed traffic: ..."); the mean guardrail on ``latency_ms`` is
inverse-propensity weighted and remains available.

Caveats: the histogram counts requests under the unit's (first) variant, as the analysis of
means does; at extreme sample sizes (standard errors below ~0.5% of the quantile) the
within-bucket interpolation error, though far below the bucket width for smooth
distributions, is no longer negligible against the interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelrouter.analysis.data import AnalysisData
from modelrouter.analysis.results import normal_quantile
from modelrouter.stats.moments import Moments
from modelrouter.stats.quantile import QuantileEstimate, woodruff
from modelrouter.stats.results import ConfidenceInterval
from modelrouter.store.histogram import EDGES_MS, LatencyHistogram

__all__ = ["QuantileRatio", "adaptive_refusal", "design_effect", "quantile_ratio"]

_EDGES = np.asarray(EDGES_MS)
# a representative value per slot for the per-request variance: geometric bucket centres
_MID = np.concatenate(([EDGES_MS[0] / 2.0], np.sqrt(_EDGES[:-1] * _EDGES[1:]), [EDGES_MS[-1]]))


def design_effect(counts: np.ndarray, moments: Moments | None) -> float:
    """Cluster-robust over naive variance of the mean latency (>= 1); 1 without units."""
    if moments is None:
        return 1.0
    events = moments.n * moments.mean_y
    n = float(counts.sum())
    if moments.n < 2 or events < 2 or n < 2:
        return math.nan
    mean = float(counts @ _MID) / n
    s2 = float(counts @ (_MID - mean) ** 2) / (n - 1.0)
    robust = moments.ratio_var
    if not (s2 > 0 and math.isfinite(robust)):
        return math.nan
    return max(1.0, robust / (s2 / events))


@dataclass(frozen=True)
class QuantileRatio:
    """``Q_q(treatment) / Q_q(control)`` of ``latency_ms`` with the per-arm estimates.

    ``log_ratio`` and ``variance`` are on the log scale (what the guardrail tests); the fixed
    (single-look) interval is ``exp(log_ratio +- z sqrt(variance))``.
    """

    q: float
    control: str
    variant: str
    log_ratio: float
    variance: float
    control_estimate: QuantileEstimate
    treatment_estimate: QuantileEstimate
    deff_control: float
    deff_treatment: float

    @property
    def ratio(self) -> float:
        """The point estimate ``Q_t / Q_c``."""
        return math.exp(self.log_ratio)

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Fixed-look interval for the ratio (not valid under repeated looks; the guardrail
        uses the always-valid one)."""
        z = normal_quantile(confidence_level)
        half = z * math.sqrt(self.variance)
        return ConfidenceInterval(math.exp(self.log_ratio - half),
                                  math.exp(self.log_ratio + half))

    def __repr__(self) -> str:
        ci = self.confidence_interval()
        return (f"QuantileRatio(p{self.q * 100:g} {self.variant}/{self.control}="
                f"{self.ratio:.4g}, 95% interval [{ci.low:.4g}, {ci.high:.4g}], "
                f"deff=({self.deff_control:.3g}, {self.deff_treatment:.3g}))")

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {"q": self.q, "control": self.control, "variant": self.variant,
                "ratio": self.ratio, "log_ratio": self.log_ratio, "variance": self.variance,
                "control_estimate": self.control_estimate.to_dict(),
                "treatment_estimate": self.treatment_estimate.to_dict(),
                "deff_control": self.deff_control, "deff_treatment": self.deff_treatment}


def _arm(hist: LatencyHistogram, i: int, moments: Moments | None, q: float
         ) -> tuple[QuantileEstimate, float] | str:
    """One arm's quantile estimate and design effect, or why it cannot be estimated."""
    counts = hist.counts[i]
    n = int(counts.sum())
    if n < 2:
        return "too few requests in the latency histogram"
    deff = design_effect(counts, moments)
    if not math.isfinite(deff):
        return "too few units to estimate the design effect"
    return woodruff(_EDGES, counts, q, n_eff=n / deff), deff


def adaptive_refusal(data: AnalysisData, q: float) -> str | None:
    """Why a ``q`` quantile guardrail is refused on this snapshot (bandit decisions, alone or
    after a mode switch; see the module docstring), or None on A/B traffic."""
    if not data.adaptive:
        return None
    what = ("A/B and bandit phases are mixed in the latency histogram" if data.switched else
            "the bandit's shares changed with the data")
    return (f"p{q * 100:g} guardrail is not available on adaptively routed traffic: {what}, and "
            "the histogram keeps counts per variant only, not the propensities an "
            "inverse-propensity weighted quantile needs, so its quantile could be biased; the "
            "mean guardrail on latency_ms is propensity-weighted and remains available")


def quantile_ratio(data: AnalysisData, variant: str, q: float = 0.95) -> QuantileRatio | str:
    """The ``q`` quantile of ``latency_ms`` of ``variant`` against the control, or why not
    (also :func:`adaptive_refusal` on adaptively routed traffic)."""
    refused = adaptive_refusal(data, q)
    if refused is not None:
        return refused
    hist = data.snapshot.latency
    if hist is None:
        return "this store keeps no latency histogram"
    c, t = data.variants.index(data.control), data.variants.index(variant)
    moments = data.moments("latency_ms") if data.snapshot.units is not None else None
    arm_c = _arm(hist, c, moments[c] if moments is not None else None, q)
    if isinstance(arm_c, str):
        return arm_c
    arm_t = _arm(hist, t, moments[t] if moments is not None else None, q)
    if isinstance(arm_t, str):
        return arm_t
    (ec, dc), (et, dt) = arm_c, arm_t
    if not (ec.estimate > 0 and et.estimate > 0 and math.isfinite(ec.estimate)
            and math.isfinite(et.estimate)):
        return "a quantile is zero or beyond the histogram's range"
    return QuantileRatio(q, data.control, variant, math.log(et.estimate / ec.estimate),
                         ec.se_log**2 + et.se_log**2, ec, et, dc, dt)
