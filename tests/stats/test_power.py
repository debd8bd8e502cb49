"""Planning formulas against the seed table, statsmodels, rpact and Jennison & Turnbull."""

from __future__ import annotations

import math

import pytest
from scipy.stats import norm
from statsmodels.stats.power import NormalIndPower, zt_ind_solve_power
from statsmodels.stats.proportion import proportion_effectsize

from modelrouter.stats import (
    classic_boundaries,
    design_characteristics,
    duration_days,
    inflation_factor,
    mde_means,
    mde_proportions,
    sample_size_means,
    sample_size_proportions,
    spending_boundaries,
)

SEED_TABLE = [(0.005, 31_231), (0.010, 8_155), (0.015, 3_778), (0.020, 2_210),
              (0.030, 1_057), (0.050, 432)]


@pytest.mark.parametrize(("mde", "n"), SEED_TABLE)
def test_seed_table_reproduces_exactly(mde: float, n: int) -> None:
    r = sample_size_proportions(0.05, 0.05 + mde)
    assert r.n_per_group == n and r.n_treatment == n and r.n_total == 2 * n


@pytest.mark.parametrize(("mde", "n"), SEED_TABLE)
def test_proportions_formula_written_out_independently(mde: float, n: int) -> None:
    p1, p2 = 0.05, 0.05 + mde
    z = norm.ppf(0.975) + norm.ppf(0.8)
    exact = z**2 * (p1 * (1 - p1) + p2 * (1 - p2)) / (p2 - p1) ** 2
    assert sample_size_proportions(p1, p2).n_exact == pytest.approx(exact, rel=1e-12)


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
        mde = mde_proportions(n, 0.05)
        assert sample_size_proportions(0.05, 0.05 + mde.absolute).n_exact == pytest.approx(
            n, rel=1e-9)
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
    (lambda: duration_days(-5, 10), r"n_total \(-5\) must be"),
    (lambda: duration_days(5, 0), r"units_per_day \(0\) must be positive"),
])
def test_bad_input(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]
