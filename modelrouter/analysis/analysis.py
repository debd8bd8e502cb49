"""The :class:`Analysis` facade: questions about an experiment, answered from one snapshot.

The facade holds one frozen :class:`~modelrouter.analysis.data.AnalysisData` and delegates
every question to the module that answers it; it computes nothing itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from modelrouter.analysis.always_valid import AlwaysValidAnalysis, always_valid_analysis
from modelrouter.analysis.bandit import BanditResult, bandit_result
from modelrouter.analysis.compare import (
    compare,
    compare_all,
    holdout_compare,
    summary,
)
from modelrouter.analysis.data import AnalysisData, ExperimentSource
from modelrouter.analysis.document import analysis_document
from modelrouter.analysis.guardrails import GuardrailResult, guardrail_results
from modelrouter.analysis.jsondata import plain
from modelrouter.analysis.phases import phase_estimates
from modelrouter.analysis.report import render_report
from modelrouter.analysis.results import ComparisonResult, PhaseEstimate, VariantSummary
from modelrouter.analysis.segments import SegmentAnalysis, segment_analysis
from modelrouter.analysis.sequential import SequentialAnalysis, sequential_analysis
from modelrouter.analysis.srm import SampleRatioCheck, check_sample_ratio
from modelrouter.analysis.verdict import Verdict, decide
from modelrouter.config import RouterConfig
from modelrouter.exceptions import AnalysisError
from modelrouter.stats.moments import Moments
from modelrouter.store.types import Snapshot

if TYPE_CHECKING:  # annotations only
    from modelrouter.bandit.status import BanditStatus
    from modelrouter.routing.promotion import Stages
    from modelrouter.routing.state import RollbackEvent
    from modelrouter.stats.paired_comparison import ShadowComparison
    from modelrouter.store.shadows import ShadowSnapshot

__all__ = ["Analysis"]


class Analysis:
    """Read-only analysis of a :class:`~modelrouter.store.memory.Snapshot`.

    Built by ``router.analysis()``; every method computes from the same snapshot, so the
    answers are consistent with each other even while traffic continues.

    The attributes (``snapshot``, ``config``, ``control``, ``variants``, ``rollback_events``,
    ``bandit_status``) read the frozen :attr:`data`. They stay assignable, as they always
    were: assigning one replaces :attr:`data` with a copy that differs in that field, so each
    question still sees one consistent frozen value and never a half-updated one.
    """

    # the shadows' statistics at the snapshot (set by ``router.analysis()``; None: no shadows)
    shadow_data: ShadowSnapshot | None = None

    def __init__(self, snapshot: Snapshot, config: RouterConfig, control: str) -> None:
        self._data = AnalysisData(snapshot, config, control, snapshot.variants)

    @classmethod
    def from_experiment(cls, experiment: ExperimentSource) -> Analysis:
        """Snapshot an :class:`~modelrouter.routing.experiment.Experiment` and analyse it."""
        data = AnalysisData.from_experiment(experiment)
        analysis = cls(data.snapshot, data.config, data.control)
        analysis._data = data
        return analysis

    # -- the data -------------------------------------------------------------------------
    @property
    def data(self) -> AnalysisData:
        """The frozen snapshot, config, control, rollbacks and bandit status answered from."""
        return self._data

    @property
    def snapshot(self) -> Snapshot:
        """The store's statistics at the moment of the analysis."""
        return self._data.snapshot

    @snapshot.setter
    def snapshot(self, value: Snapshot) -> None:
        self._data = dataclasses.replace(self._data, snapshot=value)

    @property
    def config(self) -> RouterConfig:
        """The experiment's configuration."""
        return self._data.config

    @config.setter
    def config(self, value: RouterConfig) -> None:
        self._data = dataclasses.replace(self._data, config=value)

    @property
    def control(self) -> str:
        """The control variant."""
        return self._data.control

    @control.setter
    def control(self, value: str) -> None:
        self._data = dataclasses.replace(self._data, control=value)

    @property
    def variants(self) -> tuple[str, ...]:
        """Every variant, in the store's order (their codes)."""
        return self._data.variants

    @variants.setter
    def variants(self, value: tuple[str, ...]) -> None:
        self._data = dataclasses.replace(self._data, variants=value)

    @property
    def rollback_events(self) -> tuple[RollbackEvent, ...]:
        """Rollbacks and resumes up to the analysis, oldest first (set by from_experiment)."""
        return self._data.rollback_events

    @rollback_events.setter
    def rollback_events(self, value: tuple[RollbackEvent, ...]) -> None:
        self._data = dataclasses.replace(self._data, rollback_events=value)

    @property
    def stages(self) -> Stages | None:
        """The shadow candidates' stages and transitions (set by ``router.analysis()``)."""
        return self._data.stages

    @stages.setter
    def stages(self, value: Stages | None) -> None:
        self._data = dataclasses.replace(self._data, stages=value)

    @property
    def bandit_status(self) -> BanditStatus | None:
        """The bandit's state at the analysis (``Experiment.bandit_status()``), or None."""
        return self._data.bandit_status

    @bandit_status.setter
    def bandit_status(self, value: BanditStatus | None) -> None:
        self._data = dataclasses.replace(self._data, bandit_status=value)

    # -- helpers --------------------------------------------------------------------------
    def treatment(self, variant: str | None, what: str = "compare") -> str:
        """The treatment to compare: ``variant``, or the only non-control variant; validated."""
        return self._data.treatment(variant, what)

    def unit_mask(self, segment: Mapping[str, str] | None) -> np.ndarray | None:
        """Boolean mask of units in a segment (``{"platform": "mobile"}``), None for all."""
        return self._data.unit_mask(segment)

    def moments(self, metric: str, segment: Mapping[str, str] | None = None) -> list[Moments]:
        """Per-variant moments of the metric's per-unit (x, y) pairs."""
        return self._data.moments(metric, segment)

    # -- questions ------------------------------------------------------------------------
    def summary(self, metric: str, segment: Mapping[str, str] | None = None
                ) -> list[VariantSummary]:
        """Per-variant units, mean, std and standard error of a metric."""
        return summary(self._data, metric, segment)

    def compare(self, metric: str, variant: str | None = None, *,
                segment: Mapping[str, str] | None = None,
                estimator: str | None = None, adjust: bool = True) -> ComparisonResult:
        """Compare ``variant`` (default: the only treatment) against the control on ``metric``.

        Binary metrics: two-proportion z-test and Cohen's h. Continuous per-unit sums: Welch's
        t-test and Cohen's d. Ratio metrics (``aggregate="mean"``): delta-method z-test.
        After bandit traffic (adaptive allocation) the unit is the decision and the estimate
        is inverse-propensity weighted: ``estimator`` "hajek" (default), "stratified", "aipw"
        or "naive" (biased, a reference); see analysis/adaptive.py. A metric that declares
        covariates (``MetricSpec.covariates``) is compared CUPED-adjusted when its units have
        values (``r.adjusted``, ``r.variance_reduction``; analysis/adjusted.py);
        ``adjust=False`` gives the unadjusted comparison.
        """
        return compare(self._data, metric, variant, segment=segment, estimator=estimator,
                       adjust=adjust)

    def compare_all(self, metric: str) -> dict[str, ComparisonResult]:
        """Every non-control variant against the control."""
        return compare_all(self._data, metric)

    def phases(self, metric: str, variant: str | None = None, *,
               segment: Mapping[str, str] | None = None) -> tuple[PhaseEstimate, ...]:
        """Treatment minus control in each phase (run of epochs in one mode: A/B per unit,
        bandit per decision) on its own; see analysis/phases.py."""
        return phase_estimates(self._data, metric, variant, segment=segment)

    def segments(self, metric: str, by: str | Sequence[str], variant: str | None = None, *,
                 method: str = "holm", alpha: float = 0.05) -> SegmentAnalysis:
        """Per-segment comparisons (``by`` a dimension or a list of them, crossed), p-values
        adjusted across segments, heterogeneity and per-segment SRM (see analysis/segments)."""
        return segment_analysis(self._data, metric, by, variant, method=method, alpha=alpha)

    def guardrails(self) -> tuple[GuardrailResult, ...]:
        """Every configured guardrail as a sequentially valid non-inferiority test."""
        return guardrail_results(self._data)

    def verdict(self, variant: str | None = None) -> Verdict:
        """ship / keep_testing / blocked_by_guardrail / no_effect / harmful / invalid, with
        reasons; a sequential decision is the crossing look's, and later data that disagree
        with it are flagged (see analysis/verdict.py).

        With ``K >= 2`` treatments each comparison uses ``alpha / K`` (Bonferroni, so the
        family-wise error across treatments stays at most alpha). Without ``variant=`` the
        verdict covers every treatment: ``per_variant`` holds each one's verdict and
        ``recommended`` the treatment to ship (the best significantly better one), if any.
        With ``variant=`` only that treatment is decided, still at ``alpha / K``."""
        return decide(self._data, variant)

    def report(self, variant: str | None = None) -> str:
        """Everything a reviewer needs in one text: verdict, SRM, primary, guardrails,
        segments, rollbacks."""
        return render_report(self._data, variant)

    def sequential(self, metric: str | None = None, variant: str | None = None, *,
                   alpha: float | None = None) -> SequentialAnalysis:
        """The plan's group-sequential test now: information rate, z, this look's boundary
        given the recorded looks, alpha spent, and reject / continue / final (see
        analysis/sequential.py). ``metric`` defaults to the config's primary.

        One comparison per call: with several treatments pass ``variant=`` (without it an
        AnalysisError says so). ``alpha`` (default: the plan's, uncorrected) replaces the
        plan's; ``alpha=analysis.verdict().alpha_per_comparison`` gives the test the verdict
        decided on (the plan's alpha split across the treatments)."""
        return sequential_analysis(self._data, metric, variant, alpha=alpha)

    def always_valid(self, metric: str | None = None, variant: str | None = None, *,
                     tau2: float | None = None, alpha: float | None = None,
                     min_events: int | None = None) -> AlwaysValidAnalysis:
        """Always-valid (mSPRT) p-value and interval now, over the recorded looks and this
        moment (see analysis/always_valid.py). One comparison per call, like
        :meth:`sequential`; ``alpha`` (default: the plan's) as there."""
        return always_valid_analysis(self._data, metric, variant, tau2=tau2, alpha=alpha,
                                     min_events=min_events)

    def srm(self, threshold: float = 0.001, method: str = "sequential") -> SampleRatioCheck:
        """Sample-ratio check of units per variant against the configured weights, epoch by
        epoch when they changed: the anytime-valid sequential test by default (valid however
        often it is checked), or ``method="chi-square"`` for one check at a fixed sample size
        (see analysis/srm.py)."""
        return check_sample_ratio(self._data, threshold, method)

    def bandit(self) -> BanditResult:
        """Weights, P(best), expected loss, posterior means, regret estimate and weights
        history of the bandit (see analysis/bandit.py)."""
        return bandit_result(self._data)

    def shadow(self, name: str, confidence_level: float = 0.95) -> ShadowComparison:
        """The paired analysis of shadow ``name`` vs the served model (agreement or score
        differences, latency ratios, error rates; accuracy or loss once labels arrive);
        AnalysisError naming the known shadows for an unknown name."""
        from modelrouter.store.shadows import ShadowSnapshot

        data = self.shadow_data if self.shadow_data is not None else ShadowSnapshot({}, {})
        return data.comparison(name, confidence_level)

    def holdout(self, metric: str | None = None) -> ComparisonResult:
        """The bandit as a whole against its uniform holdout on ``metric`` (default: the
        reward); needs ``RouterConfig(holdout=...)`` (see analysis/compare.py)."""
        return holdout_compare(self._data, metric)

    def to_dict(self, metrics: Sequence[str] | None = None) -> dict[str, Any]:
        """Everything the report holds as strict JSON data (NaN/inf as None): per-metric
        summaries and comparisons (``metrics`` restricts them), the verdict, SRM, sequential
        and always-valid tests, segments, guardrails, bandit, phases, rollbacks and notes,
        versioned by ``schema_version`` and valid against the shipped JSON Schema (see
        analysis/document.py and analysis/schema.py). Never raises: a part that cannot be
        computed says so in its ``status``."""
        document = analysis_document(self._data, metrics)
        if self.shadow_data is not None:  # shadows: counts and the paired comparison of each
            document["shadows"] = self._shadows_dict(self.shadow_data)
        doc = plain(document)
        assert isinstance(doc, dict)
        return doc

    @staticmethod
    def _shadows_dict(data: ShadowSnapshot) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, stats in data.stats.items():
            try:
                out[name] = {"status": "ok", "counts": stats.counts(),
                             **stats.comparison().to_dict()}
            except AnalysisError as exc:  # no pairs yet
                out[name] = {"status": "not_enough_data", "reason": str(exc),
                             "counts": stats.counts()}
        return out

    def to_frame(self) -> Any:
        """The snapshot's rows as a pandas DataFrame: one per unit (unit, variant, first
        exposure, epoch, propensity, segments, per-metric sum and count); at request level one
        per (variant, epoch, segment) group. The same rows as ``modelrouter export`` (see
        store/export.py). Needs pandas: ``pip install 'modelrouter[pandas]'``."""
        from modelrouter.store.export import to_frame

        return to_frame(self._data.snapshot)
