"""Always-valid paired tests (stats/paired_sequential.py) against independent references.

References: the mixture likelihood ratio of the discordant split as scipy's beta-binomial pmf
over the binomial pmf; the normal-mixture mSPRT of Johari, Pekelis & Walsh (2022) written out
here with numpy on the raw differences; A/A simulations with a look after every batch (type-I
error <= alpha + 2 Monte Carlo standard errors, runs stated in each test).

Matrix cells: store memory (the accumulators are per process; shadow statistics with Redis do
not exist yet), level request and user alike (pairs are decisions), input valid and hostile
(NaN, 1e300), fresh.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import betaln

from modelrouter.exceptions import AnalysisError
from modelrouter.stats.paired_comparison import ShadowPair, compare_shadow
from modelrouter.stats.paired_sequential import (
    DISCORDANT_PRIOR,
    DifferenceWatch,
    DiscordantWatch,
    discordant_interval,
    discordant_log_lr,
)
from modelrouter.store.shadow_stats import ShadowStats

ALPHA = 0.05


def ref_log_lr(b: int, c: int, p0: float, a: float = DISCORDANT_PRIOR) -> float:
    """log of the Beta(a, a)-binomial mixture over the binomial at p0 (scipy pmfs)."""
    m = b + c
    return float(stats.betabinom.logpmf(c, m, a, a) - stats.binom.logpmf(c, m, p0))


@pytest.mark.parametrize(("b", "c"), [(0, 1), (3, 0), (5, 9), (40, 61), (700, 650),
                                      (0, 2000), (12345, 11000)])
def test_log_lr_equals_beta_binomial_over_binomial(b: int, c: int) -> None:
    for p0 in (0.5, 0.3, 0.81):
        assert discordant_log_lr(b, c, p0) == pytest.approx(ref_log_lr(b, c, p0), rel=1e-9,
                                                            abs=1e-9)
    for a in (0.5, 2.0):  # Jeffreys' and another mixture
        assert discordant_log_lr(b, c, 0.5, prior=a) == pytest.approx(
            ref_log_lr(b, c, 0.5, a), rel=1e-9, abs=1e-9)
    assert discordant_log_lr(0, 0) == 0.0


@pytest.mark.parametrize(("b", "c"), [(0, 1), (5, 9), (40, 61), (700, 650), (0, 300),
                                      (1000, 3)])
def test_interval_is_the_set_where_the_ratio_stays_below_one_over_alpha(b: int, c: int) -> None:
    ci = discordant_interval(b, c, 1 - ALPHA)
    bound = math.log(1 / ALPHA)
    # the ends solve the reference equation (or are 0 / 1)
    for end in (ci.low, ci.high):
        if 0.0 < end < 1.0:
            assert ref_log_lr(b, c, end) == pytest.approx(bound, abs=1e-6)
    # a dense grid: inside below the bound, outside above it
    grid = np.linspace(1e-6, 1 - 1e-6, 4001)
    ref = np.array([ref_log_lr(b, c, p) for p in grid])
    inside = (grid > ci.low + 1e-6) & (grid < ci.high - 1e-6)
    outside = (grid < ci.low - 1e-6) | (grid > ci.high + 1e-6)
    assert np.all(ref[inside] < bound) and np.all(ref[outside] > bound)
    assert discordant_interval(0, 0).to_dict() == {"low": 0.0, "high": 1.0}


def test_pvalue_is_the_running_minimum_over_every_pair_and_the_interval_intersects() -> None:
    rng = np.random.default_rng(7)
    served = rng.random(3000) < 0.70
    shadow = rng.random(3000) < 0.74
    watch = DiscordantWatch()
    best, low, high = 0.0, 0.0, 1.0
    b = c = 0
    for s, h in zip(served.tolist(), shadow.tolist(), strict=True):
        watch.add(s, h)
        if s != h:
            b, c = b + s, c + h
            best = max(best, ref_log_lr(b, c, 0.5))
    r = watch.result()
    assert (r.served_only, r.shadow_only) == (b, c)
    assert r.pvalue == pytest.approx(min(1.0, math.exp(-best)), rel=1e-9)
    assert r.statistic == pytest.approx(ref_log_lr(b, c, 0.5), rel=1e-9)
    assert r.share == c / (b + c)
    # the reported interval is inside the current look's and contains the intersection
    now = discordant_interval(b, c)
    assert now.low <= r.ci.low <= r.ci.high <= now.high and r.intersected
    # another level: the current look only (valid, not intersected)
    r90 = watch.result(0.9)
    assert not r90.intersected and r90.ci == discordant_interval(b, c, 0.9)
    d = r.to_dict()
    assert d["pvalue"] == r.pvalue and d["ci"]["low"] == r.ci.low and "mixture" in d["method"]
    assert "always-valid p=" in repr(r)
    del low, high


def johari_log_lr(d: float, v: float, tau2: float) -> float:
    """Johari, Pekelis & Walsh (2022), eq. for the normal mixture: written out here."""
    return 0.5 * math.log(v / (v + tau2)) + tau2 * d * d / (2 * v * (v + tau2))


def test_loss_watch_equals_the_msprt_written_out_on_the_raw_differences() -> None:
    rng = np.random.default_rng(3)
    diffs = rng.standard_t(5, 6000) * 2.0 + 0.08
    watch = DifferenceWatch()
    for x in diffs.tolist():
        watch.add(x)
    # the look schedule: 100, then each time the count grew by 2% (at least by one)
    looks, n = [], 100
    while n <= diffs.size:
        looks.append(n)
        n = max(n + 1, int(n * 1.02))
    assert len(watch.differences) == len(looks)
    if looks[-1] != diffs.size:
        looks.append(diffs.size)  # the current state is the last look
    # tau2 minimises the interval's width at the horizon (10,000 pairs), checked on a grid
    v0 = diffs[:100].var(ddof=1) / 10_000
    grid = np.exp(np.linspace(-6, 6, 20001)) * v0
    width = (1 + v0 / grid) * (2 * math.log(1 / ALPHA) + np.log1p(grid / v0))
    assert watch.tau2 == pytest.approx(float(grid[np.argmin(width)]), rel=2e-3)
    tau2 = watch.tau2
    assert tau2 is not None
    ds = [float(diffs[:k].mean()) for k in looks]
    vs = [float(diffs[:k].var(ddof=1) / k) for k in looks]
    llr = [johari_log_lr(d, v, tau2) for d, v in zip(ds, vs, strict=True)]
    r = watch.result()
    assert r is not None and r.looks == len(looks)
    assert r.pvalue == pytest.approx(min(1.0, min(math.exp(-x) for x in llr)), rel=1e-6)
    assert r.difference == pytest.approx(diffs.mean(), rel=1e-9)
    half = [math.sqrt(2 * v * (v + tau2) / tau2 * (math.log(1 / ALPHA)
                                                    + 0.5 * math.log((v + tau2) / v)))
            for v in vs]
    ci = r.confidence_interval(1 - ALPHA)
    assert ci.low == pytest.approx(max(d - h for d, h in zip(ds, half, strict=True)), rel=1e-6)
    assert ci.high == pytest.approx(min(d + h for d, h in zip(ds, half, strict=True)), rel=1e-6)


def test_loss_watch_waits_refuses_non_finite_and_stays_bounded() -> None:
    watch = DifferenceWatch()
    for _ in range(150):
        watch.add(0.0)  # identical losses: no spread, no information
    assert watch.result() is None and "no spread" in watch.why_not()
    with pytest.raises(AnalysisError, match="finite"):
        watch.add(float("nan"))
    with pytest.raises(AnalysisError, match="horizon"):
        DifferenceWatch(horizon=1)
    few = DifferenceWatch()
    few.add(1.0)
    assert few.result() is None and "1 labelled pair" in few.why_not()
    # 300,000 pairs keep O(log n) looks (100 + log(n / 100) / log(1.02))
    big = DifferenceWatch()
    for x in np.random.default_rng(0).normal(size=300_000).tolist():
        big.add(x)
    assert len(big.differences) < 420
    flip = DiscordantWatch()
    for i in range(300_000):
        flip.add(i % 3 == 0, i % 3 == 1)
    assert flip.looks < 500 and flip.served_only + flip.shadow_only == 200_000


def test_shadow_stats_and_compare_shadow_give_the_same_always_valid_results() -> None:
    """ShadowStats (bounded, fed by the log) vs compare_shadow (the raw pairs, same order)."""
    rng = np.random.default_rng(11)
    truth = (rng.random(800) < 0.5).astype(int)
    served = np.where(rng.random(800) < 0.8, truth, 1 - truth)
    shadow = np.where(rng.random(800) < 0.86, truth, 1 - truth)
    stats_ = ShadowStats("cand", "label")
    pairs = []
    for s, h, y in zip(served.tolist(), shadow.tolist(), truth.tolist(), strict=True):
        h_out = None if h == 0 and s == 1 and y == 0 else h  # some failed shadow calls
        stats_.add_pair(s, h_out, 1.0, 2.0)
        stats_.add_label(s, h_out, y)
        pairs.append(ShadowPair(s, h_out, 1.0, 2.0, y))
    a, b = stats_.comparison(), compare_shadow(pairs, shadow="cand")
    assert a.accuracy_always_valid == b.accuracy_always_valid
    assert a.accuracy_always_valid is not None and a.accuracy_always_valid.pvalue < 1.0
    assert a.to_dict()["accuracy_always_valid"] == b.to_dict()["accuracy_always_valid"]
    assert "accuracy_always_valid=" in repr(a)
    # scores: the loss test
    y = rng.normal(size=600)
    xs, hs = y + rng.normal(0, 1.0, 600), y + rng.normal(0, 0.8, 600)
    sc = ShadowStats("cand", "score")
    spairs = []
    for s, h, t in zip(xs.tolist(), hs.tolist(), y.tolist(), strict=True):
        sc.add_pair(s, h, 1.0, 1.0)
        sc.add_label(s, h, t)
        spairs.append(ShadowPair(s, h, 1.0, 1.0, t))
    ra, rb = sc.comparison(), compare_shadow(spairs, kind="score")
    assert ra.loss_always_valid is not None and rb.loss_always_valid is not None
    assert ra.loss_always_valid.pvalue == pytest.approx(rb.loss_always_valid.pvalue, rel=1e-9)
    assert ra.to_dict()["loss_always_valid"]["confidence_interval"]["low"] == pytest.approx(
        rb.to_dict()["loss_always_valid"]["confidence_interval"]["low"], rel=1e-9)
    assert "loss_always_valid=(mean difference" in repr(ra)
    # hostile: a score whose squared error overflows is counted, not raised
    sc.add_pair(1e300, 0.0, 1.0, 1.0)
    sc.add_label(1e300, 0.0, -1e300)
    assert sc.unpaired["non-finite loss"] == 1


def _aa_discordant(runs: int, seed: int, p_shadow_share: float = 0.5) -> tuple[float, float]:
    """Runs of 2,000 pairs in batches of 50 (a look after each): share of runs where the
    test ever rejected at alpha, and where the true share ever left the interval."""
    rng = np.random.default_rng(seed)
    rejected = missed = 0
    for _ in range(runs):
        # discordant with probability 0.3; given discordant, the shadow right w.p. share
        disc = rng.random(2000) < 0.3
        shadow_wins = rng.random(2000) < p_shadow_share
        both = rng.random(2000) < 0.8
        watch = DiscordantWatch()
        ever_rej = ever_miss = False
        for i in range(2000):
            if disc[i]:
                watch.add(not shadow_wins[i], bool(shadow_wins[i]))
            else:
                watch.add(bool(both[i]), bool(both[i]))
            if (i + 1) % 50 == 0:
                r = watch.result()
                ever_rej |= r.pvalue <= ALPHA
                ever_miss |= p_shadow_share not in r.ci
        rejected += ever_rej
        missed += ever_miss
    return rejected / runs, missed / runs


def _aa_loss(runs: int, seed: int) -> float:
    """Runs of 2,000 labelled pairs from two equally good regressors (squared errors of
    independent N(0, 1) noises: skewed, heavy-ish differences), a look after every 50."""
    rng = np.random.default_rng(seed)
    rejected = 0
    for _ in range(runs):
        e1, e2 = rng.normal(size=2000), rng.normal(size=2000)
        d = (e2 * e2 - e1 * e1).tolist()
        watch = DifferenceWatch()
        ever = False
        for i, x in enumerate(d):
            watch.add(x)
            if (i + 1) % 50 == 0:
                r = watch.result()
                ever |= r is not None and r.pvalue <= ALPHA
        rejected += ever
    return rejected / runs


def _mc_bound(runs: int) -> float:
    return ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / runs)


def test_aa_type_one_error_with_a_look_after_every_batch() -> None:
    """200 runs each (MC SE sqrt(0.05 * 0.95 / 200) = 0.0154: bound 0.0808); the slow
    variant runs 2,000."""
    runs = 200
    rej, miss = _aa_discordant(runs, 1)
    assert rej <= _mc_bound(runs) and miss <= _mc_bound(runs)
    _, miss_skew = _aa_discordant(runs, 2, 0.65)  # coverage of a true share that is not 1/2
    assert miss_skew <= _mc_bound(runs)
    assert _aa_loss(runs, 3) <= _mc_bound(runs)


@pytest.mark.slow
def test_aa_type_one_error_with_a_look_after_every_batch_slow() -> None:
    """2,000 runs each (MC SE 0.0049: bound 0.0597)."""
    runs = 2000
    rej, miss = _aa_discordant(runs, 101)
    assert rej <= _mc_bound(runs) and miss <= _mc_bound(runs)
    _, miss_skew = _aa_discordant(runs, 102, 0.65)
    assert miss_skew <= _mc_bound(runs)
    assert _aa_loss(runs, 103) <= _mc_bound(runs)


def test_a_better_shadow_is_detected() -> None:
    """Power sanity: +6 pp accuracy on 3,000 labelled pairs, and a loss 20% lower."""
    rng = np.random.default_rng(5)
    watch = DiscordantWatch()
    for s, h in zip((rng.random(3000) < 0.80).tolist(), (rng.random(3000) < 0.86).tolist(),
                    strict=True):
        watch.add(s, h)
    r = watch.result()
    assert r.pvalue < ALPHA and r.ci.low > 0.5
    diffs = DifferenceWatch()
    e1, e2 = rng.normal(0, 1.0, 3000), rng.normal(0, math.sqrt(0.8), 3000)
    for x in (e2 * e2 - e1 * e1).tolist():
        diffs.add(x)
    res = diffs.result()
    assert res is not None and res.pvalue < ALPHA and res.confidence_interval().high < 0


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(AnalysisError, match="confidence_level"):
        DiscordantWatch(confidence_level=1.0)
    with pytest.raises(AnalysisError, match="prior"):
        DiscordantWatch(prior=0.0)
    with pytest.raises(AnalysisError, match="confidence_level"):
        discordant_interval(1, 2, 0.0)
    assert betaln(0.5, 0.5) == pytest.approx(math.log(math.pi))  # the prior's normaliser
