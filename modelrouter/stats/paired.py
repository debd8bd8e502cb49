"""Paired proportions: agreement of two models on the same requests, and paired error rates.

A shadow model sees the same requests as the served one, so its outputs come in pairs. For
binary outcomes per request (the two labels agree; each model erred; each model was right once
the label arrived) the data are a paired 2x2 table::

                      shadow yes   shadow no
        served yes        a            b
        served no         c            d

- :func:`agreement` is a single proportion ``x / n`` with the Wilson score interval (Wilson,
  1927, JASA 22:209; recommended by Brown, Cai & DasGupta, 2001, Statist. Sci. 16:101) or the
  Agresti-Coull interval (Agresti & Coull, 1998, Amer. Statist. 52:119).
- :func:`paired_proportions` compares ``p_shadow = (a + c) / n`` with ``p_served = (a + b) / n``:
  the difference ``(c - b) / n`` with Newcombe's square-and-add interval for paired data
  (Newcombe, 1998, Statist. Med. 17:2635, method 10: Wilson limits of each margin combined
  with the estimated correlation ``phi``, the numerator ``ad - bc`` shrunk by ``n / 2`` towards
  0 when positive, as in Fagerland, Lydersen & Laake, 2017, *Statistical Analysis of
  Contingency Tables*, ch. 8), and McNemar's exact conditional test (binomial on the ``b + c``
  discordant pairs) with its mid-p version, which Fagerland, Lydersen & Laake (2013, BMC Med.
  Res. Methodol. 13:91) recommend because the exact test is very conservative.

All functions are pure and take counts, so per-worker counters add up before the analysis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from scipy.stats import binom, norm

from modelrouter.exceptions import AnalysisError
from modelrouter.stats.jsondata import finite_or_none
from modelrouter.stats.results import ConfidenceInterval

__all__ = [
    "PairedProportions",
    "ProportionResult",
    "ProportionMethod",
    "agreement",
    "mcnemar_pvalues",
    "newcombe_paired_interval",
    "paired_proportions",
    "wilson_interval",
]

ProportionMethod = Literal["wilson", "agresti_coull"]


def _z(confidence_level: float) -> float:
    if not 0.0 < confidence_level < 1.0:
        raise AnalysisError(f"confidence_level ({confidence_level!r}) must be in (0, 1)")
    return float(norm.ppf(0.5 + confidence_level / 2.0))



def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise AnalysisError(f"{name} ({value!r}) must be a non-negative integer")
    return int(value)


def wilson_interval(successes: int, n: int, confidence_level: float = 0.95,
                    method: ProportionMethod = "wilson") -> ConfidenceInterval:
    """The Wilson score (or Agresti-Coull) interval of ``successes / n``; ``[0, 1]`` when
    ``n == 0`` (nothing is known)."""
    x, n = _check_count("successes", successes), _check_count("n", n)
    if x > n:
        raise AnalysisError(f"successes ({x}) must be <= n ({n})")
    z = _z(confidence_level)
    if n == 0:
        return ConfidenceInterval(0.0, 1.0)
    if method == "wilson":
        center = (x + z * z / 2.0) / (n + z * z)
        half = z / (n + z * z) * math.sqrt(x * (n - x) / n + z * z / 4.0)
    elif method == "agresti_coull":
        n_t = n + z * z
        center = (x + z * z / 2.0) / n_t
        half = z * math.sqrt(center * (1.0 - center) / n_t)
    else:
        raise AnalysisError(f"method ({method!r}) must be one of 'wilson', 'agresti_coull'")
    return ConfidenceInterval(max(0.0, center - half), min(1.0, center + half))


@dataclass(frozen=True)
class ProportionResult:
    """A proportion ``successes / n`` with its interval (NaN when ``n == 0``)."""

    successes: int
    n: int
    proportion: float
    ci: ConfidenceInterval
    method: str
    confidence_level: float

    def confidence_interval(self) -> ConfidenceInterval:
        """The interval at :attr:`confidence_level`."""
        return self.ci

    def __repr__(self) -> str:
        return (f"ProportionResult({self.successes}/{self.n} = {self.proportion:.4g}, "
                f"{self.confidence_level:.0%} {self.method} CI "
                f"[{self.ci.low:.4g}, {self.ci.high:.4g}])")

    def to_dict(self) -> dict[str, Any]:
        """Plain data; NaN becomes ``None``."""
        return {"successes": self.successes, "n": self.n,
                "proportion": finite_or_none(self.proportion), "ci": self.ci.to_dict(),
                "method": self.method, "confidence_level": self.confidence_level}


def agreement(agreeing: int, n: int, confidence_level: float = 0.95,
              method: ProportionMethod = "wilson") -> ProportionResult:
    """The agreement rate of served and shadow labels: ``agreeing`` of ``n`` paired requests."""
    ci = wilson_interval(agreeing, n, confidence_level, method)
    p = agreeing / n if n else math.nan
    return ProportionResult(int(agreeing), int(n), p, ci, method, confidence_level)


def newcombe_paired_interval(a: int, b: int, c: int, d: int,
                             confidence_level: float = 0.95) -> ConfidenceInterval:
    """Newcombe's (1998) method 10 interval of ``p_shadow - p_served = (c - b) / n`` for the
    paired table above (``a`` both, ``b`` served only, ``c`` shadow only, ``d`` neither)."""
    n = a + b + c + d
    if n == 0:
        return ConfidenceInterval(-1.0, 1.0)
    # Newcombe writes theta = p1 - p2 with p1 the row margin; we report shadow - served, so
    # p1 is the shadow's (column) margin and p2 the served model's (row) margin.
    x1, x2 = a + c, a + b
    p1, p2 = x1 / n, x2 / n
    ci1 = wilson_interval(x1, n, confidence_level)
    ci2 = wilson_interval(x2, n, confidence_level)
    l1, u1, l2, u2 = ci1.low, ci1.high, ci2.low, ci2.high
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    if margins == 0:
        phi = 0.0
    else:
        num = float(a * d - b * c)
        num = num - n / 2.0 if num > n / 2.0 else (0.0 if num >= 0 else num)
        phi = num / math.sqrt(margins)
    theta = p1 - p2
    dl = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2.0 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    du = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2.0 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return ConfidenceInterval(max(-1.0, theta - dl), min(1.0, theta + du))


def mcnemar_pvalues(b: int, c: int) -> tuple[float, float]:
    """McNemar's exact conditional two-sided p-value and its mid-p version for ``b`` and ``c``
    discordant pairs: ``2 P(X <= min)`` and ``2 (P(X < min) + P(X = min) / 2)`` with
    ``X ~ Binomial(b + c, 1/2)``, both capped at 1; ``(1, 1)`` without discordant pairs."""
    m = b + c
    if m == 0:
        return 1.0, 1.0
    k = min(b, c)
    exact = min(1.0, 2.0 * float(binom.cdf(k, m, 0.5)))
    mid = min(1.0, 2.0 * (float(binom.cdf(k - 1, m, 0.5)) + 0.5 * float(binom.pmf(k, m, 0.5))))
    return exact, mid


@dataclass(frozen=True)
class PairedProportions:
    """Shadow vs served rate of a binary outcome on the same requests (errors, correct answers).

    ``difference = p_shadow - p_served`` with Newcombe's paired interval; ``pvalue`` is
    McNemar's exact conditional test, ``pvalue_midp`` its mid-p version."""

    outcome: str
    n: int
    both: int
    served_only: int
    shadow_only: int
    neither: int
    p_served: float
    p_shadow: float
    difference: float
    ci: ConfidenceInterval
    pvalue: float
    pvalue_midp: float
    confidence_level: float

    def confidence_interval(self) -> ConfidenceInterval:
        """Newcombe's interval of ``p_shadow - p_served`` at :attr:`confidence_level`."""
        return self.ci

    def __repr__(self) -> str:
        return (f"PairedProportions({self.outcome}: shadow {self.p_shadow:.4g} vs served "
                f"{self.p_served:.4g} on {self.n} pairs, diff {self.difference:+.4g} "
                f"[{self.ci.low:+.4g}, {self.ci.high:+.4g}], McNemar p={self.pvalue:.3g} "
                f"(mid-p {self.pvalue_midp:.3g}))")

    def to_dict(self) -> dict[str, Any]:
        """Plain data; NaN becomes ``None``."""
        return {"outcome": self.outcome, "n": self.n, "both": self.both,
                "served_only": self.served_only, "shadow_only": self.shadow_only,
                "neither": self.neither, "p_served": finite_or_none(self.p_served),
                "p_shadow": finite_or_none(self.p_shadow),
                "difference": finite_or_none(self.difference),
                "ci": self.ci.to_dict(), "pvalue": self.pvalue, "pvalue_midp": self.pvalue_midp,
                "confidence_level": self.confidence_level}


def paired_proportions(both: int, served_only: int, shadow_only: int, neither: int, *,
                       outcome: str = "error", confidence_level: float = 0.95
                       ) -> PairedProportions:
    """Compare a binary outcome of shadow and served model from the paired table's counts."""
    a, b = _check_count("both", both), _check_count("served_only", served_only)
    c, d = _check_count("shadow_only", shadow_only), _check_count("neither", neither)
    _z(confidence_level)
    n = a + b + c + d
    p_served = (a + b) / n if n else math.nan
    p_shadow = (a + c) / n if n else math.nan
    exact, mid = mcnemar_pvalues(b, c)
    return PairedProportions(outcome, n, a, b, c, d, p_served, p_shadow,
                             p_shadow - p_served, newcombe_paired_interval(a, b, c, d,
                                                                           confidence_level),
                             exact, mid, confidence_level)
