"""``analysis.report()``: everything a reviewer needs, as one text."""

from __future__ import annotations

from modelrouter.analysis.compare import compare_all
from modelrouter.analysis.data import AnalysisData
from modelrouter.analysis.guardrails import guardrail_results
from modelrouter.analysis.results import format_table
from modelrouter.analysis.segments import segment_analysis
from modelrouter.analysis.sequential import SequentialAnalysis
from modelrouter.analysis.verdict import decide
from modelrouter.exceptions import AnalysisError

__all__ = ["render_report"]


def render_report(data: AnalysisData, variant: str | None = None) -> str:
    """Verdict, data, sample ratio, primary metric, guardrails, segments and rollbacks."""
    snap = data.snapshot
    config = data.config
    verdict = decide(data, variant)
    srm = verdict.srm
    out = [f"Experiment {config.experiment!r}: {snap.n_units:,} units, variants "
           f"{list(data.variants)} (control {data.control!r})"
           + (f"; data of {snap.source}" if snap.source else ""), "",
           verdict.summary(), "",
           "Sample ratio: no units to check yet" if srm is None else
           f"Sample ratio: always-valid p = {srm.sequential_pvalue:.3g} (sequential "
           f"multinomial test, valid however often it is checked; alarm below "
           f"{srm.threshold:g}{': ALARM' if srm.alarm else ''}); the one-off chi-square p = "
           f"{srm.chi2_pvalue:.3g} is for reference only"]
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
        out += ["", "Primary metric: none configured (RouterConfig(primary=...))"
                if config.primary is None else "", "Other metrics"]
        for metric in others:
            try:
                for cmp_ in compare_all(data, metric).values():
                    out += [str(cmp_), ""]
            except AnalysisError as exc:
                out += [f"{metric}: {exc}", ""]
    guards = guardrail_results(data)
    if guards:
        rows = [[g.label, g.variant, g.where, g.status.upper() if g.status == "fail"
                 else g.status, f"{'+' if g.direction == 'increase' else '-'}{g.margin:.4g}"
                 + (" rel" if g.relative else ""),
                 f"{g.estimate:+.4g}", f"[{g.low:+.4g}, {g.high:+.4g}]", f"{g.alpha:.3g}"]
                for g in guards]
        out += ["", "Guardrails (always-valid intervals; relative margins as ratios - 1)",
                format_table(["guardrail", "variant", "where", "status", "margin", "estimate",
                              "interval", "alpha"], rows)]
    if config.primary is not None and snap.segment_dims:
        treatments: list[str | None] = [*verdict.per_variant] or [verdict.variant]
        for dim in snap.segment_dims:
            for t in treatments:
                try:
                    seg = segment_analysis(data, config.primary, dim, t)
                except AnalysisError as exc:
                    out += ["", f"Segments by {dim}: {exc}"]
                    continue
                out += ["", seg.summary()]
        if snap.segment_overflow:
            out += [f"note: {snap.segment_overflow:,} segment values past the cap were "
                    "counted as 'other'"]
    for e in data.rollback_events:
        out += ["", f"{e.kind} at {e.when}: {'; '.join(e.reasons)}"]
    return "\n".join(out)
