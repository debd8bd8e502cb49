"""The bandit's direct C calls: the experiment's compiled route calls the compiled
``BanditRouter.route`` (routing/bandit_c.pyx), that one the memory store's compiled
``expose_decision`` (store/hot_c.pyx) and that one the compiled ``DecisionTracker.open``
(store/decisions_c.pyx) as C functions, reading the router's, the store's and the tracker's
fields from their instance dicts; the journal fold (store/columns_c.pyx) calls the compiled
``DecisionTracker.apply`` in C too. Each call stays the method call wherever the method is not
the twin.

Every test runs a scenario twice on experiments built alike: with the compiled methods (the
classes' own) and with the Python methods set on the instances (``use_python``), with the same
override or damage applied to both; decisions, stored columns and the tracker's state must be
equal (or the same exception, type and message). Cells: memory store; one worker; bandit mode
and A/B -> bandit -> A/B; 3 arms; user level; holdout; automatic metrics folded; a store,
tracker or router subclass, a replaced store, tracker or router method (on the instance or the
class); a store, tracker or router whose fields are gone, of another type, or whose
``__init__`` never ran; ``_relevant`` sets the C bits cannot hold. Skipped where the twins were
not built.
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


def _run(exp: Any, steps: int = 120, switch: bool = True, auto: bool = False) -> dict[str, Any]:
    """``steps`` requests; ``auto``: each decision's automatic metrics into the journal too,
    folded every 16 requests (the fold applies them to the tracker, twice per entry)."""
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
            if auto:
                exp.store.record_auto(seq, 1.0 + i % 5, 1.0 if i % 11 == 0 else 0.0)
                if i % 16 == 15:
                    exp.store.fold_journal()
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


def _both(damage: Any, steps: int = 120, switch: bool = True,
          auto: bool = False) -> tuple[dict[str, Any], int]:
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
            out.append(_run(exp, steps, switch, auto))
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


# -- the fold's apply and the experiment's route: C calls since the twelfth pass ---------------
# The journal fold (store/columns_c.pyx) calls the compiled DecisionTracker.apply, and the
# experiment's compiled route (routing/experiment_c.pyx) the compiled BanditRouter.route, as C
# functions each module registers with the other. Both check, at every call, that the object is
# of the class itself, that the class's method is still the twin and that the instance has no
# method of its own; anything else is the method's call, as the Python code makes it.

PY_APPLY: Any = python_method(DecisionTracker, "apply")


class ApplyCountingTracker(DecisionTracker):
    def apply(self, *args: Any, **kwargs: Any) -> None:
        CALLS.append("apply-subclass")
        PY_APPLY(self, *args, **kwargs)


class CountingRouter(BanditRouter):
    def route(self, *args: Any, **kwargs: Any) -> Any:
        CALLS.append("route-subclass")
        return PY_ROUTE(self, *args, **kwargs)


class PlainRouter(BanditRouter):
    """A subclass that overrides nothing (its route: the compiled one, called as a method)."""


def _apply_subclass(exp: Any) -> None:
    exp.bandit.tracker.__class__ = ApplyCountingTracker
    vars(exp.bandit.tracker).pop("apply", None)  # the Python run: the subclass's method too


def _apply_instance(exp: Any) -> None:
    exp.bandit.tracker.apply = MethodType(_counting("apply", PY_APPLY), exp.bandit.tracker)


def _route_subclass(exp: Any) -> None:
    exp.bandit.__class__ = CountingRouter
    vars(exp.bandit).pop("route", None)


def _route_instance(exp: Any) -> None:
    exp.bandit.route = MethodType(_counting("route", PY_ROUTE), exp.bandit)


def _auto_entries(out: dict[str, Any]) -> int:
    """Journal entries of a run: one per decision that routed (no exception)."""
    return sum(1 for e in out["log"] if len(e) == 6)


@pytest.mark.parametrize("override", [_apply_subclass, _apply_instance])
def test_an_overridden_apply_is_called_by_the_fold_for_every_entry(override: Any) -> None:
    """Cells: memory store; bandit, A/B -> bandit -> A/B; 3 arms; holdout; automatic metrics
    folded every 16 requests; a tracker subclass or an instance method."""
    out, counted = _both(override, auto=True)
    # each entry's two metrics through the replaced method, plus the clicks recorded by the
    # feedback path (the same count in both runs: _both compares them)
    assert counted >= 2 * _auto_entries(out) >= 2 * 110


@pytest.mark.parametrize("override", [_route_subclass, _route_instance])
def test_an_overridden_route_is_called_by_the_experiments_route(override: Any) -> None:
    out, counted = _both(override, auto=True)
    bandit = sum(1 for e in out["log"] if e[4] == "bandit")
    assert bandit >= 90 and counted == bandit  # every bandit decision went through it


@pytest.mark.parametrize("cls,name,method", [(DecisionTracker, "apply", PY_APPLY),
                                             (BanditRouter, "route", PY_ROUTE)])
def test_apply_or_route_replaced_on_the_class_is_called(
        monkeypatch: pytest.MonkeyPatch, cls: type, name: str, method: Any) -> None:
    monkeypatch.setattr(cls, name, _counting("class", method))

    def class_method(exp: Any) -> None:  # the Python run: the class's (replaced) method too
        vars(exp.bandit if cls is BanditRouter else exp.bandit.tracker).pop(name, None)

    out, counted = _both(class_method, auto=True)
    if cls is BanditRouter:
        assert counted == sum(1 for e in out["log"] if e[4] == "bandit") >= 90
    else:
        assert counted >= 2 * _auto_entries(out) >= 2 * 110


AUTO_DAMAGES = {
    "router-plain-subclass": lambda exp: setattr(exp.bandit, "__class__", PlainRouter),
    "router-core-deleted": lambda exp: delattr(exp.bandit, "_core"),
    "tracker-plain-subclass": DAMAGES["tracker-plain-subclass"],
    "tracker-core-deleted": DAMAGES["tracker-core-deleted"],
    "tracker-relevant-large": DAMAGES["tracker-relevant-large"],
    "store-decisions-none": DAMAGES["store-decisions-none"],
}


@pytest.mark.parametrize("name", sorted(AUTO_DAMAGES))
def test_damaged_routers_and_trackers_give_the_python_methods_outcome_with_folds(
        name: str) -> None:
    out, _ = _both(AUTO_DAMAGES[name], steps=80, switch=False, auto=True)
    assert _auto_entries(out) >= 40


def test_apply_and_route_set_or_removed_between_requests_are_seen_at_the_next_call() -> None:
    """The C calls read the instance dicts through a cache keyed on the dict's version: a
    method set or deleted there is seen at the very next fold or request."""
    exp: Any = make(variants=3)
    try:
        router, tracker, store = exp.bandit, exp.bandit.tracker, exp.store
        assert type(tracker).apply is not PY_APPLY and type(router).route is not PY_ROUTE
        for _ in range(2):
            CALLS.clear()
            router.route = MethodType(_counting("route", PY_ROUTE), router)
            tracker.apply = MethodType(_counting("apply", PY_APPLY), tracker)
            seqs = [exp.route_checked(f"u{i}")[1] for i in range(3)]
            assert CALLS == ["route"] * 3
            for seq in seqs:
                store.record_auto(seq, 2.0, 0.0)
            store.fold_journal()
            assert CALLS == ["route"] * 3 + ["apply"] * 6
            del router.route, tracker.apply
            seqs = [exp.route_checked(f"v{i}")[1] for i in range(3)]
            for seq in seqs:
                store.record_auto(seq, 2.0, 0.0)
            store.fold_journal()
            assert len(CALLS) == 9  # neither replaced method is called any more
    finally:
        exp.close()
