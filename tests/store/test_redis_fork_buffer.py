"""A worker forked from a process that has routed and recorded without flushing yet.

gunicorn ``--preload`` builds the app once and forks its workers; ``multiprocessing`` with the
fork method does the same at any time. What the parent buffered before the fork (exposures,
values, the bandit's training deltas, values for other workers' decisions) is the parent's
to flush. Before: the child's copy of the buffer was flushed too, with the child's own batch
ids, so each request routed before the fork was counted once per process (one request, a
parent and one child: 2 in Redis).

Cells covered: Redis store; a parent and forked children, and a second worker they forward
to; A/B and bandit; 2 and 3 variants; user and request level; fresh; valid input.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from modelrouter import Experiment, RouterConfig
from modelrouter.analysis import Analysis
from modelrouter.routing.tokens import Signer
from modelrouter.web.feedback import TokenFeedback
from tests.forking import in_child
from tests.store.conftest import RedisServer

redis = pytest.importorskip("redis")

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform"),
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


def _experiment(url: str, variants: dict[str, Any], **kw: Any) -> Experiment:
    base: dict[str, Any] = {"experiment": "fork", "metrics": {"click": "binary"}, "store": url,
                            "flush_seconds": 3600.0}  # flushed by the test
    return Experiment(variants, RouterConfig(**{**base, **kw}))


def _hash(url: str, name: str) -> dict[str, float]:
    with redis.Redis.from_url(url, decode_responses=True) as r:
        return {k: float(v) for k, v in r.hgetall("mr:{fork}:" + name).items()}


@pytest.mark.parametrize("level", ["user", "request"])
def test_what_the_parent_buffered_is_flushed_once(redis_server: RedisServer,
                                                   level: str) -> None:
    """A/B, 2 variants: 5 requests and 3 clicks buffered in the parent at the fork; two
    children each route and click once and flush; the parent flushes: 7 requests and 5
    clicks in Redis, not 5 per process."""
    e = _experiment(redis_server.url, {"a": 1, "b": 2}, level=level)
    decisions = [e.assign(f"p{i}" if level == "user" else None) for i in range(5)]
    for d in decisions[:3]:
        e.record(d.decision_id, "click", 1)

    def child() -> None:
        d = e.assign("c" + os.urandom(4).hex() if level == "user" else None)
        e.record(d.decision_id, "click", 1)
        e.flush()
        assert e.store.stats()["buffered"] == 0

    in_child(child)
    in_child(child)
    e.flush()
    assert sum(_hash(redis_server.url, "requests").values()) == 7
    snap = Analysis.from_experiment(e).snapshot
    if level == "user":
        assert snap.units is not None and snap.units.y["click"].sum() == 5.0
    else:
        assert sum(m["click"].n * m["click"].mean_x for _n, m in snap.groups.values()) == 5.0
    e.close()


def test_the_bandits_training_deltas_are_flushed_once(redis_server: RedisServer) -> None:
    """Bandit, 3 arms, user level: 4 rewards trained in the parent before the fork; a child
    flushes (nothing of its own); the parent flushes: 4 successes in the shared counters."""
    e = _experiment(redis_server.url, {"a": 1, "b": 2, "c": 3}, reward="click",
                    mode="bandit", refresh_every=10**9, refresh_seconds=None)
    for i in range(4):
        d = e.assign(f"u{i}")
        e.record(d.decision_id, "click", 1)
    in_child(e.flush)
    e.flush()
    t = _hash(redis_server.url, "training")
    assert sum(v for k, v in t.items() if k.startswith("successes:")) == 4, t
    e.close()


def test_a_value_forwarded_before_the_fork_reaches_its_owner_once(
        redis_server: RedisServer) -> None:
    """Request level, 2 variants: worker P takes a click for worker O's decision (forwarded:
    queued in P's buffer) and forks before flushing. The child flushes, P flushes, O takes
    its inbox: one click forwarded and recorded, not one per process."""
    secret = "s" * 32
    owner, sender = (_experiment(redis_server.url, {"a": 1, "b": 2}, level="request",
                                 secret=secret) for _ in range(2))
    d = owner.assign(None)
    token = Signer(secret, "fork").sign_decision(d).decode()
    assert TokenFeedback(sender, secret).submit(token, "click", 1)
    in_child(sender.flush)
    sender.flush()
    owner.store.poll()  # type: ignore[attr-defined]
    owner.flush()
    assert owner.store.stats()["forwarded_in"] == 1
    snap = Analysis.from_experiment(owner).snapshot
    assert sum(m["click"].n * m["click"].mean_x for _n, m in snap.groups.values()) == 1.0
    for e in (owner, sender):
        e.close()
