"""Paired shadow-vs-served statistics against independent references.

References: statsmodels (``proportion_confint``, ``mcnemar``), scipy (``ttest_rel``,
``wilcoxon``, ``quantile_test``), and the published Newcombe interval of the Cavo et al. (2012)
table in Fagerland, Lydersen & Laake (2017), *Statistical Analysis of Contingency Tables*,
ch. 8, as checked by their R package ``contingencytables`` (tests of chapter 8:
``estimate = -0.0621 (95% CI -0.1186 to -0.0046)`` for ``[[59, 6], [16, 80]]``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from modelrouter.exceptions import AnalysisError
from modelrouter.stats.paired import (
    agreement,
    mcnemar_pvalues,
    newcombe_paired_interval,
    paired_proportions,
    wilson_interval,
)
from modelrouter.stats.paired_scores import (
    latency_ratio,
    mean_difference,
    order_statistic_ranks,
    paired_loss,
    quantile_difference,
)


@pytest.mark.parametrize("method", ["wilson", "agresti_coull"])
def test_proportion_interval_equals_statsmodels(method: str) -> None:
    for n in (1, 7, 50, 1000):
        for x in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            for level in (0.8, 0.95, 0.99):
                ci = wilson_interval(x, n, level, method)  # type: ignore[arg-type]
                lo, hi = proportion_confint(x, n, alpha=1 - level, method=method)
                assert ci.low == pytest.approx(max(0.0, lo), abs=1e-12)
                assert ci.high == pytest.approx(min(1.0, hi), abs=1e-12)


def test_agreement_result() -> None:
    r = agreement(90, 100)
    assert r.proportion == 0.9
    lo, hi = proportion_confint(90, 100, method="wilson")
    assert (r.ci.low, r.ci.high) == pytest.approx((lo, hi))
    assert "90/100" in repr(r)
    empty = agreement(0, 0)
    assert math.isnan(empty.proportion) and empty.to_dict()["proportion"] is None


def test_newcombe_matches_published_cavo_example() -> None:
    # Cavo et al. (2012): rows = before (served), columns = after (shadow). The book reports
    # row margin minus column margin, -0.0621 (-0.1186 to -0.0046); we report shadow - served,
    # the mirror image.
    r = paired_proportions(59, 6, 16, 80)
    assert r.difference == pytest.approx(10 / 161)
    assert r.ci.low == pytest.approx(0.0046, abs=5e-5)
    assert r.ci.high == pytest.approx(0.1186, abs=5e-5)
    mirrored = newcombe_paired_interval(59, 16, 6, 80)
    assert mirrored.low == pytest.approx(-0.1186, abs=5e-5)
    assert mirrored.high == pytest.approx(-0.0046, abs=5e-5)


def test_mcnemar_exact_equals_statsmodels_and_midp_is_exact_minus_half_point_mass() -> None:
    for b in range(0, 25, 3):
        for c in range(0, 25, 4):
            exact, mid = mcnemar_pvalues(b, c)
            ref = mcnemar([[5, b], [c, 7]], exact=True).pvalue
            assert exact == pytest.approx(ref, rel=1e-12, abs=1e-15)
            m = b + c
            if m and b != c:
                # mid-p (Lancaster, 1961): the exact p-value with half of the observed
                # table's probability counted on each side, i.e. exact - P(X = min)
                assert mid == pytest.approx(ref - stats.binom.pmf(min(b, c), m, 0.5), rel=1e-9)
            else:  # b == c: the observed table is the centre, both p-values are 1
                assert exact == 1.0 and mid == pytest.approx(1.0)


def test_paired_proportions_fields_and_errors() -> None:
    r = paired_proportions(10, 3, 8, 79, outcome="error")
    assert (r.p_served, r.p_shadow) == (0.13, 0.18)
    assert r.pvalue == pytest.approx(mcnemar([[10, 3], [8, 79]], exact=True).pvalue)
    assert r.to_dict()["ci"]["low"] == r.ci.low and "McNemar" in repr(r)
    empty = paired_proportions(0, 0, 0, 0)
    assert empty.n == 0 and empty.to_dict()["p_served"] is None and empty.pvalue == 1.0
    with pytest.raises(AnalysisError, match=r"served_only \(-1\)"):
        paired_proportions(1, -1, 0, 0)
    with pytest.raises(AnalysisError, match="confidence_level"):
        paired_proportions(1, 1, 0, 0, confidence_level=1.0)


def test_mean_difference_equals_ttest_rel() -> None:
    rng = np.random.default_rng(3)
    for n in (2, 5, 40, 1000):
        served = rng.lognormal(0, 1, n)
        shadow = served * rng.lognormal(0.05, 0.3, n)
        r = mean_difference(served, shadow, confidence_level=0.9)
        ref = stats.ttest_rel(shadow, served)
        ci = ref.confidence_interval(confidence_level=0.9)
        assert r.statistic == pytest.approx(ref.statistic, rel=1e-9)
        assert r.pvalue == pytest.approx(ref.pvalue, rel=1e-9)
        assert (r.ci.low, r.ci.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
        assert r.df == n - 1


def test_mean_difference_edge_cases() -> None:
    with pytest.raises(AnalysisError, match="at least 2 pairs"):
        mean_difference([1.0], [2.0])
    with pytest.raises(AnalysisError, match="same length"):
        mean_difference([1.0, 2.0], [2.0])
    with pytest.raises(AnalysisError, match="finite"):
        mean_difference([1.0, math.nan], [2.0, 3.0])
    const = mean_difference([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert const.pvalue == 0.0 and const.ci.low == const.ci.high == 1.0
    assert const.to_dict()["statistic"] is None  # inf -> None


@pytest.mark.parametrize("q", [0.1, 0.5, 0.9, 0.95])
@pytest.mark.parametrize("level", [0.9, 0.95])
def test_quantile_interval_equals_scipy_quantile_test(q: float, level: float) -> None:
    rng = np.random.default_rng(5)
    for n in (30, 101, 400):
        served = rng.exponential(1.0, n)
        shadow = served + rng.standard_t(3, n)
        r = quantile_difference(served, shadow, q, level)
        d = shadow - served
        ref = stats.quantile_test(d, q=float(np.quantile(d, q)), p=q).confidence_interval(level)
        lo = -math.inf if np.isnan(ref.low) else ref.low
        hi = math.inf if np.isnan(ref.high) else ref.high
        assert (r.ci.low, r.ci.high) == (lo, hi)
        assert r.estimate == pytest.approx(np.quantile(d, q))


def test_order_statistic_ranks_small_samples_have_infinite_ends() -> None:
    # With 5 values no order statistic bounds the median at 95%: P(all 5 above) = 1/32 > 2.5%.
    assert order_statistic_ranks(5, 0.5) == (None, None)
    r = quantile_difference(np.zeros(5), np.arange(5.0))
    assert r.to_dict()["ci"] == {"low": None, "high": None}
    # 6 values: P(K <= 0) = 1/64 <= 2.5%: [x_(1), x_(6)] (Conover, 1999, table A3).
    assert order_statistic_ranks(6, 0.5) == (1, 6)


def test_latency_ratio() -> None:
    rng = np.random.default_rng(8)
    base = rng.lognormal(3, 0.5, 400)
    served = base * rng.lognormal(0, 0.1, 400)
    shadow = 1.3 * base * rng.lognormal(0, 0.1, 400)
    for q in (0.5, 0.95):
        r = latency_ratio(served, shadow, q)
        assert r.ratio == pytest.approx(np.quantile(shadow, q) / np.quantile(served, q))
        assert r.ci.low < r.ratio < r.ci.high
        assert r.ci.low < 1.3 < r.ci.high  # the true ratio of quantiles is 1.3 (scale family)
        assert latency_ratio(served, shadow, q) == r  # fixed seed: deterministic
    with pytest.raises(AnalysisError, match=">= 0"):
        latency_ratio([1.0, -1.0], [1.0, 1.0])
    same = latency_ratio([5.0, 5.0, 5.0], [7.5, 7.5, 7.5])
    assert same.ratio == 1.5 and (same.ci.low, same.ci.high) == (1.5, 1.5)


def test_paired_loss_equals_scipy() -> None:
    rng = np.random.default_rng(9)
    served = rng.exponential(1.0, 60)
    shadow = served * rng.lognormal(-0.1, 0.4, 60)
    r = paired_loss(served, shadow)
    t = stats.ttest_rel(shadow, served)
    w = stats.wilcoxon(shadow, served)
    assert r.pvalue == pytest.approx(t.pvalue, rel=1e-9)
    assert r.wilcoxon_pvalue == pytest.approx(w.pvalue, rel=1e-9)
    assert r.wilcoxon_statistic == w.statistic
    zero = paired_loss([1.0, 2.0], [1.0, 2.0])
    assert zero.to_dict()["wilcoxon_pvalue"] is None
