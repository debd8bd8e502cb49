"""Group-sequential boundaries against published values and independent Monte Carlo."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from modelrouter.stats import (
    SequentialDesign,
    classic_boundaries,
    spending_boundaries,
    spending_function,
)

EQUAL5 = [0.2, 0.4, 0.6, 0.8, 1.0]


# -- published values ---------------------------------------------------------------------------

def test_lan_demets_obrien_fleming_one_sided_matches_published() -> None:
    # rpact getDesignGroupSequential(kMax=5, typeOfDesign="asOF") / gsDesign sfLDOF, alpha 0.025
    d = spending_boundaries(EQUAL5, alpha=0.025, sided=1)
    np.testing.assert_allclose(d.z, [4.877, 3.357, 2.680, 2.290, 2.031], atol=1e-3)
    assert d.alpha_spent[-1] == pytest.approx(0.025, abs=1e-9)


def test_two_sided_spends_half_alpha_per_side_like_rpact_and_gsdesign() -> None:
    d = spending_boundaries(EQUAL5, alpha=0.05, sided=2)
    np.testing.assert_allclose(d.z, [4.877, 3.357, 2.680, 2.290, 2.031], atol=1e-3)


@pytest.mark.parametrize(("k", "pocock", "obf"), [
    # Jennison & Turnbull (2000) Tables 2.1 and 2.3: C_P(K, 0.05) and C_B(K, 0.05), two-sided
    (1, 1.960, 1.960), (2, 2.178, 1.977), (3, 2.289, 2.004), (4, 2.361, 2.024),
    (5, 2.413, 2.040), (10, 2.555, 2.087),
])
def test_classic_constants_match_jennison_turnbull(k: int, pocock: float, obf: float) -> None:
    p = classic_boundaries(k, kind="pocock")
    np.testing.assert_allclose(p.z, pocock, atol=1e-3)
    o = classic_boundaries(k, kind="obrien-fleming")
    assert o.z[-1] == pytest.approx(obf, abs=1e-3)
    np.testing.assert_allclose(o.z, obf * np.sqrt(k / np.arange(1, k + 1)), atol=2e-3)


def test_classic_obrien_fleming_five_looks_first_boundary() -> None:
    assert classic_boundaries(5).z[0] == pytest.approx(4.562, abs=1e-3)


# rpact unit tests (tests/testthat/test-f_design_group_sequential.R), one-sided designs.
RPACT = [
    (dict(information_rates=[0.4, 0.7], alpha=0.025, spending="pocock"),
     [2.223875, 2.3050796], [0.013078429, 0.0197432]),
    (dict(information_rates=[0.35, 0.7, 1], alpha=0.13, spending="pocock"),
     [1.5446617, 1.4828682, 1.4620058], [0.061214062, 0.10266465, 0.13]),
    (dict(information_rates=[0.4, 0.75, 1], alpha=0.13, spending="obrien-fleming"),
     [2.1280732, 1.4368565, 1.2468994], [0.016665509, 0.080406163, 0.13]),
    (dict(information_rates=[0.2, 0.4, 1], alpha=0.03, spending="hwang-shih-decani", gamma=0),
     [2.5121443, 2.4228747, 2.0280392], [0.006, 0.012, 0.03]),
]


@pytest.mark.parametrize(("kwargs", "z", "spent"), RPACT)
def test_spending_designs_match_rpact(kwargs: dict, z: list[float], spent: list[float]) -> None:
    d = spending_boundaries(sided=1, **kwargs)
    np.testing.assert_allclose(d.z, z, atol=1e-6)
    np.testing.assert_allclose(d.alpha_spent, spent, rtol=1e-6)


def test_classic_obrien_fleming_one_sided_matches_rpact() -> None:
    # rpact getDesignInverseNormal() defaults: kMax=3, alpha=0.025, typeOfDesign="OF"
    d = classic_boundaries(3, alpha=0.025, sided=1)
    np.testing.assert_allclose(d.z, [3.4710914, 2.4544323, 2.0040356], atol=1e-6)
    np.testing.assert_allclose(d.alpha_spent, [0.00025917372, 0.0071600594, 0.025], rtol=1e-5)


def test_spending_functions_closed_forms() -> None:
    t = np.array([0.25, 0.5, 1.0])
    assert spending_function(t, 0.05, 1, "pocock") == pytest.approx(0.05 * np.log1p((np.e - 1) * t))
    assert spending_function(t, 0.05, 2, "power", gamma=2) == pytest.approx(0.05 * t**2)
    hsd = spending_function(t, 0.05, 2, "hwang-shih-decani", gamma=-4)
    assert hsd == pytest.approx(0.05 * (1 - np.exp(4 * t)) / (1 - np.exp(4)))
    assert spending_function(t, 0.05, 1, "hwang-shih-decani", gamma=0) == pytest.approx(0.05 * t)


# -- structural properties ----------------------------------------------------------------------

def test_earlier_looks_do_not_depend_on_later_looks() -> None:
    full = spending_boundaries([0.1, 0.33, 0.5, 0.8, 1.0], spending="pocock")
    for k in range(1, 5):
        part = spending_boundaries(full.information_rates[:k], spending="pocock")
        np.testing.assert_array_equal(part.z, full.z[:k])


def test_last_rate_below_one_spends_only_alpha_at_that_rate() -> None:
    d = spending_boundaries([0.3, 0.6], alpha=0.05)
    expected = spending_function([0.6], 0.05)[0]
    assert d.alpha_spent[-1] == pytest.approx(expected, rel=1e-8)
    assert d.alpha_spent[-1] < 0.05


def test_twenty_unequal_looks_spend_alpha_exactly_and_fast() -> None:
    rates = np.cumsum(np.linspace(1, 3, 20))
    rates /= rates[-1]
    start = time.perf_counter()
    d = spending_boundaries(rates, spending="hwang-shih-decani", gamma=-2)
    assert time.perf_counter() - start < 1.0
    assert d.looks == 20
    np.testing.assert_allclose(d.alpha_spent, spending_function(rates, 0.05, 2,
                                                                  "hwang-shih-decani", -2),
                               rtol=1e-7)


def test_ten_looks_under_50_ms() -> None:
    rates = np.arange(1, 11) / 10
    spending_boundaries(rates)
    best = min(_timed(lambda: spending_boundaries(rates)) for _ in range(5))
    assert best < 0.05


def _timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def test_obrien_fleming_at_tiny_rate_has_infinite_or_huge_boundary_and_carries_alpha() -> None:
    d = spending_boundaries([1e-4, 0.5, 1.0])
    assert d.z[0] >= 30
    assert d.alpha_spent[-1] == pytest.approx(0.05, abs=1e-9)


# -- independent Monte Carlo of correlated z paths ---------------------------------------------

def _mc_crossing(d: SequentialDesign, n: int, seed: int, drift: float = 0.0) -> np.ndarray:
    """Cumulative first-crossing probabilities from simulated Brownian paths."""
    rng = np.random.default_rng(seed)
    t = np.asarray(d.information_rates)
    dt = np.diff(t, prepend=0.0)
    s = np.cumsum(rng.standard_normal((n, t.size)) * np.sqrt(dt) + drift * dt, axis=1)
    z = s / np.sqrt(t)
    hit = (np.abs(z) if d.sided == 2 else z) >= d.z
    first = np.where(hit.any(axis=1), hit.argmax(axis=1), t.size)
    return np.array([np.mean(first <= k) for k in range(t.size)])


@pytest.mark.parametrize("design", [
    spending_boundaries(EQUAL5),
    spending_boundaries([0.15, 0.5, 0.7, 1.0], alpha=0.1, spending="pocock"),
    spending_boundaries([0.3, 0.6, 0.9], alpha=0.05, sided=1, spending="power", gamma=1.5),
    classic_boundaries(4, kind="pocock"),
], ids=["ldof5", "ldpocock4", "power3-onesided", "classic-pocock4"])
def test_monte_carlo_alpha_spent_per_look(design: SequentialDesign) -> None:
    n = 400_000
    mc = _mc_crossing(design, n, seed=20240611)
    se = np.sqrt(design.alpha_spent * (1 - design.alpha_spent) / n)
    assert np.all(np.abs(mc - design.alpha_spent) <= 3 * se + 1e-6), (mc, design.alpha_spent)


def test_exit_probabilities_under_drift_match_monte_carlo() -> None:
    d = spending_boundaries(EQUAL5)
    up, lo = d.exit_probabilities(drift=2.8)
    mc = _mc_crossing(d, 200_000, seed=7, drift=2.8)
    exact = np.cumsum(up + lo)
    se = np.sqrt(exact * (1 - exact) / 200_000)
    assert np.all(np.abs(mc - exact) <= 3 * se + 1e-6)


# -- results and errors -------------------------------------------------------------------------

def test_result_object_surface() -> None:
    d = spending_boundaries(EQUAL5)
    assert "SequentialDesign(spending='obrien-fleming'" in repr(d)
    assert d.to_dict()["z"] == pytest.approx(d.z.tolist())
    assert len(d.summary().splitlines()) == 6
    text = d.explain(2)
    assert "information rate t=0.4000" in text and "Alpha spent" in text
    np.testing.assert_allclose(d.nominal_pvalues, 2 * (1 - _phi(d.z)), rtol=1e-6)
    with pytest.raises(ValueError):
        d.z[0] = 1.0  # read-only arrays keep the frozen result immutable


def _phi(x: np.ndarray) -> np.ndarray:
    return np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in x])


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(information_rates=[0.5, 0.4]), r"strictly increasing, got \[0.5, 0.4\]"),
    (dict(information_rates=[0.5, 1.2]), r"information_rates must lie in \(0, 1\]"),
    (dict(information_rates=[0.0, 1.0]), r"information_rates must lie in \(0, 1\]"),
    (dict(information_rates=[]), "must not be empty"),
    (dict(information_rates=[1.0], alpha=1.5), r"alpha \(1.5\) must be in \(0, 1\)"),
    (dict(information_rates=[1.0], alpha=0), r"alpha \(0\) must be in \(0, 1\)"),
    (dict(information_rates=[1.0], spending="foo"),
     r"spending \('foo'\) must be one of 'obrien-fleming', 'pocock'"),
    (dict(information_rates=[1.0], sided=3), r"sided \(3\) must be 1 or 2"),
    (dict(information_rates=[1.0], spending="power"), r"gamma \(None\) must be a finite"),
    (dict(information_rates=[1.0], spending="power", gamma=-1), "must be > 0"),
    (dict(information_rates=[1.0], gamma=2.0), "only used by"),
])
def test_bad_input_names_parameter_and_value(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        spending_boundaries(**kwargs)


def test_classic_bad_input() -> None:
    with pytest.raises(ValueError, match=r"k \(0\) must be a positive integer"):
        classic_boundaries(0)
    with pytest.raises(ValueError, match=r"kind \('haybittle'\) must be one of"):
        classic_boundaries(3, kind="haybittle")  # type: ignore[arg-type]


# -- A/A simulations on binary data -------------------------------------------------------------

def _aa_binary(runs: int, seed: int, looks: int = 5, per_look: int = 2_000,
               p: float = 0.05) -> tuple[float, float]:
    """(naive 1.96 at every look, spending boundaries) rejection rates of a pooled z-test."""
    rng = np.random.default_rng(seed)
    n = per_look * np.arange(1, looks + 1)
    xa = rng.binomial(per_look, p, (runs, looks)).cumsum(axis=1)
    xb = rng.binomial(per_look, p, (runs, looks)).cumsum(axis=1)
    pooled = (xa + xb) / (2 * n)
    se = np.sqrt(pooled * (1 - pooled) * 2 / n)
    z = np.divide(xb / n - xa / n, se, out=np.zeros(se.shape), where=se > 0)
    bounds = spending_boundaries(n / n[-1]).z
    naive = np.mean(np.any(np.abs(z) >= 1.959964, axis=1))
    return float(naive), float(np.mean(np.any(np.abs(z) >= bounds, axis=1)))


def _assert_aa(runs: int, seed: int) -> None:
    naive, seq = _aa_binary(runs, seed)
    se = math.sqrt(0.05 * 0.95 / runs)
    assert seq <= 0.05 + 2 * se
    assert naive >= 0.10  # peeking five times roughly doubles the false-positive rate


def test_aa_binary_five_looks_holds_alpha() -> None:
    _assert_aa(runs=6_000, seed=2024)


@pytest.mark.slow
def test_aa_binary_five_looks_holds_alpha_large() -> None:
    _assert_aa(runs=100_000, seed=2025)
