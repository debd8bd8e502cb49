"""``ShadowComparison``: every paired statistic of a shadow vs the served model, in one result.

:func:`compare_shadow` takes the logged pairs of one shadow (one :class:`ShadowPair` per
request that was both served and shadowed) and computes what the data allow:

- ``errors``: error rate of shadow vs served (Newcombe interval, McNemar exact and mid-p), over
  every pair;
- ``agreement`` (``kind="label"``): share of pairs where both answered and the labels are
  equal (Wilson interval);
- ``score_difference`` and ``score_quantiles`` (``kind="score"``): mean (paired t) and
  quantiles (order-statistic intervals) of ``shadow - served`` over pairs where both answered;
- ``latency``: p50 and p95 ratios shadow / served (bootstrap over requests), pairs where both
  latencies are known;
- with labels: ``accuracy`` (``kind="label"``: correct answers, McNemar) or ``loss``
  (``kind="score"``: per-request loss, paired t and Wilcoxon), and their always-valid
  versions for continuous watching (:mod:`modelrouter.stats.paired_sequential`):
  ``accuracy_always_valid`` (mixture SPRT on the discordant pairs) and
  ``loss_always_valid`` (mSPRT of the mean loss difference), fed in the order of the pairs.

A part without enough data is ``None`` and ``missing`` says why; the function raises nothing
but :class:`~modelrouter.exceptions.AnalysisError`. A failed call counts as an error and as
wrong for accuracy (it gave no answer); it is left out of agreement, score and loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from modelrouter.exceptions import AnalysisError
from modelrouter.stats.always_valid import AlwaysValidResult
from modelrouter.stats.paired import (
    PairedProportions,
    ProportionMethod,
    ProportionResult,
    agreement,
    paired_proportions,
)
from modelrouter.stats.paired_scores import (
    LatencyRatio,
    MeanDifference,
    PairedLoss,
    QuantileDifference,
    latency_ratio,
    mean_difference,
    paired_loss,
    quantile_difference,
)
from modelrouter.stats.paired_sequential import (
    DifferenceWatch,
    DiscordantSequential,
    DiscordantWatch,
)

__all__ = ["OutputKind", "ShadowComparison", "ShadowPair", "compare_shadow"]

OutputKind = Literal["label", "score"]
LATENCY_QUANTILES = (0.5, 0.95)
SCORE_QUANTILES = (0.5, 0.95)


@dataclass(frozen=True)
class ShadowPair:
    """One request seen by both models: outputs (``None`` when the call failed), latencies
    in ms (NaN when unknown) and the ground-truth label once known (``None`` before)."""

    served: Any
    shadow: Any
    served_latency_ms: float = math.nan
    shadow_latency_ms: float = math.nan
    label: Any = None

    @property
    def served_error(self) -> bool:
        """The served call gave no output."""
        return self.served is None

    @property
    def shadow_error(self) -> bool:
        """The shadow call gave no output."""
        return self.shadow is None


def _dict(x: Any) -> Any:
    return None if x is None else x.to_dict()


@dataclass(frozen=True)
class ShadowComparison:
    """The paired analysis of one shadow; ``None`` parts are explained in ``missing``."""

    shadow: str
    kind: OutputKind
    n_pairs: int
    errors: PairedProportions | None
    agreement: ProportionResult | None
    score_difference: MeanDifference | None
    score_quantiles: tuple[QuantileDifference, ...]
    latency: tuple[LatencyRatio, ...]
    accuracy: PairedProportions | None
    loss: PairedLoss | None
    missing: dict[str, str] = field(default_factory=dict)
    accuracy_always_valid: DiscordantSequential | None = None
    loss_always_valid: AlwaysValidResult | None = None

    def __repr__(self) -> str:
        parts = [f"shadow={self.shadow!r}", f"kind={self.kind!r}", f"n_pairs={self.n_pairs}"]
        for name in ("errors", "agreement", "score_difference", "accuracy", "loss",
                     "accuracy_always_valid"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value!r}")
        if self.loss_always_valid is not None:
            av = self.loss_always_valid
            ci = av.confidence_interval()
            parts.append(f"loss_always_valid=(mean difference {av.difference:+.4g} "
                         f"[{ci.low:+.4g}, {ci.high:+.4g}], always-valid p={av.pvalue:.3g})")
        parts.extend(f"latency={r!r}" for r in self.latency)
        parts.extend(f"score_quantile={r!r}" for r in self.score_quantiles)
        if self.missing:
            parts.append(f"missing={sorted(self.missing)}")
        return "ShadowComparison(" + ", ".join(parts) + ")"

    def summary(self) -> str:
        """Plain text, one line per part: what is known so far and what is not (why)."""
        lines = [f"Shadow {self.shadow!r} vs the served model, {self.n_pairs:,} paired "
                 f"request(s) (outputs: {self.kind})."]
        e = self.errors
        if e is not None:
            lines.append(f"Errors: shadow {e.p_shadow:.2%} vs served {e.p_served:.2%} "
                         f"(McNemar exact p = {e.pvalue:.3g}).")
        if self.agreement is not None:
            a = self.agreement
            lines.append(f"Agreement: {a.proportion:.2%} of {a.n:,} "
                         f"[{a.ci.low:.2%}, {a.ci.high:.2%}].")
        if self.score_difference is not None:
            d = self.score_difference
            lines.append(f"Score difference (shadow - served): {d.difference:+.4g} "
                         f"[{d.ci.low:+.4g}, {d.ci.high:+.4g}], paired t p = {d.pvalue:.3g}.")
        lines.extend(f"Latency p{r.q * 100:g}: shadow/served {r.ratio:.3g} "
                     f"[{r.ci.low:.3g}, {r.ci.high:.3g}]." for r in self.latency)
        if self.accuracy is not None:
            c = self.accuracy
            lines.append(f"Accuracy: shadow {c.p_shadow:.2%} vs served {c.p_served:.2%} on "
                         f"{c.n:,} labelled pair(s), difference {c.difference:+.2%} "
                         f"[{c.ci.low:+.2%}, {c.ci.high:+.2%}], McNemar exact p = "
                         f"{c.pvalue:.3g}.")
        if self.accuracy_always_valid is not None:
            w = self.accuracy_always_valid
            lines.append(f"Always valid (read it any time): the shadow is the one right in "
                         f"{w.shadow_only:,} of {w.shadow_only + w.served_only:,} discordant "
                         f"pair(s), share [{w.ci.low:.3g}, {w.ci.high:.3g}] (0.5: equal), "
                         f"p = {w.pvalue:.3g}.")
        if self.loss is not None:
            lo = self.loss
            lines.append(f"Loss (shadow - served): {lo.difference:+.4g} "
                         f"[{lo.t.ci.low:+.4g}, {lo.t.ci.high:+.4g}], paired t p = "
                         f"{lo.pvalue:.3g}, Wilcoxon p = {lo.wilcoxon_pvalue:.3g}.")
        if self.loss_always_valid is not None:
            v = self.loss_always_valid
            ci = v.confidence_interval()
            lines.append(f"Always valid (read it any time): loss difference {v.difference:+.4g}"
                         f" [{ci.low:+.4g}, {ci.high:+.4g}], p = {v.pvalue:.3g}.")
        lines.extend(f"Not yet {part}: {why}." for part, why in sorted(self.missing.items())
                     if not why.startswith("kind is"))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (NaN and infinities as ``None``)."""
        return {"shadow": self.shadow, "kind": self.kind, "n_pairs": self.n_pairs,
                "errors": _dict(self.errors), "agreement": _dict(self.agreement),
                "score_difference": _dict(self.score_difference),
                "score_quantiles": [r.to_dict() for r in self.score_quantiles],
                "latency": [r.to_dict() for r in self.latency],
                "accuracy": _dict(self.accuracy), "loss": _dict(self.loss),
                "accuracy_always_valid": _dict(self.accuracy_always_valid),
                "loss_always_valid": _dict(self.loss_always_valid),
                "missing": dict(self.missing)}


def _squared(y: float, y_true: float) -> float:
    return (y - y_true) ** 2


def _as_float(value: Any, what: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise AnalysisError(f"{what} ({value!r}) must be a number for kind='score'") from None
    if not math.isfinite(x):
        raise AnalysisError(f"{what} ({value!r}) must be finite")
    return x


def _equal(x: Any, y: Any) -> bool:
    try:
        return bool(x == y)
    except Exception as exc:  # arrays, odd __eq__: say which values could not be compared
        raise AnalysisError(f"outputs ({x!r}, {y!r}) cannot be compared as labels: {exc}"
                            ) from None


def _loss(loss: Callable[[float, float], float], y: float, y_true: float) -> float:
    try:
        value = float(loss(y, y_true))
    except Exception as exc:  # a user's function: report it as an analysis error
        raise AnalysisError(f"loss({y!r}, {y_true!r}) failed: {exc!r}") from None
    if not math.isfinite(value):
        raise AnalysisError(f"loss({y!r}, {y_true!r}) ({value!r}) must be finite")
    return value


def _table(pairs: Sequence[tuple[bool, bool]]) -> tuple[int, int, int, int]:
    a = sum(1 for s, h in pairs if s and h)
    b = sum(1 for s, h in pairs if s and not h)
    c = sum(1 for s, h in pairs if h and not s)
    return a, b, c, len(pairs) - a - b - c


def compare_shadow(pairs: Sequence[ShadowPair], *, shadow: str = "shadow",
                   kind: OutputKind = "label", confidence_level: float = 0.95,
                   loss: Callable[[float, float], float] = _squared,
                   agreement_method: ProportionMethod = "wilson") -> ShadowComparison:
    """Every paired statistic the pairs allow (see the module docstring). ``loss(y, y_true)``
    is the per-request loss for scores (squared error by default)."""
    if kind not in ("label", "score"):
        raise AnalysisError(f"kind ({kind!r}) must be one of 'label', 'score'")
    if not 0.0 < confidence_level < 1.0:
        raise AnalysisError(f"confidence_level ({confidence_level!r}) must be in (0, 1)")
    missing: dict[str, str] = {}
    n = len(pairs)
    errors = None
    if n:
        a, b, c, d = _table([(p.served_error, p.shadow_error) for p in pairs])
        errors = paired_proportions(a, b, c, d, outcome="error",
                                    confidence_level=confidence_level)
    else:
        missing["errors"] = "no pairs"
    answered = [p for p in pairs if not (p.served_error or p.shadow_error)]
    agree = score = None
    quantiles: tuple[QuantileDifference, ...] = ()
    if kind == "label":
        missing["score_difference"] = "kind is 'label'"
        if answered:
            same = sum(1 for p in answered if _equal(p.served, p.shadow))
            agree = agreement(same, len(answered), confidence_level, agreement_method)
        else:
            missing["agreement"] = "no pair where both models answered"
    else:
        missing["agreement"] = "kind is 'score'"
        xs = np.array([_as_float(p.served, "served") for p in answered], dtype=np.float64)
        ys = np.array([_as_float(p.shadow, "shadow") for p in answered], dtype=np.float64)
        if xs.size >= 2:
            score = mean_difference(xs, ys, confidence_level)
            quantiles = tuple(quantile_difference(xs, ys, q, confidence_level)
                              for q in SCORE_QUANTILES)
        else:
            missing["score_difference"] = f"{xs.size} pair(s) where both answered; need 2"
    timed = [(p.served_latency_ms, p.shadow_latency_ms) for p in pairs
             if math.isfinite(p.served_latency_ms) and math.isfinite(p.shadow_latency_ms)]
    latency: tuple[LatencyRatio, ...] = ()
    if len(timed) >= 2:
        lat = np.asarray(timed, dtype=np.float64)
        latency = tuple(latency_ratio(lat[:, 0], lat[:, 1], q, confidence_level)
                        for q in LATENCY_QUANTILES)
    else:
        missing["latency"] = f"{len(timed)} pair(s) with both latencies; need 2"
    labelled = [p for p in pairs if p.label is not None]
    accuracy = loss_result = None
    watched: DiscordantSequential | None = None
    watched_loss: AlwaysValidResult | None = None
    if kind == "label":
        missing["loss"] = missing["loss_always_valid"] = "kind is 'label'"
        if labelled:
            correct = [(not p.served_error and _equal(p.served, p.label),
                        not p.shadow_error and _equal(p.shadow, p.label)) for p in labelled]
            a, b, c, d = _table(correct)
            accuracy = paired_proportions(a, b, c, d, outcome="correct",
                                          confidence_level=confidence_level)
            watch = DiscordantWatch("correct")
            for s, h in correct:
                watch.add(s, h)
            watched = watch.result(confidence_level)
        else:
            missing["accuracy"] = missing["accuracy_always_valid"] = "no labelled pair"
    else:
        missing["accuracy"] = missing["accuracy_always_valid"] = "kind is 'score'"
        both = [p for p in labelled if not (p.served_error or p.shadow_error)]
        ls = [_loss(loss, _as_float(p.served, "served"), _as_float(p.label, "label"))
              for p in both]
        lh = [_loss(loss, _as_float(p.shadow, "shadow"), _as_float(p.label, "label"))
              for p in both]
        if len(both) >= 2:
            loss_result = paired_loss(ls, lh, confidence_level)
        else:
            missing["loss"] = f"{len(both)} labelled pair(s) where both answered; need 2"
        diffs = DifferenceWatch()
        for x, y in zip(ls, lh):
            diffs.add(y - x)
        watched_loss = diffs.result()
        if watched_loss is None:
            missing["loss_always_valid"] = diffs.why_not()
    return ShadowComparison(shadow, kind, n, errors, agree, score, quantiles, latency,
                            accuracy, loss_result, missing, watched, watched_loss)
