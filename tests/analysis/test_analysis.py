"""compare() against scipy / statsmodels computed on independently kept per-unit data."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from modelrouter import AnalysisError, Experiment, RouterConfig, UnknownMetricError


def populated(level: str = "user", seed: int = 1) -> tuple[Experiment, dict[str, dict]]:
    rng = np.random.default_rng(seed)
    exp = Experiment({"control": 0, "treatment": 1},
                     RouterConfig(salt="analysis", level=level,
                                  metrics={"click": "binary", "revenue": "continuous",
                                           "lat": {"kind": "continuous", "aggregate": "mean"}}))
    truth: dict[str, dict] = {v: {"click": [], "revenue": [], "lat": []}
                              for v in ("control", "treatment")}
    for i in range(3000):
        unit = f"user-{i}"
        visits = int(rng.integers(1, 4)) if level != "request" else 1
        clicked, revenue, lats = 0, 0.0, []
        for _ in range(visits):
            d = exp.assign(unit)
            v = d.variant
            p = 0.10 if v == "control" else 0.13
            if rng.random() < p:
                exp.record(d.decision_id, "click", 1)
                clicked = 1
                amount = float(rng.exponential(40 if v == "control" else 45))
                exp.record(d.decision_id, "revenue", amount)
                revenue += amount
            lat = float(rng.normal(50 if v == "control" else 53, 8))
            exp.record(d.decision_id, "lat", lat)
            lats.append(lat)
        if level == "request":
            truth[v]["click"].append(clicked)
            truth[v]["revenue"].append(revenue)
            truth[v]["lat"].append(lats)
        else:
            truth[v]["click"].append(clicked)
            truth[v]["revenue"].append(revenue)
            truth[v]["lat"].append(lats)
    return exp, truth


@pytest.mark.parametrize("level", ["user", "request"])
def test_binary_matches_statsmodels(level: str) -> None:
    exp, truth = populated(level)
    res = exp_analysis(exp).compare("click")
    c, t = np.array(truth["control"]["click"]), np.array(truth["treatment"]["click"])
    z, p = proportions_ztest([t.sum(), c.sum()], [t.size, c.size])
    assert res.statistic == pytest.approx(z, abs=1e-9)
    assert res.pvalue == pytest.approx(p, abs=1e-9)
    assert res.difference == pytest.approx(t.mean() - c.mean(), abs=1e-12)
    assert res.control.units == c.size and res.treatment.units == t.size
    lo, hi = confint_proportions_2indep(t.sum(), t.size, c.sum(), c.size, method="log",
                                        compare="ratio")
    rci = res.relative_confidence_interval()
    assert (rci.low, rci.high) == pytest.approx((lo - 1, hi - 1), abs=1e-9)
    assert res.effect_size == pytest.approx(2 * np.arcsin(np.sqrt(t.mean()))
                                            - 2 * np.arcsin(np.sqrt(c.mean())), abs=1e-12)


@pytest.mark.parametrize("level", ["user", "request"])
def test_continuous_matches_scipy_welch(level: str) -> None:
    exp, truth = populated(level)
    res = exp_analysis(exp).compare("revenue")
    c, t = np.array(truth["control"]["revenue"]), np.array(truth["treatment"]["revenue"])
    ref = stats.ttest_ind(t, c, equal_var=False)
    assert res.statistic == pytest.approx(ref.statistic, abs=1e-9)
    assert res.pvalue == pytest.approx(ref.pvalue, abs=1e-9)
    ci, ref_ci = res.confidence_interval(), ref.confidence_interval()
    assert (ci.low, ci.high) == pytest.approx((ref_ci.low, ref_ci.high), abs=1e-9)
    assert res.control.std == pytest.approx(c.std(ddof=1), rel=1e-12)


def test_ratio_metric_is_per_user_not_per_request() -> None:
    exp, truth = populated("user")
    res = exp_analysis(exp).compare("lat")
    for v, summary in (("control", res.control), ("treatment", res.treatment)):
        lats = truth[v]["lat"]
        y = np.concatenate(lats)
        groups = np.repeat(np.arange(len(lats)), [len(x) for x in lats])
        fit = sm.OLS(y, np.ones_like(y)).fit(
            cov_type="cluster", cov_kwds={"groups": groups, "use_correction": False})
        n = len(lats)
        assert summary.mean == pytest.approx(y.mean(), rel=1e-12)
        assert summary.std_err**2 * (n - 1) / n == pytest.approx(fit.bse[0] ** 2, rel=1e-9)
        assert summary.events == y.size


def test_readable_output_and_dict() -> None:
    exp, _ = populated("user")
    res = exp_analysis(exp).compare("click")
    text = str(res)
    assert "treatment vs control" in text and "p-value" in text and "95% CI" in text
    d = res.to_dict()
    assert d["pvalue"] == res.pvalue and d["ci_low"] == res.confidence_interval().low
    assert "ComparisonResult(metric='click'" in repr(res)


def test_three_variants_need_a_variant_and_unknowns_fail() -> None:
    exp = Experiment({"a": 0, "b": 1, "c": 2}, RouterConfig(metrics={"click": "binary"}))
    for i in range(300):
        d = exp.assign(f"u{i}")
        exp.record(d, "click", i % 3 == 0)
    a = exp_analysis(exp)
    with pytest.raises(AnalysisError, match="variant="):
        a.compare("click")
    assert a.compare("click", variant="b").treatment.variant == "b"
    with pytest.raises(AnalysisError, match="'z'"):
        a.compare("click", variant="z")
    with pytest.raises(UnknownMetricError, match="'nope'"):
        a.compare("nope")


def exp_analysis(exp: Experiment):  # type: ignore[no-untyped-def]
    from modelrouter.analysis import Analysis
    return Analysis.from_experiment(exp)
