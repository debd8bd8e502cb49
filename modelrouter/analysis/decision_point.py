"""Where the primary metric's decision was made, and whether the data since agree with it.

A group-sequential decision is made at the look whose z first crossed its boundary, in the
direction of that look's estimate (:class:`~modelrouter.analysis.sequential.Crossing`); with the
fixed-horizon fallback it is the current ``compare()`` test (:func:`decision_point`). After a
crossing, the data that arrived later are checked against it (:func:`later_evidence`): when they
disagree (the effect shrank significantly, vanished or reversed: a possible novelty effect, or a
lucky early look), :func:`describe_disagreement` says so with the numbers.

Kept apart from :mod:`modelrouter.analysis.verdict` because it is one question with its own
statistics (separating the later data's estimate from the cumulative one) that the verdict only
reports: the decision itself stands, since a group-sequential decision is not revised by later
looks, but the reviewer is told before acting on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from modelrouter.analysis.results import ComparisonResult
from modelrouter.analysis.sequential import Crossing, SequentialAnalysis
from modelrouter.analysis.text import p_equals

__all__ = ["DISAGREE_Z", "DecisionPoint", "Direction", "LaterEvidence", "decision_point",
           "describe_disagreement", "diff_text", "later_evidence"]

Direction = Literal["better", "worse"]

DISAGREE_Z = 1.959963984540054  # the later data differ from the decision's estimate at 5%


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
    if z <= -DISAGREE_Z:
        return LaterEvidence(later, se, z, True, "the data since then show a significantly "
                             "smaller effect than the estimate at the decision")
    return LaterEvidence(later, se, z, False, "")


def diff_text(variant: str, control: str, x: float) -> str:
    """``variant - control = x``: the one way the verdict writes a difference."""
    return f"{variant} - {control} = {x:+.4g}"


@dataclass
class DecisionPoint:
    """Where and how the primary metric's decision was made (or not yet)."""

    look: int | None
    direction: Direction | None
    estimate: float
    evidence: str  # |z| against the boundary, or p against alpha
    later: LaterEvidence | None


def decision_point(seq: SequentialAnalysis | ComparisonResult, cmp_: ComparisonResult,
                   lower_is_better: bool, alpha: float) -> DecisionPoint:
    """The crossing (sequential) or the fixed-horizon test, and the later data's evidence."""
    if isinstance(seq, SequentialAnalysis):
        c: Crossing | None = seq.crossing
        if c is None:
            rel = ">=" if abs(seq.statistic) >= seq.boundary else "<"
            return DecisionPoint(None, None, math.nan, f"|z| {abs(seq.statistic):.3f} {rel} "
                                 f"boundary {seq.boundary:.3f} at look {seq.look}", None)
        where = f"look {c.look}" if c.recorded else f"look {c.look} (now; not recorded yet)"
        later = None
        if seq.units > c.units:
            later = later_evidence(c.difference, c.variance, c.units, seq.difference,
                                   seq.std_err ** 2, seq.units)
        return DecisionPoint(c.look, c.direction, c.difference,
                             f"|z| {abs(c.statistic):.3f} >= boundary {c.boundary:.3f} at {where}",
                             later)
    rel = "<" if cmp_.pvalue < alpha else ">="
    evidence = f"fixed-horizon p {p_equals(cmp_.pvalue)} {rel} alpha {alpha:g}"
    if cmp_.pvalue >= alpha:
        return DecisionPoint(None, None, math.nan, evidence, None)
    good = cmp_.difference < 0 if lower_is_better else cmp_.difference > 0
    return DecisionPoint(None, "better" if good else "worse", cmp_.difference, evidence, None)


def describe_disagreement(d: DecisionPoint, variant: str, control: str,
                          estimate_now: float) -> str | None:
    """The warning when the data after the decision disagree with it (None when they agree,
    or nothing came after it)."""
    if d.later is None or not d.later.disagree:
        return None
    now = diff_text(variant, control, estimate_now)
    later = (f"{diff_text(variant, control, d.later.estimate)} (s.e. {d.later.std_err:.3g})"
             if math.isfinite(d.later.estimate) else "no separate estimate")
    return (
        f"the data after look {d.look} disagree with the decision made there "
        f"({d.later.reason}): at look {d.look} {diff_text(variant, control, d.estimate)}, "
        f"the later data alone {later}, all data now {now}. Possibly a novelty effect (or a "
        f"lucky early look); the decision of look {d.look} stands, but check the effect "
        "over time before acting on it")
