"""``analysis.always_valid()``: an always-valid p-value and interval at this moment.

The mixture SPRT of :func:`~modelrouter.stats.always_valid_test` (normal mixture, Johari et al.)
on the difference treatment minus control and its variance (the sum of both groups' squared
standard errors: unpooled, per unit, delta method for ratio metrics). The sequence it runs on is
every recorded look's (difference, variance) followed by the current one, so the p-value is the
running minimum over the official looks and now, and the interval the running intersection.

The mixing variance ``tau2`` is :func:`~modelrouter.stats.mixing_variance` of the plan's
*horizon variance* (the variance of the difference at the planned maximum units, fixed at the
first recorded look; see :mod:`modelrouter.analysis.horizon`): the interval is then narrowest
at the planned end. ``tau2`` must not follow the data, so it is frozen with the horizon; pass
``tau2=`` to choose it yourself (any positive value keeps the guarantee).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from modelrouter.analysis.compare import compare
from modelrouter.analysis.data import AnalysisData
from modelrouter.analysis.horizon import planned_ratio, resolve_horizon
from modelrouter.analysis.sequential import resolve_target
from modelrouter.exceptions import AnalysisError
from modelrouter.stats import AlwaysValidResult, always_valid_test, mixing_variance
from modelrouter.stats.results import ConfidenceInterval

__all__ = ["AlwaysValidAnalysis", "always_valid_analysis"]


@dataclass(frozen=True)
class AlwaysValidAnalysis:
    """Always-valid test of one comparison; ``pvalue`` may be read at any time."""

    metric: str
    variant: str
    control: str
    pvalue: float
    difference: float
    std_err: float
    alpha: float
    decision: str
    tau2: float
    looks: int
    tau2_source: str = field(default="", repr=False)
    result: AlwaysValidResult | None = field(default=None, repr=False, compare=False)

    def confidence_interval(self, confidence_level: float | None = None) -> ConfidenceInterval:
        """Always-valid interval (default level ``1 - alpha``), intersected over the looks."""
        assert self.result is not None
        level = 1.0 - self.alpha if confidence_level is None else confidence_level
        return self.result.confidence_interval(level)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for code and JSON."""
        ci = self.confidence_interval()
        return {"metric": self.metric, "variant": self.variant, "control": self.control,
                "pvalue": self.pvalue, "difference": self.difference, "std_err": self.std_err,
                "alpha": self.alpha, "decision": self.decision, "tau2": self.tau2,
                "tau2_source": self.tau2_source, "looks": self.looks,
                "confidence_interval": ci.to_dict()}

    def explain(self) -> str:
        """Plain words: what was computed, from which looks, and why peeking is allowed."""
        assert self.result is not None
        return (f"Always-valid test of {self.metric!r}: {self.variant} vs {self.control}, over "
                f"{self.looks - 1} recorded look(s) and now. Mixing variance: "
                f"{self.tau2_source}. " + self.result.explain(self.alpha))


def always_valid_analysis(data: AnalysisData, metric: str | None = None,
                          variant: str | None = None, *,
                          tau2: float | None = None,
                          alpha: float | None = None) -> AlwaysValidAnalysis:
    """See the module docstring; ``metric`` defaults to the config's primary.

    ``alpha`` (default: the plan's) replaces the plan's alpha for the decision, the interval's
    level and the default ``tau2``, e.g. the Bonferroni share ``plan.alpha / K`` with ``K``
    treatments (a Bonferroni split keeps always-valid p-values valid jointly: Ville's
    inequality holds for each, and the union bound needs no independence).
    """
    t = resolve_target(data, metric, variant, "always_valid")
    if alpha is None:
        alpha = t.plan.alpha
    elif not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise AnalysisError(f"alpha ({alpha!r}) must lie in (0, 1)")
    cmp = compare(data, t.metric, t.variant)
    if tau2 is None:
        ratio = planned_ratio(data.config, data.control, t.variant, data.variants)
        horizon = resolve_horizon(t.plan, t.spec, cmp.control, ratio, t.looks)
        tau2 = mixing_variance(horizon_variance=horizon.horizon_variance, alpha=float(alpha))
        source = (f"tau2={tau2:.4g} makes the interval narrowest at the planned maximum of "
                  f"{horizon.planned_units:,} units, where the difference has variance "
                  f"{horizon.horizon_variance:.4g} ({horizon.how})"
                  + ("; provisional until the first look is recorded"
                     if horizon.provisional else ""))
    else:
        if not (isinstance(tau2, (int, float)) and math.isfinite(tau2) and tau2 > 0):
            raise AnalysisError(f"tau2 ({tau2!r}) must be a positive number")
        source = f"tau2={tau2:.4g} given by the caller"
    variance = cmp.control.std_err**2 + cmp.treatment.std_err**2
    if not math.isfinite(variance):
        raise AnalysisError(f"the variance of the difference in {t.metric!r} is not finite yet")
    diffs = [k.difference for k in t.looks] + [cmp.difference]
    variances = [k.variance for k in t.looks] + [variance]
    res = always_valid_test(diffs, variances, float(tau2))
    return AlwaysValidAnalysis(
        metric=t.metric, variant=t.variant, control=data.control, pvalue=res.pvalue,
        difference=res.difference, std_err=res.std_err, alpha=float(alpha),
        decision="reject" if res.pvalue <= alpha else "continue", tau2=float(tau2),
        looks=res.looks, tau2_source=source, result=res)
