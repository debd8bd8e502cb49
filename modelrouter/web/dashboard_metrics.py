"""One metric on the dashboard: the treatment effect, its history, and the numbers behind them.

Per metric, in the metric's display unit (:mod:`modelrouter.web.units`):

- the **effect plot**: treatment - control with its 95% interval against a zero line, absolute
  and relative, one row per treatment, with the guardrail margin of the metric drawn in (an
  absolute margin on the absolute plot, a relative one on the relative plot);
- the **cumulative effect**: the difference at each recorded look and now, with the
  always-valid interval as a band (the running intersection of the mSPRT intervals up to each
  look: Johari, Pekelis & Walsh 2022; Howard et al. 2021 for confidence sequences), so the band
  only narrows and may be read at any moment;
- the per-variant table and the comparisons table (difference, relative lift, p-value).

A comparison the data do not define yet (no events) shows "not enough data yet" instead of a
chart around ``[0, 0]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

from modelrouter.exceptions import AnalysisError
from modelrouter.stats import always_valid_test
from modelrouter.web.charts import PALETTE, EffectRow, Reference, Series, effect_plot, xy_chart
from modelrouter.web.dashboard_sequential import sequential_chart
from modelrouter.web.svg import fmt
from modelrouter.web.units import DisplayUnit, display_unit, percent

if TYPE_CHECKING:
    from modelrouter.analysis import Analysis, ComparisonResult, GuardrailResult
    from modelrouter.analysis.always_valid import AlwaysValidAnalysis

__all__ = ["NOT_ENOUGH_DATA", "always_valid_path", "metric_html", "table", "variant_color"]

NOT_ENOUGH_DATA = "not enough data yet"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """A table of already escaped cells (the header is escaped here)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return (f'<table class="{escape(cls)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def variant_color(analysis: Analysis, variant: str) -> str:
    """One colour per variant on every chart of the page (its position in the config)."""
    return PALETTE[analysis.variants.index(variant) % len(PALETTE)]


def _margins(guardrails: Sequence[GuardrailResult], metric: str, unit: DisplayUnit
             ) -> tuple[list[Reference], list[Reference]]:
    """The metric's overall mean guardrails as (absolute, relative) reference lines."""
    absolute: dict[float, Reference] = {}
    relative: dict[float, Reference] = {}
    for g in guardrails:
        if g.metric != metric or g.segment or g.quantile is not None:
            continue
        value = g.margin if g.direction == "increase" else -g.margin
        if g.relative:
            relative[value] = Reference(value, f"guardrail margin {percent(value)}")
        else:
            absolute[value] = Reference(value, f"guardrail margin {unit.change(value)}")
    return list(absolute.values()), list(relative.values())


def _own(guardrails: Sequence[GuardrailResult], metric: str, variant: str
         ) -> list[GuardrailResult]:
    """The overall mean guardrails of ``metric`` for ``variant`` (the ones drawn per metric)."""
    return [g for g in guardrails if g.metric == metric and g.variant == variant
            and not g.segment and g.quantile is None]


def _effect_plots(analysis: Analysis, metric: str, unit: DisplayUnit,
                  results: dict[str, ComparisonResult],
                  guardrails: Sequence[GuardrailResult]) -> str:
    """The absolute and the relative effect plot of the defined comparisons; a guardrail on
    the metric adds its margin and, under the treatment's row, the always-valid interval the
    guardrail is decided on (grey)."""
    absolute_refs, relative_refs = _margins(guardrails, metric, unit)
    rows, rel_rows = [], []
    for name, c in results.items():
        ci, rci = c.confidence_interval(), c.relative_confidence_interval()
        color = variant_color(analysis, name)
        rows.append(EffectRow(name, c.difference, ci.low, ci.high,
                              f"{unit.change(c.difference)} {unit.interval(ci.low, ci.high)}",
                              color=color))
        rel_rows.append(EffectRow(name, c.relative_lift, rci.low, rci.high,
                                  f"{percent(c.relative_lift)} [{percent(rci.low)}, "
                                  f"{percent(rci.high)}]", color=color))
        for g in _own(guardrails, metric, name):
            if not (math.isfinite(g.low) and math.isfinite(g.high)):
                continue
            if g.relative:
                rel_rows.append(EffectRow(f"{name}: guardrail", g.estimate, g.low, g.high,
                                          f"{percent(g.estimate)} [{percent(g.low)}, "
                                          f"{percent(g.high)}], {g.status}",
                                          guardrail=True))
            else:
                rows.append(EffectRow(f"{name}: guardrail", g.estimate, g.low, g.high,
                                      f"{unit.change(g.estimate)} "
                                      f"{unit.interval(g.low, g.high)}, {g.status}",
                                      guardrail=True))
    html = effect_plot(rows, title=f"{metric}: effect of each treatment (treatment - control, "
                       "95% CI)", axis_label=unit.axis_label, scale=unit.scale,
                       references=absolute_refs)
    if any(math.isfinite(r.estimate) for r in rel_rows):
        html += effect_plot(rel_rows, title=f"{metric}: relative effect (treatment / control "
                            "- 1, 95% CI)", axis_label=f"{metric}: relative change (%)",
                            scale=100.0, references=relative_refs)
    html += ('<p class="caption">Bars: 95% confidence intervals of a single test at this '
             "moment (as in the table)" + ("; grey: the guardrail's always-valid interval, "
                                           "the one its status is decided on"
                                           if absolute_refs or relative_refs else "")
             + ".</p>")
    return html


def always_valid_path(result: AlwaysValidAnalysis) -> list[tuple[float, float, float]]:
    """(difference, low, high) after each look of the always-valid test, the last one now:
    the interval is the test's own on the looks up to that one (``always_valid_test`` of the
    prefix), so the last entry equals ``result.confidence_interval()``."""
    res = result.result
    if res is None:
        return []
    out = []
    for k in range(1, res.looks + 1):
        events = None if res.events is None else res.events[:k]
        sub = always_valid_test(res.differences[:k], res.variances[:k], res.tau2,
                                res.null_value, events=events, min_events=res.min_events)
        ci = sub.confidence_interval(1.0 - result.alpha)
        out.append((float(res.differences[k - 1]), ci.low, ci.high))
    return out


def _cumulative(analysis: Analysis, metric: str, unit: DisplayUnit,
                results: dict[str, ComparisonResult], alpha: float | None,
                guardrails: Sequence[GuardrailResult]) -> str:
    """The difference at each look and now with its always-valid band, one series per
    treatment; x is the units in both arms at the look."""
    series, notes = [], []
    level, gated = math.nan, False
    x_label = "units in both arms (at each look, the last point is now)"
    for name, c in results.items():
        try:
            av = analysis.always_valid(metric, name, alpha=alpha)
        except AnalysisError as exc:  # the same reason for every treatment: said once
            if str(exc) not in notes:
                notes.append(str(exc))
            continue
        path = always_valid_path(av)
        looks = [k for k in analysis.snapshot.looks if k.metric == metric and k.variant == name]
        units = [float(k.units) for k in looks] + [float(c.control.units + c.treatment.units)]
        if len(units) != len(path):  # not the looks the test ran on: number them instead
            units = [float(i + 1) for i in range(len(path))]
            x_label = "look (the last one is now)"
        series.append(Series(name, [(x, d) for x, (d, _, _) in zip(units, path)],
                             band=[(x, lo, hi) for x, (_, lo, hi) in zip(units, path)],
                             color=variant_color(analysis, name)))
        gated = gated or any(not (math.isfinite(lo) and math.isfinite(hi))
                             for _, lo, hi in path)
        level = 1.0 - av.alpha
        if av.looks_entered == 0:
            notes.append(f"{name}: no look has entered the always-valid test yet (each arm "
                         f"needs {av.min_events} events, the smaller has {av.events:,}): "
                         "the band is unbounded")
    html = ""
    if series:
        refs = [Reference(0.0, "0", "zero"), *_margins(guardrails, metric, unit)[0]]
        html = xy_chart(series, title=f"{metric}: cumulative effect at each recorded look and "
                        f"now, with its {fmt(level * 100)}% always-valid band",
                        x_label=x_label, y_label=unit.axis_label, y_scale=unit.scale,
                        references=refs, x_include=[0.0], x_floor=0.0, height=280)
    if series and all(len(x.points) == 1 for x in series):
        html += ('<p class="caption">Only now: no look has been recorded on '
                 f"{escape(metric)} yet (record_look or POST /looks), so there is no path.</p>")
    if gated:
        html += ('<p class="caption">No band at a look where an arm had fewer events than the '
                 "always-valid test waits for (its interval is unbounded there).</p>")
    if notes:
        html += "".join(f'<p class="muted">no always-valid band: {escape(n)}</p>'
                        for n in notes)
    return html


def _z_paths(analysis: Analysis, metric: str, treatments: Sequence[str],
             alpha: float | None) -> str:
    """The sequential z path of a metric other than the primary, for the treatments with
    recorded looks on it (informative: the verdict decides on the primary)."""
    html = ""
    for name in treatments:
        if not any(k.metric == metric and k.variant == name for k in analysis.snapshot.looks):
            continue
        try:
            result = analysis.sequential(metric, name, alpha=alpha)
        except AnalysisError:
            continue
        html += sequential_chart(result, analysis.snapshot.looks,
                                 variant_color(analysis, name), height=240)
    if html:
        html += ('<p class="caption">The sequential test of a secondary metric, for '
                 "information: the verdict decides on the primary metric.</p>")
    return html


def metric_html(analysis: Analysis, metric: str, *, alpha: float | None = None,
                guardrails: Sequence[GuardrailResult] = ()) -> str:
    """The inside of one metric's section (see the module docstring). ``alpha``: the level of
    the always-valid band (the verdict's alpha per comparison); ``guardrails``: the results
    whose margins are drawn in."""
    unit = display_unit(analysis.config.metrics[metric])
    rows = []
    for s in analysis.summary(metric):
        ci = s.confidence_interval()
        name = escape(s.variant) + (' <span class="muted">(control)</span>'
                                    if s.variant == analysis.control else "")
        mean = unit.value(s.mean) if s.events else NOT_ENOUGH_DATA
        interval = (f"[{escape(unit.value(ci.low))}, {escape(unit.value(ci.high))}]"
                    if s.events and ci.high > ci.low else "")  # no [0%, 0%]
        rows.append([name, f"{s.units:,}", f'<span class="mean">{escape(mean)}</span>',
                     interval, f"{s.events:,}"])
    defined: dict[str, ComparisonResult] = {}
    comparisons = []
    for v in analysis.variants:
        if v == analysis.control:
            continue
        try:
            c = analysis.compare(metric, v)
        except AnalysisError as exc:
            comparisons.append([escape(v), f'<span class="muted">{escape(str(exc))}</span>',
                                "", "", "", ""])
            continue
        if not c.defined or not c.confidence_interval().high > c.confidence_interval().low:
            # e.g. no errors in any arm: a difference of 0 with an interval [0, 0]
            comparisons.append([escape(v), f'<span class="muted">{NOT_ENOUGH_DATA}</span>',
                                "", "", "", ""])
            continue
        defined[v] = c
        ci, rci = c.confidence_interval(), c.relative_confidence_interval()
        comparisons.append([escape(v), escape(unit.change(c.difference)),
                            escape(unit.interval(ci.low, ci.high)),
                            escape(percent(c.relative_lift)),
                            escape(f"[{percent(rci.low)}, {percent(rci.high)}]"),
                            escape(fmt(c.pvalue, 3))])
    if defined:
        html = _effect_plots(analysis, metric, unit, defined, guardrails)
        estimators = sorted({c.estimator for c in defined.values()} - {"difference in means"})
        if estimators:  # bandit traffic: weighted estimates, say which
            html += (f'<p class="caption">Estimator: {escape(", ".join(estimators))} (traffic '
                     "allocated adaptively; see the analysis notes).</p>")
        html += _cumulative(analysis, metric, unit, defined, alpha, guardrails)
        if metric != analysis.config.primary:
            html += _z_paths(analysis, metric, list(defined), alpha)
    else:
        html = (f'<p class="muted not-enough">{NOT_ENOUGH_DATA}: no treatment can be compared '
                f"with the control on {escape(metric)} (no events, or too few units)</p>")
    html += '<div class="tables">' + table(
        ["variant", "units", "mean", "95% CI", "events"], rows, "summary")
    html += table(["vs control", "difference", "95% CI", "relative", "95% CI", "p-value"],
                  comparisons, "comparisons") + "</div>"
    return html
