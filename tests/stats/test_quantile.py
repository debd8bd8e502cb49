"""Histogram quantiles and Woodruff intervals against numpy on the raw values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import lognorm, norm

from modelrouter.stats.quantile import histogram_quantile, woodruff
from modelrouter.store.histogram import EDGES_MS, LatencyHistogram

EDGES = np.array(EDGES_MS)
WIDTH = 10 ** (1 / 115) - 1  # relative bucket width


def hist(values: np.ndarray) -> np.ndarray:
    return LatencyHistogram.from_values(np.zeros(values.size, dtype=np.int64), values,
                                        1).counts[0]


@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.99])
@pytest.mark.parametrize("dist", ["lognormal", "exponential", "bimodal"])
def test_estimate_within_one_bucket_width_of_numpy(q: float, dist: str) -> None:
    rng = np.random.default_rng(11)
    for n in (50, 1_000, 100_000):
        if dist == "lognormal":
            x = 30 * rng.lognormal(0, 0.8, n)
        elif dist == "exponential":
            x = rng.exponential(12.0, n)
        else:
            x = np.where(rng.random(n) < 0.9, rng.normal(20, 2, n).clip(1),
                         rng.normal(400, 40, n))
        got = histogram_quantile(EDGES, hist(x), q)
        # the estimate inverts the empirical CDF: same bucket as numpy's inverted_cdf quantile
        ref = float(np.quantile(x, q, method="inverted_cdf"))
        assert abs(got - ref) <= WIDTH * ref * 1.0001, (dist, n, q, got, ref)
        if n >= 100_000:  # where the definitions agree, the default (linear) one too
            ref = float(np.quantile(x, q))
            assert abs(got - ref) <= WIDTH * ref * 1.0001, (dist, n, q, got, ref)


def test_woodruff_matches_woodruff_on_the_raw_values() -> None:
    rng = np.random.default_rng(4)
    x = 50 * rng.lognormal(0, 0.5, 20_000)
    est = woodruff(EDGES, hist(x), 0.95, n_eff=5_000)
    half = norm.ppf(0.975) * math.sqrt(0.95 * 0.05 / 5_000)  # textbook Woodruff, by hand
    lo, hi = np.quantile(x, [0.95 - half, 0.95 + half], method="inverted_cdf")
    assert abs(est.low - lo) <= WIDTH * lo and abs(est.high - hi) <= WIDTH * hi
    assert est.se == pytest.approx((est.high - est.low) / (2 * norm.ppf(0.975)))
    assert est.se_log == pytest.approx(math.log(est.high / est.low) / (2 * norm.ppf(0.975)))
    assert est.n == 20_000 and est.n_eff == 5_000
    ci = est.confidence_interval()
    assert (ci.low, ci.high) == (est.low, est.high)
    assert "p95=" in repr(est) and est.to_dict()["q"] == 0.95


def test_woodruff_se_agrees_with_the_asymptotic_formula() -> None:
    """sqrt(q(1-q)/n) / f(Q): the textbook variance of a sample quantile (scipy's density)."""
    rng = np.random.default_rng(8)
    s, scale, n, q = 0.6, 40.0, 200_000, 0.95
    x = lognorm.rvs(s, scale=scale, size=n, random_state=rng)
    est = woodruff(EDGES, hist(x), q)
    truth = lognorm.ppf(q, s, scale=scale)
    asymptotic = math.sqrt(q * (1 - q) / n) / lognorm.pdf(truth, s, scale=scale)
    assert est.se == pytest.approx(asymptotic, rel=0.1)


@pytest.mark.parametrize("runs", [pytest.param(400, id="fast"),
                                  pytest.param(4000, id="slow", marks=pytest.mark.slow)])
def test_woodruff_coverage_for_independent_requests(runs: int) -> None:
    rng = np.random.default_rng(21)
    truth = lognorm.ppf(0.95, 0.7, scale=30.0)
    hits = 0
    for _ in range(runs):
        x = 30.0 * rng.lognormal(0, 0.7, 2_000)
        ci = woodruff(EDGES, hist(x), 0.95).confidence_interval()
        hits += ci.low <= truth <= ci.high
    bound = 0.93 if runs >= 4000 else 0.92
    assert bound <= hits / runs <= 0.975, hits / runs


def test_edges_of_the_data() -> None:
    assert math.isnan(histogram_quantile(EDGES, np.zeros(EDGES.size + 1), 0.5))
    counts = np.zeros(EDGES.size + 1)
    counts[-1] = 10  # everything above the last edge: unknown, not a number we invent
    assert histogram_quantile(EDGES, counts, 0.5) == math.inf
    few = hist(np.array([10.0, 11.0, 12.0]))
    est = woodruff(EDGES, few, 0.95)
    assert est.high == math.inf and est.se_log == math.inf  # cannot bound a p95 from 3 values
    with pytest.raises(ValueError, match=r"q \(1.5\) must be in \(0, 1\)"):
        histogram_quantile(EDGES, few, 1.5)
    with pytest.raises(ValueError, match="must have len"):
        histogram_quantile(EDGES, few[:-1], 0.5)
    with pytest.raises(ValueError, match=r"n_eff \(0\) must be a positive number"):
        woodruff(EDGES, few, 0.5, n_eff=0)
