"""Analysis of adaptively allocated traffic (bandit mode): the unit of analysis is the decision.

The store keeps additive sums per ``(variant, epoch, segment, tag)`` of the decisions the
bandit routed (:mod:`modelrouter.store.decisions`). Inside one epoch every decision on arm a
had the same propensity (the epoch's effective weight, holdout included), so the
inverse-propensity estimators reduce to per-(epoch, arm) sums
(:mod:`modelrouter.stats.ipw_grouped`, equal to :mod:`modelrouter.stats.ipw` on the
per-decision arrays):

- ``compare(metric)`` → Hajek (self-normalised IPW) by default; ``estimator="stratified"``
  (per period of epochs, weighted by the period's decisions), ``"aipw"`` (predictable
  per-epoch outcome model; plain means only) or ``"naive"`` (biased; a reference only).
- ``srm()`` → fresh draws per (epoch, arm) against the counts each epoch's weights imply.
- ``holdout(metric)`` → the bandit as a whole (its routed decisions) against the uniform
  holdout: a difference of policy values, randomised decision by decision.

Decisions of A/B epochs are not in these sums (A/B is analysed per unit). Sticky repeats are
real decisions but not independent draws: they count in the estimates and not in the SRM.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from modelrouter.analysis.results import ComparisonResult, VariantSummary
from modelrouter.exceptions import AnalysisError
from modelrouter.stats import srm_test, twosample
from modelrouter.stats.ipw_grouped import GroupedData, grouped_ipw_difference, grouped_ipw_means
from modelrouter.stats.moments import Moments
from modelrouter.store.decisions import HOLDOUT, STICKY

if TYPE_CHECKING:
    from modelrouter.analysis.analysis import Analysis
    from modelrouter.analysis.srm import SampleRatioCheck

__all__ = ["ESTIMATORS", "adaptive", "adaptive_compare", "adaptive_srm", "holdout_compare"]

ESTIMATORS = ("hajek", "stratified", "aipw", "naive")


def adaptive(analysis: Analysis) -> bool:
    """Whether the snapshot holds bandit decisions (then compare/srm work per decision)."""
    snap = analysis.snapshot
    return bool(getattr(snap, "decisions", None)) and any(e.mode == "bandit"
                                                          for e in snap.epochs)


def _groups(analysis: Analysis, segment: Mapping[str, str] | None) -> list[tuple[Any, Any]]:
    snap = analysis.snapshot
    pairs = analysis._segment_codes(segment) if segment else []
    return [(key, value) for key, value in snap.decisions.items()
            if all(key[2][d] == c if d < len(key[2]) else False for d, c in pairs)]


def _propensities(analysis: Analysis, epochs: list[int]) -> np.ndarray:
    weights = {e.epoch: e.weights for e in analysis.snapshot.epochs}
    try:
        return np.array([weights[e] for e in epochs], dtype=np.float64)
    except KeyError as exc:
        raise AnalysisError(f"epoch {exc.args[0]} has decisions but no recorded weights") from None


def grouped_data(analysis: Analysis, metric: str, segment: Mapping[str, str] | None = None
                 ) -> tuple[GroupedData, list[int]]:
    """Per-(epoch, arm) sums of ``metric`` over the bandit's decisions, epochs in order."""
    spec = analysis._spec(metric)
    groups = _groups(analysis, segment)
    if not groups:
        raise AnalysisError("no bandit decisions" + (" in this segment" if segment else ""))
    epochs = sorted({key[1] for key, _ in groups})
    row = {e: i for i, e in enumerate(epochs)}
    shape = (len(epochs), len(analysis.variants))
    sums = {name: np.zeros(shape) for name in ("n", "sx", "sxx", "sy", "syy", "sxy")}
    for (variant, epoch, _seg, _tag), (n, per_metric) in groups:
        m: Moments = per_metric[metric]
        at = (row[epoch], variant)
        sums["n"][at] += n
        sums["sx"][at] += m.n * m.mean_x
        sums["sxx"][at] += m.m2_x + m.n * m.mean_x ** 2
        sums["sy"][at] += m.n * m.mean_y
        sums["syy"][at] += m.m2_y + m.n * m.mean_y ** 2
        sums["sxy"][at] += m.c_xy + m.n * m.mean_x * m.mean_y
    p = _propensities(analysis, epochs)
    ratio = spec.is_ratio
    data = GroupedData(sums["n"], sums["sx"], sums["sxx"], p,
                       sums["sy"] if ratio else None, sums["syy"] if ratio else None,
                       sums["sxy"] if ratio else None)
    return data, epochs


def adaptive_compare(analysis: Analysis, metric: str, variant: str | None = None, *,
                     segment: Mapping[str, str] | None = None, estimator: str | None = None,
                     min_units: int = 10) -> ComparisonResult:
    """``variant`` vs the control on ``metric`` by inverse-propensity weighting (module doc)."""
    method = estimator or "hajek"
    if method not in ESTIMATORS:
        raise AnalysisError(f"estimator ({estimator!r}) must be one of "
                            f"{', '.join(map(repr, ESTIMATORS))}")
    variant = analysis.treatment(variant)
    t, c = analysis._variant_index(variant), analysis._variant_index(analysis.control)
    data, epochs = grouped_data(analysis, metric, segment)
    try:
        diff = grouped_ipw_difference(data, arm=t, control=c, method=method,  # type: ignore[arg-type]
                                      min_units=min_units)
        means = grouped_ipw_means(data, method=method, min_units=min_units)  # type: ignore[arg-type]
    except ValueError as exc:
        raise AnalysisError(f"{metric}: {exc}") from None
    sy = data.y_sums()[0]
    summaries = []
    for i, name in ((c, analysis.control), (t, variant)):
        n = int(data.n[:, i].sum())
        se = means[i].std_err
        summaries.append(VariantSummary(name, n, means[i].estimate, se * math.sqrt(n), se,
                                        int(round(float(sy[:, i].sum()))) if data.ratio
                                        else n))
    sc, st = summaries
    lift, rci = twosample.relative_lift(sc.mean, sc.std_err, st.mean, st.std_err)
    notes = [f"adaptive allocation: {int(data.total):,} bandit decisions over {len(epochs)} "
             "epochs, analysed per decision with inverse-propensity weights"]
    if method == "naive":
        notes.append("the naive difference of means is biased when the allocation adapts; "
                     "shown as a reference only")
    notes.extend(_extra_notes(analysis))
    return ComparisonResult(
        metric=metric, method="z-test (inverse-propensity weighted)", control=sc, treatment=st,
        difference=diff.difference, relative_lift=lift, statistic=diff.statistic,
        pvalue=diff.pvalue, df=math.inf, effect_size=math.nan,
        effect_size_name="n/a (adaptive allocation)", estimator=diff.method,
        notes=tuple(notes), std_err=diff.std_err, _relative_ci=rci)


def _extra_notes(analysis: Analysis) -> list[str]:
    snap = analysis.snapshot
    notes = []
    if any(e.mode == "ab" for e in snap.epochs) and snap.n_units:
        notes.append("decisions of A/B epochs are not included (A/B is analysed per unit)")
    tags = {key[3] for key in snap.decisions}
    if any(tag & STICKY for tag in tags):
        notes.append("sticky units repeat their arm: decisions of one unit are correlated, "
                     "so standard errors are too small")
    return notes


def adaptive_srm(analysis: Analysis, threshold: float = 0.001) -> SampleRatioCheck:
    """Fresh draws per arm against ``sum over epochs of draws x the epoch's weights``."""
    from modelrouter.analysis.srm import SampleRatioCheck

    snap = analysis.snapshot
    fresh = [(k, v) for k, v in snap.decisions.items() if not k[3] & STICKY]
    if not fresh:
        raise AnalysisError("no bandit decisions yet; the sample ratio cannot be checked")
    epochs = sorted({key[1] for key, _ in fresh})
    row = {e: i for i, e in enumerate(epochs)}
    counts = np.zeros((len(epochs), len(snap.variants)))
    for (variant, epoch, _seg, _tag), (n, _m) in fresh:
        counts[row[epoch], variant] += n
    p = _propensities(analysis, epochs)
    observed = counts.sum(axis=0)
    expected = (counts.sum(axis=1)[:, None] * p).sum(axis=0)
    keep = expected > 0  # paused arms: nothing expected, nothing observed
    if np.any(observed[~keep] > 0):
        raise AnalysisError("decisions on an arm whose weight was 0: routing is broken")
    res = srm_test(observed[keep], expected_counts=expected[keep], threshold=threshold)
    return SampleRatioCheck(tuple(v for v, k in zip(snap.variants, keep) if k),
                            tuple(int(o) for o in observed[keep]),
                            tuple(float(e) for e in expected[keep]), res.statistic, res.pvalue,
                            res.df, res.alarm, res.threshold, len(epochs), res)


def holdout_compare(analysis: Analysis, metric: str | None = None) -> ComparisonResult:
    """The bandit's routed decisions against the uniform holdout's, on ``metric`` (default:
    the reward): which policy earns more per decision."""
    from modelrouter.analysis.analysis import comparison

    metric = metric or analysis.config.reward
    if metric is None:
        raise AnalysisError("holdout(): give a metric (the config names no reward)")
    spec = analysis._spec(metric)
    parts = {True: Moments(), False: Moments()}
    for (_v, _e, _s, tag), (_n, per_metric) in analysis.snapshot.decisions.items():
        held = bool(tag & HOLDOUT)
        parts[held] = parts[held].merge(per_metric[metric])
    mc, mt = parts[True], parts[False]
    if mc.n < 2 or mt.n < 2:
        raise AnalysisError(f"holdout(): need 2+ decisions on each side, got {mc.n} in the "
                            f"holdout and {mt.n} routed by the bandit (config holdout="
                            f"{analysis.config.holdout})")
    return comparison(
        spec, "holdout", mc, "bandit", mt,
        estimator="policy value: bandit-routed vs uniform holdout decisions",
        notes=("each decision went to the holdout independently with probability "
               f"{analysis.config.holdout:g}; the bandit side mixes its arms as it routed "
               "them",))
