"""The verdict: each decision from a scenario built to produce it, with its reasons."""

from __future__ import annotations

import numpy as np

from modelrouter import RouterConfig
from modelrouter.analysis import Analysis
from tests.analysis._sim import snapshot

PLAN = {"max_units": 4000, "looks": 5}
CONFIG = RouterConfig(metrics={"click": "binary"}, primary="click", plan=PLAN,
                      segments={"platform": "x-platform"})


def _analysis(seed: int, n: int, lift: float = 0.0, slowdown: float = 1.0,
              config: RouterConfig = CONFIG, drop_treatment: float = 0.0) -> Analysis:
    rng = np.random.default_rng(seed)
    variant = rng.integers(0, 2, n)
    keep = ~((variant == 1) & (rng.random(n) < drop_treatment))
    variant = variant[keep]
    m = variant.size
    click = (rng.random(m) < 0.12 + lift * variant).astype(float)
    lat = 50 * np.where(variant == 1, slowdown, 1.0) * rng.lognormal(0, 0.3, m)
    return snapshot(config, variant, {"platform": rng.integers(0, 3, m)},
                    {"click": click, "latency_ms": lat, "error": np.zeros(m)})


def test_ship_when_primary_rejects_and_guardrails_pass() -> None:
    v = _analysis(1, 8000, lift=0.04).verdict()
    assert v.decision == "ship", v
    assert "significant improvement" in v.reasons[0]
    assert v.sequential is not None and v.sequential.decision == "reject"
    assert not v.notes  # the plan's sequential test was used, no fallback


def test_keep_testing_early() -> None:
    v = _analysis(2, 600, lift=0.0).verdict()
    assert v.decision == "keep_testing"
    assert "not significant yet" in v.reasons[0]


def test_no_effect_at_planned_maximum() -> None:
    v = _analysis(3, 8200, lift=0.0).verdict()
    assert v.decision == "no_effect"
    assert "planned maximum" in v.reasons[0]


def test_no_effect_when_significantly_worse() -> None:
    v = _analysis(4, 8000, lift=-0.05).verdict()
    assert v.decision == "no_effect" and "WORSE" in v.reasons[0]


def test_blocked_by_guardrail_even_when_primary_wins() -> None:
    v = _analysis(5, 8000, lift=0.04, slowdown=1.25).verdict()
    assert v.decision == "blocked_by_guardrail"
    assert v.reasons[0].startswith("guardrail failed: latency_ms")


def test_invalid_on_srm_no_primary_or_too_little_data() -> None:
    v = _analysis(6, 8000, lift=0.04, drop_treatment=0.1).verdict()
    assert v.decision == "invalid" and "MISMATCH" in v.reasons[0].upper()
    v = _analysis(7, 2000, config=CONFIG.replace(primary=None, plan=None)).verdict()
    assert v.decision == "invalid" and "no primary metric" in v.reasons[0]
    v = _analysis(8, 2).verdict()
    assert v.decision == "invalid" and "too little data" in v.reasons[0]


def test_fixed_horizon_fallback_says_so() -> None:
    v = _analysis(9, 8000, lift=0.04, config=CONFIG.replace(plan=None)).verdict()
    assert v.decision == "ship"
    assert v.notes and "fixed-horizon" in v.notes[0]


def test_report_has_every_section() -> None:
    text = _analysis(10, 8000, lift=0.04, slowdown=1.25).report()
    for needle in ("verdict: BLOCKED_BY_GUARDRAIL", "Sample ratio", "Primary metric",
                   "Guardrails", "FAIL", "click by platform", "heterogeneity", "latency_ms"):
        assert needle in text, needle
    d = _analysis(10, 8000, lift=0.04).verdict().to_dict()
    assert d["decision"] == "ship" and d["guardrails"]


def test_three_variants_use_the_sequential_test_of_the_chosen_treatment() -> None:
    # regression: the verdict asked sequential() for the primary without the variant, which is
    # ambiguous with two treatments, and silently fell back to the fixed-horizon p-value
    rng = np.random.default_rng(11)
    n = 12_000
    variant = rng.integers(0, 3, n)
    click = (rng.random(n) < 0.12 + 0.04 * (variant == 1)).astype(float)
    a = snapshot(CONFIG, variant, {"platform": rng.integers(0, 3, n)},
                 {"click": click, "latency_ms": 50 * rng.lognormal(0, 0.3, n),
                  "error": np.zeros(n)},
                 variants=("control", "b", "c"), weights=(1 / 3, 1 / 3, 1 / 3))
    for name in ("b", "c"):
        v = a.verdict(name)
        assert not v.notes, v.notes  # no fixed-horizon fallback
        assert v.sequential.variant == name
        assert v.sequential.decision == a.sequential("click", name).decision
    assert a.verdict("b").decision == "ship"
    assert a.verdict("c").decision in ("keep_testing", "no_effect")
