"""The vectorised fold of the journal (store/journal.py, issue 17) equals the entry-by-entry
fold bit for bit: same sums (the same float additions in the same order), counts, histogram
slots and per-variant latency sums, with evicted, negative and out-of-ring sequence numbers,
repeated units, NaN and infinite latencies, errors of 0, 1 and NaN, and 3 variants."""

from __future__ import annotations

import math
import random
from array import array

import pytest

from modelrouter.store.histogram import N_SLOTS
from modelrouter.store.journal import VECTOR_MIN, AutoJournal
from modelrouter.store.units import UnitTable


def state(n_units: int, k: int) -> tuple[UnitTable, array[int], list[float]]:
    t = UnitTable(n_metrics=3, n_dims=0, auto=(1, 2))
    for i in range(n_units):
        t.add(f"u{i}", i % k, 1 / k, 0, 0.0, ())
    return t, array("q", bytes(8 * k * N_SLOTS)), [0.0] * k


def entries(rng: random.Random, n: int, ring_seq: array[int], capacity: int
            ) -> list[tuple[int, float, float]]:
    out = []
    for _ in range(n):
        r = rng.random()
        seq = rng.choice(ring_seq) if r < 0.8 else rng.choice(
            [-1, -capacity, capacity * 7 + 3, 2**40, rng.randrange(capacity * 3)])
        lat = rng.choice([rng.lognormvariate(2, 2), rng.random() * 1e-3, 0.0, 1e300,
                          math.inf, math.nan, 12.5]) if rng.random() < 0.3 else \
            rng.lognormvariate(1, 1.5)
        err = rng.choice([0.0, 0.0, 0.0, 1.0, math.nan])
        out.append((seq, lat, err))
    return out


def bits(values: object) -> list[str]:
    return [float(v).hex() for v in values]  # type: ignore[attr-defined]


@pytest.mark.parametrize("seed", range(12))
def test_vectorised_fold_equals_the_loop_bit_for_bit(seed: int) -> None:
    rng = random.Random(seed)
    k = 2 + seed % 3  # 2, 3 and 4 variants
    capacity = 64
    n_units = 40
    ring_seq = array("q", [s if rng.random() < 0.9 else s + capacity
                           for s in range(capacity)])  # some slots reused (evicted)
    ring_row = array("q", [rng.randrange(n_units) for _ in range(capacity)])
    batch = entries(rng, VECTOR_MIN * 4 + seed, ring_seq, capacity)
    results = []
    for n_per_fold in (1, len(batch)):  # below VECTOR_MIN: the loop; one batch: numpy
        units, hist, hist_sum = state(n_units, k)
        units.lat_x[0] = 0.1  # a sum that makes addition order visible
        journal = AutoJournal(threshold=len(batch))
        for i in range(0, len(batch), n_per_fold):
            journal.entries.extend(batch[i:i + n_per_fold])
            journal.fold(ring_seq, ring_row, capacity, units, hist, hist_sum)
        assert journal.entries == []
        units.add("after", 0, 1 / k, 0, 0.0, ())  # the columns can grow again (views released)
        results.append((bits(units.lat_x), bits(units.lat_y), bits(units.err_x),
                        bits(units.err_y), list(hist), bits(hist_sum)))
    assert results[0] == results[1]
    assert sum(results[0][4]) > 0


def test_sequence_numbers_past_float_precision_fold_exactly() -> None:
    units, hist, hist_sum = state(2, 2)
    big = 2**53 + 1  # not exact in a float64: sequence numbers go to numpy as int64
    capacity = 8
    ring_seq = array("q", [big - big % capacity + s for s in range(capacity)])
    ring_row = array("q", [s % 2 for s in range(capacity)])
    journal = AutoJournal(threshold=1_000)
    journal.entries = [(big, 5.0, 1.0)] * VECTOR_MIN + [(big - 1, 1.0, 0.0)]
    journal.fold(ring_seq, ring_row, capacity, units, hist, hist_sum)
    assert units.lat_x[1] == 5.0 * VECTOR_MIN and units.err_x[1] == VECTOR_MIN
    assert units.lat_x[0] == 1.0 and units.lat_y[0] == 1.0


def test_a_sequence_number_past_int64_falls_back_to_the_loop() -> None:
    units, hist, hist_sum = state(2, 2)
    ring_seq, ring_row = array("q", range(8)), array("q", [0, 1] * 4)
    journal = AutoJournal(threshold=1_000)
    journal.entries = [(3, 2.0, 0.0)] * VECTOR_MIN + [(2**64 + 3, 9.0, 1.0)]  # not in the ring
    journal.fold(ring_seq, ring_row, 8, units, hist, hist_sum)
    assert units.lat_x[1] == 2.0 * VECTOR_MIN and units.err_y[1] == VECTOR_MIN
    assert units.err_x[1] == 0.0 and sum(hist) == VECTOR_MIN
