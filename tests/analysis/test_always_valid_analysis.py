"""analysis.always_valid(): the mSPRT over recorded looks and now, against the formula written out.

The reference p-value is Johari, Pekelis & Walsh's normal-mixture likelihood ratio computed here
from per-unit records kept outside the store (not with modelrouter.stats).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelrouter import AnalysisError, Experiment, RouterConfig
from modelrouter.analysis import Analysis
from modelrouter.stats import mixing_variance
from tests.analysis._drive import Ledger, bernoulli, drive

VARIANTS = {"control": "a", "treatment": "b"}


def _experiment(plan: dict) -> Experiment:
    return Experiment(VARIANTS, RouterConfig(metrics={"click": "binary"}, primary="click",
                                             salt="av", plan=plan))


def _mixture_lr(d: float, v: float, tau2: float) -> float:
    return math.sqrt(v / (v + tau2)) * math.exp(tau2 * d * d / (2 * v * (v + tau2)))


def _diff_var(led: Ledger) -> tuple[float, float]:
    # binary data: the binomial (unpooled Wald) variance p (1 - p) / n of each proportion
    xt, xc = led.values("treatment"), led.values("control")
    return (xt.mean() - xc.mean(),
            xt.var(ddof=0) / xt.size + xc.var(ddof=0) / xc.size)


def test_pvalue_is_the_running_minimum_over_recorded_looks_and_now() -> None:
    rng = np.random.default_rng(21)
    exp, led = _experiment({"max_units": 3000, "baseline": 0.1}), Ledger()
    history = []
    for rates in ({"control": 0.1, "treatment": 0.16}, {"control": 0.1, "treatment": 0.16},
                  {"control": 0.16, "treatment": 0.1}):  # the effect vanishes at the end
        drive(exp, led, 800, bernoulli(rng, rates))
        history.append(_diff_var(led))
        if len(history) < 3:
            exp.record_look()
    res = Analysis.from_experiment(exp).always_valid()
    # tau2: the narrowest interval at the horizon, 3000 per group at the plan's baseline 0.1
    tau2 = mixing_variance(horizon_variance=0.1 * 0.9 * (2 / 3000))
    assert res.tau2 == pytest.approx(tau2, rel=1e-12)
    ref = min(1.0, *(1.0 / _mixture_lr(d, v, tau2) for d, v in history))
    assert res.pvalue == pytest.approx(ref, rel=1e-9)
    now = min(1.0, 1.0 / _mixture_lr(*history[-1], tau2))
    assert res.pvalue < now  # an earlier recorded look was more extreme: it is honoured
    assert res.looks == 3 and res.difference == pytest.approx(history[-1][0])
    ci = res.confidence_interval()
    assert ci.low <= res.difference <= ci.high
    text = res.explain()
    assert "2 recorded look(s) and now" in text and "narrowest at the planned maximum" in text
    assert res.to_dict()["confidence_interval"]["low"] == ci.low


def test_explicit_tau2_and_errors() -> None:
    rng = np.random.default_rng(22)
    exp, led = _experiment({"max_units": 1000}), Ledger()
    drive(exp, led, 300, bernoulli(rng, {"control": 0.2, "treatment": 0.2}))
    res = Analysis.from_experiment(exp).always_valid(tau2=0.01)
    d, v = _diff_var(led)
    assert res.pvalue == pytest.approx(min(1.0, 1 / _mixture_lr(d, v, 0.01)), rel=1e-9)
    assert "given by the caller" in res.explain()
    with pytest.raises(AnalysisError, match=r"tau2 \(-1\) must be a positive number"):
        Analysis.from_experiment(exp).always_valid(tau2=-1)
    # without plan.baseline the tau2 comes from the control's rate and is provisional
    assert "provisional" in Analysis.from_experiment(exp).always_valid().tau2_source
