"""What the compiled request path reads in C that the Python methods read through the
interpreter: the default clocks (``time.perf_counter`` for latency, ``time.time`` for a
decision's ``issued_at``; routing/clocks.pxd), the decision tuple built without a copy of its
fields, and the response status compared in C. Each must give what the Python method gives.

Matrix cells: memory store; one worker; A/B and bandit (the bandit builds its decisions the
same way); 3 variants; user level; fresh; valid and hostile input (statuses of every type
and size, a names tuple replaced by a list).
"""

from __future__ import annotations

import asyncio
import gc
import pickle
import time
from fractions import Fraction
from typing import Any

import pytest

from modelrouter import ModelRouter, RouterConfig
from modelrouter.config.extensions import compiled
from modelrouter.routing.decision import Decision
from tests.asgi._attack import (
    both,
    call,
    columns,
    compiled_call,
    make_router,
    python_call,
    scope_of,
)

BUILT = bool(compiled()) and all(compiled().values())
pytestmark = pytest.mark.skipif(not BUILT, reason="compiled twins not built on this machine")


def _clock_now(wall: bool) -> float | None:
    from modelrouter.asgi.middleware_core_c import clock_now_py  # type: ignore[import-not-found]

    return clock_now_py(wall)  # type: ignore[no-any-return]


@pytest.mark.parametrize("wall", [False, True], ids=["perf_counter", "time"])
def test_the_c_clock_reads_what_the_interpreter_reads(wall: bool) -> None:
    """Each C read lies between two reads of the Python clock it stands for, 2,000 times
    (the same clock and the same rounding: a different clock or a unit error would fall
    outside by far)."""
    python = time.time if wall else time.perf_counter
    if _clock_now(wall) is None:
        pytest.skip("this platform's clock is read through the interpreter")
    for _ in range(2_000):
        before = python()
        now = _clock_now(wall)
        after = python()
        assert now is not None and before <= now <= after


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _slow_app(delay: float) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(delay)
        await send({"type": "http.response.body", "body": b"ok"})
    return app


@pytest.mark.parametrize("via", [compiled_call, python_call], ids=["compiled", "python"])
def test_default_clocks_give_the_decision_time_and_the_latency(via: Any) -> None:
    """With the default clocks (read in C on the compiled path, which the router's C copies
    say it takes), ``issued_at`` lies between two ``time.time()`` reads around the request and
    the recorded latency covers the app's 30 ms (and not a second): as the Python method."""
    router = ModelRouter(_slow_app(0.03), {"a": 0, "b": 1, "c": 2},
                         RouterConfig(salt="clocks", metrics={"click": "binary"}))
    if via is compiled_call:
        assert router._core.perf and router.experiment._core.wall  # the C reads are used
    scope = scope_of([(b"x-user-id", b"u1")])
    before = time.time()

    async def go() -> None:
        await via(router, scope, _receive, _sink)
    asyncio.run(go())
    after = time.time()
    decision = scope["state"]["modelrouter"]
    assert before <= decision.issued_at <= after
    _, arrays = router.experiment.store.dump()
    assert arrays["y:latency_ms"].sum() == 1.0
    assert 30.0 <= arrays["x:latency_ms"].sum() < 1000.0


async def _sink(message: Any) -> None:
    return None


def test_injected_clocks_are_called_not_read_in_c() -> None:
    """A router given its own timer and clock (a simulation's) calls them: the C reads are
    only for the interpreter's own functions."""
    router = make_router()
    assert not router._core.perf and not router.experiment._core.wall


def test_a_flight_says_when_it_started_with_either_timer() -> None:
    """A Flight keeps a start read in C as a C double (no float object per request) and an
    injected timer's reading as the object the timer gave; ``start`` shows either."""
    from modelrouter.asgi import middleware_c  # type: ignore[attr-defined]

    router = ModelRouter(_slow_app(0), {"a": 0, "b": 1}, RouterConfig(
        salt="clocks", metrics={"click": "binary"}))
    before = time.perf_counter()
    flight = router(scope_of([(b"x-user-id", b"u1")]), _receive, _sink)
    after = time.perf_counter()
    assert type(flight) is middleware_c.Flight and router._core.perf
    assert type(flight.start) is float and before <= flight.start <= after
    asyncio.run(flight)
    reading = Fraction(7, 3)  # a simulation's clock may give any number
    router._timer = lambda: reading
    flight = router(scope_of([(b"x-user-id", b"u2")]), _receive, _sink)
    assert not router._core.perf and flight.start is reading
    asyncio.run(flight)


@pytest.mark.parametrize("reading", [None, "t", float("nan"), 10**400], ids=repr)
def test_an_injected_timer_of_any_reading_is_used_as_by_the_python_method(reading: Any
                                                                          ) -> None:
    """A timer whose reading at the start is None, a str, NaN or an int past a float (and
    1.0 at the end): the compiled Flight keeps the start as the object it was and subtracts
    it as the Python method does (the same exception, or the same recorded latency)."""
    outcomes = []
    for via in (compiled_call, python_call):
        router = make_router()
        readings = iter([reading])
        router._timer = lambda: next(readings, 1.0)  # noqa: B023
        got = call(router, via, scope_of([(b"x-user-id", b"u1")]))
        outcomes.append((got["error"], repr(columns(router))))  # (repr: NaN equals NaN)
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == {None: "TypeError", "t": "TypeError", 10**400: "OverflowError"
                              }.get(reading)


def test_a_decision_built_in_c_is_a_decision_like_any_other() -> None:
    """The compiled route's decision (allocated as ``tuple.__new__`` allocates it, items set
    in C) is a ``Decision`` equal to the Python route's, tracked by the collector, hashable,
    picklable, unpackable; the bandit's too."""
    fast, slow = make_router(), make_router()
    for unit in ("u1", "u2", "\u00e9", "u" * 300):
        a, seq_a = fast.experiment.route_checked(unit)
        b, seq_b = python_route(slow, unit)
        assert type(a) is Decision and seq_a == seq_b
        assert a[1:] == b[1:] and a.decision_id.partition("-")[2] == b.decision_id.partition(
            "-")[2]
        assert gc.is_tracked(a) and len(a) == 10 and hash(a) == hash(tuple(a))
        assert pickle.loads(pickle.dumps(a)) == a and a._asdict()["mode"] == "ab"
        *_, counted, segment = a
        assert counted is True and segment == ()
    bandit = ModelRouter(lambda *a: None, {"a": 0, "b": 1, "c": 2},
                         RouterConfig(salt="clocks", metrics={"click": "binary"},
                                      mode="bandit", reward="click"))
    d, _ = bandit.experiment.route_checked("u1")
    assert type(d) is Decision and d.mode == "bandit" and gc.is_tracked(d)
    assert columns(fast) == columns(slow)


def python_route(router: ModelRouter, unit: str) -> Any:
    from modelrouter.config.extensions import python_method
    from modelrouter.routing.experiment import Experiment

    return python_method(Experiment, "route_checked")(router.experiment, unit)


def test_names_replaced_by_a_list_are_indexed_as_python_would() -> None:
    """The route reads a variant's name, model and propensity from tuples in C; anything
    else (a list set by a user) is indexed by the object's own ``[]``."""
    fast, slow = make_router(), make_router()
    for r in (fast, slow):
        r.experiment.names = list(r.experiment.names)
        r.experiment.models = list(r.experiment.models)
    for unit in ("u1", "u2", "u3"):
        a, _ = fast.experiment.route_checked(unit)
        b, _ = python_route(slow, unit)
        assert a[1:] == b[1:]


STATUSES = [200, 404, 499, 500, 599, 2**70, -(2**70), -1, 0, True, False, 499.5, 500.0,
            "200", None, b"500"]


@pytest.mark.parametrize("status", STATUSES, ids=repr)
def test_any_status_the_app_sends_is_compared_as_python_compares_it(status: Any) -> None:
    """The status decides the error metric (>= 500) and whether the request was recorded
    (>= 0): an int is compared in C, anything else by Python's ``>=`` (a TypeError for a
    string, as in the Python method). Compiled and Python: the same answers and columns."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    fast, slow = both(lambda i: scope_of([(b"x-user-id", f"u{i}".encode())]), n=3, app=app)
    assert [r["error"] for r in fast] == [r["error"] for r in slow]
