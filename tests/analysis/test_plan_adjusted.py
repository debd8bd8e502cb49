"""The config's sequential plan with a covariate adjustment (issue 16): ``plan.rho`` or
``plan.variance_reduction`` scales the horizon derived from ``mde`` by ``1 - rho^2`` and says
how many units that saves.

References: the normal-approximation sample size written out with scipy's quantiles
(one look: the design's inflation factor is 1), ``(z_{1-alpha/2} + z_{power})^2 * var / mde^2``
per group with ``var = 2 sd^2`` for means and ``p1 (1 - p1) + p2 (1 - p2)`` for conversions
(unpooled: the adjusted test is Welch's t), times ``1 - rho^2`` (Deng et al. 2013).

Cells covered: memory store x A/B x 2 variants x user level x fresh; continuous and
conversion primaries; refusals (rho with max_units, both given, out of range, a primary
without covariates).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from scipy import stats

from modelrouter import Experiment, RouterConfig
from modelrouter.analysis import Analysis
from modelrouter.config import ExperimentPlan
from modelrouter.exceptions import ConfigError
from modelrouter.stats.power_adjusted import sample_size_means_adjusted

Z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)


def analysis(metric: dict[str, Any], plan: dict[str, Any]) -> Analysis:
    cfg = RouterConfig(metrics={"y": metric}, primary="y", plan=plan)
    exp = Experiment({"a": 0, "b": 1}, cfg)
    for i in range(40):
        exp.record_unit(exp.assign(f"u{i}").unit_id or "", "y", float(i % 2))
    return Analysis.from_experiment(exp)


def test_means_horizon_is_one_minus_rho_squared_and_says_units_saved() -> None:
    """continuous primary with a covariate, one look, sd 2, mde 0.5, rho 0.6."""
    plan = {"mde": 0.5, "sd": 2.0, "looks": 1}
    metric = {"kind": "continuous", "covariates": ["pre"]}
    plain = analysis(metric, plan).sequential()
    adjusted = analysis(metric, {**plan, "rho": 0.6}).sequential()
    n_exact = Z**2 * 2 * 2.0**2 / 0.5**2
    assert plain.planned_units == 2 * math.ceil(n_exact)
    assert adjusted.planned_units == 2 * math.ceil(0.64 * n_exact)
    saved = plain.planned_units - adjusted.planned_units
    assert f"{saved:,} units saved of {plain.planned_units:,}" in adjusted.horizon
    assert adjusted.horizon_variance == pytest.approx(
        0.64 * 4.0 * 2 / math.ceil(0.64 * n_exact), rel=1e-12)
    same = sample_size_means_adjusted(0.5, 2.0, rho=0.6)  # the planner modelrouter plan uses
    assert adjusted.planned_units == same.n_total
    vr = analysis(metric, {**plan, "variance_reduction": 0.36}).sequential()
    assert vr.planned_units == adjusted.planned_units
    assert "CUPED-adjusted (variance -36.0%, rho 0.6)" in adjusted.explain()


def test_conversion_horizon_uses_the_unpooled_variance() -> None:
    """conversion primary (aggregate any) with a covariate: unpooled base, times 1 - rho^2."""
    plan = {"mde": 0.02, "baseline": 0.1, "looks": 1, "rho": 0.5}
    a = analysis({"kind": "binary", "aggregate": "any", "covariates": ["pre"]}, plan)
    p1, p2 = 0.1, 0.12
    n_exact = Z**2 * (p1 * (1 - p1) + p2 * (1 - p2)) / 0.02**2
    seq = a.sequential()
    assert seq.planned_units == 2 * math.ceil(0.75 * n_exact)
    assert f"units saved of {2 * math.ceil(n_exact):,}" in seq.horizon


def test_refused_before_anything_runs() -> None:
    with pytest.raises(ConfigError, match=r"max_units \(1000\) is the horizon itself"):
        ExperimentPlan(max_units=1000, rho=0.5)
    with pytest.raises(ConfigError, match="at most one of rho"):
        ExperimentPlan(mde=0.1, rho=0.5, variance_reduction=0.25)
    for bad in (1.0, -1.0, math.nan, True, "0.5"):
        with pytest.raises(ConfigError, match="plan.rho"):
            ExperimentPlan(mde=0.1, rho=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="plan.variance_reduction"):
        ExperimentPlan(mde=0.1, variance_reduction=1.0)
    with pytest.raises(ConfigError, match="primary metric 'y' declares no covariates"):
        RouterConfig(metrics={"y": "continuous"}, primary="y",
                     plan={"mde": 0.1, "sd": 1.0, "rho": 0.5})
    plan = ExperimentPlan(mde=0.1, rho=0.5)
    assert ExperimentPlan(**plan.as_dict()) == plan and plan.expected_variance_reduction == 0.25
