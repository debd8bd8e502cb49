"""RedisStore against a real redis-server: merged totals, agreement with the memory store,
idempotent batches, outages with a bounded buffer, foreign configurations."""

from __future__ import annotations

import functools
import json
import math
import os
from typing import Any

import pytest

from modelrouter import Experiment, RouterConfig, StoreError
from modelrouter.analysis import Analysis
from modelrouter.store.memory import MemoryStore
from modelrouter.store.protocol import RemoteStore, Store, loss_notes, reward_counters
from modelrouter.store.redis.store import RedisStore
from tests.store.conftest import RedisServer

pytest.importorskip("redis")

VARIANTS = {"a": 1, "b": 2}


def config(url: str = "memory", **kw: Any) -> RouterConfig:
    return RouterConfig(experiment="exp7", metrics={"click": "binary", "revenue": "continuous"},
                        store=url, **kw)


def drive(experiments: list[Experiment], n_units: int = 400, seed: int = 7) -> dict[str, float]:
    """Route units through the experiments in turn and record integer feedback; return totals."""
    sent = {"requests": 0, "click": 0.0, "revenue": 0.0, "revenue_values": 0}
    for i in range(n_units * 3):
        unit = f"u{(i * 7919 + seed) % n_units}"
        exp = experiments[i % len(experiments)]
        d = exp.assign(unit)
        sent["requests"] += 1
        exp.store.record_auto(int(d.decision_id.split("-")[1], 16), 5.0, 0.0)
        if i % 3 == 0:
            exp.record(d, "click", 1 if (i // 3) % 4 == 0 else 0)
            sent["click"] += 1 if (i // 3) % 4 == 0 else 0
        if i % 5 == 0:  # feedback by unit id, possibly to the other worker
            other = experiments[(i + 1) % len(experiments)]
            other.record_unit(unit, "revenue", i % 11)
            sent["revenue"] += i % 11
            sent["revenue_values"] += 1
    return sent


def canonical(analysis: Analysis) -> str:
    return json.dumps(analysis.to_dict(), sort_keys=True, default=str)


def test_protocol_is_implemented_by_both_stores(redis_server: RedisServer) -> None:
    memory = Experiment(VARIANTS, config())
    remote = Experiment(VARIANTS, config(redis_server.url))
    assert isinstance(memory.store, MemoryStore) and isinstance(memory.store, Store)
    assert isinstance(remote.store, RemoteStore) and not isinstance(memory.store, RemoteStore)
    remote.close()


def test_two_routers_same_redis_see_same_statistics(redis_server: RedisServer) -> None:
    one = Experiment(VARIANTS, config(redis_server.url))
    two = Experiment(VARIANTS, config(redis_server.url))
    reference = Experiment(VARIANTS, config())  # in-memory reference fed the same events
    sent = drive([one, two])
    drive([reference])
    one.flush()
    two.flush()
    # the raw totals in Redis are exactly what was sent
    r = redis_server.client(decode_responses=True)
    p = "mr:{exp7}:"
    assert sum(int(v) for v in r.hgetall(p + "requests").values()) == sent["requests"]
    assert sum(int(v) for v in r.hgetall(p + "exposures").values()) == sent["requests"]
    assert sum(float(v) for v in r.hgetall(p + "x:revenue").values()) == sent["revenue"]
    assert sum(float(v) for v in r.hgetall(p + "y:revenue").values()) == sent["revenue_values"]
    assert sum(float(v) for v in r.hgetall(p + "x:click").values()) == sent["click"]
    # both workers read the same merged state, and it matches the in-memory reference
    a1, a2 = Analysis.from_experiment(one), Analysis.from_experiment(two)
    assert canonical(a1) == canonical(a2)
    ref = Analysis.from_experiment(reference)
    assert a1.snapshot.n_units == ref.snapshot.n_units == 400
    assert a1.snapshot.requests.tolist() == ref.snapshot.requests.tolist()
    # every output says whose traffic it covers
    assert a1.to_dict()["data_source"] == "every worker and host (Redis store)"
    assert "data of every worker and host (Redis store)" in a1.report()
    assert ref.to_dict()["data_source"] == f"one process (pid {os.getpid()}, memory store)"
    for metric in ("click", "revenue", "latency_ms", "error"):
        for s, t in zip(a1.summary(metric), ref.summary(metric)):
            assert (s.units, s.events) == (t.units, t.events)
            assert s.mean == pytest.approx(t.mean, rel=1e-12, nan_ok=True)
            assert s.std_err == pytest.approx(t.std_err, rel=1e-9, nan_ok=True)
        c1, cr = a1.compare(metric), ref.compare(metric)
        assert c1.pvalue == pytest.approx(cr.pvalue, rel=1e-9, nan_ok=True)
    assert a1.snapshot.losses == {"dropped_exposures": 0, "dropped_values": 0,
                                  "orphan_values": 0, "refused_batches": 0,
                                  "refused_requests": 0, "refused_exposures": 0,
                                  "refused_values": 0}
    # bandit counters are additive and global
    rc = reward_counters(a1.snapshot, "click")
    rr = reward_counters(ref.snapshot, "click")
    assert rc["n"].tolist() == rr["n"].tolist() and rc["sum"].tolist() == rr["sum"].tolist()
    ev = one.store.event_counters("click")
    assert ev["n"].sum() == sent["requests"] // 3 and ev["sum"].sum() == sent["click"]
    one.close()
    two.close()


def test_request_level_groups_merge(redis_server: RedisServer) -> None:
    cfg = dict(level="request")
    one = Experiment(VARIANTS, config(redis_server.url, **cfg))
    two = Experiment(VARIANTS, config(redis_server.url, **cfg))
    reference = Experiment(VARIANTS, config(**cfg))
    decisions: list[tuple[Experiment, Any]] = []
    for i in range(600):
        for exp in (one if i % 2 else two, reference):
            d = exp.assign(None)
            decisions.append((exp, d))
    # feedback keyed by arrival order; the variant mix differs between stores, so compare totals
    for i, (exp, d) in enumerate(decisions):
        exp.record(d, "revenue", i % 7)
        exp.record(d, "revenue", 1)
    one.flush()
    two.flush()
    snap = one.store.snapshot()
    ref = reference.store.snapshot()
    assert snap.n_units == ref.n_units == 600
    total = sum(m["revenue"].mean_x * m["revenue"].n for _n, m in snap.groups.values())
    expected = sum(i % 7 + 1 for i, (exp, _d) in enumerate(decisions) if exp is not reference)
    assert total == expected
    assert canonical(Analysis.from_experiment(one)) == canonical(Analysis.from_experiment(two))
    one.close()
    two.close()


class LosesOneReply:
    """A redis-py client whose first script call is applied by Redis, but its reply is lost."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.lost = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def evalsha(self, *args: Any) -> Any:
        import redis

        result = self.real.evalsha(*args)
        if not self.lost:
            self.lost = True
            raise redis.ConnectionError("reply lost")
        return result


def test_lost_reply_is_not_applied_twice(redis_server: RedisServer) -> None:
    client = LosesOneReply(redis_server.client())
    store = RedisStore(redis_server.url, list(VARIANTS), config().metrics, experiment="exp7",
                       client=client, flush_seconds=3600)
    revenue = store.metric_index["revenue"]
    for i in range(50):
        store.expose(f"u{i}", i % 2, 0.5, 0)
        store.record_unit(f"u{i}", revenue, 2.0)
    with pytest.raises(StoreError, match="unavailable"):
        store.flush()  # Redis applied the batch, the worker never heard: it keeps the batch
    assert client.lost and store.stats()["queued_batches"] == 1
    store.flush()  # the retry carries the same batch id: nothing is applied twice
    snap = store.snapshot()
    assert snap.n_units == 50 and snap.units is not None
    assert snap.units.x["revenue"].sum() == 100.0
    assert snap.requests.sum() == 50
    store.close()


def test_outage_keeps_serving_and_bounded_buffer_counts_drops(redis_server: RedisServer
                                                              ) -> None:
    exp = Experiment(VARIANTS, config(redis_server.url, max_buffer=100))
    for i in range(30):
        exp.record_unit(exp.assign(f"early{i}").unit_id or "", "revenue", 1)
    exp.flush()
    redis_server.kill()
    sent_units, sent_values = 30, 30
    for i in range(200):  # routing keeps answering while Redis is down
        d = exp.assign(f"late{i}")
        assert d.variant in VARIANTS
        exp.record(d, "revenue", 1)
        sent_units += 1
        sent_values += 1
    with pytest.raises(StoreError, match="unavailable"):
        exp.flush()
    assert exp.store.stats()["dropped_exposures"] > 0  # type: ignore[attr-defined]
    redis_server.start()  # a fresh, empty server: the early data is gone with the old one
    exp.flush()
    snap = exp.store.snapshot()
    assert snap.units is not None
    lost = snap.losses
    # every request is counted; every exposure and value is either in Redis or counted dropped
    assert int(snap.requests.sum()) == 200
    exposures = int(snap.units.exposures.sum())
    assert exposures + lost["dropped_exposures"] == 200
    values = int(snap.units.y["revenue"].sum()) + lost["orphan_values"]
    assert values + lost["dropped_values"] == 200
    assert any("dropped" in note for note in Analysis.from_experiment(exp).compare("revenue").notes)
    exp.close()


def test_foreign_configuration_is_refused(redis_server: RedisServer) -> None:
    exp = Experiment(VARIANTS, config(redis_server.url))
    exp.assign("u1")
    exp.flush()
    other = Experiment({"a": 1, "c": 2}, config(redis_server.url))
    other.assign("u1")
    with pytest.raises(StoreError, match="another configuration"):
        other.flush()
    exp.close()
    other.close()  # logs the refused final flush; nothing reaches the other experiment's keys


def test_config_validation() -> None:
    from modelrouter import ConfigError

    with pytest.raises(ConfigError, match="store"):
        config("redis:/nowhere")
    assert config("redis://:s3cret@127.0.0.1:1/0").as_dict()["store"] == (
        "redis://:***@127.0.0.1:1/0")
    assert not math.isnan(config().flush_seconds)


# -- batches apply completely or not at all; refused ones are counted with their reason ---------
def redis_client(server: RedisServer) -> Any:
    return server.client(decode_responses=True)


P = "mr:{exp7}:"


def run_batch(r: Any, ops: list[tuple[str, str, str, str]], batch: str) -> Any:
    """``ops`` as one batch with id ``batch``, straight through the store's script."""
    from modelrouter.store.redis.batch import LUA, pack_batches

    (_id, keys, argv), = pack_batches(ops, P, "w", 0)
    return r.register_script(LUA)(keys=[P + "batch:" + batch, P + "counters", P + "refused",
                                        *keys], args=argv)


def test_an_overflowing_batch_is_refused_whole_and_counted_the_others_intact(
        redis_server: RedisServer) -> None:
    """Values allowed one by one (1e154, whose square is finite) whose sum of squares is not:
    the batch holding that counter is refused before any of its writes (before the fix the
    events' n and sum were written, then the script stopped at sumsq, and the batch marker
    made the retry skip the rest: 1,500 requests lost, no drop counted)."""
    store = RedisStore(redis_server.url, list(VARIANTS), config().metrics, experiment="exp7",
                       flush_seconds=3600)
    revenue = store.metric_index["revenue"]
    for i in range(1500):
        store.expose(f"u{i}", i % 2, 0.5, 0)
        store.record_unit(f"u{i}", revenue, 2.0)
    store.record_unit("u0", revenue, 1e154)  # u0's variant is in the buffer: event counters
    store.record_unit("u0", revenue, 1e154)  # sumsq = 2 + 1e308 + 1e308 = inf
    store.flush()  # no exception: the refused batch is dropped and counted, the rest written
    r = redis_client(redis_server)
    assert r.hlen(P + "first") == r.hlen(P + "exposures") == r.hlen(P + "x:revenue") == 1500
    assert r.hgetall(P + "requests") == {} and r.hgetall(P + "events") == {}  # not half-applied
    assert r.hgetall(P + "refused") == {"increment": "1"}  # the buffered sumsq is inf
    counters = r.hgetall(P + "counters")
    assert counters["refused_batches"] == "1" and counters["refused_requests"] == "1500"
    stats = store.stats()
    assert stats["refused_batches"] == 1 and stats["failed_flushes"] == 0
    assert "refused: increment: " in str(stats["last_refusal"])
    assert stats["queued_batches"] == 0
    snap = store.snapshot()
    assert snap.losses["refused_batches"] == 1 and snap.losses["refused:increment"] == 1
    assert snap.losses["refused_requests"] == 1500
    assert snap.units is not None and int(snap.units.exposures.sum()) == 1500
    notes = loss_notes(snap.losses)  # what every analysis of this snapshot notes
    assert any("1 batch of updates could not be applied by the shared store and was dropped "
               "whole (1 x an increment is not a finite number" in n and "1,500 requests" in n
               for n in notes)
    store.flush()  # nothing queued, nothing counted twice
    assert r.hget(P + "counters", "refused_batches") == "1"
    store.close()


def test_a_batch_meeting_a_corrupt_counter_is_refused_and_the_batches_around_it_apply(
        redis_server: RedisServer) -> None:
    """A counter some other client overwrote with text: the batch that adds to it is refused
    whole (none of its 2,000 updates written), the batches before and after it apply."""
    r = redis_client(redis_server)
    store = RedisStore(redis_server.url, list(VARIANTS), config().metrics, experiment="exp7",
                       flush_seconds=3600)
    revenue = store.metric_index["revenue"]
    for i in range(1500):  # ops: 3,000 first/exposures, then 3,000 x/y, then counters
        store.expose(f"u{i}", i % 2, 0.5, 0)
        store.record_unit(f"u{i}", revenue, 1.0)
    r.hset(P + "x:revenue", "u800", "not a number")  # x/y ops of u500..u1499: the 3rd batch
    store.flush()
    assert r.hgetall(P + "refused") == {"stored": "1"}
    assert r.hlen(P + "first") == 1500  # batches 1 and 2
    assert r.hlen(P + "y:revenue") == 500  # batch 2 holds u0..u499's x/y; batch 3 none
    assert sum(int(v) for v in r.hgetall(P + "requests").values()) == 1500  # batch 4
    with pytest.raises(StoreError, match=r"^Redis at \S+ holds malformed data for experiment "
                                         r"'exp7' \(key 'mr:\{exp7\}:x:revenue'\)"):
        store.snapshot()  # the corrupt counter is named, not a ValueError
    r.hdel(P + "x:revenue", "u800")
    snap = store.snapshot()
    assert snap.losses["refused_values"] == 1000 and snap.losses["refused_exposures"] == 0
    store.close()


def test_the_script_checks_everything_before_writing_anything(redis_server: RedisServer) -> None:
    """Batches straight through the store's script: whatever op fails, the ones before it are
    not written, the refusal is counted once, and the batch id is used up."""
    r = redis_client(redis_server)
    run = functools.partial(run_batch, r)

    good = [("i", "requests", "a", "5"), ("f", "y:revenue", "u1", "1.0")]
    cases = {
        "increment": [("f", "x:revenue", "u1", "inf")],
        "overflow": [("f", "x:revenue", "u1", "1e308"), ("f", "x:revenue", "u1", "1e308")],
        "ops": [("n", "first", "alice\udc80", "[0,0,0.5,1.0,[]]")],  # a lone surrogate
    }
    for i, (reason, poison) in enumerate(cases.items()):
        reply = run(good + poison + good, f"b{i}")
        assert reply[0] == -1 and reply[1] == reason
        assert r.hgetall(P + "requests") == {} and r.hgetall(P + "y:revenue") == {}
        assert run(good + poison + good, f"b{i}") == 0  # a retry: neither applied nor counted
    r.set(P + "latency", "a string")
    assert run([*good, ("i", "latency", "a#3", "1")], "b9")[1] == "type"
    assert r.hgetall(P + "refused") == {"increment": "1", "overflow": "1", "ops": "1",
                                        "type": "1"}
    counters = r.hgetall(P + "counters")  # what the refused batches held: 7 x 5 requests
    assert counters["refused_batches"] == "4" and counters["refused_requests"] == "35"
    assert counters["refused_values"] == "7"
    assert run(good, "ok") == 1 and r.hget(P + "requests", "a") == "5"


def test_the_script_writes_totals_that_read_back_exactly_and_refuses_what_they_cannot_hold(
        redis_server: RedisServer) -> None:
    """The script stores totals (HSET of the sum it computed, tests/store/test_redis_torn_aof.py
    says why): a float total reads back as the same double Python's own sum gives, in the
    shortest of 15-17 digits; a count stops below 2**53 (a double's exact integers); a field
    both added to as an integer and as a float is a malformed batch; a marker left ``started``
    (the torn case) refuses the retry, counted."""
    r = redis_client(redis_server)
    run = functools.partial(run_batch, r)

    values = [0.1, 0.2, 1e-17, 3.3, -7.25e-3]
    total = 0.0
    for i, v in enumerate(values):
        assert run([("f", "x:revenue", "u1", repr(v))], f"f{i}") == 1
        total += v
    assert float(r.hget(P + "x:revenue", "u1")) == total  # the same double, bit for bit
    assert run([("f", "x:revenue", "u2", "0.5"), ("f", "x:revenue", "u2", "0.25")], "h") == 1
    assert r.hget(P + "x:revenue", "u2") == "0.75"  # shortest form that reads back
    assert run([("f", "x:revenue", "u3", "1e300")], "big") == 1
    assert float(r.hget(P + "x:revenue", "u3")) == 1e300
    assert run([("i", "requests", "a", str(2**53 - 2))], "i1") == 1
    assert r.hget(P + "requests", "a") == str(2**53 - 2)
    assert run([("i", "requests", "a", "1")], "i2") == 1  # 2**53 - 1: still exact
    reply = run([("i", "requests", "a", "1")], "i3")  # 2**53: no longer exact in a double
    assert reply[0] == -1 and reply[1] == "overflow"
    reply = run([("i", "latency", "a#1", "1"), ("f", "latency", "a#1", "0.5")], "mix")
    assert reply[0] == -1 and reply[1] == "ops" and "mixes" in reply[2]
    r.set(P + "batch:torn", "started")  # what a replayed part of a torn batch leaves
    reply = run([("i", "requests", "b", "5")], "torn")
    assert reply[0] == -1 and reply[1] == "torn"
    assert r.hget(P + "requests", "b") is None and r.get(P + "batch:torn") == "1"
    assert run([("i", "requests", "b", "5")], "torn") == 0  # counted once
    assert r.hgetall(P + "refused") == {"overflow": "1", "ops": "1", "torn": "1"}
    assert r.hget(P + "counters", "refused_requests") == "6"  # the overflowing 1, the torn 5


def test_the_hot_path_refuses_what_redis_cannot_store(redis_server: RedisServer) -> None:
    from modelrouter import InvalidValueError, UnitIdError

    store = RedisStore(redis_server.url, list(VARIANTS), config().metrics, experiment="exp7",
                       flush_seconds=3600)
    revenue = store.metric_index["revenue"]
    with pytest.raises(UnitIdError, match="^unit id is not valid UTF-8 \\(a lone surrogate "
                                          "U\\+DC80 at index 5\\): Redis cannot store it$"):
        store.expose("alice\udc80", 0, 0.5, 0)
    with pytest.raises(UnitIdError, match="lone surrogate U\\+D800"):
        store.record_unit("\ud800", revenue, 1.0)
    seq = store.expose("b\u00f6b", 0, 0.5, 0)  # non-ASCII, valid UTF-8: fine
    for bad in (1e155, -1e155, math.inf, math.nan):
        with pytest.raises(InvalidValueError, match="cannot be stored in Redis"):
            store.record_unit("b\u00f6b", revenue, bad)
        with pytest.raises(InvalidValueError, match="cannot be stored in Redis"):
            store.record_seq(seq, revenue, bad)
        with pytest.raises(InvalidValueError, match="cannot be stored in Redis"):
            store.record_auto(seq, bad, 0.0)
    store.record_unit("b\u00f6b", revenue, 1.3e154)
    store.flush()
    assert store.stats()["refused_batches"] == 0
    assert redis_client(redis_server).hget(P + "x:revenue", "b\u00f6b") is not None
    # through the routing core the unit id rule refuses it first, for every store
    exp = Experiment(VARIANTS, config(redis_server.url))
    with pytest.raises(UnitIdError, match="surrogate character U\\+DC80"):
        exp.assign("alice\udc80")
    exp.close()
    store.close()


def test_errors_say_unavailable_or_refused(redis_server: RedisServer) -> None:
    """No answer (Redis down) and an error reply (out of memory) are different failures; both
    keep the batch, which is applied once when Redis takes it."""
    r = redis_client(redis_server)
    store = RedisStore(redis_server.url, list(VARIANTS), config().metrics, experiment="exp7",
                       flush_seconds=3600)
    store.expose("u1", 0, 0.5, 0)
    store.flush()  # claims the meta key
    store.expose("u2", 1, 0.5, 0)
    r.config_set("maxmemory", "1")
    with pytest.raises(StoreError, match=r"^Redis at redis://127\.0\.0\.1:\d+/0 refused "
                                         r"(batch \S+|the configuration check) \(kept and "
                                         r"retried\): .*maxmemory"):
        store.flush()
    r.config_set("maxmemory", "0")
    store.flush()
    assert r.hlen(P + "first") == 2 and sum(map(int, r.hgetall(P + "requests").values())) == 2
    store.expose("u3", 0, 0.5, 0)
    redis_server.kill()
    with pytest.raises(StoreError, match=r"^Redis at redis://127\.0\.0\.1:\d+/0 is unavailable "
                                         r"\(.* is kept and retried\)"):
        store.flush()
    with pytest.raises(StoreError, match="is unavailable"):
        store.snapshot()
    store.close()  # the final flush fails and is logged: Redis is gone
