"""The memory store's state as plain data: ``(header, arrays)``, both ways.

:meth:`MemoryStore.dump <modelrouter.store.memory.MemoryStore.dump>` gives a JSON-safe header
(requests per variant, uncounted requests, segment overflow, segment value tables, epochs,
request-level group keys, looks, ``saved_at``, the latency histogram layout, the losses counted
so far: ``Snapshot.losses``, absent from files written before them) and named numpy
arrays (latency histogram, group sums, and at unit level the unit index and every column, see
store/units.py). :meth:`MemoryStore.load <modelrouter.store.memory.MemoryStore.load>` takes
the same back: :func:`parse_state` validates all of it and builds new objects before the store
changes anything, so a bad state changes nothing. ``store/persistence.py`` frames these in a
snapshot file; this module knows nothing of files.

With a bandit, the header's ``training`` section holds the decision tracker's training
counters (cumulative over every training decision, exact) and its updates not yet taken by a
refresh (see store/decisions.py); a state without one (an A/B store, a file written before
format version 4) leaves the tracker empty.

Not part of the state: the pending ring (decision ids do not survive a restore), the rest of
the decision tracker (its decision-level sums and ring), the units' cached hash buckets
(recomputed on demand).

Thread safety: :func:`dump_state` copies live objects and must run under the store's lock;
:func:`parse_state` touches only its arguments.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelrouter.exceptions import StoreError
from modelrouter.store.histogram import LAYOUT, N_SLOTS
from modelrouter.store.looks import Look
from modelrouter.store.losses import check_losses
from modelrouter.store.rows import SUMS_PER_METRIC, GroupTable
from modelrouter.store.types import EpochInfo
from modelrouter.store.units import UnitTable

if TYPE_CHECKING:
    import numpy as np

__all__ = ["TRAINING_COUNTERS", "GroupKey", "StoreState", "dump_state", "parse_state"]

GroupKey = tuple[int, int, tuple[int, ...]]  # request level: (variant, epoch, segment codes)


@dataclass
class StoreState:
    """Everything a memory store saves; live objects (under its lock) or freshly parsed."""

    requests: list[int]
    uncounted: int
    overflow: int
    segment_codes: list[dict[str, int]]  # per dimension: value -> code
    epochs: list[EpochInfo]
    looks: list[Look]
    groups: GroupTable[GroupKey]
    units: UnitTable | None  # unit level only
    hist: array[int]  # latency histogram: slot s of variant v at v * N_SLOTS + s
    hist_sum: list[float]
    training: Mapping[str, Any] | None = None  # the tracker's counters (dump_training)
    training_counters: list[list[float]] | None = None  # parsed, in the tracker's order
    losses: Mapping[str, int] = field(default_factory=dict)  # Snapshot.losses (store/losses.py)


TRAINING_COUNTERS = {"binary": ("successes", "failures"), "continuous": ("n", "sum", "sumsq")}
"""The training counters of each reward kind, in the tracker's order."""


def code_order(table: Mapping[str, int]) -> tuple[str, ...]:
    """A segment value table's values in code order."""
    return tuple(sorted(table, key=table.__getitem__))


def dump_state(state: StoreState, metric_names: Sequence[str], saved_at: float
               ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Copies of ``state`` as ``(header, arrays)`` (call under the store's lock)."""
    import numpy as np

    header: dict[str, Any] = {
        "requests": list(state.requests), "uncounted": state.uncounted,
        "overflow": state.overflow,
        "segment_tables": [list(code_order(t)) for t in state.segment_codes],
        "epochs": [[e.epoch, e.mode, list(e.weights), e.started_at] for e in state.epochs],
        "group_keys": [[v, e, list(seg)] for v, e, seg in state.groups.keys],
        "saved_at": saved_at,
        "looks": [k.to_dict() for k in state.looks],
        "latency_layout": LAYOUT,
        "losses": dict(state.losses),
    }
    if state.training is not None:
        header["training"] = state.training
    arrays: dict[str, np.ndarray] = {
        "latency_hist": np.array(state.hist, dtype="<i8").reshape(-1, N_SLOTS),
        "latency_sum": np.array(state.hist_sum, dtype="<f8")}
    if state.units is not None:
        arrays.update(state.units.dump(metric_names))
    arrays["group_sums"] = np.array(state.groups.sums, dtype="<f8").reshape(
        -1, state.groups.width)
    return header, arrays


def parse_state(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray], *,
                n_variants: int, metric_names: Sequence[str], n_dims: int, unit_level: bool,
                auto: tuple[int, int], covariates: Sequence[str] = ()) -> StoreState:
    """A validated :class:`StoreState` of new objects from a dump; StoreError for anything
    inconsistent (malformed data included). Without latency arrays (a state saved before the
    histogram existed) the histogram starts empty."""
    try:
        return _parse(header, arrays, n_variants, metric_names, n_dims, unit_level, auto,
                      covariates)
    except StoreError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise StoreError(f"malformed state: {exc!r}") from None


def _parse(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray], k: int,
           metric_names: Sequence[str], n_dims: int, unit_level: bool, auto: tuple[int, int],
           covariates: Sequence[str]) -> StoreState:
    requests = [int(r) for r in header["requests"]]
    if len(requests) != k:
        raise StoreError(f"{len(requests)} request counters for {k} variants")
    tables = header["segment_tables"]
    if len(tables) != n_dims:
        raise StoreError("segment tables do not match the segment dimensions")
    epochs = [EpochInfo(int(e), str(m), tuple(float(w) for w in ws), float(t))
              for e, m, ws, t in header["epochs"]]
    keys = [(int(v), int(e), tuple(int(c) for c in seg)) for v, e, seg in header["group_keys"]]
    if any(not 0 <= key[0] < k for key in keys):
        raise StoreError("a group's variant code is out of range")
    sums = arrays["group_sums"]
    width = 1 + SUMS_PER_METRIC * len(metric_names)
    if sums.shape != (len(keys), width):
        raise StoreError(f"group sums have shape {sums.shape}, expected "
                         f"({len(keys)}, {width})")
    hist, hist_sum = _latency(header, arrays, k)
    units = None
    if unit_level:
        units = UnitTable.load(arrays, metric_names, n_dims, k, auto, covariates)
    training, counters = _training(header.get("training"), k)
    return StoreState(
        requests=requests, uncounted=int(header["uncounted"]),
        overflow=int(header["overflow"]),
        segment_codes=[{str(v): i for i, v in enumerate(t)} for t in tables],
        epochs=epochs, looks=[Look.from_dict(k) for k in header.get("looks", [])],
        groups=GroupTable.of(len(metric_names), keys, sums.tolist()), units=units,
        hist=hist, hist_sum=hist_sum, training=training, training_counters=counters,
        losses=check_losses(header.get("losses", {})))


def _training(section: Any, k: int) -> tuple[Mapping[str, Any] | None, list[list[float]] | None]:
    """The ``training`` section checked: a known kind, its counters (k finite numbers each),
    ``pending`` >= 0; (None, None) without one."""
    if section is None:
        return None, None
    kind = section["kind"]
    if kind not in TRAINING_COUNTERS:
        raise StoreError(f"training counters of unknown kind {kind!r}")
    counters = section["counters"]
    if set(counters) != set(TRAINING_COUNTERS[kind]):
        raise StoreError(f"{kind} training counters are {sorted(counters)!r}, expected "
                         f"{list(TRAINING_COUNTERS[kind])!r}")
    out = [[float(v) for v in counters[n]] for n in TRAINING_COUNTERS[kind]]
    if any(len(c) != k or not all(math.isfinite(v) for v in c) for c in out):
        raise StoreError(f"training counters must be {k} finite numbers each")
    pending = section["pending"]
    if isinstance(pending, bool) or not isinstance(pending, int) or pending < 0:
        raise StoreError(f"training pending ({pending!r}) must be an integer >= 0")
    return {"kind": kind, "pending": pending, "counters": {
        n: c for n, c in zip(TRAINING_COUNTERS[kind], out)}}, out


def _latency(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray], k: int
             ) -> tuple[array[int], list[float]]:
    """The latency histogram (empty without one), checked against this release's layout."""
    if "latency_hist" not in arrays and "latency_sum" not in arrays:
        return array("q", bytes(8 * N_SLOTS * k)), [0.0] * k
    if header.get("latency_layout") != LAYOUT:
        raise StoreError(f"latency histogram has layout {header.get('latency_layout')!r}; "
                         f"this modelrouter uses {LAYOUT!r}")
    hist, sums = arrays["latency_hist"], arrays["latency_sum"]
    if hist.shape != (k, N_SLOTS) or sums.shape != (k,) or int(hist.min(initial=0)) < 0:
        raise StoreError(f"latency histogram has shape {hist.shape} (sums {sums.shape}), "
                         f"expected ({k}, {N_SLOTS}) of counts >= 0")
    return array("q", hist.astype("<i8").tobytes()), [float(v) for v in sums]
