"""The verdict: one decision a reviewer can act on, with the reasons in plain words.

Checked in this order (the first that applies decides):

1. ``invalid``: no primary metric configured, a sample-ratio mismatch (the split is not the
   configured one, so every comparison is suspect), or too little data to compare.
2. ``blocked_by_guardrail``: a guardrail *fails* (its always-valid interval lies beyond the
   margin), or the router rolled the experiment back and has not been resumed.
3. The primary metric's sequential decision (``analysis.sequential(primary)`` when the plan is
   wired in; otherwise the fixed-horizon ``compare()`` with a note saying so):

   - significant and in the good direction (``lower_is_better`` respected): ``ship`` when every
     guardrail of that treatment passes, else ``keep_testing`` until they are shown safe;
   - significant in the bad direction: ``no_effect`` (stop: the treatment is worse);
   - ``continue``: ``keep_testing``; ``final`` (planned maximum reached): ``no_effect``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from modelrouter.analysis.compare import compare
from modelrouter.analysis.data import AnalysisData
from modelrouter.analysis.guardrails import GuardrailResult, guardrail_results
from modelrouter.analysis.results import ComparisonResult
from modelrouter.analysis.sequential import SequentialAnalysis, sequential_analysis
from modelrouter.analysis.srm import check_sample_ratio, unit_counts
from modelrouter.config.plan import ExperimentPlan
from modelrouter.exceptions import AnalysisError
from modelrouter.stats.srm import srm_test

__all__ = ["Verdict", "VerdictDecision", "decide"]

VerdictDecision = Literal["ship", "keep_testing", "blocked_by_guardrail", "no_effect", "invalid"]


@dataclass(frozen=True)
class Verdict:
    """The decision, the reasons behind it, and the evidence it was made from."""

    decision: VerdictDecision
    reasons: tuple[str, ...]
    primary: str | None
    variant: str | None
    srm_pvalue: float
    comparison: ComparisonResult | None = field(default=None, repr=False)
    # the sequential test decided on; the comparison itself when it fell back to compare()
    sequential: SequentialAnalysis | ComparisonResult | None = field(default=None, repr=False)
    guardrails: tuple[GuardrailResult, ...] = field(default=(), repr=False)
    notes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Verdict({self.decision!r}: {' '.join(self.reasons)})"

    def summary(self) -> str:
        """The decision and its reasons, one per line."""
        lines = [f"verdict: {self.decision.upper()}"]
        lines += [f"  - {r}" for r in self.reasons]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {"decision": self.decision, "reasons": list(self.reasons),
                "primary": self.primary, "variant": self.variant,
                "srm_pvalue": self.srm_pvalue, "notes": list(self.notes),
                "comparison": None if self.comparison is None else self.comparison.to_dict(),
                "guardrails": [g.to_dict() for g in self.guardrails]}


def _srm_pvalue(data: AnalysisData) -> tuple[float, str | None]:
    """The sample-ratio p-value and, on alarm, its explanation. When ``srm()`` cannot run
    (e.g. bandit traffic without fresh decisions), the per-unit counts against
    :func:`~modelrouter.analysis.srm.expected_counts`; no units: p = 1."""
    try:
        res = check_sample_ratio(data)
        return float(res.pvalue), (res.explain() if res.alarm else None)
    except (AnalysisError, ValueError):
        pass
    observed, expected = unit_counts(data, None)
    if observed.sum() <= 0:
        return 1.0, None
    test = srm_test(observed, expected_counts=expected)
    return test.pvalue, (test.explain() if test.alarm else None)


def _sequential(data: AnalysisData, metric: str, alpha: float, cmp_: ComparisonResult
                ) -> tuple[str, SequentialAnalysis | ComparisonResult, str | None]:
    """(decision in reject/continue/final, the result object, a note when falling back)."""
    try:
        # the treatment of this verdict: with 3+ variants the default would be ambiguous
        res = sequential_analysis(data, metric, cmp_.treatment.variant)
        return str(res.decision), res, None
    except (AnalysisError, ValueError) as exc:
        why = f"sequential analysis unavailable ({exc})"
    note = (f"{why}; used the fixed-horizon p-value of compare() at alpha={alpha:g}, which is "
            "only valid at the planned final look (repeated looks inflate false positives)")
    return ("reject" if cmp_.pvalue < alpha else "continue"), cmp_, note


def decide(data: AnalysisData, variant: str | None = None, alpha: float | None = None
           ) -> Verdict:
    """See the module docstring; ``Analysis.verdict`` is the public entry point.

    ``alpha`` (for the fixed-horizon fallback only) defaults to the plan's, else 0.05.
    """
    config = data.config
    if alpha is None:
        alpha = float(config.plan.alpha) if isinstance(config.plan, ExperimentPlan) else 0.05
    primary = config.primary
    srm_p, srm_text = _srm_pvalue(data)
    if primary is None:
        return Verdict("invalid", ("no primary metric is configured: set "
                                   "RouterConfig(primary=...)",), None, variant, srm_p)
    if srm_text is not None:
        return Verdict("invalid", (srm_text,), primary, variant, srm_p)
    try:
        cmp_ = compare(data, primary, variant)
    except AnalysisError as exc:
        return Verdict("invalid", (f"too little data on {primary!r}: {exc}",), primary,
                       variant, srm_p)
    variant = cmp_.treatment.variant
    guards = tuple(g for g in guardrail_results(data) if g.variant == variant)
    failed = [g for g in guards if g.status == "fail"]
    events = data.rollback_events
    rolled_back = bool(events) and events[-1].kind == "rollback"
    if failed or rolled_back:
        reasons = [f"guardrail failed: {g.reason}" for g in failed]
        if rolled_back:
            reasons.append(f"traffic was rolled back to the control at {events[-1].when} "
                           f"({'; '.join(events[-1].reasons)}) and has not been resumed")
        return Verdict("blocked_by_guardrail", tuple(reasons), primary, variant, srm_p, cmp_,
                       None, guards)
    decision, seq, note = _sequential(data, primary, alpha, cmp_)
    notes = (note,) if note else ()
    spec = data.snapshot.metrics[primary]
    good = cmp_.difference < 0 if spec.lower_is_better else cmp_.difference > 0
    lift = (f"{cmp_.relative_lift:+.2%}" if math.isfinite(cmp_.relative_lift)
            else f"{cmp_.difference:+.4g}")
    effect = (f"{primary}: {variant} vs control {cmp_.difference:+.4g} ({lift}), "
              f"p={cmp_.pvalue:.3g}")
    pending = [g for g in guards if g.status == "inconclusive"]
    if decision == "reject" and good:
        if pending:
            reasons = [f"{effect}: significant improvement", *[
                f"guardrail not yet shown safe: {g.reason}" for g in pending]]
            return Verdict("keep_testing", tuple(reasons), primary, variant, srm_p, cmp_, seq,
                           guards, notes)
        reasons = [f"{effect}: significant improvement",
                   f"all {len(guards)} guardrail check(s) pass"]
        return Verdict("ship", tuple(reasons), primary, variant, srm_p, cmp_, seq, guards,
                       notes)
    if decision == "reject":
        return Verdict("no_effect", (f"{effect}: significantly WORSE than control; do not "
                                     "ship",), primary, variant, srm_p, cmp_, seq, guards, notes)
    if decision == "final":
        return Verdict("no_effect", (f"{effect}: the planned maximum is reached without a "
                                     "significant difference",), primary, variant, srm_p,
                       cmp_, seq, guards, notes)
    return Verdict("keep_testing", (f"{effect}: not significant yet; keep collecting data",),
                   primary, variant, srm_p, cmp_, seq, guards, notes)
