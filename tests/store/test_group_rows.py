"""Group rows as ``array('d')`` (store/rows.py): the compiled ``add_to_pair`` and the decision
tracker's compiled ``apply`` add to the row's doubles in place, bit for bit as the Python twin
does, and every reader (snapshot, dump and load, a remote store's deltas) sees the same sums.

Cells: memory store (request level groups, bandit decision groups); one worker; A/B and
bandit; 2 and 3 variants; user and request level; fresh and restored from a dump; valid and
hostile input (NaN, infinities, 1e300, -0.0, subnormals, ints and bools as values, negative
and huge slots and metrics, rows of another typecode or too short, an ``any_`` whose truth
test raises)."""

from __future__ import annotations

import math
import random
from array import array
from typing import Any

import pytest

from modelrouter import ModelRouter, RouterConfig
from modelrouter.config.extensions import compiled, python_function
from modelrouter.store import rows
from modelrouter.store.rows import GroupTable, new_sums_row

BUILT = bool(compiled()) and all(compiled().values())
needs_build = pytest.mark.skipif(not BUILT, reason="compiled twins not built on this machine")
SPECIALS = [math.nan, math.inf, -math.inf, 1e300, -1e300, -0.0, 0.0, 5e-324, 1, True]


class Truth:
    """An ``any_`` flag whose truth test raises: nothing may be written before it is asked."""

    def __bool__(self) -> bool:
        raise ZeroDivisionError("truth")


def outcome(fn: Any, xs: array[float], ys: array[float], slot: Any, row: array[Any], m: Any,
            value: Any, any_: Any) -> Any:
    a, b, r = array("d", xs), array("d", ys), array(row.typecode, row)
    try:
        fn(a, b, slot, r, m, value, any_)
    except Exception as exc:  # noqa: BLE001 - the same exception type is the claim
        return type(exc), a.tobytes(), b.tobytes(), bytes(array("d", list(r)))
    return a.tobytes(), b.tobytes(), bytes(array("d", list(r)))


@needs_build
def test_add_to_pair_on_array_rows_matches_the_python_function_bit_for_bit() -> None:
    """3,000 random and hostile calls: the same columns and row to the bit, or the same
    exception with nothing written."""
    py = python_function("modelrouter.store.rows", "add_to_pair")
    assert rows.add_to_pair is not py
    rnd = random.Random(11)
    for trial in range(3_000):
        xs = array("d", [rnd.gauss(0, 3) for _ in range(4)])
        ys = array("d", [float(rnd.randrange(3)) for _ in range(4)])
        width = rnd.choice([11, 11, 11, 16, 6])  # 2 metrics; 3; one metric short
        row: Any = array(rnd.choice("ddddf"), [rnd.random() for _ in range(width)])
        value = rnd.choice(SPECIALS) if trial % 3 == 0 else rnd.gauss(0, 1e3)
        slot = rnd.choice([rnd.randrange(-5, 6), 2**62, -2**63, 2**70])
        m = rnd.choice([0, 1, 2, -1, 2**40, 2**64])
        any_ = rnd.choice([True, False, 0, 1, Truth()])
        results = [outcome(fn, xs, ys, slot, row, m, value, any_) for fn in (py, rows.add_to_pair)]
        assert results[0] == results[1], (trial, slot, m, value, any_, row.typecode, width)


def test_group_table_rows_are_doubles_through_take_and_of() -> None:
    """A row is an ``array('d')`` when created, after a take zeroes it and when rebuilt from
    saved sums; copies and takes hand out plain lists."""
    table: GroupTable[str] = GroupTable(2)
    g = table.row_of("k")
    assert type(table.sums[g]) is array and table.sums[g].typecode == "d"
    rows.add_to_pair(array("d", [0.0]), array("d", [0.0]), 0, table.sums[g], 1, 2.5, False)
    table.sums[g][0] += 1.0
    taken = table.take()
    assert taken == [("k", [1.0, 0, 0, 0, 0, 0, 2.5, 1.0, 6.25, 1.0, 2.5])]
    assert type(taken[0][1]) is list
    assert list(table.sums[g]) == [0.0] * 11 and type(table.sums[g]) is array
    rebuilt = GroupTable.of(2, ["k"], [[float(i) for i in range(11)]])
    assert type(rebuilt.sums[0]) is array and list(rebuilt.sums[0]) == list(map(float, range(11)))
    assert new_sums_row(3).tobytes() == bytes(8 * 16)


def route_and_record(router: ModelRouter, n: int, seed: int) -> dict[int, list[float]]:
    """``n`` routed requests with their latency, error, some clicks and (when declared) some
    revenue; per variant, the sums of latency, errors and revenue, added in request order."""
    rnd = random.Random(seed)
    exp = router.experiment
    store: Any = exp.store
    sums: dict[int, list[float]] = {}
    for i in range(n):
        d, seq = exp.route_checked(f"u{rnd.randrange(50)}")
        latency = rnd.choice([rnd.expovariate(0.1), 1e150, 0.0, 5e-324, -0.0])
        error = float(rnd.random() < 0.1)
        store.record_auto(seq, latency, error)
        s = sums.setdefault(store.variants.index(d.variant), [0.0, 0.0, 0.0])
        s[0] += latency
        s[1] += error
        if i % 3 == 0:
            exp.record(d, "click", rnd.random() < 0.3)
        if "revenue" in store.metric_index and i % 2 == 0:  # twice: a sum, not a max
            for value in (rnd.randrange(1, 9), rnd.randrange(1, 9)):
                exp.record(d, "revenue", value)
                s[2] += value
    return sums


def router(level: str, mode: str, variants: int, **metrics: Any) -> ModelRouter:
    cfg = RouterConfig(experiment="rows", salt="rows", metrics={"click": "binary", **metrics},
                       level=level, mode=mode,  # type: ignore[arg-type]
                       reward="click" if mode == "bandit" else None)
    return ModelRouter(None, dict.fromkeys("abc"[:variants], 0), cfg,  # type: ignore[arg-type]
                       rng=random.Random(5))


@pytest.mark.parametrize("level", ["user", "request"])
@pytest.mark.parametrize("variants", [2, 3])
def test_rows_survive_a_dump_and_keep_adding(level: str, variants: int) -> None:
    """memory x A/B x 2 and 3 variants x user and request level x restored: the groups and
    the analysis are the same after a dump and load, and at user level (variants by hash) both
    go on adding alike."""
    one = router(level, "ab", variants)
    route_and_record(one, 400, 3)
    store: Any = one.experiment.store
    header, arrays = store.dump()
    two = router(level, "ab", variants)
    other: Any = two.experiment.store
    other.load(header, arrays)
    for step in range(2):
        assert [list(r) for r in other._groups.sums] == [list(r) for r in store._groups.sums]
        assert all(type(r) is array for r in other._groups.sums)
        for metric in ("click", "latency_ms", "error"):
            assert repr(one.analysis().summary(metric)) == repr(two.analysis().summary(metric))
        if step == 0 and level == "user":  # (request level draws each request's variant)
            route_and_record(one, 100, 4)
            route_and_record(two, 100, 4)


@pytest.mark.parametrize("level", ["user", "request"])
@pytest.mark.parametrize("variants", [2, 3])
def test_the_bandits_decision_rows_hold_every_latency_and_error(level: str,
                                                                 variants: int) -> None:
    """memory x bandit x 2 and 3 variants x user level (the journal's fold applies to the
    tracker) and request level (at once): per variant, the decision rows' count, latency sum
    and error sum equal the values sent, added in the same order, to the bit; a metric
    recorded twice per decision is summed (revenue), not maxed as an "any" metric would be."""
    r = router(level, "bandit", variants, revenue="continuous")
    sent = route_and_record(r, 600, 9)
    store: Any = r.experiment.store
    store.snapshot()  # folds the journal
    tracker = store._decisions
    lat, err = store.metric_index["latency_ms"], store.metric_index["error"]
    rev = store.metric_index["revenue"]
    got: dict[int, list[float]] = {}
    for key, row in zip(tracker.groups.keys, tracker.groups.sums):
        assert type(row) is array and row.typecode == "d"
        g = got.setdefault(key[0], [0.0, 0.0, 0.0, 0.0])
        g[0] += row[0]
        g[1] += row[1 + 5 * lat]
        g[2] += row[1 + 5 * err]
        g[3] += row[1 + 5 * rev]  # integers: exact in any order
    assert sum(g[0] for g in got.values()) == 600
    assert {v: g[1:] for v, g in got.items()} == sent


@pytest.mark.parametrize("shrink", ["xs", "ys", "row to 8", "row to 9", "row to 10"])
def test_an_any_flag_whose_truth_test_resizes_an_array_agrees(shrink: str) -> None:
    """An ``any_`` whose ``__bool__`` shortens an array after the compiled path checked the
    indices: no write past an array's end; the same writes and the same IndexError as the
    Python twin's lines (which write x and y, then the row's sums one by one)."""
    py = python_function("modelrouter.store.rows", "add_to_pair")
    results = []
    for fn in (py, rows.add_to_pair):
        xs, ys = array("d", [1.0, 2.0, 3.0, 4.0]), array("d", [1.0] * 4)
        row = array("d", [float(i) for i in range(11)])

        class Shrink:
            def __init__(self, xs: array[float], ys: array[float], row: array[float]) -> None:
                self.arrays = xs, ys, row

            def __bool__(self) -> bool:
                xs, ys, row = self.arrays
                if shrink == "xs":
                    del xs[2:]
                elif shrink == "ys":
                    del ys[2:]
                else:
                    del row[int(shrink.split()[-1]):]
                return False

        with pytest.raises(IndexError):
            fn(xs, ys, 3, row, 1, 2.5, Shrink(xs, ys, row))  # metric 1: the row's sums 6..10
        results.append((xs.tobytes(), ys.tobytes(), row.tobytes()))
    assert results[0] == results[1]
