"""Differential tests of the compiled feedback twins: ``Experiment.record``
(routing/feedback_c.pyx) and ``MemoryStore.record_seq`` (store/record_c.pyx) against their
Python methods, on identical experiments fed the same calls.

Every combination of the twins runs: both compiled, both Python (the reference), and each
compiled one with the other's Python method (the compiled ``record`` then calls the store's
``record_seq`` as any store's, as it does for Redis). Compared: each call's outcome (the
exception's type and message, or None), the store's columns (unit ``(x, y)``, request slots
and group sums, the decision tracker's sums, rewards and training counters) and the feedback
hook's calls. Cells: memory store (Redis: test_compiled_record_redis.py); one worker, and 8
threads; A/B and bandit mode; user and request level; 3 variants; "any" (max), "sum" and "mean"
metrics; a pending ring that wraps (evicted decisions); the attribution window (expired ones);
a weight change; a restore (MemoryStore.load).
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from types import MethodType
from typing import Any

import numpy as np
import pytest

from modelrouter import RouterConfig
from modelrouter.config.extensions import compiled, python_method
from modelrouter.routing.decision import Decision
from modelrouter.routing.experiment import Experiment
from modelrouter.store.memory import MemoryStore

BUILT = bool(compiled().get("modelrouter.routing.feedback_c")) and bool(
    compiled().get("modelrouter.store.record_c"))
pytestmark = pytest.mark.skipif(not BUILT, reason="compiled twins not built on this machine")

PY_RECORD: Any = python_method(Experiment, "record")
PY_RECORD_SEQ: Any = python_method(MemoryStore, "record_seq")
PREFIX = "0badcafe-"
TWINS = ("compiled", "python", "compiled-record", "compiled-store")
METRICS = {"click": "binary", "revenue": "continuous",
           "ms": {"kind": "continuous", "aggregate": "mean"}}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Str(str):
    pass


class Flt(float):
    pass


def make(twin: str, *, level: str = "user", bandit: bool = False, max_pending: int = 64
         ) -> tuple[Experiment, Clock, Callable[[Any, Any, Any], None], list[int]]:
    """An experiment with a fixed decision-id prefix, its clock, the ``record`` of ``twin``
    and the list the feedback hook appends to."""
    mode: dict[str, Any] = ({"mode": "bandit", "reward": "click", "refresh_every": 10**6,
                             "refresh_seconds": None} if bandit else {})
    clock = Clock()
    exp = Experiment({"a": 0, "b": 1, "c": 2}, RouterConfig(
        salt="rec", metrics=METRICS, level=level, max_pending=max_pending,  # type: ignore[arg-type]
        attribution_window=100.0, **mode), clock=clock, rng=random.Random(7))
    exp._prefix = PREFIX  # as a forked child does (Experiment._after_fork)
    exp.context = dataclasses.replace(exp.context, prefix=PREFIX)
    if exp.bandit is not None:
        exp.bandit.ctx = exp.context
    if twin in ("python", "compiled-record"):  # the store's Python method, on the instance
        exp.store.record_seq = MethodType(PY_RECORD_SEQ, exp.store)  # type: ignore[method-assign]
    ticks: list[int] = []
    exp.subscribe(lambda: ticks.append(1))
    if twin in ("compiled", "compiled-record"):
        record = exp.record
    else:
        def record(decision: Any, metric: Any, value: Any) -> None:
            PY_RECORD(exp, decision, metric, value)
    return exp, clock, record, ticks


def outcome(f: Callable[[], Any]) -> str | None:
    try:
        f()
    except Exception as exc:  # noqa: BLE001 - type and message are compared
        return f"{type(exc).__name__}: {exc}"
    return None


def columns(exp: Experiment, ticks: list[int]) -> str:
    """Every number a feedback event can change, as text (NaN compares equal)."""
    store: Any = exp.store
    out: dict[str, Any] = {"ticks": len(ticks), "requests": list(store._path.requests)}
    if store.unit_level:
        out["x"] = [list(c) for c in store._units.x]
        out["y"] = [list(c) for c in store._units.y]
    else:
        out["slots"] = [list(c) for c in store._slot_x + store._slot_y]
        out["groups"] = store._groups.copy()
    tracker = store._decisions
    if tracker is not None:
        out["tracker"] = (tracker.copy_sums(), tracker.counters, tracker.pending,
                          list(tracker._r), [list(c) for c in tracker._x + tracker._y])
    return repr(out)


VALUES: list[Any] = [1.0, 0.0, -0.0, 1, 0, -3, 2.5, 7, True, False, math.nan, math.inf,
                     -math.inf, 1e300, -1e300, 1e100, -1e100, 1e-100, -1e-100, 1e-101, 5e-324,
                     2**53, 2**53 + 1, -(2**53) - 1, 2**63, 10**400, "1", None, b"1", 1 + 0j,
                     np.float64(0.5), np.int64(1), np.bool_(True), np.float32(1.5),
                     Fraction(1, 3), Decimal("0.5"), Decimal("NaN"), Flt(1.0)]
NAMES: list[Any] = ["click", "revenue", "ms", "nope", "latency_ms", "error", 7, None,
                    Str("revenue")]


def issue(exp: Experiment, clock: Clock) -> list[Any]:
    """100 decisions in a ring of 64: 0..35 evicted, 36..79 past the window (issued at t=0,
    now t=150), 80..99 pending; then every spelling of a decision id worth trying."""
    decisions = []
    for i in range(100):
        clock.t = 0.0 if i < 80 else 150.0
        decisions.append(exp.assign(f"user-{i % 70}"))
    live = [d.decision_id for d in decisions[80:]]
    assert live[0] == PREFIX + "50"
    return [
        *live[:3], decisions[85], decisions[3], decisions[50], Str(live[4]),
        PREFIX + "5A", PREFIX + "5a", PREFIX + "05a", PREFIX + "0", PREFIX + "1", PREFIX + "24",
        PREFIX + "fff", PREFIX + "f" * 15, PREFIX + "f" * 16, PREFIX + "1" * 40, "deadbeef-51",
        "", PREFIX, PREFIX + "g1", PREFIX + "-51", PREFIX + " 51", PREFIX + "+51", PREFIX + "5_1",
        PREFIX + "0x51", PREFIX + "５１", PREFIX + "\ud800", PREFIX[:-1], PREFIX.upper() + "51",
        "é" + PREFIX + "51", 81, None, b"0badcafe-51",
        decisions[81]._replace(decision_id="feedf00d-51"),
        decisions[82]._replace(decision_id=81)]


def hostile_run(twin: str, **kw: Any) -> tuple[list[str | None], str]:
    exp, clock, record, ticks = make(twin, **kw)
    ids = issue(exp, clock)
    log = []
    for d in ids:  # every spelling x every metric name, a few values
        for m in NAMES:
            for v in (1.0, 0, True, math.nan):
                log.append(outcome(lambda: record(d, m, v)))  # noqa: B023
    for d in ids[:5]:  # every value, the live decisions
        for m in NAMES[:6]:
            for v in VALUES:
                log.append(outcome(lambda: record(d, m, v)))  # noqa: B023
    clock.t = 181.0  # the last decisions (issued at 150) just past the window, then not
    log.append(outcome(lambda: record(ids[0], "revenue", 1.0)))
    clock.t = 250.5
    log.append(outcome(lambda: record(ids[0], "revenue", 1.0)))
    return log, columns(exp, ticks)


@pytest.mark.parametrize("kw", [{}, {"level": "request"}, {"bandit": True}],
                         ids=["user", "request", "bandit"])
def test_hostile_feedback_has_the_python_outcome_through_every_twin(kw: dict[str, Any]) -> None:
    """~2,500 calls per twin: same error (type and message) or none, then the same columns."""
    reference = hostile_run("python", **kw)
    assert reference[0].count(None) > 200  # the cases that record do record
    assert any(o and o.startswith("UnknownDecisionError") and "window" in o
               for o in reference[0])
    assert any(o and "no longer pending" in o for o in reference[0])
    for twin in TWINS[2:] + ("compiled",):
        got = hostile_run(twin, **kw)
        for i, (a, b) in enumerate(zip(got[0], reference[0])):
            assert a == b, (twin, i)
        assert got == reference, twin


def random_run(twin: str, seed: int, **kw: Any) -> tuple[list[Any], str]:
    """A seeded mix of exposures, feedback (mostly valid, some hostile), clock steps, weight
    changes and restores."""
    exp, clock, record, ticks = make(twin, **kw)
    rnd = random.Random(seed)
    issued: list[str] = []
    log: list[Any] = []
    for step in range(1500):
        r = rnd.random()
        if r < 0.35:
            issued.append(exp.assign(f"u{rnd.randrange(60)}").decision_id)
        elif r < 0.93 and issued:
            d = issued[-1 - min(int(rnd.expovariate(0.05)), len(issued) - 1)]
            if rnd.random() < 0.05:
                d = rnd.choice([d.upper(), d + "0", "x" + d, d[:-1] + "g"])
            m = rnd.choice(["click", "revenue", "revenue", "ms", "nope"])
            v = rnd.choice([1.0, 1.0, 0.0, 1, 0, 3.25, -2.0, 1e99, True, math.nan, 1e300,
                            -0.0, 2**60])
            log.append(outcome(lambda: record(d, m, v)))  # noqa: B023
        elif r < 0.97:
            clock.t += rnd.choice([0.5, 5.0, 40.0])
        elif r < 0.985:
            w = rnd.random()
            weights = {"a": w, "b": 1 - w, "c": 0.5}
            log.append(outcome(lambda: exp.configure(weights=weights)))  # noqa: B023
        else:
            header, arrays = exp.store.dump()
            exp.store.load(header, arrays)  # pending decisions forgotten
        if step % 500 == 499:
            log.append(columns(exp, ticks))
    return log, columns(exp, ticks)


@pytest.mark.parametrize("kw", [{}, {"level": "request"}, {"bandit": True}],
                         ids=["user", "request", "bandit"])
@pytest.mark.parametrize("seed", [1, 2])
def test_seeded_random_runs_leave_the_same_columns(kw: dict[str, Any], seed: int) -> None:
    reference = random_run("python", seed, **kw)
    assert sum(o is None for o in reference[0]) > 150  # recorded events
    for twin in ("compiled", "compiled-record", "compiled-store"):
        assert random_run(twin, seed, **kw) == reference, twin


@pytest.mark.parametrize("bandit", [False, True], ids=["ab", "bandit"])
def test_totals_are_exact_under_8_threads(bandit: bool) -> None:
    """8 threads x 3,000 events on 500 pending decisions, through the compiled twins: every
    event counted once (the store's lock around the C update, the tracker's apply included)."""
    exp, _clock, record, ticks = make("compiled", bandit=bandit, max_pending=1000)
    ids = [exp.assign(f"user-{i}").decision_id for i in range(500)]
    barrier = threading.Barrier(8)

    def work(k: int) -> None:
        barrier.wait()
        for i in range(3000):
            record(ids[(i * 7 + k) % 500], "click" if i % 3 == 0 else "revenue", 1.0)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store: Any = exp.store
    revenue, click = store.metric_index["revenue"], store.metric_index["click"]
    assert sum(store._units.x[revenue]) == sum(store._units.y[revenue]) == 8 * 2000
    assert sum(store._units.y[click]) == 8 * 1000
    assert sum(store._units.x[click]) == 500  # "any": one per decision's unit
    assert len(ticks) == 8 * 3000
    if bandit:
        sums = store._decisions.copy_sums()
        b = 1 + 5 * revenue
        assert sum(row[b] for _key, row in sums) == 8 * 2000


def test_the_twins_are_installed_and_a_half_built_object_raises_as_python() -> None:
    assert Experiment.record is not PY_RECORD
    assert MemoryStore.record_seq is not PY_RECORD_SEQ
    bare: Any = Experiment.__new__(Experiment)
    store: Any = MemoryStore.__new__(MemoryStore)
    for compiled_call, python_call in ((lambda: bare.record("x", "m", 1.0),
                                        lambda: PY_RECORD(bare, "x", "m", 1.0)),
                                       (lambda: store.record_seq(0, 0, 1.0),
                                        lambda: PY_RECORD_SEQ(store, 0, 0, 1.0))):
        assert outcome(compiled_call) == outcome(python_call) is not None


def test_record_seq_odd_arguments_answer_as_the_python_method() -> None:
    """Direct calls of the store twin: window flags, non-float values, negative and huge
    numbers, metric indices out of range."""
    cases: list[tuple[Any, ...]] = [
        (66, 1, 1.0, True), (66, 1, 1.0, False), (66, 1, 1.0, 1), (66, 1, 1.0, None),
        (66, 1, 2, True), (66, 1, True, True), (66, 0, 1.0, True), (66, 0, 0.5, False),
        (-1, 1, 1.0, True), (2**70, 1, 1.0, True), (66, 99, 1.0, True), (66, -1, 1.0, True),
        (66.0, 1, 1.0, True), (66, 1, math.nan, True), (66, 1, Flt(2.0), True),
        (70, 1, 1.0, True), (5, 1, 1.0, False), (10, 1, 1.0, True), (10, 1, 1.0, False)]
    logs = []
    for twin in ("compiled", "python"):
        exp, clock, _record, ticks = make(twin)
        store: Any = exp.store
        for i in range(70):
            clock.t = float(i * 3)
            exp.assign(f"u{i % 20}")
        call = store.record_seq if twin == "compiled" else MethodType(PY_RECORD_SEQ, store)
        logs.append(([outcome(lambda: call(s, m, v, window=w))  # noqa: B023
                      for s, m, v, w in cases], columns(exp, ticks)))
    assert logs[0] == logs[1]
    assert logs[1][0].count(None) >= 5


def test_a_replaced_seq_of_or_store_method_is_called() -> None:
    """A subclass's seq_of, an instance's record_seq: the compiled record calls them, as the
    Python method does."""
    class Shifted(Experiment):
        def seq_of(self, decision_id: str, prefix: str | None = None) -> int:
            return super().seq_of(decision_id, prefix) + 1

    exp = Shifted({"a": 0, "b": 1}, RouterConfig(metrics=METRICS))
    ids = [exp.assign(f"u{i}").decision_id for i in range(3)]
    exp.record(ids[0], "revenue", 2.0)  # lands on decision 1 (unit u1)
    store: Any = exp.store
    assert list(store._units.x[store.metric_index["revenue"]][:3]) == [0.0, 2.0, 0.0]
    calls: list[tuple[Any, ...]] = []
    store.record_seq = lambda *a, **k: calls.append((a, k))
    exp.record(ids[2], "click", 1)
    assert calls == [((3, store.metric_index["click"], 1.0), {})]  # seq_of shifted by 1
    assert type(calls[0][0][2]) is float


def test_a_decision_object_and_its_id_record_alike() -> None:
    exp, _clock, record, _ticks = make("compiled")
    d = exp.assign("alice")
    record(d, "revenue", 2.0)
    record(d.decision_id, "revenue", 3)
    assert isinstance(d, Decision)
    store: Any = exp.store
    m = store.metric_index["revenue"]
    assert store._units.x[m][0] == 5.0 and store._units.y[m][0] == 2.0


def changes_run(twin: str) -> tuple[list[Any], str, str]:
    """Attributes of the experiment and its store replaced between calls and during them (by
    the store's clock, which runs under the store's lock): every read sees the value in force,
    as the Python method's reads do (the compiled twins cache what they read per dict version)."""
    exp, clock, record, ticks = make(twin)
    other, other_clock, other_record, other_ticks = make(twin)
    ids = [exp.assign(f"u{i}").decision_id for i in range(6)]
    other_ids = [other.assign(f"v{i}").decision_id for i in range(6)]
    store: Any = exp.store
    log: list[Any] = []

    def step(f: Callable[[], Any]) -> None:
        log.append(outcome(f))

    for i in range(4):  # two experiments in turn
        step(lambda: record(ids[i], "revenue", 1.0))  # noqa: B023
        step(lambda: other_record(other_ids[i], "revenue", 2.0))  # noqa: B023
    step(lambda: record(ids[0], "reve" + "nue", 4.0))  # an equal, not identical, name
    extra: list[int] = []
    exp.subscribe(lambda: extra.append(1))
    step(lambda: record(ids[1], "click", 1.0))
    infos = exp._metric_info
    exp._metric_info = {**infos, "revenue": infos["click"]}
    step(lambda: record(ids[1], "revenue", 1.0))  # now recorded as the click metric
    exp._metric_info["ms"] = exp._metric_info["revenue"]  # changed in place
    step(lambda: record(ids[2], "ms", 1.0))
    del exp._metric_info["ms"]
    step(lambda: record(ids[2], "ms", 1.0))  # the Python method's TypeError (no entry)
    exp._metric_info = infos
    clock.t = 150.0
    step(lambda: record(ids[3], "click", 1.0))  # past the window (100 s)
    clock.t = 60.0
    store.attribution_window = 10.0  # the store's check refuses, the ring's slot_of accepts
    step(lambda: record(ids[3], "click", 0.0))
    store.clock = lambda: 5.0
    step(lambda: record(ids[3], "revenue", 0.5))  # a replaced clock: inside the window again

    def meddling_clock() -> float:  # runs under the lock, before the window comparison
        store.attribution_window = 1.0 if store.attribution_window == 10.0 else 10.0
        store.clock = meddling_clock
        store.any_flags = (True,) * len(store.any_flags)
        return 5.0

    store.clock = meddling_clock
    clock.t = 150.0  # the ring's own clock: past its window, slot_of refuses
    step(lambda: record(ids[4], "revenue", 3.0))  # the window set to 1.0 by the clock: refused
    step(lambda: record(ids[4], "revenue", 3.0))  # back to 10.0; "revenue" a max now
    step(lambda: record(ids[4], "revenue", 4.0))  # refused
    step(lambda: record(ids[4], "revenue", 2.0))  # the max stays 3.0

    def meddling_tick() -> None:
        exp.tick = None
        exp.store = other.store

    exp.tick = meddling_tick
    step(lambda: record(ids[5], "revenue", 1.0))
    step(lambda: record(other_ids[5], "revenue", 1.0))  # (the same prefix) into B's store
    step(lambda: record(ids[5].replace("-5", "-4"), "revenue", 1.0))  # into B's store
    log.append((len(ticks), len(extra), len(other_ticks)))
    return log, columns(exp, ticks), columns(other, other_ticks)


def test_attributes_changed_between_and_during_calls_are_seen() -> None:
    reference = changes_run("python")
    assert sum(o is None for o in reference[0][:-1]) >= 15
    for twin in ("compiled", "compiled-record", "compiled-store"):
        assert changes_run(twin) == reference, twin
