"""``analysis.compare()``: treatment against control on one metric, in every form it takes.

- :func:`comparison` turns two groups' moments into a :class:`ComparisonResult` with the test
  that fits the metric: binary metrics get the two-proportion z-test and Cohen's h,
  continuous per-unit sums Welch's t-test and Cohen's d, ratio metrics
  (``aggregate="mean"``) the delta-method z-test; plus the relative lift and its interval.
- :func:`compare` answers the question for an :class:`AnalysisData`: per unit (A/B traffic,
  :func:`unit_compare`), per decision with inverse-propensity weights after bandit traffic
  (:func:`modelrouter.analysis.adaptive.adaptive_compare`), or stratified by phase when the
  experiment switched between A/B and bandit mode with data on both sides
  (:func:`modelrouter.analysis.phases.switched_compare`). Every other question that needs a
  comparison (segments, guardrails, sequential, verdict, report) calls this function.
- :func:`summary`: per-variant means from the same estimator as the comparisons (naive per
  unit for A/B, IPW or phase-stratified after bandit traffic).
- :func:`holdout_compare`: the bandit's routed decisions against its uniform holdout, a plain
  comparison of the two pooled groups.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from modelrouter.analysis.adaptive import adaptive_compare
from modelrouter.analysis.adjusted import adjust as cuped_adjust
from modelrouter.analysis.data import AnalysisData
from modelrouter.analysis.phases import ESTIMATOR, switched_compare, weighted_summaries
from modelrouter.analysis.results import ComparisonResult, VariantSummary
from modelrouter.config import MetricSpec
from modelrouter.exceptions import AnalysisError
from modelrouter.stats import twosample
from modelrouter.stats.moments import Moments
from modelrouter.store.decisions import HOLDOUT

__all__ = ["compare", "compare_all", "comparison", "holdout_compare", "metrics_dict",
           "summarise", "summary", "two_sample_test", "undefined_note", "unit_compare"]


# -- from two groups' moments -------------------------------------------------------------
def summarise(variant: str, m: Moments, spec: MetricSpec) -> VariantSummary:
    """One group's units, mean, std, standard error and events on ``spec``'s scale."""
    events = int(round(m.mean_y * m.n))
    if spec.is_ratio:
        se = math.sqrt(m.ratio_var) if m.n > 1 else math.nan
        return VariantSummary(variant, m.n, m.ratio, se * math.sqrt(m.n), se, events)
    std = math.sqrt(m.var_x) if m.n > 1 else math.nan
    se = std / math.sqrt(m.n) if m.n > 1 else math.nan
    if spec.aggregate == "any" and m.n > 0:  # a proportion: the binomial standard error
        se = math.sqrt(m.mean_x * (1.0 - m.mean_x) / m.n)
    return VariantSummary(variant, m.n, m.mean_x if m.n else math.nan, std, se, events)


def two_sample_test(spec: MetricSpec, mc: Moments, mt: Moments
                    ) -> tuple[twosample.TwoSampleResult, float, str]:
    """The test that fits the metric, its effect size and the effect size's name."""
    if spec.is_ratio:
        test = twosample.ratio_ztest(mc.ratio, mc.ratio_var, mt.ratio, mt.ratio_var)
        pooled = math.sqrt((mc.ratio_var * mc.n + mt.ratio_var * mt.n) / 2.0)
        d = test.difference / pooled if pooled > 0 else math.nan
        return test, d, "standardised difference"
    if spec.aggregate == "any":
        xc, xt = round(mc.mean_x * mc.n), round(mt.mean_x * mt.n)
        test = twosample.two_proportion_ztest(xc, mc.n, xt, mt.n)
        return test, twosample.cohens_h(xc / mc.n, xt / mt.n), "Cohen's h"
    test = twosample.welch_ttest(mc.mean_x, mc.var_x, mc.n, mt.mean_x, mt.var_x, mt.n)
    d = twosample.cohens_d(mc.mean_x, mc.var_x, mc.n, mt.mean_x, mt.var_x, mt.n)
    return test, d, "Cohen's d"


def comparison(spec: MetricSpec, control: str, mc: Moments, treatment: str, mt: Moments, *,
               notes: tuple[str, ...] = (), estimator: str = "difference in means",
               covers: str = "", observed: str = "units") -> ComparisonResult:
    """The test that fits the metric, effect size and relative lift, from two groups' moments.

    A p-value or relative lift that is not defined is NaN with a note saying why."""
    sc, st = summarise(control, mc, spec), summarise(treatment, mt, spec)
    test, effect, effect_name = two_sample_test(spec, mc, mt)
    lift, rci, why = twosample.relative_lift_note(sc.mean, sc.std_err, st.mean, st.std_err)
    undefined = undefined_note(spec, (sc, st)) if math.isnan(test.pvalue) else None
    if undefined is not None:  # it also says why the lift is not defined
        notes = (*notes, undefined)
    elif why is not None:
        notes = (*notes, why)
    return ComparisonResult(
        metric=spec.name, method=test.method, control=sc, treatment=st,
        difference=test.difference, relative_lift=lift, statistic=test.statistic,
        pvalue=test.pvalue, df=test.df, effect_size=effect, effect_size_name=effect_name,
        estimator=estimator, notes=notes, std_err=test.std_err, covers=covers,
        observed=observed, _relative_ci=rci, _test=test)


def undefined_note(spec: MetricSpec, summaries: Sequence[VariantSummary]) -> str:
    """Why a comparison's p-value is NaN: an arm without events of a per-event (ratio) metric,
    else a variance beyond the float range (not reachable with the record-time bounds)."""
    empty = [s.variant for s in summaries if s.events == 0 or math.isnan(s.mean)]
    if spec.is_ratio and empty:
        return (f"no {spec.name!r} events recorded in {' and '.join(map(repr, empty))} yet: the "
                "per-event mean, the test and the relative lift are not defined (p-value NaN)")
    return ("the variance of the difference is not finite: the test and its p-value are not "
            "defined (p-value NaN)")


# -- questions about an experiment --------------------------------------------------------
def summary(data: AnalysisData, metric: str, segment: Mapping[str, str] | None = None
            ) -> list[VariantSummary]:
    """Per-variant units, mean, std and standard error of a metric, from the estimator the
    comparisons use (after bandit traffic: inverse-propensity weighted, see
    :func:`~modelrouter.analysis.phases.weighted_summaries`)."""
    spec = data.spec(metric)
    if data.adaptive:
        return weighted_summaries(data, metric, segment)
    return [summarise(v, m, spec) for v, m in zip(data.variants, data.moments(metric, segment))]


def unit_compare(data: AnalysisData, metric: str, variant: str | None = None, *,
                 segment: Mapping[str, str] | None = None, adjust: bool = True
                 ) -> ComparisonResult:
    """``variant`` against the control per unit (A/B traffic), with the snapshot's notes;
    CUPED-adjusted when ``adjust`` and the metric declares covariates (analysis/adjusted.py)."""
    spec = data.spec(metric)
    variant = data.treatment(variant)
    t_idx, c_idx = data.variant_index(variant), data.variant_index(data.control)
    moments = data.moments(metric, segment)
    mc, mt = moments[c_idx], moments[t_idx]
    for name, m in ((data.control, mc), (variant, mt)):
        if m.n < 2:
            raise AnalysisError(f"variant {name!r} has {m.n} units with data for "
                                f"{metric!r}; need at least 2")
    noun = "units" if data.snapshot.units is not None else "requests"
    epochs = len({e.epoch for e in data.snapshot.epochs})
    covers = (f"{mc.n + mt.n:,} {noun} of {data.control} and {variant} (A/B)"
              + (f" over {epochs} epochs" if epochs > 1 else ""))
    base = comparison(spec, data.control, mc, variant, mt, notes=data.notes(), covers=covers,
                      observed=noun)
    return cuped_adjust(data, metric, variant, base, segment=segment) if adjust else base


def compare(data: AnalysisData, metric: str, variant: str | None = None, *,
            segment: Mapping[str, str] | None = None,
            estimator: str | None = None, adjust: bool = True) -> ComparisonResult:
    """Compare ``variant`` (default: the only treatment) against the control on ``metric``.

    After bandit traffic (adaptive allocation) the unit is the decision and the estimate is
    inverse-propensity weighted: ``estimator`` "hajek" (default), "stratified", "aipw" or
    "naive" (biased, a reference); see analysis/adaptive.py. After switches between A/B and
    bandit mode with data on both sides, one phase-stratified estimate over every phase
    (``estimator`` "phase-stratified", the only one; see analysis/phases.py). Otherwise per
    unit, CUPED-adjusted when the metric declares covariates with values and ``adjust``
    (analysis/adjusted.py; ``adjust=False``: the unadjusted comparison). Bandit and switched
    traffic are not adjusted (a note says so).
    """
    if data.adaptive and adjust and data.spec(metric).covariates:
        cmp = compare(data, metric, variant, segment=segment, estimator=estimator, adjust=False)
        return dataclasses.replace(cmp, notes=(*cmp.notes, (
            "not adjusted for covariates: CUPED is implemented for A/B (unit) traffic only, "
            "not for bandit or switched traffic")))
    if data.switched:
        if estimator not in (None, ESTIMATOR):
            raise AnalysisError(f"estimator ({estimator!r}): this experiment switched between "
                                f"A/B and bandit mode; its estimate is {ESTIMATOR!r} over "
                                "every phase (analysis.phases(metric) shows each phase)")
        return switched_compare(data, metric, variant, segment=segment)
    if data.adaptive:
        return adaptive_compare(data, metric, variant, segment=segment, estimator=estimator)
    if estimator is not None:
        raise AnalysisError(f"estimator ({estimator!r}) applies to bandit (adaptive) "
                            "traffic; this experiment has none")
    return unit_compare(data, metric, variant, segment=segment, adjust=adjust)


def compare_all(data: AnalysisData, metric: str) -> dict[str, ComparisonResult]:
    """Every non-control variant against the control."""
    return {v: compare(data, metric, v) for v in data.treatments}


def holdout_compare(data: AnalysisData, metric: str | None = None) -> ComparisonResult:
    """The bandit's routed decisions against the uniform holdout's, on ``metric`` (default:
    the reward): which policy earns more per decision."""
    metric = metric or data.config.reward
    if metric is None:
        raise AnalysisError("holdout(): give a metric (the config names no reward)")
    spec = data.spec(metric)
    parts = {True: Moments(), False: Moments()}
    for (_v, _e, _s, tag), (_n, per_metric) in data.snapshot.decisions.items():
        held = bool(tag & HOLDOUT)
        parts[held] = parts[held].merge(per_metric[metric])
    mc, mt = parts[True], parts[False]
    if mc.n < 2 or mt.n < 2:
        raise AnalysisError(f"holdout(): need 2+ decisions on each side, got {mc.n} in the "
                            f"holdout and {mt.n} routed by the bandit (config holdout="
                            f"{data.config.holdout})")
    return comparison(
        spec, "holdout", mc, "bandit", mt,
        estimator="policy value: bandit-routed vs uniform holdout decisions",
        covers=f"{mc.n + mt.n:,} bandit decisions ({mt.n:,} routed by the bandit, {mc.n:,} "
               "in the holdout)", observed="decisions",
        notes=("each decision went to the holdout independently with probability "
               f"{data.config.holdout:g}; the bandit side mixes its arms as it routed "
               "them",))


def metrics_dict(data: AnalysisData, metrics: Sequence[str] | None = None) -> dict[str, Any]:
    """Per-metric summaries and comparisons as plain data (``Analysis.to_dict``); a metric
    that cannot be compared yet gets ``{"error": ...}`` instead of comparisons."""
    out: dict[str, Any] = {"variants": list(data.variants), "control": data.control,
                           "data_source": data.snapshot.source,
                           "units": data.snapshot.n_units,
                           "requests": dict(zip(data.variants,
                                                data.snapshot.requests.tolist())),
                           "metrics": {}}
    for metric in metrics or list(data.snapshot.metrics):
        entry: dict[str, Any] = {}
        try:
            entry["summary"] = [s.to_dict() for s in summary(data, metric)]
        except AnalysisError as exc:
            entry["summary"] = {"error": str(exc)}
        try:
            entry["comparisons"] = {v: c.to_dict() for v, c in compare_all(data, metric).items()}
        except AnalysisError as exc:
            entry["comparisons"] = {"error": str(exc)}
        out["metrics"][metric] = entry
    return out
