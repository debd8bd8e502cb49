"""The bandit's direct C calls: the compiled route calls the memory store's compiled
``expose_decision`` (store/hot_c.pyx) and that one the compiled ``DecisionTracker.open``
(store/decisions_c.pyx) as C functions, reading the store's and the tracker's fields from their
instance dicts. Each call stays the method call wherever the method is not the twin.

Every test runs a scenario twice on experiments built alike: with the compiled methods (the
classes' own) and with the Python methods set on the instances (``use_python``), with the same
override or damage applied to both; decisions, stored columns and the tracker's state must be
equal (or the same exception, type and message). Cells: memory store; one worker; bandit mode
and A/B -> bandit -> A/B; 3 arms; user level; holdout; a store subclass, a replaced store or
tracker method (on the instance or the class), a tracker subclass; a store or tracker whose
fields are gone, of another type, or whose ``__init__`` never ran; ``_relevant`` sets the C bits
cannot hold. Skipped where the twins were not built.
"""

from __future__ import annotations

import dataclasses
from types import MethodType
from typing import Any

import pytest

from modelrouter.config.extensions import python_method
from modelrouter.routing.bandit import BanditRouter
from modelrouter.store.decisions import DecisionTracker
from modelrouter.store.memory import MemoryStore
from tests.routing.test_compiled_bandit import (
    BUILT,
    PY_EXPOSE,
    PY_ROUTE,
    make,
    tracker_state,
    use_python,
)

pytestmark = pytest.mark.skipif(not BUILT, reason="compiled twins not built on this machine")

PY_OPEN: Any = python_method(DecisionTracker, "open")
CALLS: list[str] = []


class CountingStore(MemoryStore):
    def expose_decision(self, *args: Any, **kwargs: Any) -> int:  # type: ignore[override]
        CALLS.append("store-subclass")
        return PY_EXPOSE(self, *args, **kwargs)  # type: ignore[no-any-return]


class CountingTracker(DecisionTracker):
    def open(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        CALLS.append("tracker-subclass")
        PY_OPEN(self, *args, **kwargs)


def _counting(tag: str, method: Any) -> Any:
    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        CALLS.append(tag)
        return method(self, *args, **kwargs)
    return counted


def _run(exp: Any, steps: int = 120, switch: bool = True) -> dict[str, Any]:
    log = []
    for i in range(steps):
        if switch and i == 50:
            exp.configure(mode="ab")
        if switch and i == 70:
            exp.configure(mode="bandit")
        try:
            d, seq = exp.route_checked(f"u{(i * 7) % 23}")
            log.append((d.decision_id.partition("-")[2], d.variant, d.propensity, d.epoch,
                        d.mode, seq))
            if seq >= 0 and i % 3 == 0:
                exp.record(d, "click", i % 2 == 0)
        except Exception as exc:  # noqa: BLE001 - type and message compared
            log.append((type(exc).__name__, str(exc)))
        exp.bandit.wait_idle()
    store = exp.store
    try:
        header, arrays = store.dump()
        columns = {k: v.tolist() for k, v in sorted(arrays.items())}
    except Exception as exc:  # noqa: BLE001 - a damaged store: its error compared
        header, columns = {"error": repr(exc)}, {}
    header = {k: v for k, v in header.items() if k not in ("written_at", "pid")}
    return {"log": log, "header": repr(sorted(header.items())), "columns": columns,
            "tracker": repr(tracker_state(exp.bandit.tracker)),
            "path": (store._path.seq, list(store._path.requests))
            if "_path" in vars(store) and hasattr(store._path, "seq") else None}


def _both(damage: Any, steps: int = 120, switch: bool = True) -> tuple[dict[str, Any], int]:
    """The scenario with the compiled and with the Python methods, ``damage(exp)`` applied to
    each after it was built; returns the compiled run and how many calls were counted."""
    out, counted = [], []
    for python in (False, True):
        exp = make(variants=3, holdout=0.2, refresh_every=5)
        if python:
            use_python(exp)  # the store's Python expose_decision included
        CALLS.clear()
        damage(exp)
        try:
            out.append(_run(exp, steps, switch))
        finally:
            exp.close()
        counted.append(len(CALLS))
    assert out[0] == out[1]
    assert counted[0] == counted[1]
    return out[0], counted[0]


def _store_subclass(exp: Any) -> None:
    exp.store.__class__ = CountingStore
    vars(exp.store).pop("expose_decision", None)  # the Python run: the subclass's method too


def _store_instance(exp: Any) -> None:
    exp.store.expose_decision = MethodType(_counting("store", PY_EXPOSE), exp.store)


def _tracker_subclass(exp: Any) -> None:
    exp.bandit.tracker.__class__ = CountingTracker
    if "open" in vars(exp.bandit.tracker):  # the Python run: the subclass's method too
        del exp.bandit.tracker.open


def _tracker_instance(exp: Any) -> None:
    exp.bandit.tracker.open = MethodType(_counting("tracker", PY_OPEN), exp.bandit.tracker)


@pytest.mark.parametrize("override", [_store_subclass, _store_instance, _tracker_subclass,
                                      _tracker_instance])
def test_an_overridden_store_or_tracker_method_is_called_as_the_python_route_calls_it(
        override: Any) -> None:
    out, counted = _both(override)
    bandit = sum(1 for e in out["log"] if e[4] == "bandit")
    assert bandit >= 90 and counted == bandit  # every bandit decision went through it


@pytest.mark.parametrize("cls,name,method", [(MemoryStore, "expose_decision", PY_EXPOSE),
                                             (DecisionTracker, "open", PY_OPEN)])
def test_a_method_replaced_on_the_class_is_called(monkeypatch: pytest.MonkeyPatch, cls: type,
                                                  name: str, method: Any) -> None:
    monkeypatch.setattr(cls, name, _counting("class", method))

    def class_method(exp: Any) -> None:  # the Python run: the class's (replaced) method too
        vars(exp.store if cls is MemoryStore else exp.bandit.tracker).pop(name, None)

    out, counted = _both(class_method)
    assert counted == sum(1 for e in out["log"] if e[4] == "bandit") >= 90


def _set(target: str, name: str, value: Any) -> Any:
    def damage(exp: Any) -> None:
        obj = exp.store if target == "store" else exp.bandit.tracker
        if value is DELETE:
            delattr(obj, name)
        else:
            setattr(obj, name, value(obj) if callable(value) else value)
    return damage


class PlainStore(MemoryStore):
    """A subclass that overrides nothing (its method: the compiled one, called as a method)."""


class PlainTracker(DecisionTracker):
    pass


def _subclass(target: str, cls: type) -> Any:
    def damage(exp: Any) -> None:
        obj = exp.store if target == "store" else exp.bandit.tracker
        obj.__class__ = cls
    return damage


DELETE = object()
DAMAGES = {
    "store-path-none": _set("store", "_path", None),
    "store-path-deleted": _set("store", "_path", DELETE),
    "store-decisions-deleted": _set("store", "_decisions", DELETE),  # after the exposure
    "store-decisions-none": _set("store", "_decisions", None),  # no tracker: not opened
    "store-unit-level-int": _set("store", "unit_level", 1),
    "store-clock-deleted": _set("store", "clock", DELETE),  # route passes its own time
    "tracker-core-deleted": _set("tracker", "_core", DELETE),
    "store-plain-subclass": _subclass("store", PlainStore),
    "tracker-plain-subclass": _subclass("tracker", PlainTracker),
    "tracker-relevant-float": _set("tracker", "_relevant", frozenset([0.0, 1.0])),
    "tracker-relevant-large": _set("tracker", "_relevant", frozenset([0, 70])),
    "tracker-relevant-bool": _set("tracker", "_relevant", frozenset([False])),
    "tracker-relevant-empty": _set("tracker", "_relevant", frozenset()),
}


@pytest.mark.parametrize("name", sorted(DAMAGES))
def test_damaged_stores_and_trackers_give_the_python_methods_outcome(name: str) -> None:
    out, _ = _both(DAMAGES[name], steps=60, switch=False)
    assert out["log"]


def test_a_store_path_the_c_path_cannot_use_runs_the_python_method() -> None:
    """A path without its lock or with no ring capacity (fields the C path needs; the Python
    method reads the store's own lock and ring): the Python method, same outcome."""
    def no_lock(exp: Any) -> None:
        exp.store._path.lock = None

    def no_cap(exp: Any) -> None:
        exp.store._path.cap = 0

    for damage in (no_lock, no_cap):
        out, _ = _both(damage, steps=40, switch=False)
        assert all(e[4] == "bandit" for e in out["log"])


def test_objects_whose_init_never_ran_raise_the_python_methods_errors() -> None:
    exp = make(variants=3)
    alloc = exp.state.allocation
    try:
        for route in (BanditRouter.route, PY_ROUTE):
            ctx = exp.bandit.ctx
            exp.bandit.ctx = dataclasses.replace(ctx, store=object.__new__(MemoryStore))
            with pytest.raises(AttributeError, match="'MemoryStore' object has no attribute"):
                route(exp.bandit, "u1", (), alloc)
            exp.bandit.ctx = ctx
        for expose in (MemoryStore.expose_decision, PY_EXPOSE):
            store = exp.store
            tracker, store._decisions = store._decisions, object.__new__(DecisionTracker)
            with pytest.raises(AttributeError, match="'DecisionTracker' object has no attr"):
                expose(store, "u2", 0, 0.5, 0, (), 1.0, 0)
            store._decisions = tracker
    finally:
        exp.close()


def test_a_method_set_or_removed_between_requests_is_seen_at_the_next_request() -> None:
    """The C calls read the store's and the tracker's instance dicts through a cache keyed on
    the dict's version: setting or deleting a method there is seen at the very next request."""
    exp = make(variants=3)
    try:
        store, tracker = exp.store, exp.bandit.tracker
        assert type(store).expose_decision is not PY_EXPOSE  # the compiled twins run
        for _ in range(2):
            CALLS.clear()
            store.expose_decision = MethodType(_counting("store", PY_EXPOSE), store)
            tracker.open = MethodType(_counting("tracker", PY_OPEN), tracker)
            for i in range(3):
                assert exp.route_checked(f"u{i}")[0].mode == "bandit"
            assert CALLS == ["store", "tracker"] * 3
            del store.expose_decision
            for i in range(3):
                exp.route_checked(f"u{i}")
            # the compiled store (not counted), which calls the tracker's own open
            assert CALLS == ["store", "tracker"] * 3 + ["tracker"] * 3
            del tracker.open
            for i in range(3):
                exp.route_checked(f"v{i}")
            assert len(CALLS) == 9  # neither replaced method is called any more
    finally:
        exp.close()
