"""The journal of automatic metrics: finished requests' latency and error, folded in batches.

Every routed request ends with :meth:`MemoryStore.record_auto
<modelrouter.store.memory.MemoryStore.record_auto>` (``latency_ms`` and ``error``). Applying
them at once costs the request a lock round trip, four column updates, a histogram slot search
and two counters. At unit level without decision tracking (A/B mode) the store instead appends
one ``(seq, latency_ms, error)`` tuple to this journal, without its lock, and folds the journal
into the unit table and the latency histogram under the lock in batches: when the journal holds
``threshold`` entries, and before anything reads those numbers (snapshot, dump, take_deltas,
load). Readers therefore see exactly what recording each request at once would have given;
only the moment of the addition moves (and with it, between threads, the order of the float
additions to one unit's latency sum, which was the lock's order before). In bandit mode the
decision tracker takes the folded entries too (its decision sums, and its training counters
when a reward cost uses latency or errors), and the training counters are read after a fold
(``take_training``/``peek_training``), so a refresh sees them as well.

Where the compiled store was built, the compiled middleware appends each entry as a C record to
the journal's ``typed`` buffer (``EntryBuffer``, store/columns_c.pyx) instead: no tuple, int or
float object per request. The fold reads the typed entries first, then the list's (Python
callers, hostile or odd values: anything that is not an int and two C doubles), one order for
both twins.

Thread safety: ``list.append`` and the slice operations are single operations on the list (the
GIL, or the list's own lock on a free-threaded build), and a typed append runs no Python code
between its check and its write; :meth:`AutoJournal.fold` runs under the owning store's lock,
takes the entries present when it starts (the first ``n`` of the list, every typed one) and
removes exactly those, so an entry appended meanwhile by another thread stays for the next
fold: nothing is lost or applied twice.

A decision evicted from the pending ring before its entry is folded is skipped, as
``record_auto`` skips one evicted before it is called; ``threshold`` stays far below the ring's
capacity (:func:`fold_threshold`) so that a fold comes long before the ring wraps. The fold
returns how many it skipped, and the store reports them (``Snapshot.losses``,
``unattributed_requests``): a request in flight while ``max_pending`` newer decisions were made
(a long stream under heavy traffic), or across a restore, is never dropped silently.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import Any

from modelrouter.config.extensions import load_extension
from modelrouter.store.decisions import DecisionTracker
from modelrouter.store.histogram import EDGES_MS, N_SLOTS
from modelrouter.store.units import UnitTable

__all__ = ["AutoJournal", "fold_threshold"]

_compiled = load_extension("modelrouter.store.columns_c")  # EntryBuffer, when it was built


def fold_threshold(capacity: int) -> int:
    """Entries held before a fold: 512, at most an eighth of the ring's ``capacity``."""
    return max(1, min(512, capacity // 8))


class AutoJournal:
    """``(seq, latency_ms, error)`` of finished requests not yet folded (see the module):
    ``entries``, a list of tuples, and ``typed``, the compiled middleware's C records (None
    where the compiled store was not built)."""

    __slots__ = ("entries", "threshold", "typed")

    def __init__(self, threshold: int) -> None:
        self.entries: list[tuple[int, float, float]] = []
        self.threshold = threshold
        self.typed: Any = None if _compiled is None else _compiled.EntryBuffer()

    def pending(self) -> int:
        """Entries waiting for a fold (both kinds). A method, not ``__len__``: an empty
        journal must stay truthy where code tests ``if store.journal``."""
        return len(self.entries) + (0 if self.typed is None else len(self.typed))

    def fold(self, ring_seq: array[int], ring_row: array[int], capacity: int, units: UnitTable,
             hist: array[int], hist_sum: list[float], tracker: DecisionTracker | None = None,
             auto: tuple[int, int] = (0, 0)) -> int:
        """Apply the entries present now to the unit table and histogram (caller holds the
        store lock): per unit, latency sum and count, error sum and count; per variant (the
        unit's), the latency's histogram slot and the latency sum; with a ``tracker`` (bandit
        mode), to the decisions too (``auto``: the metric indices of latency and error).
        Returns how many entries were skipped: their decision was no longer pending (evicted
        by ``capacity`` newer ones, or cleared by a restore), so nothing to attribute them to."""
        entries = self.entries
        typed = self.typed
        head = typed.take() if typed is not None and len(typed) else []  # first, all of them
        n = len(entries)
        if not n and not head:
            return 0
        batch = entries[:n]
        del entries[:n]  # entries appended since the slice stay, after these
        batch[:0] = head
        size = len(ring_seq)
        lat_x, lat_y, err_x, err_y = units.lat_x, units.lat_y, units.err_x, units.err_y
        variant = units.variant
        lost = 0
        for seq, latency_ms, error in batch:
            slot = seq % capacity
            if seq < 0 or slot >= size or ring_seq[slot] != seq:
                lost += 1  # evicted by a flood of newer requests: nothing to attribute to
                continue
            row = ring_row[slot]
            lat_x[row] += latency_ms
            lat_y[row] += 1.0
            if error:
                err_x[row] += error
            err_y[row] += 1.0
            v = variant[row]  # the unit's variant, as in its analysis
            hist[v * N_SLOTS + bisect_left(EDGES_MS, latency_ms)] += 1
            hist_sum[v] += latency_ms
        if tracker is not None:  # a decision no longer tracked is skipped by apply
            lat, err = auto
            for seq, latency_ms, error in batch:
                tracker.apply(seq, lat, latency_ms)
                tracker.apply(seq, err, error)
        return lost
