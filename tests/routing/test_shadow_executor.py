"""The shadow executor (routing/shadows.py): worker threads fed by one queue, async calls
cancelled by one reaper per runner, slots released in batches, shutdown.

Matrix cells: store memory, level user, fresh and after a loop ended / after shutdown, input
valid and hostile (shadows that hang, raise, or are cancelled with their loop); threads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from modelrouter.config.shadow import ShadowConfig
from modelrouter.routing.decision import Decision
from modelrouter.routing.shadows import ShadowRunner
from modelrouter.store.shadows import ShadowLog


def runner_for(shadows: dict[str, Any], **cfg: Any) -> ShadowRunner:
    config = ShadowConfig(shadow_kind="score", **cfg)
    return ShadowRunner(shadows, config, "salt", ShadowLog(tuple(shadows), "score"),
                        unit_level=True)


def decision(i: int) -> Decision:
    return Decision(f"ab-{i + 1:x}", "a", lambda x: x, f"u{i}", 1.0, 0, "ab", 0.0)


def counts(runner: ShadowRunner, name: str) -> dict[str, Any]:
    return runner.log.snapshot().stats[name].counts()


def test_async_timeouts_by_the_reaper_and_a_new_loop_after_the_old_one_ended() -> None:
    async def hangs(x: float) -> float:
        await asyncio.sleep(30)
        return x

    async def quick(x: float) -> float:
        return x + 1

    runner = runner_for({"hangs": hangs, "quick": quick}, shadow_timeout=0.1)

    async def go(first: int) -> float:
        for i in range(first, first + 20):
            runner.select(decision(i)).predict(1.0)
        t0 = time.perf_counter()
        while runner.pending:
            await asyncio.sleep(0.005)
        return time.perf_counter() - t0

    waited = asyncio.run(go(0))
    # cancelled between the timeout and 1.125 timeouts after start (+ scheduling slack)
    assert 0.09 <= waited < 0.5
    assert counts(runner, "hangs")["errors"] == {"timeout": 20}
    assert counts(runner, "quick")["completed"] == 20
    # the loop ended with nothing pending; a new loop arms its own reaper
    asyncio.run(go(20))
    assert counts(runner, "hangs")["errors"] == {"timeout": 40}

    async def abandon() -> None:  # the loop ends while the calls run: not shadow errors
        for i in range(40, 45):
            runner.select(decision(i)).predict(1.0)

    asyncio.run(abandon())
    assert runner.pending == 0
    assert counts(runner, "hangs")["errors"] == {"timeout": 40}
    assert counts(runner, "hangs")["dropped"] == {"cancelled": 5}
    runner.shutdown()


def test_threads_submitting_at_once_lose_nothing() -> None:
    def work(x: float) -> float:
        return x * 2

    def boom(x: float) -> float:
        raise ValueError("bad")

    runner = runner_for({"work": work, "boom": boom}, shadow_queue=50, shadow_workers=3)

    def client(k: int) -> None:
        for i in range(500):
            runner.select(decision(k * 1000 + i)).predict(float(i))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = time.monotonic() + 10
    while runner.pending and time.monotonic() < end:
        time.sleep(0.005)
    assert runner.pending == 0
    for name in ("work", "boom"):
        c = counts(runner, name)
        assert c["submitted"] == 4000
        assert c["completed"] + sum(c["dropped"].values()) == 4000, c
    assert counts(runner, "boom")["errors"]["exception"] == counts(runner, "boom")["completed"]
    runner.shutdown()


def test_shutdown_without_waiting_drops_the_queued_calls_and_counts_them() -> None:
    gate = threading.Event()

    def blocked(x: float) -> float:
        gate.wait(5)
        return x

    runner = runner_for({"c": blocked}, shadow_queue=10, shadow_workers=1)
    for i in range(10):
        runner.select(decision(i)).predict(1.0)
    time.sleep(0.05)  # the one thread took the first call
    runner.shutdown(wait=False)
    gate.set()
    end = time.monotonic() + 5
    while runner.pending and time.monotonic() < end:
        time.sleep(0.005)
    c = counts(runner, "c")
    assert runner.pending == 0 and c["completed"] == 1 and c["dropped"] == {"shut_down": 9}
    runner.select(decision(99)).predict(1.0)
    assert counts(runner, "c")["dropped"] == {"shut_down": 10}
