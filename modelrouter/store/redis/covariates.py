"""The Redis store's covariate member: a unit's pre-exposure value, buffered like feedback.

A mixin of :class:`~modelrouter.store.redis.store.RedisStore` (kept apart so that module stays
about the buffer and the statistics). A value goes into the worker's buffer (first value
wins there, and counts against ``max_buffer``), the flush writes it if absent (batch.py) to
``mr:{exp}:cov:<name>`` as ``[value, recorded_at]`` (batch.py ``covariate_ops``: the first
value any worker flushed wins), and a snapshot joins it to the unit's first exposure
(snapshot.py). A unit not exposed yet needs no pending map here: its value waits in Redis
until some worker exposes it (a value for a unit that is never exposed stays in the hash).

Covariate values read from requests and dropped (asgi/covariates.py) are counted by reason in
the buffer and flushed to the ``counters`` hash as ``covariate_dropped:<reason>`` (every
worker's, added), which the snapshot reports in ``Snapshot.losses``.

Thread safety: ``_lock`` around the buffer, as the store's other hot-path members.
"""

from __future__ import annotations

import threading

from modelrouter.store.redis.buffer import MAX_SQUARABLE, DeltaBuffer, too_large, unit_text

__all__ = ["CovariateMembers"]


class CovariateMembers:
    """``record_covariate`` and ``drop_covariate`` of the Redis store."""

    _lock: threading.Lock
    _buf: DeltaBuffer

    def record_covariate(self, unit: str, index: int, value: float, now: float) -> None:
        """Buffer covariate ``index`` of ``unit`` recorded at ``now`` (first value wins)."""
        if not unit.isascii():
            unit_text(unit)
        if not -MAX_SQUARABLE <= value <= MAX_SQUARABLE:
            raise too_large(value)
        with self._lock:
            self._buf.covariate(unit, index, value, now)

    def drop_covariate(self, reason: str) -> None:
        """Count one covariate value read from a request and dropped for ``reason``."""
        with self._lock:
            drops = self._buf.covariate_drops
            drops[reason] = drops.get(reason, 0) + 1
