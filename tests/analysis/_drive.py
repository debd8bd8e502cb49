"""Drive a real Experiment with simulated units, keeping independent per-unit records.

The records (variant, epoch and outcome of every unit) are kept here, outside the store, so the
tests can compute reference statistics with scipy / statsmodels from them and compare with what
the analysis computes from the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from modelrouter import Experiment


@dataclass
class Ledger:
    """Everything the test knows about each unit, independently of the store."""

    variant: list[str] = field(default_factory=list)
    epoch: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)

    def values(self, variant: str) -> np.ndarray:
        return np.array([v for g, v in zip(self.variant, self.value) if g == variant])

    def counts(self, variants: tuple[str, ...]) -> np.ndarray:
        return np.array([self.variant.count(v) for v in variants], dtype=float)


def drive(exp: Experiment, ledger: Ledger, n: int, outcome: Callable[[str], float],
          metric: str = "click") -> None:
    """Route ``n`` new units and record one value of ``metric`` for each (0 is recorded too)."""
    start = len(ledger.variant)
    for i in range(start, start + n):
        unit = f"u{i}"
        d = exp.assign(unit)
        v = outcome(d.variant)
        exp.record_unit(unit, metric, v)
        ledger.variant.append(d.variant)
        ledger.epoch.append(d.epoch)
        ledger.value.append(v)


def bernoulli(rng: np.random.Generator, rates: dict[str, float]) -> Callable[[str], float]:
    return lambda variant: float(rng.random() < rates[variant])


def normal(rng: np.random.Generator, means: dict[str, float], sd: float
           ) -> Callable[[str], float]:
    return lambda variant: float(rng.normal(means[variant], sd))
