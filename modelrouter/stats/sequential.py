"""Group-sequential boundaries computed exactly from the joint law of the sequential z statistics.

The z statistics at information rates ``t_1 < ... < t_K`` are those of a Brownian motion observed
at those times: ``S_k = Z_k * sqrt(t_k)`` has independent normal increments with variance
``t_k - t_{k-1}`` and mean ``drift * (t_k - t_{k-1})``. The probability of first crossing a
boundary at look ``k`` is an integral over the continuation regions of looks ``1..k-1``; it is
evaluated by the Armitage-McPherson-Rowe recursion on the grid of Jennison & Turnbull (2000,
ch. 19; :mod:`modelrouter.stats.sequential_recursion`): ``6r - 1`` points per look, Simpson's
rule, the density carried forward as a vector.
Each look's boundary is then the root (``scipy.optimize.brentq``) of "probability of crossing at
this look, not before, under H0 = alpha spent at this look". Boundaries of looks ``1..k`` never
depend on later looks, so the same call serves planning and monitoring of the looks actually
recorded.

Two-sided designs are symmetric and the spending function is applied to ``alpha / 2`` on each
side (the convention of rpact, gsDesign and ldbounds): a two-sided 0.05 design has the same
boundaries as a one-sided 0.025 design, up to the negligible chance of crossing both sides.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtr, ndtri

from modelrouter.stats.sequential_recursion import Z_MAX, BrownianRecursion

__all__ = [
    "SPENDING_FUNCTIONS",
    "SequentialDesign",
    "classic_boundaries",
    "exit_probabilities",
    "spending_boundaries",
    "spending_function",
]

Spending = Literal["obrien-fleming", "pocock", "hwang-shih-decani", "power"]
Sided = Literal[1, 2]



def _of(t: np.ndarray, a: float, gamma: float | None) -> np.ndarray:
    return np.asarray(2.0 * ndtr(-ndtri(1.0 - a / 2.0) / np.sqrt(t)))


def _pocock(t: np.ndarray, a: float, gamma: float | None) -> np.ndarray:
    return a * np.log1p((math.e - 1.0) * t)


def _hsd(t: np.ndarray, a: float, gamma: float | None) -> np.ndarray:
    g = float(gamma)  # type: ignore[arg-type]
    return a * t if g == 0.0 else a * np.expm1(-g * t) / math.expm1(-g)


def _power(t: np.ndarray, a: float, gamma: float | None) -> np.ndarray:
    return np.asarray(a * t ** float(gamma))  # type: ignore[arg-type]


_SPENDERS: dict[str, Callable[[np.ndarray, float, float | None], np.ndarray]] = {
    "obrien-fleming": _of,
    "pocock": _pocock,
    "hwang-shih-decani": _hsd,
    "power": _power,
}
SPENDING_FUNCTIONS: tuple[str, ...] = tuple(_SPENDERS)
_FORMULAS = {
    "obrien-fleming": "a(t) = 2 - 2 Phi(z_(1-a/2) / sqrt(t))  (Lan-DeMets O'Brien-Fleming type)",
    "pocock": "a(t) = a ln(1 + (e - 1) t)  (Lan-DeMets Pocock type)",
    "hwang-shih-decani": "a(t) = a (1 - exp(-gamma t)) / (1 - exp(-gamma))  (Hwang-Shih-DeCani)",
    "power": "a(t) = a t^rho  (Kim-DeMets power family)",
}


# -- validation ---------------------------------------------------------------------------------

def format_values(values: Any) -> str:
    """Numbers as a short list for error messages (``[0.5, 1]``)."""
    return "[" + ", ".join(f"{float(v):g}" for v in np.ravel(values)) + "]"


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """Return ``alpha`` as a float, or raise ValueError unless it lies in (0, 1)."""
    if not (isinstance(alpha, (int, float)) and 0.0 < float(alpha) < 1.0):
        raise ValueError(f"{name} ({alpha!r}) must be in (0, 1)")
    return float(alpha)


def check_sided(sided: int) -> int:
    """Return ``sided``, or raise ValueError unless it is 1 or 2."""
    if sided not in (1, 2):
        raise ValueError(f"sided ({sided!r}) must be 1 or 2")
    return int(sided)


def check_rates(information_rates: Sequence[float] | np.ndarray) -> np.ndarray:
    """Validated information rates: a non-empty, strictly increasing sequence in (0, 1]."""
    t = np.array(information_rates, dtype=float).ravel()
    if t.size == 0:
        raise ValueError("information_rates must not be empty")
    if not np.all(np.isfinite(t)) or t[0] <= 0.0 or t[-1] > 1.0:
        raise ValueError(f"information_rates must lie in (0, 1], got {format_values(t)}")
    if np.any(np.diff(t) <= 0.0):
        raise ValueError(f"information_rates must be strictly increasing, got {format_values(t)}")
    return t


def _check_spending(spending: str, gamma: float | None) -> float | None:
    if spending not in _SPENDERS:
        names = ", ".join(repr(s) for s in _SPENDERS)
        raise ValueError(f"spending ({spending!r}) must be one of {names}")
    if spending in ("obrien-fleming", "pocock"):
        if gamma is not None:
            raise ValueError(f"gamma ({gamma!r}) is only used by 'hwang-shih-decani' and 'power'")
        return None
    if gamma is None or not math.isfinite(float(gamma)):
        raise ValueError(f"gamma ({gamma!r}) must be a finite number for spending={spending!r}")
    if spending == "power" and float(gamma) <= 0.0:
        raise ValueError(f"gamma ({gamma!r}) is the power rho and must be > 0")
    return float(gamma)


def spending_function(information_rates: Sequence[float] | np.ndarray, alpha: float = 0.05,
                      sided: Sided = 2, spending: Spending = "obrien-fleming",
                      gamma: float | None = None) -> np.ndarray:
    """Cumulative alpha (both sides together when ``sided=2``) allowed by each information rate."""
    t = check_rates(information_rates)
    a, s = check_alpha(alpha), check_sided(sided)
    g = _check_spending(spending, gamma)
    return np.asarray(np.minimum(s * _SPENDERS[spending](t, a / s, g), a))


# -- the recursion (modelrouter.stats.sequential_recursion) -------------------------------------

def exit_probabilities(z: Sequence[float] | np.ndarray, information_rates: Sequence[float]
                       | np.ndarray, drift: float = 0.0, sided: Sided = 2
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Per-look probabilities of first crossing the upper and the lower boundary.

    ``drift`` is the mean of the z statistic at information rate 1 (``theta * sqrt(I_max)``);
    the lower boundary is ``-z`` when ``sided=2`` and absent when ``sided=1``.
    """
    t, s = check_rates(information_rates), check_sided(sided)
    b = np.asarray(z, dtype=float)
    if b.shape != t.shape:
        raise ValueError(f"z has {b.size} values but information_rates has {t.size}")
    rec = BrownianRecursion(float(drift))
    up, lo = np.zeros(t.size), np.zeros(t.size)
    for k, (tk, bk) in enumerate(zip(t, b, strict=True)):
        ak = -bk if s == 2 else -math.inf
        up[k] = rec.upper(bk, tk)
        lo[k] = rec.lower(ak, tk) if s == 2 else 0.0
        if k + 1 < t.size:
            rec.advance(ak, bk, tk)
    return up, lo


def _solve_look(rec: BrownianRecursion, t: float, target: float, sided: int) -> float:
    """The boundary b at which P(cross at t, not before | H0) equals ``target``."""
    if target <= 0.0:
        return math.inf
    if sided == 2:
        def f(b: float) -> float:
            return 2.0 * rec.upper(b, t) - target
        lo = 0.0
    else:
        def f(b: float) -> float:
            return rec.upper(b, t) - target
        lo = -Z_MAX
    if f(Z_MAX) >= 0.0:
        return Z_MAX
    if f(lo) <= 0.0:  # more alpha than paths left to reject: reject everything still running
        return lo
    return float(brentq(f, lo, Z_MAX, xtol=1e-12, rtol=1e-12))


def _solve_all(t: np.ndarray, cumulative: np.ndarray, sided: int) -> tuple[np.ndarray, np.ndarray]:
    rec, z, spent, total = BrownianRecursion(), np.empty(t.size), np.empty(t.size), 0.0
    for k, tk in enumerate(t):
        # Spend what the function allows minus what was actually spent (nothing is lost when an
        # earlier look could not spend its share, e.g. an O'Brien-Fleming look at t ~ 0).
        z[k] = _solve_look(rec, float(tk), float(cumulative[k]) - total, sided)
        ak = -z[k] if sided == 2 else -math.inf
        total += rec.upper(z[k], tk) * sided if math.isfinite(z[k]) else 0.0
        spent[k] = total
        if k + 1 < t.size:
            rec.advance(ak, z[k], float(tk))
    return z, spent


# -- public designs -----------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class SequentialDesign:
    """Critical values of a group-sequential test: reject at look k when the z statistic crosses
    ``z[k]`` (``|z| >= z[k]`` when two-sided, ``z >= z[k]`` when one-sided upper)."""

    information_rates: np.ndarray
    z: np.ndarray
    alpha_spent: np.ndarray
    alpha: float
    sided: int
    spending: str
    gamma: float | None = None

    def __post_init__(self) -> None:
        for name in ("information_rates", "z", "alpha_spent"):
            arr = np.array(getattr(self, name), dtype=float)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def looks(self) -> int:
        """Number of looks (analyses) in the design."""
        return int(self.z.size)

    @property
    def alpha_at_look(self) -> np.ndarray:
        """Alpha spent at each look alone (the increments of ``alpha_spent``)."""
        return np.diff(self.alpha_spent, prepend=0.0)

    @property
    def nominal_pvalues(self) -> np.ndarray:
        """The fixed-sample p-value (same sidedness) that each boundary corresponds to."""
        return np.asarray(self.sided * ndtr(-self.z))

    def exit_probabilities(self, drift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Per-look (upper, lower) first-crossing probabilities when E[Z at t=1] = ``drift``."""
        return exit_probabilities(self.z, self.information_rates, drift, self.sided)  # type: ignore[arg-type]

    def power(self, drift: float) -> float:
        """Probability of rejecting through the upper boundary when E[Z at t=1] = ``drift``."""
        return float(self.exit_probabilities(drift)[0].sum())

    def _label(self) -> str:
        g = "" if self.gamma is None else f", gamma={self.gamma:g}"
        return f"{self.spending}{g}"

    def __repr__(self) -> str:
        def a(x: np.ndarray) -> str:
            return "[" + ", ".join(f"{v:.4g}" for v in x) + "]"
        return (f"SequentialDesign(spending={self._label()!r}, alpha={self.alpha:g}, "
                f"sided={self.sided}, information_rates={a(self.information_rates)}, "
                f"z={a(self.z)}, alpha_spent={a(self.alpha_spent)})")

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python fields (lists, floats), e.g. for JSON."""
        return {
            "spending": self.spending, "gamma": self.gamma, "alpha": self.alpha,
            "sided": self.sided, "information_rates": self.information_rates.tolist(),
            "z": self.z.tolist(), "alpha_spent": self.alpha_spent.tolist(),
            "alpha_at_look": self.alpha_at_look.tolist(),
            "nominal_pvalues": self.nominal_pvalues.tolist(),
        }

    def summary(self) -> str:
        """A text table with one row per look."""
        rows = [f"{'look':>4}  {'info rate':>9}  {'|z| >=' if self.sided == 2 else 'z >=':>8}  "
                f"{'nominal p':>10}  {'alpha at look':>13}  {'alpha spent':>11}"]
        for k in range(self.looks):
            rows.append(f"{k + 1:>4}  {self.information_rates[k]:>9.4f}  {self.z[k]:>8.4f}  "
                        f"{self.nominal_pvalues[k]:>10.3g}  {self.alpha_at_look[k]:>13.3g}  "
                        f"{self.alpha_spent[k]:>11.4g}")
        return "\n".join(rows)

    def explain(self, look: int | None = None) -> str:
        """Plain words: the spending rule and what it allows at ``look`` (1-based, default last)."""
        k = self.looks if look is None else int(look)
        if not 1 <= k <= self.looks:
            raise ValueError(f"look ({look!r}) must be between 1 and {self.looks}")
        side = ("two-sided, a = alpha/2 spent on each side" if self.sided == 2
                else "one-sided (upper), a = alpha")
        rule = _FORMULAS.get(self.spending, self.spending)
        t, i = self.information_rates[k - 1], k - 1
        sign = "|z|" if self.sided == 2 else "z"
        return (
            f"Group-sequential test at overall alpha={self.alpha:g}, {side}. Spending rule: "
            f"{rule}. Look {k} of {self.looks} is at information rate t={t:.4f} (the fraction "
            f"of the planned maximum information seen so far). Alpha spent before this look: "
            f"{self.alpha_spent[i] - self.alpha_at_look[i]:.3g}; at this look: "
            f"{self.alpha_at_look[i]:.3g}; in total so far: {self.alpha_spent[i]:.4g} of "
            f"{self.alpha:g}. Correction applied: reject only if {sign} >= {self.z[i]:.4f} "
            f"instead of the fixed-sample {ndtri(1 - self.alpha / self.sided):.4f}, i.e. a "
            f"nominal p-value below {self.nominal_pvalues[i]:.3g} rather than {self.alpha:g}. "
            f"Boundaries come from exact numerical integration of the joint distribution of the "
            f"z statistics at all looks so far, so peeking at every look keeps the overall "
            f"false-positive rate at {self.alpha:g}.")


def spending_boundaries(information_rates: Sequence[float] | np.ndarray, alpha: float = 0.05,
                        sided: Sided = 2, spending: Spending = "obrien-fleming",
                        gamma: float | None = None) -> SequentialDesign:
    """Alpha-spending (Lan-DeMets) boundaries at the given information rates.

    For monitoring, pass the rates of the looks actually recorded so far: the last boundary is
    the one for the current look, exact given the earlier looks' real timing.
    """
    t = check_rates(information_rates)
    cumulative = spending_function(t, alpha, sided, spending, gamma)
    z, spent = _solve_all(t, cumulative, int(sided))
    return SequentialDesign(t, z, spent, float(alpha), int(sided), spending, gamma)


def classic_boundaries(k: int, alpha: float = 0.05, sided: Sided = 2,
                       kind: Literal["obrien-fleming", "pocock"] = "obrien-fleming"
                       ) -> SequentialDesign:
    """Pocock (1977) or O'Brien-Fleming (1979) boundaries at ``k`` equally spaced looks.

    Pocock uses one constant ``c`` at every look, O'Brien-Fleming ``c * sqrt(k / j)`` at look j;
    ``c`` is solved so that the exact overall crossing probability under H0 is ``alpha``.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k ({k!r}) must be a positive integer")
    a, s = check_alpha(alpha), check_sided(sided)
    if kind not in ("obrien-fleming", "pocock"):
        raise ValueError(f"kind ({kind!r}) must be one of 'obrien-fleming', 'pocock'")
    t = np.arange(1, k + 1) / k
    shape = np.ones(k) if kind == "pocock" else np.sqrt(k / np.arange(1, k + 1))

    def total(c: float) -> float:
        up, lo = exit_probabilities(c * shape, t, 0.0, s)  # type: ignore[arg-type]
        return float(up.sum() + lo.sum())

    c = brentq(lambda c: total(c) - a, 0.0, Z_MAX, xtol=1e-12, rtol=1e-12)
    up, lo = exit_probabilities(c * shape, t, 0.0, s)  # type: ignore[arg-type]
    return SequentialDesign(t, c * shape, np.cumsum(up + lo), a, s, f"classic-{kind}")
