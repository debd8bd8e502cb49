"""The report's text is honest about what the data do not define yet (issue 14 part 4).

On real reports (memory store, A/B, user and request level, 2 and 3 variants, fresh): before
any data, with one unit, with a metric that has no events, with huge effects; and for the
random small experiments of ``tests/analysis/test_fuzz.py`` with a binary, continuous or
per-event primary metric, bandit traffic, and A/B -> bandit -> A/B switches (derandomized,
``FAST_EXAMPLES``; ``-m slow``: ``SLOW_EXAMPLES`` random ones). The report never prints
``nan``, "1 units", "all 0 guardrail checks", "check(s)", ``p-value 0`` or a sample-ratio
p-value before there are units; it says "not enough data yet" instead. The huge-effect
p-value is checked against statsmodels' two-proportion z-test, which also underflows below
1e-16 there.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from statsmodels.stats.proportion import proportions_ztest

from modelrouter import AnalysisError, ModelRouter, RouterConfig
from modelrouter.analysis.text import fmt_pvalue, plural, singular_counts
from tests.analysis.test_fuzz import (
    SETTINGS,
    BanditScenario,
    Scenario,
    bandit_scenarios,
    build_bandit,
    scenarios,
)
from tests.analysis.test_mode_switch_fuzz import SwitchScenario, switch_scenarios, switched
from tests.analysis.test_to_dict import PRIMARIES, SWITCH_EXAMPLES, build
from tests.conftest import make_app

FAST_EXAMPLES = 25
SLOW_EXAMPLES = 300
METRICS: dict[str, Any] = {"click": "binary", "revenue": "continuous",
                           "rating": {"kind": "continuous", "aggregate": "mean"}}
DISHONEST = [
    (re.compile(r"\bnan\b", re.IGNORECASE), "nan"),
    (re.compile(r"(?<![\d.,])1 (unit|request|decision|event|look|check)s\b"), "'1 <noun>s'"),
    (re.compile(r"\ball 0 guardrail"), "an empty 'all 0 guardrail checks pass'"),
    (re.compile(r"check\(s\)"), "'check(s)'"),
    (re.compile(r"p(-value)? =? ?0(\.0*)?(?![\d.e])"), "a p-value of 0"),
]


def dishonest(text: str) -> list[str]:
    """What the report must not print, with the line it is on."""
    found = []
    for line in text.splitlines():
        for pattern, what in DISHONEST:
            if pattern.search(line):
                found.append(f"{what}: {line.strip()[:160]}")
    return found


def router(names: tuple[str, ...] = ("control", "treatment"), **config: Any) -> ModelRouter:
    config.setdefault("metrics", METRICS)
    config.setdefault("primary", "click")
    return ModelRouter(make_app(), {n: n for n in names}, RouterConfig(**config))


def test_before_any_data_the_report_says_not_enough_data_yet() -> None:
    r = router(plan={"max_units": 400}, segments={"platform": "x-platform"},
               guardrails={"revenue": {"max_decrease": 1.0}})
    text = r.analysis().report()
    assert not dishonest(text), dishonest(text)
    assert "0 units," in text
    assert "Sample ratio: not enough data yet" in text and "Sample ratio: always" not in text
    assert "not enough data yet: too little data on 'click'" in text
    assert "revenue: not enough data yet" in text
    guard = [line for line in text.splitlines() if line.startswith("revenue ")]
    assert guard and "not enough data yet" in guard[0] and "[" not in guard[0]
    assert "Segments by platform: not enough data yet" in text


def test_one_unit_is_one_unit() -> None:
    for i in range(50):  # the first unit id that the hash sends to the control
        r = router(("control", "b", "c"))
        if r.experiment.assign(f"u{i}").variant == "control":
            break
    text = r.analysis().report()
    assert "1 unit," in text and not dishonest(text), dishonest(text)
    assert "has 1 unit with data" in text  # compare()'s message, made singular


def test_a_metric_without_events_has_no_interval() -> None:
    r = router(level="request")
    exp = r.experiment
    rng = np.random.default_rng(0)
    for _ in range(200):
        d = exp.assign(None)
        exp.record(d, "click", int(rng.random() < 0.3))
    text = r.analysis().report()
    assert not dishonest(text), dishonest(text)
    for metric in ("rating", "revenue", "latency_ms", "error"):
        block = text.split(f"\n{metric}: treatment vs control")[1].split("\n\n")[0]
        assert f"not enough data yet: no '{metric}' events recorded" in block, block
        assert "CI" not in block and "p-value" not in block.replace("p-value not defined", "")
    # the primary metric has events: its interval is printed
    assert "difference" in text.split("Primary metric")[1].split("Other metrics")[0]


@pytest.mark.parametrize("plan", [None, {"max_units": 400}])
def test_a_primary_per_event_metric_without_events_in_an_arm_is_not_enough_data(
        plan: dict[str, Any] | None) -> None:
    """The verdict used to read "treatment - control = +nan, p = nan: keep testing"."""
    r = router(primary="rating", **({"plan": plan} if plan else {}))
    exp = r.experiment
    for i in range(30):
        d = exp.assign(f"u{i}")
        if d.variant == "treatment":
            exp.record(d, "rating", 4.0 + i % 3)
        exp.record(d, "click", i % 2)
    a = r.analysis()
    v = a.verdict()
    assert v.decision == "invalid"
    assert v.reasons[0] == ("not enough data yet: too little data on 'rating' (no 'rating' "
                            "events recorded in control yet)")
    text = a.report()
    assert not dishonest(text), dishonest(text)
    assert a.to_dict()["verdict"]["decision"] == "invalid"


def test_huge_effects_print_p_below_1e_16_not_0() -> None:
    r = router()
    exp = r.experiment
    clicks = {"control": [], "treatment": []}  # type: dict[str, list[int]]
    rng = np.random.default_rng(1)
    for i in range(2000):
        d = exp.assign(f"u{i}")
        c = int(rng.random() < (0.05 if d.variant == "control" else 0.95))
        exp.record(d, "click", c)
        clicks[d.variant].append(c)
    a = r.analysis()
    counts = [sum(clicks["treatment"]), sum(clicks["control"])]
    nobs = [len(clicks["treatment"]), len(clicks["control"])]
    _z, p_ref = proportions_ztest(counts, nobs)
    assert p_ref < 1e-16  # statsmodels: the same z-test underflows too
    assert a.compare("click").pvalue == pytest.approx(p_ref, abs=1e-300)
    text = a.report()
    assert "p-value < 1e-16" in text and "fixed-horizon p < 1e-16" in text
    assert not dishonest(text), dishonest(text)


def test_text_helpers() -> None:
    assert [plural(n, "unit") for n in (0, 1, 2, 1234)] == [
        "0 units", "1 unit", "2 units", "1,234 units"]
    assert singular_counts("has 1 units, 21 units, 0.1 units, 1 requests") == \
        "has 1 unit, 21 units, 0.1 units, 1 request"
    assert [fmt_pvalue(p) for p in (0.0, 1e-17, 1e-16, 0.01234567, float("nan"))] == [
        "< 1e-16", "< 1e-16", "1e-16", "0.01235", "n/a"]


def check(sc: Scenario, primary: str) -> None:
    r = build(sc, primary)
    for _ in range(sc.looks):
        with contextlib.suppress(AnalysisError):
            r.record_look()
    a = r.analysis()
    texts = [a.report()] + [a.report(v) for v in a.variants if v != a.control]
    for text in texts:
        assert not dishonest(text), dishonest(text)


def check_bandit(sc: BanditScenario) -> None:
    r = build_bandit(sc)
    try:
        text = r.analysis().report()
        assert not dishonest(text), dishonest(text)
    finally:
        assert r.experiment.bandit is not None
        r.experiment.bandit.close()


@settings(max_examples=FAST_EXAMPLES, derandomize=True, **SETTINGS)  # type: ignore[arg-type]
@given(scenarios, PRIMARIES)
def test_random_reports_are_honest(sc: Scenario, primary: str) -> None:
    check(sc, primary)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, **SETTINGS)  # type: ignore[arg-type]
@given(scenarios, PRIMARIES)
def test_random_reports_are_honest_slow(sc: Scenario, primary: str) -> None:
    check(sc, primary)


@settings(max_examples=FAST_EXAMPLES, derandomize=True, **SETTINGS)  # type: ignore[arg-type]
@given(bandit_scenarios)
def test_random_bandit_reports_are_honest(sc: BanditScenario) -> None:
    check_bandit(sc)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, **SETTINGS)  # type: ignore[arg-type]
@given(bandit_scenarios)
def test_random_bandit_reports_are_honest_slow(sc: BanditScenario) -> None:
    check_bandit(sc)


@settings(max_examples=SWITCH_EXAMPLES, derandomize=True, **SETTINGS)  # type: ignore[arg-type]
@given(switch_scenarios)
def test_switched_reports_are_honest(sc: SwitchScenario) -> None:
    with switched(sc) as r:
        text = r.analysis().report()
        assert not dishonest(text), dishonest(text)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, **SETTINGS)  # type: ignore[arg-type]
@given(switch_scenarios)
def test_switched_reports_are_honest_slow(sc: SwitchScenario) -> None:
    with switched(sc) as r:
        text = r.analysis().report()
        assert not dishonest(text), dishonest(text)
