"""The Redis store (extra ``modelrouter[redis]``): shared state for many workers and hosts.

``RedisStore`` is loaded on first use (PEP 562): importing this package imports neither
redis-py nor the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelrouter.store.redis.store import RedisStore

__all__ = ["RedisStore"]


def __getattr__(name: str) -> object:
    if name == "RedisStore":
        from modelrouter.store.redis.store import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
