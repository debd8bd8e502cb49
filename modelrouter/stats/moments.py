"""Mergeable per-group moments of per-unit (numerator, denominator) pairs.

For every unit the store keeps ``x`` (sum of the metric's values, or the 0/1 conversion flag)
and ``y`` (how many values were recorded). A group's :class:`Moments` are the count, the means
and the centred second moments of those pairs; they merge exactly (Chan et al.), so per-epoch,
per-segment and per-worker pieces add up to the whole without revisiting units.

The stores keep additive rows of raw sums and turn them into :class:`Moments` with
:meth:`Moments.from_sums` (see ``modelrouter/store/rows.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Moments", "grouped_moments"]


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
