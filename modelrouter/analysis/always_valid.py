"""``analysis.always_valid()``: an always-valid p-value and interval at this moment.

The mixture SPRT of :func:`~modelrouter.stats.always_valid_test` (normal mixture, Johari et al.)
on the difference treatment minus control and its variance (the sum of both groups' squared
standard errors: unpooled, per unit, delta method for ratio metrics; for a CUPED-adjusted
comparison the adjusted difference's own standard error,
:func:`~modelrouter.analysis.sequential.difference_std_err`). The sequence it runs on is
every recorded look's (difference, variance) followed by the current one, so the p-value is the
running minimum over the official looks and now, and the interval the running intersection.

**Events per arm.** A look enters the sequence only once each arm has
:data:`~modelrouter.stats.always_valid.MIN_EVENTS` (100) events (``min_events=`` changes it):
before that a heavy-tailed metric's variance is typically under-estimated, and the running
intersection would keep an early interval that is too narrow (issue 12: revenue with 5% buyers
covered 57% of the time instead of 95%; with the gate 95.5-98.4%; see
:mod:`modelrouter.stats.always_valid` and docs/statistics.md). Events are, per arm, the units
with a non-zero value (per-unit columns), for a binary metric the smaller of successes and
failures, and at request level (sums only, no per-unit values) the recorded values. A recorded
look keeps its difference, variance and units but not its event counts, so its events are
estimated as the current count scaled by the look's share of the current units (events accrue
with units); leaving a look out never costs validity, only a chance to reject earlier.

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

import numpy as np

from modelrouter.analysis.compare import compare
from modelrouter.analysis.data import AnalysisData
from modelrouter.analysis.horizon import planned_ratio, resolve_horizon
from modelrouter.analysis.results import ComparisonResult
from modelrouter.analysis.sequential import difference_std_err, resolve_target
from modelrouter.exceptions import AnalysisError
from modelrouter.stats import AlwaysValidResult, always_valid_test, mixing_variance
from modelrouter.stats.always_valid import MIN_EVENTS
from modelrouter.stats.results import ConfidenceInterval

__all__ = ["AlwaysValidAnalysis", "always_valid_analysis", "arm_events"]


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
    events: int = 0  # the smaller arm's events now
    min_events: int = MIN_EVENTS
    looks_entered: int = 0

    @property
    def method(self) -> str:
        """Which method, in one line (see :attr:`why` for the reason of the event gate)."""
        assert self.result is not None
        return self.result.method

    @property
    def why(self) -> str:
        """Why this method: the normal mixture with an estimated variance is valid only
        asymptotically, so looks wait for enough events per arm."""
        return (f"a look enters once each arm has >= {self.min_events} events: before that "
                "the variance of a skewed or heavy-tailed metric is typically under-estimated "
                "and the running intersection would keep a too narrow early interval")

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
                "looks_entered": self.looks_entered, "events": self.events,
                "min_events": self.min_events, "method": self.method, "why": self.why,
                "confidence_interval": {k: (x if math.isfinite(x) else None)
                                        for k, x in ci.to_dict().items()}}

    def explain(self) -> str:
        """Plain words: what was computed, from which looks, and why peeking is allowed."""
        assert self.result is not None
        waiting = ("" if self.looks_entered else
                   f" No look has entered yet: the smaller arm has {self.events:,} of the "
                   f"{self.min_events} events needed, so the p-value is 1 and the interval "
                   "unbounded.")
        return (f"Always-valid test of {self.metric!r}: {self.variant} vs {self.control}, over "
                f"{self.looks - 1} recorded look(s) and now. Mixing variance: "
                f"{self.tau2_source}. " + self.result.explain(self.alpha) + waiting
                + (" Events at recorded looks are estimated from their share of the current "
                   "units (looks do not keep event counts)." if self.looks > 1 else ""))


def arm_events(data: AnalysisData, metric: str, variant: str, cmp: ComparisonResult) -> int:
    """The smaller of the control's and ``variant``'s events now (see the module docstring:
    non-zero per-unit values; binary: the rarer of successes and failures; request level:
    recorded values)."""
    spec = data.spec(metric)
    arms = (cmp.control, cmp.treatment)
    if spec.aggregate == "any":
        counts = []
        for s in arms:
            k = int(round(s.mean * s.units)) if s.units and math.isfinite(s.mean) else 0
            counts += [k, s.units - k]
        return max(min(counts), 0)
    units = data.snapshot.units
    if units is None:
        return min(s.events for s in arms)
    nonzero = np.bincount(units.variant, weights=(units.x[metric] != 0).astype(np.float64),
                          minlength=len(data.variants))
    return int(min(nonzero[data.variant_index(data.control)],
                   nonzero[data.variant_index(variant)]))


def always_valid_analysis(data: AnalysisData, metric: str | None = None,
                          variant: str | None = None, *,
                          tau2: float | None = None,
                          alpha: float | None = None,
                          min_events: int | None = None) -> AlwaysValidAnalysis:
    """See the module docstring; ``metric`` defaults to the config's primary; ``min_events``
    (default :data:`~modelrouter.stats.always_valid.MIN_EVENTS`) per arm before a look enters.

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
    if min_events is None:
        min_events = MIN_EVENTS
    elif not (isinstance(min_events, int) and not isinstance(min_events, bool)
              and min_events >= 0):
        raise AnalysisError(f"min_events ({min_events!r}) must be a non-negative integer")
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
    variance = difference_std_err(cmp) ** 2
    if not math.isfinite(variance):
        raise AnalysisError(f"the variance of the difference in {t.metric!r} is not finite yet")
    diffs = [k.difference for k in t.looks] + [cmp.difference]
    variances = [k.variance for k in t.looks] + [variance]
    events = arm_events(data, t.metric, t.variant, cmp)
    units = cmp.control.units + cmp.treatment.units
    # recorded looks keep units, not events: scale the current count by the look's share
    scaled = [events * min(k.units / units, 1.0) if units else 0.0 for k in t.looks]
    res = always_valid_test(diffs, variances, float(tau2), events=[*scaled, events],
                            min_events=min_events)
    return AlwaysValidAnalysis(
        metric=t.metric, variant=t.variant, control=data.control, pvalue=res.pvalue,
        difference=res.difference, std_err=res.std_err, alpha=float(alpha),
        decision="reject" if res.pvalue <= alpha else "continue", tau2=float(tau2),
        looks=res.looks, tau2_source=source, result=res, events=events,
        min_events=min_events, looks_entered=res.looks_entered)
