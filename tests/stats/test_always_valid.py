"""mSPRT against direct numerical integration of the mixture, and A/A simulations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from modelrouter.stats import always_valid_test, mixing_variance, msprt_pvalues


def _mixture_lr(d: float, v: float, tau2: float, theta0: float = 0.0) -> float:
    """Integral of N(d; theta, v) / N(d; theta0, v) over theta ~ N(theta0, tau2), by quadrature."""
    sd = math.sqrt(tau2)

    def f(th: float) -> float:
        s = math.sqrt(v)
        return float(stats.norm.pdf(d, th, s) / stats.norm.pdf(d, theta0, s)
                     * stats.norm.pdf(th, theta0, sd))

    return integrate.quad(f, theta0 - 12 * sd, theta0 + 12 * sd, epsabs=0, epsrel=1e-11,
                          limit=400, points=[d])[0]


@pytest.mark.parametrize(("d", "v", "tau2", "theta0"), [
    (0.01, 1e-4, 1e-4, 0.0), (-0.3, 0.02, 0.5, 0.1), (0.002, 4e-6, 1e-5, 0.0), (1.0, 1.0, 2.0, 0)])
def test_likelihood_ratio_matches_quadrature(d: float, v: float, tau2: float,
                                             theta0: float) -> None:
    r = always_valid_test(d, v, tau2, null_value=theta0)
    assert math.exp(r.statistic) == pytest.approx(_mixture_lr(d, v, tau2, theta0), rel=1e-7)
    assert r.pvalue == pytest.approx(min(1.0, 1.0 / _mixture_lr(d, v, tau2, theta0)), rel=1e-7)


def test_interval_ends_are_where_the_ratio_hits_one_over_alpha() -> None:
    d, v, tau2 = 0.012, 2e-5, 1e-4
    ci = always_valid_test(d, v, tau2).confidence_interval(0.9)
    for end in (ci.low, ci.high):
        assert _mixture_lr(d, v, tau2, end) == pytest.approx(10.0, rel=1e-6)
    assert 0.012 in ci


def test_running_minimum_and_intersection() -> None:
    d = np.array([0.03, 0.01, 0.02, -0.005])
    v = np.array([4e-4, 1e-4, 5e-5, 2.5e-5])
    r = always_valid_test(d, v, tau2=1e-4)
    per_look = [always_valid_test(d[i], v[i], 1e-4) for i in range(4)]
    assert r.pvalues() == pytest.approx(np.minimum.accumulate([x.pvalue for x in per_look]))
    assert r.pvalue == min(x.pvalue for x in per_look)
    ci = r.confidence_interval()
    assert ci.low == pytest.approx(max(x.confidence_interval().low for x in per_look))
    assert ci.high == pytest.approx(min(x.confidence_interval().high for x in per_look))
    assert r.looks == 4 and "always-valid" in r.explain()
    assert r.to_dict()["confidence_interval"]["low"] == pytest.approx(ci.low)


def test_zero_variance_looks_carry_no_information() -> None:
    p = msprt_pvalues([0.0, 0.02], [0.0, 1e-4], tau2=1e-4)
    assert p[0] == 1.0 and p[1] == pytest.approx(always_valid_test(0.02, 1e-4, 1e-4).pvalue)


def test_mixing_variance_choices() -> None:
    assert mixing_variance(0.01) == pytest.approx(1e-4)
    tau2 = mixing_variance(horizon_variance=2e-5, alpha=0.05)

    def width(t2: float) -> float:
        ci = always_valid_test(0.0, 2e-5, t2).confidence_interval(0.95)
        return ci.high - ci.low

    assert width(tau2) <= min(width(tau2 * 0.8), width(tau2 * 1.25))


# confseq (Howard, Ramdas, McAuliffe & Sekhon 2021), src/confseq/uniform_boundaries.h,
# transcribed from github.com/gostevehoward/confseq (it builds C++ and is not a dependency):
# TwoSidedNormalMixture, with s the sum and v the intrinsic time (variance) of the process.
def _confseq_log_superMG(s: float, v: float, rho: float) -> float:
    return 0.5 * math.log(rho / (v + rho)) + s * s / (2 * (v + rho))


def _confseq_bound(v: float, alpha: float, rho: float) -> float:
    return math.sqrt((v + rho) * (math.log(1 + v / rho) + 2 * math.log(1 / alpha)))


def _confseq_best_rho(v_opt: float, alpha: float) -> float:
    return v_opt / (2 * math.log(1 / alpha) + math.log(1 + 2 * math.log(1 / alpha)))


@pytest.mark.parametrize(("d", "v", "tau2"), [
    (0.01, 1e-4, 1e-4), (-0.3, 0.02, 0.5), (0.002, 4e-6, 1e-5), (1.0, 1.0, 2.0), (40.0, 9.0, 1e3)])
def test_against_confseq_two_sided_normal_mixture(d: float, v: float, tau2: float) -> None:
    """An estimate d with variance V is the process s = d / V at intrinsic time 1 / V, and the
    N(0, tau2) mixture is confseq's rho = 1 / tau2: the log likelihood ratio is confseq's
    log_superMG, the interval's half-width V times confseq's bound."""
    r = always_valid_test(d, v, tau2)
    assert r.statistic == pytest.approx(_confseq_log_superMG(d / v, 1 / v, 1 / tau2), rel=1e-12)
    for level in (0.9, 0.95, 0.99):
        ci = r.confidence_interval(level)
        half = v * _confseq_bound(1 / v, 1 - level, 1 / tau2)
        assert (ci.high - ci.low) / 2 == pytest.approx(half, rel=1e-12)


def test_horizon_tau2_is_at_least_as_narrow_as_confseqs_closed_form_rho() -> None:
    """confseq's best_rho is a closed-form near-optimum; ours minimises the width exactly."""
    v_n = 2e-5
    ours = mixing_variance(horizon_variance=v_n, alpha=0.05)
    theirs = 1.0 / _confseq_best_rho(1.0 / v_n, 0.05)
    width = [always_valid_test(0.0, v_n, t).confidence_interval(0.95).high for t in (ours, theirs)]
    assert width[0] <= width[1] <= width[0] * 1.001
    assert ours / theirs == pytest.approx(1.0, abs=0.05)


def test_event_gate_leaves_looks_out() -> None:
    d = np.array([0.5, 0.03, 0.02])
    v = np.array([1e-3, 1e-4, 5e-5])
    gated = always_valid_test(d, v, 1e-4, events=[40, 120, 300])
    later = always_valid_test(d[1:], v[1:], 1e-4)
    assert gated.pvalue == later.pvalue and gated.looks_entered == 2 and gated.looks == 3
    assert gated.confidence_interval() == later.confidence_interval()
    assert gated.pvalues()[0] == 1.0
    assert gated.pvalues()[1:] == pytest.approx(later.pvalues())
    assert msprt_pvalues(d, v, 1e-4, events=[40, 120, 300]) == pytest.approx(gated.pvalues())
    assert "(2 of 3 did)" in gated.method and "2 of 3" in gated.explain()
    out = gated.to_dict()
    assert (out["looks_entered"], out["min_events"], out["events"]) == (2, 100, [40, 120, 300])
    none = always_valid_test(d, v, 1e-4, events=[1, 2, 3])
    assert none.pvalue == 1.0 and none.to_dict()["confidence_interval"] == {"low": None,
                                                                         "high": None}
    ungated = always_valid_test(d, v, 1e-4)  # no counts given: every look enters
    assert ungated.looks_entered == 3 and ungated.min_events == 0 and "events" not in \
        ungated.method


def _aa_always_valid(runs: int, seed: int, p: float = 0.05, units: int = 10_000,
                     batch: int = 100) -> float:
    """Share of A/A runs whose always-valid p-value ever drops to 0.05, checked every batch."""
    rng = np.random.default_rng(seed)
    per, looks = batch // 2, units // batch
    n = per * np.arange(1, looks + 1)
    xa = rng.binomial(per, p, (runs, looks)).cumsum(axis=1) / n
    xb = rng.binomial(per, p, (runs, looks)).cumsum(axis=1) / n
    var = (xa * (1 - xa) + xb * (1 - xb)) / n
    tau2 = mixing_variance(horizon_variance=2 * p * (1 - p) / n[-1])
    rejected = [msprt_pvalues(xb[i] - xa[i], var[i], tau2)[-1] <= 0.05 for i in range(runs)]
    return float(np.mean(rejected))


def test_aa_binary_checked_every_batch_rejects_at_most_alpha() -> None:
    assert _aa_always_valid(runs=1_500, seed=11) <= 0.05


@pytest.mark.slow
def test_aa_binary_checked_every_batch_rejects_at_most_alpha_large() -> None:
    assert _aa_always_valid(runs=20_000, seed=12) <= 0.05


def test_normal_data_type_one_error_under_continuous_monitoring() -> None:
    rng = np.random.default_rng(5)
    runs, looks = 4_000, 400
    n = np.arange(1, looks + 1) * 10.0
    d = rng.standard_normal((runs, looks)).cumsum(axis=1) * np.sqrt(2 * 10.0) / n
    var = 2.0 / n
    hits = np.mean([msprt_pvalues(d[i], var, tau2=0.05)[-1] <= 0.05 for i in range(runs)])
    assert hits <= 0.05


def test_detects_a_real_difference() -> None:
    rng = np.random.default_rng(3)
    n = 500 * np.arange(1, 21)
    xa = rng.binomial(500, 0.05, 20).cumsum() / n
    xb = rng.binomial(500, 0.065, 20).cumsum() / n
    var = (xa * (1 - xa) + xb * (1 - xb)) / n
    r = always_valid_test(xb - xa, var, tau2=mixing_variance(0.015))
    assert r.pvalue < 0.05 and 0.0 not in r.confidence_interval()


@pytest.mark.parametrize(("call", "match"), [
    (lambda: always_valid_test(0.1, -1.0, 1.0), r"variance must be finite and >= 0"),
    (lambda: always_valid_test([0.1, 0.2], [1.0], 1.0), "matching scalars or 1-D"),
    (lambda: always_valid_test(0.1, 1.0, 0.0), r"tau2 \(0.0\) must be a positive"),
    (lambda: always_valid_test(float("nan"), 1.0, 1.0), "difference must be finite"),
    (lambda: always_valid_test(0.1, 1.0, 1.0).confidence_interval(1.5),
     r"confidence_level \(1.5\)"),
    (lambda: mixing_variance(), r"mde \(None\) must be a non-zero"),
    (lambda: always_valid_test([0.1, 0.2], [1.0, 1.0], 1.0, events=[3]), "one non-negative"),
    (lambda: always_valid_test(0.1, 1.0, 1.0, events=5, min_events=-2),
     r"min_events \(-2\) must be a non-negative integer"),
    (lambda: mixing_variance(horizon_variance=-1.0), r"horizon_variance \(-1.0\)"),
])
def test_bad_input(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]
