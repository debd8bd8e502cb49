"""The journal of automatic metrics (store/journal.py) on its own: a fold applies exactly the
entries present when it starts, whatever is appended meanwhile, and skips evicted decisions."""

from __future__ import annotations

from array import array
from typing import Any, SupportsIndex

from modelrouter.store.histogram import N_SLOTS, slot_of
from modelrouter.store.journal import AutoJournal, fold_threshold
from modelrouter.store.units import UnitTable


class AppendsWhileSliced(list):  # type: ignore[type-arg]
    """A journal list on which another thread appends right after the fold took its slice."""

    def __getitem__(self, index: SupportsIndex | slice) -> Any:
        out = super().__getitem__(index)
        if isinstance(index, slice) and not getattr(self, "done", False):
            self.done = True
            self.append((2, 9.0, 1.0))  # a request finishing on another thread meanwhile
        return out


def table(n_units: int) -> UnitTable:
    t = UnitTable(n_metrics=2, n_dims=0, auto=(0, 1))
    for i in range(n_units):
        t.add(f"u{i}", i % 2, 0.5, 0, 0.0, ())
    return t


def test_fold_keeps_what_is_appended_during_it() -> None:
    units = table(3)
    ring_seq, ring_row = array("q", [0, 1, 2]), array("q", [0, 1, 2])
    hist, hist_sum = array("q", bytes(8 * 2 * N_SLOTS)), [0.0, 0.0]
    journal = AutoJournal(threshold=8)
    journal.entries = AppendsWhileSliced([(0, 4.0, 0.0), (1, 6.0, 1.0)])
    journal.fold(ring_seq, ring_row, 16, units, hist, hist_sum)
    assert list(journal.entries) == [(2, 9.0, 1.0)]  # kept for the next fold, not lost
    assert units.lat_x[:3].tolist() == [4.0, 6.0, 0.0] and units.err_x[:3].tolist() == [0, 1, 0]
    journal.fold(ring_seq, ring_row, 16, units, hist, hist_sum)  # ... and applied once
    assert list(journal.entries) == []
    assert units.lat_x[:3].tolist() == [4.0, 6.0, 9.0] and units.lat_y[:3].tolist() == [1, 1, 1]
    assert hist_sum == [4.0 + 9.0, 6.0]  # unit 2 is variant 0
    assert hist[slot_of(4.0)] == 1 and hist[N_SLOTS + slot_of(6.0)] == 1
    assert sum(hist) == 3


def test_fold_skips_decisions_no_longer_in_the_ring() -> None:
    units = table(2)
    ring_seq, ring_row = array("q", [16, 1]), array("q", [1, 1])  # seq 0's slot now holds 16
    hist, hist_sum = array("q", bytes(8 * 2 * N_SLOTS)), [0.0, 0.0]
    journal = AutoJournal(threshold=8)
    journal.entries = [(0, 3.0, 0.0), (-1, 3.0, 0.0), (5, 3.0, 0.0), (16, 2.0, 0.0)]
    journal.fold(ring_seq, ring_row, 16, units, hist, hist_sum)
    assert units.lat_x[:2].tolist() == [0.0, 2.0] and sum(hist) == 1


def test_threshold_stays_far_below_the_ring() -> None:
    assert [fold_threshold(c) for c in (1, 8, 64, 4_096, 1_000_000)] == [1, 1, 8, 512, 512]
