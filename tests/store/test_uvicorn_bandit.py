"""A bandit under ``uvicorn --workers 3`` with one real redis-server (issue 13, "Must hold").

The load generator sends requests with a new user id each, reads the routed variant and the
signed token from the response, draws a click with the arm's true rate (bad 0.05, good 0.25,
other 0.10) and posts it to ``/_modelrouter/feedback``; the kernel spreads both over the three
workers, so most feedback reaches a worker that did not route the decision (it is forwarded).
Every 25th click is posted twice (a replay): it must count once.

Checked: totals in Redis are exact (decisions = requests served, successes = clicks accepted);
every worker reports the same IPW comparison; the share routed to the best arm in the last
quarter is within 0.10 of what one process reaches on the same design (simulated here with the
memory store); a pause through one worker's admin API reaches all three within 1 s
(measured); Redis SIGKILLed and restarted mid-load (AOF) leaves the counts exact, once and 30
times in a row.

Default run: 3,000 requests. ``-m slow``: 20,000 requests, and the Redis kills.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.store.conftest import RedisServer, UvicornService

httpx = pytest.importorskip("httpx")
redis = pytest.importorskip("redis")
pytest.importorskip("uvicorn")

ROOT = Path(__file__).resolve().parents[2]
RATES = {"bad": 0.05, "good": 0.25, "other": 0.10}
ADMIN = "integration-test-admin-token-0123"
P = "mr:{bandit-it}:"


class Service(UvicornService):
    """The bandit app under ``uvicorn --workers 3``."""

    def __init__(self, redis_url: str, workers: int = 3) -> None:
        super().__init__("tests.apps.bandit_app:app", redis_url, workers)

    def every_worker(self, timeout: float = 90) -> dict[int, dict[str, Any]]:
        """``/stats`` of each of the three workers (new connections until all answered; the
        kernel picks the worker, and each answer computes an analysis of every decision)."""
        seen: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(seen) < 3 and time.monotonic() < deadline:
            body = httpx.get(self.base + "/stats", timeout=10).json()
            seen[body["pid"]] = body
        assert len(seen) == 3, f"only {len(seen)} workers answered"
        return seen


@pytest.fixture
def service(redis_server: RedisServer) -> Iterator[Service]:
    s = Service(redis_server.url)
    yield s
    if s.proc.poll() is None:
        s.stop()


def load(base: str, n: int, threads: int = 12, seed: int = 1, during: Any = None
         ) -> dict[str, Any]:
    """n routed requests with clicks posted by token; returns what was sent and accepted."""
    out: dict[str, Any] = {"served": 0, "clicks": 0, "replays": 0, "replay_counted": 0,
                           "order": [], "errors": []}
    lock = threading.Lock()

    def run(k: int) -> None:
        rng = random.Random(seed * 1000 + k)
        # feedback on its own keep-alive connection: the kernel gives the two connections to
        # workers independently, so most clicks reach another worker than the routing one
        with httpx.Client(base_url=base, timeout=10) as client, \
                httpx.Client(base_url=base, timeout=10) as feedback:
            for i in range(k, n, threads):
                r = client.get("/predict", headers={"x-user-id": f"s{seed}-u{i}"})
                if r.status_code != 200:
                    with lock:
                        out["errors"].append(("predict", r.status_code))
                    continue
                variant = r.json()["variant"]
                with lock:
                    out["served"] += 1
                    out["order"].append((i, variant))
                if rng.random() >= RATES[variant]:
                    continue
                body = {"token": r.headers["x-modelrouter-token"], "metric": "click", "value": 1}
                f = feedback.post("/_modelrouter/feedback", json=body)
                with lock:
                    if f.status_code == 200 and f.json()["recorded"]:
                        out["clicks"] += 1
                    else:
                        out["errors"].append(("feedback", f.status_code))
                if i % 25 == 0 and f.status_code == 200:  # a replay, to any worker
                    g = httpx.post(base + "/_modelrouter/feedback", json=body, timeout=10)
                    with lock:
                        out["replays"] += 1
                        out["replay_counted"] += g.status_code == 200 and g.json()["recorded"]

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(run, k) for k in range(threads)]
        if during is not None:
            during()
        for fut in futures:
            fut.result(timeout=600)
    return out


def redis_counts(url: str) -> dict[str, float]:
    with redis.Redis.from_url(url, decode_responses=True) as r:
        training = {k: float(v) for k, v in r.hgetall(P + "training").items()}
        requests = sum(int(v) for v in r.hgetall(P + "requests").values())
    return {"requests": requests,
            "successes": sum(v for k, v in training.items() if k.startswith("successes:")),
            "failures": sum(v for k, v in training.items() if k.startswith("failures:"))}


def settled(url: str, done: Callable[[dict[str, float]], bool], timeout: float = 120
            ) -> dict[str, float]:
    """Poll the counts in Redis until ``done(counts)``: every decision, click and forwarded
    value flushed (a forwarded click needs one more flush and inbox cycle of the worker that
    routed it); at ``timeout`` the last counts (the caller's asserts show what is missing).
    It used to wait for the requests and clicks, then sleep 0.3 s: a guess that a loaded
    machine's flusher threads can outlast."""
    deadline = time.monotonic() + timeout
    counts = redis_counts(url)
    while not done(counts) and time.monotonic() < deadline:
        time.sleep(0.1)
        counts = redis_counts(url)
    return counts


def last_quarter_share(order: list[tuple[int, str]]) -> float:
    order = sorted(order)
    tail = order[len(order) * 3 // 4:]
    return sum(v == "good" for _i, v in tail) / len(tail)


def one_process_share(n: int, seed: int) -> float:
    """The same design in one process (memory store), rewards recorded at once."""
    from modelrouter import Experiment, RouterConfig

    config = RouterConfig(experiment="bandit-it", metrics={"click": "binary"}, reward="click",
                          mode="bandit", refresh_every=50, refresh_seconds=None)
    exp = Experiment({"bad": 0, "good": 1, "other": 2}, config)
    rng = random.Random(seed)
    order = []
    for i in range(n):
        d = exp.assign(f"u{i}")
        order.append((i, d.variant))
        if rng.random() < RATES[d.variant]:
            exp.record(d, "click", 1)
        if exp.bandit is not None:
            exp.bandit.wait_idle()
    return last_quarter_share(order)


def check_run(service: Service, url: str, n: int) -> None:
    sent = load(service.base, n)
    assert sent["errors"] == [] and sent["served"] == n
    counts = settled(url, lambda c: c["requests"] == n and c["successes"] == sent["clicks"]
                     and c["successes"] + c["failures"] == n)
    # totals are exact: every decision and every accepted click, the replays counted once
    assert counts["requests"] == n
    assert counts["successes"] == sent["clicks"]
    assert counts["successes"] + counts["failures"] == n
    assert sent["replays"] > 0 and sent["replay_counted"] == 0
    # every worker reads the same IPW analysis of all decisions
    stats = service.every_worker()
    compares = {json.dumps(s["compare"], sort_keys=True) for s in stats.values()}
    assert len(compares) == 1
    assert {s["decisions"] for s in stats.values()} == {n}
    assert len({s["epoch"] for s in stats.values()}) == 1  # one routing state in force
    forwarded_in = sum(s["worker"]["forwarded_in"] for s in stats.values())
    assert forwarded_in > 0  # clicks reached another worker than the routing one
    # the best arm wins as in one process (tolerance 0.10 on the last quarter's share)
    multi, single = last_quarter_share(sent["order"]), one_process_share(n, seed=11)
    assert multi > 0.5 and abs(multi - single) <= 0.10, (multi, single)


def test_bandit_under_three_workers(service: Service, redis_server: RedisServer) -> None:
    check_run(service, redis_server.url, 3_000)


@pytest.mark.slow
def test_bandit_under_three_workers_20k(service: Service, redis_server: RedisServer) -> None:
    check_run(service, redis_server.url, 20_000)


def test_a_pause_through_one_worker_reaches_every_worker_within_a_second(
        service: Service) -> None:
    auth = {"authorization": f"Bearer {ADMIN}"}
    before = service.every_worker()
    assert all(s["weights"]["good"] > 0 for s in before.values())
    start = time.time()  # the workers' clock (same machine): they report when they adopted
    r = httpx.post(service.base + "/_modelrouter/config", json={"pause": "good"}, headers=auth)
    assert r.status_code == 200 and r.json()["weights"]["good"] == 0.0
    epoch = r.json()["epoch"]
    adopted: dict[int, float] = {}
    while len(adopted) < 3 and time.time() - start < 10:
        body = httpx.get(service.base + "/stats", timeout=5).json()
        if body["weights"]["good"] == 0.0 and body["epoch"] == epoch:
            adopted[body["pid"]] = body["epoch_since"] - start
    assert len(adopted) == 3, f"paused in {len(adopted)} of 3 workers after 10 s"
    print(f"pause adopted by each worker after (s): {sorted(adopted.values())}")
    assert max(adopted.values()) < 1.0, adopted  # the documented bound
    sent = load(service.base, 300, threads=6, seed=2)
    assert not any(v == "good" for _i, v in sent["order"])


def killed_run(tmp_path: Path, n: int, kills: int, first: float, down: float,
               up: float) -> None:
    """n requests under load while Redis is SIGKILLed ``kills`` times (after ``first``
    seconds, then every ``down + up``) and restarted (AOF, fsync always): routing never
    stops, feedback is accepted or refused with 503, and every accepted click is counted once
    or counted as dropped; every value forwarded to another worker's inbox reached it."""
    server = RedisServer(tmp_path, persistent=True)
    server.start()
    service = Service(server.url)
    try:
        def outage() -> None:
            time.sleep(first)
            for _ in range(kills):
                server.kill()
                time.sleep(down)
                server.start()
                time.sleep(up)

        sent = load(service.base, n, during=outage)
        assert sent["served"] == n  # routing never stopped
        refused = [e for e in sent["errors"] if e[0] == "feedback"]
        assert all(status == 503 for _k, status in refused)  # refused clearly, not lost
        r = server.client(decode_responses=True)

        def dropped_counts() -> dict[str, int]:
            return {k: int(v) for k, v in r.hgetall(P + "counters").items()}

        def done(c: dict[str, float]) -> bool:
            lost = dropped_counts()
            return (c["requests"] + lost.get("dropped_exposures", 0) == n and c["successes"]
                    + lost.get("dropped_values", 0) == sent["clicks"])

        counts = settled(server.url, done)
        dropped = dropped_counts()
        assert counts["requests"] + dropped.get("dropped_exposures", 0) == n
        assert counts["successes"] + dropped.get("dropped_values", 0) == sent["clicks"]
        # each request had a user of its own: one exposure each (a batch torn in the AOF by a
        # kill used to count its orphan part again at a later restart: 58 units with 2)
        exposures = r.hgetall(P + "exposures")
        assert len(exposures) + dropped.get("dropped_exposures", 0) == n
        assert {v for v in exposures.values()} <= {"1"}, sorted(
            (u, v) for u, v in exposures.items() if v != "1")[:10]
        # a pop of an inbox whose reply the kill cut used to lose its values (and the clicks
        # they carried) silently: each worker's count of values forwarded and taken agree
        workers = service.every_worker().values()
        forwarded = sum(w["worker"]["forwarded"] for w in workers)
        assert forwarded > 0
        assert sum(w["worker"]["forwarded_in"] for w in workers) == forwarded
    finally:
        service.stop()
        server.stop()


@pytest.mark.slow
def test_redis_killed_mid_load_leaves_counts_exact(tmp_path: Path) -> None:
    killed_run(tmp_path, 6_000, kills=1, first=1.5, down=1.5, up=0.0)


@pytest.mark.slow
def test_redis_killed_thirty_times_mid_load_loses_no_forwarded_click(tmp_path: Path) -> None:
    """30 SIGKILLs 0.6 s apart in ~12,000 requests (~30 s): before the inbox pops were
    idempotent, 3 of 5 such runs lost clicks uncounted (16, 50 and 2: exactly the values
    forwarded and never taken), 0 of 7 after. Before the batch script wrote totals, 2 of 21
    runs counted 8 and 17 requests too many, and one of 20 other runs 58 exposures: a batch
    torn in the AOF by a kill (tests/store/test_redis_torn_aof.py)."""
    killed_run(tmp_path, 12_000, kills=30, first=1.0, down=0.25, up=0.35)
