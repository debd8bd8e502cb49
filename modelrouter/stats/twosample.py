"""Two-sample comparisons from sufficient statistics.

Every function takes per-group summaries (counts, means, variances) rather than raw arrays, so
the same code serves per-unit columns, request-level counters and Redis-merged totals. The
direction is always *treatment minus control*.

- :func:`two_proportion_ztest`: pooled-variance z statistic for the p-value (the classic test,
  statsmodels ``proportions_ztest``), unpooled Wald interval for the difference.
- :func:`welch_ttest`: Welch's t-test with the Welch-Satterthwaite degrees of freedom
  (scipy ``ttest_ind(equal_var=False)``).
- :func:`ratio_ztest`: a ratio metric (sum over units of numerators / sum of denominators, e.g.
  mean latency per request in a user-split test) with delta-method variance, so requests of one
  user are not treated as independent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as _st

from modelrouter.stats.results import ConfidenceInterval

__all__ = [
    "TwoSampleResult",
    "cohens_d",
    "cohens_h",
    "ratio_moments",
    "ratio_ztest",
    "relative_lift",
    "relative_lift_note",
    "two_proportion_ztest",
    "welch_df",
    "welch_ttest",
]


@dataclass(frozen=True)
class TwoSampleResult:
    """Outcome of a two-sample test; ``difference`` is treatment minus control."""

    statistic: float
    pvalue: float
    difference: float
    std_err: float
    df: float = math.inf
    method: str = ""
    _ci_std_err: float = field(default=math.nan, repr=False)

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Two-sided interval for the difference (t quantile when ``df`` is finite)."""
        _check_level(confidence_level)
        se = self.std_err if math.isnan(self._ci_std_err) else self._ci_std_err
        q = _quantile(confidence_level, self.df)
        return ConfidenceInterval(self.difference - q * se, self.difference + q * se)


def _check_level(confidence_level: float) -> None:
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level ({confidence_level!r}) must be in (0, 1)")


def _quantile(confidence_level: float, df: float) -> float:
    p = 0.5 + confidence_level / 2.0
    if math.isnan(df):
        return math.nan
    if math.isinf(df):
        return float(_st.norm.ppf(p))
    return float(_st.t.ppf(p, df))


def _two_sided_p(z: float, df: float = math.inf) -> float:
    if math.isnan(z) or math.isnan(df):
        return math.nan
    if math.isinf(df):
        return float(2.0 * _st.norm.sf(abs(z)))
    return float(2.0 * _st.t.sf(abs(z), df))


def _check_n(name: str, n: float, minimum: int) -> None:
    if n < minimum:
        raise ValueError(f"{name} ({n!r}) must be at least {minimum}")


def two_proportion_ztest(x_control: float, n_control: int, x_treatment: float,
                         n_treatment: int) -> TwoSampleResult:
    """Two-proportion z-test: pooled SE for the test, unpooled (Wald) SE for the interval."""
    _check_n("n_control", n_control, 1)
    _check_n("n_treatment", n_treatment, 1)
    for name, x, n in (("x_control", x_control, n_control),
                       ("x_treatment", x_treatment, n_treatment)):
        if not 0 <= x <= n:
            raise ValueError(f"{name} ({x!r}) must be between 0 and its n ({n!r})")
    p_c = x_control / n_control
    p_t = x_treatment / n_treatment
    diff = p_t - p_c
    pooled = (x_control + x_treatment) / (n_control + n_treatment)
    se_pooled = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_control + 1.0 / n_treatment))
    se_wald = math.sqrt(p_c * (1.0 - p_c) / n_control + p_t * (1.0 - p_t) / n_treatment)
    z = diff / se_pooled if se_pooled > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    return TwoSampleResult(statistic=z, pvalue=_two_sided_p(z), difference=diff,
                           std_err=se_pooled, method="two-proportion z-test",
                           _ci_std_err=se_wald)


def welch_ttest(mean_control: float, var_control: float, n_control: int,
                mean_treatment: float, var_treatment: float, n_treatment: int) -> TwoSampleResult:
    """Welch's unequal-variance t-test from means, sample variances (ddof=1) and counts.

    The Welch-Satterthwaite degrees of freedom are computed from the two variances of the
    means scaled by the larger one (``(a + b)**2 / (a**2 / (n_c - 1) + b**2 / (n_t - 1))`` with
    ``a, b <= 1``), so they cannot overflow whatever the data's magnitude; the standard error
    is ``hypot(sqrt(a), sqrt(b))``. Non-finite variances give NaN statistics.
    """
    _check_n("n_control", n_control, 2)
    _check_n("n_treatment", n_treatment, 2)
    a = var_control / n_control
    b = var_treatment / n_treatment
    diff = mean_treatment - mean_control
    if not all(math.isfinite(v) for v in (a, b, diff)) or a < 0 or b < 0:
        return TwoSampleResult(statistic=math.nan, pvalue=math.nan, difference=diff,
                               std_err=math.nan, df=math.nan, method="Welch's t-test")
    se = math.hypot(math.sqrt(a), math.sqrt(b))
    if se == 0.0:
        t = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        df = float(n_control + n_treatment - 2)
    else:
        t = diff / se
        df = welch_df(a, n_control, b, n_treatment)
    return TwoSampleResult(statistic=t, pvalue=_two_sided_p(t, df), difference=diff,
                           std_err=se, df=df, method="Welch's t-test")


def welch_df(a: float, n_a: int, b: float, n_b: int) -> float:
    """Welch-Satterthwaite degrees of freedom of two variances of means ``a = s_a^2 / n_a`` and
    ``b = s_b^2 / n_b``, in a form that cannot overflow (both scaled by the larger first)."""
    top = max(a, b)
    if not top > 0.0:
        return float(n_a + n_b - 2)
    ra, rb = a / top, b / top
    return (ra + rb) ** 2 / (ra * ra / (n_a - 1) + rb * rb / (n_b - 1))


def ratio_moments(numerators: np.ndarray, denominators: np.ndarray) -> tuple[int, float, float]:
    """Per-group ratio ``R = sum(num) / sum(den)`` and its delta-method variance.

    Returns ``(n_units, ratio, variance_of_ratio)``. Units with a zero denominator still count
    towards ``n`` (they are part of the randomised population) and contribute through the
    covariance terms.
    """
    num = np.asarray(numerators, dtype=np.float64)
    den = np.asarray(denominators, dtype=np.float64)
    n = int(num.size)
    if n < 2:
        raise ValueError(f"ratio metrics need at least 2 units per group, got {n}")
    mean_den = float(den.mean())
    if mean_den == 0.0:
        raise ValueError("ratio metric has no observations (all denominators are 0)")
    ratio = float(num.sum() / den.sum())
    # Var(R) ~ Var(mean(num) - R mean(den)) / mean(den)^2 = Var(num - R den) / (n mean(den)^2)
    resid = num - ratio * den
    var = float(resid.var(ddof=1)) / (n * mean_den * mean_den)
    return n, ratio, var


def ratio_ztest(ratio_control: float, var_control: float, ratio_treatment: float,
                var_treatment: float) -> TwoSampleResult:
    """z-test for a difference of two independent ratio estimates with delta-method variances."""
    diff = ratio_treatment - ratio_control
    if not all(math.isfinite(v) for v in (var_control, var_treatment, diff)) \
            or var_control < 0 or var_treatment < 0:
        return TwoSampleResult(statistic=math.nan, pvalue=math.nan, difference=diff,
                               std_err=math.nan, method="delta-method z-test (ratio metric)")
    se = math.hypot(math.sqrt(var_control), math.sqrt(var_treatment))
    z = diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    return TwoSampleResult(statistic=z, pvalue=_two_sided_p(z), difference=diff, std_err=se,
                           method="delta-method z-test (ratio metric)")


def relative_lift(mean_control: float, se_control: float, mean_treatment: float,
                  se_treatment: float, confidence_level: float = 0.95
                  ) -> tuple[float, ConfidenceInterval]:
    """Relative lift ``mean_t / mean_c - 1`` with an interval from the delta method on the
    log ratio (statsmodels' ``method="log"``), which stays inside (-1, inf) and is not
    symmetric; when either mean is not positive the linear delta method is used instead.

    NaN (lift and interval) when the lift is not defined: see :func:`relative_lift_note`,
    which also says why."""
    lift, ci, _note = relative_lift_note(mean_control, se_control, mean_treatment,
                                         se_treatment, confidence_level)
    return lift, ci


def relative_lift_note(mean_control: float, se_control: float, mean_treatment: float,
                       se_treatment: float, confidence_level: float = 0.95
                       ) -> tuple[float, ConfidenceInterval, str | None]:
    """:func:`relative_lift` and, when it is NaN, why (else None).

    The relative lift is NaN with a note when the control mean is 0, when it is not
    distinguishable from 0 (``|mean_c| <= q * se_c``, ``q`` the interval's normal quantile:
    the control's own interval contains 0, so by Fieller's theorem the ratio has no bounded
    interval and its point estimate can change sign with the noise), or when the ratio lies
    beyond the float range. Every step is computed in a form that cannot overflow: the log
    ratio as a difference of logs, its standard error with ``hypot``, an interval end beyond
    the float range as ``inf``.
    """
    _check_level(confidence_level)
    nan_ci = ConfidenceInterval(math.nan, math.nan)
    if not (math.isfinite(mean_control) and math.isfinite(mean_treatment)):
        return math.nan, nan_ci, "relative lift n/a: a mean is not defined"
    if mean_control == 0.0:
        return math.nan, nan_ci, "relative lift n/a: the control mean is 0"
    q = _quantile(confidence_level, math.inf)
    if not (abs(mean_control) > q * se_control):  # also when se_control is NaN
        return math.nan, nan_ci, (
            f"relative lift n/a: the control mean ({mean_control:.4g}) is within {q:.3g} "
            f"standard errors ({se_control:.4g}) of 0, so the ratio has no bounded "
            f"{confidence_level:.0%} interval (Fieller)")
    lift = mean_treatment / mean_control - 1.0
    if not math.isfinite(lift):
        return math.nan, nan_ci, "relative lift n/a: the ratio of the means is beyond the " \
                                 "float range"
    if mean_control > 0.0 and mean_treatment > 0.0:
        sd = math.hypot(se_treatment / mean_treatment, se_control / mean_control)
        log_ratio = math.log(mean_treatment) - math.log(mean_control)
        return lift, ConfidenceInterval(_expm1(log_ratio - q * sd),
                                        _expm1(log_ratio + q * sd)), None
    ratio = mean_treatment / mean_control
    half = q * math.hypot(se_treatment / mean_control,
                          ratio * (se_control / mean_control))
    return lift, ConfidenceInterval(lift - half, lift + half), None


def _expm1(x: float) -> float:
    """``exp(x) - 1``, ``inf`` beyond the float range (instead of OverflowError)."""
    return math.expm1(x) if x < 709.0 else math.inf


def cohens_h(p_control: float, p_treatment: float) -> float:
    """Cohen's h for two proportions: ``2 asin(sqrt(p_t)) - 2 asin(sqrt(p_c))``."""
    return 2.0 * math.asin(math.sqrt(p_treatment)) - 2.0 * math.asin(math.sqrt(p_control))


def cohens_d(mean_control: float, var_control: float, n_control: int,
             mean_treatment: float, var_treatment: float, n_treatment: int) -> float:
    """Cohen's d with the pooled standard deviation (ddof=1 variances); NaN when undefined.

    The pooled variance is computed scaled by the larger variance, so it cannot overflow."""
    dof = n_control + n_treatment - 2
    top = max(var_control, var_treatment)
    if dof <= 0 or not (math.isfinite(top) and top > 0):
        return math.nan
    pooled = ((n_control - 1) * (var_control / top)
              + (n_treatment - 1) * (var_treatment / top)) / dof
    if pooled <= 0:
        return math.nan
    return (mean_treatment - mean_control) / math.sqrt(top) / math.sqrt(pooled)
