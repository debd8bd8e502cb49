"""Locks and threads a fork must not copy as they are: the background checks (guardrail and
rollout monitors), the recorded looks' lock, the shadow log's lock and the Redis control's
claim lists (store/forksafe.py, background.py).

A fork copies a lock held by another thread as held for ever, and a started worker thread as a
``Thread`` object with no thread behind it. Each test makes a parent thread hold the lock (or
start the worker), forks, and checks in the child that the object still works
(``tests/forking.in_child``: a child that hangs is killed and fails the test). Cells: memory
store (the Redis control without a server: its lock only); A/B with automatic rollback on; one
process forking (gunicorn ``--preload``, multiprocessing); a check due, running, or done at the
fork.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from modelrouter import Experiment, RouterConfig
from modelrouter.background import BackgroundCheck
from modelrouter.store.redis.control import SharedControl
from modelrouter.store.redis.layout import Layout
from modelrouter.store.shadows import ShadowLog
from tests.forking import in_child

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform"),
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


class Counting(BackgroundCheck):
    """A check that counts its runs; in the process ``hold_in`` it waits for ``gate`` inside
    its lock (a long analysis, as the monitors' checks run)."""

    thread_name = "modelrouter-test-check"

    def __init__(self, every: int) -> None:
        super().__init__(every)
        self.runs = 0
        self.hold_in = -1
        self.inside = threading.Event()
        self.gate = threading.Event()

    def run(self) -> object:
        with self._lock:
            self.runs += 1
            if os.getpid() == self.hold_in:
                self.inside.set()
                self.gate.wait()
        return self.runs


def _tick(check: BackgroundCheck, n: int) -> None:
    for _ in range(n):
        check.tick()


def test_a_worker_started_in_the_parent_is_started_again_in_the_child() -> None:
    """Before: the child's ``_worker`` was the parent's Thread object, so its ticks woke no
    thread: every check of the child was silently skipped."""
    check = Counting(every=3)
    _tick(check, 3)
    assert check.wait_idle(10) and check.runs == 1  # the parent's worker ran it

    def child() -> None:
        _tick(check, 3)
        assert check.wait_idle(10), "no worker ran the child's check"
        assert check.runs == 2
        _tick(check, 6)
        assert check.wait_idle(10) and check.runs in (3, 4)  # (two wakes may merge into one)

    in_child(child)
    assert check.runs == 1  # the parent's own count is the parent's


def test_a_check_running_at_the_fork_runs_again_in_the_child_and_its_lock_is_free() -> None:
    check = Counting(every=1)
    check.hold_in = os.getpid()
    check.tick()
    assert check.inside.wait(10)  # the parent's worker is inside the check, its lock held

    def child() -> None:
        # the check that was running belongs to the parent; the child runs its own
        assert check.wait_idle(10), "the check due at the fork did not run in the child"
        assert check.runs == 2
        assert check.run() == 3  # a direct check takes the (fresh) lock

    try:
        in_child(child)
    finally:
        check.gate.set()
    assert check.wait_idle(10) and check.runs == 1


def _experiment() -> Any:
    return Experiment({"a": 1, "b": 2}, RouterConfig(
        metrics={"click": "binary", "latency_ms": "continuous"},
        guardrails={"latency_ms": {"max_increase": 0.5, "relative": True}},
        rollback=True, guardrail_check_every=5))


@contextlib.contextmanager
def held_by_a_thread(lock: Any) -> Iterator[None]:
    """A parent thread holds ``lock`` for the whole block (a check or a look in progress,
    which a fork does not wait for)."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            release.wait()

    t = threading.Thread(target=hold)
    t.start()
    assert held.wait(10)
    try:
        yield
    finally:
        release.set()
        t.join()


def test_a_guardrail_check_in_progress_at_the_fork_leaves_the_childs_monitor_usable() -> None:
    exp = _experiment()

    def child() -> None:
        for i in range(10):
            d = exp.assign(f"u{i}")
            exp.record(d, "latency_ms", 10.0 + i)
        results = exp.guard.check()  # the child's own check: no lock held for ever
        assert results and exp.guard.checks >= 1
        assert exp.guard.wait_idle(10)  # the ticks' checks ran on the child's worker

    try:
        with held_by_a_thread(exp.guard._lock):
            in_child(child)
    finally:
        exp.close()


def test_the_look_lock_held_by_a_parent_thread_at_the_fork_is_free_in_the_child() -> None:
    exp = _experiment()

    def child() -> None:
        assert exp._look_lock.acquire(timeout=5), "the look lock stayed held"
        exp._look_lock.release()
        assert exp.assign("u1").variant in ("a", "b")  # the routing core renewed too

    try:
        with held_by_a_thread(exp._look_lock):
            in_child(child)
    finally:
        exp.close()


def _hold_then_fork(lock: Any, child: Any) -> None:
    """A parent thread holds ``lock`` for 0.3 s while the main thread forks: a tracked lock
    makes the fork wait for it, so the child's copy is free."""
    held = threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            time.sleep(0.3)

    t = threading.Thread(target=hold)
    t.start()
    assert held.wait(10)
    try:
        in_child(child)
    finally:
        t.join()


def test_the_shadow_logs_lock_held_at_the_fork_is_free_in_the_child() -> None:
    log = ShadowLog(["s"], "label")

    def child() -> None:
        assert log.open("d1", 1)  # takes the log's lock (the request path's predict)
        assert log.snapshot().stats["s"].submitted == 1

    _hold_then_fork(log._lock, child)
    assert log.snapshot().stats["s"].submitted == 0  # the parent's log is the parent's


def test_the_redis_controls_claim_lock_held_at_the_fork_is_free_in_the_child() -> None:
    import redis

    layout = Layout.of("fork", ("a", "b"), {}, "user", (), 100)
    control = SharedControl(redis.Redis(port=1), layout, lambda what: None, (OSError,))

    def child() -> None:
        assert control.release_doubtful() == 0  # takes the claim lock; nothing doubtful

    _hold_then_fork(control._ids_lock, child)
