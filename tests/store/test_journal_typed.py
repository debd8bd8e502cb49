"""The journal's typed entries (``AutoJournal.typed``, store/columns_c.pyx ``EntryBuffer``): the
compiled middleware's C records of finished requests, folded before the list's entries.

Matrix cells: memory store; one process; A/B and bandit mode (the decision tracker takes the
folded entries too); 3 variants; user level; a ring that wraps; the compiled fold and the Python
twin's fold over the same split of entries; hostile input (values the C records cannot hold go
to the list; Python code running in the middle of a fold appends more entries or folds again);
the default clock (C) and an injected timer.

The histogram slot of a latency (``bisect_left(EDGES_MS, x)``) is found in C through a table of
1/64-octave buckets instead of a bisection; it is checked against ``bisect.bisect_left`` itself
on every edge, both neighbours of every edge, special values and 200,000 random latencies.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import random
from typing import Any

import pytest

from modelrouter.config.extensions import compiled
from modelrouter.store.histogram import EDGES_MS
from modelrouter.store.journal import AutoJournal
from tests.asgi._attack import fold_run, make_router

BUILT = bool(compiled()) and all(compiled().values())
pytestmark = pytest.mark.skipif(not BUILT, reason="compiled twins not built on this machine")

def serve(router: Any, requests: list[tuple[str, str]]) -> None:
    """GET each ``(path, unit id)`` through ``router``, one after the other."""
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        return None

    async def go() -> None:
        for path, unit in requests:
            await router({"type": "http", "path": path, "method": "GET", "query_string": b"",
                          "headers": [(b"x-user-id", unit.encode())]}, receive, send)

    asyncio.run(go())


ENTRIES: dict[str, list[Any]] = {
    "plain": [(99 - i % 40, 0.1 * i + 1e-7, float(i % 3 == 0)) for i in range(300)],
    "evicted-and-negative": [(0, 1.0, 0.0), (36, 2.0, 1.0), (-1, 5.0, 0.0), (99, 1.0, 0.0)],
    "nan-inf-1e300": [(99, float("nan"), 0.0), (98, float("inf"), 1.0), (97, -float("inf"), 0.0),
                      (96, 1e300, 1.0), (95, -1e300, 0.0), (94, 5e-324, 0.0)],
    "on-the-edges": [(99 - i % 30, e, 0.0) for i, e in enumerate(EDGES_MS[::37])],
    # typed entries and list entries in one batch: the list's (values a C record cannot
    # hold) are folded after every typed one, in both twins
    "mixed": [(99, 0.5, 0.0), (98, 7, 1), (97, 0.25, 1.0), (2**70, 1.0, 0.0), (96, "5", 0.0),
              (99, 0.75, 0.0)],
    "mixed-then-raise": [(99, 0.1, 0.0), (98, 0.2, 0.0), (99, "5", 0.0), (98, 1.0, 0.0)],
    "error-2": [(99, 1.0, 2.0), (98, 1.0, -1.0)],
}


@pytest.mark.parametrize("bandit", [False, True], ids=["ab", "bandit"])
@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_typed_entries_fold_as_the_python_twin(name: str, bandit: bool) -> None:
    entries = ENTRIES[name]
    assert (fold_run(entries, True, bandit, typed=True)
            == fold_run(entries, False, bandit, typed=True))


@pytest.mark.parametrize("bandit", [False, True], ids=["ab", "bandit"])
def test_typed_and_tuple_entries_give_the_same_columns(bandit: bool) -> None:
    """The same valid entries as C records or as the list's tuples: the same sums, histogram
    and tracker (the order within each kind is kept; all of them here are of one kind)."""
    entries = ENTRIES["plain"]
    as_records = fold_run(entries, True, bandit, typed=True)
    as_tuples = fold_run(entries, True, bandit)
    assert as_records == as_tuples
    assert "'error': None" in as_records


def test_the_buffer_grows_takes_and_keeps_its_order() -> None:
    journal = AutoJournal(8)
    buf = journal.typed
    for i in range(1_000):  # past the first 64 and several doublings
        buf.append(i, i * 0.5, float(i % 2))
    assert len(buf) == journal.pending() == 1_000
    taken = buf.take()
    assert taken == [(i, i * 0.5, float(i % 2)) for i in range(1_000)]
    assert len(buf) == 0 and buf.take() == []
    with pytest.raises(OverflowError):
        buf.append(2**63, 1.0, 0.0)
    with pytest.raises(TypeError):
        buf.append(1, "x", 0.0)
    assert len(buf) == 0  # a refused append wrote nothing


class _AppendsOnAdd(float):
    """A latency sum that, when the fold adds to it by Python's addition, appends entries to
    the journal (another thread finishing requests) or folds it again (a re-entrant fold)."""

    hook: Any = None

    def __add__(self, other: Any) -> Any:
        if _AppendsOnAdd.hook is not None:
            hook, _AppendsOnAdd.hook = _AppendsOnAdd.hook, None
            hook()
        return float(self) + other


@pytest.mark.parametrize("reenter", [False, True], ids=["append", "refold"])
def test_entries_appended_during_a_fold_are_folded_once(reenter: bool) -> None:
    """Python code runs in the middle of a compiled fold (a variant's latency sum that is
    not a float) and appends typed entries, or folds the journal again: every entry is
    applied exactly once, none is lost, and the buffers are neither leaked nor freed twice
    (the test process would crash)."""
    r = make_router(max_pending=64)
    exp = r.experiment
    seqs = [exp.route_checked(f"u{i}")[1] for i in range(20)]
    store: Any = exp.store
    store.fold_journal()
    journal = store.journal
    args = (store._ring_seq, store._ring_row, store.max_pending, store._units, store._hist,
            store._hist_sum, store._decisions, store._auto)

    def during() -> None:
        for seq in seqs[10:]:
            journal.typed.append(seq, 2.0, 0.0)
        if reenter:
            journal.fold(*args)

    for k in range(len(store._hist_sum)):
        store._hist_sum[k] = _AppendsOnAdd(store._hist_sum[k])
    _AppendsOnAdd.hook = during
    for seq in seqs[:10]:
        journal.typed.append(seq, 1.0, 0.0)
    with store._lock:
        journal.fold(*args)
    assert len(journal.typed) == (0 if reenter else 10)
    store.fold_journal()  # the rest, if any
    units = store.snapshot().units
    assert units is not None
    assert units.y["latency_ms"].sum() == 20 and units.x["latency_ms"].sum() == 30.0
    for _ in range(3):  # the buffers stay usable after the swap
        journal.typed.append(seqs[0], 1.0, 0.0)
        store.fold_journal()
    assert store.snapshot().units.y["latency_ms"].sum() == 23


def test_the_default_clock_writes_records_and_an_odd_timer_writes_tuples() -> None:
    """Requests through the compiled middleware: with a timer returning floats each finished
    request is one C record; with one returning numpy floats (a float subclass: its
    arithmetic is numpy's) the latency is not a float, and the entry is the list's tuple, as
    the Python method makes it."""
    np = pytest.importorskip("numpy")
    from modelrouter import ModelRouter, RouterConfig  # noqa: PLC0415

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    ticks = iter(range(10**6))
    for timer, kind in ((None, "typed"), (lambda: np.float64(next(ticks)), "list")):
        r = ModelRouter(app, {"a": 0, "b": 1}, RouterConfig(salt="t", max_pending=4096),
                        **({} if timer is None else {"timer": timer}))
        journal = r.experiment.store.journal

        serve(r, [("/", f"u{i}") for i in range(5)])
        assert (len(journal.typed), len(journal.entries)) == ((5, 0) if kind == "typed"
                                                               else (0, 5)), kind
        units = r.experiment.store.snapshot().units
        assert units is not None and units.y["latency_ms"].sum() == 5


def test_histogram_slot_is_bisect_left() -> None:
    from modelrouter.store.columns_c import histogram_slot  # noqa: PLC0415

    values = [float("nan"), float("inf"), -float("inf"), 0.0, -0.0, -1.0, 5e-324, 2.2e-308,
              1e-300, 1e300, -1e300, 1.7976931348623157e308]
    for e in EDGES_MS:
        values += [e, math.nextafter(e, 0.0), math.nextafter(e, math.inf)]
    rng = random.Random(17)
    values += [10 ** rng.uniform(-4, 7) for _ in range(200_000)]  # 1e-4 ms to 1e7 ms
    wrong = [x for x in values if histogram_slot(x) != bisect.bisect_left(EDGES_MS, x)]
    assert wrong == []


# -- a finished request whose decision is no longer pending: counted, never silent -------------
@pytest.mark.parametrize("compiled_fold", [True, False], ids=["compiled", "python"])
@pytest.mark.parametrize("typed", [True, False], ids=["record", "tuple"])
def test_an_entry_without_a_pending_decision_is_counted(compiled_fold: bool,
                                                        typed: bool) -> None:
    """Decisions 99 down to 36 are pending in a ring of 64; 0 and 35 were evicted, -1 was
    never issued: three entries skipped and counted by both twins' folds, from either kind
    of entry, and reported once in the snapshot's losses."""
    entries = [(0, 1.0, 0.0), (35, 2.0, 1.0), (-1, 5.0, 0.0), (99, 1.0, 0.0), (98, 3.0, 0.0)]
    out = fold_run(entries, compiled_fold, False, typed=typed)
    assert "'error': None" in out
    r = make_router(max_pending=64)
    exp = r.experiment
    seqs = [exp.route_checked(f"u{i % 30}")[1] for i in range(100)]
    store: Any = exp.store
    journal = store.journal
    for seq, latency, error in entries:
        (journal.typed.append if typed else lambda *e: journal.entries.append(e))(
            seq, latency, error)
    assert seqs[0] == 0 and seqs[-1] == 99
    snap = store.snapshot()
    assert snap.losses == {"unattributed_requests": 3}
    assert snap.units is not None and snap.units.y["latency_ms"].sum() == 2
    assert snap.n_units == 30


def test_a_request_outlived_by_max_pending_decisions_is_reported() -> None:
    """End to end: the app makes 100 other decisions (a ring of 64) before it answers, as a
    long stream under heavy traffic would; the request's latency cannot be attributed, and
    the analysis says so instead of silently counting one request fewer."""
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            for i in range(100):
                r.experiment.route_checked(f"other-{i}")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    r = make_router(app, max_pending=64)
    exp = r.experiment

    serve(r, [("/slow", "slow"), ("/fast", "fast")])
    snap = exp.store.snapshot()
    assert snap.losses == {"unattributed_requests": 1}
    assert snap.units is not None and snap.units.y["latency_ms"].sum() == 1
    notes = r.analysis().compare("latency_ms", "b").notes
    assert any("1 finished request's latency and error were not recorded" in n for n in notes)


def test_request_level_counts_the_same_drop() -> None:
    r = make_router(max_pending=64, level="request")
    exp = r.experiment
    first = exp.route_checked("u")[1]
    for i in range(100):
        exp.route_checked(f"u{i}")
    store: Any = exp.store
    store.record_auto(first, 1.0, 0.0)
    assert store.snapshot().losses == {"unattributed_requests": 1}


@pytest.mark.parametrize("compiled_fold", [True, False], ids=["compiled", "python"])
def test_each_fold_returns_what_it_skipped(compiled_fold: bool) -> None:
    from modelrouter.config.extensions import python_method  # noqa: PLC0415

    r = make_router(max_pending=64)
    exp = r.experiment
    for i in range(100):
        exp.route_checked(f"u{i % 30}")
    store: Any = exp.store
    store.fold_journal()
    journal = store.journal
    journal.typed.append(0, 1.0, 0.0)  # evicted
    journal.typed.append(99, 1.0, 0.0)  # pending
    journal.entries.extend([(-1, 1.0, 0.0), (2**70, 1.0, 0.0), (98, 2.0, 1.0), (35, "x", 0.0)])
    fold = journal.fold if compiled_fold else python_method(AutoJournal, "fold").__get__(journal)
    with store._lock:
        lost = fold(store._ring_seq, store._ring_row, store.max_pending, store._units,
                    store._hist, store._hist_sum, store._decisions, store._auto)
    assert lost == 4  # 0, -1, 2**70 and 35 (evicted before its value's type matters)
