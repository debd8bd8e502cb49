"""CUPED-adjusted guardrails (issue 16): a guardrail on a metric that declares covariates is
decided on the adjusted estimate, checked against independent references on the same data.

References: tea-tasting's ``Mean(y, covariate=x)`` (pooled theta; ``use_t=False``: its normal
interval gives the standard error of the difference and of the log ratio of the adjusted
means) and statsmodels OLS (pooled theta, mean imputation + missingness indicator) with the
textbook delta method; the always-valid interval is the normal-mixture confidence sequence
written out here (Robbins 1970; Howard et al. 2021, eq. (14)): estimate +- sqrt(V (1 + V/tau2)
(2 log(1/alpha) + log(1 + tau2/V))), tau2 = (margin on the test scale)^2.

Cells covered: memory store x A/B x 2 and 3 variants x user level x fresh; absolute and
relative margins; overall and per segment; covariates missing or recorded after exposure;
a guardrail without covariates unchanged; the rollback monitor acting on the adjusted result.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from modelrouter import Experiment, RouterConfig
from modelrouter.analysis import Analysis
from modelrouter.analysis.guardrails import GuardrailResult

TOL = 1e-8


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def mixture_interval(est: float, var: float, threshold: float, alpha: float
                     ) -> tuple[float, float]:
    tau2 = threshold * threshold
    half = math.sqrt(var * (1 + var / tau2) * (2 * math.log(1 / alpha) + math.log1p(tau2 / var)))
    return est - half, est + half


def build(guardrails: dict[str, Any], *, variants: tuple[str, ...] = ("a", "b"), n: int = 2000,
          seed: int = 1, effect: float = 0.0, rho: float = 0.8, missing_every: int = 0,
          late_every: int = 0, segments: bool = False, rollback: bool = False
          ) -> tuple[Experiment, dict[str, np.ndarray]]:
    """Units with a pre-period covariate ``pre`` correlated ``rho`` with the outcome ``y``;
    ``y2`` is the same outcome on a metric without covariates."""
    clock = Clock()
    cfg = RouterConfig(
        metrics={"y": {"kind": "continuous", "covariates": ["pre"]}, "y2": "continuous"},
        guardrails={"latency_ms": None, "error": None, **guardrails},
        segments={"platform": "x-platform"} if segments else {}, rollback=rollback,
        guardrail_check_every=10**9)
    exp = Experiment({v: v for v in variants}, cfg, clock=clock)
    rng = np.random.default_rng(seed)
    x = rng.normal(10.0, 2.0, n)
    noise = rng.normal(0.0, 2.0 * math.sqrt(1 - rho**2) / rho, n)
    y = np.empty(n)
    codes = np.empty(n, dtype=int)
    known = np.ones(n, dtype=bool)
    platform = np.where(rng.random(n) < 0.5, "ios", "web")
    for i in range(n):
        unit = f"u{i}"
        missing = missing_every and i % missing_every == 0
        late = late_every and i % late_every == 1
        if not missing and not late:
            exp.record_covariate(unit, "pre", float(x[i]))
        seg = (str(platform[i]),) if segments else ()
        d = exp.assign(unit, seg)
        codes[i] = variants.index(d.variant)
        y[i] = 20.0 + x[i] + noise[i] + effect * (codes[i] > 0)
        exp.record_unit(unit, "y", float(y[i]))
        exp.record_unit(unit, "y2", float(y[i]))
        if late:  # after the first exposure: must not enter the estimate
            clock.t += 1.0
            exp.record_covariate(unit, "pre", float(x[i]) + 100.0)
        known[i] = not missing and not late
    return exp, {"x": x, "y": y, "codes": codes, "known": known, "platform": platform}


def one(results: tuple[GuardrailResult, ...], metric: str, variant: str = "b",
        segment: dict[str, str] | None = None) -> GuardrailResult:
    (g,) = [g for g in results if g.metric == metric and g.variant == variant
            and g.segment == segment]
    return g


def tea(y: np.ndarray, x: np.ndarray, t: np.ndarray) -> Any:
    tt = pytest.importorskip("tea_tasting")
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"y": y, "x": x, "variant": t.astype(int)})
    return tt.Mean("y", covariate="x", use_t=False).analyze(frame, 0, 1, "variant")


def test_absolute_margin_equals_tea_tasting() -> None:
    """memory x A/B x 2 variants x absolute margin: estimate, variance and interval of the
    adjusted guardrail equal tea-tasting's CUPED on the same units."""
    exp, d = build({"y": {"max_decrease": 0.3}, "y2": {"max_decrease": 0.3}}, effect=0.05)
    g = one(Analysis.from_experiment(exp).guardrails(), "y")
    ref = tea(d["y"], d["x"], d["codes"] == 1)
    z = stats.norm.ppf(0.975)
    var = ((ref.effect_size_ci_upper - ref.effect_size_ci_lower) / (2 * z)) ** 2
    assert g.adjusted and g.variance_reduction > 0.5
    assert g.estimate == pytest.approx(ref.effect_size, rel=TOL)
    lo, hi = mixture_interval(ref.effect_size, var, -0.3, 0.05)
    assert (g.low, g.high) == pytest.approx((lo, hi), rel=TOL)
    assert g.status == "pass" and "CUPED-adjusted for pre" in g.reason
    unadj = one(Analysis.from_experiment(exp).guardrails(), "y2")  # no covariates: as before
    assert not unadj.adjusted and math.isnan(unadj.variance_reduction)
    assert unadj.high - unadj.low > 1.5 * (g.high - g.low)


def test_relative_margin_equals_tea_tasting_log_ratio() -> None:
    """memory x A/B x relative margin: the log ratio of the adjusted means and its
    delta-method variance equal tea-tasting's relative interval (normal, log scale)."""
    exp, d = build({"y": {"max_increase": 0.05, "relative": True}}, effect=-0.1, seed=4)
    g = one(Analysis.from_experiment(exp).guardrails(), "y")
    ref = tea(d["y"], d["x"], d["codes"] == 1)
    z = stats.norm.ppf(0.975)
    lo_ref, hi_ref = math.log1p(ref.rel_effect_size_ci_lower), math.log1p(
        ref.rel_effect_size_ci_upper)
    est = math.log(ref.treatment) - math.log(ref.control)
    var = ((hi_ref - lo_ref) / (2 * z)) ** 2
    lo, hi = mixture_interval(est, var, math.log1p(0.05), 0.05)
    assert g.adjusted
    assert g.estimate == pytest.approx(math.expm1(est), rel=TOL)
    assert (g.low, g.high) == pytest.approx((math.expm1(lo), math.expm1(hi)), rel=TOL)


def statsmodels_adjusted(y: np.ndarray, x: np.ndarray, t: np.ndarray
                         ) -> tuple[np.ndarray, float, float]:
    """Adjusted outcomes (pooled OLS theta, NaN imputed with the mean + indicator), the
    difference and its Welch variance."""
    miss = np.isnan(x)
    z = np.column_stack([np.where(miss, np.nanmean(x), x), miss.astype(float)])
    theta = sm.OLS(y, sm.add_constant(z)).fit().params[1:]
    adj = y - (z - z.mean(axis=0)) @ theta
    var = adj[t].var(ddof=1) / t.sum() + adj[~t].var(ddof=1) / (~t).sum()
    return adj, float(adj[t].mean() - adj[~t].mean()), float(var)


@pytest.mark.parametrize("relative", [False, True])
def test_segments_three_variants_missing_and_late_covariates(relative: bool) -> None:
    """memory x A/B x 3 variants x segments x missing and post-exposure covariates: each
    treatment's guardrail, overall and per platform (Bonferroni alpha / 2), equals statsmodels
    OLS + the delta method on that treatment's and the control's units of the segment, with
    the post-exposure values treated as missing."""
    spec = {"max_decrease": 0.05 if relative else 0.4, "relative": relative,
            "segments": ["platform"]}
    exp, d = build({"y": spec}, variants=("a", "b", "c"), n=2400, seed=7, missing_every=9,
                   late_every=13, segments=True)
    results = Analysis.from_experiment(exp).guardrails()
    x = np.where(d["known"], d["x"], np.nan)
    for code, variant in ((1, "b"), (2, "c")):
        for seg, alpha in ((None, 0.05), ({"platform": "ios"}, 0.025),
                           ({"platform": "web"}, 0.025)):
            pick = np.isin(d["codes"], [0, code])
            if seg is not None:
                pick &= d["platform"] == seg["platform"]
            t = d["codes"][pick] == code
            adj, diff, var = statsmodels_adjusted(d["y"][pick], x[pick], t)
            if relative:
                mt, mc = adj[t].mean(), adj[~t].mean()
                est = math.log(mt) - math.log(mc)
                var = (adj[t].var(ddof=1) / (t.sum() * mt**2)
                       + adj[~t].var(ddof=1) / ((~t).sum() * mc**2))
                lo, hi = (math.expm1(v) for v in mixture_interval(
                    est, var, math.log1p(-0.05), alpha))
                est = math.expm1(est)
            else:
                est = diff
                lo, hi = mixture_interval(diff, var, -0.4, alpha)
            g = one(results, "y", variant, seg)
            assert g.adjusted
            assert (g.estimate, g.low, g.high) == pytest.approx((est, lo, hi), rel=TOL)


def test_without_covariate_values_the_guardrail_is_unchanged() -> None:
    """memory x A/B: a metric declaring covariates but without any value, and a metric
    without covariates, give the unadjusted guardrail: Welch variance of the plain means."""
    exp, d = build({"y": {"max_decrease": 0.4}, "y2": {"max_decrease": 0.4}},
                   missing_every=1)
    results = Analysis.from_experiment(exp).guardrails()
    t = d["codes"] == 1
    y = d["y"]
    diff = y[t].mean() - y[~t].mean()
    var = y[t].var(ddof=1) / t.sum() + y[~t].var(ddof=1) / (~t).sum()
    lo, hi = mixture_interval(diff, var, -0.4, 0.05)
    for metric in ("y", "y2"):
        g = one(results, metric)
        assert not g.adjusted and "CUPED" not in g.reason
        assert (g.estimate, g.low, g.high) == pytest.approx((diff, lo, hi), rel=TOL)
    assert one(results, "y").to_dict()["adjusted"] is False


def test_monitor_rolls_back_on_the_adjusted_guardrail() -> None:
    """memory x A/B x rollback: a drop of 0.6 against a margin of 0.3 is shown by the
    adjusted guardrail (fail, rollback), which the unadjusted one on the same outcome (y2)
    cannot show yet: the monitor decides on the same function as Analysis.guardrails()."""
    exp, _d = build({"y": {"max_decrease": 0.3}, "y2": {"max_decrease": 0.3}}, n=1200,
                    effect=-0.6, rho=0.95, seed=2, rollback=True)
    results = exp.check_guardrails()
    assert one(results, "y").status == "fail" and one(results, "y").adjusted
    assert one(results, "y2").status == "inconclusive"
    assert exp.guard.rolled_back
    (event,) = exp.rollback_events
    assert "CUPED-adjusted" in event.reasons[0]
