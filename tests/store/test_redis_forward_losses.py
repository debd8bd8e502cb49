"""Values forwarded to the worker that made their decision and not applied there are in every
worker's analysis, not only in that worker's ``/stats``.

A feedback value posted to another worker is recorded there for the unit and forwarded to the
worker that made the decision (its pending ring is there). At request level the whole value
is forwarded; if the decision has left that ring by then (``max_pending`` newer decisions, a
restart), the value is lost. Entries another Redis client wrote into an inbox are refused,
never applied. Both were counted only in the owner's ``stats()`` (``forwarded_lost``,
``forwarded_refused``); they are now flushed into the shared counters, so ``Snapshot.losses``
and the analysis notes of every worker show them.

Cells: Redis store; two workers; A/B and bandit (3 arms) at request level (evicted decisions),
bandit at user level (hostile inbox entries); counted once across repeated flushes.
"""

from __future__ import annotations

from typing import Any

import pytest

from modelrouter.analysis import Analysis
from modelrouter.routing.tokens import Signer
from modelrouter.store.protocol import loss_notes
from modelrouter.web.feedback import TokenFeedback
from tests.store.conftest import RedisServer
from tests.store.test_redis_inbox_refused import HOSTILE
from tests.store.test_redis_reply_lost import SECRET, P, settle, worker

redis = pytest.importorskip("redis")

BANDIT = {"reward": "click", "mode": "bandit", "refresh_every": 10**9, "refresh_seconds": None}


@pytest.mark.parametrize("mode", ["ab", "bandit"])
def test_values_forwarded_for_evicted_decisions_are_in_every_workers_losses(
        redis_server: RedisServer, mode: str) -> None:
    """Request level (the whole value is forwarded): A makes 3 decisions, then 100 more with
    a ring of 64; the 3 clicks, posted to B, reach A after their decisions left its ring.
    (At user level the unit's value is recorded where the click arrives; a decision-level part
    that arrives after its decision left the ring is past the attribution, as in one process:
    store/decisions.py, ``missing_reward``.)"""
    kw: dict[str, Any] = {**(BANDIT if mode == "bandit" else {}), "level": "request",
                          "max_pending": 64}
    a, b = worker(redis_server.url, **kw), worker(redis_server.url, **kw)
    early = [a.assign(None) for _ in range(3)]
    for _ in range(100):
        a.assign(None)
    signer, fb = Signer(SECRET, "cut"), TokenFeedback(b, SECRET)
    for d in early:
        assert fb.submit(signer.sign_decision(d).decode(), "click", 1)
    settle([a, b])
    settle([a, b])  # flushed again: counted once
    assert a.store.stats()["forwarded_lost"] == 3
    for e in (a, b):
        losses = Analysis.from_experiment(e).snapshot.losses
        assert losses["forwarded_lost"] == 3 and "forwarded_refused" not in losses
        assert any(n.startswith("3 feedback values forwarded") for n in loss_notes(losses))
    for e in (a, b):
        e.close()


def test_hostile_inbox_entries_are_in_every_workers_losses(redis_server: RedisServer) -> None:
    a, b = worker(redis_server.url, **BANDIT), worker(redis_server.url, **BANDIT)
    a.store.poll()  # type: ignore[attr-defined]  # registers the hash
    r = redis_server.client()
    r.hset(P + "fwd:" + a._prefix, mapping={f"x{i}": v for i, v in enumerate(HOSTILE)})
    settle([a, b])
    r.delete(P + "fwd:" + a._prefix)
    r.set(P + "fwd:" + a._prefix, "a key of another type")  # deleted by the pop, counted
    settle([a, b])
    assert a.store.stats()["forwarded_refused"] == len(HOSTILE) + 1
    for e in (a, b):
        losses = Analysis.from_experiment(e).snapshot.losses
        assert losses["forwarded_refused"] == len(HOSTILE) + 1
        assert "forwarded_lost" not in losses
        assert any(f"{len(HOSTILE) + 1} entries in the workers' forwarding inboxes" in n
                   for n in loss_notes(losses))
    for e in (a, b):
        e.close()
