"""The demo-like app under ``uvicorn --workers 3`` with one real redis-server.

Load: N requests and N feedback calls from a bounded pool of client threads. After the workers
have flushed, the totals in Redis equal exactly what was sent, and every worker's analysis
agrees with the one computed here from Redis. A second test SIGKILLs Redis mid-load and restarts
it (AOF, fsync always): the service keeps answering and the counts are still exact (or the
dropped counters explain the difference exactly).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.store.conftest import RedisServer, UvicornService

httpx = pytest.importorskip("httpx")
pytest.importorskip("redis")
pytest.importorskip("uvicorn")

ROOT = Path(__file__).resolve().parents[2]
USERS = 1500


class Service(UvicornService):
    """The demo-like Redis app under ``uvicorn --workers N``."""

    def __init__(self, redis_url: str, workers: int = 3) -> None:
        super().__init__("tests.apps.redis_app:app", redis_url, workers)


@pytest.fixture
def service_factory() -> Iterator[Any]:
    services: list[Service] = []

    def make(url: str) -> Service:
        services.append(Service(url))
        return services[-1]

    yield make
    for s in services:
        if s.proc.poll() is None:
            s.stop()


def load(base: str, n: int, threads: int = 12, during: Any = None) -> dict[str, Any]:
    """n requests and n feedback calls; returns what was sent and every non-200 answer."""
    sent = {"requests": 0, "revenue": 0.0, "feedback": 0, "errors": []}
    lock = threading.Lock()

    def worker(k: int) -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            for i in range(k, n, threads):
                unit = f"u{(i * 7919) % USERS}"
                r = client.get("/predict", headers={"x-user-id": unit})
                value = i % 5
                f = client.post("/feedback", params={"unit": unit, "value": value})
                with lock:
                    if r.status_code == 200:
                        sent["requests"] += 1
                    else:
                        sent["errors"].append(r.status_code)
                    if f.status_code == 200:
                        sent["feedback"] += 1
                        sent["revenue"] += value
                    else:
                        sent["errors"].append(f.status_code)

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(worker, k) for k in range(threads)]
        if during is not None:
            during()
        for fut in futures:
            fut.result(timeout=300)
    return sent


def redis_totals(url: str) -> dict[str, float]:
    import redis

    p = "mr:{it7}:"
    with redis.Redis.from_url(url, decode_responses=True) as r:
        counters = {k: int(v) for k, v in r.hgetall(p + "counters").items()}
        return {"requests": sum(int(v) for v in r.hgetall(p + "requests").values()),
                "exposures": sum(int(v) for v in r.hgetall(p + "exposures").values()),
                "revenue": sum(float(v) for v in r.hgetall(p + "x:revenue").values()),
                "values": sum(float(v) for v in r.hgetall(p + "y:revenue").values()),
                "units": r.hlen(p + "first"), **counters}


def wait_for(url: str, sent: dict[str, Any], timeout: float = 120) -> dict[str, float]:
    """Poll the totals in Redis until every request and every feedback value sent is there
    (or counted as dropped); at ``timeout`` the last totals (the caller's asserts show what
    is missing). It used to wait for the requests, then sleep 0.3 s for the feedback of the
    last ones: a guess that a loaded machine's flusher threads can outlast."""
    def done(t: dict[str, float]) -> bool:
        return bool(t["requests"] == sent["requests"]
                    and t["exposures"] + t.get("dropped_exposures", 0) == sent["requests"]
                    and t["values"] + t.get("dropped_values", 0) == sent["feedback"])

    deadline = time.monotonic() + timeout
    totals = redis_totals(url)
    while not done(totals) and time.monotonic() < deadline:
        time.sleep(0.1)
        totals = redis_totals(url)
    return totals


def reference_analysis(url: str) -> dict[str, Any]:
    """The analysis computed in this process from Redis, with a second store of our own."""
    from modelrouter import Experiment, RouterConfig
    from modelrouter.analysis import Analysis

    exp = Experiment({"control": 1, "treatment": 2},
                     RouterConfig(experiment="it7", metrics={"revenue": "continuous"}, store=url))
    try:
        return json.loads(json.dumps(Analysis.from_experiment(exp).to_dict(["revenue"]),
                                     sort_keys=True, default=str))
    finally:  # no exposure, so nothing to flush: close() closes the store's connection
        exp.close()


def check_exact(url: str, service: Service, sent: dict[str, Any]) -> None:
    totals = wait_for(url, sent)
    assert totals["requests"] == sent["requests"]
    assert totals["exposures"] + totals.get("dropped_exposures", 0) == sent["requests"]
    assert totals["values"] + totals.get("dropped_values", 0) == sent["feedback"]
    assert totals["units"] == USERS
    if not totals.get("dropped_values"):
        assert totals["revenue"] == sent["revenue"]
    expected = reference_analysis(url)
    views = service.settle("/stats", lambda body: {} if body["analysis"] == expected and not
                           body["losses"]["orphan_values"] else {"analysis": "differs",
                                                                 "losses": body["losses"]})
    assert len(views) == 3, "every worker answers with the same analysis"
    for body in views.values():
        assert body["analysis"] == expected
        assert body["losses"]["orphan_values"] == 0


@pytest.mark.parametrize("n", [
    pytest.param(5_000, id="5k"),
    pytest.param(20_000, id="20k", marks=pytest.mark.slow),
])
def test_three_workers_totals_exact(redis_server: RedisServer, service_factory: Any,
                                    n: int) -> None:
    service = service_factory(redis_server.url)
    started = time.monotonic()
    sent = load(service.base, n)
    elapsed = time.monotonic() - started
    assert sent["errors"] == [] and sent["requests"] == n and sent["feedback"] == n
    check_exact(redis_server.url, service, sent)
    assert service.stop() == 0
    # after the graceful shutdown (final flushes) nothing changed and nothing was lost
    assert redis_totals(redis_server.url)["requests"] == n
    print(f"\n{n} requests + {n} feedback through 3 workers in {elapsed:.1f}s "
          f"({2 * n / elapsed:,.0f} HTTP calls/s)")


@pytest.mark.parametrize("n", [
    pytest.param(4_000, id="4k"),
    pytest.param(20_000, id="20k", marks=pytest.mark.slow),
])
def test_redis_killed_and_restarted_during_load(persistent_redis_server: RedisServer,
                                                service_factory: Any, n: int) -> None:
    server = persistent_redis_server
    service = service_factory(server.url)
    outage = {"down_at": 0.0, "up_at": 0.0}

    def kill_and_restart() -> None:
        time.sleep(1.0)
        server.kill()
        outage["down_at"] = time.monotonic()
        time.sleep(1.5)
        server.start()
        outage["up_at"] = time.monotonic()

    sent = load(service.base, n, during=kill_and_restart)
    assert outage["up_at"] > outage["down_at"] > 0
    assert sent["errors"] == [], "the service must keep answering while Redis is down"
    check_exact(server.url, service, sent)
    assert service.stop() == 0
