"""Analysis of bandit traffic: IPW compare() from the store's sums against stats/ipw.py on the
same decisions (the reference), unbiasedness where the naive mean is biased, SRM, holdout."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from scipy import stats as st

from modelrouter import Analysis, AnalysisError, Experiment, RouterConfig
from modelrouter.stats.ipw import ipw_difference, ipw_means
from modelrouter.stats.ipw_grouped import GroupedData, grouped_ipw_difference, grouped_ipw_means
from modelrouter.stats.srm import srm_log_bayes_factor


def make(seed: int, **config: Any) -> Experiment:
    config.setdefault("metrics", {"click": "binary", "revenue": "continuous"})
    config.setdefault("reward", "click")
    config.setdefault("mode", "bandit")
    config.setdefault("level", "request")
    config.setdefault("refresh_seconds", None)
    config.setdefault("missing_reward", "omit")
    return Experiment({"a": 0, "b": 1}, RouterConfig(**config), rng=random.Random(seed))


def run(exp: Experiment, n: int, seed: int, base: Any, lift: float = 0.02
        ) -> dict[str, np.ndarray]:
    """Route n requests; click rate base(t) + lift * arm; revenue = 10 * click + noise.
    Returns the per-decision log (arm, click, revenue, propensity, epoch)."""
    rng = np.random.default_rng(seed)
    log: dict[str, list[float]] = {k: [] for k in ("arm", "click", "revenue", "p", "epoch")}
    for t in range(n):
        d = exp.assign(None)
        arm = exp.names.index(d.variant)
        click = int(rng.random() < base(t) + lift * arm)
        revenue = 10.0 * click + float(rng.normal(0, 1))
        exp.record(d, "click", click)
        exp.record(d, "revenue", revenue)
        exp.bandit.wait_idle()
        for k, v in zip(log, (arm, click, revenue, d.propensity, d.epoch)):
            log[k].append(v)
    return {k: np.asarray(v) for k, v in log.items()}


@pytest.mark.parametrize("estimator", ["hajek", "stratified", "aipw", "naive"])
@pytest.mark.parametrize("metric", ["click", "revenue"])
def test_compare_equals_ipw_on_the_decisions(estimator: str, metric: str) -> None:
    exp = make(1, refresh_every=50)
    log = run(exp, 2500, 1, lambda t: 0.2 + 0.2 * t / 2500)
    result = Analysis.from_experiment(exp).compare(metric, estimator=estimator)
    ref = ipw_difference(log["arm"].astype(int), log[metric], log["p"], arm=1, control=0,
                         epochs=log["epoch"], method=estimator)  # type: ignore[arg-type]
    means = ipw_means(log["arm"].astype(int), log[metric], log["p"], epochs=log["epoch"],
                      method=estimator)  # type: ignore[arg-type]
    assert result.difference == pytest.approx(ref.difference, rel=1e-9, abs=1e-12)
    assert result.std_err == pytest.approx(ref.std_err, rel=1e-9)
    assert result.pvalue == pytest.approx(ref.pvalue, rel=1e-6, abs=1e-12)
    assert result.treatment.mean == pytest.approx(means[1].estimate, rel=1e-9)
    assert result.control.std_err == pytest.approx(means[0].std_err, rel=1e-9)
    assert result.estimator == ref.method
    assert result.control.units + result.treatment.units == 2500


def test_grouped_ratio_estimate_matches_the_per_decision_formula() -> None:
    rng = np.random.default_rng(4)
    e = rng.integers(0, 5, 3000)
    p = rng.dirichlet([2, 2], size=5)
    arm = (rng.random(3000) < p[e, 1]).astype(int)
    y = rng.integers(1, 4, 3000).astype(float)
    x = y * (1.0 + 0.3 * arm) + rng.normal(0, 1, 3000)
    sums = {k: np.zeros((5, 2)) for k in ("n", "sx", "sxx", "sy", "syy", "sxy")}
    for k, v in (("n", 1.0), ("sx", x), ("sxx", x * x), ("sy", y), ("syy", y * y),
                 ("sxy", x * y)):
        np.add.at(sums[k], (e, arm), v)
    d = GroupedData(sums["n"], sums["sx"], sums["sxx"], p, sums["sy"], sums["syy"], sums["sxy"])
    w = 1.0 / p[e, arm]
    for a in (0, 1):
        hit = arm == a
        r = np.sum(w[hit] * x[hit]) / np.sum(w[hit] * y[hit])
        se = np.sqrt(np.sum((w[hit] * (x[hit] - r * y[hit])) ** 2)) / np.sum(w[hit] * y[hit])
        got = grouped_ipw_means(d)[a]
        assert got.estimate == pytest.approx(r, rel=1e-12)
        assert got.std_err == pytest.approx(se, rel=1e-9)
    with pytest.raises(ValueError, match="aipw"):
        grouped_ipw_difference(d, arm=1, method="aipw")


def _trend(runs: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hajek, stratified and naive differences over seeded runs with a rising base rate."""
    out = np.empty((runs, 3))
    for seed in range(runs):
        exp = make(100 + seed, refresh_every=50, min_share=0.05)
        run(exp, n, seed, lambda t: 0.05 + 0.5 * t / n, lift=0.05)
        a = Analysis.from_experiment(exp)
        out[seed] = [a.compare("click", estimator=m).difference
                     for m in ("hajek", "stratified", "naive")]
        exp.bandit.close()
    return out[:, 0], out[:, 1], out[:, 2]


def _check_trend(runs: int, n: int) -> None:
    truth = 0.05  # b - a at every moment, so also on average over the decisions
    hajek, strat, naive = _trend(runs, n)
    for est in (hajek, strat):
        mc_se = est.std(ddof=1) / np.sqrt(runs)
        assert abs(est.mean() - truth) < 3 * mc_se
    # the naive difference is biased upward: b gets the later, better-converting traffic
    t = st.ttest_1samp(naive, truth)
    assert naive.mean() > truth and t.pvalue < 0.01


def test_ipw_is_unbiased_where_the_naive_difference_is_not_fast() -> None:
    _check_trend(runs=25, n=1500)


@pytest.mark.slow
def test_ipw_is_unbiased_where_the_naive_difference_is_not() -> None:
    _check_trend(runs=200, n=3000)


def test_srm_uses_each_epochs_weights() -> None:
    exp = make(7, refresh_every=50)
    log = run(exp, 3000, 7, lambda t: 0.1)
    check = Analysis.from_experiment(exp).srm()
    epochs = np.unique(log["epoch"])
    weights = {e.epoch: e.weights for e in exp.store.snapshot().epochs}
    expected = sum(np.sum(log["epoch"] == e) * np.asarray(weights[e]) for e in epochs)
    observed = np.bincount(log["arm"].astype(int), minlength=2)
    ref = st.chisquare(observed, expected)
    assert check.observed == tuple(observed)
    assert check.chi2_pvalue == pytest.approx(ref.pvalue, rel=1e-9) and not check.alarm
    assert check.epochs == len(epochs)
    # the sequential test multiplies each epoch's Bayes factor (its draws against its weights)
    log_bf = sum(srm_log_bayes_factor(
        np.bincount(log["arm"][log["epoch"] == e].astype(int), minlength=2),
        np.asarray(weights[e]), 100.0) for e in epochs)
    assert check.method == "sequential"
    assert check.log_bayes_factor == pytest.approx(float(log_bf), rel=1e-9, abs=1e-9)


def test_holdout_compares_the_bandit_with_the_uniform_slice() -> None:
    exp = make(9, holdout=0.3, refresh_every=50)
    run(exp, 4000, 9, lambda t: 0.05, lift=0.1)
    analysis = Analysis.from_experiment(exp)
    h = analysis.holdout()
    assert h.control.variant == "holdout" and h.treatment.variant == "bandit"
    assert 0.25 < h.control.units / 4000 < 0.35
    assert h.difference > 0  # the bandit routes most traffic to the better arm
    b = analysis.bandit()
    assert b.holdout_decisions == h.control.units
    assert sum(b.decisions.values()) == h.treatment.units


def test_compare_says_it_used_ipw_and_refuses_estimators_without_bandit_traffic() -> None:
    exp = make(2, refresh_every=50)
    run(exp, 500, 2, lambda t: 0.2)
    result = Analysis.from_experiment(exp).compare("click")
    assert "Hajek" in result.estimator and "inverse-propensity" in result.notes[0]
    assert result.to_dict()["estimator"] == result.estimator
    ab = Experiment({"a": 0, "b": 1}, RouterConfig(metrics={"click": "binary"}))
    with pytest.raises(AnalysisError, match="estimator"):
        Analysis.from_experiment(ab).compare("click", estimator="hajek")
    with pytest.raises(AnalysisError, match="no bandit"):
        Analysis.from_experiment(ab).bandit()


def test_guardrails_on_bandit_traffic_use_the_ipw_estimates() -> None:
    """Guardrails of adaptive traffic take the Hajek means from the per-decision reference
    (stats/ipw.py), not the naive means, which the rising base rate biases."""
    exp = make(3, refresh_every=50, guardrails={
        "revenue": {"max_decrease": 0.5}, "click": {"max_decrease": 0.2, "relative": True}})
    log = run(exp, 2500, 3, lambda t: 0.1 + 0.4 * t / 2500)
    results = {g.metric: g for g in Analysis.from_experiment(exp).guardrails()
               if g.metric in ("revenue", "click")}
    arm = log["arm"].astype(int)
    diff = ipw_difference(arm, log["revenue"], log["p"], arm=1, control=0)
    assert results["revenue"].estimate == pytest.approx(diff.difference, rel=1e-9)
    naive = log["revenue"][arm == 1].mean() - log["revenue"][arm == 0].mean()
    assert abs(results["revenue"].estimate - naive) > 1e-3  # the naive means differ here
    means = ipw_means(arm, log["click"], log["p"])
    ratio = means[1].estimate / means[0].estimate - 1.0
    assert results["click"].estimate == pytest.approx(ratio, rel=1e-9)  # reported as a ratio - 1
