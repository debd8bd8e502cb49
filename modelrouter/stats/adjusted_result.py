"""The result of a covariate-adjusted two-sample comparison (CUPED or Lin's regression).

Shared by :mod:`modelrouter.stats.cuped` (pooled-theta CUPED, Welch's t) and
:mod:`modelrouter.stats.adjusted` (Lin 2013 regression, HC-robust normal test), so that the
analysis can show either the same way. ``difference`` is treatment minus control.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from scipy import stats as _st

from modelrouter.stats.jsondata import finite_or_none
from modelrouter.stats.results import ConfidenceInterval
from modelrouter.stats.twosample import welch_df

__all__ = ["AdjustedResult", "normal_result", "welch_result"]


def _quantile(confidence_level: float, df: float) -> float:
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level ({confidence_level!r}) must be in (0, 1)")
    p = 0.5 + confidence_level / 2.0
    if math.isnan(df):
        return math.nan
    return float(_st.norm.ppf(p)) if math.isinf(df) else float(_st.t.ppf(p, df))



@dataclass(frozen=True)
class AdjustedResult:
    """An adjusted (or, with no covariate, unadjusted) comparison of two arms.

    ``variance_reduction`` is ``1 - std_err**2 / std_err_unadjusted**2``: the share of the
    variance of the difference removed by the covariates (0.36 for one covariate correlated
    0.6 with the outcome, in large samples). ``mean_control``/``mean_treatment`` are the
    adjusted arm means; ``relative_lift`` is ``mean_treatment / mean_control - 1``."""

    statistic: float
    pvalue: float
    difference: float
    std_err: float
    df: float
    method: str
    adjusted: bool
    variance_reduction: float
    std_err_unadjusted: float
    mean_control: float
    mean_treatment: float
    n_control: int
    n_treatment: int
    relative_lift: float
    theta: tuple[float, ...] = ()
    covariates: tuple[str, ...] = ()
    confidence_level: float = 0.95
    _log_std_err: float = field(default=math.nan, repr=False)
    _log_df: float = field(default=math.inf, repr=False)

    def confidence_interval(self, confidence_level: float | None = None) -> ConfidenceInterval:
        """Two-sided interval for the difference (t quantile when ``df`` is finite)."""
        q = _quantile(self.confidence_level if confidence_level is None else confidence_level,
                      self.df)
        return ConfidenceInterval(self.difference - q * self.std_err,
                                  self.difference + q * self.std_err)

    @property
    def log_std_err(self) -> float:
        """Standard error of ``log(mean_treatment) - log(mean_control)`` by the delta method
        (the arms' adjusted means taken as independent, tea-tasting's form); NaN unless both
        adjusted means are positive. The relative interval and the relative guardrails use it."""
        return self._log_std_err

    def relative_confidence_interval(self, confidence_level: float | None = None
                                     ) -> ConfidenceInterval:
        """Interval for the relative lift by the delta method on the log ratio of the adjusted
        means (tea-tasting's form); NaN unless both adjusted means are positive."""
        q = _quantile(self.confidence_level if confidence_level is None else confidence_level,
                      self._log_df)
        if not (self.mean_control > 0 and self.mean_treatment > 0
                and math.isfinite(self._log_std_err)):
            return ConfidenceInterval(math.nan, math.nan)
        # in logs: a control mean near 0 makes the ratio or exp(q * se) overflow a float
        log_ratio = math.log(self.mean_treatment) - math.log(self.mean_control)
        half = q * self._log_std_err
        return ConfidenceInterval(_expm1(log_ratio - half), _expm1(log_ratio + half))

    def rescaled(self, factor: float, theta: tuple[float, ...]) -> AdjustedResult:
        """The same comparison with the outcome in units ``factor`` times larger (the
        differences, standard errors and means times ``factor``; the test, the relative lift
        and the variance reduction do not change) and the given coefficients. The estimators
        compute on power-of-two-scaled columns and return through this, so that values near
        1e300 or 1e-300 neither overflow nor underflow when squared."""
        return dataclasses.replace(
            self, difference=self.difference * factor, std_err=self.std_err * factor,
            std_err_unadjusted=self.std_err_unadjusted * factor,
            mean_control=self.mean_control * factor,
            mean_treatment=self.mean_treatment * factor, theta=theta)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python fields and both intervals; NaN and infinities become None."""
        ci, rel = self.confidence_interval(), self.relative_confidence_interval()
        return {"method": self.method, "adjusted": self.adjusted,
                "difference": finite_or_none(self.difference),
                "std_err": finite_or_none(self.std_err),
                "statistic": finite_or_none(self.statistic), "pvalue": finite_or_none(self.pvalue),
                "df": finite_or_none(self.df), "confidence_level": self.confidence_level,
                "ci": {"low": finite_or_none(ci.low), "high": finite_or_none(ci.high)},
                "relative_lift": finite_or_none(self.relative_lift),
                "relative_ci": {"low": finite_or_none(rel.low), "high": finite_or_none(rel.high)},
                "variance_reduction": finite_or_none(self.variance_reduction),
                "std_err_unadjusted": finite_or_none(self.std_err_unadjusted),
                "mean_control": finite_or_none(self.mean_control),
                "mean_treatment": finite_or_none(self.mean_treatment),
                "n_control": self.n_control, "n_treatment": self.n_treatment,
                "theta": [finite_or_none(v) for v in self.theta],
                "covariates": list(self.covariates)}

    def summary(self) -> str:
        """One line: the difference, its interval, p-value and the variance removed."""
        ci = self.confidence_interval()
        adj = (f"adjusted for {', '.join(self.covariates)}: variance -"
               f"{self.variance_reduction:.1%}" if self.adjusted else "unadjusted")
        return (f"{self.method}: difference {self.difference:+.6g} "
                f"[{ci.low:.6g}, {ci.high:.6g}] ({self.confidence_level:.0%}), "
                f"p={self.pvalue:.4g}; {adj}")


def _reduction(var_adj: float, var_unadj: float) -> float:
    return 1.0 - var_adj / var_unadj if var_unadj > 0 else math.nan


def welch_result(*, n_control: int, mean_control: float, var_control: float,
                 n_treatment: int, mean_treatment: float, var_treatment: float,
                 var_unadjusted: float, theta: tuple[float, ...], covariates: tuple[str, ...],
                 confidence_level: float, method: str) -> AdjustedResult:
    """Welch's t-test on two arms' (adjusted) means and per-unit variances (ddof=1), with
    ``var_unadjusted`` the unadjusted variance of the difference for the reduction."""
    _quantile(confidence_level, math.inf)
    a, b = var_control / n_control, var_treatment / n_treatment
    se = math.sqrt(a + b)
    diff = mean_treatment - mean_control
    df = welch_df(a, n_control, b, n_treatment)
    stat = diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    p = float(2.0 * _st.t.sf(abs(stat), df))
    log_se, log_df = math.nan, math.inf
    if mean_control > 0 and mean_treatment > 0:
        la, lb = a / mean_control**2, b / mean_treatment**2
        log_se, log_df = math.sqrt(la + lb), welch_df(la, n_control, lb, n_treatment)
    lift = mean_treatment / mean_control - 1.0 if mean_control != 0 else math.nan
    return AdjustedResult(statistic=stat, pvalue=p, difference=diff, std_err=se, df=df,
                          method=method, adjusted=bool(theta),
                          variance_reduction=_reduction(a + b, var_unadjusted),
                          std_err_unadjusted=math.sqrt(var_unadjusted),
                          mean_control=mean_control, mean_treatment=mean_treatment,
                          n_control=n_control, n_treatment=n_treatment, relative_lift=lift,
                          theta=theta, covariates=covariates,
                          confidence_level=confidence_level, _log_std_err=log_se,
                          _log_df=log_df)


def normal_result(*, n_control: int, n_treatment: int, mean_control: float,
                  mean_treatment: float, std_err: float, std_err_unadjusted: float,
                  log_std_err: float, theta: tuple[float, ...], covariates: tuple[str, ...],
                  confidence_level: float, method: str) -> AdjustedResult:
    """A z-test (normal reference, as statsmodels' robust ``fit(cov_type=...)``)."""
    _quantile(confidence_level, math.inf)
    diff = mean_treatment - mean_control
    se = std_err
    stat = diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    lift = mean_treatment / mean_control - 1.0 if mean_control != 0 else math.nan
    return AdjustedResult(statistic=stat, pvalue=float(2.0 * _st.norm.sf(abs(stat))),
                          difference=diff, std_err=se, df=math.inf, method=method,
                          adjusted=bool(theta),
                          variance_reduction=_reduction(se * se, std_err_unadjusted**2),
                          std_err_unadjusted=std_err_unadjusted, mean_control=mean_control,
                          mean_treatment=mean_treatment, n_control=n_control,
                          n_treatment=n_treatment, relative_lift=lift, theta=theta,
                          covariates=covariates, confidence_level=confidence_level,
                          _log_std_err=log_std_err)


def _expm1(x: float) -> float:
    """``exp(x) - 1``, inf beyond the float range (never OverflowError)."""
    return math.expm1(x) if x < 709.0 else math.inf
