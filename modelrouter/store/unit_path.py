"""What the memory store's unit-level hot path reads and writes, in one object.

:class:`UnitPath` holds, by reference, the store's lock, the unit table's row index and the
columns ``expose_unit`` touches (hash buckets, exposures), the per-variant request counts, the
pending ring's arrays and the next decision number. The store creates one and keeps it for its
lifetime; what it replaces (a restored unit table, zeroed request counts) it replaces here too.

:func:`expose_unit` is ``MemoryStore.expose_unit`` itself (the store's class takes it as its
method). When the compiled twins were built (``store/hot_c.pyx``; ``config/extensions.py``),
:func:`new_path` and :func:`new_lock` return their C types, whose fields the compiled
``expose_unit`` reads without a dictionary lookup; otherwise this module's classes.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Callable
from typing import Any

from modelrouter.config.extensions import load_extension
from modelrouter.store.protocol import Chooser
from modelrouter.store.units import UnitTable

__all__ = ["UnitPath", "expose_unit", "new_lock", "new_path"]

_compiled = load_extension("modelrouter.store.hot_c")


class UnitPath:
    """The hot path's state (see the module docstring); the store holds ``lock`` for every
    read or write of it."""

    __slots__ = ("cap", "exposures", "lock", "requests", "ring_row", "ring_seq", "ring_time",
                 "rows", "seq", "ubucket", "units")

    def __init__(self, lock: Any, cap: int, ring_seq: array[int], ring_time: array[float],
                 ring_row: array[int], requests: list[int]) -> None:
        self.lock = lock
        self.cap = cap
        self.ring_seq, self.ring_time, self.ring_row = ring_seq, ring_time, ring_row
        self.requests = requests
        self.seq = 0  # the next decision number
        self.units: UnitTable | None = None
        self.rows: dict[str, int] = {}
        self.exposures: array[int] = array("I")
        self.ubucket: array[float] = array("d")

    def use_units(self, units: UnitTable, rows: dict[str, int], exposures: array[int],
                  ubucket: array[float]) -> None:
        """Install a unit table's row index and columns (the store holds the lock)."""
        self.units, self.rows, self.exposures, self.ubucket = units, rows, exposures, ubucket


def new_lock() -> Any:
    """The store's lock: the compiled ``FastLock`` when built, else ``threading.Lock()``."""
    return _compiled.FastLock() if _compiled is not None else threading.Lock()


def new_path(lock: Any, cap: int, ring_seq: array[int], ring_time: array[float],
             ring_row: array[int], requests: list[int]) -> Any:
    """A :class:`UnitPath` (the compiled one when built) for a store's lock and ring."""
    cls = _compiled.UnitPath if _compiled is not None else UnitPath
    return cls(lock, cap, ring_seq, ring_time, ring_row, requests)


def expose_unit(self: Any, unit: str, bucket: Callable[[str], float], alloc: Chooser,
                segment: tuple[int, ...], now: float) -> tuple[int, int]:
    """The A/B hot path at unit level in one lock (``MemoryStore.expose_unit``; ``self`` is
    the store): find or create the unit's row, choose its variant from its (cached) hash
    bucket, count and remember it. ``(seq, variant)``."""
    p = self._path
    with p.lock:
        row = p.rows.get(unit)
        if row is None:
            u = bucket(unit)
            i = alloc.choose(u)
            if not self.unit_level:  # request level: the unit is only this request
                return self._expose_locked(None, i, alloc.propensities[i], alloc.epoch,
                                           segment, now)[0], i
            row = p.units.add(unit, i, alloc.propensities[i], alloc.epoch, now, segment)
            p.ubucket.append(u)
        else:
            u = p.ubucket[row]
            if u != u:  # NaN: a restored row
                u = p.ubucket[row] = bucket(unit)
            i = alloc.choose(u)
            p.exposures[row] += 1
        seq = p.seq
        p.seq = seq + 1
        p.requests[i] += 1
        if seq < p.cap:  # PendingRing.remember inlined: len(ring) == seq
            p.ring_seq.append(seq)
            p.ring_time.append(now)
            p.ring_row.append(row)
        else:
            slot = seq % p.cap
            p.ring_seq[slot] = seq
            p.ring_time[slot] = now
            p.ring_row[slot] = row
    return seq, i

