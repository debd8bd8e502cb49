"""Per-unit covariates of a unit-level memory store: values recorded before exposure.

A covariate (``MetricSpec.covariates``, e.g. a user's clicks in the month before the
experiment) is one number per unit that the analysis adjusts for (CUPED, Deng et al. 2013,
see stats/cuped.py). :class:`CovariateTable` keeps, per declared covariate, a float64 value
column and a "recorded at" column aligned with the rows of the
:class:`~modelrouter.store.units.UnitTable` (NaN: none recorded), so the analysis can apply
the pre-exposure rule: a value recorded after the unit's first exposure could have been
changed by the treatment and is not used (analysis/adjusted.py).

- **First value wins**: a second value for the same unit and covariate is ignored (as Redis's
  ``HSETNX`` does), so retries and replays cannot change a unit's covariate.
- **Units not exposed yet**: their values wait in a pending map (unit -> {covariate: (value,
  time)}) and move into the columns when the unit has a row (:meth:`settle`, called before
  every read). The map holds at most :data:`MAX_PENDING_UNITS` units; when it is full, the
  units exposed since are moved out, and if it is still full the value is refused with a
  :class:`~modelrouter.exceptions.FeedbackError` (record covariates close to exposure, not
  for a whole user base at once). Pending values of units never exposed are not saved in
  snapshot files (they describe no unit of the experiment), and a restore, which replaces the
  whole unit table, drops the pending values recorded before it.

Values read from requests (asgi/covariates.py) that cannot be used are counted by reason
(:class:`MemoryCovariateMembers`, ``drop_covariate``) and reported in ``Snapshot.losses`` as
``covariate_dropped:<reason>`` (store/losses.py says them in the analysis notes); the counts
are part of the store's saved state (its ``losses``), so a restored store still reports them.

Thread safety: :class:`CovariateTable` has none of its own (the owning memory store calls it
under its lock); :class:`MemoryCovariateMembers` takes the store's lock.
"""

from __future__ import annotations

import math
import threading
from array import array
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from modelrouter.exceptions import FeedbackError, StoreError
from modelrouter.store.losses import DROP_PREFIX, count_loss

if TYPE_CHECKING:
    import numpy as np

__all__ = ["MAX_PENDING_UNITS", "CovariateTable", "MemoryCovariateMembers"]

MAX_PENDING_UNITS = 100_000
"""At most this many units not yet exposed may hold covariates waiting for their first
exposure (about 200 bytes each: ~20 MB at the bound)."""

_NAN = float("nan")


class CovariateTable:
    """Value and recorded-at columns per covariate, aligned with a unit table's rows."""

    __slots__ = ("at", "max_pending", "names", "pending", "value")

    def __init__(self, names: Sequence[str], max_pending: int = MAX_PENDING_UNITS) -> None:
        self.names = tuple(names)
        self.value: list[array[float]] = [array("d") for _ in self.names]
        self.at: list[array[float]] = [array("d") for _ in self.names]
        self.pending: dict[str, dict[int, tuple[float, float]]] = {}
        self.max_pending = max_pending

    def _fill(self, n: int) -> None:
        """Extend every column with NaN to ``n`` rows."""
        for cols in (self.value, self.at):
            for col in cols:
                if len(col) < n:
                    col.extend(array("d", [_NAN]) * (n - len(col)))

    def _set(self, row: int, index: int, value: float, now: float) -> None:
        self._fill(row + 1)
        if math.isnan(self.at[index][row]):  # first value wins
            self.value[index][row] = value
            self.at[index][row] = now

    def record(self, rows: Mapping[str, int], unit: str, index: int, value: float,
               now: float) -> None:
        """Keep ``value`` of covariate ``index`` for ``unit`` recorded at ``now`` (first value
        wins); a unit without a row (``rows``) waits in the pending map."""
        row = rows.get(unit)
        if row is not None:
            if unit in self.pending:  # its earlier values first: they were recorded first
                self._move(unit, row)
            self._set(row, index, value, now)
            return
        entry = self.pending.get(unit)
        if entry is None:
            if len(self.pending) >= self.max_pending:
                self.settle(rows)
                if len(self.pending) >= self.max_pending:
                    raise FeedbackError(
                        f"covariate for unit {unit[:60]!r} refused: {len(self.pending):,} units "
                        f"not exposed yet already hold covariates (at most {self.max_pending:,}"
                        "); record covariates close to the units' first exposure")
            entry = self.pending[unit] = {}
        entry.setdefault(index, (value, now))

    def settle(self, rows: Mapping[str, int]) -> None:
        """Move the pending values of units that have a row now into the columns."""
        for unit in [u for u in self.pending if u in rows]:
            self._move(unit, rows[unit])

    def _move(self, unit: str, row: int) -> None:
        for index, (value, now) in self.pending.pop(unit).items():
            self._set(row, index, value, now)

    def columns(self, n: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """numpy copies of the first ``n`` rows: ``(values, recorded at)`` by name."""
        import numpy as np

        self._fill(n)
        values = {c: np.frombuffer(self.value[i], dtype=np.float64, count=n).copy()
                  for i, c in enumerate(self.names)}
        at = {c: np.frombuffer(self.at[i], dtype=np.float64, count=n).copy()
              for i, c in enumerate(self.names)}
        return values, at

    # -- snapshot files -------------------------------------------------------------------
    def dump(self, n: int) -> dict[str, np.ndarray]:
        """The named arrays of a snapshot file: ``cov:<name>`` and ``cov_at:<name>``."""
        values, at = self.columns(n)
        out = {f"cov:{c}": v for c, v in values.items()}
        out.update({f"cov_at:{c}": v for c, v in at.items()})
        return out

    @classmethod
    def load(cls, arrays: Mapping[str, np.ndarray], names: Sequence[str],
             n: int) -> CovariateTable:
        """A table from :meth:`dump`'s arrays; a covariate without arrays (a file written
        before covariates existed, or before it was declared) starts with none recorded."""
        import numpy as np

        table = cls(names)
        table._fill(n)
        for i, c in enumerate(table.names):
            if f"cov:{c}" not in arrays and f"cov_at:{c}" not in arrays:
                continue
            v, t = arrays[f"cov:{c}"], arrays[f"cov_at:{c}"]
            if v.shape != (n,) or t.shape != (n,):
                raise StoreError(f"covariate {c!r} has shapes {v.shape} and {t.shape}, "
                                 f"expected ({n},)")
            v, t = v.astype(np.float64), t.astype(np.float64)
            if not (np.isnan(v) == np.isnan(t)).all() or np.isinf(v).any() or np.isinf(t).any():
                raise StoreError(f"covariate {c!r}: values and times must be finite, NaN "
                                 "together")
            table.value[i] = array("d", v.tobytes())
            table.at[i] = array("d", t.tobytes())
        return table


class _Units(Protocol):
    """What :class:`MemoryCovariateMembers` reads of the memory store's unit table."""

    rows: dict[str, int]
    cov: CovariateTable


class MemoryCovariateMembers:
    """``record_covariate`` and ``drop_covariate`` of the memory store (a mixin: its lock and
    unit table; kept here so store/memory.py stays about the request path)."""

    _lock: threading.Lock
    _units: _Units
    _losses: dict[str, int]  # the store's Snapshot.losses counts (lock held)

    def record_covariate(self, unit: str, index: int, value: float, now: float) -> None:
        """Keep a unit's pre-exposure covariate (first value wins; :class:`CovariateTable`)."""
        with self._lock:
            self._units.cov.record(self._units.rows, unit, index, value, now)

    def drop_covariate(self, reason: str) -> None:
        """Count one covariate value read from a request and dropped for ``reason``."""
        with self._lock:
            count_loss(self._losses, DROP_PREFIX + reason)
