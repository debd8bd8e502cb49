"""What both routing modes share: the context of a decision and the missing-unit rule.

A/B (hash split, :mod:`modelrouter.routing.experiment`) and bandit routing
(:mod:`modelrouter.routing.bandit`) choose a variant differently but issue decisions the same
way: the same decision-id prefix, store, clock and models, and the same answer to a request
without a unit id (``missing_unit``), written here once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from modelrouter.config import MissingUnitPolicy, RouterConfig
from modelrouter.exceptions import UnitIdError
from modelrouter.routing.decision import Decision
from modelrouter.store.protocol import Store

__all__ = ["RouteContext", "unit_sources"]


def unit_sources(config: RouterConfig) -> str:
    """Where a unit id is looked for, in words (for the missing-unit error)."""
    parts = [f"header {config.unit_header!r}" if config.unit_header else "",
             f"cookie {config.unit_cookie!r}" if config.unit_cookie else "",
             f"query parameter {config.unit_query!r}" if config.unit_query else "",
             "the unit_id callable" if config.unit_id else ""]
    return ", ".join(p for p in parts if p)


@dataclass(frozen=True, eq=False)
class RouteContext:
    """The fixed facts every decision of one experiment is issued with (built once)."""

    names: tuple[str, ...]
    models: tuple[Any, ...]  # the user's predictors: arbitrary objects
    control_index: int
    prefix: str  # decision ids are prefix + hex sequence number: unique per process
    store: Store
    clock: Callable[[], float]
    unit_level: bool
    missing_unit: MissingUnitPolicy
    sources: str

    def missing(self, draw: Callable[[], tuple[int, float]], epoch: int, mode: str,
                segment: Sequence[str], now: float) -> tuple[Decision, int]:
        """The decision for a request without a unit id in a unit-level experiment.

        ``"reject"`` raises :class:`UnitIdError`; ``"random"`` serves ``draw()`` (variant
        index, propensity) of the current policy; ``"control"`` serves the control. Either
        way the request is served but not counted (``store.uncounted()``), handle -1.
        """
        if self.missing_unit == "reject":
            raise UnitIdError(f"request has no unit id (looked in {self.sources})")
        self.store.uncounted()
        if self.missing_unit == "random":
            i, p = draw()
        else:
            i, p = self.control_index, 1.0
        return Decision("", self.names[i], self.models[i], None, p, epoch, mode, now, False,
                        tuple(segment)), -1
