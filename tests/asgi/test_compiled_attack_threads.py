"""Adversarial tests of the compiled request path under 8 threads (memory store; A/B; 3
variants; user level; weight changes, paused and resumed arms, snapshots and restores under
traffic): totals exact, columns consistent, nothing lost.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from modelrouter import ModelRouter, RouterConfig
from modelrouter.config.extensions import compiled
from modelrouter.exceptions import UnknownDecisionError
from modelrouter.routing.experiment import Experiment

BUILT = bool(compiled()) and all(compiled().values())
pytestmark = pytest.mark.skipif(not BUILT, reason="compiled twins not built on this machine")


# -- threads ----------------------------------------------------------------------------------

def race(worker: Callable[[int], None], control: Callable[[], None],
         done: threading.Event) -> None:
    """8 ``worker`` threads against one ``control`` thread, with thread switches every 10 us
    (many more of them inside the hot path); ``done`` is set once the workers finished."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        ctl = threading.Thread(target=control)
        ctl.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        ctl.join()
    finally:
        sys.setswitchinterval(interval)


def churn(exp: Experiment, done: threading.Event) -> Iterator[int]:
    """The control thread's changes until ``done``: a weight change, pausing and resuming arm
    ``c``, and a snapshot per round; yields the round number (for extra work per round)."""
    weights = [{"a": 0.2, "b": 0.3, "c": 0.5}, {"a": 0.5, "b": 0.25, "c": 0.25}]
    for i in itertools.count():
        if done.is_set():
            return
        exp.configure(weights=weights[i % 2])
        exp.pause_arm("c")
        exp.resume_arm("c")
        exp.store.snapshot()
        yield i


def _hammer(restore: bool) -> dict[str, Any]:
    """8 threads x 1,500 requests (route_checked, record_auto, every 3rd a click) through the
    compiled path while a control thread changes weights, pauses and resumes an arm, takes
    snapshots and (``restore``) dumps and loads the store."""
    exp = Experiment({"a": 0, "b": 1, "c": 2}, RouterConfig(
        salt="threads", metrics={"click": "binary"},
        max_pending=512 if restore else 100_000))
    store: Any = exp.store
    errors: list[str] = []
    clicks, evicted, loads = [0] * 8, [0] * 8, [0]
    done = threading.Event()

    def worker(t: int) -> None:
        rnd = random.Random(t)
        try:
            for k in range(1_500):
                decision, seq = exp.route_checked(f"u{rnd.randrange(2_000)}")
                store.record_auto(seq, 1.5, 1.0 if k % 7 == 0 else 0.0)
                if k % 3 == 0:
                    try:
                        exp.record(decision, "click", 1)
                        clicks[t] += 1
                    except UnknownDecisionError:  # evicted from the ring (restore: 512)
                        evicted[t] += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(repr(exc))

    def control() -> None:
        try:
            for i in churn(exp, done):
                if restore and i % 2 == 0:
                    header, arrays = store.dump()
                    store.load(header, arrays)
                    loads[0] += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append("control: " + repr(exc))

    race(worker, control, done)
    store.fold_journal()
    u = store._units
    n = len(u.variant)
    return {"errors": errors, "loads": loads[0], "decisions": store.stats()["decisions"],
            "requests": sum(store._path.requests), "exposures": sum(u.exposures),
            "lat_y": sum(u.lat_y[:n]), "lat_x": sum(u.lat_x[:n]), "err_x": sum(u.err_x[:n]),
            "hist": sum(store._hist), "hist_sum": sum(store._hist_sum),
            "click_y": sum(u.y[store.metric_index["click"]][:n]), "clicks": sum(clicks),
            "evicted": sum(evicted)}


def test_eight_threads_lose_nothing_through_the_compiled_path() -> None:
    """Totals exact: 12,000 requests, exposures and journal entries (ring of 100,000: none
    evicted), 4,000 clicks; the error count is that of k % 7 == 0 (215 of 1,500 per thread)."""
    got = _hammer(restore=False)
    assert got["errors"] == []
    assert got["decisions"] == got["requests"] == got["exposures"] == 12_000
    assert got["lat_y"] == got["hist"] == 12_000 and got["lat_x"] == got["hist_sum"] == 18_000
    assert got["err_x"] == 8 * 215
    assert got["clicks"] == got["click_y"] == 4_000 and got["evicted"] == 0


def test_eight_threads_with_restores_keep_the_columns_consistent() -> None:
    """With loads under traffic (what was routed between a dump and its load is forgotten, by
    design) the numbering continues and every column agrees with the others."""
    got = _hammer(restore=True)
    assert got["errors"] == [] and got["loads"] >= 1
    assert got["decisions"] == 12_000
    assert got["requests"] == got["exposures"] <= 12_000
    assert got["lat_y"] == got["hist"] and got["hist_sum"] == got["lat_x"] == 1.5 * got["lat_y"]
    assert got["click_y"] <= got["clicks"] <= 4_000


def test_eight_threads_through_the_compiled_middleware_record_every_request() -> None:
    """8 threads, each its own event loop, x 500 requests through the router's compiled call
    (every 5th a 500) while another thread changes weights, pauses and resumes an arm and takes
    snapshots: every request is exposed once and its latency and error folded exactly once."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        status = 500 if scope["path"] == "/fail" else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await send({"type": "http.response.body", "body": b"y"})

    router = ModelRouter(app, {"a": 0, "b": 1, "c": 2}, RouterConfig(
        salt="mw-threads", metrics={"click": "binary"}))
    errors: list[str] = []
    done = threading.Event()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        return None

    def worker(t: int) -> None:
        async def run() -> None:
            for k in range(500):
                path = "/fail" if k % 5 == 0 else "/p"
                scope = {"type": "http", "path": path, "state": {},
                         "headers": [(b"x-user-id", b"t%d-u%d" % (t, k % 97))]}
                await router(scope, receive, send)
        try:
            asyncio.run(run())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(repr(exc))

    def control() -> None:
        try:
            for _ in churn(router.experiment, done):
                pass
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append("control: " + repr(exc))

    race(worker, control, done)
    store: Any = router.experiment.store
    store.fold_journal()
    units = store._units
    n = len(units.variant)
    assert errors == []
    assert n == 8 * 97
    assert store.stats()["decisions"] == sum(store._path.requests) == sum(units.exposures) == 4000
    assert sum(units.lat_y[:n]) == sum(store._hist) == 4000
    assert sum(units.err_x[:n]) == 8 * 100 and sum(units.err_y[:n]) == 4000
