"""Inference after a group-sequential test stopped: intervals and estimates that stay honest.

The naive estimate and its fixed-sample interval at the look where a test stopped are biased:
only large estimates cross an early boundary, so stopping early selects overestimates, and the
interval ``estimate +- 1.96 s.e.`` does not cover at its nominal rate. Two remedies (Jennison &
Turnbull 2000, ch. 8 and 9; Wassmer & Brannath 2016, sec. 4.1):

- **Repeated confidence intervals** (J&T ch. 9): at look ``k``, ``estimate_k +- c_k * se_k``
  with ``c_k`` the look's efficacy boundary (the two-sided critical |z|; a one-sided design's
  upper boundary, so the interval's level is ``1 - 2 alpha``). They hold *simultaneously* over all
  looks: P(the true effect is in every look's interval) >= ``1 - alpha`` (two-sided design),
  because the true effect leaves an interval exactly when the z statistic centred at the truth
  crosses the boundary. Valid whenever and however the test is stopped, futility included.
- **Stage-wise ordering** (Armitage 1957; Tsiatis, Rosner & Mehta 1984; J&T sec. 8.4): the
  sample space is ordered by the look of stopping first (an earlier upper crossing is more
  extreme), then by the z at that look. ``G(mu) = P_mu(an outcome at least as extreme as the
  observed one)`` = sum over earlier looks of the upper exit probabilities + P(still running at
  the stopping look and ``Z >= z_obs``), increasing in the drift ``mu``. The **p-value** is
  ``G(0)`` (two-sided: ``2 min(G(0), 1 - G(0))``), the **median-unbiased estimate** solves
  ``G(mu) = 1/2`` and the **confidence interval** ``G(mu) = tail`` and ``G(mu) = 1 - tail``
  with ``tail = alpha / sided`` (so a one-sided 0.025 or a two-sided 0.05 design gives a 95%
  interval), as rpact's ``getFinalPValue`` / ``getFinalConfidenceInterval`` and its median
  unbiased estimate (group-sequential designs). The probabilities come from the same recursive
  integration as the boundaries (:mod:`modelrouter.stats.sequential_recursion`) and ``brentq``
  solves for the drift. Also defined when the test ended at the last look without crossing.

Non-binding futility bounds are ignored by both (rpact's convention for ``bindingFutility =
FALSE``): the efficacy boundaries, hence the type I error and these intervals, never depend on
whether a futility bound was obeyed. A lower boundary crossing of a two-sided design is handled
by the symmetry ``Z -> -Z``: lower exits at earlier looks are the most extreme in that
direction.

The drift ``mu`` (E[Z at information rate 1]) becomes an effect through the stopping look:
``effect = mu * sqrt(t_k) * se_k`` (information proportional to the rate, as in the design).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtri

from modelrouter.stats.jsondata import finite_or_none
from modelrouter.stats.results import ConfidenceInterval
from modelrouter.stats.sequential import SequentialDesign
from modelrouter.stats.sequential_recursion import Z_MAX, BrownianRecursion

__all__ = ["StagewiseInference", "repeated_confidence_intervals", "stagewise_exceedance",
           "stagewise_inference"]



def repeated_confidence_intervals(estimates: Sequence[float] | np.ndarray,
                                  std_errs: Sequence[float] | np.ndarray,
                                  design: SequentialDesign) -> tuple[ConfidenceInterval, ...]:
    """``estimate_k +- c_k se_k`` for looks ``1..len(estimates)`` of ``design`` (J&T ch. 9).

    Simultaneous level ``1 - alpha`` for a two-sided design, ``1 - 2 alpha`` for a one-sided one
    (the one-sided boundary used on both sides, as rpact does). An infinite boundary (a look
    that spends no alpha) gives an infinite interval.
    """
    est = np.asarray(estimates, dtype=float).ravel()
    se = np.asarray(std_errs, dtype=float).ravel()
    if est.shape != se.shape or est.size > design.looks or est.size == 0:
        raise ValueError(f"estimates and std_errs must have the same length, 1 to "
                         f"{design.looks}, got {est.size} and {se.size}")
    if np.any(~np.isfinite(se)) or np.any(se < 0):
        raise ValueError("std_errs must be finite and >= 0")
    out = []
    for k in range(est.size):
        c = float(design.z[k])
        half = math.inf if not math.isfinite(c) or c >= Z_MAX else c * float(se[k])
        out.append(ConfidenceInterval(float(est[k]) - half, float(est[k]) + half))
    return tuple(out)


def _upper_tail(z: float, look: int, design: SequentialDesign, drift: float) -> float:
    """P_drift(stop above the boundary before ``look``, or still running at it with Z >= z)."""
    t, c = design.information_rates, design.z
    rec = BrownianRecursion(drift)
    total = 0.0
    for j in range(look - 1):
        tj, cj = float(t[j]), float(c[j])
        total += rec.upper(cj, tj)
        rec.advance(-cj if design.sided == 2 else -math.inf, cj, tj)
    return total + rec.upper(z, float(t[look - 1]))


def stagewise_exceedance(statistic: float, look: int, design: SequentialDesign,
                         drift: float = 0.0) -> float:
    """``G(drift)``: the probability, under E[Z at t=1] = ``drift``, of an outcome at least as
    large as stopping at ``look`` with z = ``statistic`` in the stage-wise ordering."""
    k = _check_look(look, design)
    if design.sided == 2 and statistic <= -float(design.z[k - 1]) and k < design.looks:
        # a lower crossing: by symmetry, 1 - P(at least as extreme downwards)
        return 1.0 - _upper_tail(-statistic, k, design, -drift)
    return _upper_tail(statistic, k, design, drift)


def _check_look(look: int, design: SequentialDesign) -> int:
    if isinstance(look, bool) or not isinstance(look, (int, np.integer)) or not (
            1 <= look <= design.looks):
        raise ValueError(f"look ({look!r}) must be between 1 and {design.looks}")
    return int(look)


@dataclass(frozen=True)
class StagewiseInference:
    """Inference at the look where a group-sequential test stopped (stage-wise ordering).

    ``estimate`` is the median-unbiased (bias-adjusted) estimate of the effect, ``ci`` its
    ``confidence`` interval and ``pvalue`` the stage-wise p-value (sidedness of the design);
    ``naive_estimate`` / ``naive_ci`` are the look's own estimate and fixed-sample interval at
    the same level, biased after an early stop. ``crossed`` tells whether the boundary was
    crossed at ``look`` (else the test ended at the last look without crossing).
    """

    look: int
    crossed: bool
    statistic: float
    pvalue: float
    estimate: float
    ci: ConfidenceInterval
    naive_estimate: float
    naive_ci: ConfidenceInterval
    confidence: float
    scale: float  # effect per unit of drift: sqrt(t_k) * se_k

    def confidence_interval(self) -> ConfidenceInterval:
        """The stage-wise confidence interval (scipy's method name)."""
        return self.ci

    def __repr__(self) -> str:
        return (f"StagewiseInference(look={self.look}, crossed={self.crossed}, "
                f"pvalue={self.pvalue:.4g}, estimate={self.estimate:.6g}, ci=[{self.ci.low:.6g}, "
                f"{self.ci.high:.6g}], naive_estimate={self.naive_estimate:.6g}, "
                f"confidence={self.confidence:g})")

    def to_dict(self) -> dict[str, Any]:
        """Plain data; non-finite numbers become None."""
        return {"look": self.look, "crossed": self.crossed,
                "statistic": finite_or_none(self.statistic),
                "pvalue": finite_or_none(self.pvalue),
                "estimate": finite_or_none(self.estimate),
                "ci": {"low": finite_or_none(self.ci.low), "high": finite_or_none(self.ci.high)},
                "naive_estimate": finite_or_none(self.naive_estimate),
                "naive_ci": {"low": finite_or_none(self.naive_ci.low),
                             "high": finite_or_none(self.naive_ci.high)},
                "confidence": self.confidence}


def _solve_drift(g: Any, target: float, start: float, step: float) -> float:
    """The drift at which the increasing function ``g`` equals ``target`` (bracket expanded)."""
    def f(m: float) -> float:
        return float(g(m)) - target
    lo, hi = start - step, start + step
    for _ in range(60):
        if f(lo) <= 0.0:
            break
        lo -= step
        step *= 2.0
    for _ in range(60):
        if f(hi) >= 0.0:
            break
        hi += step
        step *= 2.0
    if not (f(lo) <= 0.0 <= f(hi)):
        raise ValueError(f"no drift gives a stage-wise probability of {target:g} (the "
                         "statistic is beyond what double precision resolves)")
    return float(brentq(f, lo, hi, xtol=1e-9, rtol=1e-12))


def stagewise_inference(statistic: float, look: int, design: SequentialDesign,
                        std_err: float = 1.0, confidence: float | None = None
                        ) -> StagewiseInference:
    """p-value, median-unbiased estimate and confidence interval after stopping at ``look``.

    ``statistic`` is the z at ``look`` (the look that crossed ``design``'s boundary, or its last
    look); ``std_err`` the standard error of the effect estimate at that look, which sets the
    effect scale (``effect = drift * sqrt(t_look) * std_err``; the default 1 reports the drift
    at the look, E[Z_look]). ``confidence`` defaults to ``1 - 2 alpha / sided``.
    """
    k = _check_look(look, design)
    z = float(statistic)
    if not math.isfinite(z):
        raise ValueError(f"statistic ({statistic!r}) must be finite")
    if not (math.isfinite(std_err) and std_err > 0):
        raise ValueError(f"std_err ({std_err!r}) must be finite and > 0")
    c = float(design.z[k - 1])
    crossed = (abs(z) if design.sided == 2 else z) >= c
    if not crossed and k < design.looks:
        raise ValueError(f"look {k} of {design.looks} did not cross its boundary ({c:.4f}): "
                         "the test has not stopped, use the repeated confidence interval")
    tail = design.alpha / design.sided if confidence is None else (1.0 - confidence) / 2.0
    if not 0.0 < tail < 0.5:
        raise ValueError(f"confidence ({confidence!r}) must be in (0, 1)")
    t_k = float(design.information_rates[k - 1])
    scale = math.sqrt(t_k) * float(std_err)
    rt = math.sqrt(t_k)

    def g(m: float) -> float:
        return stagewise_exceedance(z, k, design, m)

    g0 = g(0.0)
    pvalue = g0 if design.sided == 1 else min(1.0, 2.0 * min(g0, 1.0 - g0))
    # brackets around the fixed-sample answers (the adjusted ones are close to them)
    q = -float(ndtri(tail))
    step = 0.25 / rt
    mue = _solve_drift(g, 0.5, z / rt, step)
    low = _solve_drift(g, tail, mue - q / rt, step)
    high = _solve_drift(g, 1.0 - tail, mue + q / rt, step)
    return StagewiseInference(
        look=k, crossed=bool(crossed), statistic=z, pvalue=float(pvalue),
        estimate=mue * scale, ci=ConfidenceInterval(low * scale, high * scale),
        naive_estimate=z * float(std_err),
        naive_ci=ConfidenceInterval((z - q) * float(std_err), (z + q) * float(std_err)),
        confidence=1.0 - 2.0 * tail, scale=scale)
