"""Sample-ratio mismatch (SRM): is the observed split of units the one the router promised?

A chi-square goodness-of-fit test of the observed unit counts per variant against the expected
counts. A mismatch means assignment or logging is broken (bots, redirects, crashes in one arm), so
every other comparison is suspect. The alarm threshold is deliberately strict (p < 0.001 by
default, as Microsoft's ExP and most platforms use): the test runs continuously and a false alarm
stops a healthy experiment. For bandits, whose weights change per epoch, pass
``expected_counts`` (the sum over epochs of units times that epoch's weights) instead of weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as _st

__all__ = ["SRMResult", "srm_test"]


@dataclass(frozen=True, eq=False)
class SRMResult:
    """Chi-square goodness of fit of unit counts; ``alarm`` is ``pvalue < threshold``."""

    statistic: float
    pvalue: float
    df: int
    alarm: bool
    threshold: float
    observed: np.ndarray = field(repr=False)
    expected: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python fields."""
        return {"statistic": self.statistic, "pvalue": self.pvalue, "df": self.df,
                "alarm": self.alarm, "threshold": self.threshold,
                "observed": self.observed.tolist(), "expected": self.expected.tolist()}

    def explain(self) -> str:
        """Plain words: observed against expected shares, and the verdict."""
        n = self.observed.sum()
        parts = ", ".join(f"{o:,.0f} ({o / n:.2%}) vs {e:,.1f} ({e / n:.2%})"
                          for o, e in zip(self.observed, self.expected, strict=True))
        verdict = ("SAMPLE RATIO MISMATCH: the split differs from the configured one by more "
                   "than chance allows; check assignment and logging before trusting results"
                   if self.alarm else "no evidence of a sample ratio mismatch")
        return (f"Observed vs expected units per variant: {parts}. Chi-square = "
                f"{self.statistic:.3f} on {self.df} df, p = {self.pvalue:.3g} (alarm below "
                f"{self.threshold:g}): {verdict}.")


def _vector(name: str, values: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.array(values, dtype=float).ravel()
    if arr.size < 2:
        raise ValueError(f"{name} needs at least 2 variants, got {arr.size}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must be finite and non-negative, got {arr.tolist()}")
    return arr


def srm_test(observed_counts: Sequence[float] | np.ndarray,
             expected_weights: Sequence[float] | np.ndarray | None = None, *,
             expected_counts: Sequence[float] | np.ndarray | None = None,
             threshold: float = 0.001) -> SRMResult:
    """Chi-square test of ``observed_counts`` against ``expected_weights`` (summing to 1) or
    ``expected_counts`` (summing to the observed total). Variants expected to get no units are
    left out when they got none, and raise the alarm when they got some."""
    obs = _vector("observed_counts", observed_counts)
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold ({threshold!r}) must be in (0, 1)")
    if (expected_weights is None) == (expected_counts is None):
        raise ValueError("pass exactly one of expected_weights or expected_counts")
    total = obs.sum()
    if total <= 0:
        raise ValueError("observed_counts must contain at least one unit")
    if expected_weights is not None:
        w = _vector("expected_weights", expected_weights)
        if not math.isclose(w.sum(), 1.0, rel_tol=0.0, abs_tol=1e-9):
            raise ValueError(f"expected_weights must sum to 1, got {w.tolist()} "
                             f"(sum {w.sum():.12g})")
        exp = w * total
    else:
        exp = _vector("expected_counts", expected_counts)  # type: ignore[arg-type]
        if not math.isclose(exp.sum(), total, rel_tol=1e-6):
            raise ValueError(f"expected_counts must sum to the observed total {total:g}, "
                             f"got {exp.sum():g}")
    if obs.size != exp.size:
        raise ValueError(f"observed_counts has {obs.size} variants but the expectation has "
                         f"{exp.size}")
    keep = exp > 0
    if np.any(obs[~keep] > 0):
        stat, p = math.inf, 0.0
    else:
        o, e = obs[keep], exp[keep]
        stat = float(np.sum((o - e) ** 2 / e))
        p = float(_st.chi2.sf(stat, int(keep.sum()) - 1)) if keep.sum() > 1 else 1.0
    df = max(int(keep.sum()) - 1, 0)
    return SRMResult(stat, p, df, p < threshold, float(threshold), obs, exp)
