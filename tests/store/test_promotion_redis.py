"""Promotion and the automatic rollout across workers on one Redis (each "worker" an
Experiment with its own store and routing state, as uvicorn workers are).

Cells covered: Redis store; 2 and 3 workers; A/B; 1 served variant + 1 candidate; user level;
after promote and rollout transitions; racing threads (two monitors deciding the same
transition at once make one transition).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from modelrouter import Experiment, RouterConfig
from modelrouter.analysis import Analysis
from modelrouter.exceptions import ConfigError
from modelrouter.rollout_monitor import RolloutMonitor
from tests.store.conftest import RedisServer

pytest.importorskip("redis")

ROLLOUT = {"candidate": [
    {"stage": "shadow", "advance_if": {"name": "agreement_at_least", "rate": 0.5}},
    {"stage": "canary", "share": 0.2, "min_units": 100, "advance_if": "guardrails_pass"},
    {"stage": "ship"}]}


def worker(url: str, **kw: Any) -> Experiment:
    cfg = RouterConfig(experiment="promo", metrics={"click": "binary"}, store=url,
                       flush_seconds=0.05, unit_header="x-user", guardrail_check_every=10**9,
                       guardrails={"latency_ms": None}, rollout=ROLLOUT, **kw)
    return Experiment({"control": 0, "candidate": 1}, cfg, candidates=("candidate",))


def settle(exps: list[Experiment]) -> None:
    for _ in range(2):
        for e in exps:
            e.flush()
        for e in exps:
            e.store.poll()  # type: ignore[attr-defined]
            e.state.sync()


def analyse(e: Experiment) -> Analysis:
    a = Analysis.from_experiment(e)
    a.stages = e.stages
    return a


def test_promote_through_one_worker_is_in_force_in_all(redis_server: RedisServer) -> None:
    ws = [worker(redis_server.url) for _ in range(3)]
    try:
        ws[0].promote("candidate", "canary", 0.2)
        settle(ws)
        for w in ws:
            assert w.allocation.weights == pytest.approx({"control": 0.8, "candidate": 0.2})
            assert w.allocation.epoch == ws[0].allocation.epoch
            cur = w.stages.current["candidate"]
            assert (cur.stage, cur.share, cur.index, cur.stopped) == ("canary", 0.2, 1, False)
            assert [e.kind for e in w.stages.events] == ["promote"]
        with pytest.raises(ConfigError, match="already at canary"):  # known in every worker
            ws[2].promote("candidate", "canary", 0.2)
    finally:
        for w in ws:
            w.close()


def test_two_monitors_on_the_same_gate_make_one_transition(redis_server: RedisServer) -> None:
    ws = [worker(redis_server.url) for _ in range(2)]
    try:
        ws[0].promote("candidate", "canary", 0.2)
        settle(ws)
        rng = np.random.default_rng(5)
        for i in range(3000):
            w = ws[i % 2]
            d = w.assign(f"u{i}")
            w.record(d, "click", float(rng.random() < 0.1))
            w.record(d, "error", 0.0)
        settle(ws)
        monitors = [RolloutMonitor(w, w.config.rollout, lambda w=w: analyse(w),  # type: ignore
                                   every=10**9) for w in ws]
        readings: list[Any] = []
        barrier = threading.Barrier(2)

        def run(m: RolloutMonitor) -> None:
            barrier.wait()
            readings.append(m.check())

        threads = [threading.Thread(target=run, args=(m,)) for m in monitors]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert [r[0].action for r in readings] == ["advance", "advance"]  # both saw it hold
        settle(ws)
        for w in ws:
            assert [e.kind for e in w.stages.events] == ["promote", "ship"]  # one transition
            assert w.allocation.weights == {"control": 0.0, "candidate": 1.0}
        assert ws[0].allocation.epoch == ws[1].allocation.epoch
        assert [(e.epoch, e.weights) for e in ws[0].store.epochs()] == [
            (e.epoch, e.weights) for e in ws[1].store.epochs()]
    finally:
        for w in ws:
            w.close()


def test_a_shared_bandit_starts_without_the_held_candidate(redis_server: RedisServer) -> None:
    """Bandit mode, Redis: epoch 0 (equal shares, the same in every worker) leaves the
    held candidate out, and promote() is refused in bandit mode."""
    ws = [worker(redis_server.url, mode="bandit", reward="click") for _ in range(2)]
    try:
        for w in ws:
            assert w.allocation.propensities[1] == 0.0  # control, candidate
            assert {w.assign(f"u{i}").variant for i in range(200)} == {"control"}
        with pytest.raises(ConfigError, match="'bandit' mode"):
            ws[0].promote("candidate")
    finally:
        for w in ws:
            w.close()

