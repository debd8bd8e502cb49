"""The compiled exposure's slot reads (store/slot_fields.pxd) under attack.

A unit's first exposure runs ``UnitTable.add`` (store/hot_c.pyx ``add_row``) and, on the
compiled route, ``Bucketer.__call__`` (routing/assignment_c.pyx ``bucket_of``) from C, reading
the objects' ``__slots__`` at offsets cached per class and valid while the class is unchanged.
Here the classes and objects change under them: a method replaced on the class after the
offsets were cached, a subclass with its own method or a property over a slot, a column or
prefix of another type, an unset slot, hostile ids. Each must do what the Python methods do:
the same rows and buckets, the same errors after the same appends. Buckets of ASCII ids are
also checked against hashlib (the spec), not only against the Python twin.

Cells: memory store; one worker; A/B at user level (3 variants) through the compiled route and
the store's exposure, bandit (``expose_decision``); fresh, and after a class change; valid and
hostile input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from modelrouter import RouterConfig
from modelrouter.config.extensions import compiled, python_method
from modelrouter.routing.assignment import Allocation, Bucketer
from modelrouter.routing.experiment import Experiment
from modelrouter.store.memory import MemoryStore
from modelrouter.store.units import UnitTable
from tests.asgi._attack import outcome

BUILT = bool(compiled()) and all(compiled().values())
pytestmark = pytest.mark.skipif(not BUILT, reason="compiled twins not built on this machine")

PYTHON_ROUTE: Any = python_method(Experiment, "route_checked")
PYTHON_EXPOSE: Any = python_method(MemoryStore, "expose_unit")
PYTHON_ADD: Any = python_method(UnitTable, "add")
VARIANTS = {"a": 0, "b": 1, "c": 2}
UNITS = ["u1", "u2", "", "x" * 300, "\u00e9t\u00e9", "\U0001F600", "u1", "u3", "u2"]


def reference(salt: str, unit: str) -> float:
    """The README's bucket spec, by hashlib (independent of Bucketer)."""
    digest = hashlib.blake2b(salt.encode() + b"\x00" + unit.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def new_experiment(salt: str = "slots") -> Any:
    return Experiment(dict(VARIANTS), RouterConfig(salt=salt, metrics={"click": "binary"}))


def state_of(exp: Any) -> tuple[Any, ...]:
    """Every column the first exposures write, and the buckets."""
    t = exp.store._units
    return (dict(t.rows), list(t.ids), list(t.variant), list(t.epoch), list(t.propensity),
            list(t.exposures), repr(list(exp.store._path.ubucket)), exp.store._path.seq)


def variant_of(route: Any, exp: Any, unit: Any) -> str:
    return str(route(exp, unit)[0].variant)


def route_both(units: list[Any], setup: Any = None) -> list[Any]:
    """Route ``units`` through the compiled route and the Python one, each on its own
    experiment (``setup(exp)`` first): per twin, every outcome and the state after."""
    results = []
    for route in (Experiment.route_checked, PYTHON_ROUTE):
        exp = new_experiment()
        if setup is not None:
            setup(exp)
        got = [outcome(partial(variant_of, route, exp, u)) for u in units]
        results.append((got, state_of(exp)))
    return results


def test_buckets_from_c_are_the_spec_and_the_python_calls() -> None:
    compiled_run, python_run = route_both(UNITS)
    assert compiled_run == python_run
    exp = new_experiment()
    for u in UNITS:
        Experiment.route_checked(exp, u)
    rows = exp.store._units.rows
    for u in set(UNITS):
        assert exp.store._path.ubucket[rows[u]] == reference("slots", u)


def test_a_call_replaced_on_the_class_after_the_offsets_were_cached_is_called(
        monkeypatch: pytest.MonkeyPatch) -> None:
    exp = new_experiment()
    Experiment.route_checked(exp, "warm")  # (the class's offsets cached)
    monkeypatch.setattr(Bucketer, "__call__", lambda self, unit: 0.99)
    decision, _ = Experiment.route_checked(exp, "new-1")
    assert exp.store._path.ubucket[exp.store._units.rows["new-1"]] == 0.99
    assert decision.variant == exp.names[exp.state.allocation.choose(0.99)]
    monkeypatch.undo()
    Experiment.route_checked(exp, "new-2")
    assert exp.store._path.ubucket[exp.store._units.rows["new-2"]] == reference("slots", "new-2")


class _OwnCall(Bucketer):
    __slots__ = ()

    def __call__(self, unit: str) -> float:
        return 0.5


class _PrefixProperty(Bucketer):
    """A property over the base's ``_prefix`` slot: a stale offset would read the slot."""

    __slots__ = ()

    @property
    def _prefix(self) -> bytes:
        return b"other\x00"

    @_prefix.setter
    def _prefix(self, value: bytes) -> None:  # (Bucketer.__init__ sets it: kept constant)
        pass


class _WithDict(Bucketer):
    """Instances with a ``__dict__``: never read at offsets."""


def install_bucketer(exp: Any, cls: type[Bucketer]) -> None:
    """A ``cls`` instance for the salt "slots" as the experiment's bucketer."""
    exp._bucket = object.__new__(cls)
    Bucketer.__init__(exp._bucket, "slots")


def test_subclasses_of_bucketer_are_called_as_python_calls_them() -> None:
    cases: list[tuple[type[Bucketer], Callable[[str], float]]] = [
        (_OwnCall, lambda u: 0.5), (_PrefixProperty, lambda u: reference("other", u)),
        (_WithDict, lambda u: reference("slots", u))]
    for cls, expected in cases:
        setup = partial(install_bucketer, cls=cls)
        compiled_run, python_run = route_both(["p1", "p2", "p1"], setup)
        assert compiled_run == python_run, cls
        exp = new_experiment()
        setup(exp)
        Experiment.route_checked(exp, "p1")
        assert exp.store._path.ubucket[exp.store._units.rows["p1"]] == expected("p1"), cls


@pytest.mark.parametrize("change", ["prefix-str", "prefix-deleted", "prefix-bytearray",
                                    "all-deleted"])
def test_a_prefix_of_another_type_or_unset_hashes_or_fails_as_the_python_call(
        change: str) -> None:
    def setup(exp: Any) -> None:
        b = exp._bucket
        if change == "prefix-str":
            b._prefix = "slots\x00"
        elif change == "prefix-bytearray":
            b._prefix = bytearray(b"zzz\x00")
        elif change == "prefix-deleted":
            del b._prefix
        else:
            del b._prefix
            del b._base
    compiled_run, python_run = route_both(["q1", "q2", "q1"], setup)
    assert compiled_run == python_run
    if change == "all-deleted":
        assert compiled_run[0] == ["AttributeError"] * 3


def test_units_add_replaced_on_the_class_after_the_offsets_were_cached_is_called(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def counted_add(self: Any, unit: str, *rest: Any) -> int:
        calls.append(unit)
        return int(PYTHON_ADD(self, unit, *rest))

    for expose in ("route", "decision"):
        exp = new_experiment()
        first = ("warm", 0, 0.5, 1, (), 1.0)
        Experiment.route_checked(exp, "warm") if expose == "route" else (
            exp.store.expose_decision(*first))
        monkeypatch.setattr(UnitTable, "add", counted_add)
        if expose == "route":
            Experiment.route_checked(exp, "n1")
        else:
            exp.store.expose_decision("n1", 1, 0.5, 1, (), 2.0)
        assert calls == ["n1"], expose
        monkeypatch.undo()
        calls.clear()
        Experiment.route_checked(exp, "n2") if expose == "route" else (
            exp.store.expose_decision("n2", 2, 0.5, 1, (), 3.0))
        assert calls == [] and exp.store._units.ids[-1] == "n2"


def test_first_exposures_agree_with_the_python_twin_across_unrelated_class_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each change gives both classes a new version tag, so the offsets are found again
    (a crash or a wrong column after a refill fails here; a stale cache would not)."""
    exp, twin = new_experiment(), new_experiment()
    alloc = exp.state.allocation
    for k in range(3):
        monkeypatch.setattr(UnitTable, "unrelated", k, raising=False)
        monkeypatch.setattr(Bucketer, "unrelated", k, raising=False)
        for u in (f"r{k}", f"s{k}"):
            Experiment.route_checked(exp, u)
            PYTHON_EXPOSE(twin.store, u, twin._bucket, alloc, (), exp.store._units.first_seen[-1])
    assert state_of(exp)[:6] == state_of(twin)[:6]


class _TableWithDict(UnitTable):
    """Instances with a ``__dict__``, where an ``add`` of the instance's own wins."""


class _TableReadingGenerically(UnitTable):
    """Its own ``__getattribute__``: every attribute read runs Python code."""

    __slots__ = ()
    reads: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        _TableReadingGenerically.reads.append(name)
        return super().__getattribute__(name)


@pytest.mark.parametrize("cls", [_TableWithDict, _TableReadingGenerically])
def test_a_table_subclass_of_another_layout_is_called_as_python_calls_it(cls: Any) -> None:
    calls: list[str] = []
    exp = new_experiment()
    alloc = exp.state.allocation
    exp.store.expose_unit("warm", exp._bucket, alloc, (), 1.0)  # (UnitTable's offsets cached)
    table = cls(1, 0, (0, 0), ())
    if cls is _TableWithDict:
        def own_add(unit: str, *rest: Any) -> int:
            calls.append(unit)
            return int(PYTHON_ADD(table, unit, *rest))
        table.add = own_add
    exp.store._use_units(table)
    _TableReadingGenerically.reads.clear()
    exp.store.expose_unit("t1", exp._bucket, alloc, (), 2.0)
    exp.store.expose_decision("t2", 1, 0.5, 1, (), 3.0)
    assert table.ids == ["t1", "t2"] and list(table.variant)[1] == 1
    if cls is _TableWithDict:
        assert calls == ["t1", "t2"]
    else:
        assert _TableReadingGenerically.reads.count("add") == 2


class _RecordingList(list):  # type: ignore[type-arg]
    appended: list[Any]

    def append(self, item: Any) -> None:
        self.appended.append(item)
        super().append(item)


def test_a_column_of_another_type_is_written_by_the_method() -> None:
    exp = new_experiment()
    Experiment.route_checked(exp, "warm")
    ids = _RecordingList(exp.store._units.ids)
    ids.appended = []
    exp.store._units.ids = ids
    Experiment.route_checked(exp, "w1")
    exp.store.expose_decision("w2", 1, 0.5, 1, (), 2.0)
    assert ids.appended == ["w1", "w2"] and ids[-2:] == ["w1", "w2"]


@pytest.mark.parametrize("slot", ["rows", "ids", "variant", "epoch", "propensity", "first_seen",
                                  "exposures", "segs", "_cap"])
def test_an_unset_column_fails_as_the_python_twin_after_the_same_appends(slot: str) -> None:
    alloc = Allocation(tuple(VARIANTS), {"a": 0.2, "b": 0.3, "c": 0.5}, epoch=1)
    results = []
    for twin in (False, True):
        exp = new_experiment()
        exp.store.expose_unit("warm", exp._bucket, alloc, (), 1.0)  # (offsets cached)
        table = exp.store._units
        kept = {name: getattr(table, name) for name in ("rows", "ids", "variant", "epoch",
                                                        "propensity", "first_seen")}
        delattr(table, slot)
        expose = (PYTHON_EXPOSE if twin else MemoryStore.expose_unit)
        got = outcome(partial(expose, exp.store, "v1", exp._bucket, alloc, (), 2.0))
        results.append((got, {k: repr(v) for k, v in kept.items()}))
    assert results[0] == results[1]
    assert results[0][0] == "AttributeError"


class _NoisyId(str):
    """A str subclass whose hash runs Python code: never added from C."""

    hashed = 0

    def __hash__(self) -> int:
        _NoisyId.hashed += 1
        return str.__hash__(self)


@pytest.mark.parametrize("args", [
    ("h1", 1, 0.5, 1, (), 2.0),  # plain: from C
    (_NoisyId("h1"), 1, 0.5, 1, (), 2.0),
    ("h1", True, 0.5, 1, (), 2.0),
    ("h1", 1, 1, 1, (), 2.0),  # an int propensity
    ("h1", 1, 0.5, 2**40, (), 2.0),  # an epoch past the column's range
    ("h1", 1, 0.5, 1, [], 2.0),  # a list segment
    ("h1", 1, 0.5, 1, (), 2),  # an int time
], ids=["plain", "str-subclass", "bool-variant", "int-propensity", "epoch-2**40",
        "list-segment", "int-now"])
def test_hostile_arguments_of_a_first_exposure_add_rows_as_the_python_twin(
        args: tuple[Any, ...]) -> None:
    python_decision: Any = python_method(MemoryStore, "expose_decision")
    results = []
    for twin in (False, True):
        exp = new_experiment()
        expose = python_decision if twin else MemoryStore.expose_decision
        got = [outcome(partial(expose, exp.store, *args)) for _ in range(2)]
        results.append((got, state_of(exp)))
    assert results[0] == results[1]
