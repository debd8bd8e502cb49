"""CUPED (pooled theta) and Lin's regression adjustment against independent references.

References, all to 1e-8 or better:
- tea-tasting (e10v/tea-tasting; the tests skip when it is not installed): ``Mean(y,
  covariate=x)`` and ``RatioOfMeans(numer, denom, numer_covariate, denom_covariate)``,
  difference, interval, p-value, statistic and relative interval;
- always run: statsmodels OLS for the pooled theta plus scipy's Welch ``ttest_ind`` on the
  adjusted outcome (CUPED), and statsmodels ``OLS(...).fit(cov_type="HC0"/"HC1")`` on the
  interacted design (Lin 2013);
- the sums version equals the array version to 1e-10.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.tools.sm_exceptions import SingularMatrixWarning

from modelrouter.stats.adjusted import lin_regression
from modelrouter.stats.adjusted_result import AdjustedResult
from modelrouter.stats.cuped import (
    ArmSums,
    cuped_from_sums,
    cuped_mean,
    cuped_ratio,
    prepare_covariates,
    two_arms,
)

TOL = 1e-8


def _data(seed: int = 3, n: int = 1500, binary: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, n)
    x1 = rng.gamma(2.0, 2.0, n)
    x2 = rng.normal(0.0, 1.0, n)
    lin = 0.4 * x1 + 0.5 * x2 + 0.2 * t + rng.normal(0.0, 1.0, n)
    y = (lin > 1.5).astype(float) if binary else 3.0 + lin
    return {"y": y, "t": t, "x1": x1, "x2": x2}


def _welch_reference(y: np.ndarray, t: np.ndarray, x: np.ndarray) -> tuple[float, ...]:
    """Pooled-sample OLS slope(s) of y on x, then Welch's t-test on y - theta'(x - mean x)."""
    fit = sm.OLS(y, sm.add_constant(x)).fit()
    theta = np.asarray(fit.params[1:])
    adj = y - (x - x.mean(axis=0)) @ theta
    res = stats.ttest_ind(adj[t == 1], adj[t == 0], equal_var=False)
    ci = res.confidence_interval(0.95)
    diff = adj[t == 1].mean() - adj[t == 0].mean()
    return diff, float(res.pvalue), float(res.statistic), float(ci.low), float(ci.high)


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("k", [1, 2])
def test_cuped_equals_ols_theta_plus_welch(binary: bool, k: int) -> None:
    d = _data(binary=binary)
    x = np.column_stack([d["x1"], d["x2"]])[:, :k]
    r = cuped_mean(d["y"], d["t"], x)
    diff, p, stat, lo, hi = _welch_reference(d["y"], d["t"], x)
    ci = r.confidence_interval()
    assert r.adjusted and r.difference == pytest.approx(diff, abs=TOL)
    assert (r.pvalue, r.statistic) == pytest.approx((p, stat), rel=TOL)
    assert (ci.low, ci.high) == pytest.approx((lo, hi), abs=TOL)
    # variance_reduction against the unadjusted Welch standard error (scipy)
    raw = stats.ttest_ind(d["y"][d["t"] == 1], d["y"][d["t"] == 0], equal_var=False)
    se_raw = (d["y"][d["t"] == 1].mean() - d["y"][d["t"] == 0].mean()) / raw.statistic
    assert r.std_err_unadjusted == pytest.approx(se_raw, rel=TOL)
    assert r.variance_reduction == pytest.approx(1 - (r.std_err / se_raw) ** 2, rel=TOL)
    assert 0.1 < r.variance_reduction < 0.9


def test_no_covariate_is_welch() -> None:
    d = _data()
    r = cuped_mean(d["y"], d["t"])
    ref = stats.ttest_ind(d["y"][d["t"] == 1], d["y"][d["t"] == 0], equal_var=False)
    assert not r.adjusted and r.variance_reduction == 0.0
    assert r.pvalue == pytest.approx(float(ref.pvalue), rel=TOL)


@pytest.mark.parametrize("cov_type", ["HC0", "HC1"])
@pytest.mark.parametrize("binary", [False, True])
def test_lin_equals_statsmodels_robust_ols(cov_type: str, binary: bool) -> None:
    d = _data(binary=binary)
    x = np.column_stack([d["x1"], d["x2"]])
    x[::7, 1] = np.nan  # one covariate partly missing: imputed + indicator
    r = lin_regression(d["y"], d["t"], x, cov_type=cov_type)  # type: ignore[arg-type]
    filled, names = prepare_covariates(x, d["y"].size)
    assert names == ("x0", "x1", "x1:missing")
    xc = filled - filled.mean(axis=0)
    t = d["t"].astype(float)
    z = np.column_stack([np.ones_like(t), t, xc, t[:, None] * xc])
    fit = sm.OLS(d["y"], z).fit(cov_type=cov_type)
    ci = r.confidence_interval()
    assert r.difference == pytest.approx(fit.params[1], abs=TOL)
    assert r.std_err == pytest.approx(fit.bse[1], rel=TOL)
    assert r.pvalue == pytest.approx(fit.pvalues[1], rel=TOL)
    assert (ci.low, ci.high) == pytest.approx(tuple(fit.conf_int()[1]), abs=TOL)
    raw = sm.OLS(d["y"], z[:, :2]).fit(cov_type=cov_type)
    assert r.std_err_unadjusted == pytest.approx(raw.bse[1], rel=TOL)
    assert r.mean_control == pytest.approx(fit.params[0], abs=TOL)


def test_cuped_and_lin_agree_closely() -> None:
    """The two forms estimate the same effect; their SEs differ by well under 1 percent here."""
    d = _data(n=4000)
    x = np.column_stack([d["x1"], d["x2"]])
    a, b = cuped_mean(d["y"], d["t"], x), lin_regression(d["y"], d["t"], x, cov_type="HC0")
    assert abs(a.difference - b.difference) < 0.05 * a.std_err
    assert abs(a.std_err / b.std_err - 1) < 0.01


def test_missing_imputed_value_does_not_matter() -> None:
    """With the missingness indicator, imputing 0 instead of the mean changes nothing: what
    lets a store keep ``x * observed`` sums."""
    d = _data()
    x = np.column_stack([d["x1"], d["x2"]])
    x[::5, 0] = np.nan
    r = cuped_mean(d["y"], d["t"], x)
    zero = np.column_stack([np.nan_to_num(x[:, 0]), x[:, 1], np.isnan(x[:, 0])])
    r0 = cuped_mean(d["y"], d["t"], zero)
    assert (r.difference, r.std_err) == pytest.approx((r0.difference, r0.std_err), rel=1e-10)
    l1, l0 = lin_regression(d["y"], d["t"], x), lin_regression(d["y"], d["t"], zero)
    assert (l1.difference, l1.std_err) == pytest.approx((l0.difference, l0.std_err), rel=1e-10)
    assert r.covariates == ("x0", "x1", "x0:missing")
    all_missing = np.full(d["y"].size, np.nan)
    assert not cuped_mean(d["y"], d["t"], all_missing).adjusted


def test_sums_equal_arrays() -> None:
    d = _data()
    x = np.column_stack([d["x1"], d["x2"]])
    x[::9, 1] = np.nan
    r = cuped_mean(d["y"], d["t"], x)
    filled, names = prepare_covariates(x, d["y"].size)
    cols = np.column_stack([d["y"], filled])
    t = d["t"] == 1
    half = cols[~t].shape[0] // 2  # the control arm's sums from two "workers", merged
    control = ArmSums.from_columns(cols[~t][:half]) + ArmSums.from_columns(cols[~t][half:])
    s = cuped_from_sums(control, ArmSums.from_columns(cols[t]), n_covariates=3,
                        covariate_names=names)
    for f in ("difference", "std_err", "pvalue", "df", "variance_reduction", "relative_lift"):
        assert getattr(s, f) == pytest.approx(getattr(r, f), rel=1e-10, abs=1e-12), f
    assert s.relative_confidence_interval().low == pytest.approx(
        r.relative_confidence_interval().low, rel=1e-10)


def _ratio_data(seed: int = 5, n: int = 3000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, n)
    activity = rng.gamma(1.5, 1.0, n)
    sessions = rng.poisson(2 + 3 * activity) + 1
    clicks = rng.binomial(sessions, np.clip(0.2 + 0.05 * activity + 0.02 * t, 0, 1))
    pre_s = rng.poisson(2 + 3 * activity) + 1
    pre_c = rng.binomial(pre_s, np.clip(0.2 + 0.05 * activity, 0, 1))
    return {"c": clicks.astype(float), "s": sessions.astype(float), "t": t,
            "pc": pre_c.astype(float), "ps": pre_s.astype(float), "act": activity}


def test_ratio_sums_equal_arrays() -> None:
    d = _ratio_data()
    r = cuped_ratio(d["c"], d["s"], d["t"], np.column_stack([d["pc"], d["act"]]),
                    np.column_stack([d["ps"], np.ones_like(d["act"])]))
    cols = np.column_stack([d["c"], d["s"], d["pc"], d["ps"], d["act"], np.ones_like(d["act"])])
    t = d["t"] == 1
    s = cuped_from_sums(ArmSums.from_columns(cols[~t]), ArmSums.from_columns(cols[t]),
                        n_covariates=2, denominator=True, covariate_denominators=[True, True])
    for f in ("difference", "std_err", "pvalue", "variance_reduction", "relative_lift"):
        assert getattr(s, f) == pytest.approx(getattr(r, f), rel=1e-10), f


def test_ratio_written_out() -> None:
    """The delta method written out per unit (Deng, Knoblich & Lu 2018): each arm's ratio is
    linearised at its own means, theta from the pooled linearisation."""
    d = _ratio_data()
    r = cuped_ratio(d["c"], d["s"], d["t"], d["pc"], d["ps"])

    def lin(num: np.ndarray, den: np.ndarray) -> tuple[float, np.ndarray]:
        ratio = num.mean() / den.mean()
        return ratio, (num - ratio * den) / den.mean()

    _, yl = lin(d["c"], d["s"])
    rx_p, xl = lin(d["pc"], d["ps"])
    theta = np.cov(yl, xl)[0, 1] / np.var(xl, ddof=1)
    out = []
    for arm in (0, 1):
        m = d["t"] == arm
        ry, yy = lin(d["c"][m], d["s"][m])
        rx, xx = lin(d["pc"][m], d["ps"][m])
        out.append((ry - theta * (rx - rx_p), np.var(yy - theta * xx, ddof=1) / m.sum()))
    assert r.difference == pytest.approx(out[1][0] - out[0][0], abs=1e-12)
    assert r.std_err == pytest.approx(math.sqrt(out[0][1] + out[1][1]), rel=1e-10)


def test_validation() -> None:
    d = _data(n=50)
    with pytest.raises(ValueError, match="treatment must hold"):
        cuped_mean(d["y"], np.zeros(50), d["x1"])
    with pytest.raises(ValueError, match="finite"):
        cuped_mean(np.full(50, np.nan), d["t"], d["x1"])
    with pytest.raises(ValueError, match="shape"):
        cuped_mean(d["y"], d["t"], d["x1"][:10])
    with pytest.raises(ValueError, match="cov_type"):
        lin_regression(d["y"], d["t"], d["x1"], cov_type="HC3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="columns"):
        cuped_from_sums(ArmSums.from_columns(np.ones((3, 2))),
                        ArmSums.from_columns(np.ones((3, 2))), n_covariates=2)


def test_result_shape() -> None:
    d = _data()
    r = cuped_mean(d["y"], d["t"], d["x1"], covariate_names=["pre"])
    out = r.to_dict()
    assert out["adjusted"] is True and out["covariates"] == ["pre"]
    assert out["ci"]["low"] < out["difference"] < out["ci"]["high"]
    assert "pre" in r.summary() and "CUPED" in repr(r)
    ci90 = r.confidence_interval(0.90)
    assert ci90.high - ci90.low < out["ci"]["high"] - out["ci"]["low"]
    neg = cuped_mean(d["y"] - 100.0, d["t"], d["x1"])
    assert neg.to_dict()["relative_ci"] == {"low": None, "high": None}


@pytest.mark.parametrize("scale", [1e300, 1e-300, 1e160])
def test_hostile_magnitudes(scale: float) -> None:
    """Composition-matrix cell "input: hostile": outcomes near 1e300 or 1e-300 give the same
    test as at unit scale (exact power-of-two scaling inside), no overflow warning (warnings
    are errors here); sums whose squares overflow are refused with a clear error."""
    d = _data(n=400)
    for fit in (cuped_mean, lin_regression):
        base = fit(d["y"], d["t"], d["x1"])
        big = fit(d["y"] * scale, d["t"], d["x1"])
        assert big.pvalue == pytest.approx(base.pvalue, rel=1e-12)
        assert big.difference == pytest.approx(base.difference * scale, rel=1e-12)
        assert big.std_err == pytest.approx(base.std_err * scale, rel=1e-12)
        assert big.theta[0] == pytest.approx(base.theta[0] * scale, rel=1e-12)
    if scale > 1e200:
        cols = np.column_stack([d["y"] * scale, d["x1"]])
        with pytest.raises(ValueError, match="too large"):
            cuped_from_sums(ArmSums.from_columns(cols[:200]), ArmSums.from_columns(cols[200:]),
                            n_covariates=1)
    with pytest.raises(ValueError, match="finite or NaN"):
        cuped_mean(d["y"], d["t"], np.where(d["x1"] > 5, np.inf, d["x1"]))


def test_degenerate_covariates() -> None:
    """A constant covariate gets theta 0 (the unadjusted test, as tea-tasting); a duplicated
    one changes nothing (minimum-norm coefficients, same adjustment)."""
    d = _data()
    plain = cuped_mean(d["y"], d["t"])
    const = cuped_mean(d["y"], d["t"], np.full(d["y"].size, 7.0))
    assert const.theta == (0.0,) and const.std_err == pytest.approx(plain.std_err, rel=1e-12)
    one = cuped_mean(d["y"], d["t"], d["x1"])
    two = cuped_mean(d["y"], d["t"], np.column_stack([d["x1"], 2 * d["x1"]]))
    assert (two.difference, two.std_err) == pytest.approx((one.difference, one.std_err),
                                                          rel=1e-9)


def test_lin_rank_deficient_equals_statsmodels() -> None:
    """Missing covariate values in the control arm only: the indicator is constant in the
    treatment arm, so its interaction would be collinear with T; it is not interacted. The
    reference is statsmodels on that design; the full design is rank-deficient (statsmodels
    warns)."""
    d = _data(n=600)
    x = d["x1"].copy()
    x[(d["t"] == 0) & (np.arange(600) % 6 == 0)] = np.nan
    r = lin_regression(d["y"], d["t"], x, cov_type="HC1")
    filled, _ = prepare_covariates(x, 600)
    xc = filled - filled.mean(axis=0)
    t = d["t"].astype(float)
    with pytest.warns(SingularMatrixWarning):
        sm.OLS(d["y"], np.column_stack([np.ones(600), t, xc, t[:, None] * xc])).fit()
    fit = sm.OLS(d["y"], np.column_stack([np.ones(600), t, xc, t * xc[:, 0]])).fit(
        cov_type="HC1")
    assert r.difference == pytest.approx(fit.params[1], abs=TOL)
    assert r.std_err == pytest.approx(fit.bse[1], rel=TOL)


def test_two_arms_of_three_variants() -> None:
    d = _data()
    codes = np.array(["a", "b", "c"])[np.arange(d["y"].size) % 3]
    mask, ind = two_arms(codes, "a", "c")
    r = cuped_mean(d["y"][mask], ind, d["x1"][mask])
    diff, *_ = _welch_reference(d["y"][mask], ind, d["x1"][mask][:, None])
    assert r.n_control + r.n_treatment == mask.sum() and r.difference == pytest.approx(diff)
    with pytest.raises(ValueError, match="must differ"):
        two_arms(codes, "a", "a")


# ---- tea-tasting, when installed -------------------------------------------------------------

def _tea() -> Any:
    return pytest.importorskip("tea_tasting")


def _check_tea(ref: Any, m: AdjustedResult) -> None:
    """``ref`` is a tea-tasting ``MeanResult``."""
    ci, rel = m.confidence_interval(), m.relative_confidence_interval()
    pairs = [(m.difference, ref.effect_size), (ci.low, ref.effect_size_ci_lower),
             (ci.high, ref.effect_size_ci_upper), (m.relative_lift, ref.rel_effect_size),
             (rel.low, ref.rel_effect_size_ci_lower), (rel.high, ref.rel_effect_size_ci_upper),
             (m.statistic, ref.statistic), (m.pvalue, ref.pvalue),
             (m.mean_control, ref.control), (m.mean_treatment, ref.treatment)]
    for ours, theirs in pairs:
        assert ours == pytest.approx(theirs, rel=TOL, abs=1e-12)


@pytest.mark.parametrize("binary", [False, True])
def test_tea_tasting_mean_with_covariate(binary: bool) -> None:
    tt = _tea()
    pd = pytest.importorskip("pandas")
    d = _data(binary=binary)
    frame = pd.DataFrame({"y": d["y"], "x": d["x1"], "variant": d["t"]})
    ref = tt.Mean("y", covariate="x").analyze(frame, 0, 1, "variant")
    _check_tea(ref, cuped_mean(d["y"], d["t"], d["x1"]))


def test_tea_tasting_ratio_of_means_with_covariates() -> None:
    tt = _tea()
    pd = pytest.importorskip("pandas")
    d = _ratio_data()
    frame = pd.DataFrame({"c": d["c"], "s": d["s"], "pc": d["pc"], "ps": d["ps"],
                          "variant": d["t"]})
    metric = tt.RatioOfMeans("c", "s", numer_covariate="pc",
                             denom_covariate="ps")
    _check_tea(metric.analyze(frame, 0, 1, "variant"),
               cuped_ratio(d["c"], d["s"], d["t"], d["pc"], d["ps"]))
    plain = tt.RatioOfMeans("c", "s").analyze(frame, 0, 1, "variant")
    _check_tea(plain, cuped_ratio(d["c"], d["s"], d["t"]))


def test_relative_interval_with_a_control_mean_near_zero_is_inf_not_an_error() -> None:
    """Regression: the delta-method interval of the relative lift overflowed (OverflowError)
    when the adjusted control mean was near 0 (found by the 1,000-run simulation through the
    router); in logs it is [-1, inf] there, and unchanged otherwise."""
    import dataclasses
    import math

    import numpy as np

    from modelrouter.stats.cuped import cuped_mean

    rng = np.random.default_rng(3)
    t = np.r_[np.zeros(300), np.ones(300)]
    x = rng.normal(size=600)
    y = 1.0 + 0.2 * x + 0.1 * t + rng.normal(size=600)
    r = cuped_mean(y, t, x)
    ci = r.relative_confidence_interval()
    ratio, se = r.mean_treatment / r.mean_control, r._log_std_err
    from scipy import stats as st

    df = r._log_df
    q = st.norm.ppf(0.975) if not math.isfinite(df) else st.t.ppf(0.975, df)
    assert ci.low == pytest.approx(ratio * math.exp(-q * se) - 1.0, rel=1e-9)
    assert ci.high == pytest.approx(ratio * math.exp(q * se) - 1.0, rel=1e-9)
    tiny = dataclasses.replace(r, mean_control=1e-300, _log_std_err=1e6)
    ci = tiny.relative_confidence_interval()
    assert ci.low == -1.0 and ci.high == math.inf
