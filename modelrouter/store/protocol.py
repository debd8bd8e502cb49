"""The store protocol: what the routing core and the analysis need from a store.

:class:`~modelrouter.store.memory.MemoryStore` is the reference implementation;
:class:`~modelrouter.store.redis.RedisStore` implements the same protocol with a local buffer on
the request path and Redis as the shared, merged state. Hot-path methods (``segment_codes``,
``expose``, ``uncounted``, ``record_seq``, ``record_auto``, ``record_unit``) must be O(1), do no
I/O and never block on the network; ``snapshot`` may be slow (it is called off the request path).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from modelrouter.config import MetricSpec
from modelrouter.store.memory import Snapshot

__all__ = ["RemoteStore", "Store", "loss_notes", "metric_specs", "reward_counters"]


@runtime_checkable
class Store(Protocol):
    """Exact sufficient statistics of one experiment (see DESIGN.md, "Store data model")."""

    variants: tuple[str, ...]
    metrics: dict[str, MetricSpec]
    metric_names: tuple[str, ...]
    metric_index: dict[str, int]
    level: str
    unit_level: bool
    segment_dims: tuple[str, ...]

    def begin_epoch(self, epoch: int, mode: str, weights: Sequence[float]) -> None:
        """Record that routing weights changed."""

    def segment_codes(self, values: Sequence[str]) -> tuple[int, ...]:
        """Codes of segment values (capped cardinality)."""

    def expose(self, unit: str | None, variant: int, propensity: float, epoch: int,
               segment: tuple[int, ...] = ()) -> int:
        """Count one routed request; return its decision handle (sequence number)."""

    def uncounted(self) -> None:
        """Count a request served but left out of the experiment."""

    def record_seq(self, seq: int, metric: int, value: float, *, window: bool = True) -> None:
        """Add a validated value to the decision ``seq``."""

    def record_auto(self, seq: int, latency_ms: float, error: float) -> None:
        """Record the automatic metrics of a finished request."""

    def record_unit(self, unit: str, metric: int, value: float) -> None:
        """Add a validated value to a unit (unit level only)."""

    def has_unit(self, unit: str) -> bool:
        """Whether the unit is known (locally, for remote stores)."""

    def add_look(self, look: Any) -> None:
        """Record an official look of a sequential test (kept with the statistics)."""

    def snapshot(self) -> Snapshot:
        """A consistent copy of the (merged, for remote stores) statistics."""



@runtime_checkable
class RemoteStore(Store, Protocol):
    """A store whose shared state lives elsewhere (Redis): the hot path only buffers."""

    def start(self) -> None:
        """Start background flushing (idempotent)."""

    def flush(self) -> None:
        """Write every buffered delta now; StoreError if the backend cannot be reached."""

    def close(self) -> None:
        """Stop background flushing and flush what is left."""

    def stats(self) -> dict[str, object]:
        """Buffer and flusher state of this worker (no I/O)."""


def reward_counters(snapshot: Snapshot, metric: str) -> dict[str, np.ndarray]:
    """Additive per-variant counters of a metric's per-unit values, for bandit posteriors.

    Every unit counts (a unit without a value has value 0, as in the analysis), except for
    ``aggregate="mean"`` metrics, where a unit's value is its mean and only units with values
    count. Returns ``n``, ``sum``, ``sumsq`` of the per-unit values (the conversion flag for
    ``aggregate="any"``) and ``successes`` / ``failures`` (for binary metrics). They come from
    the snapshot, so with the Redis store they are the global counters of every worker.
    """
    k = len(snapshot.variants)
    spec = snapshot.metrics[metric]
    if snapshot.units is not None:
        codes, x, y = snapshot.units.variant, snapshot.units.x[metric], snapshot.units.y[metric]
        if spec.aggregate == "any":
            x = (x > 0).astype(np.float64)
        elif spec.aggregate == "mean":
            has = y > 0
            codes, x = codes[has], x[has] / y[has]
        n: np.ndarray[Any, Any] = np.bincount(codes, minlength=k).astype(np.float64)
        s = np.bincount(codes, weights=x, minlength=k)
        ss = np.bincount(codes, weights=x * x, minlength=k)
    else:  # request level: per-group moments of per-request x merge by addition
        n, s, ss = np.zeros(k), np.zeros(k), np.zeros(k)  # type: ignore[assignment]
        for (variant, _epoch, _seg), (_count, per_metric) in snapshot.groups.items():
            m = per_metric[metric]
            n[variant] += m.n
            s[variant] += m.mean_x * m.n
            ss[variant] += m.m2_x + m.n * m.mean_x * m.mean_x
    return {"n": n, "sum": s, "sumsq": ss, "successes": s.copy(), "failures": n - s}


def metric_specs(metrics: Mapping[str, MetricSpec]) -> dict[str, tuple[str, str]]:
    """(kind, aggregate) per metric: what two stores must agree on to be merged."""
    return {name: (m.kind, str(m.aggregate)) for name, m in metrics.items()}


def loss_notes(losses: Mapping[str, int]) -> list[str]:
    """Analysis notes for what a remote store could not merge (never silently lost)."""
    notes = []
    if losses.get("dropped_exposures"):
        notes.append(f"{losses['dropped_exposures']:,} exposures were dropped by full worker "
                     "buffers while the shared store was unreachable (requests still counted)")
    if losses.get("dropped_values"):
        notes.append(f"{losses['dropped_values']:,} feedback values were dropped by full worker "
                     "buffers while the shared store was unreachable")
    if losses.get("orphan_values"):
        notes.append(f"{losses['orphan_values']:,} feedback values belong to units whose exposure "
                     "is not in the shared store (dropped or not yet flushed); not analysed")
    return notes
