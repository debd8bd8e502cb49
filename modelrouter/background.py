"""A background check woken every N feedback events: the thread machinery both monitors share.

:class:`BackgroundCheck` counts events in :meth:`~BackgroundCheck.tick` (O(1), the hot path
may call it) and every ``every`` events wakes one daemon worker thread, started on first use,
which calls :meth:`~BackgroundCheck.run`. A failing run is kept in ``last_error`` and logged;
it never kills the worker. The guardrail monitor (monitor.py) and the rollout monitor
(rollout_monitor.py) are its subclasses, so neither analysis ever runs on a request.

Thread safety: ``tick`` may be called from any thread or the event loop (a lost increment
under a race only delays a check); runs happen one at a time on the worker.
"""

from __future__ import annotations

import logging
import threading

__all__ = ["BackgroundCheck"]

_log = logging.getLogger("modelrouter")


class BackgroundCheck:
    """Wake a worker thread every ``every`` ticks to call :meth:`run` (see module doc)."""

    thread_name = "modelrouter-check"

    def __init__(self, every: int) -> None:
        self.every = int(every)
        self.last_error: BaseException | None = None
        self._count = 0
        self._start_lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._worker: threading.Thread | None = None

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
