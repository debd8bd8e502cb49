"""Covariate-adjusted ``compare()``: CUPED with the pooled theta on the units' covariates.

When a metric declares covariates (``MetricSpec.covariates``) and units have values for them,
:func:`~modelrouter.analysis.compare.unit_compare` becomes this estimate: each unit's outcome
``Y`` is replaced by ``Y - theta' (X - mean(X))`` with one ``theta`` from both arms pooled
(Deng, Xu, Kohavi & Walker 2013; tea-tasting's ``Mean(..., covariate=...)`` and, for
``aggregate="mean"`` metrics, ``RatioOfMeans`` with the delta method), tested with Welch's t
(stats/cuped.py). With three or more variants each treatment is compared with the control on
those two arms' units only, with their own theta (:func:`~modelrouter.stats.cuped.two_arms`).

The pre-exposure rule: a covariate value recorded after the unit's first exposure could have
been changed by the treatment, so it is treated as missing (the note says how many). Missing
values are imputed with the observed mean and a missingness indicator enters the regression
(stats/cuped.py ``prepare_covariates``: the estimate does not depend on the imputed value).
A covariate with no usable value in the two arms is left out; with none left, or an estimate
that is not defined, the comparison is the unadjusted one with a note saying why.

The summaries, ``covers`` and the effect size (Cohen's h or d) stay those of the unadjusted
data; ``difference``, its standard error, interval, test, p-value and the relative lift (and
its interval, on the adjusted means) are the adjusted ones, and ``variance_reduction`` is
``1 - var_adjusted / var_unadjusted`` of the difference (Welch's unadjusted variance).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from modelrouter.analysis.data import AnalysisData
from modelrouter.analysis.results import ComparisonResult
from modelrouter.stats.adjusted_result import AdjustedResult
from modelrouter.stats.cuped import cuped_mean, cuped_ratio, prepare_covariates, two_arms
from modelrouter.stats.results import ConfidenceInterval
from modelrouter.stats.twosample import TwoSampleResult

__all__ = ["ESTIMATOR", "adjust", "adjusted_result", "covariate_columns"]

ESTIMATOR = "difference in means, CUPED-adjusted (pooled theta)"


def covariate_columns(data: AnalysisData, metric: str, rows: np.ndarray
                      ) -> tuple[np.ndarray, tuple[str, ...], int]:
    """The metric's covariates of the units ``rows`` (indices into the snapshot's units):
    ``(values (n, k) with NaN for missing, names, values excluded as recorded after the
    unit's first exposure)``."""
    units = data.snapshot.units
    names = data.spec(metric).covariates
    if units is None or not names:
        return np.empty((rows.size, 0)), (), 0
    cols, late = [], 0
    first = units.first_seen[rows]
    for name in names:
        value = units.covariates.get(name)
        at = units.covariate_at.get(name)
        if value is None or at is None:
            cols.append(np.full(rows.size, np.nan))
            continue
        v, t = value[rows], at[rows]
        after = ~np.isnan(v) & ~(t <= first)
        late += int(after.sum())
        cols.append(np.where(after, np.nan, v))
    return np.column_stack(cols), tuple(names), late


def adjusted_result(data: AnalysisData, metric: str, variant: str, *,
                    segment: Mapping[str, str] | None = None
                    ) -> tuple[AdjustedResult | None, list[str]]:
    """The CUPED estimate of ``variant`` against the control on the metric's declared
    covariates (within ``segment``), and the notes to show with it; ``(None, notes)`` when
    nothing is adjusted (no covariate declared, request level, no usable value, an estimate
    that is not defined: the notes say why, except for the first two). Used by :func:`adjust`
    and by the guardrails (analysis/adjusted_guardrails.py)."""
    spec = data.spec(metric)
    units = data.snapshot.units
    if not spec.covariates or units is None:
        return None, []
    c_idx, t_idx = data.variant_index(data.control), data.variant_index(variant)
    mask = data.unit_mask(segment)
    rows = np.arange(units.variant.size) if mask is None else np.flatnonzero(mask)
    pick, treated = two_arms(units.variant[rows], c_idx, t_idx)
    rows = rows[pick]
    x, names, late = covariate_columns(data, metric, rows)
    notes = []
    if late:
        notes.append(f"{late:,} covariate value{'s' if late != 1 else ''} recorded after the "
                     "unit's first exposure (possibly changed by the treatment) treated as "
                     "missing")
    usable = [j for j in range(x.shape[1]) if not np.isnan(x[:, j]).all()]
    if not usable:
        notes.append(f"not adjusted: no usable value of the covariates {list(names)!r} yet")
        return None, notes
    x, names = x[:, usable], tuple(names[j] for j in usable)
    missing = int(np.isnan(x).any(axis=1).sum())
    if missing:
        notes.append(f"{missing:,} of {rows.size:,} units lack a covariate value: imputed with "
                     "the mean, with a missingness indicator")
    xv, y = units.x[metric][rows], units.y[metric][rows]
    try:
        if spec.is_ratio:
            cov, cov_names = prepare_covariates(x, rows.size, names)
            res = cuped_ratio(xv, y, treated, cov, covariate_names=cov_names)
        else:
            outcome = (xv > 0).astype(np.float64) if spec.aggregate == "any" else xv
            res = cuped_mean(outcome, treated, x, covariate_names=names)
    except ValueError as exc:
        notes.append(f"not adjusted: {exc}")
        return None, notes
    if not (np.isfinite(res.difference) and np.isfinite(res.std_err)):
        notes.append("not adjusted: the adjusted estimate is not defined on these data")
        return None, notes
    return res, notes


def adjust(data: AnalysisData, metric: str, variant: str, base: ComparisonResult, *,
           segment: Mapping[str, str] | None = None) -> ComparisonResult:
    """``base`` (the unadjusted per-unit comparison of ``variant`` with the control) adjusted
    for the metric's covariates, or ``base`` itself when it declares none; with a note when
    no covariate can be used."""
    res, extra = adjusted_result(data, metric, variant, segment=segment)
    notes = [*base.notes, *extra]
    if res is None:
        return dataclasses.replace(base, notes=tuple(notes)) if extra else base
    test = TwoSampleResult(res.statistic, res.pvalue, res.difference, res.std_err, res.df,
                           res.method)
    try:
        rci = res.relative_confidence_interval()
    except OverflowError:  # adjusted control mean near 0: the log-scale interval overflows
        rci = ConfidenceInterval(math.nan, math.nan)
    if not (math.isfinite(rci.low) and math.isfinite(rci.high)):
        notes.append("the relative lift's interval is not defined (an adjusted mean is 0, "
                     "negative or near 0)")
    return dataclasses.replace(
        base, method=res.method, estimator=ESTIMATOR, difference=res.difference,
        relative_lift=res.relative_lift, statistic=res.statistic, pvalue=res.pvalue,
        df=res.df, std_err=res.std_err, notes=tuple(notes), adjusted=True,
        variance_reduction=res.variance_reduction,
        _relative_ci=rci, _test=test)
