"""``analysis.srm()``: are the units split the way the router was configured to split them?

This module is the one place that computes the counts a sample-ratio check expects
(:func:`expected_counts`); the overall check, the per-segment checks of
:mod:`modelrouter.analysis.segments` and the verdict all come through it.

Observed units per variant (per-unit rows at user/session level; request counts per
(variant, epoch, segment) group at request level) against the configured weights. When the
weights changed over epochs (a ramp, a bandit, a rollback) each unit is expected under the
weights of the epoch it entered in. After bandit traffic (adaptive allocation) the draws are the
bandit's fresh decisions (sticky repeats are not independent draws), per epoch
(:func:`adaptive_srm`).

**After a mode switch** (A/B -> bandit -> A/B, :attr:`AnalysisData.switched`) one check covers
every phase (:func:`switched_srm`; a phase is a run of consecutive epochs in one mode): in A/B
epochs the units that entered there (requests at request level) against that epoch's weights, in
bandit epochs the fresh decisions against that epoch's propensities. Units that entered in a
bandit epoch are counted through their decisions only. ``covers`` says what was counted and
``phases`` gives each phase's own counts and tests (:class:`PhaseSampleRatio`).

Two tests are computed from the same counts; ``method`` says which one sets ``pvalue`` and
``alarm`` (p < ``threshold``, 0.001 by default):

- ``"sequential"`` (the default, and what the verdict, the report and the dashboard use):
  :func:`~modelrouter.stats.sequential_srm_test`, the anytime-valid multinomial test of
  Lindon & Malek (2022) on each epoch's counts against that epoch's weights (the product of the
  epochs' Bayes factors). The dashboard reloads, the report is rerun and the verdict is asked at
  any time: this test keeps its false-alarm rate at most ``threshold`` however often that
  happens (A/A checked every 100 units up to 10,000: 0.043%, s.e. 0.007%, 200,000 runs).
- ``"chi-square"``: :func:`~modelrouter.stats.srm_test` on the totals against
  ``sum over epochs of units_in_epoch * weights_of_epoch``: valid for ONE check at a sample
  size fixed in advance (checked every 100 units in the same A/A simulation it alarms 1.5% of
  the time). Its statistic, df and p-value (``chi2_pvalue``) are reported either way.

Combining the phases of a switched experiment: the sequential test multiplies the Bayes factors
of all epochs of all phases (epochs follow each other in time and each one's weights are set
before its draws arrive, so the product is still a null martingale: Lindon & Malek 2022, and
Vovk & Wang 2021, "E-values: calibration, combination and applications", on products of
sequential e-values); the chi-square is computed per phase and combined by Bonferroni
(``min(1, phases x smallest phase p)``; its ``statistic`` and ``df`` are that phase's), which
needs no independence between the phases.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from modelrouter.analysis.data import AnalysisData
from modelrouter.analysis.jsondata import finite_or_none
from modelrouter.analysis.text import fmt_pvalue
from modelrouter.exceptions import AnalysisError
from modelrouter.stats import SequentialSRMResult, SRMResult, sequential_srm_test, srm_test
from modelrouter.store.decisions import STICKY

__all__ = ["PhaseSampleRatio", "SRMMethod", "SampleRatioCheck", "adaptive_srm",
           "check_sample_ratio", "epoch_counts", "expected_counts", "srm_analysis",
           "switched_srm", "unit_counts"]

SRMMethod = Literal["sequential", "chi-square"]
_METHODS: tuple[SRMMethod, ...] = ("sequential", "chi-square")


@dataclass(frozen=True)
class PhaseSampleRatio:
    """One phase of a switched experiment's sample-ratio check (:func:`switched_srm`): what
    was counted (``counted``: units, requests or fresh bandit decisions) per variant over the
    phase's ``epochs``, the counts expected from each epoch's weights, the phase's chi-square
    (statistic, df, ``chi2_pvalue``) and its share of the sequential test (``log_bayes_factor``,
    the sum of its epochs' log Bayes factors, and ``sequential_pvalue = min(1, 1 / BF)``)."""

    phase: int  # 0-based, in time order
    mode: str
    epochs: tuple[int, ...]
    counted: str
    observed: tuple[int, ...]
    expected: tuple[float, ...]
    statistic: float
    df: int
    chi2_pvalue: float
    log_bayes_factor: float
    sequential_pvalue: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data (NaN and inf as None)."""
        return {"phase": self.phase, "mode": self.mode, "epochs": list(self.epochs),
                "counted": self.counted, "observed": list(self.observed),
                "expected": list(self.expected),
                "statistic": finite_or_none(self.statistic), "df": self.df,
                "chi2_pvalue": finite_or_none(self.chi2_pvalue),
                "log_bayes_factor": finite_or_none(self.log_bayes_factor),
                "sequential_pvalue": finite_or_none(self.sequential_pvalue)}

    def explain(self, variants: Sequence[str]) -> str:
        """One line: the phase, its counts against the expected ones, both p-values."""
        span = (f"epoch {self.epochs[0]}" if len(self.epochs) == 1 else
                f"epochs {self.epochs[0]}-{self.epochs[-1]}")
        mode = "A/B" if self.mode == "ab" else self.mode
        counts = ", ".join(f"{v} {o:,} vs {e:,.1f}" for v, o, e in
                           zip(variants, self.observed, self.expected, strict=True))
        return (f"phase {self.phase + 1} ({mode}, {span}, {self.counted}): {counts}; "
                f"chi-square p = {fmt_pvalue(self.chi2_pvalue, 3)}, always-valid p = "
                f"{fmt_pvalue(self.sequential_pvalue, 3)}")


@dataclass(frozen=True)
class SampleRatioCheck:
    """Units per variant against the configured split (see the module docstring).

    ``pvalue`` and ``alarm`` (``pvalue < threshold``) are those of ``method``: the anytime-valid
    ``sequential_pvalue`` by default, or the one-off ``chi2_pvalue``. ``statistic`` and ``df``
    are the chi-square's; ``log_bayes_factor`` is the sequential test's statistic (the log of
    its e-value), ``concentration`` its Dirichlet prior's.
    """

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
    method: SRMMethod = "sequential"
    chi2_pvalue: float = math.nan
    sequential_pvalue: float = math.nan
    log_bayes_factor: float = math.nan
    concentration: float = math.nan
    sequential: SequentialSRMResult | None = field(default=None, repr=False, compare=False)
    covers: str = ""  # what was counted, in words
    phases: tuple[PhaseSampleRatio, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for code and JSON."""
        return {"variants": list(self.variants), "observed": list(self.observed),
                "expected": list(self.expected), "statistic": self.statistic,
                "pvalue": self.pvalue, "df": self.df, "alarm": self.alarm,
                "threshold": self.threshold, "epochs": self.epochs, "method": self.method,
                "chi2_pvalue": self.chi2_pvalue, "sequential_pvalue": self.sequential_pvalue,
                "log_bayes_factor": self.log_bayes_factor,
                "concentration": self.concentration, "covers": self.covers,
                "phases": [p.to_dict() for p in self.phases]}

    def explain(self) -> str:
        """Plain words: observed against expected per variant, both tests, and the verdict."""
        if self.phases:
            return self._explain_phases()
        n = max(sum(self.observed), 1)
        parts = ", ".join(f"{v} {o:,} ({o / n:.2%}) vs {e:,.1f} expected"
                          for v, o, e in zip(self.variants, self.observed, self.expected,
                                             strict=True))
        how = ("the configured weights" if self.epochs == 1 else
               f"each unit's weights in force when it entered ({self.epochs} epochs)")
        verdict = ("SAMPLE RATIO MISMATCH: assignment or logging is broken somewhere; do not "
                   "trust the comparisons until it is explained" if self.alarm
                   else "no evidence of a sample ratio mismatch")
        seq = (f"sequential multinomial test (Lindon & Malek 2022; valid however often it is "
               f"checked): always-valid p = {fmt_pvalue(self.sequential_pvalue, 3)}, log Bayes "
               f"factor {self.log_bayes_factor:.3f}")
        chi = (f"chi-square (valid for one check at a sample size fixed in advance) "
               f"{self.statistic:.3f} on {self.df} df, p = {fmt_pvalue(self.chi2_pvalue, 3)}")
        tests = (f"{seq}; for reference, the {chi}" if self.method == "sequential" else
                 f"{chi}; the {seq}")
        return (f"Units per variant: {parts}; expected from {how}. The alarm uses the {tests}. "
                f"Alarm below {self.threshold:g}: {verdict}.")

    def _explain_phases(self) -> str:
        """:meth:`explain` after a mode switch: every phase, then the combined tests."""
        lines = "; ".join(p.explain(self.variants) for p in self.phases)
        verdict = ("SAMPLE RATIO MISMATCH: assignment or logging is broken somewhere; do not "
                   "trust the comparisons until it is explained" if self.alarm
                   else "no evidence of a sample ratio mismatch")
        seq = (f"sequential multinomial test over every epoch of every phase (Lindon & Malek "
               f"2022; valid however often it is checked): always-valid p = "
               f"{fmt_pvalue(self.sequential_pvalue, 3)}, log Bayes factor "
               f"{self.log_bayes_factor:.3f}")
        chi = (f"per-phase chi-square with a Bonferroni split over {len(self.phases)} phases "
               f"(valid for one check at a sample size fixed in advance): p = "
               f"{fmt_pvalue(self.chi2_pvalue, 3)}")
        tests = (f"{seq}; for reference, the {chi}" if self.method == "sequential" else
                 f"{chi}; the {seq}")
        return (f"Checked: {self.covers}. Per phase (observed vs expected): {lines}. The alarm "
                f"uses the {tests}. Alarm below {self.threshold:g}: {verdict}.")


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


def _method(method: str) -> SRMMethod:
    for m in _METHODS:
        if method == m:
            return m
    raise AnalysisError(f"method ({method!r}) must be 'sequential' or 'chi-square'")


def _check(variants: tuple[str, ...], counts: np.ndarray, weights: np.ndarray,
           threshold: float, method: SRMMethod, epochs: int) -> SampleRatioCheck:
    """Both tests on per-epoch ``counts`` against per-epoch ``weights`` (rows: epochs)."""
    observed = counts.sum(axis=0)
    expected = np.zeros(counts.shape[1])
    for total, w in zip(counts.sum(axis=1), weights):  # in epoch order, as expected_counts
        expected = expected + total * w
    chi = srm_test(observed, expected_counts=expected, threshold=threshold)
    seq = sequential_srm_test(counts, weights, threshold=threshold)
    pvalue, alarm = ((seq.pvalue, seq.alarm) if method == "sequential" else
                     (chi.pvalue, chi.alarm))
    return SampleRatioCheck(variants, tuple(int(o) for o in observed),
                            tuple(float(e) for e in expected), chi.statistic, pvalue, chi.df,
                            alarm, chi.threshold, epochs, chi, method, chi.pvalue, seq.pvalue,
                            seq.statistic, seq.concentration, seq)


def srm_analysis(data: AnalysisData, threshold: float = 0.001,
                 segment: Mapping[str, str] | None = None, method: str = "sequential"
                 ) -> SampleRatioCheck:
    """The per-unit check (A/B traffic), optionally within a segment; see the module
    docstring."""
    chosen = _method(method)
    if not data.snapshot.epochs:
        raise AnalysisError("no routing epochs recorded; nothing to check")
    epochs, counts = epoch_counts(data, segment)
    if counts.sum() <= 0:
        raise AnalysisError("no units yet; the sample ratio cannot be checked")
    weights = data.epoch_weights(epochs, "units")
    used = len({tuple(w) for w, n in zip(weights, counts.sum(axis=1)) if n > 0})
    what = "units" if data.snapshot.units is not None else "requests"
    check = _check(data.variants, counts, weights, threshold, chosen, max(used, 1))
    return replace(check, covers=f"{what} per variant against the weights of the epoch each "
                   "entered in")


def _fresh_decisions(data: AnalysisData, segment: Mapping[str, str] | None
                     ) -> list[tuple[tuple[int, int, tuple[int, ...], int], int]]:
    """``(key, n)`` of the fresh (not sticky) bandit decision groups, of ``segment`` only
    when one is given."""
    pairs = data.segment_codes(segment) if segment else []
    return [(key, n) for key, (n, _m) in data.snapshot.decisions.items()
            if not key[3] & STICKY
            and all(d < len(key[2]) and key[2][d] == c for d, c in pairs)]


def adaptive_srm(data: AnalysisData, threshold: float = 0.001, method: str = "sequential",
                 segment: Mapping[str, str] | None = None) -> SampleRatioCheck:
    """Bandit traffic: fresh draws per arm and epoch against each epoch's weights; arms paused
    throughout (nothing expected) are left out."""
    chosen = _method(method)
    fresh = _fresh_decisions(data, segment)
    if not fresh:
        raise AnalysisError("no bandit decisions yet; the sample ratio cannot be checked")
    epochs = sorted({key[1] for key, _ in fresh})
    row = {e: i for i, e in enumerate(epochs)}
    counts = np.zeros((len(epochs), len(data.variants)))
    for (variant, epoch, _seg, _tag), n in fresh:
        counts[row[epoch], variant] += n
    weights = data.epoch_weights(epochs, "decisions")
    keep = expected_counts(data, epochs, counts, "decisions") > 0  # paused arms: none expected
    if np.any(counts[:, ~keep] > 0):
        raise AnalysisError("decisions on an arm whose weight was 0: routing is broken")
    check = _check(tuple(v for v, k in zip(data.variants, keep) if k), counts[:, keep],
                   weights[:, keep], threshold, chosen, len(epochs))
    return replace(check, covers="fresh bandit decisions (sticky repeats left out) per arm "
                   "against each epoch's propensities")


def _switched_rows(data: AnalysisData, segment: Mapping[str, str] | None = None
                   ) -> dict[int, tuple[str, np.ndarray]]:
    """Per epoch with draws: (mode, counts per variant) - A/B (and unrecorded) epochs from
    :func:`epoch_counts`, bandit epochs from their fresh decisions (of ``segment`` only)."""
    modes = data.epoch_modes()
    k = len(data.variants)
    rows: dict[int, tuple[str, np.ndarray]] = {}
    for e, c in zip(*epoch_counts(data, segment)):
        if modes.get(e) != "bandit" and c.sum() > 0:  # bandit epochs: by their decisions
            rows[e] = (modes.get(e, "ab"), c)
    for (variant, epoch, _seg, _tag), n in _fresh_decisions(data, segment):
        if modes.get(epoch) == "bandit" and n > 0:
            rows.setdefault(epoch, ("bandit", np.zeros(k)))[1][variant] += n
    return rows


def switched_srm(data: AnalysisData, threshold: float = 0.001, method: str = "sequential",
                 segment: Mapping[str, str] | None = None) -> SampleRatioCheck:
    """Every phase of a switched experiment (see the module docstring): A/B epochs' units
    (requests at request level), bandit epochs' fresh decisions, each against its epoch's
    weights; the sequential test over all epochs, the chi-square per phase with Bonferroni."""
    chosen = _method(method)
    if not data.snapshot.epochs:
        raise AnalysisError("no routing epochs recorded; nothing to check")
    rows = _switched_rows(data, segment)
    if not rows:
        raise AnalysisError("no units or bandit decisions yet; the sample ratio cannot be "
                            "checked")
    epochs = sorted(rows)
    counts = np.array([rows[e][1] for e in epochs])
    weights = data.epoch_weights(epochs, "units or decisions")
    seq = sequential_srm_test(counts, weights, threshold=threshold)
    unit = "units" if data.snapshot.units is not None else "requests"
    phases: list[PhaseSampleRatio] = []
    start = 0
    for i in range(1, len(epochs) + 1):  # runs of consecutive epochs in one mode
        if i < len(epochs) and rows[epochs[i]][0] == rows[epochs[start]][0]:
            continue
        mode = rows[epochs[start]][0]
        c, w = counts[start:i], weights[start:i]
        exp = (c.sum(axis=1)[:, None] * w).sum(axis=0)
        chi = srm_test(c.sum(axis=0), expected_counts=exp, threshold=threshold)
        log_bf = float(seq.epoch_statistics[start:i].sum())
        phases.append(PhaseSampleRatio(
            len(phases), mode, tuple(epochs[start:i]),
            "fresh bandit decisions" if mode == "bandit" else unit,
            tuple(int(x) for x in c.sum(axis=0)), tuple(float(x) for x in exp),
            chi.statistic, chi.df, chi.pvalue, log_bf,
            0.0 if log_bf == math.inf else min(1.0, math.exp(-log_bf))))
        start = i
    worst = min(phases, key=lambda p: p.chi2_pvalue)
    chi2_p = min(1.0, len(phases) * worst.chi2_pvalue)
    pvalue = seq.pvalue if chosen == "sequential" else chi2_p
    expected = (counts.sum(axis=1)[:, None] * weights).sum(axis=0)
    covers = (f"every phase ({len(phases)}): in A/B epochs the {unit} that entered there, in "
              "bandit epochs the fresh decisions (sticky repeats left out), each against the "
              "weights of its epoch; units that entered in a bandit epoch are counted through "
              "their decisions")
    return SampleRatioCheck(data.variants, tuple(int(x) for x in counts.sum(axis=0)),
                            tuple(float(x) for x in expected), worst.statistic, pvalue,
                            worst.df, pvalue < threshold, float(threshold), len(epochs), None,
                            chosen, chi2_p, seq.pvalue, seq.statistic, seq.concentration, seq,
                            covers, tuple(phases))


def check_sample_ratio(data: AnalysisData, threshold: float = 0.001,
                       method: str = "sequential", segment: Mapping[str, str] | None = None
                       ) -> SampleRatioCheck:
    """``analysis.srm()``: every phase after a mode switch (:func:`switched_srm`), per bandit
    decision after bandit-only traffic, else per unit (or request); within ``segment`` when
    given (the per-segment checks of ``analysis.segments()``)."""
    if data.switched:
        return switched_srm(data, threshold, method, segment)
    if data.adaptive:
        return adaptive_srm(data, threshold, method, segment)
    return srm_analysis(data, threshold, segment=segment, method=method)
