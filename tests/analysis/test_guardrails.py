"""Guardrails: status semantics, relative/absolute margins, segments, and the false-fail rate
under repeated looks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelrouter import RouterConfig
from modelrouter.analysis.guardrails import check_guardrail
from modelrouter.config.guardrails import GuardrailSpec
from modelrouter.stats.moments import Moments
from tests.analysis._sim import snapshot

INC_REL = GuardrailSpec("latency_ms", "increase", 0.10, relative=True)
INC_ABS = GuardrailSpec("unsubscribe", "increase", 0.01)
DEC_ABS = GuardrailSpec("revenue", "decrease", 0.5)


def _m(values: np.ndarray) -> Moments:
    return Moments.from_arrays(values, np.ones(values.size))


def _status(spec: GuardrailSpec, c: np.ndarray, t: np.ndarray) -> str:
    return check_guardrail(spec, _m(c), _m(t), ratio=False, alpha=0.05,
                           variant="treatment").status


def test_fail_pass_inconclusive() -> None:
    rng = np.random.default_rng(0)
    base = rng.lognormal(np.log(50), 0.3, 20000)
    assert _status(INC_REL, base, rng.lognormal(np.log(50 * 1.3), 0.3, 20000)) == "fail"
    assert _status(INC_REL, base, rng.lognormal(np.log(50), 0.3, 20000)) == "pass"
    assert _status(INC_REL, base[:30], rng.lognormal(np.log(50), 0.3, 30)) == "inconclusive"
    assert _status(INC_ABS, rng.random(20000) < 0.02, rng.random(20000) < 0.05) == "fail"
    assert _status(INC_ABS, rng.random(20000) < 0.02, rng.random(20000) < 0.02) == "pass"
    # higher is better: a drop of 1.0 breaches a 0.5 max_decrease; a rise passes
    assert _status(DEC_ABS, rng.normal(10, 2, 5000), rng.normal(9, 2, 5000)) == "fail"
    assert _status(DEC_ABS, rng.normal(10, 2, 5000), rng.normal(10.5, 2, 5000)) == "pass"
    r = check_guardrail(INC_REL, _m(base), _m(base * 1.3), ratio=False, alpha=0.05,
                        variant="treatment")
    assert r.estimate == pytest.approx(0.3, rel=1e-9)  # reported on the relative scale
    assert r.low > 0.1 and "breached" in r.reason and r.to_dict()["status"] == "fail"


def test_too_few_units_is_inconclusive_with_reason() -> None:
    r = check_guardrail(INC_ABS, _m(np.ones(5)), _m(np.ones(5)), ratio=False, alpha=0.05,
                        variant="t", segment={"platform": "tv"}, min_units=100)
    assert r.status == "inconclusive" and "too few units" in r.reason
    assert r.where == "platform=tv"


def _false_fail_rate(runs: int, looks: int, n_per_look: int, seed: int,
                     spec: GuardrailSpec) -> float:
    """True change exactly at the margin (the worst case): how often does it ever fail?"""
    rng = np.random.default_rng(seed)
    fails = 0
    for _ in range(runs):
        if spec.relative:
            c = rng.lognormal(0.0, 0.5, looks * n_per_look)
            t = rng.lognormal(math.log1p(spec.margin), 0.5, looks * n_per_look)
        else:
            c = (rng.random(looks * n_per_look) < 0.05).astype(float)
            t = (rng.random(looks * n_per_look) < 0.05 + spec.margin).astype(float)
        for k in range(1, looks + 1):
            n = k * n_per_look
            if _status(spec, c[:n], t[:n]) == "fail":
                fails += 1
                break
    return fails / runs


@pytest.mark.parametrize("spec", [INC_REL, INC_ABS])
def test_false_fail_rate_under_repeated_looks_fast(spec: GuardrailSpec) -> None:
    runs = 1000
    rate = _false_fail_rate(runs, looks=10, n_per_look=200, seed=1, spec=spec)
    assert rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / runs)


@pytest.mark.slow
@pytest.mark.parametrize("spec", [INC_REL, INC_ABS])
def test_false_fail_rate_under_repeated_looks(spec: GuardrailSpec) -> None:
    runs = 2000
    rate = _false_fail_rate(runs, looks=50, n_per_look=200, seed=2, spec=spec)
    assert rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / runs)


def test_segment_guardrails_bonferroni_and_min_units() -> None:
    cfg = RouterConfig(metrics={"click": "binary"}, segments={"platform": "x-platform"},
                       guardrails={"latency_ms": {"max_increase": 0.1, "relative": True,
                                                  "segments": ["platform"]}},
                       min_segment_units=100)
    rng = np.random.default_rng(5)
    seg = np.r_[np.zeros(6000, int), np.ones(6000, int), np.full(50, 2)]
    variant = rng.integers(0, 2, seg.size)
    slow = np.where((seg == 1) & (variant == 1), 1.3, 1.0)
    lat = 50 * slow * rng.lognormal(0, 0.3, seg.size)
    a = snapshot(cfg, variant, {"platform": seg}, {"latency_ms": lat,
                                                   "error": np.zeros(seg.size)})
    res = {(g.metric, g.where): g for g in a.guardrails()}
    assert res[("latency_ms", "platform=platform1")].status == "fail"
    assert res[("latency_ms", "platform=platform0")].status == "pass"
    tiny = res[("latency_ms", "platform=platform2")]
    assert tiny.status == "inconclusive" and "too few units" in tiny.reason
    assert res[("latency_ms", "platform=platform1")].alpha == pytest.approx(0.05 / 2)
    assert res[("latency_ms", "overall")].alpha == 0.05
    # no error at all: floor variance (a binary metric is not event-gated)
    assert res[("error", "overall")].status == "pass"
    assert {g.segment is None for g in a.guardrails()} == {True, False}


def test_relative_interval_is_the_mixture_confidence_sequence_on_the_log_ratio() -> None:
    # reference written out from raw data: delta-method variance of log(mean_t / mean_c) and
    # the closed-form normal-mixture interval (Johari et al.) with tau2 = log(1.1)^2
    rng = np.random.default_rng(7)
    c, t = rng.lognormal(np.log(50), 0.4, 3000), rng.lognormal(np.log(53), 0.4, 2500)
    r = check_guardrail(INC_REL, _m(c), _m(t), ratio=False, alpha=0.05, variant="treatment")
    d = math.log(t.mean() / c.mean())
    v = (t.var(ddof=1) / t.size / t.mean() ** 2 + c.var(ddof=1) / c.size / c.mean() ** 2)
    tau2 = math.log(1.1) ** 2
    half = math.sqrt(2 * v * (v + tau2) / tau2 * (math.log(20) + 0.5 * math.log((v + tau2) / v)))
    assert r.estimate == pytest.approx(math.expm1(d), rel=1e-12)
    assert (r.low, r.high) == pytest.approx((math.expm1(d - half), math.expm1(d + half)),
                                            rel=1e-9)
    expected = ("fail" if d - half > math.log(1.1) else
                "pass" if d + half < math.log(1.1) else "inconclusive")
    assert r.status == expected
