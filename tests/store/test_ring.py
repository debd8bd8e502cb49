"""PendingRing on its own: wraparound, the attribution window, never-issued and negative
decision numbers, skipped slots, per-slot columns, clear, dump/load."""

from __future__ import annotations

from array import array

import pytest

from modelrouter.exceptions import UnknownDecisionError
from modelrouter.store.ring import EMPTY, PendingRing, RingState


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_wraparound_overwrites_the_oldest_decision() -> None:
    ring = PendingRing(4)
    slots = [ring.remember(seq, float(seq), 100 + seq) for seq in range(10)]
    assert slots == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert len(ring) == 4 and ring.capacity == 4
    assert ring.seq.tolist() == [8, 9, 6, 7]
    assert ring.row.tolist() == [108, 109, 106, 107]
    assert ring.time.tolist() == [8.0, 9.0, 6.0, 7.0]
    assert ring.find(9) == 1 and ring.slot_of(6) == 2
    for evicted in (0, 3, 5):
        assert ring.find(evicted) == -1 and not ring.alive(evicted)
        with pytest.raises(UnknownDecisionError) as info:
            ring.slot_of(evicted)
        assert str(info.value.args[0]) == (
            f"decision {evicted} is unknown or no longer pending (the store keeps the last 4)")


def test_attribution_window() -> None:
    clock = Clock()
    ring = PendingRing(8, window=60.0, clock=clock)
    ring.remember(0, clock.now, 0)
    clock.now += 60.0  # exactly at the window: still pending
    assert ring.slot_of(0) == 0 and ring.alive(0)
    clock.now += 0.5
    assert not ring.alive(0)
    with pytest.raises(UnknownDecisionError) as info:
        ring.slot_of(0)
    assert info.value.args[0] == "decision 0 is past the attribution window (60 s)"
    assert ring.slot_of(0, window=False) == 0  # signed tokens skip the window check
    assert PendingRing(8).alive(0) is False  # never issued; an unbounded window


@pytest.mark.parametrize("seq", [-1, -2, -5, 3, 7, 8, 1_000_000])
def test_never_issued_or_negative_numbers_are_unknown(seq: int) -> None:
    ring = PendingRing(4)
    ring.remember(0, 0.0, 0)
    ring.remember(1, 0.0, 0)
    ring.clear(4)  # four empty slots: seq -1 would land on slot 3, which holds EMPTY (-1)
    ring.remember(4, 0.0, 0)
    assert ring.seq.tolist() == [4, EMPTY, EMPTY, EMPTY]
    assert ring.find(seq) == -1
    with pytest.raises(UnknownDecisionError, match=f"decision {seq} is unknown or no longer "
                                                   r"pending \(the store keeps the last 4\)"):
        ring.slot_of(seq, window=False)


def test_skipped_slots_stay_empty_and_columns_reset_on_reuse() -> None:
    ring = PendingRing(8)
    flags = ring.add_column("b", 0)
    values = ring.add_column("d", 0.5)
    units = ring.add_objects("")
    slot = ring.remember(5, 1.0, 2)  # an owner that remembers some decisions only
    assert slot == 5 and len(ring) == 6
    assert ring.seq.tolist() == [EMPTY] * 5 + [5]
    assert values.tolist() == [0.5] * 6 and units == [""] * 6 and flags.tolist() == [0] * 6
    flags[slot], values[slot], units[slot] = 1, 9.0, "u5"
    assert ring.remember(13, 2.0, 3) == 5  # slot reused: its columns take their fill again
    assert (flags[5], values[5], units[5]) == (0, 0.5, "")
    assert ring.find(5) == -1 and ring.find(13) == 5


def test_clear_keeps_the_arrays_and_the_numbering_in_step() -> None:
    ring = PendingRing(4)
    column = ring.add_column("d", 0.0)
    seq, time, row = ring.seq, ring.time, ring.row
    for i in range(6):
        ring.remember(i, 0.0, i)
    ring.clear(6)
    assert ring.seq is seq and ring.time is time and ring.row is row  # same arrays
    assert ring.seq.tolist() == [EMPTY] * 4 and column.tolist() == [0.0] * 4
    ring.clear(2)
    assert len(ring) == 2 and len(column) == 2
    assert ring.remember(2, 0.0, 0) == 2 and len(ring) == 3  # an append, in step
    ring.clear()
    assert len(ring) == 0 and len(column) == 0


def test_dump_and_load_round_trip() -> None:
    ring = PendingRing(3, window=10.0)
    units = ring.add_objects("")
    for i in range(5):
        units[ring.remember(i, float(i), 10 * i)] = f"u{i}"
    state = ring.dump()
    other = PendingRing(3, window=10.0)
    other_units = other.add_objects("")
    seq = other.seq
    other.load(state)
    assert other.seq is seq  # rewritten in place
    assert other.seq.tolist() == [3, 4, 2] and other.row.tolist() == [30, 40, 20]
    assert other.time.tolist() == [3.0, 4.0, 2.0] and other_units == ["u3", "u4", "u2"]
    assert other.dump() == state
    ring.remember(5, 5.0, 50)  # the dump is a copy
    assert state.seq.tolist() == [3, 4, 2]


@pytest.mark.parametrize("bad, message", [
    (RingState(array("q", [0, 1, 2, 3]), array("d", [0.0] * 4), array("q", [0] * 4), ([""] * 4,)),
     "4 slots; capacity is 3"),
    (RingState(array("q", [0, 1]), array("d", [0.0]), array("q", [0, 0]), (["", ""],)),
     "differ in length"),
    (RingState(array("q", [0, 2]), array("d", [0.0] * 2), array("q", [0] * 2), (["", ""],)),
     "holds decision 2 in slot 1"),
    (RingState(array("q", [0, -3]), array("d", [0.0] * 2), array("q", [0] * 2), (["", ""],)),
     "holds decision -3 in slot 1"),
    (RingState(array("q", [0]), array("d", [0.0]), array("q", [0]), ()), "has 0 columns"),
    (RingState(array("q", [0]), array("d", [0.0]), array("q", [0]), (array("d", [0.0]),)),
     "column kinds"),
])
def test_load_refuses_a_state_that_does_not_fit_and_changes_nothing(
        bad: RingState, message: str) -> None:
    ring = PendingRing(3)
    units = ring.add_objects("")
    units[ring.remember(0, 1.0, 7)] = "u0"
    before = ring.dump()
    with pytest.raises(ValueError, match=message):
        ring.load(bad)
    assert ring.dump() == before


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PendingRing(0)
