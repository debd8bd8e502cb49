"""``PendingRing.remember``'s C path (``ring_remember``, store/columns_c.pyx) against the Python
method, through both callers: the ring's compiled twin and the decision tracker's compiled
``open`` (store/decisions_c.pyx).

Each run goes through two rings (or trackers) built alike: one with the methods as installed,
one with the Python methods only (``python_method``; for the tracker also its ring's
``remember``). Every answer must be equal (the slot, or the exception's type and message) and
so must every array and column after each step, compared byte for byte (NaN bits included).

Cells: memory store (the layouts of the request-level A/B ring: 'd' columns; the unit-level
ring: no columns; the bandit tracker's ring: 'b' and 'd' columns; the Redis store's: a list
column, which C leaves to Python); bandit mode with 3 arms; a ring that fills (appends in C),
wraps (overwrites in C) and skips slots (the Python method grows it); restored from a dump:
``load`` of a smaller and of a fuller state, ``clear`` to a size; hostile input: numbers past a
C integer, negative, bool and float numbers, NaN/inf/1e300/int/str times, rows past a C
integer, fills a 'b' column cannot hold, replaced or aliased arrays, a column listed twice,
rings of 15 to 40 columns (C keeps 16 at most), buffers exported by the arrays (memoryview)
while the ring fills, a capacity set to 0, -3, 2**70 or 2.0, a ring whose ``__init__`` never
ran, a subclass and a duck-typed object. Without the build both sides are the Python method
(the test still runs; ``test_..._installed`` is skipped).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from modelrouter.config.extensions import compiled, python_method
from modelrouter.store.decisions import DecisionTracker, Training
from modelrouter.store.ring import PendingRing

PY_REMEMBER: Any = python_method(PendingRing, "remember")
PY_OPEN: Any = python_method(DecisionTracker, "open")
BUILT = compiled().get("modelrouter.store.columns_c", False) and compiled().get(
    "modelrouter.store.decisions_c", False)


def state(ring: Any) -> str:
    """Every array and column of ``ring`` as bytes (lists as repr); what is missing, named."""
    out = []
    for name in ("seq", "time", "row", "_columns"):
        try:
            value = getattr(ring, name)
        except AttributeError:
            out.append(f"{name}: missing")
            continue
        if name == "_columns":
            cols = [p[0] if isinstance(p, tuple) and p else p for p in value]
            out.append(repr([c.tobytes() if isinstance(c, array) else c for c in cols]))
        else:
            out.append(repr(value.tobytes() if isinstance(value, array) else value))
    return "\n".join(out)


def outcome(f: Callable[[], Any]) -> Any:
    try:
        return f()
    except Exception as exc:  # noqa: BLE001 - type and message compared
        return (type(exc).__name__, str(exc))


Step = tuple[Any, Any, Any] | Callable[[Any], Any]


def run_both(make: Callable[[], Any], steps: list[Step]) -> list[Any]:
    """``steps`` (``(seq, now, row)`` to remember, or a function applied to the ring) on two
    rings from ``make``: installed ``remember`` and the Python method; equal answers and state
    after every step (asserted). The answers."""
    return compare(make(), make(), steps, PendingRing.remember, PY_REMEMBER, state)


def compare(fast: Any, slow: Any, steps: list[Any], fast_op: Callable[..., Any],
            slow_op: Callable[..., Any], seen: Callable[[Any], str]) -> list[Any]:
    """Each step on ``fast`` and ``slow``: a function applied to both (its exception compared,
    not its result), or arguments of ``fast_op`` and ``slow_op``; equal answers and ``seen``
    after every step (asserted). The answers."""
    answers = []
    for i, step in enumerate(steps):
        if callable(step):
            got = [outcome(partial(step, obj)) for obj in (fast, slow)]
            got = [g if isinstance(g, tuple) else None for g in got]
        else:
            got = [outcome(partial(fast_op, fast, *step)), outcome(partial(slow_op, slow, *step))]
        assert got[0] == got[1], (i, step, got)
        assert seen(fast) == seen(slow), (i, step)
        answers.append(got[0])
    return answers


def tracker_ring(capacity: int = 8) -> PendingRing:
    ring = PendingRing(capacity)
    ring.add_column("b", 0)
    ring.add_column("d", math.nan)
    for _ in range(4):
        ring.add_column("d", 0.0)
    return ring


def filling(n: int, start: int = 0) -> list[Step]:
    return [(seq, seq * 0.25, 100 + seq) for seq in range(start, start + n)]


@pytest.mark.skipif(not BUILT, reason="compiled twins not built on this machine")
def test_the_compiled_remember_is_installed() -> None:
    assert PendingRing.remember is not PY_REMEMBER
    assert DecisionTracker.open is not PY_OPEN


@pytest.mark.parametrize("layout", ["none", "ab", "tracker", "objects", "q", "int fill"])
def test_fill_wrap_and_skipped_slots_agree(layout: str) -> None:
    def make() -> PendingRing:
        ring = tracker_ring() if layout == "tracker" else PendingRing(8)
        if layout == "ab":
            ring.add_column("d", 0.0)
            ring.add_column("d", 0.0)
        elif layout == "objects":
            ring.add_objects("")  # the Redis store's unit column: the Python method
        elif layout == "q":
            ring.add_column("q", 7)  # a kind C does not write: the Python method
        elif layout == "int fill":
            ring.add_column("d", 1)  # an int fill of a 'd' column: the Python method
        return ring

    answers = run_both(make, [*filling(12), (15, 1.0, 1), (16, 2.0, 2), (30, 3.0, 3),
                              (9, 4.0, 4)])
    assert answers[:12] == [*range(8), *range(4)]
    assert answers[12:] == [7, 0, 6, 1]


@pytest.mark.parametrize("n_columns", [15, 16, 17, 40])
def test_rings_of_many_columns_agree(n_columns: int) -> None:
    """The C path keeps each column's array and fill in a stack array of 16 entries: a ring
    of more columns is the Python method's (never a write past those entries); fewer, C's."""
    def make() -> PendingRing:
        ring = PendingRing(8)
        for k in range(n_columns):
            if k % 3 == 0:
                ring.add_column("b", k % 100)
            else:
                ring.add_column("d", k + 0.5 if k % 3 == 1 else math.nan)
        return ring

    answers = run_both(make, [*filling(12), (30, 3.0, 3)])
    assert answers == [*range(8), *range(4), 6]


def test_skipped_slots_then_appends_agree() -> None:
    # an owner that remembers some decisions only: slot 5 grows the ring, then 6 is an append
    run_both(tracker_ring, [(5, 0.5, 1), (6, 0.5, 2), (3, 0.5, 3), (13, 1.0, 4), (7, 1.0, 5)])


def test_restores_that_shrink_or_grow_the_ring_agree() -> None:
    full = PendingRing(8)
    full.add_column("b", 0)
    full.add_column("d", math.nan)
    for _ in range(4):
        full.add_column("d", 0.0)
    for seq in range(10):
        full.remember(seq, float(seq), seq)
    fuller, smaller = full.dump(), None
    part = tracker_ring()
    for seq in range(3):
        part.remember(seq, float(seq), seq)
    smaller = part.dump()
    run_both(tracker_ring, [
        *filling(5),
        lambda r: r.load(fuller), (10, 9.0, 1), (11, 9.5, 2),  # grown to 8: overwrites
        lambda r: r.load(smaller), (3, 10.0, 3), (4, 10.5, 4),  # shrunk to 3: appends again
        (9, 11.0, 5),  # slot 1 in place; then a skip after a shrink
        lambda r: r.clear(2), (2, 12.0, 6), (3, 12.5, 7), (12, 13.0, 8),
        lambda r: r.clear(0), (0, 14.0, 9), (8, 15.0, 10),
    ])


HOSTILE: list[tuple[Any, Any, Any]] = [
    (0, 0.5, 10), (1, math.nan, 11), (2, math.inf, 12), (3, -1e300, -4),  # a negative row
    (2**63 - 1, 1.0, 0),  # the last C integer: slot 7
    (2**63, 1.0, 0), (2**70, 1.0, 0), (-1, 1.0, 0), (-2**70, 1.0, 0),  # past it, negative
    (True, 1.0, 0), (4.0, 1.0, 0), ("5", 1.0, 0), (None, 1.0, 0),  # not an int number
    (4, 3, 0), (4, True, 0), (5, "now", 0), (5, None, 0), (6, 10**400, 0),  # times
    (6, -0.0, 2**63), (6, 1.0, -2**63 - 1), (6, 1.0, 2**64), (7, 1.0, "r"),  # rows
    (7, 1.0, 2.5), (7, 1.0, None), (8, 1.0, True), (9, 5e-324, 2**63 - 1),
]


@pytest.mark.parametrize("layout", ["tracker", "ab"])
def test_hostile_numbers_times_and_rows_agree(layout: str) -> None:
    def make() -> PendingRing:
        ring = tracker_ring() if layout == "tracker" else PendingRing(8)
        if layout == "ab":
            ring.add_column("d", 0.0)
        return ring

    # while the ring fills (appends) and once full (overwrites)
    run_both(make, HOSTILE)
    run_both(make, [*filling(8), *HOSTILE])


def _fills(fill: Any) -> Callable[[], PendingRing]:
    def make() -> PendingRing:
        ring = PendingRing(4)
        ring.add_column("d", 0.0)
        col = ring.add_column("b", 0)
        ring._columns[1] = (col, fill)  # add_column refuses it: set behind its back
        return ring
    return make


@pytest.mark.parametrize("fill", [127, -128, 128, -129, 2**70, True, 1.5, "x"])
def test_fills_a_column_cannot_hold_agree(fill: Any) -> None:
    run_both(_fills(fill), filling(6))


def _replace(name: str, value: Any) -> Callable[[PendingRing], None]:
    def step(ring: PendingRing) -> None:
        setattr(ring, name, value() if callable(value) else value)
    return step


@pytest.mark.parametrize("name,value", [
    ("seq", lambda: array("b", [-1] * 3)),  # another typecode: never written as long longs
    ("seq", lambda: [-1, -1, -1]), ("time", lambda: array("f", [0.0] * 3)),
    ("time", lambda: array("d", [0.0] * 9)),  # longer than seq
    ("row", lambda: array("q", [0])),  # shorter than seq
    ("row", lambda: array("i", [0, 0, 0])), ("row", None),
    ("capacity", 0), ("capacity", -3), ("capacity", 2**70), ("capacity", 2.0),
    ("capacity", True), ("capacity", "8"),
    ("_columns", lambda: ()), ("_columns", lambda: [(array("d", [0.0] * 3),)]),
    ("_columns", lambda: [[array("d", [0.0] * 3), 0.0]]), ("_columns", lambda: [None]),
    ("window", -1.0),
])
def test_replaced_parts_agree(name: str, value: Any) -> None:
    run_both(tracker_ring, [*filling(3), _replace(name, value), *filling(10, 3)])


def test_aliased_arrays_and_a_column_listed_twice_agree() -> None:
    def alias_row(r: PendingRing) -> None:
        r.row = r.seq

    def alias_time(r: PendingRing) -> None:
        r._columns.append((r.time, 9.5))

    def twice(r: PendingRing) -> None:
        r._columns.append(r._columns[1])

    for alias in (alias_row, alias_time, twice):
        run_both(tracker_ring, [alias, *filling(12)])
        run_both(tracker_ring, [*filling(8), alias, *filling(6, 8)])


@pytest.mark.parametrize("part", ["seq", "time", "row", "column"])
def test_exported_buffers_refuse_to_grow_as_the_array_does(part: str) -> None:
    views: list[memoryview] = []

    def export(r: PendingRing) -> None:
        target = r._columns[1][0] if part == "column" else getattr(r, part)
        views.append(memoryview(target))

    def release(r: PendingRing) -> None:
        for v in views:
            v.release()
        views.clear()

    # while the ring fills the arrays' own BufferError (nothing moved under the view); once
    # released, appends; once full, overwrites in place under a view
    answers = run_both(tracker_ring, [*filling(2), export, *filling(2, 2), release,
                                      *filling(6, 2), export, *filling(4, 8), release])
    assert answers[3][0] == "BufferError"


def test_a_ring_whose_init_never_ran_a_subclass_and_a_duck_agree() -> None:
    run_both(lambda: object.__new__(PendingRing), [(0, 0.5, 1), (1, 0.5, 2)])

    class Sub(PendingRing):
        __slots__ = ()

    def sub() -> Sub:
        ring = Sub(4)
        ring.add_column("d", 0.0)
        return ring

    run_both(sub, filling(6))

    class Duck:
        def __init__(self) -> None:
            self.capacity, self._columns = 4, []
            self.seq, self.time, self.row = array("q"), array("d"), array("q")

    run_both(Duck, filling(6))


# -- through the decision tracker's compiled open -------------------------------------------
class PythonRing(PendingRing):
    """A ring whose remember is the Python method (the all-Python side of the tracker runs)."""

    __slots__ = ()
    remember = PY_REMEMBER


def _tracker(capacity: int) -> DecisionTracker:
    training = Training(0, ((1, 0.5),), "zero", "binary", 0.0, 3)
    return DecisionTracker(3, ["any", "mean", "sum"], capacity, training)


def tracker_state(t: DecisionTracker) -> str:
    return repr((state(t.ring), list(zip(t.groups.keys, t.groups.sums)), t.counters,
                 t._unit_last))


def open_both(capacity: int, steps: list[Any]) -> list[Any]:
    """``steps`` (``open`` arguments, or a function applied to the tracker) on two trackers:
    the installed ``open`` and ring, and the Python ``open`` on a ring whose ``remember`` is
    the Python method; equal answers and state after every step (asserted). The answers."""
    fast, slow = _tracker(capacity), _tracker(capacity)
    slow.ring.__class__ = PythonRing
    return compare(fast, slow, steps, DecisionTracker.open, PY_OPEN, tracker_state)


def opens(n: int, start: int = 0) -> list[tuple[Any, ...]]:
    return [(seq, seq % 3, 0, (), seq % 2, f"u{seq % 5}", seq * 0.5)
            for seq in range(start, start + n)]


def test_tracker_open_fills_wraps_and_restores_like_the_python_methods() -> None:
    smaller = _tracker(8)
    for args in opens(3):
        smaller.open(*args)
    small_ring = smaller.ring.dump()
    open_both(8, [
        *opens(12),  # fills (appends in C), wraps (overwrites in C)
        (20, 1, 0, (), 0, "u", 1.0),  # slot 4 in place
        lambda t: t.ring.load(small_ring), *opens(3, 3),  # shrunk: appends again
        (13, 2, 0, (), 0, "u", 2.0),  # slot 5 skips 3 slots: the ring grows (Python)
        lambda t: t.ring.clear(2), *opens(4, 2),
    ])


def test_tracker_open_with_hostile_values_and_exported_buffers_agrees() -> None:
    views: list[memoryview] = []

    def export(t: DecisionTracker) -> None:
        views.append(memoryview(t.ring.time))

    def release(t: DecisionTracker) -> None:
        for v in views:
            v.release()
        views.clear()

    answers = open_both(4, [
        *opens(2), export, *opens(2, 2), release,  # BufferError while filling
        *opens(2, 2),
        (4, 0, 0, (), 0, "u", math.nan), (5, 1, 0, (), 0, "u", 1e300),
        (2**63 - 1, 2, 0, (), 0, "u", -math.inf), (2**63, 0, 0, (), 0, "u", 1.0),
        (7, 0, 0, (), 0, "u", 3), (8, 1, 0, (), 0, "\ud800", 4.0),
        export, *opens(4, 9), release,  # full: overwrites under a view
    ])
    assert answers[3][0] == "BufferError"


def test_tracker_open_sees_columns_changed_after_its_cache_was_filled() -> None:
    """The tracker's compiled open keeps the ring's columns as last checked (a ColumnCache,
    store/columns_c.pxd): after it has run, a column tuple replaced (another fill, one a 'b'
    column cannot hold, another array), the list replaced, a column array shortened or one
    exporting a buffer while the ring fills must give what the Python methods give."""
    views: list[memoryview] = []

    def refill(k: int, fill: Any) -> Callable[[DecisionTracker], None]:
        def step(t: DecisionTracker) -> None:
            col, _ = t.ring._columns[k]
            t.ring._columns[k] = (col, fill)
        return step

    def new_array(t: DecisionTracker) -> None:  # the x column of metric 0, as a new array
        col, fill = t.ring._columns[2]
        t.ring._columns[2] = (array("d", col), fill)

    def new_list(t: DecisionTracker) -> None:
        t.ring._columns = list(t.ring._columns)

    def shorten(t: DecisionTracker) -> None:
        del t.ring._columns[1][0][2:]

    def export(t: DecisionTracker) -> None:
        views.append(memoryview(t.ring._columns[3][0]))

    def release(t: DecisionTracker) -> None:
        for v in views:
            v.release()
        views.clear()

    answers = open_both(8, [
        *opens(3),  # the cache filled while the ring fills
        export, *opens(1, 3), release, *opens(1, 3),  # a column exports: BufferError
        refill(1, 2.5), *opens(2, 4),  # 'd' fill 2.5 from now on
        refill(0, 300), *opens(1, 6),  # a 'b' fill out of range: the Python method
        refill(0, 1), *opens(2, 7),  # wraps with fill 1
        new_array, *opens(2, 9), new_list, *opens(2, 11),
        shorten, *opens(4, 13),  # slot 5: past the shortened column (IndexError)
    ])
    assert answers[4][0] == "BufferError"
    assert "IndexError" in [a[0] for a in answers[-4:] if isinstance(a, tuple)]


@pytest.mark.parametrize("nth", range(1, 5))
def test_a_finalizer_changing_the_columns_while_the_cache_copies_them(nth: int) -> None:
    """A finalizer run by the cyclic GC at the open's ``nth`` allocation of a GC-tracked
    object replaces a column array, after the columns changed (so the open copies the list
    for its cache). When the swap comes before the decision is written, the ring's columns
    as they are afterwards must hold the decision's fills at its slot (a write to the array
    checked before the swap would lose them, into an array the ring let go); after it, the
    new array is the finalizer's. The first allocations are the cache's copy of the list: made
    after the checks (the first version), the GC it runs swaps a checked column before the
    write, and cases 1-3 fail; made before every check, they pass."""
    import gc

    t = _tracker(8)
    for args in opens(8):
        t.open(*args)  # a full ring, the cache filled
    ring = t.ring
    col1, fill1 = ring._columns[1]
    ring._columns[1] = (col1, float(fill1))  # a new tuple: the next open copies the list
    ran = []

    class Swap:
        def __del__(self) -> None:
            ran.append(ring.seq[3] == 11)  # whether the decision was written already
            col, fill = ring._columns[3]
            new = array("d", col)
            new[3] = 12345.0  # not the fill: a write to the old array would leave it
            ring._columns[3] = (new, fill)

    op, args = t.open, (11, 0, 0, (), 0, "u", 5.5)  # slot 3 (the bound method made here)
    threshold = gc.get_threshold()
    gc.collect()
    cycle = Swap()
    cycle.self = cycle  # type: ignore[attr-defined]
    del cycle
    gc.set_threshold(gc.get_count()[0] + nth - 1)  # the GC runs at the open's nth allocation
    try:
        op(*args)
    finally:
        gc.set_threshold(*threshold)
    gc.collect()
    assert ran
    if not ran[0]:  # replaced before the decision was written: the new arrays hold it
        for col, fill in ring._columns[2:]:  # the metrics' x and y (train, r: set by open)
            assert col[3] == fill, (nth, col, fill)
