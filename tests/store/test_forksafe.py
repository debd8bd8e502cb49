"""store/forksafe.py: the order a fork takes the tracked locks in, and the child's reset.

Cells covered: memory store; A/B (the routing state's lock and the store's) and bandit; a
parent with threads inside and waiting on the locks; a forked child.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from modelrouter import Experiment, RouterConfig
from tests.forking import in_child

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform"),
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

# A thread inside a control-plane change (the routing state's lock) that then needs the
# store's lock, as a weight change that writes the store does, while the main thread forks.
# The fork must take the routing lock first: taking the store's first, it would wait for the
# routing lock while the thread waits for the store's lock, for ever (the parent hangs).
NESTED = textwrap.dedent("""
    import os, threading, time
    from modelrouter import Experiment, RouterConfig
    e = Experiment({"a": 1, "b": 2}, RouterConfig(metrics={"click": "binary"}))
    inside = threading.Event()
    def change():
        with e.state._lock:
            inside.set()
            time.sleep(0.3)
            with e.store._lock:
                pass
    t = threading.Thread(target=change)
    t.start()
    inside.wait()
    pid = os.fork()
    if pid == 0:
        e.assign("child")
        os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    t.join()
    print("ok")
""")


def test_fork_takes_the_routing_lock_before_the_stores() -> None:
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", NESTED], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.parametrize("mode", ["ab", "bandit"])
def test_child_resets_the_stores_lock_before_releasing_it(mode: str) -> None:
    """Threads of the parent keep waiting on the store's lock while the fork takes it, so the
    child's copy counts waiters it does not have. Released without the reset, the lock is
    handed to one of them and stays held: the child's first request waited for ever."""
    extra = {"mode": "bandit", "reward": "click"} if mode == "bandit" else {}
    e = Experiment({"a": 1, "b": 2, "c": 3},
                   RouterConfig(metrics={"click": "binary"}, **extra))  # type: ignore[arg-type]
    lock, stop = e.store._lock, threading.Event()  # type: ignore[attr-defined]

    def contend() -> None:
        while not stop.is_set():
            with lock:
                time.sleep(0.001)

    threads = [threading.Thread(target=contend) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    try:
        for _ in range(5):
            in_child(lambda: e.record(e.assign("u").decision_id, "click", 1), timeout=5)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    e.close()
