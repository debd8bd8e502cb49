"""``analysis.sequential()``: the group-sequential test of the plan at this moment.

What is computed, and why:

- **z statistic** from :func:`~modelrouter.analysis.compare.compare`: the two-proportion z
  (pooled), the delta-method z (ratio metrics), or Welch's t converted to the z with the same
  tail probability (``Phi^-1(F_t(t; df))``, equal to t for large df and honest for small ones).
  One-sided plans test "treatment better": the sign flips for ``lower_is_better`` metrics.
- **information rate** = units in control and treatment / planned units at the maximum
  (:mod:`modelrouter.analysis.horizon`), capped at 1 with a note. For a difference of means or
  proportions with a fixed split, information is proportional to units.
- **boundary** of this look from :func:`~modelrouter.stats.spending_boundaries` on the
  information rates of every *recorded* look plus this one (when it is later than the last
  recorded look; otherwise this *is* the last recorded look and its recorded z is shown). Alpha
  that earlier looks could not spend is carried forward, so looking at unplanned times is fine.
- **decision** ``reject`` if this or any recorded look crossed its boundary (a crossing is never
  undone), ``final`` when the planned maximum is reached without crossing, else ``continue``.
- **crossing**: the first look that crossed (a recorded look, or this one), with ITS z,
  boundary, estimate and direction (``better`` / ``worse`` for the treatment, respecting
  ``lower_is_better``). The group-sequential decision is made there; later looks do not change
  it, so the direction of a ``reject`` is the crossing look's, not the current estimate's.
- **after stopping** (:mod:`modelrouter.analysis.sequential_inference`): repeated confidence
  intervals at every look (``repeated_cis``, valid simultaneously), and once the test stopped
  (crossing or planned maximum) the bias-adjusted estimate, interval and p-value of the
  stage-wise ordering (``adjusted``); the naive estimate of an early crossing is biased.
- **futility** (``plan.futility_spending``): non-binding beta-spending bounds (``futility``);
  ``decision`` is ``futility`` when the current look is in the futility region (stopping is
  recommended, continuing stays allowed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from modelrouter.analysis.compare import compare
from modelrouter.analysis.data import AnalysisData
from modelrouter.analysis.horizon import Horizon, planned_ratio, resolve_horizon
from modelrouter.analysis.results import ComparisonResult
from modelrouter.analysis.sequential_inference import (
    AdjustedInference,
    FutilityCheck,
    adjusted_inference,
    futility_check,
    repeated_intervals,
)
from modelrouter.config import MetricSpec
from modelrouter.config.plan import ExperimentPlan
from modelrouter.exceptions import AnalysisError
from modelrouter.stats import ConfidenceInterval, SequentialTestResult, sequential_test
from modelrouter.store.looks import Look, looks_of

__all__ = ["Crossing", "SequentialAnalysis", "Target", "difference_std_err", "make_look",
           "resolve_target", "sequential_analysis", "z_statistic"]

_Z_UNDERFLOW = 37.5  # the z beyond which a normal tail probability underflows double precision


@dataclass(frozen=True)
class Target:
    """One planned comparison: metric, treatment, and the recorded looks of the pair."""

    metric: str
    variant: str
    spec: MetricSpec
    plan: ExperimentPlan
    looks: tuple[Look, ...]


def resolve_target(data: AnalysisData, metric: str | None, variant: str | None,
                   what: str) -> Target:
    """Metric (default: the config's primary), treatment (default: the only one) and plan."""
    plan = data.config.plan
    if not isinstance(plan, ExperimentPlan):
        raise AnalysisError(f"{what}() needs a plan in the config, e.g. RouterConfig(primary="
                            "'click', plan={'mde': 0.01}) or plan={'max_units': 20000}")
    metric = metric if metric is not None else data.config.primary
    if metric is None:
        raise AnalysisError(f"{what}() needs a metric: pass metric= or set primary in the "
                            "config")
    spec = data.spec(metric)
    try:
        variant = data.treatment(variant, what)
    except AnalysisError as exc:
        if variant is not None:
            raise
        # several treatments: one comparison per call; the verdict tests them all
        raise AnalysisError(f"{exc}: {what}() tests one treatment against the control, call "
                            f"it once per treatment ({what}(variant=...)); analysis.verdict() "
                            "tests every treatment with the family-wise alpha split across "
                            f"them (Bonferroni), and {what}(variant=..., alpha=verdict."
                            "alpha_per_comparison) shows one of those tests") from None
    return Target(metric, variant, spec, plan, looks_of(data.snapshot.looks, metric, variant))


def difference_std_err(cmp: ComparisonResult) -> float:
    """The standard error of ``cmp.difference`` that the sequential tests use: the
    CUPED-adjusted one when the comparison is adjusted (the summaries keep the unadjusted
    data, so their errors would pair the adjusted difference with the unadjusted variance),
    else the unpooled ``sqrt(se_c^2 + se_t^2)`` of the two summaries."""
    if cmp.adjusted:
        return cmp.std_err
    return math.hypot(cmp.control.std_err, cmp.treatment.std_err)


def z_statistic(cmp: ComparisonResult, spec: MetricSpec, sided: int) -> float:
    """The comparison's statistic as a standard-normal z, oriented for one-sided plans."""
    from scipy.special import ndtri, stdtr  # when a statistic is computed, not at import

    t = cmp.statistic
    if math.isfinite(cmp.df) and math.isfinite(t) and t != 0:
        # Welch: the z with the same tail probability under N(0, 1)
        z = -float(ndtri(stdtr(cmp.df, -abs(t))))
        if not math.isfinite(z):
            # the tail probability underflows (|t| > ~38 with large df, e.g. a big effect on
            # latency with many units): Wallace's (1959) approximation, far past any boundary
            z = max(math.sqrt(cmp.df * math.log1p(t * t / cmp.df)), _Z_UNDERFLOW)
        t = math.copysign(z, t)
    if not math.isfinite(t):
        raise AnalysisError(f"the test statistic of {cmp.metric!r} is not finite ({t!r}): "
                            "both groups have no variation")
    return -t if sided == 1 and spec.lower_is_better else t


@dataclass(frozen=True)
class Crossing:
    """The look at which the boundary was first crossed: where the decision was made.

    ``statistic`` is that look's z (oriented as :attr:`SequentialAnalysis.statistic`),
    ``difference`` its estimate (treatment minus control, in the metric's unit) and
    ``variance`` the estimate's variance; ``direction`` is ``better`` or ``worse`` for the
    treatment (``lower_is_better`` respected). ``recorded`` is False when the crossing is the
    current, not yet recorded, look.
    """

    look: int
    recorded: bool
    statistic: float
    boundary: float
    difference: float
    variance: float
    units: int
    information_rate: float
    direction: Literal["better", "worse"]

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {k: getattr(self, k) for k in (
            "look", "recorded", "statistic", "boundary", "difference", "variance", "units",
            "information_rate", "direction")}


def _direction(z: float, spec: MetricSpec, sided: int) -> Literal["better", "worse"]:
    """Whether a z of this comparison favours the treatment (one-sided z is already oriented
    so that positive favours it; two-sided z has the sign of treatment minus control)."""
    favours = z > 0 if sided == 1 else (z < 0 if spec.lower_is_better else z > 0)
    return "better" if favours else "worse"


@dataclass(frozen=True)
class SequentialAnalysis:
    """The group-sequential test of one comparison at this moment."""

    metric: str
    variant: str
    control: str
    method: str
    statistic: float
    boundary: float
    information_rate: float
    units: int
    planned_units: int
    look: int
    recorded: bool
    alpha_spent: float
    alpha_at_look: float
    decision: str
    rejected_at: int | None
    difference: float
    std_err: float
    notes: tuple[str, ...] = ()
    horizon: str = field(default="", repr=False)
    horizon_variance: float = field(default=math.nan, repr=False)
    plan: ExperimentPlan | None = field(default=None, repr=False)
    test: SequentialTestResult | None = field(default=None, repr=False, compare=False)
    crossing: Crossing | None = None
    observed: str = "units"  # what ``units`` counts: units, requests, decisions, or a mix
    repeated_cis: tuple[ConfidenceInterval, ...] = ()
    adjusted: AdjustedInference | None = None
    futility: FutilityCheck | None = None

    @property
    def rci_level(self) -> float:
        """Simultaneous level of the repeated confidence intervals (1 - alpha two-sided,
        1 - 2 alpha one-sided)."""
        if self.test is None:
            return math.nan
        return 1.0 - self.test.design.alpha * (2 / self.test.design.sided)

    @property
    def alpha_spent_before(self) -> float:
        """Alpha spent by the recorded looks before this one."""
        return self.alpha_spent - self.alpha_at_look

    def to_dict(self) -> dict[str, Any]:
        """Plain data for code and JSON (the boundary design included)."""
        out = {k: getattr(self, k) for k in (
            "metric", "variant", "control", "method", "statistic", "boundary",
            "information_rate", "units", "planned_units", "look", "recorded", "alpha_spent",
            "alpha_at_look", "decision", "rejected_at", "difference", "std_err", "horizon",
            "observed")}
        out["notes"] = list(self.notes)
        out["alpha_spent_before"] = self.alpha_spent_before
        out["plan"] = None if self.plan is None else self.plan.to_dict()
        out["design"] = None if self.test is None else self.test.design.to_dict()
        out["crossing"] = None if self.crossing is None else self.crossing.to_dict()
        out["repeated_cis"] = [
            {"look": i + 1, "low": c.low if math.isfinite(c.low) else None,
             "high": c.high if math.isfinite(c.high) else None}
            for i, c in enumerate(self.repeated_cis)]
        out["rci_level"] = self.rci_level
        out["adjusted"] = None if self.adjusted is None else self.adjusted.to_dict()
        out["futility"] = None if self.futility is None else self.futility.to_dict()
        return out

    def explain(self) -> str:
        """Plain words: information rate and how it was computed, alpha spent, the boundary."""
        status = ("recorded" if self.recorded else
                  "not recorded yet: router.record_look() makes it an official look")
        lines = [
            f"Sequential test of {self.metric!r}: {self.variant} vs {self.control} "
            f"({self.method}; plan: {self.plan.describe() if self.plan else 'none'}).",
            f"Information rate {self.information_rate:.4f} = {self.units:,} {self.observed} in "
            "both groups"
            f" / {self.planned_units:,} planned units at the maximum ({self.horizon}).",
            f"This is look {self.look} ({status}); the boundary accounts for "
            f"{self.look - 1} earlier recorded look(s).",
        ]
        if self.test is not None:
            lines.append(self.test.explain())
        c = self.crossing
        if c is not None:
            where = (f"look {c.look}" if c.recorded else
                     f"look {c.look} (this one, not recorded yet)")
            lines.append(
                f"The decision was made at {where}: |z| {abs(c.statistic):.4f} >= boundary "
                f"{c.boundary:.4f}, {self.variant} - {self.control} = {c.difference:+.4g}, "
                f"{self.variant} {c.direction} than {self.control}. Later looks do not change "
                f"it (now: {self.variant} - {self.control} = {self.difference:+.4g}).")
        if self.repeated_cis:
            cis = "; ".join(f"look {i + 1} [{c.low:+.4g}, {c.high:+.4g}]"
                            for i, c in enumerate(self.repeated_cis))
            lines.append(f"Repeated {self.rci_level:.0%} confidence intervals for {self.variant}"
                         f" - {self.control} (valid simultaneously over all looks, however "
                         f"the test is stopped; Jennison & Turnbull 2000, ch. 9): {cis}.")
        if self.adjusted is not None:
            lines.append(self.adjusted.explain(self.variant, self.control))
        if self.futility is not None:
            lines.append(self.futility.explain())
        lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)


def sequential_analysis(data: AnalysisData, metric: str | None = None,
                        variant: str | None = None, *,
                        alpha: float | None = None) -> SequentialAnalysis:
    """See the module docstring; ``metric`` defaults to the config's primary.

    ``alpha`` (default: the plan's) replaces the plan's alpha for this comparison, e.g. the
    Bonferroni share ``plan.alpha / K`` the verdict uses with ``K`` treatments; the boundaries
    of every look (recorded ones included) are recomputed at it.
    """
    t = resolve_target(data, metric, variant, "sequential")
    plan, looks = t.plan, t.looks
    split = alpha is not None and alpha != plan.alpha
    if alpha is None:
        alpha = plan.alpha
    elif not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise AnalysisError(f"alpha ({alpha!r}) must lie in (0, 1)")
    cmp = compare(data, t.metric, t.variant)
    ratio = planned_ratio(data.config, data.control, t.variant, data.variants)
    horizon: Horizon = resolve_horizon(plan, t.spec, cmp.control, ratio, looks)
    units = cmp.control.units + cmp.treatment.units
    raw = units / horizon.planned_units
    rate = min(raw, 1.0)
    notes = []
    if horizon.provisional:
        notes.append("the horizon uses a nuisance parameter estimated from the data so far; "
                     "it is frozen when the first look is recorded")
    if raw > 1.0:
        notes.append(f"{units:,} units exceed the planned maximum {horizon.planned_units:,} "
                     f"(rate {raw:.4f}); the rate is capped at 1, which spends all remaining "
                     f"alpha")
    if plan.sided == 1 and t.spec.lower_is_better:
        notes.append(f"{t.metric!r} is lower-is-better: the one-sided test is for a decrease "
                     "and z is reported with its sign flipped")
    z = z_statistic(cmp, t.spec, plan.sided)
    se = difference_std_err(cmp)
    if looks and rate <= looks[-1].information_rate:
        recorded = True
        statistics = [k.statistic for k in looks]
        rates = [k.information_rate for k in looks]
        # what the comparison counts (units, requests, decisions), said as such
        why = ("the planned maximum was reached at" if rate >= 1.0 else
               f"no new {cmp.observed} since" if units >= looks[-1].units else
               f"fewer {cmp.observed} than at")
        notes.append(f"{why} recorded look {looks[-1].number} ({units:,} {cmp.observed} now, "
                     f"{looks[-1].units:,} then): it is shown as recorded "
                     f"(z then {looks[-1].statistic:.4f}, z now {z:.4f})")
    else:
        recorded = False
        statistics = [k.statistic for k in looks] + [z]
        rates = [k.information_rate for k in looks] + [rate]
    if len(rates) > plan.looks:
        notes.append(f"{len(rates)} looks against {plan.looks} planned: allowed (the spending "
                     "function sets each boundary), but power is lower than planned")
    if split:
        notes.append(f"boundaries at alpha={alpha:.4g} instead of the plan's {plan.alpha:g} "
                     "(a share of the family-wise alpha across several treatments)")
    test = sequential_test(statistics, rates, float(alpha), plan.sided, plan.spending,
                           plan.gamma)
    crossing = None
    k = test.rejected_at
    if k is not None and k <= len(looks):
        first = looks[k - 1]
        # a recorded look's boundary was computed at the plan's alpha; at another alpha, the
        # recomputed one (boundaries of looks 1..k do not depend on later looks)
        bound = float(test.design.z[k - 1]) if split else first.boundary
        crossing = Crossing(k, True, first.statistic, bound, first.difference,
                            first.variance, first.units, first.information_rate,
                            _direction(first.statistic, t.spec, plan.sided))
    elif k is not None:
        crossing = Crossing(k, False, z, test.boundary, cmp.difference, se**2, units,
                            test.information_rate, _direction(z, t.spec, plan.sided))
    ests = [lk.difference for lk in looks] + ([] if recorded else [cmp.difference])
    ses = [math.sqrt(lk.variance) if lk.variance >= 0 else math.nan for lk in looks] + (
        [] if recorded else [se])
    rcis = repeated_intervals(ests, ses, test.design)
    stop = test.rejected_at or (len(rates) if test.decision == "final" else None)
    sign = -1.0 if plan.sided == 1 and t.spec.lower_is_better else 1.0
    adjusted, futility = None, None
    try:
        adjusted = None if stop is None else adjusted_inference(
            test.design, statistics, ests, ses, stop, sign, plan.looks)
        if stop is not None and adjusted is None:
            notes.append(f"no adjusted estimate: the standard error at look {stop} is zero")
    except (ValueError, ArithmeticError) as exc:  # e.g. no root within double precision
        notes.append(f"no adjusted estimate at look {stop}: {exc}")
    try:
        futility = futility_check(plan, float(alpha), test.design, statistics,
                                  test.rejected_at is not None)
    except (ValueError, ArithmeticError) as exc:
        notes.append(f"futility bounds unavailable: {exc}")
    decision = "futility" if futility is not None and futility.stop else test.decision
    return SequentialAnalysis(
        metric=t.metric, variant=t.variant, control=data.control, method=cmp.method,
        statistic=test.statistic, boundary=test.boundary,
        information_rate=test.information_rate, units=units,
        planned_units=horizon.planned_units, look=test.look, recorded=recorded,
        alpha_spent=test.alpha_spent, alpha_at_look=test.alpha_at_look,
        decision=decision, rejected_at=test.rejected_at, difference=cmp.difference,
        std_err=se, notes=tuple(notes),
        horizon=horizon.how, horizon_variance=horizon.horizon_variance, plan=plan, test=test,
        crossing=crossing, observed=cmp.observed, repeated_cis=rcis, adjusted=adjusted,
        futility=futility)


def make_look(data: AnalysisData, metric: str | None, variant: str | None,
              taken_at: float) -> Look:
    """The next official look of a comparison, ready for ``store.add_look``."""
    seq = sequential_analysis(data, metric, variant)
    if seq.recorded and seq.information_rate >= 1.0:
        raise AnalysisError(f"look {seq.look} of {seq.metric!r} already reached the planned "
                            f"maximum (information rate 1); the test is {seq.decision}, no "
                            "further looks")
    if seq.recorded:
        raise AnalysisError(f"no new {seq.observed} since look {seq.look} of "
                            f"{seq.metric!r} ({seq.units:,} now; information rate "
                            f"{seq.information_rate:.4f}); a look needs new data")
    capped = [n for n in seq.notes if n.startswith(f"{seq.units:,} units exceed")]
    return Look(number=seq.look, taken_at=taken_at, metric=seq.metric, variant=seq.variant,
                control=seq.control, units=seq.units, planned_units=seq.planned_units,
                information_rate=seq.information_rate, statistic=seq.statistic,
                difference=seq.difference, variance=seq.std_err**2, boundary=seq.boundary,
                alpha_spent=seq.alpha_spent, decision=seq.decision,
                horizon_variance=seq.horizon_variance, horizon=seq.horizon,
                note="; ".join(capped))
