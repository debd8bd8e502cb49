"""The verdict: one decision a reviewer can act on, with the reasons in plain words.

Checked in this order (the first that applies decides):

1. ``invalid``: no primary metric configured, a sample-ratio mismatch (the split is not the
   configured one, so every comparison is suspect; the anytime-valid sequential test of
   :mod:`modelrouter.analysis.srm`, so asking for the verdict at any time keeps its
   false-alarm rate), or too little data to compare (fewer than 2 units in an arm; a
   comparison the data do not define yet, e.g. a per-event metric without events in an arm,
   is ``invalid`` too, but only after step 2: a failing guardrail or a rollback still blocks).
2. ``blocked_by_guardrail``: a guardrail *fails* (its always-valid interval lies beyond the
   margin), or the router rolled the experiment back and has not been resumed.
3. The primary metric's group-sequential decision (``analysis.sequential(primary)`` when the
   plan is wired in; otherwise the fixed-horizon ``compare()`` with a note saying so). The
   decision is made at the look whose z first crossed its boundary, in the direction of THAT
   look's estimate (:class:`~modelrouter.analysis.sequential.Crossing`), and kept afterwards:

   - crossed in the good direction (``lower_is_better`` respected): ``ship`` when every
     guardrail of that treatment passes, else ``keep_testing`` until they are shown safe;
   - crossed in the bad direction: ``harmful`` (stop: the treatment is significantly worse);
   - no crossing and the planned maximum reached, or the current look past the plan's
     non-binding futility bound (``plan.futility_spending``; stop for futility):
     ``no_effect``; otherwise ``keep_testing``.

After a crossing, the data that arrived later are checked against it
(:mod:`modelrouter.analysis.decision_point`, which also locates the decision): when they
disagree (the effect shrank significantly, vanished or reversed: a possible novelty effect, or a
lucky early look), ``later_disagreement`` is True and ``disagreement`` says so with the numbers.
The decision itself stands (a group-sequential decision is not revised by later looks), but the
reviewer is told before acting on it.

With ``K >= 2`` treatments every comparison runs at ``alpha / K`` (a Bonferroni split of the
plan's alpha for the group-sequential test, and of ``alpha`` for the fixed-horizon fallback): the
union bound needs no assumption about the dependence of the comparisons (they share the
control) and holds for a whole sequence of looks, so the family-wise false-positive rate across
treatments stays at most alpha. Without ``variant=`` the verdict covers every treatment
(:func:`decide_all`: ``per_variant`` and ``recommended``); with ``variant=`` that treatment alone,
still at ``alpha / K``. With one treatment nothing is split.

Numbers in the reasons use one convention: the difference ``treatment - control`` in the
metric's own unit (a proportion for binary metrics), with the sequential |z| against its
boundary (or the fixed-horizon p-value against alpha); the first reason says whether higher or
lower is better.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from modelrouter.analysis.compare import compare
from modelrouter.analysis.data import AnalysisData
from modelrouter.analysis.decision_point import (
    Direction,
    LaterEvidence,
    decision_point,
    describe_disagreement,
    diff_text,
    later_evidence,
)
from modelrouter.analysis.guardrails import GuardrailResult, guardrail_results
from modelrouter.analysis.jsondata import finite_or_none
from modelrouter.analysis.results import ComparisonResult
from modelrouter.analysis.sequential import SequentialAnalysis, sequential_analysis
from modelrouter.analysis.srm import SampleRatioCheck, check_sample_ratio, srm_analysis
from modelrouter.analysis.text import singular_counts
from modelrouter.config.plan import ExperimentPlan
from modelrouter.exceptions import AnalysisError

__all__ = ["Direction", "LaterEvidence", "Verdict", "VerdictDecision", "decide", "decide_all",
           "later_evidence"]

VerdictDecision = Literal["ship", "keep_testing", "blocked_by_guardrail", "no_effect",
                          "harmful", "invalid"]


@dataclass(frozen=True)
class Verdict:
    """The decision, the reasons behind it, and the evidence it was made from.

    ``decision`` is one of ``ship``, ``keep_testing``, ``blocked_by_guardrail``,
    ``no_effect`` (the planned maximum was reached without a significant difference),
    ``harmful`` (the treatment is significantly WORSE than the control: do not ship) and
    ``invalid`` (see the module docstring for the order they are checked in).

    When the primary metric's test crossed a boundary: ``decided_at_look`` is that look's
    number, ``direction`` (``better`` / ``worse`` for the treatment) and
    ``estimate_at_decision`` (treatment - control) are that look's, whatever later looks show.
    With the fixed-horizon fallback (no plan) ``decided_at_look`` is None and the direction is
    the current estimate's. ``estimate_now`` is the current treatment - control;
    ``later_estimate`` / ``later_std_err`` the estimate from the data after the deciding look
    alone (NaN without such data), and ``later_disagreement`` whether those data disagree with
    the decision (``disagreement`` says how, in words). ``srm`` is the sample-ratio check the
    verdict used (``srm_pvalue`` its always-valid p-value).
    """

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
    decided_at_look: int | None = None
    direction: Direction | None = None
    estimate_at_decision: float = math.nan
    estimate_now: float = math.nan
    later_estimate: float = math.nan
    later_std_err: float = math.nan
    later_disagreement: bool = False
    disagreement: str | None = None
    srm: SampleRatioCheck | None = field(default=None, repr=False, compare=False)
    per_variant: dict[str, Verdict] = field(default_factory=dict, repr=False, compare=False)
    recommended: str | None = None
    comparisons: int = 1
    alpha_per_comparison: float = math.nan

    def __repr__(self) -> str:
        flag = " [later data disagree]" if self.later_disagreement else ""
        return f"Verdict({self.decision!r}{flag}: {' '.join(self.reasons)})"

    def summary(self) -> str:
        """The decision and its reasons, one per line; a disagreement of the later data with
        the decision follows as a warning."""
        lines = [f"verdict: {self.decision.upper()}"]
        lines += [f"  - {r}" for r in self.reasons]
        if self.disagreement is not None:
            lines.append(f"  WARNING: {self.disagreement}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """Plain data (NaN estimates as None)."""
        return {"decision": self.decision, "reasons": list(self.reasons),
                "primary": self.primary, "variant": self.variant,
                "srm_pvalue": self.srm_pvalue, "notes": list(self.notes),
                "decided_at_look": self.decided_at_look, "direction": self.direction,
                "estimate_at_decision": finite_or_none(self.estimate_at_decision),
                "estimate_now": finite_or_none(self.estimate_now),
                "later_estimate": finite_or_none(self.later_estimate),
                "later_std_err": finite_or_none(self.later_std_err),
                "later_disagreement": self.later_disagreement,
                "disagreement": self.disagreement,
                "srm": None if self.srm is None else self.srm.to_dict(),
                "comparison": None if self.comparison is None else self.comparison.to_dict(),
                "guardrails": [g.to_dict() for g in self.guardrails],
                "recommended": self.recommended, "comparisons": self.comparisons,
                "alpha_per_comparison": finite_or_none(self.alpha_per_comparison),
                "per_variant": {k: v.to_dict() for k, v in self.per_variant.items()}}


def _srm(data: AnalysisData) -> tuple[float, str | None, SampleRatioCheck | None]:
    """The always-valid sample-ratio p-value, its explanation on alarm, and the check. When
    ``srm()`` cannot run (e.g. bandit traffic without fresh decisions), the per-unit check
    (:func:`~modelrouter.analysis.srm.srm_analysis`); no units: p = 1."""
    for check in (check_sample_ratio, srm_analysis):
        try:
            res = check(data)
        except (AnalysisError, ValueError):
            continue
        return float(res.pvalue), (res.explain() if res.alarm else None), res
    return 1.0, None, None


def _sequential(data: AnalysisData, metric: str, alpha: float, cmp_: ComparisonResult,
                seq_alpha: float | None = None
                ) -> tuple[str, SequentialAnalysis | ComparisonResult, str | None]:
    """(decision in reject/continue/final, the result object, a note when falling back).
    ``seq_alpha`` replaces the plan's alpha (None: the plan's)."""
    try:
        # the treatment of this verdict: with 3+ variants the default would be ambiguous
        res = sequential_analysis(data, metric, cmp_.treatment.variant, alpha=seq_alpha)
        return str(res.decision), res, None
    except (AnalysisError, ValueError) as exc:
        why = f"sequential analysis unavailable ({exc})"
    note = (f"{why}; used the fixed-horizon p-value of compare() at alpha={alpha:g}, which is "
            "only valid at the planned final look (repeated looks inflate false positives)")
    return ("reject" if cmp_.pvalue < alpha else "continue"), cmp_, note


def decide(data: AnalysisData, variant: str | None = None, alpha: float | None = None
           ) -> Verdict:
    """See the module docstring; ``Analysis.verdict`` is the public entry point.

    ``alpha`` (for the fixed-horizon fallback only) defaults to the plan's, else 0.05. With
    ``K >= 2`` treatments both the plan's alpha (group-sequential test) and this one are split
    by Bonferroni, ``alpha / K`` per comparison, whether one treatment (``variant=``) or all of
    them (the overall verdict, see :func:`decide_all`) are decided.
    """
    config = data.config
    if alpha is None:
        alpha = float(config.plan.alpha) if isinstance(config.plan, ExperimentPlan) else 0.05
    treatments = list(data.treatments)
    k = max(len(treatments), 1)
    primary = config.primary
    srm_p, srm_text, srm = _srm(data)
    split: dict[str, Any] = {"comparisons": k, "alpha_per_comparison": alpha / k}
    if primary is None:
        return Verdict("invalid", ("no primary metric is configured: set "
                                   "RouterConfig(primary=...)",), None, variant, srm_p,
                       srm=srm, **split)
    if srm_text is not None:
        return Verdict("invalid", (srm_text,), primary, variant, srm_p, srm=srm, **split)
    if variant is None and k > 1:
        return decide_all(data, treatments, alpha, (srm_p, srm))
    return _decide_one(data, variant, alpha, k, (srm_p, srm))


def _decide_one(data: AnalysisData, variant: str | None, alpha: float, k: int,
                srm_check: tuple[float, SampleRatioCheck | None]) -> Verdict:
    """One treatment's verdict at the Bonferroni share ``1/k`` of the alphas (after the
    primary and SRM checks)."""
    config = data.config
    primary = config.primary
    assert primary is not None
    srm_p, srm = srm_check
    plan_alpha = float(config.plan.alpha) if isinstance(config.plan, ExperimentPlan) else None
    seq_alpha = None if k == 1 or plan_alpha is None else plan_alpha / k
    alpha = alpha / k
    split: dict[str, Any] = {"comparisons": k,
                             "alpha_per_comparison": alpha if seq_alpha is None else seq_alpha}
    # with several treatments, a last reason says which alpha was used (not a note: notes
    # flag departures from the plan's test, e.g. the fixed-horizon fallback)
    split_note = (f"{k} treatments: each is compared with the control at alpha "
                  f"{split['alpha_per_comparison']:.4g} (the family-wise alpha split equally, "
                  "Bonferroni)",) if k > 1 else ()

    def why(*reasons: str) -> tuple[str, ...]:
        return (*reasons, *split_note)

    try:
        cmp_ = compare(data, primary, variant)
    except AnalysisError as exc:
        return Verdict("invalid", why(f"not enough data yet: too little data on {primary!r} "
                                      f"({singular_counts(str(exc))})"), primary,
                       variant, srm_p, srm=srm, **split)
    variant = cmp_.treatment.variant
    control = cmp_.control.variant
    guards = tuple(g for g in guardrail_results(data) if g.variant == variant)
    failed = [g for g in guards if g.status == "fail"]
    events = data.rollback_events
    rolled_back = bool(events) and events[-1].kind == "rollback"
    if failed or rolled_back:
        reasons = [f"guardrail failed: {g.reason}" for g in failed]
        if rolled_back:
            reasons.append(f"traffic was rolled back to the control at {events[-1].when} "
                           f"({'; '.join(events[-1].reasons)}) and has not been resumed")
        return Verdict("blocked_by_guardrail", why(*reasons), primary, variant, srm_p, cmp_,
                       None, guards, estimate_now=cmp_.difference, srm=srm, **split)
    if cmp_.undefined_reason is not None:  # e.g. a per-event metric without events in an arm
        return Verdict("invalid", why(f"not enough data yet: too little data on {primary!r} "
                                      f"({cmp_.undefined_reason})"), primary, variant, srm_p,
                       cmp_, None, guards, srm=srm, **split)
    decision, seq, note = _sequential(data, primary, alpha, cmp_, seq_alpha)
    notes = (note,) if note else ()
    lower = data.snapshot.metrics[primary].lower_is_better
    d = decision_point(seq, cmp_, lower, alpha)
    head = f"{primary} ({'lower' if lower else 'higher'} is better)"
    now = diff_text(variant, control, cmp_.difference)
    now = diff_text(variant, control, cmp_.difference)
    disagreement = describe_disagreement(d, variant, control, cmp_.difference)
    extra: dict[str, Any] = dict(
        decided_at_look=d.look, direction=d.direction, estimate_at_decision=d.estimate,
        estimate_now=cmp_.difference,
        later_estimate=d.later.estimate if d.later else math.nan,
        later_std_err=d.later.std_err if d.later else math.nan,
        later_disagreement=disagreement is not None, disagreement=disagreement, srm=srm,
        **split)
    at = f"{diff_text(variant, control, d.estimate)}, {d.evidence}"
    if d.look is not None and d.later is not None:
        at += f"; now {now}"
    pending = [g for g in guards if g.status == "inconclusive"]
    if decision == "reject" and d.direction == "better":
        reasons = [f"{head}: {at}: {variant} significantly better than {control}",
                   *_adjusted(seq, variant, control)]
        if pending:
            reasons += [f"guardrail not yet shown safe: {g.reason}" for g in pending]
            return Verdict("keep_testing", why(*reasons), primary, variant, srm_p, cmp_, seq,
                           guards, notes, **extra)
        reasons.append(("the guardrail check passes" if len(guards) == 1 else
                        f"all {len(guards)} guardrail checks pass") if guards else
                       f"no guardrail is configured for {variant}")
        return Verdict("ship", why(*reasons), primary, variant, srm_p, cmp_, seq, guards,
                       notes, **extra)
    if decision == "reject":
        return Verdict("harmful", why(f"{head}: {at}: {variant} significantly worse than "
                                      f"{control}; do not ship",
                                      *_adjusted(seq, variant, control)), primary, variant,
                       srm_p, cmp_, seq, guards, notes, **extra)
    if decision == "futility":
        assert isinstance(seq, SequentialAnalysis) and seq.futility is not None
        return Verdict("no_effect", why(f"{head}: {now}, {d.evidence}: stop for futility (look "
                                        f"{seq.look} is past the plan's non-binding futility "
                                        "bound: the treatment is unlikely to prove better; "
                                        "continuing is allowed)"), primary, variant, srm_p, cmp_,
                       seq, guards, notes, **extra)
    if decision == "final":
        return Verdict("no_effect", why(f"{head}: {now}, {d.evidence}: the planned maximum "
                                        "is reached without a significant difference"), primary,
                       variant, srm_p, cmp_, seq, guards, notes, **extra)
    return Verdict("keep_testing", why(f"{head}: {now}, {d.evidence}: not significant yet; "
                                       "keep collecting data"), primary, variant, srm_p, cmp_, seq,
                   guards, notes, **extra)


def _adjusted(seq: SequentialAnalysis | ComparisonResult | None, variant: str, control: str
              ) -> tuple[str, ...]:
    """After an early crossing, the bias-adjusted estimate (the crossing look's is biased away
    from zero; :mod:`modelrouter.analysis.sequential_inference`)."""
    adj = seq.adjusted if isinstance(seq, SequentialAnalysis) else None
    if adj is None or not adj.early:
        return ()
    return (f"bias-adjusted for stopping early (median-unbiased): {variant} - {control} = "
            f"{adj.estimate:+.4g}, {adj.confidence:.0%} CI [{adj.ci.low:+.4g}, "
            f"{adj.ci.high:+.4g}] (the estimate at the crossing look is biased away from zero)",)


def _better(v: Verdict, lower_is_better: bool) -> float:
    """Sort key, larger is better: the current estimate from all data (the estimate at an
    early crossing is biased away from zero, more so the earlier it crossed, so it would
    favour the treatment that crossed first over the one that is best)."""
    x = v.estimate_now
    return -x if lower_is_better else x


def decide_all(data: AnalysisData, treatments: list[str], alpha: float,
               srm_check: tuple[float, SampleRatioCheck | None]) -> Verdict:
    """Every treatment against the control, each at ``alpha / K`` (Bonferroni), and one
    recommendation.

    The overall decision, from the per-treatment ones (:attr:`Verdict.per_variant`):

    - ``invalid`` when any treatment cannot be compared yet (every comparison is needed to
      control the family-wise error and to pick the best);
    - ``ship`` when at least one treatment is significantly better with its guardrails shown
      safe: ``recommended`` names the one with the best current estimate (all data) among
      them;
    - otherwise ``keep_testing`` while any treatment is still undecided (or better with a
      guardrail not yet shown safe);
    - otherwise ``blocked_by_guardrail`` when any treatment is blocked, ``harmful`` when every
      treatment is significantly worse, else ``no_effect``.
    """
    config = data.config
    primary = config.primary
    assert primary is not None
    srm_p, srm = srm_check
    k = len(treatments)
    per = {t: _decide_one(data, t, alpha, k, srm_check) for t in treatments}
    first = next(iter(per.values()))
    split: dict[str, Any] = {"comparisons": k,
                             "alpha_per_comparison": first.alpha_per_comparison,
                             "per_variant": per, "srm": srm}
    head = (f"{k} treatments against {data.control}: each at alpha "
            f"{first.alpha_per_comparison:.4g} (the family-wise alpha split equally across "
            "them, Bonferroni)")
    lines = [f"{t}: {v.decision.upper()}: {v.reasons[0]}" for t, v in per.items()]
    notes = tuple(dict.fromkeys(n for v in per.values() for n in v.notes))
    decisions = {v.decision for v in per.values()}
    if "invalid" in decisions:
        bad = [t for t, v in per.items() if v.decision == "invalid"]
        return Verdict("invalid", (head, *lines, f"cannot decide until every treatment can be "
                                   f"compared ({', '.join(bad)} cannot yet)"), primary, None,
                       srm_p, notes=notes, **split)
    lower = data.snapshot.metrics[primary].lower_is_better
    ships = sorted((v for v in per.values() if v.decision == "ship"),
                   key=lambda v: _better(v, lower), reverse=True)
    if ships:
        best = ships[0]
        assert best.variant is not None
        why = (f"recommendation: ship {best.variant}" + (
            f", the best estimate of the {len(ships)} significantly better treatments "
            f"({', '.join(v.variant or '' for v in ships)})" if len(ships) > 1 else
            ", the only treatment significantly better than the control"))
        return dataclasses.replace(best, reasons=(head, *lines, why), notes=notes,
                                   recommended=best.variant, **split)
    if "keep_testing" in decisions:
        why = "recommendation: keep testing (no treatment is significantly better yet)"
        return Verdict("keep_testing", (head, *lines, why), primary, None, srm_p, notes=notes,
                       **split)
    if "blocked_by_guardrail" in decisions:
        decision: VerdictDecision = "blocked_by_guardrail"
        why = "recommendation: ship nothing (guardrails block the treatments)"
    elif decisions == {"harmful"}:
        decision, why = "harmful", "recommendation: ship nothing (every treatment is worse)"
    else:
        decision = "no_effect"
        why = ("recommendation: ship nothing (no treatment is significantly better at the "
               "planned maximum)")
    return Verdict(decision, (head, *lines, why), primary, None, srm_p, notes=notes, **split)
