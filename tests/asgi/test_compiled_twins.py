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
    for case in ("three_variants", "switched", "bandit_three_arms", "bandit_segments_ring",
                 "request_level"):
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
    bandit = fast["bandit_three_arms"]["log"]
    assert {e["decision"]["epoch"] for e in bandit} >= {0, 1, 2}  # refreshed by schedule
    assert {e["decision"]["variant"] for e in bandit} == {"a", "b", "c"}
    ring = fast["bandit_segments_ring"]
    assert ring["state"]["stats"]["decisions"] > 32 * 5  # both rings wrapped several times
    assert {e["decision"]["epoch"] for e in ring["log"]} >= {0, 1, 2}


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


@needs_build
def test_add_to_pair_twin_matches_the_python_function_bit_for_bit() -> None:
    """``store.rows.add_to_pair``: the compiled twin and the Python function on the same
    random and hostile inputs (NaN, inf, 1e300, -0.0, ints, 'any' metrics, a bad row) give
    the same arrays and group sums to the bit, or the same exception."""
    import math
    import random
    from array import array

    from modelrouter.config.extensions import python_function
    from modelrouter.store import rows

    py = python_function("modelrouter.store.rows", "add_to_pair")
    assert rows.add_to_pair is not py
    rnd = random.Random(5)
    specials = [math.nan, math.inf, -math.inf, 1e300, -1e300, -0.0, 0.0, 5e-324, 1, True]
    for trial in range(3_000):
        xs, ys = array("d", [rnd.gauss(0, 3) for _ in range(4)]), array("d", [1.0] * 4)
        row = [rnd.random() for _ in range(11)]
        value = rnd.choice(specials) if trial % 3 == 0 else rnd.gauss(0, 1e3)
        slot, m, any_ = rnd.randrange(-1, 5), rnd.randrange(0, 3), rnd.random() < 0.3
        results = []
        for fn in (py, rows.add_to_pair):
            a, b, r = array("d", xs), array("d", ys), list(row)
            try:
                fn(a, b, slot, r, m, value, any_)  # type: ignore[operator]
                results.append((a.tobytes(), b.tobytes(), array("d", r).tobytes()))
            except Exception as exc:  # noqa: BLE001 - the same exception type is the claim
                results.append(type(exc))
        assert results[0] == results[1], (trial, slot, m, value, any_)


@needs_build
def test_ring_remember_twin_matches_the_python_method() -> None:
    """``PendingRing.remember`` with extra columns (the decision tracker's ring): the compiled
    twin and the Python method write the same slots, through a wrap and a skipped slot."""
    from modelrouter.store.ring import PendingRing

    rings = [PendingRing(8), PendingRing(8)]
    cols = [(r.add_column("b", 0), r.add_column("d", float("nan"))) for r in rings]
    for seq in [*range(12), 15, 16, 30, -1]:
        out = []
        for k, ring in enumerate(rings):
            fn = ring.remember if k else ring._remember_py
            try:
                out.append(fn(seq, seq * 0.5, seq + 100))
            except Exception as exc:  # noqa: BLE001 - the same exception type is the claim
                out.append(type(exc))
            cols[k][0][seq % 8 if seq >= 0 else 0] = 1
        assert out[0] == out[1]
        dumps = [r.dump() for r in rings]
        assert [[a.tobytes() for a in (d.seq, d.time, d.row, *d.columns)] for d in dumps][0] \
            == [[a.tobytes() for a in (d.seq, d.time, d.row, *d.columns)] for d in dumps][1]
