"""`modelrouter.Experiment`: the routing core plus what needs the analysis.

:class:`modelrouter.routing.experiment.Experiment` routes, records and takes control-plane
calls, and never imports the analysis (the layers point one way). This subclass, at the root of
the package, adds the features that do: the guardrail monitor (automatic rollback,
subscribed to feedback through the core's hook), the official looks of the sequential test,
and :meth:`Experiment.promote` (a shadow candidate, registered as an arm held at weight 0 by
``candidates=``, becomes a served arm; the rollout monitor calls the routing state itself).
It is what :class:`~modelrouter.ModelRouter` builds and what ``modelrouter.Experiment`` names.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from modelrouter.config import RouterConfig
from modelrouter.config.rollout import Rollout
from modelrouter.monitor import GuardrailMonitor
from modelrouter.routing import experiment as core
from modelrouter.routing.promotion import StageEvent, Stages
from modelrouter.store.forksafe import renew
from modelrouter.store.looks import Look

if TYPE_CHECKING:
    import random

    from modelrouter.analysis import GuardrailResult

__all__ = ["Experiment"]

_DEFAULT_SHARE = {"canary": 0.05, "ab": 0.5, "ship": 1.0}  # promote() without share or plan


class Experiment(core.Experiment):
    """The routing core with guardrail monitoring and sequential looks (see module doc)."""

    def __init__(self, variants: Mapping[str, Any], config: RouterConfig | None = None, *,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 segment_dims: Sequence[str] = (), candidates: Sequence[str] = ()) -> None:
        super().__init__(variants, config, clock=clock, rng=rng, segment_dims=segment_dims,
                         candidates=candidates)
        cfg = self.config
        self.guard = GuardrailMonitor(self, every=cfg.guardrail_check_every,
                                      enabled=cfg.rollback)
        if cfg.rollback:  # the hot path ticks the monitor only when automatic rollback is on
            self.subscribe(self.guard.tick)
        self._look_lock = threading.Lock()  # one record_look at a time (never the hot path)
        renew(self, Experiment._after_fork)  # (replaces the routing core's hook, which it calls)

    def _after_fork(self) -> None:
        """In a forked child: the routing core's renewal, and a fresh look lock (a look the
        parent was recording at the fork is the parent's; its lock would stay held here)."""
        super()._after_fork()
        self._look_lock = threading.Lock()

    @property
    def stages(self) -> Stages:
        """The stage of every shadow candidate and the stage transitions so far."""
        return self.state.stages

    def promote(self, name: str, stage: str = "canary", share: float | None = None, *,
                reason: str = "promoted by an explicit call") -> StageEvent:
        """Serve shadow candidate ``name`` at ``share`` from a new epoch on (see
        :mod:`modelrouter.routing.promotion`; ConfigError, and no change, when refused).
        ``share`` defaults to the rollout plan's share of that stage, else 0.05 for a canary
        and 0.5 for an A/B stage (1 for ship). If the candidate has a rollout plan and the
        stage is in it, the automatic rollout continues from there; otherwise it stops."""
        rollout = self.config.rollout
        plan = rollout[name].stages if isinstance(rollout, Rollout) and name in rollout else ()
        index = next((i for i, s in enumerate(plan) if s.stage == stage
                      and (share is None or s.share == share or stage == "ship")), None)
        if share is None:
            planned = None if index is None else plan[index].share
            share = planned if planned is not None else _DEFAULT_SHARE.get(stage)
        event = self.state.set_stage(name, stage, share, kind="promote", reason=reason,
                                     index=index, stopped=index is None)
        assert event is not None  # a promotion either happens or raises
        return event

    def check_guardrails(self) -> tuple[GuardrailResult, ...]:
        """Run the guardrails now (synchronously); roll back if one fails and rollback is on."""
        return self.guard.check()

    def record_look(self, metric: str | None = None, *, variant: str | None = None) -> Look:
        """Record an official look of the plan's sequential test and return it.

        The look (time, information rate, z, boundary given the earlier looks, alpha spent,
        decision) becomes part of the store's state, so later boundaries account for it.
        ``metric`` defaults to the config's primary; raises AnalysisError without a plan or
        when nothing changed since the last look. Off the hot path: it snapshots the store.
        """
        from modelrouter.analysis.data import AnalysisData
        from modelrouter.analysis.sequential import make_look

        with self._look_lock:
            look = make_look(AnalysisData.from_experiment(self), metric, variant, self.clock())
            self.store.add_look(look)
        return look
