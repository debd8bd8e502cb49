"""Adversarial tests of the compiled FastLock (store/hot_c.pyx) against ``threading.Lock``
and of the compiled Bucketer (routing/assignment_c.pyx) against the README's hash spec.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelrouter.config.extensions import compiled, python_method
from modelrouter.routing.assignment import Bucketer
from tests.asgi._attack import outcome

BUILT = bool(compiled()) and all(compiled().values())
pytestmark = pytest.mark.skipif(not BUILT, reason="compiled twins not built on this machine")
ROOT = str(Path(__file__).resolve().parents[2])


# -- FastLock ----------------------------------------------------------------------------------

def test_fast_lock_exit_when_unlocked_raises_instead_of_admitting_two_holders() -> None:
    """``with``'s exit on an unlocked FastLock once released the C lock a second time: then
    two non-blocking acquires both succeeded (no mutual exclusion). threading.Lock raises."""
    from modelrouter.store.unit_path import new_lock

    for lock in (new_lock(), threading.Lock()):
        with pytest.raises(RuntimeError):
            lock.__exit__(None, None, None)
        assert lock.acquire(blocking=False) is True
        assert lock.acquire(blocking=False) is False
        lock.release()


@pytest.mark.parametrize("kwargs", [
    {"timeout": 1e300}, {"timeout": float("inf")}, {"timeout": float("nan")},
    {"timeout": 1e10}, {"timeout": threading.TIMEOUT_MAX * 1.5},  # (hung: a wait of centuries)
    {"timeout": -0.5}, {"timeout": -2}, {"timeout": 0}, {"timeout": 1e-9}, {"timeout": "1"},
    {"timeout": None}, {"timeout": 10**30}, {"blocking": False, "timeout": 1},
    {"blocking": ""}, {"blocking": None}, {"blocking": 0}, {"blocking": 0, "timeout": -1}])
def test_fast_lock_acquire_of_a_held_lock_answers_as_threading_lock(
        kwargs: dict[str, Any]) -> None:
    from modelrouter.store.unit_path import new_lock

    outcomes = []
    for lock in (new_lock(), threading.Lock()):
        lock.acquire()
        outcomes.append(outcome(lambda: lock.acquire(**kwargs)))  # noqa: B023
        lock.release()
    assert outcomes[0] == outcomes[1]


def test_fast_lock_released_by_another_thread_and_in_a_forked_child() -> None:
    from modelrouter.store.unit_path import new_lock

    lock = new_lock()
    lock.acquire()
    t = threading.Thread(target=lock.release)
    t.start()
    t.join()
    assert not lock.locked() and lock.acquire(timeout=1) is True
    lock.release()
    code = ("import os\nfrom modelrouter import ModelRouter\n"
            "from modelrouter.store.unit_path import new_lock\n"
            "lock = new_lock()\nwith lock: pass\npid = os.fork()\n"
            "if pid == 0:\n    ok = lock.acquire(timeout=2)\n    lock.release()\n"
            "    with lock: pass\n    os._exit(0 if ok else 3)\n"
            "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env={"PYTHONPATH": ROOT, "PATH": ""}, check=True)
    assert out.stdout.strip() == "0"


# -- Bucketer ---------------------------------------------------------------------------------
README_VECTORS = [("exp-2026-11", "user-42", 0.5784639137105301),
                  ("exp-2026-11", "alice@example.com", 0.9549300952268751),
                  ("exp-2026-11", "\U0001F600-user", 0.9186832461585094),
                  ("", "user-42", 0.7631623905706464),
                  ("checkout", "\u00c4\u00d6\u00dc-\u00df", 0.32501283654862184)]


def _reference_bucket(salt: str, unit: str) -> float:
    """README's spec, written out with hashlib (independent of Bucketer)."""
    digest = hashlib.blake2b(salt.encode() + b"\x00" + unit.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _random_ids(n: int, seed: int) -> Iterator[str]:
    rnd = random.Random(seed)
    alphabet = ([chr(c) for c in range(0x20, 0x7F)]
                + ["\u00e9", "\u00df", "\u00c4", "\U0001F600", "\u4e2d", "\u200b", "\U0010FFFF"])
    for _ in range(n):
        yield "".join(rnd.choices(alphabet, k=rnd.choice([1, 2, 8, 36, 255, 256, 257])))


def test_compiled_bucketer_matches_the_readme_vectors() -> None:
    for salt, unit, expected in README_VECTORS:
        assert Bucketer(salt)(unit) == expected == _reference_bucket(salt, unit)


def _check_buckets(n: int) -> None:
    python_bucket: Any = python_method(Bucketer, "__call__")
    b = Bucketer("exp-2026-11")
    for unit in _random_ids(n, 1):
        assert b(unit) == python_bucket(b, unit) == _reference_bucket("exp-2026-11", unit), unit


def test_compiled_bucketer_matches_the_spec_on_20k_random_ids() -> None:
    _check_buckets(20_000)


@pytest.mark.slow
def test_compiled_bucketer_matches_the_spec_on_100k_random_ids() -> None:
    _check_buckets(100_000)


def test_compiled_bucketer_refuses_what_the_python_one_refuses() -> None:
    python_bucket: Any = python_method(Bucketer, "__call__")
    b = Bucketer("s")
    for unit in ("\ud800", "a\udfffb", b"x", None, 5):
        assert (outcome(lambda u=unit: b(u))
                == outcome(lambda u=unit: python_bucket(b, u)))
