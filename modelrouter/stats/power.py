"""Planning: sample size, minimum detectable effect, duration, and the cost of sequential looks.

Sample sizes use the normal approximation of the test the analysis will run. For means (Welch's
t-test, large samples) and ratio metrics (delta-method z-test) that is

    n_control = (z_(1-alpha/sided) + z_power)^2 * (var_control + var_treatment / ratio) / delta^2,

with ``ratio = n_treatment / n_control`` and ``var = sd^2`` (Chow, Shao & Wang, "Sample Size
Calculations in Clinical Research", sec. 3.2); statsmodels' ``NormalIndPower`` is the same
formula (``effect_size = delta / sd``).

Proportions are tested by ``compare()`` with the classic two-proportion z-test, whose statistic
divides by the *pooled* standard error (:func:`~modelrouter.stats.two_proportion_ztest`). Under
H0 that statistic is N(0, 1) with the pooled variance; under H1 the difference has the unpooled
variance. The sample size that gives this test its power is therefore Fleiss's (Fleiss, Levin &
Paik, "Statistical Methods for Rates and Proportions", 3rd ed. 2003, eq. 4.14 without the
continuity correction; statsmodels ``samplesize_proportions_2indep_onetail``):

    n_control = (z_(1-alpha/sided) sqrt(pbar (1 - pbar) (1 + 1/ratio))
                 + z_power sqrt(p1 (1 - p1) + p2 (1 - p2) / ratio))^2 / (p2 - p1)^2,
    pbar = (p1 + ratio p2) / (1 + ratio)                (the pooled rate the test estimates)

(``null_variance="pooled"``, the default). ``null_variance="unpooled"`` puts the unpooled
variance in both terms (the formula above for means with ``var = p (1 - p)``): the right one for
an unpooled (Wald) z-test, and the one of the seed table (31,231 per group for 5% -> 5.5%; the
pooled form needs 31,234). statsmodels' usual recipe for proportions, ``NormalIndPower`` with
Cohen's ``h = 2 asin(sqrt(p2)) - 2 asin(sqrt(p1))``, plans the arcsine test, which we do not run.

Ratio metrics (``sum(x) / sum(y)`` per variant, e.g. value per event with ``y`` the events of a
unit) use the per-unit linearised variance of ``R = mean_x / mean_y`` (the delta method; Deng,
Knoblich & Lu 2018, "Applying the Delta Method in Metric Analytics", KDD),

    sigma^2 = (var_x - 2 R cov_xy + R^2 var_y) / mean_y^2,

so that ``Var(R_hat) ~ sigma^2 / n``: the variance the analysis' delta-method z-test uses.

A group-sequential design needs ``inflation_factor`` times the fixed-design sample size to keep
the same power (Jennison & Turnbull 2000, sec. 2.6); pass the design as ``sequential=``. The
design's operating characteristics live in :mod:`modelrouter.stats.inflation` (re-exported
here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtri

from modelrouter.stats.inflation import (
    DesignCharacteristics,
    check_power,
    design_characteristics,
    inflation_factor,
)
from modelrouter.stats.sequential import SequentialDesign, check_alpha, check_sided

__all__ = [
    "NULL_VARIANCES",
    "DesignCharacteristics",
    "DetectableEffect",
    "SampleSize",
    "design_characteristics",
    "duration_days",
    "inflation_factor",
    "mde_means",
    "mde_proportions",
    "mde_ratio",
    "ratio_unit_variance",
    "sample_size_means",
    "sample_size_proportions",
    "sample_size_ratio",
]


NullVariance = Literal["pooled", "unpooled"]
#: How the planning formula for proportions treats the variance under H0 (see the module doc).
NULL_VARIANCES: tuple[NullVariance, ...] = ("pooled", "unpooled")


@dataclass(frozen=True)
class SampleSize:
    """Units needed per group; ``n_per_group`` is the control group (treatment: ratio times it)."""

    n_per_group: int
    n_treatment: int
    n_total: int
    n_exact: float = field(repr=False)
    inflation_factor: float = 1.0
    details: str = field(default="", repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python fields."""
        return {"n_per_group": self.n_per_group, "n_treatment": self.n_treatment,
                "n_total": self.n_total, "n_exact": self.n_exact,
                "inflation_factor": self.inflation_factor, "details": self.details}

    def explain(self) -> str:
        """The formula and inputs in plain words."""
        return self.details


def _ceil(x: float) -> int:
    # Guard against 8155.000000000001 from rounding in the formula.
    return int(math.ceil(x - 1e-9 * max(1.0, x)))


def _z_sum(alpha: float, power: float, sided: int) -> float:
    return float(ndtri(1.0 - check_alpha(alpha) / check_sided(sided)) + ndtri(check_power(power)))


def _check_ratio(ratio: float) -> float:
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio > 0):
        raise ValueError(f"ratio ({ratio!r}) must be a positive number")
    return float(ratio)


def _inflation(sequential: SequentialDesign | None, alpha: float, sided: int,
               power: float) -> float:
    if sequential is None:
        return 1.0
    if not isinstance(sequential, SequentialDesign):
        raise ValueError(f"sequential ({type(sequential).__name__}) must be a SequentialDesign")
    if not math.isclose(sequential.alpha, alpha) or sequential.sided != sided:
        raise ValueError(f"sequential design (alpha={sequential.alpha:g}, sided="
                         f"{sequential.sided}) must match alpha={alpha:g}, sided={sided}")
    return inflation_factor(sequential, power)


def _result(n1: float, ratio: float, infl: float, what: str) -> SampleSize:
    n1 = n1 * infl
    a, b = _ceil(n1), _ceil(n1 * ratio)
    seq = "" if infl == 1.0 else f" Multiplied by the sequential inflation factor {infl:.4f}."
    return SampleSize(a, b, a + b, n1, infl, what + seq)


def _check_null_variance(null_variance: str) -> NullVariance:
    if null_variance not in NULL_VARIANCES:
        raise ValueError(f"null_variance ({null_variance!r}) must be one of "
                         f"{', '.join(map(repr, NULL_VARIANCES))}")
    return null_variance


def _proportion_sds(p1: float, p2: float, r: float, null_variance: str) -> tuple[float, float]:
    """Standard deviations of the difference (times sqrt(n_control)) under H0 and H1."""
    sd1 = math.sqrt(p1 * (1 - p1) + p2 * (1 - p2) / r)
    if null_variance == "unpooled":
        return sd1, sd1
    pbar = (p1 + r * p2) / (1 + r)
    return math.sqrt(pbar * (1 - pbar) * (1 + 1 / r)), sd1


def sample_size_proportions(p1: float, p2: float, alpha: float = 0.05, power: float = 0.8,
                            ratio: float = 1.0, sided: int = 2,
                            sequential: SequentialDesign | None = None,
                            null_variance: NullVariance = "pooled") -> SampleSize:
    """Units per group to detect conversion ``p1`` (control) vs ``p2`` (treatment) with the
    pooled two-proportion z-test ``compare()`` runs (Fleiss; ``null_variance="unpooled"`` for
    a Wald test, see the module docstring)."""
    for name, p in (("p1", p1), ("p2", p2)):
        if not (isinstance(p, (int, float)) and 0.0 < p < 1.0):
            raise ValueError(f"{name} ({p!r}) must be in (0, 1)")
    if p1 == p2:
        raise ValueError(f"p2 ({p2!r}) must differ from p1 ({p1!r})")
    nv = _check_null_variance(null_variance)
    r, zs = _check_ratio(ratio), _z_sum(alpha, power, sided)
    za = float(ndtri(1.0 - alpha / sided))
    sd0, sd1 = _proportion_sds(p1, p2, r, nv)
    n1 = (za * sd0 + (zs - za) * sd1) ** 2 / (p2 - p1) ** 2
    if nv == "unpooled":
        what = (f"n = (z_(1-{alpha:g}/{sided}) + z_{power:g})^2 * (p1(1-p1) + p2(1-p2)/ratio)"
                f" / (p2-p1)^2 = {zs:.4f}^2 * {sd1**2:.6g} / {(p2 - p1) ** 2:.6g} with "
                f"p1={p1:g}, p2={p2:g}, ratio={r:g} (unpooled variance under H0 and H1: "
                "a Wald z-test).")
    else:
        what = (f"n = (z_(1-{alpha:g}/{sided}) sqrt(pbar(1-pbar)(1+1/ratio)) + z_{power:g} "
                f"sqrt(p1(1-p1) + p2(1-p2)/ratio))^2 / (p2-p1)^2 with pbar = "
                f"(p1 + ratio p2)/(1 + ratio) = {(p1 + r * p2) / (1 + r):.6g}, p1={p1:g}, "
                f"p2={p2:g}, ratio={r:g}: {za:.4f} * {sd0:.6g} + {zs - za:.4f} * {sd1:.6g}, "
                "squared, over {:.6g} (Fleiss: pooled variance under H0, as the "
                "two-proportion z-test compare() runs; unpooled under H1).".format(
                    (p2 - p1) ** 2))
    return _result(n1, r, _inflation(sequential, alpha, sided, power), what)


def sample_size_means(delta: float, sd: float, alpha: float = 0.05, power: float = 0.8,
                      ratio: float = 1.0, sided: int = 2, sd_treatment: float | None = None,
                      sequential: SequentialDesign | None = None) -> SampleSize:
    """Units per group to detect a difference ``delta`` in means with per-unit ``sd``."""
    if not (isinstance(delta, (int, float)) and math.isfinite(delta) and delta != 0):
        raise ValueError(f"delta ({delta!r}) must be a non-zero number")
    sd2 = sd if sd_treatment is None else sd_treatment
    for name, s in (("sd", sd), ("sd_treatment", sd2)):
        if not (isinstance(s, (int, float)) and math.isfinite(s) and s > 0):
            raise ValueError(f"{name} ({s!r}) must be a positive number")
    r, zs = _check_ratio(ratio), _z_sum(alpha, power, sided)
    n1 = zs**2 * (sd**2 + sd2**2 / r) / delta**2
    what = (f"n = (z_(1-{alpha:g}/{sided}) + z_{power:g})^2 * (sd^2 + sd_treatment^2/ratio) / "
            f"delta^2 with delta={delta:g}, sd={sd:g}, sd_treatment={sd2:g}, ratio={r:g}.")
    return _result(n1, r, _inflation(sequential, alpha, sided, power), what)


def _check_finite(name: str, value: float, positive: bool = False,
                  non_negative: bool = False) -> float:
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    if ok and positive and not value > 0:
        raise ValueError(f"{name} ({value!r}) must be a positive number")
    if ok and non_negative and not value >= 0:
        raise ValueError(f"{name} ({value!r}) must be a non-negative number")
    if not ok:
        raise ValueError(f"{name} ({value!r}) must be a finite number")
    return float(value)


def ratio_unit_variance(mean_x: float, mean_y: float, var_x: float, var_y: float,
                        cov_xy: float) -> float:
    """Per-unit linearised variance of ``R = mean_x / mean_y`` (Deng, Knoblich & Lu 2018):
    ``(var_x - 2 R cov_xy + R^2 var_y) / mean_y^2``, so ``Var(R_hat) ~ this / n``.

    ``x`` is the per-unit sum of values, ``y`` the per-unit number of events (``mean_y > 0``);
    the moments are per unit, e.g. from last period's data."""
    mx = _check_finite("mean_x", mean_x)
    my = _check_finite("mean_y", mean_y, positive=True)
    vx = _check_finite("var_x", var_x, non_negative=True)
    vy = _check_finite("var_y", var_y, non_negative=True)
    c = _check_finite("cov_xy", cov_xy)
    if c * c > vx * vy * (1 + 1e-9) + 1e-300:
        raise ValueError(f"cov_xy ({cov_xy!r}) must satisfy cov_xy^2 <= var_x * var_y "
                         f"({vx * vy:.6g})")
    r = mx / my
    sigma2 = (vx - 2.0 * r * c + r * r * vy) / (my * my)
    if not sigma2 > 0:
        raise ValueError(f"the linearised variance ({sigma2:.6g}) of the ratio must be "
                         "positive (x proportional to y has no variance to plan for)")
    return sigma2


def sample_size_ratio(delta: float, mean_x: float, mean_y: float, var_x: float, var_y: float,
                      cov_xy: float, alpha: float = 0.05, power: float = 0.8,
                      ratio: float = 1.0, sided: int = 2,
                      sequential: SequentialDesign | None = None) -> SampleSize:
    """Units per group to detect an absolute change ``delta`` in a ratio metric
    ``R = sum(x) / sum(y)`` (e.g. mean value per event), given per-unit moments of ``x`` (sum of
    values of a unit) and ``y`` (events of a unit) in the control group.

    ``n = (z_(1-alpha/sided) + z_power)^2 (sigma_c^2 + sigma_t^2 / ratio) / delta^2`` with the
    linearised per-unit variance ``sigma^2`` of :func:`ratio_unit_variance` (Deng, Knoblich & Lu
    2018). Assumes the treatment's per-unit linearised variance equals the control's
    (``sigma_t = sigma_c``: the change shifts the ratio, not its spread), as
    :func:`sample_size_means` does without ``sd_treatment``. With ``var_y = 0`` and
    ``mean_y = 1`` (one event per unit) it is :func:`sample_size_means` with ``sd = sqrt(var_x)``.
    """
    if not (isinstance(delta, (int, float)) and math.isfinite(delta) and delta != 0):
        raise ValueError(f"delta ({delta!r}) must be a non-zero number")
    sigma2 = ratio_unit_variance(mean_x, mean_y, var_x, var_y, cov_xy)
    r, zs = _check_ratio(ratio), _z_sum(alpha, power, sided)
    n1 = zs**2 * (sigma2 + sigma2 / r) / delta**2
    what = (f"n = (z_(1-{alpha:g}/{sided}) + z_{power:g})^2 * sigma^2 (1 + 1/ratio) / delta^2 "
            f"with sigma^2 = (var_x - 2 R cov_xy + R^2 var_y) / mean_y^2 = {sigma2:.6g} "
            f"(R = {mean_x / mean_y:.6g}; linearised per-unit variance, treatment assumed "
            f"equal), delta={delta:g}, ratio={r:g}.")
    return _result(n1, r, _inflation(sequential, alpha, sided, power), what)


@dataclass(frozen=True)
class DetectableEffect:
    """The smallest true effect detected with the requested power at the given sample size."""

    absolute: float
    relative: float
    baseline: float
    n_per_group: float

    def to_dict(self) -> dict[str, float]:
        """Plain-Python fields."""
        return {"absolute": self.absolute, "relative": self.relative,
                "baseline": self.baseline, "n_per_group": self.n_per_group}


def _check_n(n: float) -> float:
    if not (isinstance(n, (int, float)) and math.isfinite(n) and n > 0):
        raise ValueError(f"n ({n!r}) must be a positive number of units per group")
    return float(n)


def mde_proportions(n: float, p1: float, alpha: float = 0.05, power: float = 0.8,
                    ratio: float = 1.0, sided: int = 2,
                    sequential: SequentialDesign | None = None,
                    null_variance: NullVariance = "pooled") -> DetectableEffect:
    """Smallest increase over ``p1`` detectable with ``n`` control units (inverts
    :func:`sample_size_proportions` with the same ``null_variance``)."""
    n_in, n = n, _check_n(n)
    if not (isinstance(p1, (int, float)) and 0.0 < p1 < 1.0):
        raise ValueError(f"p1 ({p1!r}) must be in (0, 1)")
    nv = _check_null_variance(null_variance)
    r, zs = _check_ratio(ratio), _z_sum(alpha, power, sided)
    za = float(ndtri(1.0 - alpha / sided))
    n_eff = n / _inflation(sequential, alpha, sided, power)

    def excess(p2: float) -> float:  # > 0 when n_eff units are more than p2 needs
        sd0, sd1 = _proportion_sds(p1, p2, r, nv)
        return math.sqrt(n_eff) * (p2 - p1) - (za * sd0 + (zs - za) * sd1)

    hi = 1.0 - 1e-12
    if excess(hi) < 0:
        raise ValueError(f"n ({n_in!r}) is too small to detect any increase over p1={p1:g}")
    p2 = float(brentq(excess, p1, hi, xtol=1e-14, rtol=1e-14))
    return DetectableEffect(p2 - p1, (p2 - p1) / p1, float(p1), n)


def mde_means(n: float, sd: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0,
              sided: int = 2, baseline: float = math.nan,
              sequential: SequentialDesign | None = None) -> DetectableEffect:
    """Smallest difference in means detectable with ``n`` control units (closed form)."""
    n = _check_n(n)
    if not (isinstance(sd, (int, float)) and math.isfinite(sd) and sd > 0):
        raise ValueError(f"sd ({sd!r}) must be a positive number")
    r, zs = _check_ratio(ratio), _z_sum(alpha, power, sided)
    n_eff = n / _inflation(sequential, alpha, sided, power)
    delta = zs * sd * math.sqrt((1 + 1 / r) / n_eff)
    return DetectableEffect(delta, delta / baseline if baseline else math.nan, baseline, n)


def mde_ratio(n: float, mean_x: float, mean_y: float, var_x: float, var_y: float,
              cov_xy: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0,
              sided: int = 2, sequential: SequentialDesign | None = None) -> DetectableEffect:
    """Smallest absolute change of the ratio ``mean_x / mean_y`` detectable with ``n`` control
    units (inverts :func:`sample_size_ratio`; ``relative`` is against that ratio)."""
    n = _check_n(n)
    sigma2 = ratio_unit_variance(mean_x, mean_y, var_x, var_y, cov_xy)
    r, zs = _check_ratio(ratio), _z_sum(alpha, power, sided)
    n_eff = n / _inflation(sequential, alpha, sided, power)
    delta = zs * math.sqrt(sigma2 * (1 + 1 / r) / n_eff)
    base = mean_x / mean_y
    return DetectableEffect(delta, delta / base if base else math.nan, base, n)


def duration_days(n_total: int | SampleSize, units_per_day: float,
                  traffic_fraction: float = 1.0) -> int:
    """Whole days until ``n_total`` units enter the experiment at ``units_per_day`` (times the
    share of traffic sent into the experiment)."""
    total = n_total.n_total if isinstance(n_total, SampleSize) else n_total
    if not (isinstance(total, (int, np.integer)) and total >= 0):
        raise ValueError(f"n_total ({total!r}) must be a non-negative integer")
    if not (isinstance(units_per_day, (int, float)) and units_per_day > 0):
        raise ValueError(f"units_per_day ({units_per_day!r}) must be positive")
    if not (isinstance(traffic_fraction, (int, float)) and 0 < traffic_fraction <= 1):
        raise ValueError(f"traffic_fraction ({traffic_fraction!r}) must be in (0, 1]")
    return int(math.ceil(total / (units_per_day * traffic_fraction) - 1e-9))
