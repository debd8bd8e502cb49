"""Simulation: coverage and bias of the inference after stopping a group-sequential test.

Design: Lan-DeMets O'Brien-Fleming, 4 equally spaced looks, two-sided alpha 0.05; true drift
``mu`` with 80% power (E[Z at the last look] = mu = 2.829, solved with scipy's brentq). Each
run draws the Brownian path of the z statistics (numpy), stops at the first crossing or at look
4, and checks

- the repeated confidence intervals of all 4 looks contain the truth simultaneously (J&T ch. 9:
  >= 95%, whether or not the test stopped);
- the stage-wise confidence interval at the stopping look contains the truth (95% exactly);
- the median-unbiased estimate is below the truth half of the time (the naive estimate of the
  runs that stopped early is far more often above it).

Checks are at the nominal value minus 2 Monte Carlo standard errors (binomial s.e. of the
proportion at its nominal value). Fast variant: 300 runs (s.e. 1.26% for a 95% coverage, 2.9%
for a median); slow: 4,000 runs (s.e. 0.34% and 0.79%). Seeds are fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy.optimize import brentq

from modelrouter.stats import (
    futility_design,
    repeated_confidence_intervals,
    spending_boundaries,
    stagewise_inference,
)

RATES = np.array([0.25, 0.5, 0.75, 1.0])


@dataclass
class Sim:
    runs: int
    rci_coverage: float
    final_coverage: float
    mue_below: float  # P(median-unbiased estimate < truth), 0.5 if median-unbiased
    naive_below: float
    early: int  # runs that stopped before the last look
    naive_above_early: float  # among those, P(naive estimate > truth)
    mue_above_early: float
    mean_bias_mue: float  # in units of the truth's standard error at the last look
    mean_bias_naive: float


def simulate(runs: int, seed: int) -> Sim:
    design = spending_boundaries(RATES, alpha=0.05, sided=2)
    mu = brentq(lambda m: design.power(m) - 0.8, 0.5, 8.0)
    rng = np.random.default_rng(seed)
    dt = np.diff(RATES, prepend=0.0)
    rci_ok = fin_ok = mue_below = naive_below = early = naive_above_e = mue_above_e = 0
    bias_mue, bias_naive = [], []
    for _ in range(runs):
        s = np.cumsum(rng.normal(mu * dt, np.sqrt(dt)))
        z = s / np.sqrt(RATES)
        se = 1.0 / np.sqrt(RATES)  # information = rate: the effect is the drift mu
        est = z * se
        rci = repeated_confidence_intervals(est, se, design)
        rci_ok += all(mu in c for c in rci)
        crossed = np.flatnonzero(np.abs(z) >= design.z)
        k = int(crossed[0]) + 1 if crossed.size else RATES.size
        res = stagewise_inference(float(z[k - 1]), k, design, std_err=float(se[k - 1]))
        fin_ok += mu in res.ci
        mue_below += res.estimate < mu
        naive_below += res.naive_estimate < mu
        if k < RATES.size:
            early += 1
            naive_above_e += res.naive_estimate > mu
            mue_above_e += res.estimate > mu
        bias_mue.append(res.estimate - mu)
        bias_naive.append(res.naive_estimate - mu)
    return Sim(runs, rci_ok / runs, fin_ok / runs, mue_below / runs, naive_below / runs, early,
               naive_above_e / max(early, 1), mue_above_e / max(early, 1),
               float(np.mean(bias_mue)), float(np.mean(bias_naive)))


def check(sim: Sim) -> None:
    se95 = math.sqrt(0.95 * 0.05 / sim.runs)
    se50 = math.sqrt(0.25 / sim.runs)
    assert sim.rci_coverage >= 0.95 - 2 * se95, sim
    assert sim.final_coverage >= 0.95 - 2 * se95, sim
    assert abs(sim.mue_below - 0.5) <= 2 * se50, sim
    # stopping early selects overestimates: most early stops' naive estimates exceed the truth
    se_early = math.sqrt(0.25 / sim.early)
    assert sim.naive_above_early >= 0.5 + 2 * se_early, sim
    assert abs(sim.mean_bias_mue) < abs(sim.mean_bias_naive), sim


def test_inference_after_stopping_fast() -> None:
    # 300 runs, about 5 s
    check(simulate(300, seed=20260812))


@pytest.mark.slow
def test_inference_after_stopping_slow() -> None:
    # 4,000 runs, about 70 s; figures quoted in docs/statistics.md "After stopping early"
    sim = simulate(4000, seed=20260813)
    print(sim)
    check(sim)


def test_repeated_cis_cover_simultaneously_vectorised() -> None:
    # 200,000 Brownian paths (numpy), all 4 looks: P(truth in every look's RCI) = 0.95
    # exactly in theory; MC s.e. 0.049%
    design = spending_boundaries(RATES, alpha=0.05, sided=2)
    rng = np.random.default_rng(7)
    n, mu = 200_000, 2.83
    dt = np.diff(RATES, prepend=0.0)
    s = np.cumsum(rng.normal(mu * dt, np.sqrt(dt), size=(n, RATES.size)), axis=1)
    est, se = s / RATES, 1.0 / np.sqrt(RATES)
    half = [c.high for c in repeated_confidence_intervals(np.zeros(RATES.size), se, design)]
    inside = np.all(np.abs(est - mu) < np.array(half), axis=1)
    cover = inside.mean()
    assert abs(cover - 0.95) <= 3 * math.sqrt(0.95 * 0.05 / n), cover


@pytest.mark.parametrize("sided", [1, 2])
def test_futility_operating_characteristics_match_simulation(sided: int) -> None:
    """Power, futility stops and expected information of a design with futility bounds,
    computed by the recursion, against 200,000 simulated paths (numpy) obeying the bounds;
    and the type I error stays <= alpha when they are obeyed (non-binding). MC s.e. <= 0.11%
    for a probability, <= 0.001 for the expected information."""
    d = futility_design(RATES, alpha=0.05, beta=0.2, sided=sided)  # type: ignore[arg-type]
    rng = np.random.default_rng(8 + sided)
    n = 200_000
    dt = np.diff(RATES, prepend=0.0)
    for drift, power, fut in ((d.drift, d.power[-1], d.beta_spent[-1]),
                              (0.0, None, d.futility_under_h0[-1])):
        z = np.cumsum(rng.normal(drift * dt, np.sqrt(dt), size=(n, RATES.size)), axis=1)
        z /= np.sqrt(RATES)
        running = np.ones(n, dtype=bool)
        up, futile, info = np.zeros(n), np.zeros(n), np.zeros(n)
        for k in range(RATES.size):
            zk = z[:, k]
            cross = running & (zk >= d.efficacy[k])
            stop_f = running & ~cross & ((zk <= d.futility[k]) if sided == 1 else
                                         (np.abs(zk) < d.futility[k]))
            lower = running & (zk <= -d.efficacy[k]) if sided == 2 else np.zeros(n, bool)
            stop = cross | stop_f | lower
            up[cross] = 1.0
            futile[stop_f & ~lower] = 1.0
            info[stop] = RATES[k]
            running &= ~stop
        se_p = math.sqrt(0.25 / n)
        if power is not None:
            assert abs(up.mean() - power) <= 4 * se_p, (up.mean(), power)
            assert abs(info.mean() - d.asn_h1) <= 4 * info.std() / math.sqrt(n)
        else:
            assert up.mean() <= d.alpha / sided + 4 * se_p  # upper-side type I error
            assert abs(info.mean() - d.asn_h0) <= 4 * info.std() / math.sqrt(n)
        assert abs(futile.mean() - fut) <= 4 * se_p, (futile.mean(), fut)
