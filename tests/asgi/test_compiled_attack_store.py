"""Adversarial tests of the memory store's compiled twins (store/hot_c.pyx): UnitTable.add,
MemoryStore.expose_unit and AutoJournal.fold against their Python methods, on hostile rows,
random runs, lane bounds, hostile journal entries, corrupt variant codes and restores.
Cells: memory store; one worker; A/B and bandit mode (the decision tracker); 3 variants; user
level; a ring that wraps; restores.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from modelrouter import RouterConfig
from modelrouter.config.extensions import compiled, python_method
from modelrouter.routing.experiment import Experiment
from modelrouter.store.journal import AutoJournal
from tests.asgi._attack import fold_run, make_router, outcome

BUILT = bool(compiled()) and all(compiled().values())
pytestmark = pytest.mark.skipif(not BUILT, reason="compiled twins not built on this machine")


# -- exposure and unit rows --------------------------------------------------------------------
ADD_ARGS: dict[str, tuple[Any, ...]] = {
    "plain": ("u", 1, 0.5, 3, 1.0, (1, 2)),
    "variant-200": ("u", 200, 0.5, 3, 1.0, (1, 2)),
    "variant--129": ("u", -129, 0.5, 3, 1.0, (1, 2)),
    "variant-float": ("u", 1.0, 0.5, 3, 1.0, (1, 2)),
    "variant-bool": ("u", True, 0.5, 3, 1.0, (1, 2)),
    "epoch-2**31": ("u", 1, 0.5, 2**31, 1.0, (1, 2)),
    "epoch-2**70": ("u", 1, 0.5, 2**70, 1.0, (1, 2)),
    "propensity-str": ("u", 1, "x", 3, 1.0, (1, 2)),
    "now-None": ("u", 1, 0.5, 3, None, (1, 2)),
    "now-10**400": ("u", 1, 0.5, 3, 10**400, (1, 2)),
    "segment-short": ("u", 1, 0.5, 3, 1.0, (1,)),
    "segment-long": ("u", 1, 0.5, 3, 1.0, (1, 2, 3)),
    "segment-70000": ("u", 1, 0.5, 3, 1.0, (1, 70000)),
    "segment-negative": ("u", 1, 0.5, 3, 1.0, (-1, 2)),
    "segment-list": ("u", 1, 0.5, 3, 1.0, [1, 2]),
    "segment-None": ("u", 1, 0.5, 3, 1.0, None),
    "segment-str": ("u", 1, 0.5, 3, 1.0, "ab"),
    "unit-unhashable": (["u"], 1, 0.5, 3, 1.0, (1, 2)),
}


@pytest.mark.parametrize("name", sorted(ADD_ARGS))
def test_hostile_unit_rows_are_added_or_refused_as_by_the_python_twin(name: str) -> None:
    """UnitTable.add's twin: the same row, or the same exception after the same appends."""
    from modelrouter.store.units import UnitTable

    python_add: Any = python_method(UnitTable, "add")
    outcomes = []
    args = ADD_ARGS[name]
    for compiled_add in (True, False):
        table = UnitTable(2, 2, (0, 1), ())
        table.add("first", 0, 0.5, 0, 0.0, (0, 0))
        got = outcome(lambda t=table: t.add(*args) if compiled_add  # noqa: B023
                       else python_add(t, *args))
        outcomes.append((got, dict(table.rows), list(table.ids), list(table.variant),
                         list(table.epoch), list(table.propensity), list(table.first_seen),
                         list(table.exposures), [list(c) for c in table.segs], table._cap))
    assert outcomes[0] == outcomes[1]


class _PlainChooser:
    """A chooser without the allocation's cached layout (the store's protocol allows it)."""

    propensities = (0.25, 0.25, 0.5)
    epoch = 9

    def choose(self, u: float) -> int:
        return 0 if u < 0.25 else (1 if u < 0.5 else 2)


def test_exposures_agree_on_a_random_run_with_restores_and_allocation_changes() -> None:
    """5 seeded runs of 400 exposures (60 units and hostile ids, a ring of 32 that wraps,
    4 allocations including a layout-less chooser, int and float times, restores)."""
    from modelrouter.routing.assignment import Allocation
    from modelrouter.store.memory import MemoryStore

    python_expose: Any = python_method(MemoryStore, "expose_unit")
    names = ("a", "b", "c")
    allocs: list[Any] = [Allocation(names, {"a": 0.2, "b": 0.3, "c": 0.5}, epoch=1),
                         Allocation(names, {"a": 0.6, "b": 0.2, "c": 0.2}, epoch=2),
                         _PlainChooser(), Allocation(names, {"a": 1.0, "b": 0.0, "c": 0.0},
                                                     epoch=3)]
    for seed in range(5):
        rnd = random.Random(seed)
        exps = [Experiment(dict.fromkeys(names, 0), RouterConfig(
            salt="expose", metrics={"click": "binary"}, max_pending=32)) for _ in range(2)]
        for step in range(400):
            if rnd.random() < 0.03:
                for exp in exps:
                    exp.store.load(*exp.store.dump())
                continue
            unit = (f"u{rnd.randrange(60)}" if rnd.random() < 0.97
                    else rnd.choice(["\u00e9", "\U0001F600" * 3, "x" * 256]))
            alloc = rnd.choice(allocs)
            now = rnd.choice([step * 0.5, float(step), step])
            a = exps[0].store.expose_unit(unit, exps[0]._bucket, alloc, (), now)
            b = python_expose(exps[1].store, unit, exps[1]._bucket, alloc, (), now)
            assert a == b, (seed, step)
        dumps = [{k: v.tolist() for k, v in exp.store.dump()[1].items()} for exp in exps]
        assert dumps[0] == dumps[1]
        assert exps[0].store.stats() == exps[1].store.stats()


@pytest.mark.parametrize("u", [0.3, 0.5, 1.0, 0.0, -0.0, float("inf"), -float("inf"),
                               float("nan"), 0.9999999999999999, -1e-300, 5, True])
def test_buckets_on_and_past_the_lane_bounds_choose_as_the_python_twin(u: float) -> None:
    from modelrouter.routing.assignment import Allocation
    from modelrouter.store.memory import MemoryStore

    python_expose: Any = python_method(MemoryStore, "expose_unit")
    alloc = Allocation(("a", "b", "c"), {"a": 0.2, "b": 0.3, "c": 0.5}, epoch=1)
    outcomes = []
    for compiled_expose in (True, False):
        store: Any = Experiment({"a": 0, "b": 1, "c": 2}, RouterConfig(
            metrics={"click": "binary"})).store
        expose: Any = (store.expose_unit if compiled_expose
                       else (lambda *args, store=store: python_expose(store, *args)))
        first = outcome(lambda: expose("u", lambda unit: u, alloc, (), 1.0))  # noqa: B023
        again = outcome(lambda: expose("u", lambda unit: u, alloc, (), 1.0))  # noqa: B023
        outcomes.append((first, again, repr(list(store._path.ubucket)), store.stats()["decisions"]))
    assert outcomes[0] == outcomes[1]


def test_the_compiled_route_takes_names_and_prefixes_of_any_type() -> None:
    """Setting ``names`` to a list (or ``_prefix`` to a non-str) once raised TypeError from the
    core's refresh (typed C fields) after the attribute was set; the Python method takes both."""
    python_route: Any = python_method(Experiment, "route_checked")
    ids = []
    for route in (Experiment.route_checked, python_route):
        exp = Experiment({"a": 0, "b": 1}, RouterConfig(salt="types",
                                                         metrics={"click": "binary"}))
        exp.names = ["x", "y"]  # type: ignore[assignment]
        exp._prefix = 7  # type: ignore[assignment]
        decision, seq = route(exp, "u1")
        ids.append((decision.decision_id, decision.variant, seq))
    assert ids[0] == ids[1] == ("70", ids[0][1], 0) and ids[0][1] in ("x", "y")


class _Count(int):
    """An int subclass with its own addition: counted by Python, not in C."""

    def __add__(self, other: object) -> Any:
        return _Count(int(self) + 2 * int(other))  # type: ignore[call-overload]


# the request counts as a restore or a test may leave them: ints of any size, and what is not an
# int (its own addition, or the error of adding 1 to it)
HOSTILE_COUNTS: list[Any] = [0, 2**62, 2**63 - 1, 2**63, 2**70, -5, True, 1.5, _Count(3), "x",
                             None]


@pytest.mark.parametrize("count", HOSTILE_COUNTS, ids=repr)
@pytest.mark.parametrize("method", ["expose_unit", "expose_decision"])
def test_hostile_request_counts_are_counted_as_by_the_python_twin(count: Any,
                                                                  method: str) -> None:
    """The exposures' ``requests[i] += 1``, done in C for an int item (store/hot_c.pyx
    ``_add_one``), against the Python methods on each kind of count."""
    from modelrouter.routing.assignment import Allocation
    from modelrouter.store.memory import MemoryStore

    python_expose: Any = python_method(MemoryStore, method)
    alloc = Allocation(("a", "b", "c"), {"a": 0.2, "b": 0.3, "c": 0.5}, epoch=1)
    outcomes, stores = [], []
    for compiled_expose in (True, False):
        store: Any = Experiment({"a": 0, "b": 1, "c": 2}, RouterConfig(
            salt="counts", metrics={"click": "binary"})).store
        stores.append(store)
        store._path.requests[:] = [count, count, count]  # (the store's own list)
        expose: Any = (getattr(store, method) if compiled_expose
                       else (lambda *a, s=store: python_expose(s, *a)))
        got = []
        for k in range(4):
            args = ((f"u{k % 2}", lambda unit: 0.1 + 0.3 * (unit == "u1"), alloc, (), 1.0)
                    if method == "expose_unit" else (f"u{k % 2}", k % 3, 0.5, 1, (), 1.0))
            got.append(outcome(lambda e=expose, a=args: e(*a)))  # type: ignore[misc]
        outcomes.append((got, [repr(c) for c in store._path.requests], store._path.seq))
    assert outcomes[0] == outcomes[1]
    if type(count) is int:  # counted in C: every exposure added one to its variant's count
        assert sum(c - count for c in stores[0]._path.requests) == 4


# -- journal fold -----------------------------------------------------------------------------
_python_fold: Any = python_method(AutoJournal, "fold")


def _np_entries() -> list[Any]:
    np = pytest.importorskip("numpy")
    return [(np.int64(99), np.float64(2.0), np.float64(1.0)), (np.int32(98), np.float32(1.5), 0)]


FOLD_ENTRIES: dict[str, Any] = {
    "negative-seq": [(-1, 5.0, 0.0), (-64, 5.0, 1.0), (99, 1.0, 0.0)],
    "nan": [(99, float("nan"), 0.0), (98, 1.0, float("nan"))],
    "inf": [(99, float("inf"), 0.0), (98, -float("inf"), 1.0)],
    "1e300": [(99, 1e300, 0.0), (98, 1e300, 1.0), (98, 1e300, 0.0)],
    "int-latency-and-error": [(99, 5, 1), (98, 7, 0)],
    "bool-error": [(99, 1.0, True)],
    "negative-error": [(99, 1.0, -1.0)],
    "evicted": [(0, 1.0, 0.0), (36, 2.0, 1.0)],
    # these once differed: the compiled fold converted the values before the eviction check
    # (an evicted entry raised and the batch was lost), took None or a str error as a C double
    # (TypeError where the twin counts the request), accepted a 4-tuple, raised OverflowError
    # on a number past a C long long (the twin skips it) and indexed by a float number
    "10**400-latency": [(99, 10**400, 0.0)],
    "10**400-latency-evicted": [(1, 10**400, 0.0), (99, 3.0, 0.0)],
    "none-latency-evicted": [(1, None, 0.0), (99, 3.0, 0.0)],
    "none-latency": [(99, None, 0.0), (98, 3.0, 0.0)],
    "none-error": [(99, 2.0, None), (98, 3.0, "1")],
    "str-latency": [(99, "5", 0.0)],
    "4-tuple": [(99, 1.0, 0.0, 9)],
    "2**70-seq": [(2**70, 1.0, 0.0), (99, 1.0, 0.0)],
    "float-seq": [(99.0, 1.0, 0.0)],
    "numpy": "numpy",
    # the compiled fold adds the variants' latency sums in C and writes them back once: a
    # Python step (or an exception) in the middle of a batch must see them written back
    # (each unit's entries share its variant: a sum held in C, then Python's addition)
    "sums-then-raise": [(99, 0.1, 0.0), (98, 0.2, 0.0), (97, 0.3, 0.0), (99, 0.4, 0.0),
                        (99, "5", 0.0), (98, 1.0, 0.0)],
    "sums-around-python": [(99, 0.1, 0.0), (99, 5, 1), (99, 0.3, 0.0), (98, 0.7, 0.0),
                           (98, 2**70, 0.0), (98, 0.9, 0.0), (97, 0.1, 0.0),
                           (2**70, 1.0, 0.0), (97, 0.2, 0.0)],
    "sums-long-batch": [(99 - i % 40, 0.1 * i + 1e-7, float(i % 3 == 0)) for i in range(300)],
}


@pytest.mark.parametrize("bandit", [False, True], ids=["ab", "bandit"])
@pytest.mark.parametrize("name", sorted(FOLD_ENTRIES))
def test_hostile_journal_entries_fold_the_same(name: str, bandit: bool) -> None:
    entries = _np_entries() if FOLD_ENTRIES[name] == "numpy" else FOLD_ENTRIES[name]
    assert fold_run(entries, True, bandit) == fold_run(entries, False, bandit)


def test_a_short_journal_entry_raises_instead_of_reading_past_the_tuple() -> None:
    """A 2-tuple entry: the compiled fold once read ``entry[2]`` past the tuple (a segfault);
    both twins now raise ValueError (the unpacking's)."""
    for compiled_fold in (True, False):
        assert "'error': 'ValueError'" in fold_run([(99, 1.0)], compiled_fold, False)


@pytest.mark.parametrize(("code", "hist_sum_len"), [(-1, None), (-3, None), (-4, None),
                                                    (3, None), (127, None), (2, 1)])
def test_a_corrupt_variant_code_folds_as_the_python_twin(code: int, hist_sum_len: int | None
                                                         ) -> None:
    """A unit whose variant code the histogram sums do not hold: the compiled fold once read
    and wrote ``hist_sum[v]`` without a bound (-1: a segfault; -3: garbage, TypeError; a
    short list: a write past its end). Now the list's own indexing, as in the twin."""
    assert (fold_run([(99, 3.0, 1.0)], True, False, code, hist_sum_len)
            == fold_run([(99, 3.0, 1.0)], False, False, code, hist_sum_len))

@pytest.mark.parametrize("extra", [0, 61, 62, 200])
def test_latency_sums_of_many_variants_fold_the_same(extra: int) -> None:
    """A histogram-sum list longer than the compiled fold holds in C (64) is added to by
    Python's addition; at or under it, in C: the same floats either way."""
    entries = [(99 - i % 40, 0.1 * i + 1e-7, 0.0) for i in range(200)]
    assert (fold_run(entries, True, False, hist_sum_extra=extra)
            == fold_run(entries, False, False, hist_sum_extra=extra))


@pytest.mark.parametrize("bandit", [False, True], ids=["ab", "bandit"])
def test_a_restore_between_append_and_fold_folds_the_same(bandit: bool) -> None:
    """Entries appended before a load are folded into the replaced tables by the load; those
    appended after it for decisions issued before it are skipped (the ring was cleared);
    decisions issued after it are folded. Both twins, A/B and bandit mode."""
    outcomes = []
    for compiled_fold in (True, False):
        exp = make_router(**({"reward": "click"} if bandit else {})).experiment
        if bandit:
            exp.configure(mode="bandit")
        store: Any = exp.store
        if not compiled_fold:  # the Python method as the journal's fold, for this store only
            journal = store.journal
            store.journal = type("PythonJournal", (), {
                "entries": journal.entries, "threshold": journal.threshold,
                "fold": lambda self, *a, j=journal: _python_fold(j, *a)})()
        seqs = [exp.route_checked(f"u{i}")[1] for i in range(20)]
        for seq in seqs[:10]:
            store.record_auto(seq, 2.0, 0.0)
        header, arrays = store.dump()  # folds the first ten
        for seq in seqs[10:15]:
            store.record_auto(seq, 3.0, 1.0)  # folded by the load into the replaced tables
        store.load(header, arrays)
        for seq in seqs[15:]:
            store.record_auto(seq, 4.0, 1.0)  # issued before the load: skipped
        after = [exp.route_checked(f"u{i}")[1] for i in range(5)]
        for seq in after:
            store.record_auto(seq, 5.0, 0.0)
        store.fold_journal()
        units = store._units
        outcomes.append((list(units.lat_x[:20]), list(units.lat_y[:20]), list(units.err_x[:20]),
                         list(store._hist), list(store._hist_sum)))
    assert outcomes[0] == outcomes[1]
    lat_x = outcomes[0][0]
    assert sum(lat_x) == 10 * 2.0 + 5 * 5.0 and sum(outcomes[0][2]) == 0.0
