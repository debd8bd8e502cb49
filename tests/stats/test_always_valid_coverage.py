"""Time-uniform coverage of the always-valid interval on heavy-tailed, binary and skewed metrics.

The interval of :func:`always_valid_test` is the running intersection over the looks, so "the
final interval covers the true difference" is the same event as "every look's interval covers
it": the time-uniform coverage a confidence sequence promises (>= 1 - alpha). Each run draws
two arms' per-unit values, looks after every ``batch`` units per arm and hands the whole
history (difference, its unpooled variance, the smaller arm's number of events) to the library.

Thresholds: coverage >= 0.95 - 2 MC SE with the Monte Carlo standard error at the nominal rate,
``sqrt(0.95 * 0.05 / runs)`` (0.0126 at 300 runs, 0.0069 at 1,000); widths are the final
always-valid interval over the fixed-horizon Welch/Wald interval (1.96 standard errors at the
last look) of the same run. Measured values are in docs/statistics.md ("Always-valid inference").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from modelrouter.stats import always_valid_test, mixing_variance

ALPHA = 0.05


@dataclass(frozen=True)
class Scenario:
    """Per-unit values of one arm: ``draw(rng, runs, n, treated)``, true means, variance."""

    name: str
    n: int  # units per arm at the last look
    batch: int  # units per arm between looks

    def draw(self, rng: np.random.Generator, runs: int, treated: bool) -> np.ndarray:
        shape = (runs, self.n)
        if self.name == "revenue":  # 5% buyers, lognormal(0, 2) spend; the treatment +50%
            buy = rng.random(shape) < 0.05
            return np.where(buy, rng.lognormal(0.0, 2.0, shape), 0.0) * (1.5 if treated else 1)
        if self.name.startswith("binary"):  # +10% relative
            p = float(self.name.split("-")[1]) * (1.1 if treated else 1.0)
            return (rng.random(shape) < p).astype(np.float64)
        if self.name == "exponential":  # +5%
            return rng.exponential(1.05 if treated else 1.0, shape)
        if self.name == "lognormal-1":  # +5%
            return rng.lognormal(0.0, 1.0, shape) * (1.05 if treated else 1.0)
        raise AssertionError(self.name)

    def mean(self, treated: bool) -> float:
        lift = {"revenue": 1.5, "exponential": 1.05, "lognormal-1": 1.05}.get(self.name, 1.1)
        base = {"revenue": 0.05 * math.exp(2.0), "exponential": 1.0,
                "lognormal-1": math.exp(0.5)}.get(self.name)
        if base is None:
            base = float(self.name.split("-")[1])
        return base * (lift if treated else 1.0)

    def unit_variance(self) -> float:
        """Control's per-unit variance (fixes tau2 only; any tau2 keeps the guarantee)."""
        if self.name == "revenue":
            return 0.05 * math.exp(8.0) - (0.05 * math.exp(2.0)) ** 2
        if self.name.startswith("binary"):
            p = float(self.name.split("-")[1])
            return p * (1 - p)
        if self.name == "exponential":
            return 1.0
        return (math.e - 1.0) * math.e  # lognormal(0, 1)


def _history(x: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per look: mean, variance of the mean (ddof=1), events (non-zero values), units."""
    idx = np.arange(batch - 1, x.shape[1], batch)
    n = (idx + 1).astype(np.float64)
    s1, s2 = np.cumsum(x, axis=1)[:, idx], np.cumsum(x * x, axis=1)[:, idx]
    events = np.cumsum(x != 0, axis=1)[:, idx]
    mean = s1 / n
    var = np.maximum(s2 - s1 * mean, 0.0) / np.maximum(n - 1, 1)
    return mean, var / n, events, n


@dataclass(frozen=True)
class Outcome:
    coverage: float
    mc_se: float  # at the nominal 0.95
    median_width_ratio: float  # final always-valid interval over the fixed-horizon interval
    rejected: float  # share of runs whose always-valid p-value fell to alpha at some look


def simulate(sc: Scenario, runs: int, seed: int, *, aa: bool = False,
             min_events: int | None = None) -> Outcome:
    """``min_events=None``: the library's default gate; 0: every look enters (no gate)."""
    rng = np.random.default_rng(seed)
    mc, vc, ec, n = _history(sc.draw(rng, runs, treated=False), sc.batch)
    mt, vt, et, _ = _history(sc.draw(rng, runs, treated=not aa), sc.batch)
    d, v = mt - mc, vc + vt
    events = np.minimum(ec, et)
    if sc.name.startswith("binary"):  # the rarer outcome counts: successes or failures
        events = np.minimum(events, np.minimum(n - ec, n - et))
    theta = sc.mean(not aa) - sc.mean(False)
    tau2 = mixing_variance(horizon_variance=2 * sc.unit_variance() / sc.n, alpha=ALPHA)
    kw = {} if min_events is None else {"min_events": min_events}
    covered, ratio, rejected = [], [], []
    for i in range(runs):
        res = always_valid_test(d[i], v[i], tau2, events=events[i], **kw)
        ci = res.confidence_interval(1 - ALPHA)
        covered.append(ci.low <= theta <= ci.high)
        ratio.append((ci.high - ci.low) / (2 * 1.959964 * math.sqrt(v[i, -1])))
        rejected.append(res.pvalue <= ALPHA)
    return Outcome(float(np.mean(covered)), math.sqrt(0.95 * 0.05 / runs),
                   float(np.median(ratio)), float(np.mean(rejected)))


REVENUE = Scenario("revenue", n=5_000, batch=20)  # the failure: checked every 20 units
SCENARIOS = [REVENUE, Scenario("revenue", n=20_000, batch=200),
             Scenario("binary-0.05", n=10_000, batch=100),
             Scenario("binary-0.3", n=5_000, batch=50),
             Scenario("exponential", n=5_000, batch=50),
             Scenario("lognormal-1", n=5_000, batch=50)]


def _check(out: Outcome) -> None:
    assert out.coverage >= 0.95 - 2 * out.mc_se, out
    # the fix is not a vacuous interval: finite, and at most twice the fixed-horizon width
    assert out.median_width_ratio < 2.0, out


def test_heavy_tailed_revenue_covers_with_the_event_gate() -> None:
    """300 runs (MC SE 0.0126): with the gate >= 0.925; measured 0.984 at 1.40x the width
    (2,000 runs)."""
    _check(simulate(REVENUE, 300, seed=1))


def test_heavy_tailed_revenue_without_the_gate_loses_coverage() -> None:
    """The failure the gate fixes (issue 12, part 5): every look entering, the intersection
    keeps early narrow intervals; measured 0.573 (2,000 runs, MC SE 0.011)."""
    out = simulate(REVENUE, 300, seed=1, min_events=0)
    assert out.coverage < 0.85 and out.median_width_ratio < 1.0, out


@pytest.mark.parametrize("sc", SCENARIOS[2:], ids=lambda s: s.name)
def test_binary_and_skewed_metrics_cover(sc: Scenario) -> None:
    """300 runs each (MC SE 0.0126 at the nominal rate)."""
    _check(simulate(sc, 300, seed=2))


@pytest.mark.parametrize("sc", [REVENUE, SCENARIOS[2]], ids=lambda s: s.name)
def test_aa_continuous_monitoring_false_positives_at_most_alpha(sc: Scenario) -> None:
    """A/A, the p-value checked after every batch, 400 runs: P(ever <= alpha) <= alpha."""
    assert simulate(sc, 400, seed=3, aa=True).rejected <= ALPHA


@pytest.mark.slow
@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: f"{s.name}-{s.n}-{s.batch}")
def test_coverage_large(sc: Scenario) -> None:
    """1,000 runs per scenario (MC SE 0.0069 at the nominal rate)."""
    _check(simulate(sc, 1_000, seed=4))


@pytest.mark.slow
@pytest.mark.parametrize("sc", [REVENUE, SCENARIOS[1], SCENARIOS[2], SCENARIOS[4]],
                         ids=lambda s: f"{s.name}-{s.n}-{s.batch}")
def test_aa_false_positives_large(sc: Scenario) -> None:
    """2,000 A/A runs per scenario: P(p-value ever <= alpha) <= alpha."""
    assert simulate(sc, 2_000, seed=5, aa=True).rejected <= ALPHA
