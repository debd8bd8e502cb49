"""One analysis across A/B <-> bandit mode switches: a phase-stratified estimate.

An experiment may run A/B, then bandit, then A/B again (``router.configure(mode=...)``); every
switch or weight change starts a new epoch with known routing weights. A **phase** is a run of
consecutive epochs in one mode. Each phase is a randomised experiment of its own with known
assignment probabilities, so each has a valid estimate of treatment minus control:

- **A/B phase**: the plain difference of means. Unit level: per unit, over the units first
  exposed in the phase (their variant of first exposure; as ``compare`` does for pure A/B);
  request level: per request. When the A/B weights changed inside the phase the means are
  inverse-weighted by epoch (Hajek), which is the plain mean when the weights are constant.
- **bandit phase**: per decision, the Hajek (self-normalised inverse-propensity) estimate with
  each decision's propensity, the effective weight of its arm in its epoch (holdout included).

The combined estimate is stratified by phase (Cochran 1977, *Sampling Techniques*, ch. 5):
``sum_s (n_s / n) (mean_t,s - mean_c,s)`` with ``n_s`` the phase's observations over all arms,
and the variance ``sum_s (n_s / n)^2 Var_s`` (phases are disjoint sets of observations;
within a phase the Hajek sandwich variance, Hajek 1971, the same as a WLS fit with HC0
errors). **Weights by size, not inverse variance**: size weights estimate the average effect
over the traffic that arrived, whatever the phases' lengths and allocations; inverse-variance
weights would be more precise but would change the estimand towards the phases that happened
to be measured precisely (e.g. balanced A/B phases over skewed bandit ones), which is not a
quantity anyone decides on. A phase in which the treatment or the control has fewer than
``min_units`` observations is merged with the next one (the last with the previous), in time
order; within a merged stratum the Hajek weights keep it valid.

**Unit level.** The unit of analysis is the unit in A/B phases and the decision in bandit
phases. The two measure the same quantity only when every unit of the A/B phases was exposed
once: a unit that returned has a per-unit total over several requests (another scale than a
decision's), and its requests after a switch were routed by the bandit (to any arm) while its
per-unit total still counts them under its first variant and the bandit's decisions count them
again. ``compare`` then refuses (AnalysisError) and :func:`phase_estimates` gives each phase on
its own. Units first exposed in a bandit epoch are analysed through their decisions only.

The summaries of a switched comparison (per-variant means and standard errors) come from the
same phase-stratified estimator as the difference: never naive means beside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from modelrouter.analysis.adaptive import decision_groups
from modelrouter.analysis.adaptive import grouped_data as adaptive_grouped
from modelrouter.analysis.data import AnalysisData
from modelrouter.analysis.results import ComparisonResult, PhaseEstimate, VariantSummary
from modelrouter.exceptions import AnalysisError
from modelrouter.stats import twosample
from modelrouter.stats.ipw import merge_periods
from modelrouter.stats.ipw_grouped import GroupedData, grouped_ipw_difference, grouped_ipw_means
from modelrouter.stats.moments import Moments
from modelrouter.store.decisions import STICKY

__all__ = ["ESTIMATOR", "EpochTable", "epoch_table", "phase_estimates", "switched_compare",
           "switched_summaries", "weighted_summaries"]

ESTIMATOR = "phase-stratified"
_DESCRIPTION = ("phase-stratified: per phase the difference of means (A/B) or the Hajek IPW "
                "estimate (bandit), weighted by the phase's share of observations")
_SUMS = 6  # n, sum x, sum x^2, sum y, sum y^2, sum x*y


@dataclass(frozen=True, eq=False)
class EpochTable:
    """Per-(epoch, arm) sums of one metric over every epoch with observations, in time
    order: ``grouped`` (propensities = each epoch's weights), the epochs, their modes, the
    phase (0-based run of one mode) of each row, and the recorded values per cell."""

    grouped: GroupedData
    epochs: tuple[int, ...]
    modes: tuple[str, ...]
    phase: np.ndarray
    values: np.ndarray
    ab_observed: str

    def observed(self, mode: str) -> str:
        """What one observation of a phase in ``mode`` is: unit, request or decision."""
        return "decisions" if mode == "bandit" else self.ab_observed

    def count(self, mode: str) -> int:
        """Observations of every arm in the epochs of ``mode``."""
        rows = np.array([m == mode for m in self.modes])
        return int(self.grouped.n[rows].sum())


def _moment_sums(m: Moments) -> np.ndarray:
    return np.array([m.n, m.n * m.mean_x, m.m2_x + m.n * m.mean_x ** 2, m.n * m.mean_y,
                     m.m2_y + m.n * m.mean_y ** 2, m.c_xy + m.n * m.mean_x * m.mean_y])


def epoch_table(data: AnalysisData, metric: str, segment: Mapping[str, str] | None = None
                ) -> EpochTable:
    """The sums of ``metric`` per (epoch, arm): A/B epochs from the units first exposed in
    them (unit level) or their requests (request level), bandit epochs from the decisions."""
    spec = data.spec(metric)
    k = len(data.variants)
    modes = data.epoch_modes()
    cells: dict[int, np.ndarray] = {}
    for (v, e, _seg, _tag), (_n, per_metric) in decision_groups(data, segment):
        if modes.get(e) != "ab":
            cells.setdefault(e, np.zeros((_SUMS, k)))[:, v] += _moment_sums(per_metric[metric])
    units = data.snapshot.units
    if units is not None:
        mask = np.isin(units.epoch, [e for e, m in modes.items() if m == "ab"])
        seg_mask = data.unit_mask(segment)
        if seg_mask is not None:
            mask &= seg_mask
        x, y = units.x[metric][mask], units.y[metric][mask]
        if spec.aggregate == "any":
            x = (x > 0).astype(np.float64)
        ep, var = units.epoch[mask], units.variant[mask]
        for e in np.unique(ep):
            at = ep == e
            block = cells.setdefault(int(e), np.zeros((_SUMS, k)))
            for row, col in enumerate((np.ones(int(at.sum())), x[at], x[at] ** 2, y[at],
                                       y[at] ** 2, x[at] * y[at])):
                block[row] += np.bincount(var[at], weights=col, minlength=k)
    else:
        seg_filter = data.segment_codes(segment) if segment else []
        for (v, e, seg), (_n, per_metric) in data.snapshot.groups.items():
            if modes.get(e) == "ab" and all(seg[d] == c for d, c in seg_filter):
                cells.setdefault(e, np.zeros((_SUMS, k)))[:, v] += _moment_sums(
                    per_metric[metric])
    epochs = tuple(sorted(e for e, block in cells.items() if block[0].sum() > 0))
    if not epochs:
        raise AnalysisError("no observations" + (" in this segment" if segment else ""))
    s = np.stack([cells[e] for e in epochs], axis=1)  # (_SUMS, epochs, arms)
    mode_of = tuple("bandit" if modes.get(e) != "ab" else "ab" for e in epochs)
    phase = np.cumsum([0] + [a != b for a, b in zip(mode_of, mode_of[1:])]).astype(np.intp)
    ratio = spec.is_ratio
    grouped = GroupedData(s[0], s[1], s[2], data.epoch_weights(epochs),
                          s[3] if ratio else None, s[4] if ratio else None,
                          s[5] if ratio else None)
    return EpochTable(grouped, epochs, mode_of, phase, s[3],
                      "units" if units is not None else "requests")


def _sub(d: GroupedData, rows: np.ndarray) -> GroupedData:
    """The epochs ``rows`` of ``d``."""
    def pick(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a[rows]
    return GroupedData(d.n[rows], d.sx[rows], d.sxx[rows], d.p[rows], pick(d.sy),
                       pick(d.syy), pick(d.sxy))


def phase_estimates(data: AnalysisData, metric: str, variant: str | None = None, *,
                    segment: Mapping[str, str] | None = None,
                    table: EpochTable | None = None) -> tuple[PhaseEstimate, ...]:
    """Treatment minus control in every phase on its own (NaN where an arm has no
    observations in the phase); ``weight`` is the phase's share of all observations."""
    variant = data.treatment(variant, "phases")
    t, c = data.variant_index(variant), data.variant_index(data.control)
    table = table or epoch_table(data, metric, segment)
    d = table.grouped
    out = []
    for ph in range(int(table.phase.max()) + 1):
        rows = table.phase == ph
        mode = table.modes[int(np.argmax(rows))]
        sub = _sub(d, rows)
        if mode == "bandit":
            name = "Hajek IPW, per decision"
        elif np.ptp(sub.p[:, [c, t]], axis=0).max() == 0:
            name = f"difference of means, per {table.ab_observed[:-1]}"
        else:
            name = (f"difference of means per {table.ab_observed[:-1]}, inverse-weighted by "
                    "the epochs' weights (they changed within the phase)")
        est = (math.nan,) * 4
        if sub.n[:, c].sum() > 0 and sub.n[:, t].sum() > 0:
            try:
                r = grouped_ipw_difference(sub, arm=t, control=c)
                est = (r.estimate_control, r.estimate_arm, r.difference, r.std_err)
            except ValueError:  # a ratio metric without events in the phase
                pass
        out.append(PhaseEstimate(ph + 1, mode, tuple(e for e, r in zip(table.epochs, rows) if r),
                                 table.observed(mode), int(sub.n.sum()), *est, estimator=name,
                                 weight=float(sub.n.sum()) / d.total))
    return tuple(out)


def _check_scales(data: AnalysisData, segment: Mapping[str, str] | None) -> None:
    """Refuse a combined estimate at unit level when units of A/B epochs returned."""
    units = data.snapshot.units
    if units is None:
        return
    ab = [e for e, m in data.epoch_modes().items() if m == "ab"]
    mask = np.isin(units.epoch, ab) & (units.exposures > 1)
    seg_mask = data.unit_mask(segment)
    if seg_mask is not None:
        mask &= seg_mask
    repeat = int(mask.sum())
    if repeat:
        raise AnalysisError(
            f"{repeat:,} units first exposed in A/B epochs were exposed more than once: A/B "
            "phases are analysed per unit (a unit's total over its requests, the later ones "
            "possibly routed by the bandit) and bandit phases per decision, not one quantity, "
            "so there is no combined estimate; analysis.phases(metric) gives each phase's "
            "own estimate")


def _returned_bandit_units(data: AnalysisData, segment: Mapping[str, str] | None) -> int:
    """Units first exposed in a bandit epoch and exposed again, when an A/B epoch came after
    it (their requests there may be routed by hash and are in no decision): 0 otherwise."""
    units = data.snapshot.units
    modes = data.epoch_modes()
    if units is None or not any(m == "ab" for e, m in modes.items()
                                if e > min(e for e, m in modes.items() if m == "bandit")):
        return 0
    bandit = [e for e, m in modes.items() if m == "bandit"]
    mask = np.isin(units.epoch, bandit) & (units.exposures > 1)
    seg_mask = data.unit_mask(segment)
    if seg_mask is not None:
        mask &= seg_mask
    return int(mask.sum())


def _strata(table: EpochTable, arms: tuple[int, ...], min_units: int) -> tuple[np.ndarray, str]:
    """The stratum of each epoch: its phase, phases with fewer than ``min_units``
    observations of one of ``arms`` merged in time order; and a note if any were merged."""
    n_phases = int(table.phase.max()) + 1
    counts = np.zeros((n_phases, len(arms)))
    np.add.at(counts, table.phase, table.grouped.n[:, list(arms)])
    try:
        merged = merge_periods(counts, min_units)
    except ValueError:
        raise AnalysisError(f"fewer than {min_units} observations of an arm in all phases "
                            "together: too little data to compare") from None
    note = ""
    if merged[-1] + 1 < n_phases:
        groups = [[p + 1 for p in range(n_phases) if merged[p] == s]
                  for s in range(int(merged[-1]) + 1)]
        joined = "; ".join(" + ".join(map(str, g)) for g in groups if len(g) > 1)
        note = (f"phases {joined} were pooled into one stratum (fewer than {min_units} "
                "observations of an arm in one of them)")
    return merged[table.phase], note


def switched_summaries(data: AnalysisData, metric: str, arms: tuple[int, ...] | None = None,
                       *, segment: Mapping[str, str] | None = None, min_units: int = 10,
                       table: EpochTable | None = None) -> list[VariantSummary]:
    """Per-variant phase-stratified means (of ``arms``, default all) and standard errors:
    what a switched comparison shows for its variants."""
    arms = tuple(range(len(data.variants))) if arms is None else arms
    table = table or epoch_table(data, metric, segment)
    strata, _ = _strata(table, arms, min_units)
    try:
        means = grouped_ipw_means(table.grouped, method="stratified", strata=strata, arms=arms)
    except ValueError as exc:
        raise AnalysisError(f"{metric}: {exc}") from None
    out = []
    for a, m in zip(arms, means):
        n = int(table.grouped.n[:, a].sum())
        out.append(VariantSummary(data.variants[a], n, m.estimate, m.std_err * math.sqrt(n),
                                  m.std_err, int(round(float(table.values[:, a].sum())))))
    return out


def switched_compare(data: AnalysisData, metric: str, variant: str | None = None, *,
                     segment: Mapping[str, str] | None = None, min_units: int = 10
                     ) -> ComparisonResult:
    """``variant`` vs the control across every phase (module docstring), with each phase's
    own estimate in ``phases``."""
    variant = data.treatment(variant)
    t, c = data.variant_index(variant), data.variant_index(data.control)
    _check_scales(data, segment)
    table = epoch_table(data, metric, segment)
    strata, merged = _strata(table, (c, t), min_units)
    if table.grouped.ratio:  # a per-event mean needs events in every stratum
        for i in (c, t):
            events = np.bincount(strata, weights=table.values[:, i])
            if np.any(events <= 0):
                raise AnalysisError(
                    f"no {metric!r} events recorded in {data.variants[i]!r} in "
                    f"{'any phase' if np.all(events <= 0) else 'some phase'} yet: the per-event "
                    "mean, the test and the relative lift are not defined")
    try:
        diff = grouped_ipw_difference(table.grouped, arm=t, control=c, method="stratified",
                                      strata=strata)
    except ValueError as exc:
        raise AnalysisError(f"{metric}: {exc}") from None
    sc, st = switched_summaries(data, metric, (c, t), segment=segment, min_units=min_units,
                                table=table)
    phases = phase_estimates(data, metric, variant, segment=segment, table=table)
    lift, rci, why = twosample.relative_lift_note(sc.mean, sc.std_err, st.mean, st.std_err)
    n_ab, n_bandit = table.count("ab"), table.count("bandit")
    ab_noun = table.ab_observed
    notes = [f"mode switches: {len(phases)} phases, each analysed on its own data (A/B per "
             f"{ab_noun[:-1]}, bandit per decision with inverse-propensity weights) and "
             "combined with weights proportional to its observations: the estimate is the "
             "average effect over the traffic that arrived"]
    if merged:
        notes.append(merged)
    returned = _returned_bandit_units(data, segment)
    if returned:
        notes.append(f"{returned:,} units first exposed in a bandit epoch were exposed again; "
                     "those of their requests that fell in later A/B epochs are not in the "
                     "estimate (their bandit decisions are)")
    if any(key[3] & STICKY for key in data.snapshot.decisions):
        notes.append("sticky units repeat their arm: decisions of one unit are correlated, "
                     "so standard errors are too small")
    # the phases say how the weights changed; "units in the variant of their first exposure"
    # holds for the A/B phases, which the first note already says
    notes.extend(n for n in data.notes() if not n.startswith("weights changed over"))
    if why is not None:
        notes.append(why)
    covers = (f"{n_ab:,} {ab_noun} of A/B epochs and {n_bandit:,} bandit decisions "
              f"(all arms), {len(phases)} phases over epochs {table.epochs[0]}-"
              f"{table.epochs[-1]}")
    return ComparisonResult(
        metric=metric, method="z-test (phase-stratified)", control=sc, treatment=st,
        difference=diff.difference, relative_lift=lift, statistic=diff.statistic,
        pvalue=diff.pvalue, df=math.inf, effect_size=math.nan,
        effect_size_name="n/a (mode switches)", estimator=_DESCRIPTION, notes=tuple(notes),
        std_err=diff.std_err, covers=covers, observed=f"{ab_noun} and decisions",
        phases=phases, _relative_ci=rci)


def weighted_summaries(data: AnalysisData, metric: str,
                       segment: Mapping[str, str] | None = None) -> list[VariantSummary]:
    """Per-variant means of an adaptive (bandit) or switched experiment from the estimator
    its comparisons use (Hajek per decision; phase-stratified after mode switches), never
    the naive ones; a variant that cannot be estimated yet has NaN mean and standard error
    (with its observations counted), so a dashboard can always show the table."""
    if data.switched:
        table = epoch_table(data, metric, segment)
        counts, values = table.grouped.n.sum(axis=0), table.values.sum(axis=0)
    else:
        grouped, _ = adaptive_grouped(data, metric, segment)
        counts, values = grouped.n.sum(axis=0), grouped.y_sums()[0].sum(axis=0)
    out = []
    for a, name in enumerate(data.variants):
        try:
            if data.switched:
                out += switched_summaries(data, metric, (a,), segment=segment, table=table)
                continue
            m = grouped_ipw_means(grouped, arms=(a,))[0]
            n = int(counts[a])
            out.append(VariantSummary(name, n, m.estimate, m.std_err * math.sqrt(n), m.std_err,
                                      int(round(float(values[a])))))
        except (AnalysisError, ValueError):
            out.append(VariantSummary(name, int(counts[a]), math.nan, math.nan, math.nan,
                                      int(round(float(values[a])))))
    return out
