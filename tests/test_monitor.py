"""Automatic rollback: a failing guardrail moves all traffic to the control; resume undoes it.

Simulated at the Experiment level (no HTTP) for speed: the same routing core, store, analysis
and monitor the middleware uses.
"""

from __future__ import annotations

import numpy as np
import pytest

from modelrouter import Experiment, RouterConfig
from modelrouter.analysis import Analysis

CONFIG = RouterConfig(metrics={"click": "binary"}, primary="click", rollback=True,
                      guardrail_check_every=10**9)  # checks are called explicitly below


def _run(seed: int, slowdown: float, units: int = 3000, check_every: int = 300,
         config: RouterConfig = CONFIG) -> Experiment:
    """Units arrive one request each; latency lognormal around 50 ms, treatment x slowdown."""
    rng = np.random.default_rng(seed)
    exp = Experiment({"control": 0, "treatment": 1}, config, clock=lambda: 1000.0)
    noise = rng.lognormal(np.log(50.0), 0.4, units)
    for i in range(units):
        d = exp.assign(f"s{seed}-u{i}")
        lat = noise[i] * (slowdown if d.variant == "treatment" else 1.0)
        exp.record(d, "latency_ms", lat)
        exp.record(d, "error", 0)
        if (i + 1) % check_every == 0:
            exp.check_guardrails()
    return exp


def test_rollback_moves_traffic_to_control_records_why_and_resume_restores() -> None:
    exp = _run(1, slowdown=1.3)
    assert exp.guard.rolled_back
    assert exp.allocation.weights == {"control": 1.0, "treatment": 0.0}
    (event,) = exp.rollback_events
    assert event.kind == "rollback" and event.at == 1000.0
    assert event.weights_before == {"control": 0.5, "treatment": 0.5}
    assert "latency_ms" in event.reasons[0] and "breached" in event.reasons[0]
    # every new unit now gets the control
    assert {exp.assign(f"new{i}").variant for i in range(200)} == {"control"}
    a = Analysis.from_experiment(exp)
    assert a.rollback_events == exp.rollback_events
    v = a.verdict()
    assert v.decision == "blocked_by_guardrail"
    assert any("rolled back" in r for r in v.reasons)
    assert "rollback at 1970-01-01T00:16:40+00:00" in a.report()
    # the SRM check knows the weights changed: no false alarm from the control-only epoch
    assert a.srm().pvalue > 0.001 if hasattr(a, "srm") else True
    exp.resume("latency fixed")
    assert exp.allocation.weights == {"control": 0.5, "treatment": 0.5}
    assert [e.kind for e in exp.rollback_events] == ["rollback", "resume"]
    assert exp.rollback_events[-1].reasons == ("latency fixed",)
    assert {exp.assign(f"later{i}").variant for i in range(200)} == {"control", "treatment"}


def test_no_rollback_when_disabled_but_guardrail_reported() -> None:
    exp = _run(2, slowdown=1.3, config=CONFIG.replace(rollback=False))
    assert not exp.rollback_events
    fails = [g for g in exp.check_guardrails() if g.status == "fail"]
    assert [g.metric for g in fails] == ["latency_ms"]


def test_automatic_check_runs_in_background_thread() -> None:
    cfg = CONFIG.replace(guardrail_check_every=500)
    rng = np.random.default_rng(3)
    exp = Experiment({"control": 0, "treatment": 1}, cfg)
    for i in range(4000):
        d = exp.assign(f"u{i}")
        exp.record(d, "latency_ms", rng.lognormal(np.log(50), 0.4) *
                   (1.3 if d.variant == "treatment" else 1.0))
    assert exp.guard.wait_idle(timeout=30)
    assert exp.guard.checks >= 1 and exp.guard.last_error is None
    assert exp.guard.rolled_back
    assert exp.allocation.weights["treatment"] == 0.0


def _rates(runs: int, units: int) -> tuple[float, float]:
    worse = sum(bool(_run(1000 + s, 1.3, units).rollback_events) for s in range(runs))
    aa = sum(bool(_run(5000 + s, 1.0, units).rollback_events) for s in range(runs))
    return worse / runs, aa / runs


def test_rollback_30pct_worse_and_not_in_aa_fast() -> None:
    hit, false = _rates(runs=30, units=2000)
    assert hit == 1.0 and false == 0.0


@pytest.mark.slow
def test_rollback_30pct_worse_and_not_in_aa_100_seeded_runs() -> None:
    hit, false = _rates(runs=100, units=3000)
    assert hit >= 0.95
    assert false <= 0.05
