"""The compiled bandit route (routing/bandit_c.pyx) and decision tracker ``open``
(store/decisions_c.pyx) against their Python methods, on identical experiments.

Each scenario runs twice on experiments built alike (same salt, clock, seeded rng): once with
the compiled methods (the classes' own, as installed), once with the Python methods set on the
instances (``python_method``). Every decision, every stored column, the tracker's groups, ring,
training counters and refresh counts must be equal. The attack tests call both twins on
identical objects with hostile arguments: the same answer or the same exception (type and
message), and the same state after it.

Cells: memory store (the Redis store: tests/store/test_compiled_redis_bandit.py); one worker;
bandit mode, A/B -> bandit -> A/B -> bandit; 2 and 3 arms; user level and request level;
Thompson, top-two and per-request policies; holdout; sticky units (the Python method runs);
paused and resumed arms; refreshes by schedule and forced; missing_reward zero and omit;
binary and continuous rewards with a latency cost; restore mid-run (dump/load); a pending ring
that wraps; segments. Skipped where the twins were not built.
"""

from __future__ import annotations

import copy
import itertools
import random
from types import MethodType
from typing import Any

import pytest

from modelrouter import RouterConfig
from modelrouter.config.extensions import compiled, python_method
from modelrouter.routing.bandit import BanditRouter
from modelrouter.routing.experiment import Experiment
from modelrouter.store.decisions import DecisionTracker, Training
from modelrouter.store.memory import MemoryStore
from modelrouter.store.ring import PendingRing

BUILT = compiled().get("modelrouter.routing.bandit_c") and compiled().get(
    "modelrouter.store.decisions_c")
pytestmark = pytest.mark.skipif(not BUILT, reason="compiled twins not built on this machine")

PY_ROUTE: Any = python_method(BanditRouter, "route")
PY_OPEN: Any = python_method(DecisionTracker, "open")
PY_APPLY: Any = python_method(DecisionTracker, "apply")
PY_EXPOSE: Any = python_method(MemoryStore, "expose_decision")


def counter(step: float) -> Any:
    it = itertools.count()
    return lambda: next(it) * step


def make(variants: int = 2, **config: Any) -> Experiment:
    metrics = config.pop("metrics", {"click": "binary"})
    cfg = RouterConfig(salt="bandit-twins", metrics=metrics, reward=config.pop("reward", "click"),
                       mode=config.pop("mode", "bandit"), refresh_seconds=1e9, **config)
    return Experiment({"abcde"[i]: i for i in range(variants)}, cfg, clock=counter(0.25),
                      rng=random.Random(7))


def use_python(exp: Experiment) -> None:
    """The Python methods, set on this experiment's own bandit, tracker and memory store
    (whose compiled ``expose_decision`` the compiled route calls in C)."""
    assert exp.bandit is not None
    exp.bandit.route = MethodType(PY_ROUTE, exp.bandit)  # type: ignore[method-assign]
    if type(exp.store) is MemoryStore:
        exp.store.expose_decision = MethodType(  # type: ignore[method-assign]
            PY_EXPOSE, exp.store)
    tracker = exp.bandit.tracker
    tracker.open = MethodType(PY_OPEN, tracker)  # type: ignore[method-assign]
    tracker.apply = MethodType(PY_APPLY, tracker)  # type: ignore[method-assign]


def tracker_state(t: DecisionTracker) -> dict[str, Any]:
    if "ring" not in vars(t):  # __init__ never ran
        return {}
    ring = t.ring
    return {"groups": list(zip(t.groups.keys, t.groups.sums)), "counters": t.counters,
            "pending": t.pending, "updates": t.updates, "seq": list(ring.seq),
            "time": ring.time.tolist(), "row": ring.row.tolist(), "train": t._train.tolist(),
            "r": repr(t._r.tolist()), "x": [c.tolist() for c in t._x],
            "y": [c.tolist() for c in t._y], "last": vars(t).get("_unit_last")}


def scenario(exp: Experiment, steps: int, script: Any = None) -> dict[str, Any]:
    """``steps`` requests over 40 users (segments, feedback, automatic metrics), ``script(i,
    exp)`` before each; a refresh due runs before the next request (wait_idle)."""
    rnd = random.Random(3)
    log = []
    for i in range(steps):
        if script is not None:
            script(i, exp)
        segment = (rnd.choice(["de", "fr"]),) if exp.segment_dims else ()
        decision, seq = exp.route_checked(f"u{rnd.randrange(40)}", segment)
        log.append((decision.decision_id.partition("-")[2], decision.variant,
                    decision.propensity, decision.epoch, decision.mode, decision.unit_id,
                    decision.issued_at, decision.counted, decision.segment, seq))
        if seq >= 0:
            exp.store.record_auto(seq, 1.0 + i % 7, 1.0 if i % 13 == 0 else 0.0)
            if rnd.random() < 0.5:
                exp.record(decision, "click", rnd.random() < 0.3 + 0.2 * (decision.variant
                                                                           == "b"))
            if "spend" in exp.store.metric_index and rnd.random() < 0.6:
                exp.record(decision, "spend", round(rnd.uniform(0.0, 9.0), 2))
        assert exp.bandit is not None
        exp.bandit.wait_idle()
    exp.flush()
    header, arrays = exp.store.dump()
    header = {k: v for k, v in header.items() if k not in ("written_at", "pid")}
    assert exp.bandit is not None
    return {"log": log, "header": repr(sorted(header.items())),
            "arrays": {k: v.tolist() for k, v in sorted(arrays.items())},
            "tracker": tracker_state(exp.bandit.tracker),
            "weights": dict(exp.state.allocation.weights), "epoch": exp.state.allocation.epoch}


def both(steps: int, script: Any = None, **config: Any) -> dict[str, Any]:
    fast, slow = make(**config), make(**config)
    use_python(slow)
    try:
        a, b = scenario(fast, steps, script), scenario(slow, steps, script)
    finally:
        fast.close()
        slow.close()
    assert a == b
    return a


def _modes(i: int, exp: Experiment) -> None:
    if i in (60, 180):
        exp.configure(mode="ab")
    if i in (120, 240):
        exp.configure(mode="bandit")


def _pauses(i: int, exp: Experiment) -> None:
    if i == 50:
        exp.pause_arm("b")
    if i == 90:
        exp.state.refresh_bandit(force=True)
    if i == 140:
        exp.resume_arm("b")
    if i == 200:
        exp.configure(mode="ab")
    if i == 230:
        exp.configure(mode="bandit")


def _restore(i: int, exp: Experiment) -> None:
    if i in (100, 220):
        header, arrays = exp.store.dump()
        exp.store.load(header, arrays)


CASES: dict[str, tuple[Any, dict[str, Any]]] = {
    "thompson-2-arms": (None, {"refresh_every": 5}),
    "3-arms-holdout-pauses-segments": (_pauses, {"variants": 3, "holdout": 0.3,
                                                 "refresh_every": 7,
                                                 "segments": {"country": "x-country"}}),
    "per-request": (None, {"variants": 3, "bandit_policy": "thompson-per-request",
                           "refresh_every": 9, "holdout": 0.1}),
    "top-two": (None, {"variants": 3, "bandit_policy": "top-two", "refresh_every": 6}),
    "sticky": (None, {"sticky_seconds": 5.0, "sticky_max_units": 10, "refresh_every": 5}),
    "switches": (_modes, {"variants": 3, "refresh_every": 8}),
    "request-level": (None, {"level": "request", "refresh_every": 5}),
    "omit-continuous-cost": (None, {"metrics": {"click": "binary", "spend": "continuous"},
                                    "reward": "spend", "missing_reward": "omit",
                                    "reward_cost": {"latency_ms": 0.01}, "refresh_every": 5}),
    "restore-small-ring": (_restore, {"variants": 3, "max_pending": 16, "refresh_every": 5,
                                      "holdout": 0.2}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_and_python_bandit_give_the_same_decisions_and_state(name: str) -> None:
    script, config = CASES[name]
    out = both(300, script, **config)
    modes = {entry[4] for entry in out["log"]}
    assert "bandit" in modes
    if name != "sticky":  # the run refreshed: more than one epoch, training counted
        assert out["epoch"] >= 1
    assert out["tracker"]["updates"] > 0 or name == "omit-continuous-cost"


def test_the_compiled_twins_are_the_ones_the_request_path_runs() -> None:
    exp = make(variants=3)
    try:
        assert type(exp.bandit).route is not PY_ROUTE
        assert type(exp.bandit.tracker).open is not PY_OPEN  # type: ignore[union-attr]
        assert exp.bandit._core is not None and exp.bandit._core.fast  # type: ignore[union-attr]
    finally:
        exp.close()


def test_the_bandit_reads_the_default_clock_in_c_and_calls_an_injected_one() -> None:
    """With ``time.time`` as its clock the compiled bandit route reads the clock in C
    (routing/clocks.pxd; its issued_at lies between two ``time.time()`` reads around the
    route); an injected clock is called (the counter's readings, 0.25 apart)."""
    import time

    cfg = RouterConfig(salt="bandit-clock", metrics={"click": "binary"}, reward="click",
                       mode="bandit", refresh_seconds=1e9)
    exp = Experiment({"a": 0, "b": 1, "c": 2}, cfg)  # the default clock: time.time
    try:
        assert exp.bandit is not None and exp.bandit._core.wall  # type: ignore[union-attr]
        for unit in ("u1", "u2", "u1"):
            before = time.time()
            decision, _ = exp.route_checked(unit)
            after = time.time()
            assert decision.mode == "bandit" and before <= decision.issued_at <= after
    finally:
        exp.close()
    exp = make(variants=3)  # an injected clock
    try:
        assert not exp.bandit._core.wall  # type: ignore[union-attr]
        times = [exp.route_checked(u)[0].issued_at for u in ("u1", "u2", "u1")]
        assert times[1] - times[0] == times[2] - times[1] == 0.25
    finally:
        exp.close()


# -- attacks on DecisionTracker.open ----------------------------------------------------------
def _tracker(kind: str = "binary", rule: str = "zero", capacity: int = 8) -> DecisionTracker:
    training = Training(0, ((1, 0.5),), rule, kind, 0.25 if kind != "binary" else 0.0, 3)
    return DecisionTracker(3, ["any", "mean", "sum"], capacity, training)


def _open_both(make_tracker: Any, calls: list[tuple[Any, ...]],
               applies: list[tuple[Any, ...]] = ()) -> None:  # type: ignore[assignment]
    fast, slow = make_tracker(), make_tracker()
    for method, args in [("open", a) for a in calls] + [("apply", a) for a in applies]:
        outcome = []
        ops = ((fast, DecisionTracker.open), (slow, PY_OPEN)) if method == "open" else (
            (fast, DecisionTracker.apply), (slow, PY_APPLY))
        for tracker, op in ops:
            try:
                op(tracker, *args)
                outcome.append(None)
            except Exception as exc:  # noqa: BLE001 - type and message compared
                outcome.append((type(exc), str(exc)))
        assert outcome[0] == outcome[1], args
        assert repr(tracker_state(fast)) == repr(tracker_state(slow)), args


HOSTILE_OPENS: list[tuple[Any, ...]] = [
    (0, 0, 0, (), 0, "u", 0.5),
    (1, 2, 0, (1,), 1, "u", 1.0),  # holdout: never trains
    (2, 1, 3, (), 2, None, 2.0),  # sticky tag
    (3, 1, 0, (), True, "v", 3.0),  # a bool tag
    (4, -1, 0, (), 0, "w", 4.0),  # a negative arm wraps, as a list index does
    (5, 7, 0, (), 0, "w", 5.0),  # an arm past the counters: IndexError
    (6, 0, 0, [1], 0, "w", 6.0),  # an unhashable segment: TypeError
    (7, 0, 0, (), 0, ["x"], 7.0),  # an unhashable unit
    (8, 0, 0, (), 0, "u", 8),  # an int time
    (9, 0, 0, (), 0, "u", "now"),  # a str time: the array's TypeError
    (2**70, 0, 0, (), 0, "u", 9.0),  # past a C integer
    (-3, 0, 0, (), 0, "u", 9.5),  # a negative number
    (11.0, 0, 0, (), 0, "u", 10.0),  # a float number
    (12, 0, 2**80, (), 0, "u", 11.0),  # a huge epoch (a key only)
    (13, 0.5, 0, (), 0, "u", 12.0),  # a float arm
    (16, 1, 0, (), 0, "u", float("nan")),  # slot 0 again (capacity 8): overwritten
    (30, 2, 0, (), 0, "u", 1e300),  # a slot past the end: the ring grows
    (17, 2, 0, (), 0, "\ud800", 13.0),  # a lone surrogate unit
]


HOSTILE_APPLIES: list[tuple[Any, ...]] = [
    (0, 0, 1.0), (0, 1, 2.5), (0, 2, 3.0), (1, 0, 1.0), (2, 1, 0.5), (16, 0, 1.0),
    (0, 0, float("nan")), (1, 1, float("inf")), (16, 1, -1e300), (3, 2, 7),
    (4, 0, 1.0), (30, 1, 4.0), (8, 0, 1.0),  # slots of refused or overwritten decisions
    (2**70, 0, 1.0), (-3, 0, 1.0), (11.0, 0, 1.0), ("x", 0, 1.0), (None, 0, 1.0),
    (16, -1, 2.0),  # a negative metric wraps, as a list index does
    (16, 3, 1.0),  # a metric past the columns: IndexError
    (16, 0, "v"), (16, 1.0, 1.0), (12, 1, 0.25), (17, 0, True),
]


@pytest.mark.parametrize("kind,rule", [("binary", "zero"), ("binary", "omit"),
                                       ("continuous", "zero")])
def test_open_and_apply_twins_agree_on_hostile_arguments(kind: str, rule: str) -> None:
    _open_both(lambda: _tracker(kind, rule), HOSTILE_OPENS, HOSTILE_APPLIES)


def test_open_twins_agree_without_training_and_with_replaced_parts() -> None:
    _open_both(lambda: DecisionTracker(2, ["any"], 4, None), HOSTILE_OPENS[:6])

    def objects_column() -> DecisionTracker:
        t = _tracker()
        t.ring.add_objects("fill")  # a column C does not write: the ring's own method
        return t

    _open_both(objects_column, HOSTILE_OPENS, HOSTILE_APPLIES)

    class OtherRing(PendingRing):
        pass

    def other_ring() -> DecisionTracker:
        t = _tracker()
        t.ring = OtherRing(8)  # the mirror sees it: the Python methods run
        return t

    _open_both(other_ring, HOSTILE_OPENS[:3], HOSTILE_APPLIES[:3])

    def popped_columns() -> DecisionTracker:
        t = _tracker()
        t._x.pop()  # a metric's columns gone (in place): apply's own IndexError
        t.counters[1].pop()  # an arm's counter gone (in place): _add's own IndexError
        return t

    _open_both(popped_columns, HOSTILE_OPENS, HOSTILE_APPLIES)

    def int_counters() -> DecisionTracker:
        t = _tracker()
        t.counters = [[0, 0, 0], [0, 0, 0]]  # ints, not floats: the Python _add
        return t

    _open_both(int_counters, HOSTILE_OPENS[:5])

    def deleted() -> DecisionTracker:
        t = _tracker()
        del t._unit_last  # the mirror sees the deletion: the Python method's AttributeError
        return t

    _open_both(deleted, HOSTILE_OPENS[:3], HOSTILE_APPLIES[:3])

    def copied() -> DecisionTracker:
        t = _tracker()
        other = copy.copy(t)  # its own C copy: setting its ring leaves t's twins alone
        other.ring = PendingRing(8)
        return t

    _open_both(copied, HOSTILE_OPENS, HOSTILE_APPLIES)

    def no_init() -> DecisionTracker:
        return object.__new__(DecisionTracker)  # __init__ never ran: AttributeError

    _open_both(no_init, HOSTILE_OPENS[:2], HOSTILE_APPLIES[:2])


# -- attacks on BanditRouter.route -----------------------------------------------------------
class Hostile(random.Random):
    """A generator whose ``random()`` gives chosen values (a subclass: route reads it the same
    way either way)."""

    def __init__(self, values: list[Any]) -> None:
        super().__init__(0)
        self.values = list(values)

    def random(self) -> Any:  # type: ignore[override]
        return self.values.pop(0)


HOSTILE_DRAWS = [0.0, 0.5, 0.999, 1.0, 1.5, -0.25, float("nan"), float("inf"), 0, 1,
                 True, "x", None, 0.1, 0.2999,
                 1 / 3, 2 / 3]  # exactly on the cumulative weights of 3 equal arms: bisect_right


@pytest.mark.parametrize("holdout", [0.0, 0.3])
def test_route_twins_agree_on_hostile_draws(holdout: float) -> None:
    out = []
    for route in (BanditRouter.route, PY_ROUTE):
        exp = make(variants=3, holdout=holdout)
        assert exp.bandit is not None
        exp.bandit._rng = Hostile(HOSTILE_DRAWS)  # the mirror sees the new generator
        log = []
        for k in range(len(HOSTILE_DRAWS)):
            try:
                d, seq = route(exp.bandit, f"u{k}", (), exp.state.allocation)
                log.append((d.variant, d.propensity, d.epoch, seq))
            except Exception as exc:  # noqa: BLE001 - type and message compared
                log.append((type(exc), str(exc)))
        out.append((log, tracker_state(exp.bandit.tracker)))
        exp.close()
    assert repr(out[0]) == repr(out[1])
    assert any(isinstance(e[0], type) for e in out[0][0])  # some draws were refused


def test_route_twins_agree_on_odd_states_and_objects() -> None:
    exp = make(variants=3)
    assert exp.bandit is not None
    alloc = exp.state.allocation

    class Other:
        state = None

    for route in (BanditRouter.route, PY_ROUTE):
        with pytest.raises(AttributeError):
            route(object.__new__(BanditRouter), "u", (), alloc)  # __init__ never ran
        with pytest.raises(AttributeError, match="'NoneType' object has no attribute"):
            route(exp.bandit, "u", (), Other())
    d1 = BanditRouter.route(exp.bandit, None, (), alloc)  # no unit: the Python method
    assert d1[1] == -1 and not d1[0].counted
    exp.close()

