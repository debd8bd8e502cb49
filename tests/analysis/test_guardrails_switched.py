"""Guardrails after A/B -> bandit -> A/B switches (issue 12 follow-ups): the 100-event gate of
the always-valid intervals applies to guardrails, and quantile guardrails refuse adaptively
routed traffic instead of reporting a biased quantile.

Through the real Experiment and the memory store (latencies recorded the way the middleware
does, ``store.record_auto``). References are computed here from a log kept outside the store:
the events per arm with numpy (non-zero per-unit revenue, by variant of first exposure), the
p95 per arm with numpy's quantile. Composition-matrix cells: memory store; switched mode, pure
bandit and pure A/B; 2 and 3 variants; user level; the rollback monitor and the verdict.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from modelrouter import Analysis, Experiment, RouterConfig
from modelrouter.analysis.guardrails import check_guardrail
from modelrouter.config.guardrails import GuardrailSpec
from modelrouter.stats.always_valid import MIN_EVENTS
from modelrouter.stats.moments import Moments

PHASES = [("ab", 400), ("bandit", 400), ("ab", 400)]
GUARDS: dict[str, Any] = {"revenue": {"max_decrease": 5.0},
                          "latency_ms": {"max_increase": 0.2, "relative": True,
                                         "quantile": 0.95},
                          "error": None}


def make(names: tuple[str, ...], seed: int, **extra: Any) -> Experiment:
    config: dict[str, Any] = dict(metrics={"click": "binary", "revenue": "continuous"},
                                  reward="click", mode="ab", refresh_seconds=None,
                                  refresh_every=50, min_share=0.1, missing_reward="omit",
                                  salt=f"guard-switch-{seed}", guardrails=GUARDS)
    config.update(extra)
    return Experiment({n: n for n in names}, RouterConfig(level="user", **config),
                      rng=random.Random(seed))


def run(exp: Experiment, seed: int, buyers: float = 0.05,
        phases: list[tuple[str, int]] = PHASES) -> dict[str, np.ndarray]:
    """One request per new unit; a click (reward), a heavy-tailed revenue (``buyers`` of the
    units buy, lognormal amounts) and a latency, the same in every arm (A/A)."""
    rng = np.random.default_rng(seed)
    arms, revenue, latency = [], [], []
    t = 0
    for mode, n in phases:
        if exp.mode != mode:
            exp.configure(mode=mode)
        for _ in range(n):
            t += 1
            d, seq = exp.route(f"s{seed}-u{t}")
            arm = exp.names.index(d.variant)
            rev = float(rng.lognormal(3.0, 1.5)) if rng.random() < buyers else 0.0
            lat = float(20.0 * rng.lognormal(0.0, 0.4))
            exp.record(d, "click", int(rng.random() < 0.2))
            exp.record(d, "revenue", rev)
            exp.store.record_auto(seq, lat, 0.0)
            if exp.bandit is not None:
                exp.bandit.wait_idle()
            arms.append(arm)
            revenue.append(rev)
            latency.append(lat)
    return {"arm": np.asarray(arms), "revenue": np.asarray(revenue),
            "latency": np.asarray(latency)}


@pytest.mark.parametrize("names", [("a", "b"), ("a", "b", "c")])
def test_heavy_tailed_guardrail_waits_for_100_events_per_arm(names: tuple[str, ...]) -> None:
    """The failing scenario: 5% buyers give ~20 non-zero revenues per arm, far below 100; the
    guardrail's interval must not be computed yet (before, it was, and with so few events its
    variance is typically under-estimated). The events reported are numpy's count."""
    exp = make(names, seed=7)
    log = run(exp, seed=7)
    analysis = Analysis.from_experiment(exp)
    guards = {(g.label, g.variant): g for g in analysis.guardrails()}
    for t, variant in enumerate(names[1:], start=1):
        events = min(int(np.count_nonzero(log["revenue"][log["arm"] == a])) for a in (0, t))
        assert 0 < events < MIN_EVENTS
        g = guards[("revenue", variant)]
        assert g.status == "inconclusive" and f"has {events:,} events" in g.reason
        assert f"wait for {MIN_EVENTS} per arm" in g.reason
    # the monitor and the verdict decide on the same results: nothing fails, no rollback
    checked = exp.check_guardrails()
    assert [r.reason for r in checked] == [g.reason for g in analysis.guardrails()]
    assert not exp.rolled_back
    verdict = analysis.verdict(names[1])
    assert {g.reason for g in verdict.guardrails} <= {g.reason for g in checked}
    assert verdict.decision != "blocked_by_guardrail"


def test_enough_events_compute_the_interval() -> None:
    """Half of the units buy: > 100 events per arm, the interval is computed again."""
    exp = make(("a", "b"), seed=8)
    log = run(exp, seed=8, buyers=0.5)
    assert min(np.count_nonzero(log["revenue"][log["arm"] == a]) for a in (0, 1)) >= MIN_EVENTS
    g = next(g for g in Analysis.from_experiment(exp).guardrails() if g.label == "revenue")
    assert np.isfinite(g.low) and np.isfinite(g.high) and "wait for" not in g.reason


@pytest.mark.parametrize("names", [("a", "b"), ("a", "b", "c")])
@pytest.mark.parametrize("phases", [PHASES, [("bandit", 600)]], ids=["switched", "bandit"])
def test_quantile_guardrail_refuses_adaptive_traffic(names: tuple[str, ...],
                                                     phases: list[tuple[str, int]]) -> None:
    exp = make(names, seed=9)
    run(exp, seed=9, phases=phases)
    guards = [g for g in Analysis.from_experiment(exp).guardrails()
              if g.label == "latency_ms p95"]
    assert len(guards) == len(names) - 1
    for g in guards:
        assert g.status == "inconclusive" and np.isnan(g.estimate)
        assert g.reason.startswith("latency_ms p95: p95 guardrail is not available on "
                                   "adaptively routed traffic: ")
        assert "propensit" in g.reason
    assert not exp.check_guardrails() or not exp.rolled_back


def test_quantile_guardrail_on_ab_traffic_is_computed_after_100_requests() -> None:
    """Pure A/B: the p95 is computed (within 3 of the histogram's 2%-wide buckets of numpy's
    sample quantile), but only once each arm has 100 requests."""
    exp = make(("a", "b"), seed=10)
    log = run(exp, seed=10, phases=[("ab", 120)])
    few = min(int(np.sum(log["arm"] == a)) for a in (0, 1))
    g = next(g for g in Analysis.from_experiment(exp).guardrails() if g.label == "latency_ms p95")
    assert g.status == "inconclusive"
    assert f"has {few:,} requests in the latency histogram" in g.reason
    log2 = run(exp, seed=11, phases=[("ab", 1500)])
    lat = np.r_[log["latency"], log2["latency"]]
    arm = np.r_[log["arm"], log2["arm"]]
    g = next(g for g in Analysis.from_experiment(exp).guardrails() if g.label == "latency_ms p95")
    assert np.isfinite(g.low) and "wait for" not in g.reason
    ratio = np.quantile(lat[arm == 1], 0.95) / np.quantile(lat[arm == 0], 0.95)
    assert g.estimate == pytest.approx(ratio - 1.0, abs=3 * 0.02 * ratio)


def test_error_breach_fails_before_the_gate_and_rolls_back() -> None:
    """A treatment erring on 10% of requests against a control without errors: a binary
    metric is not event-gated (the control will never have 100 errors), so the breach is acted
    on through the monitor after A/B -> bandit -> A/B; and an error guardrail without any
    error in either arm still passes once the arms are large."""
    exp = make(("a", "b"), seed=12, guardrails={"error": {"max_increase": 0.01}},
               rollback=True)
    rng = np.random.default_rng(12)
    t = 0
    for mode, n in [("ab", 300), ("bandit", 200), ("ab", 300)]:
        if exp.mode != mode:
            exp.configure(mode=mode)
        for _ in range(n):
            t += 1
            d, seq = exp.route(f"e-u{t}")
            exp.record(d, "click", int(rng.random() < 0.2))
            exp.store.record_auto(seq, 20.0, float(d.variant == "b" and rng.random() < 0.1))
            if exp.bandit is not None:
                exp.bandit.wait_idle()
    results = [g for g in exp.check_guardrails() if g.label == "error"]
    assert [g.status for g in results] == ["fail"] and "wait for" not in results[0].reason
    assert exp.rolled_back
    clean = make(("a", "b"), seed=13, guardrails={"error": {"max_increase": 0.05}})
    for u in range(2000):
        _d, seq = clean.route(f"c-u{u}")
        clean.store.record_auto(seq, 20.0, 0.0)
    assert [g.status for g in clean.check_guardrails() if g.label == "error"] == ["pass"]


def test_continuous_breach_fails_before_the_gate() -> None:
    """Few events (5 per arm as given, below the gate) but an overwhelming breach (means 2.0
    against 0.05, margin 0.5): fail, noted; a change within the margin stays inconclusive with
    no interval shown."""
    spec = GuardrailSpec("revenue", "decrease", 0.5)
    c, t = np.linspace(1.5, 2.5, 1000), np.linspace(0.0, 0.1, 1000)
    res = check_guardrail(spec, Moments.from_arrays(c, np.ones(c.size)),
                          Moments.from_arrays(t, np.ones(t.size)), ratio=False, alpha=0.05,
                          variant="t", events=5)
    assert res.status == "fail" and "a breach is acted on at once" in res.reason
    gated = check_guardrail(GuardrailSpec("revenue", "decrease", 5.0),
                            Moments.from_arrays(c, np.ones(c.size)),
                            Moments.from_arrays(c[::-1], np.ones(c.size)), ratio=False,
                            alpha=0.05, variant="t", events=5)
    assert gated.status == "inconclusive" and "has 5 events" in gated.reason
    assert np.isnan(gated.low) and np.isnan(gated.high)


MU, SD, BUY = 3.0, 1.5, 0.05  # revenue: 5% buyers, lognormal amounts


def _false_fails(runs: int, looks: int, step: int, seed: int) -> int:
    """Heavy-tailed revenue, treatment's mean exactly 20% below the control's (the margin of a
    relative max_decrease=0.2 guardrail, the worst case); checked every ``step`` units per arm
    with the event gate (events counted here with numpy). Runs that ever fail."""
    spec = GuardrailSpec("revenue", "decrease", 0.2, relative=True)
    rng = np.random.default_rng(seed)
    n = looks * step
    fails = 0
    for _ in range(runs):
        c = np.where(rng.random(n) < BUY, rng.lognormal(MU, SD, n), 0.0)
        t = np.where(rng.random(n) < BUY, 0.8 * rng.lognormal(MU, SD, n), 0.0)
        ec, et = np.cumsum(c != 0), np.cumsum(t != 0)
        for k in range(1, looks + 1):
            m = k * step
            res = check_guardrail(spec, Moments.from_arrays(c[:m], np.ones(m)),
                                  Moments.from_arrays(t[:m], np.ones(m)), ratio=False,
                                  alpha=0.05, variant="t", events=int(min(ec[m - 1], et[m - 1])))
            if res.status == "fail":
                fails += 1
                break
    return fails


def test_heavy_tailed_false_fail_rate_fast() -> None:
    """200 runs, checks every 10 units up to 1,000 per arm: at most 0.05 + 2 MC s.e.
    (s.e. at 0.05: 0.015). Measured 0 of 200."""
    assert _false_fails(200, 100, 10, seed=1) / 200 <= 0.05 + 2 * 0.015


@pytest.mark.slow
def test_heavy_tailed_false_fail_rate() -> None:
    """1,000 runs, checks every 20 units up to 4,000 per arm (the gate opens at ~2,000):
    at most 0.05 + 2 MC s.e. (s.e. at 0.05: 0.0069). Measured: docs/statistics.md."""
    fails = _false_fails(1000, 200, 20, seed=2)
    print(f"heavy-tailed false fails: {fails} / 1000")
    assert fails / 1000 <= 0.05 + 2 * 0.0069
