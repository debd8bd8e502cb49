"""The compiled bandit route and decision tracker (routing/bandit_c.pyx, store/decisions_c.pyx)
against their Python methods on the Redis store.

Cells: Redis store; one worker per twin; bandit mode from the start, then A/B and back; 3 arms;
holdout; user level; forced refreshes mid-run; feedback and journal entries (record_auto). The
Redis store has no compiled exposure: the compiled route calls its ``expose_decision``, which
opens the decision in the tracker (the compiled ``open``, with the unit id as the tracker's
unit key). Both twins must issue the same decisions and leave the same numbers. Skipped without
the compiled twins or redis-server.
"""

from __future__ import annotations

import itertools
import random
from types import MethodType
from typing import Any

import pytest

from modelrouter import RouterConfig
from modelrouter.config.extensions import compiled, python_method
from modelrouter.routing.bandit import BanditRouter
from modelrouter.routing.experiment import Experiment
from modelrouter.store.decisions import DecisionTracker
from tests.store.conftest import RedisServer

BUILT = compiled().get("modelrouter.routing.bandit_c") and compiled().get(
    "modelrouter.store.decisions_c")


def _counter(step: float) -> Any:
    it = itertools.count()
    return lambda: next(it) * step


@pytest.mark.skipif(not BUILT, reason="compiled twins not built on this machine")
def test_compiled_and_python_bandit_agree_on_the_redis_store(redis_server: RedisServer) -> None:
    pytest.importorskip("redis")
    runs = []
    for name in ("compiled", "python"):
        exp = Experiment({"a": 0, "b": 1, "c": 2}, RouterConfig(
            experiment=f"bandit-twin-{name}", salt="redis-twins", store=redis_server.url,
            metrics={"click": "binary"}, reward="click", mode="bandit", holdout=0.2,
            refresh_every=10**6, refresh_seconds=1e9), clock=_counter(0.5),
            rng=random.Random(7))
        bandit = exp.bandit
        assert bandit is not None
        if name == "python":
            bandit.route = MethodType(python_method(BanditRouter, "route"), bandit)  # type: ignore[method-assign]
            tracker = bandit.tracker
            tracker.open = MethodType(python_method(DecisionTracker, "open"), tracker)  # type: ignore[method-assign]
            tracker.apply = MethodType(python_method(DecisionTracker, "apply"), tracker)  # type: ignore[method-assign]
        log = []
        for i in range(300):
            if i in (100, 250):
                exp.state.refresh_bandit(force=True)
            if i == 180:
                exp.configure(mode="ab")
            if i == 210:
                exp.configure(mode="bandit")
            decision, seq = exp.route_checked(f"u{(i * 7) % 90}")
            log.append((decision.variant, decision.propensity, decision.epoch, decision.mode,
                        decision.unit_id, decision.issued_at, decision.counted,
                        decision.decision_id.partition("-")[2], seq))
            if seq >= 0:
                exp.store.record_auto(seq, 1.0 + i % 5, 1.0 if i % 11 == 0 else 0.0)
            if i % 3 == 0:
                exp.record(decision, "click", (i * 13) % 7 < 3 + (decision.variant == "b"))
        exp.flush()
        t = bandit.tracker
        if name == "compiled":  # the compiled twins ran (not their Python fallback)
            assert t._core is not None and t._core.fast
            assert bandit._core is not None and bandit._core.fast
        snap = exp.store.snapshot()
        runs.append((log, repr(snap.requests), repr(snap.units), t.counters, t.pending,
                     t.updates, list(zip(t.groups.keys, t.groups.sums))))
        exp.close()
    assert runs[0][0] == runs[1][0]
    assert runs[0][1:] == runs[1][1:]
    log = runs[0][0]
    assert {entry[3] for entry in log} == {"ab", "bandit"}
    assert {entry[2] for entry in log if entry[3] == "bandit"} != {0}  # refreshed
    assert runs[0][5] > 0  # training updates counted
