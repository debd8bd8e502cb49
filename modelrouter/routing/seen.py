"""Feedback counted once: a set of keys already recorded, shared by every worker when the
store is.

:class:`SeenSet` is what makes token feedback (``POST {prefix}/feedback``,
``ModelRouter.record_token``) and ``ModelRouter.record(..., idempotency_key=...)`` idempotent.
A key is looked up in a bounded local :class:`cachetools.TTLCache` (entries live for the
attribution window, at most ``maxsize`` of them: past that many within one window the oldest
are forgotten), then, with a shared store (Redis), claimed in the store
(:meth:`Store.claim <modelrouter.store.protocol.Store.claim>`: ``SET NX`` with the window as
time to live), so a replay to any worker of any host counts once, without the size bound. A
claim whose feedback then fails to record is released, so a retry can count.

Thread safety: one lock around the local set; the store claim is atomic in the store. A fork
waits until no thread holds the lock (store/forksafe.py).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from cachetools import TTLCache

from modelrouter.exceptions import StoreError
from modelrouter.store.forksafe import LEAF, track
from modelrouter.store.protocol import Store

__all__ = ["SeenSet"]


class SeenSet:
    """Keys recorded within the attribution window (see the module docstring)."""

    def __init__(self, store: Store, window: float, maxsize: int,
                 clock: Callable[[], float]) -> None:
        self._store = store
        self._window = float(window)
        self._local: TTLCache[str, bool] = TTLCache(maxsize=maxsize, ttl=window, timer=clock)
        self._lock = threading.Lock()
        track(self, self._lock, LEAF)  # a fork waits until no claim is half done (forksafe.py)

    def claim(self, key: str) -> bool:
        """True if ``key`` is new (now claimed), False if it was recorded before. A shared
        store that cannot be reached raises StoreError (nothing is claimed)."""
        with self._lock:
            if key in self._local:
                return False
            self._local[key] = True
        try:
            claimed = self._store.claim(key, self._window)
        except BaseException:
            with self._lock:
                self._local.pop(key, None)
            raise
        return claimed is not False

    def release(self, key: str) -> None:
        """Undo :meth:`claim` (the feedback could not be recorded); best effort in the store."""
        with self._lock:
            self._local.pop(key, None)
        with contextlib.suppress(StoreError):
            self._store.unclaim(key)
