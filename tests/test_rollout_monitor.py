"""The rollout monitor's moves one by one: rollback targets, max_units, a stop in the shadow
stage, no move while held, the background thread, racing promotions.

Cells covered: memory store; A/B; 1 served variant + 1 candidate; user level; after a
guardrail rollback; threads (background worker, 8 racing promote calls). Redis:
tests/store/test_promotion_redis.py; the whole lifecycle: test_rollout_lifecycle.py.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import pytest

from modelrouter import ModelRouter, RouterConfig
from modelrouter.exceptions import ConfigError


async def _app(scope: Any, receive: Any, send: Any) -> None:
    return None


def _model(x: Any) -> int:
    return 0


def router(stages: list[dict[str, Any]], **kw: Any) -> ModelRouter:
    kw.setdefault("guardrail_check_every", 10**9)  # checks are called explicitly
    cfg = RouterConfig(metrics={"click": "binary"}, primary="click", plan={"mde": 0.03},
                       guardrails={"latency_ms p95": None}, rollout={"candidate": stages},
                       **kw)
    return ModelRouter(_app, {"control": _model}, cfg, shadows={"candidate": _model},
                       clock=lambda: 1000.0)


def traffic(r: ModelRouter, n: int, *, start: int = 0, slowdown: float = 1.0,
            shadow_errors: float = 0.0, seed: int = 0) -> None:
    """n users: served latency (candidate x slowdown when served), shadow pairs while it is
    in the shadow stage (the shadow errs with probability ``shadow_errors``)."""
    rng = np.random.default_rng(seed)
    exp, log = r.experiment, r.shadows.log  # type: ignore[union-attr]
    for i in range(start, start + n):
        d = exp.assign(f"u{i}")
        cand = d.variant == "candidate"
        exp.record(d, "click", float(rng.random() < 0.1))
        exp.record(d, "error", 0.0)
        exp.record(d, "latency_ms", rng.lognormal(math.log(50), 0.4) * (slowdown if cand
                                                                           else 1.0))
        if exp.stages.current["candidate"].stage == "shadow":
            log.open(d.decision_id, 1)
            err = rng.random() < shadow_errors
            log.done(d.decision_id, "candidate", 1, 50.0, None if err else 1, 50.0,
                     "exception" if err else None)


SHADOW = {"stage": "shadow", "min_units": 200,
          "advance_if": {"name": "agreement_at_least", "rate": 0.5}}


def test_a_failing_canary_goes_back_to_control_when_asked_and_stays_stopped() -> None:
    r = router([SHADOW, {"stage": "canary", "share": 0.2, "min_units": 100000,
                         "advance_if": "guardrails_pass", "rollback_to": "control"},
                {"stage": "ship"}])
    mon, exp = r.rollout, r.experiment
    assert mon is not None
    traffic(r, 300)
    (reading,) = mon.check()
    assert reading.action == "advance" and exp.allocation.weights["candidate"] == 0.2
    traffic(r, 4000, start=300, slowdown=1.5)
    (reading,) = mon.check()
    assert reading.action == "rollback" and "guardrail latency_ms failed" in reading.reason
    ev = exp.stages.events[-1]
    assert (ev.kind, ev.from_stage, ev.to_stage, ev.to_share) == ("rollback", "canary",
                                                                  "shadow", 0.0)
    assert ev.numbers["units"] == reading.units and ev.numbers["low"] > 0.1
    cur = exp.stages.current["candidate"]
    assert cur.stopped and cur.index is None
    assert exp.allocation.weights == {"control": 1.0, "candidate": 0.0}
    assert mon.check() == ()  # stopped: nothing is read, nothing moves
    r.promote("candidate", "canary", 0.2)  # by hand, at a stage of the plan: it follows again
    assert exp.stages.current["candidate"].index == 1
    assert not exp.stages.current["candidate"].stopped


def test_max_units_without_the_gate_rolls_back_to_the_previous_stage() -> None:
    r = router([SHADOW, {"stage": "canary", "share": 0.1, "min_units": 10,
                         "advance_if": "guardrails_pass"},
                {"stage": "ab", "share": 0.5, "min_units": 10, "max_units": 300,
                 "advance_if": {"name": "no_worse", "margin": 0.0001, "alpha": 0.01}},
                {"stage": "ship"}])
    mon, exp = r.rollout, r.experiment
    assert mon is not None
    traffic(r, 300)
    mon.check()
    traffic(r, 8000, start=300, seed=1)
    assert mon.check()[0].action == "advance", mon.last_readings  # canary -> ab
    traffic(r, 1500, start=8300, seed=2)
    (reading,) = mon.check()
    assert reading.action == "rollback" and reading.reason.startswith("max_units (300)")
    cur = exp.stages.current["candidate"]
    assert (cur.stage, cur.share, cur.index, cur.stopped) == ("canary", 0.1, 1, True)
    assert exp.allocation.weights["candidate"] == pytest.approx(0.1)


def test_a_shadow_that_errs_is_stopped_in_the_shadow_stage() -> None:
    r = router([{"stage": "shadow", "min_units": 100000, "advance_if": "guardrails_pass"},
                {"stage": "canary", "share": 0.1, "advance_if": "guardrails_pass"},
                {"stage": "ship"}])
    mon, exp = r.rollout, r.experiment
    assert mon is not None
    traffic(r, 1000, shadow_errors=0.2)
    (reading,) = mon.check()
    assert reading.action == "rollback" and "shadow error rate - served" in reading.reason
    ev = exp.stages.events[-1]
    assert (ev.kind, ev.to_stage, ev.epoch) == ("stop", "shadow", 1)
    assert exp.stages.current["candidate"].stopped
    assert exp.allocation.weights["candidate"] == 0.0


def test_no_exposure_grows_while_a_guardrail_rollback_holds() -> None:
    r = router([SHADOW, {"stage": "canary", "share": 0.2, "advance_if": "guardrails_pass"},
                {"stage": "ship"}])
    mon, exp = r.rollout, r.experiment
    assert mon is not None
    traffic(r, 300)
    exp.rollback(["an operator"])
    (reading,) = mon.check()
    assert reading.action == "advance"  # the gate held ...
    assert exp.stages.events == () and exp.stages.current["candidate"].stage == "shadow"
    exp.resume()  # ... and the next check after the resume advances
    assert mon.check()[0].action == "advance"
    assert exp.stages.current["candidate"].stage == "canary"


def test_feedback_wakes_the_background_monitor() -> None:
    r = router([SHADOW, {"stage": "canary", "share": 0.2, "advance_if": "guardrails_pass"},
                {"stage": "ship"}], guardrail_check_every=100)
    mon = r.rollout
    assert mon is not None
    traffic(r, 300)  # 900 feedback events: several wake-ups of the worker thread
    assert mon.wait_idle(timeout=30)
    assert mon.checks >= 1 and mon.last_error is None
    assert r.experiment.stages.current["candidate"].stage == "canary"
    assert any(t.name == "modelrouter-rollout" for t in threading.enumerate())


def test_racing_promotions_make_one_transition() -> None:
    r = router([SHADOW, {"stage": "canary", "share": 0.2, "advance_if": "guardrails_pass"},
                {"stage": "ship"}])
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def go() -> None:
        barrier.wait()
        try:
            r.promote("candidate", "canary", 0.2)
        except ConfigError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(errors) == 7 and all("already at canary" in str(e) for e in errors)
    assert len(r.experiment.stages.events) == 1 and r.experiment.allocation.epoch == 1
