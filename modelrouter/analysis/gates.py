"""The rollout's gates read from one analysis: advance, stay, or roll back a candidate's stage.

:func:`read_gate` answers, for one candidate at one stage of its rollout plan
(:mod:`modelrouter.config.rollout`), with a :class:`GateReading`: ``advance`` (the stage saw
``min_units`` and its gate holds), ``rollback`` (a guardrail of the candidate fails, the
primary metric is significantly worse, or ``max_units`` passed without the gate holding) or
``stay``; with the reason and the numbers behind it. The rollout monitor
(modelrouter/rollout_monitor.py) acts on it.

- **shadow stage**: units are the shadow's paired decisions (``a.shadow(name).n_pairs``).
  ``no_worse``: the paired accuracy difference's lower bound (or the paired loss
  difference's upper bound) at one-sided level ``alpha`` beyond ``-margin`` (labels needed);
  ``agreement_at_least``: the agreement's lower 95% bound >= ``rate``; ``guardrails_pass``:
  for an ``error`` guardrail, the upper bound of the paired error-rate difference within its
  margin, for a ``latency_ms`` guardrail the upper bound of the paired latency ratio (its
  quantile, the median for a mean guardrail) within 1 + margin (relative) ; a bound entirely
  beyond a margin stops the rollout (``rollback`` to no exposure, which is where it is).
  These are fixed-sample intervals read at each check: the shadow stage exposes nobody, and
  the decision to ship is taken later on always-valid tests.
- **canary / ab**: units are the candidate's units first exposed since the stage began (its
  epoch); request level, its requests overall. Every check first reads the candidate's
  guardrails (always-valid intervals; any ``fail`` rolls back at once, whatever
  ``min_units``). ``guardrails_pass``: every overall guardrail of the candidate ``pass``;
  ``no_worse``: the always-valid interval of the primary at one-sided ``alpha`` (two-sided
  ``2 alpha``) excludes a harm larger than ``margin``; ``primary_better``: the always-valid
  test of the primary at the plan's alpha rejects in the candidate's favour (rejecting the
  other way rolls back).

Thread safety: pure functions of a frozen analysis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from modelrouter.analysis.always_valid import always_valid_analysis
from modelrouter.analysis.data import AnalysisData
from modelrouter.analysis.guardrails import guardrail_results
from modelrouter.config.plan import ExperimentPlan
from modelrouter.config.rollout import StageSpec
from modelrouter.exceptions import AnalysisError

if TYPE_CHECKING:
    from modelrouter.routing.promotion import CandidateStage
    from modelrouter.stats.paired_comparison import ShadowComparison
    from modelrouter.store.shadows import ShadowSnapshot

__all__ = ["Action", "GateReading", "read_gate", "stage_units"]

Action = Literal["advance", "stay", "rollback"]


@dataclass(frozen=True)
class GateReading:
    """What the gate says now, why, and the numbers behind it."""

    candidate: str
    stage: str
    action: Action
    reason: str
    units: int
    numbers: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"GateReading({self.candidate!r} at {self.stage}: {self.action}, "
                f"{self.units} units: {self.reason})")

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {"candidate": self.candidate, "stage": self.stage, "action": self.action,
                "reason": self.reason, "units": self.units, "numbers": dict(self.numbers)}


def stage_units(a: AnalysisData, candidate: str, since_epoch: int) -> int:
    """The candidate's units first exposed in an epoch >= ``since_epoch`` (request level:
    its requests overall)."""
    snap = a.snapshot
    i = a.variants.index(candidate)
    if snap.units is None:
        return int(snap.requests[i])
    mask = (snap.units.variant == i) & (snap.units.epoch >= since_epoch)
    return int(np.count_nonzero(mask))


def read_gate(a: AnalysisData, shadows: ShadowSnapshot | None, spec: StageSpec,
              cur: CandidateStage) -> GateReading:
    """The reading of ``spec``'s gate for the candidate at ``cur`` (see the module doc);
    ``shadows``: the shadows' statistics (``Analysis.shadow_data``)."""
    if spec.stage == "shadow":
        return _shadow(a, shadows, spec, cur.candidate)
    return _served(a, spec, cur)


def _reading(cur: str, spec: StageSpec, action: Action, reason: str, units: int,
             **numbers: float) -> GateReading:
    return GateReading(cur, spec.stage, action, reason, units, numbers)


def _limits(spec: StageSpec, units: int, name: str, held: bool, why: str,
            numbers: dict[str, float]) -> GateReading:
    """advance when held after min_units; rollback past max_units; else stay."""
    if held and units >= (spec.min_units or 0):
        return GateReading(name, spec.stage, "advance", why, units, numbers)
    if spec.max_units is not None and units >= spec.max_units:
        return GateReading(name, spec.stage, "rollback", f"max_units ({spec.max_units}) "
                           f"reached without the gate holding: {why}", units, numbers)
    wait = "" if units >= (spec.min_units or 0) else f"waiting for min_units " \
        f"({units}/{spec.min_units}); "
    return GateReading(name, spec.stage, "stay", wait + why, units, numbers)


def _shadow(a: AnalysisData, shadows: ShadowSnapshot | None, spec: StageSpec,
            name: str) -> GateReading:
    gate = spec.advance_if
    assert gate is not None
    alpha = gate.param("alpha") if gate.name == "no_worse" else 0.025
    try:
        if shadows is None:
            raise AnalysisError("no shadow statistics")
        cmp = shadows.comparison(name, 1.0 - 2.0 * alpha)
    except AnalysisError as exc:
        return _reading(name, spec, "stay", f"no paired data yet ({exc})", 0)
    units = cmp.n_pairs
    failed = _shadow_guardrails(a, cmp)
    if failed is not None:
        return _reading(name, spec, "rollback", failed[0], units, **failed[1])
    if gate.name == "agreement_at_least":
        if cmp.agreement is None:
            return _limits(spec, units, name, False, "no label agreement yet", {})
        low = cmp.agreement.ci.low
        ok = low >= gate.param("rate")
        return _limits(spec, units, name, ok, f"agreement {cmp.agreement.proportion:.4g}, "
                       f"lower bound {low:.4g} {'>=' if ok else '<'} {gate.param('rate'):g}",
                       {"agreement": cmp.agreement.proportion, "agreement_low": low})
    if gate.name == "no_worse":
        margin = gate.param("margin")
        if cmp.accuracy is not None:
            d, low = cmp.accuracy.difference, cmp.accuracy.ci.low
            ok = low > -margin
            why = (f"accuracy shadow - served {d:+.4g}, lower bound {low:+.4g} "
                   f"{'>' if ok else '<='} -{margin:g}")
            return _limits(spec, units, name, ok, why, {"accuracy_difference": d,
                                                         "accuracy_low": low})
        if cmp.loss is not None:
            d, high = cmp.loss.difference, cmp.loss.t.ci.high
            ok = high < margin
            why = (f"loss shadow - served {d:+.4g}, upper bound {high:+.4g} "
                   f"{'<' if ok else '>='} {margin:g}")
            return _limits(spec, units, name, ok, why, {"loss_difference": d,
                                                        "loss_high": high})
        return _limits(spec, units, name, False, "no labelled pairs yet (record_label)", {})
    # guardrails_pass: held when no bound is beyond (failed is None above) and all known
    ok = cmp.errors is not None and bool(cmp.latency)
    return _limits(spec, units, name, ok, "the paired latency and error guardrails hold"
                   if ok else "paired latency or errors not measured yet", {})


def _shadow_guardrails(a: AnalysisData, cmp: ShadowComparison
                       ) -> tuple[str, dict[str, float]] | None:
    """The first guardrail whose paired interval lies entirely beyond its margin."""
    for g in (a.config.guardrail_config.guardrails or {}).values():
        if g.metric == "error" and cmp.errors is not None and not g.relative:
            low = cmp.errors.ci.low
            if low > g.margin:
                return (f"shadow error rate - served {cmp.errors.difference:+.4g}, lower "
                        f"bound {low:+.4g} > margin {g.margin:g}",
                        {"error_difference": cmp.errors.difference, "error_low": low})
        if g.metric == "latency_ms" and g.relative:
            q = 0.5 if g.quantile is None else g.quantile
            for r in cmp.latency:
                if math.isclose(r.q, q) and r.ci.low - 1.0 > g.margin:
                    return (f"shadow p{100 * q:g} latency / served {r.ratio:.4g}, lower bound "
                            f"{r.ci.low:.4g} > 1 + margin {g.margin:g}",
                            {"latency_ratio": r.ratio, "latency_ratio_low": r.ci.low})
    return None


def _served(a: AnalysisData, spec: StageSpec, cur: CandidateStage) -> GateReading:
    name = cur.candidate
    gate = spec.advance_if
    assert gate is not None
    units = stage_units(a, name, cur.epoch)
    if name not in a.treatments:
        return _reading(name, spec, "stay", "not served yet", units)
    results = [g for g in guardrail_results(a) if g.variant == name and g.segment is None]
    for g in results:
        if g.status == "fail":
            return _reading(name, spec, "rollback", f"guardrail {g.label} failed: {g.reason}",
                            units, estimate=g.estimate, low=g.low, high=g.high,
                            units_candidate=float(g.units_treatment))
    if gate.name == "guardrails_pass":
        pending = [g.label for g in results if g.status != "pass"]
        why = ("every guardrail passes" if not pending else
               f"guardrails not passed yet: {', '.join(pending)}")
        return _limits(spec, units, name, not pending, why, {"guardrails": len(results)})
    primary = a.config.primary
    plan = a.config.plan
    assert primary is not None and isinstance(plan, ExperimentPlan)  # RouterConfig checks
    lower = a.spec(primary).lower_is_better
    alpha = 2.0 * gate.param("alpha") if gate.name == "no_worse" else plan.alpha
    try:
        av = always_valid_analysis(a, primary, name, alpha=alpha)
        ci = av.confidence_interval()
    except AnalysisError as exc:
        return _limits(spec, units, name, False, f"{primary}: not enough data ({exc})", {})
    nums = {"difference": av.difference, "low": ci.low, "high": ci.high, "pvalue": av.pvalue}
    better = av.difference < 0 if lower else av.difference > 0
    if av.decision == "reject" and not better and gate.name == "primary_better":
        return _reading(name, spec, "rollback", f"{primary} is significantly worse: "
                        f"candidate - control {av.difference:+.4g}, always-valid p "
                        f"{av.pvalue:.3g}", units, **nums)
    if gate.name == "no_worse":
        margin = gate.param("margin")
        ok = ci.high < margin if lower else ci.low > -margin
        why = (f"{primary} candidate - control {av.difference:+.4g}, always-valid "
               f"{1 - alpha:.0%} interval [{ci.low:+.4g}, {ci.high:+.4g}] "
               f"{'excludes' if ok else 'does not exclude'} a harm beyond {margin:g}")
        return _limits(spec, units, name, ok, why, nums)
    ok = av.decision == "reject" and better
    why = (f"{primary} candidate - control {av.difference:+.4g}, always-valid p "
           f"{av.pvalue:.3g} {'<=' if av.decision == 'reject' else '>'} alpha {alpha:g}")
    return _limits(spec, units, name, ok, why, nums)
