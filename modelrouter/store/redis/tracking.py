"""One worker's side of a bandit on the Redis store: its decision tracker and what it owes Redis.

The worker keeps its own :class:`~modelrouter.store.decisions.DecisionTracker` (its decisions'
pending ring, so late feedback finds its decision exactly as in one process). What every worker
must see is flushed as additive deltas with the statistics (batch.py):

- the decision group sums (``decisions`` hash): the tracker's rows are zeroed by each take, so
  what is flushed is exactly what changed since the last flush (rows stay: the ring points at
  them);
- the training counters (``training`` hash): the tracker's counters are cumulative; the
  difference to the counters flushed so far is sent, and ``updates`` the same way;

Thread safety: no lock of its own; the store calls every method with its ``_lock`` held.
"""

from __future__ import annotations

from modelrouter.store.decisions import DecisionKey, DecisionTracker

__all__ = ["DecisionSync", "Forward", "SyncDeltas"]

Forward = tuple[str, int, int, float, bool]  # owner prefix, seq, metric, value, full record
SyncDeltas = tuple[list[tuple[DecisionKey, list[float]]], list[list[float]], int]


class DecisionSync:
    """The tracker and the counters flushed so far."""

    __slots__ = ("flushed", "tracker", "updates_flushed")

    def __init__(self, tracker: DecisionTracker) -> None:
        self.tracker = tracker
        self.flushed = [[0.0] * tracker.n_variants for _ in tracker.counters]
        self.updates_flushed = 0

    def take(self) -> SyncDeltas:
        """Group sum deltas, counter deltas and new updates since the last take."""
        t = self.tracker
        deltas = [[now - before for now, before in zip(row, base)]
                  for row, base in zip(t.counters, self.flushed)]
        self.flushed = [list(row) for row in t.counters]
        updates, self.updates_flushed = t.updates - self.updates_flushed, t.updates
        return t.groups.take(), deltas, updates
