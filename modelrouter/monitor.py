"""Automatic rollback: move all traffic to the control when a guardrail fails.

:class:`GuardrailMonitor` belongs to one :class:`Experiment`. The hot
path only calls :meth:`GuardrailMonitor.tick` (an integer increment and a comparison); every
``guardrail_check_every`` feedback events it wakes one background worker thread, which takes a
store snapshot, runs :meth:`~modelrouter.analysis.Analysis.guardrails` and, when a guardrail
*fails* (its always-valid interval lies entirely beyond the margin) and ``rollback=True``, calls
``Experiment.rollback(reasons)``: the routing state holds all traffic on the control until
``resume()``, whatever else the operator changes meanwhile. So the analysis never runs on a
request, no lock is held across it, and traffic moves to the control within one refresh after
the evidence is in. :meth:`GuardrailMonitor.check` does the same synchronously (tests, cron
jobs, an admin endpoint). The monitor is subscribed to feedback through the experiment's hook
(:meth:`~modelrouter.routing.experiment.Experiment.subscribe`): the routing core never imports
the analysis.

Because the guardrail test uses always-valid (mSPRT) intervals, checking after every refresh
does not inflate the chance of a false rollback beyond the guardrail's alpha.

Thread safety: ``tick`` may be called from any thread or the event loop; ``check`` runs one at
a time (its own lock, never held by the request path); rollback and resume are atomic steps of
the routing state.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from modelrouter.background import BackgroundCheck
from modelrouter.routing.experiment import Experiment
from modelrouter.routing.state import RollbackEvent

if TYPE_CHECKING:
    from modelrouter.analysis import GuardrailResult

__all__ = ["GuardrailMonitor", "RollbackEvent"]

_log = logging.getLogger("modelrouter")


class GuardrailMonitor(BackgroundCheck):
    """Periodic guardrail checks off the request path; a failing one triggers the rollback."""

    thread_name = "modelrouter-guardrails"

    def __init__(self, experiment: Experiment, *, every: int, enabled: bool) -> None:
        super().__init__(every)
        self.experiment = experiment
        self.enabled = enabled
        self.checks = 0

    @property
    def rolled_back(self) -> bool:
        """Whether traffic is currently held on the control by a rollback."""
        return self.experiment.rolled_back

    @property
    def events(self) -> tuple[RollbackEvent, ...]:
        """Rollbacks and resumes so far, oldest first (kept by the routing state)."""
        return self.experiment.rollback_events

    def run(self) -> object:
        """The background run: :meth:`check`."""
        return self.check()

    # -- checks ---------------------------------------------------------------------------
    def check(self) -> tuple[GuardrailResult, ...]:
        """Run the guardrails on a fresh snapshot; roll back if one fails and rollback is on.

        Returns the guardrail results. The rollback itself is one atomic step of the routing
        state, so an operator's concurrent ``pause_arm``/``configure`` can not undo it.
        """
        from modelrouter.analysis import Analysis  # loaded when first checked (scipy)

        with self._lock:
            self.checks += 1
            exp = self.experiment
            results = Analysis.from_experiment(exp).guardrails()
            failed = [r for r in results if r.status == "fail"]
            if failed and self.enabled:
                event = exp.rollback(tuple(r.reason for r in failed))
                if event is not None:
                    _log.warning("modelrouter: experiment %r rolled back to %r: %s",
                                 exp.config.experiment, exp.control, "; ".join(event.reasons))
            return results

    def resume(self, reason: str = "resumed by an explicit call") -> None:
        """Lift the rollback (no-op when not rolled back)."""
        self.experiment.resume(reason)
