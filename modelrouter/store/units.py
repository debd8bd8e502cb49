"""The per-unit columns of a unit-level memory store (``level="user" | "session"``).

A dict from unit id to row, and growable ``array.array`` columns per row: variant and epoch at
first exposure, propensity, first exposure time, segment codes, exposures, and per metric
``x`` (sum of values, or the 0/1 conversion flag for ``aggregate="any"``) and ``y`` (number of
values). Appending a unit is O(1) amortised and allocates no Python object per column; the
analysis gets numpy copies (:meth:`UnitTable.columns`).

:meth:`UnitTable.dump` and :meth:`UnitTable.load` convert to and from the named arrays of a
snapshot file (``rows``, ``unit_len``, ``unit_ids``, ``variant``, ..., ``seg<d>``,
``x:<metric>``, ``y:<metric>``); :meth:`load` validates everything and builds a new table, so
the store swaps it in whole or not at all.

numpy is imported by the methods that build arrays (snapshots, files), not by this module: the
request path never needs it.

Thread safety: none of its own; the owning :class:`~modelrouter.store.memory.MemoryStore`
calls everything under its lock (and swaps whole tables under it on a restore).
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, overload

from modelrouter.config.extensions import install
from modelrouter.exceptions import StoreError
from modelrouter.store.covariates import CovariateTable
from modelrouter.store.types import UnitColumns

if TYPE_CHECKING:
    import numpy as np

__all__ = ["UnitIds", "UnitTable"]


class UnitIds(Sequence[str]):
    """The first ``n`` ids of an append-only list, read-only: a snapshot's unit ids without
    copying them under the store's lock (ids are only ever appended; a restore installs a new
    list, so the rows a snapshot sees never change)."""

    __slots__ = ("_ids", "_n")

    def __init__(self, ids: list[str], n: int) -> None:
        self._ids, self._n = ids, n

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self._ids[j] for j in range(*i.indices(self._n))]
        if not -self._n <= i < self._n:
            raise IndexError("unit index out of range")
        return self._ids[i % self._n]

    def __repr__(self) -> str:
        return f"UnitIds(n={self._n})"


class UnitTable:
    """Per-unit columns; row ``i`` is the ``i``-th unit exposed. ``auto`` gives the indices of
    the automatic metrics (latency, error), whose columns are aliased for ``record_auto``."""

    __slots__ = ("_cap", "cov", "epoch", "err_x", "err_y", "exposures", "first_seen", "ids",
                 "lat_x", "lat_y", "propensity", "rows", "segs", "variant", "x", "y")

    def __init__(self, n_metrics: int, n_dims: int, auto: tuple[int, int],
                 covariates: Sequence[str] = ()) -> None:
        self.rows: dict[str, int] = {}
        self.ids: list[str] = []  # row -> unit id, append-only (snapshots view a prefix)
        self.variant: array[int] = array("b")
        self.epoch: array[int] = array("i")
        self.propensity: array[float] = array("d")
        self.first_seen: array[float] = array("d")
        self.exposures: array[int] = array("I")
        self.segs: list[array[int]] = [array("H") for _ in range(n_dims)]
        # metric columns grow in zero-filled chunks (``_cap`` rows), not one append per column
        # per new unit; rows past len(self) are zeros that nothing reads
        self.x: list[array[float]] = [array("d") for _ in range(n_metrics)]
        self.y: list[array[float]] = [array("d") for _ in range(n_metrics)]
        self._cap = 0
        self.cov = CovariateTable(covariates)  # pre-exposure values (store/covariates.py)
        self._alias(auto)

    def _alias(self, auto: tuple[int, int]) -> None:
        latency, error = auto
        self.lat_x, self.lat_y = self.x[latency], self.y[latency]
        self.err_x, self.err_y = self.x[error], self.y[error]

    def __len__(self) -> int:
        return len(self.variant)

    def _fixed(self) -> tuple[tuple[str, Sequence[float]], ...]:
        """The columns every table has, by their name in a snapshot file."""
        return (("variant", self.variant), ("epoch", self.epoch),
                ("propensity", self.propensity), ("first_seen", self.first_seen),
                ("exposures", self.exposures))

    def add(self, unit: str, variant: int, propensity: float, epoch: int, now: float,
            segment: tuple[int, ...]) -> int:
        """Append ``unit``'s row (first exposure now, no value yet); return the row."""
        row = len(self.variant)
        self.rows[unit] = row
        self.ids.append(unit)
        self.variant.append(variant)
        self.epoch.append(epoch)
        self.propensity.append(propensity)
        self.first_seen.append(now)
        self.exposures.append(1)
        if self.segs:
            for d, seg_col in enumerate(self.segs):
                seg_col.append(segment[d] if d < len(segment) else 0)
        if row >= self._cap:
            self._grow()
        return row

    def _grow(self) -> None:
        """Extend every metric column by a chunk of zeros (at least 4,096 rows, a quarter of
        the rows so far: amortised O(1), like a list's spare capacity)."""
        extra = max(4096, self._cap // 4)
        zeros = array("d", bytes(8 * extra))
        for col in self.x:
            col.extend(zeros)
        for col in self.y:
            col.extend(zeros)
        self._cap += extra

    def apply(self, row: int, m: int, value: float, any_: bool) -> None:
        """Add a value of metric ``m`` to a row (``any_``: x is the 0/1 flag, a max)."""
        xs = self.x[m]
        if any_:
            if value > xs[row]:
                xs[row] = value
        else:
            xs[row] += value
        self.y[m][row] += 1.0

    def columns(self, metric_names: Sequence[str]) -> UnitColumns:
        """numpy copies of every column, for a snapshot."""
        import numpy as np

        n = len(self.variant)
        self.cov.settle(self.rows)
        covariates, covariate_at = self.cov.columns(n)
        return UnitColumns(
            variant=np.array(self.variant, dtype=np.int64),
            epoch=np.array(self.epoch, dtype=np.int64),
            propensity=np.array(self.propensity, dtype=np.float64),
            first_seen=np.array(self.first_seen, dtype=np.float64),
            exposures=np.array(self.exposures, dtype=np.int64),
            segments=np.column_stack([np.array(c, dtype=np.int64) for c in self.segs])
            if self.segs else np.zeros((n, 0), dtype=np.int64),
            x={m: _used(self.x[i], n) for i, m in enumerate(metric_names)},
            y={m: _used(self.y[i], n) for i, m in enumerate(metric_names)},
            ids=UnitIds(self.ids, n), covariates=covariates, covariate_at=covariate_at)

    # -- snapshot files -------------------------------------------------------------------
    def dump(self, metric_names: Sequence[str]) -> dict[str, np.ndarray]:
        """Copies of every column as the named arrays of a snapshot file."""
        import numpy as np

        ids = [u.encode("utf-8", "surrogatepass") for u in self.rows]
        arrays: dict[str, np.ndarray] = {
            "unit_len": np.array([len(b) for b in ids], dtype="<u4"),
            "unit_ids": np.frombuffer(b"".join(ids), dtype="|u1"),
            "rows": np.fromiter(self.rows.values(), dtype="<i8", count=len(self.rows))}
        for name, col in self._fixed():
            arrays[name] = np.array(col)
        for d, col in enumerate(self.segs):
            arrays[f"seg{d}"] = np.array(col)
        n = len(self.variant)
        for i, m in enumerate(metric_names):
            arrays[f"x:{m}"] = _used(self.x[i], n)
            arrays[f"y:{m}"] = _used(self.y[i], n)
        self.cov.settle(self.rows)
        arrays.update(self.cov.dump(n))
        return arrays

    @classmethod
    def load(cls, arrays: Mapping[str, np.ndarray], metric_names: Sequence[str], n_dims: int,
             n_variants: int, auto: tuple[int, int], covariates: Sequence[str] = ()
             ) -> UnitTable:
        """A new table from the arrays of :meth:`dump`, fully validated (StoreError; a missing
        array is a KeyError, for the caller to report as a malformed state)."""
        import numpy as np

        lengths = arrays["unit_len"].astype(np.int64)
        blob = arrays["unit_ids"].tobytes()
        if int(lengths.sum()) != len(blob):
            raise StoreError("unit ids do not match their lengths")
        ends = np.cumsum(lengths).tolist()
        starts = [0, *ends[:-1]]
        ids = [blob[a:b].decode("utf-8", "surrogatepass") for a, b in zip(starts, ends)]
        rows = arrays["rows"].tolist()
        n = len(ids)
        if len(rows) != n or sorted(rows) != list(range(n)) or len(set(ids)) != n:
            raise StoreError("unit index is inconsistent (rows or duplicate ids)")
        table = cls(len(metric_names), n_dims, auto)
        table.cov = CovariateTable.load(arrays, covariates, n)
        table.rows = dict(zip(ids, rows))
        by_row = [""] * n
        for unit, row in table.rows.items():
            by_row[row] = unit
        table.ids = by_row
        table.variant = _ints(arrays["variant"], "b", n, "variant")
        table.epoch = _ints(arrays["epoch"], "i", n, "epoch")
        table.propensity = _floats(arrays["propensity"], n, "propensity")
        table.first_seen = _floats(arrays["first_seen"], n, "first_seen")
        table.exposures = _ints(arrays["exposures"], "I", n, "exposures")
        if n and (min(table.variant) < 0 or max(table.variant) >= n_variants):
            raise StoreError("a unit's variant code is out of range")
        table.segs = [_ints(arrays[f"seg{d}"], "H", n, f"seg{d}") for d in range(n_dims)]
        table.x = [_floats(arrays[f"x:{m}"], n, f"x:{m}") for m in metric_names]
        table.y = [_floats(arrays[f"y:{m}"], n, f"y:{m}") for m in metric_names]
        table._cap = n
        table._alias(auto)
        return table


def _used(col: array[float], n: int) -> np.ndarray:
    """A float64 numpy copy of the first ``n`` values of a metric column (its used rows)."""
    import numpy as np

    used: np.ndarray = np.frombuffer(col, dtype=np.float64, count=n).copy()
    return used


def _checked(a: np.ndarray, code: str, n: int, what: str) -> bytes:
    import numpy as np

    if a.shape != (n,):
        raise StoreError(f"column {what!r} has shape {a.shape}, expected ({n},)")
    return a.astype(np.dtype(code), copy=False).tobytes()


def _ints(a: np.ndarray, code: str, n: int, what: str) -> array[int]:
    """An integer column (typecode ``code``) from a saved array of ``n`` values."""
    col: array[int] = array(code)
    col.frombytes(_checked(a, code, n, what))
    return col


def _floats(a: np.ndarray, n: int, what: str) -> array[float]:
    """A float column from a saved array of ``n`` values."""
    return array("d", _checked(a, "d", n, what))


# the compiled twin of add (store/hot_c.pyx), when it was built
install(UnitTable, "add", "modelrouter.store.hot_c", twin="add_unit")
