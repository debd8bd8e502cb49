"""``Experiment.close()`` stops the bandit's refresh thread, on every store.

The thread wakes every ``refresh_seconds`` and re-plans from the store. Left running after
``close()``, it read a closed Redis store again: redis-py opened a new connection that nothing
closed (a ResourceWarning at exit: seen once as a failed run of the test suite, an unclosed
socket to a test's Redis server). Cells: memory and Redis store; bandit mode (3 arms) and a
bandit configured while in A/B mode, then switched; user level.
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
