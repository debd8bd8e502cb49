"""The routing core (routing/experiment.py): routing, the missing-unit rule, the feedback hook,
and feedback: validation that changes nothing, late attribution, exact concurrent counts.

Matrix cells: memory store; A/B and bandit; 2 and 3 variants; user and request level; fresh
and after configure; valid and hostile input."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from modelrouter import (
    Experiment,
    FeedbackError,
    InvalidValueError,
    RouterConfig,
    UnitIdError,
    UnknownDecisionError,
    UnknownMetricError,
    UnknownUnitError,
)
from modelrouter.routing import experiment as core
from modelrouter.routing.values import check_value


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def experiment(**kw: Any) -> Experiment:
    kw.setdefault("metrics", {"click": "binary", "revenue": "continuous"})
    clock = kw.pop("clock", None)
    extra = {"clock": clock} if clock else {}
    return Experiment({"control": "A", "treatment": "B"}, RouterConfig(**kw), **extra)


def state(exp: Experiment) -> dict[str, list[float]]:
    units = exp.store.snapshot().units
    assert units is not None
    return {m: [*units.x[m].tolist(), *units.y[m].tolist()] for m in units.x}


@pytest.mark.parametrize(("metric", "value", "error", "match"), [
    ("click", float("nan"), InvalidValueError, "finite"),
    ("revenue", float("inf"), InvalidValueError, "finite"),
    ("revenue", -float("inf"), InvalidValueError, "finite"),
    ("click", 2, InvalidValueError, "0 or 1"),
    ("click", 0.5, InvalidValueError, "0 or 1"),
    ("revenue", "12.5", InvalidValueError, "must be a number"),
    ("revenue", None, InvalidValueError, "must be a number"),
    ("clicks", 1, UnknownMetricError, "'clicks' is not declared"),
])
def test_bad_feedback_raises_and_changes_nothing(metric: str, value: Any, error: type,
                                                 match: str) -> None:
    exp = experiment()
    d = exp.assign("u1")
    exp.record(d.decision_id, "revenue", 3.0)
    before = state(exp)
    with pytest.raises(error, match=match):
        exp.record(d.decision_id, metric, value)
    with pytest.raises(error, match=match):
        exp.record_unit("u1", metric, value)
    assert state(exp) == before


@pytest.mark.parametrize("decision_id", ["", "nope", "deadbeef-1", None, 42])
def test_unknown_or_forged_decisions(decision_id: Any) -> None:
    exp = experiment()
    exp.assign("u1")
    before = state(exp)
    with pytest.raises(UnknownDecisionError):
        exp.record(decision_id, "click", 1)
    assert state(exp) == before
    with pytest.raises(UnknownDecisionError):  # right prefix, never issued
        exp.record(exp._prefix + "ff", "click", 1)
    with pytest.raises(UnknownUnitError, match="'ghost'"):
        exp.record_unit("ghost", "click", 1)


def test_errors_derive_from_base_and_value_error() -> None:
    from modelrouter import ModelRouterError
    for cls in (InvalidValueError, UnknownMetricError, UnknownDecisionError, UnknownUnitError):
        assert issubclass(cls, FeedbackError) and issubclass(cls, ModelRouterError)
        assert issubclass(cls, ValueError)


def test_late_feedback_within_window_and_refused_after() -> None:
    clock = Clock()
    exp = experiment(clock=clock, attribution_window=3600)
    d = exp.assign("u1")
    clock.now += 3000  # 50 minutes later
    exp.record(d.decision_id, "click", 1)
    clock.now += 700
    with pytest.raises(UnknownDecisionError, match="attribution window"):
        exp.record(d.decision_id, "revenue", 5.0)
    units = exp.store.snapshot().units
    assert units is not None and units.x["click"][0] == 1 and units.y["revenue"][0] == 0
    exp.record_unit("u1", "revenue", 5.0)  # by unit id, the unit keeps its data
    assert exp.store.snapshot().units.x["revenue"][0] == 5.0  # type: ignore[union-attr]


def test_binary_any_and_continuous_sum_per_unit() -> None:
    exp = experiment()
    d1, d2 = exp.assign("u1"), exp.assign("u1")
    exp.record(d1, "click", 0)
    exp.record(d2, "click", 1)
    exp.record(d2, "click", 1)
    exp.record(d1, "revenue", 2.5)
    exp.record_unit("u1", "revenue", 4.0)
    units = exp.store.snapshot().units
    assert units is not None
    assert units.x["click"][0] == 1 and units.y["click"][0] == 3  # converted once
    assert units.x["revenue"][0] == 6.5 and units.y["revenue"][0] == 2


def test_concurrent_threads_and_async_tasks_lose_nothing() -> None:
    """8 threads + an event loop, >= 200k events: totals are exact."""
    exp = experiment(metrics={"click": "binary", "revenue": "continuous"})
    units = [f"u{i}" for i in range(2000)]
    decisions = [exp.assign(u) for u in units]
    per_thread = 25_000
    barrier = threading.Barrier(9)

    def worker(k: int) -> None:
        rng = np.random.default_rng(k)
        picks = rng.integers(0, len(units), per_thread)
        barrier.wait()
        for j, i in enumerate(picks):
            if j % 2:
                exp.record(decisions[i].decision_id, "revenue", 1.0)
            else:
                exp.record_unit(units[i], "revenue", 1.0)
            exp.assign(units[i])

    async def async_side() -> None:
        barrier.wait()
        for j in range(per_thread):
            exp.record(decisions[j % len(units)].decision_id, "revenue", 1.0)
            if j % 100 == 0:
                await asyncio.sleep(0)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    asyncio.run(async_side())
    for t in threads:
        t.join()
    snap = exp.store.snapshot()
    assert snap.units is not None
    total = 9 * per_thread
    assert snap.units.x["revenue"].sum() == total
    assert snap.units.y["revenue"].sum() == total
    assert snap.units.exposures.sum() == len(units) + 8 * per_thread
    assert snap.requests.sum() == len(units) + 8 * per_thread


@pytest.mark.parametrize("value", [1e308 * 10, -1e308 * 10, float("nan"), 2**1100, True, 3])
def test_fast_paths_refuse_what_check_value_refuses(value: Any) -> None:
    exp = experiment()
    d = exp.assign("u1")
    before = state(exp)
    for metric in ("click", "revenue"):
        try:
            ref = check_value(exp.config.metrics[metric], value)
        except InvalidValueError:
            with pytest.raises(InvalidValueError):
                exp.record(d, metric, value)
            assert state(exp) == before
        else:
            exp.record(d, metric, value)
            units = exp.store.snapshot().units
            assert units is not None and units.x[metric][0] >= min(ref, 0.0)


@pytest.mark.parametrize("suffix", ["0x0", "+0", " 0", "", "00", "\u0661", "0_0", "-0"])
def test_only_the_canonical_decision_id_is_accepted(suffix: str) -> None:
    exp = experiment()
    exp.assign("u1")  # decision 0 exists: other spellings of it must not reach it
    with pytest.raises(UnknownDecisionError, match="malformed"):
        exp.record(exp._prefix + suffix, "click", 1)
    assert state(exp)["click"] == [0.0, 0.0]


def test_segment_values_must_match_the_declared_dimensions() -> None:
    exp = Experiment({"control": "A", "treatment": "B"},
                     RouterConfig(segments={"platform": "x-platform"}))
    exp.assign("u1", ("mobile",))
    with pytest.raises(ValueError, match=r"one value per declared dimension \('platform',\)"):
        exp.assign("u2", ("mobile", "extra"))


# -- routing ----------------------------------------------------------------------------------
def test_the_core_routes_and_records_without_the_analysis_layer() -> None:
    exp = core.Experiment({"a": 1, "b": 2}, RouterConfig(metrics={"click": "binary"}))
    assert not hasattr(exp, "check_guardrails")  # monitoring lives above, in modelrouter
    d = exp.assign("u1")
    assert exp.assign("u1").variant == d.variant  # sticky by hash
    exp.record(d, "click", 1)
    units = exp.store.snapshot().units
    assert units is not None and units.x["click"].tolist() == [1.0]


@pytest.mark.parametrize("mode", ["ab", "bandit"])
@pytest.mark.parametrize("policy", ["control", "random", "reject"])
def test_missing_unit_rule_is_the_same_in_both_modes(mode: str, policy: str) -> None:
    cfg = RouterConfig(metrics={"click": "binary"}, reward="click", mode=mode,  # type: ignore[arg-type]
                       missing_unit=policy, refresh_seconds=None)  # type: ignore[arg-type]
    exp = Experiment({"a": 1, "b": 2, "c": 3}, cfg)
    if policy == "reject":
        with pytest.raises(UnitIdError, match="request has no unit id \\(looked in header"):
            exp.assign(None)
    else:
        decisions = [exp.assign(None) for _ in range(300)]
        assert all(not d.counted and d.decision_id == "" and d.mode == mode for d in decisions)
        variants = {d.variant for d in decisions}
        if policy == "control":
            assert variants == {"a"} and {d.propensity for d in decisions} == {1.0}
        else:  # randomised by the current weights, with their propensity
            assert variants == {"a", "b", "c"}
            assert all(d.propensity == pytest.approx(exp.allocation.weights[d.variant])
                       for d in decisions)
        assert exp.store.snapshot().uncounted_requests == 300
    assert exp.store.snapshot().n_units == 0
    if exp.bandit is not None:
        exp.bandit.close()


def test_feedback_hook_runs_once_per_event_and_hooks_compose() -> None:
    exp = core.Experiment({"a": 1, "b": 2}, RouterConfig(metrics={"click": "binary"}))
    calls: list[str] = []
    exp.subscribe(lambda: calls.append("first"))
    exp.subscribe(lambda: calls.append("second"))
    d = exp.assign("u1")
    exp.record(d, "click", 1)
    exp.record_unit("u1", "click", 0)
    assert calls == ["first", "second"] * 2
    with pytest.raises(InvalidValueError):
        exp.record(d, "click", 7)  # refused: no event, no hook call
    assert len(calls) == 4


def test_decisions_carry_the_epoch_and_propensity_they_were_routed_under() -> None:
    exp = experiment(weights={"control": 0.9, "treatment": 0.1}, level="request")
    before = [exp.assign(None) for _ in range(50)]
    exp.configure(weights={"control": 0.2, "treatment": 0.8})
    after = [exp.assign(None) for _ in range(50)]
    assert {d.epoch for d in before} == {0} and {d.epoch for d in after} == {1}
    assert {d.propensity for d in before if d.variant == "treatment"} <= {0.1}
    assert {d.propensity for d in after if d.variant == "treatment"} <= {0.8}
    epochs = exp.store.snapshot().epochs
    assert [(e.epoch, e.weights) for e in epochs] == [(0, (0.9, 0.1)), (1, (0.2, 0.8))]


# -- unit ids (config/unit_ids.py): the same rule as the HTTP readers -------------------------
@pytest.mark.parametrize(("unit", "problem"), [
    ("alice\x1f", "contains a control character U+001F at index 5"),
    ("\x1calice", "contains a control character U+001C at index 0"),
    ("alice\x85", "contains a control character U+0085 at index 5"),
    ("alice\udc80", "contains a surrogate character U+DC80 at index 5"),
    ("alice\u200b", "contains a format character U+200B at index 5"),
    ("alice ", "begins or ends with a space"),
    ("", "is empty"),
    ("x" * 257, "has 257 characters; the limit is 256"),
])
@pytest.mark.parametrize("mode", ["ab", "bandit"])
def test_assign_route_and_record_unit_refuse_malformed_unit_ids(unit: str, problem: str,
                                                                mode: str) -> None:
    exp = experiment(reward="click", mode=mode)
    exp.assign("alice")
    before = exp.store.snapshot()
    for call in (lambda: exp.assign(unit), lambda: exp.route(unit),
                 lambda: exp.record_unit(unit, "revenue", 1.0)):
        with pytest.raises(UnitIdError) as info:
            call()
        assert str(info.value) == f"unit id {problem}"
    after = exp.store.snapshot()  # nothing was counted, nothing merged into alice
    assert after.n_units == before.n_units == 1
    assert after.requests.tolist() == before.requests.tolist()
    assert after.units is not None and after.units.y["revenue"].sum() == 0


def test_assign_refuses_non_strings_and_keeps_valid_ids_exactly() -> None:
    exp = experiment()
    with pytest.raises(UnitIdError, match="^unit id must be a string, got int$"):
        exp.assign(42)  # type: ignore[arg-type]
    for unit in ("alice", "alice\u00a0", "\u00e9l\u00e8ve", "a b", "x" * 256):
        assert exp.assign(unit).unit_id == unit
    assert exp.store.snapshot().n_units == 5
    exp.record_unit("alice\u00a0", "revenue", 2.0)  # its own unit, not alice
    snap = exp.store.snapshot()
    assert snap.units is not None and sorted(snap.units.x["revenue"].tolist()) == [0] * 4 + [2]
