"""CUPED-adjusted guardrails: a guardrail on a metric that declares covariates (issue 16).

On A/B traffic at unit level, when the guardrail's metric declares covariates
(``MetricSpec.covariates``) and units have usable pre-exposure values, the guardrail is
decided on the adjusted estimate of :func:`~modelrouter.analysis.adjusted.adjusted_result`
(CUPED with the pooled theta, the estimate ``compare()`` reports, within the segment checked)
instead of the unadjusted moments, by the same always-valid rule
(:func:`~modelrouter.analysis.guardrails.decide`):

- **absolute margins**: the adjusted difference and the square of its standard error (Welch's
  per-arm variances of the adjusted outcomes; for ``aggregate="mean"`` metrics the delta
  method, as ``RatioOfMeans`` with covariates);
- **relative margins**: the log ratio of the two adjusted means,
  ``log(mean_t_adj) - log(mean_c_adj)``, with the delta-method variance
  ``var_t_adj / (n_t mean_t_adj^2) + var_c_adj / (n_c mean_c_adj^2)``
  (:attr:`~modelrouter.stats.adjusted_result.AdjustedResult.log_std_err`: the form of
  tea-tasting's relative interval and of ``compare()``'s relative lift). Sound to first order:
  the adjusted means share the pooled covariate mean ``mean(X)``, a dependence this variance
  leaves out; its share of the variance is of the order of ``(mean_t/mean_c - 1)^2``, i.e.
  of the squared margin (0.25% of the variance for a 5% margin), and the same is left out of
  the unadjusted relative guardrails' variance as well as of tea-tasting's.

The estimate is the adjusted one when it exists; otherwise (no covariate declared, request
level or adaptive traffic, no usable covariate value yet, an estimate that is not defined,
an adjusted mean that is not positive under a relative margin) the guardrail is decided
unadjusted, as before, and says so: :attr:`GuardrailResult.adjusted` is False. An adjusted
result says ``adjusted=True``, the share of the variance of the difference removed
(``variance_reduction``) and, in its reason, the covariates used. Covariate values recorded
after a unit's first exposure never enter (analysis/adjusted.py). The rollback monitor
(monitor.py) checks ``Analysis.guardrails()``, i.e. this same function.

Thread safety: pure functions of a frozen :class:`~modelrouter.analysis.data.AnalysisData`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

from modelrouter.analysis.adjusted import adjusted_result
from modelrouter.analysis.data import AnalysisData
from modelrouter.analysis.guardrail_result import GuardrailResult
from modelrouter.config.guardrails import GuardrailSpec
from modelrouter.stats.adjusted_result import AdjustedResult

__all__ = ["AdjustedScale", "adjusted_scale"]


@dataclass(frozen=True)
class AdjustedScale:
    """A guardrail's adjusted ``(estimate, variance, breach threshold)`` on its test scale (the
    log ratio for relative margins) and the CUPED result it comes from."""

    estimate: float
    variance: float
    threshold: float
    result: AdjustedResult

    @property
    def scaled(self) -> tuple[float, float, float]:
        """What :func:`~modelrouter.analysis.guardrails.decide` takes."""
        return self.estimate, self.variance, self.threshold

    def mark(self, guardrail: GuardrailResult) -> GuardrailResult:
        """``guardrail`` saying it is adjusted: the flag, the variance removed, the reason."""
        res = self.result
        return dataclasses.replace(
            guardrail, adjusted=True, variance_reduction=res.variance_reduction,
            reason=f"{guardrail.reason} (CUPED-adjusted for {', '.join(res.covariates)}: "
                   f"variance of the difference -{res.variance_reduction:.1%})")

    def __repr__(self) -> str:
        return (f"AdjustedScale(estimate={self.estimate:.6g}, variance={self.variance:.6g}, "
                f"threshold={self.threshold:.6g}, covariates={self.result.covariates!r})")

    def to_dict(self) -> dict[str, object]:
        """Plain data (the CUPED result as its own ``to_dict()``)."""
        return {"estimate": self.estimate, "variance": self.variance,
                "threshold": self.threshold, "result": self.result.to_dict()}


def adjusted_scale(data: AnalysisData, spec: GuardrailSpec, variant: str,
                   segment: Mapping[str, str] | None = None) -> AdjustedScale | None:
    """The adjusted test-scale estimate of a mean guardrail of ``variant`` against the
    control (within ``segment``), or None when the guardrail is decided unadjusted (see the
    module docstring)."""
    if spec.quantile is not None or data.adaptive:
        return None
    res, _notes = adjusted_result(data, spec.metric, variant, segment=segment)
    if res is None:
        return None
    sign = 1.0 if spec.direction == "increase" else -1.0
    if not spec.relative:
        return AdjustedScale(res.difference, res.std_err * res.std_err, sign * spec.margin, res)
    if spec.direction == "decrease" and spec.margin >= 1:
        return None  # refused by the unadjusted check, with its reason
    if not (res.mean_control > 0 and res.mean_treatment > 0 and math.isfinite(res.log_std_err)):
        return None
    est = math.log(res.mean_treatment) - math.log(res.mean_control)
    return AdjustedScale(est, res.log_std_err * res.log_std_err,
                         math.log1p(sign * spec.margin), res)
