"""Two-sample tests against scipy.stats and statsmodels (independent references)."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_effectsize,
    proportions_ztest,
)

from modelrouter.stats.twosample import (
    cohens_d,
    cohens_h,
    ratio_moments,
    ratio_ztest,
    relative_lift,
    two_proportion_ztest,
    welch_ttest,
)


@pytest.mark.parametrize(("xc", "nc", "xt", "nt"), [(155, 5000, 190, 5000), (3, 40, 9, 55),
                                                    (1200, 20000, 1185, 19000)])
def test_two_proportion_matches_statsmodels(xc: int, nc: int, xt: int, nt: int) -> None:
    res = two_proportion_ztest(xc, nc, xt, nt)
    z, p = proportions_ztest([xt, xc], [nt, nc])
    assert res.statistic == pytest.approx(z, abs=1e-9)
    assert res.pvalue == pytest.approx(p, abs=1e-9)
    lo, hi = confint_proportions_2indep(xt, nt, xc, nc, method="wald", compare="diff")
    ci = res.confidence_interval()
    assert (ci.low, ci.high) == pytest.approx((lo, hi), abs=1e-9)
    assert cohens_h(xc / nc, xt / nt) == pytest.approx(
        proportion_effectsize(xt / nt, xc / nc), abs=1e-12)


@pytest.mark.parametrize(("xc", "nc", "xt", "nt"), [(155, 5000, 190, 5000), (30, 400, 12, 380)])
def test_relative_lift_matches_statsmodels_log_ratio(xc: int, nc: int, xt: int, nt: int) -> None:
    pc, pt = xc / nc, xt / nt
    lift, ci = relative_lift(pc, np.sqrt(pc * (1 - pc) / nc), pt, np.sqrt(pt * (1 - pt) / nt))
    lo, hi = confint_proportions_2indep(xt, nt, xc, nc, method="log", compare="ratio")
    assert lift == pytest.approx(pt / pc - 1, rel=1e-12)
    assert (ci.low, ci.high) == pytest.approx((lo - 1, hi - 1), abs=1e-9)


def test_welch_matches_scipy() -> None:
    rng = np.random.default_rng(7)
    a = rng.exponential(45.0, 800)
    b = rng.exponential(48.0, 650)
    res = welch_ttest(a.mean(), a.var(ddof=1), a.size, b.mean(), b.var(ddof=1), b.size)
    ref = stats.ttest_ind(b, a, equal_var=False)
    assert res.statistic == pytest.approx(ref.statistic, abs=1e-9)
    assert res.pvalue == pytest.approx(ref.pvalue, abs=1e-9)
    assert res.df == pytest.approx(ref.df, abs=1e-9)
    for level in (0.9, 0.95, 0.99):
        ci, ref_ci = res.confidence_interval(level), ref.confidence_interval(level)
        assert (ci.low, ci.high) == pytest.approx((ref_ci.low, ref_ci.high), abs=1e-9)


def test_cohens_d_matches_pooled_definition_from_scipy_pooled_t() -> None:
    # Student's pooled t = d / sqrt(1/n1 + 1/n2), so scipy's equal_var t gives d independently.
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 300), rng.normal(0.2, 1.3, 200)
    d = cohens_d(a.mean(), a.var(ddof=1), a.size, b.mean(), b.var(ddof=1), b.size)
    t = stats.ttest_ind(b, a, equal_var=True).statistic
    assert d == pytest.approx(t * np.sqrt(1 / a.size + 1 / b.size), abs=1e-12)


def test_ratio_delta_method_matches_cluster_robust_ols() -> None:
    """Delta-method variance of a ratio metric equals the CR0 cluster-robust SE of a mean."""
    rng = np.random.default_rng(11)
    n_users = 400
    counts = rng.integers(1, 8, n_users)
    user_effect = rng.normal(0, 20, n_users)
    y = np.concatenate([rng.normal(100 + ue, 10, c) for ue, c in zip(user_effect, counts)])
    groups = np.repeat(np.arange(n_users), counts)
    num = np.bincount(groups, weights=y)
    n, ratio, var = ratio_moments(num, counts.astype(float))
    fit = sm.OLS(y, np.ones_like(y)).fit(cov_type="cluster", cov_kwds={"groups": groups,
                                                                       "use_correction": False})
    assert ratio == pytest.approx(fit.params[0], rel=1e-12)
    # CR0 divides by n, the delta method here by n - 1.
    assert var * (n - 1) / n == pytest.approx(fit.bse[0] ** 2, rel=1e-9)
    # and requests-as-independent would understate the variance badly here
    assert var > 2 * y.var(ddof=1) / y.size


def test_ratio_ztest_reduces_to_normal_test() -> None:
    res = ratio_ztest(10.0, 0.04, 10.5, 0.05)
    z = 0.5 / np.sqrt(0.09)
    assert res.statistic == pytest.approx(z)
    assert res.pvalue == pytest.approx(2 * stats.norm.sf(z))


def test_bad_input_names_parameter() -> None:
    with pytest.raises(ValueError, match=r"n_control \(0\)"):
        two_proportion_ztest(0, 0, 1, 10)
    with pytest.raises(ValueError, match=r"x_treatment \(11\)"):
        two_proportion_ztest(1, 10, 11, 10)
    with pytest.raises(ValueError, match=r"confidence_level \(1.5\)"):
        welch_ttest(0, 1, 10, 0, 1, 10).confidence_interval(1.5)
