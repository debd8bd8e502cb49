"""The compiled twins of the request path (config/extensions.py) against their Python methods.

Cells: memory store; one worker; A/B, bandit and switched A/B -> bandit -> A/B; 2 and 3
variants; user and request level; fresh, restored from a dump, after a weight change; a pending
ring that wraps; valid and hostile unit ids (refused, or read by the Python reader); 200, 500,
chunked and raising apps; signed tokens; segments.

The same scripted run (tests/asgi/_twin_scenario.py) goes through the compiled twins and, in a
second process, through the Python methods (``MODELROUTER_NO_EXTENSIONS=1``): every decision,
response and stored column must be equal. Skipped where the twins were not built (no C compiler).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from modelrouter import ModelRouter  # noqa: F401 - imports every module with a twin
from modelrouter.config.extensions import compiled

SCENARIO = Path(__file__).with_name("_twin_scenario.py")
BUILT = bool(compiled()) and all(compiled().values())
needs_build = pytest.mark.skipif(not BUILT, reason="compiled twins not built on this machine")


def _run(no_extensions: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MODELROUTER_NO_EXTENSIONS"}
    if no_extensions:
        env["MODELROUTER_NO_EXTENSIONS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, str(SCENARIO)], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout)


@needs_build
def test_compiled_and_python_twins_give_the_same_decisions_responses_and_columns() -> None:
    fast, slow = _run(False), _run(True)
    assert all(fast.pop("compiled").values())
    assert not any(slow.pop("compiled").values())
    for case in ("three_variants", "switched", "request_level"):
        assert fast[case]["log"] == slow[case]["log"], case
        assert fast[case]["state"] == slow[case]["state"], case
    # the run reached the cells it names (not an empty comparison)
    log = fast["three_variants"]["log"]
    assert {e["status"] for e in log} == {200, 400, 500, None}  # None: the app raised
    assert any(e["decision"] and not e["decision"]["counted"] for e in log)  # no unit id
    assert any(e["token"] for e in log)
    assert {e["decision"]["epoch"] for e in log if e["decision"]} >= {0, 1}
    stats = fast["three_variants"]["state"]["stats"]
    assert stats["decisions"] > stats["pending_slots"] == 64  # the ring wrapped
    assert {e["decision"]["mode"] for e in fast["switched"]["log"]} == {"ab", "bandit"}


@needs_build
def test_fast_lock_behaves_as_threading_lock() -> None:
    from modelrouter.store.unit_path import new_lock

    lock = new_lock()
    assert type(lock).__name__ == "FastLock"
    assert not lock.locked()
    assert lock.acquire() is True and lock.locked()
    assert lock.acquire(blocking=False) is False
    t0 = time.monotonic()
    assert lock.acquire(timeout=0.05) is False
    assert time.monotonic() - t0 >= 0.04
    with pytest.raises(ValueError):
        lock.acquire(blocking=False, timeout=1)
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()
    with lock:
        assert lock.locked()
    assert not lock.locked()
    # exclusion under contention: 8 threads, 20,000 read-modify-writes each, none lost
    box = [0]

    def work() -> None:
        for _ in range(20_000):
            with lock:
                v = box[0]
                time.sleep(0) if v % 5_000 == 0 else None
                box[0] = v + 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert box[0] == 160_000


def test_extensions_can_be_turned_off() -> None:
    """``MODELROUTER_NO_EXTENSIONS=1`` runs the Python methods (also where nothing was built)."""
    env = {**os.environ, "MODELROUTER_NO_EXTENSIONS": "1"}
    code = ("import modelrouter, json; from modelrouter import ModelRouter; "
            "from modelrouter.config.extensions import compiled; print(json.dumps(compiled()))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=60)
    flags = json.loads(out.stdout)
    assert flags and not any(flags.values())


@needs_build
@pytest.mark.parametrize("seq", [0, 1, 15, 16, 255, 4096, 2**40 + 7, 2**63 - 2])
def test_decision_ids_spell_the_decision_number_in_hex(seq: int) -> None:
    """The compiled route writes the id's hex digits itself: ``prefix + format(seq, "x")``,
    and ``seq_of`` reads the number back."""
    from modelrouter import RouterConfig
    from modelrouter.routing.experiment import Experiment

    exp = Experiment({"a": 0, "b": 1}, RouterConfig(metrics={"click": "binary"},
                                                    max_pending=16))
    for u in range(16):  # a full ring: any later number has its slot
        exp.route_checked(f"warm-{u}")
    exp.store._path.seq = max(seq, 16)  # type: ignore[attr-defined]
    decision, got = exp.route_checked("unit-1")
    assert got == max(seq, 16)
    assert decision.decision_id == exp._prefix + format(got, "x")
    assert exp.seq_of(decision.decision_id) == got


@pytest.mark.parametrize("compiled_path", [True, False])
def test_a_ring_shorter_than_its_numbering_raises_instead_of_writing_past_it(
        compiled_path: bool) -> None:
    """Adversarial: a pending ring whose length breaks the store's invariant (numbers past
    its capacity, no slot written yet). The Python method raises IndexError; the compiled
    twin once wrote past the array's end (a segfault). Both now raise IndexError."""
    from modelrouter import RouterConfig
    from modelrouter.config.extensions import python_method
    from modelrouter.routing.experiment import Experiment
    from modelrouter.store.memory import MemoryStore

    if compiled_path and not BUILT:
        pytest.skip("compiled twins not built on this machine")
    exp = Experiment({"a": 0, "b": 1}, RouterConfig(metrics={"click": "binary"},
                                                    max_pending=16))
    store = exp.store
    store._path.seq = 2**40  # type: ignore[attr-defined]
    expose = store.expose_unit if compiled_path else python_method(MemoryStore, "expose_unit")
    args = ("unit-1", exp._bucket, exp.allocation, (), 0.0)
    with pytest.raises(IndexError):
        expose(*args) if compiled_path else expose(store, *args)  # type: ignore[operator]
    assert len(store.ring) == 0
