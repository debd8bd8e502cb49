"""Segment analysis: the same comparison as ``compare`` within each segment, corrected.

``analysis.segments("click", by="platform")`` (or ``by=["platform", "country"]`` for crossed
segments) returns a :class:`SegmentAnalysis`: a sequence of :class:`SegmentResult`, one per
segment value present in the data, plus

- p-values adjusted across the tested segments (Holm by default; ``"bonferroni"``, ``"bh"``);
- segments with fewer than ``min_segment_units`` units in control or treatment are reported
  (estimate and interval) but not tested, and left out of the adjustment;
- ``opposes_overall``: the segment's effect is significant (after adjustment) and of the
  opposite sign to the overall estimate: the Simpson's-paradox warning;
- a heterogeneity test: Cochran's Q on the tested segments' differences with inverse-variance
  weights (chi-square with k - 1 df; segments are disjoint, so their estimates are independent);
- each segment's own sample-ratio check against the weights in force when its units arrived
  (the anytime-valid sequential test of :func:`~modelrouter.analysis.srm.srm_analysis`, so a
  report rerun at any time keeps its false-alarm rate), Bonferroni-corrected across segments
  (a segment-specific SRM points at a platform-specific assignment or logging bug).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from modelrouter.analysis.compare import compare
from modelrouter.analysis.data import AnalysisData
from modelrouter.analysis.results import ComparisonResult, format_table
from modelrouter.analysis.srm import check_sample_ratio
from modelrouter.analysis.text import fmt_interval, fmt_pvalue, fmt_signed
from modelrouter.exceptions import AnalysisError
from modelrouter.stats.multiple import adjust_pvalues
from modelrouter.stats.results import ConfidenceInterval

if TYPE_CHECKING:
    from modelrouter.stats.multiple import Correction

__all__ = [
    "Heterogeneity",
    "SegmentAnalysis",
    "SegmentResult",
    "cochran_q",
    "segment_analysis",
]

_CORRECTIONS: dict[str, Correction] = {"holm": "holm", "bonferroni": "bonferroni", "bh": "bh"}


@dataclass(frozen=True)
class SegmentResult:
    """Treatment vs control within one segment; ``difference`` is treatment minus control."""

    segment: dict[str, str]
    metric: str
    units_control: int
    units_treatment: int
    difference: float
    std_err: float
    pvalue: float  # nan when too small to test
    adjusted_pvalue: float
    too_small: bool
    opposes_overall: bool
    srm_pvalue: float
    srm_adjusted_pvalue: float
    srm_alarm: bool
    comparison: ComparisonResult | None = field(default=None, repr=False, compare=False)

    @property
    def units(self) -> int:
        """Units of both arms in the segment."""
        return self.units_control + self.units_treatment

    @property
    def label(self) -> str:
        """``platform=mobile`` (crossed: ``platform=mobile, country=DE``)."""
        return ", ".join(f"{k}={v}" for k, v in self.segment.items())

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Unadjusted interval for the difference, from the same test as ``pvalue``."""
        if self.comparison is None:
            return ConfidenceInterval(math.nan, math.nan)
        return self.comparison.confidence_interval(confidence_level)

    def __repr__(self) -> str:
        flags = (" too_small" if self.too_small else "") + (
            " OPPOSES_OVERALL" if self.opposes_overall else "") + (
            " SRM" if self.srm_alarm else "")
        return (f"SegmentResult({self.label}: difference={self.difference:.4g}, "
                f"pvalue={self.pvalue:.4g}, adjusted_pvalue={self.adjusted_pvalue:.4g}, "
                f"units={self.units}{flags})")

    def to_dict(self) -> dict[str, Any]:
        """Plain data, with the 95% interval."""
        ci = self.confidence_interval()
        return {"segment": dict(self.segment), "metric": self.metric,
                "units_control": self.units_control, "units_treatment": self.units_treatment,
                "difference": self.difference, "std_err": self.std_err, "ci_low": ci.low,
                "ci_high": ci.high, "pvalue": self.pvalue,
                "adjusted_pvalue": self.adjusted_pvalue, "too_small": self.too_small,
                "opposes_overall": self.opposes_overall, "srm_pvalue": self.srm_pvalue,
                "srm_adjusted_pvalue": self.srm_adjusted_pvalue, "srm_alarm": self.srm_alarm}


@dataclass(frozen=True)
class Heterogeneity:
    """Cochran's Q test that the effect is the same in every tested segment."""

    statistic: float
    df: int
    pvalue: float
    i2: float  # share of the variation across segments beyond chance, max(0, (Q - df) / Q)

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {"statistic": self.statistic, "df": self.df, "pvalue": self.pvalue,
                "i2": self.i2}


def cochran_q(differences: Sequence[float], std_errs: Sequence[float]) -> Heterogeneity:
    """Cochran's Q with inverse-variance weights (as in meta-analysis).

    NaN (not defined) unless every standard error is positive and finite. The weights are
    scaled by the smallest variance (``(se_min / se)**2``, in (0, 1]) so they cannot overflow;
    Q itself is ``inf`` (p-value 0) when beyond the float range."""
    from scipy.stats import chi2  # when a statistic is computed, not at import

    d = np.asarray(differences, dtype=float)
    se = np.asarray(std_errs, dtype=float)
    df = int(d.size - 1)
    if d.size < 2:
        return Heterogeneity(math.nan, 0, math.nan, math.nan)
    if not (np.all(np.isfinite(d)) and np.all(np.isfinite(se)) and np.all(se > 0)):
        return Heterogeneity(math.nan, df, math.nan, math.nan)
    w = (se.min() / se) ** 2
    pooled = float(np.sum(w * d) / np.sum(w))
    with np.errstate(over="ignore"):
        q = float(np.sum(((d - pooled) / se) ** 2))
    i2 = max(0.0, 1.0 - df / q) if q > 0 else 0.0
    return Heterogeneity(q, df, float(chi2.sf(q, df)), i2)


@dataclass(frozen=True, eq=False)
class SegmentAnalysis(Sequence[SegmentResult]):
    """Every segment's result (a sequence), the overall comparison and the family tests."""

    metric: str
    by: tuple[str, ...]
    method: str
    alpha: float
    results: tuple[SegmentResult, ...]
    overall: ComparisonResult
    heterogeneity: Heterogeneity

    @overload
    def __getitem__(self, index: int) -> SegmentResult: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[SegmentResult]: ...
    def __getitem__(self, index: int | slice) -> SegmentResult | Sequence[SegmentResult]:
        return self.results[index]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[SegmentResult]:
        return iter(self.results)

    def get(self, **segment: str) -> SegmentResult:
        """The result of one segment: ``seg.get(platform="mobile")``."""
        for r in self.results:
            if r.segment == segment:
                return r
        raise AnalysisError(f"segment ({segment!r}) has no units; present segments are "
                            f"{[r.segment for r in self.results]!r}")

    @property
    def flagged(self) -> tuple[SegmentResult, ...]:
        """Segments that move significantly against the overall result."""
        return tuple(r for r in self.results if r.opposes_overall)

    @property
    def srm_alarm(self) -> bool:
        """Whether any segment's split is off (after the Bonferroni correction)."""
        return any(r.srm_alarm for r in self.results)

    def __repr__(self) -> str:
        return (f"SegmentAnalysis({self.metric} by {'x'.join(self.by)}: {len(self)} segments, "
                f"{len(self.flagged)} opposing, heterogeneity p={self.heterogeneity.pvalue:.3g})")

    def summary(self) -> str:
        """A table of every segment, the heterogeneity test and the warnings."""
        rows = []
        for r in self.results:
            ci = r.confidence_interval()
            rows.append([r.label, f"{r.units_control:,}", f"{r.units_treatment:,}",
                         fmt_signed(r.difference), fmt_interval(ci.low, ci.high, signed=True),
                         "too small" if r.too_small else fmt_pvalue(r.pvalue, 3),
                         "-" if r.too_small else fmt_pvalue(r.adjusted_pvalue, 3),
                         ("OPPOSES " if r.opposes_overall else "") + ("SRM" if r.srm_alarm
                                                                      else "")])
        table = format_table(["segment", "control", "treatment", "difference", "95% CI",
                              "p", f"p ({self.method})", "flags"], rows)
        h = self.heterogeneity
        lines = [f"{self.metric} by {' x '.join(self.by)} (overall difference "
                 f"{fmt_signed(self.overall.difference)}, "
                 f"p={fmt_pvalue(self.overall.pvalue, 3)})", table,
                 f"heterogeneity: Cochran's Q = {h.statistic:.3f} on {h.df} df, "
                 f"p = {fmt_pvalue(h.pvalue, 3)}, I^2 = {h.i2:.0%}"
                 if h.df and math.isfinite(h.statistic) else
                 "heterogeneity: fewer than 2 segments large enough to test" if not h.df else
                 "heterogeneity: not defined (a segment's standard error is 0 or not finite)"]
        lines += [f"warning: {r.label} moves against the overall result (difference "
                  f"{fmt_signed(r.difference)}, adjusted p {fmt_pvalue(r.adjusted_pvalue, 3)})"
                  for r in self.flagged]
        lines += [f"warning: sample ratio mismatch in {r.label} (p "
                  f"{fmt_pvalue(r.srm_pvalue, 3)}, Bonferroni-adjusted "
                  f"{fmt_pvalue(r.srm_adjusted_pvalue, 3)})" for r in self.results
                  if r.srm_alarm]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {"metric": self.metric, "by": list(self.by), "method": self.method,
                "alpha": self.alpha, "segments": [r.to_dict() for r in self.results],
                "overall": self.overall.to_dict(),
                "heterogeneity": self.heterogeneity.to_dict()}


@dataclass(frozen=True)
class _Row:
    """One segment before the family-wide adjustments."""

    segment: dict[str, str]
    n_c: int
    n_t: int
    comparison: ComparisonResult | None  # None: fewer than 2 units in an arm
    too_small: bool
    srm: float


def _srm_pvalue(data: AnalysisData, segment: dict[str, str]) -> float:
    """The segment's own always-valid SRM p-value: its units (bandit epochs: its fresh
    decisions), epoch by epoch, against the weights in force then (1 when it has none)."""
    try:
        return check_sample_ratio(data, segment=segment).pvalue
    except AnalysisError:  # no units in the segment
        return 1.0


def segment_analysis(data: AnalysisData, metric: str, by: str | Sequence[str],
                     variant: str | None = None, *, method: str = "holm",
                     alpha: float = 0.05) -> SegmentAnalysis:
    """See the module docstring; ``Analysis.segments`` is the public entry point."""
    dims = (by,) if isinstance(by, str) else tuple(by)
    if not dims:
        raise AnalysisError("by ([]) must name at least one segment dimension")
    correction = _CORRECTIONS.get(method)
    if correction is None:
        raise AnalysisError(f"method ({method!r}) must be one of 'holm', 'bonferroni', 'bh'")
    if not 0.0 < alpha < 1.0:
        raise AnalysisError(f"alpha ({alpha!r}) must be in (0, 1)")
    overall = compare(data, metric, variant)  # validates metric and variant
    treatment, control = overall.treatment.variant, overall.control.variant
    t_idx, c_idx = data.variants.index(treatment), data.variants.index(control)
    minimum = data.config.min_segment_units
    rows: list[_Row] = []
    for seg in data.present_segments(dims):
        moments = data.moments(metric, seg)
        n_c, n_t = moments[c_idx].n, moments[t_idx].n
        comparison = None
        if min(n_c, n_t) >= 2:
            comparison = compare(data, metric, treatment, segment=seg)
        rows.append(_Row(seg, n_c, n_t, comparison,
                         min(n_c, n_t) < minimum or comparison is None,
                         _srm_pvalue(data, seg)))
    tested = {i: r.comparison for i, r in enumerate(rows) if r.comparison is not None
              and not r.too_small and math.isfinite(r.comparison.pvalue)}
    adjusted = adjust_pvalues([c.pvalue for c in tested.values()], correction)
    adj = dict(zip(tested, adjusted.tolist()))
    srm_adj = adjust_pvalues([r.srm for r in rows], "bonferroni")
    sign = np.sign(overall.difference)
    results = []
    for i, r in enumerate(rows):
        cmp_ = r.comparison
        a = adj.get(i, math.nan)
        results.append(SegmentResult(
            segment=r.segment, metric=metric, units_control=r.n_c, units_treatment=r.n_t,
            difference=cmp_.difference if cmp_ else math.nan,
            std_err=cmp_.std_err if cmp_ else math.nan,
            pvalue=cmp_.pvalue if cmp_ and i in adj else math.nan, adjusted_pvalue=a,
            too_small=r.too_small,
            opposes_overall=bool(cmp_ and i in adj and a < alpha and sign != 0
                                 and np.sign(cmp_.difference) == -sign),
            srm_pvalue=r.srm, srm_adjusted_pvalue=float(srm_adj[i]),
            srm_alarm=bool(srm_adj[i] < 0.001), comparison=cmp_))
    het = cochran_q([results[i].difference for i in tested],
                    [results[i].std_err for i in tested]) if len(tested) >= 2 else \
        Heterogeneity(math.nan, 0, math.nan, math.nan)
    return SegmentAnalysis(metric, dims, method, alpha, tuple(results), overall, het)
