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
- ``srm()`` → fresh draws per (epoch, arm) against the counts each epoch's weights imply
  (:func:`modelrouter.analysis.srm.adaptive_srm`, with the other sample-ratio checks).
- ``holdout(metric)`` → the bandit as a whole (its routed decisions) against the uniform
  holdout: a difference of policy values, randomised decision by decision
  (:func:`modelrouter.analysis.compare.holdout_compare`: a plain comparison of two groups).

:class:`~modelrouter.analysis.data.AnalysisData` says whether a snapshot is adaptive
(``data.adaptive``); :func:`modelrouter.analysis.compare.compare` dispatches here when it is.

Decisions of A/B epochs are not in these sums: an experiment that switched between A/B and
bandit mode with data on both sides is compared across phases by
:mod:`modelrouter.analysis.phases` (``compare`` dispatches there). Sticky repeats are real
decisions but not independent draws: they count in the estimates and not in the SRM.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from modelrouter.analysis.data import AnalysisData
from modelrouter.analysis.results import ComparisonResult, VariantSummary
from modelrouter.exceptions import AnalysisError
from modelrouter.stats import twosample
from modelrouter.stats.ipw_grouped import GroupedData, grouped_ipw_difference, grouped_ipw_means
from modelrouter.stats.moments import Moments
from modelrouter.store.decisions import STICKY

if TYPE_CHECKING:
    from modelrouter.stats.ipw import IPWMethod

__all__ = ["ESTIMATORS", "DecisionGroup", "adaptive_compare", "decision_groups", "grouped_data"]

ESTIMATORS: tuple[IPWMethod, ...] = ("hajek", "stratified", "aipw", "naive")
_BY_NAME: dict[str | None, IPWMethod] = {None: "hajek", **{m: m for m in ESTIMATORS}}

# (variant, epoch, segment codes, tag) -> (decisions, {metric: Moments}), as the store keeps them
DecisionGroup = tuple[tuple[int, int, tuple[int, ...], int], tuple[int, dict[str, Moments]]]


def decision_groups(data: AnalysisData, segment: Mapping[str, str] | None
                    ) -> list[DecisionGroup]:
    """The snapshot's decision groups, those of ``segment`` only when one is given."""
    pairs = data.segment_codes(segment) if segment else []
    return [(key, value) for key, value in data.snapshot.decisions.items()
            if all(key[2][d] == c if d < len(key[2]) else False for d, c in pairs)]


def grouped_data(data: AnalysisData, metric: str, segment: Mapping[str, str] | None = None
                 ) -> tuple[GroupedData, list[int]]:
    """Per-(epoch, arm) sums of ``metric`` over the bandit's decisions, epochs in order."""
    spec = data.spec(metric)
    groups = decision_groups(data, segment)
    if not groups:
        raise AnalysisError("no bandit decisions" + (" in this segment" if segment else ""))
    epochs = sorted({key[1] for key, _ in groups})
    row = {e: i for i, e in enumerate(epochs)}
    shape = (len(epochs), len(data.variants))
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
    p = data.epoch_weights(epochs)
    ratio = spec.is_ratio
    grouped = GroupedData(sums["n"], sums["sx"], sums["sxx"], p,
                          sums["sy"] if ratio else None, sums["syy"] if ratio else None,
                          sums["sxy"] if ratio else None)
    return grouped, epochs


def adaptive_compare(data: AnalysisData, metric: str, variant: str | None = None, *,
                     segment: Mapping[str, str] | None = None, estimator: str | None = None,
                     min_units: int = 10) -> ComparisonResult:
    """``variant`` vs the control on ``metric`` by inverse-propensity weighting (module doc)."""
    method = _BY_NAME.get(estimator or None)
    if method is None:
        raise AnalysisError(f"estimator ({estimator!r}) must be one of "
                            f"{', '.join(map(repr, ESTIMATORS))}")
    variant = data.treatment(variant)
    t, c = data.variant_index(variant), data.variant_index(data.control)
    grouped, epochs = grouped_data(data, metric, segment)
    try:
        diff = grouped_ipw_difference(grouped, arm=t, control=c, method=method,
                                      min_units=min_units)
        means = grouped_ipw_means(grouped, method=method, min_units=min_units)
    except ValueError as exc:
        raise AnalysisError(f"{metric}: {exc}") from None
    sy = grouped.y_sums()[0]
    summaries = []
    for i, name in ((c, data.control), (t, variant)):
        n = int(grouped.n[:, i].sum())
        se = means[i].std_err
        summaries.append(VariantSummary(name, n, means[i].estimate, se * math.sqrt(n), se,
                                        int(round(float(sy[:, i].sum()))) if grouped.ratio
                                        else n))
    sc, st = summaries
    lift, rci, why = twosample.relative_lift_note(sc.mean, sc.std_err, st.mean, st.std_err)
    notes = [f"adaptive allocation: {int(grouped.total):,} bandit decisions over {len(epochs)} "
             "epochs, analysed per decision with inverse-propensity weights"]
    if method == "naive":
        notes.append("the naive difference of means is biased when the allocation adapts; "
                     "shown as a reference only")
    notes.extend(_extra_notes(data))
    if why is not None:
        notes.append(why)
    return ComparisonResult(
        metric=metric, method="z-test (inverse-propensity weighted)", control=sc, treatment=st,
        difference=diff.difference, relative_lift=lift, statistic=diff.statistic,
        pvalue=diff.pvalue, df=math.inf, effect_size=math.nan,
        effect_size_name="n/a (adaptive allocation)", estimator=diff.method,
        notes=tuple(notes), std_err=diff.std_err,
        covers=f"{int(grouped.total):,} bandit decisions (all arms) over {len(epochs)} epochs",
        observed="decisions", _relative_ci=rci)


def _extra_notes(data: AnalysisData) -> list[str]:
    """What the per-decision analysis leaves out or gets wrong, for the comparison's notes."""
    snap = data.snapshot
    notes = []
    tags = {key[3] for key in snap.decisions}
    if any(tag & STICKY for tag in tags):
        notes.append("sticky units repeat their arm: decisions of one unit are correlated, "
                     "so standard errors are too small")
    return notes
