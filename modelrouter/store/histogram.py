"""The per-variant latency histogram: log-spaced buckets of fixed relative width.

One histogram per variant counts every finished routed request's ``latency_ms`` (the store
updates it in ``record_auto`` under the lock it already holds). The buckets are fixed for every
process and release, so histograms merge by addition (Redis, snapshot files):

- ``PER_DECADE = 115`` buckets per factor of ten: each bucket is ``10**(1/115) - 1 = 2.02%``
  wide relative to its lower edge, so a quantile read from the histogram is within one bucket
  width of the exact sample quantile;
- edges ``10**(-2 + i/115)`` ms for ``i = 0 .. N_BUCKETS`` (0.01 ms .. 122 s); every power of
  ten is an exact edge, which lets Prometheus use round ``le`` boundaries at decades;
- slot 0 counts values ``<= 0.01 ms`` (and NaN), slot ``i`` counts ``(edge[i-1], edge[i]]``
  (upper edge included, as Prometheus' ``le``), the last slot counts values above 122 s.

:func:`slot_of` is a binary search over the exact edges, so a value's slot always agrees
with ``edge[i-1] < value <= edge[i]``, rounding included. It and the layout constants are what
the request path needs; numpy is imported by :class:`LatencyHistogram`'s methods only.

Thread safety: :class:`LatencyHistogram` is immutable; the store's flat counters are guarded by
the store's lock.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "EDGES_MS",
    "N_BUCKETS",
    "N_SLOTS",
    "PER_DECADE",
    "LatencyHistogram",
    "slot_of",
]

PER_DECADE = 115
_DECADE0 = -2  # the lowest edge is 10**-2 ms
N_BUCKETS = 814 + 1  # up to 10**(5 + 10/115) ms = 122.2 s
N_SLOTS = N_BUCKETS + 2  # underflow, buckets, overflow
LAYOUT = f"log10:{_DECADE0}:{PER_DECADE}:{N_BUCKETS}"  # identity of the layout, for files


def _edges() -> tuple[float, ...]:
    out = []
    for i in range(N_BUCKETS + 1):
        d, j = divmod(i, PER_DECADE)
        # powers of ten exactly (10.0 ** k is correctly rounded for these k)
        out.append(10.0 ** (_DECADE0 + d) if j == 0 else 10.0 ** (_DECADE0 + i / PER_DECADE))
    return tuple(out)


EDGES_MS: tuple[float, ...] = _edges()


def slot_of(ms: float, _bisect: Callable[[Sequence[float], float], int] = bisect_left,
            _e: tuple[float, ...] = EDGES_MS) -> int:
    """The histogram slot of a latency in milliseconds: the number of edges below ``ms``, so
    ``edge[i-1] < ms <= edge[i]`` lands in slot ``i``; NaN compares false and lands in slot 0.
    O(log n) in C, allocation-free (faster in CPython than a logarithm plus edge checks)."""
    return _bisect(_e, ms)


@dataclass(frozen=True, repr=False)
class LatencyHistogram:
    """Per-variant counts (shape ``(variants, N_SLOTS)``) and exact sums of ``latency_ms``."""

    counts: np.ndarray
    sum_ms: np.ndarray

    @classmethod
    def empty(cls, n_variants: int) -> LatencyHistogram:
        """No request yet."""
        import numpy as np

        return cls(np.zeros((n_variants, N_SLOTS), dtype=np.int64), np.zeros(n_variants))

    @classmethod
    def from_flat(cls, counts: Sequence[int], sums: Sequence[float], n_variants: int
                  ) -> LatencyHistogram:
        """From the store's flat ``array('q')`` of counts and per-variant sums (copies)."""
        import numpy as np

        return cls(np.array(counts, dtype=np.int64).reshape(n_variants, N_SLOTS),
                   np.array(sums, dtype=np.float64))

    @classmethod
    def from_values(cls, variant: np.ndarray, latency_ms: np.ndarray,
                    n_variants: int) -> LatencyHistogram:
        """Vectorised: the histogram of one request per ``(variant code, latency)`` pair."""
        import numpy as np

        v = np.asarray(latency_ms, dtype=np.float64)
        slots = np.where(np.isnan(v), 0, np.searchsorted(np.asarray(EDGES_MS), v, "left"))
        codes = np.asarray(variant, dtype=np.int64)
        counts = np.bincount(codes * N_SLOTS + slots, minlength=n_variants * N_SLOTS)
        return cls(counts.reshape(n_variants, N_SLOTS).astype(np.int64),
                   np.bincount(codes, weights=v, minlength=n_variants))

    @property
    def n(self) -> np.ndarray:
        """Requests counted per variant."""
        return self.counts.sum(axis=1)  # type: ignore[no-any-return]

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """The histogram of both (addition: the layout is fixed)."""
        return LatencyHistogram(self.counts + other.counts, self.sum_ms + other.sum_ms)

    def cdf_at_edges(self, variant: int) -> np.ndarray:
        """``F(edge_i)``, the share of requests ``<= edge_i``, for ``i = 0 .. N_BUCKETS``."""
        import numpy as np

        c = self.counts[variant]
        n = c.sum()
        return np.cumsum(c)[:-1] / n if n else np.full(N_BUCKETS + 1, np.nan)

    def __repr__(self) -> str:
        return f"LatencyHistogram(n={self.n.tolist()}, sum_ms={self.sum_ms.tolist()})"

    def to_dict(self) -> dict[str, Any]:
        """Plain data: the layout, and per variant the non-empty slots and the sum."""
        import numpy as np

        return {"layout": LAYOUT, "variants": [
            {"slots": {int(s): int(c[s]) for s in np.flatnonzero(c)},
             "sum_ms": float(self.sum_ms[v])} for v, c in enumerate(self.counts)]}
