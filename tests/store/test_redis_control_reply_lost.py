"""A routing change whose reply from Redis is lost (Redis SIGKILLed around the compare-and-set).

Before: ``configure`` raised StoreError although, when Redis had run the script, the change
was in force (every worker adopted it at its next sync), so a caller told "failed" retried and
made a second epoch, or gave up on a change that was live. Now the publish retries the same
change while Redis cannot answer (store/redis/control.py), and the script reports a change
whose epoch entry is already there as installed. If Redis stays away longer than the retry,
the error says the outcome is unknown and the next sync settles it.

Cells: Redis store (AOF, fsync always), 2 workers (one through the cutting proxy), A/B and
bandit (pause of an arm), 3 variants, control-plane change, Redis killed mid-write (before or
after it ran the change) and restarted.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from modelrouter import StoreError
from modelrouter.store.redis import control
from tests.store.conftest import RedisServer
from tests.store.test_redis_reply_lost import CuttingProxy, P, worker
from tests.store.test_redis_shared import settle

redis = pytest.importorskip("redis")
CAS = b'"held"'  # only the compare-and-set's record carries this key
HALF = {"a": 0.5, "b": 0.25, "c": 0.25}
NEW = {"a": 0.2, "b": 0.3, "c": 0.5}


def restart_after_cut(server: RedisServer, proxy: CuttingProxy, delay: float
                      ) -> threading.Thread:
    """Restart Redis ``delay`` seconds after the proxy cut a reply (AOF replayed)."""
    def run() -> None:
        deadline = time.monotonic() + 20
        while not proxy.cuts and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        server.start()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def epochs(url: str) -> dict[str, str]:
    with redis.Redis.from_url(url, decode_responses=True) as r:
        return r.hgetall(P + "epochs")


def loaded(*exps: Any) -> None:
    """A first change through each worker, not cut: Redis has the script cached then, so the
    cut request is the script itself run (EVALSHA), not one Redis answers NOSCRIPT to."""
    for e in exps:
        e.configure(weights=HALF)
    settle(list(exps))


@pytest.mark.parametrize("ran", [True, False], ids=["change-ran", "change-never-ran"])
def test_a_change_whose_reply_is_lost_is_reported_in_force_once_redis_is_back(
        persistent_redis_server: RedisServer, cut: CuttingProxy, ran: bool) -> None:
    """A/B, 3 variants: the weight change's reply is cut (Redis ran it and died, or died
    first); Redis is back 0.3 s later. ``configure`` returns the new allocation (not an error),
    exactly one epoch was added, and the other worker adopts the same one."""
    server = persistent_redis_server
    a, b = worker(cut.url), worker(server.url)
    loaded(a)
    start = a.allocation.epoch
    before = set(epochs(server.url))
    cut.arm(CAS, forward=ran)
    restarter = restart_after_cut(server, cut, 0.3)
    alloc = a.configure(weights=NEW)
    restarter.join()
    assert len(cut.cuts) == 1 and CAS in cut.cuts[0] and b"EVALSHA" in cut.cuts[0].upper()
    assert alloc.propensities == (0.2, 0.3, 0.5)
    assert a.allocation.epoch == alloc.epoch == start + 1
    added = set(epochs(server.url)) - before
    assert added == {str(start + 1)}  # one change, one epoch: the retry made no second one
    settle([a, b])
    assert b.allocation.epoch == start + 1 and b.allocation.propensities == (0.2, 0.3, 0.5)
    assert a.allocation.epoch == start + 1
    for e in (a, b):
        e.close()


def test_a_bandit_pause_whose_reply_is_lost_is_in_force_once(
        persistent_redis_server: RedisServer, cut: CuttingProxy) -> None:
    """Bandit, 3 arms: pausing an arm, the reply cut after Redis ran it; the pause is reported
    and in force in both workers, in one epoch, and the arm gets no traffic."""
    server = persistent_redis_server
    kw: dict[str, Any] = {"reward": "click", "mode": "bandit", "refresh_every": 10**9,
                          "refresh_seconds": None}
    a, b = worker(cut.url, **kw), worker(server.url, **kw)
    settle([a, b])
    a.pause_arm("c")
    a.resume_arm("c")  # Redis has the script cached (see loaded)
    settle([a, b])
    start = a.allocation.epoch
    cut.arm(CAS)
    restarter = restart_after_cut(server, cut, 0.3)
    alloc = a.pause_arm("b")
    restarter.join()
    assert alloc.propensities[1] == 0.0 and alloc.epoch == start + 1
    settle([a, b])
    assert b.allocation.epoch == start + 1 and b.allocation.propensities[1] == 0.0
    assert {b.assign(f"u{i}").variant for i in range(200)} <= {"a", "c"}
    for e in (a, b):
        e.close()


def test_redis_away_past_the_retry_says_the_outcome_is_unknown_then_sync_settles_it(
        persistent_redis_server: RedisServer, cut: CuttingProxy,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis ran the change and stays away longer than the retry: StoreError saying the
    change may be in force, this worker unchanged meanwhile; once Redis is back, the next
    sync adopts the change (it was in force), in one epoch."""
    monkeypatch.setattr(control, "PUBLISH_RETRY_SECONDS", 0.3)
    server = persistent_redis_server
    a = worker(cut.url)
    loaded(a)
    start = a.allocation.epoch
    cut.arm(CAS)
    with pytest.raises(StoreError, match="may or may not be in force"):
        a.configure(weights=NEW)
    assert a.allocation.epoch == start and a.allocation.propensities == (0.5, 0.25, 0.25)
    server.start()
    settle([a])
    assert a.allocation.epoch == start + 1 and a.allocation.propensities == (0.2, 0.3, 0.5)
    assert max(int(k) for k in epochs(server.url)) == start + 1
    a.close()


def test_an_error_reply_is_not_retried(persistent_redis_server: RedisServer,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis answering with an error (here: the control key of the wrong type) is refused at
    once, not retried for seconds: only 'no answer' is retried."""
    server = persistent_redis_server
    a = worker(server.url)
    r = server.client()
    r.delete(P + "control")
    r.set(P + "control", "not a hash")
    t0 = time.monotonic()
    with pytest.raises(StoreError, match="refused"):
        a.configure(weights={"a": 0.2, "b": 0.3, "c": 0.5})
    assert time.monotonic() - t0 < 1.0
    r.delete(P + "control")
    a.close()
