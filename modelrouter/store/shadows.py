"""``ShadowLog``: the paired results of shadow predictors, kept in bounded memory.

Fed by the shadow runner (:mod:`modelrouter.routing.shadows`) from the request path and from
background workers, read by the analysis (``router.analysis().shadow(name)``):

- :meth:`ShadowLog.open` when the served model answered a shadowed request (its output and
  latency), :meth:`ShadowLog.done` when a shadow call ended (output, latency or the error),
  :meth:`ShadowLog.drop` when shadow work was not run (reason counted);
- :meth:`ShadowLog.label` with the ground truth of a decision, also long after: it is attached
  to the pairs of that decision, now or when its shadow calls end.

Each shadow's statistics are a :class:`~modelrouter.store.shadow_stats.ShadowStats` (O(1) in the
number of requests). Labels reach only the ``max_decisions`` most recent shadowed decisions
(an ordered map, oldest evicted first); a label for a decision that is not there (not shadowed,
evicted, or routed by another process) is counted in ``labels["unknown"]``, never an error.

One process's log; with a shared store every worker publishes its own and readers merge them
(routing/shadow_sharing.py, store/shadow_state.py). Thread safe: one lock, held for O(1) work
per call.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelrouter.exceptions import AnalysisError
from modelrouter.stats.paired_comparison import OutputKind, ShadowComparison
from modelrouter.store.forksafe import LEAF, track
from modelrouter.store.shadow_stats import ShadowStats, is_finite_number

__all__ = ["ShadowLog", "ShadowSnapshot", "scalar_output"]

_NO_LABEL = object()


def scalar_output(y: Any) -> Any:
    """One prediction from a model's output: a one-element array or list is unwrapped
    (``model.predict([x])`` answers ``array([label])``); anything else is returned as is."""
    size = getattr(y, "size", None)
    if size == 1 and hasattr(y, "item"):
        return y.item()
    if isinstance(y, (list, tuple)) and len(y) == 1:
        return y[0]
    return y


_PENDING = object()  # a shadow output that has not arrived yet

# A recent decision is a tuple ``(served, label, outputs)``: ``label`` is ``_NO_LABEL`` until
# one arrives, ``outputs`` one per shadow (``_PENDING`` until its call ends). Tuples of plain
# values are untracked by Python's cyclic GC, so 100,000 recent decisions add nothing to a
# full collection (objects with a ``__dict__`` or slots each would: measured +26 ms per full
# collection, seen as p99 spikes of the served requests under uvicorn).
_Entry = tuple[Any, Any, tuple[Any, ...]]


@dataclass(frozen=True)
class ShadowSnapshot:
    """Copies of every shadow's statistics and the label counts, taken at one moment."""

    stats: dict[str, ShadowStats]
    labels: dict[str, int]

    def comparison(self, name: str, confidence_level: float = 0.95) -> ShadowComparison:
        """The paired analysis of shadow ``name``; AnalysisError naming the known ones."""
        stats = self.stats.get(name)
        if stats is None:
            known = sorted(self.stats)
            raise AnalysisError(f"no shadow named {name!r}; shadows are {known!r}" if known
                                else f"no shadow named {name!r}: this router has no shadows")
        return stats.comparison(confidence_level)

    def to_dict(self) -> dict[str, Any]:
        """The counts of every shadow and of labels (plain data)."""
        return {"shadows": {n: s.counts() for n, s in self.stats.items()},
                "labels": dict(self.labels)}


class ShadowLog:
    """The pairs of every shadow, by decision (see the module docstring)."""

    def __init__(self, names: Sequence[str], kind: OutputKind, *,
                 max_decisions: int = 100_000, capacity: int = 4096) -> None:
        self.names = tuple(names)
        self.kind = kind
        self.max_decisions = max_decisions
        self._capacity = capacity
        self._index = {n: i for i, n in enumerate(self.names)}
        self._none_yet = (_PENDING,) * len(self.names)
        self.changes = 0  # incremented by every call that changes a count (publishing skips
        # an unchanged log: routing/shadow_sharing.py)
        self.reset()

    def reset(self) -> None:
        """Start empty: no pair, no recent decision, no label count, a fresh lock. For a
        forked child with a shared store (routing/shadow_sharing.py): the parent's pairs are
        the parent's to publish; kept, they would be published by both and counted twice.
        Only where no other thread uses the log (the lock is replaced, not taken)."""
        self._stats = {n: ShadowStats(n, self.kind, self._capacity) for n in self.names}
        self._recent: OrderedDict[str, _Entry] = OrderedDict()
        self._labels: Counter[str] = Counter()
        self._lock = threading.Lock()
        track(self, self._lock, LEAF)  # held on the request path: a fork waits for it
        self.changes += 1

    def __repr__(self) -> str:
        return (f"ShadowLog(shadows={list(self.names)!r}, kind={self.kind!r}, "
                f"recent={len(self._recent)}, max_decisions={self.max_decisions})")

    def open(self, decision_id: str, served: Any) -> bool:
        """The served model answered ``decision_id`` (``None``: its call failed). False (and
        nothing counted) when this decision was already opened: one pair per decision."""
        with self._lock:
            if decision_id in self._recent:  # predict() called twice on one decision
                for stats in self._stats.values():
                    stats.dropped["repeat_predict"] += 1
                return False
            self._recent[decision_id] = (served, _NO_LABEL, self._none_yet)
            if len(self._recent) > self.max_decisions:
                self._recent.popitem(last=False)
            for stats in self._stats.values():
                stats.submitted += 1
            self.changes += 1
        return True

    def skip(self, reason: str) -> None:
        """A shadowed request none of whose shadow calls can run (``"queue_full"``,
        ``"shut_down"``): counted submitted and dropped for every shadow in one step, and
        not kept for labels (there will be no shadow output to pair them with)."""
        with self._lock:
            for stats in self._stats.values():
                stats.submitted += 1
                stats.dropped[reason] += 1
            self.changes += 1

    def drop(self, name: str, reason: str) -> None:
        """Shadow work for ``name`` was not run (``"queue_full"``, ``"shut_down"``...)."""
        with self._lock:
            self._stats[name].dropped[reason] += 1
            self.changes += 1

    def done(self, decision_id: str, name: str, served: Any, served_ms: float, shadow: Any,
             shadow_ms: float, error: str | None = None) -> None:
        """Shadow ``name`` ended for ``decision_id``: its output (``error`` says why there is
        none: ``"exception"``, ``"timeout"``) and latency, with the served side's."""
        if error is not None:
            shadow = None
        with self._lock:
            self.changes += 1
            stats = self._stats[name]
            if error is not None:
                stats.errors[error] += 1
            stats.add_pair(served, shadow, served_ms, shadow_ms)
            entry = self._recent.get(decision_id)
            if entry is not None:
                i, outputs = self._index[name], entry[2]
                self._recent[decision_id] = (entry[0], entry[1],
                                             outputs[:i] + (shadow,) + outputs[i + 1:])
                if entry[1] is not _NO_LABEL:
                    stats.add_label(served, shadow, entry[1])

    def label(self, decision_id: str, y_true: Any) -> bool:
        """Attach the ground truth to a recent decision; False (counted) when unknown or
        already labelled."""
        self.check_label(y_true)
        with self._lock:
            self.changes += 1
            entry = self._recent.get(decision_id)
            if entry is None:
                self._labels["unknown"] += 1
                return False
            served, label, outputs = entry
            if label is not _NO_LABEL:
                self._labels["duplicate"] += 1
                return False
            self._recent[decision_id] = (served, y_true, outputs)
            self._labels["attached"] += 1
            for name, shadow in zip(self.names, outputs):
                if shadow is not _PENDING:
                    self._stats[name].add_label(served, shadow, y_true)
        return True

    def check_label(self, y_true: Any) -> None:
        """AnalysisError unless ``y_true`` can be a label of this log's kind."""
        if y_true is None:
            raise AnalysisError("a label cannot be None")
        if self.kind == "score" and not is_finite_number(y_true):
            raise AnalysisError(f"label ({y_true!r}) must be a finite number for "
                                "shadow_kind='score'")

    def count_label(self, outcome: str) -> None:
        """Count a label handled elsewhere (``"forwarded"`` to the worker that made the
        decision, ``"malformed"`` when a handed-over one could not be read)."""
        with self._lock:
            self._labels[outcome] += 1
            self.changes += 1

    def restore(self, snapshot: ShadowSnapshot) -> tuple[str, ...]:
        """Replace the statistics of every shadow ``snapshot`` has (a restart from a snapshot
        file) and the label counts; return the shadows restored. Shadows it lacks stay fresh,
        shadows this log lacks are ignored, recent decisions are not kept across restarts (a
        label for one is counted ``"unknown"``)."""
        with self._lock:
            names = tuple(n for n in self.names if n in snapshot.stats)
            for n in names:
                if snapshot.stats[n].kind != self.kind:
                    raise ValueError(f"shadow {n!r} was saved with kind "
                                     f"{snapshot.stats[n].kind!r}; this router's is {self.kind!r}")
            for n in names:
                self._stats[n] = snapshot.stats[n].copy()
            self._labels = Counter(snapshot.labels)
            self.changes += 1
        return names

    def snapshot(self) -> ShadowSnapshot:
        """Copies of the statistics, consistent with each other."""
        with self._lock:
            return ShadowSnapshot({n: s.copy() for n, s in self._stats.items()},
                                  dict(self._labels))
