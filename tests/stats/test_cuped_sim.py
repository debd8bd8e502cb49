"""Simulated operating characteristics of the adjusted tests (CUPED pooled theta; Lin HC1).

Each run draws ``n`` units per arm with a pre-exposure covariate ``x ~ N(0, 1)`` and an
outcome correlated ``rho`` with it, ``y = rho x + sqrt(1 - rho^2) e (+ effect in treatment)``;
"binary" thresholds a latent outcome of that form at its 70th percentile; "missing" hides 20%
of the covariate (mean imputation + indicator); "ratio" is clicks per session with a pre-period
ratio covariate (:func:`cuped_ratio`). Thresholds use the Monte Carlo standard error at the
nominal rate:

- A/A false-positive rate <= alpha + 2 MC SE, ``MC SE = sqrt(0.05 * 0.95 / runs)`` (0.0069 at
  1,000 runs, 0.0031 at 5,000);
- coverage of the 95% interval under a true effect >= 0.95 - 2 MC SE;
- width ratio (adjusted interval over scipy's unadjusted Welch interval, mean over runs) within
  3% of ``sqrt(1 - rho^2)`` (0.8 at rho = 0.6, 0.5864 at rho = 0.81); its MC SE is below
  0.001 at 1,000 runs.

The default run has 1,000 runs of 500 units per arm per check (each < 5 s); ``-m slow`` has
5,000. Measured values
are in docs/statistics.md ("Variance reduction (CUPED)").
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats

from modelrouter.stats.adjusted import lin_regression
from modelrouter.stats.adjusted_result import AdjustedResult
from modelrouter.stats.cuped import cuped_mean, cuped_ratio

ALPHA = 0.05
FAST, SLOW = 1000, 5000
Method = Callable[[np.ndarray, np.ndarray, np.ndarray], AdjustedResult]
METHODS: dict[str, Method] = {
    "cuped": lambda y, t, x: cuped_mean(y, t, x),
    "lin": lambda y, t, x: lin_regression(y, t, x, cov_type="HC1"),
}


def _mc_se(runs: int, p: float = ALPHA) -> float:
    return math.sqrt(p * (1 - p) / runs)


def _draw(rng: np.random.Generator, n: int, rho: float, effect: float,
          kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.repeat([0, 1], n)
    x = rng.normal(size=2 * n)
    y = rho * x + math.sqrt(1 - rho * rho) * rng.normal(size=2 * n) + effect * t
    if kind == "binary":
        y = (y > 0.5244).astype(float)  # P(latent > z_0.7) = 0.3 under H0
    if kind == "missing":
        x = np.where(rng.random(2 * n) < 0.2, np.nan, x)
    return y, t, x


def _run(method: str, kind: str, runs: int, rho: float, effect: float, n: int = 500,
         seed: int = 16) -> tuple[float, float, float]:
    """(rejection rate, coverage of the true effect, mean width ratio adjusted/unadjusted)."""
    rng = np.random.default_rng(seed)
    reject = covered = 0
    ratios = []
    truth = effect if kind != "binary" else math.nan
    for _ in range(runs):
        y, t, x = _draw(rng, n, rho, effect, kind)
        r = METHODS[method](y, t, x)
        ci = r.confidence_interval()
        reject += r.pvalue < ALPHA
        covered += ci.low <= truth <= ci.high
        if effect:  # the width ratio is measured in the runs with an effect only
            raw = stats.ttest_ind(y[t == 1], y[t == 0], equal_var=False).confidence_interval()
            ratios.append((ci.high - ci.low) / (raw.high - raw.low))
    return reject / runs, covered / runs, float(np.mean(ratios)) if ratios else math.nan


@pytest.mark.parametrize("kind", ["continuous", "binary", "missing"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_aa_false_positive_rate(method: str, kind: str) -> None:
    fpr, _, _ = _run(method, kind, FAST, rho=0.6, effect=0.0)
    assert fpr <= ALPHA + 2 * _mc_se(FAST), fpr


@pytest.mark.parametrize("rho", [0.6, 0.81])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_coverage_and_width(method: str, rho: float) -> None:
    _, cover, ratio = _run(method, "continuous", FAST, rho=rho, effect=0.1)
    assert cover >= 0.95 - 2 * _mc_se(FAST, 0.05), (rho, cover)
    assert abs(ratio / math.sqrt(1 - rho * rho) - 1) < 0.03, (rho, ratio)


def _ratio_aa(runs: int, n: int = 500, seed: int = 61) -> float:
    """A/A rejection rate of :func:`cuped_ratio` on clicks per session (per-user activity
    drives both periods)."""
    rng = np.random.default_rng(seed)
    t = np.repeat([0, 1], n)
    reject = 0
    for _ in range(runs):
        act = rng.gamma(1.5, 1.0, 2 * n)
        s, ps = rng.poisson(1 + 3 * act) + 1, rng.poisson(1 + 3 * act) + 1
        p = np.clip(0.1 + 0.1 * act, 0, 0.9)
        r = cuped_ratio(rng.binomial(s, p), s, t, rng.binomial(ps, p), ps)
        reject += r.pvalue < ALPHA
    return reject / runs


def test_ratio_aa_false_positive_rate() -> None:
    assert _ratio_aa(FAST) <= ALPHA + 2 * _mc_se(FAST)


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHODS))
def test_slow_operating_characteristics(method: str) -> None:
    """5,000 runs per cell (MC SE 0.0031 at 5%): A/A for three outcome kinds, coverage and
    width at rho = 0.6 and 0.81; the measured numbers are printed for the docs (-s)."""
    for kind in ("continuous", "binary", "missing"):
        fpr, _, _ = _run(method, kind, SLOW, rho=0.6, effect=0.0, seed=116)
        print(f"{method} {kind} A/A fpr={fpr:.4f}")
        assert fpr <= ALPHA + 2 * _mc_se(SLOW)
    for rho in (0.6, 0.81):
        _, cover, ratio = _run(method, "continuous", SLOW, rho=rho, effect=0.1, seed=216)
        print(f"{method} rho={rho} coverage={cover:.4f} width ratio={ratio:.4f} "
              f"(sqrt(1-rho^2)={math.sqrt(1 - rho * rho):.4f})")
        assert cover >= 0.95 - 2 * _mc_se(SLOW)
        assert abs(ratio / math.sqrt(1 - rho * rho) - 1) < 0.03


@pytest.mark.slow
def test_slow_ratio_aa() -> None:
    fpr = _ratio_aa(SLOW, seed=161)
    print(f"cuped_ratio A/A fpr={fpr:.4f}")
    assert fpr <= ALPHA + 2 * _mc_se(SLOW)
