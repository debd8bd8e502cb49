"""The in-memory store, reference implementation of the store protocol (DESIGN.md: data model).

- **Unit level** (``level="user" | "session"``): a :class:`~modelrouter.store.units.UnitTable`
  (unit id -> row, columns per row and per metric), each row's cached hash bucket and the
  ``journal`` of automatic metrics (store/journal.py; the middleware appends to it too).
- **Request level**: a request is a unit while feedback may still arrive (its own ``(x, y)``
  per metric are ring columns); changes go at once to per (variant, epoch, segment) group sums.
- **Pending ring** (store/ring.py): slot ``seq % max_pending`` holds a decision's row and issue
  time: late feedback finds its unit in O(1), or is refused (overwritten, past the window).
- **Bandit mode**: a ``DecisionTracker`` fed under the lock (the journal's automatic metrics
  when folded). **Files**: :meth:`dump` / :meth:`load`. **Covariates**: store/covariates.py.

Thread safety: one lock (``_lock``: a ``threading.Lock``, or its compiled twin) guards every
mutation (counters, unit table, group sums, ring, decision tracker, latency histogram, epochs,
looks, segment tables, folds) and the copies of :meth:`snapshot`, :meth:`dump`,
:meth:`take_deltas`; held for microseconds, never across I/O or an await. :meth:`load`
validates outside it. Lock-free: :meth:`has_unit`, the journal's append and the hit path of
:meth:`segment_codes` (a miss takes the lock).
"""

from __future__ import annotations

import os
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from modelrouter.config.extensions import install
from modelrouter.exceptions import ConfigError, UnknownUnitError
from modelrouter.store.covariates import MemoryCovariateMembers
from modelrouter.store.decisions import DecisionTracker
from modelrouter.store.forksafe import STORE, track
from modelrouter.store.histogram import EDGES_MS, N_SLOTS, LatencyHistogram
from modelrouter.store.journal import AutoJournal, fold_threshold
from modelrouter.store.looks import Look, check_next_look
from modelrouter.store.losses import UNATTRIBUTED, count_loss
from modelrouter.store.protocol import BaseStore
from modelrouter.store.ring import PendingRing
from modelrouter.store.rows import GroupTable, add_to_pair, moments_of_rows
from modelrouter.store.state import GroupKey, StoreState, code_order, dump_state, parse_state
from modelrouter.store.types import Deltas, EpochInfo, Snapshot, UnitColumns
from modelrouter.store.unit_path import expose_unit, new_lock, new_path
from modelrouter.store.units import UnitTable

if TYPE_CHECKING:
    import numpy as np

    from modelrouter.config import MetricSpec

__all__ = ["OTHER", "EpochInfo", "MemoryStore", "Snapshot", "UnitColumns"]

OTHER = "other"
_NAN = float("nan")


class MemoryStore(MemoryCovariateMembers, BaseStore):
    """Exact, bounded, thread-safe statistics of one experiment, in process memory."""

    supports_bandit = True
    _units: UnitTable  # the covariate members (store/covariates.py) see it as a protocol

    def __init__(self, variants: Sequence[str], metrics: Mapping[str, MetricSpec], *,
                 level: str = "user", max_pending: int = 1_000_000,
                 attribution_window: float = 86_400.0, segment_dims: Sequence[str] = (),
                 segment_cap: int = 50, clock: Callable[[], float] = time.time) -> None:
        super().__init__(variants, metrics, level=level, max_pending=max_pending,
                         attribution_window=attribution_window, segment_dims=segment_dims,
                         segment_cap=segment_cap, clock=clock)
        self._auto = (self.metric_index["latency_ms"], self.metric_index["error"])
        k, n_metrics = len(self.variants), len(self.metric_names)
        self._lock = new_lock()
        track(self, self._lock, STORE)  # a fork waits until no thread is inside (forksafe.py)
        ring = self.ring = PendingRing(self.max_pending, self.attribution_window, clock)
        # hot-path aliases of the ring's arrays (a ring never replaces them)
        self._ring_seq, self._ring_time, self._ring_row = ring.seq, ring.time, ring.row
        # the unit-level hot path's state, the next decision number and the request counts
        # included (store/unit_path.py): one object for its lifetime
        self._path = new_path(self._lock, self.max_pending, ring.seq, ring.time, ring.row,
                              [0] * k)
        # request level: each pending request's own (x, y) per metric, reset when reused
        per_slot = 0 if self.unit_level else n_metrics
        self._slot_x = [ring.add_column("d", 0.0) for _ in range(per_slot)]
        self._slot_y = [ring.add_column("d", 0.0) for _ in range(per_slot)]
        self._uncounted, self._overflow = 0, 0
        self._losses: dict[str, int] = {}  # Snapshot.losses: unattributed, covariate drops
        self._seg_codes: list[dict[str, int]] = [{} for _ in self.segment_dims]
        self._epochs, self._looks = list[EpochInfo](), list[Look]()
        self._use_units(UnitTable(n_metrics, len(self.segment_dims), self._auto,
                                  self.covariate_names))
        self._groups: GroupTable[GroupKey] = GroupTable(n_metrics)
        self._decisions: DecisionTracker | None = None
        self._hist = array("q", bytes(8 * N_SLOTS * k))  # slot s of variant v: v * N_SLOTS + s
        self._hist_sum = [0.0] * k
        self.journal = AutoJournal(fold_threshold(self.max_pending)) if self.unit_level else None

    # -- epochs and segments --------------------------------------------------------------
    def begin_epoch(self, epoch: int, mode: str, weights: Sequence[float]) -> None:
        """Record that routing weights changed; decisions carry the epoch they came from."""
        with self._lock:
            self._epochs.append(EpochInfo(epoch, mode, tuple(weights), self.clock()))

    def epochs(self) -> tuple[EpochInfo, ...]:
        """Every epoch recorded so far, oldest first (restored ones included)."""
        with self._lock:
            return tuple(self._epochs)

    def segment_codes(self, values: Sequence[str]) -> tuple[int, ...]:
        """Codes of segment values; values past the cardinality cap become ``other``."""
        if len(values) != len(self._seg_codes):
            raise ValueError(f"segment ({tuple(values)!r}) must give one value per declared "
                             f"dimension {self.segment_dims!r}")
        codes = []
        for d, value in enumerate(values):
            code = self._seg_codes[d].get(value)
            if code is None:
                with self._lock:  # re-read: a restore may have replaced the tables
                    table = self._seg_codes[d]
                    code = table.get(value)
                    if code is None:
                        if len(table) >= self.segment_cap - 1 and value != OTHER:
                            self._overflow += 1
                            value = OTHER
                        code = table.setdefault(value, len(table))
            codes.append(code)
        return tuple(codes)

    def segment_values(self) -> tuple[tuple[str, ...], ...]:
        """Per segment dimension, the values seen so far in code order."""
        with self._lock:
            return tuple(code_order(t) for t in self._seg_codes)

    # -- hot path -------------------------------------------------------------------------
    def expose(self, unit: str | None, variant: int, propensity: float, epoch: int,
               segment: tuple[int, ...] = (), now: float | None = None) -> int:
        """Count one routed request; return its sequence number (the decision handle)."""
        now = self.clock() if now is None else now
        with self._lock:
            return self._expose_locked(unit, variant, propensity, epoch, segment, now)[0]

    def _expose_locked(self, unit: str | None, variant: int, propensity: float, epoch: int,
                       segment: tuple[int, ...], now: float) -> tuple[int, int | None]:
        """:meth:`expose` with the lock held; returns ``(seq, unit row or None)``."""
        path = self._path
        seq = path.seq
        path.seq = seq + 1
        path.requests[variant] += 1
        if self.unit_level:
            if unit is None:
                raise ValueError(f"a {self.level}-level store counts units: unit is None")
            t = self._units
            row = t.rows.get(unit)
            if row is None:
                row = t.add(unit, variant, propensity, epoch, now, segment)
                self._path.ubucket.append(_NAN)
            else:
                t.exposures[row] += 1
            self.ring.remember(seq, now, row)
            return seq, row
        group = self._groups.row_of((variant, epoch, segment))
        self._groups.sums[group][0] += 1.0
        self.ring.remember(seq, now, group)
        return seq, None

    def _use_units(self, units: UnitTable) -> None:
        """Install a unit table in the hot path's state (under the lock, or in __init__)."""
        self._units = units
        # the hot path's view, with row -> hash bucket (NaN: unknown, computed when next seen)
        self._path.use_units(units, units.rows, units.exposures,
                             array("d", [_NAN]) * len(units))

    # The A/B hot path at unit level (store/unit_path.py: the Python method; store/hot_c.pyx:
    # its compiled twin, installed below when it was built)
    expose_unit = expose_unit

    def uncounted(self) -> None:
        """Count a request that was served but left out of the experiment."""
        with self._lock:
            self._uncounted += 1

    def record_seq(self, seq: int, metric: int, value: float, *, window: bool = True) -> None:
        """Add a validated value of metric index ``metric`` to the decision ``seq``."""
        slot = seq % self.max_pending
        with self._lock:
            if (seq < 0 or slot >= len(self._ring_seq) or self._ring_seq[slot] != seq
                    or (window and self.clock() - self._ring_time[slot]
                        > self.attribution_window)):
                slot = self.ring.slot_of(seq, window)  # raises the precise error
            self._add_locked(seq, slot, metric, value)

    def _add_locked(self, seq: int, slot: int, metric: int, value: float) -> None:
        """``record_seq``'s write, lock held, ``slot`` the decision's ring slot (also what
        the compiled twin, store/record_c.pyx, runs for a case its C path does not write)."""
        row = self._ring_row[slot]
        if self.unit_level:  # UnitTable.apply inlined: record() is on the feedback path
            t = self._units
            if self.any_flags[metric]:
                xs = t.x[metric]
                if value > xs[row]:
                    xs[row] = value
            else:
                t.x[metric][row] += value
            t.y[metric][row] += 1.0
        else:
            add_to_pair(self._slot_x[metric], self._slot_y[metric], slot,
                        self._groups.sums[row], metric, value, self.any_flags[metric])
        if self._decisions is not None:
            self._decisions.apply(seq, metric, value)

    def record_auto(self, seq: int, latency_ms: float, error: float) -> None:
        """Record both automatic metrics of a finished request (unit level: through the
        journal, store/journal.py, the decision tracker included; request level: at once)."""
        if self.journal is not None:  # no lock: see store/journal.py
            self.journal.entries.append((seq, latency_ms, error))
            if len(self.journal.entries) >= self.journal.threshold:
                self.fold_journal()
            return
        slot = seq % self.max_pending
        with self._lock:
            if seq < 0 or slot >= len(self._ring_seq) or self._ring_seq[slot] != seq:
                count_loss(self._losses, UNATTRIBUTED)  # evicted by newer requests: counted
                return
            row = self._ring_row[slot]  # request level: the group's sums and the request's own
            for m, value in zip(self._auto, (latency_ms, error)):
                add_to_pair(self._slot_x[m], self._slot_y[m], slot, self._groups.sums[row],
                            m, value, self.any_flags[m])
            v = self._groups.keys[row][0]
            self._hist[v * N_SLOTS + bisect_left(EDGES_MS, latency_ms)] += 1
            self._hist_sum[v] += latency_ms
            if self._decisions is not None:
                self._decisions.apply(seq, self._auto[0], latency_ms)
                self._decisions.apply(seq, self._auto[1], error)

    def fold_journal(self) -> None:
        """Fold the journal under the lock (called when it is full: record_auto, middleware)."""
        with self._lock:
            self._fold()

    def _fold(self) -> None:
        """Apply the journal's entries (lock held): before anything reads what they change."""
        if self.journal is not None:  # bandit mode: into the decision tracker too
            count_loss(self._losses, UNATTRIBUTED, self.journal.fold(  # the skipped ones
                self._ring_seq, self._ring_row, self.max_pending, self._units, self._hist,
                self._hist_sum, self._decisions, self._auto))

    def record_unit(self, unit: str, metric: int, value: float) -> None:
        """Add a validated value to a unit's row (unit level only)."""
        with self._lock:
            row = self._units.rows.get(unit)
            if row is None:
                raise UnknownUnitError(f"unit {unit!r} has not been routed by this experiment")
            self._units.apply(row, metric, value, self.any_flags[metric])
            if self._decisions is not None:
                self._decisions.apply_unit(row, metric, value, self.ring.alive)

    def has_unit(self, unit: str) -> bool:
        """Whether the unit has been exposed (unit level)."""
        return unit in self._units.rows

    # -- bandit mode ----------------------------------------------------------------------
    def track_decisions(self, tracker: DecisionTracker) -> None:
        """Keep decision-level sums (and bandit training counters) from now on."""
        with self._lock:
            self._decisions = tracker

    def expose_decision(self, unit: str | None, variant: int, propensity: float, epoch: int,
                        segment: tuple[int, ...] = (), now: float | None = None,
                        tag: int = 0) -> int:
        """:meth:`expose` a bandit decision and open it in the decision tracker, in one lock:
        a snapshot never sees the exposure without its decision."""
        now = self.clock() if now is None else now
        with self._lock:
            seq, row = self._expose_locked(unit, variant, propensity, epoch, segment, now)
            if self._decisions is not None:
                self._decisions.open(seq, variant, epoch, segment, tag, row, now)
        return seq

    # the Python method, also what the compiled twin (installed below) hands the other cases
    _expose_decision_py = expose_decision

    def take_training(self) -> tuple[dict[str, np.ndarray], int]:
        """The bandit's training counters and the updates since the last call."""
        with self._lock:
            self._fold()  # automatic metrics waiting in the journal count (reward costs)
            return self._tracker().take_counters()

    def peek_training(self) -> dict[str, np.ndarray]:
        """The bandit's training counters now, without starting a new refresh count."""
        with self._lock:
            self._fold()
            return self._tracker().take_counters(reset=False)[0]

    def _tracker(self) -> DecisionTracker:
        if self._decisions is None:
            raise ConfigError("no bandit decisions are tracked: call track_decisions() first")
        return self._decisions

    # -- looks ----------------------------------------------------------------------------
    def add_look(self, look: Look) -> None:
        """Append a recorded look; refused (ValueError) unless it is its comparison's next."""
        with self._lock:
            check_next_look(self._looks, look)
            self._looks.append(look)

    # -- reading --------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """Copy everything the analysis needs under the lock; compute outside it."""
        import numpy as np

        with self._lock:
            self._fold()
            taken = self.clock()
            units = self._units.columns(self.metric_names) if self.unit_level else None
            sums = self._groups.copy()
            seg_values = {d: code_order(t) for d, t in zip(self.segment_dims, self._seg_codes)}
            requests = np.array(self._path.requests, dtype=np.int64)
            uncounted, overflow, epochs = self._uncounted, self._overflow, tuple(self._epochs)
            looks, drops = tuple(self._looks), dict(sorted(self._losses.items()))
            dsums = self._decisions.copy_sums() if self._decisions is not None else []
            hist = LatencyHistogram.from_flat(self._hist, self._hist_sum, len(self.variants))
        return Snapshot(variants=self.variants, metrics=self.metrics, level=self.level,
                        taken_at=taken, segment_dims=self.segment_dims,
                        segment_values=seg_values, epochs=epochs, requests=requests,
                        uncounted_requests=uncounted, segment_overflow=overflow, units=units,
                        groups=moments_of_rows(sums, self.metric_names), looks=looks,
                        decisions=moments_of_rows(dsums, self.metric_names), latency=hist,
                        source=f"one process (pid {os.getpid()}, memory store)", losses=drops)

    def take_deltas(self) -> Deltas:
        """Counts, overflow, group sums and latency histogram since the last take, zeroed here."""
        k = len(self.variants)
        with self._lock:
            self._fold()
            requests, self._path.requests = self._path.requests, [0] * k
            uncounted, self._uncounted = self._uncounted, 0
            overflow, self._overflow = self._overflow, 0
            hist, self._hist = self._hist, array("q", bytes(8 * N_SLOTS * k))
            hist_sum, self._hist_sum = self._hist_sum, [0.0] * k
            groups = self._groups.take()
            tables = tuple(code_order(t) for t in self._seg_codes)
            unattributed = self._losses.pop(UNATTRIBUTED, 0)
        return Deltas(requests, uncounted, overflow, tables, groups, hist, hist_sum, unattributed)

    def stats(self) -> dict[str, object]:
        """Decisions issued, slots of the pending ring in use, units or groups (no I/O)."""
        with self._lock:
            return {"decisions": self._path.seq, "pending_slots": len(self.ring),
                    "units": len(self._units), "groups": len(self._groups)}

    def __len__(self) -> int:
        return len(self._units) if self.unit_level else self._groups.total_n()

    # -- state ----------------------------------------------------------------------------
    def dump(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Copies of the state as ``(header, arrays)`` (see store/state.py; no pending ring)."""
        with self._lock:
            self._fold()
            return dump_state(StoreState(
                self._path.requests, self._uncounted, self._overflow, self._seg_codes, self._epochs,
                self._looks, self._groups, self._units if self.unit_level else None, self._hist,
                self._hist_sum, None if self._decisions is None
                else self._decisions.dump_training(), losses=self._losses),
                self.metric_names, self.clock())

    def load(self, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        """Replace the statistics by a :meth:`dump`'s, all or nothing: validated first (StoreError,
        no change; the tracker's reward kind too), then swapped in under the lock. Pending decisions
        are forgotten (numbering continues); bandit tracking restarts from its counters."""
        new = parse_state(header, arrays, n_variants=len(self.variants),
                          metric_names=self.metric_names, n_dims=len(self.segment_dims),
                          unit_level=self.unit_level, auto=self._auto,
                          covariates=self.covariate_names)
        units = new.units if new.units is not None else UnitTable(
            len(self.metric_names), len(self.segment_dims), self._auto, self.covariate_names)
        if self._decisions is not None and new.training is not None:
            self._decisions.check_restorable(new.training["kind"])
        with self._lock:
            self._fold()  # into the tables being replaced: the load forgets those decisions
            self._path.requests, self._uncounted = new.requests, new.uncounted
            self._overflow, self._seg_codes = new.overflow, new.segment_codes
            self._epochs, self._looks, self._groups = new.epochs, new.looks, new.groups
            self._hist, self._hist_sum, self._losses = new.hist, new.hist_sum, dict(new.losses)
            self._use_units(units)
            self.ring.clear(self._path.seq)
            if self._decisions is not None:  # its sums are keyed by the replaced epochs
                self._decisions.reset()
                if new.training is not None and new.training_counters is not None:
                    self._decisions.restore_training(new.training_counters,
                                                     int(new.training["pending"]))


# the compiled twins of expose_unit, expose_decision (store/hot_c.pyx), record_seq
# (store/record_c.pyx) and of the journal's fold (store/columns_c.pyx), when they were built
install(MemoryStore, "expose_unit", "modelrouter.store.hot_c")
install(MemoryStore, "expose_decision", "modelrouter.store.hot_c")
install(MemoryStore, "record_seq", "modelrouter.store.record_c")
install(AutoJournal, "fold", "modelrouter.store.columns_c")
