"""Run a check in a forked child: the fork tests of the Redis store and of the shadows.

A child must leave with ``os._exit`` whatever happens (never through pytest's own exit), and
a child that hangs (a lock copied held) must not hang the test run: :func:`in_child` kills it
after ``timeout`` seconds and fails.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable


def in_child(run: Callable[[], object], timeout: float = 20.0) -> None:
    """Fork; the child runs ``run()`` and exits 0 if it returned, 1 if it raised. The
    parent waits up to ``timeout`` seconds (then SIGKILLs it) and asserts the exit code 0."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            run()
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"the forked child did not finish in {timeout} s")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0, "the forked child's check failed"
