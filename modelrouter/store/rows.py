"""Additive group rows: exact sums of per-unit ``(x, y)`` pairs, kept per group of units.

A group's row is ``[n, then per metric: sum x, sum y, sum x^2, sum y^2, sum x*y]`` over its
units (a unit is a request at request level, a decision in bandit mode), an ``array('d')``:
the compiled request path adds to its doubles in place, where a list would make a float
object per addition (the same float64 operations either way). Rows add up exactly: a unit's
change moves its group's sums by exactly the difference (:func:`add_to_pair`), rows
of several workers add up in Redis, and :func:`moments_of_row` turns a row into
:class:`~modelrouter.stats.moments.Moments` when a snapshot is taken. Memory is O(groups),
whatever the traffic.

:class:`GroupTable` numbers the groups of one store (request-level groups of the memory store,
decision groups of the :class:`~modelrouter.store.decisions.DecisionTracker`) in creation
order.

Store plumbing, not statistics: this lives in ``store/`` (``stats/moments.py`` keeps the
mergeable moments themselves). ``Moments`` is imported when a row is read, not when this module
is imported, so the request path does not load the statistics package.

Thread safety: none of its own; the owning store calls everything under its lock.
"""

from __future__ import annotations

from array import array
from collections.abc import Hashable, Iterable, MutableSequence, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

from modelrouter.config.extensions import install_function

if TYPE_CHECKING:
    from modelrouter.stats.moments import Moments

__all__ = ["SUMS_PER_METRIC", "GroupTable", "add_to_pair", "moments_of_row", "moments_of_rows",
           "new_sums_row"]

SUMS_PER_METRIC = 5

K = TypeVar("K", bound=Hashable)


def new_sums_row(n_metrics: int) -> array[float]:
    """An empty group row for ``n_metrics`` metrics."""
    return array("d", bytes(8 * (1 + SUMS_PER_METRIC * n_metrics)))


def add_to_pair(xs: MutableSequence[float], ys: MutableSequence[float], slot: int,
                row: MutableSequence[float], m: int, value: float, any_: bool) -> None:
    """Add ``value`` to one unit's ``(x, y)`` of metric ``m`` (x is a max for "any" metrics)
    and move its group's additive sums by exactly the change, so they stay exact."""
    old_x, old_y = xs[slot], ys[slot]
    new_x = max(old_x, value) if any_ else old_x + value
    new_y = old_y + 1.0
    xs[slot], ys[slot] = new_x, new_y
    b = 1 + SUMS_PER_METRIC * m
    row[b] += new_x - old_x
    row[b + 1] += 1.0
    row[b + 2] += new_x * new_x - old_x * old_x
    row[b + 3] += new_y * new_y - old_y * old_y
    row[b + 4] += new_x * new_y - old_x * old_y


def moments_of_row(row: Sequence[float], metric_names: Sequence[str]
                   ) -> tuple[int, dict[str, Moments]]:
    """``(n, {metric: Moments})`` of a group row; units without a value count as x = y = 0."""
    from modelrouter.stats.moments import Moments

    per_metric = {}
    for i, m in enumerate(metric_names):
        b = 1 + SUMS_PER_METRIC * i
        per_metric[m] = Moments.from_sums(row[0], row[b], row[b + 1], row[b + 2], row[b + 3],
                                          row[b + 4])
    return int(row[0]), per_metric


def moments_of_rows(rows: Iterable[tuple[K, Sequence[float]]], metric_names: Sequence[str]
                    ) -> dict[K, tuple[int, dict[str, Moments]]]:
    """``key -> (n, {metric: Moments})`` of copied rows (outside the store's lock)."""
    return {key: moments_of_row(row, metric_names) for key, row in rows}


class GroupTable(Generic[K]):
    """Groups in creation order: ``index`` (key -> number), ``keys`` and their ``sums`` rows."""

    __slots__ = ("index", "keys", "n_metrics", "sums")

    def __init__(self, n_metrics: int) -> None:
        self.n_metrics = n_metrics
        self.index: dict[K, int] = {}
        self.keys: list[K] = []
        self.sums: list[array[float]] = []

    @property
    def width(self) -> int:
        """Numbers per row."""
        return 1 + SUMS_PER_METRIC * self.n_metrics

    def __len__(self) -> int:
        return len(self.keys)

    def total_n(self) -> int:
        """The sum of every group's count (the first number of its row)."""
        return int(sum(s[0] for s in self.sums))

    def row_of(self, key: K) -> int:
        """The number of ``key``'s group, created empty on first use."""
        g = self.index.get(key)
        if g is None:
            g = self.index[key] = len(self.keys)
            self.keys.append(key)
            self.sums.append(new_sums_row(self.n_metrics))
        return g

    def copy(self) -> list[tuple[K, list[float]]]:
        """``(key, row)`` of every group, copied."""
        return [(key, list(self.sums[g])) for g, key in enumerate(self.keys)]

    def take(self) -> list[tuple[K, list[float]]]:
        """:meth:`copy`, then zero every row (deltas since the last take; groups stay)."""
        out = self.copy()
        zero = new_sums_row(self.n_metrics)
        for row in self.sums:
            row[:] = zero
        return out

    @classmethod
    def of(cls, n_metrics: int, keys: Sequence[K], sums: Sequence[Sequence[float]]
           ) -> GroupTable[K]:
        """A table holding ``keys`` with their rows; ValueError unless keys are distinct and
        every row has the width of ``n_metrics`` metrics."""
        table: GroupTable[K] = cls(n_metrics)
        if len(keys) != len(sums):
            raise ValueError(f"{len(keys)} group keys for {len(sums)} rows")
        for key, row in zip(keys, sums):
            if len(row) != table.width:
                raise ValueError(f"group row of {len(row)} sums, expected {table.width}")
            if key in table.index:
                raise ValueError(f"duplicate group key {key!r}")
            table.sums[table.row_of(key)] = array("d", [float(v) for v in row])
        return table


# the compiled twin of add_to_pair (store/columns_c.pyx), when it was built
install_function(globals(), "add_to_pair", "modelrouter.store.columns_c")

