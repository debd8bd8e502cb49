"""Bounded-memory accumulators of shadow-vs-served pairs, mergeable across workers.

The request path must not keep raw predictions. Three accumulators hold what the paired
analysis needs, each with ``merge`` (workers and a store add them up) and ``to_dict`` /
``from_dict`` (snapshots, Redis):

- :class:`PairedMoments`: Welford's running mean and sum of squared deviations (Welford, 1962,
  Technometrics 4:419) of the served value, the shadow value and their difference, merged with
  the pairwise formula of Chan, Golub & LeVeque (1983, Amer. Statist. 37:242). O(1) memory;
  gives the paired t analysis exactly (up to rounding) as if every pair had been kept.
- :class:`PairedCounts`: the paired 2x2 table of a binary outcome (both, served only, shadow
  only, neither): errors, correct answers, agreement. O(1) memory, exact.
- :class:`PairReservoir`: a uniform random sample of at most ``capacity`` pairs (Vitter, 1985,
  ACM TOMS 11:37, algorithm R), for quantiles, latency ratios and the Wilcoxon test. Two
  reservoirs merge into a uniform sample of the union: the number taken from the first is
  hypergeometric in the two stream lengths. Error bound: the reservoir is a simple random
  sample of the requests, so intervals computed from it (order-statistic, bootstrap,
  Wilcoxon) are valid for the whole stream with ``n = len(reservoir)``; they are only wider,
  by about ``sqrt(N / capacity)`` for ``N`` pairs seen (the standard error of a quantile
  scales as ``1 / sqrt(n)``). Nothing is biased by the sampling.

Thread safety: none of these objects locks; one per worker (or per store lock), merged on read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelrouter.exceptions import AnalysisError
from modelrouter.stats.paired import PairedProportions, paired_proportions
from modelrouter.stats.paired_scores import MeanDifference, mean_difference_from_moments

__all__ = ["PairReservoir", "PairedCounts", "PairedMoments"]


@dataclass
class PairedMoments:
    """Running moments of ``served``, ``shadow`` and ``d = shadow - served``."""

    n: int = 0
    mean_served: float = 0.0
    mean_shadow: float = 0.0
    mean_d: float = 0.0
    m2_d: float = 0.0  # sum of squared deviations of d from its mean

    def add(self, served: float, shadow: float) -> None:
        """Count one pair (non-finite values are refused: the pair is not counted)."""
        if not (math.isfinite(served) and math.isfinite(shadow)):
            raise AnalysisError(f"pair ({served!r}, {shadow!r}) must be finite numbers")
        self.n += 1
        n = self.n
        self.mean_served += (served - self.mean_served) / n
        self.mean_shadow += (shadow - self.mean_shadow) / n
        d = shadow - served
        delta = d - self.mean_d
        self.mean_d += delta / n
        self.m2_d += delta * (d - self.mean_d)

    def merge(self, other: PairedMoments) -> PairedMoments:
        """A new accumulator of both streams (Chan, Golub & LeVeque's pairwise update)."""
        n = self.n + other.n
        if n == 0:
            return PairedMoments()
        wa, wb = self.n / n, other.n / n
        delta = other.mean_d - self.mean_d
        return PairedMoments(
            n, wa * self.mean_served + wb * other.mean_served,
            wa * self.mean_shadow + wb * other.mean_shadow,
            wa * self.mean_d + wb * other.mean_d,
            self.m2_d + other.m2_d + delta * delta * self.n * other.n / n)

    @property
    def var_d(self) -> float:
        """Sample variance (``ddof=1``) of the differences; NaN below 2 pairs."""
        return self.m2_d / (self.n - 1) if self.n >= 2 else math.nan

    def result(self, confidence_level: float = 0.95) -> MeanDifference:
        """The paired t analysis of the accumulated pairs (needs 2 pairs)."""
        return mean_difference_from_moments(self.n, self.mean_served, self.mean_shadow,
                                            self.var_d, confidence_level)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a snapshot."""
        return {"n": self.n, "mean_served": self.mean_served, "mean_shadow": self.mean_shadow,
                "mean_d": self.mean_d, "m2_d": self.m2_d}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairedMoments:
        """The inverse of :meth:`to_dict`."""
        return cls(int(data["n"]), float(data["mean_served"]), float(data["mean_shadow"]),
                   float(data["mean_d"]), float(data["m2_d"]))


@dataclass
class PairedCounts:
    """The paired 2x2 table of a binary outcome (``served``, ``shadow`` each true or false)."""

    both: int = 0
    served_only: int = 0
    shadow_only: int = 0
    neither: int = 0

    def add(self, served: bool, shadow: bool) -> None:
        """Count one pair."""
        if served and shadow:
            self.both += 1
        elif served:
            self.served_only += 1
        elif shadow:
            self.shadow_only += 1
        else:
            self.neither += 1

    @property
    def n(self) -> int:
        """Pairs counted."""
        return self.both + self.served_only + self.shadow_only + self.neither

    @property
    def concordant(self) -> int:
        """Pairs where both sides agree (for labels: the agreement count)."""
        return self.both + self.neither

    def merge(self, other: PairedCounts) -> PairedCounts:
        """A new table of both streams."""
        return PairedCounts(self.both + other.both, self.served_only + other.served_only,
                            self.shadow_only + other.shadow_only, self.neither + other.neither)

    def result(self, outcome: str = "error", confidence_level: float = 0.95
               ) -> PairedProportions:
        """Newcombe's interval and McNemar's tests of the accumulated table."""
        return paired_proportions(self.both, self.served_only, self.shadow_only, self.neither,
                                  outcome=outcome, confidence_level=confidence_level)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a snapshot."""
        return {"both": self.both, "served_only": self.served_only,
                "shadow_only": self.shadow_only, "neither": self.neither}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairedCounts:
        """The inverse of :meth:`to_dict`."""
        return cls(int(data["both"]), int(data["served_only"]), int(data["shadow_only"]),
                   int(data["neither"]))


@dataclass
class PairReservoir:
    """A uniform sample of at most ``capacity`` pairs of floats (algorithm R)."""

    capacity: int = 4096
    seen: int = 0
    rng: np.random.Generator = field(default_factory=np.random.default_rng, repr=False)
    served: list[float] = field(default_factory=list, repr=False)
    shadow: list[float] = field(default_factory=list, repr=False)
    # uniforms drawn from ``rng`` 1,024 at a time: one numpy call per scalar cost ~2 us,
    # which a shadow worker paid on every pair once the reservoir was full
    uniforms: list[float] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.capacity, bool) or not isinstance(self.capacity, int) \
                or self.capacity < 1:
            raise AnalysisError(f"capacity ({self.capacity!r}) must be a positive integer")

    def add(self, served: float, shadow: float) -> None:
        """Offer one pair; it is kept with probability ``capacity / seen``."""
        self.seen += 1
        if len(self.served) < self.capacity:
            self.served.append(served)
            self.shadow.append(shadow)
            return
        if not self.uniforms:
            self.uniforms = self.rng.random(1024).tolist()
        j = int(self.uniforms.pop() * self.seen)  # uniform on 0 .. seen - 1
        if j < self.capacity:
            self.served[j] = served
            self.shadow[j] = shadow

    def __len__(self) -> int:
        return len(self.served)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The kept pairs as two float arrays (served, shadow)."""
        return np.asarray(self.served, dtype=np.float64), np.asarray(self.shadow, dtype=np.float64)

    def merge(self, other: PairReservoir) -> PairReservoir:
        """A uniform sample of the union of both streams, of the smaller capacity; the
        number of pairs taken from ``self`` is hypergeometric (``seen`` of each stream)."""
        cap = min(self.capacity, other.capacity)
        total = self.seen + other.seen
        m = min(cap, total)
        k = int(self.rng.hypergeometric(self.seen, other.seen, m)) if m else 0
        k = min(k, len(self), m)
        k = max(k, m - len(other))
        out = PairReservoir(cap, total, self.rng)
        for src, take in ((self, k), (other, m - k)):
            idx = self.rng.choice(len(src), size=take, replace=False).tolist() if take else []
            out.served.extend(src.served[i] for i in idx)
            out.shadow.extend(src.shadow[i] for i in idx)
        return out
