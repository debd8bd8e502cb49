"""Mergeable accumulators of shadow pairs, against numpy/scipy/statsmodels on the raw pairs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

from modelrouter.exceptions import AnalysisError
from modelrouter.stats.paired_accumulator import PairedCounts, PairedMoments, PairReservoir


def _moments(served: np.ndarray, shadow: np.ndarray) -> PairedMoments:
    acc = PairedMoments()
    for x, y in zip(served.tolist(), shadow.tolist(), strict=True):
        acc.add(x, y)
    return acc


def test_moments_equal_numpy_and_ttest_rel_after_merging_workers() -> None:
    rng = np.random.default_rng(1)
    served = 1e6 + rng.normal(0, 1, 3000)  # a large offset: Welford must not lose precision
    shadow = served + rng.normal(0.02, 0.5, 3000)
    parts = [_moments(served[i:j], shadow[i:j]) for i, j in ((0, 1), (1, 1000), (1000, 3000))]
    acc = parts[0].merge(parts[1]).merge(parts[2]).merge(PairedMoments())
    d = shadow - served
    assert acc.n == 3000
    assert acc.mean_d == pytest.approx(d.mean(), rel=1e-9)
    assert acc.var_d == pytest.approx(d.var(ddof=1), rel=1e-9)
    assert acc.mean_served == pytest.approx(served.mean(), rel=1e-12)
    ref = stats.ttest_rel(shadow, served)
    r = acc.result()
    assert r.pvalue == pytest.approx(ref.pvalue, rel=1e-6)
    assert PairedMoments.from_dict(acc.to_dict()) == acc
    with pytest.raises(AnalysisError, match="finite"):
        acc.add(float("nan"), 1.0)
    assert acc.n == 3000


def test_counts_merge_and_mcnemar() -> None:
    rng = np.random.default_rng(2)
    s = rng.random(500) < 0.1
    h = rng.random(500) < 0.15
    a, b = PairedCounts(), PairedCounts()
    for i in range(500):
        (a if i < 200 else b).add(bool(s[i]), bool(h[i]))
    acc = a.merge(b)
    table = [[int(np.sum(s & h)), int(np.sum(s & ~h))], [int(np.sum(~s & h)), int(np.sum(~s & ~h))]]
    assert [[acc.both, acc.served_only], [acc.shadow_only, acc.neither]] == table
    assert acc.n == 500 and acc.concordant == table[0][0] + table[1][1]
    assert acc.result().pvalue == pytest.approx(mcnemar(table, exact=True).pvalue)
    assert PairedCounts.from_dict(acc.to_dict()) == acc


def test_reservoir_keeps_a_uniform_sample() -> None:
    """Inclusion frequencies of 20 items in a reservoir of 5: each is kept with p = 1/4.
    2,000 seeded runs; chi-square goodness of fit of the 20 counts (expected 500 each)."""
    rng = np.random.default_rng(4)
    counts = np.zeros(20)
    for _ in range(2000):
        r = PairReservoir(5, rng=rng)
        for i in range(20):
            r.add(float(i), float(i))
        assert len(r) == 5 and r.seen == 20
        counts[np.asarray(r.served, dtype=int)] += 1
    assert stats.chisquare(counts).pvalue > 1e-3


def test_reservoir_merge_is_a_uniform_sample_of_the_union() -> None:
    """Streams of 12 and 8 items, capacity 5 each, merged: every item of the union is kept with
    p = 5/20 (it would be 5/12 vs 5/8 if the merge ignored the stream lengths). 2,000 runs."""
    rng = np.random.default_rng(6)
    counts = np.zeros(20)
    for _ in range(2000):
        a, b = PairReservoir(5, rng=rng), PairReservoir(5, rng=rng)
        for i in range(12):
            a.add(float(i), 0.0)
        for i in range(12, 20):
            b.add(float(i), 0.0)
        m = a.merge(b)
        assert len(m) == 5 and m.seen == 20
        counts[np.asarray(m.served, dtype=int)] += 1
    assert stats.chisquare(counts).pvalue > 1e-3


def test_reservoir_small_streams_and_capacity() -> None:
    a = PairReservoir(10, rng=np.random.default_rng(0))
    a.add(1.0, 2.0)
    m = a.merge(PairReservoir(10))
    x, y = m.arrays()
    assert x.tolist() == [1.0] and y.tolist() == [2.0]
    with pytest.raises(AnalysisError, match="capacity"):
        PairReservoir(0)
