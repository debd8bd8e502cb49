"""``analysis.srm()``: are the units split the way the router was configured to split them?

This module is the one place that computes the counts a sample-ratio check expects
(:func:`expected_counts`); the overall check, the per-segment checks of
:mod:`modelrouter.analysis.segments` and the verdict's fallback all come through it.

Observed units per variant (per-unit rows at user/session level; request counts per
(variant, epoch, segment) group at request level) against the expected counts. With one set of
weights the expectation is ``weights * total``. When the weights changed over epochs (a ramp,
a bandit, a rollback) each unit is expected under the weights of the epoch it entered in:
``expected = sum over epochs of units_in_epoch * weights_of_epoch``. After bandit traffic
(adaptive allocation) the draws are the bandit's fresh decisions (sticky repeats are not
independent draws) and the same sum runs over their epochs (:func:`adaptive_srm`). The
chi-square test is :func:`~modelrouter.stats.srm_test`; the alarm is p < ``threshold`` (0.001
by default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelrouter.analysis.data import AnalysisData
from modelrouter.exceptions import AnalysisError
from modelrouter.stats import SRMResult, srm_test
from modelrouter.store.decisions import STICKY

__all__ = ["SampleRatioCheck", "adaptive_srm", "check_sample_ratio", "epoch_counts",
           "expected_counts", "srm_analysis", "unit_counts"]


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


def epoch_counts(data: AnalysisData, segment: Mapping[str, str] | None = None
                 ) -> tuple[list[int], np.ndarray]:
    """(epochs with units, in order; units per (epoch, variant)), optionally in a segment:
    per-unit rows at user/session level (a unit counts in the epoch it entered), the
    (variant, epoch, segment) groups' request counts at request level."""
    snap = data.snapshot
    k = len(data.variants)
    if snap.units is not None:
        mask = data.unit_mask(segment)
        variant, epoch = snap.units.variant, snap.units.epoch
        if mask is not None:
            variant, epoch = variant[mask], epoch[mask]
        epochs = np.unique(epoch)
        counts = np.zeros((epochs.size, k))
        np.add.at(counts, (np.searchsorted(epochs, epoch), variant), 1.0)
        return [int(e) for e in epochs], counts
    flt = data.segment_codes(segment) if segment else None
    per_epoch: dict[int, np.ndarray] = {}
    for (v, e, seg), (n, _m) in snap.groups.items():
        if flt is None or all(seg[d] == c for d, c in flt):
            per_epoch.setdefault(e, np.zeros(k))[v] += n
    order = sorted(per_epoch)
    return order, np.array([per_epoch[e] for e in order]).reshape(len(order), k)


def expected_counts(data: AnalysisData, epochs: Sequence[int], counts: np.ndarray,
                    what: str = "units") -> np.ndarray:
    """Per variant, the count expected from the weights in force when each unit (or draw)
    arrived: ``sum over epochs of (that epoch's count) x (that epoch's weights)``, summed in
    epoch order. ``counts`` has one row per epoch of ``epochs`` and one column per variant."""
    weights = data.epoch_weights(epochs, what)
    expected = np.zeros(len(data.variants))
    for total, w in zip(counts.sum(axis=1), weights):
        expected = expected + total * w
    return expected


def unit_counts(data: AnalysisData, segment: Mapping[str, str] | None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Observed units per variant (in a segment, or all), and the expected counts
    (:func:`expected_counts`)."""
    epochs, counts = epoch_counts(data, segment)
    return counts.sum(axis=0), expected_counts(data, epochs, counts)


def srm_analysis(data: AnalysisData, threshold: float = 0.001) -> SampleRatioCheck:
    """The per-unit check (A/B traffic); see the module docstring."""
    if not data.snapshot.epochs:
        raise AnalysisError("no routing epochs recorded; nothing to check")
    epochs, counts = epoch_counts(data)
    observed = counts.sum(axis=0)
    if observed.sum() <= 0:
        raise AnalysisError("no units yet; the sample ratio cannot be checked")
    expected = expected_counts(data, epochs, counts)
    weights = data.epoch_weights(epochs, "units")
    used = len({tuple(w) for w, n in zip(weights, counts.sum(axis=1)) if n > 0})
    res = srm_test(observed, expected_counts=expected, threshold=threshold)
    return SampleRatioCheck(data.variants, tuple(int(o) for o in observed),
                            tuple(float(e) for e in expected), res.statistic, res.pvalue,
                            res.df, res.alarm, res.threshold, max(used, 1), res)


def adaptive_srm(data: AnalysisData, threshold: float = 0.001) -> SampleRatioCheck:
    """Bandit traffic: fresh draws per arm against ``sum over epochs of draws x the epoch's
    weights``; arms paused throughout (nothing expected) are left out."""
    fresh = [(key, value) for key, value in data.snapshot.decisions.items()
             if not key[3] & STICKY]
    if not fresh:
        raise AnalysisError("no bandit decisions yet; the sample ratio cannot be checked")
    epochs = sorted({key[1] for key, _ in fresh})
    row = {e: i for i, e in enumerate(epochs)}
    counts = np.zeros((len(epochs), len(data.variants)))
    for (variant, epoch, _seg, _tag), (n, _m) in fresh:
        counts[row[epoch], variant] += n
    expected = expected_counts(data, epochs, counts, "decisions")
    observed = counts.sum(axis=0)
    keep = expected > 0  # paused arms: nothing expected, nothing observed
    if np.any(observed[~keep] > 0):
        raise AnalysisError("decisions on an arm whose weight was 0: routing is broken")
    res = srm_test(observed[keep], expected_counts=expected[keep], threshold=threshold)
    return SampleRatioCheck(tuple(v for v, k in zip(data.variants, keep) if k),
                            tuple(int(o) for o in observed[keep]),
                            tuple(float(e) for e in expected[keep]), res.statistic, res.pvalue,
                            res.df, res.alarm, res.threshold, len(epochs), res)


def check_sample_ratio(data: AnalysisData, threshold: float = 0.001) -> SampleRatioCheck:
    """``analysis.srm()``: per bandit decision after adaptive traffic, else per unit."""
    if data.adaptive:
        return adaptive_srm(data, threshold)
    return srm_analysis(data, threshold)
