"""A fork while another thread is inside the store's lock.

The store's lock guards every exposure and record; background threads take it too (the
bandit's refresh, the Redis flusher's drain, the guardrail monitor's snapshot). A fork copies
the lock as it is: taken by a thread the child does not have, so the child waited for ever at
its first request, or at its first flush, or (a Redis store) already in its own at-fork reset.
Now the fork waits until the lock is free (store/forksafe.py), as it does for the routing
state's lock, and both processes go on.

Cells covered: memory and Redis store (request level: the Redis store's local store); A/B and
bandit; 2 and 3 variants; user and request level; a parent with a thread inside the lock, and
a forked child; the compiled lock and ``threading.Lock`` (the Python-twin pass of
scripts/test.sh runs this file again).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from modelrouter import Experiment, RouterConfig
from tests.forking import in_child

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform"),
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

HOLD = 0.3  # seconds the other thread stays inside the lock


class _Holder:
    """Another thread inside ``lock`` for ``HOLD`` seconds; :meth:`inside` returns once it
    is."""

    def __init__(self, lock: Any) -> None:
        self.entered, self.left_at = threading.Event(), 0.0

        def hold() -> None:
            with lock:
                self.entered.set()
                time.sleep(HOLD)
                self.left_at = time.monotonic()

        self.thread = threading.Thread(target=hold)

    def inside(self) -> _Holder:
        self.thread.start()
        assert self.entered.wait(5)
        return self

    def join(self) -> None:
        self.thread.join(5)


def _store_lock(e: Experiment) -> Any:
    store: Any = e.store
    local = getattr(store, "_local", None)  # the Redis store's local store
    return (local if local is not None else store)._lock


@pytest.mark.parametrize("variants", [{"a": 1, "b": 2}, {"a": 1, "b": 2, "c": 3}])
@pytest.mark.parametrize("level", ["user", "request"])
def test_fork_waits_for_the_memory_stores_lock(level: str, variants: dict[str, int]) -> None:
    """A/B, memory store: the fork returns after the other thread left the lock; the child
    routes and records (without the wait: it waited for ever, killed after 5 s); the parent's
    counts are its own."""
    e = Experiment(variants, RouterConfig(metrics={"click": "binary"}, level=level))
    e.record(e.assign("u0" if level == "user" else None).decision_id, "click", 1)
    holder = _Holder(_store_lock(e)).inside()

    def child() -> None:
        d = e.assign("u1" if level == "user" else None)
        e.record(d.decision_id, "click", 1)
        assert e.store.stats()["decisions"] == 2

    in_child(child, timeout=5)
    assert holder.left_at > 0  # the fork waited for it
    holder.join()
    d = e.assign("u2" if level == "user" else None)
    e.record(d.decision_id, "click", 1)
    assert e.store.stats()["decisions"] == 2  # the parent: u0 and u2
    e.close()


def test_fork_during_the_bandits_refresh() -> None:
    """Bandit, 3 arms: the refresh thread is the one inside the store's lock (held here from a
    thread as the refresh holds it); the child's first route must not wait for it."""
    e = Experiment({"a": 1, "b": 2, "c": 3},
                   RouterConfig(metrics={"click": "binary"}, mode="bandit", reward="click"))
    e.record(e.assign("u0").decision_id, "click", 1)
    holder = _Holder(_store_lock(e)).inside()

    def child() -> None:
        d = e.assign("u1")
        e.record(d.decision_id, "click", 1)

    in_child(child, timeout=5)
    holder.join()
    e.close()


def test_fork_waits_for_the_redis_stores_local_lock(redis_server: Any) -> None:
    """Redis, request level: the local store's lock held (as the flusher's drain holds it) at
    the fork. The child's at-fork reset takes that store's deltas: it waited for ever there."""
    pytest.importorskip("redis")
    e = Experiment({"a": 1, "b": 2},
                   RouterConfig(experiment="forklock", metrics={"click": "binary"},
                                store=redis_server.url, level="request", flush_seconds=3600.0))
    e.record(e.assign(None).decision_id, "click", 1)
    holder = _Holder(_store_lock(e)).inside()

    def child() -> None:
        e.record(e.assign(None).decision_id, "click", 1)
        e.flush()

    in_child(child, timeout=5)
    holder.join()
    e.flush()
    e.close()


@pytest.mark.parametrize("lock", ["replay guard", "feedback counts"])
def test_fork_waits_for_the_feedback_locks(lock: str) -> None:
    """Token feedback: the replay guard's lock (``SeenSet``) or the feedback counts' lock held
    by another thread at the fork. The child's first token feedback waited for ever."""
    from modelrouter import ModelRouter

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    router = ModelRouter(app, {"a": 1, "b": 2, "c": 3},
                         RouterConfig(metrics={"click": "binary"}, secret="s" * 32))
    assert router.surface is not None and router.surface.feedback is not None
    feedback = router.surface.feedback
    signer, e = feedback.signer, router.experiment
    tokens = [signer.sign_decision(e.assign(f"u{i}")).decode() for i in range(3)]
    assert router.record_token(tokens[0], "click", 1)
    held = feedback.seen._lock if lock == "replay guard" else feedback._lock
    holder = _Holder(held).inside()

    def child() -> None:
        assert router.record_token(tokens[1], "click", 1)
        assert not router.record_token(tokens[1], "click", 1)  # a replay: counted once

    in_child(child, timeout=5)
    holder.join()
    assert router.record_token(tokens[2], "click", 1)
    e.close()
