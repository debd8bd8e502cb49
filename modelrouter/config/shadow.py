"""The shadow-evaluation settings of a ``RouterConfig``: :class:`ShadowConfig`.

Shadows (``ModelRouter(..., shadows={...})``) are models evaluated on live inputs and never
served. These fields say which requests they see and how much background work they may cost:

- ``shadow_share`` in ``[0, 1]`` (default 1: with shadows given, every routed request is
  shadowed, within the queue bound): the share of units (user/session level: a salted hash
  of the unit id, so a user is shadowed on every request or never) or of decisions (request
  level, or a request without a unit id: a hash of the decision id) that are shadowed;
- ``shadow_timeout`` (seconds, > 0): a shadow call slower than this counts as a timeout error;
- ``shadow_queue`` (> 0): shadow calls queued or running at once; beyond it the work is
  dropped and counted (reason ``"queue_full"``), never waited for;
- ``shadow_workers`` (> 0): threads that run synchronous shadow predictors;
- ``shadow_kind``: ``"label"`` (classifiers: agreement, accuracy) or ``"score"`` (numbers:
  differences, a loss);
- ``shadow_max_decisions`` (> 0): recent shadowed decisions kept so ``record_label`` can reach
  them (oldest evicted first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modelrouter.config._checks import check_choice, check_number, check_positive_int
from modelrouter.config.base import SubConfig

__all__ = ["ShadowConfig", "ShadowKind"]

ShadowKind = Literal["label", "score"]


@dataclass(frozen=True, kw_only=True, repr=False)
class ShadowConfig(SubConfig):
    """``shadow_share``, ``shadow_timeout``, ``shadow_queue``, ``shadow_workers``,
    ``shadow_kind`` and ``shadow_max_decisions`` (see the module docstring)."""

    shadow_share: float = 1.0
    shadow_timeout: float = 5.0
    shadow_queue: int = 1000
    shadow_workers: int = 2
    shadow_kind: ShadowKind = "label"
    shadow_max_decisions: int = 100_000

    def __post_init__(self) -> None:
        object.__setattr__(self, "shadow_share",
                           check_number("shadow_share", self.shadow_share, low=0.0, high=1.0))
        object.__setattr__(self, "shadow_timeout",
                           check_number("shadow_timeout", self.shadow_timeout, low=0.0,
                                        low_open=True))
        check_positive_int("shadow_queue", self.shadow_queue)
        check_positive_int("shadow_workers", self.shadow_workers)
        check_choice("shadow_kind", self.shadow_kind, ShadowKind)
        check_positive_int("shadow_max_decisions", self.shadow_max_decisions)
