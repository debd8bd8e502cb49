"""Building the store a config asks for: the memory store, or a remote (Redis) store.

The Redis store (and redis-py) is imported only when a config names it. Thread safety: no state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelrouter.config import RouterConfig
    from modelrouter.store.protocol import RemoteStore, Store

__all__ = ["open_remote_store", "open_store"]


def open_store(config: RouterConfig, variants: Sequence[str], segment_dims: Sequence[str],
               clock: Callable[[], float]) -> Store:
    """The store for ``config.store``: ``"memory"``, or shared state in Redis (whose local
    buffer is the hot path)."""
    if config.store != "memory":
        return open_remote_store(config, variants, segment_dims, clock)
    from modelrouter.store.memory import MemoryStore

    return MemoryStore(variants, config.metrics, level=config.level,
                       max_pending=config.max_pending,
                       attribution_window=config.attribution_window,
                       segment_dims=segment_dims, segment_cap=config.segment_cap, clock=clock)


def open_remote_store(config: RouterConfig, variants: Sequence[str],
                      segment_dims: Sequence[str], clock: Callable[[], float]
                      ) -> RemoteStore:
    """The :class:`~modelrouter.store.redis.store.RedisStore` for ``config.store`` (no I/O yet)."""
    from modelrouter.store.redis.store import RedisStore

    return RedisStore(config.store, variants, config.metrics, experiment=config.experiment,
                      level=config.level, max_pending=config.max_pending,
                      attribution_window=config.attribution_window, segment_dims=segment_dims,
                      segment_cap=config.segment_cap, clock=clock,
                      flush_seconds=config.flush_seconds, flush_events=config.flush_events,
                      max_buffer=config.max_buffer)
