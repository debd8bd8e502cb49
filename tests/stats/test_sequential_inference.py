"""Inference after stopping and non-binding futility bounds, against rpact's expected values.

rpact's unit tests were removed from its repository in commit 02bcd3a5; the values below are from
its parent, b101e4be0a7dcecb136232419c699b7655c9edba (github.com/rpact-com/rpact), file and line
cited at each test. A Wang-Tsiatis design (rpact ``typeOfDesign = "WT"``) has boundaries
``C t^(deltaWT - 1/2)``; its constant is solved here with scipy's brentq on our exit
probabilities (the RCIs, which rpact derives from exactly these boundaries, check it).
The log-rank data enter as in rpact: ``log HR = 2 z / sqrt(events)``, s.e. ``2 / sqrt(events)``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

from modelrouter.stats import (
    SequentialDesign,
    exit_probabilities,
    futility_bounds,
    futility_design,
    repeated_confidence_intervals,
    spending_boundaries,
    stagewise_exceedance,
    stagewise_inference,
)

RATES = np.array([0.2, 0.4, 1.0])


def wang_tsiatis(rates: np.ndarray, delta: float, alpha: float) -> SequentialDesign:
    """One-sided WT boundaries C t^(delta - 1/2) with total alpha (no futility: non-binding)."""
    shape = rates ** (delta - 0.5)
    c = brentq(lambda c: exit_probabilities(c * shape, rates, 0.0, 1)[0].sum() - alpha,
               1.0, 6.0, xtol=1e-13)
    up, _ = exit_probabilities(c * shape, rates, 0.0, 1)
    return SequentialDesign(rates, c * shape, np.cumsum(up), alpha, 1, "wang-tsiatis")


# -- repeated confidence intervals and final inference (rpact getAnalysisResults) --------------

def test_rpact_survival_three_stage_group_sequential() -> None:
    # test-f_analysis_base_survival.R lines 91-126: getDesignGroupSequential(kMax = 3,
    # alpha = 0.025, informationRates = c(0.2, 0.4, 1), bindingFutility = FALSE, typeOfDesign =
    # "WT", deltaWT = 0.25, futilityBounds = c(0, 0)); overallEvents = c(8, 15, 38),
    # overallLogRanks = c(1.52, 1.38, 2.9), directionUpper = TRUE
    design = wang_tsiatis(RATES, 0.25, 0.025)
    events, z = np.array([8.0, 15.0, 38.0]), np.array([1.52, 1.38, 2.9])
    se = 2.0 / np.sqrt(events)
    rci = repeated_confidence_intervals(z * se, se, design)
    np.testing.assert_allclose([math.exp(c.low) for c in rci],
                               [0.34217973, 0.54553509, 1.325822], rtol=1e-6)
    np.testing.assert_allclose([math.exp(c.high) for c in rci],
                               [25.078822, 7.6235796, 4.9517237], rtol=1e-6)
    res = stagewise_inference(2.9, 3, design, std_err=float(se[2]))
    assert res.crossed and res.look == 3
    assert res.pvalue == pytest.approx(0.0074535505, rel=1e-6)  # finalPValues
    assert math.exp(res.estimate) == pytest.approx(2.4764002, rel=1e-6)  # medianUnbiased
    assert math.exp(res.ci.low) == pytest.approx(1.222663, rel=1e-6)
    assert math.exp(res.ci.high) == pytest.approx(4.752454, rel=1e-6)
    assert res.confidence == pytest.approx(0.95)


def test_rpact_survival_direction_reversed() -> None:
    # test-f_analysis_base_survival.R lines 274-309: the same design, overallEvents =
    # c(8, 15, 40), overallLogRanks = -c(1.52, 1.38, 2.9), directionUpper = FALSE (a decrease is
    # the alternative: the z is oriented by its sign, the hazard ratio is exp(-oriented effect))
    design = wang_tsiatis(RATES, 0.25, 0.025)
    events, z = np.array([8.0, 15.0, 40.0]), np.array([1.52, 1.38, 2.9])
    se = 2.0 / np.sqrt(events)
    rci = repeated_confidence_intervals(z * se, se, design)
    np.testing.assert_allclose([math.exp(-c.high) for c in rci],
                               [0.039874281, 0.13117197, 0.21029804], rtol=1e-6)
    np.testing.assert_allclose([math.exp(-c.low) for c in rci],
                               [2.9224407, 1.8330627, 0.75965452], rtol=1e-6)
    res = stagewise_inference(2.9, 3, design, std_err=float(se[2]))
    assert res.pvalue == pytest.approx(0.0074535505, rel=1e-6)
    assert math.exp(-res.estimate) == pytest.approx(0.41319107, rel=1e-6)
    assert math.exp(-res.ci.high) == pytest.approx(0.21888803, rel=1e-6)
    assert math.exp(-res.ci.low) == pytest.approx(0.82206073, rel=1e-6)


def test_stop_at_first_look_is_the_fixed_sample_inference() -> None:
    # nothing precedes look 1, so the ordering is Z_1 alone: p = 1 - Phi(z), the estimate is z
    # and the interval z -+ z_(1-alpha) (scipy.stats.norm)
    design = spending_boundaries([0.5, 1.0], alpha=0.025, sided=1, spending="pocock")
    z = 3.1
    res = stagewise_inference(z, 1, design, std_err=0.2)
    assert res.pvalue == pytest.approx(norm.sf(z), rel=1e-9)
    assert res.estimate == pytest.approx(z * 0.2, abs=1e-8)
    q = norm.ppf(0.975)
    assert (res.ci.low, res.ci.high) == pytest.approx(((z - q) * 0.2, (z + q) * 0.2), abs=1e-8)


def test_early_stop_shrinks_estimate_and_two_sided_is_symmetric() -> None:
    design = spending_boundaries([1 / 3, 2 / 3, 1.0], alpha=0.05, sided=2)
    up = stagewise_inference(3.0, 2, design, std_err=1.0)
    down = stagewise_inference(-3.0, 2, design, std_err=1.0)
    assert up.estimate < up.naive_estimate  # bias-adjusted towards zero
    assert down.estimate == pytest.approx(-up.estimate, abs=1e-7)
    assert (down.ci.low, down.ci.high) == pytest.approx((-up.ci.high, -up.ci.low), abs=1e-7)
    assert down.pvalue == pytest.approx(up.pvalue, abs=1e-10)
    # the stage-wise p-value is below the design's alpha exactly when the boundary was crossed
    assert up.pvalue < 0.05
    # G is a probability increasing in the drift
    g = [stagewise_exceedance(3.0, 2, design, m) for m in (-1.0, 0.0, 1.0, 3.0)]
    assert all(0 <= a < b <= 1 for a, b in zip(g, g[1:], strict=False))


def test_not_stopped_is_refused_and_inputs_checked() -> None:
    design = spending_boundaries([0.5, 1.0], alpha=0.05, sided=2)
    with pytest.raises(ValueError, match="has not stopped"):
        stagewise_inference(1.0, 1, design)
    with pytest.raises(ValueError, match="look"):
        stagewise_inference(5.0, 3, design)
    with pytest.raises(ValueError, match="std_err"):
        stagewise_inference(5.0, 1, design, std_err=0.0)
    with pytest.raises(ValueError, match="same length"):
        repeated_confidence_intervals([1.0], [1.0, 2.0], design)
    # the final look without crossing is a valid stop
    res = stagewise_inference(1.0, 2, design)
    assert not res.crossed and res.pvalue > 0.05 and res.ci.low < 0 < res.ci.high
    assert res.to_dict()["ci"]["low"] == pytest.approx(res.ci.low)


# -- futility bounds (rpact getDesignGroupSequential with typeBetaSpending, non-binding) -------

def test_rpact_one_sided_kim_demets_beta_spending_three_looks() -> None:
    # test-f_design_group_sequential.R lines 466-478: kMax = 3, alpha = 0.13, beta = 0.41,
    # typeOfDesign = "asOF", typeBetaSpending = "bsKD", informationRates = c(0.4, 0.75, 1),
    # gammaB = 2.5, bindingFutility = FALSE (sided = 1)
    d = futility_design([0.4, 0.75, 1.0], alpha=0.13, beta=0.41, sided=1,
                        beta_spending="power", beta_gamma=2.5)
    np.testing.assert_allclose(d.futility[:-1], [-0.83725762, 0.35992547], atol=2e-7)
    np.testing.assert_allclose(d.efficacy, [2.1280732, 1.4368565, 1.2468994], atol=2e-7)
    np.testing.assert_allclose(d.power, [0.10903632, 0.42541278, 0.59], atol=2e-7)
    np.testing.assert_allclose(d.beta_spent, [0.041489083, 0.19972711, 0.41], atol=2e-7)


def test_rpact_one_sided_kim_demets_beta_spending_four_looks() -> None:
    # test-f_design_group_sequential.R lines 512-524: as above with kMax = 4,
    # informationRates = c(0.4, 0.75, 0.85, 1)
    d = futility_design([0.4, 0.75, 0.85, 1.0], alpha=0.13, beta=0.41, sided=1,
                        beta_spending="power", beta_gamma=2.5)
    np.testing.assert_allclose(d.futility[:-1], [-0.82676531, 0.3743303, 0.65077266], atol=2e-7)
    np.testing.assert_allclose(d.efficacy, [2.1280732, 1.4368565, 1.422873, 1.2970881],
                               atol=2e-7)
    np.testing.assert_allclose(d.power, [0.1110095, 0.43099683, 0.50326205, 0.59], atol=2e-7)
    np.testing.assert_allclose(d.beta_spent, [0.041489083, 0.19972711, 0.27310596, 0.41],
                               atol=2e-7)


def test_rpact_two_sided_beta_spending_with_design_characteristics() -> None:
    # test-f_design_group_sequential_beta_spending.R lines 27-38 and 64-73:
    # informationRates = c(0.3, 0.4, 0.8, 1), alpha = 0.05, typeOfDesign = "asKD", gammaA = 2.5,
    # beta = 0.1, sided = 2, typeBetaSpending = "bsKD", gammaB = 1.5, bindingFutility = FALSE
    d = futility_design([0.3, 0.4, 0.8, 1.0], alpha=0.05, beta=0.1, sided=2, spending="power",
                        gamma=2.5, beta_spending="power", beta_gamma=1.5)
    np.testing.assert_allclose(d.efficacy, [3.0276355, 2.8984727, 2.2289649, 2.0639032],
                               atol=2e-7)
    # rpact prints NA for "no futility bound" (0 here: |Z| < 0 never stops)
    np.testing.assert_allclose(d.futility[:-1], [0.0, 0.13460523, 1.5007674], atol=2e-7)
    np.testing.assert_allclose(d.power, [0.12305271, 0.24472466, 0.79581714, 0.89999927],
                               atol=5e-7)
    np.testing.assert_allclose(d.beta_spent, [0, 0.010609935, 0.065960997, 0.1], atol=2e-7)
    # y$shift; rpact solves it to its bisection tolerance (its own final power is 0.89999927)
    assert d.drift**2 == pytest.approx(11.628636, rel=5e-6)
    # rpact's average sample numbers are relative to the fixed design's
    # nFixed = (z_(1-alpha/2) + z_(1-beta))^2 = 10.507423; ours to the maximum information
    n_fixed = (norm.ppf(0.975) + norm.ppf(0.9)) ** 2
    assert n_fixed == pytest.approx(10.507423, rel=1e-7)
    assert d.asn_h1 * d.drift**2 / n_fixed == pytest.approx(0.78930804, rel=5e-6)
    assert d.asn_h0 * d.drift**2 / n_fixed == pytest.approx(0.85810726, rel=5e-6)


@pytest.mark.parametrize(("case", "kwargs", "efficacy", "futility", "power"), [
    # test-f_design_group_sequential_beta_spending.R lines 498-509
    ("asOF/bsKD gammaB=1", dict(information_rates=[0.15, 0.4, 0.8, 1.0], alpha=0.025,
                                beta=0.01, beta_spending="power", beta_gamma=1.0),
     [6.3431527, 3.7800251, 2.5620799, 2.2927506], [0.0, 0.33832477, 1.7778049],
     [3.8817384e-06, 0.23459419, 0.95988861, 0.99]),
    # test-f_design_group_sequential_beta_spending.R lines 655-667
    ("asKD/bsKD", dict(information_rates=[0.35, 0.55, 0.8, 1.0], alpha=0.035, beta=0.065,
                       spending="power", gamma=1.44, beta_spending="power", beta_gamma=1.35),
     [2.6641472, 2.5781312, 2.4084661, 2.3291234], [0.29185889, 0.85901114, 1.708006],
     [0.37576504, 0.66123596, 0.8775957, 0.93499972]),
])
def test_rpact_two_sided_beta_spending_more_designs(case: str, kwargs: dict[str, object],
                                                    efficacy: list[float],
                                                    futility: list[float],
                                                    power: list[float]) -> None:
    d = futility_design(sided=2, **kwargs)  # type: ignore[arg-type]
    np.testing.assert_allclose(d.efficacy, efficacy, atol=2e-6, err_msg=case)
    np.testing.assert_allclose(d.futility[:-1], futility, atol=2e-6, err_msg=case)
    np.testing.assert_allclose(d.power, power, atol=2e-6, err_msg=case)


def test_given_drift_keeps_efficacy_and_reports_the_power_cost() -> None:
    rates = [0.25, 0.5, 0.75, 1.0]
    plain = spending_boundaries(rates, alpha=0.05, sided=2)
    drift = brentq(lambda m: plain.power(m) - 0.8, 0.5, 8.0)
    d = futility_design(rates, alpha=0.05, beta=0.2, sided=2, drift=drift)
    np.testing.assert_allclose(d.efficacy, plain.z)  # non-binding: efficacy unchanged
    assert d.power_ignoring_futility == pytest.approx(0.8, abs=1e-6)
    assert 0.7 < d.power[-1] < 0.8  # obeying the futility bounds costs some power ...
    assert d.asn_h0 < d.asn_h0_ignoring_futility  # ... and saves information under H0
    assert d.futility_under_h0[-2] > 0.3
    # monitoring: the bounds of the first looks do not depend on later looks
    early = futility_bounds(rates[:2], plain.z[:2], drift, 0.2, 2, last_is_final=False)
    np.testing.assert_allclose(early, d.futility[:2], atol=1e-9)
    assert d.to_dict()["futility"][-1] == pytest.approx(plain.z[-1])
