"""The compiled route (routing/experiment_c.pyx) against the Python method on the Redis store.

Cells: Redis store; one worker per twin; A/B -> bandit -> A/B; 3 variants; user level; a
weight change mid-run; journal entries (record_auto) folded by the store. The store has no C
exposure of its own, so the compiled route calls its ``expose_unit``: both twins must issue the
same decisions and leave the same numbers. Skipped without the compiled twins or redis-server.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from modelrouter import RouterConfig
from modelrouter.config.extensions import compiled, python_method
from modelrouter.routing.experiment import Experiment
from tests.store.conftest import RedisServer

BUILT = bool(compiled()) and all(compiled().values())


def _counter(step: float) -> Any:
    it = itertools.count()
    return lambda: next(it) * step


@pytest.mark.skipif(not BUILT, reason="compiled twins not built on this machine")
def test_compiled_and_python_routes_agree_on_the_redis_store(redis_server: RedisServer) -> None:
    pytest.importorskip("redis")
    python_route: Any = python_method(Experiment, "route_checked")
    runs = []
    for name, route in (("compiled", Experiment.route_checked), ("python", python_route)):
        exp = Experiment({"a": 0, "b": 1, "c": 2}, RouterConfig(
            experiment=f"twin-{name}", salt="redis-twins", store=redis_server.url,
            metrics={"click": "binary"}, reward="click"), clock=_counter(0.5),
            rng=random.Random(7))
        log = []
        for i in range(300):
            if i == 100:
                exp.configure(weights={"a": 0.2, "b": 0.3, "c": 0.5})
            if i == 150:
                exp.configure(mode="bandit")
            if i == 220:
                exp.configure(mode="ab")
            decision, seq = route(exp, f"u{(i * 7) % 90}")
            log.append((decision.variant, decision.propensity, decision.epoch, decision.mode,
                        decision.unit_id, decision.issued_at, decision.counted,
                        decision.decision_id.partition("-")[2], seq))
            if seq >= 0:
                exp.store.record_auto(seq, 1.0 + i % 5, 1.0 if i % 11 == 0 else 0.0)
            if i % 4 == 0 and decision.mode == "ab":
                exp.record(decision, "click", i % 3 == 0)
        exp.flush()
        snap = exp.store.snapshot()
        runs.append((log, repr(snap.requests), repr(snap.units)))
        exp.close()
    assert runs[0][0] == runs[1][0]
    assert runs[0][1:] == runs[1][1:]
    assert {entry[3] for entry in runs[0][0]} == {"ab", "bandit"}
