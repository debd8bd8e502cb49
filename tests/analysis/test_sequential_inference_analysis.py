"""analysis.sequential() after stopping: repeated CIs, the adjusted estimate, futility bounds.

A real Experiment with record_look(); the per-look numbers are recomputed from per-unit records
kept outside the store (numpy) and fed to the stats functions, whose values are checked against
rpact in tests/stats/test_sequential_inference.py; here the wiring is checked: which looks,
which estimates and standard errors, which boundaries, the orientation, the decision and texts.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from modelrouter import ConfigError, Experiment, RouterConfig
from modelrouter.analysis import Analysis
from modelrouter.config.plan import ExperimentPlan
from modelrouter.stats import (
    design_characteristics,
    futility_bounds,
    spending_boundaries,
    stagewise_inference,
)
from tests.analysis._drive import Ledger, bernoulli, drive

VARIANTS = {"control": "model-a", "treatment": "model-b"}


def experiment(plan: dict[str, object], *, metrics: dict[str, object] | None = None,
               primary: str = "click", salt: str = "after") -> Experiment:
    cfg = RouterConfig(metrics=metrics or {"click": "binary"}, primary=primary, salt=salt,
                       plan=plan)
    return Experiment(VARIANTS, cfg, rng=random.Random(0), clock=iter(range(10**9)).__next__)


def per_look(led: Ledger) -> tuple[float, float]:
    """Difference and its binomial standard error from the records (numpy)."""
    xt, xc = led.values("treatment"), led.values("control")
    var = xt.var(ddof=0) / xt.size + xc.var(ddof=0) / xc.size
    return float(xt.mean() - xc.mean()), math.sqrt(var)


def test_early_crossing_reports_rcis_and_the_bias_adjusted_estimate() -> None:
    rng = np.random.default_rng(11)
    exp, led = experiment({"max_units": 1500}), Ledger()
    rates = {"control": 0.10, "treatment": 0.18}
    numbers = []
    for _ in range(4):
        drive(exp, led, 600, bernoulli(rng, rates))
        look = exp.record_look()
        numbers.append(per_look(led))
        if look.decision == "reject":
            break
    seq = Analysis.from_experiment(exp).sequential()
    assert seq.decision == "reject" and seq.recorded
    k = seq.rejected_at
    assert k is not None and k < 5
    looks = exp.store.snapshot().looks
    design = spending_boundaries([lk.information_rate for lk in looks])
    # repeated CIs: each look's difference +- its boundary times its standard error
    assert len(seq.repeated_cis) == len(looks)
    for ci, (d, se), c in zip(seq.repeated_cis, numbers, design.z, strict=True):
        assert (ci.low, ci.high) == pytest.approx((d - c * se, d + c * se), rel=1e-9)
    assert seq.rci_level == pytest.approx(0.95)
    # the adjusted inference at the crossing look, from that look's z and standard error
    adj = seq.adjusted
    assert adj is not None and adj.look == k and adj.crossed and adj.early
    d, se = numbers[k - 1]
    ref = stagewise_inference(looks[k - 1].statistic, k, design, std_err=se)
    assert adj.estimate == pytest.approx(ref.estimate, rel=1e-9)
    assert (adj.ci.low, adj.ci.high) == pytest.approx((ref.ci.low, ref.ci.high), rel=1e-9)
    assert adj.pvalue == pytest.approx(ref.pvalue, rel=1e-9) and adj.pvalue < 0.05
    assert adj.naive_estimate == pytest.approx(d, rel=1e-12)
    assert 0 < adj.estimate < d  # pulled towards zero: the early crossing overestimates
    text = seq.explain()
    assert "Repeated 95% confidence intervals" in text
    assert "biased away from zero after stopping early" in text and "median-unbiased" in text
    out = seq.to_dict()
    assert out["adjusted"]["look"] == k and len(out["repeated_cis"]) == len(looks)
    assert out["futility"] is None and seq.futility is None
    assert "Repeated 95% confidence intervals" in Analysis.from_experiment(exp).report()
    # the verdict states the adjusted estimate beside the crossing look's
    v = Analysis.from_experiment(exp).verdict()
    assert v.decision in ("ship", "keep_testing")  # keep_testing: guardrails not yet shown safe
    assert v.reasons[1].startswith("bias-adjusted for stopping early")
    assert f"{adj.estimate:+.4g}" in v.reasons[1]


def test_final_look_without_crossing_has_stagewise_inference() -> None:
    rng = np.random.default_rng(12)
    exp, led = experiment({"max_units": 200}), Ledger()
    drive(exp, led, 200, bernoulli(rng, {"control": 0.3, "treatment": 0.3}))
    exp.record_look()
    drive(exp, led, 200, bernoulli(rng, {"control": 0.3, "treatment": 0.3}))
    seq = Analysis.from_experiment(exp).sequential()
    assert seq.decision == "final" and seq.rejected_at is None
    adj = seq.adjusted
    assert adj is not None and not adj.crossed and not adj.early and adj.look == 2
    assert adj.pvalue > 0.05 and adj.ci.low < 0 < adj.ci.high
    assert "without crossing" in seq.explain()
    # a look that has not stopped has no adjusted inference
    quiet = experiment({"max_units": 2000}, salt="quiet")
    drive(quiet, Ledger(), 300, bernoulli(rng, {"control": 0.3, "treatment": 0.3}))
    q = Analysis.from_experiment(quiet).sequential()
    assert q.decision == "continue" and q.adjusted is None and len(q.repeated_cis) == 1


def test_one_sided_lower_is_better_keeps_the_sign_of_the_difference() -> None:
    rng = np.random.default_rng(13)
    metrics = {"churn": {"kind": "binary", "lower_is_better": True}}
    exp = experiment({"max_units": 1000, "sided": 1}, metrics=metrics, primary="churn")
    led = Ledger()
    drive(exp, led, 500, bernoulli(rng, {"control": 0.35, "treatment": 0.15}), "churn")
    seq = Analysis.from_experiment(exp).sequential()
    assert seq.decision == "reject" and seq.rci_level == pytest.approx(0.90)
    d, se = per_look(led)
    adj = seq.adjusted
    assert adj is not None and d < 0
    assert seq.information_rate == pytest.approx(0.25)
    assert seq.statistic > 0  # the flipped pooled z: fewer churners favour the treatment
    ref = stagewise_inference(seq.statistic, 1, spending_boundaries([0.25], sided=1),
                              std_err=se)
    # the test ran on the flipped z; the results are differences treatment - control again
    assert adj.estimate == pytest.approx(-ref.estimate, rel=1e-6)
    assert (adj.ci.low, adj.ci.high) == pytest.approx((-ref.ci.high, -ref.ci.low), rel=1e-6)
    assert adj.ci.low < adj.estimate < adj.ci.high < 0


def plan_drift(plan: ExperimentPlan) -> float:
    rates = np.arange(1, plan.looks + 1) / plan.looks
    design = spending_boundaries(rates, plan.alpha, plan.sided, plan.spending, plan.gamma)
    return design_characteristics(design, plan.power).drift


@pytest.mark.parametrize("sided", [1, 2])
def test_futility_bound_says_stop_and_the_verdict_follows(sided: int) -> None:
    rng = np.random.default_rng(14)
    plan = {"max_units": 2000, "sided": sided, "looks": 4, "futility_spending": "power",
            "futility_gamma": 2.0}
    exp, led = experiment(plan), Ledger()
    # no effect: one-sided, the bound at rate 0.4 is already below z; two-sided, rpact's rule
    # leaves no inner region at the first looks (their one-sided bounds are negative), the bound
    # at rate 0.75 is 1.21 and |z| falls inside
    drive(exp, led, 1000, bernoulli(rng, {"control": 0.20, "treatment": 0.19}))
    first = exp.record_look()
    drive(exp, led, 600 if sided == 1 else 2000,
          bernoulli(rng, {"control": 0.20, "treatment": 0.20}))
    an = Analysis.from_experiment(exp)
    seq = an.sequential()
    fut = seq.futility
    assert fut is not None
    cfg_plan = exp.config.plan
    assert isinstance(cfg_plan, ExperimentPlan)
    rates = [first.information_rate, seq.information_rate]
    design = spending_boundaries(rates, 0.05, sided)  # type: ignore[arg-type]
    ref = futility_bounds(rates, design.z, plan_drift(cfg_plan), 0.2, sided,  # type: ignore[arg-type]
                          "power", 2.0, last_is_final=False)
    np.testing.assert_allclose(fut.bounds, ref, rtol=1e-9)
    z = seq.statistic
    inside = z <= ref[-1] if sided == 1 else abs(z) < ref[-1]
    assert inside and fut.stop and seq.decision == "futility"
    if sided == 2:
        assert fut.bounds[0] == 0.0 and fut.bounds[1] == pytest.approx(1.2062, abs=1e-4)
    assert fut.power < fut.power_ignoring_futility == pytest.approx(0.8, abs=1e-6)
    assert fut.asn_h0 < fut.asn_h0_ignoring_futility
    assert seq.to_dict()["futility"]["bounds"] == pytest.approx(list(ref))
    assert "STOP FOR FUTILITY" in seq.explain()
    v = an.verdict()
    assert v.decision == "no_effect" and "stop for futility" in v.reasons[0]
    # non-binding: continuing is allowed, and a later look is judged afresh
    exp.record_look()
    drive(exp, led, 800, bernoulli(rng, {"control": 0.10, "treatment": 0.40}))
    later = Analysis.from_experiment(exp).sequential()
    assert later.decision == "reject" and not later.futility.stop  # type: ignore[union-attr]


def test_futility_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="plan.futility_spending"):
        ExperimentPlan(max_units=100, futility_spending="linear")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs plan.futility_spending"):
        ExperimentPlan(max_units=100, futility_gamma=1.0)
    with pytest.raises(ConfigError, match="must be a number"):
        ExperimentPlan(max_units=100, futility_spending="hwang-shih-decani")
    plan = ExperimentPlan(max_units=100, futility_spending="obrien-fleming")
    assert "non-binding futility" in plan.describe()
    assert plan.as_dict()["futility_spending"] == "obrien-fleming"


def test_the_adjusted_text_never_prints_a_p_value_of_0() -> None:
    """Regression (found by test_report_text's hypothesis property, intermittently): a
    degenerate crossing (zero variance) gave a stage-wise p-value of 0, printed 'p = 0'; the
    text uses the report's p-value format ('p < 1e-16'), the data keep the number."""
    from modelrouter.analysis.sequential_inference import AdjustedInference
    from modelrouter.stats.results import ConfidenceInterval

    ci = ConfidenceInterval(-3.3e-22, -3.3e-22)
    adj = AdjustedInference(1, True, 0.0, -3.3e-22, ci, -3.3e-22, ci, 0.98, True)
    text = adj.explain("other", "control")
    assert "p < 1e-16" in text and "p = 0" not in text
    assert adj.to_dict()["pvalue"] == 0.0
    assert "p = 0.0123." in AdjustedInference(1, True, 0.0123, 1.0, ci, 1.0, ci, 0.95,
                                              True).explain("b", "a")
