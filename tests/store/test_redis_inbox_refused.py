"""Entries of a worker's inbox or label list that no worker writes (another client, a bug):
skipped and counted, never applied, never stopping the worker's flusher.

Before: ``[seq, metric, 1e300, true]`` in an inbox raised out of the poll and ended the
flusher thread (no flush of that worker ever again); a metric index the experiment lacks was
half applied to the buffer, then failed the drain after the buffer swap (the whole buffer
lost); malformed entries were skipped without a count.

Cells covered: Redis store; 2 workers; bandit (3 arms, user level, token feedback forwarded);
hostile values (1e300, NaN, negative and fractional numbers, unknown metric, wrong types,
invalid UTF-8, JSON nested past the recursion limit); the flusher thread running.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from modelrouter.routing.tokens import Signer
from modelrouter.web.feedback import TokenFeedback
from tests.store.conftest import RedisServer
from tests.store.test_redis_reply_lost import SECRET, P, settle, training, worker

redis = pytest.importorskip("redis")

HOSTILE: list[str | bytes] = [
    "[0, 0, 1e300, true]", "[0, 0, NaN, true]", "[0, 0, Infinity, false]", "[0, 99, 1, true]",
    "[-1, 0, 1, true]", "[0.5, 0, 1, true]", '["0", 0, 1, true]', "[0, 0, 1]",
    '[0, 0, 1, "yes"]', '[0, 0, "1", true]', '{"seq": 0}', "not json", b"\xff\xfe",
    "[" * 100_000, "null",
]


def bandit(url: str, **kw: Any) -> Any:
    return worker(url, reward="click", mode="bandit", refresh_every=10**9,
                  refresh_seconds=None, **kw)


@pytest.mark.parametrize("where", ["list", "hash"])
def test_hostile_inbox_entries_are_counted_and_the_real_click_is_counted(
        redis_server: RedisServer, where: str) -> None:
    """In the inbox hash (registered at the owner's first poll) or the list older versions
    push to."""
    a, b = bandit(redis_server.url), bandit(redis_server.url)
    d = a.assign("alice")
    r = redis_server.client()
    if where == "list":
        r.rpush(P + "inbox:" + a._prefix, *HOSTILE)
    else:
        a.store.poll()  # registers the hash
        r.hset(P + "fwd:" + a._prefix, mapping={f"x{i}": v for i, v in enumerate(HOSTILE)})
    assert TokenFeedback(b, SECRET).submit(Signer(SECRET, "cut").sign_decision(d).decode(),
                                           "click", 1)
    settle([a, b])
    stats = a.store.stats()
    assert stats["forwarded_refused"] == len(HOSTILE)
    assert stats["forwarded_in"] == 1
    t = training(redis_server.url)
    assert sum(v for k, v in t.items() if k.startswith("successes:")) == 1
    assert sum(v for k, v in t.items() if k.startswith("failures:")) == 0
    assert sum(int(v) for v in r.hgetall(P + "requests").values()) == 1
    for e in (a, b):
        e.close()


def test_hostile_label_entries_are_counted_and_the_real_label_is_handed_over(
        redis_server: RedisServer) -> None:
    a, b = worker(redis_server.url), worker(redis_server.url)
    owner = a._prefix
    r = redis_server.client()
    r.rpush(P + "labels:" + owner, "[1, 2]", '"x"', "not json", b"\xff", "[" * 100_000)
    b.store.push_labels([(owner, owner + "0", "1")])
    assert a.store.take_labels(owner) == [(owner + "0", "1")]
    assert a.store.stats()["labels_refused"] == 5
    for e in (a, b):
        e.close()


def test_the_flusher_survives_an_unexpected_exception_and_keeps_flushing(
        redis_server: RedisServer) -> None:
    """A bug in the poll (here: a watcher-free poll that raises) is logged and retried; the
    flusher thread stays alive and the next flushes still write."""
    a = bandit(redis_server.url, flush_seconds=0.02)
    calls = {"n": 0}
    real_poll = a.store.poll

    def broken_poll() -> None:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RuntimeError("a bug in the poll")
        real_poll()

    a.store._flusher._after = broken_poll
    a.assign("u0")
    r = redis_server.client(decode_responses=True)
    deadline = time.monotonic() + 10
    while calls["n"] < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    a.assign("u1")
    while time.monotonic() < deadline and sum(
            int(v) for v in r.hgetall(P + "requests").values()) < 2:
        time.sleep(0.02)
    assert a.store._flusher.thread is not None and a.store._flusher.thread.is_alive()
    assert calls["n"] >= 3 and a.store.stats()["failed_flushes"] >= 2
    assert sum(int(v) for v in r.hgetall(P + "requests").values()) == 2
    a.close()


def test_an_inbox_key_of_another_type_does_not_stop_the_routing_sync(
        redis_server: RedisServer) -> None:
    """Another client made A's inbox a string: A's poll logs that it cannot read it and still
    runs the routing watchers (B's pause reaches A); once the key is a list again, the values
    flow."""
    a, b = bandit(redis_server.url), bandit(redis_server.url)
    d = a.assign("alice")
    r = redis_server.client()
    inbox = P + "inbox:" + a._prefix
    r.set(inbox, "not a list")
    b.pause_arm("c")
    a.store.poll()
    assert a.state.allocation.weights["c"] == 0.0
    assert TokenFeedback(b, SECRET).submit(Signer(SECRET, "cut").sign_decision(d).decode(),
                                           "click", 1)
    r.delete(inbox)
    settle([a, b])
    assert a.store.stats()["forwarded_in"] == 1
    t = training(redis_server.url)
    assert sum(v for k, v in t.items() if k.startswith("successes:")) == 1
    for e in (a, b):
        e.close()


def test_a_receipt_overwritten_by_another_client_does_not_block_the_pops(
        redis_server: RedisServer) -> None:
    """A pop's reply was lost (simulated: its id kept for the retry) and another client turned
    its receipt into a string: the retry deletes it and pops afresh."""
    a, b = worker(redis_server.url), worker(redis_server.url)
    owner = a._prefix
    control = a.store.control
    control._unanswered["labels:" + owner] = ["feedc0de"]
    r = redis_server.client()
    r.set(P + "taken:labels:" + owner + ":feedc0de", "hostile")
    b.store.push_labels([(owner, owner + "0", "1")])
    assert a.store.take_labels(owner) == [(owner + "0", "1")]
    assert a.store.take_labels(owner) == []
    assert r.keys(P + "taken:*") == []
    for e in (a, b):
        e.close()
