"""``analysis.report()``: everything a reviewer needs, as one text.

The text is honest about what the data do not define yet: it says "not enough data yet"
instead of printing ``nan``, an interval for a metric without events, or a sample-ratio
p-value before there are units; p-values below 1e-16 read ``< 1e-16``; counts agree with their
nouns (see :mod:`modelrouter.analysis.text`).
"""

from __future__ import annotations

import math

from modelrouter.analysis.compare import compare_all
from modelrouter.analysis.data import AnalysisData
from modelrouter.analysis.guardrails import GuardrailResult, guardrail_results
from modelrouter.analysis.results import format_table
from modelrouter.analysis.segments import segment_analysis
from modelrouter.analysis.sequential import SequentialAnalysis
from modelrouter.analysis.srm import SampleRatioCheck
from modelrouter.analysis.text import (
    NOT_ENOUGH_DATA,
    fmt_interval,
    fmt_pvalue,
    fmt_signed,
    plural,
    singular_counts,
)
from modelrouter.analysis.verdict import decide
from modelrouter.exceptions import AnalysisError

__all__ = ["render_report"]


def _srm_line(srm: SampleRatioCheck | None) -> str:
    """The sample-ratio line: the always-valid p-value, or why there is none yet."""
    if srm is None:
        return f"Sample ratio: {NOT_ENOUGH_DATA} (no units to check)"
    return (f"Sample ratio: always-valid p = {fmt_pvalue(srm.sequential_pvalue, 3)} (sequential "
            f"multinomial test, valid however often it is checked; alarm below "
            f"{srm.threshold:g}{': ALARM' if srm.alarm else ''}); the one-off chi-square p = "
            f"{fmt_pvalue(srm.chi2_pvalue, 3)} is for reference only")


def _guardrail_row(g: GuardrailResult) -> list[str]:
    """One row of the guardrail table; no estimate yet reads "not enough data yet"."""
    known = math.isfinite(g.estimate)
    return [g.label, g.variant, g.where,
            g.status.upper() if g.status == "fail" else g.status,
            f"{'+' if g.direction == 'increase' else '-'}{g.margin:.4g}"
            + (" rel" if g.relative else ""),
            fmt_signed(g.estimate) if known else "-",
            fmt_interval(g.low, g.high, signed=True) if known else NOT_ENOUGH_DATA,
            f"{g.alpha:.3g}"]


def render_report(data: AnalysisData, variant: str | None = None) -> str:
    """Verdict, data, sample ratio, primary metric, guardrails, segments and rollbacks."""
    snap = data.snapshot
    config = data.config
    verdict = decide(data, variant)
    out = [f"Experiment {config.experiment!r}: {plural(snap.n_units, 'unit')}, variants "
           f"{list(data.variants)} (control {data.control!r})"
           + (f"; data of {snap.source}" if snap.source else ""), "",
           verdict.summary(), "", _srm_line(verdict.srm)]
    # with several treatments, every one of them (each verdict holds its comparison)
    shown = list(verdict.per_variant.values()) or [verdict]
    for v in shown:
        if v.comparison is None:
            continue
        title = "Primary metric" if len(shown) == 1 else (
            f"Primary metric: {v.variant} ({v.decision}; alpha "
            f"{v.alpha_per_comparison:.4g} per comparison)")
        out += ["", title, str(v.comparison)]
        if isinstance(v.sequential, SequentialAnalysis):  # not the compare() fallback
            out += [v.sequential.explain()]
    others = [m for m in snap.metrics if m != config.primary]
    if others:
        out += [""]
        if config.primary is None:
            out += ["Primary metric: none configured (RouterConfig(primary=...))", ""]
        out += ["Other metrics"]
        for metric in others:
            try:
                for cmp_ in compare_all(data, metric).values():
                    out += [str(cmp_), ""]
            except AnalysisError as exc:
                out += [f"{metric}: {NOT_ENOUGH_DATA} ({exc})", ""]
    guards = guardrail_results(data)
    if guards:
        out += ["", "Guardrails (always-valid intervals; relative margins as ratios - 1)",
                format_table(["guardrail", "variant", "where", "status", "margin", "estimate",
                              "interval", "alpha"], [_guardrail_row(g) for g in guards])]
    if config.primary is not None and snap.segment_dims:
        treatments: list[str | None] = [*verdict.per_variant] or [verdict.variant]
        for dim in snap.segment_dims:
            for t in treatments:
                try:
                    seg = segment_analysis(data, config.primary, dim, t)
                except AnalysisError as exc:
                    out += ["", f"Segments by {dim}: {NOT_ENOUGH_DATA} ({exc})"]
                    continue
                out += ["", seg.summary()]
        if snap.segment_overflow:
            out += [f"note: {snap.segment_overflow:,} segment values past the cap were "
                    "counted as 'other'"]
    for e in data.rollback_events:
        out += ["", f"{e.kind} at {e.when}: {'; '.join(e.reasons)}"]
    if data.stages is not None and data.stages.current:  # shadow candidates (promotion.py)
        out += ["", "Rollout of the shadow candidates:", *("  " + line for line in
                                                          data.stages.lines())]
    # messages of other modules carry counts that may be one ("has 1 units with data")
    return singular_counts("\n".join(out))
