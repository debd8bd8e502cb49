"""Planning formulas against the seed table, statsmodels, rpact and Jennison & Turnbull."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom, norm
from statsmodels.stats.power import NormalIndPower, zt_ind_solve_power
from statsmodels.stats.proportion import (
    proportion_effectsize,
    samplesize_proportions_2indep_onetail,
)

from modelrouter.stats import (
    classic_boundaries,
    design_characteristics,
    duration_days,
    inflation_factor,
    mde_means,
    mde_proportions,
    mde_ratio,
    ratio_unit_variance,
    sample_size_means,
    sample_size_proportions,
    sample_size_ratio,
    spending_boundaries,
)
from modelrouter.stats.power import NULL_VARIANCES
from modelrouter.stats.twosample import two_proportion_ztest

SEED_TABLE = [(0.005, 31_231), (0.010, 8_155), (0.015, 3_778), (0.020, 2_210),
              (0.030, 1_057), (0.050, 432)]


@pytest.mark.parametrize(("mde", "n"), SEED_TABLE)
def test_seed_table_reproduces_exactly(mde: float, n: int) -> None:
    # the seed table plans a Wald (unpooled) z-test
    r = sample_size_proportions(0.05, 0.05 + mde, null_variance="unpooled")
    assert r.n_per_group == n and r.n_treatment == n and r.n_total == 2 * n


@pytest.mark.parametrize(("mde", "n"), SEED_TABLE)
def test_proportions_formula_written_out_independently(mde: float, n: int) -> None:
    p1, p2 = 0.05, 0.05 + mde
    za, zb = norm.ppf(0.975), norm.ppf(0.8)
    exact = (za + zb) ** 2 * (p1 * (1 - p1) + p2 * (1 - p2)) / (p2 - p1) ** 2
    assert sample_size_proportions(p1, p2, null_variance="unpooled").n_exact == pytest.approx(
        exact, rel=1e-12)
    # Fleiss, Levin & Paik (2003) eq. 4.14 without continuity correction, equal groups
    pbar = (p1 + p2) / 2
    fleiss = (za * math.sqrt(2 * pbar * (1 - pbar))
              + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / (p2 - p1) ** 2
    assert sample_size_proportions(p1, p2).n_exact == pytest.approx(fleiss, rel=1e-12)
    assert sample_size_proportions(p1, p2).n_per_group >= n  # pooled needs a few more here


# (p1 control, p2 treatment, ratio n_t / n_c, sided)
FLEISS_CASES = [(0.05, 0.06, 1.0, 2), (0.1, 0.2, 3.0, 2), (0.3, 0.2, 0.25, 2),
                (0.05, 0.1, 0.3, 1), (0.1, 0.15, 2.0, 1), (0.5, 0.55, 1.0, 2)]


@pytest.mark.parametrize(("p1", "p2", "ratio", "sided"), FLEISS_CASES)
def test_pooled_proportions_match_statsmodels_fleiss(p1: float, p2: float, ratio: float,
                                                     sided: int) -> None:
    """statsmodels' samplesize_proportions_2indep_onetail: pooled variance under H0 (pbar of
    the two groups weighted by their sizes), unpooled under H1; its sample 1 is our control
    (p2 + diff with diff = p1 - p2) and nobs2 = ratio * nobs1 our treatment."""
    alt = "two-sided" if sided == 2 else ("larger" if p1 > p2 else "smaller")
    sm = samplesize_proportions_2indep_onetail(p1 - p2, p2, 0.8, ratio=ratio, alpha=0.05,
                                               alternative=alt)
    r = sample_size_proportions(p1, p2, ratio=ratio, sided=sided)
    assert r.n_exact == pytest.approx(sm, rel=1e-9)
    if p2 > p1:  # mde_proportions inverts for an increase
        mde = mde_proportions(r.n_exact, p1, ratio=ratio, sided=sided)
        assert mde.absolute == pytest.approx(p2 - p1, rel=1e-9)


def _simulated_power(p1: float, p2: float, ratio: float, n: int, runs: int,
                     seed: int) -> float:
    """Share of runs in which the library's own two-proportion z-test (pooled SE) rejects at
    0.05 two-sided, with n control and ceil(ratio n) treatment units."""
    rng = np.random.default_rng(seed)
    nt = math.ceil(n * ratio)
    xc, xt = rng.binomial(n, p1, runs), rng.binomial(nt, p2, runs)
    return float(np.mean([two_proportion_ztest(int(a), n, int(b), nt).pvalue <= 0.05
                          for a, b in zip(xc, xt)]))


POWER_CASES = [(0.1, 0.2, 3.0), (0.3, 0.2, 0.25), (0.1, 0.15, 2.0)]


@pytest.mark.parametrize(("p1", "p2", "ratio"), POWER_CASES)
def test_planned_n_gives_nominal_power_with_the_library_test(p1: float, p2: float,
                                                             ratio: float) -> None:
    """3,000 runs (MC SE 0.0073 at power 0.8): the pooled (Fleiss) n reaches 0.8 within 2 MC
    SE with compare()'s test; the unpooled n, planned for a different test, falls short with
    unequal groups (measured 0.72 / 0.75 / 0.77 in 20,000 runs each)."""
    runs, se = 3_000, math.sqrt(0.8 * 0.2 / 3_000)
    pooled = sample_size_proportions(p1, p2, ratio=ratio).n_per_group
    assert abs(_simulated_power(p1, p2, ratio, pooled, runs, seed=1) - 0.8) <= 2 * se
    unpooled = sample_size_proportions(p1, p2, ratio=ratio, null_variance="unpooled")
    assert _simulated_power(p1, p2, ratio, unpooled.n_per_group, runs, seed=2) < 0.8 - 2 * se


def _exact_power(p1: float, p2: float, ratio: float, n: int) -> float:
    """Rejection probability of the pooled two-proportion z-test (0.05, two-sided), written
    out here and summed over every pair of binomial counts (scipy pmf): no Monte Carlo."""
    nt = math.ceil(n * ratio)
    a, b = np.arange(n + 1)[:, None], np.arange(nt + 1)[None, :]
    pool = (a + b) / (n + nt)
    se = np.sqrt(pool * (1 - pool) * (1 / n + 1 / nt))
    diff = b / nt - a / n
    z = np.divide(diff, se, out=np.zeros_like(diff), where=se > 0)
    w = binom.pmf(a, n, p1) * binom.pmf(b, nt, p2)
    return float((w * (np.abs(z) >= norm.ppf(0.975))).sum())


@pytest.mark.parametrize(("p1", "p2", "ratio"), [*POWER_CASES, (0.05, 0.1, 0.3)])
def test_exact_power_of_the_pooled_test_at_the_planned_n(p1: float, p2: float,
                                                         ratio: float) -> None:
    """The pooled n gives the pooled test 0.80-0.806 (rounding n up and the far tail add a
    little: 0.8036-0.8041 here); the unpooled n gives it less with unequal groups."""
    n = sample_size_proportions(p1, p2, ratio=ratio).n_per_group
    assert 0.8 <= _exact_power(p1, p2, ratio, n) <= 0.806
    if (p1, p2, ratio) in POWER_CASES:
        nu = sample_size_proportions(p1, p2, ratio=ratio, null_variance="unpooled")
        assert _exact_power(p1, p2, ratio, nu.n_per_group) < 0.78


@pytest.mark.slow
@pytest.mark.parametrize(("p1", "p2", "ratio"), [*POWER_CASES, (0.05, 0.06, 1.0),
                                                 (0.05, 0.1, 0.3)])
def test_planned_n_gives_nominal_power_large(p1: float, p2: float, ratio: float) -> None:
    """20,000 runs per case (MC SE 0.0028): within 2 MC SE of the test's exact power at that n
    (enumerated above), which is the nominal 0.8 up to the normal approximation's +0.006; for
    0.05 vs 0.06 (a grid too large to enumerate in a test) within 2 MC SE of [0.8, 0.806]."""
    n = sample_size_proportions(p1, p2, ratio=ratio).n_per_group
    sim = _simulated_power(p1, p2, ratio, n, 20_000, seed=3)
    se = math.sqrt(0.8 * 0.2 / 20_000)
    if n > 5_000:
        assert 0.8 - 2 * se <= sim <= 0.806 + 2 * se
        return
    exact = _exact_power(p1, p2, ratio, n)
    assert 0.8 <= exact <= 0.806
    assert abs(sim - exact) <= 2 * se


def test_proportions_close_to_statsmodels_cohens_h() -> None:
    # statsmodels' usual recipe uses Cohen's h (arcsine); a different approximation, so only close
    h = proportion_effectsize(0.06, 0.05)
    sm = NormalIndPower().solve_power(effect_size=h, alpha=0.05, power=0.8, ratio=1.0)
    ours = sample_size_proportions(0.05, 0.06).n_exact
    assert ours == pytest.approx(sm, rel=0.03)


@pytest.mark.parametrize(("delta", "sd", "ratio", "sided"), [
    (0.1, 1.0, 1.0, 2), (2.5, 10.0, 2.0, 2), (0.3, 1.5, 0.5, 1)])
def test_means_matches_statsmodels_normal_ind_power(delta: float, sd: float, ratio: float,
                                                    sided: int) -> None:
    alt = "two-sided" if sided == 2 else "larger"
    sm = zt_ind_solve_power(effect_size=delta / sd, alpha=0.05, power=0.8, ratio=ratio,
                            alternative=alt)
    r = sample_size_means(delta, sd, ratio=ratio, sided=sided)
    # statsmodels adds the (negligible) far-tail rejection probability of the two-sided test
    assert r.n_exact == pytest.approx(sm, rel=1e-4)
    assert r.n_per_group == math.ceil(r.n_exact)
    assert r.n_treatment == math.ceil(r.n_exact * ratio)


def test_mde_round_trip_and_statsmodels() -> None:
    for n in (500, 8_155, 31_231, 200_000):
        for nv in NULL_VARIANCES:
            mde = mde_proportions(n, 0.05, null_variance=nv)
            assert sample_size_proportions(0.05, 0.05 + mde.absolute, null_variance=nv
                                           ).n_exact == pytest.approx(n, rel=1e-9)
    m = mde_means(1000, 2.0, ratio=1.5)
    sm = NormalIndPower().solve_power(nobs1=1000, alpha=0.05, power=0.8, ratio=1.5)
    assert m.absolute / 2.0 == pytest.approx(sm, rel=1e-4)
    assert sample_size_means(m.absolute, 2.0, ratio=1.5).n_exact == pytest.approx(1000)


@pytest.mark.parametrize(("k", "kind", "power", "published"), [
    # Jennison & Turnbull (2000) Tables 2.3 (O'Brien-Fleming R_B) and 2.4 (Pocock R_P), alpha 0.05
    (2, "obrien-fleming", 0.8, 1.008), (5, "obrien-fleming", 0.8, 1.028),
    (5, "obrien-fleming", 0.9, 1.026), (2, "pocock", 0.8, 1.110), (5, "pocock", 0.8, 1.229),
    (5, "pocock", 0.9, 1.207), (3, "pocock", 0.9, 1.151),
])
def test_inflation_factor_matches_published(k: int, kind: str, power: float,
                                            published: float) -> None:
    d = classic_boundaries(k, kind=kind)  # type: ignore[arg-type]
    assert inflation_factor(d, power) == pytest.approx(published, abs=1e-3)


def test_design_characteristics_match_rpact() -> None:
    # rpact test-f_design_group_sequential.R: asHSD gammaA=0, alpha 0.03 one-sided, beta 0.14
    d = spending_boundaries([0.2, 0.4, 1.0], alpha=0.03, sided=1, spending="hwang-shih-decani",
                            gamma=0)
    c = design_characteristics(d, power=0.86)
    assert c.inflation_factor == pytest.approx(1.0788327, rel=1e-6)
    assert c.drift**2 == pytest.approx(9.4594101, rel=1e-6)
    assert list(c.rejection_probabilities) == pytest.approx([0.12783451, 0.21271713, 0.51944835],
                                                            rel=1e-5)
    assert c.expected_sample_size_h1 == pytest.approx(0.83081135, rel=1e-5)
    assert c.expected_sample_size_h0 == pytest.approx(1.0697705, rel=1e-5)
    assert "inflation_factor=1.07883" in repr(c)


def test_sequential_sample_size_is_fixed_times_inflation() -> None:
    d = spending_boundaries([0.2, 0.4, 0.6, 0.8, 1.0])
    fixed = sample_size_proportions(0.05, 0.06)
    seq = sample_size_proportions(0.05, 0.06, sequential=d)
    infl = inflation_factor(d, 0.8)
    assert seq.n_exact == pytest.approx(fixed.n_exact * infl, rel=1e-12)
    assert seq.n_per_group == math.ceil(fixed.n_exact * infl)
    assert "inflation factor" in seq.explain()
    assert mde_proportions(seq.n_per_group, 0.05, sequential=d).absolute == pytest.approx(
        0.01, rel=1e-3)


def test_duration_days() -> None:
    assert duration_days(16_310, 1_000) == 17
    assert duration_days(sample_size_proportions(0.05, 0.06), 1_000, traffic_fraction=0.5) == 33
    assert duration_days(10_000, 1_000) == 10


@pytest.mark.parametrize(("call", "match"), [
    (lambda: sample_size_proportions(0.05, 0.05), r"p2 \(0.05\) must differ from p1"),
    (lambda: sample_size_proportions(1.2, 0.05), r"p1 \(1.2\) must be in \(0, 1\)"),
    (lambda: sample_size_proportions(0.05, 0.06, alpha=2), r"alpha \(2\) must be in"),
    (lambda: sample_size_proportions(0.05, 0.06, power=1), r"power \(1\) must be in"),
    (lambda: sample_size_proportions(0.05, 0.06, ratio=-1), r"ratio \(-1\) must be a positive"),
    (lambda: sample_size_means(0, 1), r"delta \(0\) must be a non-zero"),
    (lambda: sample_size_means(1, -2), r"sd \(-2\) must be a positive"),
    (lambda: sample_size_proportions(0.05, 0.06, sequential=spending_boundaries([1.0], 0.1)),
     "must match alpha=0.05"),
    (lambda: mde_proportions(3, 0.5), r"n \(3\) is too small"),
    (lambda: sample_size_proportions(0.05, 0.06, null_variance="pool"),
     r"null_variance \('pool'\) must be one of 'pooled', 'unpooled'"),
    (lambda: duration_days(-5, 10), r"n_total \(-5\) must be"),
    (lambda: duration_days(5, 0), r"units_per_day \(0\) must be positive"),
])
def test_bad_input(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]


# --- ratio metrics (sum(x) / sum(y) per variant, delta-method z-test) -------------------------


def _ratio_units(rng: np.random.Generator, shape: tuple[int, ...], lam: float, mu: float,
                 shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit events y ~ Poisson(lam) and x = sum of y values, each exponential(mean mu) plus
    ``shift`` (a sum of k exponentials is Gamma(k, mu); shape 0 gives 0)."""
    y = rng.poisson(lam, size=shape).astype(np.float64)
    x = rng.gamma(y, mu) + shift * y
    return x, y


def test_ratio_linearised_variance_equals_the_delta_method_of_the_analysis() -> None:
    from modelrouter.stats import Moments

    rng = np.random.default_rng(12)
    x, y = _ratio_units(rng, (5000,), lam=2.0, mu=1.5)
    m = Moments.from_arrays(x, y)
    cov = np.cov(x, y, ddof=1)
    sigma2 = ratio_unit_variance(float(x.mean()), float(y.mean()), float(cov[0, 0]),
                                 float(cov[1, 1]), float(cov[0, 1]))
    assert sigma2 == pytest.approx(m.ratio_var * m.n, rel=1e-6)
    # and the closed form for this process: sigma^2 = mu^2 / lam (sampling error ~ 3%)
    assert ratio_unit_variance(2.0 * 1.5, 2.0, 2 * 2.0 * 1.5**2, 2.0, 1.5 * 2.0) == \
        pytest.approx(1.5**2 / 2.0, rel=1e-12)
    assert sigma2 == pytest.approx(1.5**2 / 2.0, rel=0.1)


@pytest.mark.parametrize("ratio", [1.0, 2.0])
def test_ratio_reduces_to_means_with_one_event_per_unit(ratio: float) -> None:
    design = spending_boundaries([0.5, 1.0])
    for seq in (None, design):
        a = sample_size_ratio(0.3, 5.0, 1.0, 9.0, 0.0, 0.0, ratio=ratio, sequential=seq)
        b = sample_size_means(0.3, 3.0, ratio=ratio, sequential=seq)
        assert a.n_exact == pytest.approx(b.n_exact, rel=1e-12)
        assert (a.n_per_group, a.n_treatment, a.n_total) == \
            (b.n_per_group, b.n_treatment, b.n_total)
    assert mde_ratio(1000, 5.0, 1.0, 9.0, 0.0, 0.0).absolute == \
        pytest.approx(mde_means(1000, 3.0).absolute, rel=1e-12)


def test_mde_ratio_inverts_sample_size_ratio() -> None:
    n = sample_size_ratio(0.05, 3.0, 2.0, 12.0, 2.0, 4.0, ratio=2.0, sided=1)
    mde = mde_ratio(n.n_exact, 3.0, 2.0, 12.0, 2.0, 4.0, ratio=2.0, sided=1)
    assert mde.absolute == pytest.approx(0.05, rel=1e-12)
    assert mde.baseline == 1.5 and mde.relative == pytest.approx(0.05 / 1.5)
    assert "linearised" in n.explain()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"delta": 0.0}, "delta (0.0) must be a non-zero number"),
    ({"mean_y": 0.0}, "mean_y (0.0) must be a positive number"),
    ({"mean_x": math.nan}, "mean_x (nan) must be a finite number"),
    ({"var_x": -1.0}, "var_x (-1.0) must be a non-negative number"),
    ({"var_y": math.inf}, "var_y (inf) must be a finite number"),
    ({"cov_xy": 10.0}, "cov_xy (10.0) must satisfy"),
    ({"var_x": 2.25, "var_y": 1.0, "cov_xy": 1.5}, "must be positive"),  # x = 1.5 y exactly
    ({"ratio": 0.0}, "ratio (0.0) must be a positive number"),
])
def test_ratio_rejects_bad_inputs_naming_the_argument(kwargs: dict[str, float],
                                                      message: str) -> None:
    args = {"delta": 0.1, "mean_x": 3.0, "mean_y": 2.0, "var_x": 12.0, "var_y": 2.0,
            "cov_xy": 4.0} | kwargs
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sample_size_ratio(**args)  # type: ignore[arg-type]


def _ratio_power(runs: int, seed: int) -> tuple[float, int]:
    """Share of simulated experiments the library's delta-method z-test rejects at alpha 0.05,
    with n per group from sample_size_ratio for power 0.8.

    Units: Poisson(2) events, exponential(mean 1) values; the treatment adds 0.05 to every
    value, which moves the ratio by exactly 0.05 and keeps the linearised per-unit variance
    (sigma^2 = mu^2 / lam = 0.5) equal in both groups, the helper's assumption."""
    from modelrouter.stats import Moments
    from modelrouter.stats.twosample import ratio_ztest

    lam, mu, delta = 2.0, 1.0, 0.05
    n = sample_size_ratio(delta, lam * mu, lam, 2 * lam * mu**2, lam, lam * mu).n_per_group
    rng = np.random.default_rng(seed)
    hits, chunk = 0, 100
    for start in range(0, runs, chunk):
        k = min(chunk, runs - start)
        xc, yc = _ratio_units(rng, (k, n), lam, mu)
        xt, yt = _ratio_units(rng, (k, n), lam, mu, shift=delta)
        for i in range(k):
            mc, mt = Moments.from_arrays(xc[i], yc[i]), Moments.from_arrays(xt[i], yt[i])
            test = ratio_ztest(mc.ratio, mc.ratio_var, mt.ratio, mt.ratio_var)
            hits += test.pvalue < 0.05
    return hits / runs, n


def test_ratio_sample_size_reaches_power_fast() -> None:
    # 300 runs: MC SE = sqrt(0.8 * 0.2 / 300) = 0.023; accept within 3 SE (0.069)
    power, n = _ratio_power(300, seed=3)
    assert n == math.ceil((norm.ppf(0.975) + norm.ppf(0.8)) ** 2 * 0.5 * 2 / 0.05**2 - 1e-9)
    assert abs(power - 0.8) < 3 * math.sqrt(0.8 * 0.2 / 300)


@pytest.mark.slow
def test_ratio_sample_size_reaches_power() -> None:
    # 2,000 runs: MC SE = sqrt(0.8 * 0.2 / 2000) = 0.0089; accept within 2 SE (0.018)
    power, _ = _ratio_power(2000, seed=2018)
    assert abs(power - 0.8) < 2 * math.sqrt(0.8 * 0.2 / 2000)
