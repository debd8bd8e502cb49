"""The promotion half of :class:`~modelrouter.routing.state.RoutingState`: moving a shadow
candidate between stages (see :mod:`modelrouter.routing.promotion` for the design).

Kept apart so the state module stays within its size; the methods run on the routing state's
own fields and lock (``_change``, ``_install``), exactly as its other control-plane calls.

Thread safety: as :class:`~modelrouter.routing.state.RoutingState`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from modelrouter.config import Mode
from modelrouter.exceptions import ConfigError
from modelrouter.routing.assignment import Allocation
from modelrouter.routing.promotion import (
    EventKind,
    StageEvent,
    Stages,
    check_promotion,
    stage_after,
    staged_weights,
)

__all__ = ["StageMembers"]

T = TypeVar("T")


class StageMembers:
    """Stages of the shadow candidates: read them, move them (a mixin of RoutingState)."""

    names: tuple[str, ...]
    control: str
    candidates: tuple[str, ...]
    mode: Mode
    _stages: Stages
    _ab: dict[str, float]
    _active: list[bool]
    _held: bool
    _lock: threading.Lock
    _clock: Callable[[], float]

    if TYPE_CHECKING:
        def _change(self, change: Callable[[], T]) -> T: ...
        def _install(self, event: Callable[[Allocation], object] | None = None, *,
                     recompute: bool = True) -> Allocation: ...

    @property
    def stages(self) -> Stages:
        """Every candidate's stage and the stage transitions so far (routing/promotion.py)."""
        return self._stages

    def _with_candidates(self, weights: Mapping[str, float]) -> Mapping[str, float]:
        """``weights`` with each candidate missing from them at its current share (0 while a
        shadow) and the given weights scaled to the rest; a candidate's share moves only
        through :meth:`set_stage` (a weight given for it must be its current share)."""
        if not self.candidates or not isinstance(weights, Mapping):
            return weights
        current = {s.candidate: s.share for s in self._stages.current.values()}
        for c in self.candidates:
            if c in weights and weights[c] != current.get(c, 0.0):
                raise ConfigError(f"weights.{c} ({weights[c]!r}): {c!r} is a shadow candidate "
                                  f"at share {current.get(c, 0.0):g}; its share changes through "
                                  "promote() or its rollout, not weights")
        missing = {c: current.get(c, 0.0) for c in self.candidates if c not in weights}
        rest = 1.0 - math.fsum(missing.values())  # the served arms share what is left
        return {**{n: w * rest if isinstance(w, (int, float)) and not isinstance(w, bool)
                   else w for n, w in weights.items()}, **missing}

    def set_stage(self, candidate: str, stage: str, share: float | None, *,
                  kind: EventKind = "promote", reason: str = "promoted by an explicit call",
                  numbers: Mapping[str, float] | None = None, index: int | None = None,
                  stopped: bool = False, expect: tuple[str, int | None] | None = None
                  ) -> StageEvent | None:
        """Move a shadow candidate to ``stage`` at ``share`` (0 for ``shadow``): a new epoch,
        and a :class:`StageEvent` recorded with it. ``kind="promote"`` checks the promotion
        (:func:`check_promotion`); the rollout's own moves (advance, rollback, stop) pass
        ``expect=(stage, index)``, the stage they decided from: when another worker moved the
        candidate first, nothing changes and None is returned (one transition, not two)."""
        def change() -> StageEvent | None:
            cur = self._stages.current.get(candidate)
            if kind == "promote":
                name, new_stage, new_share = check_promotion(
                    self._stages, candidate, stage, share, mode=self.mode, held=self._held)
            elif cur is None or (expect is not None and (cur.stage, cur.index) != expect):
                return None
            else:
                name, new_stage, new_share = candidate, stage, float(share or 0.0)
                if new_share > cur.share and (self._held or self.mode != "ab"):
                    return None  # never expose more while held or in bandit mode
            before = self._stages.current[name]
            i = self.names.index(name)
            self._ab = staged_weights(self._ab, name, new_share, self.control)
            self._active = [a if j != i else new_share > 0 for j, a in enumerate(self._active)]
            made: list[StageEvent] = []

            def add(alloc: Allocation) -> None:
                at = self._clock()
                made.append(StageEvent(name, kind, at, before.stage, new_stage, before.share,
                                       new_share, reason, alloc.epoch, dict(numbers or {})))
                self._stages = self._stages.moved(
                    stage_after(before, new_stage, new_share, at, alloc.epoch, index=index,
                                stopped=stopped), made[0])

            self._install(add)
            return made[0]

        return self._change(change)
