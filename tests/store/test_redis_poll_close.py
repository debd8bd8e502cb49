"""The Redis store's inbox of forwarded values: one poll at a time, and taken at close.

- ``poll()`` could run twice at once (the flusher's and one a caller forces, as the tests'
  ``settle`` does while the flusher runs every 0.05 s). The second found the inbox empty
  while the first still held the values it had popped and returned at once, so "poll
  returned" did not mean "what was in the inbox is applied", and a flush right after it could
  miss them. Now a forced poll waits (the flusher's ``polling`` lock). The third test fails
  on the old code.
- At close the flusher thread's last round flushes and polls, so values forwarded to a
  worker before it shuts down are applied and written: a request-level click (recorded in
  full by the owner only) and a bandit reward (the shared training counters). The first two
  tests pin that; they passed before this change too.

Cells covered: Redis store; 2 workers (in process, one redis-server); A/B and bandit; 3
variants; user and request level; fresh; a forced poll racing the background one; a child
forked during a poll.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

from modelrouter import Experiment
from modelrouter.analysis import Analysis
from modelrouter.routing.tokens import Signer
from modelrouter.web.feedback import TokenFeedback
from tests.forking import in_child
from tests.store.conftest import RedisServer
from tests.store.test_redis_reply_lost import SECRET, training, worker

redis = pytest.importorskip("redis")


def _clicks(e: Experiment) -> float:
    snap = Analysis.from_experiment(e).snapshot
    return float(sum(m["click"].n * m["click"].mean_x for _n, m in snap.groups.values()))


def test_a_request_level_click_forwarded_before_close_is_recorded_by_close(
        redis_server: RedisServer) -> None:
    """A/B, 3 variants, request level: A closes (a shutdown) after B forwarded the click to
    A's inbox and before A's flusher polled (it flushes every hour here)."""
    a, b = (worker(redis_server.url, level="request") for _ in range(2))
    d = a.assign(None)
    a.flush()
    token = Signer(SECRET, "cut").sign_decision(d).decode()
    assert TokenFeedback(b, SECRET).submit(token, "click", 1)
    b.flush()  # the value is in A's inbox now
    a.close()
    assert _clicks(b) == 1.0
    assert a.store.stats()["forwarded_in"] == 1
    b.close()


def test_a_bandit_reward_forwarded_before_close_reaches_the_training_counters(
        redis_server: RedisServer) -> None:
    """Bandit, 3 arms, user level: the reward for A's decision, posted to B, reaches the
    shared training counters when A closes."""
    kw: dict[str, Any] = {"reward": "click", "mode": "bandit", "refresh_every": 10**9,
                          "refresh_seconds": None}
    a, b = worker(redis_server.url, **kw), worker(redis_server.url, **kw)
    d = a.assign("alice")
    a.flush()
    token = Signer(SECRET, "cut").sign_decision(d).decode()
    assert TokenFeedback(b, SECRET).submit(token, "click", 1)
    b.flush()
    a.close()
    t = training(redis_server.url)
    assert sum(v for k, v in t.items() if k.startswith("successes:")) == 1
    b.close()


class _HeldPoll:
    """Two request-level workers; B forwarded a click to A's inbox; A's background poll has
    popped it and is held before applying it until ``release`` is set."""

    def __init__(self, url: str) -> None:
        self.a, self.b = (worker(url, level="request") for _ in range(2))
        d = self.a.assign(None)
        self.a.flush()
        token = Signer(SECRET, "cut").sign_decision(d).decode()
        assert TokenFeedback(self.b, SECRET).submit(token, "click", 1)
        self.b.flush()
        control = self.a.store.control  # type: ignore[attr-defined]
        real_take = control.take_inbox
        taken, self.release = threading.Event(), threading.Event()

        def held_take(owner: str) -> list[tuple[int, int, float, bool]]:
            values = real_take(owner)
            if values:  # the background poll: popped, not applied yet
                taken.set()
                assert self.release.wait(10)
            return values

        control.take_inbox = held_take
        self.background = threading.Thread(target=self.a.store.poll)  # type: ignore[attr-defined]
        self.background.start()
        assert taken.wait(10)

    def close(self) -> None:
        self.release.set()
        self.background.join(10)
        assert not self.background.is_alive()
        for e in (self.a, self.b):
            e.close()


def test_a_forced_poll_waits_for_the_values_the_background_poll_has_taken(
        redis_server: RedisServer) -> None:
    """Request level: a poll forced while the background one holds the popped click returns
    only once the click is applied, so the flush after it writes the click. Before the fix
    the forced poll found the inbox empty and returned at once, and the flush wrote
    nothing."""
    held = _HeldPoll(redis_server.url)
    forced = threading.Thread(target=held.a.store.poll)  # type: ignore[attr-defined]
    forced.start()
    forced.join(0.2)
    assert forced.is_alive()  # waiting for the background poll's values
    held.release.set()
    forced.join(10)
    assert not forced.is_alive()
    held.a.flush()
    assert _clicks(held.b) == 1.0
    held.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_child_forked_during_a_poll_can_poll(redis_server: RedisServer) -> None:
    """A poll in the parent's background thread at the fork holds the parent's ``polling``
    lock; the child (where that thread does not exist) gets a fresh one (gunicorn
    --preload forks after the app is built) instead of waiting for ever."""
    held = _HeldPoll(redis_server.url)

    def child() -> None:  # poll must not wait for a thread the child does not have
        done = threading.Event()
        threading.Thread(target=lambda: (held.a.store.poll(),  # type: ignore[attr-defined]
                                         done.set()), daemon=True).start()
        assert done.wait(5)

    try:
        in_child(child)
    finally:
        held.close()
