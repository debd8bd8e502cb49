"""``ShadowStats``: the bounded-memory paired statistics of one shadow vs the served model.

One object per shadow, fed by :class:`~modelrouter.store.shadows.ShadowLog` with each completed
pair (:meth:`ShadowStats.add_pair`) and each labelled pair (:meth:`ShadowStats.add_label`).
Memory is O(1) in the number of requests: counts, running moments
(:class:`~modelrouter.stats.paired_accumulator.PairedMoments`, Welford 1962) and uniform
reservoirs of at most ``capacity`` pairs
(:class:`~modelrouter.stats.paired_accumulator.PairReservoir`, Vitter 1985) for what
needs the values themselves (quantiles, latency ratios, Wilcoxon).
:meth:`ShadowStats.comparison` turns them into the same
:class:`~modelrouter.stats.paired_comparison.ShadowComparison` that
:func:`~modelrouter.stats.paired_comparison.compare_shadow` computes from the raw pairs, with
the same rules (a failed call is an error and a wrong answer, it is left out of agreement,
score and loss); while fewer than ``capacity`` pairs were seen the two are equal (up to
rounding of the running moments), beyond it the reservoir parts are computed on a uniform
sample and only their intervals widen.

Not thread safe: the log calls it under its lock.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelrouter.stats.paired import ProportionResult, agreement
from modelrouter.stats.paired_accumulator import PairedCounts, PairedMoments, PairReservoir
from modelrouter.stats.paired_comparison import (
    LATENCY_QUANTILES,
    SCORE_QUANTILES,
    OutputKind,
    ShadowComparison,
)
from modelrouter.stats.paired_scores import (
    LatencyRatio,
    MeanDifference,
    PairedLoss,
    QuantileDifference,
    latency_ratio,
    paired_loss,
    quantile_difference,
)
from modelrouter.stats.paired_sequential import DifferenceWatch, DiscordantWatch

__all__ = ["ShadowStats", "is_finite_number", "same_label"]


def same_label(x: Any, y: Any) -> bool:
    """Whether two label outputs are equal (False when they cannot be compared)."""
    try:
        return bool(x == y)
    except Exception:  # arrays, odd __eq__: not equal rather than an error in a worker
        return False


def _seeded(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@dataclass
class ShadowStats:
    """Counts and accumulators of one shadow (see the module docstring)."""

    name: str
    kind: OutputKind
    capacity: int = 4096
    submitted: int = 0
    completed: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    unpaired: Counter[str] = field(default_factory=Counter)
    error_table: PairedCounts = field(default_factory=PairedCounts)
    answered: int = 0  # pairs where both models gave an output
    agreeing: int = 0  # of which equal (kind "label")
    scores: PairedMoments = field(default_factory=PairedMoments)
    score_sample: PairReservoir | None = None
    latency_sample: PairReservoir | None = None
    accuracy: PairedCounts = field(default_factory=PairedCounts)
    losses: PairedMoments = field(default_factory=PairedMoments)
    loss_sample: PairReservoir | None = None
    accuracy_watch: DiscordantWatch = field(default_factory=DiscordantWatch)
    loss_watch: DifferenceWatch = field(default_factory=DifferenceWatch)

    def __post_init__(self) -> None:
        # fixed seeds: the kept sample is reproducible for a given stream
        if self.score_sample is None:
            self.score_sample = PairReservoir(self.capacity, rng=_seeded(1))
        if self.latency_sample is None:
            self.latency_sample = PairReservoir(self.capacity, rng=_seeded(2))
        if self.loss_sample is None:
            self.loss_sample = PairReservoir(self.capacity, rng=_seeded(3))

    # -- feeding ------------------------------------------------------------------------
    def add_pair(self, served: Any, shadow: Any, served_ms: float, shadow_ms: float) -> None:
        """Count one completed pair (``None`` output: that call failed; latencies in ms,
        NaN when unknown). For ``kind="score"`` outputs must be finite numbers: other
        pairs are counted in ``unpaired`` and left out."""
        if self.kind == "score" and (
                (served is not None and not is_finite_number(served))
                or (shadow is not None and not is_finite_number(shadow))):
            self.unpaired["non-numeric output"] += 1
            return
        self.completed += 1
        self.error_table.add(served is None, shadow is None)
        if served is not None and shadow is not None:
            self.answered += 1
            if self.kind == "label":
                self.agreeing += same_label(served, shadow)
            else:
                self.scores.add(float(served), float(shadow))
                self.score_sample.add(float(served), float(shadow))  # type: ignore[union-attr]
        if math.isfinite(served_ms) and math.isfinite(shadow_ms):
            self.latency_sample.add(served_ms, shadow_ms)  # type: ignore[union-attr]

    def add_label(self, served: Any, shadow: Any, label: Any) -> None:
        """Count one labelled pair (a pair already counted by :meth:`add_pair`)."""
        if self.kind == "label":
            right = (served is not None and same_label(served, label),
                     shadow is not None and same_label(shadow, label))
            self.accuracy.add(*right)
            self.accuracy_watch.add(*right)
        elif served is not None and shadow is not None:
            try:  # finite numbers may still square beyond the float range (1e300)
                ls = (float(served) - float(label)) ** 2
                lh = (float(shadow) - float(label)) ** 2
            except OverflowError:
                ls = lh = math.inf
            if not (math.isfinite(ls) and math.isfinite(lh)):
                self.unpaired["non-finite loss"] += 1
                return
            self.losses.add(ls, lh)
            self.loss_sample.add(ls, lh)  # type: ignore[union-attr]
            self.loss_watch.add(lh - ls)

    def copy(self) -> ShadowStats:
        """An independent copy (the analysis reads a copy taken under the log's lock)."""
        return copy.deepcopy(self)

    # -- reading ------------------------------------------------------------------------
    def counts(self) -> dict[str, Any]:
        """Submitted, completed, dropped and error counts (plain data)."""
        return {"submitted": self.submitted, "completed": self.completed,
                "dropped": dict(self.dropped), "errors": dict(self.errors),
                "unpaired": dict(self.unpaired)}

    def comparison(self, confidence_level: float = 0.95) -> ShadowComparison:
        """The paired analysis, with the rules of :func:`compare_shadow`."""
        missing: dict[str, str] = {}
        n = self.error_table.n
        errors = self.error_table.result("error", confidence_level) if n else None
        if errors is None:
            missing["errors"] = "no pairs"
        agree: ProportionResult | None = None
        score: MeanDifference | None = None
        quantiles: tuple[QuantileDifference, ...] = ()
        if self.kind == "label":
            missing["score_difference"] = "kind is 'label'"
            if self.answered:
                agree = agreement(self.agreeing, self.answered, confidence_level)
            else:
                missing["agreement"] = "no pair where both models answered"
        else:
            missing["agreement"] = "kind is 'score'"
            if self.scores.n >= 2:
                score = self.scores.result(confidence_level)
                xs, ys = self.score_sample.arrays()  # type: ignore[union-attr]
                quantiles = tuple(quantile_difference(xs, ys, q, confidence_level)
                                  for q in SCORE_QUANTILES)
            else:
                missing["score_difference"] = (f"{self.scores.n} pair(s) where both answered;"
                                               " need 2")
        latency: tuple[LatencyRatio, ...] = ()
        lat = self.latency_sample
        if lat is not None and len(lat) >= 2:
            a, b = lat.arrays()
            latency = tuple(latency_ratio(a, b, q, confidence_level) for q in LATENCY_QUANTILES)
        else:
            missing["latency"] = (f"{0 if lat is None else len(lat)} pair(s) with both "
                                  "latencies; need 2")
        accuracy = watched = watched_loss = None
        loss: PairedLoss | None = None
        if self.kind == "label":
            missing["loss"] = missing["loss_always_valid"] = "kind is 'label'"
            if self.accuracy.n:
                accuracy = self.accuracy.result("correct", confidence_level)
                watched = self.accuracy_watch.result(confidence_level)
            else:
                missing["accuracy"] = missing["accuracy_always_valid"] = "no labelled pair"
        else:
            missing["accuracy"] = missing["accuracy_always_valid"] = "kind is 'score'"
            watched_loss = self.loss_watch.result()
            if watched_loss is None:
                missing["loss_always_valid"] = self.loss_watch.why_not()
            if self.losses.n >= 2:
                ls, lh = self.loss_sample.arrays()  # type: ignore[union-attr]
                w = paired_loss(ls, lh, confidence_level)
                loss = PairedLoss(self.losses.result(confidence_level), w.wilcoxon_statistic,
                                  w.wilcoxon_pvalue)
            else:
                missing["loss"] = (f"{self.losses.n} labelled pair(s) where both answered; "
                                   "need 2")
        return ShadowComparison(self.name, self.kind, n, errors, agree, score, quantiles,
                                latency, accuracy, loss, missing, watched, watched_loss)


def is_finite_number(x: Any) -> bool:
    """Whether ``x`` converts to a finite float (a score or label usable in sums)."""
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError, OverflowError):
        return False
