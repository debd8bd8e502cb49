"""What ``analysis.sequential()`` reports beyond the decision: honest intervals and estimates
after stopping, and the non-binding futility bounds of the plan.

- **Repeated confidence intervals** at every look (recorded ones and the current one):
  ``difference_k +- c_k se_k`` with ``c_k`` the look's boundary, valid simultaneously over all
  looks (Jennison & Turnbull 2000, ch. 9; :func:`~modelrouter.stats.repeated_confidence_intervals`).
- **Adjusted inference** once the test stopped (a boundary crossed, or the planned maximum was
  reached): the stage-wise ordering p-value, median-unbiased estimate and confidence interval
  (Tsiatis, Rosner & Mehta 1984; :func:`~modelrouter.stats.stagewise_inference`), at the look of
  the decision. The naive estimate of a look that crossed early is biased away from zero (only
  large estimates cross early) and its fixed-sample interval does not have its nominal coverage.
- **Futility** (``plan.futility_spending``): non-binding beta-spending bounds
  (:func:`~modelrouter.stats.futility_bounds`) at the plan's alternative, i.e. the drift at
  which the plan's design (equally spaced looks, no futility) has the plan's power, which is the
  drift its maximum information was sized for. The looks' actual information rates are used,
  as for the efficacy boundaries. The planned consequences (power and expected information with
  and without obeying the bounds) come from :func:`~modelrouter.stats.futility_design`.

Orientation: estimates and intervals are ``treatment - control`` in the metric's unit; a
one-sided plan on a ``lower_is_better`` metric tests the sign-flipped z, and the results are
flipped back here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelrouter.analysis.text import p_equals
from modelrouter.config.plan import ExperimentPlan
from modelrouter.stats import (
    ConfidenceInterval,
    SequentialDesign,
    StagewiseInference,
    design_characteristics,
    futility_bounds,
    futility_design,
    repeated_confidence_intervals,
    spending_boundaries,
    stagewise_inference,
)
from modelrouter.stats.jsondata import finite_or_none

__all__ = ["AdjustedInference", "FutilityCheck", "adjusted_inference", "futility_check",
           "repeated_intervals"]



def _ci_dict(ci: ConfidenceInterval) -> dict[str, float | None]:
    return {"low": finite_or_none(ci.low), "high": finite_or_none(ci.high)}


def _fmt_ci(ci: ConfidenceInterval) -> str:
    return f"[{ci.low:+.4g}, {ci.high:+.4g}]"


def repeated_intervals(estimates: Sequence[float], std_errs: Sequence[float],
                       design: SequentialDesign) -> tuple[ConfidenceInterval, ...]:
    """Repeated confidence intervals of the looks (NaN where a look's s.e. is unusable)."""
    se = np.asarray(std_errs, dtype=float)
    bad = ~np.isfinite(se) | (se < 0)
    out = repeated_confidence_intervals(np.asarray(estimates, dtype=float),
                                        np.where(bad, 0.0, se), design)
    return tuple(ConfidenceInterval(math.nan, math.nan) if b else c
                 for c, b in zip(out, bad, strict=True))


@dataclass(frozen=True)
class AdjustedInference:
    """Inference at the look where the test stopped (see the module docstring).

    ``estimate`` is the median-unbiased estimate, ``ci`` its ``confidence`` interval and
    ``pvalue`` the stage-wise p-value; ``naive_estimate`` and ``naive_ci`` are that look's own
    difference and fixed-sample interval, biased after an early stop.
    """

    look: int
    crossed: bool
    pvalue: float
    estimate: float
    ci: ConfidenceInterval
    naive_estimate: float
    naive_ci: ConfidenceInterval
    confidence: float
    early: bool  # stopped before the last planned look

    def confidence_interval(self) -> ConfidenceInterval:
        """The stage-wise (bias-aware) confidence interval."""
        return self.ci

    def to_dict(self) -> dict[str, Any]:
        """Plain data; non-finite numbers become None."""
        return {"look": self.look, "crossed": self.crossed, "pvalue": finite_or_none(self.pvalue),
                "estimate": finite_or_none(self.estimate), "ci": _ci_dict(self.ci),
                "naive_estimate": finite_or_none(self.naive_estimate),
                "naive_ci": _ci_dict(self.naive_ci), "confidence": self.confidence,
                "early": self.early}

    def explain(self, variant: str, control: str) -> str:
        """Plain words, stating that the naive interval is biased after an early stop."""
        lvl = f"{self.confidence:.0%}"
        how = (f"The test stopped at look {self.look} (boundary crossed)" if self.crossed else
               f"The test ended at look {self.look}, the planned maximum, without crossing")
        naive = (f"the naive estimate {variant} - {control} = {self.naive_estimate:+.4g} "
                 f"(fixed-sample {lvl} CI {_fmt_ci(self.naive_ci)})")
        if self.early:
            naive += (" is biased away from zero after stopping early (only large estimates "
                      "cross an early boundary) and its interval does not have its nominal "
                      "coverage")
        return (f"{how}: {naive}. Bias-adjusted (stage-wise ordering, Tsiatis, Rosner & Mehta "
                f"1984): median-unbiased estimate {self.estimate:+.4g}, {lvl} CI "
                f"{_fmt_ci(self.ci)}, p {p_equals(self.pvalue)}.")


@functools.lru_cache(maxsize=256)
def _stagewise(z: float, look: int, rates: tuple[float, ...], bounds: tuple[float, ...],
               alpha: float, sided: int, se: float) -> StagewiseInference:
    """Memoised: the dashboard and the verdict ask again for the same recorded looks."""
    design = SequentialDesign(np.array(rates), np.array(bounds), np.zeros(len(rates)), alpha,
                              sided, "recorded")
    return stagewise_inference(z, look, design, std_err=se)


def adjusted_inference(design: SequentialDesign, statistics: Sequence[float],
                       estimates: Sequence[float], std_errs: Sequence[float], look: int,
                       sign: float, planned_looks: int) -> AdjustedInference | None:
    """Stage-wise inference at ``look`` (1-based); ``sign`` -1 when the z is the flipped one.
    None when that look's standard error is unusable."""
    se = float(std_errs[look - 1])
    if not (math.isfinite(se) and se > 0):
        return None
    t = design.information_rates[:look]
    res = _stagewise(float(statistics[look - 1]), look, tuple(map(float, t)),
                     tuple(map(float, design.z[:look])), design.alpha, design.sided, se)
    lo, hi = sorted((sign * res.ci.low, sign * res.ci.high))
    d = float(estimates[look - 1])
    half = (res.naive_ci.high - res.naive_ci.low) / 2.0
    early = look < max(planned_looks, 1) and float(design.information_rates[look - 1]) < 1.0
    return AdjustedInference(look, res.crossed, res.pvalue, sign * res.estimate,
                             ConfidenceInterval(lo, hi), d, ConfidenceInterval(d - half, d + half),
                             res.confidence, early)


@dataclass(frozen=True)
class FutilityCheck:
    """Non-binding futility bounds at the looks so far and what obeying them costs.

    ``bounds`` are per look on the z scale of the test (one-sided: stop when ``z <= bound``;
    two-sided: when ``|z| < bound``); ``crossed`` the looks whose z was in the futility region;
    ``stop`` whether the current look is (and the test has not rejected): stopping for futility
    is then recommended, continuing stays allowed (the efficacy boundaries ignore futility).
    ``power`` / ``power_ignoring_futility`` and ``asn_h0`` / ``asn_h0_ignoring_futility``
    (expected information under no effect, as a fraction of the maximum) are the plan's, at
    equally spaced looks.
    """

    spending: str
    gamma: float | None
    sided: int
    bounds: tuple[float, ...]
    crossed: tuple[int, ...]
    stop: bool
    drift: float
    power: float
    power_ignoring_futility: float
    asn_h0: float
    asn_h0_ignoring_futility: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data (an infinite bound, i.e. none at that look, becomes None)."""
        return {"spending": self.spending, "gamma": self.gamma, "sided": self.sided,
                "bounds": [finite_or_none(b) for b in self.bounds], "crossed": list(self.crossed),
                "stop": self.stop, "drift": self.drift, "power": self.power,
                "power_ignoring_futility": self.power_ignoring_futility,
                "asn_h0": self.asn_h0, "asn_h0_ignoring_futility": self.asn_h0_ignoring_futility}

    def explain(self) -> str:
        """Plain words: the bound now, the advice, and the planned cost."""
        b = self.bounds[-1]
        region = (f"z <= {b:.4f}" if self.sided == 1 else f"|z| < {b:.4f}") if (
            math.isfinite(b) and (self.sided == 1 or b > 0)) else "none at this look"
        head = (f"Futility bound (non-binding, {self.spending} beta spending of "
                f"1 - power): {region}.")
        advice = (" STOP FOR FUTILITY: this look is in the futility region; the treatment is "
                  "unlikely to prove better. Continuing is allowed (the efficacy boundaries "
                  "ignore the futility bounds, so the false-positive rate is kept)."
                  if self.stop else "")
        earlier = [k for k in self.crossed if k < len(self.bounds)]
        past = (f" Earlier look(s) {', '.join(map(str, earlier))} were in the futility region "
                "and the test continued (allowed: the bounds are non-binding)." if earlier else "")
        cost = (f" Planned cost: power {self.power:.3f} with the bounds obeyed (vs "
                f"{self.power_ignoring_futility:.3f} without); expected information under no "
                f"effect {self.asn_h0:.3f} of the maximum (vs "
                f"{self.asn_h0_ignoring_futility:.3f}).")
        return head + advice + past + cost


@functools.lru_cache(maxsize=32)
def _planned(plan: ExperimentPlan, alpha: float) -> tuple[float, float, float, float, float]:
    """(drift, power with / without futility, ASN_0 with / without) of the plan's design."""
    rates = np.arange(1, plan.looks + 1) / plan.looks
    design = spending_boundaries(rates, alpha, plan.sided, plan.spending, plan.gamma)
    drift = design_characteristics(design, plan.power).drift
    fd = futility_design(rates, alpha, 1.0 - plan.power, plan.sided, plan.spending, plan.gamma,
                         plan.futility_spending or "obrien-fleming", plan.futility_gamma,
                         drift=drift)
    return (drift, float(fd.power[-1]), fd.power_ignoring_futility, fd.asn_h0,
            fd.asn_h0_ignoring_futility)


def futility_check(plan: ExperimentPlan, alpha: float, design: SequentialDesign,
                   statistics: Sequence[float], rejected: bool) -> FutilityCheck | None:
    """The plan's futility bounds at the looks of ``design`` (None without futility)."""
    if plan.futility_spending is None:
        return None
    drift, power, power_no, asn0, asn0_no = _planned(plan, float(alpha))
    rates = design.information_rates
    final = float(rates[-1]) >= 1.0
    f = futility_bounds(rates, design.z, drift, 1.0 - plan.power, plan.sided,
                        plan.futility_spending, plan.futility_gamma, last_is_final=final)
    z = np.asarray(statistics, dtype=float)
    inside = z <= f if plan.sided == 1 else np.abs(z) < f
    if final:
        inside[-1] = False  # the final look decides reject / no effect, not futility
    crossed = tuple(int(k) + 1 for k in np.flatnonzero(inside))
    return FutilityCheck(plan.futility_spending, plan.futility_gamma, plan.sided,
                         tuple(float(b) for b in f), crossed,
                         bool(inside[-1]) and not rejected, drift, power, power_no, asn0,
                         asn0_no)
