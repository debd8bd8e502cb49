"""The recursive numerical integration behind every group-sequential probability.

The z statistics at information rates ``t_1 < ... < t_K`` are those of a Brownian motion observed
at those times: ``S_k = Z_k * sqrt(t_k)`` has independent normal increments with variance
``t_k - t_{k-1}`` and mean ``drift * (t_k - t_{k-1})``. The probability of first leaving the
continuation region at look ``k`` is an integral over the continuation regions of looks
``1..k-1``; it is evaluated by the Armitage-McPherson-Rowe recursion on the grid of Jennison &
Turnbull (2000, ch. 19): ``6r - 1`` points per look, Simpson's rule, the sub-density carried
forward as a vector (:class:`BrownianRecursion`).

Kept apart from :mod:`modelrouter.stats.sequential` (the alpha-spending boundaries) because the
same recursion also serves the beta-spending futility bounds
(:mod:`modelrouter.stats.sequential_futility`) and the inference after stopping
(:mod:`modelrouter.stats.sequential_inference`). The continuation region of a look may be one
interval ``(a, b)`` or, for a two-sided design with an inner futility region, the union
``(-b, -f) U (f, b)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import ndtr

__all__ = ["GRID_R", "Z_MAX", "BrownianRecursion", "simpson_grid", "stopping_probabilities"]

GRID_R = 32  # J&T's r: 6r - 1 grid points per look; r = 32 keeps boundaries exact to ~1e-6
Z_MAX = 38.0  # beyond this, normal tail probabilities underflow double precision
_SQRT_2PI = math.sqrt(2.0 * math.pi)

Interval = tuple[float, float]


def simpson_grid(mean: float, lo: float, hi: float, r: int = GRID_R
                 ) -> tuple[np.ndarray, np.ndarray]:
    """J&T (2000, sec. 19.2) grid on the interval (lo, hi) with Simpson weights."""
    i = np.arange(1, 6 * r, dtype=float)
    x = np.where(i < r, -3.0 - 4.0 * np.log(r / i),
                 np.where(i <= 5 * r, -3.0 + 3.0 * (i - r) / (2.0 * r),
                          3.0 + 4.0 * np.log(r / np.maximum(6 * r - i, 1e-300))))
    x = mean + x
    pts = x[(x > lo) & (x < hi)]
    if lo > x[0]:
        pts = np.concatenate(([lo], pts))
    if hi < x[-1]:
        pts = np.concatenate((pts, [hi]))
    if pts.size < 2:
        return np.empty(0), np.empty(0)
    z = np.empty(2 * pts.size - 1)
    z[0::2], z[1::2] = pts, 0.5 * (pts[:-1] + pts[1:])
    d = np.diff(pts) / 6.0
    w = np.zeros_like(z)
    w[0:-1:2] += d
    w[2::2] += d
    w[1::2] = 4.0 * d
    return z, w


class BrownianRecursion:
    """Sub-density of Z at the last look restricted to 'not stopped yet', times grid weights.

    Start at t = 0 (a point mass at Z = 0); :meth:`upper` / :meth:`lower` / :meth:`between`
    give probabilities at the next look for the paths still running, :meth:`advance` moves to
    that look keeping the paths inside the continuation region.
    """

    def __init__(self, drift: float = 0.0) -> None:
        self.drift = drift
        self.t = 0.0
        self.z = np.zeros(1)  # Z at t = 0 is a point mass at 0
        self.g = np.ones(1)

    def _moments(self, t: float) -> tuple[np.ndarray, float]:
        dt = t - self.t
        return self.z * math.sqrt(self.t) + self.drift * dt, math.sqrt(dt)

    def upper(self, b: float, t: float) -> float:
        """P(Z_t >= b and no earlier stop)."""
        c, s = self._moments(t)
        return float(self.g @ ndtr((c - b * math.sqrt(t)) / s))

    def lower(self, a: float, t: float) -> float:
        """P(Z_t <= a and no earlier stop)."""
        c, s = self._moments(t)
        return float(self.g @ ndtr((a * math.sqrt(t) - c) / s))

    def between(self, a: float, b: float, t: float) -> float:
        """P(a < Z_t < b and no earlier stop)."""
        if not b > a:
            return 0.0
        c, s = self._moments(t)
        rt = math.sqrt(t)
        return float(self.g @ (ndtr((b * rt - c) / s) - ndtr((a * rt - c) / s)))

    def advance(self, a: float, b: float, t: float) -> None:
        """Move to look ``t`` keeping only paths with ``a < Z_t < b``."""
        self.advance_regions(((a, b),), t)

    def advance_regions(self, regions: Sequence[Interval], t: float) -> None:
        """Move to look ``t`` keeping only paths with Z_t in the union of ``regions``."""
        c, s = self._moments(t)
        zs, ws = [], []
        for lo, hi in regions:
            if hi > lo:
                z, w = simpson_grid(self.drift * math.sqrt(t), lo, hi)
                zs.append(z)
                ws.append(w)
        z = np.concatenate(zs) if zs else np.empty(0)
        w = np.concatenate(ws) if ws else np.empty(0)
        u = (z[:, None] * math.sqrt(t) - c[None, :]) / s
        dens = (np.exp(-0.5 * u * u) @ self.g) * (math.sqrt(t) / (s * _SQRT_2PI))
        self.t, self.z, self.g = t, z, w * dens


def _regions(lower: float, upper: float, inner: float) -> tuple[Interval, ...]:
    """The continuation region (lower, upper) without [-inner, inner] (inner <= 0: nothing)."""
    if not inner > 0.0:
        return ((lower, upper),)
    return tuple((lo, hi) for lo, hi in ((lower, min(upper, -inner)), (max(lower, inner), upper))
                 if hi > lo)


def stopping_probabilities(information_rates: Sequence[float] | np.ndarray,
                           upper: Sequence[float] | np.ndarray, drift: float = 0.0,
                           lower: Sequence[float] | np.ndarray | None = None,
                           inner: Sequence[float] | np.ndarray | None = None,
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-look probabilities of first stopping above ``upper``, below ``lower`` and inside
    ``(-inner, inner)`` when E[Z at t=1] = ``drift``.

    ``lower`` defaults to no lower bound (``-inf``), ``inner`` to no inner region. At each look
    the process continues while ``lower < Z < upper`` and ``|Z| >= inner`` (the inner region is
    the "accept H0" region of a two-sided design with futility bounds); bounds of ``+-inf`` are
    allowed. The rates are assumed validated (strictly increasing in (0, 1]).
    """
    t = np.asarray(information_rates, dtype=float)
    b = np.asarray(upper, dtype=float)
    a = np.full(t.size, -math.inf) if lower is None else np.asarray(lower, dtype=float)
    f = np.zeros(t.size) if inner is None else np.asarray(inner, dtype=float)
    rec = BrownianRecursion(float(drift))
    up, lo, mid = np.zeros(t.size), np.zeros(t.size), np.zeros(t.size)
    for k in range(t.size):
        tk = float(t[k])
        bk, ak = float(b[k]), float(a[k])
        up[k] = rec.upper(bk, tk) if bk < math.inf else 0.0
        lo[k] = rec.lower(ak, tk) if ak > -math.inf else 0.0
        fk = float(f[k])
        if fk > 0.0:
            mid[k] = rec.between(max(ak, -fk), min(bk, fk), tk)
        if k + 1 < t.size:
            rec.advance_regions(_regions(ak, bk, fk), tk)
    return up, lo, mid
