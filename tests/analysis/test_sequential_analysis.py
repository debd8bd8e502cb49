"""analysis.sequential() and record_look(): a real Experiment, checked against scipy/statsmodels.

z statistics are recomputed from per-unit records kept outside the store; boundaries are
checked to be exactly spending_boundaries() on the recorded information rates (the boundary
values themselves are checked against published tables in tests/stats/test_sequential.py).
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

from modelrouter import AnalysisError, Experiment, RouterConfig
from modelrouter.analysis import Analysis
from modelrouter.stats import inflation_factor, sample_size_proportions, spending_boundaries
from modelrouter.store.looks import Look
from tests.analysis._drive import Ledger, bernoulli, drive, normal

VARIANTS = {"control": "model-a", "treatment": "model-b"}


def experiment(plan: dict | None = None, *, metrics: dict | None = None, primary: str = "click",
               salt: str = "seq", **extra: object) -> Experiment:
    cfg = RouterConfig(metrics=metrics or {"click": "binary"}, primary=primary, salt=salt,
                       plan=plan if plan is not None else {"max_units": 1000}, **extra)
    return Experiment(VARIANTS, cfg, rng=random.Random(0), clock=iter(range(10**9)).__next__)


def analyse(exp: Experiment) -> Analysis:
    return Analysis.from_experiment(exp)


def test_recorded_looks_match_statsmodels_and_spending_boundaries() -> None:
    rng = np.random.default_rng(1)
    exp, led = experiment({"max_units": 1000}), Ledger()
    looks = []
    for _ in range(3):
        drive(exp, led, 300, bernoulli(rng, {"control": 0.10, "treatment": 0.13}))
        looks.append(exp.record_look())
        xt, xc = led.values("treatment"), led.values("control")
        z_ref, _ = proportions_ztest([xt.sum(), xc.sum()], [xt.size, xc.size])
        assert looks[-1].statistic == pytest.approx(z_ref, rel=1e-10)
        assert looks[-1].units == len(led.variant)
        assert looks[-1].information_rate == pytest.approx(len(led.variant) / 2000)
        assert looks[-1].difference == pytest.approx(xt.mean() - xc.mean(), rel=1e-12)
        assert looks[-1].variance == pytest.approx(  # binomial variances p (1 - p) / n
            xt.var(ddof=0) / xt.size + xc.var(ddof=0) / xc.size, rel=1e-10)
    rates = [k.information_rate for k in looks]
    design = spending_boundaries(rates)  # the wiring: boundaries on the recorded rates
    np.testing.assert_allclose([k.boundary for k in looks], design.z, rtol=1e-12)
    np.testing.assert_allclose([k.alpha_spent for k in looks], design.alpha_spent, rtol=1e-12)
    assert [k.number for k in looks] == [1, 2, 3]
    assert exp.store.snapshot().looks == tuple(looks)

    # the current (unrecorded) look: boundary given all three recorded looks plus now
    drive(exp, led, 100, bernoulli(rng, {"control": 0.10, "treatment": 0.13}))
    seq = analyse(exp).sequential()
    now = len(led.variant) / 2000
    assert not seq.recorded and seq.look == 4
    assert seq.information_rate == pytest.approx(now)
    assert seq.boundary == pytest.approx(spending_boundaries([*rates, now]).z[-1], rel=1e-12)
    assert seq.alpha_spent == pytest.approx(spending_boundaries([*rates, now]).alpha_spent[-1])
    assert seq.alpha_spent_before == pytest.approx(design.alpha_spent[-1])


def test_welch_statistic_is_the_normal_quantile_of_scipys_t_test() -> None:
    rng = np.random.default_rng(2)
    exp = experiment({"max_units": 400}, metrics={"revenue": "continuous"}, primary="revenue")
    led = Ledger()
    drive(exp, led, 60, normal(rng, {"control": 10.0, "treatment": 11.0}, 3.0), "revenue")
    seq = analyse(exp).sequential()
    ref = stats.ttest_ind(led.values("treatment"), led.values("control"), equal_var=False)
    z_ref = math.copysign(stats.norm.isf(ref.pvalue / 2), ref.statistic)
    assert seq.statistic == pytest.approx(z_ref, rel=1e-9)
    assert abs(seq.statistic) < abs(ref.statistic)  # t tails are heavier at 60 units
    assert seq.method == "Welch's t-test"


def test_crossing_at_a_recorded_look_stays_reject() -> None:
    rng = np.random.default_rng(3)
    exp, led = experiment({"max_units": 1000}), Ledger()
    drive(exp, led, 200, bernoulli(rng, {"control": 0.1, "treatment": 0.9}))
    first = exp.record_look()
    assert first.decision == "reject" and abs(first.statistic) > first.boundary
    # the effect reverses: the pooled difference is ~0 at look 2, far inside its boundary
    drive(exp, led, 200, bernoulli(rng, {"control": 0.9, "treatment": 0.1}))
    second = exp.record_look()
    assert abs(second.statistic) < second.boundary
    assert second.decision == "reject"
    seq = analyse(exp).sequential()
    assert seq.decision == "reject" and seq.rejected_at == 1 and seq.recorded
    assert "earlier look (1) already crossed" in seq.explain()
    # the decision is look 1's, in look 1's direction, whatever the estimate is now
    c = seq.crossing
    assert c is not None and (c.look, c.recorded, c.direction) == (1, True, "better")
    assert (c.statistic, c.boundary, c.difference, c.variance, c.units) == (
        first.statistic, first.boundary, first.difference, first.variance, first.units)
    assert "The decision was made at look 1" in seq.explain()
    assert seq.to_dict()["crossing"]["direction"] == "better"
    # no crossing yet: none; crossing now (unrecorded): this look's numbers
    quiet = experiment({"max_units": 1000}, salt="quiet")
    drive(quiet, Ledger(), 200, bernoulli(rng, {"control": 0.3, "treatment": 0.3}))
    assert analyse(quiet).sequential().crossing is None
    loud = experiment({"max_units": 1000}, salt="loud")
    drive(loud, Ledger(), 200, bernoulli(rng, {"control": 0.9, "treatment": 0.1}))
    now = analyse(loud).sequential()
    assert now.crossing is not None and not now.crossing.recorded
    assert now.crossing.direction == "worse" and now.crossing.difference == now.difference


def test_planned_maximum_gives_final_and_the_rate_is_capped() -> None:
    rng = np.random.default_rng(4)
    exp, led = experiment({"max_units": 100}), Ledger()
    drive(exp, led, 120, bernoulli(rng, {"control": 0.3, "treatment": 0.3}))
    exp.record_look()
    drive(exp, led, 100, bernoulli(rng, {"control": 0.3, "treatment": 0.3}))
    seq = analyse(exp).sequential()
    assert seq.information_rate == 1.0 and seq.units == 220 and seq.planned_units == 200
    assert any("capped at 1" in n for n in seq.notes)
    assert seq.decision == "final"  # A/A data: nothing crossed
    # the last boundary spends exactly what is left of alpha
    assert seq.alpha_spent == pytest.approx(0.05, abs=1e-9)
    look = exp.record_look()
    assert look.information_rate == 1.0 and "capped" in look.note
    drive(exp, led, 10, bernoulli(rng, {"control": 0.3, "treatment": 0.3}))
    with pytest.raises(AnalysisError, match=r"look 2 of 'click' already reached the planned "
                       r"maximum \(information rate 1\); the test is final"):
        exp.record_look()
    assert any("planned maximum was reached at recorded look 2" in n
               for n in analyse(exp).sequential().notes)


def test_record_look_refuses_without_new_units_or_plan_or_metric() -> None:
    rng = np.random.default_rng(5)
    exp, led = experiment(), Ledger()
    drive(exp, led, 50, bernoulli(rng, {"control": 0.3, "treatment": 0.3}))
    exp.record_look()
    with pytest.raises(AnalysisError, match=r"no new units since look 1"):
        exp.record_look()
    seq = analyse(exp).sequential()  # shows the recorded look, says so
    assert seq.recorded and seq.look == 1 and any("no new units" in n for n in seq.notes)

    no_plan = Experiment(VARIANTS, RouterConfig(metrics={"click": "binary"}, primary="click"))
    with pytest.raises(AnalysisError, match=r"needs a plan"):
        no_plan.record_look()
    no_primary = Experiment(VARIANTS, RouterConfig(metrics={"click": "binary"},
                                                   plan={"max_units": 10}))
    with pytest.raises(AnalysisError, match=r"pass metric= or set primary"):
        analyse(no_primary).sequential()
    with pytest.raises(ValueError, match=r"look number \(3\) must be 2"):
        exp.store.add_look(Look(**{**exp.store.snapshot().looks[0].to_dict(), "number": 3}))


def test_explain_states_information_rate_alpha_spent_and_correction() -> None:
    rng = np.random.default_rng(6)
    exp, led = experiment({"mde": 0.05, "baseline": 0.2, "looks": 4}), Ledger()
    drive(exp, led, 300, bernoulli(rng, {"control": 0.2, "treatment": 0.2}))
    exp.record_look()
    drive(exp, led, 300, bernoulli(rng, {"control": 0.2, "treatment": 0.2}))
    seq = analyse(exp).sequential()
    text = seq.explain().lower()
    assert "information rate" in text and "alpha spent" in text
    assert f"{seq.units:,} units in both groups / {seq.planned_units:,} planned" in text
    assert "inflation factor" in text and "look 2" in text and "1 earlier recorded look" in text
    assert f"{seq.boundary:.4f}" in text and "instead of the fixed-sample 1.9600" in text
    d = seq.to_dict()
    assert d["decision"] == seq.decision and d["design"]["z"][-1] == pytest.approx(seq.boundary)
    assert "SequentialAnalysis(" in repr(seq)


def test_horizon_from_mde_is_the_sequential_sample_size() -> None:
    exp, led = experiment({"mde": 0.02, "baseline": 0.1, "looks": 5}), Ledger()
    drive(exp, led, 40, bernoulli(np.random.default_rng(7), {"control": .1, "treatment": .1}))
    seq = analyse(exp).sequential()
    design = spending_boundaries([0.2, 0.4, 0.6, 0.8, 1.0])
    ref = sample_size_proportions(0.1, 0.12, sequential=design)
    assert seq.planned_units == ref.n_total
    # the fixed-sample formula of the pooled two-proportion z-test the analysis runs (Fleiss,
    # Levin & Paik 2003, eq. 4.14 without continuity correction), written out with scipy
    za, zb = stats.norm.ppf(0.975), stats.norm.ppf(0.8)
    fixed = (za * math.sqrt(2 * 0.11 * 0.89)
             + zb * math.sqrt(0.1 * 0.9 + 0.12 * 0.88)) ** 2 / 0.02**2
    assert fixed == pytest.approx(3840.8, abs=0.5)
    # times the inflation factor of 5-look LD O'Brien-Fleming (1.025, checked against J&T)
    assert seq.planned_units == 2 * math.ceil(fixed * inflation_factor(design))
    assert inflation_factor(design) == pytest.approx(1.025, abs=5e-4)


def test_horizon_estimated_from_the_control_is_frozen_at_look_1() -> None:
    rng = np.random.default_rng(8)
    exp = experiment({"mde": 1.0}, metrics={"revenue": "continuous"}, primary="revenue")
    led = Ledger()
    drive(exp, led, 200, normal(rng, {"control": 5.0, "treatment": 5.0}, 4.0), "revenue")
    before = analyse(exp).sequential()
    assert any("frozen when the first look is recorded" in n for n in before.notes)
    sd = led.values("control").std(ddof=1)
    ref = 2 * math.ceil((1.959964 + 0.841621) ** 2 * 2 * sd**2 * inflation_factor(
        spending_boundaries([0.2, 0.4, 0.6, 0.8, 1.0])) - 1e-6)
    assert before.planned_units == pytest.approx(ref, abs=2)
    look = exp.record_look()
    # much noisier data later must not move the horizon of recorded looks
    drive(exp, led, 200, normal(rng, {"control": 5.0, "treatment": 5.0}, 40.0), "revenue")
    after = analyse(exp).sequential()
    assert after.planned_units == look.planned_units == before.planned_units
    assert "fixed at look 1" in after.horizon
    assert not any("frozen when" in n for n in after.notes)


def test_one_sided_plan_orients_lower_is_better_metrics() -> None:
    rng = np.random.default_rng(9)
    metrics = {"churn": {"kind": "binary", "lower_is_better": True}}
    exp = experiment({"max_units": 500, "sided": 1}, metrics=metrics, primary="churn")
    led = Ledger()
    drive(exp, led, 400, bernoulli(rng, {"control": 0.30, "treatment": 0.15}), "churn")
    seq = analyse(exp).sequential()
    cmp = analyse(exp).compare("churn")
    assert cmp.statistic < 0 and seq.statistic == pytest.approx(-cmp.statistic)
    assert seq.decision == "reject"  # fewer churners: the good direction crosses the boundary
    assert seq.boundary == pytest.approx(spending_boundaries([0.4], sided=1).z[-1])


def test_router_record_look_through_the_middleware(router_factory) -> None:  # type: ignore[no-untyped-def]
    from modelrouter.testing import ASGIClient

    router = router_factory(primary="click", plan={"max_units": 50})
    client = ASGIClient(router)
    for i in range(40):
        r = client.run("GET", "/predict", headers={"x-user-id": f"u{i}"})
        router.record(r.json()["decision_id"], "click", i % 3 == 0)
    look = router.record_look()
    assert look.number == 1 and look.units == 40 and look.information_rate == pytest.approx(0.4)
    assert router.analysis().snapshot.looks == (look,)


# -- A/A simulation through Experiment + record_look -------------------------------------------

def _aa(runs: int, per_look: int, seed: int, looks: int = 5) -> tuple[float, float, float]:
    """Rejection rates of (naive 1.96 at every look, recorded-look boundaries, always-valid)."""
    rng = np.random.default_rng(seed)
    naive = seq = av = 0
    for r in range(runs):
        exp, led = experiment({"max_units": looks * per_look // 2}, salt=f"aa{seed}-{r}"), Ledger()
        hit_naive = hit_av = False
        for _ in range(looks):
            drive(exp, led, per_look, bernoulli(rng, {"control": 0.2, "treatment": 0.2}))
            look = exp.record_look()
            hit_naive |= abs(look.statistic) >= 1.959964
            hit_av |= analyse(exp).always_valid().pvalue <= 0.05
        final = analyse(exp).sequential()
        assert final.decision in ("reject", "final") and final.look == looks
        naive, seq, av = naive + hit_naive, seq + (final.decision == "reject"), av + hit_av
    return naive / runs, seq / runs, av / runs


def _check_aa(runs: int, per_look: int, seed: int) -> None:
    naive, seq, av = _aa(runs, per_look, seed)
    mc_se = math.sqrt(0.05 * 0.95 / runs)
    assert seq <= 0.05 + 2 * mc_se, (naive, seq, av)
    assert av <= 0.05 + 2 * mc_se, (naive, seq, av)
    assert naive > seq  # the contrast: five unadjusted peeks inflate false positives


def test_aa_five_recorded_looks_hold_alpha_fast() -> None:
    _check_aa(runs=300, per_look=100, seed=11)


@pytest.mark.slow
def test_aa_five_recorded_looks_hold_alpha_slow() -> None:
    _check_aa(runs=3000, per_look=400, seed=12)


def test_looks_are_plain_data_that_round_trip() -> None:
    rng = np.random.default_rng(10)
    exp, led = experiment(), Ledger()
    drive(exp, led, 80, bernoulli(rng, {"control": 0.3, "treatment": 0.3}))
    look = exp.record_look()
    assert Look.from_dict(look.to_dict()) == look
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['extra'\]"):
        Look.from_dict({**look.to_dict(), "extra": 1})
    with pytest.raises(AttributeError):
        look.statistic = 0.0  # type: ignore[misc]
    assert "Look(number=1, metric='click'" in repr(look)


def test_huge_welch_statistic_stays_finite_and_rejects() -> None:
    # regression: Phi^-1(F_t) underflowed to inf for |t| > ~38 (a big effect on a continuous
    # metric with many units), and sequential() / record_look() raised a ValueError
    from tests.analysis._sim import snapshot

    rng = np.random.default_rng(12)
    cfg = RouterConfig(metrics={"revenue": "continuous"}, primary="revenue",
                       plan={"max_units": 50_000})
    variant = rng.integers(0, 2, 40_000)
    a = snapshot(cfg, variant, {}, {"revenue": rng.normal(10.0 + 0.5 * variant, 1.0)})
    cmp = a.compare("revenue")
    assert cmp.statistic > 40 and stats.t.sf(cmp.statistic, cmp.df) == 0.0
    seq = a.sequential()
    assert math.isfinite(seq.statistic) and seq.statistic >= 37.5
    assert seq.decision == "reject"
    # below the underflow the conversion is still exact: scipy's t and normal quantiles
    small = snapshot(cfg, variant[:400], {},
                     {"revenue": rng.normal(10.0 + 0.5 * variant[:400], 1.0)})
    ref = small.compare("revenue")
    z_ref = stats.norm.isf(stats.t.sf(ref.statistic, ref.df))
    assert small.sequential().statistic == pytest.approx(z_ref, rel=1e-9)
