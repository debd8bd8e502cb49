"""``analysis.srm()``: are the units split the way the router was configured to split them?

Observed units per variant (per-unit rows at user/session level; request counts per
(variant, epoch, segment) group at request level) against the expected counts. With one set of
weights the expectation is ``weights * total``. When the weights changed over epochs (a ramp,
a bandit, a rollback) each unit is expected under the weights of the epoch it entered in:
``expected = sum over epochs of units_in_epoch * weights_of_epoch``. The chi-square test is
:func:`~modelrouter.stats.srm_test`; the alarm is p < ``threshold`` (0.001 by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from modelrouter.exceptions import AnalysisError
from modelrouter.stats import SRMResult, srm_test

if TYPE_CHECKING:
    from modelrouter.analysis.analysis import Analysis

__all__ = ["SampleRatioCheck", "srm_analysis"]


@dataclass(frozen=True)
class SampleRatioCheck:
    """Chi-square check of units per variant against the configured split."""

    variants: tuple[str, ...]
    observed: tuple[int, ...]
    expected: tuple[float, ...]
    statistic: float
    pvalue: float
    df: int
    alarm: bool
    threshold: float
    epochs: int  # distinct weight settings under which units entered
    result: SRMResult | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for code and JSON."""
        return {"variants": list(self.variants), "observed": list(self.observed),
                "expected": list(self.expected), "statistic": self.statistic,
                "pvalue": self.pvalue, "df": self.df, "alarm": self.alarm,
                "threshold": self.threshold, "epochs": self.epochs}

    def explain(self) -> str:
        """Plain words: observed against expected per variant, and the verdict."""
        n = max(sum(self.observed), 1)
        parts = ", ".join(f"{v} {o:,} ({o / n:.2%}) vs {e:,.1f} expected"
                          for v, o, e in zip(self.variants, self.observed, self.expected,
                                             strict=True))
        how = ("the configured weights" if self.epochs == 1 else
               f"each unit's weights in force when it entered ({self.epochs} epochs)")
        verdict = ("SAMPLE RATIO MISMATCH: assignment or logging is broken somewhere; do not "
                   "trust the comparisons until it is explained" if self.alarm
                   else "no evidence of a sample ratio mismatch")
        return (f"Units per variant: {parts}; expected from {how}. Chi-square "
                f"{self.statistic:.3f} on {self.df} df, p = {self.pvalue:.3g} (alarm below "
                f"{self.threshold:g}): {verdict}.")


def _units_by_epoch(analysis: Analysis) -> tuple[np.ndarray, np.ndarray]:
    """(epoch numbers, units per (epoch, variant)) from the snapshot."""
    snap = analysis.snapshot
    k = len(snap.variants)
    epochs = np.array(sorted({e.epoch for e in snap.epochs}), dtype=np.int64)
    counts = np.zeros((epochs.size, k))
    if snap.units is not None:
        rows = np.searchsorted(epochs, snap.units.epoch)
        np.add.at(counts, (rows, snap.units.variant), 1.0)
    else:
        for (variant, epoch, _seg), (n, _m) in snap.groups.items():
            counts[int(np.searchsorted(epochs, epoch)), variant] += n
    return epochs, counts


def srm_analysis(analysis: Analysis, threshold: float = 0.001) -> SampleRatioCheck:
    """See the module docstring."""
    snap = analysis.snapshot
    if not snap.epochs:
        raise AnalysisError("no routing epochs recorded; nothing to check")
    epochs, counts = _units_by_epoch(analysis)
    observed = counts.sum(axis=0)
    if observed.sum() <= 0:
        raise AnalysisError("no units yet; the sample ratio cannot be checked")
    weights = {e.epoch: np.asarray(e.weights, dtype=float) for e in snap.epochs}  # last wins
    expected = sum((counts[i].sum() * weights[int(e)] for i, e in enumerate(epochs)),
                   np.zeros(len(snap.variants)))
    used = len({tuple(weights[int(e)]) for i, e in enumerate(epochs) if counts[i].sum() > 0})
    res = srm_test(observed, expected_counts=expected, threshold=threshold)
    return SampleRatioCheck(snap.variants, tuple(int(o) for o in observed),
                            tuple(float(e) for e in expected), res.statistic, res.pvalue,
                            res.df, res.alarm, res.threshold, max(used, 1), res)
