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
- The refresh schedule (``pending``, ``updates``, ``on_due``) counts recorded values that
  change a decision's reward, under either rule; an exposure counted at reward 0 moves the
  counters but not the schedule (otherwise every request would be a training update and the
  weights would be recomputed every ``refresh_every`` requests, whatever the rewards).

Memory is O(max_pending x metrics) for the ring and O(groups) for the sums. The ring is the
shared :class:`~modelrouter.store.ring.PendingRing` (payload: the decision's group; columns:
whether it trains, its current reward, its ``(x, y)`` per metric), indexed by the store's
decision numbers; the group sums are a :class:`~modelrouter.store.rows.GroupTable`.

Thread safety: the tracker has no lock of its own. The store that tracks it
(:meth:`MemoryStore.track_decisions <modelrouter.store.memory.MemoryStore.track_decisions>`)
calls every method with its lock held; ``on_due`` runs under that lock too.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelrouter.config.extensions import install, load_extension
from modelrouter.exceptions import StoreError
from modelrouter.store.ring import PendingRing
from modelrouter.store.rows import GroupTable, add_to_pair

if TYPE_CHECKING:
    import numpy as np

__all__ = ["HOLDOUT", "STICKY", "DecisionKey", "DecisionTracker", "Training"]

HOLDOUT = 1  # tag bit: routed by the uniform holdout, never trains the bandit
STICKY = 2  # tag bit: a sticky unit's repeat of an earlier draw (not a fresh draw)

DecisionKey = tuple[int, int, tuple[int, ...], int]  # (variant, epoch, segment codes, tag)


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
    set a flag or an event) once ``due_every`` training updates have accumulated.

    Where its compiled ``open`` and ``apply`` were built (store/decisions_c.pyx), they read its
    attributes from a C copy (``_core``) that its ``__setattr__`` and ``__delattr__`` (compiled
    too, installed below) refresh whenever one is set or deleted, and that ``copy.copy`` gives
    the copy its own of -- as
    :class:`~modelrouter.config.extensions.CoreMirror` does, except for the training counts
    (``pending``, ``updates``, ``_signalled``), which the twins never read and every training
    update sets. Without them the class has no ``__setattr__`` of its own (no cost)."""

    _core: object = None

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
        # what the compiled open and apply read (store/decisions_c.pyx), when they were built
        self._core = None if _compiled is None else _compiled.new_core(self)

    def reset(self) -> None:
        """Forget every tracked decision, sum and counter (e.g. after a restore)."""
        ring = self.ring = PendingRing(self.capacity)
        self._train = ring.add_column("b", 0)
        self._r = ring.add_column("d", math.nan)  # current reward; NaN: not in the counters
        self._x: list[array[float]] = [ring.add_column("d", 0.0) for _ in self.aggregates]
        self._y: list[array[float]] = [ring.add_column("d", 0.0) for _ in self.aggregates]
        self._unit_last: dict[Hashable, int] = {}  # unit (row or id) -> its latest decision
        self.groups: GroupTable[DecisionKey] = GroupTable(len(self.aggregates))
        k = self.n_variants
        self.counters = [[0.0] * k for _ in range(2 if self._binary else 3)]
        self.pending = 0
        self.updates = 0  # training updates ever (never reset: shared stores flush deltas)
        self._signalled = False
        training = self.training
        self._relevant = frozenset() if training is None else frozenset(
            [training.reward, *(m for m, _ in training.costs)])

    @property
    def _binary(self) -> bool:
        return self.training is not None and self.training.kind == "binary"

    # -- exposure and feedback (store lock held) --------------------------------------------
    def open(self, seq: int, variant: int, epoch: int, segment: tuple[int, ...], tag: int,
             unit_row: Hashable | None = None, now: float = 0.0) -> None:
        """Start tracking decision ``seq`` (issued at ``now``); it trains unless it is a
        holdout decision. A decision evicted from the ring keeps its contribution."""
        g = self.groups.row_of((variant, epoch, segment, tag))
        self.groups.sums[g][0] += 1.0
        t = self.training
        train = t is not None and not tag & HOLDOUT
        zero = train and t is not None and t.rule == "zero"
        slot = self.ring.remember(seq, now, g)
        self._train[slot] = train
        if zero:
            self._r[slot] = 0.0
        if unit_row is not None:
            self._unit_last[unit_row] = seq
        if zero:  # counts as a reward of 0 from now until its reward arrives
            self._add(variant, 0.0, 1.0)

    def apply(self, seq: int, m: int, value: float) -> None:
        """Add a validated value of metric ``m`` to decision ``seq`` if it is tracked."""
        slot = self.ring.find(seq)
        if slot < 0:
            return  # an A/B decision, or one no longer in the ring
        g = self.ring.row[slot]
        add_to_pair(self._x[m], self._y[m], slot, self.groups.sums[g], m, value, self._any[m])
        if self._train[slot] and m in self._relevant:
            self._retrain(slot, self.groups.keys[g][0])

    def apply_unit(self, row: Hashable, m: int, value: float,
                   alive: Callable[[int], bool]) -> None:
        """Feedback by unit id: it belongs to the unit's latest decision, if still pending
        (``alive``: the store's answer, attribution window included)."""
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
        self.updates += 1
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
        import numpy as np

        names = ("successes", "failures") if self._binary else ("n", "sum", "sumsq")
        # counts are sums of +1/-1 (exact); the clip only removes float dust of costs
        out = {n: np.maximum(np.array(c), 0.0) if n != "sum" else np.array(c)
               for n, c in zip(names, self.counters)}
        pending = self.pending
        if reset:
            self.pending, self._signalled = 0, False
        return out, pending

    @property
    def counter_names(self) -> tuple[str, ...]:
        """Names of the training counters, in the order of :attr:`counters`."""
        return ("successes", "failures") if self._binary else ("n", "sum", "sumsq")

    def dump_training(self) -> dict[str, object] | None:
        """The training counters (exact, unclipped) and the updates not yet taken, as plain
        data for a snapshot; None without training."""
        if self.training is None:
            return None
        return {"kind": self.training.kind, "pending": self.pending,
                "counters": {n: list(c) for n, c in zip(self.counter_names, self.counters)}}

    def check_restorable(self, kind: str) -> None:
        """Refuse (StoreError) a state's training counters of reward kind ``kind`` unless
        this tracker trains the same kind (checked before a load changes anything)."""
        mine = None if self.training is None else self.training.kind
        if mine != kind:
            raise StoreError(f"the state has {kind} training counters; this "
                             f"store's bandit trains {mine or 'nothing'}")

    def restore_training(self, counters: Sequence[Sequence[float]], pending: int) -> None:
        """Start from restored training counters (in :attr:`counter_names` order) and
        ``pending`` updates not yet taken: the decisions behind them are gone (no late feedback
        reaches them), their contribution stays."""
        if len(counters) != len(self.counters) or any(
                len(c) != self.n_variants for c in counters):
            raise ValueError("restored training counters do not match the tracker's layout")
        self.counters = [[float(v) for v in c] for c in counters]
        self.pending = int(pending)
        self._signalled = False

    def copy_sums(self) -> list[tuple[DecisionKey, list[float]]]:
        """(key, sums) of every decision group, copied."""
        return self.groups.copy()


# the compiled twins of open and apply (store/decisions_c.pyx) and the attribute hooks that keep
# their C copy current, when they were built
install(DecisionTracker, "open", "modelrouter.store.decisions_c")
install(DecisionTracker, "apply", "modelrouter.store.decisions_c")
_compiled = load_extension("modelrouter.store.decisions_c")
if _compiled is not None:
    DecisionTracker.__setattr__ = _compiled.tracker_setattr  # type: ignore[method-assign]
    DecisionTracker.__delattr__ = _compiled.tracker_delattr  # type: ignore[method-assign]
    DecisionTracker.__copy__ = _compiled.tracker_copy  # type: ignore[attr-defined]
