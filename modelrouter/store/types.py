"""The store's data types: epochs, per-unit column copies and the analysis snapshot.

Plain frozen dataclasses. numpy, the metric specs and the statistics are only named in
annotations here (imported for type checking), so importing the store's request path does not
load them.

Thread safety: every type is frozen; a :class:`Snapshot` is a copy taken under the store's lock,
safe to read from any thread.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modelrouter.store.looks import Look

if TYPE_CHECKING:
    import numpy as np

    from modelrouter.config import MetricSpec
    from modelrouter.stats.moments import Moments
    from modelrouter.store.histogram import LatencyHistogram

__all__ = ["Deltas", "EpochInfo", "Snapshot", "UnitColumns"]


@dataclass(frozen=True)
class EpochInfo:
    """One period of fixed routing weights (a new one starts at every weight change)."""

    epoch: int
    mode: str
    weights: tuple[float, ...]
    started_at: float


@dataclass(frozen=True)
class UnitColumns:
    """Copies of the per-unit columns (unit level only); index ``i`` is one unit."""

    variant: np.ndarray
    epoch: np.ndarray
    propensity: np.ndarray
    first_seen: np.ndarray
    exposures: np.ndarray
    segments: np.ndarray  # shape (n_units, n_dims), codes into Snapshot.segment_values
    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    # unit ids in row order (exports name the unit); None where a producer has none (tests'
    # hand-built columns). The memory store gives a read-only view of its append-only id list
    # (no copy under the lock), Redis the ids it read.
    ids: Sequence[str] | None = None
    # per declared covariate (MetricSpec.covariates): its value per unit and the time it was
    # recorded (NaN: none); the analysis uses a value recorded at or before first_seen only
    covariates: dict[str, np.ndarray] = field(default_factory=dict)
    covariate_at: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """A consistent copy of the store's statistics, taken under the lock."""

    variants: tuple[str, ...]
    metrics: dict[str, MetricSpec]
    level: str
    taken_at: float
    segment_dims: tuple[str, ...]
    segment_values: dict[str, tuple[str, ...]]
    epochs: tuple[EpochInfo, ...]
    requests: np.ndarray  # routed requests per variant (counted ones)
    uncounted_requests: int
    segment_overflow: int
    units: UnitColumns | None
    # request level: (variant, epoch, segment codes) -> (n, {metric: Moments})
    groups: dict[tuple[int, int, tuple[int, ...]], tuple[int, dict[str, Moments]]] = field(
        default_factory=dict)
    # recorded looks of sequential tests, oldest first (see store/looks.py)
    looks: tuple[Look, ...] = ()
    # remote stores: what could not be merged (dropped_exposures, dropped_values, orphan_values)
    losses: dict[str, int] = field(default_factory=dict)
    # bandit decisions: (variant, epoch, segment codes, tag) -> (n, {metric: Moments})
    decisions: dict[tuple[int, int, tuple[int, ...], int], tuple[int, dict[str, Moments]]] = (
        field(default_factory=dict))
    # per-variant histogram of every recorded request's latency_ms (see store/histogram.py)
    latency: LatencyHistogram | None = None
    # whose traffic the numbers cover, said in every analysis output: the memory store holds
    # one process's ("one process (pid 123, memory store)"), Redis every worker's
    source: str = ""

    @property
    def n_units(self) -> int:
        """Units in the experiment (requests at request level)."""
        if self.units is not None:
            return int(self.units.variant.size)
        return sum(n for n, _ in self.groups.values())


@dataclass(frozen=True)
class Deltas:
    """What a memory store counted since the last take (``MemoryStore.take_deltas``), for a
    remote store that merges increments: request-level group sums and counters."""

    requests: list[int]  # routed requests per variant
    uncounted: int
    segment_overflow: int
    segment_tables: tuple[tuple[str, ...], ...]  # per dimension: values in code order (current)
    groups: list[tuple[tuple[int, int, tuple[int, ...]], list[float]]]  # (key, row delta)
    hist: array[int]  # latency histogram increments, slot s of variant v at v * N_SLOTS + s
    hist_sum: list[float]
    unattributed: int = 0  # finished requests whose decision was no longer pending
