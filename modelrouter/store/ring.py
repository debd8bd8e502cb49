"""The pending-decision ring: which recent decisions may still get feedback, and where they are.

Decisions are numbered ``0, 1, 2, ...`` by their store. Slot ``seq % capacity`` holds the last
decision remembered there: its number (``seq``), issue time (``time``), a payload (``row``: the
unit row, request group or decision group it belongs to) and any per-slot *columns* its owner
adds (:meth:`PendingRing.add_column`: a request's own ``(x, y)`` per metric, a decision's reward,
a unit id...), reset to their fill value whenever the slot is reused. Late feedback finds its
decision in O(1) with no per-request allocation, memory is O(capacity) whatever the traffic,
and a decision that was never issued, was overwritten by ``capacity`` newer ones or (with the
window) is older than the attribution window is refused with ``UnknownDecisionError``.

Used by the memory store (every decision it issues), the Redis store's unit-level buffer and
the :class:`~modelrouter.store.decisions.DecisionTracker` (bandit decisions only: the slots of
other decisions stay empty, ``seq == EMPTY``).

The arrays grow by appending up to ``capacity`` slots, then are overwritten in place, and are
never replaced (:meth:`PendingRing.clear` and :meth:`PendingRing.load` rewrite them in place):
an owner may keep references to ``seq``, ``time``, ``row`` and its columns. An owner that
remembers every number it issues, in order, keeps ``len(ring) == min(issued, capacity)``, so
remembering ``seq < capacity`` is an append: the memory store's request path inlines that.

Thread safety: none of its own. The owner calls every method with its lock held.
"""

from __future__ import annotations

import math
import time as _time
from array import array
from collections.abc import Callable, MutableSequence, Sequence
from dataclasses import dataclass
from typing import Any

from modelrouter.config.extensions import install
from modelrouter.exceptions import UnknownDecisionError

__all__ = ["EMPTY", "PendingRing", "RingState"]

EMPTY = -1  # ``seq`` of a slot that holds no decision


@dataclass(frozen=True)
class RingState:
    """Copies of a ring's arrays (:meth:`PendingRing.dump`), columns in the order added."""

    seq: array[int]
    time: array[float]
    row: array[int]
    columns: tuple[MutableSequence[Any], ...]


class PendingRing:
    """The last ``capacity`` decisions; see the module docstring."""

    __slots__ = ("_columns", "capacity", "clock", "row", "seq", "time", "window")

    def __init__(self, capacity: int, window: float = math.inf,
                 clock: Callable[[], float] = _time.time) -> None:
        if capacity < 1:
            raise ValueError(f"ring capacity ({capacity}) must be at least 1")
        self.capacity = int(capacity)
        self.window = float(window)
        self.clock = clock
        self.seq: array[int] = array("q")
        self.time: array[float] = array("d")
        self.row: array[int] = array("q")
        self._columns: list[tuple[MutableSequence[Any], Any]] = []

    def add_column(self, typecode: str, fill: float) -> array[Any]:
        """A per-slot column of numbers (``array(typecode)``), ``fill`` in every slot a decision
        takes; add columns before the first decision."""
        col: array[Any] = array(typecode, [fill]) * len(self.seq)
        self._columns.append((col, fill))
        return col

    def add_objects(self, fill: object) -> list[Any]:
        """A per-slot column of Python objects (a list), ``fill`` in every slot a decision
        takes."""
        col = [fill] * len(self.seq)
        self._columns.append((col, fill))
        return col

    def __len__(self) -> int:
        """Slots in use (at most ``capacity``)."""
        return len(self.seq)

    # -- writing ------------------------------------------------------------------------------
    def remember(self, seq: int, now: float, row: int) -> int:
        """Put decision ``seq`` (issued at ``now``, payload ``row``) in its slot, evicting the
        slot's previous decision; columns take their fill value. Returns the slot."""
        slot = seq % self.capacity
        size = len(self.seq)
        if slot < size:
            self.seq[slot] = seq
            self.time[slot] = now
            self.row[slot] = row
            for col, fill in self._columns:
                col[slot] = fill
            return slot
        if slot > size:  # slots skipped by an owner that remembers some decisions only
            self._grow(slot - size)
        self.seq.append(seq)
        self.time.append(now)
        self.row.append(row)
        for col, fill in self._columns:
            col.append(fill)
        return slot

    # the Python method under a name the compiled twin (installed below) does not replace
    _remember_py = remember

    def _grow(self, n: int) -> None:
        self.seq.extend(array("q", [EMPTY]) * n)
        self.time.extend(array("d", [0.0]) * n)
        self.row.extend(array("q", [0]) * n)
        for col, fill in self._columns:
            col.extend([fill] * n)

    def clear(self, size: int = 0) -> None:
        """Forget every decision; keep ``min(size, capacity)`` empty slots (pass the count of
        numbers issued so far, so an owner that appends stays in step)."""
        n = min(max(size, 0), self.capacity)
        self.seq[:] = array("q", [EMPTY]) * n
        self.time[:] = array("d", [0.0]) * n
        self.row[:] = array("q", [0]) * n
        for col, fill in self._columns:
            col[:] = _filled(col, fill, n)

    # -- reading ------------------------------------------------------------------------------
    def find(self, seq: int) -> int:
        """The slot holding decision ``seq``, or -1 (never issued, negative, or evicted)."""
        slot = seq % self.capacity
        if seq < 0 or slot >= len(self.seq) or self.seq[slot] != seq:
            return -1
        return slot

    def alive(self, seq: int) -> bool:
        """Whether ``seq`` is in the ring and inside the attribution window."""
        slot = seq % self.capacity
        return (seq >= 0 and slot < len(self.seq) and self.seq[slot] == seq
                and self.clock() - self.time[slot] <= self.window)

    def slot_of(self, seq: int, window: bool = True) -> int:
        """The slot of decision ``seq``; UnknownDecisionError when it was never issued, was
        overwritten by newer decisions, or (``window``) is past the attribution window."""
        slot = seq % self.capacity  # find() inlined: on every feedback of a Redis store
        if seq < 0 or slot >= len(self.seq) or self.seq[slot] != seq:
            raise UnknownDecisionError(f"decision {seq} is unknown or no longer pending "
                                       f"(the store keeps the last {self.capacity})")
        if window and self.clock() - self.time[slot] > self.window:
            raise UnknownDecisionError(f"decision {seq} is past the attribution window "
                                       f"({self.window:g} s)")
        return slot

    # -- state --------------------------------------------------------------------------------
    def dump(self) -> RingState:
        """Copies of every array (columns in the order they were added)."""
        return RingState(array("q", self.seq), array("d", self.time), array("q", self.row),
                         tuple(col[:] for col, _fill in self._columns))

    def load(self, state: RingState) -> None:
        """Replace the contents by ``state`` (arrays rewritten in place); all or nothing:
        ValueError, and no change, unless it fits this ring (lengths, column count and kinds,
        every held decision in its own slot)."""
        n = len(state.seq)
        if n > self.capacity:
            raise ValueError(f"ring state has {n} slots; capacity is {self.capacity}")
        if len(state.time) != n or len(state.row) != n or any(len(c) != n
                                                               for c in state.columns):
            raise ValueError("ring state arrays differ in length")
        if len(state.columns) != len(self._columns):
            raise ValueError(f"ring state has {len(state.columns)} columns, this ring "
                             f"{len(self._columns)}")
        for new, (col, _fill) in zip(state.columns, self._columns):
            same = (isinstance(new, array) and new.typecode == col.typecode
                    if isinstance(col, array) else isinstance(new, list))
            if not same:
                raise ValueError("ring state column kinds differ from this ring's")
        for slot, seq in enumerate(state.seq):
            if seq != EMPTY and (seq < 0 or seq % self.capacity != slot):
                raise ValueError(f"ring state holds decision {seq} in slot {slot}")
        self.seq[:] = array("q", state.seq)
        self.time[:] = array("d", state.time)
        self.row[:] = array("q", state.row)
        for new, (col, _fill) in zip(state.columns, self._columns):
            col[:] = new


def _filled(col: Sequence[Any], fill: Any, n: int) -> MutableSequence[Any]:
    """A sequence of ``col``'s kind holding ``fill`` ``n`` times."""
    if isinstance(col, array):
        return array(col.typecode, [fill]) * n
    return [fill] * n


# the compiled twin of remember (store/columns_c.pyx), when it was built
install(PendingRing, "remember", "modelrouter.store.columns_c")

