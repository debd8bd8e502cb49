"""The :class:`Analysis` facade: questions about an experiment, answered from one snapshot."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from modelrouter.analysis.guardrails import GuardrailResult, guardrail_results
from modelrouter.analysis.report import render_report
from modelrouter.analysis.results import ComparisonResult, VariantSummary
from modelrouter.analysis.segments import SegmentAnalysis, segment_analysis
from modelrouter.analysis.verdict import Verdict, decide
from modelrouter.bandit.status import BanditStatus
from modelrouter.config import MetricSpec, RouterConfig
from modelrouter.exceptions import AnalysisError, UnknownMetricError
from modelrouter.stats import twosample
from modelrouter.stats.moments import Moments, grouped_moments
from modelrouter.store.memory import Snapshot
from modelrouter.store.protocol import loss_notes

if TYPE_CHECKING:
    from modelrouter.analysis.always_valid import AlwaysValidAnalysis
    from modelrouter.analysis.bandit import BanditResult
    from modelrouter.analysis.sequential import SequentialAnalysis
    from modelrouter.analysis.srm import SampleRatioCheck

__all__ = ["Analysis"]


class Analysis:
    """Read-only analysis of a :class:`~modelrouter.store.memory.Snapshot`.

    Built by ``router.analysis()``; every method computes from the same snapshot, so the
    answers are consistent with each other even while traffic continues.
    """

    def __init__(self, snapshot: Snapshot, config: RouterConfig, control: str) -> None:
        self.snapshot = snapshot
        self.config = config
        self.control = control
        self.variants = snapshot.variants
        self.rollback_events: tuple[Any, ...] = ()  # RollbackEvent, set by from_experiment
        self.bandit_status: BanditStatus | None = None  # Experiment.bandit_status(), idem

    @classmethod
    def from_experiment(cls, experiment: Any) -> Analysis:
        """Snapshot an :class:`~modelrouter.routing.experiment.Experiment` and analyse it."""
        analysis = cls(experiment.store.snapshot(), experiment.config, experiment.control)
        analysis.rollback_events = tuple(getattr(experiment, "rollback_events", ()))
        analysis.bandit_status = experiment.bandit_status()
        return analysis

    # -- helpers --------------------------------------------------------------------------
    def _spec(self, metric: str) -> MetricSpec:
        try:
            return self.snapshot.metrics[metric]
        except KeyError:
            raise UnknownMetricError(f"metric {metric!r} is not declared; declared metrics are "
                                     f"{sorted(self.snapshot.metrics)}") from None

    def treatment(self, variant: str | None, what: str = "compare") -> str:
        """The treatment to compare: ``variant``, or the only non-control variant; validated."""
        if variant is None:
            others = [v for v in self.variants if v != self.control]
            if len(others) != 1:
                raise AnalysisError(f"{what}() needs variant= with {len(self.variants)} "
                                    f"variants; choose one of {others!r}")
            return others[0]
        if self._variant_index(variant) == self._variant_index(self.control):
            raise AnalysisError(f"variant ({variant!r}) is the control; compare another variant")
        return variant

    def _variant_index(self, variant: str) -> int:
        try:
            return self.variants.index(variant)
        except ValueError:
            raise AnalysisError(f"variant ({variant!r}) is not one of "
                                f"{list(self.variants)!r}") from None

    def unit_mask(self, segment: Mapping[str, str] | None) -> np.ndarray | None:
        """Boolean mask of units in a segment (``{"platform": "mobile"}``), None for all."""
        if not segment:
            return None
        units = self.snapshot.units
        if units is None:
            raise AnalysisError("segment filters on request-level experiments use groups")
        mask = np.ones(units.variant.size, dtype=bool)
        for d, code in self._segment_codes(segment):
            mask &= units.segments[:, d] == code
        return mask

    def moments(self, metric: str, segment: Mapping[str, str] | None = None) -> list[Moments]:
        """Per-variant moments of the metric's per-unit (x, y) pairs."""
        spec = self._spec(metric)
        k = len(self.variants)
        units = self.snapshot.units
        if units is not None:
            mask = self.unit_mask(segment)
            codes, x, y = units.variant, units.x[metric], units.y[metric]
            if mask is not None:
                codes, x, y = codes[mask], x[mask], y[mask]
            if spec.aggregate == "any":
                x = (x > 0).astype(np.float64)
            return grouped_moments(codes, k, x, y)
        out = [Moments() for _ in range(k)]
        seg_filter = self._segment_codes(segment) if segment else None
        for (variant, _epoch, seg), (_n, per_metric) in self.snapshot.groups.items():
            if seg_filter is None or all(seg[d] == c for d, c in seg_filter):
                out[variant] = out[variant].merge(per_metric[metric])
        return out

    def _segment_codes(self, segment: Mapping[str, str]) -> list[tuple[int, int]]:
        """``(dimension index, value code)`` per filter; code -1 for a value never seen."""
        pairs = []
        for dim, value in segment.items():
            if dim not in self.snapshot.segment_dims:
                raise AnalysisError(f"segment dimension ({dim!r}) is not declared; declared "
                                    f"dimensions are {list(self.snapshot.segment_dims)!r}")
            values = self.snapshot.segment_values[dim]
            pairs.append((self.snapshot.segment_dims.index(dim),
                          values.index(value) if value in values else -1))
        return pairs

    # -- questions ------------------------------------------------------------------------
    def summary(self, metric: str, segment: Mapping[str, str] | None = None
                ) -> list[VariantSummary]:
        """Per-variant units, mean, std and standard error of a metric."""
        spec = self._spec(metric)
        return [_summarise(v, m, spec) for v, m in zip(self.variants,
                                                        self.moments(metric, segment))]

    def compare(self, metric: str, variant: str | None = None, *,
                segment: Mapping[str, str] | None = None,
                estimator: str | None = None) -> ComparisonResult:
        """Compare ``variant`` (default: the only treatment) against the control on ``metric``.

        Binary metrics: two-proportion z-test and Cohen's h. Continuous per-unit sums: Welch's
        t-test and Cohen's d. Ratio metrics (``aggregate="mean"``): delta-method z-test.
        After bandit traffic (adaptive allocation) the unit is the decision and the estimate
        is inverse-propensity weighted: ``estimator`` "hajek" (default), "stratified", "aipw"
        or "naive" (biased, a reference); see analysis/adaptive.py.
        """
        from modelrouter.analysis.adaptive import adaptive, adaptive_compare

        if adaptive(self):
            return adaptive_compare(self, metric, variant, segment=segment, estimator=estimator)
        if estimator is not None:
            raise AnalysisError(f"estimator ({estimator!r}) applies to bandit (adaptive) "
                                "traffic; this experiment has none")
        spec = self._spec(metric)
        variant = self.treatment(variant)
        t_idx, c_idx = self._variant_index(variant), self._variant_index(self.control)
        moments = self.moments(metric, segment)
        mc, mt = moments[c_idx], moments[t_idx]
        for name, m in ((self.control, mc), (variant, mt)):
            if m.n < 2:
                raise AnalysisError(f"variant {name!r} has {m.n} units with data for "
                                    f"{metric!r}; need at least 2")
        return comparison(spec, self.control, mc, variant, mt, notes=self._notes())

    def compare_all(self, metric: str) -> dict[str, ComparisonResult]:
        """Every non-control variant against the control."""
        return {v: self.compare(metric, v) for v in self.variants if v != self.control}

    def segments(self, metric: str, by: str | Sequence[str], variant: str | None = None, *,
                 method: str = "holm", alpha: float = 0.05) -> SegmentAnalysis:
        """Per-segment comparisons (``by`` a dimension or a list of them, crossed), p-values
        adjusted across segments, heterogeneity and per-segment SRM (see analysis/segments)."""
        return segment_analysis(self, metric, by, variant, method=method, alpha=alpha)

    def guardrails(self) -> tuple[GuardrailResult, ...]:
        """Every configured guardrail as a sequentially valid non-inferiority test."""
        return guardrail_results(self)

    def verdict(self, variant: str | None = None) -> Verdict:
        """ship / keep_testing / blocked_by_guardrail / no_effect / invalid, with reasons."""
        return decide(self, variant)

    def report(self, variant: str | None = None) -> str:
        """Everything a reviewer needs in one text: verdict, SRM, primary, guardrails,
        segments, rollbacks."""
        return render_report(self, variant)

    def sequential(self, metric: str | None = None, variant: str | None = None
                   ) -> SequentialAnalysis:
        """The plan's group-sequential test now: information rate, z, this look's boundary
        given the recorded looks, alpha spent, and reject / continue / final (see
        analysis/sequential.py). ``metric`` defaults to the config's primary."""
        from modelrouter.analysis.sequential import sequential_analysis

        return sequential_analysis(self, metric, variant)

    def always_valid(self, metric: str | None = None, variant: str | None = None, *,
                     tau2: float | None = None) -> AlwaysValidAnalysis:
        """Always-valid (mSPRT) p-value and interval now, over the recorded looks and this
        moment (see analysis/always_valid.py)."""
        from modelrouter.analysis.always_valid import always_valid_analysis

        return always_valid_analysis(self, metric, variant, tau2=tau2)

    def srm(self, threshold: float = 0.001) -> SampleRatioCheck:
        """Sample-ratio check of units per variant against the configured weights, epoch by
        epoch when they changed (see analysis/srm.py)."""
        from modelrouter.analysis.adaptive import adaptive, adaptive_srm
        from modelrouter.analysis.srm import srm_analysis

        if adaptive(self):  # bandit decisions against each epoch's weights
            return adaptive_srm(self, threshold)
        return srm_analysis(self, threshold)

    def bandit(self) -> BanditResult:
        """Weights, P(best), expected loss, posterior means, regret estimate and weights
        history of the bandit (see analysis/bandit.py)."""
        from modelrouter.analysis.bandit import bandit_result

        return bandit_result(self)

    def holdout(self, metric: str | None = None) -> ComparisonResult:
        """The bandit as a whole against its uniform holdout on ``metric`` (default: the
        reward); needs ``RouterConfig(holdout=...)`` (see analysis/adaptive.py)."""
        from modelrouter.analysis.adaptive import holdout_compare

        return holdout_compare(self, metric)

    def _notes(self) -> tuple[str, ...]:
        notes = []
        if len({e.weights for e in self.snapshot.epochs}) > 1:
            notes.append(f"weights changed over {len(self.snapshot.epochs)} epochs; units are "
                         "analysed in the variant of their first exposure")
        if self.snapshot.uncounted_requests:
            notes.append(f"{self.snapshot.uncounted_requests:,} requests without a unit id "
                         "were served but not counted")
        notes.extend(loss_notes(getattr(self.snapshot, "losses", {})))
        return tuple(notes)

    def to_dict(self, metrics: Sequence[str] | None = None) -> dict[str, Any]:
        """Per-metric summaries and comparisons as plain data."""
        out: dict[str, Any] = {"variants": list(self.variants), "control": self.control,
                               "units": self.snapshot.n_units,
                               "requests": dict(zip(self.variants,
                                                    self.snapshot.requests.tolist())),
                               "metrics": {}}
        for metric in metrics or list(self.snapshot.metrics):
            entry: dict[str, Any] = {"summary": [s.to_dict() for s in self.summary(metric)]}
            try:
                entry["comparisons"] = {v: c.to_dict() for v, c in
                                        self.compare_all(metric).items()}
            except AnalysisError as exc:
                entry["comparisons"] = {"error": str(exc)}
            out["metrics"][metric] = entry
        return out


def comparison(spec: MetricSpec, control: str, mc: Moments, treatment: str, mt: Moments, *,
               notes: tuple[str, ...] = (), estimator: str = "difference in means"
               ) -> ComparisonResult:
    """The test that fits the metric, effect size and relative lift, from two groups' moments."""
    sc, st = _summarise(control, mc, spec), _summarise(treatment, mt, spec)
    test, effect, effect_name = _test(spec, mc, mt)
    lift, rci = twosample.relative_lift(sc.mean, sc.std_err, st.mean, st.std_err)
    return ComparisonResult(
        metric=spec.name, method=test.method, control=sc, treatment=st,
        difference=test.difference, relative_lift=lift, statistic=test.statistic,
        pvalue=test.pvalue, df=test.df, effect_size=effect, effect_size_name=effect_name,
        estimator=estimator, notes=notes, std_err=test.std_err, _relative_ci=rci, _test=test)


def _summarise(variant: str, m: Moments, spec: MetricSpec) -> VariantSummary:
    events = int(round(m.mean_y * m.n))
    if spec.is_ratio:
        se = math.sqrt(m.ratio_var) if m.n > 1 else math.nan
        return VariantSummary(variant, m.n, m.ratio, se * math.sqrt(m.n), se, events)
    std = math.sqrt(m.var_x) if m.n > 1 else math.nan
    se = std / math.sqrt(m.n) if m.n > 1 else math.nan
    if spec.aggregate == "any" and m.n > 0:  # a proportion: the binomial standard error
        se = math.sqrt(m.mean_x * (1.0 - m.mean_x) / m.n)
    return VariantSummary(variant, m.n, m.mean_x if m.n else math.nan, std, se, events)


def _test(spec: MetricSpec, mc: Moments, mt: Moments
          ) -> tuple[twosample.TwoSampleResult, float, str]:
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
