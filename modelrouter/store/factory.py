"""Building the store a config asks for, and the store-level operations of an experiment."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from modelrouter.config import RouterConfig
from modelrouter.exceptions import StoreError
from modelrouter.routing.assignment import Allocation
from modelrouter.store.memory import MemoryStore
from modelrouter.store.persistence import SnapshotInfo, restore_store, save_store

__all__ = ["open_remote_store", "restore_experiment", "save_experiment"]


def open_remote_store(config: RouterConfig, variants: Sequence[str],
                      segment_dims: Sequence[str], clock: Callable[[], float]) -> Any:
    """The :class:`~modelrouter.store.redis.store.RedisStore` for ``config.store`` (no I/O yet)."""
    from modelrouter.store.redis.store import RedisStore

    return RedisStore(config.store, variants, config.metrics, experiment=config.experiment,
                      level=config.level, max_pending=config.max_pending,
                      attribution_window=config.attribution_window, segment_dims=segment_dims,
                      segment_cap=getattr(config, "segment_cap", 50), clock=clock,
                      flush_seconds=config.flush_seconds, flush_events=config.flush_events,
                      max_buffer=config.max_buffer)


def _memory(experiment: Any, verb: str) -> MemoryStore:
    store = experiment.store
    if not isinstance(store, MemoryStore):
        raise StoreError(f"{verb} works on the in-memory store; this experiment uses "
                         f"{type(store).__name__} (Redis persists itself: RDB or AOF)")
    return store


def save_experiment(experiment: Any, path: str | os.PathLike[str]) -> SnapshotInfo:
    """Write the experiment's in-memory statistics to ``path`` atomically."""
    return save_store(_memory(experiment, "save()"), path,
                      experiment=experiment.config.experiment)


def restore_experiment(experiment: Any, path: str | os.PathLike[str]) -> SnapshotInfo:
    """Load a snapshot into the experiment; routing continues from the restored epochs.

    If the current weights and mode equal those of the last restored epoch, routing continues
    in that epoch; otherwise a new epoch starts after it.
    """
    store = _memory(experiment, "restore()")
    with experiment._config_lock:
        info = restore_store(store, path, experiment=experiment.config.experiment)
        alloc = experiment.allocation
        epochs = tuple(store._epochs)
        last = epochs[-1] if epochs else None
        if last is not None and (last.weights != alloc.propensities
                                 or last.mode != experiment.mode):
            new = _allocation_at(experiment, max(e.epoch for e in epochs) + 1)
            store.begin_epoch(new.epoch, experiment.mode, new.propensities)
            experiment.allocation = new
        elif last is not None:
            experiment.allocation = _allocation_at(experiment, last.epoch)
    return info


def _allocation_at(experiment: Any, epoch: int) -> Allocation:
    """The current weights at ``epoch`` (config lock held); in bandit mode the bandit's own
    allocation, so routing stays bandit routing."""
    bandit = getattr(experiment, "bandit", None)
    if experiment.mode == "bandit" and bandit is not None:
        return bandit.at_epoch(epoch)  # type: ignore[no-any-return]
    return Allocation(experiment.names, experiment.allocation.weights, experiment.control,
                      epoch=epoch)
