"""One process per memory-store snapshot (store/lock.py, used by the lifespan).

Matrix cells: memory store (Redis takes no lock), one vs several processes, fresh and after a
kill -9 of the holder.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelrouter import ModelRouter, RouterConfig, StoreError
from modelrouter.store.lock import SnapshotLock
from tests.conftest import make_app

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")

HOLD = """
import sys, time
from modelrouter.store.lock import SnapshotLock
lock = SnapshotLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


def router(path: Path, **config: object) -> ModelRouter:
    return ModelRouter(make_app(), {"a": 1, "b": 2},
                       RouterConfig(snapshot_path=str(path), **config))  # type: ignore[arg-type]


def test_a_second_router_on_the_same_snapshot_is_refused_until_the_first_stops(
        tmp_path: Path) -> None:
    path = tmp_path / "exp.mrsnap"
    first, second = router(path), router(path)
    asyncio.run(first.lifecycle.start())
    with pytest.raises(StoreError, match=rf"in use by another process \(pid {os.getpid()}\)"
                                         r".*store='redis://"):
        asyncio.run(second.lifecycle.start())
    asyncio.run(first.lifecycle.stop())  # saves, then lets the lock go
    asyncio.run(second.lifecycle.start())
    assert second.lifecycle.restored is not None  # it took over the first one's snapshot
    asyncio.run(second.lifecycle.stop())


def test_another_process_holding_the_snapshot_is_named_and_kill_9_frees_it(
        tmp_path: Path) -> None:
    path = tmp_path / "exp.mrsnap"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE,
                              text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreError, match=rf"pid {holder.pid}\)"):
            asyncio.run(router(path).lifecycle.start())
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        assert holder.stdout is not None
        holder.stdout.close()
    again = router(path)  # the kernel released the lock with the process
    deadline = time.monotonic() + 5
    while True:
        try:
            asyncio.run(again.lifecycle.start())
            break
        except StoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    asyncio.run(again.lifecycle.stop())


def test_no_snapshot_path_or_a_failed_restore_holds_no_lock(tmp_path: Path) -> None:
    path = tmp_path / "bad.mrsnap"
    path.write_bytes(b"not a snapshot")
    bad = router(path)
    with pytest.raises(StoreError):
        asyncio.run(bad.lifecycle.start())
    lock = SnapshotLock(path)
    lock.acquire()  # free: the failed process let it go
    assert lock.held
    lock.release()
    lock.release()  # idempotent
    assert not lock.held
