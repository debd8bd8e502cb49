"""Monitoring a group-sequential test: the decision at the latest recorded look.

The boundaries themselves live in :mod:`modelrouter.stats.sequential`; this module applies them
to the z statistics observed at the looks actually recorded. Each look's boundary depends only on
the information rates of that look and the earlier ones, so the design is recomputed from the
recorded rates every time (exact for the real timing of the looks, not the planned one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.special import ndtr

from modelrouter.stats.sequential import (
    SequentialDesign,
    Sided,
    Spending,
    format_values,
    spending_boundaries,
)

__all__ = ["SequentialTestResult", "sequential_test"]


@dataclass(frozen=True, eq=False)
class SequentialTestResult:
    """Decision at the latest recorded look: ``"reject"`` (stop, significant), ``"continue"``, or
    ``"final"`` (the planned maximum information is reached without crossing)."""

    statistic: float
    boundary: float
    information_rate: float
    look: int
    alpha_spent: float
    alpha_at_look: float
    decision: Literal["reject", "continue", "final"]
    rejected_at: int | None
    design: SequentialDesign = field(repr=False)

    @property
    def nominal_pvalue(self) -> float:
        """The unadjusted p-value of this look's z (not valid under peeking on its own)."""
        z = self.statistic if self.design.sided == 1 else abs(self.statistic)
        return float(self.design.sided * ndtr(-z))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python fields, the design included."""
        out = {k: getattr(self, k) for k in ("statistic", "boundary", "information_rate", "look",
                                             "alpha_spent", "alpha_at_look", "decision",
                                             "rejected_at")}
        return {**out, "nominal_pvalue": self.nominal_pvalue, "design": self.design.to_dict()}

    def explain(self) -> str:
        """Plain words: the boundary, how it was corrected, and why this decision."""
        sign = "|z|" if self.design.sided == 2 else "z"
        shown = abs(self.statistic) if self.design.sided == 2 else self.statistic
        if self.rejected_at is not None and self.rejected_at < self.look:
            why = (f"an earlier look ({self.rejected_at}) already crossed its boundary, so the "
                   f"null hypothesis was rejected there")
        else:
            cmp = ">=" if self.decision == "reject" else "<"
            why = f"observed {sign} = {shown:.4f} {cmp} {self.boundary:.4f}"
        return f"{self.design.explain(self.look)} Decision: {self.decision} ({why})."


def sequential_test(statistics: Sequence[float] | np.ndarray,
                    information_rates: Sequence[float] | np.ndarray, alpha: float = 0.05,
                    sided: Sided = 2, spending: Spending = "obrien-fleming",
                    gamma: float | None = None) -> SequentialTestResult:
    """Test the recorded looks' z statistics against boundaries recomputed for their actual
    information rates (the last look is the current one)."""
    z = np.array(statistics, dtype=float).ravel()
    design = spending_boundaries(information_rates, alpha, sided, spending, gamma)
    if z.shape != design.z.shape or not np.all(np.isfinite(z)):
        raise ValueError(f"statistics must be {design.looks} finite z values (one per look), "
                         f"got {format_values(z)}")
    crossed = np.flatnonzero((np.abs(z) if design.sided == 2 else z) >= design.z)
    first = int(crossed[0]) + 1 if crossed.size else None
    k = design.looks
    decision: Literal["reject", "continue", "final"] = (
        "reject" if first is not None else "final" if design.information_rates[-1] >= 1.0
        else "continue")
    return SequentialTestResult(float(z[-1]), float(design.z[-1]),
                                float(design.information_rates[-1]), k,
                                float(design.alpha_spent[-1]), float(design.alpha_at_look[-1]),
                                decision, first, design)
