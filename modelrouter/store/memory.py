"""The in-memory store: the reference implementation of the store protocol.

Layout (see ../DESIGN.md, "Store data model"):

- **Unit level** (``level="user" | "session"``): a dict from unit id to row and growable
  ``array.array`` columns per row (variant and epoch at first exposure, propensity, first
  exposure time, segment codes, exposures) and per metric (``x``: sum of values, or the 0/1
  conversion flag for ``aggregate="any"``; ``y``: number of values). Analysis is vectorised
  numpy over copies of these columns.
- **Request level**: every request is a unit, kept only while feedback may still arrive (the
  pending ring); each change to a request's ``(x, y)`` is applied at once to additive sums per
  (variant, epoch, segment) group, so memory is O(1) in traffic.
- **Pending ring**: decisions are numbered; slot ``seq % max_pending`` remembers the decision's
  row and issue time, so late feedback finds its unit in O(1) with no per-request allocation,
  and a decision overwritten in the ring (or older than the attribution window) is refused.

Thread safety: one ``threading.Lock`` guards every mutation and the copy taken by
:meth:`MemoryStore.snapshot`; it is held for microseconds and never across I/O or an await.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from modelrouter.config import MetricSpec
from modelrouter.exceptions import UnknownUnitError
from modelrouter.routing.assignment import Allocation
from modelrouter.stats.moments import add_to_pair, moments_of_row, new_sums_row
from modelrouter.store.decisions import DecisionStoreMixin, DecisionTracker, decision_groups
from modelrouter.store.histogram import N_SLOTS, LatencyHistogram, slot_of
from modelrouter.store.looks import Look, check_next_look
from modelrouter.store.ring import pending_slot
from modelrouter.store.types import EpochInfo, Snapshot, UnitColumns

__all__ = ["EpochInfo", "MemoryStore", "Snapshot", "UnitColumns"]

OTHER = "other"
_NAN = float("nan")


class MemoryStore(DecisionStoreMixin):  # bandit entry points: store/decisions.py
    """Exact, bounded, thread-safe statistics of one experiment, in process memory."""

    def __init__(self, variants: Sequence[str], metrics: Mapping[str, MetricSpec], *,
                 level: str = "user", max_pending: int = 1_000_000,
                 attribution_window: float = 86_400.0, segment_dims: Sequence[str] = (),
                 segment_cap: int = 50, clock: Callable[[], float] = time.time) -> None:
        self.variants = tuple(variants)
        self.metrics = dict(metrics)
        self.metric_names = tuple(self.metrics)
        self.metric_index = {m: i for i, m in enumerate(self.metric_names)}
        self._latency_index = self.metric_index["latency_ms"]
        self._error_index = self.metric_index["error"]
        self._any = tuple(self.metrics[m].aggregate == "any" for m in self.metric_names)
        self.level = level
        self.unit_level = level != "request"
        self.max_pending = int(max_pending)
        self.attribution_window = float(attribution_window)
        self.segment_dims = tuple(segment_dims)
        self.segment_cap = int(segment_cap)
        self.clock = clock
        self._lock = threading.Lock()
        self._seq = 0
        self._ring_seq = array("q")
        self._ring_time = array("d")
        self._ring_row = array("q")
        self._requests = [0] * len(self.variants)
        self._uncounted = 0
        self._overflow = 0
        self._seg_codes: list[dict[str, int]] = [{} for _ in self.segment_dims]
        self._epochs: list[EpochInfo] = []
        self._looks: list[Look] = []
        # unit level
        self._rows: dict[str, int] = {}
        self._variant = array("b")
        self._epoch = array("i")
        self._propensity = array("d")
        self._first_seen = array("d")
        self._exposures = array("I")
        self._ubucket = array("d")  # the unit's hash bucket, cached (derived, never saved)
        self._segs = [array("H") for _ in self.segment_dims]
        self._x = [array("d") for _ in self.metric_names]
        self._y = [array("d") for _ in self.metric_names]
        self._bind_columns()
        # request level: ring slot -> group, per-slot per-metric (x, y); group sums
        self._slot_group = array("q")
        self._slot_x = [array("d") for _ in self.metric_names]
        self._slot_y = [array("d") for _ in self.metric_names]
        self._group_index: dict[tuple[int, int, tuple[int, ...]], int] = {}
        self._group_keys: list[tuple[int, int, tuple[int, ...]]] = []
        self._group_sums: list[list[float]] = []
        self._decisions: DecisionTracker | None = None  # bandit mode (store/decisions.py)
        # latency histogram: slot s of variant v at v * N_SLOTS + s (store/histogram.py)
        self._hist = array("q", bytes(8 * N_SLOTS * len(self.variants)))
        self._hist_sum = [0.0] * len(self.variants)

    def _bind_columns(self) -> None:
        """Alias the automatic metrics' columns for the hot path; call again whenever the
        column lists are replaced (restore)."""
        self._lat_x, self._lat_y = self._x[self._latency_index], self._y[self._latency_index]
        self._err_x, self._err_y = self._x[self._error_index], self._y[self._error_index]
        n = len(self._variant)
        if len(self._ubucket) != n:  # restored rows: their buckets are recomputed on demand
            self._ubucket = array("d", [_NAN]) * n

    # -- epochs ---------------------------------------------------------------------------
    def begin_epoch(self, epoch: int, mode: str, weights: Sequence[float]) -> None:
        """Record that routing weights changed; decisions carry the epoch they came from."""
        with self._lock:
            self._epochs.append(EpochInfo(epoch, mode, tuple(weights), self.clock()))

    def epochs(self) -> tuple[EpochInfo, ...]:
        """Every epoch recorded so far, oldest first (restored ones included)."""
        with self._lock:
            return tuple(self._epochs)

    # -- hot path -------------------------------------------------------------------------
    def segment_codes(self, values: Sequence[str]) -> tuple[int, ...]:
        """Codes of segment values; values past the cardinality cap become ``other``."""
        if len(values) != len(self._seg_codes):
            raise ValueError(f"segment ({tuple(values)!r}) must give one value per declared "
                             f"dimension {self.segment_dims!r}")
        codes = []
        for d, value in enumerate(values):
            table = self._seg_codes[d]
            code = table.get(value)
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

    def expose(self, unit: str | None, variant: int, propensity: float, epoch: int,
               segment: tuple[int, ...] = (), now: float | None = None) -> int:
        """Count one routed request; return its sequence number (the decision handle)."""
        if now is None:
            now = self.clock()
        with self._lock:
            return self._expose_locked(unit, variant, propensity, epoch, segment, now)[0]

    def _expose_locked(self, unit: str | None, variant: int, propensity: float, epoch: int,
                       segment: tuple[int, ...], now: float) -> tuple[int, int | None]:
        """:meth:`expose` with the lock held; returns ``(seq, unit row or None)``."""
        seq = self._seq
        self._seq = seq + 1
        self._requests[variant] += 1
        if self.unit_level:
            row = self._rows.get(unit)  # type: ignore[arg-type]
            if row is None:
                row = len(self._variant)
                self._rows[unit] = row  # type: ignore[index]
                self._new_unit_row(variant, propensity, epoch, now, segment)
            else:
                self._exposures[row] += 1
            self._remember(seq, now, row)
            return seq, row
        key = (variant, epoch, segment)
        group = self._group_index.get(key)
        if group is None:
            group = self._new_group(key)
        self._group_sums[group][0] += 1.0
        self._remember(seq, now, group)
        return seq, None

    def expose_unit(self, unit: str, bucket: Callable[[str], float], alloc: Allocation,
                    segment: tuple[int, ...], now: float) -> tuple[int, int]:
        """The A/B hot path at unit level in one lock: find or create the unit's row, choose
        its variant from its (cached) hash bucket, count the exposure, remember the decision.
        Returns ``(seq, variant)``."""
        with self._lock:
            row = self._rows.get(unit)
            if row is None:
                u = bucket(unit)
                i = alloc.choose(u)
                row = len(self._variant)
                self._new_unit_row(i, alloc.propensities[i], alloc.epoch, now, segment, u)
                self._rows[unit] = row
            else:
                u = self._ubucket[row]
                if u != u:  # NaN: a restored row
                    u = self._ubucket[row] = bucket(unit)
                i = alloc.choose(u)
                self._exposures[row] += 1
            seq = self._seq
            self._seq = seq + 1
            self._requests[i] += 1
            if seq < self.max_pending:  # _remember() inlined: one call less per request
                self._ring_seq.append(seq)
                self._ring_time.append(now)
                self._ring_row.append(row)
            else:
                slot = seq % self.max_pending
                self._ring_seq[slot] = seq
                self._ring_time[slot] = now
                self._ring_row[slot] = row
        return seq, i

    def _new_unit_row(self, variant: int, propensity: float, epoch: int, now: float,
                      segment: tuple[int, ...], bucket: float = _NAN) -> None:
        self._ubucket.append(bucket)
        self._variant.append(variant)
        self._epoch.append(epoch)
        self._propensity.append(propensity)
        self._first_seen.append(now)
        self._exposures.append(1)
        for d, seg_col in enumerate(self._segs):
            seg_col.append(segment[d] if d < len(segment) else 0)
        for col in self._x:
            col.append(0.0)
        for col in self._y:
            col.append(0.0)

    def _new_group(self, key: tuple[int, int, tuple[int, ...]]) -> int:
        row = len(self._group_keys)
        self._group_index[key] = row
        self._group_keys.append(key)
        self._group_sums.append(new_sums_row(len(self.metric_names)))
        return row

    def _remember(self, seq: int, now: float, row: int) -> None:
        if seq < self.max_pending:
            self._ring_seq.append(seq)
            self._ring_time.append(now)
            self._ring_row.append(row)
            if not self.unit_level:
                for col in self._slot_x:
                    col.append(0.0)
                for col in self._slot_y:
                    col.append(0.0)
            return
        slot = seq % self.max_pending
        self._ring_seq[slot] = seq
        self._ring_time[slot] = now
        self._ring_row[slot] = row
        if not self.unit_level:
            for col in self._slot_x:
                col[slot] = 0.0
            for col in self._slot_y:
                col[slot] = 0.0

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
                self._slot_of(seq, window)  # raises the precise error
            row = self._ring_row[slot]
            if self.unit_level:  # _apply inlined: record() is on the feedback hot path
                if self._any[metric]:
                    xs = self._x[metric]
                    if value > xs[row]:
                        xs[row] = value
                else:
                    self._x[metric][row] += value
                self._y[metric][row] += 1.0
            else:
                self._apply(slot, row, metric, value)
            if self._decisions is not None:
                self._decisions.apply(seq, metric, value)

    def record_auto(self, seq: int, latency_ms: float, error: float) -> None:
        """Record both automatic metrics of a finished request under one lock acquisition."""
        slot = seq % self.max_pending
        h = slot_of(latency_ms)
        with self._lock:
            if slot >= len(self._ring_seq) or self._ring_seq[slot] != seq:
                return  # evicted by a flood of newer requests: nothing to attribute to
            row = self._ring_row[slot]
            if self.unit_level:  # both automatic metrics are per-event means: add, count
                self._lat_x[row] += latency_ms
                self._lat_y[row] += 1.0
                if error:
                    self._err_x[row] += error
                self._err_y[row] += 1.0
                v = self._variant[row]  # the unit's variant, as in its analysis
            else:
                self._apply(slot, row, self._latency_index, latency_ms)
                self._apply(slot, row, self._error_index, error)
                v = self._group_keys[row][0]
            self._hist[v * N_SLOTS + h] += 1
            self._hist_sum[v] += latency_ms
            if self._decisions is not None:
                self._decisions.apply(seq, self._latency_index, latency_ms)
                self._decisions.apply(seq, self._error_index, error)

    def _slot_of(self, seq: int, window: bool) -> int:
        return pending_slot(self, seq, window)

    def _apply(self, slot: int, row: int, m: int, value: float) -> None:
        if self.unit_level:
            xs = self._x[m]
            if self._any[m]:
                if value > xs[row]:
                    xs[row] = value
            else:
                xs[row] += value
            self._y[m][row] += 1.0
            return
        add_to_pair(self._slot_x[m], self._slot_y[m], slot, self._group_sums[row], m, value,
                    self._any[m])

    def record_unit(self, unit: str, metric: int, value: float) -> None:
        """Add a validated value to a unit's row (unit level only)."""
        with self._lock:
            row = self._rows.get(unit)
            if row is None:
                raise UnknownUnitError(f"unit {unit!r} has not been routed by this experiment")
            self._apply(-1, row, metric, value)
            if self._decisions is not None:
                self._decisions.apply_unit(row, metric, value, self._pending_seq)

    def has_unit(self, unit: str) -> bool:
        """Whether the unit has been exposed (unit level)."""
        return unit in self._rows

    # -- looks ----------------------------------------------------------------------------
    def add_look(self, look: Look) -> None:
        """Append a recorded look; refused (ValueError) unless it is its comparison's next."""
        with self._lock:
            check_next_look(self._looks, look)
            self._looks.append(look)

    # -- reading --------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """Copy everything the analysis needs under the lock; compute outside it."""
        with self._lock:
            taken = self.clock()
            units = None
            if self.unit_level:
                units = UnitColumns(
                    variant=np.array(self._variant, dtype=np.int64),
                    epoch=np.array(self._epoch, dtype=np.int64),
                    propensity=np.array(self._propensity, dtype=np.float64),
                    first_seen=np.array(self._first_seen, dtype=np.float64),
                    exposures=np.array(self._exposures, dtype=np.int64),
                    segments=np.column_stack([np.array(c, dtype=np.int64) for c in self._segs])
                    if self._segs else np.zeros((len(self._variant), 0), dtype=np.int64),
                    x={m: np.array(self._x[i], dtype=np.float64)
                       for i, m in enumerate(self.metric_names)},
                    y={m: np.array(self._y[i], dtype=np.float64)
                       for i, m in enumerate(self.metric_names)},
                )
            sums = [(key, list(self._group_sums[i])) for i, key in enumerate(self._group_keys)]
            seg_values = {d: tuple(sorted(t, key=t.__getitem__))
                          for d, t in zip(self.segment_dims, self._seg_codes)}
            snap_requests = np.array(self._requests, dtype=np.int64)
            uncounted, overflow, epochs = self._uncounted, self._overflow, tuple(self._epochs)
            looks = tuple(self._looks)
            dsums = self._decisions.copy_sums() if self._decisions is not None else []
            hist = LatencyHistogram.from_flat(self._hist, self._hist_sum, len(self.variants))
        groups = {key: moments_of_row(s, self.metric_names) for key, s in sums}
        return Snapshot(variants=self.variants, metrics=self.metrics, level=self.level,
                        taken_at=taken, segment_dims=self.segment_dims,
                        segment_values=seg_values, epochs=epochs, requests=snap_requests,
                        uncounted_requests=uncounted, segment_overflow=overflow, units=units,
                        groups=groups, looks=looks,
                        decisions=decision_groups(dsums, self.metric_names), latency=hist)

    @property
    def pending_capacity(self) -> int:
        """How many decisions can wait for feedback at once."""
        return self.max_pending

    def __len__(self) -> int:
        return len(self._rows) if self.unit_level else int(
            sum(s[0] for s in self._group_sums))
