"""A background check woken every N feedback events: the thread machinery both monitors share.

:class:`BackgroundCheck` counts events in :meth:`~BackgroundCheck.tick` (O(1), the hot path
may call it) and every ``every`` events wakes one daemon worker thread, started on first use,
which calls :meth:`~BackgroundCheck.run`. A failing run is kept in ``last_error`` and logged;
it never kills the worker. The guardrail monitor (monitor.py) and the rollout monitor
(rollout_monitor.py) are its subclasses, so neither analysis ever runs on a request.

Thread safety: ``tick`` may be called from any thread or the event loop (a lost increment
under a race only delays a check); runs happen one at a time on the worker, and a subclass's
``check`` holds ``_lock`` (one check at a time, also when called directly).

In a forked child (gunicorn ``--preload``, multiprocessing) the parent's worker does not exist,
and a lock a parent thread held at the fork (``_lock`` during a check, which may run an
analysis for seconds; ``_start_lock``) would stay held in the copy. So the child starts with
fresh locks, events and no worker (``store.forksafe.renew``): its next due tick starts its own
worker, and a check that was due and not yet run in the parent runs in the child too. The fork
does not wait for a running check: it belongs to the parent.
"""

from __future__ import annotations

import logging
import threading

from modelrouter.store.forksafe import renew

__all__ = ["BackgroundCheck"]

_log = logging.getLogger("modelrouter")


class BackgroundCheck:
    """Wake a worker thread every ``every`` ticks to call :meth:`run` (see module doc)."""

    thread_name = "modelrouter-check"

    def __init__(self, every: int) -> None:
        self.every = int(every)
        self.last_error: BaseException | None = None
        self._count = 0
        self._fresh_threading()
        renew(self, BackgroundCheck._after_fork)

    def _fresh_threading(self) -> None:
        self._lock = threading.Lock()  # one check at a time (subclasses' check holds it)
        self._start_lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._worker: threading.Thread | None = None

    def _after_fork(self) -> None:
        """In a forked child: fresh locks, events and no worker (see the module docstring);
        a check due and not yet run is started again."""
        due = not self._idle.is_set()
        self._fresh_threading()
        if due:
            self._trigger()

    def run(self) -> object:
        """The check itself (subclasses); called on the worker thread."""
        raise NotImplementedError

    def tick(self) -> None:
        """Count one feedback event; every ``every`` events wake the worker (O(1))."""
        self._count += 1
        if self._count >= self.every:
            self._count = 0
            self._trigger()

    def _trigger(self) -> None:
        if self._worker is None:
            with self._start_lock:
                if self._worker is None:
                    self._worker = threading.Thread(target=self._loop, daemon=True,
                                                    name=self.thread_name)
                    self._worker.start()
        self._idle.clear()
        self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                self.run()
            except Exception as exc:  # never let a failed check kill the worker
                self.last_error = exc
                _log.warning("modelrouter: %s failed: %r", self.thread_name, exc)
            finally:
                if not self._wake.is_set():
                    self._idle.set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no background check is pending (for tests and shutdown)."""
        return self._idle.wait(timeout)
