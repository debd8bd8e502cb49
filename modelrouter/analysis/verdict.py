"""The verdict: one decision a reviewer can act on, with the reasons in plain words.

Checked in this order (the first that applies decides):

1. ``invalid``: no primary metric configured, a sample-ratio mismatch (the split is not the
   configured one, so every comparison is suspect; the anytime-valid sequential test of
   :mod:`modelrouter.analysis.srm`, so asking for the verdict at any time keeps its
   false-alarm rate), or too little data to compare.
2. ``blocked_by_guardrail``: a guardrail *fails* (its always-valid interval lies beyond the
   margin), or the router rolled the experiment back and has not been resumed.
3. The primary metric's group-sequential decision (``analysis.sequential(primary)`` when the
   plan is wired in; otherwise the fixed-horizon ``compare()`` with a note saying so). The
   decision is made at the look whose z first crossed its boundary, in the direction of THAT
   look's estimate (:class:`~modelrouter.analysis.sequential.Crossing`), and kept afterwards:

   - crossed in the good direction (``lower_is_better`` respected): ``ship`` when every
     guardrail of that treatment passes, else ``keep_testing`` until they are shown safe;
   - crossed in the bad direction: ``harmful`` (stop: the treatment is significantly worse);
   - no crossing and the planned maximum reached: ``no_effect``; otherwise ``keep_testing``.

After a crossing, the data that arrived later are checked against it (:func:`later_evidence`):
when they disagree (the effect shrank significantly, vanished or reversed: a possible novelty
effect, or a lucky early look), ``later_disagreement`` is True and ``disagreement`` says so with
the numbers. The decision itself stands (a group-sequential decision is not revised by later
looks), but the reviewer is told before acting on it.

Numbers in the reasons use one convention: the difference ``treatment - control`` in the
metric's own unit (a proportion for binary metrics), with the sequential |z| against its
boundary (or the fixed-horizon p-value against alpha); the first reason says whether higher or
lower is better.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from modelrouter.analysis.compare import compare
from modelrouter.analysis.data import AnalysisData
from modelrouter.analysis.guardrails import GuardrailResult, guardrail_results
from modelrouter.analysis.results import ComparisonResult
from modelrouter.analysis.sequential import Crossing, SequentialAnalysis, sequential_analysis
from modelrouter.analysis.srm import SampleRatioCheck, check_sample_ratio, srm_analysis
from modelrouter.config.plan import ExperimentPlan
from modelrouter.exceptions import AnalysisError

__all__ = ["Direction", "LaterEvidence", "Verdict", "VerdictDecision", "decide",
           "later_evidence"]

VerdictDecision = Literal["ship", "keep_testing", "blocked_by_guardrail", "no_effect",
                          "harmful", "invalid"]
Direction = Literal["better", "worse"]

_DISAGREE_Z = 1.959963984540054  # the later data differ from the decision's estimate at 5%


def _num(x: float) -> float | None:
    """A float for JSON: NaN as None."""
    return None if math.isnan(x) else x


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
                "estimate_at_decision": _num(self.estimate_at_decision),
                "estimate_now": _num(self.estimate_now),
                "later_estimate": _num(self.later_estimate),
                "later_std_err": _num(self.later_std_err),
                "later_disagreement": self.later_disagreement,
                "disagreement": self.disagreement,
                "srm": None if self.srm is None else self.srm.to_dict(),
                "comparison": None if self.comparison is None else self.comparison.to_dict(),
                "guardrails": [g.to_dict() for g in self.guardrails]}


@dataclass(frozen=True)
class LaterEvidence:
    """What the data after a decision say, from :func:`later_evidence`."""

    estimate: float  # treatment - control from the later data alone (NaN: none)
    std_err: float  # NaN when it cannot be separated from the earlier data
    z: float  # (later - decision estimate) / s.e., signed so that negative weakens it
    disagree: bool
    reason: str  # empty unless disagree


def later_evidence(decision_estimate: float, decision_variance: float, decision_units: int,
                   estimate_now: float, variance_now: float, units_now: int) -> LaterEvidence:
    """Do the data that arrived after a decision agree with it?

    With ``n1`` units at the decision and ``n`` now, each arm's mean now is the units-weighted
    mean of its earlier and later units, so (when each arm's share of units is the same before
    and after, as a fixed split gives in expectation) ``d_now = (n1 d_dec + n2 d_later) / n``
    with ``n2 = n - n1``, and likewise ``n^2 v_now = n1^2 v_dec + n2^2 v_later``. Hence the
    estimate of the later data alone, ``d_later = (n d_now - n1 d_dec) / n2``, and its variance
    ``v_later = (n^2 v_now - n1^2 v_dec) / n2^2`` (NaN when that is not positive). They
    *disagree* with the decision when

    - the current overall estimate is zero or of the opposite sign to the decision's (the effect
      vanished or reversed), or
    - the later estimate is significantly (two-sided 5%) smaller in the decided direction than
      the estimate at the decision: ``s (d_later - d_dec) / sqrt(v_later + v_dec) <= -1.96``
      with ``s`` the decision's sign.

    Estimates at an early crossing are biased away from zero (only large ones cross), so the
    second rule also fires without a real change: with a constant true effect at 80% power
    (5-look O'Brien-Fleming plan) it flagged 6% of the experiments that crossed before the last
    look, judged at the last look (200,000 simulated paths, tests/analysis/test_verdict.py);
    when the crossing was a false positive (no effect), 27%.
    """
    sign = math.copysign(1.0, decision_estimate)
    later, se, z = math.nan, math.nan, math.nan
    n1, n = float(decision_units), float(units_now)
    n2 = n - n1
    if n2 > 0:
        later = (n * estimate_now - n1 * decision_estimate) / n2
        var = (n * n * variance_now - n1 * n1 * decision_variance) / (n2 * n2)
        if var > 0:
            se = math.sqrt(var)
            z = sign * (later - decision_estimate) / math.sqrt(var + decision_variance)
    if sign * estimate_now <= 0:
        return LaterEvidence(later, se, z, True, "the overall estimate is now zero or of the "
                             "opposite sign")
    if z <= -_DISAGREE_Z:
        return LaterEvidence(later, se, z, True, "the data since then show a significantly "
                             "smaller effect than the estimate at the decision")
    return LaterEvidence(later, se, z, False, "")


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


def _diff(variant: str, control: str, x: float) -> str:
    return f"{variant} - {control} = {x:+.4g}"


@dataclass
class _Decided:
    """Where and how the primary metric's decision was made (or not yet)."""

    look: int | None
    direction: Direction | None
    estimate: float
    evidence: str  # |z| against the boundary, or p against alpha
    later: LaterEvidence | None


def _decided(seq: SequentialAnalysis | ComparisonResult, cmp_: ComparisonResult,
             lower_is_better: bool, alpha: float) -> _Decided:
    """The crossing (sequential) or the fixed-horizon test, and the later data's evidence."""
    if isinstance(seq, SequentialAnalysis):
        c: Crossing | None = seq.crossing
        if c is None:
            rel = ">=" if abs(seq.statistic) >= seq.boundary else "<"
            return _Decided(None, None, math.nan, f"|z| {abs(seq.statistic):.3f} {rel} "
                            f"boundary {seq.boundary:.3f} at look {seq.look}", None)
        where = f"look {c.look}" if c.recorded else f"look {c.look} (now; not recorded yet)"
        later = None
        if seq.units > c.units:
            later = later_evidence(c.difference, c.variance, c.units, seq.difference,
                                   seq.std_err ** 2, seq.units)
        return _Decided(c.look, c.direction, c.difference,
                        f"|z| {abs(c.statistic):.3f} >= boundary {c.boundary:.3f} at {where}",
                        later)
    rel = "<" if cmp_.pvalue < alpha else ">="
    evidence = f"fixed-horizon p = {cmp_.pvalue:.3g} {rel} alpha {alpha:g}"
    if cmp_.pvalue >= alpha:
        return _Decided(None, None, math.nan, evidence, None)
    good = cmp_.difference < 0 if lower_is_better else cmp_.difference > 0
    return _Decided(None, "better" if good else "worse", cmp_.difference, evidence, None)


def decide(data: AnalysisData, variant: str | None = None, alpha: float | None = None
           ) -> Verdict:
    """See the module docstring; ``Analysis.verdict`` is the public entry point.

    ``alpha`` (for the fixed-horizon fallback only) defaults to the plan's, else 0.05.
    """
    config = data.config
    if alpha is None:
        alpha = float(config.plan.alpha) if isinstance(config.plan, ExperimentPlan) else 0.05
    primary = config.primary
    srm_p, srm_text, srm = _srm(data)
    if primary is None:
        return Verdict("invalid", ("no primary metric is configured: set "
                                   "RouterConfig(primary=...)",), None, variant, srm_p,
                       srm=srm)
    if srm_text is not None:
        return Verdict("invalid", (srm_text,), primary, variant, srm_p, srm=srm)
    try:
        cmp_ = compare(data, primary, variant)
    except AnalysisError as exc:
        return Verdict("invalid", (f"too little data on {primary!r}: {exc}",), primary,
                       variant, srm_p, srm=srm)
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
        return Verdict("blocked_by_guardrail", tuple(reasons), primary, variant, srm_p, cmp_,
                       None, guards, estimate_now=cmp_.difference, srm=srm)
    decision, seq, note = _sequential(data, primary, alpha, cmp_)
    notes = (note,) if note else ()
    lower = data.snapshot.metrics[primary].lower_is_better
    d = _decided(seq, cmp_, lower, alpha)
    head = f"{primary} ({'lower' if lower else 'higher'} is better)"
    now = _diff(variant, control, cmp_.difference)
    disagreement = None
    if d.later is not None and d.later.disagree:
        later = (f"{_diff(variant, control, d.later.estimate)} (s.e. {d.later.std_err:.3g})"
                 if math.isfinite(d.later.estimate) else "no separate estimate")
        disagreement = (
            f"the data after look {d.look} disagree with the decision made there "
            f"({d.later.reason}): at look {d.look} {_diff(variant, control, d.estimate)}, "
            f"the later data alone {later}, all data now {now}. Possibly a novelty effect (or a "
            f"lucky early look); the decision of look {d.look} stands, but check the effect "
            "over time before acting on it")
    extra: dict[str, Any] = dict(
        decided_at_look=d.look, direction=d.direction, estimate_at_decision=d.estimate,
        estimate_now=cmp_.difference,
        later_estimate=d.later.estimate if d.later else math.nan,
        later_std_err=d.later.std_err if d.later else math.nan,
        later_disagreement=disagreement is not None, disagreement=disagreement, srm=srm)
    at = f"{_diff(variant, control, d.estimate)}, {d.evidence}"
    if d.look is not None and d.later is not None:
        at += f"; now {now}"
    pending = [g for g in guards if g.status == "inconclusive"]
    if decision == "reject" and d.direction == "better":
        reasons = [f"{head}: {at}: {variant} significantly better than {control}"]
        if pending:
            reasons += [f"guardrail not yet shown safe: {g.reason}" for g in pending]
            return Verdict("keep_testing", tuple(reasons), primary, variant, srm_p, cmp_, seq,
                           guards, notes, **extra)
        reasons.append(f"all {len(guards)} guardrail check(s) pass" if guards else
                       f"no guardrail is configured for {variant}")
        return Verdict("ship", tuple(reasons), primary, variant, srm_p, cmp_, seq, guards,
                       notes, **extra)
    if decision == "reject":
        return Verdict("harmful", (f"{head}: {at}: {variant} significantly worse than "
                                   f"{control}; do not ship",), primary, variant, srm_p, cmp_,
                       seq, guards, notes, **extra)
    if decision == "final":
        return Verdict("no_effect", (f"{head}: {now}, {d.evidence}: the planned maximum is "
                                     "reached without a significant difference",), primary,
                       variant, srm_p, cmp_, seq, guards, notes, **extra)
    return Verdict("keep_testing", (f"{head}: {now}, {d.evidence}: not significant yet; keep "
                                    "collecting data",), primary, variant, srm_p, cmp_, seq,
                   guards, notes, **extra)
