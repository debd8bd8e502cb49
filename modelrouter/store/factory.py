"""Building the remote store a config asks for."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from modelrouter.config import RouterConfig

__all__ = ["open_remote_store"]


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
