"""Set-if-absent writes torn in the AOF keep, after every restart, the value the workers saw.

A unit's first exposure (and a covariate, an epoch's description, a look) is written once: the
first worker to flush it wins. Redis logs a script's writes as the commands it ran, so a
script that called ``HSETNX`` left an ``HSETNX`` in the AOF, which decides again when the file
is loaded. Torn by a kill (batch.py), a worker's batch is not loaded at the restart, another
worker then writes the same unit's first exposure live, and the first worker's retry finds it
there. But the next load runs the torn batch's orphan part with the transaction after it, so
its ``HSETNX`` came first and won: after that restart the unit's first exposure (its variant,
epoch, propensity, time) was the torn batch's, not the one every worker had seen. The same
held for an epoch's entry in the routing state's compare-and-set. Both scripts now test and
``HSET``: the later transaction's own ``HSET`` overwrites the orphan's again.

Cells: Redis store (AOF, fsync always; a proxy that cuts a reply; the AOF cut by hand); two
workers on one Redis; A/B and bandit (3 arms), user level; restored after a crash with a torn
AOF, then after a clean restart; a routing change (``configure``) torn the same way.
"""

from __future__ import annotations

import pytest

from modelrouter import StoreError
from tests.store.conftest import RedisServer
from tests.store.test_redis_reply_lost import CuttingProxy, P, worker
from tests.store.test_redis_torn_aof import tear_last_block

redis = pytest.importorskip("redis")

BANDIT = {"reward": "click", "mode": "bandit", "refresh_every": 10**9, "refresh_seconds": None}


def first_of(server: RedisServer, unit: str) -> str | None:
    r = server.client(decode_responses=True)
    value: str | None = r.hget(P + "first", unit)
    return value


@pytest.mark.parametrize("mode", ["ab", "bandit"])
def test_a_first_exposure_torn_in_the_aof_does_not_win_at_a_later_restart(
        persistent_redis_server: RedisServer, cut: CuttingProxy, mode: str) -> None:
    server = persistent_redis_server
    kw = BANDIT if mode == "bandit" else {}
    a, b = worker(cut.url, **kw), worker(server.url, **kw)
    a.route("bob")
    a.flush()  # (the batch script loaded: the cut request is the batch itself)
    a.route("alice")
    cut.arm(b"batch:")
    with pytest.raises(StoreError, match="unavailable"):
        a.flush()  # Redis wrote alice's first exposure and died before the reply
    tear_last_block(server, (P.encode() + b"first", b"alice"))  # just after alice's first
    server.start()  # the torn batch is not loaded
    assert first_of(server, "alice") is None
    b.route("alice")  # alice's first exposure, live, is B's
    b.flush()
    live = first_of(server, "alice")
    assert live is not None
    a.flush()  # A's retry: alice is there, so A's is not written
    assert first_of(server, "alice") == live
    server.stop()
    server.start()  # the orphan part is loaded with B's transaction
    assert first_of(server, "alice") == live
    r = server.client(decode_responses=True)
    assert sum(int(v) for v in r.hgetall(P + "exposures").values()) == 3
    for e in (a, b):
        e.close()


def test_a_routing_change_torn_in_the_aof_does_not_win_the_epochs_entry_later(
        persistent_redis_server: RedisServer, cut: CuttingProxy) -> None:
    """A's change to epoch 2 ran and Redis died before the reply, its block torn in the EXEC:
    not loaded at the restart. B's change becomes epoch 2, live. At the next load, A's orphan
    writes run with B's transaction: the control record and the epochs entry stay B's."""
    server = persistent_redis_server
    a, b = worker(cut.url), worker(server.url)
    a.configure(weights={"a": 0.4, "b": 0.3, "c": 0.3})  # epoch 1 (the script loaded)
    b.state.sync()
    cut.arm(b"propensities")  # the change itself (its record), not the reads before it
    with pytest.raises(StoreError, match="may or may not be in force"):
        a.configure(weights={"a": 0.8, "b": 0.1, "c": 0.1})
    tear_last_block(server, (P.encode() + b"epochs",))  # in the EXEC after it
    server.start()
    b.configure(weights={"a": 0.1, "b": 0.1, "c": 0.8})
    r = server.client(decode_responses=True)
    live = r.hget(P + "epochs", "2"), r.hget(P + "control", "record")
    assert live[0] is not None and "0.8" in live[0]
    server.stop()
    server.start()
    r = server.client(decode_responses=True)
    assert (r.hget(P + "epochs", "2"), r.hget(P + "control", "record")) == live
    a.state.sync()  # A adopts B's change
    assert dict(a.state.allocation.weights) == {"a": 0.1, "b": 0.1, "c": 0.8}
    for e in (a, b):
        e.close()
