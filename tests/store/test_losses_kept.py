"""What a store could not record stays reported: finished requests whose decision had left the
pending ring (``unattributed_requests``) and covariate values dropped from requests, counted by
every worker of a Redis store and kept across a memory store's save and restore.

Cells: memory and Redis stores; one worker and two (two RedisStores on one server); A/B and
bandit; 2 and 3 variants; user and request level; fresh, restored from a file, restored from a
file written before the losses were saved; hostile saved sections (unknown keys, negative,
boolean, float and oversized counts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelrouter import Experiment, ModelRouter, RouterConfig, StoreError
from modelrouter.store.losses import loss_notes
from modelrouter.store.memory import MemoryStore
from tests.store.conftest import RedisServer

NOTE = "latency and error were not recorded"


def evict(exp: Experiment, units: int = 100) -> int:
    """A decision, then ``units`` newer ones: in a ring of 64 the first is evicted."""
    first = exp.route_checked("first")[1]
    for i in range(units):
        exp.route_checked(f"u{i}")
    return first


async def ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def memory_router(**kw: Any) -> ModelRouter:
    kw.setdefault("metrics", {"click": "binary"})
    cfg = RouterConfig(experiment="kept", salt="kept", max_pending=64, **kw)
    return ModelRouter(ok, {"a": 0, "b": 1, "c": 2}, cfg)


@pytest.mark.parametrize("level", ["user", "request"])
def test_a_restored_store_still_reports_its_losses(tmp_path: Path, level: str) -> None:
    """memory x restored x 3 variants: two unattributed requests and a dropped covariate
    value are in the file; the restarted process's snapshot and analysis notes say them, and
    counting goes on from there."""
    kw: dict[str, Any] = {"level": level}
    if level == "user":
        kw.update(metrics={"y": {"kind": "continuous", "covariates": ["pre"]}},
                  covariate_headers={"pre": "x-pre"})
    router = memory_router(**kw)
    store: Any = router.experiment.store
    for _ in range(2):
        store.record_auto(evict(router.experiment), 3.0, 0.0)
    if level == "user":
        store.drop_covariate("invalid_value")
    want = {"unattributed_requests": 2}
    if level == "user":
        want["covariate_dropped:invalid_value"] = 1
    assert store.snapshot().losses == want
    path = str(tmp_path / "kept.mrsnap")
    router.save(path)

    restored = memory_router(**kw)
    restored.restore(path)
    snap = restored.experiment.store.snapshot()
    assert snap.losses == want
    assert any("2 finished requests' " + NOTE in n for n in loss_notes(snap.losses))
    notes = restored.analysis().compare("latency_ms", "b").notes
    assert any("2 finished requests' " + NOTE in n for n in notes)
    back: Any = restored.experiment.store
    back.record_auto(evict(restored.experiment), 3.0, 0.0)
    assert back.snapshot().losses["unattributed_requests"] == 3


def test_a_load_replaces_the_losses_with_the_states_own() -> None:
    """memory x restored: a load replaces the statistics, and the losses describe them; the
    journal's last fold before the load (into the replaced tables) is not carried over."""
    src = memory_router()
    src_store: Any = src.experiment.store
    src_store.record_auto(evict(src.experiment), 3.0, 0.0)
    header, arrays = src_store.dump()
    dst = memory_router()
    dst_store: Any = dst.experiment.store
    for _ in range(3):
        dst_store.record_auto(evict(dst.experiment), 3.0, 0.0)
    dst_store.load(header, arrays)
    assert dst_store.snapshot().losses == {"unattributed_requests": 1}


def test_a_state_saved_before_the_losses_loads_with_none() -> None:
    """memory x restored from an older file: no ``losses`` section, nothing reported."""
    src = memory_router()
    src_store: Any = src.experiment.store
    src_store.record_auto(evict(src.experiment), 3.0, 0.0)
    header, arrays = src_store.dump()
    assert header["losses"] == {"unattributed_requests": 1}
    del header["losses"]
    dst: Any = memory_router().experiment.store
    dst.load(header, arrays)
    assert dst.snapshot().losses == {}


@pytest.mark.parametrize("section", [
    {"dropped_values": 1},  # a Redis counter: never in a memory store's state
    {"unattributed_requests": -1},
    {"unattributed_requests": True},
    {"unattributed_requests": 1.0},
    {"unattributed_requests": "1"},
    {"unattributed_requests": 2**63},
    {"covariate_dropped:refused": None},
    {"covariate_dropped:see https://example.com": 1},  # text of its own into the notes
    {"covariate_dropped:\ud800": 1},
    [["unattributed_requests", 1]],
    "unattributed_requests",
], ids=["foreign", "negative", "bool", "float", "str", "huge", "none", "reason", "surrogate",
        "list", "text"])
def test_a_hostile_losses_section_is_refused_and_changes_nothing(section: Any) -> None:
    """memory x hostile input: the state is refused before anything changes."""
    src = memory_router()
    src_store: Any = src.experiment.store
    header, arrays = src_store.dump()
    header["losses"] = section
    dst = memory_router()
    dst_store: Any = dst.experiment.store
    dst_store.record_auto(evict(dst.experiment), 3.0, 0.0)
    before = dst_store.snapshot()
    with pytest.raises(StoreError, match="malformed state"):
        dst_store.load(header, arrays)
    after = dst_store.snapshot()
    assert after.losses == before.losses == {"unattributed_requests": 1}
    assert after.n_units == before.n_units == 101


def test_take_deltas_hands_the_count_over_once() -> None:
    """memory at request level as a remote store's local part: the count goes out with the
    deltas and is zeroed, so no worker flushes it twice."""
    router = memory_router(level="request")
    store = router.experiment.store
    assert isinstance(store, MemoryStore)
    store.record_auto(evict(router.experiment), 2.0, 0.0)
    store.record_auto(router.experiment.route_checked("u")[1], 2.0, 0.0)
    assert store.take_deltas().unattributed == 1
    assert store.take_deltas().unattributed == 0
    assert store.snapshot().losses == {}


pytest.importorskip("redis")


def redis_experiment(url: str, level: Any, mode: Any, variants: dict[str, int]) -> Experiment:
    cfg = RouterConfig(experiment="kept", salt="kept", metrics={"click": "binary"}, store=url,
                       level=level, mode=mode, max_pending=64,
                       reward="click" if mode == "bandit" else None)
    return Experiment(variants, cfg)


@pytest.mark.parametrize("mode", ["ab", "bandit"])
@pytest.mark.parametrize("level", ["user", "request"])
@pytest.mark.parametrize("variants", [{"a": 0, "b": 1}, {"a": 0, "b": 1, "c": 2}],
                         ids=["2", "3"])
def test_redis_workers_count_unattributed_requests(redis_server: RedisServer, level: str,
                                                   mode: str, variants: dict[str, int]) -> None:
    """Redis x 2 workers x A/B and bandit x 2 and 3 variants x user and request level: each
    worker's requests whose decision left its ring are flushed as one shared counter, added
    over workers; attributed ones are recorded as before."""
    one = redis_experiment(redis_server.url, level, mode, variants)
    two = redis_experiment(redis_server.url, level, mode, variants)
    try:
        s1: Any = one.store
        s2: Any = two.store
        s1.record_auto(evict(one), 4.0, 0.0)
        s2.record_auto(evict(two), 4.0, 1.0)
        s2.record_auto(evict(two), 4.0, 1.0)
        s1.record_auto(one.route_checked("kept")[1], 7.0, 0.0)  # still pending: recorded
        one.flush()
        assert one.store.snapshot().losses.get("unattributed_requests") == 1  # one's own
        two.flush()
        snap = one.store.snapshot()
        assert snap.losses["unattributed_requests"] == 3
        assert snap.latency is not None and int(snap.latency.counts.sum()) == 1
        assert any("3 finished requests' " + NOTE in n for n in loss_notes(snap.losses))
        one.flush()
        two.flush()  # nothing counted twice
        assert two.store.snapshot().losses["unattributed_requests"] == 3
    finally:
        one.close()
        two.close()


def test_redis_without_unattributed_requests_reports_no_entry(redis_server: RedisServer
                                                               ) -> None:
    """Redis x fresh: the key appears only when something was lost (as in a memory store)."""
    exp = redis_experiment(redis_server.url, "user", "ab", {"a": 0, "b": 1})
    try:
        exp.store.record_auto(exp.route_checked("u")[1], 1.0, 0.0)
        exp.flush()
        assert "unattributed_requests" not in exp.store.snapshot().losses
    finally:
        exp.close()


@pytest.mark.parametrize("mode", ["ab", "bandit"])
def test_redis_end_to_end_a_request_outlived_by_its_ring(redis_server: RedisServer,
                                                        mode: Any) -> None:
    """Redis x the middleware (compiled where built) x A/B and bandit: the app makes 100
    other decisions (a ring of 64) before it answers; that request's latency cannot be
    attributed, and every worker's analysis says so once flushed; the next is recorded."""
    from tests.store.test_journal_typed import serve

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            for i in range(100):
                r.experiment.route_checked(f"other-{i}")
        await ok(scope, receive, send)

    cfg = RouterConfig(experiment="kept-e2e", salt="kept", metrics={"click": "binary"},
                       store=redis_server.url, mode=mode, max_pending=64,
                       reward="click" if mode == "bandit" else None)
    r = ModelRouter(app, {"a": 0, "b": 1, "c": 2}, cfg)
    try:
        serve(r, [("/slow", "slow"), ("/fast", "fast")])
        r.experiment.flush()
        snap = r.experiment.store.snapshot()
        assert snap.losses["unattributed_requests"] == 1
        assert snap.latency is not None and int(snap.latency.counts.sum()) == 1
        assert any("1 finished request's " + NOTE in n for n in loss_notes(snap.losses))
        if mode == "ab":  # (a bandit's comparison needs decisions in every period)
            notes = r.analysis().compare("latency_ms", "b").notes
            assert any("1 finished request's " + NOTE in n for n in notes)
    finally:
        r.experiment.close()
