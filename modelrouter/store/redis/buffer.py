"""One worker's unflushed deltas for the Redis store: the request path writes only here.

A :class:`DeltaBuffer` holds, since the last flush: first exposures and exposure counts per
unit, per-unit ``(x, y)`` increments per metric, per-variant event counters (``n``, ``sum``,
``sum of squares`` of every value, for request-level bandits), requests, uncounted requests,
new epochs and looks, and the latency histogram. Its size (unit entries) is bounded by
``max_buffer``: past it, new entries are refused and counted (``dropped``), never blocking
the request path while Redis is down. A flush swaps the whole buffer for an empty one and turns
the old one into Redis operations (store/redis/batch.py).

Thread safety: none of its own. The Redis store calls every method, and swaps buffers, under its
buffer lock; a swapped-out buffer belongs to the flusher alone.
"""

from __future__ import annotations

from array import array

from modelrouter.exceptions import InvalidValueError, UnitIdError
from modelrouter.store.histogram import N_SLOTS
from modelrouter.store.looks import Look
from modelrouter.store.types import EpochInfo

__all__ = ["MAX_SQUARABLE", "DeltaBuffer", "FirstExposure", "too_large", "unit_text"]

MAX_SQUARABLE = 1.3407807929942596e154
"""The largest value the Redis store buffers: ``sqrt`` of the largest float, so that the
buffer's sum of squares of one value is finite (``x * x`` overflows to ``inf`` beyond it)."""


def unit_text(unit: str) -> str:
    """``unit`` if it encodes as UTF-8 (no lone surrogate), else UnitIdError (the hot path
    calls this only for ids that are not ASCII)."""
    try:
        unit.encode("utf-8")
    except UnicodeEncodeError as exc:
        cp = ord(unit[exc.start])
        raise UnitIdError(f"unit id is not valid UTF-8 (a lone surrogate U+{cp:04X} at index "
                          f"{exc.start}): Redis cannot store it") from None
    return unit


def too_large(value: float) -> InvalidValueError:
    return InvalidValueError(f"value {value!r} cannot be stored in Redis: its magnitude must be "
                             f"at most {MAX_SQUARABLE:.4g} (its square must be finite)")


# a unit's first exposure in this buffer: variant, epoch, propensity, time, segment codes
FirstExposure = tuple[int, int, float, float, tuple[int, ...]]


class DeltaBuffer:
    """See the module docstring."""

    __slots__ = ("covariate_drops", "covariates", "dropped", "epochs", "events", "exposures",
                 "first", "forwards_lost", "hist", "hist_sum", "looks", "max_buffer",
                 "requests", "size", "unattributed", "uncounted", "xy")

    def __init__(self, n_variants: int, max_buffer: int) -> None:
        self.max_buffer = max_buffer
        self.first: dict[str, FirstExposure] = {}
        self.exposures: dict[str, int] = {}  # the units of ``first``: exposures since
        self.xy: dict[tuple[str, int], list[float]] = {}
        # (unit, covariate index) -> (value, recorded at): the first one buffered wins
        self.covariates: dict[tuple[str, int], tuple[float, float]] = {}
        self.covariate_drops: dict[str, int] = {}  # reason -> values read and dropped
        self.events: dict[tuple[int, int], list[float]] = {}
        self.requests = [0] * n_variants
        self.uncounted = 0
        self.unattributed = 0  # finished requests whose decision was no longer pending
        self.dropped = [0, 0]  # exposures, values refused by a full buffer
        # values forwarded to this worker and not applied: decision evicted, entry refused
        self.forwards_lost = [0, 0]
        self.epochs: list[EpochInfo] = []
        self.looks: list[Look] = []
        self.size = 0  # unit entries (first exposures and (unit, metric) pairs)
        self.hist = array("q", bytes(8 * N_SLOTS * n_variants))
        self.hist_sum = [0.0] * n_variants

    def expose(self, unit: str, variant: int, epoch: int, propensity: float, now: float,
               segment: tuple[int, ...]) -> None:
        """Count one exposure of ``unit`` (its first one keeps variant, epoch, ...)."""
        self.requests[variant] += 1
        n = self.exposures.get(unit)
        if n is not None:
            self.exposures[unit] = n + 1
        elif self.size < self.max_buffer:
            self.first[unit] = (variant, epoch, propensity, now, segment)
            self.exposures[unit] = 1
            self.size += 1
        else:
            self.dropped[0] += 1

    def variant_of(self, unit: str) -> int:
        """The unit's variant if its first exposure is buffered here, else -1."""
        entry = self.first.get(unit)
        return entry[0] if entry is not None else -1

    def add(self, unit: str, m: int, variant: int, value: float) -> None:
        """Add one value of metric ``m`` to ``unit`` (and to its variant's event counters,
        when the variant is known)."""
        key = (unit, m)
        xy = self.xy.get(key)
        if xy is None:
            if self.size >= self.max_buffer:
                self.dropped[1] += 1
                return
            xy = self.xy[key] = [0.0, 0.0]
            self.size += 1
        xy[0] += value
        xy[1] += 1.0
        if variant >= 0:
            ev = self.events.get((variant, m))
            if ev is None:
                ev = self.events[(variant, m)] = [0.0, 0.0, 0.0]
            ev[0] += 1.0
            ev[1] += value
            ev[2] += value * value

    def covariate(self, unit: str, index: int, value: float, now: float) -> None:
        """Buffer a unit's covariate value (first value wins; counted in ``size``)."""
        key = (unit, index)
        if key in self.covariates:
            return
        if self.size >= self.max_buffer:
            self.dropped[1] += 1
            return
        self.covariates[key] = (value, now)
        self.size += 1

    def add_latency(self, variant: int, slot: int, latency_ms: float) -> None:
        """Count one request's latency in the histogram."""
        self.hist[variant * N_SLOTS + slot] += 1
        self.hist_sum[variant] += latency_ms
