"""Planning with a covariate adjustment (CUPED): fewer units for the same power.

With a pre-exposure covariate correlated ``rho`` with the outcome, the adjusted difference of
means has ``1 - rho^2`` times the variance of the unadjusted one in large samples (Deng, Xu,
Kohavi & Walker 2013, sec. 3; with several covariates ``1 - R^2``). The normal-approximation
sample size is proportional to that variance, so

    n_adjusted = (1 - rho^2) * n_unadjusted          (``variance_reduction = rho^2``)

and the units saved are ``n_unadjusted - n_adjusted`` (36% at rho = 0.6, 66% at rho = 0.81).
Give ``rho`` (the expected correlation, e.g. measured on past data) or ``variance_reduction``
directly (e.g. an earlier experiment's ``AdjustedResult.variance_reduction``).

Proportions: the adjusted test is Welch's t on the adjusted outcome, not the pooled
two-proportion z-test, so the base is the unpooled-variance formula
(``sample_size_proportions(null_variance="unpooled")``) scaled by ``1 - rho^2``; ``rho`` is then
the correlation of the 0/1 outcome with the covariate.

The reduction is an expectation: a ``rho`` that is too optimistic gives an underpowered test.
The realised ``variance_reduction`` of the result says what the data gave.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from modelrouter.stats.power import (
    SampleSize,
    sample_size_means,
    sample_size_proportions,
    sample_size_ratio,
)

__all__ = [
    "AdjustedSampleSize",
    "adjust_sample_size",
    "expected_variance_reduction",
    "sample_size_means_adjusted",
    "sample_size_proportions_adjusted",
    "sample_size_ratio_adjusted",
]


def expected_variance_reduction(rho: float | None = None,
                                variance_reduction: float | None = None) -> float:
    """``rho**2`` or ``variance_reduction`` (exactly one), checked to be in [0, 1)."""
    if (rho is None) == (variance_reduction is None):
        raise ValueError(f"give exactly one of rho ({rho!r}) and variance_reduction "
                         f"({variance_reduction!r})")
    if rho is not None:
        if not (isinstance(rho, (int, float)) and -1.0 < rho < 1.0):
            raise ValueError(f"rho ({rho!r}) must be in (-1, 1)")
        return float(rho) ** 2
    vr = variance_reduction
    if not (isinstance(vr, (int, float)) and 0.0 <= vr < 1.0):
        raise ValueError(f"variance_reduction ({vr!r}) must be in [0, 1)")
    return float(vr)


def _ceil(x: float) -> int:
    # as power.py: guard against 8155.000000000001 from rounding in the formula
    return int(math.ceil(x - 1e-9 * max(1.0, x)))


@dataclass(frozen=True)
class AdjustedSampleSize:
    """Units per group with the adjustment, and what the unadjusted test would need.

    ``units_saved`` counts both groups (``unadjusted.n_total - n_total``)."""

    n_per_group: int
    n_treatment: int
    n_total: int
    variance_reduction: float
    units_saved: int
    unadjusted: SampleSize = field(repr=False)
    n_exact: float = field(default=math.nan, repr=False)
    details: str = field(default="", repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python fields (the unadjusted plan nested)."""
        return {"n_per_group": self.n_per_group, "n_treatment": self.n_treatment,
                "n_total": self.n_total, "n_exact": self.n_exact,
                "variance_reduction": self.variance_reduction,
                "units_saved": self.units_saved, "unadjusted": self.unadjusted.to_dict(),
                "details": self.details}

    def explain(self) -> str:
        """The formula and inputs in plain words."""
        return self.details


def adjust_sample_size(base: SampleSize, *, rho: float | None = None,
                       variance_reduction: float | None = None,
                       ratio: float = 1.0) -> AdjustedSampleSize:
    """Scale an unadjusted plan by ``1 - rho^2`` (or ``1 - variance_reduction``); ``ratio``
    is the plan's allocation ratio ``n_treatment / n_control``."""
    vr = expected_variance_reduction(rho, variance_reduction)
    n1 = base.n_exact * (1.0 - vr)
    a, b = _ceil(n1), _ceil(n1 * ratio)
    what = (f"{base.details} Adjusted for covariates: n times (1 - {vr:.4g}) = "
            f"{1 - vr:.4g} (variance reduction {vr:.1%}"
            + (f", rho={rho:g}" if rho is not None else "") + "; Deng et al. 2013).")
    return AdjustedSampleSize(n_per_group=a, n_treatment=b, n_total=a + b,
                              variance_reduction=vr, units_saved=base.n_total - (a + b),
                              unadjusted=base, n_exact=n1, details=what)


def sample_size_means_adjusted(delta: float, sd: float, *, rho: float | None = None,
                               variance_reduction: float | None = None,
                               **kwargs: Any) -> AdjustedSampleSize:
    """:func:`~modelrouter.stats.power.sample_size_means` with a covariate adjustment
    (``kwargs``: its ``alpha``, ``power``, ``ratio``, ``sided``, ``sd_treatment``,
    ``sequential``)."""
    return adjust_sample_size(sample_size_means(delta, sd, **kwargs), rho=rho,
                              variance_reduction=variance_reduction,
                              ratio=kwargs.get("ratio", 1.0))


def sample_size_proportions_adjusted(p1: float, p2: float, *, rho: float | None = None,
                                     variance_reduction: float | None = None,
                                     **kwargs: Any) -> AdjustedSampleSize:
    """:func:`~modelrouter.stats.power.sample_size_proportions` (unpooled variance: the
    adjusted test is Welch's t, see the module doc) with a covariate adjustment."""
    if kwargs.get("null_variance", "unpooled") != "unpooled":
        raise ValueError(f"null_variance ({kwargs['null_variance']!r}) must be 'unpooled' for "
                         "an adjusted test (Welch's t on the adjusted outcome)")
    kwargs["null_variance"] = "unpooled"
    return adjust_sample_size(sample_size_proportions(p1, p2, **kwargs), rho=rho,
                              variance_reduction=variance_reduction,
                              ratio=kwargs.get("ratio", 1.0))


def sample_size_ratio_adjusted(delta: float, mean_x: float, mean_y: float, var_x: float,
                               var_y: float, cov_xy: float, *, rho: float | None = None,
                               variance_reduction: float | None = None,
                               **kwargs: Any) -> AdjustedSampleSize:
    """:func:`~modelrouter.stats.power.sample_size_ratio` with a covariate adjustment;
    ``rho`` is the correlation of the linearised ratio with the (linearised) covariate."""
    base = sample_size_ratio(delta, mean_x, mean_y, var_x, var_y, cov_xy, **kwargs)
    return adjust_sample_size(base, rho=rho, variance_reduction=variance_reduction,
                              ratio=kwargs.get("ratio", 1.0))
