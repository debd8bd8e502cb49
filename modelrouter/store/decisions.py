"""Decision-level sums and bandit training counters, kept by the store under its lock.

In bandit mode the unit of analysis is the *decision* (one routed request): its arm was drawn
with a known propensity, independently of earlier decisions given the weights of its epoch.
The :class:`DecisionTracker` keeps, for the decisions the bandit routes:

- additive sums per group ``(variant, epoch, segment codes, tag)`` with the same layout as the
  request-level groups of :class:`~modelrouter.store.memory.MemoryStore` (``n`` then
  ``sx, sy, sxx, syy, sxy`` per metric), so the analysis computes inverse-propensity estimates
  from O(groups) numbers; ``tag`` bit 0 marks holdout decisions, bit 1 sticky repeats;
- per-decision ``(x, y)`` per metric in a ring indexed like the store's pending ring
  (``seq % max_pending``), so late feedback updates its decision's group exactly;
- the bandit's training counters (Beta: successes/failures; Normal-Inverse-Gamma: n, sum,
  sum of squares of ``reward - shift``), kept as the sum over training decisions of each
  decision's *current* reward. A decision's reward is
  ``reward value - sum(cost * cost metric value)`` with each value as analysed (``any``: 0/1,
  ``sum``: total, ``mean``: per event), re-computed whenever one of them changes, and the
  counters move by the difference: a delayed reward or a late latency updates the decision it
  belongs to, never another one.
- ``missing_reward="zero"``: every training decision counts from its exposure with reward 0
  (less costs already recorded) until its reward arrives; a reward that never arrives (past the
  attribution window or evicted from the ring) leaves it at 0. ``"omit"``: a decision counts
  only once a value of the reward metric has been recorded for it.

Memory is O(max_pending x metrics) for the ring and O(groups) for the sums. Every method is
called with the store's lock held; none takes a lock of its own.
"""

from __future__ import annotations

import math
import threading
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelrouter.stats.moments import add_to_pair, moments_of_row, new_sums_row

__all__ = ["HOLDOUT", "STICKY", "DecisionStoreMixin", "DecisionTracker", "Training",
           "decision_groups"]

HOLDOUT = 1  # tag bit: routed by the uniform holdout, never trains the bandit
STICKY = 2  # tag bit: a sticky unit's repeat of an earlier draw (not a fresh draw)


@dataclass(frozen=True)
class Training:
    """What the posterior learns from: metric indices, costs, the missing-reward rule."""

    reward: int
    costs: tuple[tuple[int, float], ...] = ()
    rule: str = "zero"
    kind: str = "binary"  # "binary": Beta counters; "continuous": NIG counters of r - shift
    shift: float = 0.0
    due_every: int = 100


class DecisionTracker:
    """See the module docstring. ``on_due`` is called (under the store lock, so it must only
    set a flag or an event) once ``due_every`` training updates have accumulated."""

    def __init__(self, n_variants: int, aggregates: Sequence[str | None], capacity: int,
                 training: Training | None, on_due: Callable[[], None] | None = None) -> None:
        self.n_variants = n_variants
        self.capacity = int(capacity)
        self.aggregates = tuple(aggregates)
        self._any = tuple(a == "any" for a in aggregates)
        self._mean = tuple(a == "mean" for a in aggregates)
        self.training = training
        self.on_due = on_due
        self.reset()

    def reset(self) -> None:
        """Forget every tracked decision, sum and counter (e.g. after a restore)."""
        aggregates = self.aggregates
        training = self.training
        self._seq = array("q")
        self._group = array("q")
        self._train = array("b")
        self._r = array("d")  # current reward of the decision; NaN: not in the counters
        self._x = [array("d") for _ in aggregates]
        self._y = [array("d") for _ in aggregates]
        self._xy = (*self._x, *self._y)
        self._unit_last: dict[int, int] = {}  # unit row -> its latest tracked decision
        self._index: dict[tuple[int, int, tuple[int, ...], int], int] = {}
        self._keys: list[tuple[int, int, tuple[int, ...], int]] = []
        self._sums: list[list[float]] = []
        k = self.n_variants
        self.counters = [[0.0] * k for _ in range(2 if self._binary else 3)]
        self.pending = 0
        self._signalled = False
        self._relevant = frozenset() if training is None else frozenset(
            [training.reward, *(m for m, _ in training.costs)])

    @property
    def _binary(self) -> bool:
        return self.training is not None and self.training.kind == "binary"

    # -- exposure and feedback (store lock held) --------------------------------------------
    def open(self, seq: int, variant: int, epoch: int, segment: tuple[int, ...], tag: int,
             unit_row: int | None = None) -> None:
        """Start tracking decision ``seq``; it trains unless it is a holdout decision."""
        key = (variant, epoch, segment, tag)
        g = self._index.get(key)
        if g is None:
            g = len(self._keys)
            self._index[key] = g
            self._keys.append(key)
            self._sums.append(new_sums_row(len(self._x)))
        self._sums[g][0] += 1.0
        slot = seq % self.capacity
        t = self.training
        train = t is not None and not tag & HOLDOUT
        zero = train and t.rule == "zero"  # type: ignore[union-attr]
        size = len(self._seq)
        if slot < size:  # ring full: overwrite (an evicted decision keeps its contribution)
            self._seq[slot] = seq
            self._group[slot] = g
            self._train[slot] = train
            self._r[slot] = 0.0 if zero else math.nan
            for col in self._xy:
                col[slot] = 0.0
        else:
            if slot > size:  # slots of untracked (A/B) decisions stay empty
                gap = slot - size
                self._seq.extend([-1] * gap)
                self._group.extend([0] * gap)
                self._train.extend([0] * gap)
                self._r.extend([math.nan] * gap)
                for col in self._xy:
                    col.extend([0.0] * gap)
            self._seq.append(seq)
            self._group.append(g)
            self._train.append(train)
            self._r.append(0.0 if zero else math.nan)
            for col in self._xy:
                col.append(0.0)
        if unit_row is not None:
            self._unit_last[unit_row] = seq
        if zero:  # counts as a reward of 0 from now until its reward arrives
            self._add(variant, 0.0, 1.0)
            self._bump()

    def apply(self, seq: int, m: int, value: float) -> None:
        """Add a validated value of metric ``m`` to decision ``seq`` if it is tracked."""
        slot = seq % self.capacity
        if seq < 0 or slot >= len(self._seq) or self._seq[slot] != seq:
            return  # an A/B decision, or one no longer in the ring
        g = self._group[slot]
        add_to_pair(self._x[m], self._y[m], slot, self._sums[g], m, value, self._any[m])
        if self._train[slot] and m in self._relevant:
            self._retrain(slot, self._keys[g][0])

    def apply_unit(self, row: int, m: int, value: float, alive: Callable[[int], bool]) -> None:
        """Feedback by unit id: it belongs to the unit's latest decision, if still pending."""
        seq = self._unit_last.get(row)
        if seq is not None and alive(seq):
            self.apply(seq, m, value)

    def _value(self, m: int, slot: int) -> float:
        x = self._x[m][slot]
        if self._mean[m]:
            y = self._y[m][slot]
            return x / y if y > 0 else 0.0
        return x

    def _retrain(self, slot: int, arm: int) -> None:
        t = self.training
        assert t is not None
        if t.rule == "omit" and self._y[t.reward][slot] <= 0:
            new = math.nan
        else:
            new = self._value(t.reward, slot)
            for m, c in t.costs:
                new -= c * self._value(m, slot)
        old = self._r[slot]
        if new == old or (math.isnan(new) and math.isnan(old)):
            return
        if not math.isnan(old):
            self._add(arm, old, -1.0)
        if not math.isnan(new):
            self._add(arm, new, 1.0)
        self._r[slot] = new
        self._bump()

    def _bump(self) -> None:
        self.pending += 1
        t = self.training
        if (t is not None and self.pending >= t.due_every and not self._signalled
                and self.on_due is not None):
            self._signalled = True
            self.on_due()

    def _add(self, arm: int, r: float, sign: float) -> None:
        c = self.counters
        if self._binary:
            c[0][arm] += sign * r
            c[1][arm] += sign * (1.0 - r)
            return
        assert self.training is not None
        d = r - self.training.shift
        c[0][arm] += sign
        c[1][arm] += sign * d
        c[2][arm] += sign * d * d

    # -- reading (store lock held) --------------------------------------------------------
    def take_counters(self, reset: bool = True) -> tuple[dict[str, np.ndarray], int]:
        """Copies of the training counters and the updates since the last take (``reset``:
        start counting updates again)."""
        names = ("successes", "failures") if self._binary else ("n", "sum", "sumsq")
        # counts are sums of +1/-1 (exact); the clip only removes float dust of costs
        out = {n: np.maximum(np.array(c), 0.0) if n != "sum" else np.array(c)
               for n, c in zip(names, self.counters)}
        pending = self.pending
        if reset:
            self.pending, self._signalled = 0, False
        return out, pending

    def copy_sums(self) -> list[tuple[tuple[int, int, tuple[int, ...], int], list[float]]]:
        """(key, sums) of every decision group, copied."""
        return [(key, list(self._sums[i])) for i, key in enumerate(self._keys)]


class DecisionStoreMixin:
    """The bandit's entry points of :class:`~modelrouter.store.memory.MemoryStore` (kept here
    to keep the store module small); the attributes are the store's own."""

    _lock: threading.Lock
    _decisions: DecisionTracker | None
    _ring_seq: array[int]
    _ring_time: array[float]
    unit_level: bool
    max_pending: int
    attribution_window: float
    clock: Callable[[], float]

    def _expose_locked(self, unit: str | None, variant: int, propensity: float, epoch: int,
                       segment: tuple[int, ...], now: float) -> tuple[int, int | None]:
        raise NotImplementedError  # pragma: no cover - MemoryStore's

    def track_decisions(self, tracker: DecisionTracker) -> None:
        """Keep decision-level sums (and bandit training counters) from now on."""
        with self._lock:
            self._decisions = tracker

    def expose_decision(self, unit: str | None, variant: int, propensity: float, epoch: int,
                        segment: tuple[int, ...] = (), now: float | None = None,
                        tag: int = 0) -> int:
        """:meth:`expose` a bandit decision and open its row in the decision tracker, in one
        lock: a snapshot never sees the exposure without its decision."""
        if now is None:
            now = self.clock()
        with self._lock:
            seq, row = self._expose_locked(unit, variant, propensity, epoch, segment, now)
            if self._decisions is not None:
                self._decisions.open(seq, variant, epoch, segment, tag, row)
        return seq

    def take_training(self) -> tuple[dict[str, np.ndarray], int]:
        """The bandit's training counters and the updates since the last call."""
        with self._lock:
            assert self._decisions is not None
            return self._decisions.take_counters()

    def peek_training(self) -> dict[str, np.ndarray]:
        """The bandit's training counters now, without starting a new refresh count."""
        with self._lock:
            assert self._decisions is not None
            return self._decisions.take_counters(reset=False)[0]

    def _pending_seq(self, seq: int) -> bool:
        slot = seq % self.max_pending
        return (slot < len(self._ring_seq) and self._ring_seq[slot] == seq
                and self.clock() - self._ring_time[slot] <= self.attribution_window)



def decision_groups(sums: Sequence[tuple[Any, list[float]]], metric_names: Sequence[str]
                    ) -> dict[Any, tuple[int, dict[str, Any]]]:
    """Turn copied sums into ``key -> (n, {metric: Moments})`` (outside the lock)."""
    return {key: moments_of_row(s, metric_names) for key, s in sums}
