"""The Store protocol: both stores implement every member; BaseStore's defaults; a store that
cannot track bandit decisions refuses them with ConfigError instead of lacking them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from modelrouter import ConfigError, RouterConfig
from modelrouter.store.decisions import DecisionTracker, Training
from modelrouter.store.looks import Look
from modelrouter.store.memory import MemoryStore
from modelrouter.store.protocol import BaseStore, RemoteStore, Store
from modelrouter.store.types import EpochInfo, Snapshot

METRICS = RouterConfig(metrics={"click": "binary"}).metrics

MEMBERS = ["variants", "metrics", "metric_names", "metric_index", "level", "unit_level",
           "segment_dims", "max_pending", "supports_bandit", "begin_epoch", "epochs",
           "segment_codes", "expose", "expose_unit", "uncounted", "record_seq", "record_auto",
           "record_unit", "has_unit", "add_look", "snapshot", "track_decisions",
           "expose_decision", "take_training", "peek_training", "start", "flush", "close",
           "stats"]


def redis_store() -> Any:
    pytest.importorskip("redis")
    from modelrouter.store.redis.store import RedisStore

    return RedisStore("redis://127.0.0.1:1/0", ["a", "b"], METRICS)  # no I/O until used


def tracker(store: Any) -> DecisionTracker:
    return DecisionTracker(2, [m.aggregate for m in METRICS.values()], store.max_pending,
                           Training(reward=store.metric_index["click"]))


class Minimal(BaseStore):
    """Only the required members: every optional one comes from BaseStore."""

    def __init__(self) -> None:
        super().__init__(["a", "b"], METRICS)
        self.exposed: list[tuple[Any, ...]] = []

    def begin_epoch(self, epoch: int, mode: str, weights: Sequence[float]) -> None:
        pass

    def epochs(self) -> tuple[EpochInfo, ...]:
        return ()

    def segment_codes(self, values: Sequence[str]) -> tuple[int, ...]:
        return ()

    def expose(self, unit: str | None, variant: int, propensity: float, epoch: int,
               segment: tuple[int, ...] = (), now: float | None = None) -> int:
        self.exposed.append((unit, variant, propensity, epoch, segment, now))
        return len(self.exposed) - 1

    def uncounted(self) -> None:
        pass

    def record_seq(self, seq: int, metric: int, value: float, *, window: bool = True) -> None:
        pass

    def record_auto(self, seq: int, latency_ms: float, error: float) -> None:
        pass

    def record_unit(self, unit: str, metric: int, value: float) -> None:
        pass

    def has_unit(self, unit: str) -> bool:
        return False

    def add_look(self, look: Look) -> None:
        pass

    def snapshot(self) -> Snapshot:
        raise NotImplementedError


class Thirds:
    propensities = (0.25, 0.75)
    epoch = 3

    def choose(self, u: float) -> int:
        return 0 if u < 0.25 else 1


def test_memory_store_is_a_store_not_a_remote_one() -> None:
    store = MemoryStore(["a", "b"], METRICS)
    assert isinstance(store, Store) and isinstance(store, BaseStore)
    assert not isinstance(store, RemoteStore)
    assert all(hasattr(store, m) for m in MEMBERS)
    assert store.supports_bandit and not store.shared


def test_redis_store_is_a_remote_store() -> None:
    store = redis_store()
    assert isinstance(store, Store) and isinstance(store, RemoteStore)
    assert isinstance(store, BaseStore)
    assert all(hasattr(store, m) for m in MEMBERS)
    assert store.supports_bandit and store.shared  # bandit and control plane via Redis


def test_base_store_defaults() -> None:
    store = Minimal()
    assert isinstance(store, Store)
    assert store.start() is None and store.flush() is None and store.close() is None
    assert store.stats() == {}
    assert store.pending_capacity == store.max_pending == 1_000_000
    assert store.expose_unit("u", lambda unit: 0.5, Thirds(), (2,), 7.0) == (0, 1)
    assert store.exposed == [("u", 1, 0.75, 3, (2,), 7.0)]
    assert not store.supports_bandit
    for call in (lambda: store.track_decisions(tracker(store)),
                 lambda: store.expose_decision("u", 0, 0.5, 0),
                 store.take_training, store.peek_training):
        with pytest.raises(ConfigError, match="bandit mode needs a store that tracks "
                                              "decisions .memory or redis.; got a Minimal"):
            call()


def test_base_store_is_abstract() -> None:
    with pytest.raises(TypeError, match="abstract"):
        BaseStore(["a", "b"], METRICS)  # type: ignore[abstract]


def test_redis_store_tracks_bandit_decisions_without_redis_for_the_request_path() -> None:
    """Bandit decisions on the Redis store: tracked locally (no network on the request path);
    with Redis unreachable, training falls back to this worker's own counters."""
    store = redis_store()
    store.track_decisions(tracker(store))
    click = store.metric_index["click"]
    seqs = [store.expose_decision(f"u{i}", i % 2, 0.5, 0) for i in range(4)]
    store.record_seq(seqs[1], click, 1.0, window=False)
    store.record_unit("u3", click, 1.0)  # by unit: the unit's latest decision
    counters, updates = store.take_training()  # nothing listens on port 1: local counters
    assert counters["successes"].tolist() == [0.0, 2.0]
    assert counters["failures"].tolist() == [2.0, 0.0]
    assert updates == 2  # the rewards (openings at reward 0 do not count)


def test_memory_store_tracks_bandit_decisions() -> None:
    store = MemoryStore(["a", "b"], METRICS)
    with pytest.raises(ConfigError, match="track_decisions"):
        store.take_training()
    store.track_decisions(tracker(store))
    click = store.metric_index["click"]
    seqs = [store.expose_decision(f"u{i}", i % 2, 0.5, 0) for i in range(4)]
    store.record_seq(seqs[1], click, 1.0, window=False)
    store.record_unit("u3", click, 1.0)  # by unit: the unit's latest decision
    counters, updates = store.take_training()
    assert counters["successes"].tolist() == [0.0, 2.0]
    assert counters["failures"].tolist() == [2.0, 0.0]
    assert updates == 2  # 2 rewards (openings at reward 0 move the counters, not the schedule)
    assert store.take_training()[1] == 0 and store.peek_training()["successes"][1] == 2.0
    decisions = store.snapshot().decisions
    assert {key: n for key, (n, _m) in decisions.items()} == {(0, 0, (), 0): 2,
                                                             (1, 0, (), 0): 2}
