"""Redis SIGKILLed after it ran a command and before its reply reached the worker.

With ``appendfsync always`` Redis answers a write only after it is on disk, so a SIGKILL in
that gap leaves the write applied (and replayed from the AOF on restart) while the worker sees
a lost connection. Every write the workers make must survive this: the batch script is
idempotent (its batch id), and the pops of the forwarding inbox and the label lists must be
too: a pop whose reply was lost used to take the values out of Redis and hand them to nobody
(the click lost in the ``uvicorn --workers 3`` bandit test with Redis killed mid-load: 960
successes counted of 961 accepted, none dropped).

:class:`CuttingProxy` makes the gap deterministic: a TCP proxy in front of the real
redis-server which, once armed with a byte string, forwards the first request containing it,
waits for Redis's answer (the command ran and is on disk), SIGKILLs Redis and closes the
worker's connection without passing the answer on.

Cells covered: Redis store (AOF, fsync always); 2 and 3 workers; bandit (3 arms, user level,
token feedback forwarded to the deciding worker: unit value here, training sums there) and A/B
(request level: the whole value forwarded); shadow labels handed to the shadowing worker;
Redis killed mid-write (a pop's reply lost, a batch's reply lost) and restarted.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

from modelrouter import Experiment, RouterConfig, StoreError
from modelrouter.analysis import Analysis
from modelrouter.routing.tokens import Signer
from modelrouter.web.feedback import TokenFeedback
from tests.store.conftest import RedisServer, free_port
from tests.store.test_redis_shared import settle

redis = pytest.importorskip("redis")

SECRET = "s" * 32
P = "mr:{cut}:"


class CuttingProxy:
    """A TCP proxy to ``server`` that can cut a reply (see the module docstring)."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.port = free_port()
        self._listen = socket.create_server(("127.0.0.1", self.port))
        self._trigger: bytes | None = None
        self._forward = True
        self._lock = threading.Lock()
        self.cuts: list[bytes] = []  # the requests whose answers were cut
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def arm(self, trigger: bytes, forward: bool = True) -> None:
        """Cut the answer to the next request that contains ``trigger`` (``forward=False``:
        kill Redis before the request reaches it)."""
        with self._lock:
            self._trigger, self._forward = trigger, forward

    def close(self) -> None:
        self._stop = True
        self._listen.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._listen.accept()
            except OSError:
                return
            threading.Thread(target=self._pump, args=(client,), daemon=True).start()

    def _pump(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.server.port), timeout=5)
        except OSError:
            client.close()
            return
        cutting: bytes | None = None
        with client, upstream:
            while True:
                ready, _, _ = select.select([client, upstream], [], [], 30)
                if not ready:
                    return
                for sock in ready:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    if sock is client:
                        with self._lock:
                            if self._trigger is not None and self._trigger in data:
                                cutting, self._trigger = data, None
                                if not self._forward:  # Redis dies first: never ran it
                                    self.server.kill()
                                    self.cuts.append(cutting)
                                    return
                        upstream.sendall(data)
                    elif cutting is not None:  # Redis has run it: kill it, drop the answer
                        self.server.kill()
                        self.cuts.append(cutting)
                        return
                    else:
                        client.sendall(data)


def worker(url: str, **kw: Any) -> Experiment:
    base: dict[str, Any] = {"experiment": "cut", "metrics": {"click": "binary"}, "store": url,
                            "secret": SECRET, "flush_seconds": 3600.0}  # flushed by the test
    return Experiment({"a": 1, "b": 2, "c": 3}, RouterConfig(**{**base, **kw}))


def lost_reply(server: RedisServer, proxy: CuttingProxy, trigger: bytes,
               call: Callable[[], object], ran: bool = True, raises: bool = True) -> None:
    """Run ``call`` with the answer to its request containing ``trigger`` cut (``ran=False``:
    Redis killed before the request reached it); it raises StoreError (``raises=False``: it
    logs it, as the store's poll does); restart Redis."""
    proxy.arm(trigger, forward=ran)
    if raises:
        with pytest.raises(StoreError, match="unavailable"):
            call()
    else:
        call()
    assert len(proxy.cuts) == 1 and trigger in proxy.cuts[0]
    assert server.proc is None  # killed
    server.start()  # AOF replayed: what Redis ran before the kill is there


def training(url: str) -> dict[str, float]:
    with redis.Redis.from_url(url, decode_responses=True) as r:
        return {k: float(v) for k, v in r.hgetall(P + "training").items()}


@pytest.mark.parametrize("ran", [True, False], ids=["pop-ran", "pop-never-ran"])
def test_a_pop_of_the_inbox_whose_reply_is_lost_loses_no_forwarded_click(
        persistent_redis_server: RedisServer, cut: CuttingProxy, ran: bool) -> None:
    """Bandit, 3 workers, user level: the clicks posted to B and C for A's decisions are
    forwarded to A's inbox; A's pop is cut (Redis ran it, then died; or died before it). Every
    accepted click reaches the training counters once (before the fix, when the pop ran: none
    of them did, none counted as dropped)."""
    server = persistent_redis_server
    kw = {"reward": "click", "mode": "bandit", "refresh_every": 10**9, "refresh_seconds": None}
    a = worker(cut.url, **kw)  # A talks to Redis through the proxy
    b, c = worker(server.url, **kw), worker(server.url, **kw)
    signer = Signer(SECRET, "cut")
    decisions = [a.assign(f"u{i}") for i in range(30)]
    settle([a, b, c])
    clicks = 0
    for i, d in enumerate(decisions):
        if i % 3:  # 20 of 30 clicked, posted to B or C
            fb = TokenFeedback(b if i % 2 else c, SECRET)
            assert fb.submit(signer.sign_decision(d).decode(), "click", 1)
            clicks += 1
    for e in (b, c):
        e.flush()  # the forwards are in A's inbox now
    lost_reply(server, cut, b"inbox:" + a._prefix.encode(), a.store.poll,  # type: ignore[attr-defined]
               ran, raises=False)
    settle([a, b, c])
    t = training(server.url)
    dropped = server.client(decode_responses=True).hgetall(P + "counters")
    assert int(dropped.get("dropped_values", 0)) == 0
    assert sum(v for k, v in t.items() if k.startswith("successes:")) == clicks
    assert sum(v for k, v in t.items() if k.startswith("failures:")) == 30 - clicks
    # each value applied once: no double count from a retried pop either
    assert a.store.stats()["forwarded_in"] == clicks
    # the unit values were recorded where the clicks arrived, also once
    snap = Analysis.from_experiment(b).snapshot
    assert snap.units is not None and snap.units.y["click"].sum() == clicks
    for e in (a, b, c):
        e.close()


def test_a_pop_whose_reply_is_lost_loses_no_request_level_value(
        persistent_redis_server: RedisServer, cut: CuttingProxy) -> None:
    """A/B at request level, 2 workers: the value of A's decision posted to B is forwarded to
    A's inbox and recorded there in full; A's pop is cut. Each value is counted once."""
    server = persistent_redis_server
    a, b = worker(cut.url, level="request"), worker(server.url, level="request")
    signer = Signer(SECRET, "cut")
    fb = TokenFeedback(b, SECRET)
    decisions = [a.assign(None) for _ in range(12)]
    for d in decisions[::2]:
        assert fb.submit(signer.sign_decision(d).decode(), "click", 1)
    settle([b])
    lost_reply(server, cut, b"inbox:" + a._prefix.encode(), a.store.poll,  # type: ignore[attr-defined]
               raises=False)
    settle([a, b])
    snap = Analysis.from_experiment(b).snapshot
    clicks = sum(m["click"].n * m["click"].mean_x for _n, m in snap.groups.values())
    assert clicks == 6.0
    assert sum(n for n, _m in snap.groups.values()) == 12
    assert a.store.stats()["forwarded_in"] == 6
    for e in (a, b):
        e.close()


def test_a_pop_of_labels_whose_reply_is_lost_hands_every_label_over_once(
        persistent_redis_server: RedisServer, cut: CuttingProxy) -> None:
    """Labels for A's shadowed decisions pushed by B; A's first take is cut, the retry returns
    them all, the next take none (the receipt is not handed out twice)."""
    server = persistent_redis_server
    a, b = worker(cut.url), worker(server.url)
    owner = a._prefix
    items = [(owner, f"{owner}{i:x}", f'{{"y": {i}}}') for i in range(5)]
    b.store.push_labels(items)
    lost_reply(server, cut, b"labels:" + owner.encode(),
               lambda: a.store.take_labels(owner))
    assert a.store.take_labels(owner) == [(d, label) for _o, d, label in items]
    assert a.store.take_labels(owner) == []
    b.store.push_labels(items[:1])  # later labels still flow, and the receipts are cleaned up
    assert a.store.take_labels(owner) == [items[0][1:]]
    assert a.store.take_labels(owner) == []
    r = server.client(decode_responses=True)
    assert r.keys(P + "taken:*") == []
    for e in (a, b):
        e.close()


def test_a_batch_whose_reply_is_lost_is_applied_once(
        persistent_redis_server: RedisServer, cut: CuttingProxy) -> None:
    """The statistics batch ran, its reply was cut: the retry (same batch id) is not applied
    again (bandit, 3 arms, user level; the unit values and the training counters)."""
    server = persistent_redis_server
    kw = {"reward": "click", "mode": "bandit", "refresh_every": 10**9, "refresh_seconds": None}
    a = worker(cut.url, **kw)
    decisions = [a.assign(f"u{i}") for i in range(30)]
    for d in decisions[:10]:
        a.record(d, "click", 1)
    lost_reply(server, cut, b"batch:", a.flush)
    settle([a])
    t = training(server.url)
    assert sum(v for k, v in t.items() if k.startswith("successes:")) == 10
    r = server.client(decode_responses=True)
    assert sum(int(v) for v in r.hgetall(P + "requests").values()) == 30
    assert sum(float(v) for v in r.hgetall(P + "y:click").values()) == 10
    a.close()


@pytest.mark.parametrize("retry_at", ["same", "other"])
def test_a_claim_whose_reply_is_lost_does_not_turn_the_retry_into_a_duplicate(
        persistent_redis_server: RedisServer, cut: CuttingProxy, retry_at: str) -> None:
    """Bandit, 3 arms, 2 workers, user level: the feedback claim (SET NX) ran, its reply was
    cut, so the click was refused (StoreError: 503 over HTTP) and not recorded. The client's
    retry of the same token (to the same worker, or to another one once the first has polled)
    is recorded, once; a replay after it is a duplicate."""
    server = persistent_redis_server
    kw = {"reward": "click", "mode": "bandit", "refresh_every": 10**9, "refresh_seconds": None}
    a, b = worker(cut.url, **kw), worker(server.url, **kw)
    d = b.assign("alice")
    token = Signer(SECRET, "cut").sign_decision(d).decode()
    fa, fb = TokenFeedback(a, SECRET), TokenFeedback(b, SECRET)
    lost_reply(server, cut, b"seen:", lambda: fa.submit(token, "click", 1))
    if retry_at == "other":
        settle([a])  # A's flusher after Redis is back: it releases its doubtful claim
    first, second = (fa, fb) if retry_at == "same" else (fb, fa)
    assert first.submit(token, "click", 1) is True
    assert second.submit(token, "click", 1) is False
    assert first.submit(token, "click", 1) is False
    settle([a, b])
    t = training(server.url)
    assert sum(v for k, v in t.items() if k.startswith("successes:")) == 1
    for e in (a, b):
        e.close()


def test_a_lost_reply_of_a_full_pop_returns_all_of_it_then_the_rest(
        persistent_redis_server: RedisServer, cut: CuttingProxy) -> None:
    """10,500 labels: the first pop takes the most one pop takes (10,000, its receipt pushed in
    chunks: Lua's unpack stops near 8,000 values) and its reply is cut; the retry returns those
    10,000 in order, the next pop the other 500."""
    from modelrouter.store.redis.control import INBOX_BATCH

    server = persistent_redis_server
    a, b = worker(cut.url), worker(server.url)
    owner = a._prefix
    items = [(owner, f"{owner}{i:x}", str(i)) for i in range(INBOX_BATCH + 500)]
    b.store.push_labels(items)
    lost_reply(server, cut, b"labels:" + owner.encode(), lambda: a.store.take_labels(owner))
    assert a.store.take_labels(owner) == [(d, y) for _o, d, y in items[:INBOX_BATCH]]
    assert a.store.take_labels(owner) == [(d, y) for _o, d, y in items[INBOX_BATCH:]]
    assert a.store.take_labels(owner) == []
    for e in (a, b):
        e.close()


def test_pops_from_racing_threads_hand_each_label_over_once(
        redis_server: RedisServer) -> None:
    """4 threads take the labels of one worker while another pushes 2,000 in 40 batches: each
    label is taken exactly once (one pop id is never shared by two calls) and no receipt is
    left once the pops are answered."""
    a, b = worker(redis_server.url), worker(redis_server.url)
    owner = a._prefix
    items = [(owner, f"{owner}{i:x}", str(i)) for i in range(2000)]
    taken: list[tuple[str, str]] = []
    lock = threading.Lock()
    done = threading.Event()

    def take() -> None:
        while True:
            finished = done.is_set()
            got = a.store.take_labels(owner)
            with lock:
                taken.extend(got)
            if finished and not got:
                return

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for k in range(0, len(items), 50):
        b.store.push_labels(items[k:k + 50])
    done.set()
    for t in threads:
        t.join(timeout=60)
    assert sorted(taken) == sorted((d, y) for _o, d, y in items)
    a.store.take_labels(owner)  # deletes the receipts of the answered pops
    r = redis_server.client(decode_responses=True)
    assert r.keys(P + "taken:*") == []
    for e in (a, b):
        e.close()


def test_a_doubtful_claim_overwritten_by_another_client_does_not_block_later_claims(
        persistent_redis_server: RedisServer, cut: CuttingProxy) -> None:
    """The claim's reply is cut, then another client turns its key into a hash: the release
    leaves that key alone, and A's later claims (other tokens) are recorded."""
    server = persistent_redis_server
    a, b = worker(cut.url), worker(server.url)
    signer = Signer(SECRET, "cut")
    d1, d2 = b.assign("alice"), b.assign("bob")
    fa = TokenFeedback(a, SECRET)
    lost_reply(server, cut, b"seen:", lambda: fa.submit(signer.sign_decision(d1).decode(),
                                                         "click", 1))
    r = server.client(decode_responses=True)
    (seen,) = r.keys(P + "seen:*")
    r.delete(seen)
    r.hset(seen, "x", "1")
    assert fa.submit(signer.sign_decision(d2).decode(), "click", 1) is True
    settle([a, b])
    assert r.type(seen) == "hash"
    snap = Analysis.from_experiment(b).snapshot
    assert snap.units is not None and snap.units.y["click"].sum() == 1.0
    for e in (a, b):
        e.close()


def test_a_routing_change_whose_reply_is_lost_is_adopted_once_and_a_retry_changes_nothing(
        persistent_redis_server: RedisServer, cut: CuttingProxy) -> None:
    """3 arms, 2 workers, A/B: A's pause of arm c (the compare-and-set script) ran, its reply
    was cut: A refuses with StoreError and keeps its allocation, yet the change is in force in
    Redis; both workers adopt it at their next sync, and the admin's retry of the pause is a
    no-op (no second epoch). Known: the caller was told the change failed."""
    server = persistent_redis_server
    a, b = worker(cut.url), worker(server.url)
    a.configure(weights={"a": 0.2, "b": 0.3, "c": 0.5})
    b.state.sync()
    lost_reply(server, cut, b"EVALSHA", lambda: a.pause_arm("c"))
    assert a.state.allocation.epoch == 1 and a.state.allocation.weights["c"] == 0.5
    for w in (a, b):
        w.state.sync()
        assert w.state.allocation.epoch == 2
        assert dict(w.state.allocation.weights) == pytest.approx({"a": 0.4, "b": 0.6, "c": 0.0})
    a.pause_arm("c")
    assert a.state.allocation.epoch == 2
    r = server.client(decode_responses=True)
    assert max(int(e) for e in r.hgetall(P + "epochs")) == 2  # epoch 0 comes with a flush
    for e in (a, b):
        e.close()
