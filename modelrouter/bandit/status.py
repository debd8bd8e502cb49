"""The bandit's state at one moment, as a typed value (what dashboards and the analysis read)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["BanditStatus"]


@dataclass(frozen=True)
class BanditStatus:
    """Posterior, weights and arms of a bandit now; every tuple is in variant order.

    ``weights`` are the propensities in force (the holdout mixed in; in A/B mode the A/B
    weights), ``bandit_weights`` the allocator's own; ``p_best``, ``mean`` and
    ``expected_loss`` summarise the posterior over every arm, paused ones included.
    """

    policy: str
    active: bool  # whether the experiment routes by the bandit now (mode "bandit")
    epoch: int
    weights: tuple[float, ...]
    bandit_weights: tuple[float, ...]
    p_best: tuple[float, ...]
    mean: tuple[float, ...]
    expected_loss: tuple[float, ...]
    paused: tuple[bool, ...]
    counts: tuple[float, ...]
    kind: str
    holdout: float
    min_share: float

    def __repr__(self) -> str:
        best = max(range(len(self.p_best)), key=self.p_best.__getitem__) if self.p_best else -1
        return (f"BanditStatus(policy={self.policy!r}, active={self.active}, epoch={self.epoch}, "
                f"weights={[round(w, 4) for w in self.weights]}, best_arm={best})")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists instead of tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
