"""The planned horizon of a sequential test: maximum units and the variance of the difference there.

Both come from the config's :class:`~modelrouter.config.plan.ExperimentPlan`:

- ``max_units`` given: that many control units and ``ratio`` times as many treatment units.
- ``mde`` given: the group-sequential sample size for that absolute effect
  (:func:`~modelrouter.stats.sample_size_proportions` for conversions, ``sample_size_means``
  otherwise) with the design of ``looks`` equally spaced looks as ``sequential=``, i.e. the
  fixed-sample size times the design's inflation factor.
- ``mde`` and ``rho`` (or ``variance_reduction``) given: the same for the CUPED-adjusted test,
  ``1 - rho**2`` times the fixed-sample size (:func:`~modelrouter.stats.power_adjusted.
  adjust_sample_size`; conversions with the unpooled variance, as Welch's t on the adjusted
  outcome), and the variance at the horizon ``1 - rho**2`` times the unadjusted per-unit
  variance; the description says how many units the adjustment saves against the same plan
  without it.

The nuisance parameter (conversion rate of the control, or per-unit standard deviation) comes
from the plan when given. Otherwise it is **estimated from the control's data** and frozen at the
first recorded look: every later look, and the always-valid mixing variance, reuse look 1's
``planned_units`` and ``horizon_variance``, so the information rates of recorded looks never
move. Before look 1 the horizon is provisional and the explanation says so. Estimating a
nuisance parameter at an interim look is standard (an internal pilot, Wittes & Brittain 1990)
and does not touch the effect estimate; it does tie the horizon to early data, so give
``baseline`` / ``sd`` when you know them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from modelrouter.analysis.results import VariantSummary
from modelrouter.config import MetricSpec, RouterConfig
from modelrouter.config.plan import ExperimentPlan
from modelrouter.exceptions import AnalysisError
from modelrouter.stats import (
    inflation_factor,
    sample_size_means,
    sample_size_proportions,
    spending_boundaries,
)
from modelrouter.stats.power_adjusted import adjust_sample_size
from modelrouter.store.looks import Look

if TYPE_CHECKING:
    from modelrouter.stats.sequential import Sided, Spending

__all__ = ["Horizon", "planned_ratio", "resolve_horizon"]


@dataclass(frozen=True)
class Horizon:
    """Units in both groups at the planned maximum, and the variance of the difference there."""

    planned_units: int
    horizon_variance: float
    how: str
    provisional: bool


def planned_ratio(config: RouterConfig, control: str, variant: str,
                  variants: Sequence[str]) -> float:
    """Treatment units per control unit under the configured weights (1 for an even split)."""
    weights = config.weights or {v: 1.0 / len(variants) for v in variants}
    wc, wt = weights.get(control, 0.0), weights.get(variant, 0.0)
    return wt / wc if wc > 0 and wt > 0 else 1.0


def _ceil(x: float) -> int:
    return int(math.ceil(x - 1e-9 * max(1.0, x)))  # as stats.power: 8155.000000001 -> 8155


@functools.lru_cache(maxsize=64)
def _inflation(alpha: float, power: float, sided: Sided, looks: int, spending: Spending,
               gamma: float | None) -> float:
    """Inflation factor of ``looks`` equally spaced looks (memoised: ~50 ms per design)."""
    design = spending_boundaries(np.arange(1, looks + 1) / looks, alpha, sided, spending, gamma)
    return inflation_factor(design, power)


def resolve_horizon(plan: ExperimentPlan, spec: MetricSpec, control: VariantSummary,
                    ratio: float, looks: Sequence[Look] = ()) -> Horizon:
    """The horizon of one comparison; recorded ``looks`` (of that comparison) fix it."""
    if looks:
        first = looks[0]
        return Horizon(first.planned_units, first.horizon_variance,
                       f"fixed at look 1: {first.horizon}", False)
    conversion = spec.aggregate == "any"
    given = plan.baseline if conversion else plan.sd
    if given is not None:
        nuisance, source = float(given), "from the plan"
    else:
        nuisance = control.mean if conversion else control.std
        source = f"estimated from the control's {control.units:,} units"
        if not math.isfinite(nuisance) or (conversion and not 0 < nuisance < 1) or (
                not conversion and nuisance <= 0):
            what = "conversion rate" if conversion else "standard deviation"
            value = "not defined" if math.isnan(nuisance) else repr(nuisance)
            raise AnalysisError(f"cannot derive the horizon: the control's {what} "
                                f"({value}) is not usable yet; give plan."
                                f"{'baseline' if conversion else 'sd'} or wait for more data")
    label = (f"control rate {nuisance:.4g}" if conversion else f"per-unit sd {nuisance:.4g}")
    vr = plan.expected_variance_reduction
    if plan.max_units is not None:
        n_c, n_t = plan.max_units, math.ceil(plan.max_units * ratio - 1e-9)
        how = f"max_units={plan.max_units:,} per group from the plan"
    else:
        assert plan.mde is not None
        if conversion:
            p2 = nuisance + plan.mde if nuisance + plan.mde < 1 else nuisance - plan.mde
            if not 0 < p2 < 1:
                raise AnalysisError(f"plan.mde ({plan.mde!r}) is too large for a control rate "
                                    f"of {nuisance:.4g}")
            fixed = sample_size_proportions(nuisance, p2, plan.alpha, plan.power, ratio,
                                            plan.sided,
                                            null_variance="unpooled" if vr else "pooled")
        else:
            fixed = sample_size_means(plan.mde, nuisance, plan.alpha, plan.power, ratio,
                                      plan.sided)
        # the same as sequential=design, with the design's inflation factor computed once
        infl = _inflation(plan.alpha, plan.power, plan.sided, plan.looks, plan.spending,
                          plan.gamma)
        n_c, n_t = _ceil(fixed.n_exact * infl), _ceil(fixed.n_exact * infl * ratio)
        how = (f"sample size for mde={plan.mde:g} at alpha={plan.alpha:g}, power "
               f"{plan.power:g}, times the inflation factor {infl:.4f} of "
               f"{plan.looks} equally spaced {plan.spending} looks")
        if vr:
            adj = adjust_sample_size(fixed, variance_reduction=vr, ratio=ratio)
            before = n_c + n_t
            n_c, n_t = _ceil(adj.n_exact * infl), _ceil(adj.n_exact * infl * ratio)
            how += (f", times 1 - {vr:.4g} for the covariate adjustment (CUPED"
                    + ("" if plan.rho is None else f", rho {plan.rho:g}")
                    + f"): {before - n_c - n_t:,} units saved of {before:,}")
    per_unit_var = (nuisance * (1 - nuisance) if conversion else nuisance**2) * (1.0 - vr)
    variance = per_unit_var * (1.0 / n_c + 1.0 / n_t)
    return Horizon(n_c + n_t, variance, f"{how}; {label} {source}", given is None)
