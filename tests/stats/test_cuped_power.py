"""Planning with a covariate adjustment: statsmodels' power solver on the reduced variance, the
formula written out for proportions, and the simulated power of the adjusted test at the
planned size (1,000 runs: MC SE sqrt(0.8 * 0.2 / 1000) = 0.0126; power within 2 MC SE of 0.8).
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.power import NormalIndPower

from modelrouter.stats.cuped import cuped_mean
from modelrouter.stats.power import sample_size_ratio
from modelrouter.stats.power_adjusted import (
    adjust_sample_size,
    expected_variance_reduction,
    sample_size_means_adjusted,
    sample_size_proportions_adjusted,
    sample_size_ratio_adjusted,
)


@pytest.mark.parametrize(("rho", "ratio"), [(0.6, 1.0), (0.81, 1.0), (0.5, 2.0)])
def test_means_equal_statsmodels_on_reduced_sd(rho: float, ratio: float) -> None:
    r = sample_size_means_adjusted(0.1, 2.0, rho=rho, ratio=ratio, power=0.9)
    # one-sided at alpha/2: the planning formula ignores the far tail, as statsmodels does
    # with alternative="larger"
    n = NormalIndPower().solve_power(effect_size=0.1 / (2.0 * math.sqrt(1 - rho**2)),
                                     alpha=0.025, power=0.9, ratio=ratio,
                                     alternative="larger")
    assert r.n_exact == pytest.approx(n, rel=1e-9)
    assert r.n_per_group == math.ceil(n) and r.n_treatment == math.ceil(n * ratio)
    assert r.units_saved == r.unadjusted.n_total - r.n_total > 0
    assert r.variance_reduction == pytest.approx(rho**2)


def test_proportions_unpooled_written_out() -> None:
    r = sample_size_proportions_adjusted(0.05, 0.055, variance_reduction=0.2)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    n = z**2 * (0.05 * 0.95 + 0.055 * 0.945) / 0.005**2 * 0.8
    assert r.n_exact == pytest.approx(n, rel=1e-9)
    with pytest.raises(ValueError, match="unpooled"):
        sample_size_proportions_adjusted(0.05, 0.055, rho=0.3, null_variance="pooled")


def test_ratio_and_generic() -> None:
    base = sample_size_ratio(0.01, 0.5, 2.0, 1.0, 2.0, 0.8)
    r = sample_size_ratio_adjusted(0.01, 0.5, 2.0, 1.0, 2.0, 0.8, rho=0.5)
    assert r.n_exact == pytest.approx(base.n_exact * 0.75, rel=1e-12)
    assert adjust_sample_size(base, variance_reduction=0.0).n_total == base.n_total
    assert "0.75" in r.explain() and r.to_dict()["unadjusted"]["n_total"] == base.n_total


@pytest.mark.parametrize("bad", [{"rho": 1.0}, {"rho": 0.5, "variance_reduction": 0.2},
                                 {}, {"variance_reduction": -0.1}])
def test_validation(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        expected_variance_reduction(**bad)


def test_simulated_power_at_planned_size() -> None:
    """rho = 0.6, delta = 0.25 sd: the adjusted plan (161 per group instead of 252) gives the
    CUPED test its 80% power; the unadjusted test at that size has about 60%."""
    rho, delta, runs = 0.6, 0.25, 1000
    plan = sample_size_means_adjusted(delta, 1.0, rho=rho)
    n = plan.n_per_group
    assert (n, plan.unadjusted.n_per_group) == (161, 252)
    rng = np.random.default_rng(1616)
    t = np.repeat([0, 1], n)
    x = rng.normal(size=(runs, 2 * n))
    y = rho * x + math.sqrt(1 - rho**2) * rng.normal(size=(runs, 2 * n)) + delta * t
    hits = sum(cuped_mean(y[i], t, x[i]).pvalue < 0.05 for i in range(runs))
    raw = stats.ttest_ind(y[:, t == 1], y[:, t == 0], axis=1, equal_var=False).pvalue
    mc_se = math.sqrt(0.8 * 0.2 / runs)
    assert abs(hits / runs - 0.8) <= 2 * mc_se, hits / runs
    assert float(np.mean(raw < 0.05)) < 0.7


def test_cli_plan_rho() -> None:
    out = subprocess.run([sys.executable, "-m", "modelrouter", "plan", "--sd", "1",
                          "--mde", "0.1", "--rho", "0.6"], capture_output=True, text=True,
                         check=True).stdout
    assert "1,005" in out and "1,570" in out and "saved" in out
    bad = subprocess.run([sys.executable, "-m", "modelrouter", "plan", "--sd", "1", "--mde",
                          "0.1", "--rho", "1.5"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == "" and "rho (1.5)" in bad.stderr
