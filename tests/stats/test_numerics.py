"""Numerical safety of the two-sample statistics and the mSPRT at extreme magnitudes: the same
answers as scipy / statsmodels / the textbook formula on rescaled data, NaN with a note where a
quantity is not defined, and never an OverflowError, ZeroDivisionError or numpy warning
(warnings are errors in this project's pytest configuration)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep

from modelrouter.stats.always_valid import always_valid_test, msprt_pvalues
from modelrouter.stats.twosample import (
    cohens_d,
    ratio_ztest,
    relative_lift,
    relative_lift_note,
    welch_df,
    welch_ttest,
)


def welch_of(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    res = welch_ttest(a.mean(), a.var(ddof=1), a.size, b.mean(), b.var(ddof=1), b.size)
    return res.statistic, res.pvalue, res.df


@pytest.mark.parametrize("scale", [1e100, 1e-100, 1e150, 1e-150])
def test_welch_at_extreme_magnitudes_matches_scipy_on_the_rescaled_data(scale: float) -> None:
    """Values of 1e100 used to overflow the Welch-Satterthwaite degrees of freedom."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.0, 1.0, 300), rng.normal(0.2, 1.5, 250)
    ref = stats.ttest_ind(b, a, equal_var=False)
    t, p, df = welch_of(a * scale, b * scale)
    assert t == pytest.approx(ref.statistic, rel=1e-9)
    assert p == pytest.approx(ref.pvalue, rel=1e-9)
    assert df == pytest.approx(ref.df, rel=1e-9)


def test_welch_df_is_scale_free_and_matches_the_textbook_formula() -> None:
    a, b = 3.0, 5.0
    textbook = (a + b) ** 2 / (a * a / 9 + b * b / 19)
    assert welch_df(a, 10, b, 20) == pytest.approx(textbook, rel=1e-14)
    for c in (1e-300, 1e-200, 1e200, 1e300):
        assert welch_df(a * c, 10, b * c, 20) == pytest.approx(textbook, rel=1e-12)
    assert welch_df(0.0, 10, 0.0, 20) == 28.0
    assert welch_df(5e-324, 10, 0.0, 20) == pytest.approx(9.0)


def test_welch_with_non_finite_variance_is_nan_not_an_error() -> None:
    res = welch_ttest(0.0, math.inf, 10, 1.0, 1.0, 10)
    assert math.isnan(res.statistic) and math.isnan(res.pvalue) and math.isnan(res.df)
    ci = res.confidence_interval()
    assert math.isnan(ci.low) and math.isnan(ci.high)
    assert math.isnan(ratio_ztest(1.0, math.inf, 2.0, 1.0).pvalue)


def test_cohens_d_at_extreme_variances() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(0, 1, 50), rng.normal(0.5, 1, 60)
    ref = cohens_d(a.mean(), a.var(ddof=1), 50, b.mean(), b.var(ddof=1), 60)
    for c in (1e-150, 1e150):
        got = cohens_d(a.mean() * c, a.var(ddof=1) * c * c, 50, b.mean() * c,
                       b.var(ddof=1) * c * c, 60)
        assert got == pytest.approx(ref, rel=1e-12)
    assert math.isnan(cohens_d(0.0, 0.0, 5, 1.0, 0.0, 5))
    assert math.isnan(cohens_d(0.0, math.inf, 5, 1.0, 1.0, 5))


def test_relative_lift_with_a_control_mean_near_zero_is_nan_with_a_note() -> None:
    """+-10 revenue per user with a control mean of +1e-4 used to raise OverflowError."""
    lift, ci, note = relative_lift_note(1e-4, 0.739, 3.27, 0.643)
    assert math.isnan(lift) and math.isnan(ci.low) and math.isnan(ci.high)
    assert note is not None and "within 1.96 standard errors" in note and "Fieller" in note
    assert math.isnan(relative_lift(1e-4, 0.739, 3.27, 0.643)[0])
    lift, ci, note = relative_lift_note(0.0, 0.1, 1.0, 0.1)
    assert math.isnan(lift) and note == "relative lift n/a: the control mean is 0"
    lift, _ci, note = relative_lift_note(1e-300, 0.0, 1e100, 1.0)  # a ratio beyond floats
    assert math.isnan(lift) and note is not None and "float range" in note
    lift, _ci, note = relative_lift_note(math.nan, 0.1, 1.0, 0.1)
    assert math.isnan(lift) and note is not None


@pytest.mark.parametrize(("mc", "sc", "mt", "st_"), [
    (1e-200, 1e-201, 3e-200, 1e-201),   # tiny positive means: the log method, finite
    (1.0, 0.1, 1e-300, 1e-200),         # treatment near zero: interval reaches -100%
    (1.0, 0.1, 1e100, 1e99),            # a huge ratio: within the float range
    (2.0, 0.1, -1e100, 1e100),          # linear delta method, huge half-width
    (1.0, 0.4, 5.0, 5000.0),            # log interval whose upper end is beyond exp's range
])
def test_relative_lift_never_overflows(mc: float, sc: float, mt: float, st_: float) -> None:
    lift, ci, note = relative_lift_note(mc, sc, mt, st_)
    assert note is None and math.isfinite(lift)
    assert ci.low <= lift <= ci.high or math.isnan(ci.low)


def test_relative_lift_still_matches_statsmodels_on_ordinary_data() -> None:
    xc, nc, xt, nt = 155, 5000, 190, 5000
    pc, pt = xc / nc, xt / nt
    lift, ci, note = relative_lift_note(pc, math.sqrt(pc * (1 - pc) / nc), pt,
                                        math.sqrt(pt * (1 - pt) / nt))
    lo, hi = confint_proportions_2indep(xt, nt, xc, nc, method="log", compare="ratio")
    assert note is None and lift == pytest.approx(pt / pc - 1, rel=1e-12)
    assert (ci.low, ci.high) == pytest.approx((lo - 1, hi - 1), abs=1e-9)


def textbook_log_lr(d: float, v: float, tau2: float) -> float:
    return 0.5 * math.log(v / (v + tau2)) + tau2 * d * d / (2.0 * v * (v + tau2))


@settings(max_examples=200, deadline=None)
@given(d=st.floats(-50, 50), v=st.floats(1e-3, 1e3), tau2=st.floats(1e-3, 1e3),
       scale=st.sampled_from([1e-150, 1e-100, 1.0, 1e100, 1e150]))
def test_msprt_is_scale_free_and_matches_the_textbook_formula(d: float, v: float, tau2: float,
                                                              scale: float) -> None:
    """The mixture likelihood ratio is invariant under (d, V, tau2) -> (c d, c^2 V, c^2 tau2):
    computed in logs, it is the same at every magnitude; the interval scales with c."""
    ref = textbook_log_lr(d, v, tau2)
    res = always_valid_test(d * scale, v * scale * scale, tau2 * scale * scale)
    assert res.statistic == pytest.approx(ref, rel=1e-9, abs=1e-9)
    ci = res.confidence_interval(0.95)
    base = always_valid_test(d, v, tau2).confidence_interval(0.95)
    assert ci.low == pytest.approx(base.low * scale, rel=1e-9, abs=1e-300)
    assert ci.high == pytest.approx(base.high * scale, rel=1e-9, abs=1e-300)


def test_msprt_at_extreme_ratios_is_zero_or_unbounded_not_an_error() -> None:
    res = always_valid_test(1e100, 1e-300, tau2=1.0)  # infinitely many standard errors
    assert res.statistic == math.inf and res.pvalue == 0.0
    res = always_valid_test(0.0, 1e300, tau2=1e-300)  # no information at all
    assert res.pvalue == pytest.approx(1.0) and math.isfinite(res.statistic)
    ci = always_valid_test(1.0, 1e300, tau2=1e-300).confidence_interval()
    assert ci.low == -math.inf and ci.high == math.inf
    p = msprt_pvalues([1.0, 1e100, 0.0], [1.0, 1e-300, 0.0], tau2=1.0)
    assert p.tolist() == [pytest.approx(p[0]), 0.0, 0.0]
