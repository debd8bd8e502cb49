"""Mergeable per-group moments of per-unit (numerator, denominator) pairs.

For every unit the store keeps ``x`` (sum of the metric's values, or the 0/1 conversion flag)
and ``y`` (how many values were recorded). A group's :class:`Moments` are the count, the means
and the centred second moments of those pairs; they merge exactly (Chan et al.), so per-epoch,
per-segment and per-worker pieces add up to the whole without revisiting units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["SUMS_PER_METRIC", "Moments", "add_to_pair", "grouped_moments", "moments_of_row",
           "new_sums_row"]


@dataclass(frozen=True)
class Moments:
    """Count, means and centred co-moments (sums of products of deviations) of (x, y)."""

    n: int = 0
    mean_x: float = 0.0
    mean_y: float = 0.0
    m2_x: float = 0.0
    m2_y: float = 0.0
    c_xy: float = 0.0

    @classmethod
    def from_sums(cls, n: float, sx: float, sy: float, sxx: float, syy: float,
                  sxy: float) -> Moments:
        """From raw additive sums (request-level counters, Redis totals)."""
        if n <= 0:
            return cls()
        mx, my = sx / n, sy / n
        return cls(int(n), mx, my, max(sxx - sx * mx, 0.0), max(syy - sy * my, 0.0),
                   sxy - sx * my)

    @classmethod
    def from_arrays(cls, x: np.ndarray, y: np.ndarray) -> Moments:
        """Two-pass (numerically stable) moments of paired arrays."""
        n = int(x.size)
        if n == 0:
            return cls()
        mx, my = float(x.mean()), float(y.mean())
        dx, dy = x - mx, y - my
        return cls(n, mx, my, float(dx @ dx), float(dy @ dy), float(dx @ dy))

    def merge(self, other: Moments) -> Moments:
        """The moments of the union of both groups."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        dx = other.mean_x - self.mean_x
        dy = other.mean_y - self.mean_y
        f = self.n * other.n / n
        return Moments(n, self.mean_x + dx * other.n / n, self.mean_y + dy * other.n / n,
                       self.m2_x + other.m2_x + dx * dx * f, self.m2_y + other.m2_y + dy * dy * f,
                       self.c_xy + other.c_xy + dx * dy * f)

    @property
    def var_x(self) -> float:
        """Sample variance (ddof=1) of x."""
        return self.m2_x / (self.n - 1) if self.n > 1 else math.nan

    @property
    def var_y(self) -> float:
        """Sample variance (ddof=1) of y."""
        return self.m2_y / (self.n - 1) if self.n > 1 else math.nan

    @property
    def cov_xy(self) -> float:
        """Sample covariance (ddof=1) of x and y."""
        return self.c_xy / (self.n - 1) if self.n > 1 else math.nan

    @property
    def ratio(self) -> float:
        """``sum(x) / sum(y)``: the per-event mean of a ratio metric."""
        return self.mean_x / self.mean_y if self.mean_y > 0 else math.nan

    @property
    def ratio_var(self) -> float:
        """Delta-method variance of :attr:`ratio` (units independent, events within not)."""
        if self.n < 2 or self.mean_y <= 0:
            return math.nan
        r = self.ratio
        v = (self.m2_x - 2.0 * r * self.c_xy + r * r * self.m2_y) / (self.n - 1)
        return max(v, 0.0) / (self.n * self.mean_y * self.mean_y)


def grouped_moments(codes: np.ndarray, n_groups: int, x: np.ndarray, y: np.ndarray
                    ) -> list[Moments]:
    """Two-pass moments of (x, y) for every group code in ``range(n_groups)``, vectorised."""
    counts = np.bincount(codes, minlength=n_groups).astype(np.float64)
    safe = np.where(counts > 0, counts, 1.0)
    mx = np.bincount(codes, weights=x, minlength=n_groups) / safe
    my = np.bincount(codes, weights=y, minlength=n_groups) / safe
    dx = x - mx[codes]
    dy = y - my[codes]
    m2x = np.bincount(codes, weights=dx * dx, minlength=n_groups)
    m2y = np.bincount(codes, weights=dy * dy, minlength=n_groups)
    cxy = np.bincount(codes, weights=dx * dy, minlength=n_groups)
    return [Moments(int(counts[g]), float(mx[g]), float(my[g]), float(m2x[g]), float(m2y[g]),
                    float(cxy[g])) if counts[g] > 0 else Moments() for g in range(n_groups)]


# -- additive group rows (request level, bandit decisions, Redis) -------------------------------
# A group's row is [n, then per metric: sum x, sum y, sum x^2, sum y^2, sum x*y] over its units.
SUMS_PER_METRIC = 5


def new_sums_row(n_metrics: int) -> list[float]:
    """An empty group row for ``n_metrics`` metrics."""
    return [0.0] * (1 + SUMS_PER_METRIC * n_metrics)


def add_to_pair(xs: Any, ys: Any, slot: int, row: list[float], m: int, value: float,
                any_: bool) -> None:
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
    per_metric = {}
    for i, m in enumerate(metric_names):
        b = 1 + SUMS_PER_METRIC * i
        per_metric[m] = Moments.from_sums(row[0], row[b], row[b + 1], row[b + 2], row[b + 3],
                                          row[b + 4])
    return int(row[0]), per_metric
