"""``Experiment.close()`` stops the bandit's refresh thread, on every store.

The thread wakes every ``refresh_seconds`` and re-plans from the store. Left running after
``close()``, it read a closed Redis store again: redis-py opened a new connection that nothing
closed (a ResourceWarning at exit: seen once as a failed run of the test suite, an unclosed
socket to a test's Redis server). Cells: memory and Redis store; bandit mode (3 arms) and a
bandit configured while in A/B mode, then switched; user level.

``close()`` also closes the connections of the Redis client the store made: the final flush's
connection otherwise stayed open until garbage collection found the store, a ResourceWarning
that failed a CI run at pytest's exit. Cells: Redis; A/B and bandit; user and request level; a
client passed in (left open); a final flush that fails with a bug (closed all the same).
"""

from __future__ import annotations

from typing import Any

import pytest

from modelrouter import Experiment, RouterConfig
from tests.store.conftest import RedisServer


def bandit(store: Any, mode: str) -> Experiment:
    config = RouterConfig(experiment="close", metrics={"click": "binary"}, reward="click",
                          mode=mode, store=store, refresh_seconds=0.05, flush_seconds=3600.0)
    return Experiment({"a": 1, "b": 2, "c": 3}, config)


@pytest.mark.parametrize("mode", ["bandit", "ab"])
@pytest.mark.parametrize("where", ["memory", "redis"])
def test_close_stops_the_bandits_refresh_thread(redis_server: RedisServer, where: str,
                                                mode: str) -> None:
    exp = bandit(redis_server.url if where == "redis" else "memory", mode)
    if mode == "ab":
        exp.configure(mode="bandit")  # the thread starts with the switch
    exp.route("u1")
    assert exp.bandit is not None
    thread = exp.bandit._thread
    assert thread is not None and thread.is_alive()
    exp.close()
    thread.join(timeout=5)
    assert not thread.is_alive()


@pytest.mark.parametrize("mode", ["bandit", "ab"])
@pytest.mark.parametrize("level", ["user", "request"])
def test_close_closes_the_connections_of_the_client_the_store_made(
        redis_server: RedisServer, mode: str, level: str) -> None:
    """Redis x A/B and bandit x user and request level: after ``close()`` the server holds no
    connection of this worker. Before, the final flush's connection stayed open until garbage
    collection found the store (a ResourceWarning that failed a CI run at pytest's exit)."""
    pytest.importorskip("redis")
    config = RouterConfig(experiment="close-conn", metrics={"click": "binary"},
                          reward="click" if mode == "bandit" else None, mode=mode,
                          level=level, store=redis_server.url, flush_seconds=3600.0)
    exp = Experiment({"a": 1, "b": 2, "c": 3}, config)
    decision, _ = exp.route("u1")
    exp.record(decision, "click", 1.0)
    exp.flush()
    assert int(exp.store.snapshot().requests.sum()) == 1
    assert len(redis_server.open_connections(settle=0.0)) >= 1  # the flush's is open
    exp.close()
    assert redis_server.open_connections() == []


def test_close_leaves_a_client_passed_in_open(redis_server: RedisServer) -> None:
    """A redis-py client the caller made and passed in is the caller's: ``close()`` flushes
    through it and leaves its connection open."""
    redis = pytest.importorskip("redis")
    from modelrouter.store.redis.store import RedisStore

    mine = redis.Redis.from_url(redis_server.url)  # not the fixture's: it would close it
    try:
        metrics = RouterConfig(metrics={"click": "binary"}).metrics
        store = RedisStore(redis_server.url, ["a", "b"], metrics,
                           experiment="close-mine", client=mine, flush_seconds=3600.0)
        store.close()
        assert mine.ping() is True
        assert len(redis_server.open_connections(settle=0.0)) == 1
    finally:
        mine.close()


def test_close_closes_the_connections_also_when_the_final_flush_fails(
        redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A final flush that raises something other than a StoreError (a bug) propagates from
    ``close()``, and the connections are closed all the same."""
    pytest.importorskip("redis")
    config = RouterConfig(experiment="close-bug", metrics={"click": "binary"},
                          store=redis_server.url, flush_seconds=3600.0)
    exp = Experiment({"a": 1, "b": 2}, config)
    exp.route("u1")
    exp.flush()
    assert len(redis_server.open_connections(settle=0.0)) >= 1

    def broken(worker: str, last_no: int) -> Any:
        raise RuntimeError("a bug in the drain")

    monkeypatch.setattr(exp.store._flusher, "_drain", broken)  # type: ignore[attr-defined]
    exp.route("u2")
    with pytest.raises(RuntimeError, match="a bug in the drain"):
        exp.close()
    assert redis_server.open_connections() == []
