"""Segment analysis against independent references (statsmodels) and by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportions_ztest

from modelrouter import AnalysisError, Experiment, RouterConfig, UnknownMetricError
from modelrouter.analysis import Analysis
from tests.analysis._sim import snapshot

CONFIG = RouterConfig(metrics={"click": "binary", "revenue": "continuous"}, primary="click",
                      segments={"platform": "x-platform", "country": "x-country"},
                      min_segment_units=50)


def _segmented(seed: int, n: int = 6000, k: int = 5, effects: tuple[float, ...] | None = None,
               base: float = 0.1) -> Analysis:
    rng = np.random.default_rng(seed)
    variant = rng.integers(0, 2, n)
    seg = rng.integers(0, k, n)
    eff = np.zeros(k) if effects is None else np.asarray(effects)
    click = (rng.random(n) < base + variant * eff[seg]).astype(float)
    country = rng.integers(0, 2, n)
    return snapshot(CONFIG, variant, {"platform": seg, "country": country}, {"click": click})


@pytest.mark.parametrize(("method", "sm_method"), [("holm", "holm"),
                                                   ("bonferroni", "bonferroni"),
                                                   ("bh", "fdr_bh")])
def test_adjusted_pvalues_match_statsmodels_multipletests(method: str, sm_method: str) -> None:
    a = _segmented(3, effects=(0.0, 0.03, -0.02, 0.01, 0.04))
    seg = a.segments("click", by="platform", method=method)
    assert len(seg) == 5 and not any(r.too_small for r in seg)
    raw = np.array([r.pvalue for r in seg])
    expected = multipletests(raw, method=sm_method)[1]
    np.testing.assert_allclose([r.adjusted_pvalue for r in seg], expected, rtol=1e-12)


def test_segment_pvalues_match_statsmodels_ztest() -> None:
    a = _segmented(4, effects=(0.0, 0.03, -0.02, 0.01, 0.04))
    units = a.snapshot.units
    for r in a.segments("click", by="platform"):
        code = int(r.segment["platform"].removeprefix("platform"))
        mask = units.segments[:, 0] == code
        v, x = units.variant[mask], units.x["click"][mask]
        _, p = proportions_ztest([x[v == 1].sum(), x[v == 0].sum()],
                                 [(v == 1).sum(), (v == 0).sum()])
        assert r.pvalue == pytest.approx(p, rel=1e-9)


def test_cochran_q_matches_statsmodels_combine_effects() -> None:
    a = _segmented(5, effects=(0.0, 0.05, -0.04, 0.01, 0.02))
    seg = a.segments("click", by="platform")
    d = np.array([r.difference for r in seg])
    var = np.array([r.std_err**2 for r in seg])
    ref = combine_effects(d, var, method_re="chi2")
    h = seg.heterogeneity
    assert h.statistic == pytest.approx(ref.q, rel=1e-10)
    assert h.df == 4
    assert h.pvalue == pytest.approx(ref.test_homogeneity().pvalue, rel=1e-9)
    assert h.pvalue < 0.01  # the effects really differ


def test_simpson_flag_too_small_crossed_and_srm() -> None:
    # platform0 large and better, platform1 large and worse, platform2 tiny
    rng = np.random.default_rng(7)
    seg = np.r_[np.zeros(8000, int), np.ones(3000, int), np.full(60, 2)]
    variant = rng.integers(0, 2, seg.size)
    rate = 0.1 + np.where(seg == 0, 0.04, np.where(seg == 1, -0.05, 0.0)) * variant
    click = (rng.random(seg.size) < rate).astype(float)
    a = snapshot(CONFIG, variant, {"platform": seg, "country": rng.integers(0, 2, seg.size)},
                 {"click": click})
    s = a.segments("click", by="platform")
    assert s.overall.difference > 0
    worse = s.get(platform="platform1")
    assert worse.opposes_overall and worse.difference < 0 and worse.adjusted_pvalue < 0.05
    assert not s.get(platform="platform0").opposes_overall
    tiny = s.get(platform="platform2")
    assert tiny.too_small and math.isnan(tiny.pvalue) and math.isnan(tiny.adjusted_pvalue)
    assert math.isfinite(tiny.difference)  # reported, not tested
    assert s.flagged == (worse,)
    assert "moves against the overall result" in s.summary()
    crossed = a.segments("click", by=["platform", "country"])
    assert {tuple(r.segment) for r in crossed} == {("platform", "country")}
    assert len(crossed) == 6 and sum(r.units for r in crossed) == seg.size
    assert crossed.to_dict()["by"] == ["platform", "country"]
    # per-segment SRM: drop half the treatment units of platform0 only
    keep = ~((seg == 0) & (variant == 1) & (rng.random(seg.size) < 0.5))
    b = snapshot(CONFIG, variant[keep], {"platform": seg[keep], "country": seg[keep] * 0},
                 {"click": click[keep]})
    srm = b.segments("click", by="platform")
    assert srm.get(platform="platform0").srm_alarm
    assert not srm.get(platform="platform1").srm_alarm


def test_bad_queries_name_field_and_value() -> None:
    a = _segmented(1)
    with pytest.raises(AnalysisError, match=r"segment dimension \('device'\) is not declared"):
        a.segments("click", by="device")
    with pytest.raises(UnknownMetricError, match=r"metric 'clicks' is not declared"):
        a.segments("clicks", by="platform")
    with pytest.raises(AnalysisError, match=r"method \('sidak'\) must be one of"):
        a.segments("click", by="platform", method="sidak")
    with pytest.raises(AnalysisError, match=r"segment \(\{'platform': 'nope'\}\) has no units"):
        a.segments("click", by="platform").get(platform="nope")


def _fwer(runs: int, method: str, seed: int) -> float:
    rng = np.random.default_rng(seed)
    alarms = 0
    for _ in range(runs):
        a = _segmented(int(rng.integers(2**31)), n=4000, k=5)
        alarms += any(r.adjusted_pvalue < 0.05 for r in a.segments("click", by="platform",
                                                                     method=method))
    return alarms / runs


@pytest.mark.parametrize("method", ["holm", "bonferroni"])
def test_family_wise_false_alarms_across_5_null_segments_fast(method: str) -> None:
    runs = 200
    rate = _fwer(runs, method, seed=11)
    assert rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / runs)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["holm", "bonferroni"])
def test_family_wise_false_alarms_across_5_null_segments(method: str) -> None:
    runs = 3000
    rate = _fwer(runs, method, seed=12)
    assert rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / runs)


def test_request_level_segments_use_group_counters() -> None:
    cfg = RouterConfig(metrics={"click": "binary"}, level="request",
                       segments={"platform": "x-platform"}, min_segment_units=10)
    exp = Experiment({"control": 0, "treatment": 1}, cfg)
    rng = np.random.default_rng(2)
    for _ in range(600):
        p = ("ios", "web")[int(rng.integers(2))]
        d = exp.assign(None, (p,))
        exp.record(d, "click", int(rng.random() < (0.3 if d.variant == "treatment" and
                                                    p == "web" else 0.1)))
    s = Analysis.from_experiment(exp).segments("click", by="platform")
    assert {r.segment["platform"] for r in s} == {"ios", "web"}
    assert s.get(platform="web").adjusted_pvalue < 0.05
    assert sum(r.units for r in s) == 600
