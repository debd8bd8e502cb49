"""The rows of a snapshot as a table: CSV chunks, a Parquet file, a pandas DataFrame.

One builder (:func:`export_columns`) serves ``modelrouter export``, the admin endpoint
``GET {prefix}/export`` and ``Analysis.to_frame()``, so the three always hold the same numbers.

Unit level (``level="user" | "session"``): one row per unit, in order of first exposure::

    unit, variant, first_exposure, first_exposure_s, epoch, propensity, exposures,
    segment:<dim>..., then per metric <m>.sum (or <m>.any), <m>.count

``first_exposure`` is ISO 8601 in UTC (microseconds), ``first_exposure_s`` the same instant in
seconds since the Unix epoch, exactly as stored; ``epoch`` the routing epoch of the first
exposure and ``propensity`` the probability the unit had of its variant then. ``<m>.sum`` is the
sum of the unit's recorded values (``aggregate="sum"`` and ``"mean"``: a ratio metric is
``sum / count`` per event), ``<m>.any`` the 0/1 flag of ``aggregate="any"`` metrics (1 when any
value was 1: what the store keeps and the analysis compares), ``<m>.count`` the number of
values. A unit without values has sum 0 and count 0, as the analysis counts it.

Request level: the store keeps no row per request (O(1) memory in traffic), so the export is one
row per (variant, epoch, segment values) group::

    variant, epoch, segment:<dim>..., n,
    then per metric <m>.sum, <m>.count, <m>.sum_sq, <m>.count_sq, <m>.sum_count

the additive sums over the group's requests of x (value, or the 0/1 flag), y (values), x^2, y^2
and x*y: enough to redo every test of the analysis. They are rebuilt from the snapshot's moments
(``n * mean`` and so on), so they may differ from the stored sums in the last bit.

Values are exact: floats as their shortest round-trip ``repr`` (CSV) or float64 (Parquet,
pandas), counts as integers. A missing value (a unit id a producer did not provide, a NaN) is an
empty CSV cell or a null, never ``nan``. Unit ids are written as they were received (CSV quotes
commas, quotes and line breaks); a spreadsheet may read an id starting with ``=`` as a formula.
Segment dimension names cannot contain ``:`` nor metric column names a ``:``, so no column name
collides with another.

Thread safety: pure functions of a frozen :class:`~modelrouter.store.types.Snapshot`.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from modelrouter.store.types import Snapshot

__all__ = ["CHUNK_ROWS", "ExportColumn", "csv_chunks", "export_columns", "to_frame",
           "write_csv", "write_export", "write_parquet"]

CHUNK_ROWS = 2000
"""Rows per CSV chunk (one ASGI ``http.response.body`` message of the endpoint)."""

Kind = Literal["str", "int", "float", "time"]


@dataclass(frozen=True)
class ExportColumn:
    """One column: its name, its kind and its values (a numpy array, or a sequence of
    ``str | None`` for text). ``time`` columns hold seconds since the Unix epoch."""

    name: str
    kind: Kind
    values: Any

    def __repr__(self) -> str:
        return f"ExportColumn({self.name!r}, {self.kind}, {len(self.values)} values)"


def _extra_hint(extra: str, package: str, what: str) -> ImportError:
    return ImportError(f"{what} needs {package}, which is not installed: "
                       f"pip install 'modelrouter[{extra}]' (or pip install {package})")


class _Codes(Sequence[str | None]):
    """Segment values of one dimension by code (None for a code without a value)."""

    def __init__(self, codes: Any, values: tuple[str, ...]) -> None:
        self._codes, self._values = codes, values

    def __len__(self) -> int:
        return len(self._codes)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._value(int(c)) for c in self._codes[i]]
        return self._value(int(self._codes[i]))

    def _value(self, c: int) -> str | None:
        return self._values[c] if 0 <= c < len(self._values) else None


def export_columns(snapshot: Snapshot) -> tuple[ExportColumn, ...]:
    """The columns of the export (see the module docstring): per unit at unit level, per
    (variant, epoch, segment) group at request level."""
    import numpy as np

    variants = np.array(snapshot.variants, dtype=object)
    dims = snapshot.segment_dims
    units = snapshot.units
    if units is not None:
        n = int(units.variant.size)
        ids: Sequence[str | None] = units.ids if units.ids is not None else [None] * n
        cols = [ExportColumn("unit", "str", ids),
                ExportColumn("variant", "str", variants[units.variant]),
                ExportColumn("first_exposure", "time", units.first_seen),
                ExportColumn("first_exposure_s", "float", units.first_seen),
                ExportColumn("epoch", "int", units.epoch),
                ExportColumn("propensity", "float", units.propensity),
                ExportColumn("exposures", "int", units.exposures)]
        cols += [ExportColumn(f"segment:{d}", "str",
                              _Codes(units.segments[:, j], snapshot.segment_values[d]))
                 for j, d in enumerate(dims)]
        for m, spec in snapshot.metrics.items():
            x = units.x[m]
            if spec.aggregate == "any":  # the memory store keeps a max, Redis the flag
                cols.append(ExportColumn(f"{m}.any", "int", (x > 0).astype(np.int64)))
            else:
                cols.append(ExportColumn(f"{m}.sum", "float", x))
            cols.append(_count(f"{m}.count", units.y[m]))
        return tuple(cols)
    keys = sorted(snapshot.groups)
    codes = np.array([[k[0], k[1], *k[2]] for k in keys], dtype=np.int64).reshape(
        len(keys), 2 + len(dims))
    cols = [ExportColumn("variant", "str", variants[codes[:, 0]]),
            ExportColumn("epoch", "int", codes[:, 1])]
    cols += [ExportColumn(f"segment:{d}", "str",
                          _Codes(codes[:, 2 + j], snapshot.segment_values[d]))
             for j, d in enumerate(dims)]
    cols.append(ExportColumn("n", "int", np.array([snapshot.groups[k][0] for k in keys],
                                                  dtype=np.int64)))
    for m in snapshot.metrics:
        mom = [snapshot.groups[k][1][m] for k in keys]
        sx = np.array([g.mean_x * g.n for g in mom], dtype=np.float64)
        sy = np.array([g.mean_y * g.n for g in mom], dtype=np.float64)
        mx = np.array([g.mean_x for g in mom], dtype=np.float64)
        my = np.array([g.mean_y for g in mom], dtype=np.float64)
        cols += [ExportColumn(f"{m}.sum", "float", sx), _count(f"{m}.count", sy),
                 ExportColumn(f"{m}.sum_sq", "float",
                              np.array([g.m2_x for g in mom]) + sx * mx),
                 ExportColumn(f"{m}.count_sq", "float",
                              np.array([g.m2_y for g in mom]) + sy * my),
                 ExportColumn(f"{m}.sum_count", "float",
                              np.array([g.c_xy for g in mom]) + sx * my)]
    return tuple(cols)


def _count(name: str, y: Any) -> ExportColumn:
    """A count column: integers when every count is whole (always, for stored counts)."""
    import numpy as np

    rounded = np.rint(y)
    if bool(np.all(rounded == y)):
        return ExportColumn(name, "int", rounded.astype(np.int64))
    return ExportColumn(name, "float", y)  # pragma: no cover - request-level rebuilt sums


# -- CSV ----------------------------------------------------------------------------------
def _text(kind: Kind, values: Any) -> list[str]:
    """One chunk of a column as CSV cells: exact, empty for missing."""
    if kind == "str":
        return ["" if v is None else str(v) for v in values]
    if kind == "int":
        return [str(v) for v in values.tolist()]
    floats: list[float] = values.tolist()
    if kind == "float":
        return ["" if math.isnan(v) else repr(v) for v in floats]
    return ["" if not math.isfinite(v) else
            datetime.fromtimestamp(v, timezone.utc).isoformat(timespec="microseconds")
            for v in floats]


def csv_chunks(snapshot: Snapshot, rows_per_chunk: int = CHUNK_ROWS) -> Iterator[bytes]:
    """The CSV (UTF-8, header line first, ``\\r\\n`` line ends as RFC 4180) in chunks of
    ``rows_per_chunk`` rows: the endpoint sends each as it is made, never the whole file."""
    columns = export_columns(snapshot)
    n = len(columns[0].values) if columns else 0
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([c.name for c in columns])
    start = 0
    while True:
        stop = min(start + rows_per_chunk, n)
        if stop > start:
            cells = [_text(c.kind, c.values[start:stop]) for c in columns]
            writer.writerows(zip(*cells))
        yield buffer.getvalue().encode("utf-8", "surrogatepass")
        buffer.seek(0)
        buffer.truncate()
        start = stop
        if start >= n:
            return


def write_csv(snapshot: Snapshot, path: str | os.PathLike[str]) -> int:
    """Write the CSV to ``path`` (through a ``.part`` file renamed at the end, so an
    interrupted export leaves no half file under the name); return the number of rows."""
    target = Path(path)
    part = target.with_name(target.name + ".part")
    try:
        with part.open("wb") as fh:
            for chunk in csv_chunks(snapshot):
                fh.write(chunk)
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    return _rows(snapshot)


def _rows(snapshot: Snapshot) -> int:
    """Rows of the export: units, or request-level groups."""
    return int(snapshot.units.variant.size) if snapshot.units is not None else len(
        snapshot.groups)


# -- Parquet and pandas -------------------------------------------------------------------
def write_parquet(snapshot: Snapshot, path: str | os.PathLike[str]) -> int:
    """Write the table as Parquet (pyarrow, the ``parquet`` extra); return the rows.
    Times are ``timestamp[us, UTC]``, text nullable strings, counts int64."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise _extra_hint("parquet", "pyarrow", "Parquet export") from None
    import numpy as np

    arrays, names = [], []
    for c in export_columns(snapshot):
        names.append(c.name)
        if c.kind == "str":
            arrays.append(pa.array(list(c.values[0:len(c.values)]), type=pa.string()))
        elif c.kind == "time":
            micros = np.rint(np.asarray(c.values) * 1e6).astype(np.int64)
            arrays.append(pa.array(micros, type=pa.timestamp("us", tz="UTC")))
        elif c.kind == "int":
            arrays.append(pa.array(np.asarray(c.values, dtype=np.int64), type=pa.int64()))
        else:
            values = np.asarray(c.values, dtype=np.float64)
            arrays.append(pa.array(values, type=pa.float64(), mask=np.isnan(values)))
    target = Path(path)
    part = target.with_name(target.name + ".part")
    try:
        pq.write_table(pa.Table.from_arrays(arrays, names=names), str(part))
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    return _rows(snapshot)


def to_frame(snapshot: Snapshot) -> Any:
    """The table as a pandas DataFrame (the ``pandas`` extra): ``first_exposure`` as
    ``datetime64[ns, UTC]``, text as objects with None for missing, floats exact."""
    try:
        import pandas as pd
    except ImportError:
        raise _extra_hint("pandas", "pandas", "Analysis.to_frame()") from None
    import numpy as np

    data: dict[str, Any] = {}
    for c in export_columns(snapshot):
        if c.kind == "str":
            data[c.name] = pd.Series(list(c.values[0:len(c.values)]), dtype=object)
        elif c.kind == "time":
            data[c.name] = pd.to_datetime(np.asarray(c.values), unit="s", utc=True)
        else:
            data[c.name] = np.asarray(c.values)
    return pd.DataFrame(data)


def write_export(snapshot: Snapshot, path: str | os.PathLike[str]) -> int:
    """Write ``path`` as Parquet when it ends in ``.parquet``, else as CSV; return the rows."""
    if str(path).lower().endswith(".parquet"):
        return write_parquet(snapshot, path)
    return write_csv(snapshot, path)
