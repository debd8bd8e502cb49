"""Multiple-comparison corrections for several variants or metrics tested at once.

- ``"bonferroni"``: ``min(1, m p)``; controls the family-wise error rate (FWER) always.
- ``"holm"``: step-down Bonferroni; controls the FWER, uniformly more powerful than Bonferroni.
- ``"bh"``: Benjamini-Hochberg step-up; controls the false discovery rate under independence or
  positive dependence (the usual case for variants sharing a control).

Adjusted p-values are compared with the unadjusted alpha; results equal statsmodels'
``multipletests`` for the same method names (``bonferroni``, ``holm``, ``fdr_bh``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

__all__ = ["CORRECTIONS", "adjust_pvalues"]

Correction = Literal["bonferroni", "holm", "bh"]
CORRECTIONS: tuple[str, ...] = ("bonferroni", "holm", "bh")


def adjust_pvalues(pvalues: Sequence[float] | np.ndarray,
                   method: Correction = "holm") -> np.ndarray:
    """Adjusted p-values, in the input order."""
    if method not in CORRECTIONS:
        raise ValueError(f"method ({method!r}) must be one of 'bonferroni', 'holm', 'bh'")
    p = np.array(pvalues, dtype=float).ravel()
    if np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError(f"pvalues must lie in [0, 1], got {p.tolist()}")
    m = p.size
    if m == 0:
        return p
    if method == "bonferroni":
        return np.asarray(np.minimum(p * m, 1.0))
    order = np.argsort(p, kind="stable")
    ps = p[order]
    if method == "holm":
        adj = np.maximum.accumulate(ps * (m - np.arange(m)))
    else:
        adj = np.minimum.accumulate((ps * m / np.arange(1, m + 1))[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out
