"""Automatic rollback: move all traffic to the control when a guardrail fails.

:class:`GuardrailMonitor` belongs to one :class:`Experiment`. The hot
path only calls :meth:`GuardrailMonitor.tick` (an integer increment and a comparison); every
``guardrail_check_every`` feedback events it wakes one background worker thread, which takes a
store snapshot, runs :meth:`~modelrouter.analysis.Analysis.guardrails` and, when a guardrail
*fails* (its always-valid interval lies entirely beyond the margin) and ``rollback=True``, calls
``Experiment.configure(weights=control-only)``. So the analysis never runs on a request, no lock
is held across it, and traffic moves to the control within one refresh after the evidence is
in. :meth:`GuardrailMonitor.check` does the same synchronously (tests, cron jobs, an admin
endpoint); :meth:`GuardrailMonitor.resume` restores the weights saved at the rollback.

Because the guardrail test uses always-valid (mSPRT) intervals, checking after every refresh
does not inflate the chance of a false rollback beyond the guardrail's alpha.

Thread safety: ``tick`` may be called from any thread or the event loop; ``check``, ``rollback``
and ``resume`` serialise on one lock (never held by the request path).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from modelrouter.routing.state import RollbackEvent

__all__ = ["GuardrailMonitor", "RollbackEvent"]

_log = logging.getLogger("modelrouter")


class GuardrailMonitor:
    """Periodic guardrail checks off the request path, and the rollback / resume switch."""

    def __init__(self, experiment: Any, *, every: int, enabled: bool) -> None:
        self.experiment = experiment
        self.every = int(every)
        self.enabled = enabled
        self.events: list[RollbackEvent] = []
        self.checks = 0
        self.last_error: BaseException | None = None
        self._count = 0
        self._saved: dict[str, float] | None = None
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._worker: threading.Thread | None = None

    @property
    def rolled_back(self) -> bool:
        """Whether traffic is currently held on the control by a rollback."""
        return self._saved is not None

    # -- hot path -------------------------------------------------------------------------
    def tick(self) -> None:
        """Count one feedback event; every ``every`` events wake the worker (O(1))."""
        self._count += 1  # a lost increment under a thread race only delays a check
        if self._count >= self.every:
            self._count = 0
            self._trigger()

    def _trigger(self) -> None:
        if self._worker is None:
            with self._start_lock:
                if self._worker is None:
                    self._worker = threading.Thread(target=self._loop, daemon=True,
                                                    name="modelrouter-guardrails")
                    self._worker.start()
        self._idle.clear()
        self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                self.check()
            except Exception as exc:  # never let a failed check kill the worker
                self.last_error = exc
                _log.warning("modelrouter: guardrail check failed: %r", exc)
            finally:
                if not self._wake.is_set():
                    self._idle.set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no background check is pending (for tests and shutdown)."""
        return self._idle.wait(timeout)

    # -- checks and switches ----------------------------------------------------------------
    def check(self) -> Sequence[Any]:
        """Run the guardrails on a fresh snapshot; roll back if one fails and rollback is on.

        Returns the guardrail results.
        """
        from modelrouter.analysis import Analysis  # the router core never imports analysis

        with self._lock:
            self.checks += 1
            results = Analysis.from_experiment(self.experiment).guardrails()
            failed = [r for r in results if r.status == "fail"]
            if failed and self.enabled and self._saved is None:
                self._rollback(tuple(r.reason for r in failed))
            return results

    def _rollback(self, reasons: tuple[str, ...]) -> None:
        exp = self.experiment
        before = dict(exp.allocation.weights)
        after = {n: 1.0 if n == exp.control else 0.0 for n in exp.names}
        exp.configure(weights=after)
        self._saved = before
        self.events.append(RollbackEvent("rollback", exp.clock(), reasons, before, after))
        _log.warning("modelrouter: experiment %r rolled back to %r: %s",
                     exp.config.experiment, exp.control, "; ".join(reasons))

    def resume(self, reason: str = "resumed by an explicit call") -> None:
        """Restore the weights in force before the rollback (no-op when not rolled back)."""
        with self._lock:
            if self._saved is None:
                return
            exp = self.experiment
            before = dict(exp.allocation.weights)
            exp.configure(weights=self._saved)
            self.events.append(RollbackEvent("resume", exp.clock(), (reason,), before,
                                             dict(self._saved)))
            self._saved = None
