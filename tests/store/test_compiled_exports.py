"""A column that exports a buffer (a memoryview or ``numpy.frombuffer`` view held by user code)
must not move under the view. ``array.append`` refuses (BufferError); the compiled exposure
(store/hot_c.pyx) once resized such a column from C anyway, so the view read and wrote freed
memory. Now it leaves the append to the array, which raises the same BufferError as the Python
method at the same step, and nothing else differs.

Matrix cells: memory store; A/B (``expose_unit``) and bandit (``expose_decision``); 2 variants;
user level; fresh and with the ring filling; hostile input (a view held on each hot column).
"""

from __future__ import annotations

from typing import Any

import pytest

from modelrouter import RouterConfig
from modelrouter.config.extensions import compiled, python_method
from modelrouter.routing.assignment import Allocation
from modelrouter.routing.experiment import Experiment
from modelrouter.store.memory import MemoryStore

BUILT = bool(compiled()) and all(compiled().values())
pytestmark = pytest.mark.skipif(not BUILT, reason="compiled twins not built on this machine")

# (owner attribute of the store, column) of every array a first exposure appends to
COLUMNS = [("ring", "seq"), ("ring", "time"), ("ring", "row"), ("_units", "variant"),
           ("_units", "epoch"), ("_units", "propensity"), ("_units", "first_seen"),
           ("_units", "exposures")]


def _column(store: MemoryStore, owner: str, name: str) -> Any:
    return getattr(getattr(store, owner), name)


def _outcome(f: Any) -> str:
    try:
        return repr(f())
    except Exception as exc:  # noqa: BLE001 - the type and message are compared
        return f"{type(exc).__name__}: {exc}"


def _experiments() -> list[Experiment]:
    return [Experiment({"a": 0, "b": 1}, RouterConfig(
        salt="exports", metrics={"click": "binary"}, max_pending=32)) for _ in range(2)]


@pytest.mark.parametrize(("owner", "name"), COLUMNS)
def test_a_first_exposure_beside_a_held_view_answers_as_the_python_method(owner: str,
                                                                          name: str) -> None:
    python_expose: Any = python_method(MemoryStore, "expose_unit")
    alloc = Allocation(("a", "b"), {"a": 0.5, "b": 0.5}, epoch=1)
    fast, slow = _experiments()
    outcomes = []
    for exp, expose in ((fast, type(fast.store).expose_unit), (slow, python_expose)):
        expose(exp.store, "warm", exp._bucket, alloc, (), 1.0)
        view = memoryview(_column(exp.store, owner, name))
        first = _outcome(lambda exp=exp, expose=expose: expose(
            exp.store, "new-unit", exp._bucket, alloc, (), 2.0))
        data = bytes(view)  # the view still reads the column's live memory
        view.release()
        after = _outcome(lambda exp=exp, expose=expose: expose(
            exp.store, "later", exp._bucket, alloc, (), 3.0))
        outcomes.append((first, data, after))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0].startswith("BufferError")
    dumps = [{k: v.tolist() for k, v in exp.store.dump()[1].items()} for exp in (fast, slow)]
    assert dumps[0] == dumps[1]


@pytest.mark.parametrize(("owner", "name"), COLUMNS)
def test_a_bandit_exposure_beside_a_held_view_answers_as_the_python_method(owner: str,
                                                                           name: str) -> None:
    python_expose: Any = python_method(MemoryStore, "expose_decision")
    fast, slow = (Experiment({"a": 0, "b": 1}, RouterConfig(
        salt="exports", mode="bandit", reward="click", metrics={"click": "binary"},
        max_pending=32)) for _ in range(2))
    outcomes = []
    for exp, expose in ((fast, type(fast.store).expose_decision), (slow, python_expose)):
        expose(exp.store, "warm", 0, 0.5, 0, (), 1.0)
        view = memoryview(_column(exp.store, owner, name))
        first = _outcome(lambda exp=exp, expose=expose: expose(
            exp.store, "new-unit", 1, 0.5, 0, (), 2.0))
        view.release()
        after = _outcome(lambda exp=exp, expose=expose: expose(
            exp.store, "later", 0, 0.5, 0, (), 3.0))
        outcomes.append((first, after))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0].startswith("BufferError")
    dumps = [{k: v.tolist() for k, v in exp.store.dump()[1].items()} for exp in (fast, slow)]
    assert dumps[0] == dumps[1]
