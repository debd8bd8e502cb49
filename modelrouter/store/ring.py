"""The pending-decision ring shared by the stores: which slot holds a decision, if any."""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any, Protocol

from modelrouter.exceptions import UnknownDecisionError

__all__ = ["PendingRing", "pending_slot"]


class PendingRing(Protocol):
    """What :func:`pending_slot` reads from a store (under the store's lock)."""

    max_pending: int
    attribution_window: float
    clock: Callable[[], float]
    _ring_seq: array[Any]
    _ring_time: array[Any]


def pending_slot(ring: PendingRing, seq: int, window: bool) -> int:
    """The ring slot of decision ``seq``; UnknownDecisionError when it was never issued, was
    overwritten by newer decisions, or (``window``) is past the attribution window."""
    slot = seq % ring.max_pending if seq >= 0 else -1
    if slot < 0 or slot >= len(ring._ring_seq) or ring._ring_seq[slot] != seq:
        raise UnknownDecisionError(f"decision {seq} is unknown or no longer pending "
                                   f"(the store keeps the last {ring.max_pending})")
    if window and ring.clock() - ring._ring_time[slot] > ring.attribution_window:
        raise UnknownDecisionError(f"decision {seq} is past the attribution window "
                                   f"({ring.attribution_window:g} s)")
    return slot
