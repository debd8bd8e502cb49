"""Result objects of the analysis: small, frozen, printable, serialisable."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelrouter.analysis.text import NOT_ENOUGH_DATA, fmt_interval, fmt_pvalue
from modelrouter.stats.results import ConfidenceInterval

if TYPE_CHECKING:  # an annotation only: importing the test functions would load scipy
    from modelrouter.stats.twosample import TwoSampleResult

__all__ = ["ComparisonResult", "PhaseEstimate", "VariantSummary", "format_table",
           "normal_quantile"]


def normal_quantile(confidence_level: float) -> float:
    """The two-sided standard-normal quantile of a confidence level (1.96 for 0.95).

    scipy is imported here, when an interval is computed, not when the analysis is imported.
    """
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence_level / 2.0))


def _fmt(value: float, digits: int = 4) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain aligned text table (right-aligned columns, first column left-aligned)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


@dataclass(frozen=True)
class VariantSummary:
    """One variant's data for one metric.

    ``mean`` is the conversion rate (binary), the mean per unit (continuous sum) or the mean
    per event (ratio metrics such as ``latency_ms``); ``std`` the standard deviation of the
    per-unit values (for ratio metrics: ``std_err * sqrt(units)``); ``events`` the number of
    recorded values.
    """

    variant: str
    units: int
    mean: float
    std: float
    std_err: float
    events: int

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Normal-approximation interval for this variant's mean."""
        if not 0.0 < confidence_level < 1.0:
            raise ValueError(f"confidence_level ({confidence_level!r}) must be in (0, 1)")
        q = normal_quantile(confidence_level)
        return ConfidenceInterval(self.mean - q * self.std_err, self.mean + q * self.std_err)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, including the 95% interval."""
        ci = self.confidence_interval()
        return {"variant": self.variant, "units": self.units, "mean": self.mean, "std": self.std,
                "std_err": self.std_err, "events": self.events, "ci_low": ci.low,
                "ci_high": ci.high}


@dataclass(frozen=True)
class PhaseEstimate:
    """Treatment vs control within one phase of an experiment that switched modes.

    A phase is a run of consecutive epochs in one mode: ``"ab"`` phases are analysed per unit
    (``observed="units"``; per request at request level), ``"bandit"`` phases per decision with
    inverse-propensity (Hajek) weights. ``n`` counts the phase's observations over all arms;
    ``weight`` is its share in the combined estimate (NaN when none was combined).
    """

    phase: int
    mode: str
    epochs: tuple[int, ...]
    observed: str
    n: int
    control_mean: float
    treatment_mean: float
    difference: float
    std_err: float
    estimator: str
    weight: float = math.nan

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Normal interval for the phase's difference."""
        q = normal_quantile(confidence_level)
        return ConfidenceInterval(self.difference - q * self.std_err,
                                  self.difference + q * self.std_err)

    @property
    def label(self) -> str:
        """``"phase 2 (bandit, epochs 1-9)"``."""
        e = self.epochs
        span = f"epoch {e[0]}" if len(e) == 1 else f"epochs {e[0]}-{e[-1]}"
        return f"phase {self.phase} ({'A/B' if self.mode == 'ab' else self.mode}, {span})"

    def to_dict(self) -> dict[str, Any]:
        """Plain data, including the 95% interval."""
        ci = self.confidence_interval()
        return {"phase": self.phase, "mode": self.mode, "epochs": list(self.epochs),
                "observed": self.observed, "n": self.n, "control_mean": self.control_mean,
                "treatment_mean": self.treatment_mean, "difference": self.difference,
                "std_err": self.std_err, "ci_low": ci.low, "ci_high": ci.high,
                "estimator": self.estimator, "weight": self.weight}


@dataclass(frozen=True)
class ComparisonResult:
    """Treatment vs control on one metric; ``difference`` is treatment minus control.

    ``covers`` says which data the estimate covers (units or decisions, of which epochs or
    phases); ``observed`` names what ``units`` of the summaries count (``"units"``,
    ``"decisions"``, ``"units and decisions"``, ...); ``phases`` holds the per-phase estimates
    of an experiment that switched between A/B and bandit mode (the summaries and the
    difference then come from the one phase-stratified estimator).
    """

    metric: str
    method: str
    control: VariantSummary
    treatment: VariantSummary
    difference: float
    relative_lift: float
    statistic: float
    pvalue: float
    df: float
    effect_size: float
    effect_size_name: str
    estimator: str = "difference in means"
    notes: tuple[str, ...] = ()
    std_err: float = math.nan
    covers: str = ""
    observed: str = "units"
    phases: tuple[PhaseEstimate, ...] = ()
    # CUPED (analysis/adjusted.py): whether the difference is covariate-adjusted, and the share
    # of the variance of the difference removed, 1 - var_adjusted / var_unadjusted (NaN: none)
    adjusted: bool = False
    variance_reduction: float = math.nan
    _relative_ci: ConfidenceInterval = field(
        default=ConfidenceInterval(math.nan, math.nan), repr=False)
    _test: TwoSampleResult | None = field(default=None, repr=False, compare=False)

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Interval for the difference, from the same test as the p-value."""
        if self._test is None:
            q = normal_quantile(confidence_level)
            return ConfidenceInterval(self.difference - q * self.std_err,
                                      self.difference + q * self.std_err)
        return self._test.confidence_interval(confidence_level)

    def relative_confidence_interval(self) -> ConfidenceInterval:
        """95% delta-method interval for the relative lift."""
        return self._relative_ci

    def significant(self, alpha: float = 0.05) -> bool:
        """Whether the two-sided p-value is below ``alpha`` (a fixed-horizon reading)."""
        return self.pvalue < alpha

    @property
    def defined(self) -> bool:
        """Whether the data define the comparison: events recorded in either variant, a
        test that is defined (a finite p-value). Otherwise the summary says "not enough data
        yet" instead of a difference and an interval."""
        return self.undefined_reason is None

    @property
    def undefined_reason(self) -> str | None:
        """Why the data do not define the comparison yet (None when they do): no events in
        an arm whose test needs them, else a test that is not defined (see the notes)."""
        if (self.control.events + self.treatment.events > 0
                and not math.isnan(self.pvalue) and not math.isnan(self.difference)):
            return None
        empty = [s.variant for s in (self.control, self.treatment) if s.events == 0]
        if empty:
            return f"no {self.metric!r} events recorded in {' or '.join(empty)} yet"
        return "the difference and its test are not defined (see the notes)"

    def summary(self) -> str:
        """A readable table of both variants and the comparison; "not enough data yet"
        instead of a difference, an interval and a p-value that the data do not define."""
        ci = self.confidence_interval()
        rci = self._relative_ci
        rows = [[s.variant + (" (control)" if s is self.control else ""), _fmt(s.units),
                 _fmt(s.mean), _fmt(s.std), _fmt(s.events)]
                for s in (self.control, self.treatment)]
        table = format_table(["variant", self.observed, "mean", "std", "events"], rows)
        lines = [f"{self.metric}: {self.treatment.variant} vs {self.control.variant} "
                 f"({self.method}; {self.estimator})"]
        if self.covers:
            lines.append(f"covers: {self.covers}")
        if self.adjusted:
            lines.append(f"adjusted for pre-exposure covariates (CUPED): variance of the "
                         f"difference -{self.variance_reduction:.1%}")
        lines.append(table)
        if self.undefined_reason is not None:
            lines.append(f"{NOT_ENOUGH_DATA}: {self.undefined_reason}")
        else:
            lines += [f"difference    {_fmt(self.difference)}  95% CI "
                      f"{fmt_interval(ci.low, ci.high)}",
                      f"relative lift {self.relative_lift:+.2%}  95% CI [{rci.low:+.2%}, "
                      f"{rci.high:+.2%}]" if math.isfinite(self.relative_lift)
                      and math.isfinite(rci.low) and math.isfinite(rci.high)
                      else "relative lift n/a (see the notes)",
                      f"statistic {_fmt(self.statistic)}  p-value {fmt_pvalue(self.pvalue)}  "
                      f"{self.effect_size_name} {_fmt(self.effect_size, 3)}"]
        if self.phases:
            prows = [[p.label, _fmt(p.n), _fmt(p.control_mean), _fmt(p.treatment_mean),
                      _fmt(p.difference), _fmt(p.std_err),
                      "-" if math.isnan(p.weight) else f"{p.weight:.3f}"] for p in self.phases]
            lines += ["per phase (each phase's mean difference; the estimate above combines "
                      "them with the weights shown):",
                      format_table(["phase", "n", self.control.variant, self.treatment.variant,
                                    "difference", "std err", "weight"], prows)]
        # compare() words an undefined p-value "p-value NaN" for code; text says it in words
        lines += [f"note: {n.replace('p-value NaN', 'p-value not defined')}"
                  for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """Plain data for code and JSON."""
        ci = self.confidence_interval()
        return {
            "metric": self.metric, "method": self.method, "estimator": self.estimator,
            "control": self.control.to_dict(), "treatment": self.treatment.to_dict(),
            "difference": self.difference, "ci_low": ci.low, "ci_high": ci.high,
            "relative_lift": self.relative_lift, "relative_ci_low": self._relative_ci.low,
            "relative_ci_high": self._relative_ci.high, "statistic": self.statistic,
            "pvalue": self.pvalue, "df": self.df, "std_err": self.std_err,
            "effect_size": self.effect_size, "effect_size_name": self.effect_size_name,
            "covers": self.covers, "observed": self.observed,
            "phases": [p.to_dict() for p in self.phases], "notes": list(self.notes),
            "adjusted": self.adjusted, "variance_reduction": self.variance_reduction,
        }
