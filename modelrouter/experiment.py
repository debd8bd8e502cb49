"""`modelrouter.Experiment`: the routing core plus what needs the analysis.

:class:`modelrouter.routing.experiment.Experiment` routes, records and takes control-plane
calls, and never imports the analysis (the layers point one way). This subclass, at the root of
the package, adds the two features that do: the guardrail monitor (automatic rollback,
subscribed to feedback through the core's hook) and the official looks of the sequential test.
It is what :class:`~modelrouter.ModelRouter` builds and what ``modelrouter.Experiment`` names.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from modelrouter.config import RouterConfig
from modelrouter.monitor import GuardrailMonitor
from modelrouter.routing import experiment as core
from modelrouter.store.looks import Look

if TYPE_CHECKING:
    import random

    from modelrouter.analysis import GuardrailResult

__all__ = ["Experiment"]


class Experiment(core.Experiment):
    """The routing core with guardrail monitoring and sequential looks (see module doc)."""

    def __init__(self, variants: Mapping[str, Any], config: RouterConfig | None = None, *,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 segment_dims: Sequence[str] = ()) -> None:
        super().__init__(variants, config, clock=clock, rng=rng, segment_dims=segment_dims)
        cfg = self.config
        self.guard = GuardrailMonitor(self, every=cfg.guardrail_check_every,
                                      enabled=cfg.rollback)
        if cfg.rollback:  # the hot path ticks the monitor only when automatic rollback is on
            self.subscribe(self.guard.tick)
        self._look_lock = threading.Lock()  # one record_look at a time (never the hot path)

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
