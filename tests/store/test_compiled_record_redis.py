"""The compiled ``Experiment.record`` (routing/feedback_c.pyx) against the Python method on the
Redis store, whose ``record_seq`` has no twin: the compiled record calls it as a method (and
it hands the value to its local memory buffer, whose ``record_seq`` is compiled).

Cells: Redis store; one worker per twin; A/B; 3 variants; user level; a pending ring that wraps
(evicted decisions) and the attribution window (expired ones); hostile values and decision ids
(tests/routing/test_compiled_record.py has the lists). Compared: every call's outcome (type
and message) and the snapshot's unit columns after a flush. Skipped without the compiled twins
or redis-server.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

import pytest

from modelrouter import RouterConfig
from modelrouter.config.extensions import compiled
from modelrouter.routing.experiment import Experiment
from tests.routing.test_compiled_record import (
    METRICS,
    NAMES,
    PREFIX,
    PY_RECORD,
    VALUES,
    Clock,
    issue,
    outcome,
)
from tests.store.conftest import RedisServer

BUILT = bool(compiled().get("modelrouter.routing.feedback_c"))


@pytest.mark.skipif(not BUILT, reason="compiled twins not built on this machine")
def test_compiled_and_python_record_agree_on_the_redis_store(redis_server: RedisServer) -> None:
    pytest.importorskip("redis")
    runs = []
    for twin in ("compiled", "python"):
        clock = Clock()
        exp = Experiment({"a": 0, "b": 1, "c": 2}, RouterConfig(
            experiment=f"rec-{twin}", salt="rec", store=redis_server.url, metrics=METRICS,
            max_pending=64, attribution_window=100.0), clock=clock, rng=random.Random(7))
        exp._prefix = PREFIX
        exp.context = dataclasses.replace(exp.context, prefix=PREFIX)
        ticks: list[int] = []
        exp.subscribe(lambda t=ticks: t.append(1))  # type: ignore[misc]

        def record(d: Any, m: Any, v: Any, exp: Experiment = exp, twin: str = twin) -> None:
            if twin == "compiled":
                exp.record(d, m, v)
            else:
                PY_RECORD(exp, d, m, v)

        ids = issue(exp, clock)
        log = [outcome(lambda: record(d, m, v))  # noqa: B023
               for d in ids for m in NAMES for v in (1.0, 0, True, math.nan)]
        log += [outcome(lambda: record(d, m, v))  # noqa: B023
                for d in ids[:3] for m in NAMES[:6] for v in VALUES]
        exp.flush()
        snap = exp.store.snapshot()
        assert snap.units is not None
        runs.append((log, len(ticks), repr(snap.units.x), repr(snap.units.y)))
        exp.close()
    assert runs[0] == runs[1]
    assert runs[1][0].count(None) > 100
