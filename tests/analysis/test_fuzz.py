"""Property: for any finite feedback, every analysis entry point answers or raises
``AnalysisError``, never anything else, and ``GET {prefix}/stats`` never answers 500.

Experiments are built through the public API only (``ModelRouter``, ``assign``, ``record``):
memory store; user and request level; 2 and 3 variants; binary, continuous and ratio
(``aggregate="mean"``) metrics plus the automatic ``latency_ms`` and ``error``; a segment
dimension; a plan; guardrails (absolute, relative, per segment, quantile); bandit traffic
(inverse-propensity compare, holdout); values mixing near-zero means, +-10, magnitudes from
denormals to 1e300 (refused beyond the record-time bounds with ``InvalidValueError``, exactly as
the README documents), negative values; some units without any data. Then every entry point of
:class:`~modelrouter.analysis.Analysis` is called and its answer rendered (``to_dict`` through
strict JSON, ``explain``/``summary``/``str``); a NaN p-value or relative lift must come with a
note saying why.

Warnings are errors in this project's pytest configuration, so a numpy ``RuntimeWarning``
(overflow, invalid value, division by zero) inside the analysis fails these tests too.

The default run is derandomized (the same ``FAST_EXAMPLES`` examples every time); ``-m slow``
runs ``SLOW_EXAMPLES`` random examples per test, so per entry point (each example calls every
entry point once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from modelrouter import AnalysisError, InvalidValueError, ModelRouter, RouterConfig
from modelrouter.analysis import Analysis, ComparisonResult
from modelrouter.asgi.types import Receive, Scope, Send
from modelrouter.routing.values import MAX_ABS_VALUE, MAX_LATENCY_MS, MIN_ABS_VALUE
from modelrouter.testing import ASGIClient
from modelrouter.web.messages import jsonable

FAST_EXAMPLES = 120
SLOW_EXAMPLES = 500
ADMIN = "admin-token-0123456789abcdef"
PLATFORMS = ("web", "ios", "android")

METRICS: dict[str, Any] = {
    "conv": "binary",
    "revenue": "continuous",
    "rate": {"kind": "continuous", "aggregate": "mean"},
}
GUARDRAILS: dict[str, Any] = {
    "revenue": {"max_decrease": 1.0, "segments": ["platform"]},
    "rate": {"max_increase": 0.2, "relative": True},
    "conv": {"max_decrease": 0.05, "relative": True},
}


async def _app(scope: Scope, receive: Receive, send: Send) -> None:  # never reached
    raise AssertionError("the fuzz only calls the HTTP surface")


# -- values -----------------------------------------------------------------------------
def magnitudes(low: int, high: int, signs: tuple[float, ...] = (1.0, -1.0)
               ) -> st.SearchStrategy[float]:
    """``+-m * 10**e`` for ``e`` in ``[low, high]``: from denormals to far beyond the bound."""
    return st.builds(lambda e, m, s: s * m * 10.0 ** e, st.integers(low, high),
                     st.floats(1.0, 9.99), st.sampled_from(signs))


EDGES = [10.0, -10.0, 1e-4, -1e-4, 0.0, 1.0, MAX_ABS_VALUE, -MAX_ABS_VALUE, 5e-324, 1e-300,
         1e300, 1e200, 1e101, MIN_ABS_VALUE, -MIN_ABS_VALUE]
REGIMES: dict[str, st.SearchStrategy[Any]] = {  # one per experiment, so that means reach them
    "mixed": st.one_of(st.sampled_from(EDGES), magnitudes(-320, 300),
                       st.floats(-1e6, 1e6, allow_nan=False), st.integers(-10**6, 10**6)),
    "pm10": st.sampled_from([10.0, -10.0, 10, -10, 1e-4]),  # means near zero by cancellation
    "huge": st.one_of(magnitudes(95, 100), magnitudes(100, 300), st.sampled_from(EDGES[6:8])),
    "huge positive": magnitudes(95, 100, (1.0,)) | st.just(MAX_ABS_VALUE),
    "tiny": st.one_of(magnitudes(-101, -95), magnitudes(-323, -4),
                      st.sampled_from([5e-324, -5e-324, 0.0, MIN_ABS_VALUE, -MIN_ABS_VALUE])),
    "tiny positive": magnitudes(-101, -95, (1.0,)) | st.just(MIN_ABS_VALUE),
    "constant": st.sampled_from([7.0]),
}
latency_values = st.one_of(st.floats(0.0, 1e9, allow_nan=False), st.sampled_from([0.0, -1e6]),
                           magnitudes(-323, -1, (1.0,)))


def events(regime: str) -> st.SearchStrategy[list[tuple[str, Any]]]:
    values: dict[str, st.SearchStrategy[Any]] = {
        "conv": st.sampled_from([0, 1, 1, 1.0, True]),
        "revenue": REGIMES[regime],
        "rate": REGIMES[regime],
        "latency_ms": latency_values,
        "error": st.sampled_from([0, 0, 1]),
    }
    return st.lists(st.sampled_from(sorted(values)).flatmap(
        lambda m: st.tuples(st.just(m), values[m])), max_size=6)


@dataclass
class Scenario:
    level: str
    variants: int
    regime: str
    units: list[tuple[int, list[tuple[str, Any]]]]  # (platform, events) per unit
    looks: int


scenarios = st.sampled_from(sorted(REGIMES)).flatmap(lambda regime: st.builds(
    Scenario,
    level=st.sampled_from(["user", "request"]),
    variants=st.sampled_from([2, 3]),
    regime=st.just(regime),
    units=st.lists(st.tuples(st.integers(0, len(PLATFORMS) - 1), events(regime)), max_size=40),
    looks=st.integers(0, 2),
))


# -- building and asking ------------------------------------------------------------------
def build(sc: Scenario) -> ModelRouter:
    names = ["control", "treatment", "other"][:sc.variants]
    config = RouterConfig(metrics=METRICS, level=sc.level, segments={"platform": "x-platform"},
                          primary="revenue", plan={"max_units": 40, "looks": 3},
                          guardrails=GUARDRAILS, admin_token=ADMIN, min_segment_units=2)
    router = ModelRouter(_app, {n: n for n in names}, config)
    exp = router.experiment
    for i, (platform, evs) in enumerate(sc.units):
        unit = f"u{i}" if sc.level == "user" else None
        d = exp.assign(unit, (PLATFORMS[platform],))
        for metric, value in evs:
            record(router, d, metric, value)
    return router


def documented(metric: str, value: Any) -> bool:
    """Whether the README's value rules accept ``value`` for ``metric``."""
    v = float(value)
    if metric in ("conv", "error"):
        return v in (0.0, 1.0)
    if metric == "latency_ms":
        return v == 0.0 or MIN_ABS_VALUE <= v <= MAX_LATENCY_MS
    return v == 0.0 or MIN_ABS_VALUE <= abs(v) <= MAX_ABS_VALUE


def record(router: ModelRouter, d: Any, metric: str, value: Any) -> None:
    """Record through the public API: refused exactly when the documented rules say so."""
    try:
        router.record(d, metric, value)
    except InvalidValueError:
        assert not documented(metric, value), (metric, value)
    else:
        assert documented(metric, value), (metric, value)


def entry_points(analysis: Analysis) -> dict[str, Callable[[], Any]]:
    calls: dict[str, Callable[[], Any]] = {
        "to_dict": analysis.to_dict,
        "report": analysis.report,
        "verdict": analysis.verdict,
        "guardrails": analysis.guardrails,
        "srm": analysis.srm,
        "sequential": analysis.sequential,
        "always_valid": analysis.always_valid,
    }
    others = [v for v in analysis.variants if v != analysis.control]
    for metric in ("conv", "revenue", "rate", "latency_ms", "error"):
        calls[f"summary {metric}"] = lambda m=metric: analysis.summary(m)
        calls[f"compare_all {metric}"] = lambda m=metric: analysis.compare_all(m)
        calls[f"compare {metric}"] = lambda m=metric: analysis.compare(m, others[-1])
        calls[f"compare {metric} web"] = lambda m=metric: analysis.compare(
            m, others[0], segment={"platform": "web"})
        calls[f"segments {metric}"] = lambda m=metric: analysis.segments(m, "platform",
                                                                         others[0])
    if len(others) > 1:
        calls["verdict other"] = lambda: analysis.verdict(others[1])
        calls["report other"] = lambda: analysis.report(others[1])
    return calls


def render(result: Any) -> None:
    """Every answer renders: to_dict through strict JSON, explain/summary/str as text."""
    items = result if isinstance(result, (list, tuple)) else [result]
    if isinstance(result, dict):
        items = list(result.values())
    for item in items:
        if isinstance(item, ComparisonResult):  # what is not defined is NaN with a note
            if math.isnan(item.pvalue):
                assert any("p-value NaN" in n for n in item.notes), item.notes
            if math.isnan(item.relative_lift):
                assert any("relative lift" in n for n in item.notes), item.notes
        if hasattr(item, "to_dict"):
            json.dumps(jsonable(item.to_dict()), allow_nan=False)
        for name in ("explain", "summary"):
            if callable(getattr(item, name, None)):
                assert isinstance(getattr(item, name)(), str)
        assert isinstance(str(item), str)
    if isinstance(result, dict) and "metrics" in result:  # to_dict()
        json.dumps(jsonable(result), allow_nan=False)


def ask_everything(router: ModelRouter, sc: Scenario) -> None:
    for _ in range(sc.looks):
        with contextlib.suppress(AnalysisError):
            router.record_look()
    ask(router, entry_points(router.analysis()))


def ask(router: ModelRouter, calls: dict[str, Callable[[], Any]]) -> None:
    """Call every entry point, render every answer, then ``GET /stats``."""
    for name, call in calls.items():
        try:
            result = call()
        except AnalysisError:
            event(f"{name}: AnalysisError")
            continue
        except Exception as exc:  # pragma: no cover - the property under test
            raise AssertionError(f"{name} raised {type(exc).__name__}: {exc}") from exc
        event(f"{name}: answered")
        render(result)
    response = asyncio.run(ASGIClient(router).request(
        "GET", "/_modelrouter/stats", headers={"authorization": f"Bearer {ADMIN}"}))
    assert response.status == 200, (response.status, response.body[:300])
    body = json.loads(response.body)
    assert set(body["metrics"]) == set(METRICS) | {"latency_ms", "error"}


def check(sc: Scenario) -> None:
    ask_everything(build(sc), sc)


# -- bandit mode: the analysis per decision (inverse-propensity weights), holdout ------------
@dataclass
class BanditScenario:
    reward: str
    variants: int
    regime: str
    decisions: list[tuple[int, list[tuple[str, Any]]]]  # (platform, events) per decision


bandit_scenarios = st.sampled_from(sorted(REGIMES)).flatmap(lambda regime: st.builds(
    BanditScenario,
    reward=st.sampled_from(["conv", "revenue", "rate"]),
    variants=st.sampled_from([2, 3]),
    regime=st.just(regime),
    decisions=st.lists(st.tuples(st.integers(0, len(PLATFORMS) - 1), events(regime)),
                       max_size=60),
))


def build_bandit(sc: BanditScenario) -> ModelRouter:
    names = ["control", "treatment", "other"][:sc.variants]
    config = RouterConfig(metrics=METRICS, level="request", reward=sc.reward, mode="bandit",
                          refresh_every=7, refresh_seconds=None, holdout=0.2,
                          missing_reward="omit", guardrails=GUARDRAILS, admin_token=ADMIN,
                          segments={"platform": "x-platform"}, min_segment_units=2)
    router = ModelRouter(_app, {n: n for n in names}, config, rng=random.Random(0))
    exp = router.experiment
    assert exp.bandit is not None
    for platform, evs in sc.decisions:
        d = exp.assign(None, (PLATFORMS[platform],))
        for metric, value in evs:
            record(router, d, metric, value)
        exp.bandit.wait_idle()
    return router


def check_bandit(sc: BanditScenario) -> None:
    router = build_bandit(sc)
    try:
        analysis = router.analysis()
        calls = entry_points(analysis)
        calls["bandit"] = analysis.bandit
        calls["holdout"] = analysis.holdout
        for metric in ("conv", "revenue", "rate", "latency_ms"):
            for estimator in ("stratified", "aipw", "naive"):
                calls[f"compare {metric} {estimator}"] = lambda m=metric, e=estimator: (
                    analysis.compare(m, analysis.variants[1], estimator=e))
            calls[f"holdout {metric}"] = lambda m=metric: analysis.holdout(m)
        ask(router, calls)
    finally:
        assert router.experiment.bandit is not None
        router.experiment.bandit.close()


SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                     HealthCheck.data_too_large])


@settings(max_examples=FAST_EXAMPLES, derandomize=True, **SETTINGS)  # type: ignore[arg-type]
@given(scenarios)
def test_every_entry_point_answers_or_raises_analysis_error(sc: Scenario) -> None:
    check(sc)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, **SETTINGS)  # type: ignore[arg-type]
@given(scenarios)
def test_every_entry_point_answers_or_raises_analysis_error_slow(sc: Scenario) -> None:
    check(sc)


@settings(max_examples=FAST_EXAMPLES, derandomize=True, **SETTINGS)  # type: ignore[arg-type]
@given(bandit_scenarios)
def test_bandit_entry_points_answer_or_raise_analysis_error(sc: BanditScenario) -> None:
    check_bandit(sc)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, **SETTINGS)  # type: ignore[arg-type]
@given(bandit_scenarios)
def test_bandit_entry_points_answer_or_raise_analysis_error_slow(sc: BanditScenario) -> None:
    check_bandit(sc)

