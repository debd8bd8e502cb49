"""The automatic rollout: advance a shadow candidate's stage when its gate holds, roll it back
when a guardrail fails; in the background, never on a request.

:class:`RolloutMonitor` follows ``RouterConfig(rollout={...})`` (stages and gates:
:mod:`modelrouter.config.rollout`). Like the guardrail monitor it is woken every
``guardrail_check_every`` feedback events (and requests, labels) on its own worker thread
(:class:`~modelrouter.background.BackgroundCheck`); :meth:`RolloutMonitor.check` does the same
synchronously (tests, simulations, cron jobs). Each check takes one analysis (with the
shadows' statistics), reads every candidate's gate (:func:`~modelrouter.analysis.gates.
read_gate`) and acts:

- ``advance``: the next stage of the plan (``ship``: the candidate serves everyone);
- ``rollback``: in a canary/ab stage, to the previous stage of the plan (``rollback_to=
  "previous"``, the default; the shadow stage when the first served stage fails) or to no
  exposure (``"control"``); in the shadow stage, the rollout just stops. After a rollback
  the automatic rollout stops for that candidate: it would otherwise expose users again
  on the same evidence. ``router.promote()`` restarts it by hand.

Every move is one :meth:`RoutingState.set_stage
<modelrouter.routing.state.RoutingState.set_stage>`: a new epoch with its propensities, a
:class:`~modelrouter.routing.promotion.StageEvent` (time, from, to, reason, the numbers),
and with Redis the record published through the shared control plane. Several workers may
read the same gate at once: each passes the stage it decided from (``expect``), the
compare-and-set on the epoch serialises them, and a worker that finds the candidate already
moved changes nothing, so one transition is made, not one per worker.

Thread safety: ``tick`` from any thread; checks run one at a time (its own lock).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from modelrouter.background import BackgroundCheck
from modelrouter.config.rollout import CandidateRollout, Rollout
from modelrouter.routing.experiment import Experiment
from modelrouter.routing.promotion import CandidateStage, StageEvent

if TYPE_CHECKING:
    from modelrouter.analysis import Analysis
    from modelrouter.analysis.gates import GateReading

__all__ = ["RolloutMonitor"]

_log = logging.getLogger("modelrouter")


class RolloutMonitor(BackgroundCheck):
    """Reads the gates and moves the candidates' stages (see the module docstring)."""

    thread_name = "modelrouter-rollout"

    def __init__(self, experiment: Experiment, rollout: Rollout,
                 analyse: Callable[[], Analysis], *, every: int) -> None:
        super().__init__(every)
        self.experiment = experiment
        self.rollout = rollout
        self.analyse = analyse
        self.checks = 0
        self.last_readings: tuple[GateReading, ...] = ()

    def run(self) -> object:
        """The background run: :meth:`check`."""
        return self.check()

    def check(self) -> tuple[GateReading, ...]:
        """Read every active candidate's gate now and act on it; returns the readings."""
        from modelrouter.analysis.gates import read_gate  # scipy: loaded when first checked

        with self._lock:
            self.checks += 1
            stages = self.experiment.state.stages.current
            todo = [(plan, stages[plan.candidate]) for plan in self.rollout.candidates
                    if _active(plan, stages.get(plan.candidate))]
            if not todo:
                return ()
            analysis = self.analyse()
            readings = []
            for plan, cur in todo:
                assert cur.index is not None
                reading = read_gate(analysis.data, analysis.shadow_data,
                                    plan.stages[cur.index], cur)
                readings.append(reading)
                if reading.action != "stay":
                    event = self._act(plan, cur, reading)
                    if event is not None:
                        _log.warning("modelrouter: rollout %s", event.line())
            self.last_readings = tuple(readings)
            return self.last_readings

    def _act(self, plan: CandidateRollout, cur: CandidateStage,
             reading: GateReading) -> StageEvent | None:
        assert cur.index is not None
        state = self.experiment.state
        expect = (cur.stage, cur.index)
        numbers = {"units": float(reading.units), **reading.numbers}
        if reading.action == "advance":
            nxt = plan.stages[cur.index + 1]
            share = 1.0 if nxt.stage == "ship" else nxt.share
            return state.set_stage(cur.candidate, nxt.stage, share,
                                   kind="ship" if nxt.stage == "ship" else "advance",
                                   reason=f"gate {plan.stages[cur.index].advance_if!r} held: "
                                          f"{reading.reason}", numbers=numbers,
                                   index=cur.index + 1, expect=expect)
        spec = plan.stages[cur.index]
        if spec.stage == "shadow":  # nobody is exposed: the rollout stops where it is
            return state.set_stage(cur.candidate, "shadow", 0.0, kind="stop",
                                   reason=reading.reason, numbers=numbers, index=cur.index,
                                   stopped=True, expect=expect)
        back = cur.index - 1 if spec.rollback_to == "previous" and cur.index > 0 else None
        target = plan.stages[back] if back is not None else None
        stage = "shadow" if target is None else target.stage
        share = 0.0 if target is None or target.stage == "shadow" else target.share
        return state.set_stage(cur.candidate, stage, share, kind="rollback",
                               reason=reading.reason, numbers=numbers, index=back,
                               stopped=True, expect=expect)


def _active(plan: CandidateRollout, cur: CandidateStage | None) -> bool:
    """Whether the automatic rollout acts on the candidate: it follows the plan, has not
    stopped, is not shipped, and its stage is the plan's stage at its index."""
    return (cur is not None and not cur.stopped and cur.index is not None
            and cur.stage != "ship" and cur.index < len(plan.stages) - 1
            and plan.stages[cur.index].stage == cur.stage)
